//! What travels with every synchronous call between modules (DESIGN §5), in process or over
//! HTTP, so both topologies carry the same context and deadline.

pub mod remote;

use std::time::{Duration, Instant};

use crate::event::{EventEnvelope, Metadata};

/// The context of one port call: who asked, as part of what, and by when an answer is useful.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Shared by everything one user action caused; becomes the correlation id of events.
    pub correlation_id: String,
    /// The request or event that made this call.
    pub causation_id: Option<String>,
    /// Who acted: a user id, or `system:<what>`.
    pub actor: Option<String>,
    /// The id of the HTTP request being served when the call was made, so logs of every
    /// process it reaches can be searched by one id.
    pub request_id: Option<String>,
    /// W3C trace context of the caller, so the callee's work joins the caller's trace.
    pub traceparent: Option<String>,
    /// After this instant the caller no longer waits; remote adapters turn it into a timeout.
    pub deadline: Option<Instant>,
}

impl CallContext {
    /// The context of a call made while serving an HTTP request.
    pub fn for_request(request_id: impl Into<String>, actor: Option<String>, traceparent: Option<String>) -> Self {
        let request_id = request_id.into();
        Self {
            causation_id: Some(request_id.clone()),
            correlation_id: request_id.clone(),
            actor,
            request_id: Some(request_id),
            traceparent,
            deadline: None,
        }
    }

    /// The context of a call made while handling an event (or a job it caused).
    pub fn for_event(envelope: &EventEnvelope) -> Self {
        Self::from_metadata(&envelope.follow_up())
    }

    /// The context of a call whose cause is recorded as event metadata.
    pub fn from_metadata(metadata: &Metadata) -> Self {
        Self {
            correlation_id: metadata.correlation_id.clone(),
            causation_id: metadata.causation_id.clone(),
            actor: metadata.actor.clone(),
            request_id: None,
            traceparent: metadata.traceparent.clone(),
            deadline: None,
        }
    }

    /// Work nobody asked for directly (a scheduled sweep).
    pub fn system(what: &str) -> Self {
        Self::from_metadata(&Metadata::system(what))
    }

    /// The same context with an answer needed within `budget`.
    #[must_use]
    pub fn with_timeout(mut self, budget: Duration) -> Self {
        self.deadline = Some(Instant::now() + budget);
        self
    }

    /// Time left before the deadline (`None` without one; zero once passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }
}
