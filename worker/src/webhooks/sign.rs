//! Standard Webhooks signatures: `v1,<base64 of HMAC-SHA256 over "<id>.<timestamp>.<body>">`,
//! keyed by the secret's decoded bytes (a secret is `whsec_<base64>`).

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::WebhookConfig;

/// The signing keys: one per tenant that has its own, and the default.
#[derive(Clone, Default)]
pub(crate) struct SigningKeys {
    default: Option<Vec<u8>>,
    tenants: HashMap<String, Vec<u8>>,
}

/// Keys never reach a log.
impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("default", &self.default.as_ref().map(|_| "***"))
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Decodes `whsec_<base64>`; the error never quotes the secret.
fn decode(secret: &str, what: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .trim()
        .strip_prefix("whsec_")
        .ok_or_else(|| format!("{what} must have the form whsec_<base64>"))?;
    let key = STANDARD
        .decode(b64)
        .map_err(|_| format!("{what}: the part after whsec_ is not base64"))?;
    if key.len() < 16 {
        return Err(format!("{what}: the key is shorter than 16 bytes"));
    }
    Ok(key)
}

impl SigningKeys {
    pub(crate) fn from_config(c: &WebhookConfig) -> Result<Self, String> {
        let mut keys = Self::default();
        if let Some(s) = c.webhook_secret.as_ref().filter(|s| !s.expose().is_empty()) {
            keys.default = Some(decode(s.expose(), "INFERQ_WEBHOOK_SECRET")?);
        }
        if let Some(list) = &c.webhook_secrets {
            for item in list.expose().split(',').filter(|i| !i.trim().is_empty()) {
                let (tenant, secret) = item.split_once('=').ok_or(
                    "INFERQ_WEBHOOK_SECRETS must be <tenant>=whsec_<base64>, comma-separated",
                )?;
                let what = format!("INFERQ_WEBHOOK_SECRETS (tenant '{}')", tenant.trim());
                keys.tenants
                    .insert(tenant.trim().to_owned(), decode(secret, &what)?);
            }
        }
        Ok(keys)
    }

    /// The key that signs `tenant`'s messages.
    pub(crate) fn key(&self, tenant: &str) -> Option<&[u8]> {
        self.tenants
            .get(tenant)
            .or(self.default.as_ref())
            .map(Vec::as_slice)
    }
}

/// The `webhook-signature` header value.
pub(crate) fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use inferq_shared::config::Secret;

    use super::*;

    fn config(secret: Option<&str>, secrets: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            webhook_secret: secret.map(|s| s.parse::<Secret>().unwrap()),
            webhook_secrets: secrets.map(|s| s.parse::<Secret>().unwrap()),
            webhook_max_attempts: 8,
            webhook_backoff_ms: 5000,
        }
    }

    /// The example of the Standard Webhooks reference libraries (their test vector).
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let keys = config(Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
        let keys = SigningKeys::from_config(&keys).unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(
                keys.key("any").unwrap(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn tenants_have_their_own_keys_and_bad_ones_are_refused() {
        let a = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let b = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let keys = SigningKeys::from_config(&config(Some(a), Some(&format!("acme={b}")))).unwrap();
        assert_ne!(keys.key("acme"), keys.key("other"));
        assert_eq!(keys.key("other"), keys.key(""));
        assert!(
            SigningKeys::from_config(&config(None, None))
                .unwrap()
                .key("x")
                .is_none()
        );
        let err =
            SigningKeys::from_config(&config(Some("secret-without-prefix"), None)).unwrap_err();
        assert!(!err.contains("secret-without-prefix"), "{err}");
        assert!(SigningKeys::from_config(&config(None, Some("acme"))).is_err());
        assert!(SigningKeys::from_config(&config(Some("whsec_!!"), None)).is_err());
    }
}
