//! Liveness, readiness and metrics endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use platform::auth::JwtVerifier;
use platform::bus::Bus;
use platform::db::{Databases, ModuleSchema, migrate};
use platform::http::{ApiError, Data, ErrorEnvelope};
use platform::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use utoipa::ToSchema;

use crate::edge::Upstream;

#[derive(Debug, Clone)]
pub(crate) struct HealthState {
    pub(crate) databases: Databases,
    pub(crate) schemas: Arc<[ModuleSchema]>,
    pub(crate) bus: Bus,
    /// The jobs pool.
    pub(crate) jobs: sqlx::PgPool,
    /// For the keys it holds (fetched from users' process when users is hosted elsewhere).
    pub(crate) verifier: JwtVerifier,
    /// Modules hosted by other processes this one depends on.
    pub(crate) upstreams: Vec<Upstream>,
    pub(crate) client: reqwest::Client,
    pub(crate) readiness: ReadinessMetrics,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
}

/// The outcome of each readiness check at the last `/health/ready` (1 ok, 0 failing), so
/// alerts see what the orchestrator's probes saw. No series before the first probe.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadinessMetrics {
    checks: Family<CheckLabels, Gauge>,
}

impl ReadinessMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "bulkhead_readiness_check",
            "Each readiness check at the last /health/ready: 1 ok, 0 failing",
            this.checks.clone(),
        );
        this
    }

    fn record(&self, checks: &serde_json::Map<String, serde_json::Value>) {
        for (check, outcome) in checks {
            let ok = outcome.as_str() == Some("ok");
            self.checks.get_or_create(&CheckLabels { check: check.clone() }).set(i64::from(ok));
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process is up and serving HTTP. Checks nothing else, so a database outage
/// does not get the process restarted.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is alive", body = inline(platform::http::Envelope<Liveness>))))]
pub async fn live() -> Data<Liveness> {
    Data(Liveness { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Each check and its outcome (`ok` or what failed).
    #[schema(value_type = Object, example = json!({"database": "ok", "users.database_and_migrations": "ok", "jobs": "ok", "bus": "ok"}))]
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// Readiness: every hosted module's database answers and its migrations are all applied, and
/// so do the jobs storage's (`jobs`). The bus is reported too; lost notifications only slow it
/// down (it polls), so they do not make the process unready. So are the processes of modules
/// hosted elsewhere (`remote.<module>`) and, without users here, its signing keys
/// (`users.jwks`): another process being down degrades what depends on it, and taking this
/// one out of service would only spread the outage.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve traffic", body = inline(platform::http::Envelope<Readiness>)),
        (status = 503, description = "A dependency is down; `details` says which", body = ErrorEnvelope),
    ))]
pub async fn ready(State(state): State<HealthState>) -> Result<Data<Readiness>, ApiError> {
    let (mut checks, healthy) = storage_checks(&state.databases, &state.schemas, &state.jobs).await;
    // Only these decide readiness; the reports below do not.
    state.readiness.record(&checks);
    let waiting = state.bus.waiting_subscriptions();
    let bus = if state.bus.is_empty() {
        "idle (no module hosted)".to_owned()
    } else if !waiting.is_empty() {
        format!("waiting for the event logs of other modules' processes: {}", waiting.join(", "))
    } else if state.bus.notifications_connected() {
        "ok".to_owned()
    } else {
        "polling (notifications not connected)".to_owned()
    };
    checks.insert("bus".to_owned(), bus.into());
    if let Some(connected) = state.bus.relay_connected() {
        // A report: events wait in the outbox until the broker is back, nothing is lost.
        let broker = if connected { "ok" } else { "unreachable (events wait in the outboxes)" };
        checks.insert("bus.broker".to_owned(), broker.into());
    }
    let probes = state.upstreams.iter().map(|upstream| async {
        let url = format!("{}/health", upstream.url.as_str().trim_end_matches('/'));
        let answer = state.client.get(&url).timeout(Duration::from_secs(2)).send().await;
        let outcome = match answer {
            Ok(response) if response.status().is_success() => "ok".to_owned(),
            Ok(response) => format!("answers {}", response.status()),
            Err(error) => format!("unreachable ({error})"),
        };
        (format!("remote.{}", upstream.module), outcome)
    });
    for (name, outcome) in futures::future::join_all(probes).await {
        checks.insert(name, outcome.into());
    }
    if !state.schemas.iter().any(|schema| schema.name == "users") {
        // A process that started before users asks again here rather than at the first token.
        let report = match state.verifier.key_ids().len() {
            0 => match state.verifier.refresh().await {
                Ok(keys) if keys > 0 => "ok".to_owned(),
                Ok(_) => "the users module publishes no keys yet".to_owned(),
                Err(error) => format!("no keys yet: {error:#}"),
            },
            _ => "ok".to_owned(),
        };
        checks.insert("users.jwks".to_owned(), report.into());
    }
    if healthy { Ok(Data(Readiness { status: "ready", checks })) } else { Err(not_ready(checks)) }
}

/// The storage checks of readiness: the admin connection, each hosted module's database and
/// migrations, the jobs storage's. Also whether all passed.
async fn storage_checks(
    databases: &Databases,
    schemas: &[ModuleSchema],
    jobs: &sqlx::PgPool,
) -> (serde_json::Map<String, serde_json::Value>, bool) {
    let mut checks = serde_json::Map::new();
    let mut healthy = true;
    let mut record = |name: String, outcome: anyhow::Result<()>| {
        let value = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(error) => {
                healthy = false;
                format!("{error:#}")
            }
        };
        checks.insert(name, value.into());
    };
    if let Some(admin) = databases.admin() {
        record("database".to_owned(), ping(admin).await);
    }
    for schema in schemas {
        let outcome = match databases.pool(schema.name) {
            Ok(pool) => match ping(pool).await {
                Ok(()) => migrations_current(pool, schema).await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        record(format!("{}.database_and_migrations", schema.name), outcome);
    }
    let jobs = match ping(jobs).await {
        Ok(()) => jobs_migrations_current(jobs).await,
        Err(error) => Err(error),
    };
    record("jobs".to_owned(), jobs);
    (checks, healthy)
}

fn not_ready(checks: serde_json::Map<String, serde_json::Value>) -> ApiError {
    ApiError::unavailable("not_ready", "A dependency is not ready.", Duration::from_secs(5)).with_details(checks)
}

/// What a server started with `BULKHEAD_MIGRATE_ON_START=false` knows while it waits for
/// `bulkhead migrate up`: its databases, not yet its modules.
#[derive(Debug, Clone)]
pub(crate) struct WaitingState {
    pub(crate) databases: Databases,
    pub(crate) schemas: Arc<[ModuleSchema]>,
    pub(crate) jobs: sqlx::PgPool,
}

impl WaitingState {
    /// Whether every hosted module's migrations and the jobs storage's are applied.
    pub(crate) async fn migrated(&self) -> bool {
        storage_checks(&self.databases, &self.schemas, &self.jobs).await.1
    }
}

/// The routes a waiting server answers: alive, and not ready until migrated.
pub(crate) fn waiting_routes(state: WaitingState) -> axum::Router {
    axum::Router::new()
        .route("/health", axum::routing::get(live))
        .route("/health/ready", axum::routing::get(waiting_ready))
        .with_state(state)
}

async fn waiting_ready(State(state): State<WaitingState>) -> ApiError {
    let (mut checks, _) = storage_checks(&state.databases, &state.schemas, &state.jobs).await;
    checks.insert("bus".to_owned(), "not started: waiting for `bulkhead migrate up`".into());
    not_ready(checks)
}

async fn ping(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(pool))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 2s"))??;
    Ok(())
}

async fn migrations_current(pool: &sqlx::PgPool, schema: &ModuleSchema) -> anyhow::Result<()> {
    if migrate::is_current(pool, schema).await? { Ok(()) } else { Err(anyhow::anyhow!("migrations pending")) }
}

async fn jobs_migrations_current(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    if migrate::jobs_is_current(pool).await? { Ok(()) } else { Err(anyhow::anyhow!("migrations pending")) }
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(metrics): State<Metrics>) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
