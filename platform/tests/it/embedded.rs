//! The embedded server: first start, reuse, recovery from a crash, clean stop.

use platform::db::{EmbeddedOptions, EmbeddedPostgres};
use platform::testing::{embedded_server_pid as server_pid, process_running as alive};
use sqlx::{Connection, PgConnection};

async fn connect(server: &EmbeddedPostgres) -> PgConnection {
    PgConnection::connect_with(&server.connect_options("postgres")).await.unwrap()
}

#[tokio::test]
async fn the_first_start_creates_a_cluster_that_later_starts_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions::new(dir.path());

    let server = EmbeddedPostgres::start(&options).await.unwrap();
    assert!(dir.path().join("postgres/PG_VERSION").exists());
    let mut connection = connect(&server).await;
    sqlx::query("CREATE TABLE survives_restarts (id int)").execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    let pid = server_pid(dir.path()).unwrap();
    server.stop().await.unwrap();
    assert!(!alive(pid), "the server process is gone after a clean stop");
    assert!(server_pid(dir.path()).is_none(), "a clean stop removes postmaster.pid");

    let server = EmbeddedPostgres::start(&options).await.unwrap();
    let mut connection = connect(&server).await;
    let found: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('survives_restarts')::text").fetch_one(&mut connection).await.unwrap();
    assert_eq!(found.as_deref(), Some("survives_restarts"));
    connection.close().await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_stale_pid_file_left_by_a_crash_does_not_stop_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions::new(dir.path());
    EmbeddedPostgres::start(&options).await.unwrap().stop().await.unwrap();

    // What a power cut leaves: a pid file naming a process that is not PostgreSQL (our own).
    let stale = format!(
        "{}\n{}\n0\n5432\n\n127.0.0.1\n0 0\nready\n",
        std::process::id(),
        dir.path().join("postgres").display()
    );
    std::fs::write(dir.path().join("postgres/postmaster.pid"), stale).unwrap();

    let server = EmbeddedPostgres::start(&options).await.unwrap();
    let mut connection = connect(&server).await;
    sqlx::query("SELECT 1").execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_left_running_by_a_killed_process_is_stopped_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions::new(dir.path());
    // A detached start leaves the server running with nobody owning it: an orphan.
    EmbeddedPostgres::ensure_running_detached(&options).await.unwrap();
    let orphan = server_pid(dir.path()).unwrap();
    assert!(alive(orphan));

    let server = EmbeddedPostgres::start(&options).await.unwrap();
    let replacement = server_pid(dir.path()).unwrap();
    assert_ne!(orphan, replacement);
    assert!(!alive(orphan), "the orphan was stopped");
    let mut connection = connect(&server).await;
    sqlx::query("SELECT 1").execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    server.stop().await.unwrap();
    assert!(!alive(replacement));
}

#[tokio::test]
async fn a_data_dir_in_use_by_a_live_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions::new(dir.path());
    let server = EmbeddedPostgres::start(&options).await.unwrap();

    let error = EmbeddedPostgres::start(&options).await.unwrap_err().to_string();
    assert!(error.contains("another Bulkhead process is using the data dir"), "{error}");
    assert!(error.contains("BULKHEAD_DATA_DIR"), "{error}");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_bin_dir_gives_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EmbeddedOptions::new(dir.path());
    options.bin_dir = Some(dir.path().join("no-such-dir"));
    let error = format!("{:#}", EmbeddedPostgres::start(&options).await.unwrap_err());
    assert!(error.contains("PostgreSQL server binaries"), "{error}");
    assert!(error.contains("DATABASE_URL"), "{error}");
}
