//! The worker's outbound HTTP: fetching inputs by URL and delivering webhooks, both through
//! the address guard ([`inferq_shared::egress`]). Each request resolves the host once, checks
//! every address it got, and connects to a checked address itself (hyper then speaks HTTP/1.1
//! over that connection), so no second lookup can answer differently (DNS rebinding); IP
//! literals are checked the same way; redirects are followed by hand, each checked again; no
//! proxy is used (a proxy would connect where the guard never looked).

mod conn;
mod pool;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode, header};
use inferq_shared::egress::{Allow, Url, UrlError};
use tokio_rustls::TlsConnector;

use conn::{authority, target};

/// Most redirects one fetch follows.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// Attempts of one fetch when the connection fails or the server answers 5xx.
const FETCH_ATTEMPTS: u32 = 3;

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// The URL, or an address it resolves or redirects to, is refused by the guard.
    #[error("{0}")]
    NotAllowed(String),
    /// Anything else; the message names the cause (status code, size, timeout, connection).
    #[error("{0}")]
    Failed(String),
}

impl From<UrlError> for FetchError {
    fn from(e: UrlError) -> Self {
        match e {
            UrlError::Invalid(m) => Self::Failed(m),
            UrlError::NotAllowed(m) => Self::NotAllowed(m),
        }
    }
}

/// Outbound HTTP settings.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Largest body a fetch reads.
    pub(crate) max_bytes: u64,
    /// Longest one request may take, body included.
    pub(crate) timeout: Duration,
}

/// The guarded client, cheap to clone.
#[derive(Clone)]
pub(crate) struct Egress {
    tls: TlsConnector,
    allow: Arc<Allow>,
    limits: Limits,
    /// Kept-alive connections of webhook deliveries, shared by every clone.
    pool: Arc<pool::Pool>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("allow", &self.allow)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Egress {
    pub(crate) fn new(allow: Allow, limits: Limits) -> anyhow::Result<Self> {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            tracing::warn!(
                "no trusted root certificates found: https inputs and webhooks will fail"
            );
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            allow: Arc::new(allow),
            limits,
            pool: Arc::default(),
        })
    }

    /// The same client, guarding with `allow`: the exceptions the job it serves was submitted
    /// under (the API decides them; see `Queue::with_fetch_allow`).
    pub(crate) fn with_allow(&self, allow: Allow) -> Self {
        Self {
            allow: Arc::new(allow),
            ..self.clone()
        }
    }

    /// Fetches `url` (following up to [`MAX_REDIRECTS`] redirects, each checked), retrying
    /// connection errors and 5xx answers; the body is read as it streams in and refused once
    /// it passes the size limit.
    pub(crate) async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let once = tokio::time::timeout(self.limits.timeout, self.fetch_once(url))
                .await
                .unwrap_or_else(|_| Err(Retryable::No(self.timed_out())));
            match once {
                Err(Retryable::Yes(e)) if attempt < FETCH_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "fetching an input failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(Retryable::Yes(e) | Retryable::No(e)) => return Err(e),
                Ok(body) => return Ok(body),
            }
        }
    }

    async fn fetch_once(&self, url: &str) -> Result<Vec<u8>, Retryable> {
        let mut url = self
            .allow
            .check_url(url)
            .map_err(|e| Retryable::No(e.into()))?;
        let mut redirects = 0;
        let mut response = loop {
            let request = Request::get(target(&url))
                .header(header::HOST, authority(&url))
                .header(header::USER_AGENT, USER_AGENT)
                .body(Full::new(Bytes::new()))
                .map_err(|e| Retryable::No(FetchError::Failed(e.to_string())))?;
            let response = self.send(&url, request).await?;
            if !response.status().is_redirection() {
                break response;
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(Retryable::No(FetchError::Failed(format!(
                    "more than {MAX_REDIRECTS} redirects"
                ))));
            }
            url = self.next_hop(&url, &response).map_err(Retryable::No)?;
        };
        let status = response.status();
        if !status.is_success() {
            let e = FetchError::Failed(format!("the server answered {status}"));
            return Err(if status.is_server_error() {
                Retryable::Yes(e)
            } else {
                Retryable::No(e)
            });
        }
        let max = self.limits.max_bytes;
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(len) = length
            && len > max
        {
            return Err(Retryable::No(too_large(Some(len), max)));
        }
        let mut body = Vec::new();
        let incoming = response.body_mut();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| {
                Retryable::Yes(FetchError::Failed(format!("reading the body: {e}")))
            })?;
            if let Some(chunk) = frame.data_ref() {
                if body.len() as u64 + chunk.len() as u64 > max {
                    return Err(Retryable::No(too_large(None, max)));
                }
                body.extend_from_slice(chunk);
            }
        }
        Ok(body)
    }

    /// Where a redirect leads, checked like the first URL.
    fn next_hop(&self, from: &Url, response: &Response<Incoming>) -> Result<Url, FetchError> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                FetchError::Failed(format!(
                    "the server answered {} without a Location",
                    response.status()
                ))
            })?;
        let next = from
            .join(location)
            .map_err(|e| FetchError::Failed(format!("a redirect to an invalid URL: {e}")))?;
        Ok(self.allow.check_url(next.as_str())?)
    }

    fn timed_out(&self) -> FetchError {
        FetchError::Failed(format!(
            "no complete answer within {} s (INFERQ_FETCH_TIMEOUT_SECS)",
            self.limits.timeout.as_secs_f64()
        ))
    }

    /// POSTs a webhook message (no redirects: a 3xx is an answer, and not a 2xx) and returns
    /// the status, within `timeout`; over a kept-alive connection to the host when one is idle.
    pub(crate) async fn post(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<StatusCode, FetchError> {
        let url = self.allow.check_url(url)?;
        let body = Bytes::from(body);
        let make = || {
            let mut request = Request::post(target(&url))
                .header(header::HOST, authority(&url))
                .header(header::USER_AGENT, USER_AGENT)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| Retryable::No(FetchError::Failed(e.to_string())))?;
            request.headers_mut().extend(headers.clone());
            Ok(request)
        };
        match tokio::time::timeout(timeout, self.send_kept(&url, make)).await {
            Err(_) => Err(FetchError::Failed(format!(
                "no answer within {} s",
                timeout.as_secs_f64()
            ))),
            Ok(Err(Retryable::Yes(e) | Retryable::No(e))) => Err(e),
            Ok(Ok(status)) => Ok(status),
        }
    }
}

