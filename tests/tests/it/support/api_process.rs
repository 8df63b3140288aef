//! A second API: the `inferq-api` binary as a process of its own on the app's Redis and
//! namespace (for what an in-process API cannot show: its own metrics recorder, its own
//! telemetry, two processes sharing one Redis), killed on drop.

use std::process::{Child, Command};
use std::time::Duration;

use super::{App, Client, api_binary, eventually, free_port, log_dir};

/// An `inferq-api` process, killed on drop.
pub(crate) struct ApiProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client of it (no key) with the app's HTTP settings.
    http: reqwest::Client,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiProcess {
    /// Starts `inferq-api` on a free port of 127.0.0.1 with the app's Redis and namespace, keys
    /// not required and log lines at `warn` (into the suite's log directory), `env` adding or
    /// overriding settings; returns once it answers `GET /healthz`.
    pub(crate) async fn start(app: &App, env: &[(&str, &str)]) -> Self {
        let url = app.redis.url();
        Self::start_on(&[("INFERQ_REDIS_URL", &url)], &app.namespace, env).await
    }

    /// Starts `inferq-api` as [`ApiProcess::start`] does, with `redis` naming where Redis is
    /// (the settings of one connection mode) and `namespace` its key prefix.
    pub(crate) async fn start_on(
        redis: &[(&str, &str)],
        namespace: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let log = log_dir().join(format!("{namespace}-api-{port}.log"));
        let mut cmd = Command::new(api_binary());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(redis.iter().copied())
            .env("INFERQ_NAMESPACE", namespace)
            .env("INFERQ_BIND", format!("127.0.0.1:{port}"))
            .env("INFERQ_AUTH", "disabled")
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let api = Self {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        let healthz = format!("{}/healthz", api.base);
        eventually(Duration::from_secs(30), "inferq-api starts", async || {
            api.http.get(&healthz).send().await.map(drop)
        })
        .await;
        api
    }

    /// A client of this process that sends `key` (or none) with every request.
    pub(crate) fn client(&self, key: Option<&str>) -> Client {
        Client::new(self.http.clone(), &self.base, key)
    }

    /// Stops it with SIGTERM and asserts that it exits cleanly.
    pub(crate) fn terminate(&mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "inferq-api exited with {status}");
    }
}
