//! Property tests of what the router parses from client bytes, through the real router (keys
//! off, Redis unreachable, so anything that gets past parsing answers 503): query strings,
//! paths, JSON, binary-framed and multipart bodies of the native and OIP routes, the
//! `Last-Event-ID` of event streams. Any input gives a 4xx
//! (or the 503 of the missing Redis), never a 500 and never a panic.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use inferq_shared::config::RedisConfig;
use inferq_shared::queue::Queue;
use proptest::prelude::*;
use tower::ServiceExt;

use crate::state::AppState;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
});

static APP: LazyLock<Router> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let mut config =
            crate::config::Config::new(RedisConfig::new("redis://127.0.0.1:1", "prop"));
        config.redis.redis_timeout_ms = 50;
        config.auth = crate::config::AuthMode::Disabled;
        config.max_body_bytes = 4096;
        let queue = Queue::connect(&config.redis, Duration::ZERO).await.unwrap();
        let (_, shutdown) = tokio::sync::watch::channel(false);
        crate::routes::router(Arc::new(AppState::new(config, queue, shutdown)))
    })
});

fn call(req: Request<Body>) -> StatusCode {
    let app = APP.clone();
    RUNTIME.block_on(async move { app.oneshot(req).await.unwrap().status() })
}

fn acceptable(status: StatusCode) -> bool {
    status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE
}

/// Query-string and path bytes: what a URI may carry, percent escapes included.
fn uri_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-z0-9=&.+-]{1,4}",
            Just("wait=".to_owned()),
            Just("%".to_owned()),
            Just("%FF".to_owned()),
            Just("%00".to_owned()),
            Just("1e400".to_owned()),
            Just("-1".to_owned()),
            Just("NaN".to_owned()),
        ],
        0..10,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn query_strings_and_paths_give_4xx(query in uri_text(), segment in uri_text()) {
        for uri in [
            format!("/jobs?{query}"),
            format!("/status/{segment}?{query}"),
            format!("/jobs/{segment}"),
            format!("/v2/models/{segment}/infer?{query}"),
        ] {
            let Ok(req) = Request::post(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{"))
            else {
                continue;
            };
            let status = call(req);
            prop_assert!(acceptable(status), "{uri}: {status}");
        }
    }

    #[test]
    fn any_body_gives_4xx(
        body in prop::collection::vec(any::<u8>(), 0..600),
        header_len in prop::option::of(prop_oneof![
            (0usize..700).prop_map(|n| n.to_string()),
            "[ -~]{0,6}",
        ]),
        binary in any::<bool>(),
    ) {
        for path in ["/jobs", "/v2/models/m/infer", "/keys"] {
            let mut req = Request::post(path).header(
                "content-type",
                if binary { "application/octet-stream" } else { "application/json" },
            );
            if let Some(n) = &header_len {
                req = req.header("inference-header-content-length", n.as_str());
            }
            let status = call(req.body(Body::from(body.clone())).unwrap());
            prop_assert!(acceptable(status), "{path}: {status}");
        }
    }

    #[test]
    fn framed_bodies_give_4xx(
        head in prop::sample::select(vec![
            r#"{"model":"m","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#,
            r#"{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":9}}]}"#,
            r#"{"inputs":[{"name":"x","shape":[4611686018427387904],"datatype":"FP64","parameters":{"binary_data_size":8}}]}"#,
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..32),
        skew in -3i64..3,
    ) {
        let declared = (head.len() as i64 + skew).max(0).to_string();
        for path in ["/jobs", "/v2/models/m/infer"] {
            let mut bytes = head.as_bytes().to_vec();
            bytes.extend_from_slice(&tail);
            let req = Request::post(path)
                .header("content-type", "application/octet-stream")
                .header("inference-header-content-length", declared.as_str())
                .body(Body::from(bytes))
                .unwrap();
            let status = call(req);
            prop_assert!(acceptable(status), "{path}: {status}");
        }
    }

    #[test]
    fn multipart_bodies_give_4xx(
        parts in prop::collection::vec((
            prop_oneof![
                Just("pipeline".to_owned()),
                Just("audio".to_owned()),
                Just("parameters".to_owned()),
                "[a-z\"]{0,6}",
            ],
            prop_oneof![
                Just(b"speech_segments".to_vec()),
                Just(b"{\"threshold\": 2}".to_vec()),
                Just(b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec()),
                prop::collection::vec(any::<u8>(), 0..64),
            ],
            any::<bool>(),
        ), 0..4),
        closed in any::<bool>(),
        boundary in prop_oneof![Just("b0undary".to_owned()), Just(String::new()), "[ -~]{0,8}"],
    ) {
        let mut body = Vec::new();
        for (name, content, file) in &parts {
            body.extend_from_slice(format!("--b0undary\r\nContent-Disposition: form-data; \
                name=\"{name}\"").as_bytes());
            if *file {
                body.extend_from_slice(b"; filename=\"a.wav\"");
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        if closed {
            body.extend_from_slice(b"--b0undary--\r\n");
        }
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let Ok(req) = Request::post("/jobs")
            .header("content-type", content_type)
            .body(Body::from(body))
        else {
            return Ok(());
        };
        let status = call(req);
        prop_assert!(acceptable(status), "{status}");
    }

    #[test]
    fn any_last_event_id_gives_4xx(value in "[ -~]{0,24}") {
        let Ok(req) = Request::get("/jobs/6f1c2d8e-0c1d-4c4e-9f6e-0d5b1f3a2b4c/events")
            .header("last-event-id", value.as_str())
            .body(Body::empty())
        else {
            return Ok(());
        };
        let status = call(req);
        prop_assert!(acceptable(status), "{status}");
    }
}
