//! The jobs' admin API (mounted by `app` under `/api/v1`): failed jobs, for admins only.

use axum::extract::{FromRef, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::failed::{FailedJob, failed_jobs};
use crate::auth::{AdminOnly, JwtVerifier};
use crate::http::pagination::{PageMeta, PageQuery};
use crate::http::{ApiError, ErrorEnvelope, Page, Query};

/// What the admin handlers need.
#[derive(Debug, Clone)]
pub struct JobsAdminState {
    /// The jobs pool.
    pub pool: PgPool,
    pub verifier: JwtVerifier,
}

impl FromRef<JobsAdminState> for JwtVerifier {
    fn from_ref(state: &JobsAdminState) -> Self {
        state.verifier.clone()
    }
}

/// The routes, relative to `/api/v1`.
pub fn router(state: JobsAdminState) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(list_failed_jobs)).with_state(state)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FailedJobQuery {
    /// Only this queue's, e.g. `orders.payment_timeout`.
    queue: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `meta.next_cursor` of the previous page.
    after: Option<String>,
}

/// The body of a failed-jobs page.
#[derive(Debug, Serialize, ToSchema)]
struct FailedJobPage {
    data: Vec<FailedJob>,
    meta: PageMeta,
}

/// Jobs that will not run again — aborted by their handler (`Killed`) or out of attempts
/// (`Failed`) — oldest failure first, with their last error. Kept for the jobs' retention
/// window (7 days).
#[utoipa::path(get, path = "/admin/jobs/failed", tag = "jobs",
    params(FailedJobQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of failed jobs", body = FailedJobPage),
        (status = 400, description = "Bad limit or cursor", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
async fn list_failed_jobs(
    _: AdminOnly,
    State(state): State<JobsAdminState>,
    Query(query): Query<FailedJobQuery>,
) -> Result<Page<FailedJob>, ApiError> {
    let page = PageQuery { limit: query.limit, after: query.after, sort: None }
        .parse::<(DateTime<Utc>, String)>(&["failed_at"], "failed_at")?;
    let jobs = failed_jobs(&state.pool, query.queue.as_deref(), page.after.clone(), page.limit as usize + 1).await?;
    Ok(Page::from_overfetch(jobs, &page, |job| (job.failed_at, job.id.clone())))
}