const USER_AGENT: &str = concat!("inferq-worker/", env!("CARGO_PKG_VERSION"));

/// A failed fetch attempt, and whether another attempt may succeed.
enum Retryable {
    Yes(FetchError),
    No(FetchError),
}

fn too_large(len: Option<u64>, max: u64) -> FetchError {
    FetchError::Failed(match len {
        Some(len) => format!(
            "the response is {len} bytes, larger than the limit of {max} bytes (INFERQ_FETCH_MAX_BYTES)"
        ),
        None => {
            format!("the response is larger than the limit of {max} bytes (INFERQ_FETCH_MAX_BYTES)")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(allow: &str) -> Egress {
        Egress::new(
            allow.parse().unwrap(),
            Limits {
                max_bytes: 1024,
                timeout: Duration::from_secs(5),
            },
        )
        .unwrap()
    }

    /// The name rules of the submission check would refuse `localhost` before any lookup;
    /// this is the lookup's own check, which catches any name that resolves inside.
    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_refused_before_connecting() {
        let refused = egress("").resolve("localhost", 80).await;
        assert!(
            matches!(refused, Err(Retryable::No(FetchError::NotAllowed(ref m))) if m.contains("localhost")),
            "the lookup's answer is checked"
        );
        let allowed = egress("localhost").resolve("localhost", 80).await;
        let Ok(addrs) = allowed else {
            panic!("an allowed name resolves")
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        // A literal is checked the same way, without a lookup.
        assert!(matches!(
            egress("").resolve("[::1]", 80).await,
            Err(Retryable::No(FetchError::NotAllowed(_)))
        ));
        assert!(egress("::1").resolve("[::1]", 80).await.is_ok());
    }

    #[tokio::test]
    async fn a_refused_url_is_never_fetched() {
        assert!(matches!(
            egress("").fetch("http://127.0.0.1:9/x").await,
            Err(FetchError::NotAllowed(_))
        ));
        assert!(matches!(
            egress("")
                .post(
                    "http://10.0.0.1/h",
                    HeaderMap::new(),
                    Vec::new(),
                    Duration::from_secs(1)
                )
                .await,
            Err(FetchError::NotAllowed(_))
        ));
    }
}
