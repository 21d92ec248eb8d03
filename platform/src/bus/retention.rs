//! Retention as jobs (ADR 0007, ADR 0010): one recurring queue per hosted publishing module,
//! `bus.retention.<module>`. Every process hosting the module enqueues the module's sweep once
//! per period, under the key `bus.retention.<module>:<period start>`, so one sweep runs per
//! period, and always in a process that hosts the module: only those run the queue's worker.
//! A single `bus.retention` queue would not do in the split topology, where the processes
//! sharing the jobs schema host different modules and could each sweep only their own.

use std::sync::Arc;

use async_trait::async_trait;

use super::runtime::Bus;
use crate::jobs::queue::{ErasedHandler, static_name};
use crate::jobs::{JobContext, JobError, JobQueue};

struct Sweep {
    bus: Bus,
    module: &'static str,
}

#[async_trait]
impl ErasedHandler for Sweep {
    async fn run(&self, _: serde_json::Value, _: JobContext) -> Result<(), JobError> {
        let deleted = self.bus.sweep_retention_of(self.module).await?;
        tracing::info!(module = self.module, deleted, "retention sweep done");
        Ok(())
    }
}

impl Bus {
    /// The retention sweeps of the modules this bus publishes for, as recurring jobs: one
    /// queue per module, run every `BusConfig::retention_every`. The app adds them to its jobs
    /// runtime.
    pub fn retention_jobs(&self) -> Vec<JobQueue> {
        self.publishers()
            .map(|module| {
                let name = static_name(format!("bus.retention.{module}"));
                let sweep = Sweep { bus: self.clone(), module };
                JobQueue::erased(name, Arc::new(sweep))
                    .every(self.config().retention_every, || Ok(b"{}".to_vec()))
                    .concurrency(1)
            })
            .collect()
    }
}
