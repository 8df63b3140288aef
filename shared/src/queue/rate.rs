//! Per-tenant submission rates: a token bucket per tenant in Redis (`rate.lua`), so every API
//! process draws from the same bucket.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::keys::lua_script;
use super::{Queue, QueueError};
use crate::time::now_ms;

pub(crate) static RATE: LazyLock<Script> =
    LazyLock::new(|| lua_script(include_str!("lua/rate.lua")));

/// A bucket's size and refill.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens the bucket holds.
    pub burst: f64,
}

impl Queue {
    /// Takes `cost` tokens from `tenant`'s bucket; `Err(wait)` when there are not enough yet,
    /// with how long until there will be.
    pub async fn take_tokens(
        &self,
        tenant: &str,
        limit: RateLimit,
        cost: u32,
    ) -> Result<Result<(), Duration>, QueueError> {
        let wait_ms: u64 = RATE
            .key(self.keys.rate(tenant))
            .arg(now_ms())
            .arg(limit.per_sec)
            .arg(limit.burst)
            .arg(cost)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if wait_ms == 0 {
            Ok(())
        } else {
            Err(Duration::from_millis(wait_ms))
        })
    }
}
