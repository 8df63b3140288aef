//! Per-tenant submission rates: a token bucket per tenant in Redis (`rate.lua`), so every API
//! process draws from the same bucket.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::lua::{Argv, argv, lua_script_with};
use super::{Queue, QueueError};
use crate::time::now_ms;

pub(crate) static RATE: LazyLock<Script> = LazyLock::new(|| {
    lua_script_with(
        &[],
        include_str!("lua/rate.lua"),
        Argv::head(RateCall::NAMES),
    )
});

argv! {
    /// `rate.lua`'s ARGV (its header says what each is).
    struct RateCall {
        now: u64,
        per_sec: f64,
        burst: f64,
        cost: u32,
    }
}

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
        let mut inv = RATE.prepare_invoke();
        inv.key(self.keys.rate(tenant));
        RateCall {
            now: now_ms(),
            per_sec: limit.per_sec,
            burst: limit.burst,
            cost,
        }
        .push(&mut inv);
        let wait_ms: u64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(if wait_ms == 0 {
            Ok(())
        } else {
            Err(Duration::from_millis(wait_ms))
        })
    }
}
