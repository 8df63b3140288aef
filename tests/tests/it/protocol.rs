//! The queue protocol's Lua scripts driven directly through `Queue` against a real redis-server,
//! with no API and no worker processes: fencing tokens, release, cancel, idempotent start,
//! malformed entries, retirement, deadlines and attempt limits. The used-lanes set and the
//! Redis commands a submission costs are in `lanes.rs`, on the same fixture.

use std::collections::HashMap;
use std::time::Duration;

use inferq_shared::config::RedisConfig;
use inferq_shared::job::{JobId, JobStatus};
use inferq_shared::model::{ModelInfo, TensorSpec};
use inferq_shared::queue::keys::{entry, field};
use inferq_shared::queue::{
    Cancelled, Completion, Delivery, Entry, EntryRef, GROUP, Outcome, Queue, Retention, Retired,
    StoredJob, Submitted,
};
use inferq_shared::{DataType, ErrorCode};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;

use crate::helpers::Redis;

pub(crate) const MODEL: &str = "m";
pub(crate) const RETENTION: Retention = Retention {
    result_ttl: Duration::from_secs(60),
};
/// The lease reclaims use, and a sleep safely past it.
const LEASE: Duration = Duration::from_millis(50);
const LAPSE: Duration = Duration::from_millis(80);
const MAX_ATTEMPTS: u32 = 3;
pub(crate) const PAYLOAD: &[u8] = br#"{"inputs":[]}"#;
const RESULT: &str = r#"{"outputs":[]}"#;

/// A private Redis, a queue on a random namespace with `MODEL` registered, and a raw connection.
pub(crate) struct Fixture {
    _redis: Redis,
    pub(crate) queue: Queue,
    pub(crate) conn: MultiplexedConnection,
}

pub(crate) fn model_info(name: &str) -> ModelInfo {
    let spec = |n: &str| TensorSpec {
        name: n.to_owned(),
        datatype: DataType::Fp32,
        shape: vec![-1, 4],
    };
    ModelInfo {
        name: name.to_owned(),
        description: None,
        inputs: vec![spec("x")],
        outputs: vec![spec("y")],
        batching: true,
        max_batch_size: 8,
        sha256: None,
    }
}

pub(crate) async fn setup() -> Fixture {
    let redis = Redis::start_with(false);
    let namespace = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let queue = Queue::connect(&RedisConfig::new(&redis.url(), &namespace), Duration::ZERO)
        .await
        .unwrap();
    queue
        .announce_models("w1", &[model_info(MODEL)])
        .await
        .unwrap();
    queue.ensure_group(MODEL).await.unwrap();
    let conn = redis.conn().await;
    Fixture {
        _redis: redis,
        queue,
        conn,
    }
}

impl Fixture {
    async fn submit(&self, deadline_ms: Option<u64>) -> JobId {
        let id = JobId::new();
        let s = self
            .queue
            .submit(id, MODEL, PAYLOAD, 0, deadline_ms, None, "default")
            .await
            .unwrap();
        assert_eq!(s, Submitted::Queued);
        id
    }

    async fn record(&self, id: JobId) -> StoredJob {
        self.queue
            .record(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("job {id} has no record"))
    }

    /// Reads every new entry for `consumer`.
    async fn read(&self, consumer: &str) -> Vec<Entry> {
        self.queue.read(consumer, MODEL, 100, None).await.unwrap()
    }

    /// Reads exactly one new, valid entry for `consumer`.
    pub(crate) async fn read_one(&self, consumer: &str) -> Delivery {
        one(jobs(self.read(consumer).await))
    }

    /// Lets every lease lapse and reclaims everything for `consumer`.
    async fn reclaim(&self, consumer: &str) -> Vec<Entry> {
        tokio::time::sleep(LAPSE).await;
        self.queue
            .reclaim(consumer, MODEL, LEASE, 100)
            .await
            .unwrap()
    }

    async fn reclaim_one(&self, consumer: &str) -> Delivery {
        one(jobs(self.reclaim(consumer).await))
    }

