//! Server-sent events (`GET /jobs/<id>/events`) against the real API and real workers: a
//! stream follows a job to its end with increasing ids, `Last-Event-ID` resumes without
//! repeating, a pipeline's progress arrives as `progress` events, other tenants get `404`,
//! and hundreds of open streams share the API's one Redis subscription.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::audio::{fixture, speech_worker, submit_audio};
use crate::support::{
    App, AppOptions, eventually_every, linear_job, slow_job, spawn_app, spawn_app_with, test_models,
};

/// One event of a stream.
#[derive(Debug)]
struct SseEvent {
    name: String,
    id: u64,
    data: Value,
}

/// A `text/event-stream` response, read event by event.
struct EventStream {
    response: reqwest::Response,
    buf: String,
    /// Comment lines (keep-alives) read so far.
    comments: usize,
}

impl EventStream {
    /// Opens the stream of job `id` and checks it is one.
    async fn open(app: &App, id: &str, key: Option<&str>, last_event_id: Option<u64>) -> Self {
        let response = request(app, id, key, last_event_id).await;
        assert_eq!(response.status(), 200, "events of {id}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "events of {id}"
        );
        Self {
            response,
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event, or `None` once the server ended the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(SseEvent {
                    name: name.expect("an event without a name"),
                    id: id.expect("an event without an id"),
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.response.chunk())
                .await
                .expect("no event within a minute")
                .unwrap();
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => {
                    assert!(self.buf.trim().is_empty(), "cut off: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// Every event until the end of the stream.
    async fn rest(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

async fn request(app: &App, id: &str, key: Option<&str>, last: Option<u64>) -> reqwest::Response {
    // No overall timeout: a stream lasts as long as its job.
    let mut req = reqwest::Client::new().get(format!("{}/jobs/{id}/events", app.base));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(last) = last {
        req = req.header("last-event-id", last.to_string());
    }
    req.send().await.unwrap()
}

/// Makes `models` known to the API, then stops their worker, so jobs stay queued.
async fn register_then_stop(app: &App, models: &str, names: &[&str]) {
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", models)]);
    app.wait_models(names).await;
    drop(w);
}

fn statuses(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.data["status"].as_str().unwrap())
        .collect()
}

fn assert_increasing(events: &[SseEvent]) {
    assert!(
        events.windows(2).all(|w| w[0].id < w[1].id),
        "ids do not increase: {:?}",
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_stream_follows_a_job_to_its_end_and_resumes_without_repeating() {
    let app = spawn_app().await;
    register_then_stop(&app, "slow", &["slow"]).await;
    let id = app.submit(&slow_job(41.0)).await;

    let mut stream = EventStream::open(&app, &id, None, None).await;
    let queued = stream.next().await.unwrap();
    assert_eq!(queued.name, "status");
    assert_eq!(queued.data["id"], id.as_str());
    assert_eq!(queued.data["status"], "queued");
    assert_eq!(queued.data["queue_position"], 0);
    assert_eq!(queued.data["version"], queued.id);

    // A client that reconnects after the queued event gets the next change, not that again.
    let mut resumed = EventStream::open(&app, &id, None, Some(queued.id)).await;

    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "slow")]);
    let mut events = vec![queued];
    events.extend(stream.rest().await);
    assert_eq!(statuses(&events), ["queued", "running", "succeeded"]);
    assert!(events.iter().all(|e| e.name == "status"), "{events:?}");
    assert_increasing(&events);
    let last = events.last().unwrap();
    assert_eq!(last.data["result"]["outputs"][0]["data"], json!([42.0]));
    // The same record `GET /status` answers.
    let (_, record) = app.get(&format!("/status/{id}")).await;
    assert_eq!(last.data, record);

    let resumed = resumed.rest().await;
    assert_eq!(statuses(&resumed), ["running", "succeeded"]);
    assert_eq!(
        resumed.iter().map(|e| e.id).collect::<Vec<_>>(),
        events[1..].iter().map(|e| e.id).collect::<Vec<_>>()
    );

    // After the final event there is nothing more; an older id gets the current state once.
    let mut done = EventStream::open(&app, &id, None, Some(last.id)).await;
    assert!(done.rest().await.is_empty());
    let mut late = EventStream::open(&app, &id, None, Some(0)).await;
    let late = late.rest().await;
    assert_eq!(statuses(&late), ["succeeded"]);
    assert_eq!(late[0].id, last.id);
    // A fresh stream of a finished job: its final state, then the end.
    let mut fresh = EventStream::open(&app, &id, None, None).await;
    assert_eq!(statuses(&fresh.rest().await), ["succeeded"]);

    let r = request(&app, &id, None, None).await;
    assert_eq!(r.status(), 200);
    let bad = reqwest::Client::new()
        .get(format!("{}/jobs/{id}/events", app.base))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn a_pipeline_reports_its_progress_as_progress_events() {
    let app = spawn_app().await;
    let _w = speech_worker(&app, &[("INFERQ_SPEECH_THREADS", "1")]);
    let id = submit_audio(&app, &fixture("long.flac"), None).await;
    let mut stream = EventStream::open(&app, &id, None, None).await;
    let events = stream.rest().await;
    assert_increasing(&events);
    assert_eq!(events[0].name, "status");
    let last = events.last().unwrap();
    assert_eq!(last.name, "status");
    assert_eq!(last.data["status"], "succeeded", "{:?}", last.data);
    assert_eq!(
        last.data["progress"],
        json!({"done": 600.0, "total": 600.0})
    );
    let progress: Vec<f64> = events
        .iter()
        .filter(|e| e.name == "progress")
        .map(|e| {
            assert_eq!(e.data["status"], "running");
            e.data["progress"]["done"].as_f64().unwrap()
        })
        .collect();
    assert!(progress.len() >= 2, "too few progress events: {events:?}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {progress:?}"
    );
    // Every state change is a `status` event.
    let changes: Vec<&str> = events
        .iter()
        .filter(|e| e.name == "status")
        .map(|e| e.data["status"].as_str().unwrap())
        .collect();
    assert!(changes.ends_with(&["running", "succeeded"]), "{changes:?}");
}

const ADMIN: &str = "events-test-admin-key-0123456789abcdef";

#[tokio::test]
async fn another_tenants_job_is_unknown_and_streams_need_the_read_scope() {
    let app = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await;
    let admin = app.client(ADMIN);
    let key = async |tenant: &str, scopes: &[&str]| {
        let body = json!({"tenant": tenant, "scopes": scopes});
        admin.create_key(&body).await.0
    };
    let teal = key("teal", &["submit", "read"]).await;
    let plum = key("plum", &["submit", "read"]).await;
    let teal_submit_only = key("teal", &["submit"]).await;
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.client(&teal).wait_models(&["linear"]).await;
    drop(w);
    let r: Value = app
        .http
        .post(format!("{}/jobs", app.base))
        .bearer_auth(&teal)
        .json(&linear_job(&[[1.0, 2.0, 3.0, 4.0]]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_owned();

    let mut own = EventStream::open(&app, &id, Some(&teal), None).await;
    assert_eq!(own.next().await.unwrap().data["status"], "queued");
    let mut admin = EventStream::open(&app, &id, Some(ADMIN), None).await;
    assert_eq!(admin.next().await.unwrap().data["status"], "queued");

    let theirs = request(&app, &id, Some(&plum), None).await;
    assert_eq!(theirs.status(), 404);
    let theirs: Value = theirs.json().await.unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();
    let nobody = request(&app, &unknown, Some(&plum), None).await;
    assert_eq!(nobody.status(), 404);
    let nobody: Value = nobody.json().await.unwrap();
    assert_eq!(theirs["error"]["code"], "job_not_found");
    // Exactly as an unknown id: nothing tells that the job exists.
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&id, "<id>"),
        nobody["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&unknown, "<id>")
    );
    assert_eq!(request(&app, &id, None, None).await.status(), 401);
    assert_eq!(
        request(&app, &id, Some(&teal_submit_only), None)
            .await
            .status(),
        403
    );
    assert_eq!(
        request(&app, "not-a-job", Some(&teal), None).await.status(),
        400
    );
}

/// `CLIENT LIST` lines: every connection Redis has open.
async fn redis_clients(conn: &mut redis::aio::MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .unwrap();
    list.lines().count()
}

#[tokio::test]
async fn two_hundred_streams_share_the_apis_one_subscription() {
    let app = spawn_app_with(AppOptions {
        tweak: Some(|c| c.events_keepalive_secs = 1),
        ..Default::default()
    })
    .await;
    register_then_stop(&app, "linear", &["linear"]).await;
    let rows: Vec<[f32; 4]> = (0..200).map(|i| [i as f32, 0.0, 0.0, 0.0]).collect();
    let jobs: Vec<Value> = rows.iter().map(|r| linear_job(&[*r])).collect();
    let ids = app.submit_all(&jobs).await;
    let mut conn = app.redis.conn().await;

    let mut streams = vec![EventStream::open(&app, &ids[0], None, None).await];
    assert_eq!(streams[0].next().await.unwrap().data["status"], "queued");
    // Once the worker that registered the model has gone: the API's command connection, its
    // subscription, and this test's.
    let before = eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(10),
        "three Redis clients are left",
        async || match redis_clients(&mut conn).await {
            3 => Ok(3),
            n => Err(format!("{n} clients")),
        },
    )
    .await;
    for id in &ids[1..] {
        let mut s = EventStream::open(&app, id, None, None).await;
        assert_eq!(s.next().await.unwrap().data["status"], "queued");
        streams.push(s);
    }
    assert_eq!(redis_clients(&mut conn).await, before);

    // An idle stream gets keep-alive comments (every second here).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(redis_clients(&mut conn).await, before);

    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    for (i, s) in streams.iter_mut().enumerate() {
        let rest = s.rest().await;
        assert_eq!(
            rest.last().map(|e| &e.data["status"]),
            Some(&json!("succeeded")),
            "stream {i}: {rest:?}"
        );
        let y = rest.last().unwrap().data["result"]["outputs"][0]["data"][0]
            .as_f64()
            .unwrap();
        assert!((y - (0.5 + 0.1 * i as f64)).abs() < 1e-4, "stream {i}: {y}");
    }
    assert!(streams[0].comments >= 1, "no keep-alive comment");
}
