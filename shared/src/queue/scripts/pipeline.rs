//! Pipeline jobs: enqueued with their uploaded input (`submit_pipeline.lua`), their progress
//! (`progress.lua`), and the upload read in slices.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::script;
use super::submit::{Submitted, parse_refusal};
use crate::job::JobId;
use crate::queue::{Queue, QueueError};
use crate::time::now_ms;
use crate::webhook::Webhook;

static SUBMIT_PIPELINE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/submit_pipeline.lua")));
static PROGRESS: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/progress.lua")));

/// A pipeline job as submitted: its queue, payload and uploaded input.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSubmission<'a> {
    /// The pipeline's queue name ([`pipeline_queue`](super::keys::pipeline_queue)).
    pub queue: &'a str,
    pub payload: &'a [u8],
    pub upload: &'a [u8],
    /// Longest the upload is kept (the job's end deletes it before).
    pub upload_ttl: Duration,
    /// The tenant of the key that submitted it.
    pub tenant: &'a str,
    /// Most jobs the tenant may have waiting or running, this one included; 0 = no limit.
    pub tenant_max_queued: u64,
    /// Where to deliver the job's events, and which.
    pub webhook: Option<&'a Webhook>,
}

impl Queue {
    /// Writes a pipeline job's record, stream entry and upload in one step
    /// (`submit_pipeline.lua`). Answers [`Submitted::Queued`], [`Submitted::QueueFull`] or
    /// [`Submitted::QuotaExceeded`].
    pub async fn submit_pipeline(
        &self,
        id: JobId,
        job: PipelineSubmission<'_>,
        max_queued: u64,
        deadline_ms: Option<u64>,
    ) -> Result<Submitted, QueueError> {
        let reply: String = SUBMIT_PIPELINE
            .key(self.keys.job(id))
            .key(self.keys.stream(job.queue))
            .key(self.keys.upload(id))
            .key(self.keys.tenant_active())
            .arg(id.to_string())
            .arg(job.queue)
            .arg(now_ms())
            .arg(job.payload)
            .arg(max_queued)
            .arg(deadline_ms.unwrap_or(0))
            .arg(job.upload)
            .arg(job.upload_ttl.as_secs().max(1))
            .arg(job.tenant)
            .arg(job.tenant_max_queued)
            .arg(job.webhook.map_or("", |w| w.url.as_str()))
            .arg(job.webhook.map(Webhook::events_field).unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match reply.as_str() {
            "QUEUE_FULL" => Submitted::QueueFull,
            other => parse_refusal(other)?.unwrap_or(Submitted::Queued),
        })
    }

    /// Records a pipeline attempt's progress in seconds (`progress.lua`); `false` when the
    /// attempt no longer owns a running job (cancelled, or taken over): it must stop.
    pub async fn progress(
        &self,
        id: JobId,
        token: u64,
        done: f64,
        total: Option<f64>,
    ) -> Result<bool, QueueError> {
        let recorded: i64 = PROGRESS
            .key(self.keys.job(id))
            .arg(token)
            .arg(done)
            .arg(total.map(|t| t.to_string()).unwrap_or_default())
            .arg(self.keys.progress_events())
            .arg(id.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(recorded == 1)
    }

    /// `len` bytes of a pipeline job's upload from `offset` (fewer at its end; none when the
    /// upload is gone), so a worker reads a large input in bounded slices.
    pub async fn read_upload(
        &self,
        id: JobId,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, QueueError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(redis::cmd("GETRANGE")
            .arg(self.keys.upload(id))
            .arg(offset)
            .arg(offset + len as u64 - 1)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Writes a pipeline job's input fetched by URL into its (empty) upload, keeping the
    /// upload's expiry; false, writing nothing, when the upload is gone (the job ended).
    pub async fn fill_upload(&self, id: JobId, bytes: &[u8]) -> Result<bool, QueueError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.upload(id))
            .arg(bytes)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// The size of a pipeline job's upload in bytes; 0 when it is gone.
    pub async fn upload_len(&self, id: JobId) -> Result<u64, QueueError> {
        Ok(redis::cmd("STRLEN")
            .arg(self.keys.upload(id))
            .query_async(&mut self.conn.clone())
            .await?)
    }
}