    async fn start(&self, consumer: &str, deliveries: &[Delivery], max_attempts: u32) -> Vec<u64> {
        self.queue
            .start(MODEL, consumer, deliveries, max_attempts, RETENTION)
            .await
            .unwrap()
    }

    async fn start_one(&self, consumer: &str, d: &Delivery, max_attempts: u32) -> Vec<u64> {
        self.start(consumer, std::slice::from_ref(d), max_attempts)
            .await
    }

    async fn complete(&self, d: &Delivery, token: u64) -> Vec<bool> {
        self.queue
            .complete(MODEL, &[succeeded(d, token)], RETENTION)
            .await
            .unwrap()
    }

    async fn xlen(&self, key: &str) -> u64 {
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap()
    }

    pub(crate) async fn stream_len(&self) -> u64 {
        self.xlen(&self.queue.keys().stream(MODEL)).await
    }

    /// Entries of the model's stream pending in the group (read, not acknowledged).
    async fn pending(&self) -> usize {
        let p: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(self.queue.keys().stream(MODEL))
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(100)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
        p.len()
    }

    /// Stream entry ids of the model's stream, oldest first.
    async fn stream_ids(&self) -> Vec<String> {
        let r: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.queue.keys().stream(MODEL))
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
        r.ids.into_iter().map(|e| e.id).collect()
    }

    /// The dead-letter stream, oldest first, each entry's fields as strings.
    async fn dead_letters(&self) -> Vec<HashMap<String, String>> {
        let r: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.queue.keys().dead_letter())
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
        r.ids
            .into_iter()
            .map(|e| {
                e.map
                    .into_iter()
                    .map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap()))
                    .collect()
            })
            .collect()
    }

    /// XADDs an entry with the given fields straight into the model's stream.
    async fn xadd(&self, fields: &[(&str, &str)]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.queue.keys().stream(MODEL)).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query_async(&mut self.conn.clone()).await.unwrap()
    }
}

fn jobs(entries: Vec<Entry>) -> Vec<Delivery> {
    entries
        .into_iter()
        .map(|e| match e {
            Entry::Job(d) => d,
            Entry::Malformed { entry, job } => panic!("malformed entry {entry} (job {job:?})"),
        })
        .collect()
}

fn one(mut deliveries: Vec<Delivery>) -> Delivery {
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    deliveries.pop().unwrap()
}

fn succeeded(d: &Delivery, token: u64) -> Completion {
    Completion {
        job: d.job,
        entry: d.entry.clone(),
        token,
        outcome: Outcome::Succeeded(RESULT.as_bytes().to_vec()),
    }
}

fn error_code(job: &StoredJob) -> Option<&str> {
    job.error.as_ref().map(|(code, _)| code.as_str())
}

#[tokio::test]
async fn a_stale_token_is_refused() {
    let f = setup().await;
    let id = f.submit(None).await;

    let first = f.read_one("w1").await;
    assert_eq!(first.job, id);
    assert_eq!(first.payload, PAYLOAD);
    assert_eq!(f.start_one("w1", &first, MAX_ATTEMPTS).await, [1]);

    // w1 stalls past its lease; w2 takes the job over.
    let second = f.reclaim_one("w2").await;
    assert_eq!(second.job, id);
    assert_eq!(second.entry, first.entry);
    assert_eq!(f.start_one("w2", &second, MAX_ATTEMPTS).await, [2]);

    // w1 wakes up and reports: fenced off, nothing changes.
    assert_eq!(f.complete(&first, 1).await, [false]);
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Running);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.result, None);
    assert_eq!(f.pending().await, 1);

    assert_eq!(f.complete(&second, 2).await, [true]);
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Succeeded);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.result.as_deref(), Some(RESULT.as_bytes()));
    assert_eq!(rec.error, None);
    assert!(rec.finished_at.is_some());
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);
}

