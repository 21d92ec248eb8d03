//! Publishing: the only way an event enters the bus is a row in the publishing module's
//! `outbox`, written inside the transaction of the state change it records. The `NOTIFY` sent
//! here is delivered on commit only, so the sequencer wakes for committed rows.

use anyhow::Context;
use chrono::Utc;
use sqlx::PgConnection;
use tracing::Instrument;
use uuid::Uuid;

use super::event::{Event, Metadata, key_hash};
use crate::telemetry;

/// Channel on which appends announce `<module>` (the outbox's schema).
pub const APPENDED_CHANNEL: &str = "bulkhead_outbox";

/// Appends `event` to the outbox of the module whose connection this is (its `search_path`),
/// inside the caller's transaction. Returns the event id (UUIDv7).
///
/// # Errors
/// Database failures; the caller's transaction should then be rolled back.
pub async fn append<E: Event>(tx: &mut PgConnection, event: &E, metadata: &Metadata) -> anyhow::Result<Uuid> {
    let ids = append_all(tx, std::slice::from_ref(event), metadata).await?;
    ids.into_iter().next().context("the outbox insert returned no id")
}

/// Appends several events of one type in one round trip, in order.
///
/// # Errors
/// Database failures.
pub async fn append_all<E: Event>(
    tx: &mut PgConnection,
    events: &[E],
    metadata: &Metadata,
) -> anyhow::Result<Vec<Uuid>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let span = tracing::info_span!(
        "bus.append",
        "bulkhead.module" = telemetry::module_of(E::TYPE),
        event_type = E::TYPE,
        events = events.len()
    );
    // When spans are exported, the events carry this span as their trace context, so their
    // handlers (in this process or another) continue the trace from here.
    let metadata = match span.in_scope(telemetry::current_traceparent) {
        Some(traceparent) => &Metadata { traceparent: Some(traceparent), ..metadata.clone() },
        None => metadata,
    };
    insert(tx, events, metadata).instrument(span).await
}

async fn insert<E: Event>(tx: &mut PgConnection, events: &[E], metadata: &Metadata) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let keys: Vec<String> = events.iter().map(Event::aggregate_key).collect();
    let hashes: Vec<i32> = keys.iter().map(|k| key_hash(k)).collect();
    let payloads = events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("serialising {} events", E::TYPE))?;
    let metadata = serde_json::to_value(metadata)?;
    let version = i32::try_from(E::VERSION)?;
    // WITH ORDINALITY keeps the given order in `append_seq`, which the sequencer follows.
    sqlx::query(
        "WITH appended AS (
             INSERT INTO outbox (id, event_type, event_version, aggregate_key, key_hash, payload, metadata, occurred_at)
             SELECT e.id, $2, $3, e.key, e.hash, e.payload, $7, $8
               FROM unnest($1::uuid[], $4::text[], $5::int[], $6::jsonb[]) WITH ORDINALITY AS e(id, key, hash, payload, n)
              ORDER BY e.n
             RETURNING 1
         )
         SELECT pg_notify($9, current_schema()) FROM (SELECT count(*) FROM appended) done",
    )
    .bind(&ids)
    .bind(E::TYPE)
    .bind(version)
    .bind(&keys)
    .bind(&hashes)
    .bind(&payloads)
    .bind(&metadata)
    .bind(Utc::now())
    .bind(APPENDED_CHANNEL)
    .execute(&mut *tx)
    .await
    .with_context(|| format!("appending {} to the outbox", E::TYPE))?;
    Ok(ids)
}
