//! Roles, schemas, grants and migrations against real PostgreSQL.

use platform::db::{self, DatabaseSetup, Databases, JobsDatabase, ModuleSchema, migrate};
use sqlx::PgPool;

use crate::support::{ALPHA, BETA, SCHEMAS};
use platform::testing::TestDatabase;

async fn denied(pool: &PgPool, sql: &'static str) {
    let error = sqlx::query(sql).execute(pool).await.expect_err(sql);
    assert!(db::has_sqlstate(&error, db::INSUFFICIENT_PRIVILEGE), "{sql}: {error}");
}

#[tokio::test]
async fn a_modules_role_cannot_touch_another_modules_tables_but_can_read_its_outbox() {
    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let databases = database.connect(&SCHEMAS).await.unwrap();
    let alpha = databases.pool("alpha").unwrap();

    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(alpha).await.unwrap();
    assert_eq!(user, "bulkhead_alpha");

    // Its own tables, unqualified: the pool's search_path is its schema.
    sqlx::query("INSERT INTO widgets (id, name) VALUES (gen_random_uuid(), 'mine')").execute(alpha).await.unwrap();

    denied(alpha, "SELECT * FROM beta.gadgets").await;
    denied(alpha, "INSERT INTO beta.gadgets (id, name) VALUES (gen_random_uuid(), 'theirs')").await;
    denied(alpha, "DELETE FROM beta.gadgets").await;
    denied(alpha, "SELECT * FROM beta.idempotency_keys").await;
    denied(alpha, "CREATE TABLE beta.intruder (id int)").await;
    denied(alpha, "CREATE TABLE public.anywhere (id int)").await;
    denied(alpha, "INSERT INTO beta.outbox (id, event_type, event_version, aggregate_key, payload) VALUES (gen_random_uuid(), 'x', 1, 'k', '{}')").await;
    denied(alpha, "UPDATE beta.outbox SET position = 1").await;

    // The published event log is the one thing it may read.
    sqlx::query("SELECT count(*) FROM beta.outbox").execute(alpha).await.unwrap();
    databases.close().await;
}

#[tokio::test]
async fn migrations_keep_their_history_in_the_modules_schema_and_revert_step_by_step() {
    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let databases = database.connect(&SCHEMAS).await.unwrap();
    let alpha = databases.pool("alpha").unwrap();

    let status = migrate::status(alpha, &ALPHA).await.unwrap();
    let listed: Vec<(&str, i64)> = status.iter().map(|m| (m.stream, m.version)).collect();
    assert_eq!(
        listed,
        [("platform", 1), ("platform", 2), ("platform", 3), ("platform", 4), ("module", 1), ("module", 2)]
    );
    assert!(status.iter().all(|m| m.applied_at.is_some()));
    let history: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'alpha' AND table_name LIKE '\\_%' ORDER BY 1",
    )
    .fetch_all(alpha)
    .await
    .unwrap();
    assert_eq!(history, ["_platform_migrations", "_sqlx_migrations"]);

    let reverted = migrate::down(alpha, &ALPHA, 1).await.unwrap();
    assert_eq!((reverted[0].stream, reverted[0].version), ("module", 2));
    let colour: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'alpha' AND table_name = 'widgets' AND column_name = 'colour'",
    )
    .fetch_optional(alpha)
    .await
    .unwrap();
    assert_eq!(colour, None);
    assert!(!migrate::is_current(alpha, &ALPHA).await.unwrap());

    // Module migrations peel first, then the platform kit's.
    let reverted = migrate::down(alpha, &ALPHA, 5).await.unwrap();
    let order: Vec<(&str, i64)> = reverted.iter().map(|m| (m.stream, m.version)).collect();
    assert_eq!(order, [("module", 1), ("platform", 4), ("platform", 3), ("platform", 2), ("platform", 1)]);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'alpha' AND table_name NOT LIKE '\\_%'",
    )
    .fetch_one(alpha)
    .await
    .unwrap();
    assert_eq!(left, 0, "a full revert leaves only the history tables");
    assert!(migrate::down(alpha, &ALPHA, 1).await.unwrap().is_empty());

    migrate::up(alpha, &ALPHA).await.unwrap();
    assert!(migrate::is_current(alpha, &ALPHA).await.unwrap());
    databases.close().await;
}

