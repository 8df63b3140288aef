//! `Retry-After` for a full model queue (`429 overloaded`), estimated from the queue: the time
//! the model's workers need, at the rate they finished jobs over the last minute, to serve the
//! jobs its stream holds now. A model that finished nothing in that minute (no live worker, or
//! a stall) gets a minute. A tenant over its `max_queued` (`429 quota_exceeded`) gets the time
//! for its excess (the jobs that must end before the submission fits) at the same rate.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use inferq_shared::queue::ops::THROUGHPUT_WINDOW_SECS;

use crate::error::{FullQueue, TenantExcess};
use crate::state::AppState;

/// Longest `Retry-After` given: past it the estimate says little.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// Seconds until `depth` jobs are served at `done` jobs per [`THROUGHPUT_WINDOW_SECS`].
pub(crate) fn retry_after_secs(depth: u64, done: u64) -> u64 {
    if done == 0 {
        return THROUGHPUT_WINDOW_SECS;
    }
    (depth.max(1) * THROUGHPUT_WINDOW_SECS)
        .div_ceil(done)
        .clamp(1, MAX_RETRY_AFTER_SECS)
}

/// The innermost step of [`super::gate`]: sets the estimated `Retry-After` on `429 overloaded` answers (native routes mark
/// them with [`FullQueue`]; on the OIP routes the model is in the path).
pub(crate) async fn estimate(state: &AppState, req: Request, next: Next) -> Response {
    let oip_model = oip_model(req.uri().path());
    let mut res = next.run(req).await;
    if res.status() != StatusCode::TOO_MANY_REQUESTS {
        return res;
    }
    let excess = res.extensions().get::<TenantExcess>().cloned();
    let model = match (res.extensions().get::<FullQueue>(), &excess) {
        (Some(FullQueue(m)), _) => Some(m.clone()),
        (None, Some(e)) => Some(e.model.clone()),
        (None, None) => oip_model,
    };
    let Some(model) = model else { return res };
    // Without Redis the answer keeps its default.
    if let Ok((depth, done)) = state.queue.backlog(&model).await {
        let jobs = excess.map_or(depth, |e| e.excess);
        let secs = retry_after_secs(jobs, done);
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// The model of an OIP inference path (`/v2/models/<model>/[versions/<v>/]infer`).
fn oip_model(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/models/")?;
    let (model, tail) = rest.split_once('/')?;
    (tail.ends_with("infer") && inferq_shared::model::valid_model_name(model))
        .then(|| model.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_time_to_serve_the_backlog() {
        assert_eq!(retry_after_secs(10, 0), 60);
        assert_eq!(retry_after_secs(10, 600), 1);
        assert_eq!(retry_after_secs(100, 60), 100);
        assert_eq!(retry_after_secs(3, 2), 90);
        assert_eq!(retry_after_secs(1_000_000, 1), 3600);
        assert_eq!(oip_model("/v2/models/m/infer").as_deref(), Some("m"));
        assert_eq!(
            oip_model("/v2/models/m/versions/1/infer").as_deref(),
            Some("m")
        );
        assert_eq!(oip_model("/jobs"), None);
    }
}
