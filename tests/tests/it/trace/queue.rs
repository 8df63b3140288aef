//! A job's trace stays with it through the queue: reclaims, hand-backs, dead letters, retries
//! and scheduling, driven directly through `Queue`.

use std::collections::HashMap;
use std::time::Duration;

use inferq_shared::config::RedisConfig;
use inferq_shared::job::{JobId, Priority};
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::{Entry, NewJob, Queue, Retention, Retried, Submitted};
use inferq_shared::time::now_ms;
use inferq_shared::trace::TraceParent;

use super::TRACE_A;
use crate::support::spawn_app;

#[tokio::test]
async fn a_traceparent_stays_with_its_job_through_reclaims_hand_backs_and_dead_letters() {
    let app = spawn_app().await;
    // The queue driven directly, as a worker would, with no worker process.
    let queue = Queue::connect(
        &RedisConfig::new(&app.redis.url(), &app.namespace),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let info = ModelInfo {
        name: "m".into(),
        description: None,
        inputs: Vec::new(),
        outputs: Vec::new(),
        batching: false,
        max_batch_size: 1,
        sha256: None,
    };
    queue.announce_models("w0", &[info]).await.unwrap();
    queue.ensure_group("m").await.unwrap();
    let tp = TraceParent::parse(TRACE_A).unwrap();
    let id = JobId::new();
    queue
        .submit(id, "m", b"{}", 0, None, Some(&tp), "default")
        .await
        .unwrap();
    let one = |entries: Vec<Entry>| match entries.as_slice() {
        [Entry::Job(d)] => d.clone(),
        other => panic!("{other:?}"),
    };
    let retention = Retention {
        result_ttl: Duration::from_secs(60),
    };

    let d = one(queue.read("w1", "m", 10, None).await.unwrap());
    assert_eq!(d.trace, Some(tp));
    assert_eq!(
        queue
            .start("m", "w1", std::slice::from_ref(&d), 2, retention)
            .await
            .unwrap(),
        [1]
    );
    // Taken over after its lease lapsed: same entry, same trace.
    tokio::time::sleep(Duration::from_millis(80)).await;
    let d = one(queue
        .reclaim("w2", "m", Duration::from_millis(50), 10)
        .await
        .unwrap());
    assert_eq!(d.trace, Some(tp));
    assert_eq!(
        queue
            .start("m", "w2", std::slice::from_ref(&d), 2, retention)
            .await
            .unwrap(),
        [2]
    );
    // Handed back by a stopping worker: a fresh entry, same trace.
    assert_eq!(
        queue
            .release("m", &[(id, d.entry.clone(), 2)])
            .await
            .unwrap(),
        1
    );
    let d = one(queue.read("w3", "m", 10, None).await.unwrap());
    assert_eq!(d.trace, Some(tp));
    // Out of attempts: its dead letter keeps the trace too.
    assert_eq!(
        queue.start("m", "w3", &[d], 2, retention).await.unwrap(),
        [0]
    );
    let mut conn = app.redis.conn().await;
    let mut dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(queue.keys().dead_letter())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fields: HashMap<String, String> = dead
        .ids
        .swap_remove(0)
        .map
        .into_iter()
        .map(|(k, v)| (k, redis::from_redis_value(v).unwrap()))
        .collect();
    assert_eq!(fields["traceparent"], TRACE_A, "{fields:?}");
    assert_eq!(fields["id"], id.to_string());
    // Retried from the dead letters by an operator: the new attempts join the same trace.
    assert_eq!(
        queue.retry_dead(&id.to_string()).await.unwrap(),
        Retried::Queued(id)
    );
    let d = one(queue.read("w4", "m", 10, None).await.unwrap());
    assert_eq!(d.trace, Some(tp));

    // A scheduled job keeps it in its record until it is due, then in its entry.
    let later = JobId::new();
    let job = NewJob {
        id: later,
        model: "m",
        payload: b"{}",
        deadline_ms: None,
        result_ttl_secs: None,
        idempotency: None,
        cache: None,
        due_ms: Some(now_ms() + 100),
        trace: Some(tp),
        tenant: "default",
        priority: Priority::DEFAULT,
        tenant_max_queued: 0,
        webhook: None,
    };
    let submitted = queue
        .submit_many(&[job], 0, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(submitted, [Submitted::Scheduled]);
    assert_eq!(
        app.job_field(&later.to_string(), "traceparent")
            .await
            .as_deref(),
        Some(TRACE_A)
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(queue.promote_due(10).await.unwrap(), 1);
    assert_eq!(app.job_field(&later.to_string(), "traceparent").await, None);
    let d = one(queue.read("w5", "m", 10, None).await.unwrap());
    assert_eq!((d.job, d.trace), (later, Some(tp)));
}
