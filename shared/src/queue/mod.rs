//! The Redis queue protocol: every key name and every script lives in this module and nowhere
//! else. [`keys`] has the key layout and the job-hash fields; [`scripts`] the atomic steps of
//! a job's life (one Lua file each), which [`lua`] turns into scripts with the names they share
//! with Rust written in; [`read`] a worker's reads; [`registry`] the models workers publish;
//! [`reply`] the reading of stream replies; [`stored`] the job record as stored; [`ops`] what
//! operators see (workers, queue figures, failures, dead letters).

pub mod apikeys;
pub mod batches;
mod conn;
pub mod dead;
pub mod events;
mod fields;
pub mod files;
pub mod hooks;
pub mod keys;
pub mod listing;
mod lua;
mod merge;
pub mod ops;
mod partition;
pub mod rate;
mod read;
pub mod registry;
pub mod reply;
pub mod scripts;
pub mod stored;
mod walk;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RedisConfig;
pub use dead::{DeadLetter, Retried};
pub use keys::{GROUP, Keys};
pub use listing::{Cursor, ListFilter, POSITION_LIMIT, Position};
pub use ops::{Failure, ModelQueue, Overview, WorkerInfo};
pub use partition::tag as partition_tag;
pub use read::USED_LANES_TTL;
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
    #[error("the Redis settings: {0}")]
    Config(String),
    #[error(
        "the submission reached the Redis master, but {acked} of the {wanted} replicas \
         INFERQ_REDIS_WAIT_REPLICAS asks for confirmed it in time; retry with the same \
         Idempotency-Key"
    )]
    NotReplicated { acked: u32, wanted: u32 },
}

impl QueueError {
    /// Whether Redis could not be reached or did not answer in time, or said it cannot serve
    /// right now (loading its data, busy with a script, failing over): a condition that passes
    /// by itself. Anything else (a script error, a wrong type, a reply this code does not
    /// understand) is a bug or a misconfiguration, and retrying will not fix it.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            Self::Redis(e) => e,
            Self::NotReplicated { .. } => return true,
            _ => return false,
        };
        // A failover in progress: no sentinel names a reachable master yet, or the cluster
        // client lost the node it had for a slot.
        let failing_over = matches!(
            e.kind(),
            redis::ErrorKind::MasterNameNotFoundBySentinel
                | redis::ErrorKind::NoValidReplicasFoundBySentinel
                | redis::ErrorKind::ClusterConnectionNotFound
        );
        // Each server error is looked at, a pipeline's (a submission and its `WAIT`) one by
        // one: the error's own code names only a first one the client library knows.
        let server_says = || {
            e.clone()
                .into_server_errors()
                .is_some_and(|items| items.iter().any(|(_, s)| passes(s.code())))
        };
        failing_over
            || e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || server_says()
    }
}

/// Whether a Redis error code names a condition that passes by itself. `UNBLOCKED`: a `WAIT`
/// (or another blocking command) ended because the node stopped being a master, as in a
/// failover that turns the old master into a replica.
fn passes(code: &str) -> bool {
    matches!(
        code,
        "LOADING"
            | "BUSY"
            | "MASTERDOWN"
            | "TRYAGAIN"
            | "CLUSTERDOWN"
            | "READONLY"
            | "NOREPLICAS"
            | "UNBLOCKED"
    )
}

/// A handle on the queue: cheap to clone, reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct Queue {
    /// The namespace's own keys (`{ns}`: registry, workers, API keys, files, batches).
    keys: Arc<Keys>,
    /// The keys of every partition of the namespace's jobs (the first is `keys` when there is
    /// one partition).
    parts: Arc<partition::Partitions>,
    /// The partition a worker's read starts at next (see [`Queue::read`]).
    turn: Arc<std::sync::atomic::AtomicUsize>,
    /// Counts webhook claim rounds: each starts one partition further
    /// ([`Queue::claim_hooks`]).
    hook_turn: Arc<std::sync::atomic::AtomicUsize>,
    /// New ids given so far (see [`Queue::new_id`]).
    next_id: Arc<std::sync::atomic::AtomicU64>,
    conn: conn::Conn,
    /// On a cluster with several partitions, the connections a blocking read watches them all
    /// on ([`Queue::read_any`]), made on the first one; `None` elsewhere.
    watch: Option<Arc<watch::Watch>>,
    /// The connection submissions write on and `WAIT` for: a connection of its own when
    /// `INFERQ_REDIS_WAIT_REPLICAS` asks for replicas (a `WAIT` holds up every command queued
    /// behind it on its connection, which should not be a status read), else `conn`.
    submit_conn: conn::Conn,
    /// Holds a submission's answer until `INFERQ_REDIS_WAIT_REPLICAS` replicas have it.
    commit: Arc<conn::commit::Commit>,
    /// Reads count a waiting entry one priority level higher per this period; zero for strict
    /// priority ([`Queue::with_aging`]).
    aging: Duration,
    /// Per partition and queue, whether its used-lanes set named a lane besides the default one, and when
    /// that was read: see [`Queue::read`].
    lanes_seen: Arc<std::sync::Mutex<LanesSeen>>,
    /// How long a job's record is kept once final when the job names no time of its own:
    /// written into every record this queue submits ([`Queue::with_retention`]), so the steps
    /// that end the job (in any process) keep it that long.
    retention: Retention,
    /// The exceptions to the address guard written with every job this queue submits
    /// ([`Queue::with_fetch_allow`]); empty for none.
    fetch_allow: String,
}

