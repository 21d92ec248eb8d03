//! Failed sign-in counts per account and per client address.

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;

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

/// Counts one more failure; the count starts again when the last one is older than `decay`.
pub(crate) async fn record(
    db: &mut PgConnection,
    scope: Scope,
    key: &str,
    at: DateTime<Utc>,
    decay: TimeDelta,
) -> anyhow::Result<Failures> {
    let (count, last_at): (i32, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO login_failures AS f (scope, key, failures, last_failure_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (scope, key) DO UPDATE
            SET failures = CASE WHEN f.last_failure_at < $4 THEN 1 ELSE f.failures + 1 END,
                last_failure_at = $3
         RETURNING failures, last_failure_at",
    )
    .bind(scope.as_str())
    .bind(key)
    .bind(at)
    .bind(at - decay)
    .fetch_one(db)
    .await
    .context("recording a failed sign-in")?;
    Ok(Failures { count, last_at })
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
