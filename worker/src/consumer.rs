//! The Redis side of a worker: one loop reads only as many jobs as idle inference threads can
//! start, begins their attempts and hands each batch to a task that runs it on the pool and
//! records the outcomes. Lease renewal and model announcements run on tasks of their own.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::FutureExt;
use inferq_shared::job::{ErrorCode, JobError, JobId};
use inferq_shared::queue::{
    ANNOUNCE_INTERVAL, Completion, Delivery, Entry, Outcome, Queue, QueueError, Retention,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::Config;
use crate::batcher;
use crate::lease::{self, Leases};
use crate::models::ModelSpec;
use crate::pool::{Permit, Pool, panic_message};

/// Longest a blocking read waits, which bounds how late the loop notices shutdown.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// A group member with nothing pending and idle this long is a worker that left; it is removed
/// when a worker starts.
const CONSUMER_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Longest the shutdown spends handing jobs back after the grace period; what it could not
/// hand back is reclaimed by other workers once its lease expires.
const HANDBACK_LIMIT: Duration = Duration::from_secs(3);

/// One model's deliveries, by model index.
type Batch = (usize, Vec<Delivery>);

#[derive(Debug)]
pub(crate) struct Consumer {
    config: Config,
    models: Vec<ModelSpec>,
    names: Arc<[String]>,
    /// This worker's consumer name in the group.
    consumer: String,
    /// Non-blocking commands.
    queue: Queue,
    /// Blocking reads, on a connection of their own.
    reader: Queue,
    pool: Pool,
    leases: Arc<Leases>,
    retention: Retention,
}

/// Where the read loop stands between calls.
#[derive(Debug, Default)]
struct ReadState {
    last_reclaim: Option<Instant>,
    /// The model whose stream is read first next time, so no model starves another.
    next_model: usize,
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

/// Completes once shutdown was requested.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Consumer {
    /// Starts the inference threads (each opens its own sessions) and connects to Redis.
    pub(crate) async fn start(config: Config, models: Vec<ModelSpec>) -> anyhow::Result<Self> {
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = Pool::start(&models, threads, config.intra_op_threads)
            .await
            .context("starting the inference threads")?;
        let queue = Queue::connect(&config.redis, Duration::ZERO).await?;
        let reader = Queue::connect(&config.redis, READ_BLOCK).await?;
        let consumer = config.worker_id.clone().unwrap_or_else(default_worker_id);
        let names: Arc<[String]> = models.iter().map(|m| m.info.name.clone()).collect();
        tracing::info!(
            worker = %consumer,
            threads = pool.threads(),
            models = ?names,
            redis = %config.redis.redis_url,
            namespace = %config.redis.namespace,
            "inferq-worker started"
        );
        let retention = Retention {
            result_ttl: Duration::from_secs(config.result_ttl_secs),
        };
        Ok(Self {
            leases: Leases::new(models.len()),
            names,
            config,
            models,
            consumer,
            queue,
            reader,
            pool,
            retention,
        })
    }

    /// Consumes jobs until `shutdown` completes, then drains: jobs already started get the
    /// grace period to finish; everything else held goes back to the queue. Returns within
    /// the grace period plus a few seconds whatever Redis does.
    pub(crate) async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, mut stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            // Keep the sender: receivers read the final value, not a closed channel.
            std::future::pending::<()>().await;
        });
        self.wait_for_redis(&mut stop).await;
        let renewal = lease::spawn_renewal(
            self.queue.clone(),
            self.leases.clone(),
            self.names.clone(),
            self.consumer.clone(),
            self.config.lease(),
        );
        let announcer = self.spawn_announcer(stop.clone());

        let mut tasks = JoinSet::new();
        let mut pending: VecDeque<Batch> = VecDeque::new();
        let mut read_state = ReadState::default();
        let mut backoff = Backoff::new();
        loop {
            reap(&mut tasks);
            if *stop.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = self.pool.acquire() => p,
                () = stopped(&mut stop) => break,
            };
            if *stop.borrow() {
                break;
            }
            let (model, deliveries) = match pending.pop_front() {
                Some(b) => b,
                None => match self.next_batch(&mut pending, &mut read_state).await {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading jobs failed; retrying");
                        backoff.wait(&mut stop).await;
                        continue;
                    }
                },
            };
            // Idle threads share what was read, so jobs run in parallel rather than queue
            // behind one another when the worker is not saturated.
            let mut parts = batcher::split(deliveries, 1 + self.pool.idle());
            let first = parts.remove(0);
            for rest in parts.into_iter().rev() {
                pending.push_front((model, rest));
            }
            match self.begin((model, first), permit, &mut tasks).await {
                Ok(()) => backoff.reset(),
                Err((e, unstarted)) => {
                    tracing::warn!(error = %e, "starting jobs failed; retrying");
                    pending.push_front(unstarted);
                    backoff.wait(&mut stop).await;
                }
            }
        }
        announcer.abort();
        let withdraw = self.queue.withdraw_worker(&self.consumer, &self.names);
        if let Ok(Err(e)) = tokio::time::timeout(HANDBACK_LIMIT, withdraw).await {
            tracing::debug!(error = %e, "withdrawing from the model registry failed");
        }
        self.drain(pending, tasks).await;
        renewal.abort();
        tracing::info!("inferq-worker stopped");
        Ok(())
    }

    /// The shutdown sequence: unstarted jobs go straight back; started ones get the grace
    /// period; whatever is still held then is handed back (bounded in time).
    async fn drain(&self, pending: VecDeque<Batch>, mut tasks: JoinSet<()>) {
        tracing::info!(
            in_flight = tasks.len(),
            "stopping: no new jobs; finishing started ones"
        );
        let unstarted: Vec<Batch> = pending.into_iter().collect();
        let handback = async {
            for (model, deliveries) in &unstarted {
                let entries: Vec<_> = deliveries
                    .iter()
                    .map(|d| (d.job, d.entry.clone(), lease::UNSTARTED))
                    .collect();
                self.release(*model, &entries).await;
            }
        };
        let _ = tokio::time::timeout(HANDBACK_LIMIT, handback).await;
        for (model, deliveries) in &unstarted {
            for d in deliveries {
                self.leases.finished(*model, &d.entry, lease::UNSTARTED);
            }
        }

        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            while let Some(r) = tasks.join_next().await {
                log_panic(r);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "grace period over; handing unfinished jobs back to the queue"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        let leftovers = self.leases.take_all();
        let handback = async {
            for (model, entries) in leftovers.iter().enumerate() {
                if !entries.is_empty() {
                    self.release(model, entries).await;
                }
            }
        };
        if tokio::time::timeout(HANDBACK_LIMIT, handback)
            .await
            .is_err()
        {
            tracing::warn!(
                "could not hand jobs back in time; they will be reclaimed after the lease"
            );
        }
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
    }

    /// Creates the consumer groups, retrying while Redis is unreachable.
    async fn wait_for_redis(&self, stop: &mut watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        while !*stop.borrow() {
            let mut result = Ok(());
            for name in self.names.iter() {
                result = result.and(self.queue.ensure_group(name).await);
            }
            match result {
                Ok(()) => {
                    for name in self.names.iter() {
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
                    backoff.wait(stop).await;
                }
            }
        }
    }

    /// Announces the models every [`ANNOUNCE_INTERVAL`] until shutdown.
    fn spawn_announcer(&self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let (queue, consumer) = (self.queue.clone(), self.consumer.clone());
        let infos: Vec<_> = self.models.iter().map(|m| (*m.info).clone()).collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
            loop {
                tick.tick().await;
                if *stop.borrow() {
                    return;
                }
                if let Err(e) = queue.announce_models(&consumer, &infos).await {
                    tracing::warn!(error = %e, "announcing models failed");
                }
            }
        })
    }

    /// Most entries of `model` the idle threads can start now.
    fn capacity(&self, model: usize, idle: usize) -> usize {
        self.models[model].info.max_batch_size.max(1) * idle
    }

    /// Reads the next batch: first any entries whose lease expired (checked every half lease),
    /// then new ones, each model's stream with its own count, so a model that cannot batch is
    /// never read deeper than the idle threads. Blocks briefly when nothing waits.
    async fn next_batch(
        &self,
        pending: &mut VecDeque<Batch>,
        state: &mut ReadState,
    ) -> Result<Option<Batch>, QueueError> {
        let idle = 1 + self.pool.idle();
        let lease = self.config.lease();
        let n = self.models.len();
        if state.last_reclaim.is_none_or(|t| t.elapsed() >= lease / 2) {
            state.last_reclaim = Some(Instant::now());
            for i in 0..n {
                let got = self
                    .reader
                    .reclaim(
                        &self.consumer,
                        &self.names[i],
                        lease,
                        self.capacity(i, idle),
                    )
                    .await?;
                let got = self.accept(i, got).await;
                if !got.is_empty() {
                    tracing::info!(model = %self.names[i], jobs = got.len(), "reclaimed jobs whose lease expired");
                    return Ok(Some((i, got)));
                }
            }
        }
        if n > 1 {
            for k in 0..n {
                let i = (state.next_model + k) % n;
                let got = self
                    .reader
                    .read(&self.consumer, &self.names[i], self.capacity(i, idle), None)
                    .await?;
                let got = self.accept(i, got).await;
                if !got.is_empty() {
                    state.next_model = i + 1;
                    return Ok(Some(self.fill(i, got, idle).await));
                }
            }
        }
        // Nothing waiting: block on every stream at once, one entry each (with one model, as
        // many as can start).
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let count = if n == 1 { self.capacity(0, idle) } else { 1 };
        let got = self
            .reader
            .read_any(&self.consumer, &names, count, Some(READ_BLOCK))
            .await?;
        let mut by_model: Vec<Vec<Entry>> = vec![Vec::new(); n];
        for (i, e) in got {
            by_model[i].push(e);
        }
        let mut batches = Vec::new();
        for (i, entries) in by_model.into_iter().enumerate() {
            let got = self.accept(i, entries).await;
            if !got.is_empty() {
                batches.push((i, got));
            }
        }
        let mut batches = batches.into_iter();
        let Some((i, first)) = batches.next() else {
            return Ok(None);
        };
        // At most one entry of each other model: it starts as soon as a thread is free.
        pending.extend(batches);
        Ok(Some(self.fill(i, first, idle).await))
    }

    /// Tops a batch up to what the idle threads can take, waiting up to the model's batching
    /// delay for more. A Redis error ends the filling but keeps everything already read.
    async fn fill(&self, model: usize, mut batch: Vec<Delivery>, idle: usize) -> Batch {
        let max = self.capacity(model, idle);
        let delay = self.models[model].max_batch_delay;
        let deadline = Instant::now() + delay;
        let mut first = true;
        while batch.len() < max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !first {
                break;
            }
            // Capped like every blocking read, so the connection's response timeout (which
            // allows for READ_BLOCK) never fires on a long batching delay.
            let block = (!left.is_zero()).then(|| left.clamp(Duration::from_millis(1), READ_BLOCK));
            first = false;
            let more = match self
                .reader
                .read(&self.consumer, &self.names[model], max - batch.len(), block)
                .await
            {
                Ok(more) => self.accept(model, more).await,
                Err(e) => {
                    tracing::warn!(error = %e, jobs = batch.len(), "reading more jobs for a batch failed; running what was read");
                    break;
                }
            };
            if more.is_empty() {
                break;
            }
            batch.extend(more);
        }
        (model, batch)
    }

    /// Holds the leases of readable entries and sets the malformed ones aside.
    async fn accept(&self, model: usize, entries: Vec<Entry>) -> Vec<Delivery> {
        let mut good = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for e in entries {
            match e {
                Entry::Job(d) => good.push(d),
                Entry::Malformed { entry, job } => bad.push((entry, job)),
            }
        }
        self.leases.hold(model, &good);
        if !bad.is_empty() {
            tracing::warn!(model = %self.names[model], entries = ?bad, "setting aside malformed stream entries");
            if let Err(e) = self
                .queue
                .set_aside(&self.names[model], &bad, self.retention)
                .await
            {
                // They stay pending; after the lease they are read (and set aside) again.
                tracing::warn!(error = %e, "setting malformed entries aside failed");
            }
        }
        good
    }

    /// Begins the attempts and hands the batch to a task that runs it and records the
    /// outcomes. On a Redis error the batch comes back unstarted (retrying is safe: starting a
    /// delivery twice adds no attempt).
    async fn begin(
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
        for (d, token) in deliveries.into_iter().zip(tokens) {
            self.leases.started(model, &d.entry, d.job, token);
            if token != lease::UNSTARTED {
                run.push((d, token));
            }
        }
        if run.is_empty() {
            return Ok(());
        }
        let task = BatchTask {
            queue: self.queue.clone(),
            pool: self.pool.clone(),
            leases: self.leases.clone(),
            retention: self.retention,
            model,
        };
        let span = tracing::debug_span!("batch", model = %name, jobs = run.len());
        tasks.spawn(task.run(run, permit).instrument(span));
        Ok(())
    }
}

