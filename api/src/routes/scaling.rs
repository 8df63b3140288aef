//! `GET /scaling`: what an autoscaler (KEDA's `metrics-api` scaler) reads to size the worker
//! fleet: per queue (every model's and every pipeline's) the jobs waiting and running, and their
//! total. Scaling on `load` (waiting plus running) never takes the fleet to zero while a job
//! is in flight.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppResult, ErrorResponse};
use crate::state::AppState;

/// One queue's (or all queues') demand for workers.
#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct Demand {
    /// Jobs waiting for a worker (scheduled jobs count once they are due).
    depth: u64,
    /// Jobs a worker holds (also a dead worker's, until another takes them over).
    running: u64,
    /// `depth + running`: the figure to scale on.
    load: u64,
}

impl Demand {
    fn new(depth: u64, running: u64) -> Self {
        Self {
            depth,
            running,
            load: depth + running,
        }
    }

    fn add(self, other: Self) -> Self {
        Self::new(self.depth + other.depth, self.running + other.running)
    }
}

/// `GET /scaling`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Scaling {
    /// Every queue together.
    total: Demand,
    /// Per queue: each registered model by name, each pipeline whose model is registered as
    /// `pipeline:<name>`. Always present, zeros included, so an autoscaler's path never misses.
    queues: BTreeMap<String, Demand>,
}

/// The demand for workers, for an autoscaler: per queue and in total, jobs waiting and
/// running and their sum (`load`). KEDA's `metrics-api` scaler reads `total.load` (one worker
/// pool for every model) or `queues.<name>.load` (a pool per model). Read from Redis, so every
/// API replica answers the same; figures at most about a second old.
#[utoipa::path(
    get, path = "/scaling", operation_id = "get_scaling", tag = "operations",
    responses(
        (status = 200, description = "The demand for workers", body = Scaling),
        (status = 500, description = "`internal`", body = ErrorResponse),
        (status = 503, description = "`redis_unavailable`", body = ErrorResponse,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn scaling(State(state): State<Arc<AppState>>) -> AppResult<Json<Scaling>> {
    let overview = state.overview().await?;
    let queues: BTreeMap<String, Demand> = overview
        .models
        .iter()
        .map(|q| (q.model.clone(), Demand::new(q.depth, q.running)))
        .collect();
    let total = queues.values().fold(Demand::default(), |t, d| t.add(*d));
    Ok(Json(Scaling { total, queues }))
}
