//! The orders module alone, against real PostgreSQL: inventory faked at its port, inventory's
//! and payments' events appended by the tests to stand-in outboxes, the real bus and jobs.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod access;
mod placing;
mod saga;
mod support;
