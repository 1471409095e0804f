//! The embedded local runner: runs compiled KFP pipelines on this machine.
//!
//! With no Kubeflow endpoint configured, `kfc` runs pipelines here. Compared
//! with `kfp.local` (kfp 2.17.3) it runs compiled IR directly (no Python
//! pipeline object needed), runs independent tasks and loop iterations
//! concurrently (bounded by `max_parallel` and `iteratorPolicy.parallelismLimit`),
//! evaluates conditions with a real CEL evaluator ([`cel`]), passes values
//! typed exactly as the KFP backend does (whole numbers stay integers at any
//! depth), runs container components' commands on the host, reuses one
//! virtualenv per package set for lightweight Python components, resolves
//! every placeholder (Concat, IfPresent, job and time placeholders, optional
//! inputs without defaults), gives exit handlers the real final status, and
//! persists every run under `.kfops/runs/<run-id>/` ([`store`]).
//!
//! What needs a cluster is refused with a clear message instead of being
//! imitated: images without a command (entrypoints live in the image),
//! containerized Python components, Kubernetes secrets/config maps/volumes
//! from the platform spec, remote artifact URIs, resolver executors.

pub mod cel;
mod engine;
mod executor;
mod python;
pub mod store;
pub(crate) mod util;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use kfops_core::pipeline::{
    CompiledPipeline, PipelineSource, PipelineVersion, RunHandle, RunId, RunInfo, RunRequest, RunState, SourceInfo,
    TaskInfo, VersionName,
};
use kfops_core::progress::{NoProgress, Progress};
use kfops_core::{Error as CoreError, ErrorKind, PipelineBackend};
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, watch};

use self::engine::{Engine, Outcome, ROOT};
use self::executor::{Io, JobFacts};
use self::python::VenvCache;
use self::store::{RunRecord, RunStore};
use self::util::{now_rfc3339, uuid4};
use crate::error::RunnerError;
use crate::ir::{ParameterType, PipelineJob};

/// Runs pipelines on this machine and keeps their records in a project's `.kfops/`.
#[derive(Clone)]
pub struct LocalRunner {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    store: RunStore,
    max_parallel: usize,
    venvs: VenvCache,
    env: Vec<(String, String)>,
    active: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl std::fmt::Debug for LocalRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRunner")
            .field("root", &self.inner.root)
            .field("max_parallel", &self.inner.max_parallel)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`LocalRunner`].
#[derive(Debug, Clone)]
pub struct LocalRunnerOptions {
    /// At most this many executors run at once (default: the number of CPUs).
    pub max_parallel: usize,
    /// Interpreter the lightweight-component virtualenvs are created from (default `$KFOPS_PYTHON`, else `python3`).
    pub python: PathBuf,
    /// Where virtualenvs are cached (default `~/.cache/kfops/venvs`, or `$KFOPS_CACHE_DIR/venvs`).
    pub venv_dir: PathBuf,
}

impl Default for LocalRunnerOptions {
    fn default() -> Self {
        LocalRunnerOptions {
            max_parallel: std::thread::available_parallelism().map_or(2, usize::from),
            python: VenvCache::default_python(),
            venv_dir: VenvCache::default_dir(),
        }
    }
}

/// A finished local run: its record (state, outputs, tasks) and where it lives.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The run record as persisted in `run.json`.
    pub record: RunRecord,
    /// The run folder.
    pub dir: PathBuf,
}

