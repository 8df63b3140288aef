//! The atomic steps of a job's life, one Lua script each (`lua/*.lua`, whose headers document
//! their KEYS and ARGV). Field names are written into each script from `keys.rs` when it loads.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::keys::{GROUP, RECENT_FAILURES, field, lua_script, pipeline_of};
use super::{Delivery, EntryRef, Queue, QueueError};
use crate::job::{JobError, JobId, JobStatus, Priority};
use crate::time::now_ms;
use crate::trace::TraceParent;
use crate::webhook::Webhook;

fn script(body: &str) -> Script {
    lua_script(body)
}

/// A script that changes job states, with the webhook outbox (`outbox.lua`) in front of it.
pub(crate) fn with_outbox(body: &str) -> Script {
    lua_script(&format!("{}\n{body}", include_str!("lua/outbox.lua")))
}

static SUBMIT: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/submit.lua")));
static START: LazyLock<Script> = LazyLock::new(|| with_outbox(include_str!("lua/start.lua")));
static COMPLETE: LazyLock<Script> = LazyLock::new(|| with_outbox(include_str!("lua/complete.lua")));
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/heartbeat.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/release.lua")));
static CANCEL: LazyLock<Script> = LazyLock::new(|| with_outbox(include_str!("lua/cancel.lua")));
static PROMOTE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/promote.lua")));
static CACHED: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/cached.lua")));
static MALFORMED: LazyLock<Script> =
    LazyLock::new(|| with_outbox(include_str!("lua/malformed.lua")));
static SUBMIT_PIPELINE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("lua/submit_pipeline.lua")));
static PROGRESS: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/progress.lua")));

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

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub id: JobId,
    pub model: &'a str,
    /// The binary job payload.
    pub payload: &'a [u8],
    /// Start by, ms since the epoch.
    pub deadline_ms: Option<u64>,
    /// Keep the record this long once final, instead of the configured default.
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

/// The result of a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    Cancelled,
    NotFound,
    AlreadyFinished(JobStatus),
}

/// How long records are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// How long a terminal job record stays readable.
    pub result_ttl: Duration,
}

impl Retention {
    fn secs(self) -> u64 {
        self.result_ttl.as_secs().max(1)
    }
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
        let mut inv = SUBMIT.prepare_invoke();
        inv.key(self.keys.models()).key(self.keys.index());
        match group {
            Some((g, _)) => inv.key(self.keys.group(g)),
            None => inv.key(self.keys.models()),
        };
        inv.key(self.keys.scheduled())
            .key(self.keys.tenant_active());
        for j in jobs {
            inv.key(self.keys.job(j.id))
                .key(self.keys.lane(j.model, j.priority));
            match &j.idempotency {
                Some((key, _)) => inv.key(self.keys.idempotency(key)),
                None => inv.key(self.keys.job(j.id)),
            };
        }
        inv.arg(now_ms())
            .arg(max_queued)
            .arg(idempotency_ttl.as_secs().max(1))
            .arg(group.map(|(g, _)| g.to_string()).unwrap_or_default())
            .arg(group.map_or(1, |(_, keep)| keep.as_secs().max(1)));
        for j in jobs {
            inv.arg(j.id.to_string())
                .arg(j.model)
                .arg(j.payload)
                .arg(j.deadline_ms.unwrap_or(0))
                .arg(j.result_ttl_secs.unwrap_or(0))
                .arg(j.idempotency.as_ref().map_or("", |(_, hash)| hash.as_str()))
                .arg(
                    j.cache
                        .as_ref()
                        .map_or(String::new(), |(key, _)| self.keys.cache(key)),
                )
                .arg(j.cache.as_ref().map_or(0, |(_, ttl)| ttl.as_secs().max(1)))
                .arg(j.due_ms.unwrap_or(0))
                .arg(j.trace.map(|t| t.to_string()).unwrap_or_default())
                .arg(j.tenant)
                .arg(j.priority.level())
                .arg(j.tenant_max_queued)
                .arg(j.webhook.map_or("", |w| w.url.as_str()))
                .arg(j.webhook.map(Webhook::events_field).unwrap_or_default());
        }
        let replies: Vec<String> = inv.invoke_async(&mut self.conn.clone()).await?;
        if replies.len() != jobs.len() {
            return Err(QueueError::Protocol(
                "submit answered for another number of jobs",
            ));
        }
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

    /// Creates job `id` already succeeded with the result cached under `key`, if there is one
    /// (`cached.lua`); false (nothing written) on a miss.
    pub async fn submit_cached(
        &self,
        id: JobId,
        model: &str,
        key: &str,
        retention: Retention,
        result_ttl_secs: Option<u64>,
        tenant: &str,
    ) -> Result<bool, QueueError> {
        let hit: i64 = CACHED
            .key(self.keys.cache(key))
            .key(self.keys.job(id))
            .key(self.keys.index())
            .arg(id.to_string())
            .arg(model)
            .arg(now_ms())
            .arg(result_ttl_secs.unwrap_or(retention.secs()))
            .arg(result_ttl_secs.unwrap_or(0))
            .arg(tenant)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(hit == 1)
    }

