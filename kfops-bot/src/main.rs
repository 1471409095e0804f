//! `kfops-bot`: the kfops ChatOps service.
//!
//! The webhook server (`serve`) lands with the bot issue. Today the binary
//! exposes the command grammar the server will use, so policies and comment
//! templates can be checked from a shell: `kfops-bot parse-command "/deploy --force"`.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
