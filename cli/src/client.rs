//! The HTTP side: one `reqwest` client with the base URL and the API key, and the mapping of
//! every kind of answer onto [`CliError`].

use std::time::Duration;

use inferq_shared::JobId;
use inferq_shared::model::ModelInfo;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::args::{ApiKey, Global};
use crate::error::CliError;

/// Longest wait for a TCP connection: an unreachable server should fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for an answer to an ordinary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A model as `GET /models` lists it.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelStatus {
    #[serde(flatten)]
    pub(crate) info: ModelInfo,
    /// Live workers serving it; 0 means its jobs wait for a worker; absent from servers older
    /// than the field (shown as unknown).
    #[serde(default)]
    pub(crate) workers: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ModelsReply {
    models: Vec<ModelStatus>,
}

#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// Without a trailing slash; request paths start with one.
    base: String,
    api_key: Option<ApiKey>,
}

impl Client {
    pub(crate) fn new(global: &Global) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("inferq-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: global.url.clone(),
            // An empty INFERQ_API_KEY means "no key", as unset would.
            api_key: global.api_key.clone().filter(|k| !k.expose().is_empty()),
        })
    }

    /// `GET /status/<id>`, long-polling up to `wait` for the job to end when given.
    pub(crate) async fn status(
        &self,
        id: JobId,
        wait: Option<Duration>,
    ) -> Result<String, CliError> {
        let (path, timeout) = match wait {
            Some(w) => (
                format!("/status/{id}?wait={}", w.as_secs_f64()),
                w + REQUEST_TIMEOUT,
            ),
            None => (format!("/status/{id}"), REQUEST_TIMEOUT),
        };
        self.send(self.request(Method::GET, &path).timeout(timeout))
            .await
    }

    /// `GET /jobs/<id>/events`: the open event stream, or `None` when the answer is not one.
    /// No overall timeout: the stream lasts as long as the job.
    pub(crate) async fn events(&self, id: JobId) -> Result<Option<reqwest::Response>, CliError> {
        let url = format!("{}/jobs/{id}/events", self.base);
        let mut req = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
        let res = req.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            cause: cause_chain(&e),
        })?;
        let status = res.status();
        let is_stream = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        // Any other answer (no such route on an older server, 401, 404 job_not_found, 503, …)
        // is met and reported by the long-poll that takes over, as before event streams.
        Ok((status.is_success() && is_stream).then_some(res))
    }

    pub(crate) async fn submit(&self, body: Vec<u8>) -> Result<String, CliError> {
        self.post_json("/jobs", body).await
    }

    /// `POST` of a JSON body; returns the raw 2xx body.
    pub(crate) async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<String, CliError> {
        let req = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(req).await
    }

    pub(crate) async fn cancel(&self, id: JobId) -> Result<String, CliError> {
        self.send(self.request(Method::DELETE, &format!("/jobs/{id}")))
            .await
    }

    /// `GET /models`: the raw body and the models it lists.
    pub(crate) async fn models(&self) -> Result<(String, Vec<ModelStatus>), CliError> {
        let raw = self.send(self.request(Method::GET, "/models")).await?;
        let reply: ModelsReply = parse(&raw)?;
        Ok((raw, reply.models))
    }

    /// Any other call: `method` on `path`, without a body; returns the raw 2xx body.
    pub(crate) async fn call(&self, method: Method, path: &str) -> Result<String, CliError> {
        self.send(self.request(method, path)).await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(REQUEST_TIMEOUT);
        match &self.api_key {
            Some(key) => req.bearer_auth(key.expose()),
            None => req,
        }
    }

    /// Sends a request and returns the body of a 2xx answer; anything else becomes the error
    /// that decides the exit status.
    async fn send(&self, req: RequestBuilder) -> Result<String, CliError> {
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: self.base.clone(),
            cause: cause_chain(&e),
        };
        let res = req.send().await.map_err(unreachable)?;
        let status = res.status();
        let body = res.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(body);
        }
        let (code, message) = error_body(status, &body);
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(CliError::Unauthorized {
                status: status.as_u16(),
                message,
                hint: if self.api_key.is_none() {
                    " (no API key was sent: set INFERQ_API_KEY)"
                } else {
                    ""
                },
            });
        }
        Err(CliError::Server {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// Parses a 2xx body as what the API documents for it.
pub(crate) fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, CliError> {
    serde_json::from_str(raw).map_err(|e| {
        let shown: String = raw.chars().take(200).collect();
        CliError::Protocol(format!("{e}: {shown}"))
    })
}

/// The `{"error": {"code", "message"}}` of an error answer; a body of another shape (a proxy's
/// HTML page) is reported by its status line.
fn error_body(status: StatusCode, body: &str) -> (String, String) {
    #[derive(Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(Envelope { error }) => (error.code, error.message),
        Err(_) => (
            format!("http_{}", status.as_u16()),
            format!("HTTP {status}"),
        ),
    }
}

/// reqwest's top-level message ("error sending request") hides the useful part ("connection
/// refused") in its sources.
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Percent-encodes everything but unreserved characters, for a path segment or query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_the_servers_message_or_the_status_line() {
        let (code, message) = error_body(
            StatusCode::CONFLICT,
            r#"{"error":{"code":"job_finished","message":"job is already succeeded"}}"#,
        );
        assert_eq!(code, "job_finished");
        assert_eq!(message, "job is already succeeded");
        let (code, message) = error_body(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>");
        assert_eq!(code, "http_502");
        assert_eq!(message, "HTTP 502 Bad Gateway");
    }
}
