//! Shared API state: the queue handle, a short-lived cache of model metadata, and the waiters
//! of `GET /status/<id>?wait=` and the event streams of `GET /jobs/<id>/events`, all fed by one
//! Redis pub/sub subscription per process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use inferq_shared::JobStatus;
use inferq_shared::job::JobId;
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::{Overview, Queue, QueueError};
use tokio::sync::{Notify, watch};

use crate::Config;
use crate::submitter::Submitter;
use crate::watchers::JobWatchers;

/// How long model metadata is trusted before it is read again. Workers announce changes at
/// start, so a new model becomes visible within this time.
const MODEL_CACHE_TTL: Duration = Duration::from_secs(1);

/// Lower bound between two refreshes triggered by an unknown model name, so a client sending
/// garbage names cannot turn every request into a Redis round trip.
const MISS_REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Longest a queue overview is served from memory.
pub const OVERVIEW_MAX_AGE: Duration = Duration::from_secs(1);

pub struct AppState {
    pub config: Config,
    pub queue: Queue,
    models: RwLock<ModelCache>,
    waiters: Mutex<HashMap<JobId, Waiter>>,
    /// The event streams open on this process, by job.
    pub watchers: Arc<JobWatchers>,
    /// Turns true when the server starts shutting down; long-polls answer at once then.
    shutdown: watch::Receiver<bool>,
    /// The last queue overview read from Redis, and when.
    overview: tokio::sync::Mutex<Option<(Instant, Arc<Overview>)>>,
    /// Submits single jobs, several per Redis call when they arrive together; started by the
    /// first submission.
    submitter: std::sync::OnceLock<Submitter>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

struct ModelCache {
    models: Arc<HashMap<String, Arc<ModelInfo>>>,
    refreshed: Option<Instant>,
}

struct Waiter {
    signal: Arc<Finished>,
    count: usize,
}

/// A registration to be woken when a job turns terminal; deregisters on drop.
#[derive(Debug)]
pub struct WaitGuard<'a> {
    state: &'a AppState,
    id: JobId,
    pub signal: Arc<Finished>,
}

/// Wakes the requests waiting for one job. `fired` stays set once the job turned terminal, so
/// a request that registered but was not yet waiting (still submitting, still reading) does
/// not miss the event: `Notify::notify_waiters` keeps no permit.
#[derive(Debug, Default)]
pub struct Finished {
    pub notify: Notify,
    fired: AtomicBool,
}

impl Finished {
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = self.state.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waiters.get_mut(&self.id) {
            w.count -= 1;
            if w.count == 0 {
                waiters.remove(&self.id);
            }
        }
    }
}

