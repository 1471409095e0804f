//! Pipelines, versions and runs: the vocabulary of [`crate::PipelineBackend`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A run argument or output value, typed as JSON (string, number, bool, list, object).
pub type ParamValue = serde_json::Value;

/// A compiled pipeline, ready to be published or run.
///
/// `spec` is the IR document (KFP `PipelineSpec`, plus an optional platform
/// spec as a second YAML document) exactly as it will be uploaded; the
/// backend does not re-interpret it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPipeline {
    /// `pipelineInfo.name` of the IR, or the configured pipeline name.
    pub name: String,
    /// Human description, shown in the Kubeflow UI.
    pub description: Option<String>,
    /// The IR as YAML text (possibly multi-document).
    pub spec_yaml: String,
}

/// The name under which a pipeline version is published.
///
/// Backends treat publishing as idempotent per version name: publishing the
/// same name twice returns the existing version. Names derived from a git
/// commit therefore map one commit to one version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionName(pub String);

impl VersionName {
    /// The version name for a compiled pipeline built from `source`.
    ///
    /// The same commit (with the same configuration) always maps to the same
    /// name, so publishing it again reuses the version: `<commit[..12]>-<hash>`
    /// where the hash is of the compiled pipeline — so `--set` overrides or
    /// another pipeline function on the same commit never reuse the wrong
    /// version. Uncommitted changes give `<commit[..12]>-dirty-<hash>`, no
    /// commit gives `ir-<hash>`.
    pub fn for_build(source: &SourceInfo, dirty: bool, compiled_ir: &str) -> VersionName {
        let hash = format!("{:016x}", fnv1a64(compiled_ir.as_bytes()));
        match source.commit.as_deref().map(|c| c.get(..12).unwrap_or(c)) {
            Some(commit) if !dirty => VersionName(format!("{commit}-{}", &hash[..8])),
            Some(commit) => VersionName(format!("{commit}-dirty-{}", &hash[..12])),
            None => VersionName(format!("ir-{}", &hash[..12])),
        }
    }
}

/// FNV-1a, 64 bit: a small, stable content hash (the same on every platform and release).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

impl fmt::Display for VersionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a version's source came from, carried into its description.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `owner/name` of the repository, if known.
    pub repository: Option<String>,
    /// Branch name, if built from a branch.
    pub branch: Option<String>,
    /// Pull request number, if built for a PR.
    pub pull_request: Option<u64>,
    /// The exact commit.
    pub commit: Option<String>,
}

/// A published pipeline version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineVersion {
    /// Backend id of the pipeline.
    pub pipeline_id: String,
    /// Backend id of the version.
    pub version_id: String,
    /// The version name it was published under.
    pub name: VersionName,
    /// Link to the version in the backend's UI, if it has one.
    pub web_url: Option<String>,
    /// `true` when this call created it, `false` when an existing version was reused.
    pub created: bool,
}

/// Identifier of a run in a backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(pub String);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What pipeline a run executes.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineSource {
    /// A version published earlier.
    Version {
        /// Backend id of the pipeline.
        pipeline_id: String,
        /// Backend id of the version.
        version_id: String,
    },
    /// The compiled pipeline itself, without publishing it.
    Inline(CompiledPipeline),
}

/// A request to start a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// Display name of the run.
    pub display_name: String,
    /// What to run.
    pub pipeline: PipelineSource,
    /// The experiment to file the run under (created if missing).
    pub experiment: String,
    /// Typed run arguments, already checked against the pipeline's inputs.
    pub parameters: BTreeMap<String, ParamValue>,
    /// Kubernetes service account for the run's pods, if not the default.
    pub service_account: Option<String>,
}

/// A started run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHandle {
    /// The run's id.
    pub id: RunId,
    /// Link to the run in the backend's UI, if it has one.
    pub web_url: Option<String>,
}

/// State of a run or of one of its tasks.
///
/// The names follow KFP's v2beta1 `RuntimeState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Accepted, not started.
    Pending,
    /// Executing.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Not executed (e.g. a branch whose condition was false, or a cache hit).
    Skipped,
    /// Finished with an error.
    Failed,
    /// Cancellation requested, still stopping.
    Canceling,
    /// Stopped by cancellation.
    Canceled,
    /// Paused by the backend.
    Paused,
    /// The backend reported a state we do not know.
    Unknown,
}

impl RunState {
    /// Whether the state is final: nothing about the run will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Skipped | RunState::Failed | RunState::Canceled)
    }

    /// Whether the run counts as successful (only [`RunState::Succeeded`]).
    pub fn is_success(self) -> bool {
        self == RunState::Succeeded
    }

    /// The KFP spelling, e.g. `SUCCEEDED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "PENDING",
            RunState::Running => "RUNNING",
            RunState::Succeeded => "SUCCEEDED",
            RunState::Skipped => "SKIPPED",
            RunState::Failed => "FAILED",
            RunState::Canceling => "CANCELING",
            RunState::Canceled => "CANCELED",
            RunState::Paused => "PAUSED",
            RunState::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress of one task of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Task name (display name in the DAG; loop iterations carry their index).
    pub name: String,
    /// The task's state.
    pub state: RunState,
    /// Start time, RFC 3339, if started.
    pub started_at: Option<String>,
    /// End time, RFC 3339, if finished.
    pub finished_at: Option<String>,
    /// Output parameters, where the backend exposes them.
    pub outputs: BTreeMap<String, ParamValue>,
    /// Error message for failed tasks.
    pub error: Option<String>,
}

/// Everything known about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id.
    pub id: RunId,
    /// Display name.
    pub display_name: String,
    /// Current state.
    pub state: RunState,
    /// Creation time, RFC 3339.
    pub created_at: Option<String>,
    /// Finish time, RFC 3339 (`None` while running: KFP's epoch placeholder is read as unset).
    pub finished_at: Option<String>,
    /// The arguments the run was started with.
    pub parameters: BTreeMap<String, ParamValue>,
    /// Per-task progress, where the backend reports it.
    pub tasks: Vec<TaskInfo>,
    /// Root pipeline outputs, where the backend exposes them.
    pub outputs: BTreeMap<String, ParamValue>,
    /// Error message for failed runs.
    pub error: Option<String>,
    /// Link to the run in the backend's UI.
    pub web_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_follow_the_commit() {
        let clean = SourceInfo { commit: Some("0123456789abcdef0123".into()), ..SourceInfo::default() };
        let a = VersionName::for_build(&clean, false, "a");
        assert!(a.0.starts_with("0123456789ab-") && a.0.len() == 21, "{a}");
        assert_eq!(a, VersionName::for_build(&clean, false, "a"), "same commit and pipeline, same version");
        assert_ne!(a, VersionName::for_build(&clean, false, "b"), "another pipeline on the same commit");
        let dirty_a = VersionName::for_build(&clean, true, "a");
        assert!(dirty_a.0.starts_with("0123456789ab-dirty-"));
        assert_eq!(dirty_a, VersionName::for_build(&clean, true, "a"), "same edits, same version");
        assert_ne!(dirty_a, VersionName::for_build(&clean, true, "b"));
        let none = VersionName::for_build(&SourceInfo::default(), false, "a");
        assert!(none.0.starts_with("ir-") && none.0.len() == 15, "{none}");
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
