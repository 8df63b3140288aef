//! API keys, scopes and tenants: what a key is, how it is made and checked. Keys are stored
//! (by [`queue::apikeys`](crate::queue::apikeys)) as the SHA-256 of the key, never in clear.
//!
//! A key reads `iqk_<id>_<secret>`: the recognisable prefix lets secret scanners find leaked
//! keys; `<id>` (16 hex digits) names the key in listings and revocations and is how the stored
//! record is found; `<secret>` is 64 hex digits of 32 bytes from the operating system's
//! generator. The whole key is hashed, and the stored hash is compared in constant time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix every generated key starts with.
pub const KEY_PREFIX: &str = "iqk_";

/// The tenant of everything done while authentication is disabled, and of the bootstrap
/// admin key.
pub const DEFAULT_TENANT: &str = "default";

/// What a key may do. `admin` implies the other two, and sees every tenant's jobs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Submit jobs (and OIP inference requests) and cancel the tenant's jobs.
    Submit,
    /// Read the tenant's jobs, and the models.
    Read,
    /// Operations: workers, queues, dead letters, keys, model retirement, metrics; every
    /// tenant's jobs.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Submit, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| AuthError::UnknownScope(s.chars().take(32).collect()))
    }
}

/// A set of scopes, as a key carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether a key with these scopes may do what `needed` allows (`admin` allows all).
    pub fn allows(self, needed: Scope) -> bool {
        self.0 & (Self::bit(needed) | Self::bit(Scope::Admin)) != 0
    }

    pub fn contains(self, s: Scope) -> bool {
        self.0 & Self::bit(s) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |s| self.contains(s.to_owned()))
    }

    fn bit(s: Scope) -> u8 {
        1 << s as u8
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |acc, s| acc | Self::bit(s)))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// `submit,read`: comma-separated, at least one.
impl FromStr for Scopes {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let scopes = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Scope::from_str)
            .collect::<Result<Scopes, _>>()?;
        if scopes.is_empty() {
            return Err(AuthError::NoScope);
        }
        Ok(scopes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown scope '{0}' (scopes: submit, read, admin)")]
    UnknownScope(String),
    #[error("a key needs at least one scope (submit, read, admin)")]
    NoScope,
    #[error("a tenant name is 1 to 64 characters of A-Z, a-z, 0-9, '_', '-' and '.'")]
    InvalidTenant,
    #[error("a key name is at most 128 characters without control characters")]
    InvalidName,
    #[error("a key's rate must be a number ≥ 0 (0 = no limit) and its burst a number ≥ 1")]
    InvalidLimits,
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

/// Checks a tenant name: it appears in Redis records and in listings.
pub fn valid_tenant(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a key's free-form label.
pub fn valid_key_name(n: &str) -> bool {
    n.chars().count() <= 128 && !n.chars().any(char::is_control)
}

/// An API key in clear: shown once when it is made, then only its hash is kept. Redacts
/// itself in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl ApiKey {
    /// A new key with a fresh id and 256 bits of secret.
    pub fn generate() -> Result<Self, AuthError> {
        let mut bytes = [0u8; 40];
        getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
        Ok(Self(format!(
            "{KEY_PREFIX}{}_{}",
            hex(&bytes[..8]),
            hex(&bytes[8..])
        )))
    }

    /// Any string a client sent; whether it is a key is decided by looking it up.
    pub fn from_client(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The id part of a well-formed generated key.
    pub fn id(&self) -> Option<&str> {
        let rest = self.0.strip_prefix(KEY_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let hexy = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hexy(id, 16) && hexy(secret, 64)).then_some(id)
    }

    /// The SHA-256 of the whole key, in hex: what is stored.
    pub fn hash(&self) -> String {
        hash_secret(&self.0)
    }
}

/// SHA-256 of `s` in hex.
pub fn hash_secret(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// Compares two strings in time that depends on their lengths only, so a comparison with a
/// stored hash reveals nothing about how much of it matched.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A tenant's quotas as one of its keys sets them: requests made with the key use them; what
/// a key leaves unset comes from the API's configuration (`INFERQ_TENANT_MAX_QUEUED`,
/// `INFERQ_TENANT_RATE`, `INFERQ_TENANT_BURST`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantLimits {
    /// Most jobs the tenant may have waiting (queued or scheduled) or running; submissions
    /// beyond it get `429 quota_exceeded`. 0 = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub max_queued: Option<u64>,
    /// Submission requests per second (a token bucket shared by every API process); 0 = no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub rate: Option<f64>,
    /// Submissions the tenant may make at once before `rate` applies (the bucket's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub burst: Option<f64>,
}

impl TenantLimits {
    /// Why the limits cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), AuthError> {
        let rate_ok = self.rate.is_none_or(|r| r.is_finite() && r >= 0.0);
        let burst_ok = self.burst.is_none_or(|b| b.is_finite() && b >= 1.0);
        if rate_ok && burst_ok {
            Ok(())
        } else {
            Err(AuthError::InvalidLimits)
        }
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// The key's id (the part after `iqk_`); it names the key in listings and revocations.
    pub id: String,
    pub tenant: String,
    #[schema(value_type = Vec<Scope>)]
    #[serde(with = "scopes_serde")]
    pub scopes: Scopes,
    /// A label chosen by whoever made the key.
    pub name: String,
    /// When it was made, ms since the epoch.
    pub created_at: u64,
    /// The tenant's quotas for requests made with this key.
    #[serde(flatten)]
    pub limits: TenantLimits,
}

mod scopes_serde {
    use super::{Scope, Scopes};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(s: &Scopes, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(s.iter())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Scopes, D::Error> {
        let v = Vec::<Scope>::deserialize(de)?;
        Ok(v.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_recognisable_and_distinct() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(KEY_PREFIX));
        assert_eq!(a.expose().len(), 4 + 16 + 1 + 64);
        assert_eq!(a.id().unwrap().len(), 16);
        assert_eq!(format!("{a:?}"), "ApiKey(***)");
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn malformed_keys_have_no_id() {
        for k in ["", "iqk_", "iqk_zz_yy", "nope", "iqk_0123456789abcdef_00"] {
            assert_eq!(ApiKey::from_client(k).id(), None, "{k}");
        }
    }

    #[test]
    fn scopes_parse_and_admin_allows_all() {
        let s: Scopes = "submit, read".parse().unwrap();
        assert!(s.allows(Scope::Submit) && s.allows(Scope::Read) && !s.allows(Scope::Admin));
        let a: Scopes = "admin".parse().unwrap();
        assert!(Scope::ALL.iter().all(|x| a.allows(*x)));
        assert_eq!(s.to_string(), "submit,read");
        assert!("".parse::<Scopes>().is_err());
        assert!("write".parse::<Scopes>().is_err());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }

    #[test]
    fn tenants_are_checked() {
        assert!(valid_tenant("team-a.prod_1"));
        assert!(!valid_tenant(""));
        assert!(!valid_tenant("a b"));
        assert!(!valid_tenant(&"x".repeat(65)));
    }
}
