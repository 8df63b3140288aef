//! Webhook deliveries kept as one packed field each in the partition's deliveries hash: a
//! delivery an older release wrote as a hash of its own (`{ns}:hook:<id>`) or as a field per
//! delivery field is packed by the claim that meets it, delivered like any other, and gone once
//! settled; counters an older deliverer left beside a packed delivery keep the claim fenced.

use std::time::Duration;

use inferq_shared::job::JobId;
use inferq_shared::queue::hooks::HookOutcome;
use inferq_shared::webhook::WebhookEvent;

use crate::support::queue::setup;

#[tokio::test]
async fn a_delivery_in_the_old_shape_is_claimed_and_settled() {
    let f = setup().await;
    let keys = f.queue.keys();
    let job = JobId::new();
    let id = format!("msg_{}_1", job.0.simple());
    let legacy = keys.legacy_hook(&id);
    let mut conn = f.conn.clone();
    let _: () = redis::cmd("HSET")
        .arg(&legacy)
        .arg(old_fields(job, 1000, 0, ""))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(keys.hooks())
        .arg(0)
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();

    let claimed = claim(&f).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let c = &claimed[0];
    assert_eq!(
        (c.id.as_str(), c.job, c.event),
        (id.as_str(), job, WebhookEvent::Succeeded)
    );
    assert_eq!((c.attempt, c.claim, c.at), (1, 1, 1000));
    assert_eq!(c.url, "http://127.0.0.1:9/hook");
    let old: bool = redis::cmd("EXISTS")
        .arg(&legacy)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!old, "the old hash is moved, not copied");

    let settled = f
        .queue
        .settle_hook(c, &HookOutcome::Delivered { status: 200 }, b"{}")
        .await
        .unwrap();
    assert!(settled);
    let left: u64 = redis::cmd("HLEN")
        .arg(keys.deliveries())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "a settled delivery leaves no field behind");
    assert_eq!(f.queue.pending_hooks().await.unwrap(), 0);
}

