//! Settling attempts: recording outcomes (fenced by each attempt's token), handing retryable
//! ones back to the queue, and letting their leases go. The only way an attempt's lease ends.

use std::sync::Arc;

use inferq_shared::queue::{Completion, Outcome, Queue, Retention};

use super::Backoff;
use super::lease::{Lease, Leases};
use crate::stats::Counters;

/// What settling needs; cheap to clone into every job's task.
#[derive(Debug, Clone)]
pub(crate) struct Settle {
    pub(super) queue: Queue,
    /// The consume loop's queue names, by index.
    pub(super) names: Arc<[String]>,
    pub(super) leases: Arc<Leases>,
    pub(super) retention: Retention,
    /// This worker's job counts (`GET /workers`, metrics), shared by every kind of job.
    pub(super) counters: Arc<Counters>,
}

impl Settle {
    /// The name of queue `queue` (a model, or a pipeline's queue).
    pub(crate) fn name(&self, queue: usize) -> &str {
        &self.names[queue]
    }

    /// Records outcomes; a retryable failure goes back to the queue instead. Every lease is
    /// let go afterwards.
    pub(crate) async fn complete(&self, queue: usize, ended: Vec<(Lease, Outcome)>) {
        let name = self.name(queue);
        let mut completions = Vec::with_capacity(ended.len());
        let mut retry = Vec::new();
        let mut leases = Vec::with_capacity(ended.len());
        for (lease, outcome) in ended {
            match outcome {
                Outcome::Failed(e) if e.code.retryable() => {
                    retry.push((lease.job, lease.entry.clone(), lease.fence.attempt()));
                }
                outcome => completions.push(Completion {
                    job: lease.job,
                    entry: lease.entry.clone(),
                    token: lease.fence.attempt(),
                    outcome,
                }),
            }
            leases.push(lease);
        }
        if !completions.is_empty() {
            record(
                &self.queue,
                name,
                &completions,
                self.retention,
                &self.counters,
            )
            .await;
        }
        if !retry.is_empty()
            && let Err(e) = self.queue.release(name, &retry).await
        {
            tracing::warn!(error = %e, "handing jobs back failed; they will be reclaimed after the lease");
        }
        for lease in &leases {
            self.leases.finished(queue, lease);
        }
    }

    /// Hands attempts back to the queue unfinished (another attempt redoes them), and lets
    /// their leases go.
    pub(crate) async fn hand_back(&self, queue: usize, leases: Vec<Lease>) {
        let entries: Vec<_> = leases
            .iter()
            .map(|l| (l.job, l.entry.clone(), l.fence.attempt()))
            .collect();
        if let Err(e) = self.queue.release(self.name(queue), &entries).await {
            tracing::warn!(error = %e, "handing jobs back failed; they will be reclaimed after the lease");
        }
        for lease in &leases {
            self.leases.finished(queue, lease);
        }
    }
}

/// Records outcomes, retrying transient Redis failures: the result is only in this process's
/// memory until it is recorded. If the worker dies (or gives up at shutdown) meanwhile, the
/// lease expires and the job runs again elsewhere.
async fn record(
    queue: &Queue,
    model: &str,
    completions: &[Completion],
    retention: Retention,
    counters: &Counters,
) {
    let mut backoff = Backoff::new();
    loop {
        match queue.complete(model, completions, retention).await {
            Ok(recorded) => {
                let (mut succeeded, mut failed) = (0, 0);
                for (c, done) in completions.iter().zip(recorded) {
                    if done {
                        match c.outcome {
                            Outcome::Succeeded(_) => succeeded += 1,
                            Outcome::Failed(_) => failed += 1,
                        }
                    } else {
                        tracing::info!(
                            job_id = %c.job,
                            model,
                            attempt = c.token,
                            "outcome discarded: the job was cancelled or taken over by another worker"
                        );
                    }
                }
                counters.finished(model, succeeded, failed);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, model, jobs = completions.len(), "recording outcomes failed; retrying");
                backoff.pause().await;
            }
        }
    }
}
