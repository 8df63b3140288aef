//! Reading NumPy `.npy` files (format versions 1.0, 2.0 and 3.0) whose dtype is one of the
//! service's datatypes: little-endian (or single-byte) `f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`, in C
//! order. The header is a Python dict literal with three known keys; a parser for exactly that
//! is shorter than the dependencies a general one brings (a Python-literal grammar, big
//! integers).

use crate::datatype::f16;
use crate::tensor::{DataType, TensorData};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A `.npy` array: its shape and its elements in row-major order.
#[derive(Debug)]
pub struct Npy {
    pub shape: Vec<i64>,
    pub data: TensorData,
}

pub fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// A `.npy` file's array without decoding its elements: shape, datatype and the raw
/// little-endian bytes (exactly `element count × datatype size` of them), which is the form
/// tensors take inside inferq.
#[derive(Debug)]
pub struct RawNpy<'a> {
    pub shape: Vec<i64>,
    pub datatype: DataType,
    pub data: &'a [u8],
}

/// Parses a whole `.npy` file; the error says what is wrong and, where it helps, how to save
/// the array so that it can be read.
pub fn parse(bytes: &[u8]) -> Result<Npy, String> {
    let raw = parse_raw(bytes)?;
    Ok(Npy {
        shape: raw.shape,
        data: decode(raw.datatype, raw.data)?,
    })
}

/// Parses a whole `.npy` file's header and checks that its data has the length the header
/// says, leaving the elements as bytes.
pub fn parse_raw(bytes: &[u8]) -> Result<RawNpy<'_>, String> {
    if !is_npy(bytes) {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, header_start): (usize, usize) = match bytes.get(6..8) {
        Some([1, 0]) if bytes.len() >= 10 => {
            (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10)
        }
        Some([2 | 3, 0]) if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        Some([major, minor]) => {
            return Err(format!("unsupported .npy format version {major}.{minor}"));
        }
        _ => return Err("truncated .npy header".into()),
    };
    let header_end = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(&bytes[header_start..header_end])
        .map_err(|_| "the .npy header is not text")?;
    let header = Header::parse(header)?;

    let datatype = datatype(&header.descr)?;
    if header.fortran_order && header.shape.len() > 1 {
        return Err(
            "Fortran-order arrays are not supported; save np.ascontiguousarray(a) instead".into(),
        );
    }
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("the shape's element count overflows")?;
    let data = &bytes[header_end..];
    let expected = datatype.size().and_then(|size| count.checked_mul(size));
    if expected != Some(data.len()) {
        return Err(format!(
            "the file holds {} bytes of data; shape {:?} of '{}' needs {}",
            data.len(),
            header.shape,
            header.descr,
            expected.map_or_else(|| "more".to_owned(), |n| n.to_string()),
        ));
    }
    let shape = header
        .shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| "a dimension is too large".to_owned()))
        .collect::<Result<_, _>>()?;
    Ok(RawNpy {
        shape,
        datatype,
        data,
    })
}

/// The service datatype of a NumPy type string such as `<f4`.
fn datatype(descr: &str) -> Result<DataType, String> {
    let (order, kind) = descr.split_at(descr.chars().next().map_or(0, char::len_utf8));
    let datatype = match kind {
        "f2" => DataType::Fp16,
        "f4" => DataType::Fp32,
        "f8" => DataType::Fp64,
        "i1" => DataType::Int8,
        "i2" => DataType::Int16,
        "i4" => DataType::Int32,
        "i8" => DataType::Int64,
        "u1" => DataType::Uint8,
        "u2" => DataType::Uint16,
        "u4" => DataType::Uint32,
        "u8" => DataType::Uint64,
        "b1" => DataType::Bool,
        _ => {
            return Err(format!(
                "dtype '{descr}' has no inferq datatype (supported: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)"
            ));
        }
    };
    match order {
        "<" => Ok(datatype),
        // NumPy writes `|` (byte order not applicable) for one-byte types.
        "|" if datatype.size() == Some(1) => Ok(datatype),
        ">" if datatype.size() == Some(1) => Ok(datatype),
        ">" => Err(format!(
            "dtype '{descr}' is big-endian; save a.astype('<{kind}') instead"
        )),
        _ => Err(format!("dtype '{descr}' has no byte order NumPy writes")),
    }
}

