//! Reversible migrations per module, applied with the module's own role and recorded inside
//! the module's schema, so a module's data and its history move out together.
//!
//! Each schema carries two stacked streams: the platform kit's tables (idempotency records,
//! the outbox, …) at the bottom, recorded in `<m>._platform_migrations`, and the module's own
//! `migrations/<m>/`, recorded in `<m>._sqlx_migrations`. `up` applies the kit, then the
//! module; `down` peels the module's migrations first and the kit's once those are gone.
//!
//! The jobs storage is the one schema outside that pattern (ADR 0010): apalis' own
//! migrations, applied by role `bulkhead_jobs` and recorded in `apalis._sqlx_migrations`,
//! where apalis' own `PostgresStorage::setup` records them too. They are not reversible.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgPool;

/// The platform kit's tables, created in every module's schema.
static KIT: Migrator = sqlx::migrate!("./migrations");

/// How `migrate status` and readiness name the jobs storage.
pub const JOBS: &str = "jobs";

/// What a module persists: its schema name and its embedded migrations
/// (`sqlx::migrate!("../../migrations/<m>")`).
#[derive(Debug, Clone, Copy)]
pub struct ModuleSchema {
    pub name: &'static str,
    pub migrations: &'static Migrator,
}

impl ModuleSchema {
    fn streams(&self) -> [Stream; 2] {
        [
            Stream::new("platform", &KIT, self.name, "_platform_migrations"),
            Stream::new("module", self.migrations, self.name, "_sqlx_migrations"),
        ]
    }

    /// A digest of every migration this schema would run: a template database built from it
    /// can be reused exactly while this stays the same.
    pub fn fingerprint(&self, hasher: &mut impl sha2::digest::Update) {
        hasher.update(self.name.as_bytes());
        for stream in self.streams() {
            for migration in stream.migrator.iter() {
                hasher.update(&migration.version.to_be_bytes());
                hasher.update(&migration.checksum);
            }
        }
    }
}

struct Stream {
    label: &'static str,
    migrator: Migrator,
    table: String,
}

/// apalis' migrations, recorded where apalis records them. Unlike `PostgresStorage::setup`,
/// this does not run `CREATE SCHEMA IF NOT EXISTS apalis` on every start (PostgreSQL checks
/// that against `CREATE` on the database even when the schema exists): the schema is
/// provisioned beforehand.
fn jobs_stream() -> Stream {
    Stream::new("apalis", &apalis_postgres::PostgresStorage::<()>::migrations(), super::JOBS_SCHEMA, "_sqlx_migrations")
}

/// A digest of the jobs storage's migrations, for test templates (see
/// [`ModuleSchema::fingerprint`]).
pub fn jobs_fingerprint(hasher: &mut impl sha2::digest::Update) {
    hasher.update(JOBS.as_bytes());
    for migration in jobs_stream().migrator.iter() {
        hasher.update(&migration.version.to_be_bytes());
        hasher.update(&migration.checksum);
    }
}

/// Applies apalis' pending migrations with the jobs pool.
///
/// # Errors
/// A failing migration, or a changed, already-applied one.
pub async fn jobs_up(pool: &PgPool) -> anyhow::Result<()> {
    jobs_stream().migrator.run(pool).await.context("applying the migrations of the jobs schema (apalis)")?;
    Ok(())
}

/// Every migration of the jobs storage and whether it is applied.
///
/// # Errors
/// When the history table cannot be read.
pub async fn jobs_status(pool: &PgPool) -> anyhow::Result<Vec<MigrationState>> {
    let stream = jobs_stream();
    let applied = stream.applied(pool).await?;
    Ok(stream
        .up_migrations()
        .map(|m| MigrationState {
            module: JOBS,
            stream: stream.label,
            version: m.version,
            description: m.description.to_string(),
            applied_at: applied.get(&m.version).copied(),
        })
        .collect())
}

/// Whether every migration of the jobs storage is applied (the readiness check).
///
/// # Errors
/// When the history table cannot be read.
pub async fn jobs_is_current(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(jobs_status(pool).await?.iter().all(|m| m.applied_at.is_some()))
}

