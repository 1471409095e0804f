//! Errors and diagnostics of `kfops-config`.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value (or problem) came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A position in a YAML file (1-based line and column).
    File {
        /// The file, as the user named it or as it was discovered.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The text of that line, for a snippet.
        source_line: Option<String>,
        /// What kind of file this is in the layering ("config file", "--config-override").
        role: FileRole,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A `--set` flag.
    Set {
        /// The flag as given, e.g. `--set pipeline.name=x`.
        flag: String,
    },
    /// Another command-line flag, e.g. `--kubeflow-url`.
    Flag {
        /// The flag's name.
        flag: String,
    },
    /// A built-in default.
    Default,
}

/// The role of a YAML file in the layering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The repository's configuration file.
    Config,
    /// A file given with `--config-override`.
    Override,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column, role: FileRole::Config, .. } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::File { path, line, column, role: FileRole::Override, .. } => {
                write!(f, "{}:{line}:{column} (--config-override)", path.display())
            }
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Set { flag } => write!(f, "`{flag}`"),
            Origin::Flag { flag } => write!(f, "flag {flag}"),
            Origin::Default => f.write_str("built-in default"),
        }
    }
}

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// Usable, but probably not what the user meant.
    Warning,
}

/// One problem found in the configuration, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Dotted key path, e.g. `pipeline.pipeline_args.lr` (empty for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
    /// Where it came from.
    pub origin: Origin,
}

impl fmt::Display for Diagnostic {
    /// Renders in the style of compiler diagnostics:
    ///
    /// ```text
    /// error: unknown key `pipelin` (did you mean `pipeline`?)
    ///   --> kfops.yaml:3:1
    ///    |
    ///  3 | pipelin:
    ///    | ^
    ///    = help: valid keys here: repository, pipeline, …
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", self.message)?;
        write!(f, "  --> {}", self.origin)?;
        if let Origin::File { line, column, source_line: Some(text), .. } = &self.origin {
            let num = line.to_string();
            let pad = " ".repeat(num.len());
            let caret_pad: String =
                text.chars().take(column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            write!(f, "\n {pad} |\n {num} | {text}\n {pad} | {caret_pad}^")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n   = help: {help}")?;
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No configuration file was found.
    #[error("no kfops configuration in `{}`: looked for {tried}; create `kfops.yaml` there (see `kfc config schema` for every key) or point at one with --config", dir.display())]
    NotFound {
        /// The project root that was searched.
        dir: PathBuf,
        /// The file names that were tried.
        tried: String,
    },
    /// A file could not be read.
    #[error("cannot read {what} `{}`: {source}", path.display())]
    Io {
        /// "configuration file" or "override file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration has problems; all of them are listed.
    #[error("{}", render_invalid(diagnostics))]
    Invalid {
        /// Every problem found, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render_invalid(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push_str("\n\n");
    }
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    out.push_str(&format!("invalid configuration: {errors} {}", if errors == 1 { "problem" } else { "problems" }));
    out
}
