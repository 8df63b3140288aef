//! An HTTP client of one API that carries an API key (or none) on every request, with the
//! requests the tests make most: JSON in, status and JSON out.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use super::eventually;

/// An HTTP client of the API at `base`, sending `key` as a bearer token when it has one.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub http: reqwest::Client,
    pub base: String,
    key: Option<String>,
}

impl Client {
    pub(crate) fn new(http: reqwest::Client, base: &str, key: Option<&str>) -> Self {
        Self {
            http,
            base: base.to_owned(),
            key: key.map(str::to_owned),
        }
    }

    /// A request to `path`, with the key.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// GET; a transport failure reads as status 0.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        match self.request(Method::GET, path).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, body) = send(self.request(Method::POST, path).json(body)).await;
        (status, body)
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = send(self.request(Method::DELETE, path)).await;
        (status, body)
    }

    /// `POST /keys` with `body` (this client's key must be an admin's); returns the new key and
    /// its id.
    pub(crate) async fn create_key(&self, body: &Value) -> (String, String) {
        let (status, answer) = self.post_json("/keys", body).await;
        assert_eq!(status, 201, "{answer}");
        (
            answer["key"].as_str().unwrap().to_owned(),
            answer["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Waits until `GET /models`, as this client sees it, lists every one of `names` with a
    /// live worker.
    pub(crate) async fn wait_models(&self, names: &[&str]) {
        let what = format!("models {names:?} are served");
        eventually(Duration::from_secs(60), what, async || {
            let (_, body) = self.get("/models").await;
            let listed: Vec<&str> = body["models"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|m| m["workers"].as_u64().unwrap_or(0) > 0)
                        .filter_map(|m| m["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            if names.iter().all(|n| listed.contains(n)) {
                Ok(())
            } else {
                Err(body)
            }
        })
        .await
    }
}

/// Sends `r`: its status, headers and JSON body (`null` when it has none).
pub(crate) async fn send(r: RequestBuilder) -> (u16, HeaderMap, Value) {
    let res = r.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.json().await.unwrap_or(Value::Null))
}
