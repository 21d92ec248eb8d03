//! Roles, schemas, grants and pools (DESIGN §3).
//!
//! With admin rights (the embedded cluster, or a `DATABASE_URL` whose role may create roles)
//! each module gets a login role `bulkhead_<m>` that owns schema `<m>` and nothing else. Its
//! password is derived from the admin secret (HMAC), so every replica computes the same one and
//! nothing needs storing. Without admin rights, a module connects through its own URL
//! (`BULKHEAD_<M>_DATABASE_URL`), which is also how a module moves to a database of its own.
//!
//! The jobs runtime gets the same treatment (ADR 0010): role `bulkhead_jobs` owns the one
//! shared schema, `apalis`, or `BULKHEAD_JOBS_DATABASE_URL` points at it. Every module role may
//! enqueue there (`INSERT` on `apalis.jobs`, into its own queues only) and nothing more.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use super::migrate::{self, ModuleSchema};
use super::{JOBS_ROLE, JOBS_SCHEMA, has_sqlstate, role_name};

/// A connection with the right to create roles and schemas.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    pub options: PgConnectOptions,
    /// Module role passwords are derived from this.
    pub role_secret: SecretString,
}

impl AdminAccess {
    /// Admin access from a URL; the role secret is the URL's password (or the URL itself
    /// when it has none, e.g. trust or peer authentication).
    ///
    /// # Errors
    /// When the URL does not parse.
    pub fn from_url(url: &SecretString) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url.expose_secret()).context("DATABASE_URL is not a valid URL")?;
        let options: PgConnectOptions = url.expose_secret().parse().context("DATABASE_URL is not a PostgreSQL URL")?;
        let secret = parsed.password().map_or_else(|| url.expose_secret().to_owned(), str::to_owned);
        Ok(Self { options, role_secret: SecretString::from(secret) })
    }

    fn role_password(&self, role: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.role_secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"bulkhead-module-role:");
        mac.update(role.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// How to reach the database(s).
#[derive(Debug, Clone, Default)]
pub struct DatabaseSetup {
    pub admin: Option<AdminAccess>,
    /// Modules that connect through their own URL instead of a provisioned role.
    pub module_urls: BTreeMap<String, PgConnectOptions>,
    /// Connections per module pool (and of the jobs pool).
    pub pool_size: u32,
    /// Where the jobs runtime keeps its queues.
    pub jobs: JobsDatabase,
    /// Every module of the system, hosted here or not. With admin rights their roles are
    /// created up front, so whichever process creates a module's outbox can let every other
    /// module read it at once, whatever order the processes of a split start in.
    pub peers: Vec<&'static str>,
}

/// Where the jobs storage (schema `apalis`, ADR 0010) is reached from.
#[derive(Debug, Clone, Default)]
pub enum JobsDatabase {
    /// Role `bulkhead_jobs`, provisioned with the admin connection; none without one.
    #[default]
    Provisioned,
    /// A URL of its own (`BULKHEAD_JOBS_DATABASE_URL`), for deployments without admin rights.
    Url(Box<PgConnectOptions>),
    /// No jobs storage: tools and tests that run no jobs.
    Disabled,
}

/// The pools of the modules this process hosts, and of the jobs storage.
#[derive(Debug, Clone)]
pub struct Databases {
    admin: Option<PgPool>,
    modules: BTreeMap<&'static str, PgPool>,
    jobs: Option<PgPool>,
}

impl Databases {
    /// Provisions a role and schema for each module (where admin rights allow) and opens its
    /// pool. Run [`Databases::migrate`] next.
    ///
    /// # Errors
    /// Unreachable database, missing rights, or a module with neither admin access nor URL.
    pub async fn connect(setup: &DatabaseSetup, schemas: &[ModuleSchema]) -> anyhow::Result<Self> {
        let admin = match &setup.admin {
            Some(access) => Some(
                // Used while provisioning and by readiness checks: idle, it holds nothing.
                PgPoolOptions::new()
                    .max_connections(2)
                    .min_connections(0)
                    .idle_timeout(Some(Duration::from_secs(10)))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(access.options.clone().application_name("bulkhead:admin"))
                    .await
                    .context("connecting to PostgreSQL with DATABASE_URL")?,
            ),
            None => None,
        };
        // Held until the pools are provisioned; released when dropped (the session ends).
        let _catalog = match &admin {
            Some(admin) => Some(CatalogLock::acquire(admin).await?),
            None => None,
        };
        if let Some(admin) = &admin {
            // PostgreSQL 15 already refuses; 14 lets every role create tables in `public`.
            if let Err(error) = sqlx::query("REVOKE CREATE ON SCHEMA public FROM PUBLIC").execute(admin).await {
                tracing::debug!("could not revoke CREATE on schema public: {error}");
            }
        }
        // Connections a burst opened are closed after 10 s unused: an idle process holds only
        // what its periodic work keeps busy (each connection is a server process). sqlx hands
        // out idle connections in turn, so periodic work keeps about (its rate × 10 s) of them
        // alive; a shorter timeout would close and reopen them instead (the jobs runtime gives
        // its heartbeats a pool of their own for that reason).
        let pool_options = || {
            PgPoolOptions::new()
                .max_connections(setup.pool_size.max(1))
                .min_connections(0)
                .idle_timeout(Some(Duration::from_secs(10)))
                .acquire_timeout(Duration::from_secs(10))
        };
        if let (Some(access), Some(pool)) = (&setup.admin, &admin) {
            for peer in setup.peers.iter().filter(|peer| !schemas.iter().any(|s| s.name == **peer)) {
                validate_identifier(peer)?;
                ensure_role(pool, access, &role_name(peer)).await?;
            }
        }
        let mut modules = BTreeMap::new();
        for schema in schemas {
            let options = match (setup.module_urls.get(schema.name), &setup.admin, &admin) {
                (Some(own), _, _) => {
                    let options = own.clone().options([("search_path", schema.name)]);
                    let variable = format!("BULKHEAD_{}_DATABASE_URL", schema.name.to_uppercase());
                    ensure_own_schema(&options, schema.name, &variable).await?;
                    options
                }
                (None, Some(access), Some(pool)) => provision(pool, access, schema.name).await?,
                _ => bail!(
                    "module `{}` has no database: set DATABASE_URL (with the right to create roles) or BULKHEAD_{}_DATABASE_URL",
                    schema.name,
                    schema.name.to_uppercase()
                ),
            };
            let options = options.application_name(&format!("bulkhead:{}", schema.name));
            let pool = pool_options().connect_lazy_with(options);
            modules.insert(schema.name, pool);
        }
        let jobs = match &setup.jobs {
            JobsDatabase::Disabled => None,
            JobsDatabase::Url(own) => {
                let options = (**own).clone().options([("search_path", JOBS_SCHEMA)]);
                ensure_own_schema(&options, JOBS_SCHEMA, "BULKHEAD_JOBS_DATABASE_URL").await?;
                Some(options)
            }
            JobsDatabase::Provisioned => match (&setup.admin, &admin) {
                (Some(access), Some(pool)) => Some(provision_jobs(pool, access).await?),
                _ => None,
            },
        };
        let jobs = jobs.map(|options| pool_options().connect_lazy_with(options.application_name("bulkhead:jobs")));
        Ok(Self { admin, modules, jobs })
    }

    /// Applies pending migrations of every module with its own role, then grants every other
    /// module's role read access to each module's outbox, then migrates the jobs storage (see
    /// [`Databases::migrate_jobs`]).
    ///
    /// # Errors
    /// A failing migration or grant.
    pub async fn migrate(&self, schemas: &[ModuleSchema]) -> anyhow::Result<()> {
        for schema in schemas {
            migrate::up(self.pool(schema.name)?, schema).await?;
        }
        let catalog = match self.admin.as_ref().or_else(|| self.modules.values().next()) {
            Some(pool) => Some(CatalogLock::acquire(pool).await?),
            None => None,
        };
        self.grant_outbox_reads(schemas).await?;
        let migrated = self.migrate_jobs().await;
        if let Some(lock) = catalog {
            lock.release().await;
        }
        migrated
    }

    /// Applies the jobs storage's pending migrations (where this process has one), keeps
    /// module roles to their own queues, and grants every module role the right to enqueue,
    /// where missing.
    ///
    /// # Errors
    /// A failing migration or grant.
    pub async fn migrate_jobs(&self) -> anyhow::Result<()> {
        if let Some(jobs) = &self.jobs {
            migrate::jobs_up(jobs).await?;
            confine_enqueue(jobs).await?;
        }
        self.grant_enqueue().await
    }

    /// The pool of a hosted module.
    ///
    /// # Errors
    /// When `module` is not hosted here.
    pub fn pool(&self, module: &str) -> anyhow::Result<&PgPool> {
        self.modules.get(module).with_context(|| format!("module `{module}` has no database pool in this process"))
    }

    /// The pool of the jobs storage (role `bulkhead_jobs`, `search_path=apalis`): what the
    /// jobs runtime runs on.
    ///
    /// # Errors
    /// When this process has no jobs storage (neither admin rights nor
    /// `BULKHEAD_JOBS_DATABASE_URL`, or disabled).
    pub fn jobs_pool(&self) -> anyhow::Result<&PgPool> {
        self.jobs.as_ref().context(
            "no jobs database: set DATABASE_URL (with the right to create roles) or BULKHEAD_JOBS_DATABASE_URL",
        )
    }

    /// Creates schema `schema` owned by `module`'s role, for data the module reaches but that
    /// is not the module's own (the payment sandbox's books, ADR 0021): with admin rights the
    /// admin creates it, else the module's role does, if it may create schemas.
    ///
    /// # Errors
    /// An invalid name, a module not hosted here, or no right to create the schema.
    pub async fn ensure_schema_for(&self, module: &str, schema: &str) -> anyhow::Result<()> {
        validate_identifier(schema)?;
        match &self.admin {
            Some(admin) => ensure_schema_owner(admin, schema, &role_name(module)).await,
            None => {
                let sql = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(self.pool(module)?).await.with_context(|| {
                    format!("schema `{schema}` does not exist and the role of module `{module}` may not create it")
                })?;
                Ok(())
            }
        }
    }

    /// The admin pool, when this process has admin rights.
    pub fn admin(&self) -> Option<&PgPool> {
        self.admin.as_ref()
    }

    pub fn modules(&self) -> impl Iterator<Item = (&'static str, &PgPool)> {
        self.modules.iter().map(|(name, pool)| (*name, pool))
    }

    pub async fn close(&self) {
        for pool in self.modules.values() {
            pool.close().await;
        }
        if let Some(jobs) = &self.jobs {
            jobs.close().await;
        }
        if let Some(admin) = &self.admin {
            admin.close().await;
        }
    }

    /// The published event log is the one thing other modules may read (DESIGN §3): every
    /// module role gets `SELECT` on every other module's `outbox`. Each hosted module grants its
    /// own (so this works with per-module URLs too); with admin rights the grants also cover
    /// modules hosted by other processes on the same database (the split topology), whose
    /// owners started before this process created its role.
    async fn grant_outbox_reads(&self, schemas: &[ModuleSchema]) -> anyhow::Result<()> {
        for owner in schemas {
            grant_outbox(self.pool(owner.name)?, owner.name).await?;
        }
        if let Some(admin) = &self.admin {
            let others: Vec<String> = sqlx::query_scalar(
                "SELECT n.nspname::text FROM pg_namespace n
                   JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'outbox' AND c.relkind = 'r'
                  WHERE pg_get_userbyid(n.nspowner) = 'bulkhead_' || n.nspname",
            )
            .fetch_all(admin)
            .await?;
            for owner in others.iter().filter(|o| !schemas.iter().any(|s| s.name == o.as_str())) {
                if let Err(error) = grant_outbox(admin, owner).await {
                    tracing::warn!(%owner, "could not grant read access to this module's outbox: {error:#}");
                }
            }
        }
        Ok(())
    }

    async fn grant_enqueue(&self) -> anyhow::Result<()> {
        match (&self.jobs, &self.admin) {
            (Some(jobs), _) => grant_enqueue_with(jobs).await,
            (None, Some(admin)) => {
                if let Err(error) = grant_enqueue_with(admin).await {
                    tracing::warn!("could not grant module roles the right to enqueue jobs: {error:#}");
                }
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }
}

/// One process at a time changes roles, schema owners and grants: PostgreSQL refuses two
/// transactions updating one catalog row at once ("tuple concurrently updated"), which is
/// what the processes of a split starting together would do. A session-level advisory lock
/// on a connection of its own (so a pool of one connection is not starved), released by
/// [`CatalogLock::release`] or when the connection closes.
struct CatalogLock(PgConnection);

impl CatalogLock {
    const KEY: &str = "SELECT pg_advisory_lock(hashtextextended('bulkhead.catalog', 0))";

    async fn acquire(pool: &PgPool) -> anyhow::Result<Self> {
        let mut connection =
            PgConnection::connect_with(&pool.connect_options()).await.context("connecting to lock the catalog")?;
        sqlx::query(Self::KEY).execute(&mut connection).await.context("waiting for other processes' provisioning")?;
        Ok(Self(connection))
    }

    async fn release(self) {
        self.0.close().await.ok();
    }
}

/// Every module role may enqueue jobs inside its own transactions (DESIGN §4), so each gets
/// `USAGE` on schema `apalis` and `INSERT` on `apalis.jobs`, granted directly: the roles are
/// `NOINHERIT`, a group role would pass nothing on. Roles created after the jobs schema
/// get theirs when a process that hosts them migrates. Granted by the schema's owner (the
/// jobs pool) where this process has one, else by the admin.
async fn grant_enqueue_with(pool: &PgPool) -> anyhow::Result<()> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('apalis.jobs') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(());
    }
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles
          WHERE rolname LIKE 'bulkhead\\_%' AND rolname <> $1
            AND NOT (has_schema_privilege(oid, 'apalis', 'USAGE') AND has_table_privilege(oid, 'apalis.jobs', 'INSERT'))",
    )
    .bind(JOBS_ROLE)
    .fetch_all(pool)
    .await
    .context("checking which module roles may enqueue jobs")?;
    for role in missing {
        let mut tx = pool.begin().await?;
        for sql in [
            format!("GRANT USAGE ON SCHEMA {JOBS_SCHEMA} TO {role}"),
            format!("GRANT INSERT ON {JOBS_SCHEMA}.jobs TO {role}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        }
        tx.commit().await.with_context(|| format!("granting {role} the right to enqueue jobs"))?;
    }
    Ok(())
}

/// The policy that keeps each module to its own queues.
const ENQUEUE_POLICY: &str = "bulkhead_enqueue_own_queues";

/// A module role may insert jobs only into its own queues (`<module>.*`): the queue table is
/// shared, and a job in another module's queue would run that module's handler on a payload
/// it did not write. Row-level security on `apalis.jobs`; its owner (the jobs runtime, and
/// the platform's own recurring jobs) is not subject to it.
async fn confine_enqueue(jobs: &PgPool) -> anyhow::Result<()> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'apalis' AND tablename = 'jobs' AND policyname = $1)",
    )
    .bind(ENQUEUE_POLICY)
    .fetch_one(jobs)
    .await?;
    if exists {
        return Ok(());
    }
    let create = format!(
        "CREATE POLICY {ENQUEUE_POLICY} ON {JOBS_SCHEMA}.jobs FOR INSERT
         WITH CHECK (starts_with(job_type, substr(current_user::text, length('bulkhead_') + 1) || '.'))"
    );
    let mut tx = jobs.begin().await?;
    match sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut *tx).await {
        Ok(_) => {}
        // Another process created it first.
        Err(e) if has_sqlstate(&e, "42710") || has_sqlstate(&e, super::UNIQUE_VIOLATION) => return Ok(()),
        Err(e) => return Err(e).context("keeping module roles to their own job queues"),
    }
    let enable = format!("ALTER TABLE {JOBS_SCHEMA}.jobs ENABLE ROW LEVEL SECURITY");
    sqlx::query(sqlx::AssertSqlSafe(enable)).execute(&mut *tx).await?;
    tx.commit().await.context("keeping module roles to their own job queues")
}