/// Per (partition, queue): when its used-lanes set was read and whether it named a lane.
type LanesSeen = HashMap<(usize, String), (std::time::Instant, bool)>;

/// The default of [`Queue::with_aging`].
pub const DEFAULT_AGING: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("keys", &self.keys).finish()
    }
}

impl Queue {
    /// Connects lazily, in the mode the settings name (one node, a cluster, or the master
    /// the sentinels name): the first command connects, and commands issued while Redis is
    /// down fail after the configured timeout instead of hanging. `extra_timeout` lengthens
    /// the command timeout for a connection that issues blocking reads.
    pub async fn connect(cfg: &RedisConfig, extra_timeout: Duration) -> Result<Self, QueueError> {
        let wait = Duration::from_millis(cfg.redis_wait_timeout_ms);
        let conn = conn::Conn::connect(cfg, extra_timeout)?;
        let submit_conn = if cfg.redis_wait_replicas > 0 {
            conn::Conn::connect(cfg, extra_timeout + wait)?
        } else {
            conn.clone()
        };
        Ok(Self {
            keys: Arc::new(Keys::new(&cfg.namespace)),
            parts: Arc::new(partition::Partitions::new(
                &cfg.namespace,
                cfg.partition_count(),
            )),
            turn: Arc::default(),
            hook_turn: Arc::default(),
            next_id: Arc::default(),
            watch: (cfg.partition_count() > 1 && conn.is_cluster())
                .then(|| Arc::new(watch::Watch::new(cfg, extra_timeout))),
            conn,
            submit_conn,
            commit: Arc::new(conn::commit::Commit::new(cfg.redis_wait_replicas, wait)),
            aging: DEFAULT_AGING,
            lanes_seen: Arc::default(),
            retention: Retention::DEFAULT,
            fetch_allow: String::new(),
        })
    }

    /// Runs the submission script `write` on the submit connection and answers once the
    /// replicas `INFERQ_REDIS_WAIT_REPLICAS` asks for hold what it wrote (at once when it asks
    /// for none); `wrote` says whether a reply is of a call that wrote anything.
    pub(crate) async fn commit<T: redis::FromRedisValue>(
        &self,
        write: &redis::ScriptInvocation<'_>,
        wrote: impl Fn(&T) -> bool,
    ) -> Result<T, QueueError> {
        self.commit.write(&self.submit_conn, write, wrote).await
    }

    /// The same queue, writing `retention` into the record of every job it submits that names
    /// no retention of its own (the API's `INFERQ_RESULT_TTL_SECS`). A worker keeps a record
    /// as long as it says; only a record written before records named their retention falls
    /// back to [`Retention::DEFAULT`].
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The same queue, writing `allow` (the API's `INFERQ_FETCH_ALLOW`) with every job it
    /// submits, in its stream entry and record, so the worker that fetches the job's inputs
    /// and delivers its webhooks guards them with the list the API checked them against: one
    /// side decides, the other cannot disagree. A job without it (none was set, or it was
    /// submitted before jobs carried it) is fetched with no exception.
    pub fn with_fetch_allow(mut self, allow: &crate::egress::Allow) -> Self {
        self.fetch_allow = allow.to_string();
        self
    }

    /// The same queue, its reads counting a waiting job one priority level higher for every
    /// `aging` it has waited (zero: strict priority).
    pub fn with_aging(mut self, aging: Duration) -> Self {
        self.aging = aging;
        self
    }

    /// The namespace's own keys (see [`Queue::partition_keys`] for the jobs').
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The keys of partition `p` (0 to [`Queue::partitions`] - 1).
    pub fn partition_keys(&self, p: usize) -> &Keys {
        &self.parts.parts[p]
    }

    /// The keys of job `id`'s partition.
    pub fn job_keys(&self, id: crate::job::JobId) -> &Keys {
        self.parts.of(id)
    }

    /// Every partition's keys, with their numbers.
    pub(crate) fn each_partition(&self) -> impl Iterator<Item = (usize, &Keys)> {
        self.parts.parts.iter().enumerate()
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    /// Every script of the queue loads: each name it uses is known (an unknown one panics
    /// when it loads), and the preludes are in front of the scripts that call them.
    #[test]
    fn every_script_loads() {
        let mut all = super::scripts::all();
        all.extend([
            LazyLock::force(&super::read::READ),
            LazyLock::force(&super::dead::RETRY),
            LazyLock::force(&super::hooks::CLAIM),
            LazyLock::force(&super::hooks::DONE),
            LazyLock::force(&super::listing::POSITION),
            LazyLock::force(&super::ops::STATS),
            LazyLock::force(&super::rate::RATE),
            LazyLock::force(&super::registry::PRUNE),
            LazyLock::force(&super::registry::RETIRE),
        ]);
        all.extend(super::batches::scripts());
        assert_eq!(all.len(), 23);
    }
}
