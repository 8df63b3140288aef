//! Pipeline jobs: enqueued with their uploaded input (`submit_pipeline.lua`), their progress
//! (`progress.lua`), and the upload read in slices.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::script;
use super::submit::{Submitted, parse_refusal};
use crate::job::JobId;
use crate::queue::lua::{Argv, argv};
use crate::queue::{Queue, QueueError};
use crate::time::now_ms;
use crate::webhook::Webhook;

pub(crate) static SUBMIT_PIPELINE: LazyLock<Script> = LazyLock::new(|| {
    script(
        include_str!("../lua/submit_pipeline.lua"),
        Argv::head(SubmitPipelineCall::NAMES),
    )
});
pub(crate) static PROGRESS: LazyLock<Script> = LazyLock::new(|| {
    script(
        include_str!("../lua/progress.lua"),
        Argv::head(ProgressCall::NAMES),
    )
});

argv! {
    /// `submit_pipeline.lua`'s ARGV (its header says what each is).
    struct SubmitPipelineCall<'a> {
        id: String,
        queue: &'a str,
        now: u64,
        payload: &'a [u8],
        limit: u64,
        deadline: u64,
        upload: &'a [u8],
        upload_ttl: u64,
        ttl: u64,
        tenant: &'a str,
        quota: u64,
        others: u64,
        webhook: &'a str,
        webhook_events: String,
        fetch_allow: String,
    }
}

argv! {
    /// `progress.lua`'s ARGV.
    struct ProgressCall {
        token: u64,
        done: f64,
        total: String,
        publish: &'static str,
        progress: String,
        id: String,
    }
}

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
    /// (`submit_pipeline.lua`), the record naming the queue's retention
    /// ([`Queue::with_retention`]). Answers [`Submitted::Queued`], [`Submitted::QueueFull`] or
    /// [`Submitted::QuotaExceeded`].
    pub async fn submit_pipeline(
        &self,
        id: JobId,
        job: PipelineSubmission<'_>,
        max_queued: u64,
        deadline_ms: Option<u64>,
    ) -> Result<Submitted, QueueError> {
        let keys = self.job_keys(id);
        let others = self
            .active_elsewhere(self.partition_of(id), job.tenant, job.tenant_max_queued)
            .await?;
        let mut inv = SUBMIT_PIPELINE.prepare_invoke();
        inv.key(keys.job(id))
            .key(keys.stream(job.queue))
            .key(keys.upload(id))
            .key(keys.tenant_active());
        SubmitPipelineCall {
            id: id.to_string(),
            queue: job.queue,
            now: now_ms(),
            payload: job.payload,
            limit: self.partition_limit(max_queued),
            deadline: deadline_ms.unwrap_or(0),
            upload: job.upload,
            upload_ttl: job.upload_ttl.as_secs().max(1),
            ttl: self.retention.secs(),
            tenant: job.tenant,
            quota: job.tenant_max_queued,
            others,
            webhook: job.webhook.map_or("", |w| w.url.as_str()),
            webhook_events: job.webhook.map(Webhook::events_field).unwrap_or_default(),
            fetch_allow: self.fetch_allow.clone(),
        }
        .push(&mut inv);
        let reply: String = self.commit(&inv, |_| true).await?;
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
        let mut inv = PROGRESS.prepare_invoke();
        inv.key(self.job_keys(id).job(id));
        let publish = self.publish(self.job_keys(id));
        ProgressCall {
            token,
            done,
            total: total.map(|t| t.to_string()).unwrap_or_default(),
            publish: publish.command,
            progress: publish.progress,
            id: id.to_string(),
        }
        .push(&mut inv);
        let recorded: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
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
            .arg(self.job_keys(id).upload(id))
            .arg(offset)
            .arg(offset + len as u64 - 1)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Writes a pipeline job's input fetched by URL into its (empty) upload, keeping the
    /// upload's expiry; false, writing nothing, when the upload is gone (the job ended).
    pub async fn fill_upload(&self, id: JobId, bytes: &[u8]) -> Result<bool, QueueError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.job_keys(id).upload(id))
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
            .arg(self.job_keys(id).upload(id))
            .query_async(&mut self.conn.clone())
            .await?)
    }
}
