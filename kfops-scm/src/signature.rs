//! HMAC-SHA256 webhook signatures (`X-Hub-Signature-256: sha256=<hex>`).
//!
//! Verification is constant-time (via `hmac`'s `verify_slice`) and accepts
//! several secrets at once so a secret can be rotated without dropping
//! deliveries: configure old and new, switch the SCM, remove the old one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::SignatureError;

type HmacSha256 = Hmac<Sha256>;

/// The prefix GitHub puts before the hex digest.
pub const PREFIX: &str = "sha256=";

/// Verifies `sha256=` HMAC signatures against one or more shared secrets.
#[derive(Clone)]
pub struct SignatureVerifier {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SignatureVerifier {
    /// Never prints the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureVerifier")
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .finish()
    }
}

impl SignatureVerifier {
    /// A verifier accepting a signature made with any of `secrets`.
    /// Empty secrets are ignored: an empty key would make signatures forgeable.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        SignatureVerifier {
            secrets: secrets.into_iter().map(|s| s.as_ref().to_vec()).filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Check `header` (the value of `X-Hub-Signature-256`, if present) against `body`.
    pub fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
        if self.secrets.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let header = header.ok_or(SignatureError::Missing)?.trim();
        let hex_digest = header.strip_prefix(PREFIX).ok_or(SignatureError::Malformed)?;
        if hex_digest.len() != 64 {
            return Err(SignatureError::Malformed);
        }
        let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
        for secret in &self.secrets {
            let Ok(mut mac) = HmacSha256::new_from_slice(secret) else { continue };
            mac.update(body);
            if mac.verify_slice(&expected).is_ok() {
                return Ok(());
            }
        }
        Err(SignatureError::Mismatch)
    }

    /// The header value for `body` signed with the first secret (for tests and tools).
    pub fn sign(&self, body: &[u8]) -> Option<String> {
        let secret = self.secrets.first()?;
        let mut mac = HmacSha256::new_from_slice(secret).ok()?;
        mac.update(body);
        Some(format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes())))
    }
}
