//! `x-request-id`: kept when the caller sends a sane one, generated (UUIDv7) otherwise, put on
//! the request span, every error body and the response. Also the W3C trace context: a
//! caller's `traceparent` is continued (a new span in its trace), else a trace starts here,
//! so events the request causes carry it and their handling can be tied back to it. When
//! spans are exported the request span itself is that new span (`telemetry`).

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");

/// The request's id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The request's W3C trace context (`00-<trace id>-<span id>-01`), in its extensions.
#[derive(Debug, Clone)]
pub struct TraceParent(pub String);

impl TraceParent {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace id, shared by everything the request causes.
    pub fn trace_id(&self) -> &str {
        crate::bus::event::traceparent::trace_id(&self.0).unwrap_or("")
    }
}

fn acceptable(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='));
    sane.then(|| text.to_owned())
}

/// The caller's `traceparent` header, if it sent one.
pub fn incoming_traceparent(request: &Request) -> Option<&str> {
    request.headers().get(&TRACEPARENT_HEADER).and_then(|v| v.to_str().ok())
}

/// Middleware, inside the request span: the request's [`TraceParent`] is that span's when
/// spans are exported (its parent is the caller's, see `stack`), else a new span id in the
/// caller's trace (or a new trace). Its trace id goes on the span, so logs name it.
pub async fn continue_trace(mut request: Request, next: Next) -> Response {
    let traceparent = crate::telemetry::current_traceparent()
        .unwrap_or_else(|| crate::bus::event::traceparent::child_of(incoming_traceparent(&request)));
    let trace = TraceParent(traceparent);
    tracing::Span::current().record("trace_id", trace.trace_id());
    request.extensions_mut().insert(trace);
    next.run(request).await
}

/// Middleware: assigns the id before anything else runs and echoes it on the response.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(acceptable)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID_HEADER.clone(), value.clone());
        request.extensions_mut().insert(RequestId(id));
        let mut response = next.run(request).await;
        response.headers_mut().insert(REQUEST_ID_HEADER.clone(), value);
        return response;
    }
    next.run(request).await
}
