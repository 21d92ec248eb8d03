//! A payments module on a fresh database with a stand-in orders outbox, the real bus and jobs
//! runtime, the sandbox gateway (short delays) and the module served over HTTP.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use orders_contract::events::{CancellationReason, OrderCancelled, PaymentRequested, RefundReason, RefundRequested};
use orders_contract::{OrderId, OrderStatus};
use payments::{
    BreakerSettings, PaymentsConfig, PaymentsModule, SANDBOX_SCHEMA, SANDBOX_WEBHOOK_PATH, SandboxConfig,
    SandboxGateway, WebhookTarget,
};
use platform::bus::Event;
use platform::db::ModuleSchema;
use platform::money::{Currency, Money};
use platform::testing::{ModuleHarness, eventually};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::migrate::Migrator;
use uuid::Uuid;

static ORDERS_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/orders");

pub const SCHEMAS: [ModuleSchema; 2] =
    [payments::DESCRIPTOR.schema, ModuleSchema { name: "orders", migrations: &ORDERS_STAND_IN }];

pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// The module's settings in these tests: everything short, so retries, the breaker and
/// reconciliation play out in seconds.
pub fn config() -> PaymentsConfig {
    let mut config = PaymentsConfig::new(SecretString::from(WEBHOOK_SECRET));
    config.gateway_timeout = Duration::from_millis(800);
    config.breaker =
        BreakerSettings { failures: 3, open_for: Duration::from_secs(1), max_open: Duration::from_secs(2) };
    config.retry_base = Duration::from_millis(100);
    config.retry_max = Duration::from_millis(500);
    config.reconcile_after = Duration::from_secs(1);
    config.reconcile_every = Duration::from_secs(1);
    config
}

pub fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        latency: Duration::from_millis(5),
        slow_latency: Duration::from_millis(400),
        hang: Duration::from_secs(3600),
        async_delay: Duration::from_millis(300),
    }
}

pub struct Harness {
    pub base: ModuleHarness,
    pub sandbox: SandboxGateway,
    pub customer: Uuid,
    pub customer_token: String,
    pub admin_token: String,
}

