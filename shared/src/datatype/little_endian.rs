//! The raw little-endian form of fixed-size elements, generated for every row of
//! [`for_each_datatype!`](crate::for_each_datatype).

/// An element's raw little-endian form, the encoding tensors take inside the system.
pub trait LittleEndian: Sized {
    /// Reads one element from exactly its size in bytes.
    fn read(bytes: &[u8]) -> Self;
    fn write(self, out: &mut Vec<u8>);
}

/// `bool`'s one byte (0 or 1; any non-zero reads as true) under the names the other element
/// types' own methods have, so that every row of the table generates the same code.
trait BoolBytes {
    fn from_le_bytes(b: [u8; 1]) -> Self;
    fn to_le_bytes(self) -> [u8; 1];
}

impl BoolBytes for bool {
    fn from_le_bytes(b: [u8; 1]) -> Self {
        b[0] != 0
    }
    fn to_le_bytes(self) -> [u8; 1] {
        [u8::from(self)]
    }
}

macro_rules! little_endian {
    ([] $($variant:ident $name:literal $size:literal $ty:ty,)*) => {
        $(impl LittleEndian for $ty {
            fn read(bytes: &[u8]) -> Self {
                let mut b = [0u8; $size];
                b.copy_from_slice(bytes);
                <$ty>::from_le_bytes(b)
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes())
            }
        })*
    };
}

crate::for_each_datatype!(little_endian);

#[cfg(test)]
mod tests {
    use crate::datatype::{DataType, TensorData, bf16, f16};

    #[test]
    fn little_endian_bytes_round_trip() {
        let cases = [
            TensorData::Fp32(vec![1.5, -0.0, f32::NAN]),
            TensorData::Int64(vec![-1, i64::MAX]),
            TensorData::Bool(vec![true, false]),
            TensorData::Uint16(vec![0xBEEF]),
            TensorData::Fp16(vec![f16::from_f32(1.5), f16::NEG_INFINITY, f16::MAX]),
            TensorData::Bf16(vec![bf16::from_f32(-2.0), bf16::MIN_POSITIVE]),
            TensorData::Bytes(vec!["héllo".into(), String::new(), "x".into()]),
        ];
        for data in cases {
            let mut bytes = Vec::new();
            let view = data.as_data_ref();
            view.write_le_bytes(&mut bytes);
            assert_eq!(bytes.len(), view.byte_len());
            if let Some(size) = data.datatype().size() {
                assert_eq!(bytes.len(), data.len() * size);
            }
            assert_eq!(
                data.datatype().encoded_len(data.len(), &bytes),
                Some(bytes.len())
            );
            let back = TensorData::from_le_bytes(data.datatype(), &bytes).unwrap();
            assert_eq!(format!("{back:?}"), format!("{data:?}"));
        }
        assert_eq!(
            TensorData::from_le_bytes(DataType::Uint16, &[0xEF, 0xBE]),
            Some(TensorData::Uint16(vec![0xBEEF]))
        );
        assert_eq!(
            TensorData::from_le_bytes(DataType::Fp16, &[0x00, 0x3C]),
            Some(TensorData::Fp16(vec![f16::ONE])),
            "IEEE half 1.0 is 0x3C00"
        );
        assert_eq!(
            TensorData::from_le_bytes(DataType::Bf16, &[0x80, 0x3F]),
            Some(TensorData::Bf16(vec![bf16::ONE])),
            "bfloat16 1.0 is 0x3F80"
        );
        assert_eq!(TensorData::from_le_bytes(DataType::Fp32, &[0, 0, 0]), None);
    }
}
