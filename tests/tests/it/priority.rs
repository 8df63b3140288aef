//! Priorities: among a model's waiting jobs a worker starts higher `parameters.priority` first,
//! ties in arrival order, and a job that waited long enough overtakes fresher higher-priority
//! ones (aging).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const DONE: Duration = Duration::from_secs(60);

fn slow_with_priority(x: f32, priority: Option<u8>) -> Value {
    let mut body = slow_job(x);
    if let Some(p) = priority {
        body["parameters"] = json!({"priority": p});
    }
    body
}

/// Registers `slow` with a worker and stops it, so jobs wait until the next worker starts.
async fn app_without_running_worker() -> App {
    let app = spawn_app().await;
    let mut w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    w.signal("KILL");
    w.wait_exit(Duration::from_secs(10));
    app
}

/// Waits for every job and returns their ids in the order they finished (one inference
/// thread runs them one after another).
async fn finishing_order(app: &App, ids: &[(&str, String)]) -> Vec<String> {
    let mut done = Vec::new();
    for (name, id) in ids {
        let record = app.wait_done(id, DONE).await;
        assert_eq!(record["status"], "succeeded", "{name}: {record}");
        let finished = record["finished_at"].as_str().unwrap().to_owned();
        done.push((finished, name.to_string()));
    }
    done.sort();
    done.into_iter().map(|(_, name)| name).collect()
}

#[tokio::test]
async fn higher_priorities_start_first_and_equal_ones_in_arrival_order() {
    let app = app_without_running_worker().await;
    let plan: [(&str, Option<u8>); 7] = [
        ("a1", Some(1)),
        ("b5", Some(5)),
        ("c-default", None),
        ("d9", Some(9)),
        ("e1", Some(1)),
        ("f9", Some(9)),
        ("g0", Some(0)),
    ];
    let mut ids = Vec::new();
    for (i, (name, p)) in plan.iter().enumerate() {
        ids.push((*name, app.submit(&slow_with_priority(i as f32, *p)).await));
    }

    // While nothing runs, each job's place counts the higher lanes and the older jobs of its own.
    let expected_position = [4, 2, 3, 0, 5, 1, 6];
    for ((name, id), (want, (_, p))) in ids.iter().zip(expected_position.iter().zip(&plan)) {
        let (_, record) = app.get(&format!("/status/{id}")).await;
        assert_eq!(record["status"], "queued", "{name}: {record}");
        assert_eq!(record["priority"], p.unwrap_or(5), "{name}: {record}");
        assert_eq!(record["queue_position"], *want, "{name}: {record}");
    }

    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "slow"), ("INFERQ_THREADS", "1")],
    );
    let order = finishing_order(&app, &ids).await;
    assert_eq!(order, ["d9", "f9", "b5", "c-default", "a1", "e1", "g0"]);

    // The results are each job's own (y = x + 1).
    for (i, (name, id)) in ids.iter().enumerate() {
        let (_, record) = app.get(&format!("/status/{id}")).await;
        assert_eq!(
            record["result"]["outputs"][0]["data"],
            json!([i as f64 + 1.0]),
            "{name}: {record}"
        );
    }
}

#[tokio::test]
async fn a_job_that_waited_long_overtakes_fresher_higher_priorities() {
    let app = app_without_running_worker().await;
    let old = app.submit(&slow_with_priority(0.0, Some(0))).await;
    // With one level per second, 3.5 s of waiting ranks the priority-0 job at 3.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let fresh_high = app.submit(&slow_with_priority(1.0, Some(2))).await;
    let fresh_higher = app.submit(&slow_with_priority(2.0, Some(2))).await;
    let top = app.submit(&slow_with_priority(3.0, Some(9))).await;

    let _w = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "slow"),
            ("INFERQ_THREADS", "1"),
            ("INFERQ_PRIORITY_AGING_SECS", "1"),
        ],
    );
    let ids = [
        ("old0", old),
        ("fresh2a", fresh_high),
        ("fresh2b", fresh_higher),
        ("top9", top),
    ];
    let order = finishing_order(&app, &ids).await;
    assert_eq!(order, ["top9", "old0", "fresh2a", "fresh2b"]);
}

