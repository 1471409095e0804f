//! GitHub (github.com and GitHub Enterprise Server).
//!
//! [`webhook`] turns a signed delivery into a [`kfops_core::WebhookOutcome`]:
//! signature first, then the narrow set of fields the bot acts on. [`retry`]
//! holds the rules for retries, rate limits and pacing.

#[cfg(feature = "testing")]
pub mod examples;
pub mod retry;
pub mod webhook;

pub use webhook::{GithubWebhooks, RepoAllowlist};
