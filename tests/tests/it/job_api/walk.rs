//! `GET /jobs` walked page by page across two API processes: every job whose record lives and
//! that matches the filters is listed exactly once, newest first, while jobs keep coming.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ApiProcess, eventually, linear_job, spawn_app, test_models};

const DONE: Duration = Duration::from_secs(120);

fn mlp_job(seed: f32) -> Value {
    json!({"model": "mlp_small", "inputs": [
        {"name": "x", "shape": [1, 64], "datatype": "FP32", "data": vec![seed; 64]}]})
}

async fn post(http: &reqwest::Client, url: String, body: &Value, key: Option<&str>) -> Value {
    let mut req = http.post(url).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert!(matches!(status, 200 | 202), "{status} {body}");
    body
}

/// Submits `jobs` in one bulk request; returns the ids.
async fn bulk(http: &reqwest::Client, base: &str, jobs: Vec<Value>) -> Vec<String> {
    let reply = post(
        http,
        format!("{base}/jobs/batch"),
        &json!({"jobs": jobs}),
        None,
    )
    .await;
    reply["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_else(|| panic!("{j}")).to_owned())
        .collect()
}

/// Walks `GET /jobs?<query>` to its end, page by page, alternating between the replicas.
async fn walk(http: &reqwest::Client, bases: &[String], query: &str) -> Vec<Value> {
    let (mut listed, mut cursor, mut page) = (Vec::new(), None::<String>, 0);
    loop {
        let base = &bases[page % bases.len()];
        let url = match &cursor {
            Some(c) => format!("{base}/jobs?{query}&cursor={c}"),
            None => format!("{base}/jobs?{query}"),
        };
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        listed.extend(body["jobs"].as_array().unwrap().iter().cloned());
        page += 1;
        assert!(page < 10_000, "the walk does not end");
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return listed,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_listing_across_two_replicas_lists_every_matching_job_once() {
    let app = spawn_app().await;
    let api2 = ApiProcess::start(&app, &[]).await;
    let env = [
        ("INFERQ_MODELS", "linear,mlp_small"),
        ("INFERQ_THREADS", "1"),
    ];
    let _workers = [
        app.worker(&test_models(), &env),
        app.worker(&test_models(), &env),
    ];
    app.wait_models(&["linear", "mlp_small"]).await;
    let bases = vec![app.base.clone(), api2.base.clone()];
    let http = app.http.clone();
    // The second replica knows the models too before anything is sent to it.
    let models = format!("{}/models", api2.base);
    eventually(
        Duration::from_secs(30),
        "the second API lists the models",
        async || {
            let text = http.get(&models).send().await.ok()?.text().await.ok()?;
            (text.contains("\"linear\"") && text.contains("\"mlp_small\"")).then_some(())
        },
    )
    .await;
    let mut ids: Vec<String> = Vec::new();

    // Bulk submissions: each writes its jobs with one creation time (hundreds of ties).
    for round in 0..4 {
        let jobs = (0..500)
            .map(|i| match i % 3 {
                0 => mlp_job(i as f32 / 100.0),
                _ => linear_job(&[[round as f32, i as f32, 1.0, 2.0]]),
            })
            .collect();
        ids.extend(bulk(&http, &bases[round % 2], jobs).await);
    }
    // Single submissions racing through both replicas (group commits share creation times).
    let singles = futures_util::future::join_all((0..200).map(|i| {
        let (http, base) = (http.clone(), bases[i % 2].clone());
        async move {
            let body = linear_job(&[[i as f32, 0.0, 0.0, 1.0]]);
            post(&http, format!("{base}/jobs"), &body, None).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    }))
    .await;
    ids.extend(singles);
    // Idempotent replays make no second job.
    for k in 0..20 {
        let body = linear_job(&[[k as f32, 1.0, 1.0, 1.0]]);
        let key = format!("listing-{k}");
        let a = post(&http, format!("{}/jobs", bases[0]), &body, Some(&key)).await;
        let b = post(&http, format!("{}/jobs", bases[1]), &body, Some(&key)).await;
        assert_eq!(a["id"], b["id"]);
        ids.push(a["id"].as_str().unwrap().to_owned());
    }
    // Cached results: the first job runs, the later ones are answered from the cache.
    let mut cached = linear_job(&[[9.0, 9.0, 9.0, 9.0]]);
    cached["parameters"] = json!({"cache": true});
    let first = post(&http, format!("{}/jobs", bases[0]), &cached, None).await;
    let first = first["id"].as_str().unwrap().to_owned();
    app.wait_done(&first, DONE).await;
    ids.push(first);
    for i in 0..30 {
        let reply = post(&http, format!("{}/jobs", bases[i % 2]), &cached, None).await;
        assert_eq!(reply["status"], "succeeded", "{reply}");
        ids.push(reply["id"].as_str().unwrap().to_owned());
    }
    // Scheduled jobs an hour ahead, half of them cancelled.
    let mut later = linear_job(&[[1.0, 2.0, 3.0, 4.0]]);
    later["parameters"] = json!({"delay_ms": 3_600_000});
    let scheduled = bulk(&http, &bases[1], vec![later; 40]).await;
    for id in &scheduled[..20] {
        let r = http.delete(format!("{}/jobs/{id}", bases[0])).send().await;
        assert_eq!(r.unwrap().status(), 200);
    }
    ids.extend(scheduled);
    // A job whose record expires: it leaves the listing.
    let mut brief = linear_job(&[[0.5; 4]]);
    brief["parameters"] = json!({"result_ttl_secs": 1});
    let brief = post(&http, format!("{}/jobs", bases[0]), &brief, None).await;
    let brief = brief["id"].as_str().unwrap().to_owned();
    app.wait_done(&brief, DONE).await;

    // Every job as it ends up before the walks.
    let mut records: HashMap<String, Value> = HashMap::new();
    for id in &ids {
        let (status, record) = app.get(&format!("/status/{id}")).await;
        assert_eq!(status, 200, "{record}");
        let record = match record["status"].as_str() {
            Some("queued" | "running") => app.wait_done(id, DONE).await,
            _ => record,
        };
        records.insert(id.clone(), record);
    }
    assert_eq!(records.len(), 2_291);
    let brief_url = format!("/status/{brief}");
    eventually(
        Duration::from_secs(30),
        "the brief job's record expires",
        async || app.get(&brief_url).await.0 == 404,
    )
    .await;

    // Jobs keep coming and finishing during the walks.
    let extra = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (http, bases, extra, stop) = (http.clone(), bases.clone(), extra.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let jobs = (0..25).map(|i| linear_job(&[[i as f32; 4]])).collect();
                let new = bulk(&http, &bases[n % 2], jobs).await;
                extra.lock().unwrap().extend(new);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        (
            "status=succeeded&model=linear&limit=50",
            Some("succeeded"),
            Some("linear"),
        ),
        ("model=mlp_small&limit=37", None, Some("mlp_small")),
        ("status=scheduled&limit=7", Some("scheduled"), None),
        ("status=cancelled&limit=5", Some("cancelled"), None),
        ("limit=200", None, None),
    ];
    for (query, status, model) in cases {
        let listed = walk(&http, &bases, query).await;
        let extra = extra.lock().unwrap().clone();
        let want: HashSet<&String> = records
            .iter()
            .filter(|(_, r)| status.is_none_or(|s| r["status"] == s))
            .filter(|(_, r)| model.is_none_or(|m| r["model"] == m))
            .map(|(id, _)| id)
            .collect();
        let mut seen = HashSet::new();
        for job in &listed {
            let id = job["id"].as_str().unwrap().to_owned();
            assert!(status.is_none_or(|s| job["status"] == s), "{query}: {job}");
            assert!(model.is_none_or(|m| job["model"] == m), "{query}: {job}");
            assert!(
                want.contains(&id) || extra.contains(&id),
                "{query}: unknown job {job}"
            );
            assert_ne!(id, brief, "{query}: an expired job is listed");
            assert!(seen.insert(id), "{query}: listed twice: {job}");
        }
        let missed: Vec<&&String> = want.iter().filter(|id| !seen.contains(**id)).collect();
        assert!(
            missed.is_empty(),
            "{query}: {} of {} matching jobs never listed ({} listed)",
            missed.len(),
            want.len(),
            listed.len()
        );
        let times: Vec<&str> = listed
            .iter()
            .map(|j| j["created_at"].as_str().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "{query}: not newest first"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.await.unwrap();
}

/// The sweeper walks the whole index a step at a time, through runs of entries written in one
/// millisecond longer than a step, dropping every entry whose record is gone (and entries that
/// name no job) and keeping the others, in order.
#[tokio::test]
async fn the_sweeper_drops_the_entries_of_expired_jobs_and_keeps_the_others() {
    use inferq_shared::JobId;
    use inferq_shared::config::RedisConfig;
    use inferq_shared::queue::Queue;

    let app = spawn_app().await;
    let queue = Queue::connect(
        &RedisConfig::new(&app.redis.url(), &app.namespace),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let keys = app.keys();
    let mut conn = app.redis.conn().await;
    // A live job, 2,500 expired ones in one millisecond, a second live job, 300 more expired
    // ones and an entry that names no job.
    let live = [JobId::new(), JobId::new()];
    let mut pipe = redis::pipe();
    // The records first: the app's own sweeper must never see a live job's entry without one.
    for id in &live {
        pipe.cmd("HSET")
            .arg(keys.job(*id))
            .arg("model")
            .arg("linear");
    }
    let mut add = |ms: u64, seq: u64, id: String| {
        pipe.cmd("XADD")
            .arg(keys.index())
            .arg(format!("{ms}-{seq}"))
            .arg("i")
            .arg(id);
    };
    add(10, 0, live[0].to_string());
    for seq in 0..2_500 {
        add(20, seq, JobId::new().to_string());
    }
    add(30, 0, live[1].to_string());
    for i in 0..300 {
        add(40 + i, 0, JobId::new().to_string());
    }
    add(400, 0, "not a job".into());
    let () = pipe.query_async(&mut conn).await.unwrap();
    // (The app's own sweeper runs meanwhile; either may drop an entry.)
    let mut from = None;
    for _ in 0..20 {
        from = queue.sweep_index(0, from, 1000).await.unwrap().0;
        if from.is_none() {
            break;
        }
    }
    assert_eq!(from, None, "the sweep never reached the end of the index");
    let left: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys.index())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<&str> = left.iter().map(|(_, f)| f[0].1.as_str()).collect();
    assert_eq!(ids, [live[0].to_string(), live[1].to_string()]);
}

/// An empty index, and one whose entries name no job, are swept without an error (the
/// sweeper once sent an empty pipeline for them, which the client refuses, and so never
/// dropped an entry naming no job).
#[tokio::test]
async fn the_sweeper_goes_through_an_empty_index_and_one_naming_no_job() {
    let f = crate::support::queue::setup().await;
    let (next, gone) = f.queue.sweep_index(0, None, 1000).await.unwrap();
    assert!(next.is_none() && gone == 0);

    let index = f.queue.keys().index();
    let mut conn = f.conn.clone();
    let _: String = redis::cmd("XADD")
        .arg(&index)
        .arg("*")
        .arg("i")
        .arg("not a job")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(f.queue.sweep_index(0, None, 1000).await.unwrap().1, 1);
    let left: u64 = redis::cmd("XLEN")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "the entry naming no job is dropped");
}
