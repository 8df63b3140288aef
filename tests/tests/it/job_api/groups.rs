//! Groups: one input fanned out to several jobs, with one status, cancelled together.

use serde_json::json;

use super::{DONE, job_count};
use crate::support::{assert_close, linear_expected, linear_job, slow_job, spawn_app, test_models};

#[tokio::test]
async fn a_group_fans_one_input_out_and_reports_one_status() {
    let app = spawn_app().await;
    let _w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear,slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["linear", "slow"]).await;
    let rows = [[1.0, -2.0, 0.5, 4.0]];
    let shared = linear_job(&rows)["inputs"].clone();
    let before = job_count(&app).await;
    let (status, body) = app
        .post_json(
            "/groups",
            &json!({"inputs": shared, "jobs": [
                {"model": "linear"},
                {"model": "linear", "outputs": [{"name": "y"}]},
                slow_job(3.0),
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let group = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/groups/{group}"));
    let members: Vec<&str> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 3);
    assert_eq!(job_count(&app).await, before + 3);

    let (_, early) = app.get(&format!("/groups/{group}")).await;
    assert!(
        ["queued", "running"].contains(&early["status"].as_str().unwrap()),
        "{early}"
    );
    let (status, done) = app.get(&format!("/groups/{group}?wait=30")).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["counts"],
        json!({"scheduled": 0, "queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0})
    );
    let jobs = done["jobs"].as_array().unwrap();
    for (i, job) in jobs.iter().enumerate() {
        assert_eq!(job["id"], members[i], "{done}");
    }
    for job in &jobs[..2] {
        assert_close(
            &job["result"]["outputs"][0]["data"],
            &linear_expected(&rows),
            1e-5,
        );
    }
    assert_eq!(jobs[2]["result"]["outputs"][0]["data"], json!([4.0]));

    // All or nothing: one member that does not fit, no job at all.
    let before = job_count(&app).await;
    let mut bad = linear_job(&[[0.0; 4]]);
    bad["inputs"][0]["shape"] = json!([1, 5]);
    let (status, body) = app
        .post_json("/groups", &json!({"jobs": [linear_job(&rows), bad]}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "shape_mismatch", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("jobs[1]: "),
        "{body}"
    );
    let (status, body) = app
        .post_json("/groups", &json!({"jobs": [{"model": "linear"}]}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = app.post_json("/groups", &json!({"jobs": []})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert_eq!(job_count(&app).await, before);

    // Cancelling a group cancels the members still pending: one running, one queued.
    let (_, body) = app
        .post_json("/groups", &json!({"jobs": [slow_job(1.0), slow_job(2.0)]}))
        .await;
    let group = body["id"].as_str().unwrap().to_owned();
    app.wait_status(body["jobs"][0].as_str().unwrap(), "running", DONE)
        .await;
    let (status, cancelled) = app.delete(&format!("/groups/{group}")).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["counts"]["cancelled"], 2, "{cancelled}");

    let unknown = uuid::Uuid::new_v4();
    let (status, body) = app.get(&format!("/groups/{unknown}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("group_not_found"))
    );
    let (status, body) = app.delete(&format!("/groups/{unknown}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("group_not_found"))
    );
    let (status, _) = app.get("/groups/not-a-uuid").await;
    assert_eq!(status, 400);
}
