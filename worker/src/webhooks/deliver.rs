//! The deliverer loop: claim due deliveries, send them at once, record each outcome.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use hyper::header::{HeaderMap, HeaderValue};
use inferq_shared::queue::Queue;
use inferq_shared::queue::hooks::{Claimed, HookOutcome};
use inferq_shared::record::JobRecord;
use inferq_shared::time::{now_ms, rfc3339_ms};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::sign::signature;
use super::{SigningKeys, TIMEOUT, WebhookConfig};
use crate::egress::{Egress, FetchError};

/// How often due deliveries are looked for.
const TICK: Duration = Duration::from_millis(250);

/// Most deliveries one round sends at once.
const PER_ROUND: usize = 32;

/// How long a claim holds a delivery: longer than an attempt can take, so a live deliverer
/// never loses it; a dead one's claim comes back after it.
const LEASE: Duration = Duration::from_secs(30);

/// What the deliverer needs.
#[derive(Debug)]
struct Deliverer {
    queue: Queue,
    egress: Egress,
    keys: SigningKeys,
    config: WebhookConfig,
}

/// The body of a message: `{"type": "job.<event>", "timestamp", "data": <job record>}`.
#[derive(Serialize)]
struct Message<'a, T> {
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    data: &'a T,
}

impl<'a, T: Serialize> Message<'a, T> {
    /// The message of `c` with `data`, rendered straight from it.
    fn render(c: &Claimed, data: &'a T) -> Result<Vec<u8>, String> {
        let message = Message {
            kind: format!("job.{}", c.event.as_str()),
            timestamp: rfc3339_ms(c.at),
            data,
        };
        serde_json::to_vec(&message).map_err(|e| e.to_string())
    }
}

/// Runs the deliverer until `stop`; a round in flight finishes first (each attempt is bounded
/// by [`TIMEOUT`]).
pub(crate) fn spawn(
    queue: Queue,
    egress: Egress,
    keys: SigningKeys,
    config: WebhookConfig,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let d = Arc::new(Deliverer {
        queue,
        egress,
        keys,
        config,
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A round that found a full load of due deliveries is followed at once by the next:
        // waiting for the tick after each would cap delivery at PER_ROUND per TICK (128 a
        // second), far below the rate jobs can end at, and a backlog would only grow.
        let mut backlog = false;
        loop {
            if backlog {
                if stop.is_cancelled() {
                    return;
                }
            } else {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
            }
            let claimed = match d.queue.claim_hooks(PER_ROUND, LEASE).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                    backlog = false;
                    continue;
                }
            };
            backlog = claimed.len() >= PER_ROUND;
            join_all(claimed.into_iter().map(|c| d.deliver(c))).await;
        }
    })
}

impl Deliverer {
    async fn deliver(&self, c: Claimed) {
        let body = match &c.body {
            Some(b) => b.clone(),
            None => match self.render(&c).await {
                Ok(b) => b,
                Err(e) => {
                    // Left to its lease: the next claim renders it again.
                    tracing::warn!(delivery = %c.id, error = %e, "rendering a webhook message failed");
                    return;
                }
            },
        };
        let outcome = self.attempt(&c, &body).await;
        match &outcome {
            HookOutcome::Delivered { status } => {
                tracing::debug!(delivery = %c.id, job_id = %c.job, attempt = c.attempt, status, "webhook delivered")
            }
            HookOutcome::Retry { error, .. } | HookOutcome::GaveUp { error, .. } => {
                tracing::info!(delivery = %c.id, job_id = %c.job, attempt = c.attempt, error = %error, "webhook attempt failed")
            }
        }
        if let Err(e) = self.queue.settle_hook(&c, &outcome, &body).await {
            // The claim runs out and the message is sent again: at least once.
            tracing::warn!(delivery = %c.id, error = %e, "recording a webhook outcome failed");
        }
    }

    /// The message body: the job's record as it stands now (or, once the record expired, its
    /// id and the event's status).
    async fn render(&self, c: &Claimed) -> Result<Vec<u8>, String> {
        match self.queue.record(c.job).await.map_err(|e| e.to_string())? {
            Some(job) => {
                let record = JobRecord::try_from(job).map_err(|e| e.to_string())?;
                Message::render(c, &record)
            }
            None => {
                let status = inferq_shared::JobStatus::from(c.event);
                Message::render(c, &serde_json::json!({"id": c.job, "status": status}))
            }
        }
    }

    /// One signed POST, and what it means for the delivery.
    async fn attempt(&self, c: &Claimed, body: &[u8]) -> HookOutcome {
        let failed = |status: Option<u16>, error: String| {
            if c.attempt >= self.config.webhook_max_attempts {
                HookOutcome::GaveUp { status, error }
            } else {
                let delay = self.config.backoff(c.attempt).as_millis() as u64;
                HookOutcome::Retry {
                    at: now_ms() + delay,
                    status,
                    error,
                }
            }
        };
        let Some(key) = self.keys.key(&c.tenant) else {
            return failed(
                None,
                "no signing key is configured (INFERQ_WEBHOOK_SECRET or INFERQ_WEBHOOK_SECRETS)"
                    .into(),
            );
        };
        let timestamp = now_ms() / 1000;
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::try_from(value) {
                headers.insert(name, v);
            }
        };
        set("webhook-id", c.id.clone());
        set("webhook-timestamp", timestamp.to_string());
        set("webhook-signature", signature(key, &c.id, timestamp, body));
        match self
            .egress
            .with_allow(c.fetch_allow.clone())
            .post(&c.url, headers, body.to_vec(), TIMEOUT)
            .await
        {
            Ok(status) if status.is_success() => HookOutcome::Delivered {
                status: status.as_u16(),
            },
            Ok(status) => failed(
                Some(status.as_u16()),
                format!("the receiver answered {status}"),
            ),
            // The guard will refuse the same address next time: no point in retrying.
            Err(FetchError::NotAllowed(m)) => HookOutcome::GaveUp {
                status: None,
                error: m,
            },
            Err(FetchError::Failed(m)) => failed(None, m),
        }
    }
}
