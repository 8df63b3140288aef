//! Several partitions on one node (`INFERQ_PARTITIONS=4`): what users have keeps working when
//! a namespace's jobs live under four hash tags, each step in its job's partition and every
//! read across them (the cluster tests run the same code on separate masters).

use std::time::Duration;

use inferq_shared::queue::partition_tag;
use serde_json::{Value, json};

use crate::support::{
    App, AppOptions, assert_close, eventually, linear_expected, linear_job, spawn_app_with,
    test_models,
};

const PARTITIONS: usize = 4;

/// A key of partition `p` of the app's namespace.
fn key(app: &App, p: usize, rest: &str) -> String {
    format!(
        "{{{}}}:{rest}",
        partition_tag(&app.namespace, p, PARTITIONS)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_job_api_works_across_four_partitions() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| c.redis.partitions = Some(4)),
        ..AppOptions::default()
    })
    .await;
    let mut w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear"), ("INFERQ_PARTITIONS", "4")],
    );
    app.wait_models(&["linear"]).await;
    let mut conn = app.redis.conn().await;

    // Jobs land in every partition and run with the right results.
    let mut ids = Vec::new();
    // New ids take the partitions in turns of 16: 80 jobs reach all four.
    for i in 0..80 {
        let rows = [[i as f32, 1.0, 0.0, -1.0]];
        ids.push((app.submit(&linear_job(&rows)).await, rows));
    }
    for (id, rows) in &ids {
        let record = app.wait_done(id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_close(
            &record["result"]["outputs"][0]["data"],
            &linear_expected(rows),
            1e-5,
        );
    }
    for p in 0..PARTITIONS {
        let jobs: Vec<String> = redis::cmd("KEYS")
            .arg(key(&app, p, "job:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!jobs.is_empty(), "partition {p} holds no job");
    }

    // One cursor walks every partition's listing: each job once, newest first.
    let seen = super::walk_listing(async |path: &str| app.get(path).await, 13).await;
    assert_eq!(seen.len(), ids.len());

    // An idempotency key names one job, wherever its partition.
    for k in 0..6 {
        let submit = async || {
            let r = app
                .anonymous()
                .request(reqwest::Method::POST, "/jobs")
                .header("Idempotency-Key", format!("key-{k}"))
                .json(&linear_job(&[[1.0, 2.0, 3.0, 4.0]]))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["id"].clone()
        };
        assert_eq!(submit().await, submit().await);
    }

    // The result cache answers the same inputs from its key's partition.
    for x in 0..4 {
        let mut job = linear_job(&[[x as f32, 5.0, 5.0, 5.0]]);
        job["parameters"] = json!({"cache": true});
        let first = app.submit(&job).await;
        app.wait_done(&first, Duration::from_secs(30)).await;
        let (status, answer) = app.post_json("/jobs", &job).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "succeeded", "{answer}");
        let (_, hit) = app.get(answer["status_url"].as_str().unwrap()).await;
        assert_eq!(hit["cached"], true, "{hit}");
    }

    // A scheduled job is promoted from its partition; a group runs in its group's.
    let mut scheduled = linear_job(&[[1.0, 1.0, 1.0, 1.0]]);
    scheduled["parameters"] = json!({"delay_ms": 300});
    let (status, answer) = app.post_json("/jobs", &scheduled).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("scheduled"))
    );
    let record = app
        .wait_done(answer["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let jobs: Vec<Value> = (0..5).map(|i| linear_job(&[[i as f32; 4]])).collect();
    let (status, group) = app.post_json("/groups", &json!({"jobs": jobs})).await;
    assert_eq!(status, 202, "{group}");
    let (_, ended) = app
        .get(&format!(
            "/groups/{}?wait=30",
            group["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ended["status"], "succeeded", "{ended}");

    // Positions count every partition's waiting jobs: with no worker (a paused one could
    // still take a job with the blocking read it had sent), the 20th of 20 jobs, spread over
    // partitions in turns of 16, has 19 ahead, and the 10th has 9.
    w.signal("KILL");
    w.wait_exit(Duration::from_secs(10));
    let mut waiting = Vec::new();
    for i in 0..20 {
        waiting.push(app.submit(&linear_job(&[[i as f32; 4]])).await);
        // Entry ids in separate partitions order by their millisecond.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for (i, id) in [(19, &waiting[19]), (9, &waiting[9])] {
        let (_, record) = app.get(&format!("/status/{id}")).await;
        assert_eq!(record["queue_position"], i, "{record}");
    }
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear"), ("INFERQ_PARTITIONS", "4")],
    );
    for id in &waiting {
        let record = app.wait_done(id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }

    // Dead letters of two partitions, listed together one per page, deleted by dead_id.
    for p in [1, 3] {
        let _: String = redis::cmd("XADD")
            .arg(key(&app, p, "q:linear"))
            .arg("*")
            .arg("id")
            .arg(format!("not-a-job-id-{p}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    eventually(
        Duration::from_secs(30),
        "both entries are set aside",
        async || {
            let (_, page) = app.get("/dead").await;
            let n = page["dead_letters"].as_array().map_or(0, Vec::len);
            if n == 2 {
                Ok(())
            } else {
                Err(format!("{page}"))
            }
        },
    )
    .await;
    let (_, first) = app.get("/dead?limit=1").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = app.get(&format!("/dead?limit=1&cursor={cursor}")).await;
    assert_eq!(second["next_cursor"], Value::Null, "{second}");
    let dead_ids: Vec<String> = [&first, &second]
        .iter()
        .map(|page| {
            page["dead_letters"][0]["dead_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_ne!(dead_ids[0], dead_ids[1]);
    for page in [&first, &second] {
        assert_eq!(
            page["dead_letters"][0]["error"]["code"], "malformed_entry",
            "{page}"
        );
    }
    let (_, queues) = app.get("/queues").await;
    assert_eq!(queues["dead_letters"], 2, "{queues}");
    let (status, body) = app.delete(&format!("/dead/{}", dead_ids[1])).await;
    assert!((200..300).contains(&status), "{status}: {body}");
    let (_, after) = app.get("/dead").await;
    let left: Vec<&str> = after["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dead_id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [dead_ids[0].as_str()], "{after}");
}
