//! Redis over TLS with an ACL user, and secrets kept out of logs: a `redis-server` with TLS
//! only (certificates made here with openssl) whose default user is off, the API and a
//! worker as real processes on a `rediss://user:password@…` URL, keys made with the command
//! line and used (and misused) over HTTP at debug log level; then every line those processes
//! wrote is searched for the Redis password, the admin key and the API keys.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    assert_close, eventually_blocking, eventually_every, free_port, linear_expected, linear_job,
    test_models, worker_binary,
};

const PASSWORD: &str = "acl-password-7f3a9c2e51";
const ADMIN: &str = "tls-test-admin-key-6b1d0e9a4c7f2358";

/// A child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate it signed for 127.0.0.1 and localhost.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=inferq test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "redis.crt",
        ],
    );
}

fn start_tls_redis(dir: &Path, port: u16) -> Proc {
    let user = format!(">{PASSWORD}");
    let child = Command::new("redis-server")
        .current_dir(dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string()])
        .args([
            "--tls-cert-file",
            "redis.crt",
            "--tls-key-file",
            "redis.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args(["--user", "inferq", "on", &user, "~*", "&*", "+@all"])
        .args(["--user", "default", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually_blocking(Duration::from_secs(10), "redis-server (TLS) starts", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).map(drop)
    });
    Proc(child)
}

/// Runs an inferq binary with the test's Redis settings and `RUST_LOG=debug`, its stdout and
/// stderr into `<dir>/<name>.log`.
fn inferq(dir: &Path, bin: &str, name: &str, url: &str, ns: &str) -> Command {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut cmd = Command::new(worker_binary().with_file_name(bin));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("INFERQ_REDIS_URL", url)
        .env("INFERQ_REDIS_CA_CERT", dir.join("ca.crt"))
        .env("INFERQ_NAMESPACE", ns)
        .env("RUST_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

#[tokio::test]
async fn rediss_with_an_acl_user_and_no_secret_in_any_log() {
    let dir = std::env::temp_dir().join(format!("inferq-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let redis_port = free_port();
    let _redis = start_tls_redis(&dir, redis_port);
    let url = format!("rediss://inferq:{PASSWORD}@127.0.0.1:{redis_port}/");
    let ns = "tls";

    // The command line makes keys over TLS.
    let mut keys = Vec::new();
    for tenant in ["red", "blue"] {
        let out = inferq(&dir, "inferq-api", &format!("keys-{tenant}"), &url, ns)
            .args([
                "keys",
                "create",
                "--tenant",
                tenant,
                "--scopes",
                "submit,read",
            ])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keys create failed: see {}",
            dir.display()
        );
        keys.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }

    let api_port = free_port();
    let _api = Proc(
        inferq(&dir, "inferq-api", "api", &url, ns)
            .env("INFERQ_BIND", format!("127.0.0.1:{api_port}"))
            .env("INFERQ_ADMIN_KEY", ADMIN)
            .spawn()
            .unwrap(),
    );
    let _worker = Proc(
        inferq(&dir, "inferq-worker", "worker", &url, ns)
            .env("INFERQ_MODELS_DIR", test_models())
            .env("INFERQ_MODELS", "linear")
            .env("INFERQ_THREADS", "1")
            .env("ORT_DYLIB_PATH", env!("ORT_DYLIB_PATH"))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let get = |path: &str, key: &str| {
        http.get(format!("{base}{path}"))
            .header("authorization", format!("Bearer {key}"))
            .send()
    };

    // Ready means Redis answered over TLS; then a worker announces `linear`.
    let what = format!(
        "the API and a worker come up over TLS (logs in {})",
        dir.display()
    );
    eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(60),
        what,
        async || {
            let models: Value = match get("/models", &keys[0]).await {
                Ok(r) if r.status() == 200 => r.json().await.unwrap(),
                _ => Value::Null,
            };
            if models["models"][0]["workers"].as_u64().unwrap_or(0) > 0 {
                Ok(())
            } else {
                Err(models)
            }
        },
    )
    .await;
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A job end to end, over TLS both ways.
    let rows = [[1.0, 2.0, 3.0, 4.0]];
    let r = http
        .post(format!("{base}/jobs"))
        .header("x-api-key", &keys[0])
        .json(&linear_job(&rows))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record: Value = get(&format!("/status/{id}?wait=20"), &keys[0])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_close(
        &record["result"]["outputs"][0]["data"],
        &linear_expected(&rows),
        1e-5,
    );

    // Requests that fail in every way the auth layer knows, carrying secrets.
    // The last hex digit changed (to another digit, whatever it was).
    let last = if keys[1].ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &keys[1][..keys[1].len() - 1]);
    assert_eq!(
        get(&format!("/status/{id}"), &keys[1])
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(get("/models", &wrong).await.unwrap().status(), 401);
    assert_eq!(get("/workers", &keys[1]).await.unwrap().status(), 403);
    assert_eq!(get("/workers", ADMIN).await.unwrap().status(), 200);
    let r = http
        .post(format!("{base}/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "green", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    keys.push(
        r.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert_eq!(
        get("/models", keys.last().unwrap()).await.unwrap().status(),
        200
    );

    // A plain-text client on the TLS port, and a wrong password: refused, never logged.
    let mut bad = inferq_shared::config::RedisConfig::new(
        &format!("rediss://inferq:wrong-{PASSWORD}@127.0.0.1:{redis_port}/"),
        ns,
    );
    bad.redis_ca_cert = Some(dir.join("ca.crt"));
    bad.redis_timeout_ms = 1000;
    let queue = inferq_shared::queue::Queue::connect(&bad, Duration::ZERO)
        .await
        .unwrap();
    assert!(queue.ping().await.is_err());

    drop(_worker);
    drop(_api);
    let mut logs = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    assert!(
        logs.contains("inferq-api listening") && logs.contains("rediss://***@127.0.0.1"),
        "the processes logged too little to be a test: {logs}"
    );
    let mut secrets = vec![PASSWORD.to_owned(), ADMIN.to_owned()];
    for k in &keys {
        secrets.push(k.clone());
        // The secret half alone, and its hash, are as good as the key.
        secrets.push(k.rsplit('_').next().unwrap().to_owned());
        secrets.push(inferq_shared::auth::ApiKey::from_client(k).hash());
    }
    for (n, line) in logs.lines().enumerate() {
        for s in &secrets {
            assert!(
                !line.contains(s.as_str()),
                "log line {n} holds a secret: {line}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
