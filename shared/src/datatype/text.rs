//! BYTES elements in their raw form: each a u32 little-endian byte length, then that many
//! bytes of UTF-8 text without NUL (see [`datatype`](super)).

/// Bytes of the length that precedes each BYTES element.
pub(super) const LENGTH_PREFIX: usize = 4;

/// Whether a string can be a BYTES element: an ONNX string is a C string, so no NUL.
pub fn valid_text(s: &str) -> bool {
    !s.contains('\0')
}

/// Splits the first BYTES element off `bytes`: `None` when truncated or not text.
pub(super) fn split_text(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<LENGTH_PREFIX>()?;
    let (text, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    let text = std::str::from_utf8(text).ok().filter(|s| valid_text(s))?;
    Some((text, rest))
}

/// Every BYTES element in `bytes`, which must end where the last one does.
pub(super) fn read_texts(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (text, rest) = split_text(bytes)?;
        out.push(text.to_owned());
        bytes = rest;
    }
    Some(out)
}

pub(super) fn write_text(s: &str, out: &mut Vec<u8>) {
    // Request bodies are capped far below 4 GiB, and ONNX Runtime's outputs with them.
    let len = u32::try_from(s.len()).expect("a BYTES element is shorter than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use crate::datatype::{DataType, TensorData};

    #[test]
    fn bytes_are_length_prefixed_text() {
        let ab = [2, 0, 0, 0, b'a', b'b'];
        let two = [&ab[..], &[0, 0, 0, 0]].concat();
        assert_eq!(
            TensorData::from_le_bytes(DataType::Bytes, &two),
            Some(TensorData::Bytes(vec!["ab".into(), String::new()]))
        );
        // The walk finds where a given number of elements ends, whatever follows.
        assert_eq!(DataType::Bytes.encoded_len(1, &two), Some(6));
        assert_eq!(DataType::Bytes.encoded_len(2, &two), Some(10));
        assert_eq!(DataType::Bytes.encoded_len(3, &two), None);
        assert_eq!(DataType::Bytes.encoded_len(0, &two), Some(0));
        // Truncated prefix or element, not UTF-8, NUL: not BYTES an ONNX string can hold.
        for bad in [
            &[2, 0, 0][..],
            &[3, 0, 0, 0, b'a', b'b'],
            &[1, 0, 0, 0, 0xFF],
            &[1, 0, 0, 0, 0],
        ] {
            assert_eq!(
                TensorData::from_le_bytes(DataType::Bytes, bad),
                None,
                "{bad:?}"
            );
            assert_eq!(DataType::Bytes.encoded_len(1, bad), None, "{bad:?}");
        }
        assert_eq!(DataType::Fp16.encoded_len(2, &[0; 5]), Some(4));
        assert_eq!(DataType::Fp16.encoded_len(3, &[0; 5]), None);
        assert_eq!(DataType::Fp16.encoded_len(usize::MAX, &[0; 5]), None);
    }
}
