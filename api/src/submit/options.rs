//! What a submission carries besides its tensors: the idempotency key, the checked job
//! parameters (deadline, retention, schedule, priority, result cache) and the result-cache
//! key.

use axum::http::HeaderMap;
use inferq_shared::job::{JobParameters, MAX_RESULT_TTL_SECS, Priority};
use inferq_shared::model::ModelInfo;
use inferq_shared::payload;
use inferq_shared::time::now_ms;

use crate::caller::Principal;
use crate::error::{ApiError, AppResult};

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
