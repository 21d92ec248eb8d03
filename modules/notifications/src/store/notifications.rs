//! Notifications and their delivery attempts.

use anyhow::Context;
use chrono::{DateTime, Utc};
use platform::http::PageRequest;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::{Channel, Status};

/// A notification about to be recorded.
#[derive(Debug, Clone)]
pub(crate) struct NewNotification {
    pub(crate) id: Uuid,
    pub(crate) event_id: Uuid,
    pub(crate) event_key: Uuid,
    pub(crate) event_type: String,
    pub(crate) channel: Channel,
    pub(crate) recipient: String,
    pub(crate) user_id: Option<Uuid>,
    pub(crate) endpoint_id: Option<Uuid>,
    pub(crate) address: Option<String>,
    pub(crate) template: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) content: serde_json::Value,
    pub(crate) status: Status,
    pub(crate) reason: Option<String>,
    pub(crate) at: DateTime<Utc>,
}

/// Records `notification` unless one exists for its event (by key), channel and recipient.
/// Returns whether it was new: a duplicate event changes nothing.
pub(crate) async fn insert(db: &mut PgConnection, n: &NewNotification) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO notifications (id, event_id, event_type, channel, recipient, user_id, endpoint_id, address,
                                    template, subject, content, status, reason, created_at, updated_at, event_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)
         ON CONFLICT (event_key, channel, recipient) DO NOTHING",
    )
    .bind(n.id)
    .bind(n.event_id)
    .bind(&n.event_type)
    .bind(n.channel.as_str())
    .bind(&n.recipient)
    .bind(n.user_id)
    .bind(n.endpoint_id)
    .bind(&n.address)
    .bind(&n.template)
    .bind(&n.subject)
    .bind(&n.content)
    .bind(n.status.as_str())
    .bind(&n.reason)
    .bind(n.at)
    .bind(n.event_key)
    .execute(db)
    .await
    .context("recording a notification")?;
    Ok(done.rows_affected() == 1)
}

/// A notification as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct NotificationRow {
    pub(crate) id: Uuid,
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    /// Read as the enum: a value the code does not know is an error, never a guess.
    #[sqlx(try_from = "String")]
    pub(crate) channel: Channel,
    pub(crate) recipient: String,
    pub(crate) user_id: Option<Uuid>,
    pub(crate) endpoint_id: Option<Uuid>,
    pub(crate) address: Option<String>,
    pub(crate) template: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) content: serde_json::Value,
    #[sqlx(try_from = "String")]
    pub(crate) status: Status,
    pub(crate) reason: Option<String>,
    pub(crate) attempts: i32,
    pub(crate) sent_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

macro_rules! select_notifications {
    ($rest:literal) => {
        concat!(
            "SELECT id, event_id, event_type, channel, recipient, user_id, endpoint_id, address, template, subject,
                    content, status, reason, attempts, sent_at, created_at, updated_at
               FROM notifications ",
            $rest
        )
    };
}

