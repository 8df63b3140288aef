//! Spans join the caller's trace and are exported over OTLP/HTTP to a local collector.

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

use super::{TRACE_A, submit_json, trace_id};
use crate::support::{ApiProcess, eventually, linear_job, spawn_app, test_models};

/// An OTLP/HTTP collector on 127.0.0.1 that records every `POST /v1/traces` body (plain
/// threads: one accepting, one per connection).
struct Collector {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

impl Collector {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || serve(conn, &seen));
            }
        });
        Self {
            addr,
            requests,
            stop,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far: (service name, span name, trace id, span id, parent id),
    /// ids in hex.
    fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        for req in self.requests.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()?.value.as_ref())
                    .map(|v| match v {
                        any_value::Value::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                    out.push(Span {
                        service: service.clone(),
                        name: s.name.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_id: hex(&s.parent_span_id),
                    });
                }
            }
        }
        out
    }

    /// Waits until a span matches `want`.
    async fn wait_for(&self, what: &str, want: impl Fn(&Span) -> bool) -> Span {
        let awaited = format!("a {what} span is exported");
        eventually(Duration::from_secs(20), awaited, async || {
            let spans = self.spans();
            match spans.iter().find(|s| want(s)) {
                Some(s) => Ok(s.clone()),
                None => Err(format!("{spans:#?}")),
            }
        })
        .await
    }
}

/// Answers one request after another on a kept-alive connection.
fn serve(conn: std::net::TcpStream, seen: &Mutex<Vec<ExportTraceServiceRequest>>) {
    let mut writer = conn.try_clone().unwrap();
    let mut conn = std::io::BufReader::new(conn);
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let traces = line.starts_with("POST /v1/traces ");
        let mut length = 0;
        loop {
            let mut h = String::new();
            if conn.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        if conn.read_exact(&mut body).is_err() {
            return;
        }
        let status = if traces {
            let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            seen.lock().unwrap().push(request);
            "200 OK"
        } else {
            "404 Not Found"
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_join_the_callers_trace_and_are_exported_over_otlp() {
    let app = spawn_app().await;
    let collector = Collector::start();
    let endpoint = collector.endpoint();
    // The API exports as it goes; the worker only when it stops, which proves the flush. The
    // API as a process: the in-process API of `App` has no telemetry of its own.
    let mut api = ApiProcess::start(
        &app,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let mut worker = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "linear"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_SERVICE_NAME", "inferq-worker-test"),
        ],
    );
    app.wait_models(&["linear"]).await;
    let id = submit_json(
        &app,
        &api.base,
        &linear_job(&[[1.0, 2.0, 3.0, 4.0]]),
        &[TRACE_A],
    )
    .await;
    let record = app.wait_done(&id, Duration::from_secs(20)).await;
    assert_eq!(record["status"], "succeeded", "{record}");

    let (trace, caller) = (trace_id(TRACE_A), &TRACE_A[36..52]);
    let request = collector
        .wait_for("API request", |s| {
            s.name == "request" && s.trace_id == trace
        })
        .await;
    assert_eq!(request.service, "inferq-api");
    assert_eq!(
        request.parent_id, caller,
        "the request span is the caller's child"
    );
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(0));
    let job = collector
        .wait_for("worker job", |s| s.name == "job" && s.trace_id == trace)
        .await;
    assert_eq!(
        job.service, "inferq-worker-test",
        "OTEL_SERVICE_NAME is respected"
    );
    assert_eq!(
        job.parent_id, request.span_id,
        "the job span is a child of the API's request span"
    );
    let inference = collector
        .wait_for("inference", |s| {
            s.name == "inference" && s.trace_id == trace
        })
        .await;
    assert_eq!(inference.parent_id, job.span_id);
    api.terminate();
}
