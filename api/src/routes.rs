//! HTTP routes: submit, status (with optional long-poll), cancel, models, health.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use inferq_shared::job::{JobId, JobRecord, JobRequest};
use inferq_shared::model::valid_model_name;
use inferq_shared::queue::{Cancelled, Retention, Submitted};
use inferq_shared::time::now_ms;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::state::{AppState, WaitGuard};

type AppResult<T> = Result<T, ApiError>;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/jobs", post(submit))
        .route("/jobs/{id}", get(status).delete(cancel))
        .route("/status/{id}", get(status))
        .route("/models", get(models))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|uri: Uri| async move { ApiError::RouteNotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A JSON request body, as bytes: checks the content type and the size limit with the API's
/// error shape; parsing stays with the handler, which borrows from the bytes.
pub struct JsonBody(pub Bytes);

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(mime == "application/json"
            || (mime.starts_with("application/") && mime.ends_with("+json")))
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config.max_body_bytes;
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(limit)
                } else {
                    ApiError::InvalidRequest(rejection.body_text())
                }
            })
    }
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> AppResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        // A shape error can surface before a syntax error further on; syntax wins.
        if e.classify() != serde_json::error::Category::Data {
            return ApiError::MalformedJson(e.to_string());
        }
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(syntax) => ApiError::MalformedJson(syntax.to_string()),
            Ok(_) => ApiError::InvalidRequest(e.to_string()),
        }
    })
}

async fn submit(
    State(state): State<Arc<AppState>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    JsonBody(body): JsonBody,
) -> AppResult<Response> {
    let wait = wait_duration(&state, query)?;
    let req: JobRequest<'_> = parse_json(&body)?;
    let model = if valid_model_name(&req.model) {
        state.model(&req.model).await?
    } else {
        None
    };
    let Some(model) = model else {
        return Err(ApiError::UnknownModel {
            name: req.model.chars().take(128).collect(),
            available: state.cached_model_names().join(", "),
        });
    };
    model.validate(&req)?;
    let deadline = req
        .parameters
        .as_ref()
        .and_then(|p| p.deadline_ms(now_ms()));

    let id = JobId::new();
    // Registered before the job exists, so its completion cannot slip past.
    let guard = (!wait.is_zero()).then(|| state.wait_for(id));
    match state
        .queue
        .submit(id, &model.name, &body, state.config.max_queued, deadline)
        .await?
    {
        Submitted::Queued => {}
        Submitted::QueueFull => return Err(ApiError::Overloaded(model.name.clone())),
    }
    let url = format!("/status/{id}");
    if let Some(guard) = guard {
        let until = tokio::time::Instant::now() + wait;
        let record = wait_for_record(&state, &guard, id, until, false).await?;
        if record.status.is_terminal() {
            return Ok(([(header::LOCATION, url)], Json(record)).into_response());
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, url.clone())],
        Json(json!({ "id": id, "status": "queued", "status_url": url })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct WaitQuery {
    /// Seconds to wait for the job to finish before answering.
    wait: Option<f64>,
}

/// `?wait=<seconds>`, capped at the configured maximum; zero when absent.
fn wait_duration(
    state: &AppState,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> AppResult<Duration> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    match query.wait {
        None => Ok(Duration::ZERO),
        Some(w) if w.is_finite() && w >= 0.0 => Ok(Duration::from_secs_f64(
            w.min(state.config.max_wait_secs as f64),
        )),
        Some(_) => Err(ApiError::InvalidRequest(
            "wait must be a non-negative number of seconds".into(),
        )),
    }
}

fn parse_id(raw: &str) -> AppResult<JobId> {
    raw.parse()
        .map_err(|_| ApiError::InvalidJobId(raw.chars().take(64).collect()))
}

async fn read_record(state: &AppState, id: JobId) -> AppResult<JobRecord> {
    state
        .queue
        .record(id)
        .await?
        .ok_or_else(|| ApiError::JobNotFound(id.to_string()))
}

/// Reads the record once it is terminal or `until` passes, whichever is first. `read_first`
/// reads before the first wait (a job that may already be done); a job just submitted is not.
async fn wait_for_record(
    state: &AppState,
    guard: &WaitGuard<'_>,
    id: JobId,
    until: tokio::time::Instant,
    mut read_first: bool,
) -> AppResult<JobRecord> {
    loop {
        let notified = guard.signal.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = tokio::time::Instant::now();
        if read_first || now >= until || guard.signal.fired() {
            let record = read_record(state, id).await?;
            if record.status.is_terminal() || now >= until {
                return Ok(record);
            }
        }
        read_first = true;
        // Events arrive over pub/sub; the periodic re-read only covers events lost while the
        // subscription was reconnecting.
        let slice = until
            .saturating_duration_since(now)
            .min(Duration::from_secs(5));
        let _ = tokio::time::timeout(slice, notified).await;
    }
}

async fn status(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> AppResult<Json<JobRecord>> {
    let id = parse_id(&raw)?;
    let wait = wait_duration(&state, query)?;
    if wait.is_zero() {
        return read_record(&state, id).await.map(Json);
    }
    let guard = state.wait_for(id);
    let until = tokio::time::Instant::now() + wait;
    wait_for_record(&state, &guard, id, until, true)
        .await
        .map(Json)
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> AppResult<Json<JobRecord>> {
    let id = parse_id(&raw)?;
    let retention = Retention {
        result_ttl: Duration::from_secs(state.config.result_ttl_secs),
    };
    match state.queue.cancel(id, retention).await? {
        Cancelled::NotFound => Err(ApiError::JobNotFound(id.to_string())),
        Cancelled::AlreadyFinished(s) => Err(ApiError::AlreadyFinished(s)),
        Cancelled::Cancelled => state
            .queue
            .record(id)
            .await?
            .map(Json)
            .ok_or_else(|| ApiError::JobNotFound(id.to_string())),
    }
}

async fn models(State(state): State<Arc<AppState>>) -> AppResult<Json<serde_json::Value>> {
    let mut models = state
        .queue
        .live_models(inferq_shared::queue::MODEL_LIVENESS)
        .await?;
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(json!({ "models": models })))
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
    use inferq_shared::config::RedisConfig;
    use inferq_shared::queue::Queue;
    use tower::ServiceExt;

    /// A router whose Redis is unreachable: these requests must be answered without it.
    async fn app(max_body_bytes: usize) -> Router {
        let mut config = crate::Config::new(RedisConfig::new("redis://127.0.0.1:1", "unit"));
        config.max_body_bytes = max_body_bytes;
        config.redis.redis_timeout_ms = 200;
        let queue = Queue::connect(&config.redis, Duration::ZERO).await.unwrap();
        router(Arc::new(AppState::new(config, queue)))
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
