//! The Redis side of a worker: one task reads only as many jobs as idle inference threads can
//! start, begins their attempts, hands them to the threads and records their outcomes; another
//! renews the leases of everything it holds.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use inferq_shared::job::{JobError, JobId};
use inferq_shared::queue::{Completion, Delivery, Outcome, Queue, QueueError, Retention};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::Config;
use crate::engine::{ModelSpec, Runner};

/// Longest a blocking read waits, which bounds how late the loop notices shutdown.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// A group member with nothing pending and idle this long is a worker that left; it is removed
/// when a worker starts.
const CONSUMER_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A batch on its way to an inference thread.
struct Work {
    model: usize,
    payloads: Vec<Vec<u8>>,
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// Entries this worker holds, per model: entry id → (job, fencing token; 0 = not started).
type Held = Arc<Mutex<Vec<HashMap<String, (JobId, u64)>>>>;

pub struct Consumer {
    config: Config,
    models: Vec<ModelSpec>,
    names: Vec<String>,
    consumer: String,
    queue: Queue,
    reader: Queue,
    slots: Arc<Semaphore>,
    threads: usize,
    work: mpsc::SyncSender<Work>,
    held: Held,
    retention: Retention,
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "worker".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{}-{suffix}", std::process::id())
}

impl Consumer {
    /// Starts the inference threads (each opens its own sessions) and connects to Redis.
    pub async fn start(config: Config, models: Vec<ModelSpec>) -> anyhow::Result<Self> {
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let (work, rx) = mpsc::sync_channel::<Work>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let mut ready = Vec::with_capacity(threads);
        for i in 0..threads {
            let (ready_tx, ready_rx) = oneshot::channel();
            ready.push(ready_rx);
            let (rx, models, intra) = (rx.clone(), models.clone(), config.intra_op_threads.max(1));
            std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || inference_thread(rx, &models, intra, ready_tx))
                .context("spawning an inference thread")?;
        }
        for r in ready {
            r.await
                .context("an inference thread died while loading models")??;
        }

        let queue = Queue::connect(&config.redis, Duration::ZERO).await?;
        let reader = Queue::connect(&config.redis, READ_BLOCK).await?;
        let consumer = config.worker_id.clone().unwrap_or_else(default_worker_id);
        let names: Vec<String> = models.iter().map(|m| m.info.name.clone()).collect();
        tracing::info!(
            worker = %consumer,
            threads,
            models = ?names,
            redis = %config.redis.redis_url,
            namespace = %config.redis.namespace,
            "inferq-worker started"
        );
        let retention = Retention {
            result_ttl: Duration::from_secs(config.result_ttl_secs),
        };
        Ok(Self {
            held: Arc::new(Mutex::new(vec![HashMap::new(); models.len()])),
            slots: Arc::new(Semaphore::new(threads)),
            threads,
            config,
            models,
            names,
            consumer,
            queue,
            reader,
            work,
            retention,
        })
    }

    /// Consumes jobs until `shutdown` completes, then drains: jobs already started get the
    /// grace period to finish; everything else held goes back to the queue.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(Notify::new());
        {
            let (stopping, stop) = (stopping.clone(), stop.clone());
            tokio::spawn(async move {
                shutdown.await;
                stopping.store(true, Ordering::SeqCst);
                stop.notify_waiters();
            });
        }
        self.wait_for_redis(&stopping).await;
        let background = self.spawn_background(stopping.clone());

