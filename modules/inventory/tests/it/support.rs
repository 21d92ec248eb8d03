//! An inventory module on a fresh database with a stand-in orders outbox, the real bus and
//! jobs runtime, served over HTTP.

use std::sync::Arc;
use std::time::Duration;

use inventory::{InventoryConfig, InventoryModule};
use platform::bus::Event;
use platform::clock::ShiftedClock;
use platform::db::ModuleSchema;
use platform::testing::{ModuleHarness, eventually};
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
use uuid::Uuid;

static ORDERS_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/orders");

pub const SCHEMAS: [ModuleSchema; 2] =
    [inventory::DESCRIPTOR.schema, ModuleSchema { name: "orders", migrations: &ORDERS_STAND_IN }];

pub struct Harness {
    pub base: ModuleHarness,
    pub module: InventoryModule,
    pub clock: ShiftedClock,
    pub admin_token: String,
    pub customer_token: String,
}

platform::harness_deref!(Harness);

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(InventoryConfig::default()).await
    }

    pub async fn start_with(config: InventoryConfig) -> Self {
        let clock = ShiftedClock::new();
        let time = Arc::new(clock.clone());
        let (base, module) = ModuleHarness::start(&SCHEMAS, |databases, verifier, _| {
            Ok(InventoryModule::with_clock(databases.pool("inventory")?.clone(), verifier.clone(), config, time))
        })
        .await
        .unwrap();
        let admin_token = base.new_admin_token();
        let (_, customer_token) = base.new_customer();
        Self { base, module, clock, admin_token, customer_token }
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
        self.base.publish("orders", event).await.unwrap();
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
        self.base.settle().await.unwrap();
    }
}

pub use platform::testing::{error_code as code, read_or_fail as read};

/// `units` as a line's quantity.
pub fn qty(units: u32) -> inventory_contract::Quantity {
    inventory_contract::Quantity::new(units).unwrap()
}
