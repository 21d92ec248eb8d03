//! The sandbox gateway's books in PostgreSQL, schema `payments_sandbox` (ADR 0021): charges,
//! answers per idempotency key, webhooks to send, and the outage switch. Every replica's
//! sandbox shares them, and a restart forgets nothing, as with a real processor.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use payments_contract::events::FailureCode;
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::gateway::{Authorization, GatewayError};

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/payments_sandbox");

/// The schema the books live in; created beforehand (it needs the right to create schemas).
pub const SCHEMA: &str = "payments_sandbox";

/// Where a charge stands at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Processing,
    Authorized,
    Captured,
    Voided,
    Declined(FailureCode),
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Declined(_) => "declined",
        }
    }

    fn code(self) -> Option<&'static str> {
        match self {
            Self::Declined(code) => Some(code.as_str()),
            _ => None,
        }
    }

    fn read(name: &str, code: Option<&str>) -> anyhow::Result<Self> {
        Ok(match name {
            "processing" => Self::Processing,
            "authorized" => Self::Authorized,
            "captured" => Self::Captured,
            "voided" => Self::Voided,
            "declined" => {
                let code = code.context("a declined charge without its code")?;
                Self::Declined(serde_json::from_value(serde_json::Value::String(code.to_owned()))?)
            }
            other => anyhow::bail!("unknown sandbox charge status {other:?}"),
        })
    }
}

/// A charge as the gateway keeps it.
#[derive(Debug, Clone)]
pub(super) struct Charge {
    pub(super) payment_id: Uuid,
    pub(super) reference: String,
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) captured: i64,
    pub(super) refunded: i64,
    pub(super) status: Status,
}

/// An asynchronous outcome: decided at `at`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decision {
    pub(super) at: DateTime<Utc>,
    pub(super) outcome: Status,
}

/// The answer stored for an idempotency key, replayed to the same key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(super) enum Stored {
    Approved { reference: String },
    Processing { reference: String },
    Done,
    Refunded { refund_reference: String },
    Declined { code: FailureCode, message: String },
    Refused { message: String },
}

impl Stored {
    pub(super) fn authorization(&self) -> Option<Result<Authorization, GatewayError>> {
        match self.outcome() {
            Ok(Self::Approved { reference }) => Some(Ok(Authorization::Approved { reference: reference.clone() })),
            Ok(Self::Processing { reference }) => Some(Ok(Authorization::Processing { reference: reference.clone() })),
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        }
    }

    pub(super) fn done(&self) -> Option<Result<(), GatewayError>> {
        match self.outcome() {
            Ok(Self::Done) => Some(Ok(())),
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        }
    }

    pub(super) fn refund(&self) -> Option<Result<String, GatewayError>> {
        match self.outcome() {
            Ok(Self::Refunded { refund_reference }) => Some(Ok(refund_reference.clone())),
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        }
    }

    fn outcome(&self) -> Result<&Self, GatewayError> {
        match self {
            Self::Declined { code, message } => Err(GatewayError::Declined { code: *code, message: message.clone() }),
            Self::Refused { message } => Err(GatewayError::Refused(message.clone())),
            other => Ok(other),
        }
    }

    /// The failure to store for a refusal or decline.
    pub(super) fn of_error(error: &GatewayError) -> Option<Self> {
        match error {
            GatewayError::Declined { code, message } => Some(Self::Declined { code: *code, message: message.clone() }),
            GatewayError::Refused(message) => Some(Self::Refused { message: message.clone() }),
            _ => None,
        }
    }
}

/// What claiming a key found.
#[derive(Debug)]
pub(super) enum Claim {
    /// The outage switch is on: nothing was counted or held.
    Outage,
    /// Another request with the key is under way.
    Busy,
    /// This request holds the key; the stored answer, if the key was answered before.
    Held(Option<Stored>),
}

/// A webhook due for delivery.
#[derive(Debug)]
pub(super) struct DueWebhook {
    pub(super) id: Uuid,
    pub(super) body: String,
    pub(super) attempts: i32,
}

