//! The Redis queue protocol: every key name and every script lives in this module and nowhere
//! else. [`keys`] has the key layout and the job-hash fields; [`scripts`] the atomic steps of
//! a job's life (one Lua file each); [`registry`] the models workers publish; [`reply`] the
//! reading of stream replies; [`stored`] the job record as stored; [`ops`] what operators see
//! (workers, queue figures, failures, dead letters).

pub mod apikeys;
pub mod keys;
pub mod listing;
pub mod ops;
pub mod rate;
pub mod registry;
pub mod reply;
pub mod scripts;
pub mod stored;

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
pub use keys::{GROUP, Keys};
pub use listing::{Cursor, ListFilter, POSITION_LIMIT, Position};
pub use ops::{DeadLetter, Failure, ModelQueue, Overview, Retried, WorkerInfo};
pub use registry::{ANNOUNCE_INTERVAL, MODEL_LIVENESS, ModelStatus, Retired};
pub use reply::{Delivery, Entry};
pub use scripts::{
    Cancelled, Completion, NewJob, Outcome, PipelineSubmission, Retention, Submitted,
};
pub use stored::StoredJob;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    Protocol(&'static str),
}

impl QueueError {
    /// Whether Redis could not be reached or did not answer in time, or said it cannot serve
    /// right now (loading its data, busy with a script, failing over): a condition that passes
    /// by itself. Anything else (a script error, a wrong type, a reply this code does not
    /// understand) is a bug or a misconfiguration, and retrying will not fix it.
    pub fn is_unavailable(&self) -> bool {
        let Self::Redis(e) = self else {
            return false;
        };
        e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.code(),
                Some("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")
            )
    }
}

/// A handle on the queue: cheap to clone, reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct Queue {
    keys: Arc<Keys>,
    conn: ConnectionManager,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("keys", &self.keys).finish()
    }
}

impl Queue {
    /// Connects lazily: the first command connects, and commands issued while Redis is down
    /// fail after the configured timeout instead of hanging. `extra_timeout` lengthens the
    /// command timeout for a connection that issues blocking reads.
    pub async fn connect(cfg: &RedisConfig, extra_timeout: Duration) -> Result<Self, QueueError> {
        let client = cfg.client()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout()))
            .set_response_timeout(Some(cfg.timeout() + extra_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            keys: Arc::new(Keys::new(&cfg.namespace)),
            conn,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Reads up to `count` new entries of `model` for `consumer`, blocking up to `block` when
    /// nothing is waiting.
    pub async fn read(
        &self,
        consumer: &str,
        model: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, QueueError> {
        Ok(self
            .read_any(consumer, &[model], count, block)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// Reads up to `count` new entries from EACH of `models`' streams, blocking up to `block`
    /// for the first. Returns them with the index of their model.
    pub async fn read_any(
        &self,
        consumer: &str,
        models: &[&str],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(usize, Entry)>, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        for m in models {
            cmd.arg(self.keys.stream(m));
        }
        for _ in models {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(&mut self.conn.clone()).await?;
        let mut out = Vec::new();
        for (stream, entries) in reply::stream_pairs(reply)? {
            let Some(idx) = models.iter().position(|m| self.keys.stream(m) == stream) else {
                return Err(QueueError::Protocol("XREADGROUP named an unknown stream"));
            };
            for e in reply::parse_entries(entries)? {
                out.push((idx, e));
            }
        }
        Ok(out)
    }

    /// Takes over up to `count` entries of `model` whose lease (idle time) exceeds `lease`:
    /// their worker died or stalled.
    pub async fn reclaim(
        &self,
        consumer: &str,
        model: &str,
        lease: Duration,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.stream(model))
            .arg(GROUP)
            .arg(consumer)
            .arg(lease.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        let Value::Array(mut parts) = reply else {
            return Err(QueueError::Protocol("XAUTOCLAIM reply is not an array"));
        };
        if parts.len() < 2 {
            return Err(QueueError::Protocol("XAUTOCLAIM reply is too short"));
        }
        reply::parse_entries(parts.swap_remove(1))
    }
}
