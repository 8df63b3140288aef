//! What an operator sees: live workers, per-model queue figures and recent failures (the dead
//! letters are in [`dead`](super::dead)).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script, Value};
use serde::Deserialize;

use super::keys::{GROUP, RECENT_FAILURES, pipeline_queue};
use super::lua::{Argv, argv, lua_script_with};
use super::{MODEL_LIVENESS, Queue, QueueError};
use crate::pipeline::{PIPELINES, pipeline_model};
use crate::time::now_ms;

pub(crate) static STATS: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/stats.lua"),
        Argv::head(StatsCall::NAMES),
    )
});

argv! {
    /// `stats.lua`'s ARGV (its header says what each is).
    struct StatsCall {
        group: &'static str,
    }
}

/// A worker's description hash expires this long after its last refresh.
const WORKER_RECORD_TTL: Duration = Duration::from_secs(30);

/// Seconds of per-second completion counts kept per model.
pub const THROUGHPUT_WINDOW_SECS: u64 = 60;

/// A worker as it describes itself on every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub models: Vec<String>,
    pub threads: usize,
    /// Inference threads running a batch right now.
    pub busy: usize,
    pub jobs_succeeded: u64,
    pub jobs_failed: u64,
    /// ms since the epoch.
    pub started_at: u64,
    /// ms since the epoch.
    pub last_heartbeat: u64,
}

/// One model's queue right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelQueue {
    pub model: String,
    /// Jobs waiting, not started.
    pub depth: u64,
    /// Jobs started and not finished (or held by a worker that died, until reclaimed).
    pub running: u64,
    /// Age of the oldest waiting job, ms; `None` when none waits.
    pub oldest_age_ms: Option<u64>,
    /// Jobs finished in each of the last [`THROUGHPUT_WINDOW_SECS`] whole seconds, oldest
    /// first (the current, partial second is left out).
    pub completed_per_second: Vec<u64>,
    /// Live workers serving the model.
    pub workers: usize,
}

impl ModelQueue {
    pub fn completed_last_minute(&self) -> u64 {
        self.completed_per_second.iter().sum()
    }
}

/// The whole queue at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub models: Vec<ModelQueue>,
    pub dead_letters: u64,
    pub workers: usize,
}

/// A failure from the recent-failures list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Failure {
    pub id: String,
    pub model: String,
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// ms since the epoch.
    pub failed_at: u64,
}

/// The entry id in a stream entry id `<ms>-<seq>`, as ms.
fn entry_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

