//! What a port's HTTP client (the contract's `client` feature) is written against: one call
//! to a module's internal API and the ways it can fail. The contract says which path, body
//! and error codes mean what; the [`Transport`] (platform's resilient HTTP client) says how
//! the bytes travel — deadline, retries, circuit breaker, service token, context headers — so
//! a contract crate needs no HTTP stack of its own.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CallContext;

/// The HTTP method of a port call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One call to a module's internal API, relative to `/internal/<module>/v1`.
#[derive(Debug, Clone)]
pub struct RemoteCall {
    pub method: Method,
    /// The path under the module's internal API, e.g. `/quote` or `/users/<id>/contact`.
    pub path: String,
    /// The JSON body of a `POST`.
    pub body: Option<serde_json::Value>,
    /// The port method's name, for metrics and logs (`quote`).
    pub operation: &'static str,
    /// Whether the call may be repeated with the same effect; only these are retried.
    pub idempotent: bool,
}

impl RemoteCall {
    /// A read: `GET path`, retried on transient failures.
    pub fn get(operation: &'static str, path: impl Into<String>) -> Self {
        Self { method: Method::Get, path: path.into(), body: None, operation, idempotent: true }
    }

    /// `POST path` with `body`; say whether repeating it is harmless with
    /// [`RemoteCall::idempotent`].
    ///
    /// # Errors
    /// A body that cannot be written as JSON.
    pub fn post(operation: &'static str, path: impl Into<String>, body: &impl Serialize) -> Result<Self, RemoteError> {
        let body =
            serde_json::to_value(body).map_err(|e| RemoteError::Invalid(format!("encoding the request: {e}")))?;
        Ok(Self { method: Method::Post, path: path.into(), body: Some(body), operation, idempotent: false })
    }

    /// Marks the call as safe to repeat (a query sent as `POST`).
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
}

/// Why a remote call gave no answer the caller can use. Contract clients map these onto their
/// port's error enum: `Unavailable` and `Timeout` onto the cases of the same name, so callers
/// behave the same in both topologies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The module could not be reached or failed (connection refused, 5xx, circuit open).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No answer before the call's deadline.
    #[error("no answer before the deadline")]
    Timeout,
    /// The module answered with an error of its API (a 4xx in the error envelope).
    #[error("refused with {status} {code}: {message}")]
    Refused { status: u16, code: String, message: String },
    /// An answer that does not fit the contract.
    #[error("invalid answer: {0}")]
    Invalid(String),
}

/// How port calls travel to a module in another process.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends `call` with `ctx`'s deadline and context; returns the `data` of the answer.
    ///
    /// # Errors
    /// [`RemoteError`], saying whether the module was unreachable, slow or said no.
    async fn call(&self, ctx: &CallContext, call: RemoteCall) -> Result<serde_json::Value, RemoteError>;
}

/// Sends `call` and reads the answer as `T`.
///
/// # Errors
/// The transport's failures, or [`RemoteError::Invalid`] when the answer is not a `T`.
pub async fn call_as<T: DeserializeOwned>(
    transport: &dyn Transport,
    ctx: &CallContext,
    call: RemoteCall,
) -> Result<T, RemoteError> {
    let operation = call.operation;
    let data = transport.call(ctx, call).await?;
    serde_json::from_value(data).map_err(|e| RemoteError::Invalid(format!("{operation}: {e}")))
}
