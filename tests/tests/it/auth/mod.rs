//! API keys, scopes and tenants against a real API (keys required), a real worker and the
//! real `inferq-api keys` command: every status code of the auth layer, two tenants that
//! cannot see each other's jobs, admins who see all, revocation.

mod keys;
mod metrics;
mod tenants;

use std::process::Command;

use reqwest::{Method, RequestBuilder};
use serde_json::json;

use crate::support::{App, AppOptions, Client, api_binary, send, spawn_app_with};

pub(super) const ADMIN: &str = "bootstrap-admin-key-for-the-tests-0123456789";

pub(super) async fn secured_app() -> App {
    spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await
}

/// `inferq-api <args>` against the test's Redis and namespace; returns (exit ok, stdout,
/// stderr).
pub(super) fn api_cli(app: &App, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(api_binary())
        .env_clear()
        .env("INFERQ_REDIS_URL", app.redis.url())
        .env("INFERQ_NAMESPACE", &app.namespace)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(super) fn req(app: &App, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
    Client::new(app.http.clone(), &app.base, key).request(method, path)
}

/// Makes a key over HTTP with the bootstrap admin key.
pub(super) async fn http_key(app: &App, tenant: &str, scopes: &[&str]) -> (String, String) {
    let (status, _, body) = send(
        req(app, Method::POST, "/keys", Some(ADMIN))
            .json(&json!({"tenant": tenant, "scopes": scopes, "name": "test"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("iqk_"), "{key}");
    assert_eq!(body["tenant"], tenant);
    (key, body["id"].as_str().unwrap().to_owned())
}
