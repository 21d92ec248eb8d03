//! The publishing side: one relay per module forwards its sequenced outbox rows to the
//! module's topic, in position order.
//!
//! A batch runs inside a transaction that holds the module's `bus_relay` row (`FOR UPDATE
//! SKIP LOCKED`: one relay per module across replicas). Every event of the batch is produced,
//! every acknowledgement awaited, and only then does the cursor move and the transaction
//! commit. A crash in between re-sends the batch: consumers skip positions they have handled.
//! The producer is idempotent, so a retried send within a batch is written once and the
//! events of a partition stay in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::config::KafkaConfig;
use super::wire;
use crate::bus::listener::Wakeups;
use crate::bus::metrics::BusMetrics;
use crate::bus::transport::{OutboxRow, Relay};

/// Events per relay transaction.
const BATCH: i64 = 500;
/// Longest wait for news while the listener is down, and the safety-net poll while it is up.
const POLL: Duration = Duration::from_secs(1);
const LISTENING_POLL: Duration = Duration::from_secs(30);

/// Forwards hosted modules' outboxes to Kafka.
pub struct KafkaRelay {
    config: KafkaConfig,
    metrics: BusMetrics,
    producer: std::sync::Mutex<FutureProducer>,
    connected: AtomicBool,
}

impl std::fmt::Debug for KafkaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaRelay").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

/// What one relay transaction did.
enum Relayed {
    /// Forwarded this many events (0: nothing waiting).
    Events(usize),
    /// Another replica holds the module's relay.
    Elsewhere,
}

impl KafkaRelay {
    /// # Errors
    /// A producer that cannot be configured.
    pub fn new(config: KafkaConfig, metrics: BusMetrics) -> anyhow::Result<Self> {
        let producer = producer(&config)?;
        Ok(Self { config, metrics, producer: std::sync::Mutex::new(producer), connected: AtomicBool::new(false) })
    }

    fn producer(&self) -> FutureProducer {
        self.producer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// After a fatal error an idempotent producer cannot go on (its sequence is broken); a new
    /// one starts a new sequence, and the batch is re-sent from the cursor.
    fn replace_producer_if_fatal(&self) {
        let fatal = self.producer().client().fatal_error();
        if let Some((code, reason)) = fatal {
            tracing::error!(?code, reason, "the Kafka producer failed fatally; starting a new one");
            match producer(&self.config) {
                Ok(fresh) => *self.producer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh,
                Err(error) => tracing::error!("could not start a new Kafka producer: {error:#}"),
            }
        }
    }

    async fn relay_batch(&self, module: &str, pool: &PgPool, topic: &str) -> anyhow::Result<Relayed> {
        let mut tx = pool.begin().await?;
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT position FROM bus_relay WHERE topic = $1 FOR UPDATE SKIP LOCKED")
                .bind(topic)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(cursor) = cursor else { return Ok(Relayed::Elsewhere) };
        let rows: Vec<Relayable> = sqlx::query_as(
            "SELECT id, position, event_type, event_version, aggregate_key, key_hash, payload, metadata,
                    occurred_at, sequenced_at
               FROM outbox WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(cursor)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.row.position) else { return Ok(Relayed::Events(0)) };
        let producer = self.producer();
        let mut deliveries = Vec::with_capacity(rows.len());
        let count = rows.len();
        for Relayable { row, key_hash, sequenced_at } in rows {
            let sequenced_at = sequenced_at.unwrap_or(row.occurred_at);
            let event = row.into_envelope(module);
            let payload = serde_json::to_vec(&event.payload)?;
            let record = FutureRecord::to(topic)
                .key(&event.aggregate_key)
                .payload(&payload)
                .partition(key_hash.rem_euclid(self.config.partitions))
                .timestamp(sequenced_at.timestamp_millis())
                .headers(wire::headers(&event));
            deliveries.push(send(&producer, record).await?);
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    self.replace_producer_if_fatal();
                    return Err(error).context("the broker did not take an event");
                }
                Err(_) => anyhow::bail!("the Kafka producer went away mid-batch"),
            }
        }
        sqlx::query("UPDATE bus_relay SET position = $2, relayed_at = now() WHERE topic = $1")
            .bind(topic)
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("committing the relay cursor")?;
        self.metrics.relayed(module, count as u64);
        Ok(Relayed::Events(count))
    }
}

/// Enqueues `record`, waiting while the producer's queue is full.
async fn send(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, String, Vec<u8>>,
) -> anyhow::Result<rdkafka::producer::DeliveryFuture> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((error, _)) => return Err(error).context("enqueueing an event for the broker"),
        }
    }
}

fn producer(config: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    let mut client = config.client_config();
    client
        .set("enable.idempotence", "true")
        // The relay batches by itself; a short linger still groups one batch's sends.
        .set("linger.ms", "1")
        // A send that cannot complete fails the batch, which is retried from the cursor.
        .set("message.timeout.ms", "30000");
    client.create().context("a Kafka producer")
}

/// A sequenced outbox row with what the relay needs besides the event.
#[derive(Debug, sqlx::FromRow)]
struct Relayable {
    #[sqlx(flatten)]
    row: OutboxRow,
    key_hash: i32,
    sequenced_at: Option<DateTime<Utc>>,
}

#[async_trait]
impl Relay for KafkaRelay {
    async fn prepare(&self, module: &str) -> anyhow::Result<()> {
        let topic = self.config.topic(module);
        match super::ensure_topic(&self.config, &topic).await {
            Ok(()) => {
                self.connected.store(true, Ordering::Relaxed);
                Ok(())
            }
            // A broker that is not up yet is waited for; a wrong topic is a start-up error.
            Err(error) if error.chain().any(|cause| cause.is::<super::TopicMismatch>()) => Err(error),
            Err(error) => {
                tracing::warn!(module, "the Kafka broker cannot be reached yet; the relay will wait: {error:#}");
                Ok(())
            }
        }
    }

    async fn run(self: Arc<Self>, module: &'static str, pool: PgPool, wakeups: Wakeups, cancel: CancellationToken) {
        let topic = self.config.topic(module);
        let mut sequenced = wakeups.sequenced(module);
        let mut failures = 0_u32;
        let mut prepared = false;
        loop {
            sequenced.borrow_and_update();
            let outcome = async {
                if !prepared {
                    super::ensure_topic(&self.config, &topic).await?;
                    sqlx::query("INSERT INTO bus_relay (topic) VALUES ($1) ON CONFLICT (topic) DO NOTHING")
                        .bind(&topic)
                        .execute(&pool)
                        .await?;
                    prepared = true;
                }
                self.relay_batch(module, &pool, &topic).await
            }
            .await;
            let wait = match outcome {
                Ok(Relayed::Events(count)) => {
                    failures = 0;
                    self.connected.store(true, Ordering::Relaxed);
                    if count as i64 == BATCH {
                        continue;
                    }
                    if wakeups.listening() { LISTENING_POLL } else { POLL }
                }
                Ok(Relayed::Elsewhere) => {
                    failures = 0;
                    POLL
                }
                Err(error) => {
                    failures += 1;
                    self.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(module, topic, "relaying failed, will retry: {error:#}");
                    Duration::from_millis(100 * u64::from(failures.min(50)))
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = sequenced.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        // Whatever is still queued goes out before the process stops (it would be re-sent
        // otherwise, which is safe but wasteful).
        let producer = self.producer();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
