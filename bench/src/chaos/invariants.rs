//! What must hold once a chaos run is quiet, read straight from every module's schema (and the
//! sandbox gateway's books) as the database superuser. Each check counts what it looked at and
//! what broke the rule; a run passes with no violation anywhere.

use std::collections::HashMap;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// The modules whose schemas hold an outbox, bus cursors and dead letters.
const MODULES: [&str; 5] = ["users", "inventory", "orders", "payments", "notifications"];

/// Order statuses that end the saga, and `confirmed` (paid; shipping is a person's job).
const SETTLED_ORDERS: &str = "('confirmed', 'shipped', 'delivered', 'rejected', 'cancelled')";

/// One rule: how many records it looked at, how many broke it, and examples of those.
#[derive(Debug, Serialize)]
pub(crate) struct Check {
    pub(crate) rule: &'static str,
    pub(crate) checked: i64,
    pub(crate) violations: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) examples: Vec<String>,
}

async fn count(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.with_context(|| sql.to_owned())
}

async fn examples(pool: &PgPool, sql: &str) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{sql} LIMIT 5")))
        .fetch_all(pool)
        .await
        .with_context(|| sql.to_owned())
}

/// `checked` from one query, the violations and their examples from another (a `SELECT
/// <text>` of the broken records).
async fn rule(pool: &PgPool, rule: &'static str, checked: &str, broken: &str) -> anyhow::Result<Check> {
    let violations = count(pool, &format!("SELECT count(*) FROM ({broken}) broken")).await?;
    let examples = if violations > 0 { examples(pool, broken).await? } else { Vec::new() };
    Ok(Check { rule, checked: count(pool, checked).await?, violations, examples })
}

