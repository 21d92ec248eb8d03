//! The inventory module alone, against real PostgreSQL: orders' events appended by the tests
//! to a stand-in outbox, the real bus and jobs, the API over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod catalog;
mod port;
mod reservations;
mod stock;
mod support;
