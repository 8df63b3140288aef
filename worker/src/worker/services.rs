//! The worker's periodic services beside the consume loops: model announcements with the
//! worker's description, and the promotion of due scheduled jobs. Each runs until its token is
//! cancelled.

use std::sync::Arc;
use std::time::Duration;

use inferq_shared::model::ModelInfo;
use inferq_shared::queue::{ANNOUNCE_INTERVAL, Queue};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::stats::{Counters, Load};

/// How often scheduled jobs that are due move to their queues.
const PROMOTE_INTERVAL: Duration = Duration::from_millis(200);

/// Announces the models, and describes the worker (`GET /workers`), every
/// [`ANNOUNCE_INTERVAL`] until `stop`.
pub(super) fn spawn_announcer(
    queue: Queue,
    consumer: String,
    infos: Vec<ModelInfo>,
    counters: Arc<Counters>,
    load: impl Fn() -> Load + Send + 'static,
    health: Arc<Health>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let names: Vec<String> = infos.iter().map(|m| m.name.clone()).collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Err(e) = queue.announce_models(&consumer, &infos).await {
                tracing::warn!(error = %e, "announcing models failed");
            }
            let me = counters.describe(&consumer, &names, load());
            match queue.heartbeat_worker(&me).await {
                Ok(()) => health.redis_answered(),
                Err(e) => tracing::debug!(error = %e, "publishing the worker's description failed"),
            }
        }
    })
}

/// Moves due scheduled jobs to their queues every [`PROMOTE_INTERVAL`] until `stop`. Every
/// worker runs one; the move is one Lua step per batch of jobs, so each job moves once.
pub(super) fn spawn_promoter(queue: Queue, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROMOTE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            match queue.promote_due(1000).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(jobs = n, "scheduled jobs queued"),
                Err(e) => tracing::debug!(error = %e, "queueing due scheduled jobs failed"),
            }
        }
    })
}
