//! Test harness: starts a private `redis-server` on a free port, the API on port 0 and worker
//! processes, each test in its own key namespace.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Where the suite's processes write their log lines (every worker the harness starts, and
/// the in-process APIs, through one subscriber of this test process), kept after each test so
/// that `logs::no_secret_in_any_log_line`, run after the suite (scripts/test.sh), can read
/// them all. scripts/test.sh empties it before the suite.
pub(crate) fn log_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inferq-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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

pub(crate) fn test_models() -> PathBuf {
    repo_root().join("tests/models")
}

/// A program of the test venv (`.venv-test`, made by scripts/setup.sh: the Triton client,
/// openapi-spec-validator, schemathesis, Playwright).
pub(crate) fn test_venv(bin: &str) -> PathBuf {
    let path = repo_root().join(".venv-test/bin").join(bin);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (it makes the test venv)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server, killed on drop.
pub(crate) struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    aof: bool,
}

impl Redis {
    /// With `aof`, every write is appended and fsynced, as in docker-compose.yml.
    pub(crate) fn start_with(aof: bool) -> Self {
        let dir =
            std::env::temp_dir().join(format!("inferq-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port: free_port(),
            dir,
            child: None,
            aof,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&self.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (scripts/setup.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server abruptly (SIGKILL): no final save, like a crash.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory (so the AOF is replayed).
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub(crate) async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A worker process, killed on drop.
pub(crate) struct Worker {
    pub child: Child,
    pub id: String,
    /// Where its log lines (stdout) go.
    pub log: PathBuf,
}

impl Worker {
    /// Everything the worker logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "worker {} did not exit", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn worker_binary() -> PathBuf {
    // target/<profile>/deps/it-<hash> → target/<profile>/inferq-worker
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("inferq-worker");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --bins` (scripts/test.sh does)",
        path.display()
    );
    path
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_api, stop) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.await;
        };
        inferq_api::run(config, listener, shutdown).await.unwrap()
    });
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

impl App {
    /// Starts the API's graceful shutdown and waits up to `timeout` for it to finish; returns
    /// whether it did.
    pub(crate) async fn stop_api(&mut self, timeout: Duration) -> bool {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(timeout, &mut self.api).await.is_ok()
    }

    /// Starts a worker process serving `models_dir`; `env` adds or overrides settings.
    pub(crate) fn worker(&self, models_dir: &Path, env: &[(&str, &str)]) -> Worker {
        let id = format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut cmd = Command::new(worker_binary());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("INFERQ_REDIS_URL", self.redis.url())
            .env("INFERQ_NAMESPACE", &self.namespace)
            .env("INFERQ_MODELS_DIR", models_dir)
            .env("INFERQ_WORKER_ID", &id)
            .env("INFERQ_THREADS", "2")
            .env("INFERQ_LEASE_MS", "2000")
            .env("ORT_DYLIB_PATH", env!("ORT_DYLIB_PATH"))
            .env(
                "RUST_LOG",
                std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let log = log_dir().join(format!("{}-{id}.log", self.namespace));
        cmd.stdout(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker {
            child: cmd.spawn().unwrap(),
            id,
            log,
        }
    }

    /// Waits until `GET /models` lists every one of `names` with a live worker.
    pub(crate) async fn wait_models(&self, names: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = self.get("/models").await;
            let listed: Vec<&str> = body["models"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|m| m["workers"].as_u64().unwrap_or(0) > 0)
                        .filter_map(|m| m["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            if names.iter().all(|n| listed.contains(n)) {
                return;
            }
            assert!(Instant::now() < deadline, "models {names:?} never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET; a transport failure reads as status 0.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls until the job has the given status.
    pub(crate) async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, record) = self.get(&format!("/status/{id}")).await;
            if record["status"] == status {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never became {status}: {record}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Submits jobs 32 at a time and returns their ids in order.
    pub(crate) async fn submit_all(&self, jobs: &[Value]) -> Vec<String> {
        submit_all(self.http.clone(), self.base.clone(), jobs.to_vec(), None).await
    }

    /// A job hash field straight from Redis.
    pub(crate) async fn job_field(&self, id: &str, field: &str) -> Option<String> {
        let mut conn = self.redis.conn().await;
        redis::cmd("HGET")
            .arg(format!("{{{}}}:job:{id}", self.namespace))
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
        let deadline = Instant::now() + timeout;
        loop {
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
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} not done in time: {record}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The worker that ran a job's latest attempt, read from its Redis record.
    pub(crate) async fn job_worker(&self, id: &str) -> Option<String> {
        self.job_field(id, "worker").await
    }
}

/// A `linear` model job on one row `x`; its expected output is [`linear_expected`].
/// Submits `jobs` 32 at a time through the API at `base` and returns their ids in order,
/// counting accepted jobs in `progress`. Owns its inputs, so it can run in a spawned task.
pub(crate) async fn submit_all(
    http: reqwest::Client,
    base: String,
    jobs: Vec<Value>,
    progress: Option<Arc<AtomicUsize>>,
) -> Vec<String> {
    let mut ids = vec![String::new(); jobs.len()];
    let mut set = tokio::task::JoinSet::new();
    let mut collect = |(i, id): (usize, String)| {
        ids[i] = id;
        if let Some(p) = &progress {
            p.fetch_add(1, Ordering::SeqCst);
        }
    };
    for (i, body) in jobs.into_iter().enumerate() {
        let (http, base) = (http.clone(), base.clone());
        set.spawn(async move {
            let r = http
                .post(format!("{base}/jobs"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            (i, v["id"].as_str().unwrap().to_owned())
        });
        if set.len() >= 32 {
            collect(set.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(r) = set.join_next().await {
        collect(r.unwrap());
    }
    ids
}

pub(crate) fn slow_job(x: f32) -> Value {
    json!({"model": "slow", "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}]})
}

pub(crate) fn linear_job(rows: &[[f32; 4]]) -> Value {
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    json!({
        "model": "linear",
        "inputs": [{"name": "x", "shape": [rows.len(), 4], "datatype": "FP32", "data": data}]
    })
}

/// y = x·W + b with W[i][j] = 0.1·(3i + j + 1), b = [0.5, −0.5, 1.0]: the committed test model.
pub(crate) fn linear_expected(rows: &[[f32; 4]]) -> Vec<f64> {
    let b = [0.5, -0.5, 1.0];
    rows.iter()
        .flat_map(|x| {
            (0..3).map(move |j| {
                b[j] + (0..4)
                    .map(|i| f64::from(x[i]) * 0.1 * (3 * i + j + 1) as f64)
                    .sum::<f64>()
            })
        })
        .collect()
}

pub(crate) fn assert_close(got: &Value, want: &[f64], tol: f64) {
    let got: Vec<f64> = got
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {got}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "got {got:?}, want {want:?}"
        );
    }
}
