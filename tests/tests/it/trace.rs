//! W3C `traceparent` on submission: carried with the job through the queue (reclaims,
//! hand-backs, dead letters and their retries, scheduling), into the worker's job span and log lines;
//! spans exported over OTLP to a collector the test runs, by the real API and worker binaries.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferq_shared::config::RedisConfig;
use inferq_shared::job::{JobId, Priority};
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::{Entry, NewJob, Queue, Retention, Retried, Submitted};
use inferq_shared::time::now_ms;
use inferq_shared::trace::TraceParent;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::{App, linear_job, spawn_app, test_models, worker_binary};

const TRACE_A: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_B: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_C: &str = "00-9f3a1c2b4d5e6f708192a3b4c5d6e7f8-1122334455667788-01";
const TRACE_D: &str = "00-d1d2d3d4d5d6d7d8d9dadbdcdddedfe0-a1a2a3a4a5a6a7a8-01";

fn trace_id(header: &str) -> &str {
    &header[3..35]
}

fn linear_rows() -> Vec<f32> {
    vec![1.0, 2.0, 3.0, 4.0]
}

/// Submits `body` to `POST /jobs` with the given `traceparent` values; returns the job id.
async fn submit_json(app: &App, base: &str, body: &Value, traceparents: &[&str]) -> String {
    let mut req = app.http.post(format!("{base}/jobs")).json(body);
    for tp in traceparents {
        req = req.header("traceparent", *tp);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// The JSON log lines of a worker that are inside the span of job `id`.
fn job_lines(log: &str, id: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["job_id"] == id)
        .collect()
}

#[tokio::test]
async fn a_traceparent_reaches_the_workers_log_lines_and_an_invalid_one_is_ignored() {
    let app = spawn_app().await;
    let worker = app.worker(
        &test_models(),
        &[
            ("INFERQ_MODELS", "linear"),
            ("INFERQ_LOG_JSON", "true"),
            ("RUST_LOG", "warn,inferq_worker=debug"),
        ],
    );
    app.wait_models(&["linear"]).await;
    let x = linear_rows();
    let job = json!({"model": "linear", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]});

    // The submission paths: JSON, binary-framed, a batch, and the OIP infer route.
    let json_id = submit_json(&app, &app.base, &job, &[TRACE_A]).await;
    let head = json!({"model": "linear", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]});
    let mut body = serde_json::to_vec(&head).unwrap();
    let n = body.len();
    body.extend(x.iter().flat_map(|f| f.to_le_bytes()));
    let r = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("content-type", "application/octet-stream")
        .header("Inference-Header-Content-Length", n)
        .header("traceparent", TRACE_B)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let binary_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .http
        .post(format!("{}/jobs/batch", app.base))
        .header("traceparent", TRACE_D)
        .json(&json!({"jobs": [job, job]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let batch: Vec<String> = r.json::<Value>().await.unwrap()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(batch.len(), 2);
    let oip = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]});
    let r = app
        .http
        .post(format!("{}/v2/models/linear/infer", app.base))
        .header("traceparent", TRACE_C)
        .json(&oip)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Invalid headers (and two at once) are ignored, never an error, and the job still runs.
    let invalid = [
        vec!["00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"],
        vec!["00-00000000000000000000000000000000-b7ad6b7169203331-01"],
        vec!["00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"],
        vec!["ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
        vec!["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"],
        vec!["not a traceparent"],
        vec![TRACE_A, TRACE_B],
    ];
    let mut ignored = Vec::new();
    for tps in &invalid {
        ignored.push(submit_json(&app, &app.base, &job, tps).await);
    }
    for id in [&json_id, &binary_id]
        .into_iter()
        .chain(&batch)
        .chain(&ignored)
    {
        let record = app.wait_done(id, Duration::from_secs(20)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }

    let log = worker.log_text();
    let traced = [(&json_id, TRACE_A), (&binary_id, TRACE_B)];
    for (id, tp) in traced
        .into_iter()
        .chain(batch.iter().map(|id| (id, TRACE_D)))
    {
        let lines = job_lines(&log, id);
        assert!(!lines.is_empty(), "no log line for job {id}:\n{log}");
        for l in lines {
            assert_eq!(l["span"]["trace_id"], trace_id(tp), "{l}");
        }
    }
    // The OIP job's id is not in the answer: find it by its trace.
    let oip_lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["trace_id"] == trace_id(TRACE_C))
        .collect();
    assert!(!oip_lines.is_empty(), "no log line of the OIP job:\n{log}");
    assert!(oip_lines.iter().all(|l| l["span"]["name"] == "job"));
    for id in &ignored {
        let lines = job_lines(&log, id);
        assert!(!lines.is_empty(), "no log line for job {id}:\n{log}");
        for l in lines {
            assert!(l["span"].get("trace_id").is_none(), "{l}");
        }
    }
}

