//! A batch's task: runs it on the inference pool (alone with every thread when it holds a
//! retried job), then records the outcomes, or hands retryable failures back to the queue. A
//! panic is logged with its message and fails the batch's jobs.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use inferq_shared::job::{ErrorCode, JobError, JobId};
use inferq_shared::queue::{Completion, Delivery, EntryRef, Outcome, Queue, Retention};
use inferq_shared::telemetry;
use tokio::sync::watch;
use tracing::Span;

use tokio::sync::Semaphore;

use super::Backoff;
use crate::egress::Egress;
use crate::inputs;
use crate::lease::Leases;
use crate::pool::{Permit, Pool, panic_message};
use crate::stats::{self, Counters};

/// A started delivery: the job, its attempt's fencing token and its span.
type Job = (Delivery, u64, Span);

/// The span of one job's attempt, joined to the trace it was submitted in. Debug level: at the
/// default level nothing is logged per job, and an enabled span per job would cost more than a
/// small model's inference. A root span: a job belongs to its own trace, not to its batch.
fn job_span(d: &Delivery, model: &str, attempt: u64) -> Span {
    let span = tracing::debug_span!(
        parent: None,
        "job",
        job_id = %d.job,
        model = %model,
        attempt,
        trace_id = tracing::field::Empty,
    );
    telemetry::join(&span, d.trace.as_ref());
    span
}

/// What a batch's task needs.
#[derive(Debug)]
pub(super) struct BatchTask {
    pub(super) queue: Queue,
    pub(super) pool: Pool,
    pub(super) leases: Arc<Leases>,
    pub(super) retention: Retention,
    pub(super) model: usize,
    pub(super) counters: Arc<Counters>,
}

impl BatchTask {
    /// Runs the batch and records its outcomes. A retried job (token > 1) may be what killed
    /// this worker's predecessor, so it runs alone with every thread reserved. A panic is
    /// logged with its message and fails the batch's jobs with `internal`.
    pub(super) async fn run(self, run: Vec<(Delivery, u64)>, permit: Permit) {
        let jobs: Vec<(JobId, EntryRef, u64)> = run
            .iter()
            .map(|(d, t)| (d.job, d.entry.clone(), *t))
            .collect();
        let result = AssertUnwindSafe(self.execute(run, permit))
            .catch_unwind()
            .await;
        if let Err(panic) = result {
            let name = self.pool.model_name(self.model);
            tracing::error!(
                model = %name,
                job_ids = ?jobs.iter().map(|(j, _, _)| j.to_string()).collect::<Vec<_>>(),
                panic = %panic_message(panic.as_ref()),
                "a batch task panicked; failing its jobs"
            );
            let completions: Vec<Completion> = jobs
                .iter()
                .map(|(job, entry, token)| Completion {
                    job: *job,
                    entry: entry.clone(),
                    token: *token,
                    outcome: Outcome::Failed(JobError::new(
                        ErrorCode::Internal,
                        "the worker hit an internal error running this job",
                    )),
                })
                .collect();
            record(
                &self.queue,
                name,
                &completions,
                self.retention,
                &self.counters,
            )
            .await;
            for (_, entry, token) in &jobs {
                self.leases.finished(self.model, entry, *token);
            }
        }
    }

    /// Fetches a job's inputs by URL, then runs it alone as soon as a thread is free; a fetch
    /// that fails ends the job with its code (`url_not_allowed`, `input_fetch_failed`,
    /// `data_length_mismatch`, …).
    pub(super) async fn fetch_then_run(
        self,
        egress: Egress,
        slots: Arc<Semaphore>,
        mut d: Delivery,
        token: u64,
    ) {
        let slot = slots.acquire_owned().await;
        let fetched = inputs::resolve(&egress.with_allow(d.fetch_allow.clone()), &d.payload).await;
        drop(slot);
        match fetched {
            Ok(payload) => {
                d.payload = payload;
                let permit = self.pool.acquire().await;
                self.run(vec![(d, token)], permit).await;
            }
            Err(e) => {
                let name = self.pool.model_name(self.model);
                let completion = Completion {
                    job: d.job,
                    entry: d.entry,
                    token,
                    outcome: Outcome::Failed(e),
                };
                record(
                    &self.queue,
                    name,
                    std::slice::from_ref(&completion),
                    self.retention,
                    &self.counters,
                )
                .await;
                self.leases
                    .finished(self.model, &completion.entry, completion.token);
            }
        }
    }

