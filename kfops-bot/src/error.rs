//! `kfops-bot`'s errors and exit codes.

/// Exit code: success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: an input was read but is not valid (e.g. a malformed command).
pub(crate) const EXIT_INVALID: u8 = 3;
/// Exit code: an internal or IO error.
pub(crate) const EXIT_INTERNAL: u8 = 1;

/// Everything that makes a `kfops-bot` subcommand fail.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BotError {
    /// Reading the input failed.
    #[error("reading the comment from standard input: {0}")]
    Stdin(#[source] std::io::Error),
    /// The comment holds a command that is not valid.
    #[error("{0}")]
    Command(#[from] kfops_core::CommandError),
}

impl BotError {
    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            BotError::Stdin(_) => EXIT_INTERNAL,
            BotError::Command(_) => EXIT_INVALID,
        }
    }
}
