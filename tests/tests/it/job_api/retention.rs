//! How long a job's record stays: `result_ttl_secs`, and the listing forgetting expired jobs.

use std::time::Duration;

use serde_json::json;

use super::{DONE, ids_of};
use crate::support::{eventually_every, job_id, linear_job, spawn_app, test_models};

#[tokio::test]
async fn a_job_keeps_its_record_as_long_as_it_asked() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let mut body = linear_job(&[[1.0; 4]]);
    body["parameters"] = json!({"result_ttl_secs": 2});
    let id = app.submit(&body).await;
    app.wait_done(&id, DONE).await;
    let mut conn = app.redis.conn().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(app.keys().job(job_id(&id)))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=2).contains(&ttl), "{ttl}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = app.get(&format!("/status/{id}")).await;
    assert_eq!(status, 404, "{body}");

    // Without it, the server's default (a day).
    let id = app.submit(&linear_job(&[[1.0; 4]])).await;
    app.wait_done(&id, DONE).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(app.keys().job(job_id(&id)))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 86_000, "{ttl}");

    for bad in [json!(0), json!(31_536_001), json!(-1), json!("x")] {
        let mut body = linear_job(&[[1.0; 4]]);
        body["parameters"] = json!({"result_ttl_secs": bad});
        let (status, answer) = app.post_json("/jobs", &body).await;
        assert!(status == 422 || status == 400, "{bad}: {status} {answer}");
        if status == 422 {
            assert_eq!(answer["error"]["code"], "invalid_parameter", "{answer}");
        }
    }
}

#[tokio::test]
async fn expired_jobs_leave_the_listing() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let mut body = linear_job(&[[1.0; 4]]);
    body["parameters"] = json!({"result_ttl_secs": 1});
    let id = app.submit(&body).await;
    app.wait_done(&id, DONE).await;
    let (_, page) = app.get("/jobs").await;
    assert_eq!(ids_of(&page), vec![id.clone()]);
    // The API's sweeper drops it from the index once the record is gone, listed or not.
    let mut conn = app.redis.conn().await;
    let index = app.keys().index();
    eventually_every(
        Duration::from_millis(200),
        Duration::from_secs(15),
        "the expired job leaves the index",
        async || {
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(&index)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            !entries.iter().any(|(_, f)| f.iter().any(|(_, v)| *v == id))
        },
    )
    .await;
    let (_, page) = app.get("/jobs").await;
    assert_eq!(page, json!({"jobs": [], "next_cursor": null}));
}
