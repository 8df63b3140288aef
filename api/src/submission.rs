//! What a submission carries besides its tensors: the idempotency key, the checked job
//! parameters (deadline, retention, schedule, result cache) and the errors of a refused
//! enqueue.

use std::time::Duration;

use axum::http::HeaderMap;
use inferq_shared::job::{JobId, JobParameters, MAX_RESULT_TTL_SECS, Priority};
use inferq_shared::model::ModelInfo;
use inferq_shared::payload;
use inferq_shared::queue::{Retention, Submitted};
use inferq_shared::time::now_ms;
use inferq_shared::webhook::{Webhook, WebhookRequest};

use crate::auth::Principal;
use crate::error::{ApiError, AppResult};
use crate::state::AppState;

/// Response header set on every submission: `true` when an `Idempotency-Key` replayed the job
/// it first created.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> AppResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v.to_str().ok().filter(|k| valid_idempotency_key(k));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::InvalidRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))
    })
}

pub(crate) fn valid_idempotency_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
}

/// An idempotency or result-cache key within the caller's tenant: two tenants using the same
/// `Idempotency-Key`, or sending the same inputs, never see each other's jobs or results.
/// Tenant names hold no `/`, so the two parts cannot be confused.
pub(crate) fn tenant_scoped(caller: &Principal, key: &str) -> String {
    format!("{}/{key}", caller.tenant)
}

/// What identifies a request for its idempotency key: the SHA-256 of its bytes.
pub(crate) fn request_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The error for a submission Redis refused.
pub(crate) fn refused(state: &AppState, model: &str, outcome: Submitted) -> ApiError {
    match outcome {
        Submitted::QueueFull => ApiError::Overloaded(model.to_owned()),
        // Retired after the model cache was filled.
        Submitted::UnknownModel => ApiError::UnknownModel {
            name: model.to_owned(),
            available: state.cached_model_names().join(", "),
        },
        Submitted::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
        Submitted::QuotaExceeded { excess } => ApiError::QuotaExceeded {
            model: model.to_owned(),
            excess,
        },
        Submitted::Queued
        | Submitted::Scheduled
        | Submitted::Replayed(_)
        | Submitted::NotSubmitted => {
            ApiError::Internal("a queued job was reported as refused".into())
        }
    }
}

/// The request's webhook, checked (`422 invalid_url` / `url_not_allowed`).
pub(crate) fn webhook(
    state: &AppState,
    request: Option<&WebhookRequest>,
) -> AppResult<Option<Webhook>> {
    if let Some(events) = request.and_then(|w| w.events.as_ref())
        && events.is_empty()
    {
        return Err(ApiError::InvalidParameter(
            "webhook.events is empty; leave it out for the final events".into(),
        ));
    }
    Ok(request
        .map(|w| w.check(&state.config.fetch_allow))
        .transpose()?)
}

/// A job's settings from its parameters, checked.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JobOptions {
    pub(crate) deadline_ms: Option<u64>,
    pub(crate) result_ttl_secs: Option<u64>,
    /// `parameters.cache`.
    pub(crate) cache: bool,
    /// `parameters.run_at` / `delay_ms`: do not start before, ms since the epoch.
    pub(crate) due_ms: Option<u64>,
    /// `parameters.priority`.
    pub(crate) priority: Priority,
}

impl JobOptions {
    pub(crate) fn of(parameters: Option<&JobParameters>) -> AppResult<Self> {
        let Some(p) = parameters else {
            return Ok(Self::default());
        };
        if let Some(ttl) = p.result_ttl_secs
            && !(1..=MAX_RESULT_TTL_SECS).contains(&ttl)
        {
            return Err(ApiError::InvalidParameter(format!(
                "parameters.result_ttl_secs must be between 1 and {MAX_RESULT_TTL_SECS}, got {ttl}"
            )));
        }
        let now = now_ms();
        Ok(Self {
            deadline_ms: p.deadline_ms(now),
            result_ttl_secs: p.result_ttl_secs,
            cache: p.cache == Some(true),
            due_ms: p.due_ms(now).map_err(ApiError::InvalidParameter)?,
            priority: p.priority().map_err(ApiError::InvalidParameter)?,
        })
    }
}

/// The result-cache key of a job: the SHA-256 of the model file's hash and the job payload
/// without its parameters (inputs, their bytes, requested outputs). `None` when the model's
/// workers do not publish a file hash.
pub(crate) fn cache_key(model: &ModelInfo, payload: &[u8]) -> AppResult<Option<String>> {
    use sha2::Digest;
    let Some(file) = &model.sha256 else {
        return Ok(None);
    };
    let (mut header, data) = payload::decode_job(payload)
        .map_err(|e| ApiError::Internal(format!("re-reading a job payload: {e}")))?;
    header.parameters = None;
    let canonical = payload::encode_job(&header, &data);
    let mut h = sha2::Sha256::new();
    h.update(file.as_bytes());
    h.update(b"\n");
    h.update(&canonical);
    Ok(Some(hex::encode(h.finalize())))
}

/// Answers the job from the result cache when it asks for it and a result is there (the job
/// is then written `succeeded`); otherwise says under which key to cache its result.
pub(crate) async fn from_cache(
    state: &AppState,
    caller: &Principal,
    id: JobId,
    model: &ModelInfo,
    payload: &[u8],
    options: JobOptions,
) -> AppResult<Result<(), Option<(String, Duration)>>> {
    if !options.cache {
        return Ok(Err(None));
    }
    let Some(key) = cache_key(model, payload)? else {
        return Ok(Err(None));
    };
    let key = tenant_scoped(caller, &key);
    let retention = Retention {
        result_ttl: Duration::from_secs(state.config.result_ttl_secs),
    };
    if state
        .queue
        .submit_cached(
            id,
            &model.name,
            &key,
            retention,
            options.result_ttl_secs,
            &caller.tenant,
        )
        .await?
    {
        crate::metrics::submitted(&model.name);
        return Ok(Ok(()));
    }
    Ok(Err(Some((
        key,
        Duration::from_secs(state.config.cache_ttl_secs),
    ))))
}
