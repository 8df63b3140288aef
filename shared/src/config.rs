//! Configuration pieces both binaries share, flattened into each binary's clap parser.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Redis connection and key namespace. One of three connection modes: a single node
/// (`INFERQ_REDIS_URL`, the default), a Redis Cluster (`INFERQ_REDIS_CLUSTER`), or a master
/// found through Sentinel (`INFERQ_REDIS_SENTINELS` with `INFERQ_REDIS_SENTINEL_MASTER`);
/// [`RedisConfig::mode`] refuses more than one.
#[derive(clap::Args, Debug, Clone)]
pub struct RedisConfig {
    /// Redis URL, `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS (rustls;
    /// the user is a Redis ACL user). The password never appears in logs or in `--help`.
    /// Unset (and no other mode set): `redis://127.0.0.1:6379`.
    #[arg(long, env = "INFERQ_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<RedisUrl>,

    /// Redis Cluster: comma-separated seed node URLs (`redis://host:port`, `rediss://…`, with
    /// the ACL user and password of the cluster's nodes); the rest of the topology is
    /// discovered, and MOVED, ASK and failovers are followed.
    #[arg(
        long,
        env = "INFERQ_REDIS_CLUSTER",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub redis_cluster: Vec<RedisUrl>,

    /// Redis Sentinel: comma-separated sentinel URLs; the user, password and TLS of the first
    /// one are used for the sentinels and for the master they name. Needs
    /// `INFERQ_REDIS_SENTINEL_MASTER`.
    #[arg(
        long,
        env = "INFERQ_REDIS_SENTINELS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub redis_sentinels: Vec<RedisUrl>,

    /// The name under which the sentinels monitor the master (`sentinel monitor <name> …`).
    #[arg(long, env = "INFERQ_REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,

    /// PEM file of the certificate authority that signed Redis's certificate, for `rediss://`
    /// URLs (in every mode); unset: the system's trusted roots.
    #[arg(long, env = "INFERQ_REDIS_CA_CERT")]
    pub redis_ca_cert: Option<std::path::PathBuf>,

    /// Prefix of every Redis key and channel; API and workers must agree on it.
    #[arg(long, env = "INFERQ_NAMESPACE", default_value = "inferq")]
    pub namespace: String,

    /// Longest wait for one Redis command or connection attempt, in milliseconds; past it the
    /// API answers 503 instead of hanging.
    #[arg(long, env = "INFERQ_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,

    /// How many replicas must hold a submission before it is answered 202 (Redis's `WAIT`,
    /// shared by the submissions of a burst); 0: answer once the master holds it.
    #[arg(long, env = "INFERQ_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// How long a submission waits for `INFERQ_REDIS_WAIT_REPLICAS` replicas, in
    /// milliseconds; past it the answer is 503 with `Retry-After` (the job may exist: retry
    /// with the same `Idempotency-Key`).
    #[arg(long, env = "INFERQ_REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_wait_timeout_ms: u64,

    /// How many partitions a namespace's jobs are spread over (1 to 1024), each its own Redis
    /// Cluster hash slot; unset: 1 on one node and behind Sentinel, 6 on a cluster. Recorded in
    /// Redis when the namespace is first used: a process set to another number refuses to start.
    #[arg(long, env = "INFERQ_PARTITIONS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub partitions: Option<u16>,
}

/// Where Redis is, as [`RedisConfig::mode`] reads the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    Node(RedisUrl),
    Cluster(Vec<RedisUrl>),
    Sentinel {
        sentinels: Vec<RedisUrl>,
        master: String,
    },
}

impl fmt::Display for RedisMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |urls: &[RedisUrl]| {
            urls.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Self::Node(url) => write!(f, "{url}"),
            Self::Cluster(seeds) => write!(f, "cluster {}", list(seeds)),
            Self::Sentinel { sentinels, master } => {
                write!(f, "sentinel master {master} via {}", list(sentinels))
            }
        }
    }
}

/// The partitions of a namespace on a Redis Cluster when `INFERQ_PARTITIONS` is unset: two per
/// master of a three-master cluster, so a fourth or a sixth master can take whole partitions.
pub const DEFAULT_CLUSTER_PARTITIONS: usize = 6;

/// The URL of the single node when no mode is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

impl RedisConfig {
    pub fn new(url: &str, namespace: &str) -> Self {
        Self {
            redis_url: Some(url.parse().expect("a URL string is always accepted")),
            redis_cluster: Vec::new(),
            redis_sentinels: Vec::new(),
            redis_sentinel_master: None,
            redis_ca_cert: None,
            namespace: namespace.to_owned(),
            redis_timeout_ms: 2000,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 1000,
            partitions: None,
        }
    }

    /// How many partitions the settings ask for: `INFERQ_PARTITIONS`, or the mode's default
    /// ([`DEFAULT_CLUSTER_PARTITIONS`] on a cluster, 1 otherwise).
    pub fn partition_count(&self) -> usize {
        match (self.partitions, self.mode()) {
            (Some(p), _) => usize::from(p),
            (None, Ok(RedisMode::Cluster(_))) => DEFAULT_CLUSTER_PARTITIONS,
            (None, _) => 1,
        }
    }

