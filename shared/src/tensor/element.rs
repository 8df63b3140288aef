//! Element types as JSON values: which JSON numbers, booleans and strings convert exactly into
//! each Rust element type, and how each is written back. Non-finite floats are the strings
//! `"NaN"`, `"Infinity"` and `"-Infinity"`; FP16 and BF16 are numbers rounded to the nearest
//! representable value; BYTES elements are strings.

use serde::Serialize;

use crate::datatype::{DataType, bf16, f16, valid_text};

/// A Rust element type that JSON values convert into exactly, or not at all.
pub trait Element: Sized + Send + 'static {
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
    /// A JSON string standing for a value JSON numbers cannot spell (`"NaN"`, …).
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    /// Writes the element as JSON.
    fn serialize_json<S: serde::Serializer>(self, s: S) -> Result<S::Ok, S::Error>;
}

/// An element serialized with [`Element::serialize_json`].
#[derive(Debug, Clone, Copy)]
pub struct JsonElement<T>(pub T);

impl<T: Element + Copy> Serialize for JsonElement<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_json(s)
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
            fn serialize_json<S: serde::Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
                self.serialize(s)
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

/// The JSON strings for non-finite floats.
pub const NAN: &str = "NaN";
pub const INFINITY: &str = "Infinity";
pub const NEG_INFINITY: &str = "-Infinity";

fn special_float(s: &str) -> Option<f64> {
    match s {
        NAN => Some(f64::NAN),
        INFINITY => Some(f64::INFINITY),
        NEG_INFINITY => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn serialize_float<S: serde::Serializer>(v: f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str(NAN)
    } else if v == f64::INFINITY {
        s.serialize_str(INFINITY)
    } else if v == f64::NEG_INFINITY {
        s.serialize_str(NEG_INFINITY)
    } else {
        unreachable!("finite floats are serialized as numbers")
    }
}

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
    fn from_str(s: &str) -> Option<Self> {
        special_float(s).map(|v| v as f32)
    }
    fn serialize_json<S: serde::Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_finite() {
            s.serialize_f32(self)
        } else {
            serialize_float(f64::from(self), s)
        }
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
    fn from_str(s: &str) -> Option<Self> {
        special_float(s)
    }
    fn serialize_json<S: serde::Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_finite() {
            s.serialize_f64(self)
        } else {
            serialize_float(self, s)
        }
    }
}

/// FP16 and BF16: JSON numbers rounded to the nearest representable value (a finite number
/// beyond the type's range is refused, as for FP32), written back through `f32`, which holds
/// every value of both exactly.
macro_rules! half_element {
    ($t:ty, $dt:ident) => {
        impl Element for $t {
            const DATATYPE: DataType = DataType::$dt;
            fn from_u64(v: u64) -> Option<Self> {
                <Self as Element>::from_f64(v as f64)
            }
            fn from_i64(v: i64) -> Option<Self> {
                <Self as Element>::from_f64(v as f64)
            }
            fn from_f64(v: f64) -> Option<Self> {
                let h = <$t>::from_f64(v);
                (h.is_finite() || !v.is_finite()).then_some(h)
            }
            fn from_str(s: &str) -> Option<Self> {
                special_float(s).map(<$t>::from_f64)
            }
            fn serialize_json<S: serde::Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
                self.to_f32().serialize_json(s)
            }
        }
    };
}
half_element!(f16, Fp16);
half_element!(bf16, Bf16);

impl Element for bool {
    const DATATYPE: DataType = DataType::Bool;
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
    fn serialize_json<S: serde::Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self)
    }
}

/// BYTES: a JSON string is one element, its UTF-8 bytes (no NUL: an ONNX string is a C string).
impl Element for String {
    const DATATYPE: DataType = DataType::Bytes;
    fn from_str(s: &str) -> Option<Self> {
        valid_text(s).then(|| s.to_owned())
    }
    fn serialize_json<S: serde::Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self)
    }
}
