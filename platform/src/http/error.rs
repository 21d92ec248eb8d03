//! One error type for every failure an HTTP caller can see, rendered as the documented
//! envelope `{"error": {"code", "message", "details", "request_id"}}`.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The error envelope every non-2xx response carries.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "validation_failed", "message": "The request is not valid.", "details": [{"field": "email", "code": "email", "message": "must be an email address"}], "request_id": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81"}}))]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code (`snake_case`); clients branch on this, not on `message`.
    pub code: String,
    /// A sentence for humans.
    pub message: String,
    /// Structured specifics, e.g. per-field validation failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// The `x-request-id` of the request, to quote when reporting a problem.
    pub request_id: Option<String>,
}

pub use shared_kernel::FieldError;

/// A failure answered over HTTP. Build it with the constructors; domain error enums convert
/// into it with `From` impls in their modules. Boxed, so `Result<_, ApiError>` stays small.
#[derive(Debug)]
pub struct ApiError(Box<Parts>);

#[derive(Debug)]
struct Parts {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    details: Option<Value>,
    retry_after: Option<Duration>,
    www_authenticate: Option<&'static str>,
    /// Server-side cause, logged once and never sent.
    source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self(Box::new(Parts {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after: None,
            www_authenticate: None,
            source: None,
        }))
    }

    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 without credentials.
    pub fn unauthenticated() -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "This endpoint needs a bearer token.");
        error.0.www_authenticate = Some("Bearer");
        error
    }

    /// 401 with credentials that do not verify.
    pub fn invalid_token() -> Self {
        let mut error =
            Self::new(StatusCode::UNAUTHORIZED, "invalid_token", "The bearer token is invalid or has expired.");
        error.0.www_authenticate = Some("Bearer error=\"invalid_token\"");
        error
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "You are not allowed to do this.")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} was not found."))
    }

    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422 for a request that is well-formed but breaks a rule.
    pub fn unprocessable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 422 with one entry per failed field.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let details = serde_json::to_value(&fields).ok();
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "The request is not valid.")
            .with_details_value(details)
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests; slow down.");
        error.0.retry_after = Some(retry_after);
        error
    }

    /// 503 for a dependency that is down; the client may retry after the given time.
    pub fn unavailable(code: impl Into<Cow<'static, str>>, message: impl Into<String>, retry_after: Duration) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        error.0.retry_after = Some(retry_after);
        error
    }

    /// 500: the cause is logged, the client learns nothing internal.
    ///
    /// One exception: a database that refused text as unstorable (SQLSTATE `22021`, `22P05`:
    /// a NUL character, an encoding it cannot hold) was handed the client's text, so the
    /// answer is 422 `invalid_text`, never an outage. The extractors refuse such text first;
    /// this is the net under any path they do not cover, and logs its cause like a 500 does.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let source = source.into();
        let refused_text = source
            .chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .any(|error| crate::db::has_sqlstate(error, "22021") || crate::db::has_sqlstate(error, "22P05"));
        let mut error = if refused_text {
            Self::unprocessable("invalid_text", "The request holds text that cannot be stored (e.g. a NUL character).")
        } else {
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.")
        };
        error.0.source = Some(source);
        error
    }

    /// The generic envelope for a status no handler described (framework and middleware
    /// responses such as 405, 413 or a timeout).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "No resource lives at this URL."),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "This URL does not accept that method."),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "The request body is too large."),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "Send the body as application/json."),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "The request took too long."),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "The service is unavailable; try again shortly."),
            StatusCode::UNAUTHORIZED => ("unauthenticated", "This endpoint needs a bearer token."),
            StatusCode::FORBIDDEN => ("forbidden", "You are not allowed to do this."),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "Too many requests; slow down."),
            s if s.is_server_error() => ("internal_error", "Something went wrong on our side."),
            _ => ("bad_request", "The request could not be handled."),
        };
        Self::new(status, code, message)
    }

    pub fn with_details(self, details: impl Serialize) -> Self {
        let details = serde_json::to_value(details).ok();
        self.with_details_value(details)
    }

    fn with_details_value(mut self, details: Option<Value>) -> Self {
        self.0.details = details;
        self
    }

    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.0.retry_after = Some(retry_after);
        self
    }

    /// Keeps a server-side cause for the log without changing what the client sees.
    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &str {
        &self.0.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.0.status.as_u16(), self.0.code, self.0.message)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(error)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

/// Left in the response's extensions by [`ApiError`] so the envelope middleware can add the
/// request id and log the failure once, with its cause, inside the request span.
#[derive(Debug, Clone)]
pub(crate) struct ErrorReport {
    pub body: ErrorBody,
    /// `{:#}` of the source chain, for the log only.
    pub cause: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = *self.0;
        let body = ErrorBody {
            code: parts.code.into_owned(),
            message: parts.message,
            details: parts.details,
            request_id: None,
        };
        let mut response = (parts.status, axum::Json(ErrorEnvelope { error: body.clone() })).into_response();
        let headers = response.headers_mut();
        if let Some(retry_after) = parts.retry_after {
            // Retry-After is whole seconds; round up so clients never come back too early.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if let Some(challenge) = parts.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        let cause = parts.source.map(|source| format!("{source:#}"));
        response.extensions_mut().insert(ErrorReport { body, cause });
        response
    }
}
