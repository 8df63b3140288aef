//! Group commit for single-job submissions (`POST /jobs` of a model job, OIP inference): the
//! jobs that arrive while a submit call is on its way to Redis go together in the next call,
//! one `submit.lua` run for all of them, so concurrent clients share the round trip and the
//! script's fixed cost (about half of Redis's CPU per submitted job when each job had its own
//! call; docs/benchmarks.md). Nothing waits to fill a batch: a submission that finds no call in
//! flight goes at once.
//!
//! Each job keeps its own outcome: `submit.lua` treats the jobs of one call one after another
//! exactly as separate calls would (idempotency keys, tenant quotas and the queue-length limit
//! see the jobs before them), and a failure of the call (Redis unreachable) is every job's
//! failure, as it would have been for each alone.

use std::time::Duration;

use inferq_shared::queue::{NewJob, Queue, QueueError, Submitted};
use tokio::sync::{mpsc, oneshot};

use super::CheckedJob;

/// Most jobs in one submit call (as for `POST /jobs/batch`).
const MAX_JOBS_PER_CALL: usize = 256;

/// Hands jobs to the task that submits them.
#[derive(Debug, Clone)]
pub(crate) struct Submitter {
    tx: mpsc::UnboundedSender<Pending>,
}

#[derive(Debug)]
struct Pending {
    job: CheckedJob,
    reply: oneshot::Sender<Result<Submitted, QueueError>>,
}

impl Submitter {
    /// Starts the submitting task; it ends when the last `Submitter` is dropped.
    pub(crate) fn start(queue: Queue, max_queued: u64, idempotency_ttl: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, max_queued, idempotency_ttl, rx));
        Self { tx }
    }

    /// Enqueues `job` (in the next submit call) and returns its outcome.
    pub(crate) async fn submit(&self, job: CheckedJob) -> Result<Submitted, QueueError> {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { job, reply };
        self.tx
            .send(pending)
            .map_err(|_| QueueError::Protocol("the submitting task has stopped"))?;
        outcome
            .await
            .map_err(|_| QueueError::Protocol("the submitting task dropped a job"))?
    }
}

async fn run(
    queue: Queue,
    max_queued: u64,
    idempotency_ttl: Duration,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::with_capacity(MAX_JOBS_PER_CALL);
    while rx.recv_many(&mut batch, MAX_JOBS_PER_CALL).await > 0 {
        let jobs: Vec<NewJob<'_>> = batch.iter().map(|p| p.job.as_new()).collect();
        let result = queue.submit_many(&jobs, max_queued, idempotency_ttl).await;
        drop(jobs);
        match result {
            Ok(outcomes) if outcomes.len() == batch.len() => {
                for (p, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = p.reply.send(Ok(outcome));
                }
            }
            Ok(_) => {
                for p in batch.drain(..) {
                    let _ = p
                        .reply
                        .send(Err(QueueError::Protocol("submit answered for other jobs")));
                }
            }
            Err(e) => {
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
