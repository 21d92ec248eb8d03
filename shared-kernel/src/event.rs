//! What an event is: the typed [`Event`] contract crates implement, the [`Metadata`] every
//! event carries, and the [`EventEnvelope`] a handler receives.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event type of a module's contract. The payload is the implementing type itself.
///
/// Readers are tolerant: unknown fields are ignored, so additive changes keep the version.
/// A breaking change bumps [`Event::VERSION`] and teaches [`Event::upcast`] to lift older
/// payloads to the current shape.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// `<module>.<what_happened>`, e.g. `orders.order_placed`.
    const TYPE: &'static str;
    /// Schema version of the payload, starting at 1.
    const VERSION: u32;

    /// The key whose events must stay in order (usually the aggregate id); it also picks the
    /// partition.
    fn aggregate_key(&self) -> String;

    /// Lifts a payload written at an older `version` to the current shape.
    ///
    /// # Errors
    /// By default every older version is refused.
    fn upcast(version: u32, payload: serde_json::Value) -> Result<serde_json::Value, DecodeError> {
        let _ = payload;
        Err(DecodeError::UnknownVersion { event_type: Self::TYPE, version, current: Self::VERSION })
    }
}

/// An event type and the payload version a contract speaks: what a module's manifest declares
/// it publishes or subscribes to, and what the module map (`docs/modules.md`) shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct EventRef {
    /// [`Event::TYPE`].
    pub event_type: &'static str,
    /// [`Event::VERSION`].
    pub version: u32,
}

impl EventRef {
    /// The type and version of `E`.
    #[must_use]
    pub const fn of<E: Event>() -> Self {
        Self { event_type: E::TYPE, version: E::VERSION }
    }
}

/// Implements [`Event`] for a payload keyed by one of its fields, at version 1 unless given:
/// `keyed_event!(OrderPlaced, "orders.order_placed", order_id);`. Events that change shape or
/// need an upcaster implement [`Event`] by hand.
#[macro_export]
macro_rules! keyed_event {
    ($type:ty, $name:literal, $key:ident) => {
        $crate::keyed_event!($type, $name, $key, 1);
    };
    ($type:ty, $name:literal, $key:ident, $version:literal) => {
        impl $crate::event::Event for $type {
            const TYPE: &'static str = $name;
            const VERSION: u32 = $version;
            fn aggregate_key(&self) -> String {
                self.$key.to_string()
            }
        }
    };
}

/// An event as its snapshot shows it on the wire: type, version, key and payload. Contract
/// crates snapshot every payload through this, so a breaking change fails a test.
pub fn wire<E: Event>(event: &E) -> serde_json::Value {
    serde_json::json!({ "type": E::TYPE, "version": E::VERSION, "key": event.aggregate_key(), "payload": event })
}

/// Context every event carries, so a chain of effects can be followed across modules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Shared by everything one user action caused (the request id that started it).
    pub correlation_id: String,
    /// The event (or request) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Who acted: a user id, or `system:<what>` for scheduled work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// W3C trace context of the operation that appended the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Metadata {
    /// Metadata for an event caused by a request: the request id correlates, and the event
    /// continues the request's trace (a new span in it).
    pub fn for_request(request_id: impl Into<String>, actor: Option<String>, request_trace: Option<&str>) -> Self {
        let request_id = request_id.into();
        Self {
            causation_id: Some(request_id.clone()),
            correlation_id: request_id,
            actor,
            traceparent: Some(traceparent::child_of(request_trace)),
        }
    }

    /// Metadata for work nobody asked for directly (a scheduled sweep, a timeout).
    pub fn system(what: &str) -> Self {
        Self {
            correlation_id: Uuid::now_v7().to_string(),
            causation_id: None,
            actor: Some(format!("system:{what}")),
            traceparent: Some(traceparent::new_root()),
        }
    }
}

/// An event as stored in a module's outbox and delivered to handlers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: Uuid,
    /// The module whose outbox holds it.
    pub source: String,
    /// Its place in the source's log; strictly increasing, assigned after commit.
    pub position: i64,
    pub event_type: String,
    pub event_version: i32,
    pub aggregate_key: String,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub occurred_at: DateTime<Utc>,
}

