//! API keys, scopes and tenants against a real API (keys required), a real worker and the
//! real `inferq-api keys` command: every status code of the auth layer, two tenants that
//! cannot see each other's jobs, admins who see all, revocation.

use std::process::Command;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::helpers::{
    App, AppOptions, assert_close, linear_expected, linear_job, spawn_app_with, test_models,
    worker_binary,
};

const ADMIN: &str = "bootstrap-admin-key-for-the-tests-0123456789";

async fn secured_app() -> App {
    spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await
}

/// `inferq-api <args>` against the test's Redis and namespace; returns (exit ok, stdout,
/// stderr).
fn api_cli(app: &App, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(worker_binary().with_file_name("inferq-api"))
        .env_clear()
        .env("INFERQ_REDIS_URL", app.redis.url())
        .env("INFERQ_NAMESPACE", &app.namespace)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn req(app: &App, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
    let r = app.http.request(method, format!("{}{path}", app.base));
    match key {
        Some(k) => r.bearer_auth(k),
        None => r,
    }
}

async fn send(r: RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = r.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

/// Makes a key over HTTP with the bootstrap admin key.
async fn http_key(app: &App, tenant: &str, scopes: &[&str]) -> (String, String) {
    let (status, _, body) = send(
        req(app, Method::POST, "/keys", Some(ADMIN))
            .json(&json!({"tenant": tenant, "scopes": scopes, "name": "test"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("iqk_"), "{key}");
    assert_eq!(body["tenant"], tenant);
    (key, body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn keys_scopes_and_tenant_isolation() {
    let app = secured_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);

    // The first key comes from the command line, before any key exists.
    let (ok, alpha, err) = api_cli(
        &app,
        &[
            "keys",
            "create",
            "--tenant",
            "alpha",
            "--scopes",
            "submit,read",
            "--name",
            "ci",
        ],
    );
    assert!(ok, "{err}");
    let alpha = alpha.trim().to_owned();
    assert!(alpha.starts_with("iqk_") && alpha.len() > 64, "{alpha}");
    assert!(err.contains("shown only this once"), "{err}");
    let (beta, beta_id) = http_key(&app, "beta", &["submit", "read"]).await;
    let (alpha_reader, _) = http_key(&app, "alpha", &["read"]).await;
    let (tenant_admin, _) = http_key(&app, "ops", &["admin"]).await;

    // Health stays open; everything else needs a key.
    assert_eq!(send(req(&app, Method::GET, "/healthz", None)).await.0, 200);
    assert_eq!(
        send(req(&app, Method::GET, "/v2/health/ready", None))
            .await
            .0,
        200
    );
    let (status, headers, body) = send(req(&app, Method::GET, "/models", None)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"inferq\"");
    let unknown = format!("iqk_{}_{}", "1".repeat(16), "2".repeat(64));
    for bad in [unknown.as_str(), "nonsense", &alpha[..alpha.len() - 1]] {
        let (status, _, body) = send(req(&app, Method::GET, "/models", Some(bad))).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("unauthorized"))
        );
    }
    let (status, headers, body) =
        send(req(&app, Method::POST, "/v2/models/linear/infer", None).json(&json!({}))).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].is_string(),
        "OIP routes keep their shape: {body}"
    );
    assert!(headers.contains_key("www-authenticate"));

    // Scopes: a read key cannot submit, a submit/read key cannot operate.
    let job = linear_job(&[[1.0, 2.0, 3.0, 4.0]]);
    let (status, _, body) =
        send(req(&app, Method::POST, "/jobs", Some(&alpha_reader)).json(&job)).await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    for (method, path) in [
        (Method::GET, "/workers"),
        (Method::GET, "/queues"),
        (Method::GET, "/dead"),
        (Method::GET, "/metrics"),
        (Method::GET, "/keys"),
        (Method::DELETE, "/models/linear"),
    ] {
        let (status, _, body) = send(req(&app, method.clone(), path, Some(&alpha))).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    let (status, _, _) = send(req(&app, Method::GET, "/workers", Some(&tenant_admin))).await;
    assert_eq!(status, 200);

    // Wait for the worker through a key with `read`.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = send(req(&app, Method::GET, "/models", Some(&alpha_reader))).await;
        if body["models"][0]["workers"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no worker: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // alpha's job: alpha (either header) and admins read it; beta cannot tell it exists.
    let (status, _, accepted) =
        send(req(&app, Method::POST, "/jobs", Some(&alpha)).json(&job)).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let (status, _, record) = send(req(
        &app,
        Method::GET,
        &format!("/status/{id}?wait=10"),
        Some(&alpha_reader),
    ))
    .await;
    assert_eq!(
        (status, &record["status"]),
        (200, &json!("succeeded")),
        "{record}"
    );
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&[[1.0, 2.0, 3.0, 4.0]]),
        1e-5,
    );
    let (status, _, _) = send(
        app.http
            .get(format!("{}/jobs/{id}", app.base))
            .header("x-api-key", &alpha),
    )
    .await;
    assert_eq!(status, 200);
    for admin in [ADMIN, tenant_admin.as_str()] {
        let (status, _, r) =
            send(req(&app, Method::GET, &format!("/jobs/{id}"), Some(admin))).await;
        assert_eq!((status, &r["id"]), (200, &json!(id)));
    }
    let stranger = uuid::Uuid::new_v4().to_string();
    let (_, _, unknown_body) = send(req(
        &app,
        Method::GET,
        &format!("/status/{stranger}"),
        Some(&beta),
    ))
    .await;
    for (method, path) in [
        (Method::GET, format!("/status/{id}")),
        (Method::GET, format!("/status/{id}?wait=5")),
        (Method::GET, format!("/jobs/{id}")),
        (Method::DELETE, format!("/jobs/{id}")),
    ] {
        let began = std::time::Instant::now();
        let (status, _, body) = send(req(&app, method.clone(), &path, Some(&beta))).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "it waited: {path}"
        );
        // Exactly what an unknown id answers, but for the id itself.
        assert_eq!(
            body.to_string().replace(&id, "ID"),
            unknown_body.to_string().replace(&stranger, "ID")
        );
    }

    // OIP inference runs as the caller's tenant too.
    let (status, _, body) = send(
        req(&app, Method::POST, "/v2/models/linear/infer", Some(&beta)).json(&json!({
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 0, 0, 0]}]
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_close(
        &body["outputs"][0]["data"],
        &linear_expected(&[[1.0, 0.0, 0.0, 0.0]]),
        1e-5,
    );

    // beta's own job is beta's: alpha cannot cancel it; it is stored with its tenant.
    let (_, _, accepted) = send(req(&app, Method::POST, "/jobs", Some(&beta)).json(&job)).await;
    let beta_job = accepted["id"].as_str().unwrap().to_owned();
    let (status, _, _) = send(req(
        &app,
        Method::DELETE,
        &format!("/jobs/{beta_job}"),
        Some(&alpha),
    ))
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = send(req(
        &app,
        Method::GET,
        &format!("/status/{beta_job}"),
        Some(&beta),
    ))
    .await;
    assert_eq!(status, 200);
    let tenant = app.job_field(&beta_job, "tenant").await;
    assert_eq!(tenant.as_deref(), Some("beta"));

    // Listing shows ids, tenants and scopes, never a key or its hash.
    let (status, _, list) = send(req(&app, Method::GET, "/keys", Some(ADMIN))).await;
    assert_eq!(status, 200);
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4, "{list}");
    let text = list.to_string();
    for secret in [&alpha, &beta, &alpha_reader, &tenant_admin] {
        let hash = inferq_shared::auth::ApiKey::from_client(secret).hash();
        assert!(
            !text.contains(secret.as_str()) && !text.contains(&hash),
            "{text}"
        );
    }
    assert!(keys.iter().any(|k| k["tenant"] == "alpha"
        && k["name"] == "ci"
        && k["scopes"] == json!(["submit", "read"])));
    let (ok, listed, _) = api_cli(&app, &["keys", "list"]);
    assert!(
        ok && listed.contains(&beta_id) && listed.contains("alpha"),
        "{listed}"
    );
    assert!(!listed.contains(&beta), "{listed}");

    // Nothing in Redis holds a key in clear.
    let mut conn = app.redis.conn().await;
    let all: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}}}:apikey*", app.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    for k in all {
        let dump: Vec<String> = match redis::cmd("HGETALL").arg(&k).query_async(&mut conn).await {
            Ok(v) => v,
            Err(_) => redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
        };
        for secret in [&alpha, &beta] {
            let secret_part = secret.rsplit('_').next().unwrap();
            assert!(
                !dump.iter().any(|v| v.contains(secret_part)),
                "{k}: {dump:?}"
            );
        }
    }

    // Revocation, over HTTP and on the command line, holds from the next request on.
    let (status, _, body) = send(req(
        &app,
        Method::DELETE,
        &format!("/keys/{beta_id}"),
        Some(ADMIN),
    ))
    .await;
    assert_eq!((status, &body["revoked"]), (200, &json!(true)));
    assert_eq!(
        send(req(&app, Method::GET, "/models", Some(&beta))).await.0,
        401
    );
    let (status, _, body) = send(req(
        &app,
        Method::DELETE,
        &format!("/keys/{beta_id}"),
        Some(ADMIN),
    ))
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("key_not_found"))
    );
    let alpha_id = alpha[4..20].to_owned();
    let (ok, _, err) = api_cli(&app, &["keys", "revoke", &alpha_id]);
    assert!(ok, "{err}");
    assert_eq!(
        send(req(&app, Method::GET, "/models", Some(&alpha)))
            .await
            .0,
        401
    );
    let (ok, _, err) = api_cli(&app, &["keys", "revoke", &alpha_id]);
    assert!(!ok && err.contains("no API key"), "{err}");

    // Bad key requests are 4xx in the error shape.
    for body in [
        json!({"tenant": "a b", "scopes": ["read"]}),
        json!({"tenant": "a", "scopes": []}),
        json!({"tenant": "a", "scopes": ["write"]}),
        json!({"tenant": "a"}),
    ] {
        let (status, _, reply) =
            send(req(&app, Method::POST, "/keys", Some(ADMIN)).json(&body)).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply["error"]["code"].is_string());
    }
}

