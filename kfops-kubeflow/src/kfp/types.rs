//! The v2beta1 API's JSON messages, as the server writes them.
//!
//! The server marshals with proto field names (snake_case), omits default and
//! zero fields, writes enums as strings and `int64` as strings. So every field
//! is optional here, unknown fields are ignored (newer servers add fields), and
//! `int64` values stay strings.
//!
//! Timestamps are RFC 3339 strings. The server writes the Unix epoch for
//! timestamps that are not set (an unfinished run's `finished_at`); those are
//! read as `None`.

use std::collections::BTreeMap;

use kfops_core::pipeline::RunState;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Reads an optional timestamp, treating the Unix epoch as unset.
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|t| !is_epoch(t)))
}

/// Reads an optional string, treating `""` as unset.
fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|t| !t.is_empty()))
}

/// Whether an RFC 3339 timestamp is the Unix epoch (KFP's "not set").
pub fn is_epoch(timestamp: &str) -> bool {
    let Some(rest) = timestamp.trim().strip_prefix("1970-01-01T00:00:00") else {
        return false;
    };
    let rest = match rest.strip_prefix('.') {
        Some(fraction) => fraction.trim_start_matches('0'),
        None => rest,
    };
    matches!(rest, "" | "Z" | "z" | "+00:00" | "-00:00")
}

/// Maps a KFP `RuntimeState` string to [`RunState`].
///
/// `RUNTIME_STATE_UNSPECIFIED`, a missing state and names this version does not
/// know become [`RunState::Unknown`] (never terminal).
pub fn run_state(state: Option<&str>) -> RunState {
    match state.map(str::to_ascii_uppercase).as_deref() {
        Some("PENDING") => RunState::Pending,
        Some("RUNNING") => RunState::Running,
        Some("SUCCEEDED") => RunState::Succeeded,
        Some("SKIPPED") => RunState::Skipped,
        Some("FAILED") => RunState::Failed,
        Some("CANCELING") => RunState::Canceling,
        Some("CANCELED") => RunState::Canceled,
        Some("PAUSED") => RunState::Paused,
        _ => RunState::Unknown,
    }
}

/// `GET /apis/v2beta1/healthz`: what the server is and how it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Healthz {
    /// Git commit of the server build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_sha: Option<String>,
    /// Release tag of the server build, e.g. `2.17.0`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "non_empty")]
    pub tag_name: Option<String>,
    /// Whether the server runs in multi-user mode (namespaces required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_user: Option<bool>,
    /// `database` or `kubernetes` (pipelines stored as CRDs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_store: Option<String>,
}

/// A server release, parsed from `healthz.tag_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// `true` for a final release, `false` for a pre-release (`2.14.0-rc.1`),
    /// which therefore orders before the release.
    pub release: bool,
}

impl ServerVersion {
    /// A final release `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        ServerVersion { major, minor, patch, release: true }
    }

    /// Parses `2.17.0`, `v2.14.3`, `2.5.0-rc.1`, `2.4` (patch 0); anything
    /// else (`master`, `dev`, empty) is `None`.
    pub fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim();
        let tag = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let (core, pre) = match tag.find(['-', '+']) {
            Some(i) => (&tag[..i], tag[i..].starts_with('-')),
            None => (tag, false),
        };
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(ServerVersion { major, minor, patch, release: !pre })
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.release {
            f.write_str("-pre")?;
        }
        Ok(())
    }
}

/// `google.rpc.Status`: an error, in error bodies and in objects that failed to load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The gRPC code (3 = invalid argument, 5 = not found, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The developer-facing message (often the whole internal error chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `google.protobuf.Any` details; KFP puts a user-facing `google.rpc.Status` here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Value>,
}

impl Status {
    /// The most useful message: the first non-empty user-facing detail
    /// (`message` or KFP 1.x `error_message`), else `message`.
    pub fn user_message(&self) -> Option<String> {
        let detail = self.details.iter().find_map(|d| {
            ["message", "error_message"]
                .iter()
                .find_map(|k| d.get(*k).and_then(Value::as_str).map(str::trim).filter(|m| !m.is_empty()))
        });
        detail.or(self.message.as_deref().map(str::trim).filter(|m| !m.is_empty())).map(str::to_owned)
    }
}

