//! An orders module on a fresh database with stand-in inventory and payments outboxes, the
//! real bus and jobs runtime, served over HTTP; a fake catalogue behind `InventoryApi`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use inventory_contract::{
    InventoryApi, InventoryError, LineProblem, LineProblemKind, ProductRef, Quote, QuoteLine, QuotedLine,
};
use orders::{OrdersConfig, OrdersModule};
use platform::Module;
use platform::auth::{JwtVerifier, Role};
use platform::bus::{BusBuilder, BusConfig, Event, Metadata};
use platform::db::{Databases, ModuleSchema};
use platform::http::{HttpSettings, stack};
use platform::metrics::Metrics;
use platform::money::{Currency, Money};
use platform::port::CallContext;
use platform::testing::{Served, TestDatabase, TestSigner, eventually};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static INVENTORY_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/inventory");
static PAYMENTS_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/payments");

pub const SCHEMAS: [ModuleSchema; 3] = [
    orders::DESCRIPTOR.schema,
    ModuleSchema { name: "inventory", migrations: &INVENTORY_STAND_IN },
    ModuleSchema { name: "payments", migrations: &PAYMENTS_STAND_IN },
];

/// A product of the fake catalogue.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: Uuid,
    pub sku: &'static str,
    pub name: &'static str,
    pub price: i64,
    pub currency: &'static str,
    pub active: bool,
    pub available: u32,
}

/// `InventoryApi` answered from a fixed catalogue; can be switched to "unavailable".
#[derive(Debug, Default)]
pub struct FakeInventory {
    pub products: Vec<Product>,
    pub down: AtomicBool,
}

#[async_trait::async_trait]
impl InventoryApi for FakeInventory {
    async fn quote(&self, _ctx: &CallContext, lines: &[QuoteLine]) -> Result<Quote, InventoryError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(InventoryError::Unavailable("connection refused".to_owned()));
        }
        let mut quote = Quote { currency: None, lines: Vec::new(), problems: Vec::new() };
        for (index, line) in lines.iter().enumerate() {
            let found = self.products.iter().find(|p| match &line.product {
                ProductRef::Id(id) => p.id == *id,
                ProductRef::Sku(sku) => p.sku == sku,
            });
            let problem = |kind| LineProblem { line: index, kind };
            let Some(product) = found else {
                quote.problems.push(problem(LineProblemKind::UnknownProduct));
                continue;
            };
            let currency = Currency::parse(product.currency).unwrap();
            if !product.active {
                quote.problems.push(problem(LineProblemKind::InactiveProduct));
            } else if quote.currency.is_some_and(|c| c != currency) {
                quote.problems.push(problem(LineProblemKind::CurrencyMismatch));
            }
            quote.currency.get_or_insert(currency);
            quote.lines.push(QuotedLine {
                product_id: product.id,
                sku: product.sku.to_owned(),
                name: product.name.to_owned(),
                quantity: line.quantity,
                unit_price: Money::new(product.price, currency),
                available: product.available,
            });
        }
        Ok(quote)
    }
}

pub fn catalogue() -> Vec<Product> {
    let product = |n: u128, sku, name, price, currency, active, available| Product {
        id: Uuid::from_u128(0xaaaa_0000_0000_0000_0000_0000_0000_0000 + n),
        sku,
        name,
        price,
        currency,
        active,
        available,
    };
    vec![
        product(1, "MUG-001", "Enamel mug", 1250, "EUR", true, 100),
        product(2, "TEE-002", "Organic tee", 2500, "EUR", true, 100),
        product(3, "CAP-003", "Old cap", 900, "EUR", false, 100),
        product(4, "BAG-004", "Tote bag", 1500, "EUR", true, 1),
        product(5, "HAT-005", "Sun hat", 3000, "USD", true, 100),
    ]
}

pub fn product(sku: &str) -> Uuid {
    catalogue().into_iter().find(|p| p.sku == sku).unwrap().id
}

