//! Liveness, readiness and metrics endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use platform::bus::Bus;
use platform::db::{Databases, ModuleSchema, migrate};
use platform::http::{ApiError, Data, ErrorEnvelope};
use platform::metrics::Metrics;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone)]
pub struct HealthState {
    pub databases: Databases,
    pub schemas: Arc<[ModuleSchema]>,
    pub bus: Bus,
    /// The jobs pool.
    pub jobs: sqlx::PgPool,
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
/// down (it polls), so they do not make the process unready.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve traffic", body = inline(platform::http::Envelope<Readiness>)),
        (status = 503, description = "A dependency is down; `details` says which", body = ErrorEnvelope),
    ))]
pub async fn ready(State(state): State<HealthState>) -> Result<Data<Readiness>, ApiError> {
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
    if let Some(admin) = state.databases.admin() {
        record("database".to_owned(), ping(admin).await);
    }
    for schema in state.schemas.iter() {
        let outcome = match state.databases.pool(schema.name) {
            Ok(pool) => match ping(pool).await {
                Ok(()) => migrations_current(pool, schema).await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        record(format!("{}.database_and_migrations", schema.name), outcome);
    }
    let jobs = match ping(&state.jobs).await {
        Ok(()) => jobs_migrations_current(&state.jobs).await,
        Err(error) => Err(error),
    };
    record("jobs".to_owned(), jobs);
    let bus = if state.bus.is_empty() {
        "idle (no module hosted)"
    } else if state.bus.notifications_connected() {
        "ok"
    } else {
        "polling (notifications not connected)"
    };
    checks.insert("bus".to_owned(), bus.into());
    if healthy {
        Ok(Data(Readiness { status: "ready", checks }))
    } else {
        Err(ApiError::unavailable("not_ready", "A dependency is not ready.", Duration::from_secs(5))
            .with_details(checks))
    }
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
