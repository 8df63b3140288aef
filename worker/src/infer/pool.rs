//! The inference threads: dedicated `std::thread`s, each with its own ONNX Runtime session per
//! model, fed through one bounded channel. Neither tokio nor Redis: a batch carries the function
//! that takes its results back, and whoever sends work decides how many batches may wait (the
//! channel is as deep as there are threads).

use std::sync::{Arc, Mutex, mpsc};

use anyhow::Context;
use inferq_shared::job::ErrorCode;

use super::Ran;
use super::codec::failed;
use super::models::ModelSpec;
use super::runner::Runner;

/// Takes a batch's results, one per payload and in order, back to whoever sent it.
pub(crate) type Reply = Box<dyn FnOnce(Vec<Ran>) + Send>;

/// A batch on its way to an inference thread.
struct Work {
    model: usize,
    payloads: Vec<Vec<u8>>,
    reply: Reply,
}

/// The threads, through the channel that feeds them.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    work: mpsc::SyncSender<Work>,
    threads: usize,
    names: Arc<[String]>,
}

impl Pool {
    /// Starts `threads` inference threads and blocks until each has opened its sessions.
    pub(crate) fn start(
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
            let (ready_tx, ready_rx) = mpsc::sync_channel(1);
            ready.push(ready_rx);
            let (rx, models, names) = (rx.clone(), models.to_vec(), names.clone());
            std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || inference_thread(&rx, &models, &names, intra_threads, &ready_tx))
                .context("spawning an inference thread")?;
        }
        for r in ready {
            r.recv()
                .context("an inference thread died while loading models")??;
        }
        Ok(Self {
            work,
            threads,
            names,
        })
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    pub(crate) fn model_name(&self, model: usize) -> &str {
        &self.names[model]
    }

    /// Hands one model's batch to the threads without waiting; `false` when the channel is full
    /// or the threads are gone (then `reply` is dropped unused).
    pub(crate) fn try_send(&self, model: usize, payloads: Vec<Vec<u8>>, reply: Reply) -> bool {
        self.work
            .try_send(Work {
                model,
                payloads,
                reply,
            })
            .is_ok()
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("model", &self.model)
            .field("jobs", &self.payloads.len())
            .finish_non_exhaustive()
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
    ready: &mpsc::SyncSender<anyhow::Result<()>>,
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
                    Err(failed(
                        ErrorCode::Internal,
                        "the worker hit an internal error running this job",
                    ))
                })
                .collect()
        });
        (work.reply)(outcomes);
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