        let mut tasks = JoinSet::new();
        let mut pending: VecDeque<(usize, Vec<Delivery>)> = VecDeque::new();
        let mut last_reclaim: Option<Instant> = None;
        let mut backoff = Backoff::new();
        'consume: while !stopping.load(Ordering::SeqCst) {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = self.slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
                () = stop.notified() => break 'consume,
            };
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            let batch = match pending.pop_front() {
                Some(b) => b,
                None => match self.next_batches(&mut pending, &mut last_reclaim).await {
                    Ok(Some(b)) => {
                        backoff.reset();
                        b
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading jobs failed; retrying");
                        backoff.wait(&stop).await;
                        continue;
                    }
                },
            };
            // Idle threads share what was read, so jobs run in parallel rather than queue behind
            // one another when the worker is not saturated.
            let mut batches = split(batch, 1 + self.slots.available_permits());
            let first = batches.remove(0);
            for b in batches.into_iter().rev() {
                pending.push_front(b);
            }
            match self.begin(first, permit, &mut tasks).await {
                Ok(()) => {}
                Err((e, unstarted)) => {
                    tracing::warn!(error = %e, "starting jobs failed; retrying");
                    pending.push_front(unstarted);
                    backoff.wait(&stop).await;
                }
            }
        }

        tracing::info!(
            in_flight = tasks.len(),
            "stopping: no new jobs; finishing started ones"
        );
        // Read but never started: straight back to the queue.
        for (model, deliveries) in pending.drain(..) {
            let entries: Vec<_> = deliveries
                .iter()
                .map(|d| (d.job, d.entry.clone(), 0))
                .collect();
            self.release(model, &entries).await;
        }
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "grace period over; handing unfinished jobs back to the queue"
            );
        }
        let leftovers: Vec<Vec<(JobId, String, u64)>> = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.iter()
                .map(|m| m.iter().map(|(e, (j, t))| (*j, e.clone(), *t)).collect())
                .collect()
        };
        for (model, entries) in leftovers.iter().enumerate() {
            if !entries.is_empty() {
                self.release(model, entries).await;
            }
        }
        background.abort();
        tracing::info!("inferq-worker stopped");
        Ok(())
    }

    async fn release(&self, model: usize, entries: &[(JobId, String, u64)]) {
        match self.queue.release(&self.names[model], entries).await {
            Ok(n) => {
                tracing::info!(model = %self.names[model], released = n, "handed jobs back to the queue")
            }
            // Not lost: once the lease expires another worker reclaims them.
            Err(e) => {
                tracing::warn!(error = %e, "could not hand jobs back; they will be reclaimed after the lease")
            }
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for (_, entry, _) in entries {
            held[model].remove(entry);
        }
    }

    /// Creates the consumer groups, retrying while Redis is unreachable.
    async fn wait_for_redis(&self, stopping: &AtomicBool) {
        let mut backoff = Backoff::new();
        let stop = Notify::new();
        while !stopping.load(Ordering::SeqCst) {
            let mut result = Ok(());
            for name in &self.names {
                result = result.and(self.queue.ensure_group(name).await);
            }
            match result {
                Ok(()) => {
                    for name in &self.names {
                        match self.queue.prune_consumers(name, CONSUMER_EXPIRY).await {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!(model = %name, removed = n, "removed departed workers from the group")
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "pruning departed workers failed")
                            }
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis not ready; retrying");
                    backoff.wait(&stop).await;
                }
            }
        }
    }

    /// Announces the models and renews leases, both on timers, until aborted.
    fn spawn_background(&self, stopping: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let (queue, held, names, consumer) = (
            self.queue.clone(),
            self.held.clone(),
            self.names.clone(),
            self.consumer.clone(),
        );
        let infos: Vec<_> = self.models.iter().map(|m| (*m.info).clone()).collect();
        let renew_every = self.config.lease() / 3;
        tokio::spawn(async move {
            let mut announce = tokio::time::interval(inferq_shared::queue::ANNOUNCE_INTERVAL);
            let mut renew = tokio::time::interval(renew_every);
            loop {
                tokio::select! {
                    _ = announce.tick() => {
                        if stopping.load(Ordering::SeqCst) {
                            continue;
                        }
                        if let Err(e) = queue.announce_models(&infos).await {
                            tracing::warn!(error = %e, "announcing models failed");
                        }
                    }
                    _ = renew.tick() => {
                        let entries: Vec<Vec<String>> = {
                            let held = held.lock().unwrap_or_else(|p| p.into_inner());
                            held.iter().map(|m| m.keys().cloned().collect()).collect()
                        };
                        for (model, entries) in entries.iter().enumerate() {
                            if entries.is_empty() {
                                continue;
                            }
                            if let Err(e) = queue.heartbeat(&names[model], &consumer, entries).await {
                                tracing::warn!(error = %e, "renewing leases failed");
                            }
                        }
                    }
                }
            }
        })
    }

    /// Reads the next jobs: first any whose lease expired (checked every half lease), then new
    /// ones, blocking briefly. Reads at most what the idle threads can start. Extra batches
    /// (other models) go to `pending`.
    async fn next_batches(
        &self,
        pending: &mut VecDeque<(usize, Vec<Delivery>)>,
        last_reclaim: &mut Option<Instant>,
    ) -> Result<Option<(usize, Vec<Delivery>)>, QueueError> {
        let idle = 1 + self.slots.available_permits();
        let lease = self.config.lease();
        if last_reclaim.is_none_or(|t| t.elapsed() >= lease / 2) {
            *last_reclaim = Some(Instant::now());
            for (i, m) in self.models.iter().enumerate() {
                let count = m.info.max_batch_size * idle;
                let got = self
                    .reader
                    .reclaim(&self.consumer, &m.info.name, lease, count)
                    .await?;
                if !got.is_empty() {
                    tracing::info!(model = %m.info.name, jobs = got.len(), "reclaimed jobs whose lease expired");
                    self.hold(i, &got);
                    return Ok(Some((i, got)));
                }
            }
        }
        let count = self
            .models
            .iter()
            .map(|m| m.info.max_batch_size)
            .max()
            .unwrap_or(1)
            * idle;
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let got = self
            .reader
            .read(&self.consumer, &names, count, Some(READ_BLOCK))
            .await?;
        if got.is_empty() {
            return Ok(None);
        }
        let mut by_model: Vec<Vec<Delivery>> = vec![Vec::new(); self.models.len()];
        for (i, d) in got {
            by_model[i].push(d);
        }
        let mut batches = by_model
            .into_iter()
            .enumerate()
            .filter(|(_, d)| !d.is_empty())
            .collect::<Vec<_>>();
        for (i, d) in &mut batches {
            let delay = self.models[*i].max_batch_delay;
            let max = self.models[*i].info.max_batch_size * idle;
            if !delay.is_zero() && d.len() < max {
                self.fill(*i, d, max, delay).await?;
            }
            self.hold(*i, d);
        }
        let first = batches.remove(0);
        pending.extend(batches);
        Ok(Some(first))
    }

    /// Waits up to `delay` for more jobs of one model to fill a batch.
    async fn fill(
        &self,
        model: usize,
        batch: &mut Vec<Delivery>,
        max: usize,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let deadline = Instant::now() + delay;
        let name = [self.names[model].as_str()];
        while batch.len() < max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let more = self
                .reader
                .read(
                    &self.consumer,
                    &name,
                    max - batch.len(),
                    Some(left.max(Duration::from_millis(1))),
                )
                .await?;
            if more.is_empty() {
                break;
            }
            batch.extend(more.into_iter().map(|(_, d)| d));
        }
        Ok(())
    }

    fn hold(&self, model: usize, deliveries: &[Delivery]) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for d in deliveries {
            held[model].insert(d.entry.clone(), (d.job, 0));
        }
    }

    /// Begins the attempts and hands the batch to an inference thread; a task records the
    /// outcomes. On a Redis error the batch comes back unstarted.
    async fn begin(
        &self,
        (model, deliveries): (usize, Vec<Delivery>),
        permit: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), (QueueError, (usize, Vec<Delivery>))> {
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
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            for (d, token) in deliveries.into_iter().zip(tokens) {
                if token == 0 {
                    held[model].remove(&d.entry);
                } else {
                    held[model].insert(d.entry.clone(), (d.job, token));
                    run.push((d, token));
                }
            }
        }
        if run.is_empty() {
            return Ok(());
        }
        // A retried job may be what killed this worker's predecessor. It runs alone, with every
        // inference thread of this worker reserved, so if it crashes the process again it takes
        // no first-attempt jobs down with it and cannot exhaust their attempts.
        let quarantine = run.iter().any(|(_, token)| *token > 1);
        let (groups, reserved) = if quarantine {
            let others = self.threads.saturating_sub(1) as u32;
            let reserved = self
                .slots
                .clone()
                .acquire_many_owned(others)
                .await
                .expect("semaphore is never closed");
            tracing::info!(model = %name, jobs = run.len(), "running retried jobs one at a time");
            (run.into_iter().map(|r| vec![r]).collect(), Some(reserved))
        } else {
            (vec![run], None)
        };
        let (queue, held, name, retention, work) = (
            self.queue.clone(),
            self.held.clone(),
            name.clone(),
            self.retention,
            self.work.clone(),
        );
        let span = tracing::debug_span!("batch", model = %name);
        tasks.spawn(
            async move {
                let mut permits = Some((permit, reserved));
                let last = groups.len() - 1;
                for (i, mut group) in groups.into_iter().enumerate() {
                    let outcomes = infer(&work, model, &mut group).await;
                    if i == last {
                        // The threads are free again before the outcomes are recorded.
                        permits.take();
                    }
                    let completions: Vec<Completion> = group
                        .into_iter()
                        .zip(outcomes)
                        .map(|((d, token), outcome)| {
                            tracing::debug!(job_id = %d.job, attempt = token, ok = matches!(outcome, Outcome::Succeeded(_)), "job finished");
                            Completion {
                                job: d.job,
                                entry: d.entry,
                                token,
                                outcome,
                            }
                        })
                        .collect();
                    record(&queue, &name, &completions, retention).await;
                    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                    for c in &completions {
                        held[model].remove(&c.entry);
                    }
                }
            }
            .instrument(span),
        );
        Ok(())
    }
}

