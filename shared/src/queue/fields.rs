//! The field names of the hashes and stream entries the keys in `keys.rs` hold, spelled once
//! for Rust and Lua alike ([`lua`](super::lua) writes them into the scripts).

/// Stream entry fields.
pub mod entry {
    /// The job id.
    pub const ID: &str = "id";
    /// The request payload.
    pub const PAYLOAD: &str = "p";
    /// The W3C `traceparent` the job was submitted with, when it had one; copied wherever the
    /// entry goes (a hand-back, a dead letter), so every attempt joins the same trace.
    pub const TRACEPARENT: &str = "traceparent";
    /// The job's priority, when not the default: copied wherever the entry goes, so a
    /// hand-back or a dead letter's retry returns to the same lane.
    pub const PRIORITY: &str = "priority";
    /// The exceptions to the address guard (`INFERQ_FETCH_ALLOW` of the API that submitted the
    /// job), when it had any: the worker fetches the job's inputs under these, so what the API
    /// accepted and what the worker fetches cannot disagree.
    pub const FETCH_ALLOW: &str = "fetch_allow";
}

/// Job hash fields. Lua scripts get them written in as literals when loaded
/// ([`lua`](super::lua)), so this module is the only place their spelling lives.
pub mod field {
    pub const MODEL: &str = "model";
    pub const STATUS: &str = "status";
    pub const CREATED_AT: &str = "created_at";
    pub const STARTED_AT: &str = "started_at";
    pub const FINISHED_AT: &str = "finished_at";
    /// Attempts started so far (absent: none); while an attempt runs, also its fencing
    /// token: an outcome or progress update is recorded only while the job is `running` with
    /// the attempt number its writer started.
    pub const ATTEMPTS: &str = "attempts";
    /// The job's current stream entry; removed when the job ends.
    pub const ENTRY: &str = "entry";
    /// The delivery count of the delivery of [`ENTRY`] that started the latest attempt, so a
    /// repeated start of the same delivery is recognised and adds no attempt; removed when
    /// the job ends.
    pub const DELIVERY: &str = "delivery";
    /// Start-by time, ms since the epoch; absent = none (removed when the job ends).
    pub const DEADLINE: &str = "deadline";
    /// Consumer name of the worker that ran the latest attempt (for operators: which worker
    /// ran a job).
    pub const WORKER: &str = "worker";
    pub const RESULT: &str = "result";
    pub const ERROR_CODE: &str = "error_code";
    pub const ERROR_MESSAGE: &str = "error_message";
    /// Seconds the record is kept once final: the job's `result_ttl_secs` or the API's
    /// default, written at submission so every process that ends the job keeps it as long;
    /// removed when the job ends (the record's expiry then holds it).
    pub const TTL: &str = "ttl";
    /// The result-cache key a successful result is stored under (`parameters.cache`).
    pub const CACHE_KEY: &str = "cache_key";
    /// Seconds a cached result is kept.
    pub const CACHE_TTL: &str = "cache_ttl";
    /// `1` when the job was answered from the result cache without running.
    pub const CACHED: &str = "cached";
    /// When a scheduled job may start, ms since the epoch.
    pub const DUE: &str = "due";
    /// A scheduled job's payload, until it moves to its model's stream.
    pub const PAYLOAD: &str = "payload";
    /// A scheduled job's W3C `traceparent`, until it moves to its stream entry.
    pub const TRACEPARENT: &str = "traceparent";
    /// The tenant of the key that submitted the job; every lookup is scoped by it. Absent for
    /// the default tenant ([`DEFAULT_TENANT`](crate::auth::DEFAULT_TENANT)).
    pub const TENANT: &str = "tenant";
    /// Pipeline jobs: seconds of input processed by the running attempt.
    pub const PROGRESS_DONE: &str = "progress_done";
    /// Pipeline jobs: seconds of input in all; absent while unknown.
    pub const PROGRESS_TOTAL: &str = "progress_total";
    /// `parameters.priority` (0 to 9), which names the job's lane; absent means 5.
    pub const PRIORITY: &str = "priority";
    /// Increases by one with every change a client can see (a state change, a progress
    /// update), in the same script step as the change: the `id:` of the job's server-sent
    /// events, so a stream resumed with `Last-Event-ID` knows what it has already sent.
    pub const VERSION: &str = "version";
    /// `1` while the job counts among its tenant's active jobs ([`Keys::tenant_active`]):
    /// set by the step that enqueues a job submitted under a quota, removed by the step that
    /// ends it, so each such job is counted and uncounted exactly once.
    pub const COUNTED: &str = "counted";
    /// The webhook URL the job's events are delivered to.
    pub const WEBHOOK: &str = "webhook";
    /// The events to deliver, comma-separated with a comma at each end (`,succeeded,failed,`)
    /// so a script finds one with a plain substring search.
    pub const WEBHOOK_EVENTS: &str = "webhook_events";
    /// `pending` | `delivered` | `failed`: the job's latest delivery.
    pub const WEBHOOK_STATE: &str = "webhook_state";
    pub const WEBHOOK_ATTEMPTS: &str = "webhook_attempts";
    pub const WEBHOOK_LAST_STATUS: &str = "webhook_last_status";
    pub const WEBHOOK_LAST_ERROR: &str = "webhook_last_error";
    /// Deliveries written so far; numbers the next delivery id.
    pub const WEBHOOK_SEQ: &str = "webhook_seq";
    /// The id of the latest delivery: only its outcome shows on the record.
    pub const WEBHOOK_LATEST: &str = "webhook_latest";
    /// The exceptions to the address guard the job was submitted under (see
    /// [`entry::FETCH_ALLOW`](super::entry::FETCH_ALLOW)), when any: copied into the stream
    /// entry of a scheduled job and into each webhook delivery.
    pub const FETCH_ALLOW: &str = "fetch_allow";

