//! Telling requests that a job changed: the long-polls waiting for a job to end
//! ([`waiters`]) and the event streams following a job ([`watchers`]), all fed by one
//! subscription to the queue's job events per process.

pub(crate) mod unfinished;
pub(crate) mod waiters;
pub(crate) mod watchers;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inferq_shared::config::RedisConfig;
use inferq_shared::queue::events::{EventChannels, JobEvents};

pub(crate) use waiters::WaitGuard;
pub(crate) use watchers::{JobWatch, JobWatchers};

/// The waiters and watchers of one process.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    pub(crate) waiters: waiters::Waiters,
    /// The jobs this process submitted that have not ended.
    pub(crate) unfinished: unfinished::Unfinished,
    /// The event streams open on this process, by job.
    pub(crate) watchers: Arc<JobWatchers>,
}

impl Notifier {
    /// Subscribes to the queue's job events for as long as this notifier lives, reconnecting
    /// with backoff when Redis goes away. One connection serves every waiting client and every
    /// event stream.
    pub(crate) fn spawn_listener(self: &Arc<Self>, redis: RedisConfig, channels: EventChannels) {
        let notifier = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match JobEvents::subscribe(&redis, &channels).await {
                    Ok(mut events) => {
                        tracing::debug!(channels = %channels.describe(), "subscribed to job events");
                        backoff = Duration::from_millis(100);
                        // Changes made while unsubscribed were not heard: streams read again.
                        if let Some(n) = notifier.upgrade() {
                            n.unfinished.subscribed();
                            n.watchers.notify_all();
                        }
                        while let Some((id, status)) = events.next().await {
                            let Some(n) = notifier.upgrade() else { return };
                            if status.is_terminal() {
                                n.unfinished.forget(id);
                                n.waiters.notify(id);
                            }
                            n.watchers.notify(id);
                        }
                        if let Some(n) = notifier.upgrade() {
                            n.unfinished.unsubscribed();
                        }
                        tracing::warn!("job event subscription lost; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe to job events; retrying")
                    }
                }
                if notifier.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}
