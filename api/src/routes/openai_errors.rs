//! Router tests of the OpenAI face (`/v1`) that need no Redis: every `/v1` answer that is not a
//! success has OpenAI's error shape and status, whichever layer gave it (authentication, the
//! router's fallbacks, body rejections, the request's checks).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use inferq_shared::config::RedisConfig;
use inferq_shared::pipeline::EMBEDDING_MODEL;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::{AuthMode, Config};
use crate::state::AppState;

/// A router whose Redis is unreachable; keys required when `admin` is given.
async fn app(admin: Option<&str>) -> axum::Router {
    let mut config = Config::new(RedisConfig::new("redis://127.0.0.1:1", "unit"));
    config.redis.redis_timeout_ms = 200;
    match admin {
        Some(k) => config.admin_key = Some(k.parse().unwrap()),
        None => config.auth = AuthMode::Disabled,
    }
    let queue = inferq_shared::queue::Queue::connect(&config.redis, Default::default())
        .await
        .unwrap();
    let (_, shutdown) = tokio::sync::watch::channel(false);
    super::router(Arc::new(AppState::new(config, queue, shutdown)))
}

async fn call(app: axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// The body is OpenAI's error object with this type and code.
fn assert_openai_error(body: &Value, kind: &str, code: Option<&str>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(e["type"], kind, "{body}");
    assert_eq!(e["code"].as_str(), code, "{body}");
    assert!(e.as_object().unwrap().contains_key("param"), "{body}");
}

#[tokio::test]
async fn every_refusal_under_v1_has_openais_shape() {
    let embed = |v: Value| post("/v1/embeddings", &v.to_string());
    let cases = [
        (
            get("/v1/nope"),
            404,
            "invalid_request_error",
            Some("not_found"),
        ),
        (
            Request::patch("/v1/models").body(Body::empty()).unwrap(),
            405,
            "invalid_request_error",
            Some("method_not_allowed"),
        ),
        (
            post("/v1/embeddings", "{\"model\""),
            400,
            "invalid_request_error",
            Some("malformed_json"),
        ),
        (
            embed(json!({"input": "x"})),
            400,
            "invalid_request_error",
            Some("invalid_request"),
        ),
        (
            embed(json!({"model": "text-embedding-3-small", "input": "x"})),
            404,
            "invalid_request_error",
            Some("model_not_found"),
        ),
        (
            embed(json!({"model": EMBEDDING_MODEL, "input": "x", "dimensions": 1536})),
            400,
            "invalid_request_error",
            None,
        ),
        (
            embed(json!({"model": EMBEDDING_MODEL, "input": [[1, 2, 3]]})),
            400,
            "invalid_request_error",
            Some("unsupported_input"),
        ),
        (
            get("/v1/models/gpt-4o"),
            404,
            "invalid_request_error",
            Some("model_not_found"),
        ),
        (
            get("/v1/files/file-nope"),
            404,
            "invalid_request_error",
            None,
        ),
        (get("/v1/batches/nope"), 404, "invalid_request_error", None),
        (
            post(
                "/v1/batches",
                &json!({"input_file_id": "file-x", "endpoint": "/v1/chat/completions",
                    "completion_window": "24h"})
                .to_string(),
            ),
            400,
            "invalid_request_error",
            Some("unsupported_endpoint"),
        ),
        (
            post(
                "/v1/batches",
                &json!({"input_file_id": "file-x", "endpoint": "/v1/embeddings",
                    "completion_window": "1h"})
                .to_string(),
            ),
            400,
            "invalid_request_error",
            None,
        ),
        (get("/v1/files?limit=0"), 400, "invalid_request_error", None),
        // Past the checks, the job needs Redis, which is down.
        (
            embed(json!({"model": EMBEDDING_MODEL, "input": "hello"})),
            503,
            "server_error",
            Some("redis_unavailable"),
        ),
    ];
    for (req, status, kind, code) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, body) = call(app(None).await, req).await;
        assert_eq!(got.as_u16(), status, "{what}: {body}");
        assert_openai_error(&body, kind, code);
    }
}

#[tokio::test]
async fn a_bad_key_is_openais_invalid_api_key() {
    let admin = "k".repeat(40);
    let req = |key: Option<&str>| {
        let mut r = Request::get("/v1/models");
        if let Some(k) = key {
            r = r.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        r.body(Body::empty()).unwrap()
    };
    for key in [None, Some("sk-not-an-inferq-key")] {
        let res = app(Some(&admin)).await.oneshot(req(key)).await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_openai_error(&body, "invalid_request_error", Some("invalid_api_key"));
    }
    let (status, body) = call(app(Some(&admin)).await, req(Some(&admin))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["id"], EMBEDDING_MODEL);
}

#[tokio::test]
async fn the_models_list_has_openais_shape() {
    let (status, body) = call(app(None).await, get("/v1/models")).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let m = &body["data"][0];
    assert_eq!(
        (&m["id"], &m["object"]),
        (&json!(EMBEDDING_MODEL), &json!("model"))
    );
    assert!(m["created"].is_u64() && m["owned_by"].is_string());
    let (status, one) = call(
        app(None).await,
        get(&format!("/v1/models/{EMBEDDING_MODEL}")),
    )
    .await;
    assert_eq!((status.as_u16(), &one), (200, m));
}