impl EventEnvelope {
    /// The typed payload, upcast from an older version when needed.
    ///
    /// # Errors
    /// Wrong type, an unknown (newer) version, or a payload that does not fit.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TYPE {
            return Err(DecodeError::WrongType { expected: E::TYPE, found: self.event_type.clone() });
        }
        let version = u32::try_from(self.event_version).unwrap_or(0);
        let payload = match version.cmp(&E::VERSION) {
            std::cmp::Ordering::Equal => self.payload.clone(),
            std::cmp::Ordering::Less => E::upcast(version, self.payload.clone())?,
            std::cmp::Ordering::Greater => {
                return Err(DecodeError::UnknownVersion { event_type: E::TYPE, version, current: E::VERSION });
            }
        };
        serde_json::from_value(payload).map_err(|source| DecodeError::Payload { event_type: E::TYPE, source })
    }

    /// Metadata for events appended because of this one: same correlation, this as cause,
    /// a child span of its trace.
    pub fn follow_up(&self) -> Metadata {
        Metadata {
            correlation_id: self.metadata.correlation_id.clone(),
            causation_id: Some(self.id.to_string()),
            actor: self.metadata.actor.clone(),
            traceparent: Some(traceparent::child_of(self.metadata.traceparent.as_deref())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected a {expected} event, got {found}")]
    WrongType { expected: &'static str, found: String },
    #[error("{event_type} version {version} cannot be read (this code knows up to {current})")]
    UnknownVersion { event_type: &'static str, version: u32, current: u32 },
    #[error("{event_type} payload does not fit: {source}")]
    Payload { event_type: &'static str, source: serde_json::Error },
}

/// The partitioning hash of a key: Kafka's murmur2, made non-negative, so a subscription
/// split into N partitions groups keys as Kafka's default partitioner would.
pub fn key_hash(key: &str) -> i32 {
    murmur2(key.as_bytes()) & 0x7fff_ffff
}

/// Kafka's `Utils.murmur2`.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// W3C `traceparent` values (`00-<trace id>-<span id>-01`), so an event's handling can be
/// tied to the request that caused it in any tracing backend.
pub mod traceparent {
    fn random_hex(bytes: usize) -> String {
        (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
    }

    pub fn new_root() -> String {
        format!("00-{}-{}-01", random_hex(16), random_hex(8))
    }

    /// A new span in the same trace as `parent` (a new trace when there is none).
    pub fn child_of(parent: Option<&str>) -> String {
        match parent.and_then(trace_id) {
            Some(trace) => format!("00-{trace}-{}-01", random_hex(8)),
            None => new_root(),
        }
    }

    /// The trace id of a well-formed `traceparent`.
    pub fn trace_id(traceparent: &str) -> Option<&str> {
        let mut parts = traceparent.split('-');
        let (version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(version, 2) && hex(trace, 32) && hex(span, 16) && trace != "0".repeat(32)).then_some(trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_matches_kafkas_murmur2() {
        // Vectors from Kafka's UtilsTest.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58_897_971);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert!(key_hash("21") >= 0);
    }

    #[test]
    fn follow_ups_keep_the_correlation_and_the_trace() {
        let cause = EventEnvelope {
            id: Uuid::now_v7(),
            source: "orders".into(),
            position: 7,
            event_type: "orders.order_placed".into(),
            event_version: 1,
            aggregate_key: "o-1".into(),
            payload: serde_json::json!({}),
            metadata: Metadata::for_request(
                "req-1",
                Some("user-1".into()),
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ),
            occurred_at: Utc::now(),
        };
        let next = cause.follow_up();
        assert_eq!(next.correlation_id, "req-1");
        assert_eq!(next.causation_id, Some(cause.id.to_string()));
        let parent_trace = traceparent::trace_id(cause.metadata.traceparent.as_deref().unwrap()).unwrap();
        assert_eq!(parent_trace, "4bf92f3577b34da6a3ce929d0e0e4736", "the event continues the request's trace");
        assert_eq!(traceparent::trace_id(next.traceparent.as_deref().unwrap()), Some(parent_trace));
        assert_ne!(next.traceparent, cause.metadata.traceparent);
    }
}
