//! API keys as Redis stores them: one hash per key holding the key's SHA-256 (never the key),
//! its tenant, scopes, name, creation time and the tenant's quotas it sets, and a sorted set of key ids for listing.

use std::collections::HashMap;

use super::keys::apikey;
use super::{Queue, QueueError};
use crate::auth::{ApiKey, KeyInfo, Scopes, TenantLimits, constant_time_eq};

impl Queue {
    /// Stores a new key (its hash) with its description; both writes land together.
    pub async fn store_api_key(&self, key: &ApiKey, info: &KeyInfo) -> Result<(), QueueError> {
        let id = key
            .id()
            .ok_or(QueueError::Protocol("not a generated key"))?;
        let mut fields = vec![
            (apikey::HASH, key.hash()),
            (apikey::TENANT, info.tenant.clone()),
            (apikey::SCOPES, info.scopes.to_string()),
            (apikey::NAME, info.name.clone()),
            (apikey::CREATED_AT, info.created_at.to_string()),
        ];
        let limits = &info.limits;
        let set = [
            (apikey::MAX_QUEUED, limits.max_queued.map(|n| n.to_string())),
            (apikey::RATE, limits.rate.map(|r| r.to_string())),
            (apikey::BURST, limits.burst.map(|b| b.to_string())),
        ];
        fields.extend(set.into_iter().filter_map(|(f, v)| Some((f, v?))));
        redis::pipe()
            .atomic()
            .hset_multiple(self.keys.api_key(id), &fields)
            .ignore()
            .zadd(self.keys.api_keys(), id, info.created_at)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The key's description if it is a stored, unrevoked key. The stored hash is compared
    /// in constant time.
    pub async fn find_api_key(&self, key: &ApiKey) -> Result<Option<KeyInfo>, QueueError> {
        let Some(id) = key.id() else {
            return Ok(None);
        };
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.api_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(stored) = fields.get(apikey::HASH) else {
            return Ok(None);
        };
        if !constant_time_eq(stored, &key.hash()) {
            return Ok(None);
        }
        Ok(key_info(id, &fields))
    }

    /// Every stored key, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<KeyInfo>, QueueError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.api_keys())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.api_key(id));
        }
        let all: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .iter()
            .zip(&all)
            .filter_map(|(id, f)| key_info(id, f))
            .collect())
    }

    /// Revokes a key by id; returns whether it existed. Effective for the next request.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool, QueueError> {
        let (deleted, _): (u64, u64) = redis::pipe()
            .atomic()
            .del(self.keys.api_key(id))
            .zrem(self.keys.api_keys(), id)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(deleted > 0)
    }
}

fn key_info(id: &str, f: &HashMap<String, String>) -> Option<KeyInfo> {
    Some(KeyInfo {
        id: id.to_owned(),
        tenant: f.get(apikey::TENANT)?.clone(),
        scopes: f.get(apikey::SCOPES)?.parse::<Scopes>().ok()?,
        name: f.get(apikey::NAME).cloned().unwrap_or_default(),
        created_at: f
            .get(apikey::CREATED_AT)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        limits: TenantLimits {
            max_queued: f.get(apikey::MAX_QUEUED).and_then(|v| v.parse().ok()),
            rate: f.get(apikey::RATE).and_then(|v| v.parse().ok()),
            burst: f.get(apikey::BURST).and_then(|v| v.parse().ok()),
        },
    })
}
