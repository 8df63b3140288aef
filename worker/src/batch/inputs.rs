//! Inputs by URL: before a job that has them joins a batch, the worker fetches each (all of
//! a job's at once, on tokio, never on an inference thread) and writes the job's payload anew
//! with their bytes, so the inference threads see an ordinary payload. A fetched body is
//! either the tensor's raw little-endian bytes or a `.npy` file (a body that starts with the
//! `.npy` magic), whose datatype and shape must be the input's.
//!
//! Retries: the fetch itself is retried on connection errors and 5xx answers (a few times,
//! within the job's attempt); a fetch that still fails ends the job (`input_fetch_failed`),
//! since running the job again would fetch the same URL again. Job attempts stay what they
//! are for: a worker that died.

use futures_util::future::join_all;
use inferq_shared::job::{ErrorCode, JobError};
use inferq_shared::model::element_count;
use inferq_shared::npy;
use inferq_shared::payload::{self, TensorHeader};

use crate::egress::{Egress, FetchError};

/// Whether a job payload has inputs to fetch.
pub(crate) fn has_urls(payload: &[u8]) -> bool {
    payload::is_job_frame(payload)
        && payload::decode_job(payload).is_ok_and(|(h, _)| !h.urls.is_empty())
}

/// Fetches a payload's URL inputs and returns the payload with their bytes in place.
pub(crate) async fn resolve(egress: &Egress, frame: &[u8]) -> Result<Vec<u8>, JobError> {
    let (mut header, parts) = payload::decode_job(frame).map_err(|e| {
        JobError::new(
            ErrorCode::InvalidRequest,
            format!("job payload is not readable: {e}"),
        )
    })?;
    let urls = std::mem::take(&mut header.urls);
    let mut data: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    let bodies = join_all(urls.iter().map(|u| egress.fetch(&u.url))).await;
    for (u, body) in urls.iter().zip(bodies) {
        let name = &u.input;
        let k = header
            .inputs
            .iter()
            .position(|t| &t.name == name)
            .ok_or_else(|| {
                JobError::new(
                    ErrorCode::InvalidRequest,
                    format!("input '{name}' is given by url but is not an input of the job"),
                )
            })?;
        let body = body.map_err(|e| match e {
            FetchError::NotAllowed(m) => {
                JobError::new(ErrorCode::UrlNotAllowed, format!("input '{name}': {m}"))
            }
            FetchError::Failed(m) => {
                JobError::new(ErrorCode::InputFetchFailed, format!("input '{name}': {m}"))
            }
        })?;
        data[k] = tensor_bytes(&header.inputs[k], body)?;
    }
    Ok(payload::encode_job(&header, &data))
}

/// A fetched body as the tensor's little-endian bytes, checked against its datatype and shape.
pub(crate) fn tensor_bytes(t: &TensorHeader, body: Vec<u8>) -> Result<Vec<u8>, JobError> {
    let name = &t.name;
    let fail = |code, message: String| JobError::new(code, format!("input '{name}': {message}"));
    if npy::is_npy(&body) {
        let raw = npy::parse_raw(&body)
            .map_err(|m| fail(ErrorCode::InvalidData, format!("the .npy file: {m}")))?;
        if raw.datatype != t.datatype {
            return Err(fail(
                ErrorCode::DatatypeMismatch,
                format!(
                    "the .npy file holds {}, the input is {}",
                    raw.datatype, t.datatype
                ),
            ));
        }
        if raw.shape != t.shape {
            return Err(fail(
                ErrorCode::ShapeMismatch,
                format!(
                    "the .npy file has shape {:?}, the input declares {:?}",
                    raw.shape, t.shape
                ),
            ));
        }
        return Ok(raw.data.to_vec());
    }
    let expected = t
        .datatype
        .size()
        .zip(element_count(&t.shape))
        .and_then(|(size, count)| size.checked_mul(count))
        .ok_or_else(|| {
            fail(
                ErrorCode::InvalidData,
                format!("{} inputs cannot be given by url", t.datatype),
            )
        })?;
    if body.len() != expected {
        return Err(fail(
            ErrorCode::DataLengthMismatch,
            format!(
                "the fetched body is {} bytes; shape {:?} of {} needs {expected}",
                body.len(),
                t.shape,
                t.datatype
            ),
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use inferq_shared::DataType;

    use super::*;

    fn header(datatype: DataType, shape: Vec<i64>) -> TensorHeader {
        TensorHeader {
            name: "x".into(),
            datatype,
            shape,
        }
    }

    fn npy_file(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn raw_bodies_must_be_exactly_the_tensor() {
        let t = header(DataType::Fp32, vec![2, 2]);
        assert_eq!(tensor_bytes(&t, vec![7; 16]).unwrap(), vec![7; 16]);
        let short = tensor_bytes(&t, vec![0; 15]).unwrap_err();
        assert_eq!(short.code, ErrorCode::DataLengthMismatch);
        assert_eq!(
            short.message,
            "input 'x': the fetched body is 15 bytes; shape [2, 2] of FP32 needs 16"
        );
        assert_eq!(
            tensor_bytes(&t, vec![0; 17]).unwrap_err().code,
            ErrorCode::DataLengthMismatch
        );
    }

    #[test]
    fn npy_bodies_must_match_datatype_and_shape() {
        let data: Vec<u8> = [1.5f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = header(DataType::Fp32, vec![1, 2]);
        let file = npy_file("<f4", "(1, 2)", &data);
        assert_eq!(tensor_bytes(&t, file).unwrap(), data);
        let wrong_shape = npy_file("<f4", "(2,)", &data);
        assert_eq!(
            tensor_bytes(&t, wrong_shape).unwrap_err().code,
            ErrorCode::ShapeMismatch
        );
        let wrong_type = npy_file("<i4", "(1, 2)", &data);
        assert_eq!(
            tensor_bytes(&t, wrong_type).unwrap_err().code,
            ErrorCode::DatatypeMismatch
        );
        let truncated = npy_file("<f4", "(1, 2)", &data[..7]);
        assert_eq!(
            tensor_bytes(&t, truncated).unwrap_err().code,
            ErrorCode::InvalidData
        );
    }
}
