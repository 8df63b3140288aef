//! Odd data on the way in: an unreadable stream entry among valid ones, and non-finite floats
//! as strings.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    assert_close, eventually, linear_expected, linear_job, spawn_app, test_models,
};

/// An unreadable stream entry between two valid ones: the valid jobs run, the bad entry goes
/// to the dead-letter stream with `malformed_entry`, and the stream ends up empty.
#[tokio::test]
async fn a_malformed_stream_entry_is_set_aside_and_its_neighbours_run() {
    let app = spawn_app().await;
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    // Paused, so all three entries wait and arrive in one read.
    w.signal("STOP");
    let first = app.submit(&linear_job(&[[1.0, 0.0, 0.0, 0.0]])).await;
    let mut conn = app.redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(app.keys().stream("linear"))
        .arg("*")
        .arg("id")
        .arg("not-a-job-id")
        .query_async(&mut conn)
        .await
        .unwrap();
    let second = app.submit(&linear_job(&[[0.0, 1.0, 0.0, 0.0]])).await;
    w.signal("CONT");
    for (id, x) in [
        (&first, [1.0, 0.0, 0.0, 0.0]),
        (&second, [0.0, 1.0, 0.0, 0.0]),
    ] {
        let record = app.wait_done(id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_close(
            &record["result"]["outputs"][0]["data"],
            &linear_expected(&[x]),
            1e-5,
        );
    }
    let dead: redis::Value = redis::cmd("XRANGE")
        .arg(app.keys().dead_letter())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = format!("{dead:?}");
    assert!(text.contains("malformed_entry"), "{text}");
    assert!(text.contains("not-a-job-id"), "{text}");
    eventually(
        Duration::from_secs(10),
        "the stream is emptied",
        async || {
            let len: u64 = redis::cmd("XLEN")
                .arg(app.keys().stream("linear"))
                .query_async(&mut conn)
                .await
                .unwrap();
            if len == 0 {
                Ok(())
            } else {
                Err(format!("{len} entries"))
            }
        },
    )
    .await;
}

/// NaN and ±Infinity travel as the strings "NaN", "Infinity", "-Infinity", in and out;
/// other strings are still invalid data.
#[tokio::test]
async fn non_finite_floats_are_strings_in_and_out() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let mut job = linear_job(&[[0.0; 4]]);
    job["inputs"][0]["data"] = json!(["NaN", 0, 0, 0]);
    let id = app.submit(&job).await;
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(
        record["result"]["outputs"][0]["data"],
        json!(["NaN", "NaN", "NaN"]),
        "{record}"
    );
    job["inputs"][0]["data"] = json!(["Infinity", 0, 0, 0]);
    let id = app.submit(&job).await;
    let record = app.wait_done(&id, Duration::from_secs(30)).await;
    // W[0][j] > 0, so +inf in x0 gives +inf in every output.
    assert_eq!(
        record["result"]["outputs"][0]["data"],
        json!(["Infinity", "Infinity", "Infinity"]),
        "{record}"
    );
    job["inputs"][0]["data"] = json!(["nan", 0, 0, 0]);
    let (status, body) = app.post_json("/jobs", &job).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_data"))
    );
}
