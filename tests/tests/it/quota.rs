//! Per-tenant submission rates, shared through Redis: concurrent submissions of one tenant to
//! two API processes (one in-process, one a separate `inferq-api`) draw from one bucket.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{AppOptions, linear_job, spawn_app_with, test_models, worker_binary};

const ADMIN: &str = "quota-test-admin-key-0123456789abcdef";

struct Api(Child);

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _other = Api(Command::new(worker_binary().with_file_name("inferq-api"))
        .env_clear()
        .env("INFERQ_REDIS_URL", app.redis.url())
        .env("INFERQ_NAMESPACE", &app.namespace)
        .env("INFERQ_BIND", format!("127.0.0.1:{port}"))
        .env("INFERQ_ADMIN_KEY", ADMIN)
        .env("INFERQ_TENANT_RATE", "0.01")
        .env("INFERQ_TENANT_BURST", "5")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap());
    let other = format!("http://127.0.0.1:{port}");
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    let key = |tenant: &'static str| {
        let app = &app;
        async move {
            let r: Value = app
                .http
                .post(format!("{}/keys", app.base))
                .bearer_auth(ADMIN)
                .json(&json!({"tenant": tenant, "scopes": ["submit", "read"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["key"].as_str().unwrap().to_owned()
        }
    };
    let (teal, plum) = (key("teal").await, key("plum").await);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = app
            .http
            .get(format!("{other}/models"))
            .bearer_auth(&teal)
            .send()
            .await;
        let body: Value = match ready {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        if body["models"][0]["workers"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second API or worker not ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
