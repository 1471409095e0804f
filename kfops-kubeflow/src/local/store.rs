//! The run store: every local run persisted under `<root>/.kfops/runs/<run-id>/`.
//!
//! ```text
//! .kfops/runs/<run-id>/
//!   run.json              the run record: state, timings, arguments, outputs, every task
//!   pipeline.yaml         the IR that ran
//!   tasks/<task path>/    per task: executor_input.json, executor_output.json, log.txt,
//!                         outputs/<parameter>, artifacts/<artifact> (for loops:
//!                         tasks/<loop>/iteration-<i>/<task>/…)
//!   workspace/            {{$.workspace_path}}
//! ```
//!
//! `run.json` is replaced atomically (write + rename) on every state change, so
//! it can be read at any time by `kfc runs`, and a run survives the process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kfops_core::pipeline::RunState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::RunnerError;

/// An artifact as the runner records it (URI = absolute local path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Artifact name (the output key).
    pub name: String,
    /// `schemaTitle`, e.g. `system.Model`.
    pub schema_title: String,
    /// `schemaVersion`.
    pub schema_version: String,
    /// Location on disk.
    pub uri: String,
    /// Metadata written by the component.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

/// One task execution (a loop iteration's task is its own record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Path of the task in the DAG, e.g. `for-loop-2/iteration-1/square`.
    pub path: String,
    /// The task's display name (`taskInfo.name`).
    pub name: String,
    /// Its state.
    pub state: RunState,
    /// `dag`, `container`, `python`, `importer`, `loop`.
    pub kind: String,
    /// Start, RFC 3339.
    pub started_at: Option<String>,
    /// End, RFC 3339.
    pub finished_at: Option<String>,
    /// Wall time in milliseconds.
    pub duration_ms: Option<u64>,
    /// Attempts made (retries + 1).
    pub attempts: u32,
    /// Output parameters, typed as declared.
    #[serde(default)]
    pub outputs: BTreeMap<String, Value>,
    /// Output artifacts.
    #[serde(default)]
    pub artifacts: BTreeMap<String, Vec<ArtifactRecord>>,
    /// Why it failed or was not run.
    pub error: Option<String>,
    /// Log file, relative to the run folder.
    pub log: Option<String>,
}

/// A run record (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (a UUID).
    pub id: String,
    /// Display name, e.g. `hello-pipeline 2026-11-28 15:04:05`.
    pub display_name: String,
    /// `pipelineInfo.name`.
    pub pipeline_name: String,
    /// Run state.
    pub state: RunState,
    /// Creation, RFC 3339.
    pub created_at: String,
    /// End, RFC 3339.
    pub finished_at: Option<String>,
    /// Wall time in milliseconds, once finished.
    pub duration_ms: Option<u64>,
    /// The effective, typed run arguments.
    pub parameters: BTreeMap<String, Value>,
    /// Root pipeline outputs.
    #[serde(default)]
    pub outputs: BTreeMap<String, Value>,
    /// Why the run failed.
    pub error: Option<String>,
    /// The process that runs it (to detect runs whose runner died).
    pub pid: u32,
    /// That process's start time (`/proc/<pid>/stat` field 22), so a reused pid is not mistaken for it.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// Every task, in the order they started.
    #[serde(default)]
    pub tasks: Vec<TaskRecord>,
}

impl RunRecord {
    /// The state, with runs whose runner process is gone reported as FAILED.
    pub fn effective_state(&self) -> RunState {
        if !self.state.is_terminal() && self.pid != std::process::id() && !self.runner_alive() {
            RunState::Failed
        } else {
            self.state
        }
    }

    /// Whether the process that runs this run still exists (the same process,
    /// not another one that got its pid). Without `/proc`, assumed alive.
    pub fn runner_alive(&self) -> bool {
        if !Path::new("/proc").is_dir() {
            return true;
        }
        match (process_start(self.pid), self.pid_start) {
            (Some(now), Some(recorded)) => now == recorded,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The start time of a process (clock ticks since boot), from `/proc/<pid>/stat`.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are separated by spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The run store of one project.
#[derive(Debug, Clone)]
pub struct RunStore {
    root: PathBuf,
}

impl RunStore {
    /// The store under `<project>/.kfops`.
    pub fn new(project_root: &Path) -> Self {
        RunStore { root: project_root.join(".kfops") }
    }

    /// The folder holding all runs.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The folder of one run.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runs_dir().join(id)
    }

    /// The folder of published pipeline versions.
    pub fn pipelines_dir(&self) -> PathBuf {
        self.root.join("pipelines")
    }

    /// Write `record` to its `run.json` atomically.
    pub fn save(&self, record: &RunRecord) -> Result<(), RunnerError> {
        let dir = self.run_dir(&record.id);
        std::fs::create_dir_all(&dir).map_err(|source| store_err("creating", &dir, source))?;
        // Run records are not source: keep them out of git (and out of "dirty" checks).
        let ignore = self.root.join(".gitignore");
        if !ignore.exists() {
            let _ = std::fs::write(&ignore, "# kfops run records and caches\n*\n");
        }
        let path = dir.join("run.json");
        let tmp = dir.join("run.json.tmp");
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| RunnerError::Corrupt { path: path.clone(), message: e.to_string() })?;
        std::fs::write(&tmp, text).map_err(|source| store_err("writing", &tmp, source))?;
        std::fs::rename(&tmp, &path).map_err(|source| store_err("replacing", &path, source))
    }

    /// Read one run by id or unique id prefix.
    pub fn load(&self, id: &str) -> Result<RunRecord, RunnerError> {
        let exact = self.run_dir(id).join("run.json");
        if !id.is_empty() && exact.is_file() {
            return read_record(&exact);
        }
        let matches: Vec<RunRecord> =
            self.list()?.into_iter().filter(|r| !id.is_empty() && r.id.starts_with(id)).collect();
        match matches.len() {
            0 => Err(RunnerError::NotFound { id: id.to_owned(), root: self.runs_dir() }),
            1 => Ok(matches.into_iter().next().expect("one match")),
            count => Err(RunnerError::Ambiguous { id: id.to_owned(), count }),
        }
    }

    /// Every run, newest first. Damaged records are skipped.
    pub fn list(&self) -> Result<Vec<RunRecord>, RunnerError> {
        let dir = self.runs_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(store_err("listing", &dir, source)),
        };
        let mut runs: Vec<RunRecord> =
            entries.flatten().filter_map(|e| read_record(&e.path().join("run.json")).ok()).collect();
        runs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(runs)
    }
}

fn read_record(path: &Path) -> Result<RunRecord, RunnerError> {
    let text = std::fs::read(path).map_err(|source| store_err("reading", path, source))?;
    serde_json::from_slice(&text).map_err(|e| RunnerError::Corrupt { path: path.to_owned(), message: e.to_string() })
}

pub(crate) fn store_err(action: &'static str, path: &Path, source: std::io::Error) -> RunnerError {
    RunnerError::Store { action, path: path.to_owned(), source }
}
