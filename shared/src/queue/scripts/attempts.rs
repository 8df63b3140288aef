//! A worker's side of an attempt: start (`start.lua`), renew the lease (`heartbeat.lua`),
//! hand back (`release.lua`), record the outcome (`complete.lua`). Entries of several lanes are
//! sent one script call per lane.

use std::sync::LazyLock;

use redis::Script;

use super::{Retention, script, with_ending};
use crate::job::{JobError, JobId, Priority};
use crate::queue::keys::{GROUP, RECENT_FAILURES, pipeline_of};
use crate::queue::lua::{Argv, argv};
use crate::queue::walk::Cursor;
use crate::queue::{Delivery, EntryRef, Queue, QueueError};
use crate::time::now_ms;

pub(crate) static START: LazyLock<Script> = LazyLock::new(|| {
    let argv = Argv {
        head: StartCall::NAMES,
        item: StartEntry::NAMES,
    };
    with_ending(include_str!("../lua/start.lua"), argv)
});
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    let argv = Argv {
        head: CompleteCall::NAMES,
        item: CompleteOutcome::NAMES,
    };
    with_ending(include_str!("../lua/complete.lua"), argv)
});
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    script(
        include_str!("../lua/heartbeat.lua"),
        Argv::head(HeartbeatCall::NAMES),
    )
});

argv! {
    /// `heartbeat.lua`'s ARGV before the entry ids (its header says what each is).
    struct HeartbeatCall<'a> {
        group: &'static str,
        consumer: &'a str,
    }
}
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    let argv = Argv {
        head: ReleaseCall::NAMES,
        item: ReleaseEntry::NAMES,
    };
    script(include_str!("../lua/release.lua"), argv)
});

argv! {
    /// `start.lua`'s ARGV, once per call (its header says what each is).
    struct StartCall<'a> {
        group: &'static str,
        now: u64,
        max_attempts: u32,
        publish: &'static str,
        channel: String,
        ttl: u64,
        consumer: &'a str,
        progress: String,
        model: &'a str,
        keep_failures: usize,
        low: &'a str,
        high: &'a str,
    }
}

argv! {
    /// `start.lua`'s ARGV, once per entry.
    struct StartEntry<'a> {
        id: String,
        entry: &'a str,
    }
}

argv! {
    /// `complete.lua`'s ARGV, once per call.
    struct CompleteCall<'a> {
        group: &'static str,
        now: u64,
        ttl: u64,
        publish: &'static str,
        channel: String,
        model: &'a str,
        keep_failures: usize,
    }
}

argv! {
    /// `complete.lua`'s ARGV, once per outcome.
    struct CompleteOutcome<'a> {
        id: String,
        entry: &'a str,
        token: u64,
        status: &'static str,
        value: &'a [u8],
        message: &'a str,
    }
}

argv! {
    /// `release.lua`'s ARGV, once per call.
    struct ReleaseCall {
        group: &'static str,
        publish: &'static str,
        progress: String,
        other_lane: u8,
    }
}

argv! {
    /// `release.lua`'s ARGV, once per entry.
    struct ReleaseEntry<'a> {
        id: String,
        entry: &'a str,
        token: u64,
    }
}