/// What a batch's task needs.
#[derive(Debug)]
struct BatchTask {
    queue: Queue,
    pool: Pool,
    leases: Arc<Leases>,
    retention: Retention,
    model: usize,
}

impl BatchTask {
    /// Runs the batch and records its outcomes. A retried job (token > 1) may be what killed
    /// this worker's predecessor, so it runs alone with every thread reserved. A panic is
    /// logged with its message and fails the batch's jobs with `internal`.
    async fn run(self, run: Vec<(Delivery, u64)>, permit: Permit) {
        let jobs: Vec<(JobId, String, u64)> = run
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
            record(&self.queue, name, &completions, self.retention).await;
            for (_, entry, token) in &jobs {
                self.leases.finished(self.model, entry, *token);
            }
        }
    }

    async fn execute(&self, run: Vec<(Delivery, u64)>, permit: Permit) {
        let name = self.pool.model_name(self.model).to_owned();
        let mut permit = Some(permit);
        let quarantine = run.iter().any(|(_, token)| *token > 1);
        let groups: Vec<Vec<(Delivery, u64)>> = if quarantine {
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
                .map(|(d, _)| std::mem::take(&mut d.payload))
                .collect();
            #[cfg(feature = "test-hooks")]
            crate::hooks::on_task(&payloads);
            let outcomes = match permit.as_mut() {
                Some(p) => p.run(self.model, payloads).await,
                None => unreachable!("the permit is released after the last group"),
            };
            if i == last {
                // The threads are free again before the outcomes are recorded.
                permit.take();
            }
            self.settle(&name, group, outcomes).await;
        }
    }

    /// Records outcomes; a retryable failure goes back to the queue instead.
    async fn settle(&self, name: &str, group: Vec<(Delivery, u64)>, outcomes: Vec<Outcome>) {
        let mut completions = Vec::with_capacity(group.len());
        let mut retry = Vec::new();
        for ((d, token), outcome) in group.into_iter().zip(outcomes) {
            let span = tracing::info_span!("job", job_id = %d.job, model = %name, attempt = token);
            span.in_scope(|| match &outcome {
                Outcome::Succeeded(_) => tracing::debug!("job succeeded"),
                Outcome::Failed(e) => {
                    tracing::debug!(code = %e.code, message = %e.message, "job failed")
                }
            });
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
            record(&self.queue, name, &completions, self.retention).await;
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
    }
}

