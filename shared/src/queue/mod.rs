//! The Redis queue protocol: every key name and every script lives in this module and nowhere
//! else. [`keys`] has the key layout and the job-hash fields; [`scripts`] the atomic steps of
//! a job's life (one Lua file each); [`registry`] the models workers publish; [`reply`] the
//! reading of stream replies; [`stored`] the job record as stored; [`ops`] what operators see
//! (workers, queue figures, failures, dead letters).

pub mod apikeys;
pub mod dead;
pub mod events;
mod fields;
pub mod hooks;
pub mod keys;
pub mod listing;
pub mod ops;
pub mod rate;
pub mod registry;
pub mod reply;
pub mod scripts;
pub mod stored;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::job::Priority;
use crate::time;
pub use dead::{DeadLetter, Retried};
pub use keys::{GROUP, Keys};
pub use listing::{Cursor, ListFilter, POSITION_LIMIT, Position};
pub use ops::{Failure, ModelQueue, Overview, WorkerInfo};
pub use registry::{ANNOUNCE_INTERVAL, MODEL_LIVENESS, ModelStatus, Retired};
pub use reply::{Delivery, Entry, EntryRef};
pub use scripts::{
    Cancelled, Completion, NewJob, Outcome, PipelineSubmission, Retention, Submitted,
};
pub use stored::StoredJob;

#[derive(Debug, Clone, thiserror::Error)]
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
    /// Reads count a waiting entry one priority level higher per this period; zero for strict
    /// priority ([`Queue::with_aging`]).
    aging: Duration,
    /// Per queue, whether its used-lanes set named a lane besides the default one, and when
    /// that was read: see [`Queue::read`].
    lanes_seen: Arc<std::sync::Mutex<HashMap<String, (std::time::Instant, bool)>>>,
}

/// How long [`Queue::read`] trusts what it read of a queue's used-lanes set.
pub const USED_LANES_TTL: Duration = Duration::from_secs(1);

/// The default of [`Queue::with_aging`].
pub const DEFAULT_AGING: Duration = Duration::from_secs(30);

