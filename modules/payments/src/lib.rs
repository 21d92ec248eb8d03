//! The payments module: one payment per order, authorized then captured through the
//! [`PaymentGateway`] port in jobs (behind a timeout and a circuit breaker), voided when the
//! order is cancelled first, refunded in full or in part, every money movement in an
//! immutable ledger, and a reconciliation job for payments the gateway left undecided
//! (docs/payments.md). Other modules see only `payments-contract`: the payment events.

mod domain;
mod gateway;
mod http;
mod jobs;
mod service;
mod settings;
mod store;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use orders_contract::events::{OrderCancelled, PaymentRequested, RefundRequested};
use platform::auth::JwtVerifier;
use platform::bus::Subscription;
use platform::bus::event::EventRef;
use platform::clock::{Clock, SystemClock};
use platform::db::ModuleSchema;
use platform::jobs::{Job, JobQueue};
use platform::metrics::Metrics;
use platform::{Manifest, Module, ModuleDescriptor};
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use utoipa_axum::router::OpenApiRouter;

pub use gateway::{
    Authorization, AuthorizeRequest, BreakerSettings, CaptureRequest, GatewayError, GatewayPayment, PaymentGateway,
    RefundRequest, SANDBOX_SCHEMA, VoidRequest,
};
/// The sandbox gateway itself, for tests and the chaos bench (feature `sandbox`).
#[cfg(feature = "sandbox")]
pub use gateway::{
    SandboxConfig, SandboxGateway, SandboxSignature, SignatureError, WebhookTarget, set_sandbox_outage_until,
};

pub use settings::PaymentsArgs;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/payments");

/// What `app` needs before it has a pool: the schema to provision and migrate.
pub const DESCRIPTOR: ModuleDescriptor =
    ModuleDescriptor { schema: ModuleSchema { name: "payments", migrations: &MIGRATIONS }, manifest };

/// The path of the sandbox gateway's webhook, relative to the public base URL.
pub const SANDBOX_WEBHOOK_PATH: &str = "/api/v1/payments/webhooks/sandbox";

/// How the module behaves; [`PaymentsConfig::new`] gives the documented values.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// How long one gateway call may take before it counts as a timeout (10 s).
    pub gateway_timeout: Duration,
    /// When the gateway's circuit breaker opens, and for how long.
    pub breaker: BreakerSettings,
    /// Backoff of failed gateway jobs: from `retry_base` (1 s), doubling, up to `retry_max`
    /// (1 min).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts of each gateway job (25): they outlast a circuit breaker's open period several
    /// times over; reconciliation asks again for payments and refunds whose jobs gave up.
    pub job_attempts: u32,
    /// A payment pending or authorized for longer than this is looked up at the gateway (5 min).
    pub reconcile_after: Duration,
    /// How often reconciliation runs (1 min).
    pub reconcile_every: Duration,
    /// How long after its creation reconciliation stops waiting for a payment the gateway
    /// does not settle, ends it as failed and flags it for a person (24 h; ADR 0021).
    pub give_up_after: Duration,
    /// The secret the sandbox signs its webhooks with.
    pub webhook_secret: SecretString,
    /// How far a webhook's timestamp may be from now (5 min, as Stripe's).
    pub webhook_tolerance: Duration,
}

impl PaymentsConfig {
    /// The documented defaults, with the webhook secret shared with the gateway.
    pub fn new(webhook_secret: SecretString) -> Self {
        Self {
            gateway_timeout: Duration::from_secs(10),
            breaker: BreakerSettings::default(),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            job_attempts: 25,
            reconcile_after: Duration::from_secs(5 * 60),
            reconcile_every: Duration::from_secs(60),
            give_up_after: Duration::from_secs(24 * 3600),
            webhook_secret,
            webhook_tolerance: Duration::from_secs(5 * 60),
        }
    }
}

/// The payments module, built from its pool, the gateway, the process's verifier and metrics.
#[derive(Debug, Clone)]
pub struct PaymentsModule {
    service: Arc<service::PaymentsService>,
    verifier: JwtVerifier,
}

impl PaymentsModule {
    pub fn new(
        pool: PgPool,
        gateway: Arc<dyn PaymentGateway>,
        verifier: JwtVerifier,
        config: PaymentsConfig,
        metrics: &Metrics,
    ) -> Self {
        Self::with_clock(pool, gateway, verifier, config, metrics, Arc::new(SystemClock))
    }

    /// As [`PaymentsModule::new`], telling time by `clock`.
    pub fn with_clock(
        pool: PgPool,
        gateway: Arc<dyn PaymentGateway>,
        verifier: JwtVerifier,
        config: PaymentsConfig,
        metrics: &Metrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let gateway = gateway::Guarded::new(gateway, config.gateway_timeout, &config.breaker, metrics);
        let attention = service::attention::AttentionMetrics::register(metrics);
        Self { service: Arc::new(service::PaymentsService { pool, gateway, clock, config, attention }), verifier }
    }
}

impl Module for PaymentsModule {
    fn name(&self) -> &'static str {
        DESCRIPTOR.schema.name
    }

    fn public_routes(&self) -> OpenApiRouter {
        http::router(self.service.clone(), self.verifier.clone())
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        subscriptions::all(&self.service)
    }

    fn jobs(&self) -> Vec<JobQueue> {
        jobs::queues(&self.service)
    }

    fn manifest(&self) -> Manifest {
        manifest()
    }
}

/// What the module uses and offers (DESIGN §2), known without building it.
fn manifest() -> Manifest {
    Manifest {
        ports_used: Vec::new(),
        ports_served: Vec::new(),
        events_published: payments_contract::events::SAGA_EVENTS.to_vec(),
        events_subscribed: vec![
            EventRef::of::<PaymentRequested>(),
            EventRef::of::<OrderCancelled>(),
            EventRef::of::<RefundRequested>(),
        ],
        jobs: vec![
            service::Authorize::QUEUE,
            service::Capture::QUEUE,
            service::Void::QUEUE,
            service::Release::QUEUE,
            service::Refund::QUEUE,
            service::Reconcile::QUEUE,
        ],
    }
}
