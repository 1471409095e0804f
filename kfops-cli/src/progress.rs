//! Live progress of a pipeline run: a redrawn DAG view on a terminal, plain lines otherwise.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kfops_core::pipeline::RunState;
use kfops_core::progress::{Progress, ProgressEvent};

struct TaskLine {
    name: String,
    state: RunState,
    started: Instant,
    finished: Option<Duration>,
    detail: Option<String>,
}

struct ViewState {
    tasks: BTreeMap<String, TaskLine>,
    drawn_lines: usize,
    started: Instant,
}

/// Shows task states as a run progresses, on stderr.
pub(crate) struct RunProgress {
    live: bool,
    quiet: bool,
    state: Mutex<ViewState>,
}

impl RunProgress {
    /// A view that redraws when stderr is a terminal and prints lines otherwise; `quiet` shows nothing.
    pub(crate) fn new(quiet: bool) -> Self {
        RunProgress {
            live: std::io::stderr().is_terminal() && std::env::var_os("TERM").is_some_and(|t| t != "dumb"),
            quiet,
            state: Mutex::new(ViewState { tasks: BTreeMap::new(), drawn_lines: 0, started: Instant::now() }),
        }
    }

    /// Redraw the live view (elapsed times move on); called on a timer.
    pub(crate) fn tick(&self) {
        if self.live
            && !self.quiet
            && let Ok(mut st) = self.state.lock()
        {
            redraw(&mut st);
        }
    }

    /// Leave the live view in place (so the summary prints below it).
    pub(crate) fn finish(&self) {
        self.tick();
    }
}

fn symbol(state: RunState) -> &'static str {
    match state {
        RunState::Pending => "·",
        RunState::Running => "▶",
        RunState::Succeeded => "✓",
        RunState::Failed => "✗",
        RunState::Skipped => "−",
        RunState::Canceled | RunState::Canceling => "■",
        RunState::Paused | RunState::Unknown => "?",
    }
}

fn elapsed(line: &TaskLine) -> String {
    let d = line.finished.unwrap_or_else(|| line.started.elapsed());
    format!("{:.1}s", d.as_secs_f64())
}

/// A terminal dimension from the environment, or `default`.
fn env_size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).filter(|n: &usize| *n > 0).unwrap_or(default)
}

fn redraw(st: &mut ViewState) {
    let mut err = std::io::stderr().lock();
    let mut out = String::new();
    if st.drawn_lines > 0 {
        out.push_str(&format!("\x1b[{}A", st.drawn_lines));
    }
    // Lines never wrap (a wrapped line would break the cursor arithmetic) and the
    // view never outgrows the screen: `COLUMNS`/`LINES` when the shell exports them, else 80×24.
    let width = env_size("COLUMNS", 80).saturating_sub(1).max(20);
    let height = env_size("LINES", 24).saturating_sub(2).max(3);
    let shown = st.tasks.len().min(height - 1);
    let hidden = st.tasks.len() - shown;
    let (mut running, mut done) = (0, 0);
    for (i, (path, line)) in st.tasks.iter().enumerate() {
        match line.state {
            RunState::Running => running += 1,
            s if s.is_terminal() => done += 1,
            _ => {}
        }
        if i >= shown {
            continue;
        }
        let depth = path.matches('/').count();
        let timing = if matches!(line.state, RunState::Skipped) { String::new() } else { elapsed(line) };
        let detail =
            line.detail.as_deref().map(|d| format!("  {}", d.lines().next().unwrap_or_default())).unwrap_or_default();
        let text = format!(
            "{}{} {:<40} {:>9} {}{}",
            "  ".repeat(depth),
            symbol(line.state),
            line.name,
            line.state.as_str(),
            timing,
            detail
        );
        out.push_str(&format!("\x1b[2K{}\n", text.chars().take(width).collect::<String>()));
    }
    let more = if hidden > 0 { format!(" ({hidden} more tasks not shown)") } else { String::new() };
    let summary = format!("{running} running, {done} done, {:.1}s elapsed{more}", st.started.elapsed().as_secs_f64());
    out.push_str(&format!("\x1b[2K{}\n", summary.chars().take(width).collect::<String>()));
    st.drawn_lines = shown + 1;
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
}

impl Progress for RunProgress {
    fn event(&self, event: ProgressEvent) {
        if self.quiet {
            return;
        }
        let Ok(mut st) = self.state.lock() else { return };
        match event {
            ProgressEvent::Task { path, name, state, detail } => {
                let now = Instant::now();
                let entry = st.tasks.entry(path.clone()).or_insert_with(|| TaskLine {
                    name: name.clone(),
                    state,
                    started: now,
                    finished: None,
                    detail: None,
                });
                if state == RunState::Running && entry.state != RunState::Running {
                    entry.started = now;
                }
                entry.state = state;
                entry.detail = detail.clone();
                if state.is_terminal() {
                    entry.finished = Some(now.duration_since(entry.started));
                }
                if self.live {
                    redraw(&mut st);
                } else if state != RunState::Pending {
                    let timing = match (&entry.finished, state) {
                        (Some(d), s) if s != RunState::Skipped => format!(" ({:.2}s)", d.as_secs_f64()),
                        _ => String::new(),
                    };
                    let why = detail.map(|d| format!(": {}", d.lines().next().unwrap_or_default())).unwrap_or_default();
                    let _ = writeln!(std::io::stderr().lock(), "{:<10} {path}{timing}{why}", state.as_str());
                }
            }
            ProgressEvent::Warning(w) => {
                let _ = writeln!(std::io::stderr().lock(), "warning: {w}");
                st.drawn_lines = 0;
            }
            ProgressEvent::Stage(s) | ProgressEvent::Message(s) => {
                let _ = writeln!(std::io::stderr().lock(), "{s}");
                st.drawn_lines = 0;
            }
            ProgressEvent::Log { source, line } => {
                let _ = writeln!(std::io::stderr().lock(), "[{source}] {line}");
                st.drawn_lines = 0;
            }
        }
    }
}

/// Shows image-build progress on stderr: messages always (unless quiet), build log lines with `-v`.
pub(crate) struct BuildProgress {
    quiet: bool,
    verbose: bool,
}

impl BuildProgress {
    /// A view; `quiet` shows nothing, `verbose` also shows the tools' log lines.
    pub(crate) fn new(quiet: bool, verbose: bool) -> Self {
        BuildProgress { quiet, verbose }
    }
}

impl Progress for BuildProgress {
    fn event(&self, event: ProgressEvent) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = match event {
            ProgressEvent::Log { source, line } if self.verbose => writeln!(err, "[{source}] {line}"),
            ProgressEvent::Log { .. } | ProgressEvent::Task { .. } => Ok(()),
            ProgressEvent::Stage(m) | ProgressEvent::Message(m) => writeln!(err, "{m}"),
            ProgressEvent::Warning(w) => writeln!(err, "warning: {w}"),
        };
    }
}
