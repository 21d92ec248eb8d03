//! Where the data lives: an embedded PostgreSQL started from the machine's own binaries when
//! no `DATABASE_URL` is given, else the configured server(s).

use anyhow::Context;
use platform::db::{
    AdminAccess, ClusterAddress, DatabaseSetup, Databases, EmbeddedOptions, EmbeddedPostgres, JobsDatabase,
    ModuleSchema,
};
use sqlx::{Connection, PgConnection};

use crate::config::Config;

/// The database this binary uses inside the embedded cluster.
const EMBEDDED_DATABASE: &str = "bulkhead";

/// The connected databases, and the embedded server if we started one.
#[derive(Debug)]
pub struct Backing {
    pub databases: Databases,
    embedded: Option<EmbeddedPostgres>,
}

impl Backing {
    /// Starts the embedded server if needed, provisions roles and schemas, opens the pools.
    /// Migrations are left to the caller.
    ///
    /// # Errors
    /// Anything that stops the databases from being reachable, with what to do about it.
    pub async fn connect(config: &Config, schemas: &[ModuleSchema]) -> anyhow::Result<Self> {
        let names: Vec<&str> = schemas.iter().map(|s| s.name).collect();
        let module_urls = config.module_database_urls(&names)?;
        let every_module_has_its_own = !schemas.is_empty() && names.iter().all(|n| module_urls.contains_key(*n));
        // Its own URL wins, as a module's does; else the admin connection provisions it.
        let jobs = match &config.jobs_database_url {
            Some(url) => JobsDatabase::Url(Box::new(
                secrecy::ExposeSecret::expose_secret(url)
                    .parse()
                    .context("BULKHEAD_JOBS_DATABASE_URL is not a PostgreSQL URL")?,
            )),
            None => JobsDatabase::Provisioned,
        };

        let (admin, embedded) = match &config.database_url {
            Some(url) => (Some(AdminAccess::from_url(url)?), None),
            None if every_module_has_its_own => (None, None),
            None => {
                let mut options = EmbeddedOptions::new(&config.data_dir);
                options.bin_dir.clone_from(&config.pg_bin_dir);
                let server = EmbeddedPostgres::start(&options).await?;
                let access = ensure_embedded_database(&server).await?;
                (Some(access), Some(server))
            }
        };
        let mut parsed_urls = std::collections::BTreeMap::new();
        for (module, url) in module_urls {
            let options = secrecy::ExposeSecret::expose_secret(&url)
                .parse()
                .with_context(|| format!("BULKHEAD_{}_DATABASE_URL is not a PostgreSQL URL", module.to_uppercase()))?;
            parsed_urls.insert(module, options);
        }
        let setup = DatabaseSetup {
            admin,
            module_urls: parsed_urls,
            pool_size: config.db_pool_size,
            jobs,
            peers: crate::modules::ALL.to_vec(),
        };
        let databases = match Databases::connect(&setup, schemas).await {
            Ok(databases) => databases,
            Err(error) => {
                if let Some(server) = embedded {
                    server.stop().await.ok();
                }
                return Err(error);
            }
        };
        Ok(Self { databases, embedded })
    }

    /// Closes the pools, then stops the embedded server (if any).
    ///
    /// # Errors
    /// When the embedded server does not stop.
    pub async fn close(self) -> anyhow::Result<()> {
        self.databases.close().await;
        if let Some(server) = self.embedded {
            server.stop().await?;
        }
        Ok(())
    }
}

async fn ensure_embedded_database(server: &EmbeddedPostgres) -> anyhow::Result<AdminAccess> {
    create_bulkhead_database(server.address()).await?;
    Ok(AdminAccess {
        options: server.connect_options(EMBEDDED_DATABASE),
        role_secret: server.address().password.clone(),
    })
}

/// Creates the database Bulkhead uses in the embedded cluster at `address`, if missing.
async fn create_bulkhead_database(address: &ClusterAddress) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect_with(&address.connect_options("postgres")).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(EMBEDDED_DATABASE)
        .fetch_one(&mut connection)
        .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {EMBEDDED_DATABASE}")))
            .execute(&mut connection)
            .await
            .context("creating the bulkhead database")?;
    }
    connection.close().await.ok();
    Ok(())
}

/// The superuser URL of Bulkhead's database in the embedded cluster at `address` (created
/// if missing), for `bulkhead database start`.
///
/// # Errors
/// The cluster cannot be reached.
pub(crate) async fn ensure_bulkhead_database(address: &ClusterAddress) -> anyhow::Result<String> {
    create_bulkhead_database(address).await?;
    Ok(format!(
        "postgres://{}:{}@127.0.0.1:{}/{EMBEDDED_DATABASE}",
        platform::db::embedded::SUPERUSER,
        secrecy::ExposeSecret::expose_secret(&address.password),
        address.port
    ))
}
