//! The ways texts come in (JSON, a file of lines, JSON Lines with ids echoed back) and what
//! is refused at submission (`422 invalid_texts`, `invalid_parameter`); the pipeline listed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::texts::{embedding_worker, max_abs_diff, post_file, post_texts, vectors};
use crate::support::{AppOptions, spawn_app, spawn_app_with};

#[tokio::test]
async fn files_of_lines_and_json_lines_give_the_same_vectors_with_ids() {
    let app = spawn_app().await;
    let _w = embedding_worker(&app, &[]);
    let texts = ["first text", "the second, a little longer", "third"];

    let (status, body) = app
        .post_json(
            "/jobs?wait=60",
            &json!({"pipeline": "text_embeddings", "texts": texts, "ids": ["a", "b", "c"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["ids"], json!(["a", "b", "c"]));
    let want = vectors(&body["result"]);

    let (status, body) = post_file(
        &app,
        b"first text\r\nthe second, a little longer\nthird\n",
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let lines = app
        .wait_done(body["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(lines["status"], "succeeded", "{lines}");
    assert!(lines["result"].get("ids").is_none(), "{lines}");

    let jsonl = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": format!("doc-{i}"), "text": t}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (status, body) = post_file(
        &app,
        jsonl.as_bytes(),
        Some(&json!({"encoding_format": "base64"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let jl = app
        .wait_done(body["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(jl["result"]["ids"], json!(["doc-0", "doc-1", "doc-2"]));
    assert!(jl["result"]["embeddings"][0].is_string());

    for got in [vectors(&lines["result"]), vectors(&jl["result"])] {
        assert_eq!(got.len(), 3);
        for (a, b) in got.iter().zip(&want) {
            assert!(max_abs_diff(a, b) < 1e-6);
        }
    }
}

#[tokio::test]
async fn bad_texts_are_refused_at_submission() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| c.max_embedding_texts = 5),
        ..AppOptions::default()
    })
    .await;
    let t = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    for (texts, needle) in [
        (t(&[]), "empty"),
        (t(&["a", "", "c"]), "text 1 is empty"),
        (t(&["a", "b\0c"]), "NUL"),
        (t(&["1", "2", "3", "4", "5", "6"]), "limit of 5"),
    ] {
        let (status, body) = post_texts(&app, &texts, json!({})).await;
        assert_eq!(status, 422, "{texts:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_texts", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }
    // Five is the limit: accepted.
    let (status, body) = post_texts(&app, &t(&["1", "2", "3", "4", "5"]), json!({})).await;
    assert_eq!(status, 202, "{body}");

    let refused = |status: u16, body: &Value, code: &str| {
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    };
    let (s, b) = app
        .post_json(
            "/jobs",
            &json!({"pipeline": "text_embeddings", "texts": ["a"], "ids": ["x", "y"]}),
        )
        .await;
    refused(s, &b, "invalid_texts");
    let (s, b) = post_texts(&app, &t(&["a"]), json!({"encoding_format": "int8"})).await;
    refused(s, &b, "invalid_parameter");
    let (s, b) = post_texts(&app, &t(&["a"]), json!({"threshold": 0.5})).await;
    refused(s, &b, "invalid_parameter");
    for file in [
        &b"a\n\nc\n"[..],
        b"\xff\xfe",
        b"{\"id\": \"a\", \"text\": \"x\"}\n{\"text\": \"y\"}",
        b"",
        b"a\x00b",
    ] {
        let (s, b) = post_file(&app, file, None).await;
        refused(s, &b, "invalid_texts");
    }
    // Texts go to text_embeddings only, audio to speech_segments only.
    let (s, b) = app
        .post_json(
            "/jobs",
            &json!({"pipeline": "speech_segments", "texts": ["a"]}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
}

#[tokio::test]
async fn the_pipeline_is_listed_with_its_parameters() {
    let app = spawn_app().await;
    let (status, body) = app.get("/pipelines").await;
    assert_eq!(status, 200);
    let p = body["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "text_embeddings")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(p["model"], "all-MiniLM-L6-v2");
    assert_eq!(p["input"], "texts");
    let names: Vec<&str> = p["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["encoding_format", "timeout_ms", "deadline"]);
}