platform::harness_deref!(Harness);

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(config()).await
    }

    pub async fn start_with(config: PaymentsConfig) -> Self {
        Self::start_with_sandbox(config, sandbox_config()).await
    }

    pub async fn start_with_sandbox(config: PaymentsConfig, sandbox: SandboxConfig) -> Self {
        let sandbox_settings = sandbox;
        let mut built = None;
        let (base, _) = ModuleHarness::start(&SCHEMAS, |databases, verifier, metrics| {
            let pool = databases.pool("payments")?.clone();
            let sandbox = SandboxGateway::new(pool.clone(), sandbox_settings);
            built = Some(sandbox.clone());
            Ok(PaymentsModule::new(pool, Arc::new(sandbox), verifier.clone(), config, metrics))
        })
        .await
        .unwrap();
        let sandbox = built.unwrap();
        base.databases.ensure_schema_for("payments", SANDBOX_SCHEMA).await.unwrap();
        sandbox.set_webhook_target(WebhookTarget {
            url: base.url(SANDBOX_WEBHOOK_PATH),
            secret: SecretString::from(WEBHOOK_SECRET),
        });
        let (customer, customer_token) = base.new_customer();
        let admin_token = base.new_admin_token();
        Self { base, sandbox, customer, customer_token, admin_token }
    }

    /// Appends `event` to the stand-in orders outbox.
    pub async fn publish<E: Event>(&self, event: &E) {
        self.base.publish("orders", event).await.unwrap();
    }

    /// Orders asks the harness's customer to pay `amount` EUR cents with `method`; returns the
    /// order id and the request.
    pub async fn request_payment(&self, method: &str, amount: i64) -> (Uuid, PaymentRequested) {
        let order_id = Uuid::now_v7();
        let request = PaymentRequested {
            order_id: OrderId(order_id),
            user_id: self.customer,
            amount: eur(amount),
            payment_method: method.to_owned(),
            pay_by: Utc::now() + chrono::TimeDelta::minutes(15),
            requested_at: Utc::now(),
        };
        self.publish(&request).await;
        (order_id, request)
    }

    /// Orders cancels the order.
    pub async fn cancel(&self, order_id: Uuid, from: OrderStatus) {
        self.publish(&OrderCancelled {
            order_id: OrderId(order_id),
            user_id: self.customer,
            reason: CancellationReason::CustomerRequest,
            detail: None,
            cancelled_from: from,
            cancelled_at: Utc::now(),
        })
        .await;
    }

    /// Orders asks for `amount` of `payment_id` back.
    pub async fn ask_refund(&self, order_id: Uuid, payment_id: Uuid, amount: i64, reason: RefundReason) {
        self.publish(&RefundRequested {
            order_id: OrderId(order_id),
            user_id: self.customer,
            payment_id: payment_id.into(),
            amount: eur(amount),
            reason,
            requested_at: Utc::now(),
        })
        .await;
    }

    /// The order's payment as an admin sees it, once it exists.
    pub async fn payment_of(&self, order_id: Uuid) -> Value {
        eventually(Duration::from_secs(15), || async {
            let (_, page) = read(
                self.call(Method::GET, format!("/api/v1/payments?order_id={order_id}"), Some(&self.admin_token), None)
                    .await,
            )
            .await;
            let Some(id) = page["data"][0]["id"].as_str() else { return Ok(None) };
            Ok(Some(self.payment(id.parse().unwrap()).await))
        })
        .await
        .unwrap_or_else(|_| panic!("order {order_id} never got a payment"))
    }

    pub async fn payment(&self, id: Uuid) -> Value {
        self.get_data(format!("/api/v1/payments/{id}"), &self.admin_token).await
    }

    /// Waits until the order's payment has `status`; returns it.
    pub async fn await_status(&self, order_id: Uuid, status: &str) -> Value {
        eventually(Duration::from_secs(20), || async {
            let payment = self.payment_of(order_id).await;
            Ok((payment["status"] == status).then_some(payment))
        })
        .await
        .unwrap_or_else(|_| panic!("the payment of order {order_id} never reached {status}"))
    }

    /// The payloads of `event_type` in the payments outbox for `order_id`, oldest first.
    pub async fn events(&self, event_type: &str, order_id: Uuid) -> Vec<Value> {
        self.base.published(event_type, &order_id.to_string()).await.unwrap()
    }

    /// Waits until every request in the orders outbox has been handled and no payments job
    /// is waiting or running, so a test can check that something did *not* happen.
    pub async fn settle(&self) {
        self.base.settle().await.unwrap();
    }

    /// Checks the invariant of the ledger for every payment: the cached totals are the sums of
    /// the entries, and nothing is refunded beyond what was captured.
    pub async fn assert_ledger_balances(&self) {
        let mut db = self.database.admin_connection().await.unwrap();
        let broken: Vec<(Uuid, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT p.id, p.captured, p.refunded,
                    COALESCE(sum(e.amount) FILTER (WHERE e.kind = 'capture'), 0)::bigint,
                    COALESCE(sum(e.amount) FILTER (WHERE e.kind = 'refund'), 0)::bigint
               FROM payments.payments p LEFT JOIN payments.ledger_entries e ON e.payment_id = p.id
              GROUP BY p.id
             HAVING p.captured <> COALESCE(sum(e.amount) FILTER (WHERE e.kind = 'capture'), 0)
                 OR p.refunded <> COALESCE(sum(e.amount) FILTER (WHERE e.kind = 'refund'), 0)
                 OR COALESCE(sum(e.amount) FILTER (WHERE e.kind = 'refund'), 0)
                    > COALESCE(sum(e.amount) FILTER (WHERE e.kind = 'capture'), 0)",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        assert!(broken.is_empty(), "payments whose totals do not match their ledger: {broken:?}");
    }

    /// Jobs of `queue` that failed for good.
    pub async fn failed_jobs(&self, queue: &str) -> Vec<platform::jobs::FailedJob> {
        platform::jobs::failed_jobs(self.databases.jobs_pool().unwrap(), Some(queue), None, 100).await.unwrap()
    }

    /// A token for another customer.
    pub fn stranger(&self) -> String {
        self.new_customer().1
    }

    /// An admin refund with a fresh key.
    pub async fn refund(&self, payment_id: &str, body: Value) -> (StatusCode, Value) {
        self.refund_with_key(payment_id, &Uuid::now_v7().to_string(), body).await
    }

    pub async fn refund_with_key(&self, payment_id: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.served.url(&format!("/api/v1/payments/{payment_id}/refunds")))
            .bearer_auth(&self.admin_token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(response).await
    }
}

pub fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

/// The kinds of a payment's ledger entries, oldest first.
pub fn ledger_kinds(payment: &Value) -> Vec<String> {
    payment["ledger"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

pub use platform::testing::{error_code as code, read_or_fail as read};