#[tokio::test]
async fn a_completion_after_release_is_discarded() {
    let f = setup().await;
    let id = f.submit(None).await;

    let first = f.read_one("w1").await;
    assert_eq!(f.start_one("w1", &first, MAX_ATTEMPTS).await, [1]);
    let released = f
        .queue
        .release(MODEL, &[(id, first.entry.clone(), 1)])
        .await
        .unwrap();
    assert_eq!(released, 1);

    // The attempt finishes anyway, after it gave the job back: its result is not recorded.
    assert_eq!(f.complete(&first, 1).await, [false]);
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Queued);
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.result, None);
    let ids = f.stream_ids().await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_ne!(
        ids[0], first.entry.id,
        "the job was re-queued under a new entry"
    );
    assert_eq!(f.pending().await, 0);

    let again = f.read_one("w1").await;
    assert_eq!(again.job, id);
    assert_eq!(again.entry.id, ids[0]);
    assert_eq!(again.payload, PAYLOAD);
    assert_eq!(f.start_one("w1", &again, MAX_ATTEMPTS).await, [2]);
    assert_eq!(f.complete(&again, 2).await, [true]);
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Succeeded);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.result.as_deref(), Some(RESULT.as_bytes()));
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);

    // The other order: a release arriving after the completion puts nothing back.
    let released = f
        .queue
        .release(MODEL, &[(id, again.entry.clone(), 2)])
        .await
        .unwrap();
    assert_eq!(released, 0);
    assert_eq!(f.record(id).await.status, JobStatus::Succeeded);
    assert_eq!(f.stream_len().await, 0);
}

#[tokio::test]
async fn cancelling_a_running_job_discards_its_result() {
    let f = setup().await;
    let id = f.submit(None).await;
    let d = f.read_one("w1").await;
    assert_eq!(f.start_one("w1", &d, MAX_ATTEMPTS).await, [1]);

    assert_eq!(
        f.queue.cancel(id, RETENTION).await.unwrap(),
        Cancelled::Cancelled
    );
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Cancelled);
    assert!(rec.finished_at.is_some());

    // The running attempt reports: not recorded, but its entry is cleaned up.
    assert_eq!(f.complete(&d, 1).await, [false]);
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Cancelled);
    assert_eq!(rec.result, None);
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);

    assert_eq!(
        f.queue.cancel(id, RETENTION).await.unwrap(),
        Cancelled::AlreadyFinished(JobStatus::Cancelled)
    );
    assert_eq!(
        f.queue.cancel(JobId::new(), RETENTION).await.unwrap(),
        Cancelled::NotFound
    );
}

#[tokio::test]
async fn starting_one_delivery_twice_adds_no_attempt() {
    let f = setup().await;
    let id = f.submit(None).await;
    let d = f.read_one("w1").await;

    assert_eq!(f.start_one("w1", &d, MAX_ATTEMPTS).await, [1]);
    assert_eq!(f.start_one("w1", &d, MAX_ATTEMPTS).await, [1]);
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Running);
    assert_eq!(rec.attempts, 1);

    // A new delivery (another consumer's reclaim) is a new attempt, and repeating its start
    // is again harmless.
    let again = f.reclaim_one("w2").await;
    assert_eq!(again.entry, d.entry);
    assert_eq!(f.start_one("w2", &again, MAX_ATTEMPTS).await, [2]);
    assert_eq!(f.start_one("w2", &again, MAX_ATTEMPTS).await, [2]);
    assert_eq!(f.record(id).await.attempts, 2);

    assert_eq!(f.complete(&d, 1).await, [false]);
    assert_eq!(f.complete(&again, 2).await, [true]);
    let rec = f.record(id).await;
    assert_eq!(rec.status, JobStatus::Succeeded);
    assert_eq!(rec.attempts, 2);
}

