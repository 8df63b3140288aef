//! Beginning attempts: the start step, then each job to where it runs: a batch task on the
//! inference pool, or, for a job with inputs by URL, a task that fetches them first.

use inferq_shared::queue::QueueError;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::task::BatchTask;
use super::{Batch, Consumer};
use crate::inputs;
use crate::lease;
use crate::pool::Permit;
use crate::stats;

impl Consumer {
    /// Begins the attempts and hands the batch to a task that runs it and records the
    /// outcomes. On a Redis error the batch comes back unstarted (retrying is safe: starting a
    /// delivery twice adds no attempt).
    pub(super) async fn begin(
        &self,
        (model, deliveries): Batch,
        permit: Permit,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), (QueueError, Batch)> {
        let name = &self.names[model];
        let tokens = match self
            .queue
            .start(
                name,
                &self.consumer,
                &deliveries,
                self.config.max_attempts,
                self.retention,
            )
            .await
        {
            Ok(t) => t,
            Err(e) => return Err((e, (model, deliveries))),
        };
        let mut run = Vec::with_capacity(deliveries.len());
        let mut fetch = Vec::new();
        for (d, token) in deliveries.into_iter().zip(tokens) {
            self.leases.started(model, &d.entry, d.job, token);
            if token == lease::UNSTARTED {
                continue;
            }
            if inputs::has_urls(&d.payload) {
                fetch.push((d, token));
            } else {
                run.push((d, token));
            }
        }
        stats::started(name, &run);
        stats::started(name, &fetch);
        // Jobs with inputs to fetch join no batch: each fetches on its own task, then waits
        // for a free thread, so a slow server holds up neither a thread nor other jobs.
        for (d, token) in fetch {
            let task = self.batch_task(model);
            let (egress, span) = (
                self.egress.clone(),
                tracing::debug_span!("fetch", job_id = %d.job),
            );
            let slots = self.fetch_slots.clone();
            tasks.spawn(
                task.fetch_then_run(egress, slots, d, token)
                    .instrument(span),
            );
        }
        if run.is_empty() {
            return Ok(());
        }
        let task = self.batch_task(model);
        let span = tracing::debug_span!("batch", model = %name, jobs = run.len());
        tasks.spawn(task.run(run, permit).instrument(span));
        Ok(())
    }

    fn batch_task(&self, model: usize) -> BatchTask {
        BatchTask {
            queue: self.queue.clone(),
            pool: self.pool.clone(),
            leases: self.leases.clone(),
            retention: self.retention,
            model,
            counters: self.counters.clone(),
        }
    }
}
