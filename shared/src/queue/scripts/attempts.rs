//! A worker's side of an attempt: start (`start.lua`), renew the lease (`heartbeat.lua`),
//! hand back (`release.lua`), record the outcome (`complete.lua`), set unreadable entries aside
//! (`malformed.lua`); and cancellation (`cancel.lua`). Entries of several lanes are sent one
//! script call per lane.

use std::sync::LazyLock;

use redis::Script;

use super::{Retention, script, with_outbox};
use crate::job::{JobError, JobId, JobStatus, Priority};
use crate::queue::keys::{GROUP, RECENT_FAILURES, field, pipeline_of};
use crate::queue::{Delivery, EntryRef, Queue, QueueError};
use crate::time::now_ms;

static START: LazyLock<Script> = LazyLock::new(|| with_outbox(include_str!("../lua/start.lua")));
static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| with_outbox(include_str!("../lua/complete.lua")));
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/heartbeat.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/release.lua")));
static CANCEL: LazyLock<Script> = LazyLock::new(|| with_outbox(include_str!("../lua/cancel.lua")));
static MALFORMED: LazyLock<Script> =
    LazyLock::new(|| with_outbox(include_str!("../lua/malformed.lua")));

/// The indices of `items` grouped by lane: lanes in order of first appearance, items in order.
fn by_lane<T>(items: &[T], lane: impl Fn(&T) -> Priority) -> Vec<(Priority, Vec<usize>)> {
    let mut groups: Vec<(Priority, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = lane(item);
        match groups.iter_mut().find(|(q, _)| *q == p) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((p, vec![i])),
        }
    }
    groups
}

/// Puts one lane's answers (`got`, in the order of `idx`) back at their items' places in `out`.
fn scatter<R>(
    out: &mut [R],
    idx: Vec<usize>,
    got: Vec<R>,
    mismatch: &'static str,
) -> Result<(), QueueError> {
    if got.len() != idx.len() {
        return Err(QueueError::Protocol(mismatch));
    }
    for (i, r) in idx.into_iter().zip(got) {
        out[i] = r;
    }
    Ok(())
}

/// What a worker reports for one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The result, stored as given (a binary result frame, see [`payload`](crate::payload)).
    Succeeded(Vec<u8>),
    Failed(JobError),
}

/// One attempt's outcome, addressed by entry and fenced by token.
#[derive(Debug, Clone)]
pub struct Completion {
    pub job: JobId,
    pub entry: EntryRef,
    pub token: u64,
    pub outcome: Outcome,
}

/// The result of a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    Cancelled,
    NotFound,
    AlreadyFinished(JobStatus),
}

impl Queue {
    /// Cancels a job that has not finished (`cancel.lua`).
    pub async fn cancel(&self, id: JobId, retention: Retention) -> Result<Cancelled, QueueError> {
        let mut conn = self.conn.clone();
        let (model, priority): (Option<String>, Option<u8>) = redis::cmd("HMGET")
            .arg(self.keys.job(id))
            .arg(field::MODEL)
            .arg(field::PRIORITY)
            .query_async(&mut conn)
            .await?;
        let Some(model) = model else {
            return Ok(Cancelled::NotFound);
        };
        let priority = priority.and_then(Priority::new).unwrap_or_default();
        let mut inv = CANCEL.prepare_invoke();
        inv.key(self.keys.job(id))
            .key(self.keys.lane(&model, priority))
            .key(self.keys.tenant_active());
        if pipeline_of(&model).is_some() {
            inv.key(self.keys.upload(id));
        }
        let before: Option<String> = inv
            .arg(now_ms())
            .arg(retention.secs())
            .arg(self.keys.events())
            .arg(GROUP)
            .arg(id.to_string())
            .arg(self.keys.hooks())
            .arg(self.keys.hook_prefix())
            .invoke_async(&mut conn)
            .await?;
        Ok(match before.as_deref().and_then(JobStatus::parse) {
            None => Cancelled::NotFound,
            Some(s) if s.is_terminal() => Cancelled::AlreadyFinished(s),
            Some(_) => Cancelled::Cancelled,
        })
    }

