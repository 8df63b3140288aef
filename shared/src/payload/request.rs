//! A JSON job request becomes a binary payload: validated against the model and converted in
//! one pass over each `data` array; an input given by `url` is checked and listed in the
//! header, for the worker to fetch.

use super::{InputUrl, JobHeader, TensorHeader, encode_job};
use crate::datatype::DataType;
use crate::egress::{Allow, UrlError};
use crate::job::JobRequest;
use crate::model::{ModelInfo, ValidationError, element_count};
use crate::tensor::parse_le_bytes;

impl ModelInfo {
    /// Validates a JSON request against the model and converts it to the binary payload in the
    /// same pass: each `data` array is read once, straight into little-endian bytes. An input
    /// given by `url` is checked against `allow` as far as that can be done without a lookup
    /// (the worker checks the rest when it fetches it).
    pub fn encode_request(
        &self,
        req: &JobRequest<'_>,
        allow: &Allow,
    ) -> Result<Vec<u8>, ValidationError> {
        self.validate_structure(req)?;
        let mut inputs = Vec::with_capacity(req.inputs.len());
        let mut data = Vec::with_capacity(req.inputs.len());
        let mut urls = Vec::new();
        for t in &req.inputs {
            let datatype = DataType::parse(&t.datatype).expect("validated above");
            let expected = element_count(&t.shape).expect("validated above");
            let raw = match (&t.url, t.data) {
                (Some(url), None) => {
                    let url = check_input_url(&t.name, datatype, url, allow)?;
                    urls.push(InputUrl {
                        input: t.name.to_string(),
                        url,
                    });
                    inputs.push(TensorHeader {
                        name: t.name.to_string(),
                        datatype,
                        shape: t.shape.clone(),
                    });
                    data.push(Vec::new());
                    continue;
                }
                (None, Some(raw)) => raw,
                (url, _) => {
                    return Err(ValidationError::InvalidData {
                        name: t.name.to_string(),
                        message: if url.is_some() {
                            "give either data or url, not both".into()
                        } else {
                            "data (or url) is missing".into()
                        },
                    });
                }
            };
            let (bytes, got) = parse_le_bytes(datatype, raw, expected).map_err(|e| {
                ValidationError::InvalidData {
                    name: t.name.to_string(),
                    message: e.to_string(),
                }
            })?;
            Self::data_length(&t.name, &t.shape, got)?;
            inputs.push(TensorHeader {
                name: t.name.to_string(),
                datatype,
                shape: t.shape.clone(),
            });
            data.push(bytes);
        }
        let header = JobHeader {
            model: req.model.clone(),
            inputs,
            outputs: req
                .outputs
                .as_ref()
                .map(|o| o.iter().map(|o| o.name.clone()).collect()),
            parameters: req.parameters.clone(),
            urls,
        };
        Ok(encode_job(&header, &data))
    }
}

/// An input's `url`, checked: http(s), and not an address the guard refuses where that shows
/// without a lookup. BYTES inputs cannot come by URL (their elements have no fixed size to
/// read a raw body as).
fn check_input_url(
    name: &str,
    datatype: DataType,
    url: &str,
    allow: &Allow,
) -> Result<String, ValidationError> {
    if datatype == DataType::Bytes {
        return Err(ValidationError::InvalidUrl {
            name: name.to_owned(),
            message: "BYTES inputs cannot be given by url; send their data".into(),
        });
    }
    match allow.check_url(url) {
        Ok(url) => Ok(url.into()),
        Err(UrlError::Invalid(message)) => Err(ValidationError::InvalidUrl {
            name: name.to_owned(),
            message,
        }),
        Err(UrlError::NotAllowed(message)) => Err(ValidationError::UrlNotAllowed {
            name: name.to_owned(),
            message,
        }),
    }
}
