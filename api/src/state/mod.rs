//! What one API process shares between requests: the configuration, the queue handle, the
//! model cache, the waiters and watchers of job events, the cached queue overview and the
//! group-commit submitter; and the tenant-scoped job reads ([`reads`]).

mod reads;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use inferq_shared::job::JobId;
use inferq_shared::queue::{Overview, Queue, QueueError};
use tokio::sync::watch;

use crate::caller::Principal;
use crate::config::Config;
use crate::models::ModelCache;
use crate::notify::{JobWatchers, Notifier, WaitGuard};
use crate::submit::{Desk, Submitter};

pub(crate) use reads::{read_record, read_stored, wait_for_job, wait_for_record};

/// Longest a queue overview is served from memory.
pub const OVERVIEW_MAX_AGE: Duration = Duration::from_secs(1);

pub struct AppState {
    pub config: Config,
    pub queue: Queue,
    /// The models workers publish, cached.
    pub(crate) models: ModelCache,
    /// The requests waiting for jobs and the event streams following them.
    notifier: Arc<Notifier>,
    /// Turns true when the server starts shutting down; long-polls answer at once then.
    shutdown: watch::Receiver<bool>,
    /// The last queue overview read from Redis, and when.
    overview: tokio::sync::Mutex<Option<(Instant, Arc<Overview>)>>,
    /// Submits single jobs, several per Redis call when they arrive together; started by the
    /// first submission.
    submitter: OnceLock<Submitter>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// `shutdown` turns true when the server starts shutting down.
    pub fn new(config: Config, queue: Queue, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            config,
            models: ModelCache::new(queue.clone()),
            queue,
            notifier: Arc::default(),
            shutdown,
            overview: tokio::sync::Mutex::new(None),
            submitter: OnceLock::new(),
        }
    }

    /// Where `caller` submits jobs.
    pub(crate) fn desk<'a>(&'a self, caller: &'a Principal) -> Desk<'a> {
        let submitter = self.submitter.get_or_init(|| {
            Submitter::start(
                self.queue.clone(),
                self.config.max_queued,
                Duration::from_secs(self.config.idempotency_ttl_secs),
            )
        });
        Desk {
            config: &self.config,
            queue: &self.queue,
            models: &self.models,
            submitter,
            unfinished: &self.notifier.unfinished,
            caller,
        }
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

    /// Registers interest in `id` turning terminal. Register before reading the record, so an
    /// event between the read and the wait is not missed.
    pub(crate) fn wait_for(&self, id: JobId) -> WaitGuard<'_> {
        self.notifier.waiters.wait_for(id)
    }

    /// The tenant of `id` when this process submitted it and knows it has not ended.
    pub(crate) fn unfinished_tenant(&self, id: JobId) -> Option<String> {
        self.notifier.unfinished.running_for(id)
    }

    /// The event streams open on this process, by job.
    pub(crate) fn watchers(&self) -> &Arc<JobWatchers> {
        &self.notifier.watchers
    }

    /// Subscribes to job events for the life of this state (see [`Notifier`]).
    pub(crate) fn spawn_event_listener(&self) {
        self.notifier
            .spawn_listener(self.config.redis.clone(), self.queue.event_channels());
    }
}
