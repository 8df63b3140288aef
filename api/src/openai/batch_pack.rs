//! A batch's requests packed into jobs: each good line's texts are checked on their own first
//! (a request that a job of its own would refuse fails alone, never its pack mates), then
//! consecutive requests are packed into `text_embeddings` jobs of up to [`PACK_TEXTS`] texts,
//! made and enqueued through the one submission path. Each request records its job and where
//! its texts sit in it, so the job's result splits back into one response per request
//! (`batch_output`).

use futures_util::StreamExt;
use inferq_shared::embedding::{EmbeddingSettings, EncodingFormat};
use inferq_shared::queue::Submitted;

use super::batch_input::{Line, LineError, Part, Request};
use crate::error::{ApiError, OpenAiError};
use crate::submit::{CheckedJob, Desk};

/// Most texts in one packed job (a request with more has a job of its own).
///
/// A request per job made every text pay the whole job path (about 450 µs of API, Redis and
/// worker time on a 2-core machine) and starved the embedding engine: a worker holds at most
/// `INFERQ_EMBEDDING_CONCURRENCY` jobs, so its pool held a few texts per ONNX Runtime run. A
/// worker takes jobs until 256 texts wait in its engine, so with packs of 64 it holds four or
/// five and its pool is as full as with any larger pack, while the job path costs ~7 µs a text
/// (well under 0.1% of its inference). Larger packs would gain nothing and cost elsewhere: a
/// batch spreads over workers in pieces of this size (its end is one worker finishing its last
/// packs while another idles), a killed worker's packs are redone whole, and `request_counts`
/// grow one pack at a time.
pub(crate) const PACK_TEXTS: usize = 64;

/// Jobs enqueued at a time while a batch starts.
const SUBMIT_CONCURRENCY: usize = 32;

/// The texts of one job being packed, and whose they are.
#[derive(Debug, Default)]
struct Pack {
    /// The indices of its requests among the batch's.
    members: Vec<usize>,
    texts: Vec<String>,
    /// What the texts take in the job's upload.
    bytes: usize,
}

/// Checks each good line's texts, packs the requests into jobs and enqueues them; a request
/// whose texts are refused, or whose job cannot be made or is refused (a full queue, the
/// tenant's quota), fails as its own. The requests, in line order.
pub(crate) async fn submit(desk: &Desk<'_>, lines: Vec<(usize, Line)>) -> Vec<Request> {
    let (mut requests, packs) = plan(
        lines,
        PACK_TEXTS.min(desk.config.max_embedding_texts),
        |texts| desk.check_embedding_texts(texts).map_err(refused),
        |bytes| desk.upload_fits(bytes),
    );
    // Stored as base64: exact, and the smallest record; each request is answered in its own
    // spelling from it.
    let settings = EmbeddingSettings {
        encoding_format: EncodingFormat::Base64,
    };
    let mut jobs = Vec::with_capacity(packs.len());
    for pack in packs {
        match desk.text_embeddings_job(pack.texts, None, settings) {
            Ok(job) => {
                for &i in &pack.members {
                    requests[i].job = Some(job.id);
                }
                jobs.push(enqueue(desk, pack.members, job));
            }
            Err(e) => fail(&mut requests, &pack.members, &refused(e)),
        }
    }
    let outcomes: Vec<(Vec<usize>, Result<(), LineError>)> = futures_util::stream::iter(jobs)
        .buffer_unordered(SUBMIT_CONCURRENCY)
        .collect()
        .await;
    for (members, outcome) in outcomes {
        if let Err(e) = outcome {
            fail(&mut requests, &members, &e);
        }
    }
    requests
}

/// The requests of `lines` (each good one's texts `check`ed: their upload bytes, or why they
/// are refused) and the packs they go into: consecutive requests, up to `most` texts and
/// upload bytes that `fit`, a request with more alone in its pack.
fn plan(
    lines: Vec<(usize, Line)>,
    most: usize,
    check: impl Fn(&[String]) -> Result<usize, LineError>,
    fit: impl Fn(usize) -> bool,
) -> (Vec<Request>, Vec<Pack>) {
    let mut requests = Vec::with_capacity(lines.len());
    let mut packs = Vec::new();
    let mut pack = Pack::default();
    for (line, (custom_id, wanted)) in lines {
        let mut request = Request {
            custom_id,
            job: None,
            part: None,
            error: None,
            line,
        };
        match wanted.and_then(|w| Ok((check(&w.texts)?, w))) {
            Ok((bytes, wanted)) => {
                let n = wanted.texts.len();
                let joins = pack.texts.len() + n <= most && fit(pack.bytes + bytes);
                if !pack.members.is_empty() && !joins {
                    packs.push(std::mem::take(&mut pack));
                }
                request.part = Some(Part(pack.texts.len() as u32, n as u32, wanted.format));
                pack.members.push(requests.len());
                pack.texts.extend(wanted.texts);
                pack.bytes += bytes;
            }
            Err(e) => request.error = Some(e),
        }
        requests.push(request);
    }
    if !pack.members.is_empty() {
        packs.push(pack);
    }
    (requests, packs)
}