#[tokio::test]
async fn a_priority_outside_0_to_9_is_refused() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    let (status, reply) = app
        .post_json("/jobs", &slow_with_priority(1.0, Some(10)))
        .await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["error"]["code"], "invalid_parameter", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parameters.priority"),
        "{reply}"
    );
    for bad in [json!(-1), json!(2.5), json!("high")] {
        let mut body = slow_job(1.0);
        body["parameters"] = json!({ "priority": bad });
        let (status, reply) = app.post_json("/jobs", &body).await;
        assert!((400..500).contains(&status), "{bad}: {status} {reply}");
        assert!(reply["error"]["code"].is_string(), "{bad}: {reply}");
    }
    // A batch item with a bad priority is refused alone; the good one is queued.
    let (status, reply) = app
        .post_json(
            "/jobs/batch",
            &json!({"jobs": [slow_with_priority(1.0, Some(12)), slow_with_priority(2.0, Some(7))]}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["jobs"][0]["error"]["code"], "invalid_parameter",
        "{reply}"
    );
    let id = reply["jobs"][1]["id"].as_str().unwrap();
    let (_, record) = app.get(&format!("/status/{id}")).await;
    assert_eq!(record["priority"], 7, "{record}");
}

/// At the queue protocol level: a job's lane holds through a hand-back, a dead letter and its
/// retry, and a scheduled job is queued in its lane.
#[tokio::test]
async fn a_job_keeps_its_lane_through_hand_backs_dead_letters_and_scheduling() {
    use inferq_shared::config::RedisConfig;
    use inferq_shared::job::{JobId, Priority};
    use inferq_shared::model::{ModelInfo, TensorSpec};
    use inferq_shared::queue::{Entry, NewJob, Queue, Retention, Retried, Submitted};
    use inferq_shared::time::now_ms;

    let redis = Redis::start_with(false);
    let namespace = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let queue = Queue::connect(&RedisConfig::new(&redis.url(), &namespace), Duration::ZERO)
        .await
        .unwrap();
    let spec = TensorSpec {
        name: "x".into(),
        datatype: inferq_shared::DataType::Fp32,
        shape: vec![-1, 4],
    };
    let info = ModelInfo {
        name: "m".into(),
        description: None,
        inputs: vec![spec.clone()],
        outputs: vec![spec],
        batching: true,
        max_batch_size: 8,
        sha256: None,
    };
    queue.announce_models("w1", &[info]).await.unwrap();
    queue.ensure_group("m").await.unwrap();
    let retention = Retention {
        result_ttl: Duration::from_secs(60),
    };
    let high = Priority::new(8).unwrap();
    let job = |id: JobId, due_ms: Option<u64>| NewJob {
        id,
        model: "m",
        payload: b"{}",
        deadline_ms: None,
        result_ttl_secs: None,
        idempotency: None,
        cache: None,
        due_ms,
        trace: None,
        tenant: "default",
        tenant_max_queued: 0,
        priority: high,
        webhook: None,
    };
    let read_one = |consumer: &'static str| {
        let queue = queue.clone();
        async move {
            let got = queue.read(consumer, "m", 10, None).await.unwrap();
            assert_eq!(got.len(), 1, "{got:?}");
            match got.into_iter().next().unwrap() {
                Entry::Job(d) => d,
                other => panic!("{other:?}"),
            }
        }
    };

    let id = JobId::new();
    let submitted = queue
        .submit_many(&[job(id, None)], 0, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(submitted, [Submitted::Queued]);
    let first = read_one("w1").await;
    assert_eq!((first.job, first.entry.priority), (id, high));

    // Handed back unstarted: it waits in its lane again.
    let released = queue
        .release("m", &[(id, first.entry.clone(), 0)])
        .await
        .unwrap();
    assert_eq!(released, 1);
    let again = read_one("w1").await;
    assert_eq!((again.job, again.entry.priority), (id, high));
    assert_ne!(again.entry, first.entry);

    // Out of attempts (max 0): dead-lettered; the retry queues it in its lane.
    assert_eq!(
        queue
            .start("m", "w1", std::slice::from_ref(&again), 0, retention)
            .await
            .unwrap(),
        [0]
    );
    assert_eq!(queue.record(id).await.unwrap().unwrap().priority, high);
    assert_eq!(
        queue.retry_dead(&id.to_string()).await.unwrap(),
        Retried::Queued(id)
    );
    let retried = read_one("w2").await;
    assert_eq!((retried.job, retried.entry.priority), (id, high));

    // A scheduled job moves to its lane when due.
    let later = JobId::new();
    let submitted = queue
        .submit_many(
            &[job(later, Some(now_ms() + 50))],
            0,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(submitted, [Submitted::Scheduled]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(queue.promote_due(10).await.unwrap(), 1);
    let promoted = read_one("w1").await;
    assert_eq!((promoted.job, promoted.entry.priority), (later, high));
    assert_eq!(queue.record(later).await.unwrap().unwrap().priority, high);
}
