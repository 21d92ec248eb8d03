//! Putting a job in its queue inside the caller's transaction.

use std::collections::HashMap;

use anyhow::Context;
use apalis::prelude::{MetadataStore, TaskBuilder};
use apalis_postgres::PgTask;
use sqlx::{Connection, PgConnection};

use super::signals::DUE_CHANNEL;
use super::{DEFAULT_MAX_ATTEMPTS, Enqueued, Job, Schedule};
use crate::telemetry::TRACEPARENT;

/// The unique index apalis keeps on `(job_type, idempotency_key)`.
const IDEMPOTENCY_INDEX: &str = "idx_jobs_idempotency_key";

/// Enqueues `job` in its queue inside the caller's transaction (any module role's connection
/// with `search_path=<module>`), so it exists exactly when the transaction commits.
///
/// The insert runs under a savepoint: a duplicate idempotency key rolls back to it and
/// answers [`Enqueued::AlreadyScheduled`], leaving the caller's transaction usable (a failed
/// statement would otherwise abort all of it).
///
/// # Errors
/// A payload that does not serialise, or a database failure (the caller's transaction is
/// still usable after one: the savepoint was rolled back).
#[tracing::instrument(skip_all, fields(queue = J::QUEUE, bulkhead.module = crate::telemetry::module_of(J::QUEUE)))]
pub async fn enqueue<J: Job>(conn: &mut PgConnection, job: &J, schedule: Schedule) -> anyhow::Result<Enqueued> {
    let payload = serde_json::to_vec(job).with_context(|| format!("serialising a {} job", J::QUEUE))?;
    enqueue_payload(conn, J::QUEUE, payload, &schedule).await
}

/// [`enqueue`] for a payload already serialised (the platform's own recurring jobs).
pub(crate) async fn enqueue_payload(
    conn: &mut PgConnection,
    queue: &str,
    payload: Vec<u8>,
    schedule: &Schedule,
) -> anyhow::Result<Enqueued> {
    let mut savepoint = conn.begin().await.context("opening a savepoint to enqueue a job")?;
    match push(&mut savepoint, queue, payload, schedule).await {
        Ok(()) => {
            savepoint.commit().await.context("releasing the savepoint of an enqueued job")?;
            Ok(Enqueued::New)
        }
        Err(apalis_postgres::Error::Database(sqlx::Error::Database(e)))
            if e.constraint() == Some(IDEMPOTENCY_INDEX) =>
        {
            savepoint.rollback().await.context("rolling back the savepoint of a job already scheduled")?;
            Ok(Enqueued::AlreadyScheduled)
        }
        Err(error) => {
            if let Err(rollback) = savepoint.rollback().await {
                tracing::debug!("rolling back the savepoint of a job not enqueued failed too: {rollback}");
            }
            Err(anyhow::Error::new(error).context(format!("enqueueing a job in {queue}")))
        }
    }
}

async fn push(
    conn: &mut PgConnection,
    queue: &str,
    payload: Vec<u8>,
    schedule: &Schedule,
) -> Result<(), apalis_postgres::Error> {
    // apalis' insert casts to `hstore` unqualified, and sqlx looks the type up by name: both
    // resolve through the search_path, which for a module's connection is its schema alone.
    // Widen it for this insert only (local to the transaction, restored before the savepoint
    // is released), so the caller's later statements see their own search_path.
    let (search_path, now): (String, i64) =
        sqlx::query_as("SELECT current_setting('search_path'), floor(extract(epoch FROM now()))::bigint")
            .fetch_one(&mut *conn)
            .await?;
    set_search_path(conn, &format!("{search_path}, apalis, public")).await?;

    let max_attempts = schedule.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1);
    // Due now means due at the transaction's start, by the database's clock: the insert
    // trigger only notifies workers of jobs due by then, and workers fetch by that clock.
    // A time in the future is rounded up, so a job never starts before it.
    let run_at = schedule.run_at.map_or(now, |at| {
        let seconds = at.timestamp();
        if at.timestamp_subsec_nanos() > 0 { seconds.saturating_add(1) } else { seconds }
    });
    let mut task = TaskBuilder::new(payload)
        .max_attempts(usize::try_from(max_attempts).unwrap_or(usize::MAX))
        .run_at_timestamp(u64::try_from(run_at).unwrap_or(0));
    if let Some(key) = &schedule.idempotency_key {
        task = task.idempotency_key(key);
    }
    // The job's run joins the trace of what enqueued it (see `service`).
    if let Some(traceparent) = crate::telemetry::current_traceparent() {
        task = task.with_metadata(MetadataStore::from_map(HashMap::from([(TRACEPARENT.to_owned(), traceparent)])));
    }
    let task: PgTask = task.build();
    apalis_postgres::queries::push_tasks(&mut *conn, queue, vec![task]).await?;
    if run_at > now {
        // apalis' trigger announces only jobs due now: the runtimes' listeners time this one
        // (`signals`). Sent on commit, and not at all if the savepoint is rolled back.
        let due = serde_json::json!({ "job_type": queue, "run_at": run_at }).to_string();
        sqlx::query("SELECT pg_notify($1, $2)").bind(DUE_CHANNEL).bind(due).execute(&mut *conn).await?;
    }
    set_search_path(conn, &search_path).await
}

async fn set_search_path(conn: &mut PgConnection, value: &str) -> Result<(), apalis_postgres::Error> {
    sqlx::query("SELECT set_config('search_path', $1, true)").bind(value).execute(&mut *conn).await?;
    Ok(())
}
