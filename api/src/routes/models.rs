//! `GET /models` and `DELETE /models/<name>`: the models workers serve, and retiring one.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::{Retention, Retired};
use inferq_shared::time::rfc3339_ms;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, AppResult, ErrorResponse};
use crate::http::extract::ApiPath;
use crate::state::AppState;

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
pub(crate) async fn models(State(state): State<Arc<AppState>>) -> AppResult<Json<ModelList>> {
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
pub(crate) async fn retire_model(
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