#[tokio::test]
async fn provisioning_an_already_provisioned_database_concurrently_is_harmless() {
    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let setup = database.setup();
    let attempts = (0..4).map(|_| {
        let setup = setup.clone();
        async move {
            let databases = Databases::connect(&setup, &SCHEMAS).await?;
            databases.migrate(&SCHEMAS).await?;
            databases.close().await;
            anyhow::Ok(())
        }
    });
    for outcome in futures::future::join_all(attempts).await {
        outcome.unwrap();
    }
}

#[tokio::test]
async fn a_module_with_its_own_url_creates_its_schema_and_migrates_without_admin_rights() {
    static GAMMA_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("tests/fixtures/beta");
    const GAMMA: ModuleSchema = ModuleSchema { name: "gamma", migrations: &GAMMA_MIGRATIONS };

    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let mut admin = database.admin_connection().await.unwrap();
    let role = format!("gamma_owner_{}", &database.name[database.name.len() - 8..]);
    for sql in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'gamma-secret'"),
        format!("GRANT CREATE ON DATABASE {} TO {role}", database.name),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
    }
    let own = database.admin.options.clone().username(&role).password("gamma-secret");
    let setup = DatabaseSetup {
        admin: None,
        module_urls: [("gamma".to_owned(), own)].into(),
        pool_size: 2,
        jobs: JobsDatabase::Disabled,
        peers: Vec::new(),
    };

    let databases = Databases::connect(&setup, &[GAMMA]).await.unwrap();
    databases.migrate(&[GAMMA]).await.unwrap();
    let owner: String =
        sqlx::query_scalar("SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'gamma'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(owner, role);
    sqlx::query("SELECT count(*) FROM gadgets").execute(databases.pool("gamma").unwrap()).await.unwrap();
    databases.close().await;
}

#[tokio::test]
async fn a_module_without_admin_access_or_its_own_url_is_a_clear_error() {
    let setup = DatabaseSetup {
        admin: None,
        module_urls: Default::default(),
        pool_size: 1,
        jobs: JobsDatabase::Disabled,
        peers: Vec::new(),
    };
    let error = Databases::connect(&setup, &[BETA]).await.unwrap_err().to_string();
    assert!(error.contains("BULKHEAD_BETA_DATABASE_URL"), "{error}");
    assert!(error.contains("DATABASE_URL"), "{error}");
}

#[tokio::test]
async fn a_process_hosting_one_module_grants_it_read_access_to_outboxes_of_modules_hosted_elsewhere() {
    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let mut admin = database.admin_connection().await.unwrap();
    sqlx::query("REVOKE SELECT ON alpha.outbox FROM bulkhead_beta").execute(&mut admin).await.unwrap();

    // The split topology: this process hosts beta only; alpha runs elsewhere on the same database.
    let databases = Databases::connect(&database.setup(), &[BETA]).await.unwrap();
    databases.migrate(&[BETA]).await.unwrap();
    sqlx::query("SELECT count(*) FROM alpha.outbox").execute(databases.pool("beta").unwrap()).await.unwrap();
    databases.close().await;
}

#[tokio::test]
async fn an_admin_with_createrole_but_not_superuser_can_provision_modules() {
    static DELTA_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("tests/fixtures/alpha");
    const DELTA: ModuleSchema = ModuleSchema { name: "delta", migrations: &DELTA_MIGRATIONS };

    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let mut admin = database.admin_connection().await.unwrap();
    let operator = format!("operator_{}", &database.name[database.name.len() - 8..]);
    for sql in [
        format!("CREATE ROLE {operator} LOGIN CREATEROLE PASSWORD 'operator-secret'"),
        format!("GRANT CREATE ON DATABASE {} TO {operator}", database.name),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
    }
    // A fixed secret, so the role's derived password is the same on every run.
    let access = platform::db::AdminAccess {
        options: database.admin.options.clone().username(&operator).password("operator-secret"),
        role_secret: secrecy::SecretString::from("delta-operator"),
    };
    // No jobs role: it is cluster-wide, and this admin's secret would derive it another password.
    let setup = DatabaseSetup {
        admin: Some(access),
        module_urls: Default::default(),
        pool_size: 2,
        jobs: JobsDatabase::Disabled,
        peers: Vec::new(),
    };
    let databases = Databases::connect(&setup, &[DELTA]).await.unwrap();
    databases.migrate(&[DELTA]).await.unwrap();
    let delta = databases.pool("delta").unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(delta).await.unwrap();
    assert_eq!(user, "bulkhead_delta");
    sqlx::query("INSERT INTO widgets (id, name) VALUES (gen_random_uuid(), 'w')").execute(delta).await.unwrap();
    databases.close().await;
}