#[tokio::test]
async fn a_traceparent_stays_with_its_job_through_reclaims_hand_backs_and_dead_letters() {
    let app = spawn_app().await;
    // The queue driven directly, as a worker would, with no worker process.
    let queue = Queue::connect(
        &RedisConfig::new(&app.redis.url(), &app.namespace),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let info = ModelInfo {
        name: "m".into(),
        description: None,
        inputs: Vec::new(),
        outputs: Vec::new(),
        batching: false,
        max_batch_size: 1,
        sha256: None,
    };
    queue.announce_models("w0", &[info]).await.unwrap();
    queue.ensure_group("m").await.unwrap();
    let tp = TraceParent::parse(TRACE_A).unwrap();
    let id = JobId::new();
    queue
        .submit(id, "m", b"{}", 0, None, Some(&tp), "default")
        .await
        .unwrap();
    let one = |entries: Vec<Entry>| match entries.as_slice() {
        [Entry::Job(d)] => d.clone(),
        other => panic!("{other:?}"),
    };
    let retention = Retention {
        result_ttl: Duration::from_secs(60),
    };

    let d = one(queue.read("w1", "m", 10, None).await.unwrap());
    assert_eq!(d.trace, Some(tp));
    assert_eq!(
        queue
            .start("m", "w1", std::slice::from_ref(&d), 2, retention)
            .await
            .unwrap(),
        [1]
    );
    // Taken over after its lease lapsed: same entry, same trace.
    tokio::time::sleep(Duration::from_millis(80)).await;
    let d = one(queue
        .reclaim("w2", "m", Duration::from_millis(50), 10)
        .await
        .unwrap());
    assert_eq!(d.trace, Some(tp));
    assert_eq!(
        queue
            .start("m", "w2", std::slice::from_ref(&d), 2, retention)
            .await
            .unwrap(),
        [2]
    );
    // Handed back by a stopping worker: a fresh entry, same trace.
    assert_eq!(
        queue
            .release("m", &[(id, d.entry.clone(), 2)])
            .await
            .unwrap(),
        1
    );
    let d = one(queue.read("w3", "m", 10, None).await.unwrap());
    assert_eq!(d.trace, Some(tp));
    // Out of attempts: its dead letter keeps the trace too.
    assert_eq!(
        queue.start("m", "w3", &[d], 2, retention).await.unwrap(),
        [0]
    );
    let mut conn = app.redis.conn().await;
    let mut dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(queue.keys().dead_letter())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fields: HashMap<String, String> = dead
        .ids
        .swap_remove(0)
        .map
        .into_iter()
        .map(|(k, v)| (k, redis::from_redis_value(v).unwrap()))
        .collect();
    assert_eq!(fields["traceparent"], TRACE_A, "{fields:?}");
    assert_eq!(fields["id"], id.to_string());
    // Retried from the dead letters by an operator: the new attempts join the same trace.
    assert_eq!(
        queue.retry_dead(&id.to_string()).await.unwrap(),
        Retried::Queued(id)
    );
    let d = one(queue.read("w4", "m", 10, None).await.unwrap());
    assert_eq!(d.trace, Some(tp));

    // A scheduled job keeps it in its record until it is due, then in its entry.
    let later = JobId::new();
    let job = NewJob {
        id: later,
        model: "m",
        payload: b"{}",
        deadline_ms: None,
        result_ttl_secs: None,
        idempotency: None,
        cache: None,
        due_ms: Some(now_ms() + 100),
        trace: Some(tp),
        tenant: "default",
        priority: Priority::DEFAULT,
        tenant_max_queued: 0,
        webhook: None,
    };
    let submitted = queue
        .submit_many(&[job], 0, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(submitted, [Submitted::Scheduled]);
    assert_eq!(
        app.job_field(&later.to_string(), "traceparent")
            .await
            .as_deref(),
        Some(TRACE_A)
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(queue.promote_due(10).await.unwrap(), 1);
    assert_eq!(app.job_field(&later.to_string(), "traceparent").await, None);
    let d = one(queue.read("w5", "m", 10, None).await.unwrap());
    assert_eq!((d.job, d.trace), (later, Some(tp)));
}

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
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.spans().into_iter().find(&want) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} span exported; got {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// The API binary as a process (the in-process API of [`App`] has no telemetry of its own),
/// killed on drop.
struct ApiProcess {
    child: Child,
    base: String,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiProcess {
    async fn start(app: &App, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(worker_binary().with_file_name("inferq-api"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("INFERQ_REDIS_URL", app.redis.url())
            .env("INFERQ_NAMESPACE", &app.namespace)
            .env("INFERQ_BIND", format!("127.0.0.1:{port}"))
            // Keys are not what this test is about.
            .env("INFERQ_AUTH", "disabled")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let api = Self {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while app
            .http
            .get(format!("{}/healthz", api.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "inferq-api did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api
    }

    fn terminate(&mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "inferq-api exited with {status}");
    }
}

#[tokio::test]
async fn spans_join_the_callers_trace_and_are_exported_over_otlp() {
    let app = spawn_app().await;
    let collector = Collector::start();
    let endpoint = collector.endpoint();
    // The API exports as it goes; the worker only when it stops, which proves the flush.
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
