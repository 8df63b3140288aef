//! Every Redis key name, derived from one configurable namespace (the hash and stream field
//! names are in `fields.rs`, re-exported here).
//!
//! Layout, under one namespace `ns`. The namespace's own keys (the model registry, workers,
//! API keys, rate buckets, files, batches, the partition count) are under the hash tag `{ns}`;
//! the jobs' keys are under their partition's tag (see [`partition`](super::partition): `{ns}`
//! itself with one partition, `{ns.p<n>}` with more), so each multi-key script is legal on
//! Redis Cluster. Below, `{ns}` stands for whichever tag the key is under; each partition
//! has its own copy of the per-job keys and indexes, and of `{ns}:models` (written by workers
//! with the registry, read by submissions):
//! - `{ns}:job:<id>`: hash with the [`field`]s below; it expires a configurable time after the
//!   job turns terminal.
//! - `{ns}:q:<model>`: stream of queued and in-flight jobs (`id`, `p` = request payload) of the
//!   default priority 5, read by the consumer group [`GROUP`]; entries are deleted when
//!   acknowledged, so its length is the backlog. An entry may also hold `traceparent`, the
//!   trace the job joins, and `priority` when not the default.
//! - `{ns}:q:<model>#<priority>`: the same for the other priorities (0 to 9): one lane per
//!   priority ([`Keys::lane`]); a model's backlog is the sum of its lanes. Pipelines have the
//!   default lane only.
//! - `{ns}:q:<model>#lanes`: set of the model's lanes other than the default that ever held
//!   an entry ([`Keys::used_lanes`]): every script that adds an entry to such a lane adds the
//!   lane here, so counting and reading a model's waiting jobs looks at the default lane and
//!   these only, not at all ten. Deleted with the lanes when the model is retired.
//! - `{ns}:dead`: dead-letter stream of jobs that used up their attempts and of stream entries
//!   that could not be read (`reason` = `malformed_entry`).
//! - `{ns}:models`: hash: model name → [`ModelInfo`](crate::model::ModelInfo) JSON, written by
//!   workers; a model stays here (and keeps accepting jobs) until it is retired.
//! - `{ns}:models:seen`: sorted set: model name → last time a live worker announced it (ms).
//! - `{ns}:models:workers:<model>`: sorted set: worker name → last time it announced the model.
//! - `{ns}:listing`: stream with one entry per job (`i` = its id), appended when the job is
//!   written, for `GET /jobs` (newest first, an entry id as the cursor); entries whose record
//!   expired are removed by the API's sweeper and as listings come across them. (Releases
//!   before it kept a sorted set `{ns}:jobs`, which nothing reads any more.)
//! - `{ns}:cache:<sha-256>`: a cached result (`parameters.cache`), expiring after the cache
//!   TTL. Scripts reach it through the job hash's `cache_key` field; it shares the `{ns}` hash
//!   tag, so it lives in the job's Cluster slot.
//! - `{ns}:scheduled`: sorted set of scheduled job ids by due time (ms); their payload waits
//!   in the job hash until a worker's promoter moves them to their model's stream.
//! - `{ns}:group:<id>`: hash of a group of jobs: `created_at` and `jobs` (member ids).
//! - `{ns}:idem:<key>`: string `<job id> <sha-256 of the request>` for an `Idempotency-Key`,
//!   expiring after the idempotency window.
//! - `{ns}:dead:ids`: hash: job id → its dead-letter stream entry, for retrying and deleting
//!   dead letters by job id.
//! - `{ns}:failures`: list of the latest failures (JSON: `id`, `model`, `code`, `message`,
//!   `failed_at`), newest first, capped at [`RECENT_FAILURES`] entries.
//! - `{ns}:done:<model>:<unix second>`: jobs of the model that finished in that second; each
//!   expires after two minutes.
//! - `{ns}:workers`: sorted set: worker name → last heartbeat (ms); `{ns}:worker:<name>`: hash
//!   describing the worker (host, pid, version, models, threads, busy, counters), expiring
//!   when the worker stops refreshing it.
//! - `{ns}:apikey:<key id>`: hash describing one API key ([`apikey`] fields): the SHA-256 of
//!   the key (never the key itself), its tenant, scopes, name and creation time.
//! - `{ns}:apikeys`: sorted set: key id → creation time (ms), for listing keys.
//! - `{ns}:tenants:active`: hash: tenant → its jobs waiting (queued or scheduled) or running,
//!   changed only by the scripts that enqueue and end jobs (the job hash's `counted` field
//!   says whether a job is in it), for the tenants' `max_queued` quota.
//! - `{ns}:rate:<tenant>`: hash (`tokens`, `at`): the tenant's submission token bucket,
//!   expiring once it would be full again.
//! - `{ns}:upload:<id>`: string: the uploaded file of a pipeline job (e.g. a recording), from
//!   submission until the job ends; every script that ends such a job deletes it, and it
//!   carries an expiry as a safety net. Workers read it in slices (`GETRANGE`).
//! - `{ns}:q:pipeline:<name>`: the stream of a built-in pipeline ([`pipeline_queue`]); model
//!   names cannot hold a `:`, so it never meets a model's stream.
//! - `{ns}:hooks`: sorted set of webhook deliveries by due time (ms); a claimed delivery's
//!   score is pushed back by its lease. `{ns}:deliveries`: hash of every delivery's fields
//!   (`<delivery id>:<field>`, the [`hook`] fields), written in the same step as the job state
//!   change it announces (the outbox) and deleted once delivered or given up (one hash, so every
//!   script names it in KEYS; releases before kept a hash per delivery, `{ns}:hook:<id>`, which
//!   the claim moves over when it meets one).
//! - `{ns}:file:<id>`: hash of a file of the OpenAI face ([`file`] fields: its tenant, name,
//!   purpose, size, times and bytes), expiring when the file does; `{ns}:files:<tenant>`:
//!   sorted set of the tenant's file ids by creation time (ms), for listing (ids whose hash
//!   expired are dropped as listings meet them).
//! - `{ns}:batch:<id>`: hash of a batch of the OpenAI face ([`batch`] fields: its tenant,
//!   status, record, requests and their job ids, times, output files), expiring with its
//!   files; `{ns}:batches:<tenant>`: sorted set of the tenant's batch ids by creation time.
//! - `{ns}:partitions`: string: the namespace's partition count, recorded when it is first
//!   used; a process set to another count refuses to start.
//! - `{ns}:events`: pub/sub channel of terminal states, and `{ns}:events:progress` of the
//!   others (queued again, running, a pipeline's progress update); each message holds one
//!   `<job id> <status>` line per job of one atomic step. Every API process subscribes to
//!   both on one connection (`?wait=` long-polls and event streams). On a cluster, the
//!   scripts publish on their partition's own pair instead (`{ns.p<n>}:events` and
//!   `…:events:progress`, shard channels: `SPUBLISH`), and the API subscribes to every
//!   partition's pair on its master besides the namespace's ([`events`](super::events)).

