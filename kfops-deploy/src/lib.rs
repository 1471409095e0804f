//! Serving trained models: everything after a pipeline run succeeded.
//!
//! Today: [`storage`], the model storage-URI template (`s3://trained-models/{run_id}/`
//! by default, as kfops stored models) that tells the InferenceService where
//! the trained model lives.
//!
//! The KServe [`kfops_core::DeployTarget`] (server-side apply through `kube`,
//! canary at 0 %, inference check, promote, roll back) arrives with the deploy
//! commands. This crate never builds or runs pipelines.

pub mod check;
pub mod error;
pub mod kserve;
pub mod manifest;
pub mod storage;

pub use error::{CheckError, DeployError, TemplateError};
