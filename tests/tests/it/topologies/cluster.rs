//! Redis Cluster mode: the API and workers on a cluster of three masters with a replica each
//! (`redis-cli --cluster create`), found from seeds; the job API works as on one node, and a
//! master killed under load is replaced by its replica with every acknowledged job kept.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use inferq_shared::config::DEFAULT_CLUSTER_PARTITIONS;

use super::{load, low_slot_namespace, namespace, walk_listing};
use crate::support::audio::{fixture, models_dir, multipart};
use crate::support::topology::{Cluster, redis_cli};
use crate::support::{
    ApiProcess, Worker, assert_close, eventually, linear_expected, linear_job, slow_job,
    test_models,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_job_api_works_on_a_cluster() {
    let cluster = Cluster::start();
    let ns = namespace();
    let seeds = cluster.seeds();
    let redis = [("INFERQ_REDIS_CLUSTER", seeds.as_str())];
    let api = ApiProcess::start_on(&redis, &ns, &[]).await;
    let _models = Worker::start_on(
        &redis,
        &ns,
        &test_models(),
        &[("INFERQ_MODELS", "linear,slow")],
    );
    let _speech = Worker::start_on(
        &redis,
        &ns,
        &models_dir(),
        &[("INFERQ_MODELS", "silero_vad")],
    );
    let client = api.client(None);
    client.wait_models(&["linear", "slow"]).await;

    // Submit, wait, read the result.
    let rows = [[1.0, 2.0, 3.0, 4.0]];
    let (status, body) = client.post_json("/jobs", &linear_job(&rows)).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, done) = client.get(&format!("/status/{id}?wait=30")).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_close(
        &done["result"]["outputs"][0]["data"],
        &linear_expected(&rows),
        1e-5,
    );

    // Idempotency: the same key names the same job.
    let keyed = |key: &'static str| {
        client
            .request(Method::POST, "/jobs")
            .header("Idempotency-Key", key)
            .json(&linear_job(&rows))
    };
    let first: Value = keyed("k1").send().await.unwrap().json().await.unwrap();
    let again: Value = keyed("k1").send().await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], again["id"]);

    // Listing shows the jobs.
    let (status, listed) = client.get("/jobs?limit=100").await;
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert!(ids.contains(&id.as_str()), "{listed}");
    assert!(ids.contains(&first["id"].as_str().unwrap()), "{listed}");

    // A group, run to its end.
    let (status, group) = client
        .post_json(
            "/groups",
            &json!({"jobs": [linear_job(&rows), linear_job(&rows)]}),
        )
        .await;
    assert_eq!(status, 202, "{group}");
    let (_, ended) = client
        .get(&format!(
            "/groups/{}?wait=30",
            group["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ended["status"], "succeeded", "{ended}");

    // Cancel: slow jobs queue behind each other; the last is cancelled while queued.
    let mut slow = Vec::new();
    for x in 0..3 {
        let (_, b) = client.post_json("/jobs", &slow_job(x as f32)).await;
        slow.push(b["id"].as_str().unwrap().to_owned());
    }
    let (status, cancelled) = client.delete(&format!("/jobs/{}", slow[2])).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    // The speech pipeline.
    let (content_type, audio) = multipart(&fixture("speech.wav"), None);
    let r = client
        .request(Method::POST, "/jobs")
        .header("content-type", content_type)
        .body(audio)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let speech: Value = r.json().await.unwrap();
    let (_, heard) = client
        .get(&format!(
            "/status/{}?wait=60",
            speech["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(heard["status"], "succeeded", "{heard}");
    assert!(
        !heard["result"]["segments"].as_array().unwrap().is_empty(),
        "{heard}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_replaced_and_every_acknowledged_job_succeeds() {
    let mut cluster = Cluster::start();
    let ns = namespace();
    let seeds = cluster.seeds();
    let redis = [("INFERQ_REDIS_CLUSTER", seeds.as_str())];
    let run = load::Run::start(&redis, &ns, &super::DURABLE).await;

    // kill -9 of the master serving the namespace: its replica takes over.
    let victim = cluster.master_of(&format!("{{{ns}}}"));
    let port = cluster.nodes[victim].port;
    cluster.nodes[victim].kill();
    eventually(
        Duration::from_secs(30),
        "a replica is promoted",
        async || (cluster.masters().len() == 3).then_some(()),
    )
    .await;
    cluster.wait_ok();
    // The old master comes back as the new master's replica, so submissions can be held by a
    // replica again.
    cluster.nodes[victim].restart();
    eventually(
        Duration::from_secs(30),
        "the old master replicates again",
        async || {
            redis_cli(port, &["INFO", "replication"])
                .contains("master_link_status:up")
                .then_some(())
        },
    )
    .await;
    run.finish("failover").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migration_under_load_loses_nothing() {
    let cluster = Cluster::start();
    let (ns, tag) = low_slot_namespace(&cluster).await;
    let seeds = cluster.seeds();
    let redis = [("INFERQ_REDIS_CLUSTER", seeds.as_str())];
    let run = load::Run::start(&redis, &ns, &[]).await;

    let to = cluster.reshard_from(&tag).await;
    assert_eq!(
        cluster.nodes[cluster.master_of(&tag)].port,
        to,
        "the first partition's slot moved"
    );
    run.finish("migration").await;
}

/// The jobs of one hot model spread over the cluster's masters: each holds its share of the
/// namespace's partitions (`INFERQ_PARTITIONS` unset: the cluster default, six), so each holds
/// about a third of the job records. The listing walks all of them with one cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_models_jobs_spread_over_every_master() {
    let cluster = Cluster::start();
    let ns = namespace();
    let seeds = cluster.seeds();
    let redis = [("INFERQ_REDIS_CLUSTER", seeds.as_str())];
    let api = ApiProcess::start_on(&redis, &ns, &[]).await;
    let _worker = Worker::start_on(&redis, &ns, &test_models(), &[("INFERQ_MODELS", "linear")]);
    let client = api.client(None);
    client.wait_models(&["linear"]).await;

    let rows = [[1.0, 2.0, 3.0, 4.0]];
    let mut ids = Vec::new();
    for _ in 0..3 {
        let jobs: Vec<Value> = (0..1000).map(|_| linear_job(&rows)).collect();
        let (status, body) = client
            .post_json("/jobs/batch", &json!({"jobs": jobs}))
            .await;
        assert_eq!(status, 200, "{}", body["error"]);
        for item in body["jobs"].as_array().unwrap() {
            ids.push(item["id"].as_str().expect("every item queued").to_owned());
        }
    }
    assert_eq!(ids.len(), 3000);

    // Job records by master: each within 15 % of the mean.
    let pattern = format!("{{{ns}.p*}}:job:*");
    let per_master: Vec<usize> = cluster
        .masters()
        .into_iter()
        .map(|port| {
            redis_cli(port, &["--scan", "--pattern", &pattern])
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .collect();
    eprintln!("job records by master: {per_master:?}");
    assert_eq!(per_master.len(), 3, "{per_master:?}");
    assert_eq!(per_master.iter().sum::<usize>(), 3000, "{per_master:?}");
    for n in &per_master {
        assert!(
            (850..=1150).contains(n),
            "job records by master {per_master:?}: not within 15 % of 1000"
        );
    }

    // Every job runs, whichever partition holds it.
    for id in ids.iter().step_by(97) {
        let (_, done) = client.get(&format!("/status/{id}?wait=60")).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }

    // One cursor walks every partition's listing: each job once, newest first.
    let seen = walk_listing(async |path: &str| client.get(path).await, 200).await;
    assert_eq!(seen.len(), 3000);
    assert!(ids.iter().all(|id| seen.contains(id)));
}

/// An idle worker's blocking read watches every partition of a cluster at once: an entry
/// arriving in any partition wakes it, and the reads of the other partitions are ended rather
/// than left to their block (20 s here: the answer must come long before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_wakes_for_an_entry_in_any_partition() {
    use inferq_shared::queue::keys::GROUP;
    let cluster = Cluster::start();
    let ns = namespace();
    let config = inferq_shared::config::RedisConfig {
        redis_cluster: cluster
            .seeds()
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect(),
        partitions: Some(DEFAULT_CLUSTER_PARTITIONS as u16),
        redis_url: None,
        ..inferq_shared::config::RedisConfig::new("", &ns)
    };
    let block = Duration::from_secs(20);
    let queue = inferq_shared::queue::Queue::connect(&config, block + Duration::from_secs(5))
        .await
        .unwrap();
    // Every lane of every partition has the group; entries go to the default lane.
    let mut lanes = Vec::new();
    for p in 0..DEFAULT_CLUSTER_PARTITIONS {
        for (priority, lane) in queue.partition_keys(p).lanes("m") {
            let port = cluster.nodes[cluster.master_of(&lane)].port;
            redis_cli(port, &["XGROUP", "CREATE", &lane, GROUP, "$", "MKSTREAM"]);
            if priority == inferq_shared::job::Priority::DEFAULT {
                lanes.push(lane);
            }
        }
    }
    for target in [DEFAULT_CLUSTER_PARTITIONS - 1, 2] {
        let lane = lanes[target].clone();
        let port = cluster.nodes[cluster.master_of(&lane)].port;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            redis_cli(
                port,
                &["XADD", &lane, "*", "id", &uuid::Uuid::new_v4().to_string()],
            );
        });
        let started = std::time::Instant::now();
        let got = queue.read_any("c", &["m"], 1, Some(block)).await.unwrap();
        let waited = started.elapsed();
        writer.await.unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(usize::from(got[0].1.entry().partition), target);
        assert!(
            waited < Duration::from_secs(10),
            "the read waited {waited:?} for an entry added after 0.3 s"
        );
    }
}
