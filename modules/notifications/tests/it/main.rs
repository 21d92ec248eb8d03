//! The notifications module alone, against real PostgreSQL: users faked at its port, the
//! other modules' events appended by the tests to stand-in outboxes, the real bus and jobs,
//! a real SMTP server and real webhook receivers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod api;
mod email;
mod events;
mod smtp;
mod ssrf;
mod support;
mod webhooks;