impl LocalRunner {
    /// A runner for the project at `root` (runs go to `root/.kfops/runs`).
    pub fn new(root: impl Into<PathBuf>, options: LocalRunnerOptions) -> Self {
        let root = root.into();
        let env = std::env::vars().filter(|(k, _)| !k.starts_with("KFOPS_")).collect();
        LocalRunner {
            inner: Arc::new(Inner {
                store: RunStore::new(&root),
                root,
                max_parallel: options.max_parallel.max(1),
                venvs: VenvCache::new(options.venv_dir, options.python),
                env,
                active: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The run store.
    pub fn store(&self) -> &RunStore {
        &self.inner.store
    }

    /// Run `job` with `arguments` to the end, reporting task states to `progress`.
    ///
    /// Arguments are checked against the pipeline's inputs first (all problems
    /// reported at once); defaults fill the rest. Setting `cancel` to `true`
    /// kills the running tasks and ends the run as CANCELED. A task failure is
    /// not an `Err`: the returned record says FAILED and which task failed.
    pub async fn run(
        &self,
        job: &PipelineJob,
        arguments: &BTreeMap<String, Value>,
        progress: Arc<dyn Progress>,
        cancel: watch::Receiver<bool>,
    ) -> Result<LocalRun, RunnerError> {
        let prepared = self.prepare(job, arguments)?;
        self.execute(prepared, progress, cancel).await
    }

    /// Check the arguments and create the run record (state PENDING).
    fn prepare(&self, job: &PipelineJob, arguments: &BTreeMap<String, Value>) -> Result<Prepared, RunnerError> {
        let params = job.spec.check_arguments(arguments).map_err(|problems| RunnerError::Arguments { problems })?;
        if job.spec.root.dag.is_none() {
            return Err(RunnerError::Invalid("the pipeline's root has no DAG".into()));
        }
        let id = uuid4();
        let name = job.spec.pipeline_info.name.clone();
        let created_at = now_rfc3339();
        let record = RunRecord {
            id: id.clone(),
            display_name: format!("{name} {}", created_at.get(..19).unwrap_or(&created_at).replace('T', " ")),
            pipeline_name: name,
            state: RunState::Pending,
            created_at,
            finished_at: None,
            duration_ms: None,
            parameters: params,
            outputs: BTreeMap::new(),
            error: None,
            pid: std::process::id(),
            pid_start: store::process_start(std::process::id()),
            tasks: Vec::new(),
        };
        let dir = self.inner.store.run_dir(&id);
        self.inner.store.save(&record)?;
        std::fs::write(dir.join("pipeline.yaml"), job.to_yaml_string())
            .map_err(|e| store::store_err("writing", &dir.join("pipeline.yaml"), e))?;
        Ok(Prepared { job: job.clone(), record, dir })
    }

    async fn execute(
        &self,
        prepared: Prepared,
        progress: Arc<dyn Progress>,
        cancel: watch::Receiver<bool>,
    ) -> Result<LocalRun, RunnerError> {
        let Prepared { job, mut record, dir } = prepared;
        let started = Instant::now();
        record.state = RunState::Running;
        self.inner.store.save(&record)?;
        let workspace = dir.join("workspace");
        std::fs::create_dir_all(&workspace).map_err(|e| store::store_err("creating", &workspace, e))?;
        let facts = JobFacts {
            job_name: record.display_name.clone(),
            resource_name: format!("{}-{}", record.pipeline_name, &record.id[..8]),
            job_uuid: record.id.clone(),
            create_time: record.created_at.clone(),
            pipeline_root: dir.join("tasks"),
            workspace,
        };
        let inputs =
            Io { params: record.parameters.clone().into_iter().collect::<Map<String, Value>>(), ..Io::default() };
        let engine = Arc::new(Engine {
            platform: job.platform.as_ref().and_then(|p| serde_json::to_value(p).ok()),
            spec: job.spec.clone(),
            store: self.inner.store.clone(),
            record: std::sync::Mutex::new(record.clone()),
            run_dir: dir.clone(),
            facts,
            project_root: self.inner.root.clone(),
            env: self.inner.env.clone(),
            venvs: self.inner.venvs.clone(),
            slots: Arc::new(Semaphore::new(self.inner.max_parallel)),
            cancel,
            progress,
        });
        let outcome = engine.clone().run_dag(ROOT.to_owned(), inputs, String::new()).await;
        let mut record = engine.record.lock().map(|r| r.clone()).unwrap_or(record);
        record.finished_at = Some(now_rfc3339());
        record.duration_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        match outcome {
            Outcome::Succeeded(io) => {
                record.state = RunState::Succeeded;
                let declared = job.spec.root.output_definitions.clone().unwrap_or_default();
                record.outputs = io
                    .params
                    .into_iter()
                    .map(|(k, v)| {
                        let ty = declared.parameters.get(&k).and_then(|d| d.parameter_type.clone());
                        let v = ty.unwrap_or(ParameterType::Unspecified).cast(&v).unwrap_or(v);
                        (k, v)
                    })
                    .collect();
            }
            Outcome::Canceled => {
                record.state = RunState::Canceled;
                record.error = Some("the run was cancelled".into());
            }
            Outcome::Failed(m) | Outcome::NotRun(m) => {
                record.state = RunState::Failed;
                record.error = Some(m);
            }
            Outcome::Skipped => record.state = RunState::Skipped,
        }
        self.inner.store.save(&record)?;
        Ok(LocalRun { record, dir })
    }

    /// Where published versions of `pipeline` are kept.
    fn version_path(&self, pipeline: &str, version: &VersionName) -> PathBuf {
        let safe = |s: &str| {
            s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect::<String>()
        };
        self.inner.store.pipelines_dir().join(safe(pipeline)).join(format!("{}.yaml", safe(&version.0)))
    }
}

struct Prepared {
    job: PipelineJob,
    record: RunRecord,
    dir: PathBuf,
}

/// A run record in the shape every backend reports runs.
pub fn run_info(record: &RunRecord) -> RunInfo {
    RunInfo {
        id: RunId(record.id.clone()),
        display_name: record.display_name.clone(),
        state: record.effective_state(),
        created_at: Some(record.created_at.clone()),
        finished_at: record.finished_at.clone(),
        parameters: record.parameters.clone(),
        tasks: record
            .tasks
            .iter()
            .map(|t| TaskInfo {
                name: t.path.clone(),
                state: t.state,
                started_at: t.started_at.clone(),
                finished_at: t.finished_at.clone(),
                outputs: t.outputs.clone(),
                error: t.error.clone(),
            })
            .collect(),
        outputs: record.outputs.clone(),
        error: record.error.clone(),
        web_url: None,
    }
}

fn core_err(e: RunnerError) -> CoreError {
    let kind = match &e {
        RunnerError::NotFound { .. } => ErrorKind::NotFound,
        RunnerError::Arguments { .. } | RunnerError::Invalid(_) | RunnerError::Ambiguous { .. } => {
            ErrorKind::InvalidInput
        }
        RunnerError::VersionConflict { .. } => ErrorKind::Conflict,
        _ => ErrorKind::Other,
    };
    CoreError::new(kind, e.to_string()).with_source(e)
}

#[async_trait]
impl PipelineBackend for LocalRunner {
    fn name(&self) -> &str {
        "local"
    }

    async fn publish(
        &self,
        pipeline: &CompiledPipeline,
        version: &VersionName,
        _source: &SourceInfo,
    ) -> Result<PipelineVersion, CoreError> {
        let path = self.version_path(&pipeline.name, version);
        let created = match std::fs::read_to_string(&path) {
            Ok(existing) if existing == pipeline.spec_yaml => false,
            Ok(_) => {
                return Err(core_err(RunnerError::VersionConflict {
                    pipeline: pipeline.name.clone(),
                    version: version.0.clone(),
                }));
            }
            Err(_) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| core_err(store::store_err("creating", parent, e)))?;
                }
                std::fs::write(&path, &pipeline.spec_yaml)
                    .map_err(|e| core_err(store::store_err("writing", &path, e)))?;
                true
            }
        };
        Ok(PipelineVersion {
            pipeline_id: pipeline.name.clone(),
            version_id: version.0.clone(),
            name: version.clone(),
            web_url: None,
            created,
        })
    }

    async fn start_run(&self, request: RunRequest) -> Result<RunHandle, CoreError> {
        let yaml = match &request.pipeline {
            PipelineSource::Inline(p) => p.spec_yaml.clone(),
            PipelineSource::Version { pipeline_id, version_id } => {
                let path = self.version_path(pipeline_id, &VersionName(version_id.clone()));
                std::fs::read_to_string(&path).map_err(|_| {
                    CoreError::new(
                        ErrorKind::NotFound,
                        format!("no local version `{version_id}` of pipeline `{pipeline_id}`"),
                    )
                })?
            }
        };
        let job =
            PipelineJob::from_yaml_str(&yaml).map_err(|e| CoreError::new(ErrorKind::InvalidInput, e.to_string()))?;
        let prepared = self.prepare(&job, &request.parameters).map_err(core_err)?;
        let id = prepared.record.id.clone();
        let (tx, rx) = watch::channel(false);
        if let Ok(mut active) = self.inner.active.lock() {
            active.insert(id.clone(), tx);
        }
        let runner = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            let _ = runner.execute(prepared, Arc::new(NoProgress), rx).await;
            if let Ok(mut active) = runner.inner.active.lock() {
                active.remove(&run_id);
            }
        });
        Ok(RunHandle { id: RunId(id), web_url: None })
    }

    async fn run(&self, id: &RunId) -> Result<RunInfo, CoreError> {
        self.inner.store.load(&id.0).map(|r| run_info(&r)).map_err(core_err)
    }

    async fn terminate(&self, id: &RunId) -> Result<(), CoreError> {
        let record = self.inner.store.load(&id.0).map_err(core_err)?;
        if record.effective_state().is_terminal() {
            return Ok(());
        }
        if let Some(tx) = self.inner.active.lock().ok().and_then(|a| a.get(&record.id).cloned()) {
            let _ = tx.send(true);
            return Ok(());
        }
        if record.pid <= 1 || !record.runner_alive() {
            return Err(CoreError::new(ErrorKind::NotFound, format!("the process that ran {} is gone", record.id)));
        }
        terminate_process(record.pid)
    }
}

/// Ask the process that runs a run (another `kfc`) to cancel it, like Ctrl-C would.
fn terminate_process(pid: u32) -> Result<(), CoreError> {
    #[cfg(unix)]
    {
        let pid = i32::try_from(pid).map_err(|_| CoreError::new(ErrorKind::InvalidInput, "bad pid"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT)
            .map_err(|e| CoreError::new(ErrorKind::Other, format!("cannot signal the runner process {pid}: {e}")))
    }
    #[cfg(not(unix))]
    {
        Err(CoreError::new(ErrorKind::Unsupported, format!("cannot signal process {pid} on this platform")))
    }
}

/// The current time as `YYYY-MM-DD HH:MM:SS` (UTC), for run display names.
pub fn now_display() -> String {
    display_time(std::time::SystemTime::now())
}

/// `time` as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn display_time(time: std::time::SystemTime) -> String {
    let text = util::rfc3339(time);
    text.get(..19).unwrap_or(&text).replace('T', " ")
}

/// Make sure `path` is inside `root` when relative (used for `--root`).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
