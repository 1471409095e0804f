//! Everything that produces a pipeline run on Kubeflow Pipelines.
//!
//! * [`ir`]: the compiled pipeline (KFP `PipelineSpec`, schema 2.1.0) as typed
//!   Rust structures, with a structural lint and the check of run arguments
//!   against the pipeline's declared inputs.
//! * [`compile`]: turning a pipeline source (`.py` through the real `kfp`
//!   compiler, or an already compiled `.yaml`/`.json`) into IR.
//!
//! This crate does not talk to a Kubeflow server yet (the KFP REST client and
//! the embedded local runner are separate modules that land with their own
//! issues), and it never deploys models: that is `kfops-deploy`.

pub mod compile;
pub mod error;
pub mod ir;
pub mod local;

pub use error::{CompileError, IrError, RunnerError};