use crate::job::{JobId, Priority};

/// The one consumer group all workers join.
pub const GROUP: &str = "workers";

/// Most entries kept in the list of recent failures.
pub const RECENT_FAILURES: usize = 100;

pub use super::fields::{apikey, batch, entry, field, file, hook};

/// The queue name of a built-in pipeline: its stream is `{ns}:q:pipeline:<name>`, and a
/// pipeline job's `model` field holds this name (so cancelling finds the stream as for any job).
pub fn pipeline_queue(pipeline: &str) -> String {
    format!("{PIPELINE_PREFIX}{pipeline}")
}

/// The pipeline a queue name belongs to, if it is a pipeline's.
pub fn pipeline_of(queue: &str) -> Option<&str> {
    queue.strip_prefix(PIPELINE_PREFIX)
}

const PIPELINE_PREFIX: &str = "pipeline:";

/// The priorities a queue has lanes for, highest first: all of them for a model, the default
/// for a pipeline (its jobs run in arrival order).
pub fn priorities(queue: &str) -> Box<dyn Iterator<Item = Priority>> {
    if pipeline_of(queue).is_some() {
        Box::new(std::iter::once(Priority::DEFAULT))
    } else {
        Box::new(Priority::all())
    }
}

/// See [`Keys::used_lanes`]. A `#` followed by a word, not a digit: no lane's key (model names
/// cannot hold a `#`).
const USED_LANES_SUFFIX: &str = "#lanes";

