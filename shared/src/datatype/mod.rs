//! The one table of tensor element types. Every per-datatype enum, name, parser and size in
//! the project is generated from [`for_each_datatype!`], so a new fixed-size datatype is one
//! line there (plus a JSON [`Element`](crate::tensor::Element) impl for its Rust type).
//!
//! BYTES, the one variable-size datatype, is written out beside the table. Its raw form is the
//! Open Inference Protocol's: each element a u32 little-endian byte length, then that many
//! bytes. Inside inferq every BYTES tensor is an ONNX `string` tensor, which ONNX Runtime takes
//! as C strings and ort hands out as Rust `String`s: so an element is UTF-8 text without NUL,
//! checked wherever bytes enter the system (JSON strings, binary request chunks, frames), and
//! the worker never meets anything else.

use std::fmt;

pub use half::{bf16, f16};
use serde::{Deserialize, Serialize};

mod little_endian;
mod text;

pub use little_endian::LittleEndian;
pub use text::valid_text;
use text::{LENGTH_PREFIX, read_texts, split_text, write_text};

/// Calls `$callback! { [$($args)*] Variant "NAME" size_in_bytes rust_type, ... }` with every
/// fixed-size element type, spelled as in the Open Inference Protocol. Other crates generate
/// their own per-datatype code (ONNX Runtime conversions) from the same table.
///
/// BYTES is not a row: its elements have no fixed size and its Rust type (`String`) is not
/// `Copy`, so code generated per row (chunked little-endian reads, borrowed ONNX Runtime
/// buffers) cannot serve it. A callback that matches on [`DataType`], [`TensorData`] or
/// [`DataRef`] adds one `Bytes` arm by hand; the compiler's exhaustiveness check finds them all.
#[macro_export]
macro_rules! for_each_datatype {
    ($callback:ident $(, $($args:tt)*)?) => {
        $callback! {
            [$($($args)*)?]
            Bool "BOOL" 1 bool,
            Uint8 "UINT8" 1 u8,
            Uint16 "UINT16" 2 u16,
            Uint32 "UINT32" 4 u32,
            Uint64 "UINT64" 8 u64,
            Int8 "INT8" 1 i8,
            Int16 "INT16" 2 i16,
            Int32 "INT32" 4 i32,
            Int64 "INT64" 8 i64,
            Fp16 "FP16" 2 $crate::datatype::f16,
            Fp32 "FP32" 4 f32,
            Fp64 "FP64" 8 f64,
            Bf16 "BF16" 2 $crate::datatype::bf16,
        }
    };
}

