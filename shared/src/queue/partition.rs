//! Partitions: a namespace's jobs spread over `INFERQ_PARTITIONS` sets of keys, each under a
//! hash tag of its own, so on Redis Cluster each is one slot and the partitions spread over the
//! masters.
//!
//! - A job's partition is a function of its id ([`Partitions::of_id`]): status, cancel, events
//!   and every step of its life find its keys without a lookup. A process gives its new ids to
//!   the partitions in turn, a short run each ([`Queue::new_id`]), so the jobs of a hot model
//!   spread evenly while a burst of them still shares one partition.
//! - A job that must meet a key (an `Idempotency-Key`, a cached result, a group) gets an id in
//!   that key's partition ([`Partitions::of_key`], [`Partitions::id_in`]).
//! - With one partition its tag is the namespace itself (`{ns}:…`): the layout of a single
//!   node is what it always was. With more, partition `p`'s tag is `ns.p<p>` (or `ns.p<p>.<n>`,
//!   the first `n` that works) chosen so its slot lies in the `p`-th of `P` equal shares of the
//!   16,384 slots: a cluster whose masters hold equal runs of slots (what `redis-cli --cluster
//!   create` and `rebalance` make) holds equal numbers of partitions on every master.
//! - The namespace's own keys (the model registry, workers, API keys, files, batches, rate
//!   buckets, the record of `P`) keep the tag `{ns}`.

use sha2::Digest;

use super::keys::Keys;
use super::{Queue, QueueError};
use crate::job::JobId;

/// How many consecutive new ids of one process share a partition ([`Queue::new_id`]).
pub(crate) const RUN: u64 = 16;

/// Redis Cluster's hash slots.
const SLOTS: usize = 16_384;

/// The slot of a hash tag.
fn slot(tag: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes())) % SLOTS
}

/// The hash tag of partition `p` of `count` (its keys are `{tag}:…`).
pub fn tag(namespace: &str, p: usize, count: usize) -> String {
    if count == 1 {
        return namespace.to_owned();
    }
    let share = (p * SLOTS / count)..((p + 1) * SLOTS / count);
    (0u32..)
        .map(|n| match n {
            0 => format!("{namespace}.p{p}"),
            n => format!("{namespace}.p{p}.{n}"),
        })
        .find(|t| share.contains(&slot(t)))
        .expect("some suffix lands in every share of the slots")
}

/// The key sets of a namespace's partitions.
#[derive(Debug)]
pub(crate) struct Partitions {
    pub(crate) parts: Vec<Keys>,
    /// Each partition's Cluster slot.
    pub(crate) slots: Vec<u16>,
}

impl Partitions {
    pub(crate) fn new(namespace: &str, count: usize) -> Self {
        let count = count.max(1);
        let tags: Vec<String> = (0..count).map(|p| tag(namespace, p, count)).collect();
        Self {
            parts: tags.iter().map(|t| Keys::tagged(t)).collect(),
            slots: tags.iter().map(|t| slot(t) as u16).collect(),
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.parts.len()
    }

    /// The partition of job `id`.
    pub(crate) fn of_id(&self, id: JobId) -> usize {
        (id.0.as_u128() as u64 % self.parts.len() as u64) as usize
    }

    /// The partition of a key that names no job (an idempotency key, a result-cache key).
    pub(crate) fn of_key(&self, key: &str) -> usize {
        let digest = sha2::Sha256::digest(key.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(head) % self.parts.len() as u64) as usize
    }

    /// A new random job id in partition `p`.
    pub(crate) fn id_in(&self, p: usize) -> JobId {
        loop {
            let id = JobId::new();
            if self.of_id(id) == p {
                return id;
            }
        }
    }

    /// The keys of job `id`'s partition.
    pub(crate) fn of(&self, id: JobId) -> &Keys {
        &self.parts[self.of_id(id)]
    }
}

impl Queue {
    /// How many partitions this queue spreads jobs over.
    pub fn partitions(&self) -> usize {
        self.parts.count()
    }

    /// The partition job `id` lives in.
    pub fn partition_of(&self, id: JobId) -> usize {
        self.parts.of_id(id)
    }