/// Each claim starts one partition further than the last: a partition with more due
/// deliveries than one claim takes does not hold up another partition's.
#[tokio::test]
async fn a_busy_partition_does_not_hold_up_another_partitions_deliveries() {
    let redis = crate::support::Redis::start_with(false);
    let namespace = format!("h{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = inferq_shared::config::RedisConfig {
        partitions: Some(2),
        ..inferq_shared::config::RedisConfig::new(&redis.url(), &namespace)
    };
    let queue = inferq_shared::queue::Queue::connect(&config, Duration::ZERO)
        .await
        .unwrap();
    let mut conn = redis.conn().await;
    // 20 due deliveries in partition 0, one in partition 1 (due last).
    let due = |p: usize, at: u64| {
        let keys = queue.partition_keys(p).clone();
        let job = JobId::new();
        let id = format!("msg_{}_1", job.0.simple());
        let mut pipe = redis::pipe();
        pipe.hset_multiple(keys.legacy_hook(&id), &old_fields(job, at, 0, ""))
            .zadd(keys.hooks(), &id, at);
        (pipe, id)
    };
    for i in 0..20 {
        let (pipe, _) = due(0, 1_000 + i);
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    let (pipe, other) = due(1, 5_000);
    let _: () = pipe.query_async(&mut conn).await.unwrap();

    let mut claimed = Vec::new();
    for _ in 0..2 {
        let round = queue.claim_hooks(8, Duration::from_secs(30)).await.unwrap();
        assert_eq!(round.len(), 8, "each round claims as many as it asks");
        claimed.extend(round.into_iter().map(|c| c.id));
    }
    assert!(
        claimed.contains(&other),
        "partition 1's delivery waited behind partition 0's: {claimed:?}"
    );
}

/// The fields of a due delivery as an older release wrote them, one field each in the
/// deliveries hash (`<id>:<field>`), with `claims` claims already made.
async fn due_in_fields(f: &crate::support::queue::Fixture, claims: u64) -> (JobId, String) {
    let keys = f.queue.keys();
    let job = JobId::new();
    let id = format!("msg_{}_1", job.0.simple());
    let _: () = redis::pipe()
        .hset_multiple(
            keys.deliveries(),
            &old_fields(job, 1000, claims, &format!("{id}:")),
        )
        .zadd(keys.hooks(), &id, 0)
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    (job, id)
}

/// The deliveries hash: its field names, and whether each value is packed (a msgpack array).
async fn stored(f: &crate::support::queue::Fixture) -> Vec<(String, bool)> {
    let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(f.queue.keys().deliveries())
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    all.into_iter()
        .map(|(k, v)| (k, v.first() == Some(&0x99)))
        .collect()
}

#[tokio::test]
async fn a_delivery_written_a_field_each_is_packed_into_one_field_by_its_claim() {
    let f = setup().await;
    let (job, id) = due_in_fields(&f, 0).await;
    assert_eq!(stored(&f).await.len(), 8);

    let claimed = claim(&f).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let c = &claimed[0];
    assert_eq!(
        (c.job, c.event, c.attempt, c.claim),
        (job, WebhookEvent::Succeeded, 1, 1)
    );
    assert_eq!(
        (c.url.as_str(), c.at, c.tenant.as_str()),
        ("http://127.0.0.1:9/hook", 1000, "default")
    );
    assert_eq!(stored(&f).await, vec![(format!("{id}:job"), true)]);

    // A retry keeps the body in the packed field; the next claim hands it back.
    let retry = HookOutcome::Retry {
        at: 0,
        status: Some(503),
        error: "busy".into(),
    };
    assert!(
        f.queue
            .settle_hook(c, &retry, b"{\"sent\":1}")
            .await
            .unwrap()
    );
    let again = claim(&f).await;
    assert_eq!((again[0].attempt, again[0].claim), (2, 2));
    assert_eq!(again[0].body.as_deref(), Some(&b"{\"sent\":1}"[..]));
    assert!(
        !f.queue
            .settle_hook(c, &HookOutcome::Delivered { status: 200 }, b"{}")
            .await
            .unwrap(),
        "the first claim was taken over"
    );
    assert!(
        f.queue
            .settle_hook(&again[0], &HookOutcome::Delivered { status: 200 }, b"{}")
            .await
            .unwrap()
    );
    assert!(
        stored(&f).await.is_empty(),
        "a settled delivery leaves no field behind"
    );
    assert_eq!(f.queue.pending_hooks().await.unwrap(), 0);
}

/// An older deliverer that meets a packed delivery finds its `<id>:job` field, counts its
/// claim beside it (`<id>:claim`, `<id>:attempts`), cannot read it and leaves it to its lease;
/// the next claim takes those counts in, so its token is above every one given out.
#[tokio::test]
async fn counters_an_older_deliverer_left_beside_a_packed_delivery_keep_the_fence() {
    let f = setup().await;
    let (_, id) = due_in_fields(&f, 0).await;
    let first = claim(&f).await;
    assert_eq!(first[0].claim, 1);
    let keys = f.queue.keys();
    let _: () = redis::pipe()
        .hset(keys.deliveries(), format!("{id}:claim"), 3)
        .hset(keys.deliveries(), format!("{id}:attempts"), 3)
        .zadd(keys.hooks(), &id, 0)
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();

    let next = claim(&f).await;
    assert_eq!((next[0].attempt, next[0].claim), (4, 4));
    assert_eq!(stored(&f).await, vec![(format!("{id}:job"), true)]);
    assert!(
        !f.queue
            .settle_hook(&first[0], &HookOutcome::Delivered { status: 200 }, b"{}")
            .await
            .unwrap()
    );
}

/// A delivery's fields as older releases kept them (a field each: in a hash of its own with
/// no `prefix`, or in the deliveries hash named `<delivery id>:<field>`), `claims` claims made.
fn old_fields(job: JobId, at: u64, claims: u64, prefix: &str) -> Vec<(String, String)> {
    [
        ("job", job.to_string()),
        ("event", "succeeded".into()),
        ("url", "http://127.0.0.1:9/hook".into()),
        ("at", at.to_string()),
        ("tenant", "default".into()),
        ("attempts", claims.to_string()),
        ("claim", claims.to_string()),
        ("fetch_allow", String::new()),
    ]
    .into_iter()
    .map(|(name, value)| (format!("{prefix}{name}"), value))
    .collect()
}

/// One claim of up to 10 due deliveries, leased for 30 s.
async fn claim(f: &crate::support::queue::Fixture) -> Vec<inferq_shared::queue::hooks::Claimed> {
    f.queue
        .claim_hooks(10, Duration::from_secs(30))
        .await
        .unwrap()
}