    /// The connection mode the settings name, or why they name none or more than one.
    pub fn mode(&self) -> Result<RedisMode, String> {
        let set: Vec<&str> = [
            ("INFERQ_REDIS_URL", self.redis_url.is_some()),
            ("INFERQ_REDIS_CLUSTER", !self.redis_cluster.is_empty()),
            ("INFERQ_REDIS_SENTINELS", !self.redis_sentinels.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if set.len() > 1 {
            return Err(format!(
                "{} are all set: set exactly one of INFERQ_REDIS_URL (one node), \
                 INFERQ_REDIS_CLUSTER (Redis Cluster) or INFERQ_REDIS_SENTINELS (Sentinel)",
                set.join(" and ")
            ));
        }
        match (&self.redis_sentinel_master, self.redis_sentinels.is_empty()) {
            (None, false) => {
                return Err(
                    "INFERQ_REDIS_SENTINELS is set without INFERQ_REDIS_SENTINEL_MASTER \
                            (the name the sentinels monitor the master under)"
                        .into(),
                );
            }
            (Some(_), true) => {
                return Err(
                    "INFERQ_REDIS_SENTINEL_MASTER is set without INFERQ_REDIS_SENTINELS \
                            (the sentinels' URLs)"
                        .into(),
                );
            }
            _ => {}
        }
        Ok(if let Some(master) = &self.redis_sentinel_master {
            RedisMode::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master: master.clone(),
            }
        } else if !self.redis_cluster.is_empty() {
            RedisMode::Cluster(self.redis_cluster.clone())
        } else {
            RedisMode::Node(
                self.redis_url
                    .clone()
                    .unwrap_or_else(|| RedisUrl(DEFAULT_REDIS_URL.to_owned())),
            )
        })
    }

    /// The mode for logs (passwords redacted), or why the settings name none.
    pub fn describe(&self) -> String {
        self.mode().map_or_else(|e| e, |m| m.to_string())
    }

    /// The CA certificate of `INFERQ_REDIS_CA_CERT`, read, for TLS in any mode.
    pub fn tls_certificates(&self) -> redis::RedisResult<Option<redis::TlsCertificates>> {
        let Some(path) = &self.redis_ca_cert else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read INFERQ_REDIS_CA_CERT",
                format!("{}: {e}", path.display()),
            ))
        })?;
        Ok(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
    }

    /// A client of one node at `url`, trusting `redis_ca_cert` for TLS when it is set.
    pub fn node_client(&self, url: &RedisUrl) -> redis::RedisResult<redis::Client> {
        match self.tls_certificates()? {
            None => redis::Client::open(url.expose()),
            Some(certs) => redis::Client::build_with_tls(url.expose(), certs),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// A Redis URL that redacts its password in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for RedisUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                write!(f, "{}://***{}", &self.0[..scheme], &self.0[at..])
            }
            _ => f.write_str(&self.0),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A secret from the command line or the environment (an admin key): `Debug` and `Display`
/// show `***`, so logging a config cannot leak it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Logging options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogConfig {
    /// Log one JSON object per line instead of human-readable text. `RUST_LOG` sets the filter.
    #[arg(long, env = "INFERQ_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_hides_password() {
        let url: RedisUrl = "redis://user:hunter2@db:6379/0".parse().unwrap();
        assert_eq!(format!("{url:?}"), "\"redis://***@db:6379/0\"");
        assert!(!url.to_string().contains("hunter2"));
        assert_eq!(url.expose(), "redis://user:hunter2@db:6379/0");
    }

    fn config(url: bool, cluster: bool, sentinels: bool, master: bool) -> RedisConfig {
        let mut c = RedisConfig::new("redis://a:1", "ns");
        if !url {
            c.redis_url = None;
        }
        if cluster {
            c.redis_cluster = vec!["redis://b:1".parse().unwrap()];
        }
        if sentinels {
            c.redis_sentinels = vec!["redis://c:1".parse().unwrap()];
        }
        if master {
            c.redis_sentinel_master = Some("m".into());
        }
        c
    }

    #[test]
    fn one_mode_at_a_time() {
        let none = config(false, false, false, false).mode().unwrap();
        assert_eq!(none, RedisMode::Node(DEFAULT_REDIS_URL.parse().unwrap()));
        assert!(matches!(
            config(false, true, false, false).mode(),
            Ok(RedisMode::Cluster(_))
        ));
        assert!(matches!(
            config(false, false, true, true).mode(),
            Ok(RedisMode::Sentinel { .. })
        ));
        let both = config(true, true, false, false).mode().unwrap_err();
        assert!(
            both.contains("INFERQ_REDIS_URL and INFERQ_REDIS_CLUSTER"),
            "{both}"
        );
        let all = config(true, true, true, true).mode().unwrap_err();
        assert!(all.contains("INFERQ_REDIS_SENTINELS"), "{all}");
        let no_master = config(false, false, true, false).mode().unwrap_err();
        assert!(
            no_master.contains("INFERQ_REDIS_SENTINEL_MASTER"),
            "{no_master}"
        );
        let no_sentinels = config(false, false, false, true).mode().unwrap_err();
        assert!(
            no_sentinels.contains("without INFERQ_REDIS_SENTINELS"),
            "{no_sentinels}"
        );
    }
}
