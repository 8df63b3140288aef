//! The segments a recording yields: equal to the reference to the millisecond, the same from
//! every format and every way of sending it; the pipelines listed with their parameters.

use std::time::Duration;

use serde_json::{Value, json};

use super::base64_encode;
use crate::support::audio::{fixture, reference, speech_worker, submit_audio, upload_exists};
use crate::support::spawn_app;

#[tokio::test]
async fn segments_equal_the_reference_to_the_millisecond() {
    let app = spawn_app().await;
    let _w = speech_worker(&app, &[]);
    let want = reference("speech.ref.json");

    let id = submit_audio(&app, &fixture("speech.wav"), None).await;
    let done = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["pipeline"], "speech_segments");
    assert_eq!(done["model"], "silero_vad");
    assert_eq!(done["result"], want, "segments differ from the reference");
    assert!(!want["segments"].as_array().unwrap().is_empty());
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);
    assert_eq!(done["progress"]["total"], want["duration"]);
    assert!(
        !upload_exists(&app, &id).await,
        "the upload outlived its job"
    );

    // The JSON form, base64 audio, gives the same.
    let b64 = base64_encode(&fixture("speech.wav"));
    let (status, body) = app
        .post_json(
            "/jobs?wait=60",
            &json!({"pipeline": "speech_segments", "audio": {"data": b64}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], want);

    // 8 kHz: windows of 256 samples with 32 of context.
    let id = submit_audio(
        &app,
        &fixture("speech_8k.wav"),
        Some(&json!({"sampling_rate": 8000})),
    )
    .await;
    let done = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(done["result"], reference("speech_8k.ref.json"));
}

/// Speech time two segment lists share, over the speech time either has (1.0: the same).
fn overlap(a: &[Value], b: &[Value]) -> f64 {
    let spans = |v: &[Value]| -> Vec<(f64, f64)> {
        v.iter()
            .map(|s| (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap()))
            .collect()
    };
    let (a, b) = (spans(a), spans(b));
    let total = |v: &[(f64, f64)]| v.iter().map(|(s, e)| e - s).sum::<f64>();
    let mut inter = 0.0;
    for (s1, e1) in &a {
        for (s2, e2) in &b {
            inter += (e1.min(*e2) - s1.max(*s2)).max(0.0);
        }
    }
    inter / (total(&a) + total(&b) - inter)
}

/// Every format, at once (so their windows share model calls): lossless 16 kHz formats give
/// the reference's segments exactly; resampled, 8-bit and lossy ones the same speech within
/// what their changed samples allow.
#[tokio::test]
async fn every_format_decodes_to_the_same_segments() {
    let app = spawn_app().await;
    let _w = speech_worker(&app, &[("INFERQ_SPEECH_THREADS", "1")]);
    let want = reference("speech.ref.json");
    let exact = [
        "speech_s24.wav",
        "speech_s32.wav",
        "speech_f32.wav",
        "speech_f64.wav",
        "speech.flac",
    ];
    let close = [
        "speech_u8.wav",
        "speech_44k_stereo.wav",
        "speech.mp3",
        "speech.ogg",
    ];
    let mut ids = Vec::new();
    for name in exact.iter().chain(&close) {
        ids.push((name, submit_audio(&app, &fixture(name), None).await));
    }
    let exp = want["segments"].as_array().unwrap();
    for (name, id) in ids {
        let done = app.wait_done(&id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "succeeded", "{name}: {done}");
        let got = done["result"]["segments"].as_array().unwrap();
        if exact.contains(name) {
            assert_eq!(done["result"], want, "{name}");
        } else {
            let o = overlap(got, exp);
            assert!(o > 0.9, "{name}: overlap {o}: {got:?} vs {exp:?}");
            let dur = done["result"]["duration"].as_f64().unwrap();
            // MP3 frames pad the end by up to a frame (1152 samples at the file's rate).
            assert!(
                (dur - want["duration"].as_f64().unwrap()).abs() < 0.1,
                "{name}: {dur}"
            );
            assert_eq!(done["result"]["sample_rate"], 16000);
        }
    }
}

#[tokio::test]
async fn pipelines_are_listed_with_their_parameters() {
    let app = spawn_app().await;
    let (status, body) = app.get("/pipelines").await;
    assert_eq!(status, 200);
    let p = &body["pipelines"][0];
    assert_eq!(p["name"], "speech_segments");
    assert_eq!(p["model"], "silero_vad");
    let params = p["parameters"].as_array().unwrap();
    let default = |n: &str| params.iter().find(|x| x["name"] == n).unwrap()["default"].clone();
    assert_eq!(default("threshold"), 0.5);
    assert_eq!(default("min_speech_duration_ms"), 250);
    assert_eq!(default("min_silence_duration_ms"), 100);
    assert_eq!(default("speech_pad_ms"), 30);
    assert_eq!(default("sampling_rate"), 16000);
    assert_eq!(default("max_speech_duration_s"), Value::Null);
}
