//! Command-line grammar of `kfc` (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kfc — Kubeflow pipelines the way software teams work: one repository, one
/// config file (`kfops.yaml`), reproducible builds and runs.
#[derive(Debug, Parser)]
#[command(name = "kfc", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 ok, 1 internal error, 2 usage error, 3 invalid configuration or pipeline, \
4 compile failure, 5 backend failure, 6 run failed, 130 interrupted.")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    /// How results are printed (also accepted after the subcommand).
    #[arg(long = "output", value_enum, value_name = "FORMAT", global = false)]
    pub(crate) output: Option<Format>,

    #[command(subcommand)]
    pub(crate) command: Commands,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Project root: the repository with kfops.yaml [default: current directory]
    #[arg(short = 'C', long = "project", value_name = "DIR", global = true)]
    pub(crate) project: Option<PathBuf>,

    /// Configuration file [default: kfops.yaml, else config_files/config.yaml]
    #[arg(long = "config", value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,

    /// YAML file whose `pipeline:` section is merged over the configuration (repeatable, applied in order)
    #[arg(short = 'o', long = "config-override", value_name = "FILE", global = true)]
    pub(crate) config_override: Vec<PathBuf>,

    /// Override one pipeline key, e.g. `--set pipeline.pipeline_args.lr=0.1` (repeatable; values are YAML scalars)
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub(crate) set: Vec<String>,

    /// Kubeflow Pipelines API endpoint (overrides kubeflow.url)
    #[arg(long = "kubeflow-url", value_name = "URL", global = true)]
    pub(crate) kubeflow_url: Option<String>,

    /// Kubeflow profile namespace (overrides kubeflow.namespace)
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE", global = true)]
    pub(crate) namespace: Option<String>,

    /// More detail (compiler command, timings)
    #[arg(short = 'v', long = "verbose", global = true, conflicts_with = "quiet")]
    pub(crate) verbose: bool,

    /// Only errors
    #[arg(short = 'q', long = "quiet", global = true)]
    pub(crate) quiet: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Text,
    /// One JSON document on stdout.
    Json,
    /// YAML (where it makes sense, e.g. `config show`).
    Yaml,
}

/// `--output` after a subcommand.
#[derive(Debug, Args)]
pub(crate) struct OutputArg {
    /// How results are printed
    #[arg(long = "output", value_enum, value_name = "FORMAT")]
    pub(crate) output: Option<Format>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Commands {
    /// Check the project: configuration, compilation, IR lint, and the run arguments against the pipeline's inputs
    Validate {
        #[command(flatten)]
        out: OutputArg,
    },
    /// Inspect the configuration
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Compile the pipeline to IR (YAML by default, JSON with `--format json`)
    Compile {
        /// A pipeline source to compile instead of `pipeline.pipeline_path` (no configuration needed)
        #[arg(value_name = "SOURCE")]
        source: Option<PathBuf>,
        /// The `@dsl.pipeline` function to compile (overrides `pipeline.pipeline_function_name`)
        #[arg(long = "function", value_name = "NAME")]
        function: Option<String>,
        /// Where to write the IR; `-` is stdout [default: -]
        #[arg(long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// IR format
        #[arg(long = "format", value_enum, value_name = "FORMAT", default_value = "yaml")]
        format: IrFormat,
    },
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Formats the IR can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IrFormat {
    /// YAML, as `kfp dsl compile` writes it.
    Yaml,
    /// JSON (accepted by the KFP API and UI as well).
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective configuration after all layers, secrets masked
    Show {
        #[command(flatten)]
        out: OutputArg,
    },
    /// Print the JSON Schema of kfops.yaml (for editor completion)
    Schema,
}
