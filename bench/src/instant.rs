//! The load generator's own ceiling: an HTTP server that answers the job API at once, without
//! Redis, queues or inference, run as a child process (so it takes its share of the cores as
//! the API would). The same load against it shows how many jobs per second the load generator
//! itself can drive on this machine: what bounds every end-to-end figure of the same run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// A finished record as `GET /status` renders one of the small benchmark model (10 outputs),
/// so the load generator parses what it parses against the real API.
const RECORD: &str = concat!(
    r#"{"id":"00000000-0000-4000-8000-000000000000","model":"mlp_small","status":"succeeded","#,
    r#""created_at":"2026-12-06T00:00:00.000Z","started_at":"2026-12-06T00:00:00.001Z","#,
    r#""finished_at":"2026-12-06T00:00:00.002Z","attempts":1,"result":{"outputs":[{"name":"#,
    r#""output","datatype":"FP32","shape":[1,10],"data":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,"#,
    r#"1.0]}]},"error":null}"#
);

/// Serves the instant job API on `addr` until killed (`inferq-bench --instant-server ADDR`).
pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let ids = std::sync::Arc::new(AtomicU64::new(0));
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let ids = ids.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, ids.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(
    req: Request<Incoming>,
    ids: std::sync::Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    use http_body_util::BodyExt;
    let waits = req.uri().query().is_some_and(|q| q.contains("wait="));
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    // The body is read as the API reads it, then dropped.
    let _ = req.into_body().collect().await;
    let (code, body) = match (method, path.as_str()) {
        (Method::POST, "/jobs") if waits => (StatusCode::OK, Bytes::from_static(RECORD.as_bytes())),
        (Method::POST, "/jobs") => {
            let n = ids.fetch_add(1, Ordering::Relaxed);
            let body = format!(r#"{{"id":"00000000-0000-4000-8000-{n:012x}","status":"queued"}}"#);
            (StatusCode::ACCEPTED, Bytes::from(body))
        }
        // A webhook delivery (`--feature webhook`): accepted.
        (Method::POST, "/hook") => (StatusCode::NO_CONTENT, Bytes::new()),
        (Method::GET, p) if p.starts_with("/status/") => {
            (StatusCode::OK, Bytes::from_static(RECORD.as_bytes()))
        }
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"{}")),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The instant server, running as a child process; killed and reaped on drop.
pub(crate) struct InstantServer {
    child: Child,
    pub(crate) url: String,
}

impl InstantServer {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(std::env::current_exe()?)
            .arg("--instant-server")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the instant server")?;
        let server = Self {
            child,
            url: format!("http://{addr}"),
        };
        let since = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            anyhow::ensure!(
                since.elapsed() < Duration::from_secs(10),
                "the instant server did not listen on {addr} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for InstantServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
