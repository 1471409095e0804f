//! Everything that produces a pipeline run on Kubeflow Pipelines.
//!
//! * [`ir`]: the compiled pipeline (KFP `PipelineSpec`, schema 2.1.0) as typed
//!   Rust structures, with a structural lint and the check of run arguments
//!   against the pipeline's declared inputs.
//! * [`compile`]: turning a pipeline source (`.py` through the real `kfp`
//!   compiler, or an already compiled `.yaml`/`.json`) into IR.
//! * [`kfp`]: the Kubeflow Pipelines v2beta1 REST client and its
//!   [`kfops_core::PipelineBackend`]; with the `testing` feature also a
//!   stateful KFP API test server and a checker of requests against the
//!   official swagger.
//! * [`local`]: the embedded local runner, the other `PipelineBackend`.
//!
//! It never deploys models: that is `kfops-deploy`.

pub mod compile;
pub mod error;
pub mod image;
pub mod ir;
pub mod kfp;
pub mod local;

pub use error::{CompileError, IrError, KfpError, RegistryError, RunnerError};
