//! The model registry: what workers publish about the models they serve, which workers are
//! alive for each, consumer-group housekeeping, and retiring a model.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script, Value};

use super::keys::GROUP;
use super::lua::{Argv, argv, lua_script_with};
use super::reply::{Entry, parse_entries};
use super::{Queue, QueueError, Retention};
use crate::job::{JobId, Priority};
use crate::model::ModelInfo;
use crate::time::now_ms;

pub(crate) static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/prune.lua"),
        Argv::head(PruneCall::NAMES),
    )
});

argv! {
    /// `prune.lua`'s ARGV (its header says what each is).
    struct PruneCall {
        group: &'static str,
        idle_ms: u64,
    }
}
pub(crate) static RETIRE: LazyLock<Script> = LazyLock::new(|| {
    super::scripts::with_ending(
        include_str!("lua/retire.lua"),
        Argv::head(RetireCall::NAMES),
    )
});

argv! {
    /// `retire.lua`'s ARGV before its lists (its header says what each is).
    struct RetireCall<'a> {
        model: &'a str,
        now: u64,
        ttl: u64,
        publish: &'static str,
        channel: String,
        lanes: usize,
    }
}

/// How often a worker re-announces the models it serves.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);

/// A worker that has not announced a model for this long no longer counts as serving it.
pub const MODEL_LIVENESS: Duration = Duration::from_secs(10);

/// Announcements older than this are dropped from a model's worker set.
const WORKER_RECORD_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A registered model and who serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatus {
    pub info: ModelInfo,
    /// Workers that announced the model within [`MODEL_LIVENESS`].
    pub workers: usize,
    /// Last announcement by any worker, ms since the epoch.
    pub last_seen: Option<u64>,
}

/// The result of retiring a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// Retired; this many waiting jobs failed with `model_retired`.
    Retired(usize),
    NotFound,
}

impl Queue {
    /// Announces that `worker` serves `models`.
    pub async fn announce_models(
        &self,
        worker: &str,
        models: &[ModelInfo],
    ) -> Result<(), QueueError> {
        let now = now_ms();
        let expired = now.saturating_sub(WORKER_RECORD_EXPIRY.as_millis() as u64);
        let mut pipe = redis::pipe();
        // Each partition's copy of the registry, which its submissions check in the same
        // atomic step as they enqueue (with one partition, the registry itself).
        let mut copies = Vec::new();
        for m in models {
            let json = serde_json::to_string(m).map_err(|_| QueueError::Protocol("model info"))?;
            let workers = self.keys.model_workers(&m.name);
            if self.partitions() > 1 {
                for (p, keys) in self.each_partition() {
                    if copies.len() <= p {
                        copies.push(redis::pipe());
                    }
                    copies[p].hset(keys.models(), &m.name, &json).ignore();
                }
            }
            pipe.hset(self.keys.models(), &m.name, json).ignore();
            pipe.zadd(self.keys.models_seen(), &m.name, now).ignore();
            pipe.zadd(&workers, worker, now).ignore();
            pipe.zrembyscore(&workers, "-inf", expired).ignore();
        }
        copies.push(pipe);
        self.query_each::<()>(copies.into_iter()).await?;
        Ok(())
    }

