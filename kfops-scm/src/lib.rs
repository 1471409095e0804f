//! Source-control providers for kfops.
//!
//! Today: [`git`], the local checkout a build comes from (commit, branch,
//! uncommitted changes), and [`signature`], the constant-time verification of webhook signatures
//! (`X-Hub-Signature-256`, used by GitHub and by Gitea/Forgejo's GitHub-compatible
//! header) that every provider runs **before** parsing a payload.
//!
//! [`github`] holds the GitHub [`kfops_core::WebhookVerifier`] (signature, then
//! the `issue_comment` filter and the command parser); the GitHub
//! [`kfops_core::ScmProvider`] (octocrab) arrives with the bot; GitLab and
//! Gitea/Forgejo follow as further modules. This crate never runs pipelines
//! or touches Kubernetes.

pub mod error;
pub mod git;
pub mod github;
pub mod signature;

pub use error::SignatureError;
