//! Following a topic from a point in time without a cursor: for in-memory views rebuilt at
//! every start (the access-token revocations), where a subscription's durable cursor and
//! transaction would be too much. Every partition is read from the first record at or after
//! `since`; events of one type are handed over in each partition's order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::config::KafkaConfig;
use super::wire;
use crate::bus::event::EventEnvelope;

/// Longest the first catch-up may take before following goes on in the background.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(15);

/// Hands `apply` every event of `event_type` in `source`'s topic from `since` on, until
/// `cancel` fires. Returns once what the topic held at the start has been applied (or after
/// `CATCH_UP_LIMIT`, with a warning), so a caller serves nothing before it knows the recent
/// past. A topic that does not exist yet is waited for.
///
/// # Errors
/// A consumer that cannot be configured.
pub async fn follow_topic(
    config: &KafkaConfig,
    source: &str,
    event_type: &'static str,
    since: DateTime<Utc>,
    apply: Arc<dyn Fn(&EventEnvelope) + Send + Sync>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut client = config.client_config();
    client
        .set("group.id", config.group(&format!("{source}.tail")))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = client.create().context("a Kafka consumer")?;
    let caught_up = Arc::new(AtomicBool::new(false));
    let (topic, source, timeout) = (config.topic(source), source.to_owned(), config.request_timeout);
    let done = caught_up.clone();
    std::thread::Builder::new().name(format!("kafka-tail:{source}")).spawn(move || {
        let mut goals: Option<Vec<(i32, i64)>> = None;
        let mut warned = false;
        while !cancel.is_cancelled() {
            if goals.is_none() {
                match start(&consumer, &topic, since, timeout) {
                    Ok(Some(found)) => goals = Some(found),
                    Ok(None) => {
                        // No topic yet: nothing to catch up on.
                        done.store(true, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                    Err(error) => {
                        if !warned {
                            tracing::warn!(topic, "cannot follow the topic yet; retrying: {error:#}");
                            warned = true;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    match wire::decode(&source, &message) {
                        Ok(event) if event.event_type == event_type => apply(&event),
                        Ok(_) => {}
                        Err(error) => tracing::error!(topic, offset, "skipping a record that is not an event: {error}"),
                    }
                    if let Some(goals) = goals.as_mut() {
                        goals.retain(|(p, end)| !(*p == partition && offset + 1 >= *end));
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(topic, "following the topic: {error}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                None => {}
            }
            if goals.as_ref().is_some_and(Vec::is_empty) {
                done.store(true, Ordering::Relaxed);
            }
        }
    })?;
    let until = Instant::now() + CATCH_UP_LIMIT;
    while !caught_up.load(Ordering::Relaxed) {
        if Instant::now() > until {
            tracing::warn!("the topic was not caught up within {CATCH_UP_LIMIT:?}; following it in the background");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Assigns every partition of `topic` from `since`; returns each partition's end at the
/// start (those with records to read), or `None` when the topic does not exist yet.
fn start(
    consumer: &BaseConsumer,
    topic: &str,
    since: DateTime<Utc>,
    timeout: Duration,
) -> anyhow::Result<Option<Vec<(i32, i64)>>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
        return Ok(None);
    };
    if found.partitions().is_empty() {
        return Ok(None);
    }
    let mut wanted = TopicPartitionList::new();
    for partition in found.partitions() {
        wanted.add_partition_offset(topic, partition.id(), Offset::Offset(since.timestamp_millis()))?;
    }
    let offsets = consumer.offsets_for_times(wanted, timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut goals = Vec::new();
    for element in offsets.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), timeout)?;
        let from = match element.offset() {
            Offset::Offset(offset) => offset,
            // Nothing at or after `since`: from the end.
            _ => high,
        };
        assignment.add_partition_offset(topic, element.partition(), Offset::Offset(from.max(low)))?;
        if high > from.max(low) {
            goals.push((element.partition(), high));
        }
    }
    consumer.assign(&assignment)?;
    Ok(Some(goals))
}