/// Every rule, in the order the report prints them.
pub(crate) async fn check(pool: &PgPool, accepted: &[Uuid], mail: &HashMap<String, u32>) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();

    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE id = ANY($1)")
        .bind(accepted)
        .fetch_one(pool)
        .await?;
    let accepted_count = i64::try_from(accepted.len())?;
    checks.push(Check {
        rule: "every accepted order exists",
        checked: accepted_count,
        violations: accepted_count - known,
        examples: Vec::new(),
    });
    checks.push(
        rule(
            pool,
            "every order is in a final state or confirmed",
            "SELECT count(*) FROM orders.orders",
            &format!("SELECT id::text || ' ' || status FROM orders.orders WHERE status NOT IN {SETTLED_ORDERS}"),
        )
        .await?,
    );

    checks.push(
        rule(
            pool,
            "stock movements sum to on-hand",
            "SELECT count(*) FROM inventory.products",
            "SELECT p.sku || ': on hand ' || p.on_hand || ', movements ' || coalesce(sum(m.quantity), 0)
               FROM inventory.products p LEFT JOIN inventory.stock_movements m ON m.product_id = p.id
              GROUP BY p.id HAVING p.on_hand <> coalesce(sum(m.quantity), 0)",
        )
        .await?,
    );
    checks.push(
        rule(
            pool,
            "reserved equals what held reservations hold, never negative or above on-hand",
            "SELECT count(*) FROM inventory.products",
            "SELECT p.sku || ': reserved ' || p.reserved || ', held ' || coalesce(sum(l.quantity), 0) || ', on hand ' || p.on_hand
               FROM inventory.products p
               LEFT JOIN inventory.reservation_lines l ON l.product_id = p.id
               LEFT JOIN inventory.reservations r ON r.id = l.reservation_id AND r.status = 'held'
              GROUP BY p.id
             HAVING p.reserved <> coalesce(sum(l.quantity) FILTER (WHERE r.id IS NOT NULL), 0)
                 OR p.reserved < 0 OR p.on_hand < 0 OR p.reserved > p.on_hand",
        )
        .await?,
    );
    checks.push(
        rule(
            pool,
            "only live orders hold stock, and paid orders' stock is taken",
            "SELECT count(*) FROM inventory.reservations",
            &format!(
                "SELECT r.order_id::text || ' ' || r.status || ' for a ' || coalesce(o.status, 'missing') || ' order'
                   FROM inventory.reservations r LEFT JOIN orders.orders o ON o.id = r.order_id
                  WHERE (r.status = 'held' AND (o.status IS NULL OR o.status IN {SETTLED_ORDERS}))
                     OR (o.status = 'confirmed' AND r.status <> 'committed')"
            ),
        )
        .await?,
    );

    checks.push(
        rule(
            pool,
            "exactly one capture per confirmed order, of its total",
            "SELECT count(*) FROM orders.orders WHERE status = 'confirmed'",
            "SELECT o.id::text || ': ' || count(e.id) FILTER (WHERE e.kind = 'capture') || ' captures, ' || coalesce(max(p.captured), 0) || ' of ' || o.total
               FROM orders.orders o
               LEFT JOIN payments.payments p ON p.order_id = o.id
               LEFT JOIN payments.ledger_entries e ON e.payment_id = p.id
              WHERE o.status = 'confirmed'
              GROUP BY o.id
             HAVING count(e.id) FILTER (WHERE e.kind = 'capture') <> 1
                 OR count(e.id) FILTER (WHERE e.kind = 'refund') <> 0
                 OR coalesce(max(p.captured), 0) <> o.total",
        )
        .await?,
    );
    checks.push(
        rule(
            pool,
            "one refund, of everything, per cancelled paid order",
            "SELECT count(*) FROM orders.orders o JOIN payments.payments p ON p.order_id = o.id
              WHERE o.status = 'cancelled' AND p.captured > 0",
            "SELECT o.id::text || ': ' || count(e.id) FILTER (WHERE e.kind = 'refund') || ' refunds, ' || p.refunded || ' of ' || p.captured
               FROM orders.orders o
               JOIN payments.payments p ON p.order_id = o.id
               LEFT JOIN payments.ledger_entries e ON e.payment_id = p.id
              WHERE o.status = 'cancelled' AND p.captured > 0
              GROUP BY o.id, p.id
             HAVING count(e.id) FILTER (WHERE e.kind = 'refund') <> 1 OR p.refunded <> p.captured",
        )
        .await?,
    );
    checks.push(
        rule(
            pool,
            "nothing captured for an order that was never paid",
            "SELECT count(*) FROM orders.orders WHERE status IN ('rejected', 'cancelled')",
            "SELECT o.id::text || ' ' || o.status || ' with ' || p.captured || ' captured, ' || p.refunded || ' refunded'
               FROM orders.orders o JOIN payments.payments p ON p.order_id = o.id
              WHERE o.status IN ('rejected', 'cancelled') AND p.captured <> p.refunded",
        )
        .await?,
    );

    checks.push(
        rule(
            pool,
            "the ledger balances (totals match entries, no hold left on a settled payment)",
            "SELECT count(*) FROM payments.payments",
            "SELECT p.id::text || ' ' || p.status
               FROM payments.payments p LEFT JOIN payments.ledger_entries e ON e.payment_id = p.id
              GROUP BY p.id
             HAVING p.captured <> coalesce(sum(e.amount) FILTER (WHERE e.kind = 'capture'), 0)
                 OR p.refunded <> coalesce(sum(e.amount) FILTER (WHERE e.kind = 'refund'), 0)
                 OR p.refunded > p.captured
                 OR (p.status NOT IN ('pending', 'authorized')
                     AND coalesce(sum(e.amount) FILTER (WHERE e.kind = 'authorization'), 0)
                       - coalesce(sum(e.amount) FILTER (WHERE e.kind = 'capture'), 0)
                       - coalesce(sum(e.amount) FILTER (WHERE e.kind = 'void'), 0) <> 0)",
        )
        .await?,
    );
    checks.push(
        rule(
            pool,
            "the gateway agrees: what it captured and refunded is what the ledger says, nothing held",
            "SELECT count(*) FROM payments_sandbox.charges",
            "SELECT c.payment_id::text || ' at the gateway ' || c.status || ' ' || c.captured || '/' || c.refunded
                    || ', ours ' || coalesce(p.status, 'missing') || ' ' || coalesce(p.captured, 0) || '/' || coalesce(p.refunded, 0)
               FROM payments_sandbox.charges c LEFT JOIN payments.payments p ON p.id = c.payment_id
              WHERE p.id IS NULL OR c.captured <> p.captured OR c.refunded <> p.refunded
                 OR c.status IN ('authorized', 'processing')",
        )
        .await?,
    );
    checks.push(
        rule(
            pool,
            "no operation carried out twice at the gateway",
            "SELECT count(*) FROM payments_sandbox.requests",
            "SELECT idempotency_key || ': ' || executions || ' executions' FROM payments_sandbox.requests WHERE executions > 1",
        )
        .await?,
    );
    checks.push(
        rule(
            pool,
            "no payment or refund left unsettled",
            "SELECT (SELECT count(*) FROM payments.payments) + (SELECT count(*) FROM payments.refunds)",
            "SELECT 'payment ' || id::text || ' ' || status FROM payments.payments WHERE status IN ('pending', 'authorized')
             UNION ALL
             SELECT 'refund ' || id::text || ' ' || status FROM payments.refunds WHERE status = 'pending'",
        )
        .await?,
    );

    checks.push(mail_check(pool, mail).await?);
    checks.push(
        rule(
            pool,
            "no notification left pending",
            "SELECT count(*) FROM notifications.notifications",
            "SELECT id::text || ' ' || event_type FROM notifications.notifications WHERE status = 'pending'",
        )
        .await?,
    );

    let mut dead_letters = Vec::new();
    for module in MODULES {
        dead_letters.push(format!(
            "SELECT '{module}: ' || subscription || ' ' || event_type FROM {module}.dead_letters WHERE coalesce(error, '') = ''"
        ));
    }
    let all_dead_letters = MODULES.map(|m| format!("(SELECT count(*) FROM {m}.dead_letters)")).join(" + ");
    checks.push(
        rule(
            pool,
            "every dead letter and failed job has its cause",
            &format!(
                "SELECT {all_dead_letters} + (SELECT count(*) FROM apalis.jobs
                  WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))"
            ),
            &format!(
                "{} UNION ALL SELECT 'job ' || id || ' ' || job_type FROM apalis.jobs
                  WHERE (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))
                    AND coalesce(last_result::text, '') IN ('', 'null')",
                dead_letters.join(" UNION ALL ")
            ),
        )
        .await?,
    );
    Ok(checks)
}

