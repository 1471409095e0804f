//! `kfc`'s errors and their exit codes.

use kfops_config::ConfigError;
use kfops_kubeflow::{CompileError, IrError, KfpError, RunnerError};

/// Documented exit codes of `kfc`.
pub(crate) mod exit {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// An internal error (a bug, or an environment problem we did not foresee).
    pub(crate) const INTERNAL: u8 = 1;
    /// Bad command-line usage (clap uses 2 as well).
    pub(crate) const USAGE: u8 = 2;
    /// The configuration or the pipeline is invalid.
    pub(crate) const INVALID: u8 = 3;
    /// The pipeline could not be compiled.
    pub(crate) const COMPILE: u8 = 4;
    /// A backend (Kubeflow, local runner, registry) failed.
    pub(crate) const BACKEND: u8 = 5;
    /// The pipeline ran and did not succeed.
    pub(crate) const RUN_FAILED: u8 = 6;
    /// Interrupted (Ctrl-C); the run was cancelled.
    pub(crate) const INTERRUPTED: u8 = 130;
}

/// Everything that can make a `kfc` command fail.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Configuration problems (already rendered with locations).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline could not be compiled.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The compiled pipeline is not valid IR.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// The pipeline has lint errors or its arguments do not fit its inputs (already printed).
    #[error("{0}")]
    InvalidPipeline(String),
    /// The local runner could not run the pipeline.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// Kubeflow Pipelines refused or could not be reached.
    #[error(transparent)]
    Kfp(KfpError),
    /// The run finished and did not succeed (the message names the failed tasks).
    #[error("{0}")]
    RunFailed(String),
    /// The run was cancelled (Ctrl-C).
    #[error("{0}")]
    Interrupted(String),
    /// The requested backend is not available in this build.
    #[error("{0}")]
    Backend(String),
    /// A command-line value is not usable.
    #[error("{0}")]
    Usage(String),
    /// Writing output failed.
    #[error("writing {what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Ir(_) | CliError::InvalidPipeline(_) => exit::INVALID,
            CliError::Compile(CompileError::Ir(_)) => exit::INVALID,
            CliError::Compile(CompileError::SourceMissing { .. } | CompileError::UnsupportedSource { .. }) => {
                exit::INVALID
            }
            CliError::Compile(_) => exit::COMPILE,
            CliError::Usage(_) => exit::USAGE,
            CliError::Runner(RunnerError::Arguments { .. } | RunnerError::Invalid(_)) => exit::INVALID,
            CliError::Runner(RunnerError::NotFound { .. } | RunnerError::Ambiguous { .. }) => exit::USAGE,
            CliError::Runner(_) | CliError::Backend(_) | CliError::Kfp(_) => exit::BACKEND,
            CliError::RunFailed(_) => exit::RUN_FAILED,
            CliError::Interrupted(_) => exit::INTERRUPTED,
            CliError::Io { .. } => exit::INTERNAL,
        }
    }
}
