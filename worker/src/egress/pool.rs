//! Kept-alive connections for webhook deliveries: a receiver that takes many messages gets them
//! over a few open connections instead of a new TCP connection (and, for `https`, a new TLS
//! handshake) each. A connection serves again only the scheme, host and port it was opened
//! for, and only when its address is among those the guard has just permitted for the request
//! at hand (the host is resolved and checked for every request, as without the pool), so
//! keeping a connection never lets a request reach an address its own check would refuse.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;

/// Longest a connection waits idle for its next request: under the 5 s keep-alive timeout of
/// common servers (Node.js's default), so a receiver seldom closes one as it is taken again.
const IDLE: Duration = Duration::from_secs(4);

/// Most idle connections kept per host (a deliverer sends up to 32 messages at once).
const PER_HOST: usize = 32;

/// Hosts with idle connections past which the expired ones are swept out on every return.
const SWEEP_AT: usize = 256;

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) https: bool,
    pub(super) host: String,
    pub(super) port: u16,
}

/// An open connection: what sends on it, and the address it is connected to.
pub(super) struct Open {
    pub(super) sender: SendRequest<Full<Bytes>>,
    pub(super) peer: SocketAddr,
}

impl Open {
    /// Not closed: whether it can take a request yet is for the taker to wait for (`ready`),
    /// since a connection whose last answer was just read becomes ready only once its task
    /// has run.
    fn usable(&self) -> bool {
        !self.sender.is_closed()
    }
}

struct Idle {
    open: Open,
    since: Instant,
}

/// The idle connections of one worker, by where they go.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl Pool {
    /// The most recently returned idle connection for `key` to one of `permitted`; the expired
    /// and closed ones it passes are dropped.
    pub(super) fn take(&self, key: &Key, permitted: &[SocketAddr]) -> Option<Open> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        list.retain(|c| c.since.elapsed() < IDLE && c.open.usable());
        let i = list
            .iter()
            .rposition(|c| permitted.contains(&c.open.peer))?;
        Some(list.remove(i).open)
    }

    /// Keeps `open` for the next request to `key`, if it can take one.
    pub(super) fn put(&self, key: Key, open: Open) {
        if !open.usable() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= SWEEP_AT {
            idle.retain(|_, list| {
                list.retain(|c| c.since.elapsed() < IDLE);
                !list.is_empty()
            });
        }
        let list = idle.entry(key).or_default();
        if list.len() < PER_HOST {
            list.push(Idle {
                open,
                since: Instant::now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn open_to(listener: &TcpListener) -> Open {
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let peer = tcp.peer_addr().unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        Open { sender, peer }
    }

    #[tokio::test]
    async fn a_kept_connection_serves_only_its_own_host_and_an_address_just_permitted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let key = Key {
            https: false,
            host: "hooks.example".into(),
            port: 80,
        };
        let open = open_to(&listener).await;
        let peer = open.peer;
        pool.put(key.clone(), open);
        let elsewhere = SocketAddr::from(([127, 0, 0, 2], peer.port()));
        assert!(
            pool.take(&key, &[elsewhere]).is_none(),
            "the request's own check did not permit the kept connection's address"
        );
        let https = Key {
            https: true,
            ..key.clone()
        };
        let other_host = Key {
            host: "other.example".into(),
            ..key.clone()
        };
        assert!(pool.take(&https, &[peer]).is_none());
        assert!(pool.take(&other_host, &[peer]).is_none());
        assert_eq!(
            pool.take(&key, &[elsewhere, peer]).map(|o| o.peer),
            Some(peer)
        );
        assert!(pool.take(&key, &[peer]).is_none(), "taken once");
    }
}
