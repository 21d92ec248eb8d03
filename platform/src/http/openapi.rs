//! The answers the platform gives on an operation's behalf, written into the OpenAPI
//! document from what each operation declares, so no handler has to remember them and a new
//! route gets them too: the extractors' 400, 413, 415 and 422 for a JSON body, `invalid_query`
//! for query parameters, 404 for a path parameter that names nothing, 401 for a route that
//! needs a token, the `Idempotency-Key` layer's 400, 409 and 422, and the rate limiter's 429
//! on the API. Where an operation documents the status already, the platform's reasons are
//! added to its description.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder, Type,
};

/// Adds the platform's answers to every operation of `openapi` whose path starts with
/// `rate_limited_prefix` (429 `rate_limited`), and to every operation whatever its path (the
/// rest).
pub fn document_platform_answers(openapi: &mut OpenApi, rate_limited_prefix: &str) {
    for (path, item) in &mut openapi.paths.paths {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            document_operation(operation, path.starts_with(rate_limited_prefix));
        }
    }
}

fn document_operation(operation: &mut Operation, rate_limited: bool) {
    let parameters: Vec<(ParameterIn, String)> = operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|parameter| match parameter {
            RefOr::T(parameter) => Some((parameter.parameter_in.clone(), parameter.name.to_ascii_lowercase())),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has = |place: ParameterIn| parameters.iter().any(|(at, _)| *at == place);
    if operation.request_body.is_some() {
        add(operation, 400, "`malformed_json`: the body is not JSON; `unreadable_body`: it could not be read");
        ensure(operation, 413, "`payload_too_large`: the body is larger than the server accepts");
        ensure(operation, 415, "`unsupported_media_type`: the body is not sent as `application/json`");
        add(
            operation,
            422,
            "`invalid_body`: the JSON does not fit the schema (unknown, missing or mistyped field, in `details`); \
             `validation_failed`: a field breaks a rule (e.g. holds a NUL character), per field in `details`",
        );
    }
    if has(ParameterIn::Query) {
        add(operation, 400, "`invalid_query`: a query parameter does not parse (or holds a NUL character)");
    }
    if has(ParameterIn::Path) {
        ensure(operation, 404, "`not_found`: a path parameter names nothing (malformed, unknown, or not yours)");
    }
    if needs_a_token(operation) {
        ensure(
            operation,
            401,
            "`unauthenticated`: no bearer token; `invalid_token`: a token that does not verify, has expired, \
             or whose access was revoked since it was issued",
        );
    }
    if parameters.iter().any(|(at, name)| *at == ParameterIn::Header && name == "idempotency-key") {
        add(operation, 400, "`invalid_idempotency_key`: not 1 to 255 visible ASCII characters");
        if !keeps_its_own_keys(operation) {
            add(operation, 409, "`idempotency_request_in_progress`: a request with this key is still running");
        }
        add(operation, 422, "`idempotency_key_reused`: the key was used with another request");
    }
    if rate_limited {
        add_rate_limited(operation);
    }
}

/// The extension an operation declares when its resource keeps the `Idempotency-Key`
/// itself, without the idempotency layer: a retry waits for the request still running
/// instead of being answered 409.
pub const IDEMPOTENCY_KEPT_BY_RESOURCE: &str = "x-idempotency-kept-by-resource";

fn keeps_its_own_keys(operation: &Operation) -> bool {
    operation
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get(IDEMPOTENCY_KEPT_BY_RESOURCE))
        .is_some_and(|kept| kept == &serde_json::Value::Bool(true))
}

/// Whether the operation requires a bearer token: it names a security scheme and does not
/// also allow anonymous calls (an empty requirement).
fn needs_a_token(operation: &Operation) -> bool {
    operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty() && !requirements.contains(&SecurityRequirement::default()))
}

fn envelope() -> ContentBuilder {
    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope")))
}

/// Documents `status` with `reason` unless the operation documents it already (in its own
/// words, which say the same).
fn ensure(operation: &mut Operation, status: u16, reason: &str) {
    if !operation.responses.responses.contains_key(&status.to_string()) {
        add(operation, status, reason);
    }
}

