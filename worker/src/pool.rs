//! The inference thread pool: dedicated `std::thread`s, each with its own ONNX Runtime
//! session per model, fed through a bounded channel. Work can only be sent with a [`Permit`],
//! one per thread, so the channel (as deep as there are threads) is never found full.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::Context;
use inferq_shared::job::ErrorCode;
use inferq_shared::queue::Outcome;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::codec::failed;
use crate::models::ModelSpec;
use crate::session::Runner;

/// A batch on its way to an inference thread.
struct Work {
    model: usize,
    payloads: Vec<Vec<u8>>,
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// The threads and the permits that gate them.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    work: mpsc::SyncSender<Work>,
    slots: Arc<Semaphore>,
    threads: usize,
    names: Arc<[String]>,
    /// Batches on an inference thread (or handed to one) right now.
    busy: Arc<AtomicUsize>,
}

/// The right to run one batch on one inference thread, held from before a batch is read until
/// its outcomes are back. A quarantine permit holds every thread.
#[derive(Debug)]
pub(crate) struct Permit {
    _slots: OwnedSemaphorePermit,
    work: mpsc::SyncSender<Work>,
    busy: Arc<AtomicUsize>,
}

impl Pool {
    /// Starts `threads` inference threads and waits until each has opened its sessions.
    pub(crate) async fn start(
        models: &[ModelSpec],
        threads: usize,
        intra_threads: usize,
    ) -> anyhow::Result<Self> {
        let threads = threads.max(1);
        let (work, rx) = mpsc::sync_channel::<Work>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let names: Arc<[String]> = models.iter().map(|m| m.info.name.clone()).collect();
        let mut ready = Vec::with_capacity(threads);
        for i in 0..threads {
            let (ready_tx, ready_rx) = oneshot::channel();
            ready.push(ready_rx);
            let (rx, models, names) = (rx.clone(), models.to_vec(), names.clone());
            std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || inference_thread(&rx, &models, &names, intra_threads, ready_tx))
                .context("spawning an inference thread")?;
        }
        for r in ready {
            r.await
                .context("an inference thread died while loading models")??;
        }
        Ok(Self {
            work,
            slots: Arc::new(Semaphore::new(threads)),
            threads,
            names,
            busy: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Inference threads running a batch right now.
    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed).min(self.threads)
    }

    /// Threads free right now (not counting permits already handed out).
    pub(crate) fn idle(&self) -> usize {
        self.slots.available_permits()
    }

    /// Waits for a free thread.
    pub(crate) async fn acquire(&self) -> Permit {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Permit {
            _slots: slot,
            work: self.work.clone(),
            busy: self.busy.clone(),
        }
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
            .acquire_many_owned(self.threads as u32)
            .await
            .expect("the semaphore is never closed");
        Permit {
            _slots: all,
            work: self.work.clone(),
            busy: self.busy.clone(),
        }
    }

    pub(crate) fn model_name(&self, model: usize) -> &str {
        &self.names[model]
    }
}

impl Permit {
    /// Runs one model's jobs on an inference thread and waits for their outcomes.
    pub(crate) async fn run(&mut self, model: usize, payloads: Vec<Vec<u8>>) -> Vec<Outcome> {
        let n = payloads.len();
        let (reply, outcomes) = oneshot::channel();
        let stopped = || {
            (0..n)
                .map(|_| {
                    failed(
                        ErrorCode::WorkerStopping,
                        "the worker's inference threads stopped before running the job",
                    )
                })
                .collect()
        };
        let _busy = Busy::new(&self.busy);
        // Each permit has at most one batch in the channel or on a thread (`&mut self`), and
        // the channel holds as many batches as there are permits: it cannot be full.
        if self
            .work
            .try_send(Work {
                model,
                payloads,
                reply,
            })
            .is_err()
        {
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

/// An inference thread: opens its own session per model, then runs batches until the work
/// channel closes. A panic inside the ONNX Runtime glue fails that batch (logged with its
/// message), not the thread.
fn inference_thread(
    rx: &Mutex<mpsc::Receiver<Work>>,
    models: &[ModelSpec],
    names: &[String],
    intra_threads: usize,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let mut runner = match Runner::new(models, intra_threads.max(1)) {
        Ok(r) => {
            let _ = ready.send(Ok(()));
            r
        }
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    loop {
        let work = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(work) = work else { return };
        let payloads: Vec<&[u8]> = work.payloads.iter().map(Vec::as_slice).collect();
        let n = payloads.len();
        let model = &names[work.model];
        let outcomes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner.run(model, &payloads)
        }))
        .unwrap_or_else(|panic| {
            tracing::error!(
                model = %model,
                jobs = n,
                panic = %panic_message(panic.as_ref()),
                "inference panicked; failing the batch"
            );
            (0..n)
                .map(|_| {
                    failed(
                        ErrorCode::Internal,
                        "the worker hit an internal error running this job",
                    )
                })
                .collect()
        });
        let _ = work.reply.send(outcomes);
    }
}

/// The message a panic carried, when it is a string.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