#[tokio::test]
async fn malformed_entries_are_set_aside_and_their_neighbours_run() {
    let f = setup().await;
    let a = f.submit(None).await;
    let no_id = f.xadd(&[(entry::ID, "not-a-uuid")]).await;
    // A job whose record exists but whose entry lost its payload.
    let c = JobId::new();
    let c_id = c.to_string();
    let no_payload = f.xadd(&[(entry::ID, c_id.as_str())]).await;
    redis::cmd("HSET")
        .arg(f.queue.keys().job(c))
        .arg(field::MODEL)
        .arg(MODEL)
        .arg(field::STATUS)
        .arg("queued")
        .arg(field::CREATED_AT)
        .arg(1)
        .arg(field::ATTEMPTS)
        .arg(0)
        .arg(field::ENTRY)
        .arg(&no_payload)
        .arg(field::DEADLINE)
        .arg(0)
        .query_async::<()>(&mut f.conn.clone())
        .await
        .unwrap();
    let b = f.submit(None).await;

    let describe = |entries: &[Entry]| -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Entry::Job(d) => format!("job {}", d.job),
                Entry::Malformed { entry, job } => format!("bad {entry} {job:?}"),
            })
            .collect()
    };
    let want = [
        format!("job {a}"),
        format!("bad {no_id} None"),
        format!("bad {no_payload} Some({c:?})"),
        format!("job {b}"),
    ];
    let read = f.read("w1").await;
    assert_eq!(describe(&read), want);

    // w1 dies holding all four; w2 reclaims them, the unreadable ones included.
    let reclaimed = f.reclaim("w2").await;
    assert_eq!(describe(&reclaimed), want);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for e in reclaimed {
        match e {
            Entry::Job(d) => good.push(d),
            Entry::Malformed { entry, job } => bad.push((entry, job)),
        }
    }
    assert_eq!(
        bad,
        [
            (EntryRef::new(no_id.clone()), None),
            (EntryRef::new(no_payload.clone()), Some(c))
        ],
        "malformed entries"
    );

    let moved = f.queue.set_aside(MODEL, &bad, RETENTION).await.unwrap();
    assert_eq!(moved, 2);
    let dead = f.dead_letters().await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (d, (entry_id, id)) in dead
        .iter()
        .zip([(&no_id, "not-a-uuid"), (&no_payload, c_id.as_str())])
    {
        assert_eq!(d["reason"], "malformed_entry", "{d:?}");
        assert_eq!(&d["entry"], entry_id, "{d:?}");
        assert_eq!(d[entry::ID], id, "{d:?}");
        assert!(!d.contains_key(entry::PAYLOAD), "{d:?}");
        assert!(d["failed_at"].parse::<u64>().is_ok(), "{d:?}");
    }
    let rec = f.record(c).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(error_code(&rec), Some(ErrorCode::MalformedEntry.as_str()));
    assert_eq!(
        f.stream_ids().await,
        [good[0].entry.id.clone(), good[1].entry.id.clone()]
    );
    assert_eq!(f.pending().await, 2);

    assert_eq!(good[0].job, a);
    assert_eq!(good[1].job, b);
    assert_eq!(f.start("w2", &good, MAX_ATTEMPTS).await, [1, 1]);
    let done = f
        .queue
        .complete(
            MODEL,
            &[succeeded(&good[0], 1), succeeded(&good[1], 1)],
            RETENTION,
        )
        .await
        .unwrap();
    assert_eq!(done, [true, true]);
    for id in [a, b] {
        let rec = f.record(id).await;
        assert_eq!(rec.status, JobStatus::Succeeded);
        assert_eq!(rec.result.as_deref(), Some(RESULT.as_bytes()));
    }
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);
}

