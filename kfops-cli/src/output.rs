//! Printing: results to stdout, messages to stderr, in text or JSON.

use std::io::Write;

use kfops_config::{Diagnostic, Severity};
use serde_json::{Value, json};

use crate::cli::Format;

/// Where and how a command prints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    /// Result format.
    pub(crate) format: Format,
    /// `-q`: only errors.
    pub(crate) quiet: bool,
    /// `-v`: extra detail.
    pub(crate) verbose: bool,
}

impl Printer {
    /// Write a line of the result to stdout (a closed pipe is not an error).
    pub(crate) fn out(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    /// Write raw text to stdout, without adding a newline.
    pub(crate) fn out_raw(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// Print a JSON document on stdout.
    pub(crate) fn json(&self, value: &Value) {
        self.out(&serde_json::to_string_pretty(value).unwrap_or_default());
    }

    /// A progress or status note on stderr (suppressed by `-q` and in JSON mode).
    pub(crate) fn note(&self, text: &str) {
        if !self.quiet && self.format == Format::Text {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// Extra detail on stderr (only with `-v`).
    pub(crate) fn detail(&self, text: &str) {
        if self.verbose {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// Warnings on stderr (suppressed by `-q`; in JSON mode they are part of the document).
    pub(crate) fn warnings(&self, diagnostics: &[Diagnostic]) {
        if self.quiet || self.format == Format::Json {
            return;
        }
        let mut err = std::io::stderr().lock();
        for d in diagnostics {
            let _ = writeln!(err, "{d}\n");
        }
    }
}

/// A configuration diagnostic as JSON.
pub(crate) fn diagnostic_json(d: &Diagnostic) -> Value {
    json!({
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "path": d.path,
        "message": d.message,
        "help": d.help,
        "location": d.origin.to_string(),
    })
}
