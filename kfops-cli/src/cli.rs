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

    /// How results are printed (also accepted after most subcommands; `kfc compile` uses --format, and its --output is a file)
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

    #[command(flatten)]
    pub(crate) auth: AuthArgs,

    /// More detail (compiler command, timings)
    #[arg(short = 'v', long = "verbose", global = true, conflicts_with = "quiet")]
    pub(crate) verbose: bool,

    /// Only errors
    #[arg(short = 'q', long = "quiet", global = true)]
    pub(crate) quiet: bool,
}

/// Kubeflow credentials given on the command line (they replace `kubeflow.auth`).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct AuthArgs {
    /// Bearer token read from this file on every request (e.g. a projected service-account token)
    #[arg(long = "token-file", value_name = "FILE", global = true, conflicts_with_all = ["token_env", "cookie_file", "no_auth"])]
    pub(crate) token_file: Option<PathBuf>,
    /// Bearer token read from this environment variable
    #[arg(long = "token-env", value_name = "VAR", global = true, conflicts_with_all = ["cookie_file", "no_auth"])]
    pub(crate) token_env: Option<String>,
    /// Session cookie (`name=value`) read from this file (Dex / oauth2-proxy)
    #[arg(long = "cookie-file", value_name = "FILE", global = true, conflicts_with = "no_auth")]
    pub(crate) cookie_file: Option<PathBuf>,
    /// Send no credentials (standalone KFP), even if an in-cluster token exists
    #[arg(long = "no-auth", global = true)]
    pub(crate) no_auth: bool,
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
        /// IR format [default: yaml]
        #[arg(long = "format", value_enum, value_name = "FORMAT")]
        format: Option<IrFormat>,
    },
    /// Compile the pipeline and run it: on Kubeflow, or on the embedded local runner when no
    /// Kubeflow endpoint is configured (or with --local)
    #[command(name = "build-run")]
    BuildRun {
        /// Run on the embedded local runner even if Kubeflow is configured
        #[arg(long)]
        local: bool,
        /// On Kubeflow: follow the run with live task progress; exit non-zero unless it succeeds
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        #[command(flatten)]
        run: LocalRunArgs,
        #[command(flatten)]
        out: OutputArg,
    },
    /// Compile the pipeline and publish it to Kubeflow as the version of this commit (reused if it exists)
    Build {
        #[command(flatten)]
        out: OutputArg,
    },
    /// Start a run of a published version on Kubeflow (the version of this commit unless --version-id)
    Run {
        /// The pipeline version to run
        #[arg(long = "version-id", value_name = "ID")]
        version_id: Option<String>,
        /// Follow the run with live task progress; exit non-zero unless it succeeds
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        #[command(flatten)]
        out: OutputArg,
    },
    /// The embedded local runner
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Inspect and control runs: on Kubeflow when an endpoint is configured, local runs (`.kfops/runs`) otherwise or with --local
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
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

/// Settings of a local run.
#[derive(Debug, Args)]
pub(crate) struct LocalRunArgs {
    /// At most this many tasks run at once [default: number of CPUs]
    #[arg(long = "max-parallel", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) max_parallel: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LocalCommand {
    /// Run a pipeline (compiled `.yaml`/`.json`, or `.py`) on this machine, without a configuration file.
    /// Exit 0 iff the run succeeded.
    Run {
        /// The pipeline
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        /// A run argument, NAME=VALUE (repeatable; values are YAML scalars: `3`, `0.5`, `true`, `[a, b]`, `"3"`)
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Folder that holds `.kfops/runs` [default: the project directory]
        #[arg(long = "root", value_name = "DIR")]
        root: Option<PathBuf>,
        /// The `@dsl.pipeline` function, for `.py` pipelines with several
        #[arg(long = "function", value_name = "NAME")]
        function: Option<String>,
        #[command(flatten)]
        run: LocalRunArgs,
        #[command(flatten)]
        out: OutputArg,
    },
}

/// Runs on Kubeflow when a Kubeflow endpoint is configured, local runs otherwise (or with `--local`).
#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs, newest first (on Kubeflow: the project's experiment)
    List {
        #[command(flatten)]
        target: RunsTarget,
        #[command(flatten)]
        out: OutputArg,
    },
    /// Show one run: state, arguments, outputs, tasks
    Show {
        /// The run id (for local runs a unique prefix is enough)
        id: String,
        #[command(flatten)]
        target: RunsTarget,
        #[command(flatten)]
        out: OutputArg,
    },
    /// Follow a Kubeflow run to its end with live task progress; exit non-zero unless it succeeds
    Wait {
        /// The run id
        id: String,
        #[command(flatten)]
        out: OutputArg,
    },
    /// Stop a run (Kubeflow, or a local run in another `kfc`)
    Terminate {
        /// The run id
        id: String,
        #[command(flatten)]
        target: RunsTarget,
    },
    /// Retry a failed or terminated Kubeflow run
    Retry {
        /// The run id
        id: String,
    },
}

/// Which runs `kfc runs` talks about.
#[derive(Debug, Args)]
pub(crate) struct RunsTarget {
    /// Local runs even if Kubeflow is configured
    #[arg(long)]
    pub(crate) local: bool,
    /// Folder that holds `.kfops/runs` for local runs [default: the project directory]
    #[arg(long = "root", value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
}