/// Grants every other module role read access to `owner`'s outbox, where missing.
async fn grant_outbox(pool: &PgPool, owner: &str) -> anyhow::Result<()> {
    validate_identifier(owner)?;
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles
          WHERE rolname LIKE 'bulkhead\\_%' AND rolname <> $1 AND rolname <> $3
            AND NOT has_table_privilege(oid, $2::regclass, 'SELECT')",
    )
    .bind(role_name(owner))
    .bind(format!("{owner}.outbox"))
    .bind(JOBS_ROLE)
    .fetch_all(pool)
    .await
    .with_context(|| format!("checking who may read {owner}.outbox"))?;
    for reader in missing {
        let mut tx = pool.begin().await?;
        for sql in [
            format!("GRANT USAGE ON SCHEMA {owner} TO {reader}"),
            format!("GRANT SELECT ON {owner}.outbox TO {reader}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        }
        tx.commit().await.with_context(|| format!("granting {reader} read access to {owner}.outbox"))?;
    }
    Ok(())
}

/// Creates (or repairs) the module's role and schema and returns its connection options.
async fn provision(admin: &PgPool, access: &AdminAccess, module: &str) -> anyhow::Result<PgConnectOptions> {
    validate_identifier(module)?;
    anyhow::ensure!(
        role_name(module) != JOBS_ROLE,
        "`{module}` cannot be a module's name: its role would be the jobs runtime's"
    );
    let role = role_name(module);
    let options = ensure_role(admin, access, &role).await?.options([("search_path", module)]);
    ensure_schema_owner(admin, module, &role).await?;
    Ok(options)
}

/// Creates (or repairs) role `bulkhead_jobs` and its schema `apalis`, and lets it create
/// what apalis' migrations create: their first one runs `CREATE SCHEMA IF NOT EXISTS apalis`
/// (which PostgreSQL checks against `CREATE` on the database even when the schema exists),
/// and they install the trusted extensions `pgcrypto` and `hstore` (ADR 0010).
async fn provision_jobs(admin: &PgPool, access: &AdminAccess) -> anyhow::Result<PgConnectOptions> {
    let options = ensure_role(admin, access, JOBS_ROLE).await?.options([("search_path", JOBS_SCHEMA)]);
    ensure_schema_owner(admin, JOBS_SCHEMA, JOBS_ROLE).await?;
    let database: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(admin).await?;
    let sql = format!("GRANT CREATE ON DATABASE \"{}\" TO {JOBS_ROLE}", database.replace('"', "\"\""));
    if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await {
        tracing::warn!("could not let {JOBS_ROLE} create the jobs schema's extensions: {error}");
    }
    Ok(options)
}

/// Creates login role `role` with its derived password, or repairs the password of an
/// existing one, and returns options to log in as it.
async fn ensure_role(admin: &PgPool, access: &AdminAccess, role: &str) -> anyhow::Result<PgConnectOptions> {
    let password = access.role_password(role);
    let options = access.options.clone().username(role).password(&password);

    // Roles are cluster-wide and several processes may provision at once (replicas, tests):
    // create only when missing, tolerate losing the race, and touch the password only when
    // logging in with the derived one fails.
    let (exists, superuser): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
    )
    .bind(role)
    .fetch_one(admin)
    .await
    .context("reading roles")?;
    if !exists {
        let sql = format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION PASSWORD '{password}'"
        );
        match sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await {
            Ok(_) => tracing::info!(%role, "created a database role"),
            Err(e) if has_sqlstate(&e, "42710") || has_sqlstate(&e, super::UNIQUE_VIOLATION) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating role {role} (does DATABASE_URL's role have CREATEROLE?)"));
            }
        }
    } else if let Err(error) = PgConnection::connect_with(&options).await {
        if !has_sqlstate(&error, "28P01") {
            return Err(error).with_context(|| format!("logging in as {role}"));
        }
        let sql = format!("ALTER ROLE {role} PASSWORD '{password}'");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(admin)
            .await
            .with_context(|| format!("resetting the password of {role}"))?;
    }

    // A non-superuser admin (CREATEROLE) must be a member of the role to hand it a schema.
    if !superuser {
        let sql = format!("GRANT {role} TO CURRENT_USER");
        if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await {
            tracing::debug!(%role, "could not join the role: {error}");
        }
    }
    Ok(options)
}

