//! `GET /pipelines`: the built-in pipelines, with their parameters and defaults.

use axum::Json;
use inferq_shared::embedding;
use inferq_shared::pipeline::{self, PipelineInfo};
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /pipelines`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PipelineList {
    pipelines: Vec<PipelineInfo>,
}

/// The built-in pipelines, with their parameters and defaults.
#[utoipa::path(
    get, path = "/pipelines", operation_id = "list_pipelines", tag = "pipelines",
    responses((status = 200, description = "Every built-in pipeline", body = PipelineList)),
)]
pub(crate) async fn list() -> Json<PipelineList> {
    Json(PipelineList {
        pipelines: vec![pipeline::speech_info(), embedding::pipeline_info()],
    })
}
