//! The error type shared by every trait in this crate.
//!
//! Adapters (KFP client, GitHub provider, KServe target, image builders) map
//! their own errors into [`Error`] at the trait boundary, keeping the original
//! error as the [`std::error::Error::source`], so callers can match on the
//! [`ErrorKind`] without knowing which adapter produced it.

use std::fmt;

/// A boxed error from an adapter, kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used by the traits and operations in `kfops-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of which adapter reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request was malformed or rejected as invalid by the other side.
    InvalidInput,
    /// Credentials are missing, expired or were refused.
    Unauthenticated,
    /// The caller is authenticated but not allowed to do this.
    PermissionDenied,
    /// The addressed object does not exist.
    NotFound,
    /// The object changed or already exists (e.g. a merge whose head moved).
    Conflict,
    /// The other side is unreachable or temporarily failing; retrying may help.
    Unavailable,
    /// A deadline passed before the operation finished.
    Timeout,
    /// The operation was cancelled by the user or by shutdown.
    Canceled,
    /// The operation is not supported by this adapter or server version.
    Unsupported,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// A short lowercase name, stable for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned by the traits of `kfops-core`.
///
/// It carries a [`ErrorKind`], a human message that says what failed (and,
/// where the adapter knows it, how to fix it), and optionally the adapter's
/// own error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Attach the underlying adapter error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human message (without the source chain).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

/// Why a PR comment could not be read as a ChatOps command.
///
/// Every variant renders a message meant to be posted back to the author: it
/// names the offending token and says what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// `/something` that is not one of the known commands.
    #[error("unknown command `/{name}`{hint}; known commands: {known}", hint = suggestion_hint(suggestion.as_deref(), "/"))]
    UnknownCommand {
        /// The command name as written (without the slash, sanitised for display).
        name: String,
        /// The closest known command, if one is close.
        suggestion: Option<String>,
        /// The known commands, comma separated.
        known: String,
    },
    /// A flag that the command does not accept.
    #[error("`/{command}` does not accept `{flag}`{hint}; {accepted}", hint = suggestion_hint(suggestion.as_deref(), ""))]
    UnknownFlag {
        /// The command being parsed.
        command: String,
        /// The flag as written (sanitised for display).
        flag: String,
        /// The closest accepted flag, if one is close.
        suggestion: Option<String>,
        /// What the command accepts, as a sentence fragment.
        accepted: String,
    },
    /// A flag that needs a value was given none.
    #[error("`{flag}` needs a value, e.g. `/{command} {flag} <ID>` or `/{command} {flag}=<ID>`")]
    MissingValue {
        /// The command being parsed.
        command: String,
        /// The flag.
        flag: String,
    },
    /// A switch (a flag without a value) was given one.
    #[error("`{flag}` takes no value; write just `{flag}`")]
    UnexpectedValue {
        /// The flag.
        flag: String,
    },
    /// A flag value that is not well formed.
    #[error("invalid value `{value}` for `{flag}`: {reason}")]
    InvalidValue {
        /// The flag.
        flag: String,
        /// The value as written (sanitised for display).
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The same flag twice.
    #[error("`{flag}` is given more than once")]
    DuplicateFlag {
        /// The flag.
        flag: String,
    },
    /// A bare word where only flags are allowed.
    #[error("unexpected argument `{arg}`: {accepted}")]
    UnexpectedArgument {
        /// The command being parsed.
        command: String,
        /// The argument as written (sanitised for display).
        arg: String,
        /// What the command accepts, as a sentence fragment.
        accepted: String,
    },
    /// The command line is longer than any legitimate command.
    #[error("the command line is {len} characters long; commands are at most {max} characters")]
    LineTooLong {
        /// Length of the line in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
}

fn suggestion_hint(suggestion: Option<&str>, prefix: &str) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{prefix}{s}`?)"),
        None => String::new(),
    }
}
