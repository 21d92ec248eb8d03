//! The Kafka transport (DESIGN §4, ADR 0025). The outbox stays the only way to publish; Kafka
//! replaces how events travel between databases:
//!
//! - a **relay** per publishing module ([`KafkaRelay`]) forwards sequenced outbox rows, in
//!   position order, to `<prefix>.<module>.events` with an idempotent producer, and moves its
//!   cursor (`bus_relay`, in the publisher's schema) only after the broker acknowledged them.
//!   A crash between the two re-sends a batch; nothing is lost or reordered;
//! - subscriptions read the topic through [`KafkaLog`]. The cursor stays in the subscriber's
//!   `bus_cursors`, committed with the handler's effects, and counts in the publisher's outbox
//!   positions, which travel as a header: a re-sent event has a position at or below the cursor
//!   and is skipped. Everything else (claims, retries, dead letters, rewinds) is the machinery
//!   the PostgreSQL transport uses.
//!
//! Partition `i` of a subscription reads partition `i` of the topic, and an event goes to
//! partition `key_hash mod partitions`: the murmur2 hash Kafka's own partitioner uses.

mod config;
mod log;
mod relay;
mod tail;
mod wire;

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

pub use config::{CLIENT_ENV_PREFIX, KafkaConfig};
pub use log::KafkaLog;
pub use relay::KafkaRelay;
pub use tail::follow_topic;

use super::transport::SourceNotReady;

/// Creates `topic` with the configured partitions when it is missing, and checks the
/// partitions of one that exists.
///
/// # Errors
/// A topic with another partition count, or a broker that does not answer.
async fn ensure_topic(config: &KafkaConfig, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create().context("a Kafka admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(config.request_timeout));
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, config.partitions, TopicReplication::Fixed(config.replication))],
            &options,
        )
        .await
        .with_context(|| format!("creating topic {topic}"))?;
    for outcome in created {
        match outcome {
            Ok(_) => tracing::info!(topic, partitions = config.partitions, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    let (config, topic_name) = (config.clone(), topic.to_owned());
    let found = tokio::task::spawn_blocking(move || topic_partitions(&config, &topic_name)).await??;
    let expected = found.1;
    match found.0 {
        Some(partitions) if partitions == expected => Ok(()),
        Some(partitions) => Err(TopicMismatch(partition_mismatch(topic, partitions, expected)).into()),
        None => anyhow::bail!("topic {topic} was created but the broker does not list it"),
    }
}

/// The partition count of `topic` (`None`: no such topic), and the configured one. Blocking.
fn topic_partitions(config: &KafkaConfig, topic: &str) -> anyhow::Result<(Option<i32>, i32)> {
    let consumer: BaseConsumer = config.client_config().create().context("a Kafka metadata client")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), config.request_timeout)
        .with_context(|| format!("reading the metadata of topic {topic}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX));
    Ok((partitions, config.partitions))
}

/// Checks that a subscription of `partitions` partitions can read `source`'s topic: it
/// exists ([`SourceNotReady`] until its relay created it) and has as many partitions.
async fn check_source(config: &KafkaConfig, source: &str, partitions: i32) -> anyhow::Result<()> {
    let topic = config.topic(source);
    let (config, name) = (config.clone(), topic.clone());
    let (found, _) = tokio::task::spawn_blocking(move || topic_partitions(&config, &name)).await??;
    match found {
        None => Err(SourceNotReady(source.to_owned())).with_context(|| format!("topic {topic} does not exist yet")),
        Some(found) if found == partitions => Ok(()),
        Some(found) => Err(TopicMismatch(format!(
            "{}; a subscription of {source} expects {partitions}",
            partition_mismatch(&topic, found, partitions)
        ))
        .into()),
    }
}

/// A topic laid out otherwise than the bus expects: a start-up error, not something to wait out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TopicMismatch(String);

fn partition_mismatch(topic: &str, found: i32, expected: i32) -> String {
    format!(
        "topic {topic} has {found} partitions, but the bus expects {expected} \
         (BULKHEAD_KAFKA_PARTITIONS and every subscription's partitions must match the topic's)"
    )
}

/// How long a blocking broker call may wait for a message that should be there.
const FETCH_ONE_TIMEOUT: Duration = Duration::from_secs(5);
