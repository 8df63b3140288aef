//! What the vectors are: sentence-transformers' published similarities, the Python reference
//! to 1e-3, the same vector for a text alone and inside a mixed job, base64 equal to floats,
//! and truncation at 256 tokens.

use std::time::Duration;

use serde_json::json;

use super::corpus;
use crate::support::spawn_app;
use crate::support::texts::{
    DIMENSIONS, dot, embedding_worker, max_abs_diff, python_reference, submit_texts, vectors,
};

/// sentence-transformers' README example for all-MiniLM-L6-v2: similarities 0.6660 (1-2),
/// 0.1046 (1-3), 0.1411 (2-3), computed with the full-precision weights; int8 weights stay
/// within a few hundredths.
#[tokio::test]
async fn similarities_match_sentence_transformers_published_example() {
    let app = spawn_app().await;
    let _w = embedding_worker(&app, &[]);
    let texts: Vec<String> = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]
    .map(String::from)
    .to_vec();
    let id = submit_texts(&app, &texts, json!({})).await;
    let done = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["model"], "all-MiniLM-L6-v2");
    assert_eq!(done["pipeline"], "text_embeddings");
    let r = &done["result"];
    assert_eq!(r["model"], "all-MiniLM-L6-v2");
    assert_eq!(r["dimensions"], DIMENSIONS);
    let v = vectors(r);
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), DIMENSIONS);
        assert!((dot(x, x) - 1.0).abs() < 1e-4, "not normalised");
    }
    let sims = [dot(&v[0], &v[1]), dot(&v[0], &v[2]), dot(&v[1], &v[2])];
    println!("similarities {sims:?} (published 0.6660, 0.1046, 0.1411)");
    for (got, want) in sims.iter().zip([0.6660, 0.1046, 0.1411]) {
        assert!((got - want).abs() < 0.03, "{sims:?}");
    }
    // [CLS] the weather is lovely today . [SEP]
    assert_eq!(r["token_counts"][0], 8);
    assert_eq!(
        r["total_tokens"],
        json!(
            r["token_counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .sum::<u64>()
        )
    );
    assert_eq!(r["truncated"], json!([]));
    assert!(r.get("ids").is_none());
    assert_eq!(done["progress"], json!({"done": 3.0, "total": 3.0}));
}

/// The worker's vectors equal the Python reference's (tokenizers + onnxruntime, one text at
/// a time) to 1e-3 per component, token counts exactly; and a text embedded alone equals the
/// same text embedded among texts of other lengths in concurrent jobs, to 1e-5.
#[tokio::test]
async fn vectors_match_the_python_reference_and_do_not_depend_on_run_mates() {
    let app = spawn_app().await;
    let _w = embedding_worker(&app, &[("INFERQ_EMBEDDING_TOKEN_BUDGET", "4096")]);
    let mut texts = corpus(40);
    texts.push("Ünïcödé, emoji 🚀 and CJK 中文 text; punctuation!?".into());
    texts.push("word ".repeat(300));
    let (reference, counts) = python_reference(&texts).await;

    // Mixed lengths, split over three concurrent jobs.
    let parts: Vec<&[String]> = vec![&texts[..10], &texts[10..25], &texts[25..]];
    let mut ids = Vec::new();
    for p in &parts {
        ids.push(submit_texts(&app, p, json!({})).await);
    }
    let mut got = Vec::new();
    let mut got_counts = Vec::new();
    for id in &ids {
        let done = app.wait_done(id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        got.extend(vectors(&done["result"]));
        got_counts.extend(
            done["result"]["token_counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap()),
        );
    }
    assert_eq!(got_counts, counts, "token counts differ from the reference");
    let worst = got
        .iter()
        .zip(&reference)
        .map(|(a, b)| max_abs_diff(a, b))
        .fold(0.0, f32::max);
    println!("largest difference from the Python reference: {worst:e}");
    assert!(worst <= 1e-3, "{worst}");

    // Each text alone.
    let mut alone_worst = 0f32;
    for (k, text) in texts.iter().enumerate().step_by(5) {
        let id = submit_texts(&app, std::slice::from_ref(text), json!({})).await;
        let done = app.wait_done(&id, Duration::from_secs(60)).await;
        let alone = &vectors(&done["result"])[0];
        alone_worst = alone_worst.max(max_abs_diff(alone, &got[k]));
    }
    println!("largest difference alone vs in a mixed job: {alone_worst:e}");
    assert!(alone_worst <= 1e-5, "{alone_worst}");
}

/// `encoding_format: base64` gives the same vectors as floats; a text over 256 tokens is cut
/// there and its index reported.
#[tokio::test]
async fn base64_equals_floats_and_long_texts_are_truncated() {
    let app = spawn_app().await;
    let _w = embedding_worker(&app, &[]);
    let texts = vec![
        "short one".to_string(),
        "lease ".repeat(400),
        "another short text".to_string(),
        "token ".repeat(254),
    ];
    let f = submit_texts(&app, &texts, json!({"encoding_format": "float"})).await;
    let b = submit_texts(&app, &texts, json!({"encoding_format": "base64"})).await;
    let f = app.wait_done(&f, Duration::from_secs(60)).await;
    let b = app.wait_done(&b, Duration::from_secs(60)).await;
    assert_eq!(b["status"], "succeeded", "{b}");
    assert!(b["result"]["embeddings"][0].is_string(), "{b}");
    assert!(f["result"]["embeddings"][0].is_array(), "{f}");
    for (x, y) in vectors(&f["result"]).iter().zip(&vectors(&b["result"])) {
        // JSON numbers print the shortest float32 that reads back the same.
        assert!(max_abs_diff(x, y) <= 1e-7);
    }
    let r = &f["result"];
    assert_eq!(r["truncated"], json!([1]), "{r}");
    assert_eq!(r["token_counts"][1], 256);
    // 254 words + [CLS] + [SEP] = 256: fits exactly, not cut.
    assert_eq!(r["token_counts"][3], 256);
    assert_eq!(b["result"]["truncated"], json!([1]));
}