/// Runs one batch on an inference thread and waits for its outcomes.
async fn infer(
    work: &mpsc::SyncSender<Work>,
    model: usize,
    group: &mut [(Delivery, u64)],
) -> Vec<Outcome> {
    let (reply, outcomes) = oneshot::channel();
    let payloads = group
        .iter_mut()
        .map(|(d, _)| std::mem::take(&mut d.payload))
        .collect();
    // Each queued or running batch holds a permit and the channel has room for as many
    // batches as there are permits, so this never finds the channel full.
    if let Err(e) = work.try_send(Work {
        model,
        payloads,
        reply,
    }) {
        tracing::error!(error = %e, "inference threads cannot take work");
    }
    outcomes.await.unwrap_or_else(|_| {
        group
            .iter()
            .map(|_| {
                Outcome::Failed(JobError {
                    code: "internal".into(),
                    message: "the inference thread stopped before finishing the job".into(),
                })
            })
            .collect()
    })
}

/// Records outcomes, retrying transient Redis failures: the result is only in this process's
/// memory until it is recorded. If the worker dies meanwhile, the lease expires and the job
/// runs again elsewhere.
async fn record(queue: &Queue, model: &str, completions: &[Completion], retention: Retention) {
    let mut backoff = Backoff::new();
    let never = Notify::new();
    loop {
        match queue.complete(model, completions, retention).await {
            Ok(recorded) => {
                let discarded = recorded.iter().filter(|r| !**r).count();
                if discarded > 0 {
                    tracing::info!(
                        model,
                        discarded,
                        "outcomes discarded: jobs were cancelled or taken over by another worker"
                    );
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, model, jobs = completions.len(), "recording outcomes failed; retrying");
                backoff.wait(&never).await;
            }
        }
    }
}