#[tokio::test]
async fn retiring_a_model_fails_its_jobs_and_refuses_new_ones() {
    let f = setup().await;
    let ids = [
        f.submit(None).await,
        f.submit(None).await,
        f.submit(None).await,
    ];
    let entries = f.queue.read("w1", MODEL, 1, None).await.unwrap();
    let running = one(jobs(entries));
    assert_eq!(running.job, ids[0]);
    assert_eq!(f.start_one("w1", &running, MAX_ATTEMPTS).await, [1]);

    assert_eq!(
        f.queue.retire_model(MODEL, RETENTION).await.unwrap(),
        Retired::Retired(3)
    );
    for id in ids {
        let rec = f.record(id).await;
        assert_eq!(rec.status, JobStatus::Failed, "{id}");
        assert_eq!(error_code(&rec), Some(ErrorCode::ModelRetired.as_str()));
        assert!(rec.finished_at.is_some());
    }
    assert!(
        !f.queue
            .known_models()
            .await
            .unwrap()
            .iter()
            .any(|m| m.name == MODEL)
    );
    assert!(f.queue.model_statuses().await.unwrap().is_empty());
    assert_eq!(f.stream_len().await, 0);

    // The attempt that was running reports late: the retirement stands.
    assert_eq!(f.complete(&running, 1).await, [false]);
    let rec = f.record(ids[0]).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.result, None);

    assert_eq!(
        f.queue
            .submit(JobId::new(), MODEL, PAYLOAD, 0, None, None, "default")
            .await
            .unwrap(),
        Submitted::UnknownModel
    );
    assert_eq!(
        f.queue.retire_model(MODEL, RETENTION).await.unwrap(),
        Retired::NotFound
    );
}

#[tokio::test]
async fn start_enforces_deadline_and_max_attempts() {
    let f = setup().await;

    // A deadline long past: failed at start, never run, not dead-lettered.
    let late = f.submit(Some(1)).await;
    let d = f.read_one("w1").await;
    assert_eq!(d.job, late);
    assert_eq!(f.start_one("w1", &d, MAX_ATTEMPTS).await, [0]);
    let rec = f.record(late).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(error_code(&rec), Some(ErrorCode::DeadlineExceeded.as_str()));
    assert_eq!(rec.attempts, 0);
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);
    assert_eq!(f.xlen(&f.queue.keys().dead_letter()).await, 0);

    // One attempt allowed: the reclaim after it is refused and the job is dead-lettered.
    let poison = f.submit(None).await;
    let first = f.read_one("w1").await;
    assert_eq!(first.job, poison);
    assert_eq!(f.start_one("w1", &first, 1).await, [1]);
    let second = f.reclaim_one("w2").await;
    assert_eq!(second.job, poison);
    assert_eq!(f.start_one("w2", &second, 1).await, [0]);
    let rec = f.record(poison).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(
        error_code(&rec),
        Some(ErrorCode::MaxAttemptsExceeded.as_str())
    );
    assert_eq!(rec.attempts, 1);
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);
    let dead = f.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "max_attempts_exceeded");
    assert_eq!(dead[0][entry::ID], poison.to_string());
    assert_eq!(dead[0][entry::PAYLOAD].as_bytes(), PAYLOAD);

    // The first attempt's late report changes nothing.
    assert_eq!(f.complete(&first, 1).await, [false]);
    let rec = f.record(poison).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.result, None);
}

/// A worker whose `start` call failed ambiguously retries it (as `consumer.rs` does); if its
/// lease lapsed meanwhile and another worker reclaimed and started the job, the retry must
/// not hand it the other worker's token (two workers would run the job under one token).
/// Fails today: `start.lua` keys a delivery by entry and delivery count only, not by the
/// consumer that owns the pending entry.
#[tokio::test]
async fn a_start_retried_after_a_reclaim_does_not_share_the_new_token() {
    let f = setup().await;
    let id = f.submit(None).await;
    let first = f.read_one("w1").await;
    assert_eq!(f.start_one("w1", &first, MAX_ATTEMPTS).await, [1]);
    let second = f.reclaim_one("w2").await;
    assert_eq!(f.start_one("w2", &second, MAX_ATTEMPTS).await, [2]);

    // w1 retries the start of its own (old) delivery.
    let retried = f.start_one("w1", &first, MAX_ATTEMPTS).await;
    assert_ne!(retried, [2], "w1 was handed w2's fencing token");
    assert_eq!(f.pending().await, 1, "w2's entry must stay pending");
    assert_eq!(f.complete(&second, 2).await, [true]);
    assert_eq!(f.record(id).await.status, JobStatus::Succeeded);
}
