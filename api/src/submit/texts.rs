//! `text_embeddings` jobs: texts from a JSON list or a file part (one text per line, or JSON
//! Lines with ids), checked at the edge (none, too many, an empty text or a NUL is
//! `422 invalid_texts`), and made into a checked job whose upload holds the texts. Every face
//! that embeds texts (`POST /jobs`, the OpenAI routes) makes its job through
//! [`Desk::text_embeddings_job`].

use axum::body::Bytes;
use inferq_shared::embedding::{EmbeddingJob, EmbeddingSettings, TextBatch, check_texts};
use inferq_shared::pipeline::TEXT_EMBEDDINGS;
use inferq_shared::queue::keys::pipeline_queue;
use serde::Deserialize;

use super::{CheckedJob, Desk, JobOptions};
use crate::error::{ApiError, AppResult};

/// A job's texts as a face decoded them, not yet checked.
#[derive(Debug)]
pub(crate) struct Texts {
    pub(crate) texts: Vec<String>,
    pub(crate) ids: Option<Vec<String>>,
}

/// One line of a JSON Lines file of texts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    id: Option<String>,
    text: String,
}

/// Reads a `texts` file part: JSON Lines `{"id"?, "text"}` when its first non-blank line
/// starts with `{`, otherwise one text per line (`\n` or `\r\n`; a final newline ends the
/// last text rather than starting an empty one). Ids come all or none.
pub(crate) fn from_file(data: &[u8]) -> AppResult<Texts> {
    let bad = |m: String| ApiError::InvalidTexts(m);
    let text =
        std::str::from_utf8(data).map_err(|e| bad(format!("the texts file is not UTF-8: {e}")))?;
    let is_jsonl = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with('{'));
    if !is_jsonl {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let texts = if body.is_empty() {
            Vec::new()
        } else {
            body.split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
                .collect()
        };
        return Ok(Texts { texts, ids: None });
    }
    let (mut texts, mut ids) = (Vec::new(), Vec::new());
    let mut with_ids = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "line {} of the texts file is not a JSON object {{\"id\", \"text\"}}: {e}",
                n + 1
            ))
        })?;
        if *with_ids.get_or_insert(parsed.id.is_some()) != parsed.id.is_some() {
            return Err(bad(format!(
                "line {}: give an id on every line or on none",
                n + 1
            )));
        }
        if let Some(id) = parsed.id {
            ids.push(id);
        }
        texts.push(parsed.text);
    }
    let ids = (!ids.is_empty()).then_some(ids);
    Ok(Texts { texts, ids })
}

/// Bytes of a job's upload beyond its texts' JSON strings and the comma after each:
/// `{"texts":[` and `]}`, less the comma the last text does not have.
const UPLOAD_FRAME: usize = r#"{"texts":[]}"#.len() - 1;

/// Bytes of the texts in an upload: each JSON string and the comma after it.
fn texts_bytes(texts: &[String]) -> AppResult<usize> {
    let mut bytes = 0;
    for t in texts {
        let json = serde_json::to_string(t)
            .map_err(|e| ApiError::Internal(format!("encoding a text: {e}")))?;
        bytes += json.len() + 1;
    }
    Ok(bytes)
}

impl Desk<'_> {
    /// Checks texts by the rules of [`Desk::text_embeddings_job`] without making a job, for a
    /// face that packs several requests' texts into one job and must refuse each request on
    /// its own: the bytes the texts add to an upload (see [`Desk::upload_fits`]), or the error
    /// a job of them alone would have had.
    pub(crate) fn check_embedding_texts(&self, texts: &[String]) -> AppResult<usize> {
        check_texts(texts, None, self.config.max_embedding_texts)
            .map_err(|e| ApiError::InvalidTexts(e.0))?;
        let bytes = texts_bytes(texts)?;
        if !self.upload_fits(bytes) {
            return Err(ApiError::UploadTooLarge(self.config.max_upload_bytes));
        }
        Ok(bytes)
    }

    /// Whether texts of `text_bytes` (summed from [`Desk::check_embedding_texts`]) make an
    /// upload within `INFERQ_MAX_UPLOAD_BYTES`.
    pub(crate) fn upload_fits(&self, text_bytes: usize) -> bool {
        text_bytes + UPLOAD_FRAME <= self.config.max_upload_bytes
    }

    /// A `text_embeddings` job for the caller from texts (and an id per text): the texts are
    /// checked (`422 invalid_texts`) and become the job's upload; `413` when they are larger
    /// than `INFERQ_MAX_UPLOAD_BYTES`. The job has no deadline and no webhook; a face sets
    /// them on the returned job as it needs.
    pub(crate) fn text_embeddings_job(
        &self,
        texts: Vec<String>,
        ids: Option<Vec<String>>,
        settings: EmbeddingSettings,
    ) -> AppResult<CheckedJob> {
        check_texts(&texts, ids.as_deref(), self.config.max_embedding_texts)
            .map_err(|e| ApiError::InvalidTexts(e.0))?;
        let count = texts.len() as u64;
        let upload = serde_json::to_vec(&TextBatch { texts, ids })
            .map_err(|e| ApiError::Internal(format!("encoding texts: {e}")))?;
        if upload.len() > self.config.max_upload_bytes {
            return Err(ApiError::UploadTooLarge(self.config.max_upload_bytes));
        }
        let payload = serde_json::to_vec(&EmbeddingJob {
            pipeline: TEXT_EMBEDDINGS.to_owned(),
            settings,
            texts: count,
        })
        .map_err(|e| ApiError::Internal(format!("encoding a pipeline job: {e}")))?;
        Ok(self.job(
            pipeline_queue(TEXT_EMBEDDINGS),
            payload,
            JobOptions::default(),
            None,
            Some(Bytes::from(upload)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_bytes_add_up_to_the_upload() {
        for texts in [vec!["a"], vec!["a \"quoted\" text", "é\n\t", "\u{1}x"]] {
            let texts: Vec<String> = texts.into_iter().map(String::from).collect();
            let upload = serde_json::to_vec(&TextBatch {
                texts: texts.clone(),
                ids: None,
            })
            .unwrap();
            assert_eq!(texts_bytes(&texts).unwrap() + UPLOAD_FRAME, upload.len());
        }
    }

    #[test]
    fn a_file_is_lines_or_json_lines() {
        let t = from_file(b"one\r\ntwo\n").unwrap();
        assert_eq!((t.texts, t.ids), (vec!["one".into(), "two".into()], None));
        // An empty line is an empty text (refused later, with its index).
        let t = from_file(b"one\n\nthree").unwrap();
        assert_eq!(t.texts, vec!["one", "", "three"]);
        let t =
            from_file(b"{\"id\": \"a\", \"text\": \"x\"}\n\n{\"id\": \"b\", \"text\": \"y\"}\n")
                .unwrap();
        assert_eq!(t.texts, vec!["x", "y"]);
        assert_eq!(t.ids.unwrap(), vec!["a", "b"]);
        let t = from_file(b"{\"text\": \"x\"}\n").unwrap();
        assert!(t.ids.is_none());
        assert!(from_file(b"").unwrap().texts.is_empty());
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            &b"\xff\xfe"[..],
            b"{\"text\": 1}",
            b"{\"id\": \"a\", \"text\": \"x\"}\n{\"text\": \"y\"}",
            b"{\"text\": \"y\"}\n{\"id\": \"a\", \"text\": \"x\"}",
            b"{\"text\": \"y\", \"extra\": 1}",
        ] {
            assert!(
                matches!(from_file(bad), Err(ApiError::InvalidTexts(_))),
                "{bad:?}"
            );
        }
    }
}
