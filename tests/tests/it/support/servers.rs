//! Local HTTP servers the I/O tests start on 127.0.0.1: an input server for inputs by URL and
//! a webhook receiver that checks every message's Standard Webhooks signature with its own
//! HMAC (not the worker's code) and fails the first attempts on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::eventually;

/// Serves `router` on a free port of 127.0.0.1; returns `http://127.0.0.1:<port>`.
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    base
}

/// The signing secret the webhook tests give the workers.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One message as the receiver got it, its signature already verified.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub id: String,
    pub timestamp: u64,
    pub body: Value,
    /// What the receiver answered.
    pub answered: u16,
    /// The sender's address: one per connection.
    pub peer: SocketAddr,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Requests answered 500 before the receiver starts answering 204.
    fail_first: usize,
    seen: Vec<Received>,
    /// Requests whose signature did not verify (there must be none).
    forged: Vec<String>,
}

/// A webhook receiver.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    /// Starts a receiver that answers 500 to its first `fail_first` requests.
    pub(crate) async fn start(fail_first: usize) -> Self {
        let inbox = Arc::new(Mutex::new(Inbox {
            fail_first,
            ..Inbox::default()
        }));
        let router = Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inbox.clone());
        let url = format!("{}/hook", serve(router).await);
        Self { url, inbox }
    }

    /// Every message so far, in arrival order.
    pub(crate) fn seen(&self) -> Vec<Received> {
        let inbox = self.inbox.lock().unwrap();
        assert!(
            inbox.forged.is_empty(),
            "unverified messages: {:?}",
            inbox.forged
        );
        inbox.seen.clone()
    }

    /// Waits until `n` messages arrived, and returns them.
    pub(crate) async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        eventually(timeout, format!("{n} messages arrive"), async || {
            let seen = self.seen();
            if seen.len() >= n {
                Ok(seen)
            } else {
                Err(format!("{} messages: {seen:?}", seen.len()))
            }
        })
        .await
    }
}

/// The Standard Webhooks check, written out: HMAC-SHA256 keyed by the base64-decoded secret
/// over `<id>.<timestamp>.<body>`, compared with every `v1,` signature of the header.
fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(String, u64), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name} header"))
    };
    let (id, timestamp, signatures) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let key = STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    if !signatures.split(' ').any(|s| s == expected) {
        return Err(format!("signature {signatures} is not {expected}"));
    }
    let timestamp: u64 = timestamp.parse().map_err(|_| "timestamp is not a number")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The receiver's replay window, as the specification's libraries apply it.
    if timestamp.abs_diff(now) > 300 {
        return Err(format!("timestamp {timestamp} is not near {now}"));
    }
    Ok((id, timestamp))
}

async fn receive(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut inbox = inbox.lock().unwrap();
    let (id, timestamp) = match verify(&headers, &body) {
        Ok(v) => v,
        Err(e) => {
            inbox.forged.push(e);
            return StatusCode::UNAUTHORIZED;
        }
    };
    let answered = if inbox.seen.len() < inbox.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    inbox.seen.push(Received {
        id,
        timestamp,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: answered.as_u16(),
        peer,
    });
    answered
}
