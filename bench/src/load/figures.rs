//! What every way of loading the API shares: its configuration, the figures it collects, and
//! the deterministic inputs it sends.

use std::time::Duration;

/// How long one status request waits server-side for the job to finish.
pub(super) const WAIT_SECS: u64 = 30;

/// Distinct request bodies, reused round-robin; enough that batches mix different inputs.
pub(super) const BODIES: usize = 256;

#[derive(Debug, Clone)]
pub(crate) struct LoadConfig {
    pub api_url: String,
    pub model: String,
    pub input: String,
    pub width: usize,
    pub jobs: usize,
    pub concurrency: usize,
    pub submit_only: bool,
    /// Submit with `?wait=`, so a job that finishes in time needs no status request.
    pub submit_wait: bool,
    /// One synchronous OIP binary inference per job instead of the job API.
    pub oip_binary: bool,
    /// Submit-only through `POST /jobs/batch`, this many jobs per request.
    pub bulk: Option<usize>,
    /// A job accepted but not terminal this long after its submission counts as lost.
    pub job_timeout: Duration,
    /// Send a distinct `Idempotency-Key` with every submission.
    pub idempotency: bool,
    /// Merged into every job's body (`parameters`, `webhook`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What the clients saw, merged.
#[derive(Debug, Default)]
pub(crate) struct LoadResult {
    /// `202 Accepted` answers.
    pub accepted: usize,
    /// Accepted jobs whose record reached `succeeded`.
    pub succeeded: usize,
    /// Accepted jobs that ended `failed` or `cancelled`.
    pub failed: usize,
    /// Submissions answered with anything but 202, and transport errors.
    pub rejected: usize,
    /// Status requests that failed (retried until the job timeout).
    pub status_errors: usize,
    /// Accepted jobs never seen terminal within the job timeout.
    pub lost: usize,
    /// Submit start to terminal record, per succeeded job.
    pub latencies: Vec<Duration>,
    /// From the first submission to the last 202.
    pub submit_wall: Duration,
    /// From the first submission to the last terminal record (or last 202 in submit-only mode).
    pub wall: Duration,
    /// A few distinct error messages, for the report.
    pub errors: Vec<String>,
}

impl LoadResult {
    /// Adds what another client saw.
    pub(super) fn merge(&mut self, other: Self) {
        self.accepted += other.accepted;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.rejected += other.rejected;
        self.status_errors += other.status_errors;
        self.lost += other.lost;
        self.latencies.extend(other.latencies);
        self.submit_wall = self.submit_wall.max(other.submit_wall);
        self.wall = self.wall.max(other.wall);
        for e in other.errors {
            self.note(e);
        }
    }

    /// Keeps the first few distinct errors.
    pub(super) fn note(&mut self, error: String) {
        if self.errors.len() < 5 && !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// The `q` quantile (0..=1) of the latencies, nearest rank.
    pub(crate) fn percentile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied()
    }
}

/// `n` deterministic pseudo-random values in [-1, 1) with four decimals (short JSON), from a
/// 64-bit LCG seeded by `seed`.
pub(crate) fn input_data(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let load = LoadResult {
            latencies: (1..=100).rev().map(Duration::from_millis).collect(),
            ..LoadResult::default()
        };
        assert_eq!(load.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(load.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(load.percentile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(LoadResult::default().percentile(0.5), None);
    }

    #[test]
    fn input_data_is_deterministic_and_bounded() {
        let a = input_data(7, 1000);
        assert_eq!(a, input_data(7, 1000));
        assert_ne!(a, input_data(8, 1000));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
