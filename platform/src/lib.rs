//! What every Bulkhead module is built on: the database kit (embedded PostgreSQL, roles,
//! schemas, migrations), the HTTP kit (envelopes, errors, pagination, idempotency, auth
//! extractors, middleware), metrics, telemetry and test support (feature `testing`).

pub mod auth;
pub mod breaker;
pub mod bus;
pub mod clock;
pub mod db;
pub mod http;
pub mod jobs;
pub mod key_files;
pub mod metrics;
pub mod module;
pub mod remote;
pub mod settings;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use module::{Manifest, Module, ModuleDescriptor, ServedPort};
/// The shared kernel's types, where module code has always found them.
pub use shared_kernel::{keyed_event, money, port};
