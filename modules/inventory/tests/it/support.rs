//! An inventory module on a fresh database with a stand-in orders outbox, the real bus and
//! jobs runtime, served over HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use inventory::{InventoryConfig, InventoryModule};
use platform::Module;
use platform::auth::{JwtVerifier, Role};
use platform::bus::{BusBuilder, BusConfig, Event, Metadata};
use platform::clock::ShiftedClock;
use platform::db::{Databases, ModuleSchema};
use platform::http::{HttpSettings, stack};
use platform::metrics::Metrics;
use platform::testing::{Served, TestDatabase, TestSigner, eventually};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static ORDERS_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/orders");

pub const SCHEMAS: [ModuleSchema; 2] =
    [inventory::DESCRIPTOR.schema, ModuleSchema { name: "orders", migrations: &ORDERS_STAND_IN }];

pub struct Harness {
    pub served: Served,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    pub databases: Databases,
    pub module: InventoryModule,
    pub clock: ShiftedClock,
    pub signer: TestSigner,
    pub verifier: JwtVerifier,
    pub admin_token: String,
    pub customer_token: String,
    stop: CancellationToken,
    _bus: platform::bus::BusTasks,
    _jobs: platform::jobs::JobsHandle,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(InventoryConfig::default()).await
    }

    pub async fn start_with(config: InventoryConfig) -> Self {
        let database = TestDatabase::create(&SCHEMAS).await.unwrap();
        let databases = database.connect(&SCHEMAS).await.unwrap();
        let pool = |name| databases.pool(name).unwrap().clone();
        let verifier = JwtVerifier::new("bulkhead", "bulkhead-api");
        let clock = ShiftedClock::new();
        let module = InventoryModule::with_clock(pool("inventory"), verifier.clone(), config, Arc::new(clock.clone()));

        let metrics = Metrics::new();
        let mut bus = BusBuilder::new(BusConfig::default(), &metrics)
            .publisher("inventory", pool("inventory"))
            .publisher("orders", pool("orders"));
        for subscription in module.subscriptions() {
            bus = bus.subscription("inventory", pool("inventory"), subscription).unwrap();
        }
        let stop = CancellationToken::new();
        let bus_tasks = bus.build().start(stop.clone()).await.unwrap();
        let jobs = platform::testing::jobs_runtime(&databases, &metrics).unwrap().queues(module.jobs());
        let jobs = jobs.start(stop.clone()).await.unwrap();

        let (api, _) = module.public_routes().split_for_parts();
        let router = stack::apply(Router::new().nest("/api/v1", api), &HttpSettings::default(), metrics);
        let served = Served::start(router).await.unwrap();
        let signer = TestSigner::new();
        signer.trust(&verifier);
        let admin_token = signer.token(&verifier, &Uuid::now_v7().to_string(), &[Role::Admin, Role::Customer]);
        let customer_token = signer.token(&verifier, &Uuid::now_v7().to_string(), &[Role::Customer]);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self {
            served,
            client,
            database,
            databases,
            module,
            clock,
            signer,
            verifier,
            admin_token,
            customer_token,
            stop,
            _bus: bus_tasks,
            _jobs: jobs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.served.url(path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: impl AsRef<str>,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.served.url(path.as_ref()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Adds a product straight to the catalogue with `units` on hand (a `receive` movement);
    /// returns its id.
    pub async fn product(&self, sku: &str, price: i64, units: i32) -> Uuid {
        let id = Uuid::now_v7();
        let mut db = self.database.admin_connection().await.unwrap();
        sqlx::query(
            "INSERT INTO inventory.products (id, sku, name, description, price, currency, on_hand, created_at, updated_at)
             VALUES ($1, $2, $3, '', $4, 'EUR', $5, now(), now())",
        )
        .bind(id)
        .bind(sku)
        .bind(format!("Product {sku}"))
        .bind(price)
        .bind(units)
        .execute(&mut db)
        .await
        .unwrap();
        if units > 0 {
            sqlx::query(
                "INSERT INTO inventory.stock_movements (id, product_id, kind, quantity, on_hand_after, reason, at)
                 VALUES ($1, $2, 'receive', $3, $3, 'test stock', now())",
            )
            .bind(Uuid::now_v7())
            .bind(id)
            .bind(units)
            .execute(&mut db)
            .await
            .unwrap();
        }
        id
    }

    /// (on_hand, reserved) of a product.
    pub async fn levels(&self, product: Uuid) -> (i32, i32) {
        let mut db = self.database.admin_connection().await.unwrap();
        sqlx::query_as("SELECT on_hand, reserved FROM inventory.products WHERE id = $1")
            .bind(product)
            .fetch_one(&mut db)
            .await
            .unwrap()
    }

    /// Appends `event` to the stand-in orders outbox, as the orders module would.
    pub async fn publish<E: Event>(&self, event: &E) {
        let mut tx = self.databases.pool("orders").unwrap().begin().await.unwrap();
        platform::bus::append(&mut tx, event, &Metadata::system("test")).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// The payloads of `event_type` in the inventory outbox, oldest first.
    pub async fn events(&self, event_type: &str) -> Vec<Value> {
        let mut db = self.database.admin_connection().await.unwrap();
        sqlx::query_scalar("SELECT payload FROM inventory.outbox WHERE event_type = $1 ORDER BY append_seq")
            .bind(event_type)
            .fetch_all(&mut db)
            .await
            .unwrap()
    }

    /// The payloads of `event_type` about `order`, waiting until there are `count`.
    pub async fn await_events(&self, event_type: &str, order: Uuid, count: usize) -> Vec<Value> {
        eventually(Duration::from_secs(15), || async {
            let events: Vec<Value> = self
                .events(event_type)
                .await
                .into_iter()
                .filter(|e| e["order_id"] == json!(order.to_string()))
                .collect();
            Ok((events.len() >= count).then_some(events))
        })
        .await
        .unwrap_or_else(|_| panic!("{count} {event_type} for {order} never appeared"))
    }

    /// The reservation status of `order`, waiting until it is `status`.
    pub async fn await_reservation(&self, order: Uuid, status: &str) {
        eventually(Duration::from_secs(15), || async {
            let mut db = self.database.admin_connection().await?;
            let found: Option<String> =
                sqlx::query_scalar("SELECT status FROM inventory.reservations WHERE order_id = $1")
                    .bind(order)
                    .fetch_optional(&mut db)
                    .await?;
            Ok((found.as_deref() == Some(status)).then_some(()))
        })
        .await
        .unwrap_or_else(|_| panic!("the reservation of {order} never became {status}"));
    }

    /// Waits until the inventory module has handled every event of the stand-in orders outbox.
    pub async fn settle(&self) {
        eventually(Duration::from_secs(30), || async {
            let mut db = self.database.admin_connection().await?;
            let done: bool = sqlx::query_scalar(
                "SELECT NOT EXISTS (SELECT 1 FROM orders.outbox WHERE position IS NULL)
                    AND NOT EXISTS (SELECT 1 FROM inventory.bus_cursors c JOIN orders.outbox o
                                      ON o.position > c.position AND o.key_hash % c.partitions = c.partition
                                     WHERE c.source = 'orders')
                    AND EXISTS (SELECT 1 FROM inventory.bus_cursors WHERE source = 'orders')",
            )
            .fetch_one(&mut db)
            .await?;
            Ok(done.then_some(()))
        })
        .await
        .unwrap();
    }
}

/// Status and JSON body (`null` when there is none).
pub async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// The error code of an envelope.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}
