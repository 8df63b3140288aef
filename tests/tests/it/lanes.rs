//! A model's used-lanes set and what a submission costs in Redis commands, on the queue
//! protocol's fixture (`protocol.rs`): a real redis-server, `Queue` driven directly.

use std::collections::HashMap;
use std::time::Duration;

use inferq_shared::job::{JobId, Priority};
use inferq_shared::queue::keys::entry;
use inferq_shared::queue::{Retired, Submitted};
use redis::aio::MultiplexedConnection;

use crate::support::queue::{MODEL, PAYLOAD, RETENTION, setup};

/// A job of `MODEL` at `priority`, with nothing else asked.
fn new_job(id: JobId, priority: Priority) -> inferq_shared::queue::NewJob<'static> {
    inferq_shared::queue::NewJob {
        id,
        model: MODEL,
        payload: PAYLOAD,
        deadline_ms: None,
        result_ttl_secs: None,
        idempotency: None,
        cache: None,
        due_ms: None,
        trace: None,
        tenant: "default",
        tenant_max_queued: 0,
        priority,
        webhook: None,
    }
}

/// `INFO commandstats`: calls per command (lower case), Lua-internal calls included.
async fn command_calls(conn: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, stats) = l.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Submitting a job of the default priority with a queue-length limit looks at the model's
/// default lane only (plus the lanes a job ever waited in), not at all ten, and writes the
/// job's record in one HSET.
#[tokio::test]
async fn submitting_a_job_costs_few_commands() {
    const JOBS: u64 = 50;
    let f = setup().await;
    let mut conn = f.conn.clone();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    for _ in 0..JOBS {
        let s = f
            .queue
            .submit(JobId::new(), MODEL, PAYLOAD, 1000, None, None, "default")
            .await
            .unwrap();
        assert_eq!(s, Submitted::Queued);
    }
    let calls = command_calls(&mut conn).await;
    let per_job = |cmd: &str| calls.get(cmd).copied().unwrap_or(0) as f64 / JOBS as f64;
    assert_eq!(f.stream_len().await, JOBS);
    assert!(per_job("xlen") <= 2.0, "{calls:?}");
    assert!(per_job("hset") <= 1.0, "{calls:?}");
    assert!(per_job("hincrby") <= 1.0, "{calls:?}");
}

/// A job in a lane other than the default counts against the queue-length limit and is read,
/// through the model's used-lanes set, which goes when the model is retired.
#[tokio::test]
async fn a_priority_lane_is_counted_and_read_through_the_used_lanes_set() {
    let f = setup().await;
    let keys = f.queue.keys();
    let high = Priority::new(8).unwrap();
    let submit = |id: JobId, priority: Priority| {
        let queue = f.queue.clone();
        async move {
            queue
                .submit_many(&[new_job(id, priority)], 1, Duration::from_secs(1))
                .await
                .unwrap()
        }
    };
    let id = JobId::new();
    assert_eq!(submit(id, high).await, [Submitted::Queued]);
    let used: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.used_lanes(MODEL))
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    assert_eq!(used, [keys.lane(MODEL, high)]);

    // The limit of one is reached by the job in lane 8, for every lane.
    for p in [Priority::DEFAULT, high, Priority::LOWEST] {
        assert_eq!(submit(JobId::new(), p).await, [Submitted::QueueFull], "{p}");
    }
    let d = f.read_one("w1").await;
    assert_eq!((d.job, d.entry.priority), (id, high));

    assert_eq!(
        f.queue.retire_model(MODEL, RETENTION).await.unwrap(),
        Retired::Retired(1)
    );
    let exists: u64 = redis::cmd("EXISTS")
        .arg(keys.used_lanes(MODEL))
        .arg(keys.lane(MODEL, high))
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

/// Entries an older version added to a lane other than the default (before the used-lanes
/// set existed) are listed in the set when a worker sets up its groups, so reads still find
/// them and the queue-length limit still counts them.
#[tokio::test]
async fn lanes_holding_entries_from_before_the_used_lanes_set_are_listed() {
    let f = setup().await;
    let keys = f.queue.keys();
    let high = Priority::new(9).unwrap();
    let id = JobId::new();
    let _: String = redis::cmd("XADD")
        .arg(keys.lane(MODEL, high))
        .arg("*")
        .arg(entry::ID)
        .arg(id.to_string())
        .arg(entry::PAYLOAD)
        .arg(PAYLOAD)
        .arg(entry::PRIORITY)
        .arg(high.level())
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    f.queue.ensure_group(MODEL).await.unwrap();
    assert_eq!(
        f.queue
            .submit(JobId::new(), MODEL, PAYLOAD, 1, None, None, "default")
            .await
            .unwrap(),
        Submitted::QueueFull
    );
    let d = f.read_one("w1").await;
    assert_eq!((d.job, d.entry.priority), (id, high));
}

/// A model whose jobs all had the default priority is read with a plain `XREADGROUP` (no
/// `read.lua`); a lane used for the first time is ranked before the reader blocks, and by
/// every read once the reader's view of the used-lanes set is older than `USED_LANES_TTL`.
#[tokio::test]
async fn reads_rank_only_once_a_lane_besides_the_default_is_used() {
    use inferq_shared::queue::USED_LANES_TTL;

    let f = setup().await;
    let mut conn = f.conn.clone();
    let submit = |priority: Priority| {
        let queue = f.queue.clone();
        async move {
            let s = queue
                .submit_many(
                    &[new_job(JobId::new(), priority)],
                    0,
                    Duration::from_secs(1),
                )
                .await
                .unwrap();
            assert_eq!(s, [Submitted::Queued]);
        }
    };
    let priorities = |got: &[inferq_shared::queue::Entry]| -> Vec<u8> {
        got.iter().map(|e| e.entry().priority.level()).collect()
    };

    for _ in 0..3 {
        submit(Priority::DEFAULT).await;
    }
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let got = f.queue.read("w1", MODEL, 10, None).await.unwrap();
    assert_eq!(priorities(&got), [5, 5, 5]);
    let calls = command_calls(&mut conn).await;
    assert_eq!(calls.get("evalsha"), None, "{calls:?}");
    assert_eq!(calls.get("xreadgroup"), Some(&1), "{calls:?}");

    // The first job of another lane, while the reader's view (a moment old) says the default
    // lane only: nothing waits there, so the set is read again before blocking.
    submit(Priority::new(8).unwrap()).await;
    let got = f
        .queue
        .read("w1", MODEL, 10, Some(Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(priorities(&got), [8]);

    // Once the view is older than the TTL every read ranks: the priority-9 job goes first
    // although the default one is older.
    tokio::time::sleep(USED_LANES_TTL + Duration::from_millis(100)).await;
    submit(Priority::DEFAULT).await;
    submit(Priority::HIGHEST).await;
    let got = f.queue.read("w1", MODEL, 1, None).await.unwrap();
    assert_eq!(priorities(&got), [9]);
    let got = f.queue.read("w1", MODEL, 1, None).await.unwrap();
    assert_eq!(priorities(&got), [5]);
}