    /// Every field, for the Lua scripts.
    pub const ALL: &[&str] = &[
        MODEL,
        STATUS,
        CREATED_AT,
        STARTED_AT,
        FINISHED_AT,
        ATTEMPTS,
        ENTRY,
        DELIVERY,
        DEADLINE,
        WORKER,
        RESULT,
        ERROR_CODE,
        ERROR_MESSAGE,
        TTL,
        CACHE_KEY,
        CACHE_TTL,
        CACHED,
        DUE,
        PAYLOAD,
        TRACEPARENT,
        TENANT,
        PROGRESS_DONE,
        PROGRESS_TOTAL,
        PRIORITY,
        VERSION,
        COUNTED,
        WEBHOOK,
        WEBHOOK_EVENTS,
        WEBHOOK_STATE,
        WEBHOOK_ATTEMPTS,
        WEBHOOK_LAST_STATUS,
        WEBHOOK_LAST_ERROR,
        WEBHOOK_SEQ,
        WEBHOOK_LATEST,
        FETCH_ALLOW,
    ];
}

/// A webhook delivery's fields (`H.<field>` in the Lua scripts), packed in this order into
/// the delivery's one field of the partition's deliveries hash (`lua/outbox.lua`).
pub mod hook {
    /// The job the delivery is about.
    pub const JOB: &str = "job";
    /// `started` | `succeeded` | `failed` | `cancelled`.
    pub const EVENT: &str = "event";
    pub const URL: &str = "url";
    /// When the event happened, ms since the epoch.
    pub const AT: &str = "at";
    /// The job's tenant: whose signing key signs the message.
    pub const TENANT: &str = "tenant";
    /// Attempts claimed so far.
    pub const ATTEMPTS: &str = "attempts";
    /// Claims so far; the fencing token of the latest.
    pub const CLAIM: &str = "claim";
    /// The body the first attempt sent; retries send it again.
    pub const BODY: &str = "body";
    /// The exceptions to the address guard the job was submitted under, when any.
    pub const FETCH_ALLOW: &str = "fetch_allow";

