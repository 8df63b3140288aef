//! Enqueueing: jobs one by one, in bulk and as groups (`submit.lua`, one call per partition);
//! a job answered from the result cache is `cached.rs`'s, scheduled jobs moved to their queues
//! when due `promote.rs`'s.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::attempts::{by_lane, scatter};
use super::script;
use crate::job::{JobId, Priority};
use crate::queue::lua::{Argv, argv};
use crate::queue::{Queue, QueueError};
use crate::time::now_ms;
use crate::trace::TraceParent;
use crate::webhook::Webhook;

pub(crate) static SUBMIT: LazyLock<Script> = LazyLock::new(|| {
    let argv = Argv {
        head: SubmitCall::NAMES,
        item: SubmitJob::NAMES,
    };
    script(include_str!("../lua/submit.lua"), argv)
});

argv! {
    /// `submit.lua`'s ARGV, once per call (its header says what each is).
    struct SubmitCall {
        now: u64,
        limit: u64,
        idem_ttl: u64,
        group: String,
        group_ttl: u64,
        fetch_allow: String,
    }
}

argv! {
    /// `submit.lua`'s ARGV, once per job.
    struct SubmitJob<'a> {
        id: String,
        model: &'a str,
        payload: &'a [u8],
        deadline: u64,
        ttl: u64,
        hash: &'a str,
        cache_key: String,
        cache_ttl: u64,
        due: u64,
        traceparent: String,
        tenant: &'a str,
        priority: u8,
        quota: u64,
        others: u64,
        webhook: &'a str,
        webhook_events: String,
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub id: JobId,
    pub model: &'a str,
    /// The binary job payload.
    pub payload: &'a [u8],
    /// Start by, ms since the epoch.
    pub deadline_ms: Option<u64>,
    /// Keep the record this long once final, instead of the queue's default
    /// ([`Queue::with_retention`]); either is written into the record.
    pub result_ttl_secs: Option<u64>,
    /// `(Idempotency-Key, hash of the request)`.
    pub idempotency: Option<(String, String)>,
    /// `(result-cache key, how long to keep the result)`: store a successful result there.
    pub cache: Option<(String, Duration)>,
    /// Do not start before this time, ms since the epoch.
    pub due_ms: Option<u64>,
    /// The caller's trace context, written into the stream entry for the worker (kept in the
    /// job hash while the job is scheduled).
    pub trace: Option<TraceParent>,
    /// The tenant of the key that submitted it.
    pub tenant: &'a str,
    /// Its lane among the model's waiting jobs.
    pub priority: Priority,
    /// Most jobs the tenant may have waiting or running, this one included; 0 = no limit.
    pub tenant_max_queued: u64,
    /// Where to deliver the job's events, and which.
    pub webhook: Option<&'a Webhook>,
}

/// The result of submitting a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// The idempotency key was used before with the same request: this job answers.
    Replayed(JobId),
    /// The idempotency key was used before with another request.
    IdempotencyKeyReused,
    /// Not enqueued because another job of its group could not be.
    NotSubmitted,
    /// Stored as `scheduled`: it moves to the queue when due.
    Scheduled,
    /// The model's stream already holds its configured maximum.
    QueueFull,
    /// The model is not (or no longer) in the registry: it was retired.
    UnknownModel,
    /// The tenant has its `tenant_max_queued` jobs waiting or running; this many must end
    /// before the job (for a group: the whole group) fits.
    QuotaExceeded {
        excess: u64,
    },
}