/// Records outcomes, retrying transient Redis failures: the result is only in this process's
/// memory until it is recorded. If the worker dies (or gives up at shutdown) meanwhile, the
/// lease expires and the job runs again elsewhere.
async fn record(queue: &Queue, model: &str, completions: &[Completion], retention: Retention) {
    let mut backoff = Backoff::new();
    let (_never_tx, mut never) = watch::channel(false);
    loop {
        match queue.complete(model, completions, retention).await {
            Ok(recorded) => {
                for (c, done) in completions.iter().zip(recorded) {
                    if !done {
                        tracing::info!(
                            job_id = %c.job,
                            model,
                            attempt = c.token,
                            "outcome discarded: the job was cancelled or taken over by another worker"
                        );
                    }
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, model, jobs = completions.len(), "recording outcomes failed; retrying");
                backoff.wait(&mut never).await;
            }
        }
    }
}

/// Collects finished batch tasks, logging any that panicked past their own guard.
fn reap(tasks: &mut JoinSet<()>) {
    while let Some(r) = tasks.try_join_next() {
        log_panic(r);
    }
}

fn log_panic(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        let panic = e.into_panic();
        tracing::error!(panic = %panic_message(panic.as_ref()), "a batch task panicked");
    }
}

/// Exponential backoff between retries against Redis, 50 ms up to 2 s; shutdown cuts a wait
/// short.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(50))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }
    async fn wait(&mut self, stop: &mut watch::Receiver<bool>) {
        tokio::select! {
            () = tokio::time::sleep(self.0) => {},
            () = stopped(stop) => {},
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}
