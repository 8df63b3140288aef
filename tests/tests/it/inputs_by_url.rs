//! Inputs by URL: a worker fetches an input's bytes (raw little-endian or `.npy`) from a local
//! server, retrying a 5xx; size limits, wrong sizes, refused addresses and redirects to them
//! fail the job with a code that names the cause; the API refuses what it can tell at
//! submission.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::*;

const DONE: Duration = Duration::from_secs(60);

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A `.npy` file as `numpy.save` writes it.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

const ROW: [f32; 4] = [1.0, 2.0, 3.0, 4.0];
const ROWS: [[f32; 4]; 2] = [[0.5, -1.0, 2.0, 8.0], [-3.0, 0.0, 0.25, 1.0]];

/// The input server and the requests it counted.
struct Inputs {
    base: String,
    /// Requests of `/flaky`.
    flaky: Arc<AtomicUsize>,
    /// Requests of `/always-500`.
    broken: Arc<AtomicUsize>,
}

/// The input server: `/raw`, `/x.npy`, `/flaky` (503 once), `/always-500`, `/big` (with a
/// length), `/big-stream` (without), `/short`, `/missing` (404), `/redirect` (to a refused
/// address).
async fn input_server() -> Inputs {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let flaky = Arc::new(AtomicUsize::new(0));
    let broken = Arc::new(AtomicUsize::new(0));
    let rows: Vec<f32> = ROWS.iter().flatten().copied().collect();
    let npy_file = npy("<f4", "(2, 4)", &le_bytes(&rows));
    let (f, b) = (flaky.clone(), broken.clone());
    let router = Router::new()
        .route("/raw", get(|| async { le_bytes(&ROW) }))
        .route("/x.npy", get(move || async move { npy_file }))
        .route(
            "/flaky",
            get(move || async move {
                if f.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    le_bytes(&ROW).into_response()
                }
            }),
        )
        .route(
            "/always-500",
            get(move || async move {
                b.fetch_add(1, Ordering::SeqCst);
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route("/big", get(|| async { vec![0u8; 2 << 20] }))
        .route(
            "/big-stream",
            get(|| async {
                let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![0u8; 32 << 10]));
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route("/short", get(|| async { vec![0u8; 12] }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/redirect",
            // 127.0.0.2 is loopback too, and not in the allow list (127.0.0.1).
            get(move || async move {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, format!("http://127.0.0.2:{port}/raw"))
                    .body(axum::body::Body::empty())
                    .unwrap()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Inputs {
        base: format!("http://127.0.0.1:{port}"),
        flaky,
        broken,
    }
}

fn url_job(url: &str, rows: usize) -> Value {
    json!({"model": "linear", "inputs": [
        {"name": "x", "shape": [rows, 4], "datatype": "FP32", "url": url}
    ]})
}

fn allow_loopback(c: &mut inferq_api::Config) {
    c.fetch_allow = "127.0.0.1".parse().unwrap();
}

async fn app_and_worker(worker_env: &[(&str, &str)]) -> (App, Worker) {
    let app = spawn_app_with(AppOptions {
        tweak: Some(allow_loopback),
        ..AppOptions::default()
    })
    .await;
    let w = app.worker(&test_models(), worker_env);
    app.wait_models(&["linear"]).await;
    (app, w)
}

#[tokio::test]
async fn inputs_come_by_url_as_raw_bytes_or_npy_and_a_5xx_is_retried() {
    let Inputs { base, flaky, .. } = input_server().await;
    let (app, _w) = app_and_worker(&[("INFERQ_FETCH_ALLOW", "127.0.0.1")]).await;

    let raw = app.submit(&url_job(&format!("{base}/raw"), 1)).await;
    let npy = app.submit(&url_job(&format!("{base}/x.npy"), 2)).await;
    let retried = app.submit(&url_job(&format!("{base}/flaky"), 1)).await;
    // Beside a job with its data inline: both run.
    let inline = app.submit(&linear_job(&[ROW])).await;
    for (id, rows) in [
        (&raw, &[ROW][..]),
        (&npy, &ROWS[..]),
        (&retried, &[ROW][..]),
        (&inline, &[ROW][..]),
    ] {
        let record = app.wait_done(id, DONE).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(
            record["attempts"], 1,
            "a fetch retry is not a job attempt: {record}"
        );
        assert_close(
            &record["result"]["outputs"][0]["data"],
            &linear_expected(rows),
            1e-5,
        );
    }
    assert_eq!(flaky.load(Ordering::SeqCst), 2, "one 503, then the bytes");
}

#[tokio::test]
async fn fetch_failures_fail_the_job_naming_their_cause() {
    let Inputs { base, broken, .. } = input_server().await;
    let (app, _w) = app_and_worker(&[
        ("INFERQ_FETCH_ALLOW", "127.0.0.1"),
        ("INFERQ_FETCH_MAX_BYTES", "1048576"),
    ])
    .await;
    let cases = [
        (
            format!("{base}/big"),
            "input_fetch_failed",
            "larger than the limit of 1048576 bytes",
        ),
        (
            format!("{base}/big-stream"),
            "input_fetch_failed",
            "larger than the limit",
        ),
        (format!("{base}/missing"), "input_fetch_failed", "404"),
        (format!("{base}/always-500"), "input_fetch_failed", "500"),
        (format!("{base}/short"), "data_length_mismatch", "12 bytes"),
        (format!("{base}/redirect"), "url_not_allowed", "127.0.0.2"),
    ];
    let mut ids = Vec::new();
    for (url, _, _) in &cases {
        ids.push(app.submit(&url_job(url, 1)).await);
    }
    for (id, (url, code, cause)) in ids.iter().zip(&cases) {
        let record = app.wait_done(id, DONE).await;
        assert_eq!(record["status"], "failed", "{url}: {record}");
        assert_eq!(record["error"]["code"], *code, "{url}: {record}");
        let message = record["error"]["message"].as_str().unwrap();
        assert!(message.contains(cause), "{url}: {message}");
        assert!(message.starts_with("input 'x': "), "{message}");
        // The URL (which may carry a credential) is not repeated in the message.
        assert!(!message.contains(&base), "{message}");
    }
    assert_eq!(
        broken.load(Ordering::SeqCst),
        3,
        "a 5xx is tried three times"
    );
}

#[tokio::test]
async fn internal_addresses_are_refused_at_submission_or_by_the_worker() {
    let Inputs { base, .. } = input_server().await;
    // The API allows 127.0.0.1 and this worker's environment names nothing: the job carries
    // the API's list and the worker guards the fetch with it, so the two cannot disagree.
    let (app, _w) = app_and_worker(&[]).await;
    let id = app.submit(&url_job(&format!("{base}/raw"), 1)).await;
    let record = app.wait_done(&id, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");

    for (url, code) in [
        ("http://127.0.0.2:9/x", "url_not_allowed"),
        ("http://localhost:9/x", "url_not_allowed"),
        ("http://[::1]:9/x", "url_not_allowed"),
        ("http://169.254.169.254/latest", "url_not_allowed"),
        ("http://10.1.2.3/x.npy", "url_not_allowed"),
        ("ftp://example.com/x", "invalid_url"),
        ("not a url", "invalid_url"),
    ] {
        let (status, body) = app.post_json("/jobs", &url_job(url, 1)).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["code"], code, "{url}: {body}");
    }
    let both = json!({"model": "linear", "inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW, "url": format!("{base}/raw")}
    ]});
    let (status, body) = app.post_json("/jobs", &both).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_data")),
        "{body}"
    );
}

#[tokio::test]
async fn a_recording_by_url_gives_the_reference_segments_and_its_webhook() {
    let wav = std::fs::read(repo_root().join("tests/audio/speech.wav")).unwrap();
    let want: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("tests/audio/speech.ref.json")).unwrap(),
    )
    .unwrap();
    let router = Router::new()
        .route("/speech.wav", get(move || async move { wav }))
        .route("/empty.wav", get(|| async { Vec::<u8>::new() }));
    let base = crate::support::servers::serve(router).await;
    let receiver = crate::support::servers::Receiver::start(0).await;
    let app = spawn_app_with(AppOptions {
        tweak: Some(allow_loopback),
        ..AppOptions::default()
    })
    .await;
    let _w = app.worker(
        &repo_root().join("models"),
        &[
            ("INFERQ_MODELS", "silero_vad"),
            ("INFERQ_FETCH_ALLOW", "127.0.0.1"),
            ("INFERQ_WEBHOOK_SECRET", crate::support::servers::SECRET),
        ],
    );
    let id = app
        .submit(&json!({
            "pipeline": "speech_segments",
            "audio": {"url": format!("{base}/speech.wav")},
            "webhook": {"url": receiver.url},
        }))
        .await;
    let done = app.wait_done(&id, DONE).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"], want, "segments differ from the reference");
    let seen = receiver.wait_for(1, DONE).await;
    assert_eq!(seen[0].body["type"], "job.succeeded");
    assert_eq!(seen[0].body["data"]["result"], want);

    let id = app
        .submit(
            &json!({"pipeline": "speech_segments", "audio": {"url": format!("{base}/empty.wav")}}),
        )
        .await;
    let done = app.wait_done(&id, DONE).await;
    assert_eq!(done["error"]["code"], "invalid_audio", "{done}");
    let (status, body) = app
        .post_json(
            "/jobs",
            &json!({"pipeline": "speech_segments", "audio": {"url": "http://10.0.0.1/a.wav"}}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("url_not_allowed")),
        "{body}"
    );
}