pub(crate) async fn find(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<NotificationRow>> {
    sqlx::query_as(select_notifications!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading a notification")
}

/// The notification, locked until the transaction ends: one delivery at a time.
pub(crate) async fn lock(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<NotificationRow>> {
    sqlx::query_as(select_notifications!("WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("locking a notification")
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) at: DateTime<Utc>,
    /// `succeeded`, `transient_failure` or `permanent_failure`.
    pub(crate) outcome: &'static str,
    pub(crate) response_code: Option<u16>,
    pub(crate) latency_ms: i64,
    pub(crate) error: Option<String>,
}

/// Records an attempt and counts it on the notification (the error, while pending, as its
/// reason).
pub(crate) async fn record_attempt(db: &mut PgConnection, id: Uuid, attempt: &Attempt) -> anyhow::Result<i32> {
    let number: i32 = sqlx::query_scalar(
        "UPDATE notifications SET attempts = attempts + 1, reason = $2, updated_at = $3 WHERE id = $1 RETURNING attempts",
    )
    .bind(id)
    .bind(&attempt.error)
    .bind(attempt.at)
    .fetch_one(&mut *db)
    .await
    .context("counting a delivery attempt")?;
    sqlx::query(
        "INSERT INTO delivery_attempts (notification_id, attempt, at, outcome, response_code, latency_ms, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(number)
    .bind(attempt.at)
    .bind(attempt.outcome)
    .bind(attempt.response_code.map(i32::from))
    .bind(attempt.latency_ms)
    .bind(&attempt.error)
    .execute(db)
    .await
    .context("recording a delivery attempt")?;
    Ok(number)
}

/// Settles a notification: `sent` (with its time) or `failed` (with its cause).
pub(crate) async fn settle(
    db: &mut PgConnection,
    id: Uuid,
    status: Status,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE notifications SET status = $2, reason = $3, updated_at = $4,
                sent_at = CASE WHEN $2 = 'sent' THEN $4 ELSE sent_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(reason)
    .bind(at)
    .execute(db)
    .await
    .context("settling a notification")?;
    Ok(())
}

/// Makes a notification pending again (a retry or redelivery); returns its new generation.
pub(crate) async fn reopen(db: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<i32> {
    sqlx::query_scalar(
        "UPDATE notifications SET status = 'pending', reason = NULL, generation = generation + 1, updated_at = $2
          WHERE id = $1 RETURNING generation",
    )
    .bind(id)
    .bind(at)
    .fetch_one(db)
    .await
    .context("reopening a notification")
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub(crate) struct AttemptRow {
    /// 1 for the first attempt, counting across retries.
    pub(crate) attempt: i32,
    pub(crate) at: DateTime<Utc>,
    /// `succeeded`, `transient_failure` or `permanent_failure`.
    pub(crate) outcome: String,
    /// The HTTP status (webhooks) or SMTP reply code (email), when there was an answer.
    pub(crate) response_code: Option<i32>,
    pub(crate) latency_ms: i64,
    pub(crate) error: Option<String>,
}

pub(crate) async fn attempts(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Vec<AttemptRow>> {
    sqlx::query_as(
        "SELECT attempt, at, outcome, response_code, latency_ms, error FROM delivery_attempts
          WHERE notification_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .context("reading delivery attempts")
}

/// Which notifications a listing covers.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    pub(crate) user_id: Option<Uuid>,
    pub(crate) endpoint_id: Option<Uuid>,
    pub(crate) status: Option<Status>,
    pub(crate) channel: Option<Channel>,
    pub(crate) event_type: Option<String>,
}

pub(crate) const SORTABLE: &[&str] = &["created_at"];

/// The sort key of a listed notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ListKey(pub(crate) DateTime<Utc>, pub(crate) Uuid);

pub(crate) fn list_key(row: &NotificationRow) -> ListKey {
    ListKey(row.created_at, row.id)
}

/// One page (`limit + 1` rows fetched), by creation time.
pub(crate) async fn list(
    db: &mut PgConnection,
    filter: &ListFilter,
    page: &PageRequest<ListKey>,
) -> anyhow::Result<Vec<NotificationRow>> {
    let descending = page.sort.keys().first().is_none_or(|k| k.descending);
    let mut query = QueryBuilder::new(select_notifications!("WHERE true"));
    if let Some(user) = filter.user_id {
        query.push(" AND user_id = ").push_bind(user);
    }
    if let Some(endpoint) = filter.endpoint_id {
        query.push(" AND endpoint_id = ").push_bind(endpoint);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(channel) = filter.channel {
        query.push(" AND channel = ").push_bind(channel.as_str());
    }
    if let Some(event_type) = &filter.event_type {
        query.push(" AND event_type = ").push_bind(event_type.clone());
    }
    let (op, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(ListKey(at, id)) = &page.after {
        query.push(format!(" AND (created_at, id) {op} (")).push_bind(*at).push(", ").push_bind(*id).push(")");
    }
    query.push(format!(" ORDER BY created_at {direction}, id {direction} LIMIT "));
    query.push_bind(i64::from(page.limit) + 1);
    query.build_query_as().fetch_all(db).await.context("listing notifications")
}

/// Whether the event (by key) already produced a notification for this channel and recipient.
pub(crate) async fn exists(
    db: &mut PgConnection,
    event_key: Uuid,
    channel: Channel,
    recipient: &str,
) -> anyhow::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notifications WHERE event_key = $1 AND channel = $2 AND recipient = $3)",
    )
    .bind(event_key)
    .bind(channel.as_str())
    .bind(recipient)
    .fetch_one(db)
    .await
    .context("looking for a notification")
}

/// Fails the `channel`'s notifications still pending and untouched since before `cutoff`,
/// with `reason`; returns how many. Rows a delivery holds locked are skipped (it is alive).
pub(crate) async fn fail_stale(
    db: &mut PgConnection,
    channel: Channel,
    cutoff: DateTime<Utc>,
    reason: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "UPDATE notifications SET status = 'failed', reason = $3, updated_at = $4
          WHERE id IN (SELECT id FROM notifications
                        WHERE status = 'pending' AND channel = $1 AND updated_at < $2
                          FOR UPDATE SKIP LOCKED)",
    )
    .bind(channel.as_str())
    .bind(cutoff)
    .bind(reason)
    .bind(at)
    .execute(db)
    .await
    .context("failing notifications left pending")?;
    Ok(done.rows_affected())
}
