//! Model jobs: one ONNX call on tensors, batched across jobs on the inference threads. This is
//! the model jobs' [`Kind`] for the consume loop: a start needs a free inference thread, reads
//! up to the model's batch size per free thread, and runs a batch on a task ([`task`]); a job
//! with inputs by URL ([`inputs`]) fetches them on a task of its own first.

mod inputs;
mod task;
mod threads;

use std::sync::Arc;
use std::time::Duration;

use inferq_shared::queue::Delivery;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

pub(crate) use threads::{Permit, Threads};

use crate::consume::{Attempt, Kind, Settle};
use crate::egress::Egress;
use crate::infer::batcher;
use crate::infer::models::ModelSpec;
use crate::stats;
use task::BatchTask;

/// Jobs per inference thread that may fetch their inputs by URL at once.
const FETCHES_PER_THREAD: usize = 4;

/// The model jobs of a worker.
#[derive(Debug)]
pub(crate) struct ModelJobs {
    models: Vec<ModelSpec>,
    threads: Threads,
    /// Outbound HTTP through the address guard, for inputs by URL.
    egress: Egress,
    /// Jobs fetching their inputs by URL at once: [`FETCHES_PER_THREAD`] per inference thread.
    /// While every slot is taken the worker reads no more jobs, so URL jobs cannot pile up in
    /// one worker while others idle.
    fetch_slots: Arc<Semaphore>,
}

impl ModelJobs {
    pub(crate) fn new(models: Vec<ModelSpec>, threads: Threads, egress: Egress) -> Self {
        let fetch_slots = Arc::new(Semaphore::new(threads.threads() * FETCHES_PER_THREAD));
        Self {
            models,
            threads,
            egress,
            fetch_slots,
        }
    }

    fn batch_task(&self, model: usize, settle: &Settle) -> BatchTask {
        BatchTask {
            threads: self.threads.clone(),
            settle: settle.clone(),
            model,
        }
    }
}

impl Kind for ModelJobs {
    type Permit = Permit;

    async fn acquire(&self) -> Permit {
        // A free fetch slot first: no reading while URL jobs are queued up on fetches.
        drop(self.fetch_slots.acquire().await);
        self.threads.acquire().await
    }

    fn idle(&self) -> usize {
        self.threads.idle()
    }

    fn per_permit(&self, model: usize) -> usize {
        self.models[model].info.max_batch_size
    }

    fn batch_delay(&self, model: usize) -> Duration {
        self.models[model].max_batch_delay
    }

    /// Idle threads share what was read, so jobs run in parallel rather than queue behind one
    /// another when the worker is not saturated.
    fn share(&self, deliveries: Vec<Delivery>, idle: usize) -> Vec<Vec<Delivery>> {
        batcher::split(deliveries, 1 + idle)
    }

    /// Jobs with inputs to fetch join no batch: each fetches on its own task, then waits for a
    /// free thread, so a slow server holds up neither a thread nor other jobs.
    fn run(
        &self,
        model: usize,
        attempts: Vec<Attempt>,
        permit: Permit,
        settle: &Settle,
        tasks: &mut JoinSet<()>,
    ) {
        let name = settle.name(model);
        let (fetch, run): (Vec<Attempt>, Vec<Attempt>) = attempts
            .into_iter()
            .partition(|a| inputs::has_urls(&a.delivery.payload));
        stats::started(name, run.iter().map(|a| &a.delivery.entry));
        stats::started(name, fetch.iter().map(|a| &a.delivery.entry));
        for attempt in fetch {
            let task = self.batch_task(model, settle);
            let span = tracing::debug_span!("fetch", job_id = %attempt.delivery.job);
            let (egress, slots) = (self.egress.clone(), self.fetch_slots.clone());
            tasks.spawn(task.fetch_then_run(egress, slots, attempt).instrument(span));
        }
        if run.is_empty() {
            return;
        }
        let task = self.batch_task(model, settle);
        let span = tracing::debug_span!("batch", model = %name, jobs = run.len());
        tasks.spawn(task.run(run, permit).instrument(span));
    }
}
