//! Authentication and authorisation: one middleware in front of every route decides, from the
//! method and path alone, which scope a request needs, finds the caller's key and attaches
//! the caller (a [`Principal`]: tenant and scopes) to the request for the handlers, which
//! scope every job lookup by its tenant.
//!
//! Deciding by path in one place, rather than per handler, means a new route cannot forget
//! its check: a path this module does not recognise needs `admin` (fail closed).

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use inferq_shared::auth::{
    ApiKey, DEFAULT_TENANT, Scope, Scopes, TenantLimits, constant_time_eq, hash_secret,
};

use crate::caller::Principal;
use crate::config::AuthMode;
use crate::error::{ApiError, respond};
use crate::state::AppState;

/// The header that carries a key when `Authorization` does not.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// Shortest accepted `INFERQ_ADMIN_KEY`: a guessable admin key would open everything.
pub(crate) const MIN_ADMIN_KEY_LEN: usize = 32;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone: health checks, this API's own document.
    Open,
    Needs(Scope),
}

/// The scope `method path` needs. Job-like resources: reading needs `read`, anything else
/// `submit` (submitting, cancelling one's own jobs); the model list `read`, retiring a model
/// `admin`; OIP metadata `read`, inference `submit`; the OpenAI routes (`/v1`) `read` to
/// read, `submit` to embed, upload, delete a file or start and cancel a batch; operations (the dashboard's data), keys,
/// metrics and every unknown path `admin`.
pub(crate) fn access(method: &Method, path: &str, metrics_public: bool) -> Access {
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let by_method = |write: Scope| Access::Needs(if reading { Scope::Read } else { write });
    let mut segments = path.trim_start_matches('/').split('/');
    match segments.next().unwrap_or("") {
        // The dashboard's page and files hold no data: a browser must load them before it can
        // send the admin key (typed into the page) with the data requests.
        "healthz" | "readyz" | "openapi.json" | "dashboard" => Access::Open,
        "metrics" if metrics_public => Access::Open,
        "v2" => match segments.next() {
            Some("health") => Access::Open,
            _ if reading => Access::Needs(Scope::Read),
            _ if path.ends_with("/infer") => Access::Needs(Scope::Submit),
            _ => Access::Needs(Scope::Admin),
        },
        "v1" => match segments.next() {
            Some("embeddings" | "files" | "batches" | "models") => by_method(Scope::Submit),
            _ => Access::Needs(Scope::Admin),
        },
        "jobs" | "status" | "groups" | "batches" | "events" | "pipelines" => {
            by_method(Scope::Submit)
        }
        "models" => by_method(Scope::Admin),
        _ => Access::Needs(Scope::Admin),
    }
}

/// The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<ApiKey> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, key) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| ApiKey::from_client(key.trim()));
    }
    let v = headers.get(API_KEY_HEADER)?.to_str().ok()?.trim();
    Some(ApiKey::from_client(v))
}

/// The caller a key stands for, if it is the bootstrap admin key or a stored one.
async fn identify(state: &AppState, key: &ApiKey) -> Result<Option<Principal>, ApiError> {
    if key.expose().is_empty() {
        return Ok(None);
    }
    if let Some(admin) = &state.config.admin_key
        && !admin.expose().is_empty()
        && constant_time_eq(&key.hash(), &hash_secret(admin.expose()))
    {
        return Ok(Some(Principal {
            tenant: DEFAULT_TENANT.to_owned(),
            scopes: Scopes::all(),
            key_id: None,
            limits: TenantLimits::default(),
        }));
    }
    Ok(state
        .queue
        .find_api_key(key)
        .await?
        .map(Principal::from_key))
}