macro_rules! define_datatypes {
    ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
        /// Element types the service accepts and returns.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum DataType {
            $(#[serde(rename = $name)] $variant,)*
            /// Variable-length strings (ONNX `string` tensors): UTF-8 text without NUL, raw
            /// form length-prefixed (see the module documentation).
            #[serde(rename = "BYTES")]
            Bytes,
        }

        impl DataType {
            pub const ALL: &'static [DataType] = &[$(Self::$variant,)* Self::Bytes];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                    Self::Bytes => "BYTES",
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    "BYTES" => Some(Self::Bytes),
                    _ => None,
                }
            }

            /// Bytes one element takes in the raw little-endian encoding; `None` for BYTES,
            /// whose elements vary in length.
            pub fn size(self) -> Option<usize> {
                match self {
                    $(Self::$variant => Some($size),)*
                    Self::Bytes => None,
                }
            }
        }

        /// A tensor's elements in row-major order, typed by datatype.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $($variant(Vec<$ty>),)*
            Bytes(Vec<String>),
        }

        impl TensorData {
            pub fn datatype(&self) -> DataType {
                self.as_data_ref().datatype()
            }

            pub fn len(&self) -> usize {
                self.as_data_ref().len()
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// An empty buffer of `datatype` with room for `capacity` elements.
            pub fn with_capacity(datatype: DataType, capacity: usize) -> Self {
                match datatype {
                    $(DataType::$variant => Self::$variant(Vec::with_capacity(capacity)),)*
                    DataType::Bytes => Self::Bytes(Vec::with_capacity(capacity)),
                }
            }

            /// Reads raw little-endian elements; `None` when the bytes are not a whole number
            /// of elements (or, for BYTES, hold an element that is not text).
            pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Option<Self> {
                if datatype.size().is_some_and(|size| !bytes.len().is_multiple_of(size)) {
                    return None;
                }
                Some(match datatype {
                    $(DataType::$variant => {
                        Self::$variant(
                            bytes
                                .chunks_exact($size)
                                .map(|c| <$ty as LittleEndian>::read(c))
                                .collect(),
                        )
                    })*
                    DataType::Bytes => Self::Bytes(read_texts(bytes)?),
                })
            }

            /// A borrowed view of the elements.
            pub fn as_data_ref(&self) -> DataRef<'_> {
                match self {
                    $(Self::$variant(v) => DataRef::$variant(v),)*
                    Self::Bytes(v) => DataRef::Bytes(v),
                }
            }

            /// Appends `other`'s elements; returns false (and appends nothing) when the
            /// datatypes differ.
            pub fn extend_from(&mut self, other: &TensorData) -> bool {
                match (self, other) {
                    $((Self::$variant(a), Self::$variant(b)) => {
                        a.extend_from_slice(b);
                        true
                    })*
                    (Self::Bytes(a), Self::Bytes(b)) => {
                        a.extend_from_slice(b);
                        true
                    }
                    _ => false,
                }
            }
        }

        /// A borrowed slice of elements of any supported type.
        #[derive(Debug, Clone, Copy)]
        pub enum DataRef<'a> {
            $($variant(&'a [$ty]),)*
            Bytes(&'a [String]),
        }

        impl DataRef<'_> {
            pub fn datatype(&self) -> DataType {
                match self {
                    $(Self::$variant(_) => DataType::$variant,)*
                    Self::Bytes(_) => DataType::Bytes,
                }
            }

            pub fn len(&self) -> usize {
                match self {
                    $(Self::$variant(v) => v.len(),)*
                    Self::Bytes(v) => v.len(),
                }
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Bytes [`DataRef::write_le_bytes`] writes.
            pub fn byte_len(&self) -> usize {
                match self {
                    $(Self::$variant(v) => v.len() * $size,)*
                    Self::Bytes(v) => v.iter().map(|s| LENGTH_PREFIX + s.len()).sum(),
                }
            }

            /// Appends the elements as raw little-endian bytes.
            pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
                out.reserve(self.byte_len());
                match self {
                    $(Self::$variant(v) => {
                        for x in v.iter() {
                            x.write(out);
                        }
                    })*
                    Self::Bytes(v) => {
                        for s in v.iter() {
                            write_text(s, out);
                        }
                    }
                }
            }
        }

        impl Serialize for DataRef<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                match self {
                    $(Self::$variant(v) => {
                        let mut seq = s.serialize_seq(Some(v.len()))?;
                        for x in v.iter() {
                            seq.serialize_element(&$crate::tensor::JsonElement(*x))?;
                        }
                        seq.end()
                    })*
                    Self::Bytes(v) => s.collect_seq(v.iter()),
                }
            }
        }
    };
}

for_each_datatype!(define_datatypes);

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DataType {
    /// Bytes the raw encoding of the first `count` elements in `bytes` takes; `None` when
    /// `bytes` holds fewer (or, for BYTES, an element that is not text). This is how a frame or
    /// a binary request is cut into tensors: BYTES tensors by walking their length prefixes.
    pub fn encoded_len(self, count: usize, bytes: &[u8]) -> Option<usize> {
        if let Some(size) = self.size() {
            return count.checked_mul(size).filter(|&n| n <= bytes.len());
        }
        let mut rest = bytes;
        for _ in 0..count {
            rest = split_text(rest)?.1;
        }
        Some(bytes.len() - rest.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_match_the_rust_types() {
        for &dt in DataType::ALL {
            assert_eq!(DataType::parse(dt.as_str()), Some(dt));
            assert_eq!(serde_json::to_string(&dt).unwrap(), format!("\"{dt}\""));
            assert_eq!(TensorData::with_capacity(dt, 0).datatype(), dt);
        }
        assert_eq!(DataType::parse("FP8"), None);
        assert_eq!(DataType::Int64.size(), Some(std::mem::size_of::<i64>()));
        assert_eq!(DataType::Fp32.size(), Some(std::mem::size_of::<f32>()));
        assert_eq!(DataType::Fp16.size(), Some(std::mem::size_of::<f16>()));
        assert_eq!(DataType::Bf16.size(), Some(std::mem::size_of::<bf16>()));
        assert_eq!(DataType::Bytes.size(), None);
    }

    #[test]
    fn extend_refuses_a_different_datatype() {
        let mut a = TensorData::Fp32(vec![1.0]);
        assert!(a.extend_from(&TensorData::Fp32(vec![2.0])));
        assert!(!a.extend_from(&TensorData::Int64(vec![3])));
        assert_eq!(a, TensorData::Fp32(vec![1.0, 2.0]));
        let mut s = TensorData::Bytes(vec!["a".into()]);
        assert!(s.extend_from(&TensorData::Bytes(vec!["b".into()])));
        assert!(!s.extend_from(&TensorData::Fp16(vec![f16::ZERO])));
        assert_eq!(s, TensorData::Bytes(vec!["a".into(), "b".into()]));
    }
}
