//! The status comment: one per command, edited in place as it progresses.
//!
//! [`render`] is a pure function from a [`StatusReport`] to Markdown:
//!
//! * a hidden marker (`<!-- kfops:command=<ledger id> -->`) ties the comment
//!   to its ledger entry ([`ledger_id_of`] reads it back);
//! * the stages (queued → compiling → building images → uploading → running
//!   → finished) with the current one highlighted;
//! * the run link, the parameter table and, at the end, state, duration and
//!   metrics;
//! * errors and warnings in collapsible blocks, logs fenced with a fence
//!   longer than any backtick run inside them.
//!
//! Everything that comes from the PR (parameters, metric names, logs, the
//! commenter's login) is escaped so it cannot inject Markdown, HTML or
//! @-mentions into the bot's comment. The result never exceeds the limit it
//! is given: log blocks keep their **tail** (where the error usually is) and
//! say how much was cut.

use std::fmt::Write as _;
use std::time::Duration;

use kfops_core::Command;

/// Marker prefix in the comment body.
const MARKER: &str = "<!-- kfops:command=";

/// The steps a command goes through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReportStage {
    /// Accepted, waiting for a worker.
    Queued,
    /// Compiling the pipeline from the pinned commit.
    Compiling,
    /// Building component images.
    BuildingImages,
    /// Uploading the pipeline version.
    Uploading,
    /// The run is executing.
    Running,
    /// Checking the PR and the run before a deploy.
    Checking,
    /// Rolling the model out (canary, inference check, promotion).
    Deploying,
    /// Done (see [`StatusReport::outcome`]).
    Finished,
}

impl ReportStage {
    const ALL: [ReportStage; 8] = [
        ReportStage::Queued,
        ReportStage::Compiling,
        ReportStage::BuildingImages,
        ReportStage::Uploading,
        ReportStage::Running,
        ReportStage::Checking,
        ReportStage::Deploying,
        ReportStage::Finished,
    ];

    fn label(self) -> &'static str {
        match self {
            ReportStage::Queued => "queued",
            ReportStage::Compiling => "compiling",
            ReportStage::BuildingImages => "building images",
            ReportStage::Uploading => "uploading",
            ReportStage::Running => "running",
            ReportStage::Checking => "checking",
            ReportStage::Deploying => "deploying",
            ReportStage::Finished => "finished",
        }
    }

    /// Whether `command` goes through this stage (`/run` builds too when
    /// needed: publishing is idempotent per commit, so it always goes through
    /// the build stages, quickly when the version exists).
    fn applies_to(self, command: &Command) -> bool {
        match self {
            ReportStage::Compiling | ReportStage::BuildingImages | ReportStage::Uploading => {
                matches!(command, Command::Build | Command::Run | Command::BuildRun)
            }
            ReportStage::Running => matches!(command, Command::Run | Command::BuildRun),
            ReportStage::Checking | ReportStage::Deploying => {
                matches!(command, Command::Deploy { .. } | Command::StagingDeploy { .. })
            }
            ReportStage::Queued | ReportStage::Finished => true,
        }
    }
}

/// How a finished command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether it succeeded.
    pub succeeded: bool,
    /// The state in words (`succeeded`, `failed`, `canceled`, …).
    pub state: String,
    /// Wall time from acceptance to the end.
    pub duration: Duration,
}

/// An error or warning shown in a collapsible block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Whether this is an error (else a warning).
    pub error: bool,
    /// One-line summary, shown when collapsed.
    pub summary: String,
    /// The detail (a traceback, a build-log tail, a failed task's message).
    pub detail: String,
}

/// Everything the status comment shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The ledger id (goes into the hidden marker).
    pub ledger_id: i64,
    /// The command.
    pub command: Command,
    /// Who asked.
    pub author: String,
    /// The pinned commit, once pinned.
    pub sha: Option<String>,
    /// Where the command is.
    pub stage: ReportStage,
    /// Link to the run in the Kubeflow UI.
    pub run_url: Option<String>,
    /// Run parameters, in order.
    pub parameters: Vec<(String, String)>,
    /// Set once finished.
    pub outcome: Option<Outcome>,
    /// Metrics the run produced.
    pub metrics: Vec<(String, String)>,
    /// Errors and warnings.
    pub problems: Vec<Problem>,
    /// Facts of the result as `what | value` rows (a deploy: service, model, revisions, checks).
    pub facts: Vec<(String, String)>,
    /// A one-line live progress note while the command runs (e.g. tasks done); hidden once finished.
    pub progress: Option<String>,
}

impl StatusReport {
    /// The report of command `ledger_id` as it enters the queue: nothing run, nothing found yet.
    pub fn queued(ledger_id: i64, command: Command, author: String) -> Self {
        StatusReport {
            ledger_id,
            command,
            author,
            sha: None,
            stage: ReportStage::Queued,
            run_url: None,
            parameters: Vec::new(),
            outcome: None,
            metrics: Vec::new(),
            problems: Vec::new(),
            progress: None,
            facts: Vec::new(),
        }
    }
}

/// The hidden marker tying a comment to ledger entry `id` (`<!-- kfops:command=<id> -->`).
pub fn marker(id: i64) -> String {
    format!("{MARKER}{id} -->")
}

/// The ledger id in a comment written by [`render`], if any.
pub fn ledger_id_of(body: &str) -> Option<i64> {
    let rest = &body[body.find(MARKER)? + MARKER.len()..];
    rest[..rest.find(" -->")?].parse().ok()
}

