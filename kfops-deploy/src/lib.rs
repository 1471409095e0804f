//! Serving trained models: everything after a pipeline run succeeded.
//!
//! * [`storage`]: the model storage-URI template (`s3://trained-models/{run_id}/`
//!   by default, as kfops stored models) that tells the InferenceService where
//!   the trained model lives.
//! * [`manifest`]: the InferenceService manifest (from settings or a template)
//!   and its validation against the official KServe CRD schema.
//! * [`kserve`]: [`kserve::KserveTarget`], the KServe [`kfops_core::DeployTarget`]
//!   (server-side apply through `kube`, canary at 0 %, inference check through
//!   the [`check::InferenceCheck`] interface, promote, roll back).
//!
//! This crate never builds or runs pipelines.

pub mod check;
pub mod error;
pub mod kserve;
pub mod manifest;
pub mod storage;

pub use error::{CheckError, DeployError, TemplateError};