impl Queue {
    /// Publishes `worker`'s description; it counts as live for [`MODEL_LIVENESS`].
    pub async fn heartbeat_worker(&self, w: &WorkerInfo) -> Result<(), QueueError> {
        let key = self.keys.worker(&w.id);
        let expired = w
            .last_heartbeat
            .saturating_sub(WORKER_RECORD_TTL.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.hset_multiple(
            &key,
            &[
                ("host", w.host.clone()),
                ("pid", w.pid.to_string()),
                ("version", w.version.clone()),
                ("models", w.models.join(",")),
                ("threads", w.threads.to_string()),
                ("busy", w.busy.to_string()),
                ("jobs_succeeded", w.jobs_succeeded.to_string()),
                ("jobs_failed", w.jobs_failed.to_string()),
                ("started_at", w.started_at.to_string()),
                ("last_heartbeat", w.last_heartbeat.to_string()),
            ],
        )
        .ignore();
        pipe.expire(&key, WORKER_RECORD_TTL.as_secs() as i64)
            .ignore();
        pipe.zadd(self.keys.workers(), &w.id, w.last_heartbeat)
            .ignore();
        pipe.zrembyscore(self.keys.workers(), "-inf", expired)
            .ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Removes a stopping worker from the list of live workers.
    pub async fn remove_worker(&self, id: &str) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.zrem(self.keys.workers(), id).ignore();
        pipe.del(self.keys.worker(id)).ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Workers that sent a heartbeat within [`MODEL_LIVENESS`], by id.
    pub async fn live_workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        let since = now_ms().saturating_sub(MODEL_LIVENESS.as_millis() as u64);
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = conn
            .zrangebyscore(self.keys.workers(), since, "+inf")
            .await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.worker(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .into_iter()
            .zip(hashes)
            .filter(|(_, h)| !h.is_empty())
            .map(|(id, h)| {
                let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                WorkerInfo {
                    host: h.get("host").cloned().unwrap_or_default(),
                    pid: num("pid") as u32,
                    version: h.get("version").cloned().unwrap_or_default(),
                    models: h
                        .get("models")
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                    threads: num("threads") as usize,
                    busy: num("busy") as usize,
                    jobs_succeeded: num("jobs_succeeded"),
                    jobs_failed: num("jobs_failed"),
                    started_at: num("started_at"),
                    last_heartbeat: num("last_heartbeat"),
                    id,
                }
            })
            .collect())
    }

    /// Every registered model's queue figures, then every built-in pipeline's whose model is
    /// registered (named by its queue, `pipeline:<name>`, served by the model's workers), the
    /// dead-letter count and the live workers.
    pub async fn overview(&self) -> Result<Overview, QueueError> {
        let models = self.model_statuses().await?;
        let pipelines: Vec<(String, usize)> = PIPELINES
            .iter()
            .filter_map(|p| {
                let model = pipeline_model(p)?;
                let served = models.iter().find(|s| s.info.name == model)?;
                Some((pipeline_queue(p), served.workers))
            })
            .collect();
        // (queue name, live workers) of every queue shown.
        let statuses: Vec<(String, usize)> = models
            .into_iter()
            .map(|s| (s.info.name, s.workers))
            .chain(pipelines)
            .collect();
        let now = now_ms();
        let second = now / 1000;
        // Per queue: entries and pending summed over its lanes and partitions, the oldest
        // waiting entry of any, and its finished jobs per second (oldest second first).
        let mut figures: Vec<(u64, u64, Option<u64>)> = vec![(0, 0, None); statuses.len()];
        let mut done = vec![vec![0u64; THROUGHPUT_WINDOW_SECS as usize]; statuses.len()];
        let mut dead_letters = 0;
        for (_, keys) in self.each_partition() {
            let mut conn = self.conn.clone();
            let mut stats = STATS.prepare_invoke();
            let mut lanes = Vec::with_capacity(statuses.len());
            for (name, _) in &statuses {
                let model_lanes = keys.lanes(name);
                lanes.push(model_lanes.len());
                for (_, lane) in model_lanes {
                    stats.key(lane);
                }
            }
            StatsCall { group: GROUP }.push(&mut stats);
            let per_lane: Vec<(u64, u64, String)> = if statuses.is_empty() {
                Vec::new()
            } else {
                stats.invoke_async(&mut conn).await?
            };
            let mut per_lane = per_lane.into_iter();
            for (fig, &n) in figures.iter_mut().zip(&lanes) {
                for (len, pending, oldest) in per_lane.by_ref().take(n) {
                    let oldest = match (fig.2, entry_ms(&oldest)) {
                        (Some(a), Some(b)) => Some(u64::min(a, b)),
                        (a, b) => a.or(b),
                    };
                    *fig = (fig.0 + len, fig.1 + pending, oldest);
                }
            }
            let mut pipe = redis::pipe();
            for (name, _) in &statuses {
                let seconds: Vec<String> = (1..=THROUGHPUT_WINDOW_SECS)
                    .rev()
                    .map(|ago| keys.done(name, second - ago))
                    .collect();
                pipe.mget(seconds);
            }
            pipe.xlen(keys.dead_letter());
            let mut replies: Vec<Value> = pipe.query_async(&mut conn).await?;
            dead_letters +=
                redis::from_redis_value::<u64>(replies.pop().unwrap_or(Value::Nil)).unwrap_or(0);
            for (sum, reply) in done.iter_mut().zip(replies) {
                let got: Vec<Option<u64>> = redis::from_redis_value(reply).unwrap_or_default();
                for (s, n) in sum.iter_mut().zip(got) {
                    *s += n.unwrap_or(0);
                }
            }
        }
        let workers: u64 = self
            .conn
            .clone()
            .zcount(
                self.keys.workers(),
                now.saturating_sub(MODEL_LIVENESS.as_millis() as u64),
                "+inf",
            )
            .await?;
        let workers = workers as usize;
        let models = statuses
            .into_iter()
            .zip(figures)
            .zip(done)
            .map(
                |(((name, workers), (len, pending, oldest)), done)| ModelQueue {
                    model: name,
                    depth: len.saturating_sub(pending),
                    running: pending.min(len),
                    oldest_age_ms: oldest.map(|t| now.saturating_sub(t)),
                    completed_per_second: done,
                    workers,
                },
            )
            .collect();
        Ok(Overview {
            models,
            dead_letters,
            workers,
        })
    }

    /// The latest failures, newest first (at most [`RECENT_FAILURES`]; each partition keeps
    /// its own list, and the newest of all of them are answered).
    pub async fn recent_failures(&self, limit: usize) -> Result<Vec<Failure>, QueueError> {
        let limit = limit.clamp(1, RECENT_FAILURES);
        let pipes = self.each_partition().map(|(_, keys)| {
            let mut pipe = redis::pipe();
            pipe.lrange(keys.failures(), 0, limit as isize - 1);
            pipe
        });
        let lists: Vec<(Vec<String>,)> = self.query_each(pipes).await?;
        let mut all: Vec<Failure> = lists
            .iter()
            .flat_map(|(items,)| items.iter())
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        all.sort_by_key(|f: &Failure| std::cmp::Reverse(f.failed_at));
        all.truncate(limit);
        Ok(all)
    }
}
