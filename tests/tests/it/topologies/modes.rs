//! The connection settings as a user meets them: two modes at once refuse to start, so does a
//! master name no sentinel monitors, and a submission that no replica confirmed is a `503`
//! whose retry (same `Idempotency-Key`) makes no second job, also when its connection is lost
//! while it waits.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{in_sync, replica_of, submit_keyed};
use crate::support::topology::{Sentinels, redis_cli, sentinel};
use crate::support::{
    ApiProcess, AppOptions, Client, Redis, all_under, api_binary, free_port, linear_job,
    spawn_app_with, test_models, worker_binary,
};

/// Runs the API and the worker binary with `env` (and what they need besides), each of
/// which must refuse to start; returns what each said, by binary.
fn refused_starts(env: &[(&str, String)]) -> Vec<(String, String)> {
    [api_binary(), worker_binary()]
        .into_iter()
        .map(|binary| {
            let out = Command::new(&binary)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("INFERQ_BIND", "127.0.0.1:0")
                .env("INFERQ_MODELS_DIR", test_models())
                .env("INFERQ_MODELS", "linear")
                .env("ORT_DYLIB_PATH", env!("ORT_DYLIB_PATH"))
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let name = binary.display().to_string();
            assert!(!out.status.success(), "{name} started: {said}");
            (name, said)
        })
        .collect()
}

#[test]
fn two_connection_modes_are_a_startup_error_naming_both() {
    let env = [
        ("INFERQ_REDIS_URL", "redis://127.0.0.1:1".to_owned()),
        (
            "INFERQ_REDIS_CLUSTER",
            "redis://127.0.0.1:2,redis://127.0.0.1:3".to_owned(),
        ),
    ];
    for (binary, said) in refused_starts(&env) {
        assert!(
            said.contains("INFERQ_REDIS_URL and INFERQ_REDIS_CLUSTER"),
            "{binary}: {said}"
        );
    }
}

#[test]
fn a_master_name_no_sentinel_monitors_is_a_startup_error() {
    let master = Redis::start_with(false);
    let watcher = sentinel(master.port);
    // Also with a sentinel listed that is down: the one that answers decides.
    let down = format!("redis://127.0.0.1:{}", free_port());
    let up = format!("redis://127.0.0.1:{}", watcher.port);
    for (sentinels, answered) in [
        (up.clone(), "1 sentinel(s) that answered (of 1)"),
        (format!("{up},{down}"), "1 sentinel(s) that answered (of 2)"),
        (format!("{down},{up}"), "1 sentinel(s) that answered (of 2)"),
    ] {
        let env = [
            ("INFERQ_REDIS_SENTINELS", sentinels),
            ("INFERQ_REDIS_SENTINEL_MASTER", "no-such-master".to_owned()),
            ("INFERQ_REDIS_TIMEOUT_MS", "1000".to_owned()),
            ("INFERQ_NAMESPACE", super::namespace()),
        ];
        for (binary, said) in refused_starts(&env) {
            assert!(
                said.contains("INFERQ_REDIS_SENTINEL_MASTER is 'no-such-master'")
                    && said.contains(answered)
                    && said.contains("monitors a master of that name"),
                "{binary}: {said}"
            );
        }
    }
    // The name the sentinel does monitor is no error.
    let asked = redis_cli(
        watcher.port,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Sentinels::NAME],
    );
    assert!(asked.contains(&master.port.to_string()), "{asked}");
}

#[test]
fn another_partition_count_than_the_recorded_one_is_a_startup_error() {
    let redis = Redis::start_with(false);
    let ns = super::namespace();
    redis_cli(redis.port, &["SET", &format!("{{{ns}}}:partitions"), "4"]);
    let env = [
        ("INFERQ_REDIS_URL", redis.url()),
        ("INFERQ_NAMESPACE", ns.clone()),
        ("INFERQ_PARTITIONS", "2".to_owned()),
    ];
    for (binary, said) in refused_starts(&env) {
        assert!(
            said.contains("spread over 4 partitions") && said.contains("INFERQ_PARTITIONS=4"),
            "{binary}: {said}"
        );
    }
    // The record stands: nothing overwrote it.
    assert_eq!(
        redis_cli(redis.port, &["GET", &format!("{{{ns}}}:partitions")]).trim(),
        "4"
    );

    // A namespace a release before partitions filled (its listing under `{ns}`, no count
    // recorded) is one partition: more is refused, and nothing is recorded.
    let old = super::namespace();
    redis_cli(
        redis.port,
        &["XADD", &format!("{{{old}}}:listing"), "*", "i", "x"],
    );
    let env = [
        ("INFERQ_REDIS_URL", redis.url()),
        ("INFERQ_NAMESPACE", old.clone()),
        ("INFERQ_PARTITIONS", "2".to_owned()),
    ];
    for (binary, said) in refused_starts(&env) {
        assert!(
            said.contains("written before partitions") && said.contains("INFERQ_PARTITIONS=1"),
            "{binary}: {said}"
        );
    }
    assert_eq!(
        redis_cli(redis.port, &["EXISTS", &format!("{{{old}}}:partitions")]).trim(),
        "0"
    );
}