/// A step of [`super::gate`]: answers `401` (no or unknown key) or `403` (a key without the
/// scope) before the handler runs; otherwise passes the caller on as a [`Principal`].
pub(crate) async fn authenticate(state: &AppState, mut req: Request) -> Result<Request, Response> {
    let needed = access(req.method(), req.uri().path(), state.config.metrics_public);
    let principal = match (state.config.auth, needed) {
        (AuthMode::Disabled, _) => Some(Principal::anonymous()),
        (AuthMode::Required, Access::Open) => None,
        (AuthMode::Required, Access::Needs(scope)) => {
            let found = match presented_key(req.headers()) {
                Some(key) => identify(state, &key).await,
                None => Ok(None),
            };
            let path = req.uri().path();
            match found {
                Err(e) => return Err(respond(path, e)),
                Ok(None) => return Err(respond(path, ApiError::Unauthorized)),
                Ok(Some(p)) if !p.scopes.allows(scope) => {
                    return Err(respond(path, ApiError::Forbidden(scope)));
                }
                Ok(Some(p)) => Some(p),
            }
        }
    };
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::WWW_AUTHENTICATE;

    #[test]
    fn routes_need_the_documented_scopes() {
        let open = Access::Open;
        let need = Access::Needs;
        for (method, path, want) in [
            (Method::GET, "/healthz", open),
            (Method::GET, "/readyz", open),
            (Method::GET, "/v2/health/live", open),
            (Method::GET, "/v2/health/ready", open),
            (Method::GET, "/openapi.json", open),
            (Method::POST, "/jobs", need(Scope::Submit)),
            (Method::GET, "/jobs", need(Scope::Read)),
            (Method::GET, "/jobs/x", need(Scope::Read)),
            (Method::DELETE, "/jobs/x", need(Scope::Submit)),
            (Method::GET, "/status/x", need(Scope::Read)),
            (Method::GET, "/models", need(Scope::Read)),
            (Method::DELETE, "/models/m", need(Scope::Admin)),
            (Method::GET, "/v2", need(Scope::Read)),
            (Method::GET, "/v2/models/m", need(Scope::Read)),
            (Method::POST, "/v2/models/m/infer", need(Scope::Submit)),
            (
                Method::POST,
                "/v2/models/m/versions/1/infer",
                need(Scope::Submit),
            ),
            (
                Method::POST,
                "/v2/repository/models/m/load",
                need(Scope::Admin),
            ),
            (Method::POST, "/v1/embeddings", need(Scope::Submit)),
            (Method::GET, "/v1/models", need(Scope::Read)),
            (Method::POST, "/v1/files", need(Scope::Submit)),
            (Method::DELETE, "/v1/files/f", need(Scope::Submit)),
            (Method::GET, "/v1/files/f/content", need(Scope::Read)),
            (Method::POST, "/v1/batches/b/cancel", need(Scope::Submit)),
            (Method::GET, "/v1/batches", need(Scope::Read)),
            (Method::POST, "/v1/fine_tuning/jobs", need(Scope::Admin)),
            (Method::GET, "/workers", need(Scope::Admin)),
            (Method::GET, "/queues", need(Scope::Admin)),
            (Method::GET, "/scaling", need(Scope::Admin)),
            (Method::GET, "/dead", need(Scope::Admin)),
            (Method::POST, "/dead/x/retry", need(Scope::Admin)),
            (Method::GET, "/metrics", need(Scope::Admin)),
            (Method::GET, "/dashboard", open),
            (Method::GET, "/dashboard/app.js", open),
            (Method::POST, "/keys", need(Scope::Admin)),
            (Method::GET, "/something-new", need(Scope::Admin)),
        ] {
            assert_eq!(access(&method, path, false), want, "{method} {path}");
        }
        assert_eq!(access(&Method::GET, "/metrics", true), Access::Open);
    }

    #[test]
    fn keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(API_KEY_HEADER, "k1".parse().unwrap());
        assert_eq!(presented_key(&h).unwrap().expose(), "k1");
        h.insert(header::AUTHORIZATION, "bearer  k2 ".parse().unwrap());
        assert_eq!(presented_key(&h).unwrap().expose(), "k2");
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }

    /// A router with keys required and an unreachable Redis: refusals must not need it.
    async fn app() -> axum::Router {
        use inferq_shared::config::RedisConfig;
        let mut config =
            crate::config::Config::new(RedisConfig::new("redis://127.0.0.1:1", "unit"));
        config.redis.redis_timeout_ms = 200;
        config.admin_key = Some("a".repeat(40).parse().unwrap());
        let queue = inferq_shared::queue::Queue::connect(&config.redis, Default::default())
            .await
            .unwrap();
        let (_, shutdown) = tokio::sync::watch::channel(false);
        crate::routes::router(std::sync::Arc::new(AppState::new(config, queue, shutdown)))
    }

    async fn call(req: axum::http::Request<axum::body::Body>) -> (u16, HeaderMap, String) {
        use tower::ServiceExt;
        let res = app().await.oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        (parts.status.as_u16(), parts.headers, text)
    }

    fn get(path: &str, key: Option<&str>) -> axum::http::Request<axum::body::Body> {
        let mut req = axum::http::Request::get(path);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        req.body(axum::body::Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn requests_without_a_valid_key_get_401_in_the_route_family_shape() {
        let (status, headers, body) = call(get("/models", None)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], WWW_AUTHENTICATE);
        assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
        // Not shaped like a generated key: refused without asking Redis.
        let (status, _, body) = call(get("/v2/models/m", Some("guess"))).await;
        assert_eq!(status, 401, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].is_string(), "{body}");
        // Shaped like one: Redis must be asked, and it is down.
        let shaped = format!("iqk_{}_{}", "0".repeat(16), "0".repeat(64));
        let (status, headers, _) = call(get("/models", Some(&shaped))).await;
        assert_eq!(status, 503);
        assert!(headers.contains_key(header::RETRY_AFTER));
    }

    #[tokio::test]
    async fn health_is_open_and_the_bootstrap_key_is_admin() {
        assert_eq!(call(get("/healthz", None)).await.0, 200);
        assert_eq!(call(get("/v2/health/live", None)).await.0, 200);
        assert_eq!(call(get("/openapi.json", None)).await.0, 200);
        // Past authentication: the route itself then needs Redis.
        let admin = "a".repeat(40);
        assert_eq!(call(get("/workers", Some(&admin))).await.0, 503);
        assert_eq!(call(get("/workers", Some(&"a".repeat(39)))).await.0, 401);
    }
}
