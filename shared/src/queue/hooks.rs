//! Webhook deliveries in Redis (each partition's `{ns}:hooks` by due time and `{ns}:deliveries`
//! with their fields): the outbox the state-changing scripts write (`outbox.lua`),
//! claimed under a lease (`hook_claim.lua`) and settled, fenced by the claim
//! (`hook_done.lua`). They survive any process: a delivery lives in Redis from the state change
//! until it is delivered or given up.

use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Script;

use super::lua::{Argv, OUTBOX, argv, lua_script_with};
use super::{Queue, QueueError};
use crate::egress::Allow;
use crate::job::JobId;
use crate::time::now_ms;
use crate::webhook::WebhookEvent;

pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[OUTBOX],
        include_str!("lua/hook_claim.lua"),
        Argv::head(ClaimCall::NAMES),
    )
});

argv! {
    /// `hook_claim.lua`'s ARGV (its header says what each is).
    struct ClaimCall {
        now: u64,
        lease_ms: u64,
    }
}
pub(crate) static DONE: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[OUTBOX],
        include_str!("lua/hook_done.lua"),
        Argv::head(DoneCall::NAMES),
    )
});

argv! {
    /// `hook_done.lua`'s ARGV (its header says what each is).
    struct DoneCall<'a> {
        id: &'a str,
        claim: u64,
        state: &'static str,
        retry_at: u64,
        status: String,
        error: &'a str,
        body: &'a [u8],
    }
}

/// A claimed delivery: everything needed to send it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The message id (`webhook-id`), the same on every attempt.
    pub id: String,
    /// Fences the outcome: only this claim may record it.
    pub claim: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub job: JobId,
    pub event: WebhookEvent,
    pub url: String,
    /// When the event happened, ms since the epoch.
    pub at: u64,
    pub tenant: String,
    /// The body an earlier attempt sent, to send again.
    pub body: Option<Vec<u8>>,
    /// The exceptions to the address guard the job was submitted under: the delivery is
    /// guarded with them ([`Queue::with_fetch_allow`]).
    pub fetch_allow: Allow,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Delivered {
        status: u16,
    },
    /// Failed; try again at `at` (ms since the epoch).
    Retry {
        at: u64,
        status: Option<u16>,
        error: String,
    },
    /// Failed, and that was the last attempt.
    GaveUp {
        status: Option<u16>,
        error: String,
    },
}

impl Queue {
    /// Claims up to `count` due deliveries for `lease` (`hook_claim.lua`), from the
    /// partitions in turn: each call starts one partition further than the last, so a
    /// partition with more due deliveries than one call claims does not hold up the others'.
    /// Deliveries that no longer parse (a job id or event this build does not know) are
    /// skipped and left to their lease.
    pub async fn claim_hooks(
        &self,
        count: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, QueueError> {
        let mut out = Vec::new();
        let n = self.partitions();
        let first = self.hook_turn.fetch_add(1, Ordering::Relaxed) % n;
        for p in (first..n).chain(0..first) {
            if out.len() >= count {
                break;
            }
            let keys = self.partition_keys(p);
            self.claim_hooks_in(keys, count - out.len(), lease, &mut out)
                .await?;
        }
        Ok(out)
    }

    /// [`Queue::claim_hooks`] in the partition of `keys`, adding to `out`.
    async fn claim_hooks_in(
        &self,
        keys: &super::Keys,
        count: usize,
        lease: Duration,
        out: &mut Vec<Claimed>,
    ) -> Result<(), QueueError> {
        // The due deliveries first, so the claim can name their keys; the claim checks each is
        // still due (another deliverer may have claimed it in between).
        let now = now_ms();
        let due = self.due(keys.hooks(), now, count).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut inv = CLAIM.prepare_invoke();
        inv.key(keys.hooks()).key(keys.deliveries());
        for id in &due {
            inv.key(keys.legacy_hook(id));
        }
        ClaimCall {
            now,
            lease_ms: lease.as_millis() as u64,
        }
        .push(&mut inv);
        for id in &due {
            inv.arg(id);
        }
        let flat: Vec<Vec<u8>> = inv.invoke_async(&mut self.conn.clone()).await?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        for c in flat.chunks_exact(10) {
            let (Ok(job), Some(event)) = (
                text(&c[3]).parse::<JobId>(),
                WebhookEvent::parse(&text(&c[4])),
            ) else {
                tracing::warn!(delivery = %text(&c[0]), "skipping an unreadable webhook delivery");
                continue;
            };
            out.push(Claimed {
                id: text(&c[0]),
                claim: text(&c[1]).parse().unwrap_or(0),
                attempt: text(&c[2]).parse().unwrap_or(1),
                job,
                event,
                url: text(&c[5]),
                at: text(&c[6]).parse().unwrap_or(0),
                tenant: text(&c[7]),
                body: (!c[8].is_empty()).then(|| c[8].clone()),
                fetch_allow: text(&c[9]).parse().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Records an attempt's outcome (`hook_done.lua`); `body` is what was sent, kept for the
    /// retries (so it goes to Redis only with the first retry). False when the claim was taken
    /// over meanwhile.
    pub async fn settle_hook(
        &self,
        claimed: &Claimed,
        outcome: &HookOutcome,
        body: &[u8],
    ) -> Result<bool, QueueError> {
        let (state, at, status, error) = match outcome {
            HookOutcome::Delivered { status } => ("delivered", 0, Some(*status), ""),
            HookOutcome::Retry { at, status, error } => ("retry", *at, *status, error.as_str()),
            HookOutcome::GaveUp { status, error } => ("failed", 0, *status, error.as_str()),
        };
        let keys = self.job_keys(claimed.job);
        let mut inv = DONE.prepare_invoke();
        inv.key(keys.hooks())
            .key(keys.deliveries())
            .key(keys.job(claimed.job));
        DoneCall {
            id: &claimed.id,
            claim: claimed.claim,
            state,
            retry_at: at,
            status: status.map(|s| s.to_string()).unwrap_or_default(),
            error,
            // Stored by the first retry; later ones keep it.
            body: if state == "retry" && claimed.body.is_none() {
                body
            } else {
                &[]
            },
        }
        .push(&mut inv);
        let done: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(done == 1)
    }

    /// Deliveries waiting (due or not), for operators and tests.
    pub async fn pending_hooks(&self) -> Result<u64, QueueError> {
        let pipes = self.each_partition().map(|(_, keys)| {
            let mut pipe = redis::pipe();
            pipe.zcard(keys.hooks());
            pipe
        });
        let counts: Vec<(u64,)> = self.query_each(pipes).await?;
        Ok(counts.into_iter().map(|(n,)| n).sum())
    }
}