/// Splits one model's deliveries evenly over up to `threads` batches.
fn split(
    (model, mut deliveries): (usize, Vec<Delivery>),
    threads: usize,
) -> Vec<(usize, Vec<Delivery>)> {
    let parts = threads.clamp(1, deliveries.len().max(1));
    let size = deliveries.len().div_ceil(parts);
    let mut out = Vec::with_capacity(parts);
    while deliveries.len() > size {
        let rest = deliveries.split_off(size);
        out.push((model, deliveries));
        deliveries = rest;
    }
    out.push((model, deliveries));
    out
}

/// Exponential backoff between retries against Redis, 50 ms up to 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(50))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }
    async fn wait(&mut self, stop: &Notify) {
        tokio::select! {
            () = tokio::time::sleep(self.0) => {},
            () = stop.notified() => {},
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

/// An inference thread: opens its own session per model, then runs batches until the work
/// channel closes. A panic inside ONNX Runtime glue fails that batch, not the thread.
fn inference_thread(
    rx: Arc<Mutex<mpsc::Receiver<Work>>>,
    models: &[ModelSpec],
    intra_threads: usize,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let mut runner = match Runner::new(models, intra_threads) {
        Ok(r) => {
            let _ = ready.send(Ok(()));
            r
        }
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let names: Vec<String> = models.iter().map(|m| m.info.name.clone()).collect();
    loop {
        let work = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(work) = work else { return };
        let payloads: Vec<&[u8]> = work.payloads.iter().map(Vec::as_slice).collect();
        let n = payloads.len();
        let outcomes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner.run(&names[work.model], &payloads)
        }))
        .unwrap_or_else(|_| {
            (0..n)
                .map(|_| {
                    Outcome::Failed(JobError {
                        code: "internal".into(),
                        message: "the worker hit an internal error running this job".into(),
                    })
                })
                .collect()
        });
        let _ = work.reply.send(outcomes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliveries(n: usize) -> Vec<Delivery> {
        (0..n)
            .map(|i| Delivery {
                entry: format!("{i}-0"),
                job: JobId::new(),
                payload: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn split_spreads_evenly_over_idle_threads() {
        let sizes = |n, threads| -> Vec<usize> {
            split((0, deliveries(n)), threads)
                .iter()
                .map(|(_, d)| d.len())
                .collect()
        };
        assert_eq!(sizes(1, 4), [1]);
        assert_eq!(sizes(5, 2), [3, 2]);
        assert_eq!(sizes(64, 2), [32, 32]);
        assert_eq!(sizes(3, 1), [3]);
    }
}