/// Escape text for inline use: no Markdown, no HTML, no mentions, one line.
pub fn inline(text: &str) -> String {
    escape(text, true)
}

/// Escape text for a single line of raw HTML (where Markdown escapes would show).
fn html_text(text: &str) -> String {
    escape(text, false)
}

/// One line with HTML specials, backticks and `@` as entities; with
/// `markdown`, table pipes and Markdown punctuation neutralised too.
fn escape(text: &str, markdown: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '`' => out.push_str("&#96;"),
            '@' => out.push_str("&#64;"),
            '|' if markdown => out.push_str("&#124;"),
            '\\' | '*' | '_' | '[' | ']' | '#' | '~' if markdown => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {}
            '\n' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// An `http(s)` URL made safe as a Markdown link target (characters that could
/// end the link or start markup are percent-encoded); `None` for other schemes.
fn link_target(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        match b {
            b'<' | b'>' | b'"' | b'`' | b'(' | b')' | b'\\' | b' ' | b'[' | b']' => {
                let _ = write!(out, "%{b:02X}");
            }
            b if b.is_ascii_graphic() => out.push(char::from(b)),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    Some(out)
}

/// A fenced block whose fence is longer than any backtick run in `text`.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{}\n{fence}", text.trim_end_matches('\n'))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1} s", d.as_secs_f64()),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn render_with(report: &StatusReport, details: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", marker(report.ledger_id));
    let icon = match &report.outcome {
        Some(o) if o.succeeded => "✅",
        Some(_) => "❌",
        None => "⏳",
    };
    let _ = write!(out, "{icon} **`{}`** requested by {}", report.command, inline(&report.author));
    if let Some(sha) = &report.sha {
        let _ = write!(out, " at `{}`", inline(&sha.chars().take(12).collect::<String>()));
    }
    out.push_str("\n\n");
    let stages: Vec<String> = ReportStage::ALL
        .iter()
        .filter(|s| s.applies_to(&report.command))
        .map(|s| match s.cmp(&report.stage) {
            std::cmp::Ordering::Less => format!("~~{}~~", s.label()),
            std::cmp::Ordering::Equal if report.outcome.as_ref().is_some_and(|o| !o.succeeded) => {
                format!("**{}** ❌", s.label())
            }
            std::cmp::Ordering::Equal => format!("**{}**", s.label()),
            std::cmp::Ordering::Greater => s.label().to_owned(),
        })
        .collect();
    let _ = writeln!(out, "{}\n", stages.join(" → "));
    if let Some(progress) = report.progress.as_deref().filter(|_| report.outcome.is_none()) {
        let _ = writeln!(out, "_{}_\n", inline(progress));
    }
    if let Some(url) = report.run_url.as_deref().and_then(link_target) {
        let _ = writeln!(out, "Run: [open in Kubeflow]({url})\n");
    }
    if !report.parameters.is_empty() {
        out.push_str("| parameter | value |\n|---|---|\n");
        for (k, v) in &report.parameters {
            let _ = writeln!(out, "| <code>{}</code> | <code>{}</code> |", inline(k), inline(v));
        }
        out.push('\n');
    }
    if let Some(o) = &report.outcome {
        let _ = writeln!(out, "**{}** after {}\n", inline(&o.state), human(o.duration));
    }
    if !report.facts.is_empty() {
        out.push_str("| | |\n|---|---|\n");
        for (k, v) in &report.facts {
            let _ = writeln!(out, "| {} | {} |", inline(k), inline(v));
        }
        out.push('\n');
    }
    if !report.metrics.is_empty() {
        out.push_str("| metric | value |\n|---|---|\n");
        for (k, v) in &report.metrics {
            let _ = writeln!(out, "| <code>{}</code> | <code>{}</code> |", inline(k), inline(v));
        }
        out.push('\n');
    }
    for (p, detail) in report.problems.iter().zip(details) {
        let kind = if p.error { "Error" } else { "Warning" };
        let _ = writeln!(
            out,
            "<details><summary>{kind}: {}</summary>\n\n{}\n\n</details>\n",
            html_text(&p.summary),
            fenced(detail)
        );
    }
    out
}

/// Keep the last `keep` characters of `text`, cut at a line start when possible.
fn tail(text: &str, keep: usize) -> String {
    let total = text.chars().count();
    if total <= keep {
        return text.to_owned();
    }
    let skip = total - keep;
    let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
    let rest = &text[start..];
    let rest = rest.find('\n').map_or(rest, |nl| &rest[nl + 1..]);
    let cut_lines = text[..text.len() - rest.len()].lines().count();
    format!("… {cut_lines} line(s) cut …\n{rest}")
}

/// The comment body for `report`, at most `max_chars` characters (GitHub: 65 536).
pub fn render(report: &StatusReport, max_chars: usize) -> String {
    let mut details: Vec<String> = report.problems.iter().map(|p| p.detail.clone()).collect();
    loop {
        let body = render_with(report, &details);
        let len = body.chars().count();
        if len <= max_chars {
            return body;
        }
        // Shrink the longest detail by what is over (plus room for the cut notice).
        let over = len - max_chars + 40;
        let Some((i, longest)) = details.iter().enumerate().max_by_key(|(_, d)| d.chars().count()) else {
            return body.chars().take(max_chars).collect();
        };
        let n = longest.chars().count();
        if n <= 60 {
            // Nothing left to shrink: cut the body itself, keeping the marker.
            return body.chars().take(max_chars).collect();
        }
        details[i] = tail(longest, n.saturating_sub(over).max(20));
    }
}
