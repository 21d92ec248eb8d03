//! Where the Kafka transport connects and how its topics are laid out. Client settings use
//! librdkafka's own names, so anything the client supports (TLS, SASL) can be passed through.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

/// Environment variables whose name starts with this become librdkafka properties:
/// `BULKHEAD_KAFKA_CLIENT_SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`.
pub const CLIENT_ENV_PREFIX: &str = "BULKHEAD_KAFKA_CLIENT_";

/// The Kafka transport's settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub brokers: String,
    /// Topics are `<prefix>.<module>.events`.
    pub topic_prefix: String,
    /// Partitions of the topics the relays create, and what every subscription must use:
    /// a subscription's partition `i` reads the topic's partition `i`.
    pub partitions: i32,
    /// Replication factor of the topics the relays create.
    pub replication: i32,
    /// Longest a broker call (metadata, offsets, commits) may take before it counts as failed.
    pub request_timeout: Duration,
    /// Further librdkafka properties, passed through as given (`security.protocol`,
    /// `sasl.mechanisms`, `sasl.username`, `ssl.ca.location`, …).
    pub client: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Settings for `brokers` with the defaults: prefix `bulkhead`, 4 partitions (the
    /// modules' subscriptions use 4), replication 1.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: "bulkhead".to_owned(),
            partitions: 4,
            replication: 1,
            request_timeout: Duration::from_secs(10),
            client: BTreeMap::new(),
        }
    }

    /// The librdkafka properties named by `BULKHEAD_KAFKA_CLIENT_*` variables in `vars`
    /// (the rest of the name, lower-cased, with `_` as `.`).
    pub fn client_properties(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
        vars.into_iter()
            .filter_map(|(name, value)| {
                let property = name.strip_prefix(CLIENT_ENV_PREFIX)?;
                (!property.is_empty()).then(|| (property.to_ascii_lowercase().replace('_', "."), value))
            })
            .collect()
    }

    /// The topic `module`'s relay feeds.
    pub fn topic(&self, module: &str) -> String {
        format!("{}.{module}.events", self.topic_prefix)
    }

    /// The consumer group of `subscription`, under which its offsets are committed (beside
    /// the cursor in the subscriber's database, which is what counts).
    pub fn group(&self, subscription: &str) -> String {
        format!("{}.{subscription}", self.topic_prefix)
    }

    /// A client configuration with the brokers and the pass-through properties.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // Small requests answered at once: Nagle would hold them for the peer's delayed ACK.
        config.set("socket.nagle.disable", "true");
        for (name, value) in &self.client {
            config.set(name, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_properties_come_from_prefixed_variables_in_librdkafka_names() {
        let vars = [
            ("BULKHEAD_KAFKA_CLIENT_SECURITY_PROTOCOL", "SASL_SSL"),
            ("BULKHEAD_KAFKA_CLIENT_SASL_MECHANISMS", "PLAIN"),
            ("BULKHEAD_KAFKA_BROKERS", "b:9092"),
            ("BULKHEAD_KAFKA_CLIENT_", "ignored"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        let properties = KafkaConfig::client_properties(vars);
        assert_eq!(
            properties.into_iter().collect::<Vec<_>>(),
            [
                ("sasl.mechanisms".to_owned(), "PLAIN".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned())
            ]
        );
    }

    #[test]
    fn topics_and_groups_carry_the_prefix() {
        let config = KafkaConfig { topic_prefix: "shop".to_owned(), ..KafkaConfig::new("b:9092") };
        assert_eq!(config.topic("orders"), "shop.orders.events");
        assert_eq!(config.group("payments.orders"), "shop.payments.orders");
    }
}