    /// Begins attempts on `deliveries` of `model` (`start.lua`, once per lane); returns each
    /// one's fencing token, 0 for those not to run. Safe to retry: a delivery already started
    /// keeps its token and gains no attempt.
    pub async fn start(
        &self,
        model: &str,
        consumer: &str,
        deliveries: &[Delivery],
        max_attempts: u32,
        retention: Retention,
    ) -> Result<Vec<u64>, QueueError> {
        let mut tokens = vec![0; deliveries.len()];
        for (priority, idx) in by_lane(deliveries, |d| d.entry.priority) {
            let part: Vec<&Delivery> = idx.iter().map(|&i| &deliveries[i]).collect();
            let got = self
                .start_lane(model, priority, consumer, &part, max_attempts, retention)
                .await?;
            scatter(
                &mut tokens,
                idx,
                got,
                "start answered for another number of jobs",
            )?;
        }
        Ok(tokens)
    }

    async fn start_lane(
        &self,
        model: &str,
        priority: Priority,
        consumer: &str,
        deliveries: &[&Delivery],
        max_attempts: u32,
        retention: Retention,
    ) -> Result<Vec<u64>, QueueError> {
        let mut inv = START.prepare_invoke();
        inv.key(self.keys.lane(model, priority))
            .key(self.keys.dead_letter())
            .key(self.keys.dead_index())
            .key(self.keys.failures())
            .key(self.keys.tenant_active());
        for d in deliveries {
            inv.key(self.keys.job(d.job));
        }
        if pipeline_of(model).is_some() {
            for d in deliveries {
                inv.key(self.keys.upload(d.job));
            }
        }
        inv.arg(GROUP)
            .arg(now_ms())
            .arg(max_attempts)
            .arg(self.keys.events())
            .arg(retention.secs())
            .arg(consumer)
            .arg(self.keys.progress_events())
            .arg(model)
            .arg(RECENT_FAILURES)
            .arg(self.keys.hooks())
            .arg(self.keys.hook_prefix());
        for d in deliveries {
            inv.arg(d.job.to_string()).arg(&d.entry.id);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Records outcomes (`complete.lua`, once per lane); returns for each whether it was
    /// recorded (not fenced off by a newer attempt, not cancelled meanwhile).
    pub async fn complete(
        &self,
        model: &str,
        completions: &[Completion],
        retention: Retention,
    ) -> Result<Vec<bool>, QueueError> {
        let mut recorded = vec![false; completions.len()];
        for (priority, idx) in by_lane(completions, |c| c.entry.priority) {
            let part: Vec<&Completion> = idx.iter().map(|&i| &completions[i]).collect();
            let got = self
                .complete_lane(model, priority, &part, retention)
                .await?;
            scatter(
                &mut recorded,
                idx,
                got,
                "complete answered for another number of jobs",
            )?;
        }
        Ok(recorded)
    }

    async fn complete_lane(
        &self,
        model: &str,
        priority: Priority,
        completions: &[&Completion],
        retention: Retention,
    ) -> Result<Vec<bool>, QueueError> {
        let now = now_ms();
        let mut inv = COMPLETE.prepare_invoke();
        inv.key(self.keys.lane(model, priority))
            .key(self.keys.done(model, now / 1000))
            .key(self.keys.failures())
            .key(self.keys.tenant_active());
        for c in completions {
            inv.key(self.keys.job(c.job));
        }
        if pipeline_of(model).is_some() {
            for c in completions {
                inv.key(self.keys.upload(c.job));
            }
        }
        inv.arg(GROUP)
            .arg(now)
            .arg(retention.secs())
            .arg(self.keys.events())
            .arg(model)
            .arg(RECENT_FAILURES)
            .arg(self.keys.hooks())
            .arg(self.keys.hook_prefix());
        for c in completions {
            inv.arg(c.job.to_string()).arg(&c.entry.id).arg(c.token);
            match &c.outcome {
                Outcome::Succeeded(result) => inv.arg("succeeded").arg(result.as_slice()).arg(""),
                Outcome::Failed(e) => inv.arg("failed").arg(e.code.as_str()).arg(&e.message),
            };
        }
        let done: Vec<i64> = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(done.into_iter().map(|d| d == 1).collect())
    }

    /// Renews the leases `consumer` holds on `entries` of `model` (`heartbeat.lua`, once per
    /// lane); returns how many it still held.
    pub async fn heartbeat(
        &self,
        model: &str,
        consumer: &str,
        entries: &[EntryRef],
    ) -> Result<usize, QueueError> {
        let mut renewed = 0;
        for (priority, idx) in by_lane(entries, |e| e.priority) {
            let mut inv = HEARTBEAT.prepare_invoke();
            inv.key(self.keys.lane(model, priority))
                .arg(GROUP)
                .arg(consumer);
            for i in idx {
                inv.arg(&entries[i].id);
            }
            let n: usize = inv.invoke_async(&mut self.conn.clone()).await?;
            renewed += n;
        }
        Ok(renewed)
    }

    /// Puts entries back at the tail of the queue (`release.lua`): `(job, entry, token)`, token
    /// 0 for an entry that was never started.
    pub async fn release(
        &self,
        model: &str,
        entries: &[(JobId, EntryRef, u64)],
    ) -> Result<usize, QueueError> {
        let mut released = 0;
        for (priority, idx) in by_lane(entries, |(_, e, _)| e.priority) {
            let mut inv = RELEASE.prepare_invoke();
            inv.key(self.keys.lane(model, priority))
                .key(self.keys.used_lanes(model));
            for &i in &idx {
                inv.key(self.keys.job(entries[i].0));
            }
            inv.arg(GROUP)
                .arg(self.keys.progress_events())
                .arg(u8::from(priority != Priority::DEFAULT));
            for i in idx {
                let (job, entry, token) = &entries[i];
                inv.arg(job.to_string()).arg(&entry.id).arg(token);
            }
            let n: usize = inv.invoke_async(&mut self.conn.clone()).await?;
            released += n;
        }
        Ok(released)
    }

    /// Sets aside entries that could not be read (`malformed.lua`): dead-lettered with
    /// `malformed_entry`, acknowledged, and their job (if its id was readable) failed.
    pub async fn set_aside(
        &self,
        model: &str,
        entries: &[(EntryRef, Option<JobId>)],
        retention: Retention,
    ) -> Result<usize, QueueError> {
        let mut set = 0;
        for (priority, idx) in by_lane(entries, |(e, _)| e.priority) {
            let part: Vec<(String, Option<JobId>)> = idx
                .into_iter()
                .map(|i| (entries[i].0.id.clone(), entries[i].1))
                .collect();
            set += self
                .set_aside_lane(model, priority, &part, retention)
                .await?;
        }
        Ok(set)
    }

    async fn set_aside_lane(
        &self,
        model: &str,
        priority: Priority,
        entries: &[(String, Option<JobId>)],
        retention: Retention,
    ) -> Result<usize, QueueError> {
        let mut inv = MALFORMED.prepare_invoke();
        inv.key(self.keys.lane(model, priority))
            .key(self.keys.dead_letter())
            .key(self.keys.dead_index())
            .key(self.keys.failures())
            .key(self.keys.tenant_active());
        for (_, job) in entries {
            if let Some(job) = job {
                inv.key(self.keys.job(*job));
            }
        }
        inv.arg(GROUP)
            .arg(now_ms())
            .arg(retention.secs())
            .arg(self.keys.events())
            .arg(model)
            .arg(RECENT_FAILURES)
            .arg(self.keys.hooks())
            .arg(self.keys.hook_prefix());
        for (entry, job) in entries {
            inv.arg(entry)
                .arg(job.map(|j| j.to_string()).unwrap_or_default());
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }
}