    pub const ALL: &[&str] = &[
        JOB,
        EVENT,
        URL,
        AT,
        TENANT,
        ATTEMPTS,
        CLAIM,
        BODY,
        FETCH_ALLOW,
    ];
}

/// API key hash fields.
pub mod apikey {
    /// SHA-256 of the whole key, hex.
    pub const HASH: &str = "hash";
    pub const TENANT: &str = "tenant";
    /// Comma-separated scopes.
    pub const SCOPES: &str = "scopes";
    pub const NAME: &str = "name";
    /// ms since the epoch.
    pub const CREATED_AT: &str = "created_at";
    /// The tenant's `max_queued` quota set on this key; absent: the API's default.
    pub const MAX_QUEUED: &str = "max_queued";
    /// The tenant's submission rate set on this key; absent: the API's default.
    pub const RATE: &str = "rate";
    /// The tenant's submission burst set on this key; absent: the API's default.
    pub const BURST: &str = "burst";
}

/// Stored file hash fields (the OpenAI face's files, `{ns}:file:<id>`).
pub mod file {
    /// The tenant of the key that uploaded it (or of the batch that wrote it).
    pub const TENANT: &str = "tenant";
    pub const FILENAME: &str = "filename";
    /// `batch` (an upload) or `batch_output` (a batch's output or error file).
    pub const PURPOSE: &str = "purpose";
    /// The content's length in bytes.
    pub const BYTES: &str = "bytes";
    /// Unix seconds.
    pub const CREATED_AT: &str = "created_at";
    /// Unix seconds when the key expires.
    pub const EXPIRES_AT: &str = "expires_at";
    /// The file's bytes.
    pub const CONTENT: &str = "content";
}

/// Batch hash fields (the OpenAI face's batches, `{ns}:batch:<id>`; `B.<field>` in the Lua
/// scripts). Times are Unix seconds, as the OpenAI API gives them.
pub mod batch {
    pub const TENANT: &str = "tenant";
    /// `in_progress`, `cancelling`, `finalizing`, then `completed`, `cancelled`, `expired`
    /// or `failed`.
    pub const STATUS: &str = "status";
    /// The parts that never change, as JSON (input file, endpoint, window, metadata, times).
    pub const RECORD: &str = "record";
    /// One JSON entry per input line, in order: its `custom_id` and its job id, or the error
    /// that failed it before it became a job.
    pub const REQUESTS: &str = "requests";
    pub const CANCELLING_AT: &str = "cancelling_at";
    pub const FINALIZING_AT: &str = "finalizing_at";
    pub const COMPLETED_AT: &str = "completed_at";
    pub const CANCELLED_AT: &str = "cancelled_at";
    pub const EXPIRED_AT: &str = "expired_at";
    pub const FAILED_AT: &str = "failed_at";
    pub const OUTPUT_FILE_ID: &str = "output_file_id";
    pub const ERROR_FILE_ID: &str = "error_file_id";
    /// `<total> <completed> <failed>` once final (while running they come from the jobs).
    pub const COUNTS: &str = "counts";
    /// `<prompt tokens>` of the succeeded requests, once final.
    pub const TOKENS: &str = "tokens";
    /// While finalizing: until when (ms) the finalizer that holds the lease owns the step,
    /// and its token; a finalizer that died is taken over once it passes.
    pub const LEASE: &str = "lease";
    /// While finalizing: the status it ends in (`completed`, `cancelled`, `expired`).
    pub const ENDING: &str = "ending";

    pub const ALL: &[&str] = &[
        TENANT,
        STATUS,
        RECORD,
        REQUESTS,
        CANCELLING_AT,
        FINALIZING_AT,
        COMPLETED_AT,
        CANCELLED_AT,
        EXPIRED_AT,
        FAILED_AT,
        OUTPUT_FILE_ID,
        ERROR_FILE_ID,
        COUNTS,
        TOKENS,
        LEASE,
        ENDING,
    ];
}
