//! The Redis queue protocol: every key name and every script lives here and nowhere else.
//!
//! Layout, all under one namespace `ns` whose `{ns}` hash tag puts every key in one Redis
//! Cluster slot, so each multi-key script is legal there:
//! - `{ns}:job:<id>`: hash with model, status, created/started/finished_at, attempts, token,
//!   entry, deadline, worker, and result or error_code + error_message; it expires a
//!   configurable time after the job turns terminal.
//! - `{ns}:q:<model>`: stream of queued and in-flight jobs (`id`, `p` = request JSON), read by
//!   the consumer group [`GROUP`]; entries are deleted when acknowledged, so its length is the
//!   model's backlog.
//! - `{ns}:dead`: dead-letter stream of jobs that used up their attempts.
//! - `{ns}:models`: hash: model name → [`ModelInfo`] JSON, written by workers.
//! - `{ns}:models:seen`: sorted set: model name → last time a live worker announced it (ms).
//! - `{ns}:events`: pub/sub channel of terminal states, and `{ns}:events:progress` of the
//!   others; each message holds one `<job id> <status>` line per job of one atomic step.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, Value};
use serde_json::value::RawValue;

use crate::config::RedisConfig;
use crate::job::{JobError, JobId, JobRecord, JobStatus};
use crate::model::ModelInfo;
use crate::time::{now_ms, rfc3339_ms};

/// The one consumer group all workers join.
pub const GROUP: &str = "workers";

/// How often a worker re-announces the models it serves.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);

/// A model not announced for this long has no live worker and drops out of `GET /models`.
pub const MODEL_LIVENESS: Duration = Duration::from_secs(10);

static SUBMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/submit.lua")));
static START: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/start.lua")));
static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/complete.lua")));
static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
static PRUNE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/prune.lua")));
static CANCEL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cancel.lua")));

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    Protocol(&'static str),
}

/// Key names derived from the namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("{{{namespace}}}"),
        }
    }
    pub fn job(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }
    pub fn stream(&self, model: &str) -> String {
        format!("{}:q:{model}", self.prefix)
    }
    pub fn dead_letter(&self) -> String {
        format!("{}:dead", self.prefix)
    }
    pub fn models(&self) -> String {
        format!("{}:models", self.prefix)
    }
    pub fn models_seen(&self) -> String {
        format!("{}:models:seen", self.prefix)
    }
    /// Terminal state changes (what `?wait=` listens for).
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
    /// Non-terminal state changes (started, handed back), kept off the channel API processes
    /// subscribe to.
    pub fn progress_events(&self) -> String {
        format!("{}:events:progress", self.prefix)
    }
}

/// A job as a worker receives it from the stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry: String,
    pub job: JobId,
    pub payload: Vec<u8>,
}

/// What a worker reports for one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `{"outputs": [...]}` JSON.
    Succeeded(String),
    Failed(JobError),
}

/// One attempt's outcome, addressed by entry and fenced by token.
#[derive(Debug, Clone)]
pub struct Completion {
    pub job: JobId,
    pub entry: String,
    pub token: u64,
    pub outcome: Outcome,
}

/// The result of submitting a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// The model's stream already holds its configured maximum.
    QueueFull,
}

/// The result of a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    Cancelled,
    NotFound,
    AlreadyFinished(JobStatus),
}

/// Job timing settings the worker-side scripts need.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// How long a terminal job record stays readable.
    pub result_ttl: Duration,
}

/// A handle on the queue: cheap to clone, reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct Queue {
    keys: Arc<Keys>,
    conn: ConnectionManager,
}

impl Queue {
    /// Connects lazily: the first command connects, and commands issued while Redis is down
    /// fail after the configured timeout instead of hanging. `extra_timeout` lengthens the
    /// command timeout for a connection that issues blocking reads.
    pub async fn connect(cfg: &RedisConfig, extra_timeout: Duration) -> Result<Self, QueueError> {
        let client = redis::Client::open(cfg.redis_url.expose())?;
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

    /// Writes the job record and its stream entry in one step (`submit.lua`).
    pub async fn submit(
        &self,
        id: JobId,
        model: &str,
        payload: &[u8],
        max_queued: u64,
        deadline_ms: Option<u64>,
    ) -> Result<Submitted, QueueError> {
        let entry: Option<String> = SUBMIT
            .key(self.keys.job(id))
            .key(self.keys.stream(model))
            .arg(id.to_string())
            .arg(model)
            .arg(now_ms())
            .arg(payload)
            .arg(max_queued)
            .arg(deadline_ms.unwrap_or(0))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match entry {
            Some(_) => Submitted::Queued,
            None => Submitted::QueueFull,
        })
    }

