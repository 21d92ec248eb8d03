//! A notifications module on a fresh database with stand-in outboxes for users, orders,
//! payments and inventory, the real bus and jobs runtime, served over HTTP; a fake
//! `UsersApi`, a real SMTP server on loopback, and webhook receivers started by the tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use notifications::{NotificationsConfig, NotificationsModule, RetryConfig, SmtpConfig, SmtpTls};
use platform::Module;
use platform::auth::{JwtVerifier, Role};
use platform::bus::{Bus, BusBuilder, BusConfig, Event, Metadata, RetryPolicy};
use platform::db::{Databases, ModuleSchema};
use platform::http::{HttpSettings, stack};
use platform::metrics::Metrics;
use platform::port::CallContext;
use platform::testing::{Served, TestDatabase, TestSigner, eventually};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use users_contract::{
    AccountStatus, ActionLink, ActionPurpose, ActionRequestId, Contact, Preferences, UserId, UsersApi, UsersError,
};
use uuid::Uuid;

use crate::smtp::TestSmtp;

static USERS_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/users");
static ORDERS_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/orders");
static PAYMENTS_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/payments");
static INVENTORY_STAND_IN: Migrator = sqlx::migrate!("tests/fixtures/inventory");

pub const SCHEMAS: [ModuleSchema; 5] = [
    notifications::DESCRIPTOR.schema,
    ModuleSchema { name: "users", migrations: &USERS_STAND_IN },
    ModuleSchema { name: "orders", migrations: &ORDERS_STAND_IN },
    ModuleSchema { name: "payments", migrations: &PAYMENTS_STAND_IN },
    ModuleSchema { name: "inventory", migrations: &INVENTORY_STAND_IN },
];

pub const SOURCES: [&str; 4] = ["users", "orders", "payments", "inventory"];

/// `UsersApi` answered from a table of contacts; can be switched to "unavailable". Links are
/// minted with a fresh token each time and remembered, so tests can find them in messages
/// (and make sure they are nowhere else).
#[derive(Debug, Default)]
pub struct FakeUsers {
    pub contacts: Mutex<HashMap<Uuid, Contact>>,
    pub down: AtomicBool,
    /// Requests whose link can no longer be minted.
    pub lapsed: Mutex<Vec<Uuid>>,
    pub minted: Mutex<Vec<ActionLink>>,
}

#[async_trait::async_trait]
impl UsersApi for FakeUsers {
    async fn contact(&self, _ctx: &CallContext, user: UserId) -> Result<Contact, UsersError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(UsersError::Unavailable("connection refused".to_owned()));
        }
        self.contacts.lock().unwrap().get(&user.0).cloned().ok_or(UsersError::UserNotFound(user))
    }

    async fn admins(&self, _ctx: &CallContext) -> Result<Vec<Contact>, UsersError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(UsersError::Unavailable("connection refused".to_owned()));
        }
        let mut admins: Vec<Contact> = self
            .contacts
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.display_name.starts_with("Admin") && c.status == AccountStatus::Active)
            .cloned()
            .collect();
        admins.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(admins)
    }

    async fn action_link(&self, _ctx: &CallContext, request: ActionRequestId) -> Result<ActionLink, UsersError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(UsersError::Unavailable("connection refused".to_owned()));
        }
        if self.lapsed.lock().unwrap().contains(&request.0) {
            return Err(UsersError::LinkUnavailable(request));
        }
        let token = Uuid::new_v4().simple().to_string();
        let link = ActionLink {
            request_id: request,
            user_id: UserId(Uuid::nil()),
            purpose: ActionPurpose::VerifyEmail,
            url: format!("https://shop.example.com/verify-email?token={token}"),
            token,
            expires_at: Utc::now() + chrono::TimeDelta::hours(24),
        };
        self.minted.lock().unwrap().push(link.clone());
        Ok(link)
    }
}

impl FakeUsers {
    /// Adds a person; returns their id.
    pub fn add(&self, email: &str, name: &str) -> Uuid {
        self.add_with(email, name, Preferences::default(), AccountStatus::Active)
    }

    /// Adds a person whose id is already known (from events published before).
    pub fn add_with_id(&self, id: Uuid, email: &str, name: &str) {
        self.insert(id, email, name, Preferences::default(), AccountStatus::Active);
    }

    pub fn add_with(&self, email: &str, name: &str, preferences: Preferences, status: AccountStatus) -> Uuid {
        let id = Uuid::now_v7();
        self.insert(id, email, name, preferences, status);
        id
    }

