//! Property tests of the parsers that see client bytes: a JSON job request (serde and the
//! streaming tensor parser behind `encode_request`) and the binary frames (`decode_job`,
//! `decode_result`, `result_to_json`). Any input gives a value or an error, never a panic
//! (and never an abort from allocating what a huge declared shape asks for).

use proptest::prelude::*;
use serde_json::json;

use crate::DataType;
use crate::job::JobRequest;
use crate::model::{ModelInfo, TensorSpec};
use crate::payload::{TensorHeader, decode_job, decode_result, encode_job, result_to_json};
use crate::tensor::TensorData;

/// A model with one input `x` of `datatype`, shape `[-1, -1]`: requests that name `x` get past
/// the structural checks into the data parser.
fn model(datatype: DataType) -> ModelInfo {
    ModelInfo {
        name: "m".into(),
        description: None,
        inputs: vec![TensorSpec {
            name: "x".into(),
            datatype,
            shape: vec![-1, -1],
        }],
        outputs: vec![],
        batching: false,
        max_batch_size: 1,
        sha256: None,
    }
}

fn datatypes() -> impl Strategy<Value = DataType> {
    prop::sample::select(DataType::ALL.to_vec())
}

/// Parses `bytes` as a request and encodes it for every datatype: a value or an error.
fn parse_and_encode(bytes: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<JobRequest<'_>>(bytes) {
        for &dt in DataType::ALL {
            let _ = model(dt).encode_request(&req, &crate::egress::Allow::default());
        }
    }
}

/// Fragments of the request grammar glued at random, so inputs reach deep into the parsers
/// rather than failing at the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "[",
        "]",
        ",",
        "{",
        "}",
        ":",
        " ",
        "\"model\"",
        "\"m\"",
        "\"inputs\"",
        "\"name\"",
        "\"x\"",
        "\"shape\"",
        "\"datatype\"",
        "\"data\"",
        "\"FP32\"",
        "\"INT8\"",
        "\"BOOL\"",
        "\"BYTES\"",
        "\"FP16\"",
        "\"BF16\"",
        "\"UINT64\"",
        "1",
        "-1",
        "0",
        "2.5",
        "1e308",
        "1e999",
        "-0",
        "\"NaN\"",
        "\"Infinity\"",
        "\"-Infinity\"",
        "true",
        "false",
        "null",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "9223372036854775808",
        "18446744073709551616",
        "4611686018427387904",
        "\"outputs\"",
        "\"parameters\"",
        "\"timeout_ms\"",
        "\"deadline\"",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat())
}

/// A JSON value that may stand in `data`: numbers, strings, bools, nested arrays.
fn data_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        any::<f64>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        any::<bool>().prop_map(|b| json!(b)),
        ".{0,8}".prop_map(|s| json!(s)),
        Just(json!(null)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop::collection::vec(inner, 0..8).prop_map(serde_json::Value::Array)
    })
}

fn shape() -> impl Strategy<Value = Vec<i64>> {
    let dim = prop_oneof![-2i64..6, Just(i64::MAX), Just(1 << 62), Just(1 << 31),];
    prop::collection::vec(dim, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_give_a_request_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_and_encode(&bytes);
    }

    #[test]
    fn request_like_text_gives_a_request_or_an_error(text in jsonish()) {
        parse_and_encode(text.as_bytes());
    }

    #[test]
    fn any_shape_and_data_give_a_frame_or_an_error(
        dt in datatypes(),
        shape in shape(),
        data in prop::collection::vec(data_value(), 0..6),
    ) {
        let body = json!({"model": "m", "inputs": [
            {"name": "x", "shape": shape, "datatype": dt.as_str(), "data": data}
        ]})
        .to_string();
        let req: JobRequest<'_> = serde_json::from_str(&body).unwrap();
        if let Ok(frame) = model(dt).encode_request(&req, &crate::egress::Allow::default()) {
            // What was accepted decodes back to the declared shape.
            let (header, parts) = decode_job(&frame).unwrap();
            prop_assert_eq!(&header.inputs[0].shape, &shape);
            prop_assert!(TensorData::from_le_bytes(dt, parts[0]).is_some());
        }
    }

    #[test]
    fn fp32_data_round_trips(rows in 1usize..4, values in prop::collection::vec(-1e30f32..1e30, 1..12)) {
        let cols = values.len();
        let data: Vec<f32> = values.iter().copied().cycle().take(rows * cols).collect();
        let body = json!({"model": "m", "inputs": [
            {"name": "x", "shape": [rows, cols], "datatype": "FP32", "data": data}
        ]})
        .to_string();
        let req: JobRequest<'_> = serde_json::from_str(&body).unwrap();
        let frame = model(DataType::Fp32).encode_request(&req, &crate::egress::Allow::default()).unwrap();
        let (_, parts) = decode_job(&frame).unwrap();
        let Some(TensorData::Fp32(back)) = TensorData::from_le_bytes(DataType::Fp32, parts[0])
        else {
            panic!("not FP32");
        };
        prop_assert_eq!(back, data);
    }

    #[test]
    fn any_bytes_decode_to_a_frame_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_job(&bytes);
        let _ = decode_result(&bytes);
        let _ = result_to_json(&bytes);
    }

    #[test]
    fn damaged_frames_decode_or_fail(
        cut in 0usize..200,
        flips in prop::collection::vec((0usize..200, any::<u8>()), 0..6),
        magic in prop::sample::select(vec![*b"IQJ1", *b"IQR1"]),
    ) {
        let header = crate::payload::JobHeader {
            model: "m".into(),
            inputs: vec![TensorHeader { name: "x".into(), datatype: DataType::Fp32, shape: vec![1, 2] }],
            outputs: None,
            parameters: None,
            urls: Vec::new(),
        };
        let mut frame = encode_job(&header, &[[0u8; 8]]);
        frame[..4].copy_from_slice(&magic);
        for (i, b) in flips {
            if let Some(x) = frame.get_mut(i) {
                *x = b;
            }
        }
        frame.truncate(cut.min(frame.len()));
        let _ = decode_job(&frame);
        let _ = decode_result(&frame);
        let _ = result_to_json(&frame);
    }
}
