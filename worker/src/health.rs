//! What an orchestrator probes on the worker's metrics listener (`INFERQ_METRICS_BIND`):
//! `GET /livez` (the process answers: its async runtime runs) and `GET /readyz` (serving: the
//! models are loaded, Redis answered within [`REDIS_FRESH`], and the worker is not draining).
//! The listener opens only once the models are loaded and the inference threads run, so a
//! startup probe covers loading; it stays open through the drain after SIGTERM.
//!
//! Liveness never depends on Redis: an outage of Redis must not restart every worker.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use axum::Json;
use axum::http::StatusCode;
use inferq_shared::time::now_ms;
use serde_json::{Value, json};

/// How recent the last answer from Redis must be for the worker to count as ready (the
/// announcer talks to Redis every two seconds).
pub(crate) const REDIS_FRESH_MS: u64 = 10_000;

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const DRAINING: u8 = 2;

/// The worker's state as the probes see it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    phase: AtomicU8,
    /// When Redis last answered the worker's heartbeat, ms since the epoch (0: never).
    redis_ok_at: AtomicU64,
}

impl Health {
    /// Every service runs: the worker takes work.
    pub(crate) fn serving(&self) {
        self.phase.store(SERVING, Ordering::Relaxed);
    }

    /// Shutting down: it takes no more work.
    pub(crate) fn draining(&self) {
        self.phase.store(DRAINING, Ordering::Relaxed);
    }

    /// Redis answered just now.
    pub(crate) fn redis_answered(&self) {
        self.redis_ok_at.store(now_ms(), Ordering::Relaxed);
    }

    /// `GET /livez`.
    pub(crate) fn live(&self) -> (StatusCode, Json<Value>) {
        (StatusCode::OK, Json(json!({"status": "alive"})))
    }

    /// `GET /readyz`: 200 `ready`, or 503 with `starting`, `redis_unavailable` or `draining`.
    pub(crate) fn ready(&self) -> (StatusCode, Json<Value>) {
        let fresh =
            now_ms().saturating_sub(self.redis_ok_at.load(Ordering::Relaxed)) < REDIS_FRESH_MS;
        let status = match self.phase.load(Ordering::Relaxed) {
            DRAINING => "draining",
            STARTING => "starting",
            _ if !fresh => "redis_unavailable",
            _ => "ready",
        };
        let code = if status == "ready" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, Json(json!({"status": status})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_phase_and_redis() {
        let h = Health::default();
        assert_eq!(h.ready().1.0["status"], "starting");
        h.serving();
        assert_eq!(h.ready().0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h.ready().1.0["status"], "redis_unavailable");
        h.redis_answered();
        assert_eq!(h.ready().0, StatusCode::OK);
        h.draining();
        assert_eq!(h.ready().1.0["status"], "draining");
        assert_eq!(h.live().0, StatusCode::OK);
    }
}