impl Queue {
    /// Writes the job record (owned by `tenant`) and its stream entry (with the caller's trace
    /// context, if any) in one step (`submit.lua`).
    #[expect(
        clippy::too_many_arguments,
        reason = "one job's parts, for callers with one job; `submit_many` takes `NewJob`s"
    )]
    pub async fn submit(
        &self,
        id: JobId,
        model: &str,
        payload: &[u8],
        max_queued: u64,
        deadline_ms: Option<u64>,
        trace: Option<&TraceParent>,
        tenant: &str,
    ) -> Result<Submitted, QueueError> {
        let job = NewJob {
            id,
            model,
            payload,
            deadline_ms,
            result_ttl_secs: None,
            idempotency: None,
            cache: None,
            due_ms: None,
            trace: trace.copied(),
            tenant,
            priority: Priority::DEFAULT,
            tenant_max_queued: 0,
            webhook: None,
        };
        let mut out = self
            .submit_many(&[job], max_queued, Duration::from_secs(1))
            .await?;
        out.pop()
            .ok_or(QueueError::Protocol("submit returned nothing"))
    }

    /// Enqueues `jobs` in one step (`submit.lua`), each on its own: one refused (a full queue,
    /// a retired model, a reused idempotency key) does not stop the others. `idempotency_ttl`
    /// is how long an idempotency key answers with its job.
    pub async fn submit_many(
        &self,
        jobs: &[NewJob<'_>],
        max_queued: u64,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Submitted>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.submit_jobs(jobs, max_queued, idempotency_ttl, None)
            .await
    }

    /// Enqueues `jobs` as the group `group`, all or none (`submit.lua`): if one cannot be
    /// enqueued, its reason comes back and the others are [`Submitted::NotSubmitted`]. The
    /// group's record (its members) is kept `keep`.
    pub async fn submit_group(
        &self,
        group: JobId,
        jobs: &[NewJob<'_>],
        max_queued: u64,
        keep: Duration,
    ) -> Result<Vec<Submitted>, QueueError> {
        self.submit_jobs(
            jobs,
            max_queued,
            Duration::from_secs(1),
            Some((group, keep)),
        )
        .await
    }

    async fn submit_jobs(
        &self,
        jobs: &[NewJob<'_>],
        max_queued: u64,
        idempotency_ttl: Duration,
        group: Option<(JobId, Duration)>,
    ) -> Result<Vec<Submitted>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        if jobs.iter().any(|j| {
            j.idempotency
                .as_ref()
                .is_some_and(|(key, _)| !self.fits_key(j.id, key))
        }) {
            return Err(QueueError::Protocol(
                "a job's id is not in its idempotency key's partition (see Queue::id_for_key)",
            ));
        }
        if let Some((g, _)) = group
            && jobs
                .iter()
                .any(|j| self.partition_of(j.id) != self.partition_of(g))
        {
            return Err(QueueError::Protocol(
                "a group's jobs are not in its partition (see Queue::id_beside)",
            ));
        }
        // One atomic step per partition, all at once; a group is in one partition.
        let parts = by_lane(jobs, |j| self.partition_of(j.id));
        let calls = parts.into_iter().map(|(p, idx)| async move {
            let part: Vec<&NewJob<'_>> = idx.iter().map(|&i| &jobs[i]).collect();
            let got = self
                .submit_in(p, &part, max_queued, idempotency_ttl, group)
                .await?;
            Ok::<_, QueueError>((idx, got))
        });
        let answers = futures_util::future::try_join_all(calls).await?;
        let mut out = vec![Submitted::NotSubmitted; jobs.len()];
        for (idx, got) in answers {
            scatter(
                &mut out,
                idx,
                got,
                "submit answered for another number of jobs",
            )?;
        }
        Ok(out)
    }

    /// `submit.lua` for `jobs`, all of partition `p`.
    async fn submit_in(
        &self,
        p: usize,
        jobs: &[&NewJob<'_>],
        max_queued: u64,
        idempotency_ttl: Duration,
        group: Option<(JobId, Duration)>,
    ) -> Result<Vec<Submitted>, QueueError> {
        let keys = self.partition_keys(p);
        let mut elsewhere: HashMap<&str, u64> = HashMap::new();
        for j in jobs {
            if !elsewhere.contains_key(j.tenant) {
                let n = self
                    .active_elsewhere(p, j.tenant, j.tenant_max_queued)
                    .await?;
                elsewhere.insert(j.tenant, n);
            }
        }
        let mut inv = SUBMIT.prepare_invoke();
        inv.key(keys.models()).key(keys.index());
        match group {
            Some((g, _)) => inv.key(keys.group(g)),
            None => inv.key(keys.models()),
        };
        inv.key(keys.scheduled()).key(keys.tenant_active());
        for j in jobs {
            inv.key(keys.job(j.id))
                .key(keys.lane(j.model, j.priority))
                .key(keys.used_lanes(j.model));
            match &j.idempotency {
                Some((key, _)) => inv.key(keys.idempotency(key)),
                None => inv.key(keys.job(j.id)),
            };
        }
        SubmitCall {
            now: now_ms(),
            limit: self.partition_limit(max_queued),
            idem_ttl: idempotency_ttl.as_secs().max(1),
            group: group.map(|(g, _)| g.to_string()).unwrap_or_default(),
            group_ttl: group.map_or(1, |(_, keep)| keep.as_secs().max(1)),
            fetch_allow: self.fetch_allow.clone(),
        }
        .push(&mut inv);
        for j in jobs {
            SubmitJob {
                id: j.id.to_string(),
                model: j.model,
                payload: j.payload,
                deadline: j.deadline_ms.unwrap_or(0),
                ttl: j.result_ttl_secs.unwrap_or(self.retention.secs()),
                hash: j.idempotency.as_ref().map_or("", |(_, hash)| hash.as_str()),
                // Stored only where a lookup finds it: in the key's partition (a job placed
                // by its idempotency key elsewhere computes its result uncached).
                cache_key: j
                    .cache
                    .as_ref()
                    .filter(|(key, _)| self.fits_key(j.id, key))
                    .map_or(String::new(), |(key, _)| keys.cache(key)),
                cache_ttl: j.cache.as_ref().map_or(0, |(_, ttl)| ttl.as_secs().max(1)),
                due: j.due_ms.unwrap_or(0),
                traceparent: j.trace.map(|t| t.to_string()).unwrap_or_default(),
                tenant: j.tenant,
                priority: j.priority.level(),
                quota: j.tenant_max_queued,
                others: elsewhere.get(j.tenant).copied().unwrap_or(0),
                webhook: j.webhook.map_or("", |w| w.url.as_str()),
                webhook_events: j.webhook.map(Webhook::events_field).unwrap_or_default(),
            }
            .push(&mut inv);
        }
        // Every answer waits for the replicas, a refusal's too: a call's jobs share one answer.
        let replies: Vec<String> = self.commit(&inv, |_| true).await?;
        replies
            .into_iter()
            .map(|r| {
                Ok(match r.as_str() {
                    "QUEUE_FULL" => Submitted::QueueFull,
                    "UNKNOWN_MODEL" => Submitted::UnknownModel,
                    "IDEMPOTENCY_REUSED" => Submitted::IdempotencyKeyReused,
                    "NOT_SUBMITTED" => Submitted::NotSubmitted,
                    "SCHEDULED" => Submitted::Scheduled,
                    other => parse_refusal(other)?.unwrap_or(Submitted::Queued),
                })
            })
            .collect()
    }
}

/// The refusals carrying a value (`REPLAY <id>`, `QUOTA_EXCEEDED <excess>`); `None` for an
/// entry id (enqueued).
pub(super) fn parse_refusal(reply: &str) -> Result<Option<Submitted>, QueueError> {
    if let Some(id) = reply.strip_prefix("REPLAY ") {
        let id = id
            .parse()
            .map_err(|_| QueueError::Protocol("replayed job id"))?;
        return Ok(Some(Submitted::Replayed(id)));
    }
    if let Some(excess) = reply.strip_prefix("QUOTA_EXCEEDED ") {
        let excess = excess
            .parse()
            .map_err(|_| QueueError::Protocol("quota excess"))?;
        return Ok(Some(Submitted::QuotaExceeded { excess }));
    }
    Ok(None)
}
