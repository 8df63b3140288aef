//! A job record as the protocol stores it; the API renders it for clients.

use super::keys::field;
use super::{Queue, QueueError};
use crate::auth::DEFAULT_TENANT;
use crate::job::{JobId, JobStatus, Priority};
use crate::webhook::{WebhookState, WebhookStatus};

/// A job hash, read back. Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    pub id: JobId,
    pub model: String,
    pub status: JobStatus,
    pub created_at: Option<u64>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub attempts: u32,
    /// The worker's result, exactly as it stored it (a binary result frame, see
    /// [`payload`](crate::payload)).
    pub result: Option<Vec<u8>>,
    /// `(code, message)` of a failure. The code stays a string: a record written by a newer
    /// worker may carry a code this build does not know.
    pub error: Option<(String, String)>,
    /// The job's current stream entry (where it waits while queued).
    pub entry: Option<String>,
    /// Answered from the result cache without running.
    pub cached: bool,
    /// When a scheduled job may start, ms since the epoch.
    pub due: Option<u64>,
    /// The tenant that submitted it ([`DEFAULT_TENANT`] for records written before tenants).
    pub tenant: String,
    /// A pipeline job's progress, in seconds: (done, total when known).
    pub progress: Option<(f64, Option<f64>)>,
    /// `parameters.priority`, the lane its entry waits in.
    pub priority: Priority,
    /// Bumped with every visible change ([`field::VERSION`]); 0 for records from before it.
    pub version: u64,
    /// Where the job's latest webhook delivery stands, when it asked for a webhook.
    pub webhook: Option<WebhookStatus>,
}

const FIELDS: [&str; 21] = [
    field::MODEL,
    field::STATUS,
    field::CREATED_AT,
    field::STARTED_AT,
    field::FINISHED_AT,
    field::ATTEMPTS,
    field::RESULT,
    field::ERROR_CODE,
    field::ERROR_MESSAGE,
    field::ENTRY,
    field::CACHED,
    field::DUE,
    field::TENANT,
    field::PROGRESS_DONE,
    field::PROGRESS_TOTAL,
    field::PRIORITY,
    field::VERSION,
    field::WEBHOOK_STATE,
    field::WEBHOOK_ATTEMPTS,
    field::WEBHOOK_LAST_STATUS,
    field::WEBHOOK_LAST_ERROR,
];

impl Queue {
    /// A group's members, or `None` for an unknown or expired group.
    pub async fn group_members(&self, id: JobId) -> Result<Option<Vec<JobId>>, QueueError> {
        let jobs: Option<String> = redis::cmd("HGET")
            .arg(self.job_keys(id).group(id))
            .arg("jobs")
            .query_async(&mut self.conn.clone())
            .await?;
        jobs.map(|j| {
            j.split(' ')
                .map(|id| {
                    id.parse()
                        .map_err(|_| QueueError::Protocol("group member id"))
                })
                .collect()
        })
        .transpose()
    }

    /// The tenant of a group, or `None` for an unknown or expired group.
    pub async fn group_tenant(&self, id: JobId) -> Result<Option<String>, QueueError> {
        let (jobs, tenant): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.job_keys(id).group(id))
            .arg("jobs")
            .arg(field::TENANT)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(jobs.map(|_| tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned())))
    }

    /// The tenant of a job, or `None` for an unknown or expired id.
    pub async fn job_tenant(&self, id: JobId) -> Result<Option<String>, QueueError> {
        let (status, tenant): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.job_keys(id).job(id))
            .arg(field::STATUS)
            .arg(field::TENANT)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(status.map(|_| tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned())))
    }

    /// Reads a job record, or `None` for an unknown or expired id.
    pub async fn record(&self, id: JobId) -> Result<Option<StoredJob>, QueueError> {
        let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.job_keys(id).job(id))
            .arg(&FIELDS)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut f = fields.into_iter();
        let mut bytes = || f.next().flatten();
        let (model, status) = (bytes(), bytes());
        let (created_at, started_at, finished_at) = (bytes(), bytes(), bytes());
        let (attempts, result) = (bytes(), bytes());
        let (error_code, error_message, entry) = (bytes(), bytes(), bytes());
        let cached = bytes().is_some_and(|v| v == b"1");
        let due = bytes().and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok());
        let tenant = bytes();
        let (progress_done, progress_total) = (bytes(), bytes());
        let priority = bytes();
        let version = bytes();
        let (hook_state, hook_attempts) = (bytes(), bytes());
        let (hook_status, hook_error) = (bytes(), bytes());
        let text = |v: Option<Vec<u8>>| v.map(|b| String::from_utf8_lossy(&b).into_owned());
        let (model, status) = (text(model), text(status));
        let (Some(model), Some(status)) = (model, status) else {
            return Ok(None);
        };
        let status = JobStatus::parse(&status).ok_or(QueueError::Protocol("unknown job status"))?;
        let time = |v: Option<Vec<u8>>| text(v).and_then(|s| s.parse().ok());
        let (created_at, started_at, finished_at) =
            (time(created_at), time(started_at), time(finished_at));
        let attempts = time(attempts).unwrap_or(0) as u32;
        let seconds = |v: Option<Vec<u8>>| text(v).and_then(|s| s.parse::<f64>().ok());
        let progress = seconds(progress_done).map(|done| (done, seconds(progress_total)));
        let webhook = text(hook_state)
            .as_deref()
            .and_then(WebhookState::parse)
            .map(|state| WebhookStatus {
                state,
                attempts: time(hook_attempts).unwrap_or(0) as u32,
                last_status: text(hook_status).and_then(|s| s.parse().ok()),
                last_error: text(hook_error),
            });
        let error = match (text(error_code), text(error_message)) {
            (Some(code), message) => Some((code, message.unwrap_or_default())),
            _ => None,
        };
        Ok(Some(StoredJob {
            id,
            model,
            status,
            created_at,
            started_at,
            finished_at,
            attempts,
            result,
            error,
            entry: text(entry),
            cached,
            due,
            tenant: text(tenant).unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
            progress,
            priority: time(priority)
                .and_then(|p| u8::try_from(p).ok())
                .and_then(Priority::new)
                .unwrap_or_default(),
            version: time(version).unwrap_or(0),
            webhook,
        }))
    }
}
