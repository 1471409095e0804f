//! `kfops-bot`: the kfops ChatOps service.
//!
//! A thin binary over the `kfops_bot` library: `serve --config FILE` runs the
//! service, `check-config --config FILE` validates a configuration (secrets
//! included) without starting anything, and `parse-command` shows how a
//! comment is understood: `kfops-bot parse-command "/deploy --force"`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use kfops_bot::config::BotConfig;
use kfops_bot::error::{BotError, EXIT_OK};

/// kfops-bot — run kfops from pull-request comments.
#[derive(Debug, Parser)]
#[command(name = "kfops-bot", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run the service: webhooks in, commands out (SIGTERM or Ctrl-C stops it gracefully).
    Serve {
        /// The bot configuration file (YAML; see the README for every key)
        #[arg(long, short = 'c', env = "KFOPS_BOT_CONFIG")]
        config: PathBuf,
    },
    /// Print the deploy audit trail (who deployed which run of which PR where, and how it ended).
    Audit {
        /// The bot configuration file (for the state directory)
        #[arg(long, short = 'c', env = "KFOPS_BOT_CONFIG")]
        config: PathBuf,
        /// Only this repository (`owner/name`)
        #[arg(long)]
        repo: Option<String>,
        /// At most this many deploys, newest first
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and read its secrets, then exit (0 when usable).
    CheckConfig {
        /// The bot configuration file
        #[arg(long, short = 'c', env = "KFOPS_BOT_CONFIG")]
        config: PathBuf,
    },
    /// Parse a PR comment the way the bot does and print the command as JSON
    /// (`{"command": null}` when the comment holds none). Exit 3 when the command is invalid.
    ParseCommand {
        /// The comment body; read from standard input when omitted
        comment: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), BotError> {
    match cli.command {
        Commands::Serve { config } => {
            let config = BotConfig::load(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|source| BotError::Io { what: "starting the runtime".into(), source })?;
            runtime.block_on(async {
                let scm = kfops_bot::app::github_provider(&config)?;
                let deployers = kfops_bot::app::kserve_deployers(&config)?;
                kfops_bot::app::run(config, scm, deployers, kfops_bot::app::shutdown_signal(), |_| {}).await
            })
        }
        Commands::Audit { config, repo, limit, json } => {
            let config = BotConfig::load(&config)?;
            let store = kfops_bot::Store::open(&config.database_path())?;
            let records = store.audit(repo.as_deref(), limit)?;
            let mut out = std::io::stdout().lock();
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&records).unwrap_or_default());
                return Ok(());
            }
            let _ = writeln!(
                out,
                "{:<20} {:<10} {:<24} {:<6} {:<12} {:<14} {:<10} {:<28} RUN",
                "STARTED (UTC)", "ENV", "REPO", "PR", "SHA", "BY", "OUTCOME", "REVISION"
            );
            for r in records {
                let revision = match (&r.previous_revision, &r.new_revision) {
                    (Some(p), Some(n)) if p != n => format!("{p} → {n}"),
                    (_, Some(n)) => n.clone(),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "{:<20} {:<10} {:<24} {:<6} {:<12} {:<14} {:<10} {:<28} {}",
                    kfops_kubeflow::local::display_time(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_millis(u64::try_from(r.started_at_ms).unwrap_or(0))
                    ),
                    r.environment,
                    r.repo,
                    r.pr_number,
                    r.sha.get(..12).unwrap_or(&r.sha),
                    r.requested_by,
                    r.outcome.as_deref().unwrap_or("running"),
                    revision,
                    r.run_id
                );
            }
            Ok(())
        }
        Commands::CheckConfig { config } => {
            let path = config;
            let config = BotConfig::load(&path)?;
            config.webhook_secrets()?;
            kfops_bot::app::kubeflow_config(&config)?;
            kfops_bot::app::github_provider(&config)?;
            if let Some(sandbox) = kfops_bot::app::sandbox(&config)? {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| BotError::Io { what: "starting the runtime".into(), source })?;
                runtime.block_on(sandbox.probe()).map_err(|e| BotError::Setup(format!("`workers.sandbox`: {e}")))?;
            }
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}: ok ({} repositories, {} webhook secret(s), GitHub {} as {}, Kubeflow {})",
                path.display(),
                config.repositories.len(),
                config.github.webhook_secrets.len(),
                config.github.api_url,
                config.bot_login(),
                config.kubeflow.url
            );
            Ok(())
        }
        Commands::ParseCommand { comment } => {
            let body = match comment {
                Some(c) => c,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s).map_err(BotError::Stdin)?;
                    s
                }
            };
            let command = kfops_core::parse_comment(&body)?;
            let doc = serde_json::json!({ "command": command });
            let _ = writeln!(std::io::stdout().lock(), "{doc}");
            Ok(())
        }
    }
}
