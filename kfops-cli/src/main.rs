//! `kfc`: the kfops command line.
//!
//! A thin binary: it parses arguments (clap), composes `kfops-config` and
//! `kfops-kubeflow`, prints, and maps errors to documented exit codes (see
//! `kfc --help` and the README).

mod cli;
mod commands;
mod error;
mod kubeflow;
mod output;
mod progress;
mod runs;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Commands, ConfigCommand, Format, LocalCommand, RunsCommand};
use crate::commands::Context;
use crate::error::{CliError, exit};
use crate::output::Printer;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kfc: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{}", render(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

fn render(e: &CliError) -> String {
    match e {
        // Configuration errors are already a list of located diagnostics.
        CliError::Config(c) => c.to_string(),
        other => format!("error: {other}"),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let root_format = cli.output;
    let format_for = |sub: Option<Format>| sub.or(root_format).unwrap_or(Format::Text);
    let root = match &cli.global.project {
        Some(p) => p.clone(),
        None => std::env::current_dir()
            .map_err(|e| CliError::Usage(format!("cannot determine the current directory: {e}")))?,
    };
    let root = std::path::absolute(&root).unwrap_or(root);
    if !root.is_dir() {
        return Err(CliError::Usage(format!(
            "the project directory `{}` does not exist (-C/--project)",
            root.display()
        )));
    }
    let printer = |format| Printer { format, quiet: cli.global.quiet, verbose: cli.global.verbose };
    match cli.command {
        Commands::Validate { out } => {
            let ctx = Context { printer: printer(format_for(out.output)), global: cli.global, root };
            commands::validate(&ctx).await
        }
        Commands::Config { command: ConfigCommand::Show { out } } => {
            let ctx = Context { printer: printer(format_for(out.output)), global: cli.global, root };
            commands::config_show(&ctx)
        }
        Commands::Config { command: ConfigCommand::Schema } => {
            let ctx = Context { printer: printer(Format::Json), global: cli.global, root };
            commands::config_schema(&ctx);
            Ok(())
        }
        Commands::Compile { source, function, output, format } => {
            // An explicit --format wins; otherwise the global --output json asks for JSON IR.
            let format = format.unwrap_or(if root_format == Some(Format::Json) {
                cli::IrFormat::Json
            } else {
                cli::IrFormat::Yaml
            });
            let ctx = Context { printer: printer(Format::Text), global: cli.global, root };
            commands::compile(&ctx, source, function, output, format).await
        }
        Commands::BuildRun { local, wait, run, out } => {
            let ctx = Context { printer: printer(format_for(out.output)), global: cli.global, root };
            commands::build_run(&ctx, local, wait, &run).await
        }
        Commands::Build { out } => {
            let ctx = Context { printer: printer(format_for(out.output)), global: cli.global, root };
            commands::build(&ctx).await
        }
        Commands::Run { version_id, wait, out } => {
            let ctx = Context { printer: printer(format_for(out.output)), global: cli.global, root };
            commands::run(&ctx, version_id, wait).await
        }
        Commands::Local { command: LocalCommand::Run { pipeline, params, root: runs_root, function, run, out } } => {
            let ctx = Context { printer: printer(format_for(out.output)), global: cli.global, root };
            runs::local_run(&ctx, &pipeline, &params, runs_root, function.as_deref(), &run).await
        }
        Commands::Runs { command } => {
            let out = match &command {
                RunsCommand::List { out, .. } | RunsCommand::Show { out, .. } | RunsCommand::Wait { out, .. } => {
                    out.output
                }
                RunsCommand::Terminate { .. } | RunsCommand::Retry { .. } => None,
            };
            let ctx = Context { printer: printer(format_for(out)), global: cli.global, root };
            runs::runs(&ctx, command).await
        }
        Commands::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut stdout = std::io::stdout().lock();
            clap_complete::generate(shell, &mut cmd, "kfc", &mut stdout);
            Ok(())
        }
    }
}
