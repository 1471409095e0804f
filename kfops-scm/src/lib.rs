//! Source-control providers for kfops.
//!
//! Today: [`git`], the local checkout a build comes from (commit, branch,
//! uncommitted changes), and [`signature`], the constant-time verification of webhook signatures
//! (`X-Hub-Signature-256`, used by GitHub and by Gitea/Forgejo's GitHub-compatible
//! header) that every provider runs **before** parsing a payload.
//!
//! The GitHub [`kfops_core::ScmProvider`] (octocrab) and the
//! [`kfops_core::WebhookVerifier`] built on this module arrive with the bot; GitLab and
//! Gitea/Forgejo follow as further modules. This crate never runs pipelines
//! or touches Kubernetes.

pub mod error;
pub mod git;
pub mod signature;

pub use error::SignatureError;
