//! `GET /v1/models` and `GET /v1/models/{model}`: the embedding model in OpenAI's shape. It is
//! built into inferq (the `text_embeddings` pipeline), so it is listed whether or not a worker
//! serves it right now; its jobs wait for one.

use axum::Json;
use inferq_shared::pipeline::EMBEDDING_MODEL;
use serde::Serialize;
use utoipa::ToSchema;

use super::{LIST, OpenAiPath};
use crate::error::{OpenAiError, OpenAiErrorBody, OpenAiResult};

/// When all-MiniLM-L6-v2 was published (2021-08-30), as OpenAI's `created`.
const CREATED: u64 = 1_630_281_600;

/// OpenAI's model object.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiModel {
    id: &'static str,
    /// `model`.
    object: &'static str,
    /// Unix seconds.
    created: u64,
    owned_by: &'static str,
}

/// `{"object": "list", "data": [<model>]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiModelList {
    object: &'static str,
    data: Vec<OpenAiModel>,
}

fn model() -> OpenAiModel {
    OpenAiModel {
        id: EMBEDDING_MODEL,
        object: "model",
        created: CREATED,
        owned_by: "inferq",
    }
}

/// The models `/v1` serves: the embedding model.
#[utoipa::path(
    get, path = "/v1/models", operation_id = "openai_list_models", tag = "openai",
    responses((status = 200, description = "The models", body = OpenAiModelList)),
)]
pub(crate) async fn list_models() -> Json<OpenAiModelList> {
    Json(OpenAiModelList {
        object: LIST,
        data: vec![model()],
    })
}

/// One model.
#[utoipa::path(
    get, path = "/v1/models/{model}", operation_id = "openai_retrieve_model", tag = "openai",
    params(("model" = String, Path, description = "The model's id")),
    responses(
        (status = 200, description = "The model", body = OpenAiModel),
        (status = 404, description = "`model_not_found`", body = OpenAiErrorBody),
    ),
)]
pub(crate) async fn retrieve_model(
    OpenAiPath(name): OpenAiPath<String>,
) -> OpenAiResult<Json<OpenAiModel>> {
    if name != EMBEDDING_MODEL {
        return Err(OpenAiError::model_not_found(&name));
    }
    Ok(Json(model()))
}
