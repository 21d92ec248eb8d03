//! The inventory module: the catalogue (products, prices), stock levels and their movements,
//! and the reservations the order saga asks for (docs/saga.md). Other modules see only
//! `inventory-contract`: the `InventoryApi` quote port and the `inventory.*` events.

mod demo;
mod domain;
mod http;
mod jobs;
mod service;
mod settings;
mod store;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use inventory_contract::InventoryApi;
use orders_contract::events::{OrderCancelled, OrderConfirmed, OrderPlaced};
use platform::auth::JwtVerifier;
use platform::bus::Subscription;
use platform::bus::event::EventRef;
use platform::clock::{Clock, SystemClock};
use platform::db::ModuleSchema;
use platform::jobs::JobQueue;
use platform::{Manifest, Module, ModuleDescriptor, ServedPort};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use utoipa_axum::router::OpenApiRouter;

pub use settings::InventoryArgs;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/inventory");

/// What `app` needs before it has a pool: the schema to provision and migrate.
pub const DESCRIPTOR: ModuleDescriptor =
    ModuleDescriptor { schema: ModuleSchema { name: "inventory", migrations: &MIGRATIONS }, manifest };

/// How the module behaves; [`InventoryConfig::default`] gives the documented values.
#[derive(Debug, Clone)]
pub struct InventoryConfig {
    /// How long a reservation holds its units before it expires (30 minutes; longer than
    /// orders' payment timeout, so that one normally wins).
    pub reservation_ttl: Duration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self { reservation_ttl: Duration::from_secs(30 * 60) }
    }
}

/// The inventory module, built from its pool, the process's verifier and its config.
#[derive(Debug, Clone)]
pub struct InventoryModule {
    service: Arc<service::InventoryService>,
    verifier: JwtVerifier,
}

impl InventoryModule {
    pub fn new(pool: PgPool, verifier: JwtVerifier, config: InventoryConfig) -> Self {
        Self::with_clock(pool, verifier, config, Arc::new(SystemClock))
    }

    /// As [`InventoryModule::new`], telling time by `clock`.
    pub fn with_clock(pool: PgPool, verifier: JwtVerifier, config: InventoryConfig, clock: Arc<dyn Clock>) -> Self {
        Self { service: Arc::new(service::InventoryService { pool, clock, config }), verifier }
    }

    /// The in-process implementation of the inventory port.
    pub fn api(&self) -> Arc<dyn InventoryApi> {
        self.service.clone()
    }

    /// Fills an empty catalogue with about twenty demo products and their stock (first start
    /// of a fresh database). Returns how many it added; safe to call on every start.
    ///
    /// # Errors
    /// Database failures.
    pub async fn seed_demo_catalogue(&self) -> anyhow::Result<usize> {
        demo::seed(&self.service).await
    }
}

impl Module for InventoryModule {
    fn name(&self) -> &'static str {
        DESCRIPTOR.schema.name
    }

    fn public_routes(&self) -> OpenApiRouter {
        http::router(self.service.clone(), self.verifier.clone())
    }

    fn internal_routes(&self) -> OpenApiRouter {
        http::internal_router(self.service.clone())
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        subscriptions::all(&self.service)
    }

    fn jobs(&self) -> Vec<JobQueue> {
        vec![JobQueue::new(jobs::ReservationExpiryHandler(self.service.clone())).retry(platform::jobs::DEADLINE_RETRY)]
    }

    fn manifest(&self) -> Manifest {
        manifest()
    }
}

/// What the module uses and offers (DESIGN §2), known without building it.
fn manifest() -> Manifest {
    Manifest {
        ports_used: Vec::new(),
        ports_served: vec![ServedPort { port: inventory_contract::PORT, callers: inventory_contract::CALLERS }],
        events_published: inventory_contract::events::PUBLISHED.to_vec(),
        events_subscribed: vec![
            EventRef::of::<OrderPlaced>(),
            EventRef::of::<OrderConfirmed>(),
            EventRef::of::<OrderCancelled>(),
        ],
        jobs: vec![service::ReservationExpiry::QUEUE_NAME],
    }
}