/// The indices of `items` grouped by lane (a partition and a priority): lanes in order of
/// first appearance, items in order.
pub(crate) fn by_lane<T, L: PartialEq + Copy>(
    items: &[T],
    lane: impl Fn(&T) -> L,
) -> Vec<(L, Vec<usize>)> {
    let mut groups: Vec<(L, Vec<usize>)> = Vec::new();
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
pub(super) fn scatter<R>(
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

impl Queue {
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
        for (lane, idx) in by_lane(deliveries, |d| d.entry.lane()) {
            let part: Vec<&Delivery> = idx.iter().map(|&i| &deliveries[i]).collect();
            let got = self
                .start_lane(model, lane, consumer, &part, max_attempts, retention)
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
        (partition, priority): (u16, Priority),
        consumer: &str,
        deliveries: &[&Delivery],
        max_attempts: u32,
        retention: Retention,
    ) -> Result<Vec<u64>, QueueError> {
        let keys = self.partition_keys(usize::from(partition));
        let mut inv = START.prepare_invoke();
        inv.key(keys.lane(model, priority))
            .key(keys.dead_letter())
            .key(keys.dead_index())
            .key(keys.failures())
            .key(keys.tenant_active());
        for d in deliveries {
            inv.key(keys.job(d.job));
        }
        if pipeline_of(model).is_some() {
            for d in deliveries {
                inv.key(keys.upload(d.job));
            }
        }
        inv.key(keys.hooks()).key(keys.deliveries());
        // The span of the entries, for the script's one XPENDING (ids as numbers here, where
        // the script would pay for the conversion on every call).
        let ids = || {
            deliveries
                .iter()
                .filter_map(|d| Some((Cursor::parse(&d.entry.id)?, d.entry.id.as_str())))
        };
        let low = ids().min_by_key(|(c, _)| *c).map_or("", |(_, id)| id);
        let high = ids().max_by_key(|(c, _)| *c).map_or("", |(_, id)| id);
        let publish = self.publish(keys);
        StartCall {
            group: GROUP,
            now: now_ms(),
            max_attempts,
            publish: publish.command,
            channel: publish.terminal,
            ttl: retention.secs(),
            consumer,
            progress: publish.progress,
            model,
            keep_failures: RECENT_FAILURES,
            low,
            high,
        }
        .push(&mut inv);
        for d in deliveries {
            StartEntry {
                id: d.job.to_string(),
                entry: &d.entry.id,
            }
            .push(&mut inv);
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
        for (lane, idx) in by_lane(completions, |c| c.entry.lane()) {
            let part: Vec<&Completion> = idx.iter().map(|&i| &completions[i]).collect();
            let got = self.complete_lane(model, lane, &part, retention).await?;
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
        (partition, priority): (u16, Priority),
        completions: &[&Completion],
        retention: Retention,
    ) -> Result<Vec<bool>, QueueError> {
        let now = now_ms();
        let keys = self.partition_keys(usize::from(partition));
        let mut inv = COMPLETE.prepare_invoke();
        inv.key(keys.lane(model, priority))
            .key(keys.done(model, now / 1000))
            .key(keys.failures())
            .key(keys.tenant_active());
        for c in completions {
            inv.key(keys.job(c.job));
        }
        if pipeline_of(model).is_some() {
            for c in completions {
                inv.key(keys.upload(c.job));
            }
        }
        inv.key(keys.hooks()).key(keys.deliveries());
        let publish = self.publish(keys);
        CompleteCall {
            group: GROUP,
            now,
            ttl: retention.secs(),
            publish: publish.command,
            channel: publish.terminal,
            model,
            keep_failures: RECENT_FAILURES,
        }
        .push(&mut inv);
        for c in completions {
            let (status, value, message) = match &c.outcome {
                Outcome::Succeeded(result) => ("succeeded", result.as_slice(), ""),
                Outcome::Failed(e) => ("failed", e.code.as_str().as_bytes(), e.message.as_str()),
            };
            CompleteOutcome {
                id: c.job.to_string(),
                entry: &c.entry.id,
                token: c.token,
                status,
                value,
                message,
            }
            .push(&mut inv);
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
        for ((partition, priority), idx) in by_lane(entries, EntryRef::lane) {
            let keys = self.partition_keys(usize::from(partition));
            let mut inv = HEARTBEAT.prepare_invoke();
            inv.key(keys.lane(model, priority));
            HeartbeatCall {
                group: GROUP,
                consumer,
            }
            .push(&mut inv);
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
        for ((partition, priority), idx) in by_lane(entries, |(_, e, _)| e.lane()) {
            let keys = self.partition_keys(usize::from(partition));
            let mut inv = RELEASE.prepare_invoke();
            inv.key(keys.lane(model, priority))
                .key(keys.used_lanes(model));
            for &i in &idx {
                inv.key(keys.job(entries[i].0));
            }
            let publish = self.publish(keys);
            ReleaseCall {
                group: GROUP,
                publish: publish.command,
                progress: publish.progress,
                other_lane: u8::from(priority != Priority::DEFAULT),
            }
            .push(&mut inv);
            for i in idx {
                let (job, entry, token) = &entries[i];
                ReleaseEntry {
                    id: job.to_string(),
                    entry: &entry.id,
                    token: *token,
                }
                .push(&mut inv);
            }
            released += inv.invoke_async::<usize>(&mut self.conn.clone()).await?;
        }
        Ok(released)
    }
}
