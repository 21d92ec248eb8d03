//! The database kit: embedded PostgreSQL, per-module roles and schemas, pools, migrations
//! (DESIGN §3). A module's data lives in its own schema, reached through its own role.

pub mod binaries;
pub mod embedded;
pub mod migrate;
pub mod provision;

pub use embedded::{ClusterAddress, EmbeddedOptions, EmbeddedPostgres};
pub use migrate::{MigrationState, ModuleSchema};
pub use provision::{AdminAccess, DatabaseSetup, Databases, JobsDatabase};

/// The role the jobs runtime logs in as; it owns [`JOBS_SCHEMA`] (ADR 0010).
pub const JOBS_ROLE: &str = "bulkhead_jobs";
/// The one schema shared by every module: apalis' queues (ADR 0010). apalis hard-codes it.
pub const JOBS_SCHEMA: &str = "apalis";

/// The role a module's pool logs in as: `bulkhead_<module>`.
pub fn role_name(module: &str) -> String {
    format!("bulkhead_{module}")
}

/// Whether a PostgreSQL error carries `code` (an SQLSTATE such as `42501`).
pub fn has_sqlstate(error: &sqlx::Error, code: &str) -> bool {
    error.as_database_error().and_then(|e| e.code()).is_some_and(|c| c == code)
}

/// SQLSTATE `42501`: the role lacks the privilege.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE `23505`: a unique constraint was violated.
pub const UNIQUE_VIOLATION: &str = "23505";

/// A read-only transaction on one snapshot, for a read of several statements: they agree
/// with each other, and PostgreSQL counts one transaction instead of one per statement
/// (each statement outside a transaction is a transaction of its own). Commit or drop it.
///
/// # Errors
/// No connection, or the `BEGIN` failing.
pub async fn read_snapshot(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await
}
