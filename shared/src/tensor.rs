//! The KServe / Open Inference Protocol v2 JSON tensor: datatypes, a streaming parser for the
//! `data` array (flat or nested, checked against the datatype without building a `Value`), and
//! typed buffers the worker hands to ONNX Runtime.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Element types the service accepts and returns, spelled as in the Open Inference Protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp32,
    Fp64,
}

impl DataType {
    pub const ALL: [DataType; 11] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp32,
        Self::Fp64,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Rust element type that JSON numbers (or booleans) convert into exactly, or not at all.
pub trait Element: Copy + Serialize + Send + 'static {
    const DATATYPE: DataType;
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

macro_rules! int_element {
    ($t:ty, $dt:ident) => {
        impl Element for $t {
            const DATATYPE: DataType = DataType::$dt;
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    };
}
int_element!(u8, Uint8);
int_element!(u16, Uint16);
int_element!(u32, Uint32);
int_element!(u64, Uint64);
int_element!(i8, Int8);
int_element!(i16, Int16);
int_element!(i32, Int32);
int_element!(i64, Int64);

impl Element for f32 {
    const DATATYPE: DataType = DataType::Fp32;
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_f64(v: f64) -> Option<Self> {
        let f = v as f32;
        // A finite f64 beyond f32's range would silently become infinity.
        f.is_finite().then_some(f)
    }
}

impl Element for f64 {
    const DATATYPE: DataType = DataType::Fp64;
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Element for bool {
    const DATATYPE: DataType = DataType::Bool;
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

/// Where parsed elements go: a `Vec` in the worker, nowhere in the API (which only checks).
trait Sink<T> {
    fn push(&mut self, v: T);
}

impl<T> Sink<T> for Vec<T> {
    fn push(&mut self, v: T) {
        Vec::push(self, v)
    }
}

struct Discard;
impl<T> Sink<T> for Discard {
    fn push(&mut self, _: T) {}
}

/// Flattens a (possibly nested) JSON array of `T` into a sink, counting elements and rejecting
/// values that `T` cannot hold exactly.
struct Flatten<'s, T, S> {
    sink: &'s mut S,
    count: &'s mut usize,
    depth: usize,
    _t: std::marker::PhantomData<T>,
}

/// Deeper nesting than any real tensor has; bounds recursion on hostile input.
const MAX_DEPTH: usize = 32;

impl<'de, T: Element, S: Sink<T>> DeserializeSeed<'de> for Flatten<'_, T, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<T: Element, S: Sink<T>> Flatten<'_, T, S> {
    fn accept<E: de::Error>(&mut self, v: Option<T>, what: fmt::Arguments<'_>) -> Result<(), E> {
        match v {
            Some(v) => {
                self.sink.push(v);
                *self.count += 1;
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "{what} is not a valid {} value",
                T::DATATYPE
            ))),
        }
    }
}

impl<'de, T: Element, S: Sink<T>> Visitor<'de> for Flatten<'_, T, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} values", T::DATATYPE)
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        let t = T::from_u64(v);
        self.accept(t, format_args!("{v}"))
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        let t = T::from_i64(v);
        self.accept(t, format_args!("{v}"))
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        let t = T::from_f64(v);
        self.accept(t, format_args!("{v}"))
    }
    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        let t = T::from_bool(v);
        self.accept(t, format_args!("{v}"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom("data is nested too deeply"));
        }
        while seq
            .next_element_seed(Flatten::<T, S> {
                sink: &mut *self.sink,
                count: &mut *self.count,
                depth: self.depth + 1,
                _t: std::marker::PhantomData,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// Why a tensor's `data` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(String);

fn flatten_into<T: Element, S: Sink<T>>(raw: &RawValue, sink: &mut S) -> Result<usize, DataError> {
    if !raw.get().trim_start().starts_with('[') {
        return Err(DataError("data must be a JSON array".into()));
    }
    let mut count = 0;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Flatten::<T, S> {
        sink,
        count: &mut count,
        depth: 0,
        _t: std::marker::PhantomData,
    }
    .deserialize(&mut de)
    .map_err(|e| DataError(strip_position(e)))?;
    Ok(count)
}

/// serde_json's messages end in "at line 1 column N", which points into the data array alone
/// and would only confuse a client.
fn strip_position(e: serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// Checks that `raw` is an array of valid `datatype` values and returns how many it holds,
/// without allocating for the elements.
pub fn count_elements(datatype: DataType, raw: &RawValue) -> Result<usize, DataError> {
    macro_rules! count {
        ($t:ty) => {
            flatten_into::<$t, _>(raw, &mut Discard)
        };
    }
    match datatype {
        DataType::Bool => count!(bool),
        DataType::Uint8 => count!(u8),
        DataType::Uint16 => count!(u16),
        DataType::Uint32 => count!(u32),
        DataType::Uint64 => count!(u64),
        DataType::Int8 => count!(i8),
        DataType::Int16 => count!(i16),
        DataType::Int32 => count!(i32),
        DataType::Int64 => count!(i64),
        DataType::Fp32 => count!(f32),
        DataType::Fp64 => count!(f64),
    }
}

/// A tensor's elements in row-major order, typed by datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
}

/// Applies `$body` to the inner `Vec` of a `TensorData`, whatever its element type.
#[macro_export]
macro_rules! with_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::Uint8($v) => $body,
            $crate::tensor::TensorData::Uint16($v) => $body,
            $crate::tensor::TensorData::Uint32($v) => $body,
            $crate::tensor::TensorData::Uint64($v) => $body,
            $crate::tensor::TensorData::Int8($v) => $body,
            $crate::tensor::TensorData::Int16($v) => $body,
            $crate::tensor::TensorData::Int32($v) => $body,
            $crate::tensor::TensorData::Int64($v) => $body,
            $crate::tensor::TensorData::Fp32($v) => $body,
            $crate::tensor::TensorData::Fp64($v) => $body,
        }
    };
}

