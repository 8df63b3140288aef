//! Crashes lose nothing: a killed worker's jobs are reclaimed, a poison job is dead-lettered,
//! a live worker's lease holds, a stale worker is fenced off, and Redis restarts with its AOF.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    AppOptions, assert_close, eventually, eventually_every, linear_expected, linear_job, slow_job,
    spawn_app, spawn_app_with, submit_all, test_models,
};

#[tokio::test]
async fn sigkill_mid_run_loses_nothing() {
    let app = spawn_app().await;
    let env = [("INFERQ_MODELS", "mlp_small"), ("INFERQ_LEASE_MS", "1000")];
    let w1 = app.worker(&test_models(), &env);
    let _w2 = app.worker(&test_models(), &env);
    app.wait_models(&["mlp_small"]).await;

    let n = 2000;
    let bodies: Vec<Value> = (0..n)
        .map(|i| {
            let x: Vec<f32> = (0..64).map(|k| ((i * 64 + k) % 97) as f32 / 97.0).collect();
            json!({"model": "mlp_small", "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": x}]})
        })
        .collect();
    let submitted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let submitter = tokio::spawn(submit_all(
        app.http.clone(),
        app.base.clone(),
        bodies.clone(),
        Some(submitted.clone()),
    ));
    // Kill w1 while it holds jobs (read, or read and started): every one of them must be
    // reclaimed for all jobs to finish.
    let mut conn = app.redis.conn().await;
    let stream = app.keys().stream("mlp_small");
    let held_at_kill = eventually_every(
        Duration::from_millis(5),
        Duration::from_secs(60),
        "w1 holds jobs mid-run",
        async || {
            let pending: Vec<redis::Value> = redis::cmd("XPENDING")
                .arg(&stream)
                .arg("workers")
                .arg("-")
                .arg("+")
                .arg(1000)
                .arg(&w1.id)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            // Mid-run: a quarter of the jobs are in, the workers are busy.
            let accepted = submitted.load(std::sync::atomic::Ordering::SeqCst);
            if !pending.is_empty() && accepted >= n / 4 {
                w1.signal("KILL");
                Ok(pending.len())
            } else {
                Err(format!("w1 holds {}, {accepted} accepted", pending.len()))
            }
        },
    )
    .await;
    let killed_at = Instant::now();
    let _w3 = app.worker(&test_models(), &env);
    let ids = submitter.await.unwrap();
    assert_eq!(ids.len(), n);

    // Inputs repeat with period 97, so jobs with identical inputs must get identical outputs
    // whichever worker, batch or attempt produced them.
    let mut by_input: std::collections::HashMap<String, Value> = Default::default();
    let mut ran_twice = 0;
    let mut last_done = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let record = app.wait_done(id, Duration::from_secs(120)).await;
        last_done = Instant::now();
        assert_eq!(record["status"], "succeeded", "{record}");
        let attempts = record["attempts"].as_u64().unwrap();
        assert!((1..=2).contains(&attempts), "{record}");
        if attempts > 1 {
            ran_twice += 1;
        }
        let out = record["result"]["outputs"][0].clone();
        assert_eq!(out["shape"], json!([1, 10]));
        let key = bodies[i]["inputs"][0]["data"].to_string();
        let expected = by_input.entry(key).or_insert(out.clone());
        assert_close(
            &out["data"],
            &expected["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect::<Vec<_>>(),
            1e-5,
        );
    }
    println!(
        "kill -9: {n} submitted, 0 lost, {ran_twice} ran twice (w1 held {held_at_kill} at the kill), all done {:?} after the kill",
        last_done.duration_since(killed_at)
    );
}

