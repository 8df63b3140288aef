//! A queue driven directly, with no API and no worker processes: a private Redis, a `Queue` on
//! a random namespace with one model registered, and the raw reads a test checks it with
//! (the fixture of the protocol, lanes and tenant-count tests).

use std::collections::HashMap;
use std::time::Duration;

use inferq_shared::DataType;
use inferq_shared::config::RedisConfig;
use inferq_shared::job::JobId;
use inferq_shared::model::{ModelInfo, TensorSpec};
use inferq_shared::queue::{
    Completion, Delivery, Entry, GROUP, Outcome, Queue, Retention, StoredJob, Submitted,
};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;

use super::Redis;

pub(crate) const MODEL: &str = "m";
pub(crate) const RETENTION: Retention = Retention {
    result_ttl: Duration::from_secs(60),
};
/// The lease reclaims use, and a sleep safely past it.
pub(crate) const LEASE: Duration = Duration::from_millis(50);
pub(crate) const LAPSE: Duration = Duration::from_millis(80);
pub(crate) const MAX_ATTEMPTS: u32 = 3;
pub(crate) const PAYLOAD: &[u8] = br#"{"inputs":[]}"#;
pub(crate) const RESULT: &str = r#"{"outputs":[]}"#;

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
    pub(crate) async fn submit(&self, deadline_ms: Option<u64>) -> JobId {
        let id = JobId::new();
        let s = self
            .queue
            .submit(id, MODEL, PAYLOAD, 0, deadline_ms, None, "default")
            .await
            .unwrap();
        assert_eq!(s, Submitted::Queued);
        id
    }

    pub(crate) async fn record(&self, id: JobId) -> StoredJob {
        self.queue
            .record(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("job {id} has no record"))
    }

    /// Reads every new entry for `consumer`.
    pub(crate) async fn read(&self, consumer: &str) -> Vec<Entry> {
        self.queue.read(consumer, MODEL, 100, None).await.unwrap()
    }

    /// Reads exactly one new, valid entry for `consumer`.
    pub(crate) async fn read_one(&self, consumer: &str) -> Delivery {
        one(jobs(self.read(consumer).await))
    }

    /// Lets every lease lapse and reclaims everything for `consumer`.
    pub(crate) async fn reclaim(&self, consumer: &str) -> Vec<Entry> {
        tokio::time::sleep(LAPSE).await;
        self.queue
            .reclaim(consumer, MODEL, LEASE, 100)
            .await
            .unwrap()
    }

    pub(crate) async fn reclaim_one(&self, consumer: &str) -> Delivery {
        one(jobs(self.reclaim(consumer).await))
    }

    pub(crate) async fn start(
        &self,
        consumer: &str,
        deliveries: &[Delivery],
        max_attempts: u32,
    ) -> Vec<u64> {
        self.queue
            .start(MODEL, consumer, deliveries, max_attempts, RETENTION)
            .await
            .unwrap()
    }

    pub(crate) async fn start_one(
        &self,
        consumer: &str,
        d: &Delivery,
        max_attempts: u32,
    ) -> Vec<u64> {
        self.start(consumer, std::slice::from_ref(d), max_attempts)
            .await
    }

    pub(crate) async fn complete(&self, d: &Delivery, token: u64) -> Vec<bool> {
        self.queue
            .complete(MODEL, &[succeeded(d, token)], RETENTION)
            .await
            .unwrap()
    }

    pub(crate) async fn xlen(&self, key: &str) -> u64 {
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
    pub(crate) async fn pending(&self) -> usize {
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
    pub(crate) async fn stream_ids(&self) -> Vec<String> {
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
    pub(crate) async fn dead_letters(&self) -> Vec<HashMap<String, String>> {
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
    pub(crate) async fn xadd(&self, fields: &[(&str, &str)]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.queue.keys().stream(MODEL)).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query_async(&mut self.conn.clone()).await.unwrap()
    }
}

pub(crate) fn jobs(entries: Vec<Entry>) -> Vec<Delivery> {
    entries
        .into_iter()
        .map(|e| match e {
            Entry::Job(d) => d,
            Entry::Malformed { entry, job } => panic!("malformed entry {entry} (job {job:?})"),
        })
        .collect()
}

pub(crate) fn one(mut deliveries: Vec<Delivery>) -> Delivery {
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    deliveries.pop().unwrap()
}

pub(crate) fn succeeded(d: &Delivery, token: u64) -> Completion {
    Completion {
        job: d.job,
        entry: d.entry.clone(),
        token,
        outcome: Outcome::Succeeded(RESULT.as_bytes().to_vec()),
    }
}

pub(crate) fn error_code(job: &StoredJob) -> Option<&str> {
    job.error.as_ref().map(|(code, _)| code.as_str())
}
