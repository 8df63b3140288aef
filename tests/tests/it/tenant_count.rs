//! A tenant's count of waiting or running jobs, kept in Redis by the scripts that enqueue and
//! end jobs, driven directly through `Queue` through every way a job ends; and dead letters
//! that name their tenant (`GET /dead?tenant=`).

use std::time::Duration;

use inferq_shared::config::RedisConfig;
use inferq_shared::job::{JobId, Priority};
use inferq_shared::queue::{
    Cancelled, Completion, Entry, Keys, NewJob, Outcome, Queue, Retention, Retired, Retried,
    Submitted,
};
use serde_json::{Value, json};

use crate::support::Redis;
use crate::support::queue::model_info;

const RETENTION: Retention = Retention {
    result_ttl: Duration::from_secs(60),
};

fn job(id: JobId, tenant: &str, max: u64) -> NewJob<'_> {
    NewJob {
        id,
        model: "m",
        payload: br#"{"inputs":[]}"#,
        deadline_ms: None,
        result_ttl_secs: None,
        idempotency: None,
        cache: None,
        due_ms: None,
        trace: None,
        tenant,
        tenant_max_queued: max,
        priority: Priority::DEFAULT,
        webhook: None,
    }
}

/// A tenant's count of active jobs as Redis holds it (0 when absent).
pub(crate) async fn active(
    conn: &mut redis::aio::MultiplexedConnection,
    ns: &str,
    tenant: &str,
) -> u64 {
    let n: Option<u64> = redis::cmd("HGET")
        .arg(Keys::new(ns).tenant_active())
        .arg(tenant)
        .query_async(conn)
        .await
        .unwrap();
    n.unwrap_or(0)
}

