//! Webhook deliveries kept as fields of the partition's one deliveries hash: a delivery an
//! older release wrote as a hash of its own (`{ns}:hook:<id>`) is moved over by the claim that
//! meets it, delivered like any other, and gone once settled.

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
        .arg(&[
            ("job", job.to_string().as_str()),
            ("event", "succeeded"),
            ("url", "http://127.0.0.1:9/hook"),
            ("at", "1000"),
            ("tenant", "default"),
            ("attempts", "0"),
            ("claim", "0"),
            ("fetch_allow", ""),
        ])
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

    let claimed = f
        .queue
        .claim_hooks(10, Duration::from_secs(30))
        .await
        .unwrap();
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