/// A refusal of a request's input, as `/v1/embeddings` would answer it.
fn refused(e: ApiError) -> LineError {
    LineError::from(OpenAiError::from(e).with_param(Some("input")))
}

/// Fails the requests `members` with `e`: they did not run.
fn fail(requests: &mut [Request], members: &[usize], e: &LineError) {
    for &i in members {
        let r = &mut requests[i];
        (r.job, r.part, r.error) = (None, None, Some(e.clone()));
    }
}

/// Enqueues the job of the requests `members`: its outcome, as their error when refused.
async fn enqueue(
    desk: &Desk<'_>,
    members: Vec<usize>,
    job: CheckedJob,
) -> (Vec<usize>, Result<(), LineError>) {
    let queue = job.model.clone();
    let outcome = match desk.submit(job).await {
        Ok(Submitted::Queued) => {
            crate::metrics::submitted(&queue);
            Ok(())
        }
        Ok(other) => Err(LineError::from(OpenAiError::from(
            desk.refused(&queue, other),
        ))),
        Err(e) => Err(LineError::from(OpenAiError::from(e))),
    };
    (members, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::embeddings::Wanted;

    fn line(n: usize, texts: &[&str], format: EncodingFormat) -> (usize, Line) {
        let texts = texts.iter().map(|t| (*t).to_owned()).collect();
        (n, (Some(format!("r{n}")), Ok(Wanted { texts, format })))
    }

    /// Refuses an empty text, as the submission path does; 10 bytes a text.
    fn check(texts: &[String]) -> Result<usize, LineError> {
        if texts.iter().any(String::is_empty) {
            return Err(LineError::new("invalid_request_error", "an empty text"));
        }
        Ok(texts.len() * 10)
    }

    fn summary(requests: &[Request]) -> Vec<(usize, Option<Part>, Option<&str>)> {
        requests
            .iter()
            .map(|r| (r.line, r.part, r.error.as_ref().map(|e| e.code.as_str())))
            .collect()
    }

    #[test]
    fn a_refused_request_fails_alone_and_packs_are_consecutive_and_bounded() {
        use EncodingFormat::{Base64 as B, Float as F};
        let malformed = LineError::new("invalid_json_line", "not JSON");
        let lines = vec![
            line(1, &["a"], F),
            (2, (None, Err(malformed))),
            line(3, &["b", "", "c"], F),
            line(4, &["d", "e"], B),
            line(5, &["f", "g", "h", "i", "j"], F),
            line(6, &["k"], F),
            line(7, &["l"], B),
        ];
        let (requests, packs) = plan(lines, 4, check, |b| b <= 1000);
        assert_eq!(
            summary(&requests),
            [
                (1, Some(Part(0, 1, F)), None),
                (2, None, Some("invalid_json_line")),
                (3, None, Some("invalid_request_error")),
                (4, Some(Part(1, 2, B)), None),
                (5, Some(Part(0, 5, F)), None),
                (6, Some(Part(0, 1, F)), None),
                (7, Some(Part(1, 1, B)), None),
            ]
        );
        let packed: Vec<(Vec<usize>, Vec<&str>)> = packs
            .iter()
            .map(|p| {
                (
                    p.members.clone(),
                    p.texts.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            packed,
            [
                (vec![0, 3], vec!["a", "d", "e"]),
                (vec![4], vec!["f", "g", "h", "i", "j"]),
                (vec![5, 6], vec!["k", "l"]),
            ]
        );
    }

    #[test]
    fn a_pack_stays_within_the_upload_limit() {
        let lines = (1..=5).map(|n| line(n, &["x"], EncodingFormat::Float));
        let (_, packs) = plan(lines.collect(), 64, check, |b| b <= 25);
        let sizes: Vec<usize> = packs.iter().map(|p| p.texts.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(packs.iter().all(|p| p.bytes <= 25));
    }
}
