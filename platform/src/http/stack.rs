//! The middleware every router gets, outermost first: request id → trace span → metrics →
//! CORS → compression → security headers → error envelope → panic catcher → timeout → body
//! limit. (Per-client rate limiting goes on the API routes only, see [`super::rate_limit`].) The envelope layer sits inside compression and outside
//! everything that can answer on its own (timeouts, limits, panics, axum's 404/405), so
//! every failure leaves in the documented shape.

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::map_response_body::MapResponseBodyLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use super::client_address;
use super::error::{ApiError, ErrorEnvelope, ErrorReport};
use super::request_id::{self, RequestId};
use crate::metrics::{Metrics, track_http};

/// Settings of the shared middleware.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    /// Origins allowed by CORS; empty means same-origin only.
    pub cors_origins: Vec<HeaderValue>,
    /// Proxies whose `X-Forwarded-For` names the client ([`super::client_address`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Adds the envelope 404 and 405 answers and the shared middleware to a router.
pub fn apply(router: Router, settings: &HttpSettings, metrics: Metrics) -> Router {
    let router = router
        .fallback(|| async { ApiError::for_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED) });
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(settings.cors_origins.clone()))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            request_id::REQUEST_ID_HEADER.clone(),
        ])
        .expose_headers([header::LOCATION, header::RETRY_AFTER, header::ETAG, request_id::REQUEST_ID_HEADER.clone()])
        .max_age(Duration::from_secs(600));
    router.layer(
        ServiceBuilder::new()
            .layer(from_fn(request_id::assign))
            .layer(from_fn_with_state(settings.trusted_proxies.clone().into(), client_address::resolve))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    // Failures are logged once, with their cause, by `finalize_errors`.
                    .on_failure(()),
            )
            .layer(from_fn(request_id::continue_trace))
            .layer(from_fn_with_state(metrics, track_http))
            .layer(cors)
            .layer(CompressionLayer::new())
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("frame-ancestors 'none'"),
            ))
            .layer(from_fn(finalize_errors))
            .layer(CatchPanicLayer::custom(|_panic| {
                ApiError::internal(anyhow::anyhow!("a handler panicked")).into_response()
            }))
            .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
            // The timeout answers with an empty body of the inner type; give it axum's.
            .layer(MapResponseBodyLayer::new(axum::body::Body::new))
            .layer(RequestBodyLimitLayer::new(settings.body_limit_bytes)),
    )
}

/// The span of one request, named as OpenTelemetry names server spans (`POST
/// /api/v1/orders/{id}`, the route template). Its parent is the caller's `traceparent`, so a
/// call from another process (a port call to `/internal/...`, a client that traces) continues
/// the caller's trace. Module routes fill in `bulkhead.module` ([`tag_module_routes`]).
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request.extensions().get::<RequestId>().map_or("", RequestId::as_str);
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        trace_id = tracing::field::Empty,
        "bulkhead.module" = tracing::field::Empty,
        "http.route" = route,
        "otel.name" = format!("{} {route}", request.method()),
        "otel.kind" = "server",
    );
    if let Some(incoming) = request_id::incoming_traceparent(request) {
        crate::telemetry::continue_trace(&span, incoming);
    }
    span
}

/// A module's routes, each naming the module on its request span (`bulkhead.module`).
pub fn tag_module_routes(module: &'static str, routes: OpenApiRouter) -> OpenApiRouter {
    let (router, spec) = routes.split_for_parts();
    // A layer on a router without routes would apply to nothing (axum refuses it).
    let router = if router.has_routes() { router.route_layer(from_fn_with_state(module, tag_module)) } else { router };
    OpenApiRouter::with_openapi(spec).merge(router.into())
}

async fn tag_module(State(module): State<&'static str>, request: Request, next: Next) -> Response {
    tracing::Span::current().record(crate::telemetry::MODULE_ATTRIBUTE, module);
    next.run(request).await
}

/// Puts every 4xx/5xx into the envelope with the request id, and logs the failure once, with
/// its cause, inside the request span. Responses made by [`ApiError`] carry their body in an
/// extension; anything else (axum, tower-http) gets the generic envelope for its status.
async fn finalize_errors(request: Request, next: Next) -> Response {
    let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone());
    let response = next.run(request).await;
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let report = match parts.extensions.remove::<ErrorReport>() {
        Some(report) => report,
        // A stored envelope (an idempotent replay) keeps its code and details; anything else
        // (axum, tower-http) gets the generic envelope of its status.
        None => match axum::body::to_bytes(body, 64 * 1024)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<ErrorEnvelope>(&b).ok())
        {
            Some(envelope) => ErrorReport { body: envelope.error, cause: None },
            None => generic_report(parts.status),
        },
    };
    if parts.status.is_server_error() {
        tracing::error!(status = parts.status.as_u16(), code = %report.body.code, cause = report.cause.as_deref().unwrap_or("-"), "request failed");
    } else if let Some(cause) = &report.cause {
        // A refusal that carries a cause was found late (e.g. text the database refused):
        // worth a look, since an earlier check should have caught it.
        tracing::warn!(status = parts.status.as_u16(), code = %report.body.code, cause, "request refused late");
    } else {
        tracing::debug!(status = parts.status.as_u16(), code = %report.body.code, "request refused");
    }
    let mut body = report.body;
    body.request_id = request_id;
    let bytes = serde_json::to_vec(&ErrorEnvelope { error: body }).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn generic_report(status: StatusCode) -> ErrorReport {
    let mut response = ApiError::for_status(status).into_response();
    response
        .extensions_mut()
        .remove::<ErrorReport>()
        .unwrap_or_else(|| unreachable!("ApiError responses always carry their report"))
}
