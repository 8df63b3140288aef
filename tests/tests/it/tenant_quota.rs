//! Per-tenant quotas over HTTP: `max_queued`'s `429 quota_exceeded` under concurrent
//! submissions to two API processes, with a `Retry-After` from the measured rate; and the
//! quotas (`max_queued`, `rate`, `burst`) set on keys.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ApiProcess, App, AppOptions, eventually, linear_job, spawn_app_with, test_models,
};

use crate::tenant_count::active;

const ADMIN: &str = "tenant-quota-admin-key-0123456789abcdef";

/// A second `inferq-api` process on the app's Redis and namespace, keys required, its log
/// lines (at `info`) kept for the log check.
async fn second_api(app: &App) -> ApiProcess {
    let env = [
        ("INFERQ_AUTH", "required"),
        ("INFERQ_ADMIN_KEY", ADMIN),
        ("RUST_LOG", "info"),
    ];
    ApiProcess::start(app, &env).await
}

/// Makes a key with the admin key; returns it.
async fn make_key(app: &App, body: Value) -> String {
    app.client(ADMIN).create_key(&body).await.0
}

/// `POST /jobs` of one `linear` job: status, `Retry-After`, body.
async fn post(http: &reqwest::Client, base: &str, key: &str) -> (u16, Option<u64>, Value) {
    let r = http
        .post(format!("{base}/jobs"))
        .bearer_auth(key)
        .json(&linear_job(&[[1.0, 2.0, 3.0, 4.0]]))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn max_queued_holds_under_concurrent_submissions_to_two_api_processes() {
    let app = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await;
    let other_api = second_api(&app).await;
    let other = other_api.base.clone();
    let teal = make_key(
        &app,
        json!({"tenant": "teal", "scopes": ["submit", "read"],
                                      "max_queued": 10}),
    )
    .await;
    let plum = make_key(
        &app,
        json!({"tenant": "plum", "scopes": ["submit", "read"]}),
    )
    .await;
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.client(&teal).wait_models(&["linear"]).await;
    other_api.client(Some(&teal)).wait_models(&["linear"]).await;
    // Nothing runs: the jobs stay queued and count.
    drop(w);

    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            other.clone()
        };
        let (http, key) = (app.http.clone(), teal.clone());
        set.spawn(async move { post(&http, &base, &key).await });
    }
    let (mut accepted, mut refused) = (Vec::new(), 0);
    while let Some(r) = set.join_next().await {
        let (status, retry, body) = r.unwrap();
        match status {
            202 => accepted.push(body["id"].as_str().unwrap().to_owned()),
            429 => {
                assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
                // Nothing of the model finished in the last minute: a minute.
                assert_eq!(retry, Some(60), "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((accepted.len(), refused), (10, 30));
    let mut conn = app.redis.conn().await;
    assert_eq!(active(&mut conn, &app.namespace, "teal").await, 10);
    // Another tenant is not limited by teal's quota (and has none of its own).
    for _ in 0..12 {
        assert_eq!(post(&app.http, &other, &plum).await.0, 202);
    }
    // Each job of a batch counts: all refused while the quota is used up.
    let batch: Value = app
        .http
        .post(format!("{}/jobs/batch", app.base))
        .bearer_auth(&teal)
        .json(&json!({"jobs": [linear_job(&[[1.0; 4]]), linear_job(&[[2.0; 4]])]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for item in batch["jobs"].as_array().unwrap() {
        assert_eq!(item["error"]["code"], "quota_exceeded", "{batch}");
    }
    // A cancelled job makes room for exactly one.
    let r = app
        .http
        .delete(format!("{}/jobs/{}", other, accepted[0]))
        .bearer_auth(&teal)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(post(&app.http, &app.base, &teal).await.0, 202);
    assert_eq!(post(&app.http, &other, &teal).await.0, 429);

    // Once the jobs run, the count empties and the estimate follows the measured rate.
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    eventually(
        Duration::from_secs(60),
        "teal's jobs finish",
        async || match active(&mut conn, &app.namespace, "teal").await {
            0 => Ok(()),
            n => Err(format!("{n} active")),
        },
    )
    .await;
    drop(w);
    // The rate counts whole seconds that have passed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..10 {
        assert_eq!(post(&app.http, &app.base, &teal).await.0, 202);
    }
    let (status, retry, body) = post(&app.http, &other, &teal).await;
    assert_eq!(status, 429, "{body}");
    // At least teal's ten jobs of the model finished within the minute: one more is seconds
    // away.
    let retry = retry.unwrap();
    assert!((1..60).contains(&retry), "Retry-After {retry}");
    assert_eq!(active(&mut conn, &app.namespace, "teal").await, 10);
}

#[tokio::test]
async fn a_keys_rate_and_burst_override_the_configured_ones() {
    let app = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await;
    // One per 100 s after a burst of two: the test cannot race the refill.
    let slow = make_key(
        &app,
        json!({"tenant": "slow", "scopes": ["submit", "read"],
                                      "rate": 0.01, "burst": 2}),
    )
    .await;
    let free = make_key(
        &app,
        json!({"tenant": "free", "scopes": ["submit", "read"]}),
    )
    .await;
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.client(&free).wait_models(&["linear"]).await;
    drop(w);
    assert_eq!(post(&app.http, &app.base, &slow).await.0, 202);
    assert_eq!(post(&app.http, &app.base, &slow).await.0, 202);
    let (status, retry, body) = post(&app.http, &app.base, &slow).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(retry.is_some_and(|s| s > 60), "{retry:?}");
    // The configuration sets no rate: other tenants are not limited.
    for _ in 0..5 {
        assert_eq!(post(&app.http, &app.base, &free).await.0, 202);
    }
    // The key shows what it sets; a bad setting is refused.
    let keys: Value = app
        .http
        .get(format!("{}/keys", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slow_info = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["tenant"] == "slow")
        .unwrap();
    assert_eq!(slow_info["rate"], 0.01);
    assert_eq!(slow_info["burst"], 2.0);
    let r = app
        .http
        .post(format!("{}/keys", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "x", "scopes": ["read"], "burst": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // max_queued is 0 to 1,000,000,000 (the OpenAPI document's maximum).
    for (max_queued, status) in [
        (1_000_000_000u64, 201),
        (1_000_000_001, 400),
        (1 << 63, 400),
    ] {
        let r = app
            .http
            .post(format!("{}/keys", app.base))
            .bearer_auth(ADMIN)
            .json(&json!({"tenant": "x", "scopes": ["read"], "max_queued": max_queued}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "max_queued {max_queued}");
    }
}
