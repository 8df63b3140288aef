//! Bad input is refused at the API or fails the job with `invalid_audio`.

use std::time::Duration;

use serde_json::json;

use super::base64_encode;
use crate::support::audio::{fixture, post_audio, speech_worker, submit_audio, upload_exists};
use crate::support::{AppOptions, spawn_app_with};

#[tokio::test]
async fn bad_input_is_refused_or_fails_the_job_with_invalid_audio() {
    let app = spawn_app_with(AppOptions {
        max_upload_bytes: 1_000_000,
        ..AppOptions::default()
    })
    .await;
    let _w = speech_worker(&app, &[]);

    // What the header shows: refused at submission.
    for (name, needle) in [
        ("not_audio.wav", "not a recognised audio file"),
        ("empty.wav", "empty"),
        ("adpcm.wav", "unsupported audio codec"),
    ] {
        let (status, body) = post_audio(&app, &fixture(name), None).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_audio", "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{name}: {message}");
    }
    // What only decoding shows: the job fails, the worker lives on.
    let id = submit_audio(&app, &fixture("truncated.wav"), None).await;
    let done = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "invalid_audio", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{done}"
    );
    assert!(!upload_exists(&app, &id).await);

    // Wrong parameters and pipelines.
    let wav = fixture("speech.wav");
    for (params, code) in [
        (json!({"threshold": 1.5}), "invalid_parameter"),
        (json!({"threshold": 0}), "invalid_parameter"),
        (json!({"sampling_rate": 44100}), "invalid_parameter"),
        (json!({"window": 3}), "invalid_parameter"),
        (json!({"min_silence_duration_ms": -5}), "invalid_parameter"),
    ] {
        let (status, body) = post_audio(&app, &wav, Some(&params)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some(code)),
            "{params}: {body}"
        );
    }
    let (status, body) = app
        .post_json(
            "/jobs",
            &json!({"pipeline": "karaoke", "audio": {"data": "AAAA"}}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("unknown_pipeline")),
        "{body}"
    );
    let (status, body) = app
        .post_json(
            "/jobs",
            &json!({"pipeline": "speech_segments", "audio": {"data": "!!"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Over INFERQ_MAX_UPLOAD_BYTES (1 MB here): 413, both forms.
    let big = fixture("speech_f32.wav");
    assert!(big.len() > 1_000_000);
    let (status, body) = post_audio(&app, &big, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("payload_too_large")),
        "{body}"
    );
    let (status, body) = app
        .post_json(
            "/jobs",
            &json!({"pipeline": "speech_segments", "audio": {"data": base64_encode(&big)}}),
        )
        .await;
    assert_eq!(status, 413, "{body}");

    // The worker still serves.
    let id = submit_audio(&app, &wav, None).await;
    let done = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}