/// A pipeline (the container of versions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pipeline {
    /// Server-generated id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<String>,
    /// Unique name (per namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Name shown in the UI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub created_at: Option<String>,
    /// Namespace (multi-user; empty = shared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Set instead of the other fields when the server could not load it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Status>,
    /// User tags (server 2.17+).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// `Url`: where a pipeline version's package was downloaded from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageUrl {
    /// The URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_url: Option<String>,
}

/// A version of a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineVersion {
    /// The pipeline's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<String>,
    /// Server-generated id of the version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_version_id: Option<String>,
    /// Unique name (per pipeline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Name shown in the UI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description (kfops records the source commit here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub created_at: Option<String>,
    /// Package URL, for versions created from a URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_url: Option<PackageUrl>,
    /// Link to the source code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_source_url: Option<String>,
    /// The pipeline spec (protobuf `Struct`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_spec: Option<Value>,
    /// Set instead of the other fields when the server could not load it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Status>,
    /// User tags (server 2.17+).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// `GET /pipelines` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListPipelinesResponse {
    /// This page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<Pipeline>,
    /// Number of matches over all pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_size: Option<i32>,
    /// Token of the next page; `None` on the last page.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

/// `GET /pipelines/{id}/versions` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListPipelineVersionsResponse {
    /// This page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pipeline_versions: Vec<PipelineVersion>,
    /// Number of matches over all pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_size: Option<i32>,
    /// Token of the next page; `None` on the last page.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

/// An experiment (a folder of runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Experiment {
    /// Server-generated id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
    /// Name, unique per namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub created_at: Option<String>,
    /// Namespace (multi-user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `AVAILABLE` or `ARCHIVED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_state: Option<String>,
    /// Creation time of the newest run.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub last_run_created_at: Option<String>,
}

/// `GET /experiments` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListExperimentsResponse {
    /// This page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<Experiment>,
    /// Number of matches over all pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_size: Option<i32>,
    /// Token of the next page; `None` on the last page.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

/// Which published pipeline version a run executes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineVersionReference {
    /// The pipeline's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<String>,
    /// The version's id (absent = the latest version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_version_id: Option<String>,
}

/// A run's arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// Argument values by input name, as typed JSON.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// Root of the run's output artifacts, if not the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_root: Option<String>,
}

/// One state transition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeStatus {
    /// When it happened.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub update_time: Option<String>,
    /// The new state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The error that caused it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Status>,
}

/// A run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Run {
    /// The experiment it is filed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
    /// Server-generated id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Name shown in the UI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `AVAILABLE` or `ARCHIVED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_state: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Deprecated pipeline source: a version id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_version_id: Option<String>,
    /// Inline pipeline source: the spec (or `{pipeline_spec, platform_spec}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_spec: Option<Value>,
    /// Pipeline source: a published version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_version_reference: Option<PipelineVersionReference>,
    /// The run's arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<RuntimeConfig>,
    /// Kubernetes service account of the run's pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub created_at: Option<String>,
    /// Scheduled time.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub scheduled_at: Option<String>,
    /// Finish time (`None` while running).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub finished_at: Option<String>,
    /// `RuntimeState` name: `PENDING`, `RUNNING`, `SUCCEEDED`, …; see [`Run::run_state`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why the run failed (or could not be loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Status>,
    /// Per-task details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_details: Option<RunDetails>,
    /// The recurring run that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurring_run_id: Option<String>,
    /// State transitions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_history: Vec<RuntimeStatus>,
    /// Plugin inputs (server 2.17+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins_input: Option<Map<String, Value>>,
    /// Plugin outputs (server 2.17+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins_output: Option<Map<String, Value>>,
}

impl Run {
    /// The run's state as [`RunState`].
    pub fn run_state(&self) -> RunState {
        run_state(self.state.as_deref())
    }

    /// The tasks reported so far (empty until the run starts).
    pub fn tasks(&self) -> &[PipelineTaskDetail] {
        self.run_details.as_ref().map(|d| d.task_details.as_slice()).unwrap_or_default()
    }

