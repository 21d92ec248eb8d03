//! The event bus (DESIGN §4): Kafka's semantics on PostgreSQL.
//!
//! - **Publish** with [`append`] inside the transaction of the state change, into the
//!   publishing module's `outbox`. Nothing else publishes.
//! - The **sequencer** numbers committed rows in a strictly increasing `position`.
//! - A **subscription** is a durable consumer group with a cursor per partition in the
//!   subscriber's schema; its handlers run in the subscriber's transaction together with the
//!   cursor advance, so effects happen exactly once.
//! - **Failures** are retried with backoff while the partition waits, then dead-lettered;
//!   dead letters can be replayed and subscriptions rewound.
//! - **Retention** deletes old sequenced events, as a recurring job per publishing module
//!   (`bus.retention.<module>`).
//!
//! `docs/bus.md` states the guarantees and what they rest on.

pub mod admin;
pub mod append;
mod consumer;
/// The event contract lives in the shared kernel, so contract crates need not depend on platform.
pub use shared_kernel::event;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod listener;
mod metrics;
mod retention;
mod runtime;
pub mod sequencer;
pub mod subscription;
pub mod transport;

pub use append::{append, append_all};
pub use event::{DecodeError, Event, EventEnvelope, Metadata, wire};
pub use runtime::{
    Bus, BusBuilder, BusConfig, BusTasks, DeadLetter, PartitionStatus, ReplayError, RewindError, RewindTarget,
};
pub use subscription::{Handler, HandlerContext, RetryPolicy, StartFrom, Subscription, handler_fn};
