//! Per-tenant submission rates, shared through Redis: concurrent submissions of one tenant to
//! two API processes (one in-process, one a separate `inferq-api`) draw from one bucket.

use serde_json::{Value, json};

use crate::support::{ApiProcess, AppOptions, linear_job, spawn_app_with, test_models};

const ADMIN: &str = "quota-test-admin-key-0123456789abcdef";

#[tokio::test]
async fn a_tenants_rate_is_shared_by_every_api_process() {
    let app = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        // Five at once, then one per 100 s: the test cannot race the refill.
        tweak: Some(|c| {
            c.tenant_rate = 0.01;
            c.tenant_burst = 5.0;
        }),
        ..Default::default()
    })
    .await;
    let other_api = ApiProcess::start(
        &app,
        &[
            ("INFERQ_AUTH", "required"),
            ("INFERQ_ADMIN_KEY", ADMIN),
            ("INFERQ_TENANT_RATE", "0.01"),
            ("INFERQ_TENANT_BURST", "5"),
        ],
    )
    .await;
    let other = other_api.base.clone();
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    let admin = app.client(ADMIN);
    let key = async |tenant: &str| {
        let body = json!({"tenant": tenant, "scopes": ["submit", "read"]});
        admin.create_key(&body).await.0
    };
    let (teal, plum) = (key("teal").await, key("plum").await);
    other_api.client(Some(&teal)).wait_models(&["linear"]).await;

    // Twenty at once, half to each process: five pass.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            other.clone()
        };
        let (http, teal) = (app.http.clone(), teal.clone());
        set.spawn(async move {
            let r = http
                .post(format!("{base}/jobs"))
                .bearer_auth(&teal)
                .json(&linear_job(&[[i as f32, 0.0, 0.0, 0.0]]))
                .send()
                .await
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or_default();
            (status, retry, body)
        });
    }
    let mut accepted = 0;
    while let Some(r) = set.join_next().await {
        let (status, retry, body) = r.unwrap();
        match status {
            202 => accepted += 1,
            429 => {
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                let retry = retry.expect("a 429 without Retry-After");
                assert!((1..=100).contains(&retry), "Retry-After {retry}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted, 5);

    // Another tenant's bucket is its own; OIP inference draws from the caller's too.
    let r = app
        .http
        .post(format!("{other}/jobs"))
        .bearer_auth(&plum)
        .json(&linear_job(&[[1.0; 4]]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = app
        .http
        .post(format!("{}/v2/models/linear/infer", app.base))
        .bearer_auth(&teal)
        .json(&json!({"inputs": linear_job(&[[1.0; 4]])["inputs"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("rate limit"),
        "{body}"
    );
}
