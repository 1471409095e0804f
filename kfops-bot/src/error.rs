//! `kfops-bot`'s errors and exit codes.

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an input was read but is not valid (e.g. a malformed command).
pub const EXIT_INVALID: u8 = 3;
/// Exit code: the bot configuration is missing or invalid.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: an internal or IO error.
pub const EXIT_INTERNAL: u8 = 1;

/// Everything that makes a `kfops-bot` subcommand fail.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// Reading the input failed.
    #[error("reading the comment from standard input: {0}")]
    Stdin(#[source] std::io::Error),
    /// The comment holds a command that is not valid.
    #[error("{0}")]
    Command(#[from] kfops_core::CommandError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bot configuration is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Building a client from the configuration failed.
    #[error("{0}")]
    Setup(String),
    /// Listening or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl BotError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            BotError::Stdin(_) | BotError::Store(_) | BotError::Io { .. } | BotError::Setup(_) => EXIT_INTERNAL,
            BotError::Command(_) => EXIT_INVALID,
            BotError::Config(_) => EXIT_CONFIG,
        }
    }
}

/// Why the state store (inbox and command ledger) failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or creating the database file failed.
    #[error("opening the state store {path}: {source}; check that the state directory exists and is writable")]
    Open {
        /// The database file.
        path: std::path::PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("state store: {what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored event could not be read back.
    #[error("state store: command {id} holds an unreadable event: {source}")]
    Corrupt {
        /// The command's ledger id.
        id: i64,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The command id is not in the ledger.
    #[error("state store: no command {0} in the ledger")]
    UnknownCommand(i64),
}

/// Why the bot configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading the bot configuration {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse or breaks a rule.
    #[error("{at}: invalid bot configuration:\n  {message}")]
    Invalid {
        /// `file:line:column` (or the file).
        at: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A secret cannot be read.
    #[error("`{key}`: {message}")]
    Secret {
        /// The configuration key of the secret.
        key: String,
        /// What went wrong (never the secret).
        message: String,
    },
}
