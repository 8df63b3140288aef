//! A job answered from the result cache (`cached.lua`): written already succeeded, with the
//! cached result, in one step with its listing entry.

use std::sync::LazyLock;

use redis::Script;

use super::script;
use crate::job::JobId;
use crate::queue::lua::{Argv, argv};
use crate::queue::{Queue, QueueError, Retention};

pub(crate) static CACHED: LazyLock<Script> = LazyLock::new(|| {
    script(
        include_str!("../lua/cached.lua"),
        Argv::head(CachedCall::NAMES),
    )
});

argv! {
    /// `cached.lua`'s ARGV.
    struct CachedCall<'a> {
        id: String,
        model: &'a str,
        ttl: u64,
        tenant: &'a str,
    }
}

impl Queue {
    /// Creates job `id` already succeeded with the result cached under `key`, if there is one
    /// (`cached.lua`); false (nothing written) on a miss.
    pub async fn submit_cached(
        &self,
        id: JobId,
        model: &str,
        key: &str,
        retention: Retention,
        result_ttl_secs: Option<u64>,
        tenant: &str,
    ) -> Result<bool, QueueError> {
        if !self.fits_key(id, key) {
            return Err(QueueError::Protocol(
                "a cached job's id is not in its key's partition (see Queue::id_for_key)",
            ));
        }
        let keys = self.job_keys(id);
        let mut inv = CACHED.prepare_invoke();
        inv.key(keys.cache(key)).key(keys.job(id)).key(keys.index());
        CachedCall {
            id: id.to_string(),
            model,
            ttl: result_ttl_secs.unwrap_or(retention.secs()),
            tenant,
        }
        .push(&mut inv);
        // A miss writes nothing, so nothing of it needs the replicas.
        let hit: i64 = self.commit(&inv, |hit| *hit == 1).await?;
        Ok(hit == 1)
    }
}