static READ: LazyLock<redis::Script> =
    LazyLock::new(|| keys::lua_script(include_str!("lua/read.lua")));

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
            aging: DEFAULT_AGING,
            lanes_seen: Arc::default(),
        })
    }

    /// The same queue, its reads counting a waiting job one priority level higher for every
    /// `aging` it has waited (zero: strict priority).
    pub fn with_aging(mut self, aging: Duration) -> Self {
        self.aging = aging;
        self
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

    /// Reads up to `count` new entries of `queue` for `consumer`: first without blocking,
    /// across its priority lanes in rank order (`read.lua`); when none waits and `block` is
    /// given, then blocking up to `block` on every lane at once.
    ///
    /// A queue whose jobs all had the default priority so far (its used-lanes set is empty) is
    /// read with a plain `XREADGROUP` of its default lane: ranking has nothing to rank, and
    /// `read.lua` would copy every entry through Lua (about a third of Redis's CPU per read).
    /// What the set holds is re-read at most every [`USED_LANES_TTL`], and always before a
    /// blocking read: a lane's first entry ever is therefore ranked within a second (an idle
    /// worker sees it at once).
    pub async fn read(
        &self,
        consumer: &str,
        queue: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, QueueError> {
        let (others, just_read) = self.other_lanes(queue, false).await?;
        let got = if others {
            self.read_ranked(consumer, queue, count).await?
        } else {
            self.read_default_lane(consumer, queue, count).await?
        };
        if !got.is_empty() || block.is_none() {
            return Ok(got);
        }
        // Nothing waits in the default lane: a lane used for the first time since the set was
        // read is ranked before the worker blocks.
        if !others && !just_read && self.other_lanes(queue, true).await?.0 {
            let got = self.read_ranked(consumer, queue, count).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
        Ok(self
            .read_any(consumer, &[queue], count, block)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// Whether `queue` has lanes besides its default one in use (its used-lanes set is not
    /// empty), as last read if that was less than [`USED_LANES_TTL`] ago, unless `refresh`;
    /// and whether the set was read just now.
    async fn other_lanes(&self, queue: &str, refresh: bool) -> Result<(bool, bool), QueueError> {
        if self.keys.lanes(queue).len() <= 1 {
            return Ok((false, true));
        }
        if !refresh
            && let Some(&(at, any)) = self.lanes_seen().get(queue)
            && at.elapsed() < USED_LANES_TTL
        {
            return Ok((any, false));
        }
        let members: u64 = redis::cmd("SCARD")
            .arg(self.keys.used_lanes(queue))
            .query_async(&mut self.conn.clone())
            .await?;
        self.lanes_seen()
            .insert(queue.to_owned(), (std::time::Instant::now(), members > 0));
        Ok((members > 0, true))
    }

    fn lanes_seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, (std::time::Instant, bool)>> {
        self.lanes_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The non-blocking read of a queue that has only its default lane in use.
    async fn read_default_lane(
        &self,
        consumer: &str,
        queue: &str,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(self.keys.stream(queue))
            .arg(">")
            .query_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::new();
        for (_, entries) in reply::stream_pairs(reply)? {
            out.extend(reply::parse_entries(entries, Priority::DEFAULT)?);
        }
        Ok(out)
    }

    /// The non-blocking part of [`Queue::read`].
    async fn read_ranked(
        &self,
        consumer: &str,
        queue: &str,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let lanes = self.keys.lanes(queue);
        let Some((top, _)) = lanes.first() else {
            return Ok(Vec::new());
        };
        let mut inv = READ.prepare_invoke();
        for (_, key) in &lanes {
            inv.key(key);
        }
        inv.key(self.keys.used_lanes(queue))
            .arg(GROUP)
            .arg(consumer)
            .arg(count)
            .arg(time::now_ms())
            .arg(self.aging.as_millis() as u64)
            .arg(top.level())
            .arg(Priority::DEFAULT.level());
        let reply: Value = inv.invoke_async(&mut self.conn.clone()).await?;
        let Value::Array(parts) = reply else {
            return Err(QueueError::Protocol("read reply is not an array"));
        };
        let mut out = Vec::new();
        let mut parts = parts.into_iter();
        while let (Some(lane), Some(entries)) = (parts.next(), parts.next()) {
            let Value::Int(lane) = lane else {
                return Err(QueueError::Protocol("read reply names no lane"));
            };
            let Some((priority, _)) = usize::try_from(lane - 1).ok().and_then(|i| lanes.get(i))
            else {
                return Err(QueueError::Protocol("read reply names an unknown lane"));
            };
            out.extend(reply::parse_entries(entries, *priority)?);
        }
        Ok(out)
    }

    /// Reads up to `count` new entries from EACH lane of `queues`, blocking up to `block` for
    /// the first. Returns them with the index of their queue, higher lanes first. (Lanes that
    /// receive entries in the same instant can give more than `count` in all.)
    pub async fn read_any(
        &self,
        consumer: &str,
        queues: &[&str],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(usize, Entry)>, QueueError> {
        let mut streams: HashMap<String, (usize, Priority)> = HashMap::new();
        let mut names = Vec::new();
        for (i, q) in queues.iter().enumerate() {
            for (priority, key) in self.keys.lanes(q) {
                names.push(key.clone());
                streams.insert(key, (i, priority));
            }
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&names);
        for _ in &names {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(&mut self.conn.clone()).await?;
        let mut out = Vec::new();
        for (stream, entries) in reply::stream_pairs(reply)? {
            let Some(&(idx, priority)) = streams.get(&stream) else {
                return Err(QueueError::Protocol("XREADGROUP named an unknown stream"));
            };
            for e in reply::parse_entries(entries, priority)? {
                out.push((idx, e));
            }
        }
        // Highest priority first, whatever order Redis answered in.
        out.sort_by_key(|(idx, e)| (*idx, std::cmp::Reverse(e.entry().priority)));
        Ok(out)
    }

    /// Takes over up to `count` entries of `queue` whose lease (idle time) exceeds `lease`:
    /// their worker died or stalled. Higher lanes first.
    pub async fn reclaim(
        &self,
        consumer: &str,
        queue: &str,
        lease: Duration,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let mut out = Vec::new();
        for (priority, key) in self.keys.lanes(queue) {
            if out.len() >= count {
                break;
            }
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(key)
                .arg(GROUP)
                .arg(consumer)
                .arg(lease.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(count - out.len())
                .query_async(&mut self.conn.clone())
                .await?;
            let Value::Array(mut parts) = reply else {
                return Err(QueueError::Protocol("XAUTOCLAIM reply is not an array"));
            };
            if parts.len() < 2 {
                return Err(QueueError::Protocol("XAUTOCLAIM reply is too short"));
            }
            out.extend(reply::parse_entries(parts.swap_remove(1), priority)?);
        }
        Ok(out)
    }
}
