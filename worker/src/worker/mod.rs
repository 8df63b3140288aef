//! The whole worker: starts the inference threads, connects to Redis, wires its services (the
//! consume loop of model jobs and of the pipelines, lease renewal, model announcements,
//! the scheduled-job promoter, webhook deliveries, metrics) and stops them all with one
//! mechanism, a cancellation token: stop taking work, finish what it holds, hand back the
//! rest, exit.

mod services;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use inferq_shared::queue::{Queue, Retention, keys};
use tokio_util::sync::CancellationToken;

use crate::batch::{ModelJobs, Threads};
use crate::config::Config;
use crate::consume::{Consumer, HANDBACK_LIMIT, READ_BLOCK, Setup};
use crate::egress::{Egress, Limits};
use crate::embeddings::{EmbeddingConfig, EmbeddingJobs};
use crate::health::Health;
use crate::infer::models::ModelSpec;
use crate::infer::pool::Pool;
use crate::speech::SpeechJobs;
use crate::stats::{self, Counters, Load};
use crate::webhooks::{self, SigningKeys};

/// A worker, started and ready to run.
#[derive(Debug)]
pub(crate) struct Worker {
    config: Config,
    models: Vec<ModelSpec>,
    /// This worker's consumer name in the group.
    consumer: String,
    /// Non-blocking commands.
    queue: Queue,
    threads: Threads,
    counters: Arc<Counters>,
    /// Outbound HTTP through the address guard: inputs by URL, webhooks.
    egress: Egress,
    signing: SigningKeys,
    /// Model jobs' consume loop.
    model_jobs: Consumer<ModelJobs>,
    /// The speech pipeline's consume loop, when this worker serves its model.
    speech_jobs: Option<Consumer<SpeechJobs>>,
    /// The text embeddings pipeline's consume loop, when this worker serves its model.
    embedding_jobs: Option<Consumer<EmbeddingJobs>>,
    /// Stops what must outlive the drain (the metrics endpoint) once the worker is done.
    done: CancellationToken,
    /// What the probes on the metrics listener answer.
    health: Arc<Health>,
}

fn default_worker_id() -> String {
    let host = stats::hostname();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{}-{suffix}", std::process::id())
}

/// The threads' load as the heartbeat and the metrics report it.
fn load(threads: &Threads) -> Load {
    Load {
        threads: threads.threads(),
        busy: threads.busy(),
    }
}

impl Worker {
    /// Starts the inference threads (each opens its own sessions) and connects to Redis.
    pub(crate) async fn start(config: Config, models: Vec<ModelSpec>) -> anyhow::Result<Self> {
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        stats::install();
        let (specs, intra) = (models.clone(), config.intra_op_threads);
        let pool = tokio::task::spawn_blocking(move || Pool::start(&specs, threads, intra))
            .await
            .context("starting the inference threads")?
            .context("starting the inference threads")?;
        let threads = Threads::new(pool);
        let done = CancellationToken::new();
        let health = Arc::new(Health::default());
        if let Some(bind) = config.metrics_bind {
            let t = threads.clone();
            stats::serve(bind, move || load(&t), health.clone(), done.clone())
                .await
                .with_context(|| format!("serving metrics on {bind}"))?;
        }
        let queue = Queue::connect(&config.redis, Duration::ZERO).await?;
        queue
            .guard_partitions()
            .await
            .context("first contact with Redis (the connection settings, INFERQ_PARTITIONS)")?;
        let reader = Queue::connect(&config.redis, READ_BLOCK)
            .await?
            .with_aging(Duration::from_secs(config.priority_aging_secs));
        let consumer = config.worker_id.clone().unwrap_or_else(default_worker_id);
        let names: Arc<[String]> = models.iter().map(|m| m.info.name.clone()).collect();
        tracing::info!(
            worker = %consumer,
            threads = threads.threads(),
            models = ?names,
            redis = %config.redis.describe(),
            namespace = %config.redis.namespace,
            "inferq-worker started"
        );
        let counters = Arc::new(Counters::new());
        let signing = SigningKeys::from_config(&config.webhooks).map_err(anyhow::Error::msg)?;
        // The exceptions to the address guard come with each job (the API decides them).
        let egress = Egress::new(
            Default::default(),
            Limits {
                max_bytes: config.fetch_max_bytes,
                timeout: Duration::from_secs(config.fetch_timeout_secs.max(1)),
            },
        )
        .context("building the HTTP client for inputs by URL and webhooks")?;
        let setup = Setup {
            queue: queue.clone(),
            reader,
            consumer: consumer.clone(),
            names,
            lease: config.lease(),
            max_attempts: config.max_attempts,
            // Each record names its retention (the API writes it); this is for older records.
            retention: Retention::DEFAULT,
            grace: Duration::from_secs(config.shutdown_grace_secs),
            counters: counters.clone(),
        };
        let model_jobs = Consumer::new(
            ModelJobs::new(models.clone(), threads.clone(), egress.clone()),
            setup.clone(),
        );
        let speech = SpeechJobs::new(
            &models,
            config.speech_threads,
            config.speech_max_batch,
            config.speech_concurrency,
            queue.clone(),
            egress.clone(),
        )?;
        let speech_jobs = match speech {
            Some(kind) => {
                let name = keys::pipeline_queue(inferq_shared::pipeline::SPEECH_SEGMENTS);
                tracing::info!(pipeline = %name, concurrency = config.speech_concurrency, "serving the speech pipeline");
                Some(Consumer::new(
                    kind,
                    Setup {
                        // Its blocking reads on a connection of their own, without priority aging.
                        reader: Queue::connect(&config.redis, READ_BLOCK).await?,
                        names: Arc::from(vec![name]),
                        // Recordings go back at once: another worker redoes them from the start.
                        grace: Duration::ZERO,
                        ..setup.clone()
                    },
                ))
            }
            None => None,
        };
        let embeddings = EmbeddingJobs::new(
            &models,
            EmbeddingConfig {
                threads: config.embedding_threads,
                token_budget: config.embedding_token_budget,
                concurrency: config.embedding_concurrency,
            },
            queue.clone(),
        )?;
        let embedding_jobs = match embeddings {
            Some(kind) => {
                let name = keys::pipeline_queue(inferq_shared::pipeline::TEXT_EMBEDDINGS);
                tracing::info!(pipeline = %name, concurrency = config.embedding_concurrency, "serving the text embeddings pipeline");
                Some(Consumer::new(
                    kind,
                    Setup {
                        // Its blocking reads on a connection of their own.
                        reader: Queue::connect(&config.redis, READ_BLOCK).await?,
                        names: Arc::from(vec![name]),
                        ..setup
                    },
                ))
            }
            None => None,
        };
        Ok(Self {
            config,
            models,
            consumer,
            queue,
            threads,
            counters,
            egress,
            signing,
            model_jobs,
            speech_jobs,
            embedding_jobs,
            done,
            health,
        })
    }

