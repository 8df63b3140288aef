//! Configuration pieces both binaries share, flattened into each binary's clap parser.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Redis connection and key namespace.
#[derive(clap::Args, Debug, Clone)]
pub struct RedisConfig {
    /// Redis URL, `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS (rustls;
    /// the user is a Redis ACL user). The password never appears in logs or in `--help`.
    #[arg(
        long,
        env = "INFERQ_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: RedisUrl,

    /// PEM file of the certificate authority that signed Redis's certificate, for `rediss://`
    /// URLs; unset: the system's trusted roots.
    #[arg(long, env = "INFERQ_REDIS_CA_CERT")]
    pub redis_ca_cert: Option<std::path::PathBuf>,

    /// Prefix of every Redis key and channel; API and workers must agree on it.
    #[arg(long, env = "INFERQ_NAMESPACE", default_value = "inferq")]
    pub namespace: String,

    /// Longest wait for one Redis command or connection attempt, in milliseconds; past it the
    /// API answers 503 instead of hanging.
    #[arg(long, env = "INFERQ_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
}

impl RedisConfig {
    pub fn new(url: &str, namespace: &str) -> Self {
        Self {
            redis_url: url.parse().expect("a URL string is always accepted"),
            redis_ca_cert: None,
            namespace: namespace.to_owned(),
            redis_timeout_ms: 2000,
        }
    }

    /// A client for the configured URL, trusting `redis_ca_cert` for TLS when it is set.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let Some(path) = &self.redis_ca_cert else {
            return redis::Client::open(self.redis_url.expose());
        };
        let pem = std::fs::read(path).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read INFERQ_REDIS_CA_CERT",
                format!("{}: {e}", path.display()),
            ))
        })?;
        redis::Client::build_with_tls(
            self.redis_url.expose(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        )
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// A Redis URL that redacts its password in `Debug` and `Display`.
#[derive(Clone)]
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
}
