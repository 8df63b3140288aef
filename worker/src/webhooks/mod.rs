//! Webhook delivery, per the Standard Webhooks specification: every worker runs a deliverer
//! that claims due deliveries from Redis (written by the state-changing scripts, see
//! `inferq_shared::queue::hooks`), POSTs each signed message, and records the outcome:
//! delivered on a 2xx within [`TIMEOUT`], otherwise retried with exponential backoff until
//! `INFERQ_WEBHOOK_MAX_ATTEMPTS`. Workers deliver because they already run background loops
//! and stay up; the API never does.

mod deliver;
mod sign;

pub(crate) use deliver::spawn;
pub(crate) use sign::SigningKeys;

use std::time::Duration;

use inferq_shared::config::Secret;

/// Longest a receiver may take to answer one attempt.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Webhook settings.
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookConfig {
    /// The key webhook messages are signed with (HMAC-SHA256), in the Standard Webhooks form
    /// `whsec_<base64 of 24 to 64 random bytes>`; for tenants without a key of their own. Never
    /// logged.
    #[arg(long, env = "INFERQ_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,

    /// Per-tenant signing keys, `<tenant>=whsec_...` comma-separated; a tenant listed here has
    /// its messages signed with its own key instead of INFERQ_WEBHOOK_SECRET.
    #[arg(long, env = "INFERQ_WEBHOOK_SECRETS", hide_env_values = true)]
    pub webhook_secrets: Option<Secret>,

    /// Attempts per message before its delivery is given up (`failed`).
    #[arg(long, env = "INFERQ_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,

    /// The first retry's delay in milliseconds; each later one waits four times the one before
    /// (5 s, 20 s, 80 s, … about 7.6 hours over 8 attempts). Lower it only in tests.
    #[arg(long, env = "INFERQ_WEBHOOK_BACKOFF_MS", default_value_t = 5000)]
    pub webhook_backoff_ms: u64,
}

impl WebhookConfig {
    /// When to retry after failed attempt `attempt` (1 = the first).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 4u64.saturating_pow(attempt.saturating_sub(1).min(16));
        Duration::from_millis(self.webhook_backoff_ms.saturating_mul(factor))
            .min(Duration::from_secs(24 * 3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_spread_over_hours() {
        let c = WebhookConfig {
            webhook_secret: None,
            webhook_secrets: None,
            webhook_max_attempts: 8,
            webhook_backoff_ms: 5000,
        };
        assert_eq!(c.backoff(1), Duration::from_secs(5));
        assert_eq!(c.backoff(2), Duration::from_secs(20));
        let total: Duration = (1..8).map(|a| c.backoff(a)).sum();
        assert!(total > Duration::from_secs(6 * 3600), "{total:?}");
        assert!(total < Duration::from_secs(12 * 3600), "{total:?}");
        assert_eq!(c.backoff(40), Duration::from_secs(24 * 3600));
    }
}
