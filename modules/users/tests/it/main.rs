//! The users module alone, against real PostgreSQL, driven over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod accounts;
mod admin;
mod keys;
mod links;
mod port;
mod sessions;
mod support;
