//! Cross-module scenarios against the real application over HTTP, and the architecture test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod architecture;
mod jwt_attacks;
mod notifications;
mod operations;
mod orders;
mod payments;
mod revocation;
mod role_matrix;
mod security;
mod shop;
mod users;