    /// Says that `worker` stops serving `models` (a clean shutdown), so `GET /models` counts it
    /// out at once rather than after [`MODEL_LIVENESS`].
    pub async fn withdraw_worker(&self, worker: &str, models: &[String]) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        for m in models {
            pipe.zrem(self.keys.model_workers(m), worker).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Every registered model, served right now or not: jobs for a model whose workers are
    /// restarting (or scaled to zero) still queue.
    pub async fn known_models(&self) -> Result<Vec<ModelInfo>, QueueError> {
        let all: HashMap<String, String> = self.conn.clone().hgetall(self.keys.models()).await?;
        Ok(all
            .into_values()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }

    /// Every registered model with its live worker count and last announcement, by name.
    pub async fn model_statuses(&self) -> Result<Vec<ModelStatus>, QueueError> {
        let mut models = self.known_models().await?;
        models.sort_by(|a, b| a.name.cmp(&b.name));
        if models.is_empty() {
            return Ok(Vec::new());
        }
        let since = now_ms().saturating_sub(MODEL_LIVENESS.as_millis() as u64);
        let mut pipe = redis::pipe();
        for m in &models {
            pipe.zcount(self.keys.model_workers(&m.name), since, "+inf");
            pipe.zscore(self.keys.models_seen(), &m.name);
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut it = replies.into_iter();
        Ok(models
            .into_iter()
            .map(|info| {
                let workers = it.next().and_then(|v| redis::from_redis_value(v).ok());
                let last_seen: Option<f64> =
                    it.next().and_then(|v| redis::from_redis_value(v).ok());
                ModelStatus {
                    info,
                    workers: workers.unwrap_or(0),
                    last_seen: last_seen.map(|s| s as u64),
                }
            })
            .collect())
    }

    /// Retires `model` (`retire.lua`, once per partition): removes it from the registry and
    /// fails every job still in its streams with `model_retired`.
    pub async fn retire_model(
        &self,
        model: &str,
        retention: Retention,
    ) -> Result<Retired, QueueError> {
        let known: bool = self.conn.clone().hexists(self.keys.models(), model).await?;
        if !known {
            return Ok(Retired::NotFound);
        }
        let mut failed = 0;
        for (p, _) in self.each_partition() {
            failed += self.retire_in(p, model, retention).await?;
        }
        if self.partitions() > 1 {
            // Every partition's copy is gone, so nothing is enqueued for the model any more.
            let _: () = redis::pipe()
                .hdel(self.keys.models(), model)
                .zrem(self.keys.models_seen(), model)
                .del(self.keys.model_workers(model))
                .query_async(&mut self.conn.clone())
                .await?;
        }
        Ok(Retired::Retired(failed))
    }

    /// Retires `model` in partition `p`; returns how many of its jobs failed. With one
    /// partition the registry, its announcements and its workers go in the same step; with
    /// more, the partition's copy of the registry does, and the caller removes the rest.
    async fn retire_in(
        &self,
        p: usize,
        model: &str,
        retention: Retention,
    ) -> Result<usize, QueueError> {
        let keys = self.partition_keys(p);
        let mut conn = self.conn.clone();
        loop {
            let lanes = keys.lanes(model);
            let mut newest: Vec<String> = Vec::with_capacity(lanes.len());
            let mut jobs: Vec<JobId> = Vec::new();
            for (priority, lane) in &lanes {
                let reply: Value = redis::cmd("XRANGE")
                    .arg(lane)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await?;
                let mut last = String::new();
                for e in parse_entries(reply, (p as u16, *priority))? {
                    last = e.entry().id.clone();
                    match e {
                        Entry::Job(d) => jobs.push(d.job),
                        Entry::Malformed { job, .. } => jobs.extend(job),
                    }
                }
                newest.push(last);
            }
            let mut inv = RETIRE.prepare_invoke();
            // With several partitions, the announcement keys named here are the partition's
            // (which nothing writes): the namespace's own are removed by the caller.
            inv.key(keys.models())
                .key(keys.models_seen())
                .key(keys.model_workers(model))
                .key(keys.tenant_active())
                .key(keys.used_lanes(model));
            for (_, lane) in &lanes {
                inv.key(lane);
            }
            for j in &jobs {
                inv.key(keys.job(*j));
            }
            inv.key(keys.hooks()).key(keys.deliveries());
            let publish = self.publish(keys);
            RetireCall {
                model,
                now: now_ms(),
                ttl: retention.secs(),
                publish: publish.command,
                channel: publish.terminal,
                lanes: lanes.len(),
            }
            .push(&mut inv);
            for n in &newest {
                inv.arg(n);
            }
            for j in &jobs {
                inv.arg(j.to_string());
            }
            let failed: i64 = inv.invoke_async(&mut conn).await?;
            if failed >= 0 {
                return Ok(failed as usize);
            }
        }
    }

    /// Creates the consumer group of a model's stream (and the stream) if missing. The group
    /// starts at the beginning, so jobs submitted before any worker existed are served.
    ///
    /// Also lists in the queue's used-lanes set ([`Keys::used_lanes`](super::Keys::used_lanes))
    /// every lane other than the default that holds entries: entries added before that set
    /// existed (by an older version) would otherwise be skipped by reads and by the
    /// queue-length limit.
    pub async fn ensure_group(&self, queue: &str) -> Result<(), QueueError> {
        for (p, _) in self.each_partition() {
            self.ensure_group_in(p, queue).await?;
        }
        Ok(())
    }

    async fn ensure_group_in(&self, p: usize, queue: &str) -> Result<(), QueueError> {
        let keys = self.partition_keys(p);
        let lanes = keys.lanes(queue);
        for (_, lane) in &lanes {
            let res: Result<(), _> = self
                .conn
                .clone()
                .xgroup_create_mkstream(lane, GROUP, "0")
                .await;
            match res {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        let others: Vec<&String> = lanes
            .iter()
            .filter(|(p, _)| *p != Priority::DEFAULT)
            .map(|(_, lane)| lane)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for lane in &others {
            pipe.xlen(*lane);
        }
        let lens: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        let held: Vec<&String> = others
            .into_iter()
            .zip(lens)
            .filter(|(_, n)| *n > 0)
            .map(|(lane, _)| lane)
            .collect();
        if !held.is_empty() {
            let _: () = self.conn.clone().sadd(keys.used_lanes(queue), held).await?;
        }
        Ok(())
    }

    /// Removes consumers of `model`'s group that hold nothing and were idle for `idle`: workers
    /// that are gone (`prune.lua`).
    pub async fn prune_consumers(&self, queue: &str, idle: Duration) -> Result<u64, QueueError> {
        let mut removed = 0;
        let lanes = self
            .each_partition()
            .flat_map(|(_, keys)| keys.lanes(queue));
        for (_, lane) in lanes {
            let mut inv = PRUNE.prepare_invoke();
            inv.key(lane);
            PruneCall {
                group: GROUP,
                idle_ms: idle.as_millis() as u64,
            }
            .push(&mut inv);
            let n: u64 = inv.invoke_async(&mut self.conn.clone()).await?;
            removed += n;
        }
        Ok(removed)
    }
}
