//! Failed sign-in counts per account and per client address.

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;

use crate::domain::Backoff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Account,
    Client,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Client => "client",
        }
    }
}

/// Failures counted so far and when the last one was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failures {
    pub(crate) count: i32,
    pub(crate) last_at: DateTime<Utc>,
}

pub(crate) async fn read(db: &mut PgConnection, scope: Scope, key: &str) -> anyhow::Result<Option<Failures>> {
    let row: Option<(i32, DateTime<Utc>)> =
        sqlx::query_as("SELECT failures, last_failure_at FROM login_failures WHERE scope = $1 AND key = $2")
            .bind(scope.as_str())
            .bind(key)
            .fetch_optional(db)
            .await
            .context("reading failed sign-ins")?;
    Ok(row.map(|(count, last_at)| Failures { count, last_at }))
}

/// Counts a sign-in attempt against `key`, unless the key is backing off: then nothing is
/// counted and the answer is when the block ends. The check and the count are one statement
/// on one row, so a burst of parallel attempts cannot all slip under the threshold.
pub(crate) async fn count_attempt(
    db: &mut PgConnection,
    scope: Scope,
    key: &str,
    at: DateTime<Utc>,
    backoff: &Backoff,
) -> anyhow::Result<Result<(), DateTime<Utc>>> {
    let counted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO login_failures AS f (scope, key, failures, last_failure_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (scope, key) DO UPDATE
            SET failures = CASE WHEN f.last_failure_at < $4 THEN 1 ELSE f.failures + 1 END,
                last_failure_at = $3
          WHERE NOT (f.failures >= $5 AND f.last_failure_at >= $4
                     AND f.last_failure_at + make_interval(secs => least($6 * power(2, least(f.failures - $5, 20)), $7)) > $3)
         RETURNING failures",
    )
    .bind(scope.as_str())
    .bind(key)
    .bind(at)
    .bind(at - backoff.decay)
    .bind(backoff.free)
    .bind(backoff.base.as_seconds_f64())
    .bind(backoff.ceiling.as_seconds_f64())
    .fetch_optional(&mut *db)
    .await
    .context("counting a sign-in attempt")?;
    if counted.is_some() {
        return Ok(Ok(()));
    }
    let until = read(db, scope, key).await?.and_then(|failures| backoff.blocked_until(failures, at));
    // The block may have ended between the two statements; a second's wait is harmless.
    Ok(Err(until.unwrap_or(at + TimeDelta::seconds(1))))
}

/// Counts one failure after the fact (the count starts again after `decay`).
pub(crate) async fn record(
    db: &mut PgConnection,
    scope: Scope,
    key: &str,
    at: DateTime<Utc>,
    decay: TimeDelta,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO login_failures AS f (scope, key, failures, last_failure_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (scope, key) DO UPDATE
            SET failures = CASE WHEN f.last_failure_at < $4 THEN 1 ELSE f.failures + 1 END, last_failure_at = $3",
    )
    .bind(scope.as_str())
    .bind(key)
    .bind(at)
    .bind(at - decay)
    .execute(db)
    .await
    .context("recording a failed sign-in")?;
    Ok(())
}

pub(crate) async fn clear(db: &mut PgConnection, scope: Scope, key: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE scope = $1 AND key = $2")
        .bind(scope.as_str())
        .bind(key)
        .execute(db)
        .await
        .context("clearing failed sign-ins")?;
    Ok(())
}