/// One email per notification: every notification sent is a message the SMTP server
/// accepted, and every message it accepted is a notification's (`Message-ID` is
/// `<notification id>@notifications.bulkhead`). A message accepted twice (a replica killed
/// between the server's acceptance and its commit sends it again, with the same Message-ID)
/// is counted apart: receivers drop it by its id.
async fn mail_check(pool: &PgPool, mail: &HashMap<String, u32>) -> anyhow::Result<Check> {
    let sent: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM notifications.notifications WHERE channel = 'email' AND status = 'sent'")
            .fetch_all(pool)
            .await?;
    let message_id = |id: &Uuid| format!("{id}@notifications.bulkhead");
    let mut examples = Vec::new();
    let mut violations = 0;
    for id in &sent {
        if !mail.contains_key(&message_id(id)) {
            violations += 1;
            examples.push(format!("notification {id} sent, no message received"));
        }
    }
    let sent_ids: std::collections::HashSet<String> = sent.iter().map(message_id).collect();
    for received in mail.keys().filter(|id| !sent_ids.contains(*id)) {
        violations += 1;
        examples.push(format!("message {received} is no notification sent"));
    }
    examples.truncate(5);
    Ok(Check {
        rule: "one email per notification sent (by Message-ID)",
        checked: i64::try_from(sent.len())?,
        violations,
        examples,
    })
}

