//! The API's bounds against slow and greedy clients, over raw TCP: a connection limit that
//! answers 503 with Retry-After, request heads that must arrive in time, bodies that must
//! arrive in time, and limits on the URI and the headers, all in the error shape.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{AppOptions, eventually, spawn_app_with};

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a new connection and reads until the server closes it or `wait` passes.
async fn exchange(base: &str, request: Vec<u8>, wait: Duration) -> String {
    let addr = addr(base);
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        let _ = s.write_all(&request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

fn status_and_body(answer: &str) -> (u16, Value) {
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503_and_slow_heads_are_cut_off() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| {
            c.max_connections = 2;
            c.header_timeout_secs = 2;
        }),
        ..Default::default()
    })
    .await;
    let target = addr(&app.base);
    // Two clients take both connections, one sending half a request head and stopping.
    let holders = tokio::task::spawn_blocking(move || {
        let a = TcpStream::connect(&target).unwrap();
        let mut b = TcpStream::connect(&target).unwrap();
        b.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        (a, b)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let answer = exchange(
        &app.base,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert_eq!(body["error"]["code"], "too_many_connections");

    // The server closes both held connections once the head timeout passes.
    let began = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let (mut a, mut b) = holders;
        let mut ends = Vec::new();
        for s in [&mut a, &mut b] {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = Vec::new();
            ends.push(s.read_to_end(&mut buf).map(|_| buf.len()).is_ok());
        }
        ends
    })
    .await
    .unwrap();
    assert_eq!(closed, [true, true]);
    assert!(began.elapsed() < Duration::from_secs(15));

    // With the slots free again, requests are served.
    eventually(
        Duration::from_secs(10),
        "requests are served again",
        async || match app.get("/healthz").await.0 {
            200 => Ok(()),
            status => Err(status),
        },
    )
    .await;
}

#[tokio::test]
async fn oversized_heads_and_late_bodies_get_4xx_in_the_error_shape() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| {
            c.max_uri_bytes = 1000;
            c.max_header_bytes = 2000;
            c.body_timeout_secs = 1;
        }),
        ..Default::default()
    })
    .await;
    let wait = Duration::from_secs(10);

    let long_uri = format!(
        "GET /status/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(1200)
    );
    let (status, body) = status_and_body(&exchange(&app.base, long_uri.into_bytes(), wait).await);
    assert_eq!(
        (status, &body["error"]["code"]),
        (414, &Value::from("uri_too_long"))
    );

    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(2500)
    );
    let (status, body) = status_and_body(&exchange(&app.base, big_header.into_bytes(), wait).await);
    assert_eq!(
        (status, &body["error"]["code"]),
        (431, &Value::from("headers_too_large"))
    );

    // Far beyond the limits hyper refuses the head itself: still a 4xx, never a 5xx.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "c".repeat(200_000)
    );
    let answer = exchange(&app.base, huge.into_bytes(), wait).await;
    let (status, _) = status_and_body(&answer);
    assert!(
        answer.is_empty() || (400..500).contains(&status),
        "{answer}"
    );

    // A body announced and never sent: 408 once the body timeout passes, native and OIP.
    for (path, oip) in [("/jobs", false), ("/v2/models/linear/infer", true)] {
        let partial = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\nConnection: close\r\n\r\n{{\"model\""
        );
        let (status, body) =
            status_and_body(&exchange(&app.base, partial.into_bytes(), wait).await);
        assert_eq!(status, 408, "{path}: {body}");
        if oip {
            assert!(body["error"].is_string(), "{body}");
        } else {
            assert_eq!(body["error"]["code"], "request_timeout");
        }
    }
}

/// A full queue's `Retry-After` comes from the queue's depth and the model's measured rate.
#[tokio::test]
async fn a_full_queue_answers_a_retry_after_estimated_from_its_backlog() {
    use crate::support::{linear_job, slow_job, test_models};
    let app = spawn_app_with(AppOptions {
        max_queued: 3,
        ..Default::default()
    })
    .await;
    let mut w = app.worker(
        &test_models(),
        &[("INFERQ_MODELS", "linear,slow"), ("INFERQ_THREADS", "1")],
    );
    app.wait_models(&["linear", "slow"]).await;
    // Six `linear` jobs finish, then the worker leaves: nothing drains the queues.
    for i in 0..6 {
        let id = app.submit(&linear_job(&[[i as f32, 0.0, 0.0, 0.0]])).await;
        app.wait_done(&id, Duration::from_secs(30)).await;
    }
    w.signal("TERM");
    assert_eq!(w.wait_exit(Duration::from_secs(30)), Some(0));
    // The finishing second must be a whole second ago to count.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (model, job, want) in [
        // 3 queued at 6 a minute: 30 s.
        ("linear", linear_job(&[[1.0; 4]]), "30"),
        // Nothing finished in the last minute: a minute.
        ("slow", slow_job(1.0), "60"),
    ] {
        for _ in 0..3 {
            app.submit(&job).await;
        }
        let r = app
            .http
            .post(format!("{}/jobs", app.base))
            .json(&job)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{model}");
        assert_eq!(r.headers()["retry-after"], want, "{model}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "overloaded");
    }
    let r = app
        .http
        .post(format!("{}/v2/models/linear/infer", app.base))
        .json(&serde_json::json!({"inputs": linear_job(&[[1.0; 4]])["inputs"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
}