    /// The run's error message, if it has one (the run's own error, else the
    /// error of the last state transition that has one).
    pub fn error_message(&self) -> Option<String> {
        self.error
            .as_ref()
            .and_then(Status::user_message)
            .or_else(|| self.state_history.iter().rev().find_map(|s| s.error.as_ref().and_then(Status::user_message)))
    }
}

/// Per-task details of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunDetails {
    /// MLMD context id of the pipeline (int64 as string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_context_id: Option<String>,
    /// MLMD context id of the run (int64 as string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_run_context_id: Option<String>,
    /// The tasks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub task_details: Vec<PipelineTaskDetail>,
}

/// Which pods ran a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutorDetail {
    /// The main container's job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_job: Option<String>,
    /// The cache-check job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_caching_check_job: Option<String>,
    /// Failed attempts of the main job.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_main_jobs: Vec<String>,
    /// Failed attempts of the cache-check job.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_pre_caching_check_jobs: Vec<String>,
}

/// MLMD artifact ids of one task input or output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArtifactList {
    /// Artifact ids (int64 as strings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifact_ids: Vec<String>,
}

/// A child of a task (a sub-DAG's task or a pod).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildTask {
    /// The child task's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The child pod's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// One task of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineTaskDetail {
    /// The run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The task's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The task's name in the DAG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub create_time: Option<String>,
    /// Start time (`None` until started).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub start_time: Option<String>,
    /// End time (`None` until finished).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub end_time: Option<String>,
    /// The pods that ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_detail: Option<ExecutorDetail>,
    /// `RuntimeState` name; see [`PipelineTaskDetail::run_state`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// MLMD execution id (int64 as string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Status>,
    /// Input artifacts by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, ArtifactList>,
    /// Output artifacts by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, ArtifactList>,
    /// The enclosing DAG task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<String>,
    /// State transitions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_history: Vec<RuntimeStatus>,
    /// The pod, for container tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Children (sub-DAG tasks, pods).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub child_tasks: Vec<ChildTask>,
}

impl PipelineTaskDetail {
    /// The task's state as [`RunState`].
    pub fn run_state(&self) -> RunState {
        run_state(self.state.as_deref())
    }

    /// The name to show: the display name, else the task id.
    pub fn name(&self) -> &str {
        self.display_name.as_deref().or(self.task_id.as_deref()).unwrap_or("")
    }

    /// The task's error message, if any.
    pub fn error_message(&self) -> Option<String> {
        self.error.as_ref().and_then(Status::user_message)
    }
}

/// `GET /runs` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListRunsResponse {
    /// This page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
    /// Number of matches over all pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_size: Option<i32>,
    /// Token of the next page; `None` on the last page.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

/// A list filter: predicates that must all hold (the `filter` query parameter, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// The predicates, AND-ed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub predicates: Vec<Predicate>,
}

impl Filter {
    /// An empty filter (matches everything).
    pub fn new() -> Self {
        Filter::default()
    }

    /// Adds `key == value` (a string).
    pub fn equals(mut self, key: &str, value: &str) -> Self {
        self.predicates.push(Predicate::string(PredicateOperation::Equals, key, value));
        self
    }

    /// Adds `key` contains `value`.
    pub fn substring(mut self, key: &str, value: &str) -> Self {
        self.predicates.push(Predicate::string(PredicateOperation::IsSubstring, key, value));
        self
    }

    /// Adds `key` is one of `values`.
    pub fn one_of(mut self, key: &str, values: &[&str]) -> Self {
        self.predicates.push(Predicate {
            operation: Some(PredicateOperation::In),
            key: Some(key.to_owned()),
            string_values: Some(StringValues { values: values.iter().map(|v| (*v).to_owned()).collect() }),
            ..Predicate::default()
        });
        self
    }

    /// Adds a predicate.
    pub fn predicate(mut self, predicate: Predicate) -> Self {
        self.predicates.push(predicate);
        self
    }
}

