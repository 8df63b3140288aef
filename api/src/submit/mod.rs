//! Submission: the one path every way in (`POST /jobs`, `/jobs/batch`, `/groups`, OIP
//! inference, pipeline jobs, text embeddings) takes from a decoded request to a checked job, and the
//! enqueueing of checked jobs. Each face decodes its own body (JSON tensors, the binary
//! framing, the OIP request, an upload) and answers in its own shape; what a job is, how it is
//! checked and how it reaches Redis is decided here, once.

pub(crate) mod options;
pub(crate) mod pipeline;
mod submitter;
pub(crate) mod texts;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use inferq_shared::job::{JobId, JobParameters, JobRequest};
use inferq_shared::model::ModelInfo;
use inferq_shared::queue::{NewJob, PipelineSubmission, Queue, Retention, Submitted};
use inferq_shared::trace::TraceParent;
use inferq_shared::webhook::{Webhook, WebhookRequest};

use crate::caller::Principal;
use crate::config::Config;
use crate::error::{ApiError, AppResult};
use crate::models::ModelCache;
use crate::notify::unfinished::Unfinished;
pub(crate) use options::JobOptions;
use options::{cache_key, request_hash, tenant_scoped};
pub(crate) use submitter::Submitter;

/// One caller's way into the queue: what checking and enqueueing jobs needs of the process
/// (lent by the app state), and who submits.
#[derive(Debug)]
pub(crate) struct Desk<'a> {
    pub(crate) config: &'a Config,
    pub(crate) queue: &'a Queue,
    pub(crate) models: &'a ModelCache,
    pub(crate) submitter: &'a Submitter,
    /// Notes the jobs submitted here until they end (a long-poll then needs no first read).
    pub(crate) unfinished: &'a Unfinished,
    pub(crate) caller: &'a Principal,
}

/// A model job as its face decoded it: the model it names and its payload (inputs validated
/// and in the internal binary form, requested outputs, parameters), and what it asks for.
#[derive(Debug)]
pub(crate) struct Draft<'a> {
    pub(crate) model: Arc<ModelInfo>,
    pub(crate) payload: Vec<u8>,
    pub(crate) parameters: Option<&'a JobParameters>,
    pub(crate) webhook: Option<&'a WebhookRequest>,
}

/// What a submission asks for besides its job.
#[derive(Debug, Default)]
pub(crate) struct Asks<'a> {
    /// The `Idempotency-Key` and the request bytes it stands for.
    pub(crate) idempotency: Option<(String, &'a [u8])>,
    pub(crate) trace: Option<TraceParent>,
    /// Whether `parameters.cache` may answer from the result cache (a group's members run).
    pub(crate) cacheable: bool,
}

/// A job checked and ready to enqueue, owned, so it can cross into the group-commit task: a
/// model job, or a pipeline job with its upload.
#[derive(Debug)]
pub(crate) struct CheckedJob {
    pub(crate) id: JobId,
    /// The model, or the queue of a pipeline job.
    pub(crate) model: String,
    payload: Vec<u8>,
    pub(crate) options: JobOptions,
    /// The tenant-scoped idempotency key and the hash of the request it stands for.
    idempotency: Option<(String, String)>,
    /// Where to cache the result (a cache miss of a job that asked for the cache).
    cache: Option<(String, Duration)>,
    trace: Option<TraceParent>,
    tenant: String,
    tenant_max_queued: u64,
    webhook: Option<Webhook>,
    /// A pipeline job's upload (empty for a recording by URL), stored with the job; `None`
    /// for a model job.
    upload: Option<Bytes>,
}

impl CheckedJob {
    /// The model job as the submit script takes it.
    fn as_new(&self) -> NewJob<'_> {
        debug_assert!(self.upload.is_none(), "a pipeline job goes in alone");
        NewJob {
            id: self.id,
            model: &self.model,
            payload: &self.payload,
            deadline_ms: self.options.deadline_ms,
            result_ttl_secs: self.options.result_ttl_secs,
            idempotency: self.idempotency.clone(),
            cache: self.cache.clone(),
            due_ms: self.options.due_ms,
            trace: self.trace,
            tenant: &self.tenant,
            priority: self.options.priority,
            tenant_max_queued: self.tenant_max_queued,
            webhook: self.webhook.as_ref(),
        }
    }
}

