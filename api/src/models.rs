//! The models the API knows: the metadata workers publish to Redis, cached for a moment so a
//! submission does not read it from Redis each time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use inferq_shared::model::{ModelInfo, valid_model_name};
use inferq_shared::queue::{Queue, QueueError};

/// How long model metadata is trusted before it is read again. Workers announce changes at
/// start, so a new model becomes visible within this time.
const MODEL_CACHE_TTL: Duration = Duration::from_secs(1);

/// Lower bound between two refreshes triggered by an unknown model name, so a client sending
/// garbage names cannot turn every request into a Redis round trip.
const MISS_REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// The models workers publish, as last read.
#[derive(Debug)]
pub(crate) struct ModelCache {
    queue: Queue,
    cache: RwLock<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    models: Arc<HashMap<String, Arc<ModelInfo>>>,
    refreshed: Option<Instant>,
}

impl ModelCache {
    pub(crate) fn new(queue: Queue) -> Self {
        Self {
            queue,
            cache: RwLock::default(),
        }
    }

    /// Looks a model up (`None` for an unknown or invalid name), reading Redis when the cache
    /// is stale or misses. While Redis is unreachable a cached entry is still served
    /// (submission will then report the outage).
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Arc<ModelInfo>>, QueueError> {
        if !valid_model_name(name) {
            return Ok(None);
        }
        let (hit, age) = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            (
                cache.models.get(name).cloned(),
                cache.refreshed.map(|t| t.elapsed()),
            )
        };
        let stale = match (&hit, age) {
            (_, None) => true,
            (Some(_), Some(age)) => age > MODEL_CACHE_TTL,
            (None, Some(age)) => age > MISS_REFRESH_INTERVAL,
        };
        if !stale {
            return Ok(hit);
        }
        match self.queue.known_models().await {
            Ok(list) => {
                let models: HashMap<_, _> = list
                    .into_iter()
                    .map(|m| (m.name.clone(), Arc::new(m)))
                    .collect();
                let models = Arc::new(models);
                let found = models.get(name).cloned();
                *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Cached {
                    models,
                    refreshed: Some(Instant::now()),
                };
                Ok(found)
            }
            Err(_) if hit.is_some() => Ok(hit),
            Err(e) => Err(e),
        }
    }

    /// Names of the models in the cache, sorted, for error messages.
    pub(crate) fn names(&self) -> Vec<String> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = cache.models.keys().cloned().collect();
        names.sort();
        names
    }
}