/// Creates schema `schema` owned by `role`, or hands an existing one to it.
async fn ensure_schema_owner(admin: &PgPool, schema: &str, role: &str) -> anyhow::Result<()> {
    let owner: Option<String> =
        sqlx::query_scalar("SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_optional(admin)
            .await?;
    match owner {
        None => {
            let sql = format!("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}");
            match sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await {
                Ok(_) => {}
                Err(e) if has_sqlstate(&e, super::UNIQUE_VIOLATION) || has_sqlstate(&e, "42P06") => {}
                Err(e) => return Err(e).with_context(|| format!("creating schema {schema}")),
            }
        }
        Some(owner) if owner != role => {
            let sql = format!("ALTER SCHEMA {schema} OWNER TO {role}");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// With a URL of its own (`variable`), a module's role (or the jobs role) creates its schema
/// itself when it may.
async fn ensure_own_schema(options: &PgConnectOptions, schema: &str, variable: &str) -> anyhow::Result<()> {
    validate_identifier(schema)?;
    let mut connection =
        PgConnection::connect_with(options).await.with_context(|| format!("connecting with {variable}"))?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&mut connection)
        .await?;
    if !exists {
        let sql = format!("CREATE SCHEMA {schema} AUTHORIZATION CURRENT_USER");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut connection).await.with_context(|| {
            format!("schema `{schema}` does not exist and the role of {variable} may not create it")
        })?;
    }
    connection.close().await.ok();
    Ok(())
}

/// Module names become SQL identifiers, so they are held to `[a-z][a-z0-9_]*`.
fn validate_identifier(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 40;
    if !valid {
        bail!("`{name}` is not a valid module name (lowercase letters, digits and `_`)");
    }
    Ok(())
}
