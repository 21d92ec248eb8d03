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

/// Every binary that runs the app (the `bulkhead` binary, the benchmarks, the scenario tests'
/// processes) allocates with mimalloc, which gives freed memory back to the system: glibc's
/// allocator kept what password hashing (19 MiB per hash, on the blocking threads) had used,
/// about 1.3 GB after 200 sign-ups (`bench saga`, docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use server::Application;
