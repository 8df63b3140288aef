//! The consume side's hold on the inference threads: work goes to a thread only with a
//! [`Permit`], one per thread, taken before any job is read, so the threads' channel (as deep
//! as there are threads) is never found full and the worker reads only what it can start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use inferq_shared::job::{ErrorCode, JobError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::infer::Ran;
use crate::infer::pool::Pool;

/// The inference threads and the permits that gate them.
#[derive(Debug, Clone)]
pub(crate) struct Threads {
    pool: Pool,
    slots: Arc<Semaphore>,
    /// Batches on an inference thread (or handed to one) right now.
    busy: Arc<AtomicUsize>,
}

/// The right to run one batch on one inference thread, held from before a batch is read until
/// its outcomes are back. A quarantine permit holds every thread.
#[derive(Debug)]
pub(crate) struct Permit {
    _slots: OwnedSemaphorePermit,
    pool: Pool,
    busy: Arc<AtomicUsize>,
}

impl Threads {
    pub(crate) fn new(pool: Pool) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(pool.threads())),
            pool,
            busy: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Inference threads running a batch right now.
    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed).min(self.pool.threads())
    }

    /// Threads free right now (not counting permits already handed out).
    pub(crate) fn idle(&self) -> usize {
        self.slots.available_permits()
    }

    pub(crate) fn model_name(&self, model: usize) -> &str {
        self.pool.model_name(model)
    }

    /// Waits for a free thread.
    pub(crate) async fn acquire(&self) -> Permit {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.permit(slot)
    }

    /// Trades `permit` for one that holds every thread, waiting for the others to finish: a
    /// retried job may be what killed this worker's predecessor, so it runs with no other job
    /// beside it that a crash could take down. The permit is given up first and all threads
    /// are then taken in one step, so two quarantined batches can never each hold a thread
    /// while waiting for the other's.
    pub(crate) async fn quarantine(&self, permit: Permit) -> Permit {
        drop(permit);
        let all = self
            .slots
            .clone()
            .acquire_many_owned(self.pool.threads() as u32)
            .await
            .expect("the semaphore is never closed");
        self.permit(all)
    }

    fn permit(&self, slots: OwnedSemaphorePermit) -> Permit {
        Permit {
            _slots: slots,
            pool: self.pool.clone(),
            busy: self.busy.clone(),
        }
    }
}

impl Permit {
    /// Runs one model's jobs on an inference thread and waits for their outcomes.
    pub(crate) async fn run(&mut self, model: usize, payloads: Vec<Vec<u8>>) -> Vec<Ran> {
        let n = payloads.len();
        let (reply, outcomes) = oneshot::channel();
        let stopped = || {
            (0..n)
                .map(|_| {
                    Err(JobError::new(
                        ErrorCode::WorkerStopping,
                        "the worker's inference threads stopped before running the job",
                    ))
                })
                .collect()
        };
        let _busy = Busy::new(&self.busy);
        // Each permit has at most one batch in the channel or on a thread (`&mut self`), and
        // the channel holds as many batches as there are permits: it cannot be full.
        let reply = Box::new(move |ran: Vec<Ran>| {
            let _ = reply.send(ran);
        });
        if !self.pool.try_send(model, payloads, reply) {
            return stopped();
        }
        outcomes.await.unwrap_or_else(|_| stopped())
    }
}

/// Counts a batch as running until dropped.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
