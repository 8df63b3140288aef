//! The routes, one file per resource, and the router: every route, its fallbacks and layers.

pub(crate) mod batch;
pub(crate) mod dashboard;
pub(crate) mod events;
pub(crate) mod groups;
pub(crate) mod health;
pub(crate) mod jobs;
pub mod keys;
pub(crate) mod listing;
pub(crate) mod metrics;
pub(crate) mod models;
#[cfg(test)]
mod openai_errors;
pub(crate) mod openapi;
pub(crate) mod ops;
pub(crate) mod pipelines;
pub(crate) mod scaling;
pub(crate) mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, Uri};
use axum::response::Response;
use inferq_shared::telemetry;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, respond};
use crate::http::extract::traceparent;
use crate::oip;
use crate::openai;
use crate::state::AppState;

/// Every route, each registered with its OpenAPI description (one path per `routes!`), so the
/// router and `GET /openapi.json` cannot disagree.
/// `upload_limit` is the body limit of `POST /jobs` and `POST /v1/files`, which carry uploads.
pub(crate) fn documented_routes(upload_limit: usize) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(jobs::submit, listing::list_jobs))
        .routes(routes!(
            openai::files::upload_file,
            openai::files::list_files
        ))
        // Innermost, so it overrides the router-wide limit for these routes only.
        .layer(DefaultBodyLimit::max(upload_limit))
        .routes(routes!(batch::submit_batch))
        .routes(routes!(groups::submit_group))
        .routes(routes!(groups::group_status, groups::cancel_group))
        .routes(routes!(pipelines::list))
        .routes(routes!(status::get_job, status::cancel))
        .routes(routes!(events::job_events))
        .routes(routes!(status::status))
        .routes(routes!(models::models))
        .routes(routes!(models::retire_model))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(oip::server_metadata))
        .routes(routes!(oip::live))
        .routes(routes!(oip::ready))
        .routes(routes!(oip::model_metadata))
        .routes(routes!(oip::model_metadata_v))
        .routes(routes!(oip::model_ready))
        .routes(routes!(oip::model_ready_v))
        .routes(routes!(oip::infer::infer))
        .routes(routes!(oip::infer::infer_v))
        .routes(routes!(openai::embeddings::create_embeddings))
        .routes(routes!(openai::models::list_models))
        .routes(routes!(openai::models::retrieve_model))
        .routes(routes!(
            openai::files::retrieve_file,
            openai::files::delete_file
        ))
        .routes(routes!(openai::files::file_content))
        .routes(routes!(
            openai::batches::create_batch,
            openai::batches::list_batches
        ))
        .routes(routes!(openai::batches::retrieve_batch))
        .routes(routes!(openai::batches::cancel_batch))
        .routes(routes!(openapi::document))
        .routes(routes!(metrics::metrics))
        .routes(routes!(ops::workers))
        .routes(routes!(ops::queues))
        .routes(routes!(scaling::scaling))
        .routes(routes!(ops::dead_letters))
        .routes(routes!(ops::retry_dead_letter))
        .routes(routes!(ops::delete_dead_letter))
        .routes(routes!(dashboard::page))
        .routes(routes!(dashboard::file))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    let (routes, _) = documented_routes(state.config.submit_body_limit()).split_for_parts();
    routes
        .fallback(|uri: Uri| async move { not_found(&uri) })
        .method_not_allowed_fallback(|uri: Uri| async move { method_not_allowed(&uri) })
        .layer(DefaultBodyLimit::max(limit))
        // The API's own steps (limits, authentication, rate, `Retry-After`, metrics).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::gate::gate,
        ))
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(
            state.config.body_timeout_secs.max(1),
        )))
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
                let span = tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id,
                    trace_id = tracing::field::Empty,
                );
                // A caller's `traceparent` makes this request part of its trace.
                telemetry::join(&span, traceparent(req.headers()).as_ref());
                span
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

fn not_found(uri: &Uri) -> Response {
    respond(uri.path(), ApiError::RouteNotFound(uri.path().to_owned()))
}

fn method_not_allowed(uri: &Uri) -> Response {
    respond(uri.path(), ApiError::MethodNotAllowed)
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
    use serde_json::json;
    use tower::ServiceExt;

    /// A router whose Redis is unreachable: these requests must be answered without it.
    async fn app(max_body_bytes: usize) -> Router {
        let mut config =
            crate::config::Config::new(RedisConfig::new("redis://127.0.0.1:1", "unit"));
        config.max_body_bytes = max_body_bytes;
        config.redis.redis_timeout_ms = 200;
        config.auth = crate::config::AuthMode::Disabled;
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