    /// Runs every service until `shutdown` completes, then stops them: no new work is taken,
    /// jobs already started get the grace period (recordings go back at once), everything else
    /// held goes back to the queue. Returns within the grace period plus a few seconds whatever
    /// Redis does.
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        self.model_jobs.prepare(&stop).await;
        let names: Arc<[String]> = self.models.iter().map(|m| m.info.name.clone()).collect();
        let announcer = services::spawn_announcer(
            self.queue.clone(),
            self.consumer.clone(),
            self.models.iter().map(|m| (*m.info).clone()).collect(),
            self.counters.clone(),
            {
                let t = self.threads.clone();
                move || load(&t)
            },
            self.health.clone(),
            stop.clone(),
        );
        let promoter = services::spawn_promoter(self.queue.clone(), stop.clone());
        let deliverer = webhooks::spawn(
            self.queue.clone(),
            self.egress.clone(),
            self.signing.clone(),
            self.config.webhooks.clone(),
            stop.clone(),
        );
        let speech = self.speech_jobs.map(|s| tokio::spawn(s.run(stop.clone())));
        let embeddings = self
            .embedding_jobs
            .map(|s| tokio::spawn(s.run(stop.clone())));
        let models = tokio::spawn(self.model_jobs.consume(stop.clone()));
        self.health.serving();

        stop.cancelled().await;
        self.health.draining();
        for periodic in [announcer, promoter] {
            stop_within(periodic, HANDBACK_LIMIT).await;
        }
        // A round in flight finishes (or its claims come back after their lease).
        if !stop_within(deliverer, HANDBACK_LIMIT).await {
            tracing::info!("webhook deliveries in flight are left to their lease");
        }
        let withdraw = async {
            self.queue.withdraw_worker(&self.consumer, &names).await?;
            self.queue.remove_worker(&self.consumer).await
        };
        if let Ok(Err(e)) = tokio::time::timeout(HANDBACK_LIMIT, withdraw).await {
            tracing::debug!(error = %e, "withdrawing from the model registry failed");
        }
        let _ = models.await;
        if let Some(task) = speech {
            let _ = tokio::time::timeout(HANDBACK_LIMIT * 2, task).await;
        }
        if let Some(task) = embeddings {
            // Its running jobs get the grace period, as model jobs do.
            let grace = Duration::from_secs(self.config.shutdown_grace_secs);
            let _ = tokio::time::timeout(grace + HANDBACK_LIMIT * 2, task).await;
        }
        self.done.cancel();
        tracing::info!("inferq-worker stopped");
    }
}

/// Waits up to `limit` for a stopped service to return, then drops it where it stands (a
/// Redis call that hangs); `false` when it had to be dropped.
async fn stop_within(mut service: tokio::task::JoinHandle<()>, limit: Duration) -> bool {
    if tokio::time::timeout(limit, &mut service).await.is_ok() {
        return true;
    }
    service.abort();
    false
}