    fn insert(&self, id: Uuid, email: &str, name: &str, preferences: Preferences, status: AccountStatus) {
        let contact = Contact {
            user_id: UserId(id),
            email: email.to_owned(),
            display_name: name.to_owned(),
            email_verified: true,
            status,
            preferences,
        };
        self.contacts.lock().unwrap().insert(id, contact);
    }
}

/// Fast retries, so tests wait for milliseconds, not minutes.
pub fn fast(attempts: u32) -> RetryConfig {
    RetryConfig { attempts, base_delay: Duration::from_millis(50), max_delay: Duration::from_millis(200) }
}

/// The test configuration: SMTP to `smtp_port` in plain text, private webhook targets allowed
/// (the receivers are on loopback), fast retries.
pub fn config(smtp_port: u16) -> NotificationsConfig {
    let mut config = NotificationsConfig::default();
    config.email.transport = notifications::MailTransport::Smtp(SmtpConfig {
        timeout: Duration::from_secs(5),
        ..SmtpConfig::new("127.0.0.1", smtp_port, SmtpTls::None)
    });
    config.email.retry = fast(20);
    config.webhooks.allow_private_targets = true;
    config.webhooks.retry = fast(5);
    config.webhooks.timeout = Duration::from_secs(5);
    config
}

pub struct Harness {
    pub served: Served,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    pub databases: Databases,
    pub users: Arc<FakeUsers>,
    pub smtp: Option<TestSmtp>,
    pub bus: Bus,
    pub signer: TestSigner,
    pub verifier: JwtVerifier,
    pub admin_token: String,
    pub metrics: Metrics,
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
    /// With a running SMTP server.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut NotificationsConfig)) -> Self {
        let smtp = TestSmtp::start().await;
        let mut config = config(smtp.port);
        configure(&mut config);
        Self::start_on(Some(smtp), config).await
    }

    /// With `config` as given and `smtp` (if any) as the server.
    pub async fn start_on(smtp: Option<TestSmtp>, config: NotificationsConfig) -> Self {
        Self::start_after(smtp, config, async |_| {}).await
    }

    /// Like [`Self::start_on`], in a shop whose modules already published (and sequenced)
    /// what `history` appends before the module first starts: a running shop that turns
    /// notifications on.
    pub async fn start_after(
        smtp: Option<TestSmtp>,
        config: NotificationsConfig,
        history: impl AsyncFnOnce(&Databases),
    ) -> Self {
        let database = TestDatabase::create(&SCHEMAS).await.unwrap();
        let databases = database.connect(&SCHEMAS).await.unwrap();
        history(&databases).await;
        for source in SOURCES {
            platform::bus::sequencer::sequence_batch(databases.pool(source).unwrap(), 1000).await.unwrap();
        }
        let users = Arc::new(FakeUsers::default());
        let verifier = JwtVerifier::new("bulkhead", "bulkhead-api");
        let pool = |name| databases.pool(name).unwrap().clone();
        let metrics = Metrics::new();
        let module = NotificationsModule::new(pool("notifications"), users.clone(), verifier.clone(), config)
            .unwrap()
            .with_metrics(&metrics);

        let mut bus = BusBuilder::new(BusConfig::default(), &metrics);
        for source in SOURCES {
            bus = bus.publisher(source, pool(source));
        }
        for subscription in module.subscriptions() {
            // Quick retries: a test that makes a handler fail waits for its retry.
            let subscription = subscription.retry(RetryPolicy {
                max_attempts: 50,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
            });
            bus = bus.subscription("notifications", pool("notifications"), subscription).unwrap();
        }
        let stop = CancellationToken::new();
        let bus = bus.build();
        let bus_tasks = bus.start(stop.clone()).await.unwrap();
        let jobs = platform::testing::jobs_runtime(&databases, &metrics).unwrap().queues(module.jobs());
        let jobs = jobs.start(stop.clone()).await.unwrap();

        let (api, _) = module.public_routes().split_for_parts();
        let router = stack::apply(Router::new().nest("/api/v1", api), &HttpSettings::default(), metrics.clone());
        let served = Served::start(router).await.unwrap();
        let signer = TestSigner::new();
        signer.trust(&verifier);
        let admin_token = signer.token(&verifier, &Uuid::now_v7().to_string(), &[Role::Admin, Role::Customer]);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self {
            served,
            client,
            database,
            databases,
            users,
            smtp,
            bus,
            signer,
            verifier,
            admin_token,
            metrics,
            stop,
            _jobs: jobs,
            _bus: bus_tasks,
        }
    }

    pub fn smtp(&self) -> &TestSmtp {
        self.smtp.as_ref().unwrap()
    }

    /// A customer's token.
    pub fn token_of(&self, user: Uuid) -> String {
        self.signer.token(&self.verifier, &user.to_string(), &[Role::Customer])
    }

    pub async fn call(
        &self,
        method: Method,
        path: impl AsRef<str>,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        platform::testing::send(&self.client, method, &self.served.url(path.as_ref()), token, body).await
    }

    /// `call` as the admin, read.
    pub async fn admin(&self, method: Method, path: impl AsRef<str>, body: Option<Value>) -> (StatusCode, Value) {
        read(self.call(method, path, Some(&self.admin_token), body).await).await
    }

    /// Registers a webhook endpoint as the admin with a fresh key; returns (id, secret).
    pub async fn register_endpoint(&self, url: &str, event_types: &[&str]) -> (Uuid, String) {
        let (status, body) = self.create_endpoint(&Uuid::now_v7().to_string(), url, event_types).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["data"]["id"].as_str().unwrap().parse().unwrap(), body["data"]["secret"].as_str().unwrap().to_owned())
    }

    pub async fn create_endpoint(&self, key: &str, url: &str, event_types: &[&str]) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.served.url("/api/v1/webhook-endpoints"))
            .bearer_auth(&self.admin_token)
            .header("idempotency-key", key)
            .json(&serde_json::json!({"url": url, "event_types": event_types}))
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Appends `event` to the stand-in outbox of `module`; returns its id.
    pub async fn publish<E: Event>(&self, module: &str, event: &E) -> Uuid {
        publish(&self.databases, module, event).await
    }

    /// The notifications rows as JSON, oldest first.
    pub async fn notifications(&self) -> Vec<Value> {
        let mut db = self.database.admin_connection().await.unwrap();
        sqlx::query_scalar("SELECT to_jsonb(n) FROM notifications.notifications n ORDER BY created_at, id")
            .fetch_all(&mut db)
            .await
            .unwrap()
    }

    /// The delivery attempts of `notification` as JSON, in order.
    pub async fn attempts(&self, notification: &str) -> Vec<Value> {
        let mut db = self.database.admin_connection().await.unwrap();
        sqlx::query_scalar(
            "SELECT to_jsonb(a) FROM notifications.delivery_attempts a WHERE notification_id = $1::uuid ORDER BY id",
        )
        .bind(notification)
        .fetch_all(&mut db)
        .await
        .unwrap()
    }

    /// Waits until `count` notifications exist and none is pending; returns them.
    pub async fn settled_notifications(&self, count: usize) -> Vec<Value> {
        eventually(Duration::from_secs(20), || async {
            let rows = self.notifications().await;
            Ok((rows.len() >= count && rows.iter().all(|n| n["status"] != "pending")).then_some(rows))
        })
        .await
        .unwrap_or_else(|e| panic!("{count} settled notifications never appeared: {e}"))
    }

    /// Waits until the SMTP server accepted `count` messages.
    pub async fn await_mail(&self, count: usize) -> Vec<crate::smtp::Received> {
        eventually(Duration::from_secs(20), || async {
            let received = self.smtp().received();
            Ok((received.len() >= count).then_some(received))
        })
        .await
        .unwrap_or_else(|_| panic!("{count} messages never arrived; got {}", self.smtp().received().len()))
    }

    /// Waits until the module has handled every event in the stand-in outboxes, so a test can
    /// check that something did *not* happen.
    pub async fn settle(&self) {
        eventually(Duration::from_secs(20), || async {
            let mut db = self.database.admin_connection().await?;
            let mut settled = true;
            for source in SOURCES {
                let sql = format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {source}.outbox WHERE position IS NULL)
                        AND NOT EXISTS (SELECT 1 FROM notifications.bus_cursors c JOIN {source}.outbox o
                                          ON o.position > c.position AND o.key_hash % c.partitions = c.partition
                                         WHERE c.source = '{source}')"
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

/// Appends `event` to the stand-in outbox of `module` in `databases`; returns its id.
pub async fn publish<E: Event>(databases: &Databases, module: &str, event: &E) -> Uuid {
    let mut tx = databases.pool(module).unwrap().begin().await.unwrap();
    let id = platform::bus::append(&mut tx, event, &Metadata::system("test")).await.unwrap();
    tx.commit().await.unwrap();
    id
}

pub use platform::testing::{error_code as code, read_or_fail as read};
