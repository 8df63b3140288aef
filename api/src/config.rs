//! The API's configuration: every setting a flag with an `INFERQ_…` environment variable, and
//! its default written once, in the flag.

use inferq_shared::config::{LogConfig, RedisConfig, Secret};
use inferq_shared::egress::Allow;

/// `inferq-api` configuration; every flag also reads an `INFERQ_…` environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub log: LogConfig,

    /// Address to listen on.
    #[arg(long, env = "INFERQ_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Largest accepted request body in bytes; larger ones get 413.
    #[arg(long, env = "INFERQ_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most jobs one model's queue may hold (queued plus running) before submissions get 429.
    #[arg(long, env = "INFERQ_MAX_QUEUED", default_value_t = 100_000)]
    pub max_queued: u64,

    /// Seconds a finished job's record stays readable (used when cancelling; workers apply
    /// their own setting to jobs they finish).
    #[arg(long, env = "INFERQ_RESULT_TTL_SECS", default_value_t = 86_400)]
    pub result_ttl_secs: u64,

    /// Largest uploaded file of a pipeline job (multipart file part, or base64 in JSON) in
    /// bytes; larger ones get 413.
    #[arg(long, env = "INFERQ_MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Longest a pipeline job's upload is kept in Redis, in seconds: a safety net, since the
    /// job's end (success, failure, cancellation) deletes it.
    #[arg(long, env = "INFERQ_UPLOAD_TTL_SECS", default_value_t = 86_400)]
    pub upload_ttl_secs: u64,

    /// Most texts in one `text_embeddings` job; more get `422 invalid_texts`.
    #[arg(long, env = "INFERQ_MAX_EMBEDDING_TEXTS", default_value_t = inferq_shared::embedding::DEFAULT_MAX_TEXTS)]
    pub max_embedding_texts: usize,

    /// Longest `?wait=` a status request may ask for, in seconds.
    #[arg(long, env = "INFERQ_MAX_WAIT_SECS", default_value_t = 60)]
    pub max_wait_secs: u64,

    /// Seconds an `Idempotency-Key` answers with the job it first created.
    #[arg(long, env = "INFERQ_IDEMPOTENCY_TTL_SECS", default_value_t = 86_400)]
    pub idempotency_ttl_secs: u64,

    /// Seconds a result stays in the result cache (`parameters.cache`).
    #[arg(long, env = "INFERQ_CACHE_TTL_SECS", default_value_t = 3600)]
    pub cache_ttl_secs: u64,

    /// Most jobs in one `POST /jobs/batch`.
    #[arg(long, env = "INFERQ_MAX_BATCH_JOBS", default_value_t = 1000)]
    pub max_batch_jobs: usize,

    /// Most open connections; beyond it a new connection gets 503 with `Retry-After` and is
    /// closed.
    #[arg(long, env = "INFERQ_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Seconds a client may take to send a request's line and headers (also how long an idle
    /// keep-alive connection stays open); the connection is closed after.
    #[arg(long, env = "INFERQ_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Seconds a client may take to send a request's body; 408 after.
    #[arg(long, env = "INFERQ_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,

    /// Seconds a request may take beyond the `?wait` it asked for; 408 after.
    #[arg(long, env = "INFERQ_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Largest request URI in bytes; 414 beyond.
    #[arg(long, env = "INFERQ_MAX_URI_BYTES", default_value_t = 8192)]
    pub max_uri_bytes: usize,

    /// Largest total size of the request headers in bytes; 431 beyond.
    #[arg(long, env = "INFERQ_MAX_HEADER_BYTES", default_value_t = 16384)]
    pub max_header_bytes: usize,

    /// Submissions (`POST /jobs`, `/jobs/batch`, `/groups`, OIP inference) per second each
    /// tenant may make, shared by every API process through Redis; 0 = no limit.
    #[arg(long, env = "INFERQ_TENANT_RATE", default_value_t = 0.0)]
    pub tenant_rate: f64,

    /// Submissions a tenant may make at once before its rate applies (the bucket's size).
    #[arg(long, env = "INFERQ_TENANT_BURST", default_value_t = 100.0)]
    pub tenant_burst: f64,

    /// Most jobs each tenant may have waiting (queued or scheduled) or running, counted in
    /// Redis for every API process; submissions beyond it get `429 quota_exceeded`. A key's
    /// own `max_queued` overrides it; 0 = no limit.
    #[arg(long, env = "INFERQ_TENANT_MAX_QUEUED", default_value_t = 0)]
    pub tenant_max_queued: u64,

    /// `required`: every route but the health checks needs an API key (`inferq-api keys
    /// create`); `disabled`: no keys, one tenant (local development only).
    #[arg(long, env = "INFERQ_AUTH", value_enum, default_value_t = AuthMode::Required)]
    pub auth: AuthMode,

    /// An admin key accepted besides the stored ones (at least 32 characters; empty = none),
    /// for containers that need a first key before anyone can run `inferq-api keys create`.
    #[arg(long, env = "INFERQ_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,

    /// Serve `GET /metrics` without a key (for a Prometheus inside a trusted network).
    #[arg(long, env = "INFERQ_METRICS_PUBLIC", default_value_t = false)]
    pub metrics_public: bool,

    /// Seconds between the comment lines that keep an idle event stream
    /// (`GET /jobs/<id>/events`) open through proxies.
    #[arg(long, env = "INFERQ_EVENTS_KEEPALIVE_SECS", default_value_t = 15)]
    pub events_keepalive_secs: u64,
    /// Hosts and networks (comma-separated names, addresses, CIDRs) that inputs by URL and
    /// webhooks may reach although they are loopback, private or otherwise internal; the
    /// workers must be given the same list. The API refuses the rest at submission where it
    /// can tell without a lookup (an IP literal, `localhost`).
    #[arg(long, env = "INFERQ_FETCH_ALLOW", default_value = "")]
    pub fetch_allow: Allow,
}

/// Whether requests must carry an API key.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Disabled,
}

impl Config {
    /// The body limit of `POST /jobs`: room for the largest upload, base64 in JSON.
    pub fn submit_body_limit(&self) -> usize {
        self.max_body_bytes
            .max(self.max_upload_bytes / 3 * 4 + 1024 * 1024)
    }

    /// Defaults for everything but Redis (and an ephemeral port to bind), as tests and
    /// embedders want them: the defaults of the flags above, so they are written once. No
    /// environment variable is read.
    pub fn new(redis: RedisConfig) -> Self {
        use clap::{Args, FromArgMatches};
        let flags = Self::augment_args(clap::Command::new("inferq-api"))
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["inferq-api"])
            .expect("every flag has a default");
        let mut config = Self::from_arg_matches(&flags).expect("the defaults parse");
        config.redis = redis;
        config.bind = "127.0.0.1:0".into();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_flags_defaults() {
        let config = Config::new(RedisConfig::new("redis://127.0.0.1:1", "unit"));
        assert_eq!(config.redis.namespace, "unit");
        assert_eq!(config.bind, "127.0.0.1:0");
        assert_eq!(config.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(config.max_upload_bytes, 64 * 1024 * 1024);
        assert_eq!(config.result_ttl_secs, 86_400);
        assert_eq!(config.tenant_burst, 100.0);
        assert_eq!(config.auth, AuthMode::Required);
        assert!(config.admin_key.is_none());
        assert!(!config.log.log_json);
        assert_eq!(config.fetch_allow, Allow::default());
    }
}