/// A checked submission: answered from the result cache already, or a job to enqueue.
#[derive(Debug)]
pub(crate) enum Checked {
    Cached(JobId),
    Job(Box<CheckedJob>),
}

impl Desk<'_> {
    /// The model named `name`, or `422 unknown_model` naming the models there are.
    pub(crate) async fn find_model(&self, name: &str) -> AppResult<Arc<ModelInfo>> {
        self.models
            .get(name)
            .await?
            .ok_or_else(|| ApiError::UnknownModel {
                name: name.chars().take(128).collect(),
                available: self.models.names().join(", "),
            })
    }

    /// A JSON job request decoded: its model found, its inputs validated and converted to the
    /// job payload in one pass over the data.
    pub(crate) async fn decode<'r>(&self, req: &'r JobRequest<'_>) -> AppResult<Draft<'r>> {
        let model = self.find_model(&req.model).await?;
        let payload = model.encode_request(req, &self.config.fetch_allow)?;
        Ok(Draft {
            model,
            payload,
            parameters: req.parameters.as_ref(),
            webhook: req.webhook.as_ref(),
        })
    }

    /// The check every model job passes: its webhook, its parameters, the result cache, its
    /// idempotency key and its tenant.
    pub(crate) async fn check(&self, draft: Draft<'_>, asks: Asks<'_>) -> AppResult<Checked> {
        let webhook = self.webhook(draft.webhook)?;
        let mut options = JobOptions::of(draft.parameters)?;
        // A job with a webhook runs, so that its events happen (its result is still cached).
        options.cache &= asks.cacheable && webhook.is_none();
        let mut job = self.job(
            draft.model.name.clone(),
            draft.payload,
            options,
            webhook,
            None,
        );
        match self.try_cache(&draft.model, &job.payload, options).await? {
            Ok(id) => return Ok(Checked::Cached(id)),
            Err(cache) => job.cache = cache,
        }
        // A job lives in the partition of the key it is written with (its record and the key
        // in one atomic step): its result-cache key's, or its idempotency key's, which wins.
        if let Some((key, _)) = &job.cache {
            job.id = self.queue.id_for_key(key);
        }
        job.idempotency = asks
            .idempotency
            .map(|(key, request)| (tenant_scoped(self.caller, &key), request_hash(request)));
        if let Some((key, _)) = &job.idempotency {
            job.id = self.queue.id_for_key(key);
        }
        job.trace = asks.trace;
        Ok(Checked::Job(Box::new(job)))
    }

    /// The caller's job: the one place a [`CheckedJob`] is made.
    fn job(
        &self,
        model: String,
        payload: Vec<u8>,
        options: JobOptions,
        webhook: Option<Webhook>,
        upload: Option<Bytes>,
    ) -> CheckedJob {
        CheckedJob {
            id: self.queue.new_id(),
            model,
            payload,
            options,
            idempotency: None,
            cache: None,
            trace: None,
            tenant: self.caller.tenant.clone(),
            tenant_max_queued: self.caller.max_queued(self.config),
            webhook,
            upload,
        }
    }

    /// Enqueues one job: a model job together with the others arriving at the same time, a
    /// pipeline job with its upload.
    pub(crate) async fn submit(&self, job: CheckedJob) -> AppResult<Submitted> {
        let Some(upload) = &job.upload else {
            let id = job.id;
            // Noted before it is written, so its end cannot be heard before the note.
            self.unfinished.note(id, &job.tenant);
            let outcome = self.submitter.submit(job).await;
            if !matches!(outcome, Ok(Submitted::Queued | Submitted::Scheduled)) {
                self.unfinished.forget(id);
            }
            return Ok(outcome?);
        };
        let submission = PipelineSubmission {
            queue: &job.model,
            payload: &job.payload,
            upload,
            upload_ttl: Duration::from_secs(self.config.upload_ttl_secs),
            tenant: &job.tenant,
            tenant_max_queued: job.tenant_max_queued,
            webhook: job.webhook.as_ref(),
        };
        Ok(self
            .queue
            .submit_pipeline(
                job.id,
                submission,
                self.config.max_queued,
                job.options.deadline_ms,
            )
            .await?)
    }

    /// Enqueues jobs in one Redis call, each with its own outcome.
    pub(crate) async fn submit_many(&self, jobs: &[&CheckedJob]) -> AppResult<Vec<Submitted>> {
        let jobs: Vec<NewJob<'_>> = jobs.iter().map(|j| j.as_new()).collect();
        let ttl = Duration::from_secs(self.config.idempotency_ttl_secs);
        Ok(self
            .queue
            .submit_many(&jobs, self.config.max_queued, ttl)
            .await?)
    }

    /// Enqueues the members of a group, all or none; the group's record is kept for `keep`.
    pub(crate) async fn submit_group(
        &self,
        group: JobId,
        jobs: &[CheckedJob],
        keep: Duration,
    ) -> AppResult<Vec<Submitted>> {
        let jobs: Vec<NewJob<'_>> = jobs.iter().map(CheckedJob::as_new).collect();
        Ok(self
            .queue
            .submit_group(group, &jobs, self.config.max_queued, keep)
            .await?)
    }

    /// The error for a submission Redis refused.
    pub(crate) fn refused(&self, model: &str, outcome: Submitted) -> ApiError {
        match outcome {
            Submitted::QueueFull => ApiError::Overloaded(model.to_owned()),
            // Retired after the model cache was filled.
            Submitted::UnknownModel => ApiError::UnknownModel {
                name: model.to_owned(),
                available: self.models.names().join(", "),
            },
            Submitted::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            Submitted::QuotaExceeded { excess } => ApiError::QuotaExceeded {
                model: model.to_owned(),
                excess,
            },
            Submitted::Queued
            | Submitted::Scheduled
            | Submitted::Replayed(_)
            | Submitted::NotSubmitted => {
                ApiError::Internal("a queued job was reported as refused".into())
            }
        }
    }

    /// The request's webhook, checked (`422 invalid_url` / `url_not_allowed`).
    pub(crate) fn webhook(&self, request: Option<&WebhookRequest>) -> AppResult<Option<Webhook>> {
        if let Some(events) = request.and_then(|w| w.events.as_ref())
            && events.is_empty()
        {
            return Err(ApiError::InvalidParameter(
                "webhook.events is empty; leave it out for the final events".into(),
            ));
        }
        Ok(request
            .map(|w| w.check(&self.config.fetch_allow))
            .transpose()?)
    }

    /// Answers the job from the result cache when it asks for it and a result is there (the
    /// job is then written `succeeded`); otherwise says under which key to cache its result.
    async fn try_cache(
        &self,
        model: &ModelInfo,
        payload: &[u8],
        options: JobOptions,
    ) -> AppResult<Result<JobId, Option<(String, Duration)>>> {
        if !options.cache {
            return Ok(Err(None));
        }
        let Some(key) = cache_key(model, payload)? else {
            return Ok(Err(None));
        };
        let key = tenant_scoped(self.caller, &key);
        let retention = Retention {
            result_ttl: Duration::from_secs(self.config.result_ttl_secs),
        };
        let id = self.queue.id_for_key(&key);
        if self
            .queue
            .submit_cached(
                id,
                &model.name,
                &key,
                retention,
                options.result_ttl_secs,
                &self.caller.tenant,
            )
            .await?
        {
            crate::metrics::submitted(&model.name);
            return Ok(Ok(id));
        }
        Ok(Err(Some((
            key,
            Duration::from_secs(self.config.cache_ttl_secs),
        ))))
    }
}