    /// A new job id for a job that names no key: the partitions take turns, [`RUN`] ids each,
    /// so the jobs submitted close together (a burst the API writes in one step, what a worker
    /// reads in one batch) share a partition and its one script call, while over any longer
    /// stretch every partition gets the same share.
    pub fn new_id(&self) -> JobId {
        let n = self.partitions();
        if n == 1 {
            return JobId::new();
        }
        let turn = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.parts.id_in((turn / RUN) as usize % n)
    }

    /// A new job id in the partition of `key` (an `Idempotency-Key` or a result-cache key,
    /// as the queue is given them): the job's record and the key's can then be written in one
    /// atomic step.
    pub fn id_for_key(&self, key: &str) -> JobId {
        self.parts.id_in(self.parts.of_key(key))
    }

    /// A new job id in the partition of job (or group) `id`: for a group's members.
    pub fn id_beside(&self, id: JobId) -> JobId {
        self.parts.id_in(self.parts.of_id(id))
    }

    /// Whether job `id` lives in the partition of `key`.
    pub fn fits_key(&self, id: JobId, key: &str) -> bool {
        self.parts.of_id(id) == self.parts.of_key(key)
    }

    /// The queue-length limit (`INFERQ_MAX_QUEUED`) each partition enforces: an equal share,
    /// rounded up (job ids are random, so a model's jobs fill the partitions evenly).
    pub(crate) fn partition_limit(&self, max_queued: u64) -> u64 {
        max_queued.div_ceil(self.partitions() as u64)
    }

    /// A tenant's jobs waiting or running in the partitions other than `p`, for a quota of
    /// `quota` (nothing is read without one, or with one partition). Read just before the
    /// step that checks the quota in `p`, so submissions to other partitions in between can
    /// take the tenant past its quota by at most the submissions in flight at once.
    pub(crate) async fn active_elsewhere(
        &self,
        p: usize,
        tenant: &str,
        quota: u64,
    ) -> Result<u64, QueueError> {
        if quota == 0 || self.partitions() == 1 {
            return Ok(0);
        }
        let pipes = self
            .each_partition()
            .filter(|(q, _)| *q != p)
            .map(|(_, keys)| {
                let mut pipe = redis::pipe();
                pipe.hget(keys.tenant_active(), tenant);
                pipe
            });
        let counts: Vec<(Option<u64>,)> = self.query_each(pipes).await?;
        Ok(counts.into_iter().filter_map(|(n,)| n).sum())
    }

    /// One command per job (`add` adds it, given the job's partition keys), answered in the
    /// order of `ids`: one pipeline per partition, all at once.
    pub(crate) async fn per_job<T: redis::FromRedisValue + Clone>(
        &self,
        ids: &[JobId],
        add: impl Fn(&mut redis::Pipeline, &Keys, JobId),
    ) -> Result<Vec<T>, QueueError> {
        let groups = super::scripts::by_partition(ids, |id| self.partition_of(*id));
        let pipes = groups.iter().map(|(p, idx)| {
            let mut pipe = redis::pipe();
            for &i in idx {
                add(&mut pipe, self.partition_keys(*p), ids[i]);
            }
            pipe
        });
        let answers: Vec<Vec<T>> = self.query_each(pipes).await?;
        let mut out: Vec<Option<T>> = vec![None; ids.len()];
        for ((_, idx), got) in groups.into_iter().zip(answers) {
            if got.len() != idx.len() {
                return Err(QueueError::Protocol(
                    "a pipeline answered for another number",
                ));
            }
            for (i, v) in idx.into_iter().zip(got) {
                out[i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| v.ok_or(QueueError::Protocol("a pipeline left a job unanswered")))
            .collect()
    }

    /// The members of the sorted set `key` scored at most `now` (due), the lowest first, up to
    /// `count`.
    pub(crate) async fn due(
        &self,
        key: String,
        now: u64,
        count: usize,
    ) -> Result<Vec<String>, QueueError> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Runs `pipes` all at once and answers in their order: one pipeline per partition (or
    /// for the namespace's own keys), since on a cluster a pipeline stays in one slot.
    pub(crate) async fn query_each<T: redis::FromRedisValue>(
        &self,
        pipes: impl Iterator<Item = redis::Pipeline>,
    ) -> Result<Vec<T>, QueueError> {
        let calls = pipes.map(|pipe| {
            let mut conn = self.conn.clone();
            async move { pipe.query_async::<T>(&mut conn).await }
        });
        Ok(futures_util::future::try_join_all(calls).await?)
    }

    /// [`Queue::check_partitions`] at a process's start: a count that differs from the
    /// recorded one is an error now; while Redis cannot be reached the check goes on in the
    /// background, and ends the process if it then finds the counts differ.
    pub async fn guard_partitions(&self) -> Result<(), QueueError> {
        match self.check_partitions().await {
            Err(e) if e.is_unavailable() => {
                let queue = self.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        match queue.check_partitions().await {
                            Ok(()) => return,
                            Err(e) if e.is_unavailable() => {}
                            Err(e) => {
                                tracing::error!(error = %e, "refusing to run");
                                std::process::exit(2);
                            }
                        }
                    }
                });
                Ok(())
            }
            other => other,
        }
    }