impl Stream {
    fn new(label: &'static str, source: &Migrator, schema: &str, table: &str) -> Self {
        let mut migrator = Migrator::with_migrations(source.iter().cloned().collect());
        let table = format!("{schema}.{table}");
        migrator.dangerous_set_table_name(table.clone());
        Self { label, migrator, table }
    }

    async fn applied(&self, pool: &PgPool) -> anyhow::Result<HashMap<i64, DateTime<Utc>>> {
        let mut connection = pool.acquire().await?;
        connection.ensure_migrations_table(&self.table).await?;
        // sqlx's own listing drops the timestamp; read the table it keeps.
        let sql = format!("SELECT version, installed_on FROM {} WHERE success ORDER BY version", self.table);
        let rows: Vec<(i64, DateTime<Utc>)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *connection).await?;
        Ok(rows.into_iter().collect())
    }

    fn up_migrations(&self) -> impl Iterator<Item = &sqlx::migrate::Migration> {
        self.migrator.iter().filter(|m| !m.migration_type.is_down_migration())
    }
}

/// Applies every pending migration of `schema`, kit first.
///
/// # Errors
/// A failing migration (its transaction is rolled back) or a changed, already-applied one.
pub async fn up(pool: &PgPool, schema: &ModuleSchema) -> anyhow::Result<()> {
    for stream in schema.streams() {
        stream
            .migrator
            .run(pool)
            .await
            .with_context(|| format!("applying the {} migrations of `{}`", stream.label, schema.name))?;
    }
    Ok(())
}

/// Reverts the `steps` most recent migrations of `schema` (module ones before the kit's)
/// and returns what was reverted, newest first.
///
/// # Errors
/// A failing down migration.
pub async fn down(pool: &PgPool, schema: &ModuleSchema, steps: usize) -> anyhow::Result<Vec<MigrationState>> {
    let mut reverted = Vec::new();
    for stream in schema.streams().into_iter().rev() {
        while reverted.len() < steps {
            let applied = stream.applied(pool).await?;
            let mut versions: Vec<i64> = applied.keys().copied().collect();
            versions.sort_unstable();
            let Some(&latest) = versions.last() else { break };
            let target = versions.iter().rev().nth(1).copied().unwrap_or(0);
            stream
                .migrator
                .undo(pool, target)
                .await
                .with_context(|| format!("reverting {} migration {latest} of `{}`", stream.label, schema.name))?;
            let description = stream
                .up_migrations()
                .find(|m| m.version == latest)
                .map(|m| m.description.to_string())
                .unwrap_or_default();
            reverted.push(MigrationState {
                module: schema.name,
                stream: stream.label,
                version: latest,
                description,
                applied_at: None,
            });
        }
    }
    Ok(reverted)
}

/// One migration of a module and whether it is applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationState {
    pub module: &'static str,
    /// `platform` (the kit's tables), `module`, or `apalis` (the jobs storage).
    pub stream: &'static str,
    pub version: i64,
    pub description: String,
    pub applied_at: Option<DateTime<Utc>>,
}

/// Every known migration of `schema`, in the order `up` applies them.
///
/// # Errors
/// When the history tables cannot be read.
pub async fn status(pool: &PgPool, schema: &ModuleSchema) -> anyhow::Result<Vec<MigrationState>> {
    let mut states = Vec::new();
    for stream in schema.streams() {
        let applied = stream.applied(pool).await?;
        states.extend(stream.up_migrations().map(|m| MigrationState {
            module: schema.name,
            stream: stream.label,
            version: m.version,
            description: m.description.to_string(),
            applied_at: applied.get(&m.version).copied(),
        }));
    }
    Ok(states)
}

/// Whether every migration of `schema` is applied (the readiness check).
///
/// # Errors
/// When the history tables cannot be read.
pub async fn is_current(pool: &PgPool, schema: &ModuleSchema) -> anyhow::Result<bool> {
    Ok(status(pool, schema).await?.iter().all(|m| m.applied_at.is_some()))
}
