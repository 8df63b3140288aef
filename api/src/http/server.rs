//! The API's accept loop, in place of `axum::serve`, for what that does not bound: how many
//! connections are open at once (beyond the limit a connection gets `503` with `Retry-After`
//! and is closed, so load never piles up unbounded), how long a client may take to send its
//! request head (hyper's header read timeout, also closing idle keep-alive connections), and
//! how large that head may be. Body and whole-request timeouts are tower layers (`limits.rs`).
//! Graceful shutdown as `axum::serve` does it: stop accepting, let each connection finish its
//! request in flight, then return.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Most connections refused at once: refusing costs a task for up to [`REFUSAL_TIME`]; past
/// this many, further connections are closed without an answer.
const MAX_REFUSING: usize = 256;

/// Longest spent answering a refused connection.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// What the accept loop bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
    /// hyper's read buffer: a request head (line and headers) larger than this is refused
    /// with a bare `431`.
    pub(crate) max_head_bytes: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    // Dropping `signal_rx` tells every connection to finish; each connection task holds a
    // `close_rx`, so `close_tx.closed()` completes when the last one is done.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = signal_tx.closed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait for connections to close.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Ok(p) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REFUSAL_TIME, refuse(stream)).await;
                    drop(p);
                });
            }
            crate::metrics::connection_refused();
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_head_bytes.max(8192));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let signal = signal_tx.closed();
            tokio::pin!(signal);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    // Once: a finished `closed()` must not be polled again.
                    () = &mut signal, if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(permit);
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// Answers a connection over the limit with `503` and `Retry-After`, then closes it. What the
/// client sent is read and dropped first, so the close does not reset the connection before
/// the client reads the answer.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": "the server is at its connection limit; retry later",
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut buf = [0u8; 4096];
    // The request head, if it comes at once.
    let _ = tokio::time::timeout(Duration::from_millis(100), read_some(&stream, &mut buf)).await;
    let mut rest = answer.as_bytes();
    while !rest.is_empty() {
        if stream.writable().await.is_err() {
            return;
        }
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    let _ = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_shutdown(cx)).await;
    while read_some(&stream, &mut buf).await > 0 {}
}

/// Reads what is there (waiting for something); 0 at the end or on an error.
async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> usize {
    loop {
        if stream.readable().await.is_err() {
            return 0;
        }
        match stream.try_read(buf) {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return 0,
        }
    }
}