#[tokio::test]
async fn metrics_need_an_admin_key_unless_public() {
    let app = secured_app().await;
    assert_eq!(send(req(&app, Method::GET, "/metrics", None)).await.0, 401);
    let res = req(&app, Method::GET, "/metrics", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("inferq_http_requests_total")
    );

    let public = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        metrics_public: true,
        ..Default::default()
    })
    .await;
    assert_eq!(
        send(req(&public, Method::GET, "/metrics", None)).await.0,
        200
    );
    assert_eq!(
        send(req(&public, Method::GET, "/queues", None)).await.0,
        401
    );
}

#[tokio::test]
async fn a_short_admin_key_is_refused_at_startup_and_help_shows_no_secret() {
    let out = Command::new(worker_binary().with_file_name("inferq-api"))
        .env_clear()
        .env("INFERQ_ADMIN_KEY", "short")
        .env("INFERQ_BIND", "127.0.0.1:0")
        .env("INFERQ_REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INFERQ_ADMIN_KEY must be at least 32"),
        "{err}"
    );
    assert!(!err.contains("short\n"), "{err}");

    let out = Command::new(worker_binary().with_file_name("inferq-api"))
        .env_clear()
        .env("INFERQ_ADMIN_KEY", ADMIN)
        .env(
            "INFERQ_REDIS_URL",
            "redis://user:hunter2-secret@127.0.0.1:1",
        )
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("INFERQ_AUTH") && help.contains("INFERQ_ADMIN_KEY"),
        "{help}"
    );
    assert!(!help.contains(ADMIN) && !help.contains("hunter2"), "{help}");
}