/// Documents `status` with `reason`, or adds `reason` to the description already there (a
/// platform answer with a code of its own, beside the handler's).
fn add(operation: &mut Operation, status: u16, reason: &str) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(&status.to_string()) {
        Some(RefOr::T(existing)) => append(existing, reason),
        Some(RefOr::Ref(_)) => {}
        None => {
            let response = ResponseBuilder::new().description(reason).content("application/json", envelope().build());
            responses.insert(status.to_string(), RefOr::T(response.build()));
        }
    }
}

fn append(response: &mut Response, reason: &str) {
    // The first word of a reason is its code: skip what the description already names.
    let code = reason.split(':').next().unwrap_or(reason);
    if !response.description.contains(code) {
        response.description = format!("{}; {reason}", response.description.trim_end_matches('.'));
    }
}

fn add_rate_limited(operation: &mut Operation) {
    let reason = "`rate_limited`: too many requests from this client; `Retry-After` says when to try again";
    let responses = &mut operation.responses.responses;
    if let Some(RefOr::T(existing)) = responses.get_mut("429") {
        append(existing, reason);
        return;
    }
    let retry_after = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
        .description(Some("Seconds to wait"))
        .build();
    let response = ResponseBuilder::new()
        .description(reason)
        .content("application/json", envelope().build())
        .header("Retry-After", retry_after)
        .build();
    responses.insert("429".to_owned(), RefOr::T(response));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, PathItem};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder};

    use super::*;

    fn statuses(openapi: &OpenApi, path: &str) -> Vec<String> {
        let item = openapi.paths.paths.get(path).unwrap();
        let operation = item.post.as_ref().or(item.get.as_ref()).unwrap();
        operation.responses.responses.keys().cloned().collect()
    }

    #[test]
    fn every_platform_answer_is_documented_from_what_the_operation_declares() {
        let create = OperationBuilder::new()
            .request_body(Some(RequestBodyBuilder::new().build()))
            .parameter(ParameterBuilder::new().name("Idempotency-Key").parameter_in(ParameterIn::Header))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("201", ResponseBuilder::new().description("Created"))
            .response("400", ResponseBuilder::new().description("`idempotency_key_required`"));
        let read = OperationBuilder::new()
            .parameter(ParameterBuilder::new().name("id").parameter_in(ParameterIn::Path))
            .parameter(ParameterBuilder::new().name("limit").parameter_in(ParameterIn::Query))
            .response("200", ResponseBuilder::new().description("Found"));
        let mut openapi = OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path("/api/v1/widgets", PathItem::new(HttpMethod::Post, create))
                    .path("/health/{id}", PathItem::new(HttpMethod::Get, read)),
            )
            .build();
        document_platform_answers(&mut openapi, "/api/v1/");
        assert_eq!(statuses(&openapi, "/api/v1/widgets"), ["201", "400", "401", "409", "413", "415", "422", "429"]);
        assert_eq!(statuses(&openapi, "/health/{id}"), ["200", "400", "404"], "no body, no token, not rate limited");
        let item = openapi.paths.paths.get("/api/v1/widgets").unwrap();
        let RefOr::T(bad_request) = &item.post.as_ref().unwrap().responses.responses["400"] else { panic!() };
        assert!(bad_request.description.starts_with("`idempotency_key_required`; `malformed_json`"));
        assert!(bad_request.description.contains("`invalid_idempotency_key`"));
    }

    #[test]
    fn a_resource_keeping_its_own_idempotency_keys_is_not_documented_as_answering_409() {
        let mut extensions = utoipa::openapi::extensions::Extensions::default();
        extensions.insert(IDEMPOTENCY_KEPT_BY_RESOURCE.to_owned(), serde_json::Value::Bool(true));
        let place = OperationBuilder::new()
            .parameter(ParameterBuilder::new().name("Idempotency-Key").parameter_in(ParameterIn::Header))
            .extensions(Some(extensions))
            .response("202", ResponseBuilder::new().description("Placed"));
        let mut openapi = OpenApiBuilder::new()
            .paths(PathsBuilder::new().path("/orders", PathItem::new(HttpMethod::Post, place)))
            .build();
        document_platform_answers(&mut openapi, "/api/v1/");
        assert_eq!(statuses(&openapi, "/orders"), ["202", "400", "422"]);
    }
}
