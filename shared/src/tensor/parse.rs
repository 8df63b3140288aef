//! The streaming parser of a JSON tensor's `data` array: flat or nested, checked against the
//! datatype element by element without building a `Value`, into a `Vec`, raw little-endian
//! bytes or nowhere (a check alone).

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{DataRef, DataType, Element, TensorData};

/// Where parsed elements go: a `Vec` in the worker, nowhere in the API (which only checks).
trait Sink<T> {
    fn push(&mut self, v: T);
}

impl<T> Sink<T> for Vec<T> {
    fn push(&mut self, v: T) {
        Vec::push(self, v)
    }
}

/// Writes elements as raw little-endian bytes.
struct LeBytes(Vec<u8>);
impl<T: crate::datatype::LittleEndian> Sink<T> for LeBytes {
    fn push(&mut self, v: T) {
        v.write(&mut self.0)
    }
}

/// BYTES elements take their raw form's length prefix.
impl Sink<String> for LeBytes {
    fn push(&mut self, v: String) {
        DataRef::Bytes(std::slice::from_ref(&v)).write_le_bytes(&mut self.0)
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
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        let t = T::from_str(v);
        self.accept(t, format_args!("{v:?}"))
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
        ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
            match datatype {
                $(DataType::$variant => flatten_into::<$ty, _>(raw, &mut Discard),)*
                DataType::Bytes => flatten_into::<String, _>(raw, &mut Discard),
            }
        };
    }
    crate::for_each_datatype!(count)
}

/// Parses `raw` as `datatype` values straight into raw little-endian bytes (the form tensors
/// take inside the system); returns them with the element count.
pub fn parse_le_bytes(
    datatype: DataType,
    raw: &RawValue,
    expected: usize,
) -> Result<(Vec<u8>, usize), DataError> {
    // BYTES: the JSON text's length is a fair guess at the raw form's.
    let expected = reservable(expected, raw);
    let capacity = datatype
        .size()
        .map_or(raw.get().len(), |size| expected.saturating_mul(size));
    let mut sink = LeBytes(Vec::with_capacity(capacity));
    macro_rules! parse {
        ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
            match datatype {
                $(DataType::$variant => flatten_into::<$ty, _>(raw, &mut sink)?,)*
                DataType::Bytes => flatten_into::<String, _>(raw, &mut sink)?,
            }
        };
    }
    let count = crate::for_each_datatype!(parse);
    Ok((sink.0, count))
}

/// Elements worth reserving for `raw`: what the shape says (`expected`), but never more than
/// its JSON text can hold (an element takes at least two bytes, `1,`), so a huge shape sent
/// with little data cannot make the process try to allocate it and abort.
fn reservable(expected: usize, raw: &RawValue) -> usize {
    expected.min(raw.get().len() / 2 + 1)
}

