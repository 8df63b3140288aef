//! A batch's requests packed into shared jobs, seen from the client: a few thousand requests of
//! one to five texts, in both spellings, with bad lines mixed in. Each bad line fails alone
//! (its pack mates run), and every good request is answered exactly once with its own vectors,
//! its own spelling and its own `usage`, as `/v1/embeddings` answers the same request.

use std::collections::{HashMap, HashSet};

use inferq_shared::embedding::Embedding;
use serde_json::{Value, json};

use super::{MODEL, call, file_lines, key, secured_app, start_batch, wait_final};
use crate::support::texts::embedding_worker;

/// A request line of the batch.
fn request(custom_id: &str, body: Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body})
        .to_string()
}

/// The numbers of an embedding, whichever its spelling.
fn numbers(e: &Value) -> Vec<f32> {
    serde_json::from_value::<Embedding>(e.clone())
        .unwrap()
        .to_vec()
        .unwrap()
}

#[tokio::test]
async fn a_packed_batch_answers_each_request_with_its_own_vectors() {
    const N: usize = 2000;
    let app = secured_app().await;
    let _w = [embedding_worker(&app, &[]), embedding_worker(&app, &[])];
    let red = key(&app, "red").await;
    app.client(&red).wait_models(&[MODEL]).await;
    // custom_id → the request's body, for the good ones; the bad ones' expected error codes.
    let (mut good, mut bad) = (HashMap::new(), HashMap::new());
    let mut lines = Vec::new();
    for i in 0..N {
        let id = format!("r{i}");
        let texts: Vec<String> = (0..=i % 5)
            .map(|k| format!("request {i} text {k} of a packed batch"))
            .collect();
        let mut body = json!({"model": MODEL, "input": texts});
        if i % 2 == 1 {
            body["encoding_format"] = json!("base64");
        }
        // An empty text and too many inputs are refused as the line is read; a NUL by the
        // submission path's own check, which each request passes before it is packed.
        let refusal = match i % 397 {
            13 => Some((json!(["fine", ""]), "invalid_request_error")),
            101 => Some((json!(["fine", "a NUL \u{0} inside"]), "invalid_texts")),
            211 => Some((json!(vec!["x"; 2049]), "invalid_request_error")),
            _ => None,
        };
        if let Some((input, code)) = refusal {
            body["input"] = input;
            bad.insert(id.clone(), code);
        } else {
            good.insert(id.clone(), body.clone());
        }
        lines.push(request(&id, body));
        if i % 500 == 250 {
            lines.push("this line is not JSON".into());
        }
    }
    let url = start_batch(&app, &red, &lines).await;
    let done = wait_final(&app, &red, &url).await;
    assert_eq!(done["status"], "completed", "{done}");
    let failed = bad.len() + 4;
    assert_eq!(
        done["request_counts"],
        json!({"total": N + 4, "completed": good.len(), "failed": failed}),
        "{done}"
    );

    let errors = file_lines(&app, &red, &done["error_file_id"]).await;
    assert_eq!(errors.len(), failed);
    let mut refused = HashMap::new();
    for e in &errors {
        assert!(e["response"].is_null(), "{e}");
        match e["custom_id"].as_str() {
            Some(id) => assert!(refused.insert(id, e["error"]["code"].clone()).is_none()),
            None => assert_eq!(e["error"]["code"], "invalid_json_line", "{e}"),
        }
    }
    let expected: HashMap<&str, Value> = bad.iter().map(|(k, v)| (k.as_str(), json!(v))).collect();
    assert_eq!(refused, expected);

    let output = file_lines(&app, &red, &done["output_file_id"]).await;
    let mut seen = HashSet::new();
    let mut tokens = 0;
    // custom_id → (vectors, usage) as the batch answered, for the requests checked below.
    let mut sample = HashMap::new();
    for line in output {
        let id = line["custom_id"].as_str().unwrap().to_owned();
        let body = &line["response"]["body"];
        assert_eq!(line["response"]["status_code"], 200, "{line}");
        let asked = &good[&id];
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), asked["input"].as_array().unwrap().len(), "{id}");
        for (j, d) in data.iter().enumerate() {
            assert_eq!(d["index"], j);
            assert_eq!(
                d["embedding"].is_string(),
                asked["encoding_format"] == "base64"
            );
            assert_eq!(numbers(&d["embedding"]).len(), 384);
        }
        let usage = &body["usage"];
        assert_eq!(usage["prompt_tokens"], usage["total_tokens"]);
        tokens += usage["prompt_tokens"].as_u64().unwrap();
        if id.trim_start_matches('r').parse::<usize>().unwrap() % 89 < 2 {
            let vectors: Vec<Vec<f32>> = data.iter().map(|d| numbers(&d["embedding"])).collect();
            sample.insert(id.clone(), (vectors, usage.clone()));
        }
        assert!(seen.insert(id), "every request is answered once");
    }
    assert_eq!(seen.len(), good.len());
    assert_eq!(done["usage"]["input_tokens"], tokens);

    // Each request's own answer, as the same request alone through /v1/embeddings.
    assert!(sample.len() > 30, "{}", sample.len());
    for (id, (vectors, usage)) in sample {
        let (status, alone) = call(
            &red,
            app.http
                .post(format!("{}/v1/embeddings", app.base))
                .json(&good[&id]),
        )
        .await;
        assert_eq!(status, 200, "{alone}");
        assert_eq!(alone["usage"], usage, "{id}");
        for (j, v) in vectors.iter().enumerate() {
            let reference = numbers(&alone["data"][j]["embedding"]);
            let far = v.iter().zip(&reference).map(|(a, b)| (a - b).abs());
            assert!(far.fold(0.0, f32::max) < 1e-3, "{id} text {j}");
        }
    }
}
