//! A connection to the master a set of sentinels names, following failovers: the redis
//! crate's `SentinelClient` asks the sentinels for the master (and checks that it says it is
//! one); the connection to it is a `ConnectionManager`. A command that finds the master gone
//! (refused, dropped, timed out) or demoted (`READONLY`) fails as any unavailable Redis does,
//! and makes the next command ask the sentinels again, so the API and every worker are on the
//! new master as soon as the sentinels have promoted it. A master name no sentinel monitors
//! (a mistyped `INFERQ_REDIS_SENTINEL_MASTER`) is a configuration error, not an outage: the
//! process refuses to start, where it would otherwise answer 503 for ever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    TlsMode, Value,
};

use crate::config::{RedisConfig, RedisUrl};

/// A connection to the sentinels' current master; clones share it.
#[derive(Clone)]
pub(crate) struct SentinelConn(Arc<Inner>);

struct Inner {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// What [`monitored`] asks the sentinels with.
    cfg: RedisConfig,
    sentinels: Vec<RedisUrl>,
    master: String,
    config: ConnectionManagerConfig,
    db: i64,
    /// The master's connection and its generation, or none until a command asks.
    current: Mutex<Option<(u64, ConnectionManager)>>,
    generations: AtomicU64,
}

/// A `SentinelClient` for `master` through `sentinels`: the first URL's user, password, db and
/// TLS are used for the sentinels and for the master.
fn sentinel_client(
    cfg: &RedisConfig,
    sentinels: &[RedisUrl],
    master: &str,
) -> RedisResult<(SentinelClient, i64)> {
    let infos = sentinels
        .iter()
        .map(|u| u.expose().into_connection_info())
        .collect::<RedisResult<Vec<_>>>()?;
    let first = infos.first().ok_or_else(|| {
        RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "INFERQ_REDIS_SENTINELS names no sentinel",
        ))
    })?;
    let settings = first.redis_settings().clone();
    let mut builder = SentinelClientBuilder::new(
        infos.iter().map(|i| i.addr().clone()),
        master,
        SentinelServerType::Master,
    )?
    .set_client_to_redis_db(settings.db());
    if let Some(user) = settings.username() {
        builder = builder
            .set_client_to_sentinel_username(user)
            .set_client_to_redis_username(user);
    }
    if let Some(password) = settings.password() {
        builder = builder
            .set_client_to_sentinel_password(password)
            .set_client_to_redis_password(password);
    }
    if matches!(first.addr(), ConnectionAddr::TcpTls { .. }) {
        builder = builder
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(certs) = cfg.tls_certificates()? {
            builder = builder
                .set_client_to_sentinel_certificates(certs.clone())
                .set_client_to_redis_certificates(certs);
        }
    }
    Ok((builder.build()?, settings.db()))
}

/// A client of the master the sentinels name now.
pub(super) async fn master_client(
    cfg: &RedisConfig,
    sentinels: &[RedisUrl],
    master: &str,
) -> RedisResult<redis::Client> {
    let (mut client, _) = sentinel_client(cfg, sentinels, master)?;
    ask(&mut client, cfg, sentinels, master, false).await
}

/// The master's client, from `client`. When no sentinel names a valid master and `check_name`
/// is set (no master was found yet: the process is starting), whether that is because none
/// monitors one of that name (a configuration error) or because it is down (a failover, or an
/// outage: unavailable, as any unreachable Redis). Once a master was found, a failover asks
/// the sentinels nothing more.
async fn ask(
    client: &mut SentinelClient,
    cfg: &RedisConfig,
    sentinels: &[RedisUrl],
    master: &str,
    check_name: bool,
) -> RedisResult<redis::Client> {
    let found = match tokio::time::timeout(cfg.timeout(), client.async_get_client()).await {
        Ok(found) => found,
        Err(_) => Err(RedisError::from((
            redis::ErrorKind::Io,
            "no sentinel named a master in time",
        ))),
    };
    match found {
        // Whatever the crate reports (with a sentinel down, its error rather than the others'
        // "not found"), the sentinels that answer decide.
        Err(e) if check_name => match monitored(cfg, sentinels, master).await {
            Some(answered) if answered > 0 => Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "unknown master",
                format!(
                    "INFERQ_REDIS_SENTINEL_MASTER is '{master}', and none of the {answered} \
                         sentinel(s) that answered (of {}) monitors a master of that name",
                    sentinels.len()
                ),
            ))),
            _ => Err(e),
        },
        other => other,
    }
}

/// Whether the sentinels monitor a master named `master` (`SENTINEL
/// get-master-addr-by-name`, all asked at once, so an unreachable one costs one timeout in
/// all): `None` when one does, else how many answered that they do not (0: none answered).
async fn monitored(cfg: &RedisConfig, sentinels: &[RedisUrl], master: &str) -> Option<usize> {
    let asks = sentinels.iter().map(|url| async move {
        let asked = async {
            let client = cfg.node_client(url)?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async::<Option<Vec<String>>>(&mut conn)
                .await
        };
        tokio::time::timeout(cfg.timeout(), asked).await.ok()?.ok()
    });
    let answers: Vec<Option<Option<Vec<String>>>> = futures_util::future::join_all(asks).await;
    if answers.iter().any(|a| matches!(a, Some(Some(_)))) {
        return None;
    }
    Some(answers.iter().filter(|a| a.is_some()).count())
}

/// Whether `e` says the master this connection reached may no longer be the master.
fn master_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl SentinelConn {
    pub(super) fn new(
        cfg: &RedisConfig,
        sentinels: &[RedisUrl],
        master: &str,
        config: ConnectionManagerConfig,
    ) -> RedisResult<Self> {
        let (client, db) = sentinel_client(cfg, sentinels, master)?;
        Ok(Self(Arc::new(Inner {
            sentinel: tokio::sync::Mutex::new(client),
            cfg: cfg.clone(),
            sentinels: sentinels.to_vec(),
            master: master.to_owned(),
            config,
            db,
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
        })))
    }

    fn current(&self) -> Option<(u64, ConnectionManager)> {
        self.0.current.lock().expect("not poisoned").clone()
    }

    /// The master's connection: the one in use, or a new one to the master the sentinels name.
    async fn master(&self) -> RedisResult<(u64, ConnectionManager)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let mut sentinel = self.0.sentinel.lock().await;
        // Another command may have asked while this one waited for the lock.
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let inner = &self.0;
        let first = inner.generations.load(Ordering::Relaxed) == 0;
        let client = ask(
            &mut sentinel,
            &inner.cfg,
            &inner.sentinels,
            &inner.master,
            first,
        )
        .await?;
        let conn = ConnectionManager::new_lazy_with_config(client, self.0.config.clone())?;
        let generation = self.0.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.0.current.lock().expect("not poisoned") = Some((generation, conn.clone()));
        tracing::info!(generation, "connected to the master the sentinels name");
        Ok((generation, conn))
    }

    /// After `e` on the connection of `generation`: forget it if the master may have moved,
    /// unless a newer connection replaced it already.
    fn after_error(&self, generation: u64, e: &RedisError) {
        if !master_may_have_moved(e) {
            return;
        }
        let mut current = self.0.current.lock().expect("not poisoned");
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.master().await?;
            let reply = conn.req_packed_command(cmd).await;
            if let Err(e) = &reply {
                self.after_error(generation, e);
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.master().await?;
            let reply = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &reply {
                self.after_error(generation, e);
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}