    /// Moves up to `count` scheduled jobs that are due to their models' queues
    /// (`promote.lua`); returns how many moved.
    pub async fn promote_due(&self, count: usize) -> Result<usize, QueueError> {
        Ok(PROMOTE
            .key(self.keys.scheduled())
            .arg(now_ms())
            .arg(count)
            .arg(self.keys.job_prefix())
            .arg(self.keys.stream_prefix())
            .arg(self.keys.progress_events())
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

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
            if got.len() != idx.len() {
                return Err(QueueError::Protocol(
                    "start answered for another number of jobs",
                ));
            }
            for (i, token) in idx.into_iter().zip(got) {
                tokens[i] = token;
            }
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
            if got.len() != idx.len() {
                return Err(QueueError::Protocol(
                    "complete answered for another number of jobs",
                ));
            }
            for (i, done) in idx.into_iter().zip(got) {
                recorded[i] = done;
            }
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
            inv.key(self.keys.lane(model, priority));
            for &i in &idx {
                inv.key(self.keys.job(entries[i].0));
            }
            inv.arg(GROUP).arg(self.keys.progress_events());
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

/// The refusals carrying a value (`REPLAY <id>`, `QUOTA_EXCEEDED <excess>`); `None` for an
/// entry id (enqueued).
fn parse_refusal(reply: &str) -> Result<Option<Submitted>, QueueError> {
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

/// A pipeline job as submitted: its queue, payload and uploaded input.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSubmission<'a> {
    /// The pipeline's queue name ([`pipeline_queue`](super::keys::pipeline_queue)).
    pub queue: &'a str,
    pub payload: &'a [u8],
    pub upload: &'a [u8],
    /// Longest the upload is kept (the job's end deletes it before).
    pub upload_ttl: Duration,
    /// The tenant of the key that submitted it.
    pub tenant: &'a str,
    /// Most jobs the tenant may have waiting or running, this one included; 0 = no limit.
    pub tenant_max_queued: u64,
    /// Where to deliver the job's events, and which.
    pub webhook: Option<&'a Webhook>,
}

impl Queue {
    /// Writes a pipeline job's record, stream entry and upload in one step
    /// (`submit_pipeline.lua`). Answers [`Submitted::Queued`], [`Submitted::QueueFull`] or
    /// [`Submitted::QuotaExceeded`].
    pub async fn submit_pipeline(
        &self,
        id: JobId,
        job: PipelineSubmission<'_>,
        max_queued: u64,
        deadline_ms: Option<u64>,
    ) -> Result<Submitted, QueueError> {
        let reply: String = SUBMIT_PIPELINE
            .key(self.keys.job(id))
            .key(self.keys.stream(job.queue))
            .key(self.keys.upload(id))
            .key(self.keys.tenant_active())
            .arg(id.to_string())
            .arg(job.queue)
            .arg(now_ms())
            .arg(job.payload)
            .arg(max_queued)
            .arg(deadline_ms.unwrap_or(0))
            .arg(job.upload)
            .arg(job.upload_ttl.as_secs().max(1))
            .arg(job.tenant)
            .arg(job.tenant_max_queued)
            .arg(job.webhook.map_or("", |w| w.url.as_str()))
            .arg(job.webhook.map(Webhook::events_field).unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match reply.as_str() {
            "QUEUE_FULL" => Submitted::QueueFull,
            other => parse_refusal(other)?.unwrap_or(Submitted::Queued),
        })
    }

    /// Records a pipeline attempt's progress in seconds (`progress.lua`); `false` when the
    /// attempt no longer owns a running job (cancelled, or taken over): it must stop.
    pub async fn progress(
        &self,
        id: JobId,
        token: u64,
        done: f64,
        total: Option<f64>,
    ) -> Result<bool, QueueError> {
        let recorded: i64 = PROGRESS
            .key(self.keys.job(id))
            .arg(token)
            .arg(done)
            .arg(total.map(|t| t.to_string()).unwrap_or_default())
            .arg(self.keys.progress_events())
            .arg(id.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(recorded == 1)
    }

    /// `len` bytes of a pipeline job's upload from `offset` (fewer at its end; none when the
    /// upload is gone), so a worker reads a large input in bounded slices.
    pub async fn read_upload(
        &self,
        id: JobId,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, QueueError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(redis::cmd("GETRANGE")
            .arg(self.keys.upload(id))
            .arg(offset)
            .arg(offset + len as u64 - 1)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Writes a pipeline job's input fetched by URL into its (empty) upload, keeping the
    /// upload's expiry; false, writing nothing, when the upload is gone (the job ended).
    pub async fn fill_upload(&self, id: JobId, bytes: &[u8]) -> Result<bool, QueueError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.upload(id))
            .arg(bytes)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// The size of a pipeline job's upload in bytes; 0 when it is gone.
    pub async fn upload_len(&self, id: JobId) -> Result<u64, QueueError> {
        Ok(redis::cmd("STRLEN")
            .arg(self.keys.upload(id))
            .query_async(&mut self.conn.clone())
            .await?)
    }
}
