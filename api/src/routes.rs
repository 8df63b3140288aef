//! The router: every route, its fallbacks and layers; and the model and health routes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::{Retention, Retired};
use inferq_shared::telemetry;
use inferq_shared::time::rfc3339_ms;
use serde::Serialize;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorResponse};
use crate::extract::{ApiPath, traceparent};
use crate::state::AppState;
use crate::{dashboard, jobs, oip, status};

use crate::error::AppResult;

/// Every route, each registered with its OpenAPI description (one path per `routes!`), so the
/// router and `GET /openapi.json` cannot disagree.
/// `upload_limit` is the body limit of `POST /jobs`, which carries uploads.
fn documented_routes(upload_limit: usize) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(jobs::submit, crate::listing::list_jobs))
        // Innermost, so it overrides the router-wide limit for these routes only.
        .layer(DefaultBodyLimit::max(upload_limit))
        .routes(routes!(crate::batch::submit_batch))
        .routes(routes!(crate::groups::submit_group))
        .routes(routes!(
            crate::groups::group_status,
            crate::groups::cancel_group
        ))
        .routes(routes!(crate::pipelines::list))
        .routes(routes!(status::get_job, status::cancel))
        .routes(routes!(crate::events::job_events))
        .routes(routes!(status::status))
        .routes(routes!(models))
        .routes(routes!(retire_model))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(oip::server_metadata))
        .routes(routes!(oip::live))
        .routes(routes!(oip::ready))
        .routes(routes!(oip::model_metadata))
        .routes(routes!(oip::model_metadata_v))
        .routes(routes!(oip::model_ready))
        .routes(routes!(oip::model_ready_v))
        .routes(routes!(oip::infer::infer))
        .routes(routes!(oip::infer::infer_v))
        .routes(routes!(crate::openapi::document))
        .routes(routes!(crate::metrics::metrics))
        .routes(routes!(crate::ops::workers))
        .routes(routes!(crate::ops::queues))
        .routes(routes!(crate::ops::dead_letters))
        .routes(routes!(crate::ops::retry_dead_letter))
        .routes(routes!(crate::ops::delete_dead_letter))
        .routes(routes!(dashboard::page))
        .routes(routes!(dashboard::file))
        .routes(routes!(crate::keys::create, crate::keys::list))
        .routes(routes!(crate::keys::revoke))
}

/// The OpenAPI 3.1 document of every route the router serves, as `GET /openapi.json` gives it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = documented_routes(0).into_openapi();
    crate::openapi::secure(&mut doc);
    doc
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
            crate::gate::gate,
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

/// Under `/v2`, errors keep the protocol's shape, so OIP clients can read them.
fn is_oip(uri: &Uri) -> bool {
    is_oip_path(uri.path())
}

pub(crate) fn is_oip_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

fn not_found(uri: &Uri) -> Response {
    let e = ApiError::RouteNotFound(uri.path().to_owned());
    if is_oip(uri) {
        oip::OipError::from(e).into_response()
    } else {
        e.into_response()
    }
}

fn method_not_allowed(uri: &Uri) -> Response {
    if is_oip(uri) {
        oip::OipError::method_not_allowed().into_response()
    } else {
        ApiError::MethodNotAllowed.into_response()
    }
}

/// A model as `GET /models` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelStatus {
    #[serde(flatten)]
    info: ModelInfo,
    /// How many live workers serve it (each announces every 2 s, counts for 10 s).
    workers: usize,
    /// The last announcement by any worker.
    #[schema(format = DateTime)]
    last_seen: Option<String>,
}

/// `GET /models`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    models: Vec<ModelStatus>,
}

/// Every registered model, with how many live workers serve it and when one last announced
/// it. A model without live workers still accepts jobs: they wait for a worker.
#[utoipa::path(
    get, path = "/models", operation_id = "list_models", tag = "models",
    responses(
        (status = 200, description = "Every registered model", body = ModelList,
         links(
            ("ModelMetadata" = (operation_id = "oip_model_metadata",
                                parameters(("model" = "$response.body#/models/0/name")))),
            ("ModelReady" = (operation_id = "oip_model_ready",
                             parameters(("model" = "$response.body#/models/0/name")))),
            ("ModelVersionMetadata" = (operation_id = "oip_model_version_metadata",
                                       parameters(("model" = "$response.body#/models/0/name"),
                                                  ("version" = "1")))),
            ("ModelVersionReady" = (operation_id = "oip_model_version_ready",
                                    parameters(("model" = "$response.body#/models/0/name"),
                                               ("version" = "1")))),
            ("Infer" = (operation_id = "oip_infer",
                        parameters(("model" = "$response.body#/models/0/name")))),
            ("InferVersion" = (operation_id = "oip_infer_version",
                               parameters(("model" = "$response.body#/models/0/name"),
                                          ("version" = "1")))),
            ("RetireModel" = (operation_id = "retire_model",
                              parameters(("name" = "$response.body#/models/0/name")))),
         )),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
async fn models(State(state): State<Arc<AppState>>) -> AppResult<Json<ModelList>> {
    let models = state
        .queue
        .model_statuses()
        .await?
        .into_iter()
        .map(|m| ModelStatus {
            info: m.info,
            workers: m.workers,
            last_seen: m.last_seen.map(rfc3339_ms),
        })
        .collect();
    Ok(Json(ModelList { models }))
}

/// `DELETE /models/<name>`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RetiredModel {
    model: String,
    /// Always true.
    retired: bool,
    /// Jobs that were still waiting for the model, now failed with `model_retired`.
    failed_jobs: usize,
}

/// Retires a model no live worker serves: it leaves `GET /models`, new jobs for it get
/// `unknown_model`, and the jobs still waiting for it fail with `model_retired`.
#[utoipa::path(
    delete, path = "/models/{name}", operation_id = "retire_model", tag = "models",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Retired", body = RetiredModel),
        (status = 400, description = "`invalid_request` (a name that is not UTF-8)",
         body = ErrorResponse),
        (status = 404, description = "`model_not_found`", body = ErrorResponse),
        (status = 409, description = "`model_in_use`: live workers serve it", body = ErrorResponse),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
async fn retire_model(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> AppResult<Json<RetiredModel>> {
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
            Ok(Json(RetiredModel {
                model: name,
                retired: true,
                failed_jobs: failed,
            }))
        }
    }
}

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    status: String,
}

/// Liveness: answers while the process runs.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Health)),
)]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Redis answers.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Health),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
async fn readyz(State(state): State<Arc<AppState>>) -> AppResult<Json<Health>> {
    state.queue.ping().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
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
        let mut config = crate::Config::new(RedisConfig::new("redis://127.0.0.1:1", "unit"));
        config.max_body_bytes = max_body_bytes;
        config.redis.redis_timeout_ms = 200;
        config.auth = crate::AuthMode::Disabled;
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
