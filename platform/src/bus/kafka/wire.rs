//! An event as a Kafka record: the key is the aggregate key, the value the JSON payload, the
//! rest headers with plain names any consumer can read (`event-id`, `event-type`,
//! `event-version`, `position`, `occurred-at`, `correlation-id`, `causation-id`, `actor`,
//! `traceparent`). The record's timestamp is when the event was sequenced, so seeking offsets
//! by time rewinds as the PostgreSQL transport does.

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};

use crate::bus::event::{EventEnvelope, Metadata};

pub(super) const EVENT_ID: &str = "event-id";
pub(super) const EVENT_TYPE: &str = "event-type";
pub(super) const EVENT_VERSION: &str = "event-version";
pub(super) const POSITION: &str = "position";
pub(super) const OCCURRED_AT: &str = "occurred-at";
pub(super) const CORRELATION_ID: &str = "correlation-id";
pub(super) const CAUSATION_ID: &str = "causation-id";
pub(super) const ACTOR: &str = "actor";
pub(super) const TRACEPARENT: &str = "traceparent";

/// The headers of `event` (everything but its key, payload and source).
pub(super) fn headers(event: &EventEnvelope) -> OwnedHeaders {
    let id = event.id.to_string();
    let version = event.event_version.to_string();
    let position = event.position.to_string();
    let occurred = event.occurred_at.to_rfc3339();
    let mut headers = OwnedHeaders::new_with_capacity(9)
        .insert(Header { key: EVENT_ID, value: Some(&id) })
        .insert(Header { key: EVENT_TYPE, value: Some(&event.event_type) })
        .insert(Header { key: EVENT_VERSION, value: Some(&version) })
        .insert(Header { key: POSITION, value: Some(&position) })
        .insert(Header { key: OCCURRED_AT, value: Some(&occurred) })
        .insert(Header { key: CORRELATION_ID, value: Some(&event.metadata.correlation_id) });
    for (key, value) in [
        (CAUSATION_ID, &event.metadata.causation_id),
        (ACTOR, &event.metadata.actor),
        (TRACEPARENT, &event.metadata.traceparent),
    ] {
        if let Some(value) = value {
            headers = headers.insert(Header { key, value: Some(value) });
        }
    }
    headers
}

/// Why a record is not a Bulkhead event (written by another producer, or damaged).
#[derive(Debug, thiserror::Error)]
pub(super) enum NotAnEvent {
    #[error("header `{0}` is missing or not UTF-8")]
    Missing(&'static str),
    #[error("header `{0}` does not parse: {1}")]
    Invalid(&'static str, String),
    #[error("the value is not JSON: {0}")]
    Payload(String),
}

/// The event a record of `source`'s topic carries.
pub(super) fn decode(source: &str, message: &BorrowedMessage<'_>) -> Result<EventEnvelope, NotAnEvent> {
    let header = |name: &'static str| -> Option<String> {
        let headers = message.headers()?;
        headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| String::from_utf8(v.to_vec()).ok())
    };
    let required = |name: &'static str| header(name).ok_or(NotAnEvent::Missing(name));
    let parsed = |name: &'static str| -> Result<i64, NotAnEvent> {
        required(name)?.parse().map_err(|e: std::num::ParseIntError| NotAnEvent::Invalid(name, e.to_string()))
    };
    let id = required(EVENT_ID)?.parse().map_err(|e: uuid::Error| NotAnEvent::Invalid(EVENT_ID, e.to_string()))?;
    let occurred_at = DateTime::parse_from_rfc3339(&required(OCCURRED_AT)?)
        .map_err(|e| NotAnEvent::Invalid(OCCURRED_AT, e.to_string()))?
        .with_timezone(&Utc);
    let event_version =
        i32::try_from(parsed(EVENT_VERSION)?).map_err(|e| NotAnEvent::Invalid(EVENT_VERSION, e.to_string()))?;
    let payload = serde_json::from_slice(message.payload().unwrap_or_default())
        .map_err(|e| NotAnEvent::Payload(e.to_string()))?;
    Ok(EventEnvelope {
        id,
        source: source.to_owned(),
        position: parsed(POSITION)?,
        event_type: required(EVENT_TYPE)?,
        event_version,
        aggregate_key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        payload,
        metadata: Metadata {
            correlation_id: required(CORRELATION_ID)?,
            causation_id: header(CAUSATION_ID),
            actor: header(ACTOR),
            traceparent: header(TRACEPARENT),
        },
        occurred_at,
    })
}
