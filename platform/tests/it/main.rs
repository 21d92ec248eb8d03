//! The platform's integration tests: one binary, real PostgreSQL, real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod auth;
mod bus;
mod database;
mod embedded;
mod http_errors;
mod idempotency;
mod jobs;
mod remote;
mod support;
