//! The payments module alone, against real PostgreSQL: the orders saga's requests appended by
//! the tests to a stand-in orders outbox, the real bus and jobs, the sandbox gateway with short
//! delays, served over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod access;
mod lifecycle;
mod recovery;
mod refunds;
mod resilience;
mod support;
mod webhooks;