/// The job API's other ways in (listing, batches, groups, idempotency keys, the result cache)
/// keep tenants apart too.
#[tokio::test]
async fn listing_batches_groups_idempotency_and_the_cache_are_per_tenant() {
    let app = secured_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    let (red, _) = http_key(&app, "red", &["submit", "read"]).await;
    let (blue, _) = http_key(&app, "blue", &["submit", "read"]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = send(req(&app, Method::GET, "/models", Some(&red))).await;
        if body["models"][0]["workers"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no worker: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = |x: f32| linear_job(&[[x, 0.0, 0.0, 0.0]]);

    // The same Idempotency-Key from two tenants makes two jobs.
    let mut ids = Vec::new();
    for key in [&red, &blue] {
        let (status, _, body) = send(
            req(&app, Method::POST, "/jobs", Some(key))
                .header("idempotency-key", "order-1")
                .json(&job(1.0)),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1]);

    // A batch and a group of red's.
    let (status, _, batch) = send(
        req(&app, Method::POST, "/jobs/batch", Some(&red))
            .json(&json!({"jobs": [job(2.0), job(3.0)]})),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let (status, _, group) =
        send(req(&app, Method::POST, "/groups", Some(&red)).json(&json!({"jobs": [job(4.0)]})))
            .await;
    assert_eq!(status, 202, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    let (status, _, g) = send(req(
        &app,
        Method::GET,
        &format!("/groups/{group_id}?wait=10"),
        Some(&red),
    ))
    .await;
    assert_eq!((status, &g["status"]), (200, &json!("succeeded")), "{g}");
    for method in [Method::GET, Method::DELETE] {
        let (status, _, body) = send(req(
            &app,
            method,
            &format!("/groups/{group_id}"),
            Some(&blue),
        ))
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("group_not_found"))
        );
    }
    let red_ids: Vec<String> = batch["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .chain([ids[0].clone()])
        .chain(
            group["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j.as_str().unwrap().to_owned()),
        )
        .collect();
    for id in &red_ids {
        let (status, _, _) =
            send(req(&app, Method::GET, &format!("/jobs/{id}"), Some(&blue))).await;
        assert_eq!(status, 404);
    }

    // Listings: each tenant its own; an admin every tenant's.
    let listed = |key: String| {
        let app = &app;
        async move {
            let (status, _, page) =
                send(req(app, Method::GET, "/jobs?limit=100", Some(&key))).await;
            assert_eq!(status, 200, "{page}");
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let (for_red, for_blue, for_admin) = (
        listed(red.clone()).await,
        listed(blue.clone()).await,
        listed(ADMIN.to_owned()).await,
    );
    assert_eq!(for_blue, [ids[1].clone()]);
    for id in &red_ids {
        assert!(for_red.contains(id) && for_admin.contains(id), "{id}");
    }
    assert!(!for_red.contains(&ids[1]) && for_admin.contains(&ids[1]));

    // The result cache answers within a tenant only.
    let cached = json!({"model": "linear", "inputs": job(9.0)["inputs"],
                        "parameters": {"cache": true}});
    let (_, _, first) =
        send(req(&app, Method::POST, "/jobs?wait=10", Some(&red)).json(&cached)).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let (_, _, again) =
        send(req(&app, Method::POST, "/jobs?wait=10", Some(&red)).json(&cached)).await;
    let (_, _, other) =
        send(req(&app, Method::POST, "/jobs?wait=10", Some(&blue)).json(&cached)).await;
    assert_eq!(
        app.job_field(again["id"].as_str().unwrap(), "cached")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        app.job_field(other["id"].as_str().unwrap(), "cached").await,
        None,
        "{other}"
    );
}
