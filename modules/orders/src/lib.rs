//! The orders module: customers place orders priced by inventory, and each order moves through
//! the order saga (docs/saga.md) as inventory and payments answer. Other modules see only
//! `orders-contract`.

mod domain;
mod http;
mod jobs;
mod metrics;
mod service;
mod settings;
mod store;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use inventory_contract::InventoryApi;
use platform::auth::JwtVerifier;
use platform::bus::Subscription;
use platform::clock::{Clock, SystemClock};
use platform::db::ModuleSchema;
use platform::jobs::JobQueue;
use platform::metrics::Metrics;
use platform::{Manifest, Module, ModuleDescriptor};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use utoipa_axum::router::OpenApiRouter;

pub use settings::OrdersArgs;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/orders");

/// What `app` needs before it has a pool: the schema to provision and migrate.
pub const DESCRIPTOR: ModuleDescriptor =
    ModuleDescriptor { schema: ModuleSchema { name: "orders", migrations: &MIGRATIONS }, manifest };

/// How the module behaves; [`OrdersConfig::default`] gives the documented values.
#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// How long after its stock is reserved an order waits for payment (15 minutes).
    pub payment_timeout: Duration,
    /// How long placing an order waits for inventory's quote (3 seconds).
    pub quote_timeout: Duration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self { payment_timeout: Duration::from_secs(15 * 60), quote_timeout: Duration::from_secs(3) }
    }
}

/// The orders module, built from its pool, the inventory port and the process's verifier.
#[derive(Debug, Clone)]
pub struct OrdersModule {
    service: Arc<service::OrdersService>,
    verifier: JwtVerifier,
    news: Option<platform::bus::listener::Wakeups>,
}

impl OrdersModule {
    pub fn new(pool: PgPool, inventory: Arc<dyn InventoryApi>, verifier: JwtVerifier, config: OrdersConfig) -> Self {
        Self::with_clock(pool, inventory, verifier, config, Arc::new(SystemClock))
    }

    /// As [`OrdersModule::new`], telling time by `clock`.
    pub fn with_clock(
        pool: PgPool,
        inventory: Arc<dyn InventoryApi>,
        verifier: JwtVerifier,
        config: OrdersConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let service = service::OrdersService { pool, inventory, clock, config, metrics: Default::default() };
        Self { service: Arc::new(service), verifier, news: None }
    }

    /// Registers the saga's metrics (`bulkhead_orders_saga_*`) in the process's registry.
    #[must_use]
    pub fn with_metrics(self, metrics: &Metrics) -> Self {
        self.service.metrics.register(metrics);
        self
    }

    /// Order event streams wait for the bus's news of their order (`wakeups`, which the
    /// process's bus feeds) instead of polling the timeline.
    #[must_use]
    pub fn with_wakeups(mut self, wakeups: &platform::bus::listener::Wakeups) -> Self {
        self.news = Some(wakeups.clone());
        self
    }
}

impl Module for OrdersModule {
    fn name(&self) -> &'static str {
        DESCRIPTOR.schema.name
    }

    fn public_routes(&self) -> OpenApiRouter {
        http::router(self.service.clone(), self.verifier.clone(), self.news.clone())
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        subscriptions::all(&self.service)
    }

    fn jobs(&self) -> Vec<JobQueue> {
        vec![JobQueue::new(jobs::PaymentTimeoutHandler(self.service.clone())).retry(platform::jobs::DEADLINE_RETRY)]
    }

    fn manifest(&self) -> Manifest {
        manifest()
    }
}

/// What the module uses and offers (DESIGN §2), known without building it.
fn manifest() -> Manifest {
    Manifest {
        ports_used: vec![inventory_contract::PORT],
        ports_served: Vec::new(),
        events_published: orders_contract::events::PUBLISHED.to_vec(),
        events_subscribed: [
            inventory_contract::events::SAGA_EVENTS.as_slice(),
            payments_contract::events::SAGA_EVENTS.as_slice(),
        ]
        .concat(),
        jobs: vec![service::PaymentTimeout::QUEUE_NAME],
    }
}
