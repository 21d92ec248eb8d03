//! The server side of ports: what every module's internal API (`/internal/<m>/v1`) runs
//! behind. [`require_service_token`] admits only service tokens of modules allowed to call
//! (a user's token, or a module that does not declare the port, is refused), and
//! [`PortCall`] rebuilds the caller's [`CallContext`] from the headers the transport sends.

use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use shared_kernel::port::CallContext;
use utoipa_axum::router::OpenApiRouter;

use super::headers;
use super::keys::ServiceKeys;
use crate::Module;
use crate::auth::bearer_token;
use crate::http::ApiError;
use crate::http::request_id::{RequestId, TraceParent};

/// The longest deadline a caller may ask the callee to honour.
const LONGEST_DEADLINE: Duration = Duration::from_secs(60);

/// Who may call one module's internal API.
#[derive(Debug, Clone)]
pub struct InternalAccess {
    pub keys: ServiceKeys,
    /// The module whose API this is: the `aud` its tokens must name.
    pub callee: &'static str,
    /// The modules allowed to call it (its contract's `CALLERS`).
    pub callers: Vec<&'static str>,
}

/// `module`'s internal API, nested under `/internal/<module>/v1` behind
/// [`require_service_token`] (only the callers its manifest's served ports name get in), or
/// `None` when it serves no port.
pub fn internal_api(module: &dyn Module, keys: &ServiceKeys) -> Option<OpenApiRouter> {
    let served = module.manifest().ports_served;
    if served.is_empty() {
        return None;
    }
    let access = InternalAccess {
        keys: keys.clone(),
        callee: module.name(),
        callers: served.iter().flat_map(|port| port.callers.iter().copied()).collect(),
    };
    let routes = crate::http::stack::tag_module_routes(module.name(), module.internal_routes())
        .route_layer(from_fn_with_state(access, require_service_token));
    Some(OpenApiRouter::new().nest(&format!("/internal/{}/v1", module.name()), routes))
}

/// The verified calling module, in the request's extensions.
#[derive(Debug, Clone)]
pub struct CallingModule(pub String);

/// Middleware for `/internal/<m>/v1`: 401 without a valid service token for this module,
/// 403 for a module not allowed to call it.
pub async fn require_service_token(State(access): State<InternalAccess>, mut request: Request, next: Next) -> Response {
    let Some(token) = bearer_token(request.headers()) else {
        return ApiError::unauthenticated().into_response();
    };
    let caller = match access.keys.verify(token, access.callee) {
        Ok(caller) => caller,
        Err(reason) => {
            tracing::info!(%reason, callee = access.callee, "refused a service token");
            return ApiError::invalid_token().into_response();
        }
    };
    if !access.callers.iter().any(|allowed| *allowed == caller) {
        tracing::warn!(caller, callee = access.callee, "a module called a port its manifest does not declare");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "port_not_declared",
            format!("The {caller} module does not declare a port of the {} module.", access.callee),
        )
        .into_response();
    }
    request.extensions_mut().insert(CallingModule(caller));
    next.run(request).await
}

/// Extractor: the [`CallContext`] the caller sent, continuing its correlation, causation,
/// actor, trace and deadline. Never rejects.
#[derive(Debug, Clone)]
pub struct PortCall(pub CallContext);

impl<S: Send + Sync> FromRequestParts<S> for PortCall {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request_id = parts.extensions.get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default();
        let deadline = header(headers::DEADLINE_MS)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|ms| Instant::now() + Duration::from_millis(ms).min(LONGEST_DEADLINE));
        Ok(Self(CallContext {
            correlation_id: header(headers::CORRELATION_ID).unwrap_or_else(|| request_id.clone()),
            causation_id: header(headers::CAUSATION_ID),
            actor: header(headers::ACTOR),
            request_id: Some(request_id),
            traceparent: parts.extensions.get::<TraceParent>().map(|t| t.0.clone()),
            deadline,
        }))
    }
}
