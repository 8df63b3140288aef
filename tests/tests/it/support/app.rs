//! The API under test: a private Redis, the API in-process on port 0 in a random key
//! namespace, and the workers each test starts; with the requests and waits most tests share.

use std::path::Path;
use std::time::Duration;

use inferq_shared::queue::Keys;
use serde_json::Value;

use super::{Client, Redis, Worker, eventually, job_id, log_dir, submit_all};

/// Sends this process's `tracing` output (the in-process APIs') to `log_dir()/api-<pid>.log`,
/// inferq's own at `debug` (where a careless log line would show a request's details), the
/// rest at `info`, unless `TEST_API_LOG` says otherwise; once per process.
fn capture_api_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let path = log_dir().join(format!("api-{}.log", std::process::id()));
        let Ok(file) = std::fs::File::create(path) else {
            return;
        };
        let filter = std::env::var("TEST_API_LOG")
            .unwrap_or_else(|_| "info,inferq_api=debug,inferq_shared=debug".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

pub(crate) struct AppOptions {
    pub max_body_bytes: usize,
    pub max_queued: u64,
    /// Redis with the append-only file on (fsync on every write).
    pub aof: bool,
    /// `INFERQ_MAX_WAIT_SECS`: the longest `?wait=` (and OIP inference wait).
    pub max_wait_secs: u64,
    /// `Some(admin key)`: `INFERQ_AUTH=required` with this `INFERQ_ADMIN_KEY`; `None` (the
    /// tests that are not about keys): `INFERQ_AUTH=disabled`.
    pub admin_key: Option<String>,
    /// `INFERQ_METRICS_PUBLIC`.
    pub metrics_public: bool,
    /// Changes any other setting.
    pub tweak: Option<fn(&mut inferq_api::Config)>,
    /// `INFERQ_MAX_UPLOAD_BYTES`: the largest pipeline upload.
    pub max_upload_bytes: usize,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_queued: 100_000,
            aof: false,
            max_wait_secs: 60,
            admin_key: None,
            metrics_public: false,
            tweak: None,
            max_upload_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Redis, the API and a namespace; workers are started per test.
pub(crate) struct App {
    pub redis: Redis,
    pub namespace: String,
    pub base: String,
    pub http: reqwest::Client,
    api: tokio::task::JoinHandle<()>,
    /// Sending (or dropping) it starts the API's graceful shutdown.
    stop_api: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.api.abort();
    }
}

pub(crate) async fn spawn_app() -> App {
    spawn_app_with(AppOptions::default()).await
}

pub(crate) async fn spawn_app_with(options: AppOptions) -> App {
    capture_api_logs();
    let redis = Redis::start_with(options.aof);
    let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut config = inferq_api::Config::new(inferq_shared::config::RedisConfig::new(
        &redis.url(),
        &namespace,
    ));
    config.redis.redis_timeout_ms = 1000;
    config.max_body_bytes = options.max_body_bytes;
    config.max_queued = options.max_queued;
    config.max_wait_secs = options.max_wait_secs;
    config.metrics_public = options.metrics_public;
    match options.admin_key {
        Some(key) => {
            config.auth = inferq_api::AuthMode::Required;
            config.admin_key = Some(key.parse().unwrap());
        }
        None => config.auth = inferq_api::AuthMode::Disabled,
    }
    if let Some(tweak) = options.tweak {
        tweak(&mut config);
    }
    config.max_upload_bytes = options.max_upload_bytes;
    let (stop_api, stop) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop.await;
    };
    let (base, api) = serve_api(config, shutdown).await;
    App {
        redis,
        namespace,
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        api,
        stop_api: Some(stop_api),
    }
}

/// Runs the API with `config` in this process on a free port of 127.0.0.1 until `shutdown`
/// completes: its base URL and its task.
async fn serve_api(
    config: inferq_api::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api =
        tokio::spawn(async move { inferq_api::run(config, listener, shutdown).await.unwrap() });
    (base, api)
}

