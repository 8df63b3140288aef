//! The Redis side of a worker: one loop reads only as many jobs as idle inference threads can
//! start, begins their attempts and hands each batch to a task that runs it on the pool and
//! records the outcomes. Lease renewal and model announcements run on tasks of their own.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use inferq_shared::job::JobId;
use inferq_shared::queue::{ANNOUNCE_INTERVAL, Delivery, EntryRef, Queue, Retention};
use tokio::sync::watch;
use tokio::task::JoinSet;

mod begin;
mod read;
mod task;

use read::ReadState;
pub(crate) use task::record;

use crate::Config;
use crate::batcher;
use crate::egress::{Egress, Limits};
use crate::lease::{self, Leases};
use crate::models::ModelSpec;
use crate::pool::{Pool, panic_message};
use crate::speech::run::SpeechWorker;
use crate::stats::{self, Counters};
use crate::webhooks::{self, SigningKeys};

/// Longest a blocking read waits, which bounds how late the loop notices shutdown.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// A group member with nothing pending and idle this long is a worker that left; it is removed
/// when a worker starts.
const CONSUMER_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Longest the shutdown spends handing jobs back after the grace period; what it could not
/// hand back is reclaimed by other workers once its lease expires.
const HANDBACK_LIMIT: Duration = Duration::from_secs(3);

/// Jobs per inference thread that may fetch their inputs by URL at once.
const FETCHES_PER_THREAD: usize = 4;

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
    counters: Arc<Counters>,
    /// The speech pipeline, when this worker serves its model.
    speech: Option<SpeechWorker>,
    /// Outbound HTTP through the address guard: inputs by URL, webhooks.
    egress: Egress,
    /// Jobs fetching their inputs by URL at once: [`FETCHES_PER_THREAD`] per inference thread.
    /// While every slot is taken the worker reads no more jobs, so URL jobs cannot pile up in
    /// one worker while others idle.
    fetch_slots: Arc<tokio::sync::Semaphore>,
    signing: SigningKeys,
}

fn default_worker_id() -> String {
    let host = stats::hostname();
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
        stats::install();
        let pool = Pool::start(&models, threads, config.intra_op_threads)
            .await
            .context("starting the inference threads")?;
        if let Some(bind) = config.metrics_bind {
            stats::serve(bind, pool.clone())
                .await
                .with_context(|| format!("serving metrics on {bind}"))?;
        }
        let queue = Queue::connect(&config.redis, Duration::ZERO).await?;
        let reader = Queue::connect(&config.redis, READ_BLOCK)
            .await?
            .with_aging(Duration::from_secs(config.priority_aging_secs));
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
        // Each record names its retention (the API writes it); this is for older records only.
        let retention = Retention::DEFAULT;
        let counters = Arc::new(Counters::new());
        let signing = SigningKeys::from_config(&config.webhooks).map_err(anyhow::Error::msg)?;
        let egress = Egress::new(
            Default::default(),
            Limits {
                max_bytes: config.fetch_max_bytes,
                timeout: Duration::from_secs(config.fetch_timeout_secs.max(1)),
            },
        )
        .context("building the HTTP client for inputs by URL and webhooks")?;
        let speech = SpeechWorker::new(
            &config,
            &models,
            queue.clone(),
            consumer.clone(),
            retention,
            counters.clone(),
            egress.clone(),
        )
        .await?;
        Ok(Self {
            speech,
            fetch_slots: Arc::new(tokio::sync::Semaphore::new(
                pool.threads() * FETCHES_PER_THREAD,
            )),
            egress,
            signing,
            leases: Leases::new(models.len()),
            names,
            config,
            models,
            consumer,
            queue,
            reader,
            pool,
            retention,
            counters,
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
        let promoter = spawn_promoter(self.queue.clone(), stop.clone());
        let deliverer = webhooks::spawn(
            self.queue.clone(),
            self.egress.clone(),
            self.signing.clone(),
            self.config.webhooks.clone(),
            stop.clone(),
        );
        let speech = self.speech.clone().map(|s| s.spawn(stop.clone()));

        let mut tasks = JoinSet::new();
        let mut pending: VecDeque<Batch> = VecDeque::new();
        let mut read_state = ReadState::default();
        let mut backoff = Backoff::new();
        loop {
            reap(&mut tasks);
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                s = self.fetch_slots.acquire() => drop(s),
                () = stopped(&mut stop) => break,
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
        promoter.abort();
        // A round in flight finishes (or its claims come back after their lease).
        let mut deliverer = deliverer;
        if tokio::time::timeout(HANDBACK_LIMIT, &mut deliverer)
            .await
            .is_err()
        {
            deliverer.abort();
            tracing::info!("webhook deliveries in flight are left to their lease");
        }
        let withdraw = async {
            self.queue
                .withdraw_worker(&self.consumer, &self.names)
                .await?;
            self.queue.remove_worker(&self.consumer).await
        };
        if let Ok(Err(e)) = tokio::time::timeout(HANDBACK_LIMIT, withdraw).await {
            tracing::debug!(error = %e, "withdrawing from the model registry failed");
        }
        self.drain(pending, tasks).await;
        if let Some(task) = speech {
            // It hands its recordings back to the queue itself.
            let _ = tokio::time::timeout(HANDBACK_LIMIT * 2, task).await;
        }
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

    async fn release(&self, model: usize, entries: &[(JobId, EntryRef, u64)]) {
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

    /// Announces the models, and describes the worker (`GET /workers`), every
    /// [`ANNOUNCE_INTERVAL`] until shutdown.
    fn spawn_announcer(&self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let (queue, consumer) = (self.queue.clone(), self.consumer.clone());
        let infos: Vec<_> = self.models.iter().map(|m| (*m.info).clone()).collect();
        let (counters, pool, names) =
            (self.counters.clone(), self.pool.clone(), self.names.clone());
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
                let me = counters.describe(&consumer, &names, &pool);
                if let Err(e) = queue.heartbeat_worker(&me).await {
                    tracing::debug!(error = %e, "publishing the worker's description failed");
                }
            }
        })
    }
}

/// How often scheduled jobs that are due move to their queues.
const PROMOTE_INTERVAL: Duration = Duration::from_millis(200);

/// Moves due scheduled jobs to their queues every [`PROMOTE_INTERVAL`] until shutdown. Every
/// worker runs one; the move is one Lua step per batch of jobs, so each job moves once.
fn spawn_promoter(queue: Queue, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROMOTE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if *stop.borrow() {
                return;
            }
            match queue.promote_due(1000).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(jobs = n, "scheduled jobs queued"),
                Err(e) => tracing::debug!(error = %e, "queueing due scheduled jobs failed"),
            }
        }
    })
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
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(50))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }
    pub(crate) async fn wait(&mut self, stop: &mut watch::Receiver<bool>) {
        tokio::select! {
            () = tokio::time::sleep(self.0) => {},
            () = stopped(stop) => {},
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}