#[tokio::test]
async fn an_unreplicated_submission_is_503_and_its_retry_makes_no_second_job() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| {
            c.redis.redis_wait_replicas = 1;
            c.redis.redis_wait_timeout_ms = 200;
        }),
        ..AppOptions::default()
    })
    .await;
    let _worker = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let submit = || submit_keyed(app.anonymous(), "only-once");
    // No replica: the master holds the job, but the answer says it is not safe yet.
    let (status, retry_after, body) = submit().await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after);
    assert_eq!(body["error"]["code"], "not_replicated", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{body}"
    );

    // A replica joins; the retry is answered with the one job the first attempt made. On a
    // loaded machine its acknowledgement can miss the 200 ms wait: the client retries the
    // `503` with the same key, as the message tells it to.
    let _replica = replica_of(app.redis.port);
    let mut answer = submit().await;
    for _ in 0..20 {
        if answer.0 != 503 {
            break;
        }
        assert_eq!(answer.2["error"]["code"], "not_replicated", "{}", answer.2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        answer = submit().await;
    }
    let (status, _, body) = answer;
    assert!([200, 202].contains(&status), "{status}: {body}");
    let mut conn = app.redis.conn().await;
    let jobs: Vec<String> = redis::cmd("KEYS")
        .arg(all_under(&app.keys().job_prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(jobs[0].ends_with(body["id"].as_str().unwrap()));
}

/// The hole a `WAIT` sent apart from its write leaves: a connection lost between the two makes
/// the `WAIT` run on a fresh connection that wrote nothing, and Redis answers it at once with
/// every replica still connected, however far behind. Here the replica is stopped (still
/// connected, acknowledging nothing) and the submitting connections are killed while
/// submissions wait; no submission may be answered as replicated.
#[tokio::test]
async fn a_lost_connection_never_confirms_a_submission_no_replica_holds() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| {
            c.redis.redis_wait_replicas = 1;
            c.redis.redis_wait_timeout_ms = 400;
        }),
        ..AppOptions::default()
    })
    .await;
    let replica = replica_of(app.redis.port);
    let _worker = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let batch = serde_json::json!({"jobs": [linear_job(&[[1.0, 2.0, 3.0, 4.0]])]});
    let (status, body) = app.post_json("/jobs/batch", &batch).await;
    assert_eq!(status, 200, "with the replica acknowledging: {body}");

    let stopped = Stopped::stop(&replica);
    let mut answers = Vec::new();
    for _round in 0..3 {
        // Several submissions at once: one `WAIT` runs, the others' writes are done.
        let submissions: Vec<_> = (0..6)
            .map(|_| {
                let client = app.anonymous();
                let batch = batch.clone();
                tokio::spawn(async move { client.post_json("/jobs/batch", &batch).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150)).await;
        redis_cli(
            app.redis.port,
            &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
        );
        for s in submissions {
            answers.push(s.await.unwrap());
        }
    }
    drop(stopped);
    for (status, body) in &answers {
        assert_ne!(
            *status, 200,
            "a submission no replica holds was answered as replicated: {body}"
        );
        assert_eq!(*status, 503, "{body}");
    }
}

/// A retry of a submission (its `Idempotency-Key` answering with the job the first attempt
/// made) is confirmed only once a replica holds that job, also through another API process,
/// whose submit connection made none of the job's writes: the replay is a script call, after
/// which Redis's `WAIT` covers the whole replication stream so far (a plain read would leave
/// the fresh connection's `WAIT` answered at once). The replica is stopped, still connected
/// and acknowledging nothing: a replica far behind its master.
#[tokio::test]
async fn a_replayed_submission_is_confirmed_only_once_a_replica_holds_its_job() {
    let durable = |c: &mut inferq_api::Config| {
        c.redis.redis_wait_replicas = 1;
        c.redis.redis_wait_timeout_ms = 300;
    };
    let app = spawn_app_with(AppOptions {
        tweak: Some(durable),
        ..AppOptions::default()
    })
    .await;
    let replica = replica_of(app.redis.port);
    let _worker = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let other = ApiProcess::start(
        &app,
        &[
            ("INFERQ_REDIS_WAIT_REPLICAS", "1"),
            ("INFERQ_REDIS_WAIT_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let submit = async |client: Client| {
        let r = client
            .request(Method::POST, "/jobs")
            .header("Idempotency-Key", "replayed")
            .json(&linear_job(&[[1.0, 2.0, 3.0, 4.0]]))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };

    let stopped = Stopped::stop(&replica);
    let (status, body) = submit(app.anonymous()).await;
    assert_eq!(status, 503, "{body}");
    // The retry through the other API: its connection wrote nothing of the job.
    let (status, body) = submit(other.client(None)).await;
    assert_eq!(
        status, 503,
        "a retry was confirmed while no replica held its job: {body}"
    );
    assert_eq!(body["error"]["code"], "not_replicated", "{body}");

    drop(stopped);
    in_sync(&replica);
    let (status, body) = submit(other.client(None)).await;
    assert!([200, 202].contains(&status), "{status}: {body}");
    let jobs: Vec<String> = redis::cmd("KEYS")
        .arg(all_under(&app.keys().job_prefix()))
        .query_async(&mut app.redis.conn().await)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(jobs[0].ends_with(body["id"].as_str().unwrap()));
}

/// A `redis-server` stopped (`SIGSTOP`) until dropped: its connections stay open, and it
/// answers nothing, a replica acknowledges nothing.
struct Stopped {
    pid: String,
}

impl Stopped {
    fn stop(redis: &Redis) -> Self {
        let pid = redis_cli(redis.port, &["INFO", "server"])
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .expect("INFO server names the process")
            .trim()
            .to_owned();
        let stopped = Self { pid };
        stopped.signal("-STOP");
        stopped
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {}", self.pid);
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.signal("-CONT");
    }
}