impl App {
    /// A second API in this process on the app's Redis and namespace, keys not required,
    /// `tweak` changing any other setting; it runs until the test ends. Returns its base URL.
    pub(crate) async fn another_api(&self, tweak: fn(&mut inferq_api::Config)) -> String {
        let mut config = inferq_api::Config::new(inferq_shared::config::RedisConfig::new(
            &self.redis.url(),
            &self.namespace,
        ));
        config.auth = inferq_api::AuthMode::Disabled;
        tweak(&mut config);
        serve_api(config, std::future::pending()).await.0
    }

    /// Starts the API's graceful shutdown and waits up to `timeout` for it to finish; returns
    /// whether it did.
    pub(crate) async fn stop_api(&mut self, timeout: Duration) -> bool {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(timeout, &mut self.api).await.is_ok()
    }

    /// The Redis key names of this test's namespace.
    pub(crate) fn keys(&self) -> Keys {
        Keys::new(&self.namespace)
    }

    /// Starts a worker process serving `models_dir`; `env` adds or overrides settings.
    pub(crate) fn worker(&self, models_dir: &Path, env: &[(&str, &str)]) -> Worker {
        let url = self.redis.url();
        Worker::start_on(
            &[("INFERQ_REDIS_URL", &url)],
            &self.namespace,
            models_dir,
            env,
        )
    }

    /// Waits until `GET /models` lists every one of `names` with a live worker.
    pub(crate) async fn wait_models(&self, names: &[&str]) {
        self.anonymous().wait_models(names).await
    }

    /// A client of this API that sends `key` with every request.
    pub(crate) fn client(&self, key: &str) -> Client {
        Client::new(self.http.clone(), &self.base, Some(key))
    }

    /// A client of this API that sends no key.
    pub(crate) fn anonymous(&self) -> Client {
        Client::new(self.http.clone(), &self.base, None)
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.anonymous().post_json(path, body).await
    }

    /// GET; a transport failure reads as status 0.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.anonymous().get(path).await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        self.anonymous().delete(path).await
    }

    /// Polls until the job has the given status.
    pub(crate) async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let what = format!("job {id} becomes {status}");
        eventually(timeout, what, async || {
            let (_, record) = self.get(&format!("/status/{id}")).await;
            if record["status"] == status {
                Ok(record)
            } else {
                Err(record)
            }
        })
        .await
    }

    /// Submits jobs 32 at a time and returns their ids in order.
    pub(crate) async fn submit_all(&self, jobs: &[Value]) -> Vec<String> {
        submit_all(self.http.clone(), self.base.clone(), jobs.to_vec(), None).await
    }

    /// A job hash field straight from Redis.
    pub(crate) async fn job_field(&self, id: &str, field: &str) -> Option<String> {
        let mut conn = self.redis.conn().await;
        redis::cmd("HGET")
            .arg(self.keys().job(job_id(id)))
            .arg(field)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// Submits a job and returns its id, asserting the 202 contract.
    pub(crate) async fn submit(&self, body: &Value) -> String {
        let (status, reply) = self.post_json("/jobs", body).await;
        assert_eq!(status, 202, "submit failed: {reply}");
        assert_eq!(reply["status"], "queued");
        let id = reply["id"].as_str().unwrap().to_owned();
        assert_eq!(reply["status_url"], format!("/status/{id}"));
        id
    }

    /// Polls until the job is terminal and returns its record.
    pub(crate) async fn wait_done(&self, id: &str, timeout: Duration) -> Value {
        eventually(timeout, format!("job {id} is done"), async || {
            let (status, record) = self.get(&format!("/status/{id}")).await;
            // 503 while Redis is down or the API is reconnecting: retry, as a client would.
            assert!(
                matches!(status, 200 | 503),
                "status of {id}: {status} {record}"
            );
            if matches!(
                record["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                Ok(record)
            } else {
                Err(record)
            }
        })
        .await
    }

    /// The worker that ran a job's latest attempt, read from its Redis record.
    pub(crate) async fn job_worker(&self, id: &str) -> Option<String> {
        self.job_field(id, "worker").await
    }
}
