//! Source-control providers for kfops.
//!
//! Today: [`git`], the local checkout a build comes from (commit, branch,
//! uncommitted changes), and [`signature`], the constant-time verification of webhook signatures
//! (`X-Hub-Signature-256`, used by GitHub and by Gitea/Forgejo's GitHub-compatible
//! header) that every provider runs **before** parsing a payload.
//!
//! [`github`] holds the GitHub [`kfops_core::WebhookVerifier`] (signature, then
//! the `issue_comment` filter and the command parser) and the GitHub
//! [`kfops_core::ScmProvider`], [`github::GithubProvider`] (octocrab; token or
//! GitHub App authentication; retries, rate limits and pacing by
//! [`github::retry`]). With the `testing` feature, `github::testserver::TestGithub`
//! is a stateful fake of the GitHub REST API that checks every request and
//! its own answers against GitHub's official OpenAPI description
//! (`github::openapi`). GitLab and Gitea/Forgejo follow as further modules.
//! This crate never runs pipelines or touches Kubernetes.

pub mod error;
pub mod git;
pub mod github;
pub mod signature;

pub use error::SignatureError;
