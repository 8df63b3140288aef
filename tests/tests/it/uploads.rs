//! The pipeline side of the queue protocol, driven through `Queue` against a real
//! redis-server: a pipeline job's upload is written with the job and deleted by whichever
//! step ends the job (completion, cancellation, a deadline or the attempt limit at start),
//! never while a newer attempt runs; progress writes are fenced by the attempt's token.

use std::time::Duration;

use inferq_shared::ErrorCode;
use inferq_shared::config::RedisConfig;
use inferq_shared::job::{JobError, JobId, JobStatus};
use inferq_shared::queue::keys::pipeline_queue;
use inferq_shared::queue::{
    Cancelled, Completion, Delivery, Entry, Outcome, PipelineSubmission, Queue, Retention,
    Submitted,
};
use redis::AsyncCommands;

use crate::support::Redis;

const RETENTION: Retention = Retention {
    result_ttl: Duration::from_secs(60),
};

struct Fixture {
    _redis: Redis,
    queue: Queue,
    conn: redis::aio::MultiplexedConnection,
    name: String,
}

async fn setup() -> Fixture {
    let redis = Redis::start_with(false);
    let namespace = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let queue = Queue::connect(&RedisConfig::new(&redis.url(), &namespace), Duration::ZERO)
        .await
        .unwrap();
    let name = pipeline_queue("speech_segments");
    queue.ensure_group(&name).await.unwrap();
    let conn = redis.conn().await;
    Fixture {
        _redis: redis,
        queue,
        conn,
        name,
    }
}

impl Fixture {
    async fn submit(&self, deadline: Option<u64>) -> JobId {
        let id = JobId::new();
        let s = self
            .queue
            .submit_pipeline(
                id,
                PipelineSubmission {
                    queue: &self.name,
                    payload: b"{}",
                    upload: b"RIFF....WAVE",
                    upload_ttl: Duration::from_secs(100),
                    tenant: "t1",
                    tenant_max_queued: 0,
                    webhook: None,
                },
                0,
                deadline,
            )
            .await
            .unwrap();
        assert_eq!(s, Submitted::Queued);
        id
    }

    async fn upload_exists(&self, id: JobId) -> bool {
        self.conn
            .clone()
            .exists(self.queue.keys().upload(id))
            .await
            .unwrap()
    }

    async fn read_one(&self, consumer: &str) -> Delivery {
        let mut got = self
            .queue
            .read(consumer, &self.name, 10, None)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        match got.remove(0) {
            Entry::Job(d) => d,
            Entry::Malformed { .. } => panic!("malformed entry"),
        }
    }

    async fn start(&self, consumer: &str, d: &Delivery) -> u64 {
        self.queue
            .start(&self.name, consumer, std::slice::from_ref(d), 3, RETENTION)
            .await
            .unwrap()[0]
    }

    async fn complete(&self, d: &Delivery, token: u64) -> bool {
        self.queue
            .complete(
                &self.name,
                &[Completion {
                    job: d.job,
                    entry: d.entry.clone(),
                    token,
                    outcome: Outcome::Succeeded(br#"{"segments":[]}"#.to_vec()),
                }],
                RETENTION,
            )
            .await
            .unwrap()[0]
    }
}

#[tokio::test]
async fn the_upload_lives_until_the_job_ends_and_no_longer() {
    let f = setup().await;
    let id = f.submit(None).await;
    assert!(f.upload_exists(id).await);
    assert_eq!(f.queue.upload_len(id).await.unwrap(), 12);
    assert_eq!(f.queue.record(id).await.unwrap().unwrap().tenant, "t1");
    assert_eq!(f.queue.read_upload(id, 4, 100).await.unwrap(), b"....WAVE");
    let ttl: i64 = f.conn.clone().ttl(f.queue.keys().upload(id)).await.unwrap();
    assert!(ttl > 0 && ttl <= 100, "{ttl}");

    let d = f.read_one("w1").await;
    let t1 = f.start("w1", &d).await;
    assert_eq!(t1, 1);
    assert!(f.queue.progress(id, t1, 1.5, Some(10.0)).await.unwrap());
    assert_eq!(
        f.queue.record(id).await.unwrap().unwrap().progress,
        Some((1.5, Some(10.0)))
    );

    // The lease lapses; another worker takes over: attempt 1 is fenced off everywhere.
    tokio::time::sleep(Duration::from_millis(80)).await;
    let d2 = match f
        .queue
        .reclaim("w2", &f.name, Duration::from_millis(50), 10)
        .await
        .unwrap()
        .remove(0)
    {
        Entry::Job(d) => d,
        Entry::Malformed { .. } => panic!(),
    };
    let t2 = f.start("w2", &d2).await;
    assert_eq!(t2, 2);
    // Progress starts over with the new attempt.
    assert_eq!(f.queue.record(id).await.unwrap().unwrap().progress, None);
    assert!(!f.queue.progress(id, t1, 9.0, Some(10.0)).await.unwrap());
    assert!(!f.complete(&d, t1).await);
    assert!(
        f.upload_exists(id).await,
        "a stale attempt deleted the running one's upload"
    );

    assert!(f.queue.progress(id, t2, 10.0, Some(10.0)).await.unwrap());
    assert!(f.complete(&d2, t2).await);
    let job = f.queue.record(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert!(!f.upload_exists(id).await, "the upload outlived its job");
}

#[tokio::test]
async fn cancelling_deletes_the_upload_and_stops_progress() {
    let f = setup().await;
    // Queued.
    let id = f.submit(None).await;
    assert_eq!(
        f.queue.cancel(id, RETENTION).await.unwrap(),
        Cancelled::Cancelled
    );
    assert!(!f.upload_exists(id).await);
    // Running: its next progress write tells the worker to stop; its late outcome only
    // acknowledges the entry.
    let id = f.submit(None).await;
    let d = f.read_one("w1").await;
    let t = f.start("w1", &d).await;
    assert_eq!(
        f.queue.cancel(id, RETENTION).await.unwrap(),
        Cancelled::Cancelled
    );
    assert!(!f.upload_exists(id).await);
    assert!(!f.queue.progress(id, t, 3.0, None).await.unwrap());
    assert!(!f.complete(&d, t).await);
    assert_eq!(
        f.queue.record(id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

#[tokio::test]
async fn a_job_that_ends_at_start_takes_its_upload_with_it() {
    let f = setup().await;
    let id = f.submit(Some(1)).await;
    let d = f.read_one("w1").await;
    assert_eq!(f.start("w1", &d).await, 0);
    let job = f.queue.record(id).await.unwrap().unwrap();
    assert_eq!(job.error.unwrap().0, "deadline_exceeded");
    assert!(!f.upload_exists(id).await);

    // A failed outcome deletes it too.
    let id = f.submit(None).await;
    let d = f.read_one("w1").await;
    let t = f.start("w1", &d).await;
    let done = f
        .queue
        .complete(
            &f.name,
            &[Completion {
                job: id,
                entry: d.entry.clone(),
                token: t,
                outcome: Outcome::Failed(JobError::new(ErrorCode::InvalidAudio, "truncated")),
            }],
            RETENTION,
        )
        .await
        .unwrap();
    assert_eq!(done, vec![true]);
    assert!(!f.upload_exists(id).await);
}
