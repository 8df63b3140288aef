//! A recording given by URL: the worker fetches it (through the address guard, within the size
//! limit) into the job's upload before decoding, so the rest of the pipeline reads it from
//! Redis as it reads an uploaded file. A retried attempt finds the upload filled already and
//! does not fetch again.

use inferq_shared::job::{ErrorCode, JobError, JobId};
use inferq_shared::queue::{Queue, QueueError};

use crate::egress::{Egress, FetchError};

/// Why the recording is not in the upload.
pub(crate) enum Missing {
    /// The job fails with this error.
    Failed(JobError),
    /// Redis trouble: the attempt goes back to the queue.
    Redis(QueueError),
}

/// Fetches `url` into job `id`'s upload unless it holds the recording already.
pub(crate) async fn into_upload(
    egress: &Egress,
    queue: &Queue,
    id: JobId,
    url: &str,
) -> Result<(), Missing> {
    if queue.upload_len(id).await.map_err(Missing::Redis)? > 0 {
        return Ok(());
    }
    let body = egress.fetch(url).await.map_err(|e| {
        Missing::Failed(match e {
            FetchError::NotAllowed(m) => {
                JobError::new(ErrorCode::UrlNotAllowed, format!("audio: {m}"))
            }
            FetchError::Failed(m) => {
                JobError::new(ErrorCode::InputFetchFailed, format!("audio: {m}"))
            }
        })
    })?;
    if body.is_empty() {
        return Err(Missing::Failed(JobError::new(
            ErrorCode::InvalidAudio,
            "audio: the fetched file is empty",
        )));
    }
    if !queue.fill_upload(id, &body).await.map_err(Missing::Redis)? {
        return Err(Missing::Failed(JobError::new(
            ErrorCode::Internal,
            "stopped: the job was cancelled while its recording was fetched",
        )));
    }
    Ok(())
}
