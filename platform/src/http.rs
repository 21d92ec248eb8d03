//! The HTTP kit: envelopes, errors, extractors, pagination, idempotency, rate limiting and
//! the shared middleware stack (DESIGN §7).

pub mod client_address;
pub mod conditional;
pub mod context;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod listener;
pub mod openapi;
pub mod pagination;
pub mod rate_limit;
pub mod request_id;
pub mod stack;

pub use context::RequestContext;
pub use envelope::{Created, Data, Envelope};
pub use error::{ApiError, ErrorBody, ErrorEnvelope, FieldError};
pub use extract::{Json, Path, Query, ValidJson};
pub use idempotency::{Idempotency, IdempotencyKey};
pub use pagination::{Page, PageQuery, PageRequest, Sort};
pub use rate_limit::ClientRateLimit;
pub use request_id::{RequestId, TraceParent};
pub use stack::HttpSettings;
