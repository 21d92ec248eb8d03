//! An orders module on a fresh database with stand-in inventory and payments outboxes, the
//! real bus and jobs runtime, served over HTTP; a fake catalogue behind `InventoryApi`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inventory_contract::{
    InventoryApi, InventoryError, LineProblem, LineProblemKind, ProductRef, Quote, QuoteLine, QuotedLine,
};
use orders::{OrdersConfig, OrdersModule};
use platform::bus::Event;
use platform::db::ModuleSchema;
use platform::money::{Currency, Money};
use platform::port::CallContext;
use platform::testing::{ModuleHarness, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
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
                ProductRef::Id(id) => p.id == id.into_inner(),
                ProductRef::Sku(sku) => p.sku == sku.as_str(),
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
                product_id: product.id.into(),
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
    pub base: ModuleHarness,
    pub inventory: Arc<FakeInventory>,
    pub customer: Uuid,
    pub customer_token: String,
    pub admin_token: String,
}

platform::harness_deref!(Harness);

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(OrdersConfig::default()).await
    }

    pub async fn start_with(config: OrdersConfig) -> Self {
        let inventory = Arc::new(FakeInventory { products: catalogue(), ..FakeInventory::default() });
        let port = inventory.clone();
        let (base, _) = ModuleHarness::start(&SCHEMAS, |databases, verifier, _| {
            Ok(OrdersModule::new(databases.pool("orders")?.clone(), port, verifier.clone(), config))
        })
        .await
        .unwrap();
        let (customer, customer_token) = base.new_customer();
        let admin_token = base.new_admin_token();
        Self { base, inventory, customer, customer_token, admin_token }
    }

    /// Places an order as the harness's customer with a fresh idempotency key.
    pub async fn place(&self, body: Value) -> (StatusCode, Value) {
        self.place_with_key(&Uuid::now_v7().to_string(), &self.customer_token, body).await
    }

    pub async fn place_with_key(&self, key: &str, token: &str, body: Value) -> (StatusCode, Value) {
        read(self.send_placement(key, token, &body).await).await
    }

    /// `POST /api/v1/orders` with `key`, answered as it came (headers included).
    pub async fn send_placement(&self, key: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.served.url("/api/v1/orders"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// How many orders the module has stored.
    pub async fn orders_stored(&self) -> i64 {
        let mut db = self.database.admin_connection().await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM orders.orders").fetch_one(&mut db).await.unwrap()
    }

    /// Places a valid order for `lines` (`[(sku, quantity)]`); returns its id and total.
    pub async fn order(&self, lines: &[(&str, u32)]) -> (Uuid, i64) {
        let (status, body) = self.place(order_body(lines)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        (body["data"]["id"].as_str().unwrap().parse().unwrap(), body["data"]["total"]["amount"].as_i64().unwrap())
    }

    pub async fn get(&self, id: Uuid) -> Value {
        self.get_data(format!("/api/v1/orders/{id}"), &self.admin_token).await
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
        self.base.publish(module, event).await.unwrap();
    }

    /// The payloads of `event_type` in the orders outbox for `order`, oldest first.
    pub async fn events(&self, event_type: &str, order: Uuid) -> Vec<Value> {
        self.base.published(event_type, &order.to_string()).await.unwrap()
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

/// The ids of the order's statuses in its timeline.
pub fn timeline(order: &Value) -> Vec<String> {
    order["timeline"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap().to_owned()).collect()
}

impl Harness {
    /// Waits until the orders module has handled every event in the stand-in outboxes, so a
    /// test can check that something did *not* happen.
    pub async fn settle(&self) {
        self.base.settle().await.unwrap();
    }
}

impl Harness {
    /// A token for another customer.
    pub fn stranger(&self) -> (Uuid, String) {
        self.new_customer()
    }
}

pub use platform::testing::{error_code as code, read_or_fail as read};