/// How long a request holds its key when its process dies before answering.
const KEY_LEASE: Duration = Duration::from_secs(30);

/// The books, reached through `pool` (any role owning schema [`SCHEMA`]).
#[derive(Debug)]
pub(super) struct Books {
    pool: PgPool,
    migrated: OnceCell<()>,
    /// Signalled when this process queues something the webhook sender must act on.
    pub(super) news: tokio::sync::Notify,
}

type ChargeRow = (Uuid, String, i64, String, i64, i64, String, Option<String>);

const CHARGE_COLUMNS: &str = "payment_id, reference, amount, currency, captured, refunded, status, decline_code";

fn charge(row: ChargeRow) -> anyhow::Result<Charge> {
    let (payment_id, reference, amount, currency, captured, refunded, status, code) = row;
    Ok(Charge {
        payment_id,
        reference,
        amount,
        currency,
        captured,
        refunded,
        status: Status::read(&status, code.as_deref())?,
    })
}

impl Books {
    pub(super) fn new(pool: PgPool) -> Self {
        Self { pool, migrated: OnceCell::new(), news: tokio::sync::Notify::new() }
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, once the books' tables exist (created on first use).
    pub(super) async fn ready(&self) -> anyhow::Result<&PgPool> {
        self.migrated
            .get_or_try_init(|| async {
                let mut migrator = Migrator::with_migrations(MIGRATIONS.iter().cloned().collect());
                migrator.dangerous_set_table_name(format!("{SCHEMA}._sqlx_migrations"));
                migrator.run(&self.pool).await.context("creating the sandbox gateway's books")
            })
            .await?;
        Ok(&self.pool)
    }

    pub(super) async fn in_outage(&self) -> anyhow::Result<bool> {
        let pool = self.ready().await?;
        sqlx::query_scalar("SELECT coalesce(outage_until > now(), false) FROM payments_sandbox.control")
            .fetch_one(pool)
            .await
            .context("reading the sandbox's outage switch")
    }

    #[cfg(feature = "sandbox")]
    pub(super) async fn set_outage_until(&self, until: Option<DateTime<Utc>>) -> anyhow::Result<()> {
        let pool = self.ready().await?;
        sqlx::query("UPDATE payments_sandbox.control SET outage_until = $1")
            .bind(until)
            .execute(pool)
            .await
            .context("setting the sandbox's outage switch")?;
        Ok(())
    }

    /// Unless the outage switch is on, counts a request with `key` and holds the key, unless
    /// another request holds it. One statement: the switch and the claim in one transaction.
    pub(super) async fn claim(&self, key: &str) -> anyhow::Result<Claim> {
        let pool = self.ready().await?;
        let (outage, held, answer): (bool, bool, Option<serde_json::Value>) = sqlx::query_as(
            "WITH switch AS (
                 SELECT coalesce(bool_or(outage_until > now()), false) AS outage FROM payments_sandbox.control),
             claimed AS (
                 INSERT INTO payments_sandbox.requests (idempotency_key, requests, in_flight_until)
                 SELECT $1, 1, now() + $2 FROM switch WHERE NOT switch.outage
                 ON CONFLICT (idempotency_key) DO UPDATE
                    SET requests = requests.requests + 1, in_flight_until = EXCLUDED.in_flight_until
                  WHERE requests.in_flight_until IS NULL OR requests.in_flight_until < now()
                 RETURNING answer)
             SELECT (SELECT outage FROM switch), EXISTS (SELECT 1 FROM claimed), (SELECT answer FROM claimed)",
        )
        .bind(key)
        .bind(KEY_LEASE)
        .fetch_one(pool)
        .await
        .context("claiming an idempotency key")?;
        match (outage, held) {
            (true, _) => Ok(Claim::Outage),
            (false, false) => Ok(Claim::Busy),
            (false, true) => Ok(Claim::Held(answer.map(serde_json::from_value).transpose()?)),
        }
    }

