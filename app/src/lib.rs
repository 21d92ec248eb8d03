//! The Bulkhead binary as a library, so tests can run the real application in process.

pub mod cli;
pub mod config;
mod database;
pub mod edge;
mod health;
pub mod map;
pub mod modules;
mod ports;
pub mod process;
mod server;

pub use config::{Cli, Command, Config};
pub use server::Application;
