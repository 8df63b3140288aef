//! The one table of tensor element types. Every per-datatype enum, name, parser and size in
//! the project is generated from [`for_each_datatype!`], so a new datatype is one line there
//! (plus a JSON [`Element`](crate::tensor::Element) impl for its Rust type).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Calls `$callback! { [$($args)*] Variant "NAME" size_in_bytes rust_type, ... }` with every
/// supported element type, spelled as in the Open Inference Protocol. Other crates generate
/// their own per-datatype code (ONNX Runtime conversions) from the same table.
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
            Fp32 "FP32" 4 f32,
            Fp64 "FP64" 8 f64,
        }
    };
}

macro_rules! define_datatypes {
    ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
        /// Element types the service accepts and returns.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum DataType {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl DataType {
            pub const ALL: &'static [DataType] = &[$(Self::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// Bytes one element takes in the raw little-endian encoding.
            pub fn size(self) -> usize {
                match self {
                    $(Self::$variant => $size,)*
                }
            }
        }

        /// A tensor's elements in row-major order, typed by datatype.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $($variant(Vec<$ty>),)*
        }

        impl TensorData {
            pub fn datatype(&self) -> DataType {
                match self {
                    $(Self::$variant(_) => DataType::$variant,)*
                }
            }

            pub fn len(&self) -> usize {
                match self {
                    $(Self::$variant(v) => v.len(),)*
                }
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// An empty buffer of `datatype` with room for `capacity` elements.
            pub fn with_capacity(datatype: DataType, capacity: usize) -> Self {
                match datatype {
                    $(DataType::$variant => Self::$variant(Vec::with_capacity(capacity)),)*
                }
            }

            /// Reads raw little-endian elements; `None` when the length is not a whole number
            /// of elements.
            pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Option<Self> {
                if bytes.len() % datatype.size() != 0 {
                    return None;
                }
                Some(match datatype {
                    $(DataType::$variant => Self::$variant(
                        bytes
                            .chunks_exact($size)
                            .map(|c| <$ty as LittleEndian>::read(c))
                            .collect(),
                    ),)*
                })
            }

            /// A borrowed view of the elements.
            pub fn as_data_ref(&self) -> DataRef<'_> {
                match self {
                    $(Self::$variant(v) => DataRef::$variant(v),)*
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
                    _ => false,
                }
            }
        }

        /// A borrowed slice of elements of any supported type.
        #[derive(Debug, Clone, Copy)]
        pub enum DataRef<'a> {
            $($variant(&'a [$ty]),)*
        }

        impl DataRef<'_> {
            pub fn datatype(&self) -> DataType {
                match self {
                    $(Self::$variant(_) => DataType::$variant,)*
                }
            }

            pub fn len(&self) -> usize {
                match self {
                    $(Self::$variant(v) => v.len(),)*
                }
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }

        impl DataRef<'_> {
            /// Appends the elements as raw little-endian bytes.
            pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
                match self {
                    $(Self::$variant(v) => {
                        out.reserve(v.len() * $size);
                        for x in v.iter() {
                            x.write(out);
                        }
                    })*
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
                }
            }
        }
    };
}

/// An element's raw little-endian form, the encoding tensors take inside the system.
pub trait LittleEndian: Sized {
    /// Reads one element from exactly its size in bytes.
    fn read(bytes: &[u8]) -> Self;
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! little_endian {
    // `tt`, not `ty`: the `bool` arms below must still see the bare token.
    ([] $($variant:ident $name:literal $size:literal $ty:tt,)*) => {
        $(impl LittleEndian for $ty {
            fn read(bytes: &[u8]) -> Self {
                let mut b = [0u8; $size];
                b.copy_from_slice(bytes);
                little_endian!(@read $ty, b)
            }
            fn write(self, out: &mut Vec<u8>) {
                little_endian!(@write $ty, self, out)
            }
        })*
    };
    (@read bool, $b:ident) => { $b[0] != 0 };
    (@read $ty:tt, $b:ident) => { <$ty>::from_le_bytes($b) };
    (@write bool, $v:ident, $out:ident) => { $out.push(u8::from($v)) };
    (@write $ty:tt, $v:ident, $out:ident) => { $out.extend_from_slice(&$v.to_le_bytes()) };
}

for_each_datatype!(little_endian);
for_each_datatype!(define_datatypes);

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        assert_eq!(DataType::parse("FP16"), None);
        assert_eq!(DataType::Int64.size(), std::mem::size_of::<i64>());
        assert_eq!(DataType::Fp32.size(), std::mem::size_of::<f32>());
    }

    #[test]
    fn little_endian_bytes_round_trip() {
        let cases = [
            TensorData::Fp32(vec![1.5, -0.0, f32::NAN]),
            TensorData::Int64(vec![-1, i64::MAX]),
            TensorData::Bool(vec![true, false]),
            TensorData::Uint16(vec![0xBEEF]),
        ];
        for data in cases {
            let mut bytes = Vec::new();
            data.as_data_ref().write_le_bytes(&mut bytes);
            assert_eq!(bytes.len(), data.len() * data.datatype().size());
            let back = TensorData::from_le_bytes(data.datatype(), &bytes).unwrap();
            assert_eq!(format!("{back:?}"), format!("{data:?}"));
        }
        assert_eq!(
            TensorData::from_le_bytes(DataType::Uint16, &[0xEF, 0xBE]),
            Some(TensorData::Uint16(vec![0xBEEF]))
        );
        assert_eq!(TensorData::from_le_bytes(DataType::Fp32, &[0, 0, 0]), None);
    }

    #[test]
    fn extend_refuses_a_different_datatype() {
        let mut a = TensorData::Fp32(vec![1.0]);
        assert!(a.extend_from(&TensorData::Fp32(vec![2.0])));
        assert!(!a.extend_from(&TensorData::Int64(vec![3])));
        assert_eq!(a, TensorData::Fp32(vec![1.0, 2.0]));
    }
}
