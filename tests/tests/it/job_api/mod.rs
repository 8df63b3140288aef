//! The everyday job features: idempotent and bulk submission, listing, groups, the result
//! cache, scheduled jobs and per-job retention.

mod batch;
mod cache;
mod groups;
mod idempotency;
mod listing;
mod retention;
mod schedule;
mod walk;

use std::time::Duration;

use serde_json::Value;

use crate::support::{App, all_under};

pub(super) const DONE: Duration = Duration::from_secs(60);

pub(super) async fn job_count(app: &App) -> usize {
    let mut conn = app.redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(all_under(&app.keys().job_prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

pub(super) fn ids_of(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}