/// One condition of a [`Filter`]. Exactly one value field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Predicate {
    /// The comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<PredicateOperation>,
    /// The field compared (`display_name`, `name`, `state`, `created_at`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// An int32 value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int_value: Option<i32>,
    /// An int64 value (as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_value: Option<String>,
    /// A string value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// An RFC 3339 timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_value: Option<String>,
    /// int32 values, for `IN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int_values: Option<IntValues>,
    /// int64 values (strings), for `IN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_values: Option<StringValues>,
    /// String values, for `IN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_values: Option<StringValues>,
}

impl Predicate {
    /// `key <operation> value` on a string.
    pub fn string(operation: PredicateOperation, key: &str, value: &str) -> Self {
        Predicate {
            operation: Some(operation),
            key: Some(key.to_owned()),
            string_value: Some(value.to_owned()),
            ..Predicate::default()
        }
    }

    /// `key <operation> timestamp` (RFC 3339).
    pub fn timestamp(operation: PredicateOperation, key: &str, rfc3339: &str) -> Self {
        Predicate {
            operation: Some(operation),
            key: Some(key.to_owned()),
            timestamp_value: Some(rfc3339.to_owned()),
            ..Predicate::default()
        }
    }
}

/// A list of int32 values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntValues {
    /// The values.
    pub values: Vec<i32>,
}

/// A list of strings (or of int64 values written as strings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StringValues {
    /// The values.
    pub values: Vec<String>,
}

/// The comparison of a [`Predicate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PredicateOperation {
    /// `==` on a scalar.
    Equals,
    /// `!=` on a scalar.
    NotEquals,
    /// `>`.
    GreaterThan,
    /// `>=`.
    GreaterThanEquals,
    /// `<`.
    LessThan,
    /// `<=`.
    LessThanEquals,
    /// Membership in a list value.
    In,
    /// Substring match on a string.
    IsSubstring,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_timestamps_read_as_unset() {
        for t in ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00+00:00"] {
            assert!(is_epoch(t), "{t}");
        }
        assert!(!is_epoch("1970-01-01T00:00:01Z"));
        assert!(!is_epoch("2026-11-28T14:00:00Z"));
        let run: Run = serde_json::from_str(
            r#"{"run_id":"r","created_at":"2026-11-28T14:00:00Z","finished_at":"1970-01-01T00:00:00Z","state":"RUNNING"}"#,
        )
        .expect("run");
        assert_eq!(run.created_at.as_deref(), Some("2026-11-28T14:00:00Z"));
        assert_eq!(run.finished_at, None);
        assert_eq!(run.run_state(), RunState::Running);
    }

    #[test]
    fn server_versions_parse_and_order() {
        assert_eq!(ServerVersion::parse("2.17.0"), Some(ServerVersion::new(2, 17, 0)));
        assert_eq!(ServerVersion::parse("v2.14.3"), Some(ServerVersion::new(2, 14, 3)));
        assert_eq!(ServerVersion::parse("2.4"), Some(ServerVersion::new(2, 4, 0)));
        let rc = ServerVersion::parse("2.14.0-rc.1").expect("rc");
        assert!(rc < ServerVersion::new(2, 14, 0));
        assert!(rc > ServerVersion::new(2, 13, 9));
        for bad in ["", "master", "2", "2.x.0", "1.2.3.4"] {
            assert_eq!(ServerVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn states_map_to_core_states() {
        assert_eq!(run_state(Some("CANCELING")), RunState::Canceling);
        assert_eq!(run_state(Some("CANCELED")), RunState::Canceled);
        assert_eq!(run_state(Some("RUNTIME_STATE_UNSPECIFIED")), RunState::Unknown);
        assert_eq!(run_state(None), RunState::Unknown);
        assert!(!run_state(Some("PAUSED")).is_terminal());
    }

    #[test]
    fn status_prefers_the_user_facing_detail() {
        let s: Status = serde_json::from_str(
            r#"{"code":5,"message":"internal chain: not found","details":[{"@type":"type.googleapis.com/google.rpc.Status","code":5,"message":"Run r not found"}]}"#,
        )
        .expect("status");
        assert_eq!(s.user_message().as_deref(), Some("Run r not found"));
    }
}
