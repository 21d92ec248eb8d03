//! The users module: accounts, sign-in, sessions, roles, notification preferences and the
//! keys access tokens are signed with. Other modules see only `users-contract`.

mod domain;
mod http;
mod keys;
mod service;
mod settings;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use platform::auth::JwtVerifier;
use platform::clock::{Clock, SystemClock};
use platform::db::ModuleSchema;
use platform::{Manifest, Module, ModuleDescriptor, ServedPort};
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use users_contract::UsersApi;
use utoipa_axum::router::OpenApiRouter;

pub use domain::{Backoff, ThrottlePolicy};

pub use settings::UsersArgs;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/users");

/// What `app` needs before it has a pool: the schema to provision and migrate.
pub const DESCRIPTOR: ModuleDescriptor =
    ModuleDescriptor { schema: ModuleSchema { name: "users", migrations: &MIGRATIONS }, manifest };

/// How the module behaves; [`UsersConfig::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    /// Where the Ed25519 signing keys live (generated there on first start).
    pub keys_dir: PathBuf,
    /// Base URL of the pages a person opens from an email (`<base>/verify-email?token=…`).
    pub public_url: String,
    /// Lifetime of an access token (15 minutes).
    pub access_token_ttl: Duration,
    /// How long an unused refresh token stays valid (14 days).
    pub refresh_token_ttl: Duration,
    /// How long a session lasts however often it refreshes (30 days).
    pub session_ttl: Duration,
    /// How long a verification link works once sent (24 hours).
    pub verification_link_ttl: Duration,
    /// How long a password-reset link works once sent (30 minutes).
    pub reset_link_ttl: Duration,
    pub throttle: ThrottlePolicy,
    /// The admin created on first start, when no admin exists.
    pub first_admin: FirstAdminSettings,
}

/// The first admin: from `BULKHEAD_ADMIN_EMAIL` and `BULKHEAD_ADMIN_PASSWORD`, or with a
/// random password that is shown once.
#[derive(Debug, Clone)]
pub struct FirstAdminSettings {
    pub email: String,
    pub password: Option<SecretString>,
}

impl UsersConfig {
    pub fn new(keys_dir: PathBuf, public_url: impl Into<String>) -> Self {
        Self {
            keys_dir,
            public_url: public_url.into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(14 * 24 * 3600),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            verification_link_ttl: Duration::from_secs(24 * 3600),
            reset_link_ttl: Duration::from_secs(30 * 60),
            throttle: ThrottlePolicy::default(),
            first_admin: FirstAdminSettings { email: "admin@bulkhead.local".to_owned(), password: None },
        }
    }
}

/// The admin account created on first start; `generated_password` is set when the password
/// was made up here and must be shown to the operator once.
#[derive(Debug)]
pub struct FirstAdmin {
    pub email: String,
    pub generated_password: Option<SecretString>,
}

/// The users module, built from its pool, the process's token verifier and its config.
#[derive(Debug, Clone)]
pub struct UsersModule {
    service: Arc<service::UsersService>,
}

impl UsersModule {
    /// Loads (or generates) the signing keys and adds them to `verifier`.
    ///
    /// # Errors
    /// Unreadable keys or an unusable key directory.
    pub fn new(pool: PgPool, verifier: JwtVerifier, config: UsersConfig) -> anyhow::Result<Self> {
        Self::with_clock(pool, verifier, config, Arc::new(SystemClock))
    }

    /// As [`UsersModule::new`], telling time by `clock` (tests move it to expire tokens).
    ///
    /// # Errors
    /// Unreadable keys or an unusable key directory.
    pub fn with_clock(
        pool: PgPool,
        verifier: JwtVerifier,
        config: UsersConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let keys = keys::KeyRing::load_or_create(&config.keys_dir, verifier.clone(), clock.now())?;
        let service = service::UsersService {
            pool,
            clock,
            keys,
            verifier,
            config,
            policy: domain::PasswordPolicy::new(),
            hashing: domain::PasswordHashing::new()?,
        };
        Ok(Self { service: Arc::new(service) })
    }

    /// Creates the first admin when the system has none (safe to run on every start and from
    /// several replicas at once).
    ///
    /// # Errors
    /// A configured password that breaks the policy, an email taken by a non-admin, or a
    /// database failure.
    pub async fn ensure_first_admin(&self) -> anyhow::Result<Option<FirstAdmin>> {
        self.service.ensure_first_admin().await
    }

    /// The in-process implementation of the users port.
    pub fn api(&self) -> Arc<dyn UsersApi> {
        self.service.clone()
    }
}

impl Module for UsersModule {
    fn name(&self) -> &'static str {
        DESCRIPTOR.schema.name
    }

    fn public_routes(&self) -> OpenApiRouter {
        http::router(self.service.clone())
    }

    fn root_routes(&self) -> OpenApiRouter {
        http::well_known(self.service.clone())
    }

    fn internal_routes(&self) -> OpenApiRouter {
        http::internal_router(self.service.clone())
    }

    fn manifest(&self) -> Manifest {
        manifest()
    }
}

/// What the module uses and offers (DESIGN §2), known without building it.
fn manifest() -> Manifest {
    Manifest {
        ports_used: Vec::new(),
        ports_served: vec![ServedPort { port: users_contract::PORT, callers: users_contract::CALLERS }],
        events_published: users_contract::events::PUBLISHED.to_vec(),
        events_subscribed: Vec::new(),
        jobs: Vec::new(),
    }
}