#[tokio::test]
async fn a_tenants_count_follows_every_way_a_job_ends() {
    let redis = Redis::start_with(false);
    let ns = format!("q{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let queue = Queue::connect(&RedisConfig::new(&redis.url(), &ns), Duration::ZERO)
        .await
        .unwrap();
    queue
        .announce_models("w1", &[model_info("m")])
        .await
        .unwrap();
    queue.ensure_group("m").await.unwrap();
    let mut conn = redis.conn().await;
    let ttl = Duration::from_secs(60);

    // Five in one call with room for four: the fifth is refused, one short.
    let ids: Vec<JobId> = (0..5).map(|_| JobId::new()).collect();
    let jobs: Vec<NewJob<'_>> = ids.iter().map(|id| job(*id, "teal", 4)).collect();
    let out = queue.submit_many(&jobs, 0, ttl).await.unwrap();
    assert!(out[..4].iter().all(|s| *s == Submitted::Queued), "{out:?}");
    assert_eq!(out[4], Submitted::QuotaExceeded { excess: 1 });
    assert_eq!(active(&mut conn, &ns, "teal").await, 4);
    let plum = JobId::new();
    let out = queue.submit_many(&[job(plum, "plum", 1)], 0, ttl).await;
    assert_eq!(out.unwrap(), [Submitted::Queued]);
    // A group counts each member and is all or nothing.
    let members = [job(JobId::new(), "teal", 5), job(JobId::new(), "teal", 5)];
    let out = queue
        .submit_group(JobId::new(), &members, 0, ttl)
        .await
        .unwrap();
    assert_eq!(out, vec![Submitted::QuotaExceeded { excess: 1 }; 2]);
    assert_eq!(active(&mut conn, &ns, "teal").await, 4);

    let entries = queue.read("w1", "m", 10, None).await.unwrap();
    let d: Vec<_> = entries
        .into_iter()
        .map(|e| match e {
            Entry::Job(d) => d,
            Entry::Malformed { .. } => panic!("malformed entry"),
        })
        .collect();
    assert_eq!(d.len(), 5);
    // Running still counts; succeeding does not.
    let tokens = queue.start("m", "w1", &d[..2], 3, RETENTION).await.unwrap();
    assert_eq!(tokens, [1, 1]);
    assert_eq!(active(&mut conn, &ns, "teal").await, 4);
    let done = |i: usize| Completion {
        job: d[i].job,
        entry: d[i].entry.clone(),
        token: 1,
        outcome: Outcome::Succeeded(b"{}".to_vec()),
    };
    assert_eq!(
        queue.complete("m", &[done(0)], RETENTION).await.unwrap(),
        [true]
    );
    assert_eq!(active(&mut conn, &ns, "teal").await, 3);
    // Cancelled while running: it leaves the count once, however its worker reports after.
    let cancelled = queue.cancel(d[1].job, RETENTION).await.unwrap();
    assert_eq!(cancelled, Cancelled::Cancelled);
    assert_eq!(active(&mut conn, &ns, "teal").await, 2);
    assert_eq!(
        queue.complete("m", &[done(1)], RETENTION).await.unwrap(),
        [false]
    );
    assert_eq!(active(&mut conn, &ns, "teal").await, 2);
    // Out of attempts: dead-lettered, naming its tenant.
    let tokens = queue
        .start("m", "w1", &d[2..3], 0, RETENTION)
        .await
        .unwrap();
    assert_eq!(tokens, [0]);
    assert_eq!(active(&mut conn, &ns, "teal").await, 1);
    // An unreadable entry whose job is known: failed and dead-lettered, naming its tenant.
    let aside = [(d[3].entry.clone(), Some(d[3].job))];
    assert_eq!(queue.set_aside("m", &aside, RETENTION).await.unwrap(), 1);
    assert_eq!(active(&mut conn, &ns, "teal").await, 0);

    let (teal, _) = queue.dead_letters(10, None, Some("teal")).await.unwrap();
    let dead: Vec<_> = teal.iter().map(|x| x.job.unwrap()).collect();
    assert_eq!(dead, [d[3].job, d[2].job], "newest first");
    assert!(teal.iter().all(|x| x.tenant.as_deref() == Some("teal")));
    let (none, next) = queue.dead_letters(10, None, Some("plum")).await.unwrap();
    assert!(none.is_empty() && next.is_none());
    // A page of one, then the next from its cursor.
    let (first, next) = queue.dead_letters(1, None, Some("teal")).await.unwrap();
    assert_eq!(first[0].job, Some(d[3].job));
    let (second, _) = queue
        .dead_letters(1, next.as_deref(), Some("teal"))
        .await
        .unwrap();
    assert_eq!(second[0].job, Some(d[2].job));

    // Retried by an operator: it counts again.
    let retried = queue.retry_dead(&d[2].job.to_string()).await.unwrap();
    assert_eq!(retried, Retried::Queued(d[2].job));
    assert_eq!(active(&mut conn, &ns, "teal").await, 1);
    // Retiring the model fails what waits: both tenants are back to nothing.
    assert_eq!(active(&mut conn, &ns, "plum").await, 1);
    let retired = queue.retire_model("m", RETENTION).await.unwrap();
    assert_eq!(retired, Retired::Retired(2));
    assert_eq!(active(&mut conn, &ns, "teal").await, 0);
    assert_eq!(active(&mut conn, &ns, "plum").await, 0);
    let left: Option<Vec<String>> = redis::cmd("HKEYS")
        .arg(Keys::new(&ns).tenant_active())
        .query_async(&mut conn)
        .await
        .ok();
    assert_eq!(left.unwrap_or_default(), Vec::<String>::new());
}

#[tokio::test]
async fn dead_letters_show_their_tenant_and_filter_by_it() {
    let app = crate::support::spawn_app().await;
    let cfg = RedisConfig::new(&app.redis.url(), &app.namespace);
    let queue = Queue::connect(&cfg, Duration::ZERO).await.unwrap();
    queue
        .announce_models("w1", &[model_info("m")])
        .await
        .unwrap();
    queue.ensure_group("m").await.unwrap();
    let id = JobId::new();
    let out = queue
        .submit_many(&[job(id, "teal", 0)], 0, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(out, [Submitted::Queued]);
    let Entry::Job(d) = queue.read("w1", "m", 1, None).await.unwrap().remove(0) else {
        panic!("malformed entry");
    };
    // Out of attempts at once: dead-lettered.
    assert_eq!(
        queue.start("m", "w1", &[d], 0, RETENTION).await.unwrap(),
        [0]
    );

    let (status, page) = app.get("/dead?tenant=teal").await;
    assert_eq!(status, 200, "{page}");
    let dead = page["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{page}");
    assert_eq!(dead[0]["id"], id.to_string());
    assert_eq!(dead[0]["tenant"], "teal");
    let (_, all) = app.get("/dead").await;
    assert_eq!(all["dead_letters"][0]["tenant"], "teal");
    let (_, other) = app.get("/dead?tenant=plum").await;
    assert_eq!(other["dead_letters"], json!([]));
    assert_eq!(other["next_cursor"], Value::Null);
    let (status, bad) = app.get("/dead?tenant=not%20a%20tenant").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "invalid_request");
}
