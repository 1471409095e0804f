//! GitHub (github.com and GitHub Enterprise Server).
//!
//! [`webhook`] turns a signed delivery into a [`kfops_core::WebhookOutcome`]:
//! signature first, then the narrow set of fields the bot acts on. [`retry`]
//! holds the rules for retries, rate limits and pacing. [`client`] is the
//! [`kfops_core::ScmProvider`] for GitHub ([`GithubProvider`], on `octocrab`,
//! with token or GitHub App authentication), which applies those rules to
//! every request.
//!
//! Behind the `testing` feature: [`examples`] (recorded webhook deliveries),
//! `openapi` (a checker for GitHub's official OpenAPI description) and
//! `testserver` (`TestGithub`, a stateful fake of the REST API that checks
//! every request and its own responses against that description).

pub mod client;
#[cfg(feature = "testing")]
pub mod examples;
#[cfg(feature = "testing")]
pub mod openapi;
pub mod retry;
#[cfg(feature = "testing")]
pub mod testserver;
pub mod webhook;

pub use client::{GithubAuth, GithubConfig, GithubProvider};
pub use webhook::{GithubWebhooks, RepoAllowlist};