/// Little-endian bytes (their length a whole number of elements) as typed elements.
fn decode(datatype: DataType, bytes: &[u8]) -> Result<TensorData, String> {
    macro_rules! le {
        ($variant:ident, $ty:ty) => {
            TensorData::$variant(
                bytes
                    .chunks_exact(size_of::<$ty>())
                    .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunks are exact")))
                    .collect(),
            )
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            bytes
                .iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(format!("{b} is not a bool (0 or 1)")),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Uint16 => le!(Uint16, u16),
        DataType::Uint32 => le!(Uint32, u32),
        DataType::Uint64 => le!(Uint64, u64),
        DataType::Int8 => le!(Int8, i8),
        DataType::Int16 => le!(Int16, i16),
        DataType::Int32 => le!(Int32, i32),
        DataType::Int64 => le!(Int64, i64),
        DataType::Fp16 => le!(Fp16, f16),
        DataType::Fp32 => le!(Fp32, f32),
        DataType::Fp64 => le!(Fp64, f64),
        DataType::Bf16 | DataType::Bytes => {
            return Err(format!("no .npy dtype maps to {datatype}"));
        }
    })
}

/// The header dict: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value in the header dict.
#[derive(Debug)]
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl Header {
    fn parse(text: &str) -> Result<Self, String> {
        let mut p = Cursor {
            rest: text.trim_end_matches(['\n', ' ', '\0']),
        };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect('{')?;
        while !p.eat('}') {
            let key = match p.literal()? {
                Literal::Str(key) => key,
                other => return Err(format!("bad .npy header: key {other:?}")),
            };
            p.expect(':')?;
            match (key.as_str(), p.literal()?) {
                ("descr", Literal::Str(s)) => descr = Some(s),
                ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
                ("shape", Literal::Tuple(dims)) => shape = Some(dims),
                (key, value) => {
                    return Err(format!("bad .npy header: {key} = {value:?}"));
                }
            }
            if !p.eat(',') {
                p.expect('}')?;
                break;
            }
        }
        if !p.rest.trim().is_empty() {
            return Err("bad .npy header: text after the dict".into());
        }
        match (descr, fortran_order, shape) {
            (Some(descr), Some(fortran_order), Some(shape)) => Ok(Self {
                descr,
                fortran_order,
                shape,
            }),
            _ => Err("bad .npy header: it needs descr, fortran_order and shape".into()),
        }
    }
}

/// What is left of the header text to parse.
struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// Consumes `c` (after blanks) if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            let near: String = self.rest.chars().take(20).collect();
            Err(format!("bad .npy header: expected '{c}' at '{near}'"))
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        self.skip_space();
        if let Some(quote) = self.rest.chars().next().filter(|c| matches!(c, '\'' | '"')) {
            let body = &self.rest[1..];
            let end = body
                .find(quote)
                .ok_or("bad .npy header: unterminated string")?;
            self.rest = &body[end + 1..];
            return Ok(Literal::Str(body[..end].to_owned()));
        }
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(Literal::Bool(value));
            }
        }
        if self.eat('(') {
            let mut dims = Vec::new();
            while !self.eat(')') {
                dims.push(self.int()?);
                if !self.eat(',') {
                    self.expect(')')?;
                    break;
                }
            }
            return Ok(Literal::Tuple(dims));
        }
        if self.rest.starts_with('[') {
            return Err("structured (record) dtypes are not supported".into());
        }
        let near: String = self.rest.chars().take(20).collect();
        Err(format!("bad .npy header: unexpected value at '{near}'"))
    }

    fn int(&mut self) -> Result<usize, String> {
        self.skip_space();
        let digits = self.rest.len()
            - self
                .rest
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        let n = self.rest[..digits]
            .parse()
            .map_err(|_| format!("bad .npy header: expected a number at '{}'", self.rest))?;
        self.rest = &self.rest[digits..];
        // Python 2 wrote long integers with an `L` suffix.
        self.rest = self.rest.strip_prefix('L').unwrap_or(self.rest);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
