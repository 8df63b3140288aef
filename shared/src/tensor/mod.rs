//! The KServe / Open Inference Protocol v2 JSON tensor: the input and output tensors as they
//! travel, the streaming parser of their `data` ([`parse`]), and the JSON form of elements
//! ([`element`]). Non-finite floats travel as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"` (the protobuf JSON mapping's convention), both ways; BYTES elements are
//! strings.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod element;
mod parse;

pub use crate::datatype::{DataRef, DataType, TensorData};
pub use element::{Element, INFINITY, JsonElement, NAN, NEG_INFINITY};
pub use parse::{DataError, count_elements, parse_data, parse_le_bytes};

/// An output tensor as it goes on the wire, borrowing its data from wherever it lives.
#[derive(Debug, Serialize)]
pub struct OutputTensor<'a> {
    pub name: &'a str,
    pub shape: &'a [i64],
    pub datatype: DataType,
    pub data: DataRef<'a>,
}

/// A tensor as it arrives on the wire. `data` stays raw until a datatype is known for it.
/// Instead of `data`, a tensor may give a `url` the worker fetches its bytes from (raw
/// little-endian, or a `.npy` file).
#[derive(Debug, Deserialize)]
pub struct InputTensor<'a> {
    #[serde(borrow)]
    pub name: std::borrow::Cow<'a, str>,
    pub shape: Vec<i64>,
    #[serde(borrow)]
    pub datatype: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub url: Option<std::borrow::Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tensor_serializes_as_oip() {
        let t = OutputTensor {
            name: "y",
            shape: &[2],
            datatype: DataType::Int64,
            data: DataRef::Int64(&[1, -2]),
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"name":"y","shape":[2],"datatype":"INT64","data":[1,-2]}"#
        );
    }
}
