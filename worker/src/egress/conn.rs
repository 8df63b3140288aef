//! One HTTP/1.1 exchange on a connection of its own, to an address the guard checked: the
//! host is resolved once, every address it resolves to is checked, and the connection goes to
//! one of those addresses (through TLS for https), so no later lookup can send it elsewhere.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use inferq_shared::egress::{Url, refused_host};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

use super::{Egress, FetchError, Retryable};

impl Egress {
    /// Sends one request to `url`'s host over a new connection: the host's addresses are
    /// resolved and every one is checked before any is connected to.
    pub(super) async fn send(
        &self,
        url: &Url,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Retryable> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs = self.resolve(host, port).await?;
        let tcp = connect(&addrs).await?;
        if url.scheme() == "https" {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| Retryable::No(FetchError::Failed(format!("TLS name: {e}"))))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| {
                Retryable::Yes(FetchError::Failed(format!("TLS handshake failed: {e}")))
            })?;
            exchange(tls, request).await
        } else {
            exchange(tcp, request).await
        }
    }

    /// The addresses of `host`, each permitted by the guard; a host with any refused address
    /// is refused (a name that resolves to one public and one internal address must not get a
    /// chance at the second).
    pub(super) async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Retryable> {
        let literal = host.trim_matches(['[', ']']);
        let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| {
                    Retryable::Yes(FetchError::Failed(format!("could not resolve {host}: {e}")))
                })?
                .collect(),
        };
        if let Some(bad) = addrs.iter().find(|a| !self.allow.permits(host, a.ip())) {
            return Err(Retryable::No(
                refused_host(&format!("{host} ({})", bad.ip())).into(),
            ));
        }
        if addrs.is_empty() {
            return Err(Retryable::Yes(FetchError::Failed(format!(
                "{host} has no address"
            ))));
        }
        Ok(addrs)
    }
}

/// The request target: path and query (origin form).
pub(super) fn target(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The `Host` header: the host, and the port when it is not the scheme's.
pub(super) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// Connects to the first of `addrs` that answers.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, Retryable> {
    let mut last = None;
    for a in addrs {
        match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some("connecting timed out".into()),
        }
    }
    Err(Retryable::Yes(FetchError::Failed(format!(
        "could not connect: {}",
        last.unwrap_or_default()
    ))))
}

/// One HTTP/1.1 exchange over `stream`; the connection closes once the response is read.
async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, Retryable>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Retryable::Yes(FetchError::Failed(format!("the request failed: {e}"))))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| Retryable::Yes(FetchError::Failed(format!("the request failed: {e}"))))
}
