//! What a read meets and what start refuses: malformed entries set aside, a retired model's
//! jobs failed, deadlines and attempt limits enforced.

use inferq_shared::ErrorCode;
use inferq_shared::job::{JobId, JobStatus};
use inferq_shared::queue::keys::{entry, field};
use inferq_shared::queue::{Entry, EntryRef, Retired, Submitted};

use crate::support::queue::{
    MAX_ATTEMPTS, MODEL, PAYLOAD, RESULT, RETENTION, error_code, jobs, one, setup, succeeded,
};

#[tokio::test]
async fn malformed_entries_are_set_aside_and_their_neighbours_run() {
    let f = setup().await;
    let a = f.submit(None).await;
    let no_id = f.xadd(&[(entry::ID, "not-a-uuid")]).await;
    // A job whose record exists but whose entry lost its payload.
    let c = JobId::new();
    let c_id = c.to_string();
    let no_payload = f.xadd(&[(entry::ID, c_id.as_str())]).await;
    redis::cmd("HSET")
        .arg(f.queue.keys().job(c))
        .arg(field::MODEL)
        .arg(MODEL)
        .arg(field::STATUS)
        .arg("queued")
        .arg(field::CREATED_AT)
        .arg(1)
        .arg(field::ATTEMPTS)
        .arg(0)
        .arg(field::ENTRY)
        .arg(&no_payload)
        .arg(field::DEADLINE)
        .arg(0)
        .query_async::<()>(&mut f.conn.clone())
        .await
        .unwrap();
    let b = f.submit(None).await;

    let describe = |entries: &[Entry]| -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Entry::Job(d) => format!("job {}", d.job),
                Entry::Malformed { entry, job } => format!("bad {entry} {job:?}"),
            })
            .collect()
    };
    let want = [
        format!("job {a}"),
        format!("bad {no_id} None"),
        format!("bad {no_payload} Some({c:?})"),
        format!("job {b}"),
    ];
    let read = f.read("w1").await;
    assert_eq!(describe(&read), want);

    // w1 dies holding all four; w2 reclaims them, the unreadable ones included.
    let reclaimed = f.reclaim("w2").await;
    assert_eq!(describe(&reclaimed), want);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for e in reclaimed {
        match e {
            Entry::Job(d) => good.push(d),
            Entry::Malformed { entry, job } => bad.push((entry, job)),
        }
    }
    assert_eq!(
        bad,
        [
            (EntryRef::new(no_id.clone()), None),
            (EntryRef::new(no_payload.clone()), Some(c))
        ],
        "malformed entries"
    );

    let moved = f.queue.set_aside(MODEL, &bad, RETENTION).await.unwrap();
    assert_eq!(moved, 2);
    let dead = f.dead_letters().await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (d, (entry_id, id)) in dead
        .iter()
        .zip([(&no_id, "not-a-uuid"), (&no_payload, c_id.as_str())])
    {
        assert_eq!(d["reason"], "malformed_entry", "{d:?}");
        assert_eq!(&d["entry"], entry_id, "{d:?}");
        assert_eq!(d[entry::ID], id, "{d:?}");
        assert!(!d.contains_key(entry::PAYLOAD), "{d:?}");
        assert!(d["failed_at"].parse::<u64>().is_ok(), "{d:?}");
    }
    let rec = f.record(c).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(error_code(&rec), Some(ErrorCode::MalformedEntry.as_str()));
    assert_eq!(
        f.stream_ids().await,
        [good[0].entry.id.clone(), good[1].entry.id.clone()]
    );
    assert_eq!(f.pending().await, 2);

    assert_eq!(good[0].job, a);
    assert_eq!(good[1].job, b);
    assert_eq!(f.start("w2", &good, MAX_ATTEMPTS).await, [1, 1]);
    let done = f
        .queue
        .complete(
            MODEL,
            &[succeeded(&good[0], 1), succeeded(&good[1], 1)],
            RETENTION,
        )
        .await
        .unwrap();
    assert_eq!(done, [true, true]);
    for id in [a, b] {
        let rec = f.record(id).await;
        assert_eq!(rec.status, JobStatus::Succeeded);
        assert_eq!(rec.result.as_deref(), Some(RESULT.as_bytes()));
    }
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);
}

#[tokio::test]
async fn retiring_a_model_fails_its_jobs_and_refuses_new_ones() {
    let f = setup().await;
    let ids = [
        f.submit(None).await,
        f.submit(None).await,
        f.submit(None).await,
    ];
    let entries = f.queue.read("w1", MODEL, 1, None).await.unwrap();
    let running = one(jobs(entries));
    assert_eq!(running.job, ids[0]);
    assert_eq!(f.start_one("w1", &running, MAX_ATTEMPTS).await, [1]);

    assert_eq!(
        f.queue.retire_model(MODEL, RETENTION).await.unwrap(),
        Retired::Retired(3)
    );
    for id in ids {
        let rec = f.record(id).await;
        assert_eq!(rec.status, JobStatus::Failed, "{id}");
        assert_eq!(error_code(&rec), Some(ErrorCode::ModelRetired.as_str()));
        assert!(rec.finished_at.is_some());
    }
    assert!(
        !f.queue
            .known_models()
            .await
            .unwrap()
            .iter()
            .any(|m| m.name == MODEL)
    );
    assert!(f.queue.model_statuses().await.unwrap().is_empty());
    assert_eq!(f.stream_len().await, 0);

    // The attempt that was running reports late: the retirement stands.
    assert_eq!(f.complete(&running, 1).await, [false]);
    let rec = f.record(ids[0]).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.result, None);

    assert_eq!(
        f.queue
            .submit(JobId::new(), MODEL, PAYLOAD, 0, None, None, "default")
            .await
            .unwrap(),
        Submitted::UnknownModel
    );
    assert_eq!(
        f.queue.retire_model(MODEL, RETENTION).await.unwrap(),
        Retired::NotFound
    );
}

#[tokio::test]
async fn start_enforces_deadline_and_max_attempts() {
    let f = setup().await;

    // A deadline long past: failed at start, never run, not dead-lettered.
    let late = f.submit(Some(1)).await;
    let d = f.read_one("w1").await;
    assert_eq!(d.job, late);
    assert_eq!(f.start_one("w1", &d, MAX_ATTEMPTS).await, [0]);
    let rec = f.record(late).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(error_code(&rec), Some(ErrorCode::DeadlineExceeded.as_str()));
    assert_eq!(rec.attempts, 0);
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);
    assert_eq!(f.xlen(&f.queue.keys().dead_letter()).await, 0);

    // One attempt allowed: the reclaim after it is refused and the job is dead-lettered.
    let poison = f.submit(None).await;
    let first = f.read_one("w1").await;
    assert_eq!(first.job, poison);
    assert_eq!(f.start_one("w1", &first, 1).await, [1]);
    let second = f.reclaim_one("w2").await;
    assert_eq!(second.job, poison);
    assert_eq!(f.start_one("w2", &second, 1).await, [0]);
    let rec = f.record(poison).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(
        error_code(&rec),
        Some(ErrorCode::MaxAttemptsExceeded.as_str())
    );
    assert_eq!(rec.attempts, 1);
    assert_eq!(f.stream_len().await, 0);
    assert_eq!(f.pending().await, 0);
    let dead = f.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "max_attempts_exceeded");
    assert_eq!(dead[0][entry::ID], poison.to_string());
    assert_eq!(dead[0][entry::PAYLOAD].as_bytes(), PAYLOAD);

    // The first attempt's late report changes nothing.
    assert_eq!(f.complete(&first, 1).await, [false]);
    let rec = f.record(poison).await;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.result, None);
}
