//! `GET /healthz` (the process is alive) and `GET /readyz` (Redis answers).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppResult, ErrorResponse};
use crate::state::AppState;

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
pub(crate) async fn healthz() -> Json<Health> {
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
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> AppResult<Json<Health>> {
    state.queue.ping().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}
