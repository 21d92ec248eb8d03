//! Jobs that will not run again: killed (aborted by their handler) or failed on their last
//! attempt. What operators look at (CLI and admin API).

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

/// A job that gave up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailedJob {
    /// The job's id (a ULID).
    pub id: String,
    /// Its queue, e.g. `orders.payment_timeout`.
    pub queue: String,
    /// `Killed` (aborted by its handler) or `Failed` (out of attempts).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Attempts it was allowed.
    pub max_attempts: i32,
    /// The last attempt's error, with its cause chain.
    pub error: Option<String>,
    /// The job as enqueued.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The key it was enqueued with, if any.
    pub idempotency_key: Option<String>,
    /// When it was due.
    pub run_at: DateTime<Utc>,
    /// When its last attempt ended.
    pub failed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    queue: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    last_result: Option<serde_json::Value>,
    job: Vec<u8>,
    idempotency_key: Option<String>,
    run_at: DateTime<Utc>,
    failed_at: DateTime<Utc>,
}

impl From<Row> for FailedJob {
    fn from(row: Row) -> Self {
        // apalis stores the outcome as `{"Err": "<message>"}`; an abort's message starts
        // with its wrapper's name.
        let error = row
            .last_result
            .as_ref()
            .and_then(|r| r.get("Err"))
            .and_then(|e| e.as_str())
            .map(|message| message.strip_prefix("AbortError: ").unwrap_or(message).to_owned());
        let payload = serde_json::from_slice(&row.job)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&row.job).into_owned()));
        Self {
            id: row.id,
            queue: row.queue,
            status: row.status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            error,
            payload,
            idempotency_key: row.idempotency_key,
            run_at: row.run_at,
            failed_at: row.failed_at,
        }
    }
}

/// Failed jobs (of every queue, or one), oldest failure first, after the `after` key
/// (`failed_at`, `id`), at most `limit`.
///
/// # Errors
/// Database failures.
pub async fn failed_jobs(
    pool: &PgPool,
    queue: Option<&str>,
    after: Option<(DateTime<Utc>, String)>,
    limit: usize,
) -> anyhow::Result<Vec<FailedJob>> {
    let (after_time, after_id) = after.map_or((None, String::new()), |(time, id)| (Some(time), id));
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, job_type AS queue, status, attempts, max_attempts, last_result, job, idempotency_key, run_at,
                coalesce(done_at, run_at) AS failed_at
           FROM apalis.jobs
          WHERE (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
            AND ($1::text IS NULL OR job_type = $1)
            AND ($2::timestamptz IS NULL OR (coalesce(done_at, run_at), id) > ($2, $3))
          ORDER BY coalesce(done_at, run_at), id
          LIMIT $4",
    )
    .bind(queue)
    .bind(after_time)
    .bind(after_id)
    .bind(i64::try_from(limit)?)
    .fetch_all(pool)
    .await
    .context("listing failed jobs")?;
    Ok(rows.into_iter().map(FailedJob::from).collect())
}
