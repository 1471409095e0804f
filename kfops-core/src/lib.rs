//! The heart of kfops: domain types, the four integration traits, and the
//! ChatOps command grammar.
//!
//! * [`PipelineBackend`], [`ImageBuilder`], [`DeployTarget`], [`ScmProvider`]
//!   (+ [`WebhookVerifier`]) are the integration points; the adapters live in
//!   `kfops-kubeflow`, `kfops-deploy` and `kfops-scm`.
//! * [`command`] parses `/build`, `/run`, `/build_run`, `/deploy`,
//!   `/staging_deploy` out of PR comments.
//! * [`pipeline`], [`image`], [`deploy`], [`scm`] hold the vocabulary the
//!   traits speak; [`progress`] lets long operations report as they go.
//!
//! This crate does no IO: no files, network, processes or clocks. It depends
//! on `serde`, `serde_json`, `async-trait`, `thiserror` and `strsim` only, so
//! any tool can embed it.

#![deny(missing_docs)]

pub mod command;
pub mod deploy;
pub mod error;
pub mod image;
pub mod pipeline;
pub mod progress;
pub mod scm;
mod traits;

pub use command::{Command, CommandKind, parse_comment};
pub use error::{CommandError, Error, ErrorKind, Result};
pub use progress::{NoProgress, Progress, ProgressEvent};
pub use traits::{DeployTarget, ImageBuilder, PipelineBackend, ScmProvider, WebhookVerifier};