impl TensorData {
    /// Parses `raw` as `datatype` values, reserving `expected` elements up front.
    pub fn parse(datatype: DataType, raw: &RawValue, expected: usize) -> Result<Self, DataError> {
        macro_rules! parse {
            ($variant:ident) => {{
                let mut v = Vec::with_capacity(expected);
                flatten_into(raw, &mut v)?;
                TensorData::$variant(v)
            }};
        }
        Ok(match datatype {
            DataType::Bool => parse!(Bool),
            DataType::Uint8 => parse!(Uint8),
            DataType::Uint16 => parse!(Uint16),
            DataType::Uint32 => parse!(Uint32),
            DataType::Uint64 => parse!(Uint64),
            DataType::Int8 => parse!(Int8),
            DataType::Int16 => parse!(Int16),
            DataType::Int32 => parse!(Int32),
            DataType::Int64 => parse!(Int64),
            DataType::Fp32 => parse!(Fp32),
            DataType::Fp64 => parse!(Fp64),
        })
    }

    pub fn datatype(&self) -> DataType {
        fn dt<T: Element>(_: &[T]) -> DataType {
            T::DATATYPE
        }
        with_tensor_data!(self, v => dt(v))
    }

    pub fn len(&self) -> usize {
        with_tensor_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other`'s elements; both must hold the same datatype.
    pub fn extend_from(&mut self, other: &TensorData) -> bool {
        macro_rules! ext {
            ($($variant:ident),*) => {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => { a.extend_from_slice(b); true })*
                    _ => false,
                }
            };
        }
        ext!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp32, Fp64
        )
    }
}

/// A borrowed slice of elements of any supported type, serialized as a flat JSON array.
#[derive(Debug, Clone, Copy)]
pub enum DataRef<'a> {
    Bool(&'a [bool]),
    Uint8(&'a [u8]),
    Uint16(&'a [u16]),
    Uint32(&'a [u32]),
    Uint64(&'a [u64]),
    Int8(&'a [i8]),
    Int16(&'a [i16]),
    Int32(&'a [i32]),
    Int64(&'a [i64]),
    Fp32(&'a [f32]),
    Fp64(&'a [f64]),
}

impl DataRef<'_> {
    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::Uint8(_) => DataType::Uint8,
            Self::Uint16(_) => DataType::Uint16,
            Self::Uint32(_) => DataType::Uint32,
            Self::Uint64(_) => DataType::Uint64,
            Self::Int8(_) => DataType::Int8,
            Self::Int16(_) => DataType::Int16,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Fp32(_) => DataType::Fp32,
            Self::Fp64(_) => DataType::Fp64,
        }
    }
}

impl Serialize for DataRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bool(v) => v.serialize(s),
            Self::Uint8(v) => v.serialize(s),
            Self::Uint16(v) => v.serialize(s),
            Self::Uint32(v) => v.serialize(s),
            Self::Uint64(v) => v.serialize(s),
            Self::Int8(v) => v.serialize(s),
            Self::Int16(v) => v.serialize(s),
            Self::Int32(v) => v.serialize(s),
            Self::Int64(v) => v.serialize(s),
            Self::Fp32(v) => v.serialize(s),
            Self::Fp64(v) => v.serialize(s),
        }
    }
}

/// An output tensor as it goes on the wire, borrowing its data from wherever it lives.
#[derive(Debug, Serialize)]
pub struct OutputTensor<'a> {
    pub name: &'a str,
    pub shape: &'a [i64],
    pub datatype: DataType,
    pub data: DataRef<'a>,
}

/// A tensor as it arrives on the wire. `data` stays raw until a datatype is known for it.
#[derive(Debug, Deserialize)]
pub struct InputTensor<'a> {
    #[serde(borrow)]
    pub name: std::borrow::Cow<'a, str>,
    pub shape: Vec<i64>,
    #[serde(borrow)]
    pub datatype: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn nested_and_flat_data_parse_alike() {
        let flat = TensorData::parse(DataType::Fp32, &raw("[1, 2.5, -3, 4]"), 4).unwrap();
        let nested = TensorData::parse(DataType::Fp32, &raw("[[1, 2.5], [-3, 4]]"), 4).unwrap();
        assert_eq!(flat, TensorData::Fp32(vec![1.0, 2.5, -3.0, 4.0]));
        assert_eq!(flat, nested);
    }

    #[test]
    fn integers_are_range_checked_and_exact() {
        assert_eq!(
            count_elements(DataType::Int32, &raw("[1, -2, 2147483647]")).unwrap(),
            3
        );
        let err = count_elements(DataType::Int32, &raw("[2147483648]")).unwrap_err();
        assert_eq!(err.to_string(), "2147483648 is not a valid INT32 value");
        assert!(count_elements(DataType::Int64, &raw("[1.5]")).is_err());
        assert!(count_elements(DataType::Uint8, &raw("[-1]")).is_err());
        assert!(count_elements(DataType::Fp32, &raw("[1e300]")).is_err());
    }

    #[test]
    fn non_numeric_data_is_rejected() {
        assert!(count_elements(DataType::Fp32, &raw("[\"1\"]")).is_err());
        assert!(count_elements(DataType::Fp32, &raw("[null]")).is_err());
        assert!(count_elements(DataType::Fp32, &raw("[true]")).is_err());
        assert!(count_elements(DataType::Bool, &raw("[1]")).is_err());
        assert!(count_elements(DataType::Fp32, &raw("{\"a\": 1}")).is_err());
        assert!(count_elements(DataType::Fp32, &raw("3")).is_err());
        assert_eq!(
            count_elements(DataType::Bool, &raw("[true, false]")).unwrap(),
            2
        );
    }

    #[test]
    fn datatype_names_round_trip() {
        for dt in DataType::ALL {
            assert_eq!(DataType::parse(dt.as_str()), Some(dt));
            assert_eq!(serde_json::to_string(&dt).unwrap(), format!("\"{dt}\""));
        }
        assert_eq!(DataType::parse("FP16"), None);
    }

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
