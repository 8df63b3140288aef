//! Exponential backoff between retries against Redis, 50 ms up to 2 s.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The next wait; shutdown cuts a wait short.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(50))
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }

    /// Waits the next delay, or until `stop`.
    pub(crate) async fn wait(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = tokio::time::sleep(self.0) => {},
            () = stop.cancelled() => {},
        }
        self.grow();
    }

    /// Waits the next delay whatever happens meanwhile: for work that must be done even while
    /// the worker stops (recording an outcome it holds).
    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(self.0).await;
        self.grow();
    }

    fn grow(&mut self) {
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}
