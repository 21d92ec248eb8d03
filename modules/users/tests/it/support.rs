//! A users module on a fresh database, served with the platform's middleware on a loopback
//! port, with a clock the test can move.

use std::sync::Arc;

use axum::Router;
use chrono::TimeDelta;
use platform::Module;
use platform::auth::JwtVerifier;
use platform::clock::ShiftedClock;
use platform::http::{HttpSettings, stack};
use platform::metrics::Metrics;
use platform::port::CallContext;
use platform::remote::{ServiceKeys, TransportSettings, internal_api};
use platform::testing::{Served, TestDatabase, port_transport};
use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Connection;
use users::{UsersConfig, UsersModule};
use users_contract::client::UsersClient;
use users_contract::{ActionLink, ActionRequestId, UsersApi};

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "a long admin passphrase";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Harness {
    pub served: Served,
    pub client: reqwest::Client,
    pub clock: ShiftedClock,
    pub module: UsersModule,
    pub api: Arc<dyn UsersApi>,
    pub database: TestDatabase,
    pub verifier: JwtVerifier,
    pub keys_dir: tempfile::TempDir,
    /// The trust bundle the internal API (the port over HTTP) checks callers against.
    pub service_keys: ServiceKeys,
    _service_keys_dir: tempfile::TempDir,
    /// What first-start bootstrapping created, if anything.
    pub first_admin: Option<users::FirstAdmin>,
}

/// Tokens of one session.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut UsersConfig)) -> Self {
        let database = TestDatabase::create(&[users::DESCRIPTOR.schema]).await.unwrap();
        let keys_dir = tempfile::tempdir().unwrap();
        Self::start_on(database, keys_dir, configure).await
    }

    /// Another instance on the same database and keys (a restart, or a second replica).
    pub async fn restart(self) -> Self {
        let Self { database, keys_dir, .. } = self;
        Self::start_on(database, keys_dir, |_| {}).await
    }

    async fn start_on(
        database: TestDatabase,
        keys_dir: tempfile::TempDir,
        configure: impl FnOnce(&mut UsersConfig),
    ) -> Self {
        let pool = database.connect(&[users::DESCRIPTOR.schema]).await.unwrap().pool("users").unwrap().clone();
        let mut config = UsersConfig::new(keys_dir.path().to_owned(), "https://shop.example.com/");
        config.first_admin.email = ADMIN_EMAIL.to_owned();
        config.first_admin.password = Some(SecretString::from(ADMIN_PASSWORD));
        configure(&mut config);
        let verifier = JwtVerifier::new("bulkhead", "bulkhead-api");
        let clock = ShiftedClock::new();
        let module = UsersModule::with_clock(pool, verifier.clone(), config, Arc::new(clock.clone())).unwrap();
        let first_admin = module.ensure_first_admin().await.unwrap();
        let (api, _) = module.public_routes().split_for_parts();
        let (root, _) = module.root_routes().split_for_parts();
        let mut router = Router::new().nest("/api/v1", api).merge(root);
        let service_keys_dir = tempfile::tempdir().unwrap();
        let service_keys = ServiceKeys::open(service_keys_dir.path()).unwrap();
        if let Some(internal) = internal_api(&module, &service_keys) {
            router = router.merge(internal.split_for_parts().0);
        }
        let router = stack::apply(router, &HttpSettings::default(), Metrics::new());
        let served = Served::start(router).await.unwrap();
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
        let api = module.api();
        Self {
            served,
            client,
            clock,
            module,
            api,
            database,
            verifier,
            keys_dir,
            service_keys,
            _service_keys_dir: service_keys_dir,
            first_admin,
        }
    }

    /// The users port as notifications reaches it from another process: the contract's
    /// client over the internal API.
    pub fn port_over_http(&self) -> Arc<dyn UsersApi> {
        let transport =
            port_transport(&self.served, &self.service_keys, "notifications", "users", TransportSettings::default())
                .unwrap();
        Arc::new(UsersClient::new(transport))
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
        platform::testing::send(&self.client, method, &self.url(path.as_ref()), token, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, None, Some(body)).await
    }

    pub async fn get_as(&self, path: impl AsRef<str>, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Registers `email` with [`PASSWORD`]; returns the new user's id.
    pub async fn register(&self, email: &str) -> String {
        let response = self
            .post("/api/v1/users", json!({"email": email, "password": PASSWORD, "display_name": "Test User"}))
            .await;
        let (status, body) = read(response).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, email: &str, password: &str) -> Session {
        let response = self.post("/api/v1/auth/login", json!({"email": email, "password": password})).await;
        let (status, body) = read(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Session {
            access: body["data"]["access_token"].as_str().unwrap().to_owned(),
            refresh: body["data"]["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn admin(&self) -> Session {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// A registered and signed-in customer: (user id, session).
    pub async fn customer(&self, email: &str) -> (String, Session) {
        let id = self.register(email).await;
        (id, self.login(email, PASSWORD).await)
    }

    /// The payloads of `event_type` in the users outbox, oldest first.
    pub async fn events(&self, event_type: &str) -> Vec<Value> {
        let mut db = self.database.admin_connection().await.unwrap();
        let payloads: Vec<Value> =
            sqlx::query_scalar("SELECT payload FROM users.outbox WHERE event_type = $1 ORDER BY append_seq")
                .bind(event_type)
                .fetch_all(&mut db)
                .await
                .unwrap();
        db.close().await.ok();
        payloads
    }

    /// Waits until `event_type` has been appended `count` times; returns the payloads.
    pub async fn await_events(&self, event_type: &str, count: usize) -> Vec<Value> {
        platform::testing::eventually(std::time::Duration::from_secs(10), || async {
            let events = self.events(event_type).await;
            Ok((events.len() >= count).then_some(events))
        })
        .await
        .unwrap()
    }

    /// What the notifications module will do: mint the link of the request an event named.
    pub async fn link(&self, request: &Value) -> ActionLink {
        let id = ActionRequestId(request.as_str().unwrap().parse().unwrap());
        self.api.action_link(&CallContext::system("test"), id).await.unwrap()
    }

    /// Moves the module's clock.
    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }
}

pub use platform::testing::{error_code as code, read_or_fail as read};
