//! Who is calling: the tenant that owns what they submit and the scopes of their key, put on
//! each request by the authentication middleware (`http::auth`) and taken by the handlers,
//! which scope every job lookup by its tenant.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use inferq_shared::auth::{DEFAULT_TENANT, KeyInfo, Scope, Scopes, TenantLimits};
use inferq_shared::queue::rate::RateLimit;

use crate::config::Config;
use crate::error::ApiError;

/// Who is calling: the tenant that owns what they submit and the scopes of their key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Principal {
    pub(crate) tenant: String,
    pub(crate) scopes: Scopes,
    /// The key's id; `None` for the bootstrap admin key and when authentication is disabled.
    pub(crate) key_id: Option<String>,
    /// The tenant's quotas as the key sets them (unset: the configuration's).
    pub(crate) limits: TenantLimits,
}

impl Principal {
    /// Everyone, when authentication is disabled: one tenant, every scope.
    pub(crate) fn anonymous() -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_owned(),
            scopes: Scopes::all(),
            key_id: None,
            limits: TenantLimits::default(),
        }
    }

    pub(crate) fn from_key(k: KeyInfo) -> Self {
        Self {
            tenant: k.tenant,
            scopes: k.scopes,
            key_id: Some(k.id),
            limits: k.limits,
        }
    }

    /// Most jobs the caller's tenant may have waiting or running: the key's setting, else
    /// `INFERQ_TENANT_MAX_QUEUED`; 0 = no limit.
    pub(crate) fn max_queued(&self, config: &Config) -> u64 {
        self.limits.max_queued.unwrap_or(config.tenant_max_queued)
    }

    /// The tenant's submission rate: the key's settings, else `INFERQ_TENANT_RATE` and
    /// `INFERQ_TENANT_BURST`; `None` = no limit.
    pub(crate) fn rate_limit(&self, config: &Config) -> Option<RateLimit> {
        let per_sec = self.limits.rate.unwrap_or(config.tenant_rate);
        let burst = self.limits.burst.unwrap_or(config.tenant_burst);
        (per_sec > 0.0).then_some(RateLimit {
            per_sec,
            burst: burst.max(1.0),
        })
    }

    /// Whether the caller may see a job of `tenant`: their own, or any with `admin`.
    pub(crate) fn may_see(&self, tenant: &str) -> bool {
        self.may_see_all() || self.tenant == tenant
    }

    /// Whether the caller sees every tenant's jobs (an admin key, or keys disabled).
    pub(crate) fn may_see_all(&self) -> bool {
        self.scopes.contains(Scope::Admin)
    }
}

/// Handlers take the caller as an argument; the middleware put it there.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a route needs a caller it was not given".into()))
    }
}
