//! Durability before the answer (`INFERQ_REDIS_WAIT_REPLICAS`): a submission is acknowledged
//! only once that many replicas hold it. Redis's `WAIT` blocks until the replicas have every
//! write its connection made before it, so one `WAIT` covers all the submissions of a burst:
//! a submission whose write returned waits for the first `WAIT` sent after it (one at a time
//! per connection), and the submissions that arrive while a `WAIT` runs share the next one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Conn;
use crate::queue::QueueError;

/// The replicas a submission waits for, and the rounds of `WAIT` on one connection.
pub(crate) struct Commit {
    replicas: u32,
    timeout: Duration,
    /// Rounds sent so far (a round is counted just before its `WAIT` is sent).
    started: AtomicU64,
    /// The last finished round and the replicas its `WAIT` counted, or why it failed.
    finished: tokio::sync::Mutex<(u64, Result<u32, redis::RedisError>)>,
}

impl Commit {
    pub(crate) fn new(replicas: u32, timeout: Duration) -> Self {
        Self {
            replicas,
            timeout,
            started: AtomicU64::new(0),
            finished: tokio::sync::Mutex::new((0, Ok(0))),
        }
    }

    /// Returns once `replicas` replicas hold every write `conn` made before this call, or
    /// [`QueueError::NotReplicated`] when fewer did within the timeout (the write is on the
    /// master, and may be lost if it fails before a replica copies it).
    pub(crate) async fn wait(&self, conn: &Conn) -> Result<(), QueueError> {
        if self.replicas == 0 {
            return Ok(());
        }
        // The first round sent after this point covers this caller's writes.
        let covering = self.started.load(Ordering::SeqCst) + 1;
        let mut finished = self.finished.lock().await;
        if finished.0 < covering {
            let round = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            let acked: Result<u32, redis::RedisError> = redis::cmd("WAIT")
                .arg(self.replicas)
                .arg(self.timeout.as_millis() as u64)
                .query_async(&mut conn.clone())
                .await;
            *finished = (round, acked);
        }
        match &finished.1 {
            Ok(acked) if *acked >= self.replicas => Ok(()),
            Ok(acked) => Err(QueueError::NotReplicated {
                acked: *acked,
                wanted: self.replicas,
            }),
            Err(e) => Err(QueueError::Redis(e.clone())),
        }
    }
}
