//! Cross-module scenarios against the real application over HTTP, and the architecture test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod architecture;
mod notifications;
mod observability;
mod operations;
mod orders;
mod payments;
mod shop;
mod traces;
mod users;