    /// Reads a job record, or `None` for an unknown or expired id.
    pub async fn record(&self, id: JobId) -> Result<Option<JobRecord>, QueueError> {
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.job(id))
            .arg(&[
                "model",
                "status",
                "created_at",
                "started_at",
                "finished_at",
                "attempts",
                "result",
                "error_code",
                "error_message",
            ])
            .query_async(&mut self.conn.clone())
            .await?;
        let mut f = fields.into_iter();
        let mut next = || f.next().flatten();
        let (model, status) = (next(), next());
        let (Some(model), Some(status)) = (model, status) else {
            return Ok(None);
        };
        let status = JobStatus::parse(&status).ok_or(QueueError::Protocol("unknown job status"))?;
        let time = |v: Option<String>| v.and_then(|s| s.parse().ok()).map(rfc3339_ms);
        let (created_at, started_at, finished_at) = (time(next()), time(next()), time(next()));
        let attempts = next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let result = match next() {
            Some(json) => Some(
                RawValue::from_string(json)
                    .map_err(|_| QueueError::Protocol("stored result is not JSON"))?,
            ),
            None => None,
        };
        let error = match (next(), next()) {
            (Some(code), message) => Some(JobError {
                code,
                message: message.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Some(JobRecord {
            id,
            model,
            status,
            created_at,
            started_at,
            finished_at,
            attempts,
            result,
            error,
        }))
    }

    /// Cancels a job that has not finished (`cancel.lua`).
    pub async fn cancel(&self, id: JobId, retention: Retention) -> Result<Cancelled, QueueError> {
        let mut conn = self.conn.clone();
        let model: Option<String> = conn.hget(self.keys.job(id), "model").await?;
        let Some(model) = model else {
            return Ok(Cancelled::NotFound);
        };
        let before: Option<String> = CANCEL
            .key(self.keys.job(id))
            .key(self.keys.stream(&model))
            .arg(now_ms())
            .arg(retention.result_ttl.as_secs().max(1))
            .arg(self.keys.events())
            .arg(GROUP)
            .invoke_async(&mut conn)
            .await?;
        Ok(match before.as_deref().and_then(JobStatus::parse) {
            None => Cancelled::NotFound,
            Some(s) if s.is_terminal() => Cancelled::AlreadyFinished(s),
            Some(_) => Cancelled::Cancelled,
        })
    }

    /// Announces that this worker serves `model`; the API lists models announced within the
    /// liveness window.
    pub async fn announce_models(&self, models: &[ModelInfo]) -> Result<(), QueueError> {
        let now = now_ms();
        let mut pipe = redis::pipe();
        for m in models {
            let json = serde_json::to_string(m).map_err(|_| QueueError::Protocol("model info"))?;
            pipe.hset(self.keys.models(), &m.name, json).ignore();
            pipe.zadd(self.keys.models_seen(), &m.name, now).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Every model a worker ever announced under this namespace, live or not: jobs for a model
    /// whose workers are restarting still queue.
    pub async fn known_models(&self) -> Result<Vec<ModelInfo>, QueueError> {
        let all: HashMap<String, String> = self.conn.clone().hgetall(self.keys.models()).await?;
        Ok(all
            .into_values()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }

    /// Models some worker announced within `window`.
    pub async fn live_models(&self, window: Duration) -> Result<Vec<ModelInfo>, QueueError> {
        let mut conn = self.conn.clone();
        let since = now_ms().saturating_sub(window.as_millis() as u64);
        let names: Vec<String> = conn
            .zrangebyscore(self.keys.models_seen(), since, "+inf")
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let infos: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.models())
            .arg(&names)
            .query_async(&mut conn)
            .await?;
        Ok(infos
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }

    /// Creates the consumer group of a model's stream (and the stream) if missing. The group
    /// starts at the beginning, so jobs submitted before any worker existed are served.
    pub async fn ensure_group(&self, model: &str) -> Result<(), QueueError> {
        let res: Result<(), _> = self
            .conn
            .clone()
            .xgroup_create_mkstream(self.keys.stream(model), GROUP, "0")
            .await;
        match res {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(Into::into),
        }
    }

    /// Removes consumers of `model`'s group that hold nothing and were idle for `idle`: workers
    /// that are gone (`prune.lua`).
    pub async fn prune_consumers(&self, model: &str, idle: Duration) -> Result<u64, QueueError> {
        Ok(PRUNE
            .key(self.keys.stream(model))
            .arg(GROUP)
            .arg(idle.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// Reads up to `count` new entries of one of `models` for `consumer`, blocking up to
    /// `block` for the first. Returns them with the index of their model. `count` applies per
    /// stream, so with several models the caller may get up to `count` of each.
    pub async fn read(
        &self,
        consumer: &str,
        models: &[&str],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(usize, Delivery)>, QueueError> {
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
        for (stream, entries) in stream_pairs(reply)? {
            let Some(idx) = models.iter().position(|m| self.keys.stream(m) == stream) else {
                return Err(QueueError::Protocol("XREADGROUP named an unknown stream"));
            };
            for d in parse_entries(entries)? {
                out.push((idx, d));
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
    ) -> Result<Vec<Delivery>, QueueError> {
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
        parse_entries(parts.swap_remove(1))
    }

    /// Begins attempts on `deliveries` of `model` (`start.lua`); returns each one's fencing
    /// token, 0 for those not to run.
    pub async fn start(
        &self,
        model: &str,
        consumer: &str,
        deliveries: &[Delivery],
        max_attempts: u32,
        retention: Retention,
    ) -> Result<Vec<u64>, QueueError> {
        let mut inv = START.prepare_invoke();
        inv.key(self.keys.stream(model))
            .key(self.keys.dead_letter());
        for d in deliveries {
            inv.key(self.keys.job(d.job));
        }
        inv.arg(GROUP)
            .arg(now_ms())
            .arg(max_attempts)
            .arg(self.keys.events())
            .arg(retention.result_ttl.as_secs().max(1))
            .arg(consumer)
            .arg(self.keys.progress_events());
        for d in deliveries {
            inv.arg(&d.entry);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Records outcomes (`complete.lua`); returns for each whether it was recorded (not fenced
    /// off by a newer attempt, not cancelled meanwhile).
    pub async fn complete(
        &self,
        model: &str,
        completions: &[Completion],
        retention: Retention,
    ) -> Result<Vec<bool>, QueueError> {
        let mut inv = COMPLETE.prepare_invoke();
        inv.key(self.keys.stream(model));
        for c in completions {
            inv.key(self.keys.job(c.job));
        }
        inv.arg(GROUP)
            .arg(now_ms())
            .arg(retention.result_ttl.as_secs().max(1))
            .arg(self.keys.events());
        for c in completions {
            inv.arg(&c.entry).arg(c.token);
            match &c.outcome {
                Outcome::Succeeded(json) => inv.arg("succeeded").arg(json.as_str()).arg(""),
                Outcome::Failed(e) => inv.arg("failed").arg(&e.code).arg(&e.message),
            };
        }
        let done: Vec<i64> = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(done.into_iter().map(|d| d == 1).collect())
    }

    /// Renews the leases this worker holds on `entries` of `model` (`heartbeat.lua`).
    pub async fn heartbeat(
        &self,
        model: &str,
        consumer: &str,
        entries: &[String],
    ) -> Result<usize, QueueError> {
        let mut inv = HEARTBEAT.prepare_invoke();
        inv.key(self.keys.stream(model)).arg(GROUP).arg(consumer);
        for e in entries {
            inv.arg(e);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Puts entries this worker holds back at the tail of the queue (`release.lua`). `token` is
    /// the attempt's fencing token, or 0 for an entry that was never started.
    pub async fn release(
        &self,
        model: &str,
        entries: &[(JobId, String, u64)],
    ) -> Result<usize, QueueError> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.keys.stream(model));
        for (job, _, _) in entries {
            inv.key(self.keys.job(*job));
        }
        inv.arg(GROUP).arg(self.keys.progress_events());
        for (_, entry, token) in entries {
            inv.arg(entry).arg(token);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }
}

/// `[[stream, entries], ...]` (RESP2) or `{stream: entries}` (RESP3); nil when nothing arrived.
fn stream_pairs(reply: Value) -> Result<Vec<(String, Value)>, QueueError> {
    let pairs = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop().unwrap_or(Value::Nil);
                    Ok((kv.pop().unwrap_or(Value::Nil), entries))
                }
                _ => Err(QueueError::Protocol("stream reply item is not a pair")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Map(kv) => kv,
        _ => return Err(QueueError::Protocol("stream reply is not an array")),
    };
    pairs
        .into_iter()
        .map(|(k, v)| Ok((string(k)?, v)))
        .collect()
}

/// `[[entry id, [field, value, ...]], ...]` into deliveries. An entry whose fields are gone
/// (deleted after it was delivered) carries no job and is skipped.
fn parse_entries(entries: Value) -> Result<Vec<Delivery>, QueueError> {
    let Value::Array(entries) = entries else {
        return Err(QueueError::Protocol("stream entries are not an array"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(mut parts) = e else {
            return Err(QueueError::Protocol("stream entry is not an array"));
        };
        if parts.len() != 2 {
            return Err(QueueError::Protocol("stream entry is not [id, fields]"));
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let entry = string(parts.pop().unwrap_or(Value::Nil))?;
        let Value::Array(fields) = fields else {
            continue;
        };
        let mut map: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(2);
        let mut it = fields.into_iter();
        while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) = (it.next(), it.next())
        {
            map.insert(k, v);
        }
        let job = map
            .get(b"id".as_slice())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .ok_or(QueueError::Protocol("stream entry without a job id"))?;
        let payload = map.remove(b"p".as_slice()).unwrap_or_default();
        out.push(Delivery {
            entry,
            job,
            payload,
        });
    }
    Ok(out)
}

fn string(v: Value) -> Result<String, QueueError> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b).map_err(|_| QueueError::Protocol("non-UTF-8 string"))
        }
        Value::SimpleString(s) => Ok(s),
        _ => Err(QueueError::Protocol("expected a string")),
    }
}
