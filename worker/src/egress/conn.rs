//! HTTP/1.1 exchanges with an address the guard checked: for every request the host is
//! resolved once, every address it resolves to is checked, and the request goes over a
//! connection to one of those addresses (through TLS for https), so no later lookup can send it
//! elsewhere. A fetch opens a connection of its own; a webhook message may go over a kept-alive
//! connection to one of the addresses just checked ([`super::pool`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use inferq_shared::egress::{Url, refused_host};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

use super::pool::{Key, Open};
use super::{Egress, FetchError, Retryable};

impl Egress {
    /// Sends one request to `url`'s host over a new connection: the host's addresses are
    /// resolved and every one is checked before any is connected to.
    pub(super) async fn send(
        &self,
        url: &Url,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Retryable> {
        let addrs = self.resolve(url_host(url), url_port(url)).await?;
        let mut open = self.open(url, &addrs).await?;
        open.sender.send_request(request).await.map_err(failed)
    }

    /// Sends the request `make` builds to `url`'s host over a kept-alive connection when one
    /// is idle ([`super::pool`]), else over a new one, and answers with its status as soon as
    /// the answer's head came. A kept connection that fails before an answer (the server closed
    /// it while it was idle) is replaced by a new one for a second try: the receiver may get
    /// the message twice, which at-least-once delivery allows.
    pub(super) async fn send_kept(
        &self,
        url: &Url,
        make: impl Fn() -> Result<Request<Full<Bytes>>, Retryable>,
    ) -> Result<StatusCode, Retryable> {
        let addrs = self.resolve(url_host(url), url_port(url)).await?;
        let key = Key {
            https: url.scheme() == "https",
            host: url_host(url).to_owned(),
            port: url_port(url),
        };
        if let Some(mut open) = self.pool.take(&key, &addrs)
            && open.sender.ready().await.is_ok()
            && let Ok(response) = open.sender.send_request(make()?).await
        {
            return Ok(self.finish(key, open, response));
        }
        let mut open = self.open(url, &addrs).await?;
        let response = open.sender.send_request(make()?).await.map_err(failed)?;
        Ok(self.finish(key, open, response))
    }

    /// The answer's status, at once; its body is read in a task of its own, which returns the
    /// connection to the pool once all of it came (within [`DRAIN`], at most [`MAX_ANSWER`]).
    fn finish(&self, key: Key, open: Open, response: Response<Incoming>) -> StatusCode {
        let status = response.status();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Ok(true) = tokio::time::timeout(DRAIN, drained(response.into_body())).await {
                pool.put(key, open);
            }
        });
        status
    }

    /// A new connection to the first of `addrs` that answers (through TLS for `https`).
    async fn open(&self, url: &Url, addrs: &[SocketAddr]) -> Result<Open, Retryable> {
        let tcp = connect(addrs).await?;
        let peer = tcp.peer_addr().map_err(|e| {
            Retryable::Yes(FetchError::Failed(format!("the connection failed: {e}")))
        })?;
        let sender = if url.scheme() == "https" {
            let host = url_host(url).trim_matches(['[', ']']).to_owned();
            let name = ServerName::try_from(host)
                .map_err(|e| Retryable::No(FetchError::Failed(format!("TLS name: {e}"))))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| {
                Retryable::Yes(FetchError::Failed(format!("TLS handshake failed: {e}")))
            })?;
            handshake(tls).await?
        } else {
            handshake(tcp).await?
        };
        Ok(Open { sender, peer })
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

/// Most bytes of a webhook receiver's answer read before its connection is given up instead
/// of kept (the answer's body is not used).
const MAX_ANSWER: usize = 64 * 1024;

/// Longest the rest of an answer is waited for before its connection is given up.
const DRAIN: Duration = Duration::from_secs(5);

/// Reads `body` to its end: true when all of it came, within [`MAX_ANSWER`] bytes.
async fn drained(mut body: Incoming) -> bool {
    let mut read = 0usize;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            Some(Err(_)) => return false,
            None => return true,
        }
        if read > MAX_ANSWER {
            return false;
        }
    }
}

fn url_host(url: &Url) -> &str {
    url.host_str().unwrap_or_default()
}

fn url_port(url: &Url) -> u16 {
    url.port_or_known_default().unwrap_or(80)
}

fn failed(e: hyper::Error) -> Retryable {
    Retryable::Yes(FetchError::Failed(format!("the request failed: {e}")))
}

/// HTTP/1.1 over `stream`: the connection runs in a task of its own until the last sender is
/// dropped (after the answer to its last request is read) or the server closes it.
async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, Retryable>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