/// Parses `raw` as `datatype` values, reserving `expected` elements up front.
pub fn parse_data(
    datatype: DataType,
    raw: &RawValue,
    expected: usize,
) -> Result<TensorData, DataError> {
    let expected = reservable(expected, raw);
    macro_rules! parse {
        ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
            match datatype {
                $(DataType::$variant => {
                    let mut v = Vec::with_capacity(expected);
                    flatten_into::<$ty, _>(raw, &mut v)?;
                    TensorData::$variant(v)
                })*
                DataType::Bytes => {
                    let mut v = Vec::with_capacity(expected);
                    flatten_into::<String, _>(raw, &mut v)?;
                    TensorData::Bytes(v)
                }
            }
        };
    }
    Ok(crate::for_each_datatype!(parse))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn nested_and_flat_data_parse_alike() {
        let flat = parse_data(DataType::Fp32, &raw("[1, 2.5, -3, 4]"), 4).unwrap();
        let nested = parse_data(DataType::Fp32, &raw("[[1, 2.5], [-3, 4]]"), 4).unwrap();
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
    fn non_finite_floats_travel_as_strings_both_ways() {
        let data = parse_data(
            DataType::Fp32,
            &raw(r#"[1.5, "NaN", "Infinity", "-Infinity"]"#),
            4,
        )
        .unwrap();
        let TensorData::Fp32(v) = &data else {
            panic!("{data:?}")
        };
        assert!(v[1].is_nan() && v[2] == f32::INFINITY && v[3] == f32::NEG_INFINITY);
        assert_eq!(
            serde_json::to_string(&DataRef::Fp32(v)).unwrap(),
            r#"[1.5,"NaN","Infinity","-Infinity"]"#
        );
        assert_eq!(
            serde_json::to_string(&DataRef::Fp64(&[f64::NAN, -0.25])).unwrap(),
            r#"["NaN",-0.25]"#
        );
        assert!(count_elements(DataType::Fp64, &raw(r#"["nan"]"#)).is_err());
        assert!(count_elements(DataType::Int32, &raw(r#"["NaN"]"#)).is_err());
    }

    #[test]
    fn half_floats_round_to_nearest_and_render_as_numbers() {
        use crate::datatype::{bf16, f16};
        let data = parse_data(
            DataType::Fp16,
            &raw(r#"[0.1, 1, -2.5, 65504, "NaN", "-Infinity", 65519.99]"#),
            7,
        )
        .unwrap();
        let TensorData::Fp16(v) = &data else {
            panic!("{data:?}")
        };
        // 0.1 lies between the halves 0.0999755859375 and 0.10003662109375, nearer the first.
        assert_eq!(v[0].to_bits(), 0x2E66);
        assert_eq!(v[0].to_f64(), 0.0999755859375);
        assert_eq!(&v[1..4], &[f16::ONE, f16::from_f32(-2.5), f16::MAX]);
        assert!(v[4].is_nan() && v[5] == f16::NEG_INFINITY);
        assert_eq!(v[6], f16::MAX, "rounds down to the largest half");
        assert_eq!(
            serde_json::to_string(&data.as_data_ref()).unwrap(),
            r#"[0.099975586,1.0,-2.5,65504.0,"NaN","-Infinity",65504.0]"#
        );
        // Beyond the range, a finite number would become infinity: refused, as for FP32.
        let err = count_elements(DataType::Fp16, &raw("[65520]")).unwrap_err();
        assert_eq!(err.to_string(), "65520 is not a valid FP16 value");
        assert!(count_elements(DataType::Fp16, &raw("[true]")).is_err());
        assert!(count_elements(DataType::Fp16, &raw(r#"["1"]"#)).is_err());

        let data =
            parse_data(DataType::Bf16, &raw(r#"[1.00390625, 3e38, "Infinity"]"#), 3).unwrap();
        let TensorData::Bf16(v) = &data else {
            panic!("{data:?}")
        };
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one.
        assert_eq!(v[0], bf16::ONE);
        assert_eq!(v[1].to_f32(), 3.0040553e38);
        assert_eq!(
            serde_json::to_string(&data.as_data_ref()).unwrap(),
            r#"[1.0,3.0040553e+38,"Infinity"]"#
        );
        assert!(count_elements(DataType::Bf16, &raw("[1e39]")).is_err());
    }

    #[test]
    fn bytes_elements_are_strings() {
        let data = parse_data(
            DataType::Bytes,
            &raw(r#"[["a", "é\"x"], ["", "\u00ff"]]"#),
            4,
        )
        .unwrap();
        assert_eq!(
            data,
            TensorData::Bytes(vec!["a".into(), "é\"x".into(), String::new(), "ÿ".into()])
        );
        assert_eq!(
            serde_json::to_string(&data.as_data_ref()).unwrap(),
            r#"["a","é\"x","","ÿ"]"#
        );
        let (bytes, count) = parse_le_bytes(DataType::Bytes, &raw(r#"["ab", "é"]"#), 2).unwrap();
        assert_eq!(count, 2);
        assert_eq!(bytes, [2, 0, 0, 0, b'a', b'b', 2, 0, 0, 0, 0xC3, 0xA9]);
        assert_eq!(
            TensorData::from_le_bytes(DataType::Bytes, &bytes),
            Some(TensorData::Bytes(vec!["ab".into(), "é".into()]))
        );
        assert!(count_elements(DataType::Bytes, &raw("[1]")).is_err());
        assert!(count_elements(DataType::Bytes, &raw("[null]")).is_err());
        let err = count_elements(DataType::Bytes, &raw(r#"["a\u0000b"]"#)).unwrap_err();
        assert_eq!(err.to_string(), r#""a\0b" is not a valid BYTES value"#);
    }
}