#[tokio::test]
async fn a_poison_job_is_dead_lettered_and_others_all_succeed() {
    let app = spawn_app().await;
    let env = [
        ("INFERQ_MODELS", "linear"),
        ("INFERQ_LEASE_MS", "500"),
        ("INFERQ_MAX_ATTEMPTS", "3"),
    ];
    // A supervisor (compose's restart policy) keeps two workers running.
    let mut workers = vec![
        app.worker(&test_models(), &env),
        app.worker(&test_models(), &env),
    ];
    app.wait_models(&["linear"]).await;

    let normal: Vec<Value> = (0..100)
        .map(|i| linear_job(&[[i as f32, 1.0, 2.0, 3.0]]))
        .collect();
    let mut poison = linear_job(&[[0.0; 4]]);
    poison["parameters"] = json!({"test_hook": "abort_worker"});
    let mut ids = app.submit_all(&normal[..50]).await;
    let poison_id = app.submit(&poison).await;
    ids.extend(app.submit_all(&normal[50..]).await);

    let mut restarts = 0;
    let record = eventually(
        Duration::from_secs(120),
        "the poison job fails",
        async || {
            for w in &mut workers {
                if w.child.try_wait().unwrap().is_some() {
                    *w = app.worker(&test_models(), &env);
                    restarts += 1;
                }
            }
            let (_, record) = app.get(&format!("/status/{poison_id}")).await;
            if record["status"] == "failed" {
                Ok(record)
            } else {
                Err(record)
            }
        },
    )
    .await;
    assert_eq!(record["error"]["code"], "max_attempts_exceeded", "{record}");
    assert_eq!(record["attempts"], 3, "{record}");
    assert_eq!(restarts, 3, "each attempt killed one worker");
    for (i, id) in ids.iter().enumerate() {
        let record = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_close(
            &record["result"]["outputs"][0]["data"],
            &linear_expected(&[[i as f32, 1.0, 2.0, 3.0]]),
            1e-5,
        );
    }
    // The dead-letter stream holds the poison job, with its request.
    let mut conn = app.redis.conn().await;
    let dead: redis::Value = redis::cmd("XRANGE")
        .arg(app.keys().dead_letter())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = format!("{dead:?}");
    assert!(text.contains(&poison_id), "{text}");
    assert!(text.contains("max_attempts_exceeded"), "{text}");
    assert!(
        text.contains("abort_worker"),
        "the request is kept for inspection: {text}"
    );
}

#[tokio::test]
async fn a_job_longer_than_the_lease_runs_exactly_once() {
    let app = spawn_app().await;
    // Lease 300 ms, the job ~700 ms: only heartbeats keep the other worker off it.
    let env = [("INFERQ_MODELS", "slow"), ("INFERQ_LEASE_MS", "300")];
    let _w1 = app.worker(&test_models(), &env);
    let _w2 = app.worker(&test_models(), &env);
    app.wait_models(&["slow"]).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(app.submit(&slow_job(i as f32)).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let record = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(
            record["attempts"], 1,
            "a live worker's job was taken over: {record}"
        );
        assert_eq!(
            record["result"]["outputs"][0]["data"],
            json!([i as f64 + 1.0])
        );
    }
}

#[tokio::test]
async fn a_stale_worker_cannot_overwrite_the_reclaimed_attempt() {
    let app = spawn_app().await;
    let env = [("INFERQ_MODELS", "slow"), ("INFERQ_LEASE_MS", "400")];
    let a = app.worker(&test_models(), &env);
    app.wait_models(&["slow"]).await;
    let id = app.submit(&slow_job(41.0)).await;
    app.wait_status(&id, "running", Duration::from_secs(30))
        .await;
    a.signal("STOP");

    let b = app.worker(&test_models(), &env);
    let record = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 2, "{record}");
    assert_eq!(app.job_worker(&id).await.as_deref(), Some(b.id.as_str()));

    // The paused worker wakes up, finishes attempt 1 and tries to record it: fenced off.
    a.signal("CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, after) = app.get(&format!("/status/{id}")).await;
    assert_eq!(after, record, "the stale attempt changed the record");
    assert_eq!(app.job_worker(&id).await.as_deref(), Some(b.id.as_str()));
    assert_eq!(app.job_field(&id, "attempts").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn jobs_survive_a_redis_restart_with_aof() {
    let mut app = spawn_app_with(AppOptions {
        aof: true,
        ..Default::default()
    })
    .await;
    let _w1 = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    app.wait_models(&["slow"]).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.submit(&slow_job(i as f32)).await);
    }
    app.wait_status(&ids[0], "running", Duration::from_secs(30))
        .await;

    app.redis.kill();
    let t = Instant::now();
    let (status, body) = app.post_json("/jobs", &slow_job(9.0)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("redis_unavailable")),
        "{body}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        t.elapsed()
    );
    assert_eq!(app.get("/readyz").await.0, 503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.redis.restart();

    // Everything that got a 202 finishes, with no restart of the API or the worker.
    for (i, id) in ids.iter().enumerate() {
        let r = app.wait_done(id, Duration::from_secs(120)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["result"]["outputs"][0]["data"], json!([i as f64 + 1.0]));
    }
    assert_eq!(app.get("/readyz").await.0, 200);
    let id = app.submit(&slow_job(5.0)).await;
    assert_eq!(
        app.wait_done(&id, Duration::from_secs(60)).await["status"],
        "succeeded"
    );
}
