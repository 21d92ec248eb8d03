//! The payment gateway port: what payments asks of a card processor. The module calls it
//! only from jobs, through [`Guarded`] (a timeout and a circuit breaker), with an
//! idempotency key per operation, so a retried call never moves money twice.

mod guarded;
mod sandbox;

use payments_contract::events::FailureCode;
use platform::money::Money;
use uuid::Uuid;

pub use guarded::BreakerSettings;
pub(crate) use guarded::{BreakerState, Guarded};
#[cfg(feature = "sandbox")]
pub use sandbox::set_sandbox_outage_until;
pub use sandbox::{SANDBOX_SCHEMA, SandboxConfig, SandboxGateway, SandboxSignature, SignatureError, WebhookTarget};

/// A card processor. Every operation carries an idempotency key: the same key again answers
/// the first outcome without doing anything again (as Stripe and Adyen do).
#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync + std::fmt::Debug {
    /// Holds `amount` on the payment method. The answer may be [`Authorization::Processing`]:
    /// the outcome then arrives by webhook, or by [`PaymentGateway::lookup`].
    async fn authorize(&self, request: &AuthorizeRequest) -> Result<Authorization, GatewayError>;

    /// Takes `amount` (at most what was authorized) of an authorization.
    async fn capture(&self, request: &CaptureRequest) -> Result<(), GatewayError>;

    /// Releases an authorization that will not be captured.
    async fn void(&self, request: &VoidRequest) -> Result<(), GatewayError>;

    /// Gives back `amount` of a capture; returns the gateway's id of the refund.
    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError>;

    /// What the gateway knows of the payment with our `payment_id` (reconciliation).
    async fn lookup(&self, payment_id: Uuid) -> Result<GatewayPayment, GatewayError>;
}

#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// Our payment id, which the gateway keeps as the payment's reference.
    pub payment_id: Uuid,
    pub amount: Money,
    /// The customer's payment method token.
    pub payment_method: String,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct CaptureRequest {
    pub payment_id: Uuid,
    /// The gateway's id of the authorization.
    pub reference: String,
    pub amount: Money,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct VoidRequest {
    pub payment_id: Uuid,
    pub reference: String,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub payment_id: Uuid,
    pub reference: String,
    pub amount: Money,
    pub idempotency_key: String,
}

/// What an authorization request answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The amount is held; `reference` names the authorization.
    Approved { reference: String },
    /// Accepted; the outcome comes later (webhook or lookup).
    Processing { reference: String },
}

/// A payment as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayPayment {
    /// The gateway never saw it.
    Unknown,
    Processing {
        reference: String,
    },
    Authorized {
        reference: String,
    },
    Captured {
        reference: String,
    },
    Voided {
        reference: String,
    },
    Declined {
        code: FailureCode,
        message: String,
    },
}

/// How a gateway call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The customer's payment method was refused: final, not the gateway's fault.
    #[error("declined ({}): {message}", code.as_str())]
    Declined { code: FailureCode, message: String },
    /// The gateway refused the request itself (a 4xx): final; retrying cannot help.
    #[error("refused by the gateway: {0}")]
    Refused(String),
    /// The gateway failed or could not be reached (a 5xx, a reset connection): retry.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// No answer in time; whether it happened is unknown: retry with the same key.
    #[error("the gateway did not answer in time")]
    Timeout,
    /// The circuit breaker is open: the gateway was not called.
    #[error("the circuit breaker is open; the gateway was not called")]
    BreakerOpen,
}

impl GatewayError {
    /// Whether another attempt (with the same idempotency key) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout | Self::BreakerOpen)
    }
}
