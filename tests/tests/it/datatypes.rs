//! FP16 and BYTES end to end, through the `half` and `strings` test models: JSON jobs on
//! `POST /jobs`, and the Open Inference Protocol's binary extension on `/v2/.../infer`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{spawn_app, test_models};

const DONE: Duration = Duration::from_secs(60);

/// IEEE half bit patterns, written out so the test does not trust the code under test:
/// 1.0, 0.5, -2.5, 0.0 and their y = x * 2 + 1: 3.0, 2.0, -4.0, 1.0.
const X_BITS: [u16; 4] = [0x3C00, 0x3800, 0xC100, 0x0000];
const Y_BITS: [u16; 4] = [0x4200, 0x4000, 0xC400, 0x3C00];

/// OIP BYTES: each element a u32 little-endian length, then its bytes.
fn bytes_tensor(elements: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

#[tokio::test]
async fn fp16_and_bytes_jobs_return_exact_results() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "half,strings")]);
    app.wait_models(&["half", "strings"]).await;

    let (_, models) = app.get("/models").await;
    let find = |name: &str| {
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        find("half")["inputs"],
        json!([{"name": "x", "datatype": "FP16", "shape": [-1, 4]}])
    );
    assert_eq!(
        find("strings")["outputs"],
        json!([{"name": "upper", "datatype": "BYTES", "shape": [-1]}])
    );

    // 0.1 becomes the nearest half, 0.0999755859375; x * 2 + 1 = 1.199951171875 rounds to the
    // half 1.2001953125, written as the shortest f32 that reads back as it. 40000 * 2
    // overflows FP16.
    let half = app
        .submit(&json!({
            "model": "half",
            "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP16",
                        "data": [[1, 0.1, -2.5, "NaN"], [0, 30000, 40000, "-Infinity"]]}]
        }))
        .await;
    let strings = app
        .submit(&json!({
            "model": "strings",
            "inputs": [{"name": "s", "shape": [4], "datatype": "BYTES",
                        "data": ["hello", "World 1", "", "éa \"q\""]}]
        }))
        .await;
    let record = app.wait_done(&half, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(
        record["result"]["outputs"],
        json!([{"name": "y", "shape": [2, 4], "datatype": "FP16",
                "data": [3.0, 1.2001953, -4.0, "NaN", 1.0, 60000.0, "Infinity", "-Infinity"]}])
    );
    let record = app.wait_done(&strings, DONE).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(
        record["result"]["outputs"],
        json!([{"name": "upper", "shape": [4], "datatype": "BYTES",
                "data": ["HELLO", "WORLD 1", "", "ÉA \"Q\""]}])
    );

    // Values the datatypes cannot hold are refused before anything is queued.
    for (model, input, datatype, data, code) in [
        ("half", "x", "FP16", json!([1, 2, 3, 70000]), "invalid_data"),
        ("half", "x", "FP16", json!([1, 2, 3, "4"]), "invalid_data"),
        (
            "strings",
            "s",
            "BYTES",
            json!(["a", 1, "b", "c"]),
            "invalid_data",
        ),
        (
            "strings",
            "s",
            "BYTES",
            json!(["a", "b\u{0}", "c", "d"]),
            "invalid_data",
        ),
        (
            "strings",
            "s",
            "BYTES",
            json!(["a", "b", "c"]),
            "data_length_mismatch",
        ),
    ] {
        let shape = if model == "half" {
            json!([1, 4])
        } else {
            json!([4])
        };
        let body = json!({"model": model, "inputs": [
            {"name": input, "shape": shape, "datatype": datatype, "data": data}]});
        let (status, reply) = app.post_json("/jobs", &body).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}: {reply}"
        );
    }
}

/// Posts an OIP request with the binary extension: `header`, then `binary`.
async fn infer_binary(
    app: &crate::support::App,
    model: &str,
    header: &Value,
    binary: &[u8],
) -> (u16, Value, Vec<u8>) {
    let mut body = serde_json::to_vec(header).unwrap();
    let n = body.len();
    body.extend_from_slice(binary);
    let r = app
        .http
        .post(format!("{}/v2/models/{model}/infer", app.base))
        .header("Inference-Header-Content-Length", n)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let json_len: Option<usize> = r
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = r.bytes().await.unwrap();
    let json_len = json_len.unwrap_or(bytes.len());
    let head = serde_json::from_slice(&bytes[..json_len]).unwrap();
    (status, head, bytes[json_len..].to_vec())
}

#[tokio::test]
async fn fp16_and_bytes_travel_binary_through_the_oip_routes() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "half,strings")]);
    app.wait_models(&["half", "strings"]).await;

    // FP16: binary in, binary out; the same bytes as JSON numbers.
    let x: Vec<u8> = X_BITS.iter().flat_map(|b| b.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16", "parameters": {"binary_data_size": 8}}],
        "parameters": {"binary_data_output": true}
    });
    let (status, head, data) = infer_binary(&app, "half", &header, &x).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(head["outputs"][0]["datatype"], "FP16");
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
    let y: Vec<u16> = data
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(y, Y_BITS);
    let header = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16", "parameters": {"binary_data_size": 8}}]});
    let (status, head, data) = infer_binary(&app, "half", &header, &x).await;
    assert_eq!((status, data.len()), (200, 0), "{head}");
    assert_eq!(head["outputs"][0]["data"], json!([3.0, 2.0, -4.0, 1.0]));

    // BYTES: length-prefixed elements in, the same encoding out; or JSON strings out.
    let s = bytes_tensor(&[b"hello", b"", "éa".as_bytes()]);
    let header = json!({
        "inputs": [{"name": "s", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": s.len()}}],
        "outputs": [{"name": "upper", "parameters": {"binary_data": true}}]
    });
    let (status, head, data) = infer_binary(&app, "strings", &header, &s).await;
    assert_eq!(status, 200, "{head}");
    let want = bytes_tensor(&[b"HELLO", b"", "ÉA".as_bytes()]);
    assert_eq!(
        head["outputs"][0],
        json!({"name": "upper", "datatype": "BYTES", "shape": [3],
               "parameters": {"binary_data_size": want.len()}})
    );
    assert_eq!(data, want);
    let header = json!({"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": s.len()}}]});
    let (status, head, _) = infer_binary(&app, "strings", &header, &s).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(head["outputs"][0]["data"], json!(["HELLO", "", "ÉA"]));

    // A chunk with fewer elements than the shape, a truncated element, bytes that are not
    // UTF-8, a NUL: 400 with the protocol's error shape.
    for (shape, chunk) in [
        (4, s.clone()),
        (3, s[..s.len() - 1].to_vec()),
        (1, bytes_tensor(&[b"\xFF"])),
        (1, bytes_tensor(&[b"a\0b"])),
    ] {
        let header = json!({"inputs": [{"name": "s", "shape": [shape], "datatype": "BYTES",
                                         "parameters": {"binary_data_size": chunk.len()}}]});
        let (status, head, _) = infer_binary(&app, "strings", &header, &chunk).await;
        assert_eq!(status, 400, "{chunk:?}: {head}");
        assert!(
            head["error"].as_str().is_some_and(|m| m.contains("BYTES")),
            "{head}"
        );
    }
}