    async fn execute(&self, run: Vec<(Delivery, u64)>, permit: Permit) {
        let name = self.pool.model_name(self.model).to_owned();
        let mut permit = Some(permit);
        let quarantine = run.iter().any(|(_, token)| *token > 1);
        let run: Vec<Job> = run
            .into_iter()
            .map(|(d, token)| {
                let span = job_span(&d, &name, token);
                (d, token, span)
            })
            .collect();
        let groups: Vec<Vec<Job>> = if quarantine {
            if let Some(p) = permit.take() {
                permit = Some(self.pool.quarantine(p).await);
            }
            tracing::info!(model = %name, jobs = run.len(), "running retried jobs one at a time");
            run.into_iter().map(|r| vec![r]).collect()
        } else {
            vec![run]
        };
        let last = groups.len() - 1;
        for (i, mut group) in groups.into_iter().enumerate() {
            let payloads: Vec<Vec<u8>> = group
                .iter_mut()
                .map(|(d, _, _)| std::mem::take(&mut d.payload))
                .collect();
            // One per job, under its job span, so each job's trace shows the run it was in.
            let inference: Vec<Span> = group
                .iter()
                .map(|(_, _, job)| {
                    tracing::debug_span!(parent: job, "inference", jobs = payloads.len())
                })
                .collect();
            #[cfg(feature = "test-hooks")]
            crate::hooks::on_task(&payloads);
            let began = std::time::Instant::now();
            let jobs = payloads.len();
            let outcomes = match permit.as_mut() {
                Some(p) => p.run(self.model, payloads).await,
                None => unreachable!("the permit is released after the last group"),
            };
            drop(inference);
            stats::ran(&name, jobs, began.elapsed());
            if i == last {
                // The threads are free again before the outcomes are recorded.
                permit.take();
            }
            self.settle(&name, group, outcomes).await;
        }
    }

    /// Records outcomes; a retryable failure goes back to the queue instead.
    async fn settle(&self, name: &str, group: Vec<Job>, outcomes: Vec<Outcome>) {
        let mut completions = Vec::with_capacity(group.len());
        let mut retry = Vec::new();
        // Closed once the outcomes are recorded: a job span covers the whole attempt.
        let mut spans = Vec::with_capacity(group.len());
        for ((d, token, span), outcome) in group.into_iter().zip(outcomes) {
            span.in_scope(|| match &outcome {
                Outcome::Succeeded(_) => tracing::debug!("job succeeded"),
                Outcome::Failed(e) => {
                    tracing::debug!(code = %e.code, message = %e.message, "job failed")
                }
            });
            spans.push(span);
            match outcome {
                Outcome::Failed(e) if e.code.retryable() => retry.push((d.job, d.entry, token)),
                outcome => completions.push(Completion {
                    job: d.job,
                    entry: d.entry,
                    token,
                    outcome,
                }),
            }
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
        for c in &completions {
            self.leases.finished(self.model, &c.entry, c.token);
        }
        for (_, entry, token) in &retry {
            self.leases.finished(self.model, entry, *token);
        }
        drop(spans);
    }
}

/// Records outcomes, retrying transient Redis failures: the result is only in this process's
/// memory until it is recorded. If the worker dies (or gives up at shutdown) meanwhile, the
/// lease expires and the job runs again elsewhere.
pub(crate) async fn record(
    queue: &Queue,
    model: &str,
    completions: &[Completion],
    retention: Retention,
    counters: &Counters,
) {
    let mut backoff = Backoff::new();
    let (_never_tx, mut never) = watch::channel(false);
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
                backoff.wait(&mut never).await;
            }
        }
    }
}