impl AppState {
    /// `shutdown` turns true when the server starts shutting down.
    pub fn new(config: Config, queue: Queue, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            config,
            queue,
            shutdown,
            models: RwLock::new(ModelCache {
                models: Arc::default(),
                refreshed: None,
            }),
            waiters: Mutex::new(HashMap::new()),
            watchers: Arc::default(),
            overview: tokio::sync::Mutex::new(None),
            submitter: std::sync::OnceLock::new(),
        }
    }

    /// The group-commit submitter of single jobs (`submitter.rs`).
    pub(crate) fn submitter(&self) -> &Submitter {
        self.submitter.get_or_init(|| {
            Submitter::start(
                self.queue.clone(),
                self.config.max_queued,
                Duration::from_secs(self.config.idempotency_ttl_secs),
            )
        })
    }

    /// The queue overview (per-model figures, dead letters, workers), read from Redis at most
    /// once per [`OVERVIEW_MAX_AGE`]: scrapes and dashboards of every replica agree, and many
    /// of them cost Redis one read per second.
    pub async fn overview(&self) -> Result<Arc<Overview>, QueueError> {
        let mut cached = self.overview.lock().await;
        if let Some((at, o)) = cached.as_ref()
            && at.elapsed() < OVERVIEW_MAX_AGE
        {
            return Ok(o.clone());
        }
        let fresh = Arc::new(self.queue.overview().await?);
        *cached = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Completes once the server starts shutting down.
    pub async fn shutting_down(&self) {
        let _ = self.shutdown.clone().wait_for(|s| *s).await;
    }

    /// Looks a model up, reading Redis when the cache is stale or misses. While Redis is
    /// unreachable a cached entry is still served (submission will then report the outage).
    pub async fn model(&self, name: &str) -> Result<Option<Arc<ModelInfo>>, QueueError> {
        let (hit, age) = {
            let cache = self.models.read().unwrap_or_else(|p| p.into_inner());
            (
                cache.models.get(name).cloned(),
                cache.refreshed.map(|t| t.elapsed()),
            )
        };
        let stale = match (&hit, age) {
            (_, None) => true,
            (Some(_), Some(age)) => age > MODEL_CACHE_TTL,
            (None, Some(age)) => age > MISS_REFRESH_INTERVAL,
        };
        if !stale {
            return Ok(hit);
        }
        match self.queue.known_models().await {
            Ok(list) => {
                let models: HashMap<_, _> = list
                    .into_iter()
                    .map(|m| (m.name.clone(), Arc::new(m)))
                    .collect();
                let models = Arc::new(models);
                let found = models.get(name).cloned();
                *self.models.write().unwrap_or_else(|p| p.into_inner()) = ModelCache {
                    models,
                    refreshed: Some(Instant::now()),
                };
                Ok(found)
            }
            Err(_) if hit.is_some() => Ok(hit),
            Err(e) => Err(e),
        }
    }

    /// Names of the models in the cache, sorted, for error messages.
    pub fn cached_model_names(&self) -> Vec<String> {
        let cache = self.models.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = cache.models.keys().cloned().collect();
        names.sort();
        names
    }

    /// Registers interest in `id` turning terminal. Register before reading the record, so an
    /// event between the read and the wait is not missed.
    pub fn wait_for(&self, id: JobId) -> WaitGuard<'_> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let w = waiters.entry(id).or_insert_with(|| Waiter {
            signal: Arc::default(),
            count: 0,
        });
        w.count += 1;
        WaitGuard {
            state: self,
            id,
            signal: w.signal.clone(),
        }
    }

    fn notify(&self, id: JobId) {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waiters.get(&id) {
            w.signal.fired.store(true, Ordering::SeqCst);
            w.signal.notify.notify_waiters();
        }
    }

    /// Subscribes to job events (terminal and progress channels) for the life of the process,
    /// reconnecting with backoff when Redis goes away. One connection serves every waiting
    /// client and every event stream.
    pub fn spawn_event_listener(self: &Arc<Self>) {
        let state = Arc::downgrade(self);
        let redis = self.config.redis.clone();
        let terminal = self.queue.keys().events();
        let progress = self.queue.keys().progress_events();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let result = async {
                    let client = redis.client()?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&[&terminal, &progress]).await?;
                    tracing::debug!(%terminal, %progress, "subscribed to job events");
                    Ok::<_, redis::RedisError>(pubsub.into_on_message())
                }
                .await;
                match result {
                    Ok(mut messages) => {
                        backoff = Duration::from_millis(100);
                        // Changes made while unsubscribed were not heard: streams read again.
                        if let Some(state) = state.upgrade() {
                            state.watchers.notify_all();
                        }
                        while let Some(msg) = messages.next().await {
                            let Some(state) = state.upgrade() else { return };
                            let payload = msg.get_payload_bytes();
                            for (id, status) in job_events(payload) {
                                if status.is_terminal() {
                                    state.notify(id);
                                }
                                state.watchers.notify(id);
                            }
                        }
                        tracing::warn!("job event subscription lost; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe to job events; retrying")
                    }
                }
                if state.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// `<job id> <status>` lines → the jobs and their new status; unreadable lines are skipped.
fn job_events(payload: &[u8]) -> impl Iterator<Item = (JobId, JobStatus)> + '_ {
    std::str::from_utf8(payload)
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let (id, status) = line.split_once(' ')?;
            Some((id.parse().ok()?, JobStatus::parse(status)?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_messages_carry_one_line_per_job() {
        let (a, b) = (JobId::new(), JobId::new());
        let msg = format!("{a} succeeded\n{b} failed\nnot-an-id succeeded\n{a} running");
        let events: Vec<_> = job_events(msg.as_bytes()).collect();
        assert_eq!(
            events,
            [
                (a, JobStatus::Succeeded),
                (b, JobStatus::Failed),
                (a, JobStatus::Running)
            ]
        );
    }
}
