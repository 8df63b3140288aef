//! Idempotent submission: one `Idempotency-Key`, one job, however many submissions race.

use serde_json::{Value, json};

use super::{DONE, job_count};
use crate::support::{App, assert_close, linear_expected, linear_job, spawn_app, test_models};

async fn post_with_key(app: &App, key: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn one_idempotency_key_makes_one_job_however_many_submissions_race() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let rows = [[1.0, 2.0, 3.0, 4.0]];
    let body = linear_job(&rows);

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (http, base, body) = (app.http.clone(), app.base.clone(), body.clone());
        set.spawn(async move {
            let r = http
                .post(format!("{base}/jobs"))
                .header("Idempotency-Key", "order-7731")
                .json(&body)
                .send()
                .await
                .unwrap();
            let replayed = r.headers()["idempotent-replayed"].to_str().unwrap() == "true";
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, replayed, body["id"].as_str().unwrap().to_owned())
        });
    }
    let answers = set.join_all().await;
    let ids: std::collections::BTreeSet<&str> = answers.iter().map(|a| a.2.as_str()).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|a| a.0 == 202), "{answers:?}");
    assert_eq!(answers.iter().filter(|a| !a.1).count(), 1, "{answers:?}");
    assert_eq!(job_count(&app).await, 1);
    let id = answers[0].2.clone();
    let record = app.wait_done(&id, DONE).await;
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&rows),
        1e-5,
    );

    // Later: the same answer, with the job's current status.
    let (status, replayed, answer) = post_with_key(&app, "order-7731", &body).await;
    assert_eq!(
        (status, replayed.as_deref()),
        (202, Some("true")),
        "{answer}"
    );
    assert_eq!(answer["id"], id.as_str());
    assert_eq!(answer["status"], "succeeded");
    // With ?wait, the record at once.
    let r = app
        .http
        .post(format!("{}/jobs?wait=5", app.base))
        .header("Idempotency-Key", "order-7731")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["id"], id.as_str());

    // The same key with another body.
    let other = linear_job(&[[9.0, 9.0, 9.0, 9.0]]);
    let (status, _, answer) = post_with_key(&app, "order-7731", &other).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"]["code"], "idempotency_key_reused",
        "{answer}"
    );
    // Another key is another job; no key, a new job each time.
    let (status, replayed, answer) = post_with_key(&app, "order-7732", &body).await;
    assert_eq!(
        (status, replayed.as_deref()),
        (202, Some("false")),
        "{answer}"
    );
    assert_ne!(answer["id"], id.as_str());
    assert_eq!(job_count(&app).await, 2);
    // A bad key.
    for bad in ["", &"k".repeat(256), "with space"] {
        let (status, _, answer) = post_with_key(&app, bad, &body).await;
        assert_eq!(status, 400, "{bad:?}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
    }
    // A refused submission does not take the key.
    let bad_job = json!({"model": "linear", "inputs": [{"name": "x", "shape": [1, 3],
        "datatype": "FP32", "data": [1, 2, 3]}]});
    let (status, _, _) = post_with_key(&app, "order-7733", &bad_job).await;
    assert_eq!(status, 422);
    let (status, replayed, _) = post_with_key(&app, "order-7733", &body).await;
    assert_eq!((status, replayed.as_deref()), (202, Some("false")));
}
