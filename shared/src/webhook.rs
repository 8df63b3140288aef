//! Webhooks as a job request asks for them (`"webhook": {"url", "events"}`) and as the job
//! record shows them; the deliveries themselves (outbox, claims, retries) are in
//! [`queue::hooks`](crate::queue::hooks), the sending in the worker.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::egress::{Allow, UrlError};

/// A job event a webhook can announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// An attempt started (once per attempt).
    Started,
    Succeeded,
    Failed,
    Cancelled,
}

impl WebhookEvent {
    pub const ALL: [Self; 4] = [
        Self::Started,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];
    /// What a webhook without `events` announces: the final states.
    pub const DEFAULT: [Self; 3] = [Self::Succeeded, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// `"webhook"` of a job request: where to `POST` the job's events (Standard Webhooks: signed
/// with the tenant's key, retried until a 2xx answer).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// An http(s) URL; the same address guard as inputs by URL applies.
    #[schema(format = "uri")]
    pub url: String,
    /// The events to deliver; default the final ones: `succeeded`, `failed`, `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<WebhookEvent>>,
}

/// A checked webhook: its URL passed the guard's submission checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<WebhookEvent>,
}

impl WebhookRequest {
    /// Checks the URL (form, scheme, and what the guard can tell without a lookup) and the
    /// events (at least one).
    pub fn check(&self, allow: &Allow) -> Result<Webhook, UrlError> {
        let url = allow.check_url(&self.url).map_err(|e| match e {
            UrlError::Invalid(m) => UrlError::Invalid(format!("webhook.url: {m}")),
            UrlError::NotAllowed(m) => UrlError::NotAllowed(format!("webhook.url: {m}")),
        })?;
        let mut events = self
            .events
            .clone()
            .unwrap_or_else(|| WebhookEvent::DEFAULT.to_vec());
        events.dedup();
        if events.is_empty() {
            return Err(UrlError::Invalid(
                "webhook.events is empty; leave it out for the final events".into(),
            ));
        }
        Ok(Webhook {
            url: url.into(),
            events,
        })
    }
}

impl Webhook {
    /// The events as the job hash stores them: `,succeeded,failed,` (see the field's doc).
    pub fn events_field(&self) -> String {
        let mut s = String::from(",");
        for e in &self.events {
            s.push_str(e.as_str());
            s.push(',');
        }
        s
    }
}

/// Where a job's latest webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookState {
    /// Not yet delivered: waiting for its event, being sent, or waiting for a retry.
    Pending,
    /// A 2xx answer came back.
    Delivered,
    /// Every attempt (`INFERQ_WEBHOOK_MAX_ATTEMPTS`) failed.
    Failed,
}

impl WebhookState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// `"webhook"` of the job record: its latest delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookStatus {
    pub state: WebhookState,
    /// Attempts made for the latest delivery.
    pub attempts: u32,
    /// The HTTP status of the last attempt, when one came back.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (no answer in time, a refused address, a non-2xx status).
    pub last_error: Option<String>,
}
