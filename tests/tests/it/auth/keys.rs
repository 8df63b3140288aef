//! API keys made, listed and revoked over HTTP and with `inferq-api keys`, their scopes, and two
//! tenants that cannot see each other's jobs; the admin key's checks at startup.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::{ADMIN, api_cli, http_key, req, secured_app};
use crate::support::{
    all_under, api_binary, assert_close, linear_expected, linear_job, send, test_models,
};

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
        (Method::GET, "/scaling"),
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
    app.client(&alpha_reader).wait_models(&["linear"]).await;

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
    let mut all: Vec<String> = redis::cmd("KEYS")
        .arg(all_under(&app.keys().api_key("")))
        .query_async(&mut conn)
        .await
        .unwrap();
    all.push(app.keys().api_keys());
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
async fn a_short_admin_key_is_refused_at_startup_and_help_shows_no_secret() {
    let out = Command::new(api_binary())
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

    let out = Command::new(api_binary())
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
