//! A module alone, as its own tests run it: a fresh database holding the module's schema and
//! stand-ins for the modules whose events it reads (only their outboxes), the real bus and
//! jobs runtime, and the module's public routes served over HTTP with the shared middleware,
//! beside its internal API behind service tokens, which [`ModuleHarness::port_transport`]
//! calls as another module's process would.
//! Tests append the other modules' events to the stand-in outboxes and watch the module react.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Served, TestDatabase, TestSigner, eventually, jobs_runtime};
use crate::Module;
use crate::auth::{JwtVerifier, Role};
use crate::bus::{BusBuilder, BusConfig, BusTasks, Event, Metadata};
use crate::db::{Databases, ModuleSchema};
use crate::http::{HttpSettings, stack};
use crate::jobs::JobsHandle;
use crate::metrics::Metrics;
use crate::remote::{ServiceKeys, TransportSettings, internal_api};

/// One request to `url`, with an optional bearer token and JSON body, as every module test
/// sends them. A transport failure fails the test (tests fail loudly); statuses are the
/// test's to check.
///
/// # Panics
/// The request could not be sent or its answer not read.
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = client.request(method.clone(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap_or_else(|error| panic!("{method} {url}: {error}"))
}

/// The running module; stops its bus, jobs and server when dropped.
pub struct ModuleHarness {
    pub served: Served,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    pub databases: Databases,
    pub signer: TestSigner,
    pub verifier: JwtVerifier,
    pub metrics: Metrics,
    /// The trust bundle of service keys the internal API checks callers against.
    pub service_keys: ServiceKeys,
    _service_keys_dir: tempfile::TempDir,
    /// The module under test (the first schema).
    module: &'static str,
    /// The stand-ins' names: the sources of its subscriptions.
    sources: Vec<&'static str>,
    /// Queues that run on a schedule: always due again, so [`ModuleHarness::settle`] ignores them.
    recurring: Vec<&'static str>,
    stop: CancellationToken,
    _bus: BusTasks,
    _jobs: JobsHandle,
}

impl std::fmt::Debug for ModuleHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleHarness")
            .field("module", &self.module)
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

impl Drop for ModuleHarness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ModuleHarness {
    /// Creates the database (`schemas[0]` is the module's, the rest stand-ins), builds the
    /// module with `build` from its pools, the verifier (which trusts [`ModuleHarness::token`])
    /// and the metrics, and starts everything. Returns the module too, for tests that reach
    /// past its HTTP API.
    ///
    /// # Errors
    /// Anything that fails to start.
    pub async fn start<M, B>(schemas: &[ModuleSchema], build: B) -> anyhow::Result<(Self, M)>
    where
        M: Module + Clone,
        B: FnOnce(&Databases, &JwtVerifier, &Metrics) -> anyhow::Result<M>,
    {
        let (first, stand_ins) = schemas.split_first().context("no module schema given")?;
        let database = TestDatabase::create(schemas).await?;
        let databases = database.connect(schemas).await?;
        let verifier = JwtVerifier::new("bulkhead", "bulkhead-api");
        let metrics = Metrics::new();
        let module = build(&databases, &verifier, &metrics)?;

        let pool = |name: &str| databases.pool(name).cloned();
        let mut bus = BusBuilder::new(BusConfig::default(), &metrics);
        for schema in schemas {
            bus = bus.publisher(schema.name, pool(schema.name)?);
        }
        for subscription in module.subscriptions() {
            bus = bus.subscription(first.name, pool(first.name)?, subscription)?;
        }
        let stop = CancellationToken::new();
        let bus = bus.build().start(stop.clone()).await?;
        let queues = module.jobs();
        let recurring = queues.iter().filter(|queue| queue.recurring.is_some()).map(|queue| queue.name).collect();
        let jobs = jobs_runtime(&databases, &metrics)?.queues(queues).start(stop.clone()).await?;

        let (api, _) = module.public_routes().split_for_parts();
        let mut router = Router::new().nest("/api/v1", api);
        let service_keys_dir = tempfile::tempdir()?;
        let service_keys = ServiceKeys::open(service_keys_dir.path())?;
        if let Some(internal) = internal_api(&module, &service_keys) {
            router = router.merge(internal.split_for_parts().0);
        }
        let router = stack::apply(router, &HttpSettings::default(), metrics.clone());
        let served = Served::start(router).await?;
        let signer = TestSigner::new();
        signer.trust(&verifier);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let harness = Self {
            served,
            client,
            database,
            databases,
            signer,
            verifier,
            metrics,
            service_keys,
            _service_keys_dir: service_keys_dir,
            module: first.name,
            sources: stand_ins.iter().map(|schema| schema.name).collect(),
            recurring,
            stop,
            _bus: bus,
            _jobs: jobs,
        };
        Ok((harness, module))
    }

    pub fn url(&self, path: &str) -> String {
        self.served.url(path)
    }

    /// The transport another module's process would call this module's ports through,
    /// signing as `caller` (whose key pair is made in the harness's trust bundle).
    ///
    /// # Errors
    /// The caller's key cannot be made.
    pub fn port_transport(
        &self,
        caller: &'static str,
        settings: TransportSettings,
    ) -> anyhow::Result<std::sync::Arc<dyn shared_kernel::port::remote::Transport>> {
        super::port_transport(&self.served, &self.service_keys, caller, self.module, settings)
    }

    /// An access token for `subject` with `roles`, trusted by the module.
    pub fn token(&self, subject: &str, roles: &[Role]) -> String {
        self.signer.token(&self.verifier, subject, roles)
    }

    /// A new customer (a fresh user id) and a token for them.
    pub fn new_customer(&self) -> (uuid::Uuid, String) {
        let user = uuid::Uuid::now_v7();
        (user, self.token(&user.to_string(), &[Role::Customer]))
    }

    /// A token for a new admin (who is a customer too, as every account is).
    pub fn new_admin_token(&self) -> String {
        self.token(&uuid::Uuid::now_v7().to_string(), &[Role::Admin, Role::Customer])
    }

    /// One request to the module's API, with an optional bearer token and JSON body; see
    /// [`send`].
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: impl AsRef<str>,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        send(&self.client, method, &self.served.url(path.as_ref()), token, body).await
    }

    /// `GET path` with `token`; the answer must be 200. Its `data`.
    ///
    /// # Panics
    /// Any other status.
    pub async fn get_data(&self, path: impl AsRef<str>, token: &str) -> Value {
        let (status, body) = read_or_fail(self.call(reqwest::Method::GET, path, Some(token), None).await).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        body["data"].clone()
    }

    /// Appends `event` to the outbox of `source` (a stand-in), as that module would.
    ///
    /// # Errors
    /// Database failures.
    pub async fn publish<E: Event>(&self, source: &str, event: &E) -> anyhow::Result<()> {
        let mut tx = self.databases.pool(source)?.begin().await?;
        crate::bus::append(&mut tx, event, &Metadata::system("test")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The payloads of `event_type` the module published for aggregate `key`, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn published(&self, event_type: &str, key: &str) -> anyhow::Result<Vec<Value>> {
        let mut db = self.database.admin_connection().await?;
        let sql = format!(
            "SELECT payload FROM {}.outbox WHERE event_type = $1 AND aggregate_key = $2 ORDER BY append_seq",
            self.module
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(event_type).bind(key).fetch_all(&mut db).await?)
    }

    /// Waits until the module has handled every event in the stand-in outboxes and none of its
    /// own jobs is waiting, running or due for a retry (recurring ones aside), so a test can
    /// check that something did *not* happen.
    ///
    /// # Errors
    /// Not settled within 30 seconds.
    pub async fn settle(&self) -> anyhow::Result<()> {
        eventually(Duration::from_secs(30), || async {
            let mut db = self.database.admin_connection().await?;
            let mut settled = true;
            for source in &self.sources {
                let sql = format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {source}.outbox WHERE position IS NULL)
                        AND NOT EXISTS (SELECT 1 FROM {module}.bus_cursors c JOIN {source}.outbox o
                                          ON o.position > c.position AND o.key_hash % c.partitions = c.partition
                                         WHERE c.source = '{source}')
                        AND EXISTS (SELECT 1 FROM {module}.bus_cursors WHERE source = '{source}')",
                    module = self.module
                );
                settled &= sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut db).await?;
            }
            let jobs: bool = sqlx::query_scalar(
                "SELECT NOT EXISTS (SELECT 1 FROM apalis.jobs
                                     WHERE job_type LIKE $1 || '.%' AND job_type <> ALL($2)
                                       AND (status IN ('Pending', 'Queued', 'Running')
                                            OR (status = 'Failed' AND attempts < max_attempts))
                                       AND run_at < now() + interval '1 minute')",
            )
            .bind(self.module)
            .bind(&self.recurring)
            .fetch_one(&mut db)
            .await?;
            Ok((settled && jobs).then_some(()))
        })
        .await
    }
}

/// A response's status and its body as JSON (a string if it is not JSON; null if empty).
///
/// # Errors
/// Transport failures while reading the body.
pub async fn read(response: reqwest::Response) -> reqwest::Result<(reqwest::StatusCode, Value)> {
    let status = response.status();
    let text = response.text().await?;
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Ok((status, body))
}

/// [`read`] for module tests: a transport failure fails the test.
#[expect(clippy::expect_used, reason = "test support fails loudly")]
pub async fn read_or_fail(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
    read(response).await.expect("reading a response")
}

/// The `error.code` of an error envelope; empty when the body is not one.
#[must_use]
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}