    /// Records this queue's partition count for the namespace if none is recorded yet, and
    /// refuses one that differs from the recorded count: jobs written under one count cannot
    /// be found under another. Every process calls it before it serves.
    pub async fn check_partitions(&self) -> Result<(), QueueError> {
        let key = self.keys.partitions();
        let want = self.partitions();
        if want > 1 {
            // A namespace a release before partitions used holds its jobs under `{ns}` (one
            // partition, unrecorded); a count that does not see them is refused too.
            let (recorded, old_jobs): (bool, bool) = redis::pipe()
                .exists(&key)
                .exists(self.keys.index())
                .query_async(&mut self.conn.clone())
                .await?;
            if !recorded && old_jobs {
                return Err(QueueError::Config(format!(
                    "this namespace holds jobs written before partitions (under one partition, \
                     {}), but INFERQ_PARTITIONS asks for {want}: set INFERQ_PARTITIONS=1, or \
                     let its jobs end and remove them first",
                    self.keys.index()
                )));
            }
        }
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(want)
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await?;
        let have: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        match have.as_deref().map(str::parse::<usize>) {
            Some(Ok(n)) if n == want => Ok(()),
            Some(Ok(n)) => Err(QueueError::Config(format!(
                "this namespace's jobs are spread over {n} partitions (recorded in Redis under \
                 {key}), but INFERQ_PARTITIONS asks for {want}: set INFERQ_PARTITIONS={n}, or \
                 use a new INFERQ_NAMESPACE for {want}"
            ))),
            _ => Err(QueueError::Config(format!(
                "{key} does not hold a partition count"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_keeps_the_namespace_tag() {
        let p = Partitions::new("ns", 1);
        assert_eq!(p.parts[0].job_prefix(), "{ns}:job:");
        assert_eq!(Keys::new("ns").job_prefix(), "{ns}:job:");
        assert_eq!(p.of_id(JobId::new()), 0);
        assert_eq!(p.of_key("k"), 0);
    }

    #[test]
    fn partitions_take_equal_shares_of_the_slots() {
        for count in [2, 3, 6, 12, 64] {
            let p = Partitions::new("inferq", count);
            for (i, _) in p.parts.iter().enumerate() {
                let s = slot(&tag("inferq", i, count));
                assert!(s * count / SLOTS == i, "{count}: partition {i} at slot {s}");
            }
        }
    }

    #[tokio::test]
    async fn new_ids_take_the_partitions_in_turns_of_a_run() {
        let mut cfg = crate::config::RedisConfig::new("redis://127.0.0.1:1", "ns");
        cfg.partitions = Some(4);
        let queue = Queue::connect(&cfg, std::time::Duration::ZERO)
            .await
            .unwrap();
        let got: Vec<usize> = (0..RUN * 8)
            .map(|_| queue.partition_of(queue.new_id()))
            .collect();
        for (i, p) in got.iter().enumerate() {
            assert_eq!(*p as u64, (i as u64 / RUN) % 4, "{got:?}");
        }
    }

    #[test]
    fn ids_and_keys_land_in_every_partition_evenly() {
        let p = Partitions::new("ns", 6);
        let mut by_id = [0u32; 6];
        let mut by_key = [0u32; 6];
        for i in 0..6000 {
            by_id[p.of_id(JobId::new())] += 1;
            by_key[p.of_key(&format!("key-{i}"))] += 1;
        }
        for n in by_id.iter().chain(&by_key) {
            assert!((800..1200).contains(n), "{by_id:?} {by_key:?}");
        }
        for part in 0..6 {
            assert_eq!(p.of_id(p.id_in(part)), part);
        }
    }
}