/// Key names derived from the namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self::tagged(namespace)
    }
    /// The keys under the hash tag `{tag}` (a partition's, see [`partition`](super::partition)).
    pub(crate) fn tagged(tag: &str) -> Self {
        Self {
            prefix: format!("{{{tag}}}"),
        }
    }
    /// The namespace's partition count, recorded when it is first used.
    pub fn partitions(&self) -> String {
        format!("{}:partitions", self.prefix)
    }
    pub fn job(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }
    /// What every job hash key starts with (the job id follows).
    pub fn job_prefix(&self) -> String {
        format!("{}:job:", self.prefix)
    }
    /// The stream of a queue's default priority (a model's, or a pipeline's).
    pub fn stream(&self, queue: &str) -> String {
        format!("{}:q:{queue}", self.prefix)
    }
    /// The stream of one priority of a queue: the default priority's is [`Keys::stream`], the
    /// others add `#<priority>` (model names cannot hold a `#`).
    pub fn lane(&self, queue: &str, priority: Priority) -> String {
        if priority == Priority::DEFAULT {
            self.stream(queue)
        } else {
            format!("{}:q:{queue}#{priority}", self.prefix)
        }
    }
    /// Every lane of a queue, highest priority first: ten for a model, the default one for a
    /// pipeline.
    pub fn lanes(&self, queue: &str) -> Vec<(Priority, String)> {
        priorities(queue)
            .map(|p| (p, self.lane(queue, p)))
            .collect()
    }
    /// The set of a queue's lanes other than the default one that ever held an entry (their
    /// keys): the only lanes besides the default that counting or reading its jobs looks at.
    pub fn used_lanes(&self, queue: &str) -> String {
        format!("{}{USED_LANES_SUFFIX}", self.stream(queue))
    }
    /// What a queue's [`Keys::used_lanes`] key adds to its default lane's key, for scripts
    /// that build keys from [`Keys::stream_prefix`].
    pub fn used_lanes_suffix(&self) -> &'static str {
        USED_LANES_SUFFIX
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
    pub fn model_workers(&self, model: &str) -> String {
        format!("{}:models:workers:{model}", self.prefix)
    }
    /// Every job in the order it was written (a stream: one entry per job, its id in the
    /// field [`INDEX_FIELD`](super::listing::INDEX_FIELD)), for listing; entries whose record
    /// expired are dropped by the sweeper and as listings meet them.
    pub fn index(&self) -> String {
        format!("{}:listing", self.prefix)
    }
    /// A cached result: the result frame of a job of the same model file with the same inputs
    /// and requested outputs; `key` is the hex SHA-256 of those.
    pub fn cache(&self, key: &str) -> String {
        format!("{}:cache:{key}", self.prefix)
    }
    /// Scheduled jobs by due time (sorted set of job ids scored in ms).
    pub fn scheduled(&self) -> String {
        format!("{}:scheduled", self.prefix)
    }
    /// What every model stream key starts with (the model name follows).
    pub fn stream_prefix(&self) -> String {
        format!("{}:q:", self.prefix)
    }
    /// A group: `created_at` and `jobs` (its members' ids, space-separated).
    pub fn group(&self, id: JobId) -> String {
        format!("{}:group:{id}", self.prefix)
    }
    /// An idempotency key's record: `<job id> <sha-256 of the request>`.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.prefix)
    }
    /// Dead-letter index: job id → dead-letter entry id.
    pub fn dead_index(&self) -> String {
        format!("{}:dead:ids", self.prefix)
    }
    /// The latest failures, newest first.
    pub fn failures(&self) -> String {
        format!("{}:failures", self.prefix)
    }
    /// Jobs of `model` finished within the Unix second `sec`.
    pub fn done(&self, model: &str, sec: u64) -> String {
        format!("{}:done:{model}:{sec}", self.prefix)
    }
    /// Live workers by last heartbeat.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }
    /// One worker's description.
    pub fn worker(&self, name: &str) -> String {
        format!("{}:worker:{name}", self.prefix)
    }
    /// Every tenant's count of jobs waiting or running (hash: tenant → count).
    pub fn tenant_active(&self) -> String {
        format!("{}:tenants:active", self.prefix)
    }
    /// A tenant's submission token bucket.
    pub fn rate(&self, tenant: &str) -> String {
        format!("{}:rate:{tenant}", self.prefix)
    }
    /// One API key's record.
    pub fn api_key(&self, id: &str) -> String {
        format!("{}:apikey:{id}", self.prefix)
    }
    /// Every API key id by creation time.
    pub fn api_keys(&self) -> String {
        format!("{}:apikeys", self.prefix)
    }
    /// A pipeline job's uploaded input.
    pub fn upload(&self, id: JobId) -> String {
        format!("{}:upload:{id}", self.prefix)
    }
    /// Webhook deliveries by due time.
    pub fn hooks(&self) -> String {
        format!("{}:hooks", self.prefix)
    }
    /// The webhook deliveries of the partition: one hash, a field per delivery
    /// (`<delivery id>:job` -> the [`hook`] fields packed, see `lua/outbox.lua`).
    pub fn deliveries(&self) -> String {
        format!("{}:deliveries", self.prefix)
    }
    /// A webhook delivery as releases before [`Keys::deliveries`] kept it, a hash of its own;
    /// the claim moves one it meets into the deliveries' hash.
    pub fn legacy_hook(&self, id: &str) -> String {
        format!("{}:hook:{id}", self.prefix)
    }
    /// A file of the OpenAI face (hash of [`file`] fields).
    pub fn file(&self, id: &str) -> String {
        format!("{}:file:{id}", self.prefix)
    }
    /// A tenant's files by creation time (sorted set of file ids, ms).
    pub fn files(&self, tenant: &str) -> String {
        format!("{}:files:{tenant}", self.prefix)
    }
    /// A batch of the OpenAI face (hash of [`batch`] fields).
    pub fn batch(&self, id: &str) -> String {
        format!("{}:batch:{id}", self.prefix)
    }
    /// A tenant's batches by creation time (sorted set of batch ids, ms).
    pub fn batches(&self, tenant: &str) -> String {
        format!("{}:batches:{tenant}", self.prefix)
    }
    /// Terminal state changes (what `?wait=` listens for).
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
    /// Non-terminal changes (started, handed back, a pipeline's progress), apart from the
    /// terminal ones so a listener that needs only those can skip them.
    pub fn progress_events(&self) -> String {
        format!("{}:events:progress", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keys::new("ns");
        for key in [
            k.job(JobId::new()),
            k.stream("m"),
            k.dead_letter(),
            k.models(),
            k.models_seen(),
            k.model_workers("m"),
            k.dead_index(),
            k.failures(),
            k.done("m", 1),
            k.workers(),
            k.worker("w"),
            k.api_key("0123"),
            k.api_keys(),
            k.tenant_active(),
            k.upload(JobId::new()),
            k.stream(&pipeline_queue("p")),
            k.lane("m", Priority::HIGHEST),
            k.used_lanes("m"),
            k.file("file-0"),
            k.files("t"),
            k.batch("batch_0"),
            k.batches("t"),
        ] {
            assert!(key.starts_with("{ns}:"), "{key}");
        }
    }

    #[test]
    fn lanes_are_distinct_and_the_default_is_the_plain_stream() {
        let k = Keys::new("ns");
        let lanes = k.lanes("m");
        assert_eq!(lanes.len(), 10);
        assert_eq!(lanes[0], (Priority::HIGHEST, "{ns}:q:m#9".to_owned()));
        assert_eq!(k.lane("m", Priority::DEFAULT), k.stream("m"));
        let mut names: Vec<&String> = lanes.iter().map(|(_, l)| l).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 10);
        assert!(!names.contains(&&k.used_lanes("m")));
        assert_eq!(k.used_lanes("m"), "{ns}:q:m#lanes");
        assert_eq!(
            k.lanes(&pipeline_queue("p")),
            [(Priority::DEFAULT, k.stream("pipeline:p"))]
        );
    }
}