/// What else the report says about the end state: outcomes, flags, failures with causes.
pub(crate) async fn figures(pool: &PgPool, mail: &HashMap<String, u32>) -> anyhow::Result<Value> {
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM orders.orders GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await?;
    let payments: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM payments.payments GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await?;
    let attention = count(pool, "SELECT count(*) FROM payments.payments WHERE attention IS NOT NULL").await?;
    let failed_jobs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT job_type, count(*) FROM apalis.jobs
          WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)
          GROUP BY job_type ORDER BY job_type",
    )
    .fetch_all(pool)
    .await?;
    let dead_letters = count(
        pool,
        &format!("SELECT {}", MODULES.map(|m| format!("(SELECT count(*) FROM {m}.dead_letters)")).join(" + ")),
    )
    .await?;
    let notifications: Vec<(String, i64)> = sqlx::query_as(
        "SELECT channel || ' ' || status, count(*) FROM notifications.notifications GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let duplicates: u32 = mail.values().map(|n| n.saturating_sub(1)).sum();
    Ok(json!({
        "orders_by_status": statuses.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "payments_by_status": payments.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "notifications": notifications.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "emails_received": mail.len(),
        "emails_received_twice": duplicates,
        "payments_flagged_for_a_person": attention,
        "dead_letters": dead_letters,
        "failed_jobs": failed_jobs.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    }))
}

/// Whether the system is quiet: no order, payment, refund or notification in flight, every
/// event sequenced and handled, no job due but the recurring ones. Returns what is still
/// moving, empty when quiet.
pub(crate) async fn in_flight(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let mut moving = Vec::new();
    let mut probe = async |what: &str, sql: String| -> anyhow::Result<()> {
        let n = count(pool, &sql).await?;
        if n > 0 {
            moving.push(format!("{n} {what}"));
        }
        Ok(())
    };
    probe("orders in the saga", format!("SELECT count(*) FROM orders.orders WHERE status NOT IN {SETTLED_ORDERS}"))
        .await?;
    probe(
        "payments unsettled",
        "SELECT count(*) FROM payments.payments WHERE status IN ('pending', 'authorized')".into(),
    )
    .await?;
    probe("refunds pending", "SELECT count(*) FROM payments.refunds WHERE status = 'pending'".into()).await?;
    probe("notifications pending", "SELECT count(*) FROM notifications.notifications WHERE status = 'pending'".into())
        .await?;
    probe(
        "jobs due",
        "SELECT count(*) FROM apalis.jobs
          WHERE status IN ('Pending', 'Queued', 'Running') AND run_at <= now()
            AND job_type NOT IN ('payments.reconcile', 'notifications.sweep_stale', 'jobs.retention')
            AND job_type NOT LIKE 'bus.retention.%'"
            .into(),
    )
    .await?;
    for module in MODULES {
        probe(
            &format!("{module} events unsequenced"),
            format!("SELECT count(*) FROM {module}.outbox WHERE position IS NULL"),
        )
        .await?;
        let sources: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT DISTINCT source FROM {module}.bus_cursors")))
                .fetch_all(pool)
                .await?;
        for source in sources.iter().filter(|s| MODULES.contains(&s.as_str())) {
            probe(
                &format!("{module} partitions behind {source}"),
                format!(
                    "SELECT count(*) FROM {module}.bus_cursors c WHERE c.source = '{source}' AND EXISTS
                       (SELECT 1 FROM {source}.outbox o
                         WHERE o.position > c.position AND o.key_hash % c.partitions = c.partition)"
                ),
            )
            .await?;
        }
    }
    Ok(moving)
}