    /// A transaction on the books: an operation and the answer stored for its key commit
    /// together.
    pub(super) async fn begin(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.ready().await?.begin().await?)
    }

    /// Lets another request use `key` (this one is gone without an answer).
    pub(super) async fn release(&self, key: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE payments_sandbox.requests SET in_flight_until = NULL WHERE idempotency_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores the answer to `key` (counting an execution when money moved) and frees the key.
    pub(super) async fn answer(
        &self,
        db: &mut PgConnection,
        key: &str,
        answer: &Stored,
        executed: bool,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE payments_sandbox.requests
                SET answer = $2, executions = executions + $3::int, in_flight_until = NULL
              WHERE idempotency_key = $1",
        )
        .bind(key)
        .bind(serde_json::to_value(answer)?)
        .bind(i32::from(executed))
        .execute(db)
        .await
        .context("storing a sandbox answer")?;
        Ok(())
    }

    /// Whether this is the first time `key` fails on purpose (`pm_card_error_once`).
    pub(super) async fn fail_first_time(&self, key: &str) -> anyhow::Result<bool> {
        let first: Option<bool> = sqlx::query_scalar(
            "UPDATE payments_sandbox.requests SET failed_once = true
              WHERE idempotency_key = $1 AND NOT failed_once RETURNING true",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(first.is_some())
    }

    /// Records a new charge (or what a new authorization under another key made of it).
    pub(super) async fn record_charge(
        &self,
        db: &mut PgConnection,
        charge: &Charge,
        decision: Option<Decision>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO payments_sandbox.charges
                (payment_id, reference, amount, currency, status, decline_code, decide_at, decided_status, decided_code)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (payment_id) DO UPDATE
                SET status = EXCLUDED.status, decline_code = EXCLUDED.decline_code, decide_at = EXCLUDED.decide_at,
                    decided_status = EXCLUDED.decided_status, decided_code = EXCLUDED.decided_code",
        )
        .bind(charge.payment_id)
        .bind(&charge.reference)
        .bind(charge.amount)
        .bind(&charge.currency)
        .bind(charge.status.name())
        .bind(charge.status.code())
        .bind(decision.map(|d| d.at))
        .bind(decision.map(|d| d.outcome.name()))
        .bind(decision.and_then(|d| d.outcome.code()))
        .execute(db)
        .await
        .context("recording a sandbox charge")?;
        Ok(())
    }

    /// When the sender next has something to do: the earliest asynchronous outcome to
    /// decide or webhook to send (`None`: nothing is waiting).
    pub(super) async fn next_due(&self, max_attempts: i32) -> anyhow::Result<Option<DateTime<Utc>>> {
        let pool = self.ready().await?;
        sqlx::query_scalar(
            "SELECT least((SELECT min(decide_at) FROM payments_sandbox.charges WHERE status = 'processing'),
                          (SELECT min(due_at) FROM payments_sandbox.webhooks
                            WHERE delivered_at IS NULL AND attempts < $1))",
        )
        .bind(max_attempts)
        .fetch_one(pool)
        .await
        .context("reading when the sandbox's next webhook is due")
    }

    /// Decides the asynchronous outcomes that are due.
    pub(super) async fn decide_due(&self, db: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE payments_sandbox.charges
                SET status = decided_status, decline_code = decided_code, decide_at = NULL
              WHERE status = 'processing' AND decide_at <= now()",
        )
        .execute(db)
        .await
        .context("deciding asynchronous sandbox outcomes")?;
        Ok(())
    }

    /// The charge of `payment_id`, for the sandbox's own checks (`settled`).
    #[cfg(feature = "sandbox")]
    pub(super) async fn charge(&self, payment_id: Uuid) -> anyhow::Result<Option<Charge>> {
        let mut db = self.ready().await?.acquire().await?;
        self.charge_in(&mut db, payment_id).await
    }

    pub(super) async fn charge_in(&self, db: &mut PgConnection, payment_id: Uuid) -> anyhow::Result<Option<Charge>> {
        let sql = format!("SELECT {CHARGE_COLUMNS} FROM payments_sandbox.charges WHERE payment_id = $1");
        let row: Option<ChargeRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(payment_id).fetch_optional(db).await?;
        row.map(charge).transpose()
    }

    /// Moves an authorized charge to captured, if it is authorized and `amount` fits.
    pub(super) async fn capture(&self, db: &mut PgConnection, payment_id: Uuid, amount: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE payments_sandbox.charges SET status = 'captured', captured = $2
              WHERE payment_id = $1 AND status = 'authorized' AND $2 <= amount",
        )
        .bind(payment_id)
        .bind(amount)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases an authorized (or still processing) charge.
    pub(super) async fn void(&self, db: &mut PgConnection, payment_id: Uuid) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE payments_sandbox.charges SET status = 'voided', decide_at = NULL
              WHERE payment_id = $1 AND status IN ('authorized', 'processing')",
        )
        .bind(payment_id)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives back `amount` of a captured charge, if that much is left.
    pub(super) async fn refund(&self, db: &mut PgConnection, payment_id: Uuid, amount: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE payments_sandbox.charges SET refunded = refunded + $2
              WHERE payment_id = $1 AND status = 'captured' AND refunded + $2 <= captured",
        )
        .bind(payment_id)
        .bind(amount)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Queues a webhook; wake the sender (`news`) once it is committed.
    pub(super) async fn enqueue_webhook(
        &self,
        db: &mut PgConnection,
        payment_id: Uuid,
        body: &str,
        due_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO payments_sandbox.webhooks (id, payment_id, body, due_at) VALUES ($1, $2, $3, $4)")
            .bind(Uuid::now_v7())
            .bind(payment_id)
            .bind(body)
            .bind(due_at)
            .execute(db)
            .await
            .context("queueing a sandbox webhook")?;
        Ok(())
    }

    /// Claims up to `limit` webhooks due now (for `lease`, in case this process dies while
    /// sending them), at most `max_attempts` tries each.
    pub(super) async fn claim_due_webhooks(
        &self,
        limit: i64,
        lease: Duration,
        max_attempts: i32,
    ) -> anyhow::Result<Vec<DueWebhook>> {
        let pool = self.ready().await?;
        let rows: Vec<(Uuid, String, i32)> = sqlx::query_as(
            "UPDATE payments_sandbox.webhooks SET due_at = now() + $2, attempts = attempts + 1
              WHERE id IN (SELECT id FROM payments_sandbox.webhooks
                            WHERE delivered_at IS NULL AND due_at <= now() AND attempts < $3
                            ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, body, attempts",
        )
        .bind(limit)
        .bind(lease)
        .bind(max_attempts)
        .fetch_all(pool)
        .await
        .context("claiming sandbox webhooks")?;
        Ok(rows.into_iter().map(|(id, body, attempts)| DueWebhook { id, body, attempts }).collect())
    }

    pub(super) async fn webhook_delivered(&self, id: Uuid) -> anyhow::Result<()> {
        sqlx::query("UPDATE payments_sandbox.webhooks SET delivered_at = now(), last_error = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn webhook_failed(&self, id: Uuid, error: &str, retry_in: Duration) -> anyhow::Result<()> {
        sqlx::query("UPDATE payments_sandbox.webhooks SET due_at = now() + $2, last_error = $3 WHERE id = $1")
            .bind(id)
            .bind(retry_in)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// (requests, executions) of `key`.
    pub(super) async fn counts(&self, key: &str) -> anyhow::Result<(u32, u32)> {
        let pool = self.ready().await?;
        let counts: Option<(i32, i32)> =
            sqlx::query_as("SELECT requests, executions FROM payments_sandbox.requests WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?;
        let (requests, executions) = counts.unwrap_or_default();
        Ok((u32::try_from(requests).unwrap_or_default(), u32::try_from(executions).unwrap_or_default()))
    }
}
