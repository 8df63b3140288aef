//! Stored results: the result frame a worker writes (with the compact binary header, `IQR2`)
//! and reads back (either header form), and its JSON rendering for a client.

use serde::Serialize;

use super::{
    FrameError, RESULT_MAGIC, RESULT_MAGIC_COMPACT, ResultHeader, TensorHeader, frame, unframe,
};
use crate::datatype::{DataType, TensorData};
use crate::model::element_count;
use crate::tensor::OutputTensor;

/// Builds a result frame; `write` appends each output's bytes in `outputs` order.
///
/// The compact header: the number of outputs (u8), then per output its name (u8 length, then
/// UTF-8), its datatype (u8: the index in [`DataType::ALL`]) and its shape (u8 rank, then each
/// dimension as an unsigned LEB128 varint). Outputs beyond what it can say (more than 255, a
/// name over 255 bytes, a negative dimension) are written with a JSON header instead.
pub fn encode_result(
    outputs: Vec<TensorHeader>,
    data_len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = match compact_header(&outputs, data_len) {
        Some(out) => out,
        None => frame(RESULT_MAGIC, &ResultHeader { outputs }, data_len),
    };
    write(&mut out);
    out
}

fn compact_header(outputs: &[TensorHeader], data_len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(5 + outputs.len() * 12 + data_len);
    out.extend_from_slice(RESULT_MAGIC_COMPACT);
    out.push(u8::try_from(outputs.len()).ok()?);
    for t in outputs {
        out.push(u8::try_from(t.name.len()).ok()?);
        out.extend_from_slice(t.name.as_bytes());
        let code = DataType::ALL.iter().position(|d| *d == t.datatype)?;
        out.push(u8::try_from(code).ok()?);
        out.push(u8::try_from(t.shape.len()).ok()?);
        for &dim in &t.shape {
            let mut v = u64::try_from(dim).ok()?;
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
    }
    Some(out)
}

/// Reads a compact result header; returns it and the bytes after it.
fn read_compact_header(mut b: &[u8]) -> Result<(ResultHeader, &[u8]), FrameError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
        let (head, rest) = b
            .split_at_checked(n)
            .ok_or(FrameError("truncated header"))?;
        *b = rest;
        Ok(head)
    }
    let byte = |b: &mut &[u8]| take(b, 1).map(|v| v[0]);
    let count = byte(&mut b)?;
    let mut outputs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = byte(&mut b)? as usize;
        let name = std::str::from_utf8(take(&mut b, len)?)
            .map_err(|_| FrameError("bad header"))?
            .to_owned();
        let datatype = *DataType::ALL
            .get(byte(&mut b)? as usize)
            .ok_or(FrameError("bad header"))?;
        let rank = byte(&mut b)?;
        let mut shape = Vec::with_capacity(rank as usize);
        for _ in 0..rank {
            let (mut v, mut shift) = (0u64, 0u32);
            loop {
                let byte = byte(&mut b)?;
                if shift > 56 {
                    return Err(FrameError("bad header"));
                }
                v |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            shape.push(i64::try_from(v).map_err(|_| FrameError("bad header"))?);
        }
        outputs.push(TensorHeader {
            name,
            datatype,
            shape,
        });
    }
    Ok((ResultHeader { outputs }, b))
}

/// A binary result's header and each output's bytes (either header form).
pub fn decode_result(bytes: &[u8]) -> Result<(ResultHeader, Vec<&[u8]>), FrameError> {
    let Some(rest) = bytes.strip_prefix(RESULT_MAGIC_COMPACT.as_slice()) else {
        return unframe(
            RESULT_MAGIC,
            bytes,
            |h: &ResultHeader| &h.outputs,
            |_, _| false,
        );
    };
    let (header, mut data) = read_compact_header(rest)?;
    let mut parts = Vec::with_capacity(header.outputs.len());
    for t in &header.outputs {
        let count = element_count(&t.shape).ok_or(FrameError("invalid shape"))?;
        let n = t
            .datatype
            .encoded_len(count, data)
            .ok_or(FrameError("truncated or malformed data"))?;
        let (part, rest) = data.split_at(n);
        parts.push(part);
        data = rest;
    }
    if !data.is_empty() {
        return Err(FrameError("trailing bytes"));
    }
    Ok((header, parts))
}

/// Renders a binary result as `{"outputs": [<JSON tensor>, ...]}` for a client.
pub fn result_to_json(bytes: &[u8]) -> Result<String, FrameError> {
    let (header, parts) = decode_result(bytes)?;
    let data: Vec<TensorData> = header
        .outputs
        .iter()
        .zip(&parts)
        .map(|(t, b)| TensorData::from_le_bytes(t.datatype, b).ok_or(FrameError("bad data length")))
        .collect::<Result<_, _>>()?;
    #[derive(Serialize)]
    struct Outputs<'a> {
        outputs: Vec<OutputTensor<'a>>,
    }
    let out = Outputs {
        outputs: header
            .outputs
            .iter()
            .zip(&data)
            .map(|(t, d)| OutputTensor {
                name: &t.name,
                shape: &t.shape,
                datatype: t.datatype,
                data: d.as_data_ref(),
            })
            .collect(),
    };
    Ok(serde_json::to_string(&out).expect("outputs always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_result_fits_a_compact_hash_value_and_reads_back() {
        let outputs = vec![TensorHeader {
            name: "output".into(),
            datatype: DataType::Fp32,
            shape: vec![1, 10],
        }];
        let data: Vec<u8> = (0..10u8).flat_map(|i| f32::from(i).to_le_bytes()).collect();
        let compact = encode_result(outputs.clone(), data.len(), |o| o.extend_from_slice(&data));
        assert!(compact.len() <= 64, "{} bytes", compact.len());
        let (header, parts) = decode_result(&compact).unwrap();
        assert_eq!((header.outputs, parts), (outputs.clone(), vec![&data[..]]));
        // Results written with a JSON header still read.
        let mut old = frame(RESULT_MAGIC, &ResultHeader { outputs }, data.len());
        old.extend_from_slice(&data);
        assert_eq!(
            result_to_json(&old).unwrap(),
            result_to_json(&compact).unwrap()
        );
        // The datatype codes are positions in `DataType::ALL`: stored results depend on them.
        let names: Vec<&str> = DataType::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            names,
            [
                "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                "FP16", "FP32", "FP64", "BF16", "BYTES"
            ]
        );
        // Large dimensions take several varint bytes and come back whole.
        let big = vec![TensorHeader {
            name: "x".into(),
            datatype: DataType::Uint8,
            shape: vec![0, 300, 1 << 40],
        }];
        let compact = encode_result(big.clone(), 0, |_| {});
        assert_eq!(decode_result(&compact).unwrap().0.outputs, big);
    }
}
