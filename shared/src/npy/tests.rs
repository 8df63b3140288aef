//! Unit tests of the `.npy` reader.

use super::*;

/// A version 1.0 file as `numpy.save` writes it: the header padded with spaces to a
/// multiple of 64 bytes and ended by a newline.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_owned();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn reads_what_numpy_writes() {
    let data: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0, 0.0, f32::INFINITY]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let file = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &data,
    );
    let a = parse(&file).unwrap();
    assert_eq!(a.shape, [2, 3]);
    assert_eq!(
        a.data,
        TensorData::Fp32(vec![1.5, -2.0, 0.25, 8.0, 0.0, f32::INFINITY])
    );
}

#[test]
fn reads_every_supported_dtype_and_scalars() {
    let a = parse(&npy(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
        &(-3i64).to_le_bytes(),
    ))
    .unwrap();
    assert_eq!((a.shape, a.data), (vec![], TensorData::Int64(vec![-3])));
    let a = parse(&npy(
        "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
        &[1, 0, 1],
    ))
    .unwrap();
    assert_eq!(a.data, TensorData::Bool(vec![true, false, true]));
    let a = parse(&npy(
        "{\"descr\": \"<u2\", \"shape\": (1, 2), \"fortran_order\": False}",
        &[1, 0, 0, 1],
    ))
    .unwrap();
    assert_eq!(
        (a.shape, a.data),
        (vec![1, 2], TensorData::Uint16(vec![1, 256]))
    );
    let a = parse(&npy(
        "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }",
        &[0x00, 0x3C, 0x00, 0xC1],
    ))
    .unwrap();
    assert_eq!(
        a.data,
        TensorData::Fp16(vec![f16::ONE, f16::from_f32(-2.5)])
    );
    for (descr, dt) in [
        ("<f8", DataType::Fp64),
        ("|i1", DataType::Int8),
        ("<i2", DataType::Int16),
        ("<i4", DataType::Int32),
        ("|u1", DataType::Uint8),
        ("<u4", DataType::Uint32),
        ("<u8", DataType::Uint64),
    ] {
        assert_eq!(datatype(descr), Ok(dt), "{descr}");
    }
}

#[test]
fn reads_format_version_2() {
    let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }\n";
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&[2, 0]);
    file.extend_from_slice(&(header.len() as u32).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&7i32.to_le_bytes());
    assert_eq!(parse(&file).unwrap().data, TensorData::Int32(vec![7]));
}

#[test]
fn refuses_what_it_cannot_read_faithfully() {
    let cases = [
        (
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
            4,
            "big-endian",
        ),
        (
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
            8,
            "no inferq datatype",
        ),
        (
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }",
            8,
            "Fortran",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            8,
            "needs 12",
        ),
        (
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            4,
            "structured",
        ),
        ("{'descr': '<f4', 'shape': (1,), }", 4, "needs descr"),
        (
            "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }",
            1,
            "not a bool",
        ),
    ];
    for (header, len, want) in cases {
        let data = vec![2u8; len];
        let err = parse(&npy(header, &data)).unwrap_err();
        assert!(err.contains(want), "{header}: {err}");
    }
    assert!(parse(b"\x93NUMPY\x01").is_err());
    assert!(
        parse(b"\x93NUMPY\x01\x00\xff\x00{")
            .unwrap_err()
            .contains("truncated")
    );
    assert!(parse(b"PK\x03\x04").is_err());
}

mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a server sends, the reader answers with an array or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_headers_never_panic(header in "\\PC{0,120}", data in vec(any::<u8>(), 0..64)) {
            let _ = parse(&npy(&header, &data));
        }

        /// An array written as NumPy writes it reads back with its shape and exact bytes.
        #[test]
        fn written_arrays_read_back(dims in vec(0usize..4, 0..4), fill in any::<i32>()) {
            let count: usize = dims.iter().product();
            let data: Vec<u8> = (0..count)
                .flat_map(|i| fill.wrapping_add(i as i32).to_le_bytes())
                .collect();
            let shape = match dims.len() {
                1 => format!("({},)", dims[0]),
                _ => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
            };
            let file = npy(&format!("{{'descr': '<i4', 'fortran_order': False, 'shape': {shape}, }}"), &data);
            let raw = parse_raw(&file).unwrap();
            prop_assert_eq!(raw.datatype, DataType::Int32);
            prop_assert_eq!(raw.shape, dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
            prop_assert_eq!(raw.data, &data[..]);
            // One byte more or less is refused.
            prop_assert!(parse_raw(&file[..file.len().saturating_sub(1)]).is_err() || count == 0);
        }
    }
}
