"""Checks Schemathesis runs beside its own (SCHEMATHESIS_HOOKS=bulkhead_checks).

Every error answer, whoever produced it (a handler, the platform's middleware, hyper), is in
the documented envelope: {"error": {"code", "message", "details"?, "request_id"}}, as JSON.
"""

import json

import schemathesis


@schemathesis.check
def error_in_the_envelope(ctx, response, case):
    """A 4xx or 5xx answer is the error envelope, with a code, a message and the request id."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/json"):
        raise AssertionError(f"{response.status_code} is not JSON (content-type {content_type!r})")
    try:
        body = json.loads(response.content or b"")
    except ValueError as error:
        raise AssertionError(f"{response.status_code} body is not JSON: {error}") from None
    envelope = body.get("error") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        raise AssertionError(f"{response.status_code} has no `error` object: {body!r}")
    for field in ("code", "message", "request_id"):
        if not isinstance(envelope.get(field), str) or not envelope[field]:
            raise AssertionError(f"{response.status_code} envelope lacks `error.{field}`: {body!r}")
    return None
