//! Driving work at a fixed concurrency, and summarising latencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// Runs `total` jobs on `concurrency` workers, each starting its next job as soon as its
/// previous one is done; `job(worker)` is told which worker (`0..concurrency`) runs it. Returns
/// every job's output (in no particular order) and the time from the first start to the last
/// finish.
///
/// # Errors
/// The first job that failed.
pub(crate) async fn at_concurrency<T, F, Fut>(
    total: u64,
    concurrency: u64,
    job: F,
) -> anyhow::Result<(Vec<T>, Duration)>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for worker in 0..concurrency.min(total) {
        let (job, next) = (job.clone(), next.clone());
        workers.spawn(async move {
            let mut outputs = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                outputs.push(job(worker).await?);
            }
            anyhow::Ok(outputs)
        });
    }
    let mut outputs = Vec::new();
    while let Some(worker) = workers.join_next().await {
        outputs.extend(worker??);
    }
    Ok((outputs, started.elapsed()))
}

/// The median and 99th percentile of some latencies, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

impl Percentiles {
    /// Nearest rank on the sorted samples, as the bus benchmark picks them.
    ///
    /// # Errors
    /// No samples.
    pub(crate) fn of(samples: &[Duration]) -> anyhow::Result<Self> {
        anyhow::ensure!(!samples.is_empty(), "no samples");
        let mut millis: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        millis.sort_by(f64::total_cmp);
        let pick = |q: f64| round2(millis[((millis.len() - 1) as f64 * q).round() as usize]);
        Ok(Self { p50: pick(0.50), p99: pick(0.99) })
    }
}

/// `count` per second of `elapsed`, to two decimals.
pub(crate) fn per_second(count: usize, elapsed: Duration) -> f64 {
    round2(count as f64 / elapsed.as_secs_f64())
}

pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
