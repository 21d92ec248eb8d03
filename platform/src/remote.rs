//! Modules in other processes (DESIGN §5, §6): what lets a port be served by one process and
//! called from another.
//!
//! - [`ServiceKeys`]: each module's Ed25519 key pair; short-lived service tokens prove which
//!   module calls (ADR 0014).
//! - [`HttpTransport`]: the resilient HTTP client port clients run on (deadline, retries with
//!   jitter, circuit breaker, context headers), with [`PortMetrics`].
//! - [`require_service_token`] and [`PortCall`]: the callee's side.

mod keys;
mod server;
mod transport;

pub use keys::{SERVICE_TOKEN_ISSUER, ServiceKeys, ServiceTokenError};
pub use server::{CallingModule, InternalAccess, PortCall, internal_api, require_service_token};
pub use transport::{HttpTransport, PortMetrics, TransportSettings};

/// The headers a port call carries besides its service token (`x-request-id` and
/// `traceparent` are the ones every request already has).
pub mod headers {
    pub const REQUEST_ID: &str = "x-request-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const CORRELATION_ID: &str = "x-correlation-id";
    pub const CAUSATION_ID: &str = "x-causation-id";
    pub const ACTOR: &str = "x-actor";
    /// Milliseconds the caller still waits for the answer (relative, so clocks need not agree).
    pub const DEADLINE_MS: &str = "x-deadline-ms";
}
