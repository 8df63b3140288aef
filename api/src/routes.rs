//! The router: every route, its fallbacks and layers; and the model and health routes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Request, Uri};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use inferq_shared::queue::{Retention, Retired};
use inferq_shared::time::rfc3339_ms;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::jobs;
use crate::state::AppState;

type AppResult<T> = Result<T, ApiError>;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/jobs", post(jobs::submit))
        .route("/jobs/{id}", get(jobs::status).delete(jobs::cancel))
        .route("/status/{id}", get(jobs::status))
        .route("/models", get(models))
        .route("/models/{name}", delete(retire_model))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::oip::router())
        .fallback(|uri: Uri| async move { ApiError::RouteNotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        // Outermost first: every request gets an `x-request-id` (kept if the client sent
        // one), is traced in a span carrying it, and the id is echoed in the response.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id,
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Every registered model, with how many live workers serve it and when one last announced
/// it. A model without live workers still accepts jobs: they wait for a worker.
async fn models(State(state): State<Arc<AppState>>) -> AppResult<Json<serde_json::Value>> {
    let models: Vec<serde_json::Value> = state
        .queue
        .model_statuses()
        .await?
        .into_iter()
        .map(|m| {
            let mut v = serde_json::to_value(&m.info).unwrap_or_default();
            v["workers"] = json!(m.workers);
            v["last_seen"] = json!(m.last_seen.map(rfc3339_ms));
            v
        })
        .collect();
    Ok(Json(json!({ "models": models })))
}

/// Retires a model no live worker serves: it leaves `GET /models`, new jobs for it get
/// `unknown_model`, and the jobs still waiting for it fail with `model_retired`.
async fn retire_model(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> AppResult<Json<serde_json::Value>> {
    let status = state
        .queue
        .model_statuses()
        .await?
        .into_iter()
        .find(|m| m.info.name == name)
        .ok_or_else(|| ApiError::ModelNotFound(name.chars().take(128).collect()))?;
    if status.workers > 0 {
        return Err(ApiError::ModelInUse {
            name,
            workers: status.workers,
        });
    }
    let retention = Retention {
        result_ttl: Duration::from_secs(state.config.result_ttl_secs),
    };
    match state.queue.retire_model(&name, retention).await? {
        Retired::NotFound => Err(ApiError::ModelNotFound(name)),
        Retired::Retired(failed) => {
            tracing::info!(model = %name, failed_jobs = failed, "model retired");
            Ok(Json(
                json!({ "model": name, "retired": true, "failed_jobs": failed }),
            ))
        }
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> AppResult<Json<serde_json::Value>> {
    state.queue.ping().await?;
    Ok(Json(json!({ "status": "ready" })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::{StatusCode, header};
    use inferq_shared::JobId;
    use inferq_shared::config::RedisConfig;
    use inferq_shared::queue::Queue;
    use tower::ServiceExt;

    /// A router whose Redis is unreachable: these requests must be answered without it.
    async fn app(max_body_bytes: usize) -> Router {
        let mut config = crate::Config::new(RedisConfig::new("redis://127.0.0.1:1", "unit"));
        config.max_body_bytes = max_body_bytes;
        config.redis.redis_timeout_ms = 200;
        let queue = Queue::connect(&config.redis, Duration::ZERO).await.unwrap();
        let (_, shutdown) = tokio::sync::watch::channel(false);
        router(Arc::new(AppState::new(config, queue, shutdown)))
    }

    async fn call(app: Router, req: Request) -> (StatusCode, serde_json::Value) {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn post(content_type: Option<&str>, body: impl Into<Body>) -> Request {
        let mut req = Request::post("/jobs");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn rejections_use_the_error_shape() {
        let cases = [
            (
                post(Some("text/plain"), "{}"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                post(None, "{}"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                post(Some("application/json"), "{\"model\""),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                post(Some("application/json; charset=utf-8"), "{}"),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                post(Some("application/json"), vec![b' '; 2048]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                Request::get("/status/123").body(Body::empty()).unwrap(),
                StatusCode::BAD_REQUEST,
                "invalid_job_id",
            ),
            (
                Request::get("/nope").body(Body::empty()).unwrap(),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Request::patch("/jobs").body(Body::empty()).unwrap(),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
        ];
        for (req, status, code) in cases {
            let (got, body) = call(app(1024).await, req).await;
            assert_eq!(
                (got, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{body}"
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[tokio::test]
    async fn redis_down_is_503_and_healthz_stays_up() {
        let (status, body) = call(
            app(1024).await,
            Request::get(format!("/status/{}", JobId::new()))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("redis_unavailable"))
        );
        let (status, _) = call(
            app(1024).await,
            Request::get("/readyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, body) = call(
            app(1024).await,
            Request::get("/healthz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    }
}
