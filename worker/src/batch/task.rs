//! A batch's task: runs it on the inference threads (alone with every thread when it holds a
//! retried job), then settles the outcomes. A panic is logged with its message and fails the
//! batch's jobs.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use inferq_shared::job::{ErrorCode, JobError};
use inferq_shared::queue::{Delivery, Outcome};
use inferq_shared::telemetry;
use tokio::sync::Semaphore;
use tracing::Span;

use super::inputs;
use super::threads::{Permit, Threads};
use crate::consume::{Attempt, Lease, Settle};
use crate::egress::Egress;
use crate::infer::Ran;
use crate::infer::pool::panic_message;
use crate::stats;

/// A started attempt and its span.
type Job = (Attempt, Span);

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

/// Whether retried jobs run one by one in the reverse of the order they were read: on every
/// other attempt (the third, the fifth, …). Jobs read together stay in one order between reads
/// (by entry), so a job that was to run after the one that killed the last worker, and died
/// with it, runs before it next time: a poison job cannot use up its batch-mates' attempts.
fn quarantine_reversed(attempts: impl Iterator<Item = u64>) -> bool {
    attempts.max().unwrap_or(0) % 2 == 1
}

fn outcome(ran: Ran) -> Outcome {
    match ran {
        Ok(result) => Outcome::Succeeded(result),
        Err(e) => Outcome::Failed(e),
    }
}

/// What a batch's task needs.
#[derive(Debug)]
pub(super) struct BatchTask {
    pub(super) threads: Threads,
    pub(super) settle: Settle,
    pub(super) model: usize,
}

impl BatchTask {
    /// Runs the batch and settles its outcomes. A retried job (attempt > 1) may be what killed
    /// this worker's predecessor, so it runs alone with every thread reserved. A panic is
    /// logged with its message and fails the batch's jobs with `internal`.
    pub(super) async fn run(self, run: Vec<Attempt>, permit: Permit) {
        let leases: Vec<Lease> = run.iter().map(Attempt::lease).collect();
        let result = AssertUnwindSafe(self.execute(run, permit))
            .catch_unwind()
            .await;
        if let Err(panic) = result {
            let name = self.threads.model_name(self.model);
            tracing::error!(
                model = %name,
                job_ids = ?leases.iter().map(|l| l.job.to_string()).collect::<Vec<_>>(),
                panic = %panic_message(panic.as_ref()),
                "a batch task panicked; failing its jobs"
            );
            let failed = leases
                .into_iter()
                .map(|lease| {
                    let error = JobError::new(
                        ErrorCode::Internal,
                        "the worker hit an internal error running this job",
                    );
                    (lease, Outcome::Failed(error))
                })
                .collect();
            self.settle.complete(self.model, failed).await;
        }
    }

    /// Fetches a job's inputs by URL, then runs it alone as soon as a thread is free; a fetch
    /// that fails ends the job with its code (`url_not_allowed`, `input_fetch_failed`,
    /// `data_length_mismatch`, …).
    pub(super) async fn fetch_then_run(
        self,
        egress: Egress,
        slots: Arc<Semaphore>,
        mut attempt: Attempt,
    ) {
        let slot = slots.acquire_owned().await;
        let allowed = egress.with_allow(attempt.delivery.fetch_allow.clone());
        let fetched = inputs::resolve(&allowed, &attempt.delivery.payload).await;
        drop(slot);
        match fetched {
            Ok(payload) => {
                attempt.delivery.payload = payload;
                let permit = self.threads.acquire().await;
                self.run(vec![attempt], permit).await;
            }
            Err(e) => {
                let ended = vec![(attempt.lease(), Outcome::Failed(e))];
                self.settle.complete(self.model, ended).await;
            }
        }
    }

    async fn execute(&self, run: Vec<Attempt>, permit: Permit) {
        let name = self.threads.model_name(self.model).to_owned();
        let mut permit = Some(permit);
        let quarantine = run.iter().any(|a| a.fence.attempt() > 1);
        let run: Vec<Job> = run
            .into_iter()
            .map(|a| {
                let span = job_span(&a.delivery, &name, a.fence.attempt());
                (a, span)
            })
            .collect();
        let groups: Vec<Vec<Job>> = if quarantine {
            if let Some(p) = permit.take() {
                permit = Some(self.threads.quarantine(p).await);
            }
            tracing::info!(model = %name, jobs = run.len(), "running retried jobs one at a time");
            let mut one_by_one: Vec<Vec<Job>> = run.into_iter().map(|r| vec![r]).collect();
            if quarantine_reversed(one_by_one.iter().map(|g| g[0].0.fence.attempt())) {
                one_by_one.reverse();
            }
            one_by_one
        } else {
            vec![run]
        };
        let last = groups.len() - 1;
        for (i, mut group) in groups.into_iter().enumerate() {
            let payloads: Vec<Vec<u8>> = group
                .iter_mut()
                .map(|(a, _)| std::mem::take(&mut a.delivery.payload))
                .collect();
            // One per job, under its job span, so each job's trace shows the run it was in.
            let inference: Vec<Span> = group
                .iter()
                .map(|(_, job)| tracing::debug_span!(parent: job, "inference", jobs = payloads.len()))
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
            self.settle(group, outcomes).await;
        }
    }

    /// Logs each job's end under its span and settles the outcomes; the job spans close once
    /// the outcomes are recorded, so a job span covers the whole attempt.
    async fn settle(&self, group: Vec<Job>, outcomes: Vec<Ran>) {
        let mut ended = Vec::with_capacity(group.len());
        let mut spans = Vec::with_capacity(group.len());
        for ((attempt, span), ran) in group.into_iter().zip(outcomes) {
            span.in_scope(|| match &ran {
                Ok(_) => tracing::debug!("job succeeded"),
                Err(e) => tracing::debug!(code = %e.code, message = %e.message, "job failed"),
            });
            spans.push(span);
            ended.push((attempt.lease(), outcome(ran)));
        }
        self.settle.complete(self.model, ended).await;
        drop(spans);
    }
}
