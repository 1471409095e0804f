//! Errors of `kfops-scm`.

/// Why a webhook signature was refused. Deliberately coarse: a caller answers
/// 401 for all of them and must not tell an attacker which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature header is absent.
    #[error("the request has no signature header")]
    Missing,
    /// The header is not `sha256=<64 hex digits>`.
    #[error("the signature header is malformed (expected `sha256=<64 hex digits>`)")]
    Malformed,
    /// No configured secret produces this signature.
    #[error("the signature does not match the payload")]
    Mismatch,
    /// No secret is configured, so nothing can be verified.
    #[error("no webhook secret is configured")]
    NoSecret,
}
