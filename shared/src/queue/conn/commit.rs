//! Durability before the answer (`INFERQ_REDIS_WAIT_REPLICAS`): a submission is acknowledged
//! only once that many replicas hold it. Redis's `WAIT` blocks until the replicas have every
//! write its connection made before it, so a submission's write and its `WAIT` go out as one
//! request (a pipeline of the two): one request is never split over two connections. Sent
//! apart, a connection lost between them would make the `WAIT` run on a fresh connection that
//! wrote nothing, which Redis answers at once with every replica still connected, however far
//! behind. Submissions still share the `WAIT`: the jobs that arrive together go in one write
//! (the API's group commit, a batch, a group), and that write's `WAIT` covers them all.

use std::time::Duration;

use redis::{FromRedisValue, ScriptInvocation, ServerErrorKind};

use super::Conn;
use crate::queue::QueueError;

/// The replicas a submission waits for, and for how long at most.
pub(crate) struct Commit {
    replicas: u32,
    timeout: Duration,
}

impl Commit {
    pub(crate) fn new(replicas: u32, timeout: Duration) -> Self {
        Self { replicas, timeout }
    }

    /// Runs the script `write` on `conn`; when replicas are asked for, also its `WAIT`, in the
    /// same request. A reply for which `wrote` says the script wrote something is returned
    /// only once the replicas hold it: else [`QueueError::NotReplicated`] when fewer did
    /// within the timeout (the write is on the master, and may be lost if it fails before a
    /// replica copies it).
    pub(crate) async fn write<T: FromRedisValue>(
        &self,
        conn: &Conn,
        write: &ScriptInvocation<'_>,
        wrote: impl Fn(&T) -> bool,
    ) -> Result<T, QueueError> {
        let mut conn = conn.clone();
        if self.replicas == 0 {
            return Ok(write.invoke_async(&mut conn).await?);
        }
        let mut pipe = redis::pipe();
        pipe.invoke_script(write)
            .cmd("WAIT")
            .arg(self.replicas)
            .arg(self.timeout.as_millis() as u64);
        let (reply, acked): (T, u32) = match pipe.query_async(&mut conn).await {
            // The script was not run (Redis restarted, or a new node): load it, send both again.
            Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                write.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            answer => answer?,
        };
        if acked < self.replicas && wrote(&reply) {
            return Err(QueueError::NotReplicated {
                acked,
                wanted: self.replicas,
            });
        }
        Ok(reply)
    }
}