pub struct Harness {
    pub served: Served,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    pub databases: Databases,
    pub inventory: Arc<FakeInventory>,
    pub signer: TestSigner,
    pub verifier: JwtVerifier,
    pub customer: Uuid,
    pub customer_token: String,
    pub admin_token: String,
    stop: CancellationToken,
    _jobs: platform::jobs::JobsHandle,
    _bus: platform::bus::BusTasks,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(OrdersConfig::default()).await
    }

    pub async fn start_with(config: OrdersConfig) -> Self {
        let database = TestDatabase::create(&SCHEMAS).await.unwrap();
        let databases = database.connect(&SCHEMAS).await.unwrap();
        let inventory = Arc::new(FakeInventory { products: catalogue(), ..FakeInventory::default() });
        let verifier = JwtVerifier::new("bulkhead", "bulkhead-api");
        let pool = |name| databases.pool(name).unwrap().clone();
        let module = OrdersModule::new(pool("orders"), inventory.clone(), verifier.clone(), config);

        let metrics = Metrics::new();
        let mut bus = BusBuilder::new(BusConfig::default(), &metrics)
            .publisher("orders", pool("orders"))
            .publisher("inventory", pool("inventory"))
            .publisher("payments", pool("payments"));
        for subscription in module.subscriptions() {
            bus = bus.subscription("orders", pool("orders"), subscription).unwrap();
        }
        let stop = CancellationToken::new();
        let bus = bus.build();
        let bus_tasks = bus.start(stop.clone()).await.unwrap();
        let jobs = platform::testing::jobs_runtime(&databases, &metrics).unwrap().queues(module.jobs());
        let jobs = jobs.start(stop.clone()).await.unwrap();

        let (api, _) = module.public_routes().split_for_parts();
        let router = stack::apply(Router::new().nest("/api/v1", api), &HttpSettings::default(), metrics);
        let served = Served::start(router).await.unwrap();
        let signer = TestSigner::new();
        signer.trust(&verifier);
        let customer = Uuid::now_v7();
        let customer_token = signer.token(&verifier, &customer.to_string(), &[Role::Customer]);
        let admin_token = signer.token(&verifier, &Uuid::now_v7().to_string(), &[Role::Admin, Role::Customer]);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self {
            served,
            client,
            database,
            databases,
            inventory,
            signer,
            verifier,
            customer,
            customer_token,
            admin_token,
            stop,
            _jobs: jobs,
            _bus: bus_tasks,
        }
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

    /// Places an order as the harness's customer with a fresh idempotency key.
    pub async fn place(&self, body: Value) -> (StatusCode, Value) {
        self.place_with_key(&Uuid::now_v7().to_string(), &self.customer_token, body).await
    }

    pub async fn place_with_key(&self, key: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.served.url("/api/v1/orders"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Places a valid order for `lines` (`[(sku, quantity)]`); returns its id and total.
    pub async fn order(&self, lines: &[(&str, u32)]) -> (Uuid, i64) {
        let (status, body) = self.place(order_body(lines)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        (body["data"]["id"].as_str().unwrap().parse().unwrap(), body["data"]["total"]["amount"].as_i64().unwrap())
    }

    pub async fn get(&self, id: Uuid) -> Value {
        let (status, body) =
            read(self.call(Method::GET, format!("/api/v1/orders/{id}"), Some(&self.admin_token), None).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].clone()
    }

    /// Waits until the order has `status`; returns it.
    pub async fn await_status(&self, id: Uuid, status: &str) -> Value {
        eventually(Duration::from_secs(15), || async {
            let order = self.get(id).await;
            Ok((order["status"] == status).then_some(order))
        })
        .await
        .unwrap_or_else(|_| panic!("order {id} never reached {status}"))
    }

    /// Appends `event` to the stand-in outbox of `module` (`inventory` or `payments`).
    pub async fn publish<E: Event>(&self, module: &str, event: &E) {
        let mut tx = self.databases.pool(module).unwrap().begin().await.unwrap();
        platform::bus::append(&mut tx, event, &Metadata::system("test")).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// The payloads of `event_type` in the orders outbox for `order`, oldest first.
    pub async fn events(&self, event_type: &str, order: Uuid) -> Vec<Value> {
        let mut db = self.database.admin_connection().await.unwrap();
        sqlx::query_scalar(
            "SELECT payload FROM orders.outbox WHERE event_type = $1 AND aggregate_key = $2 ORDER BY append_seq",
        )
        .bind(event_type)
        .bind(order.to_string())
        .fetch_all(&mut db)
        .await
        .unwrap()
    }

    /// Waits until the orders outbox holds `count` events of `event_type` for `order`.
    pub async fn await_events(&self, event_type: &str, order: Uuid, count: usize) -> Vec<Value> {
        eventually(Duration::from_secs(15), || async {
            let events = self.events(event_type, order).await;
            Ok((events.len() >= count).then_some(events))
        })
        .await
        .unwrap_or_else(|_| panic!("{count} {event_type} for {order} never appeared"))
    }
}

/// A valid order body for `lines` (`[(sku, quantity)]`).
pub fn order_body(lines: &[(&str, u32)]) -> Value {
    let lines: Vec<Value> = lines.iter().map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity})).collect();
    json!({
        "lines": lines,
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"},
        "payment_method": "pm_card_visa"
    })
}

pub async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// The ids of the order's statuses in its timeline.
pub fn timeline(order: &Value) -> Vec<String> {
    order["timeline"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap().to_owned()).collect()
}

impl Harness {
    /// Waits until the orders module has handled every event in the stand-in outboxes, so a
    /// test can check that something did *not* happen.
    pub async fn settle(&self) {
        eventually(Duration::from_secs(15), || async {
            let mut db = self.database.admin_connection().await?;
            let mut settled = true;
            for source in ["inventory", "payments"] {
                let sql = format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {source}.outbox WHERE position IS NULL)
                        AND NOT EXISTS (SELECT 1 FROM orders.bus_cursors c JOIN {source}.outbox o
                                          ON o.position > c.position AND o.key_hash % c.partitions = c.partition
                                         WHERE c.source = '{source}')
                        AND EXISTS (SELECT 1 FROM orders.bus_cursors WHERE source = '{source}')"
                );
                let done: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut db).await?;
                settled &= done;
            }
            Ok(settled.then_some(()))
        })
        .await
        .unwrap();
    }
}

impl Harness {
    /// A token for another customer.
    pub fn stranger(&self) -> (Uuid, String) {
        let user = Uuid::now_v7();
        (user, self.signer.token(&self.verifier, &user.to_string(), &[Role::Customer]))
    }
}
