//! The DAG engine: schedules tasks as their dependencies finish, runs
//! independent tasks concurrently, and implements KFP's control flow —
//! conditions (CEL), loops with parallelism limits and fan-in, exit handlers,
//! `ignore_upstream_failure`, retries — over nested DAGs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kfops_core::pipeline::RunState;
use kfops_core::progress::{Progress, ProgressEvent};
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::cel;
use super::executor::{ExecFailure, Execution, Io, JobFacts, backoff};
use super::python::VenvCache;
use super::store::{RunRecord, RunStore, TaskRecord};
use super::util::{now_rfc3339, uuid4};
use crate::ir::{
    ArtifactSource, ComponentSpec, DagSpec, ExecutorKind, ParameterSource, ParameterType, PipelineSpec,
    PipelineTaskSpec, TriggerStrategy, format_parameter_value,
};

/// How one task (or DAG) ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Ran and succeeded, with its outputs.
    Succeeded(Io),
    /// Ran (or could not start) and failed.
    Failed(String),
    /// Its condition was false.
    Skipped,
    /// Not run because an upstream task did not succeed.
    NotRun(String),
    /// Stopped by cancellation.
    Canceled,
}

impl Outcome {
    fn state(&self) -> RunState {
        match self {
            Outcome::Succeeded(_) => RunState::Succeeded,
            Outcome::Failed(_) => RunState::Failed,
            Outcome::Skipped | Outcome::NotRun(_) => RunState::Skipped,
            Outcome::Canceled => RunState::Canceled,
        }
    }

    /// Whether downstream tasks that need success may run after it (KFP: succeeded or skipped).
    fn lets_downstream_run(&self) -> bool {
        matches!(self, Outcome::Succeeded(_) | Outcome::Skipped)
    }

    fn error(&self) -> Option<String> {
        match self {
            Outcome::Failed(m) | Outcome::NotRun(m) => Some(m.clone()),
            _ => None,
        }
    }

    fn outputs(&self) -> Option<&Io> {
        match self {
            Outcome::Succeeded(io) => Some(io),
            _ => None,
        }
    }
}

/// Where a loop runs and how wide.
struct Loop<'a> {
    /// The loop task's display name.
    display: &'a str,
    /// The component each iteration runs.
    component: &'a str,
    /// The input that receives the item.
    item_input: &'a str,
    /// `iteratorPolicy.parallelismLimit`, if set.
    limit: Option<i64>,
    /// The loop task's path.
    path: &'a str,
}

/// What a loop iterates over.
#[derive(Debug, Clone)]
pub(crate) enum LoopItems {
    /// `parameterIterator`: one parameter value per iteration.
    Params(Vec<Value>),
    /// `artifactIterator`: one artifact per iteration.
    Artifacts(Vec<super::store::ArtifactRecord>),
}

impl LoopItems {
    fn len(&self) -> usize {
        match self {
            LoopItems::Params(v) => v.len(),
            LoopItems::Artifacts(v) => v.len(),
        }
    }
}

/// Shared state of one run.
pub(crate) struct Engine {
    pub(crate) spec: PipelineSpec,
    pub(crate) platform: Option<Value>,
    pub(crate) store: RunStore,
    pub(crate) record: Mutex<RunRecord>,
    pub(crate) run_dir: PathBuf,
    pub(crate) facts: JobFacts,
    pub(crate) project_root: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) venvs: VenvCache,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) cancel: watch::Receiver<bool>,
    pub(crate) progress: Arc<dyn Progress>,
}

type Done = HashMap<String, Outcome>;

/// The name `run_dag` uses for the pipeline's root component (`root`, which is not in `components`).
pub(crate) const ROOT: &str = "";

impl Engine {
    fn canceled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Record a task's state in the run record (and tell the progress view).
    fn record_task(&self, rec: TaskRecord) {
        self.progress.event(ProgressEvent::Task {
            path: rec.path.clone(),
            name: rec.name.clone(),
            state: rec.state,
            detail: rec.error.clone(),
        });
        let snapshot = {
            let Ok(mut run) = self.record.lock() else { return };
            match run.tasks.iter_mut().find(|t| t.path == rec.path) {
                Some(t) => *t = rec,
                None => run.tasks.push(rec),
            }
            run.clone()
        };
        // Persisting is best effort while running; the final record is saved with errors reported.
        let _ = self.store.save(&snapshot);
    }

    /// Run a DAG component with `inputs`; its tasks live under `prefix`.
    ///
    /// Boxed with an explicit `Send` bound: DAGs nest (pipelines in pipelines,
    /// conditions, loops), and the recursion needs a nameable future type.
    pub(crate) fn run_dag(
        self: Arc<Self>,
        component: String,
        inputs: Io,
        prefix: String,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        Box::pin(self.run_dag_inner(component, inputs, prefix))
    }

    async fn run_dag_inner(self: Arc<Self>, component: String, inputs: Io, prefix: String) -> Outcome {
        let spec = if component == ROOT { Some(&self.spec.root) } else { self.spec.component(&component) };
        let Some(dag) = spec.and_then(|c| c.dag.clone()) else {
            return Outcome::Failed(format!("component `{component}` is not a DAG"));
        };
        let mut done: Done = HashMap::new();
        let mut waiting: BTreeSet<String> = dag.tasks.keys().cloned().collect();
        // Let live views show the whole DAG from the start.
        for (name, task) in &dag.tasks {
            self.progress.event(ProgressEvent::Task {
                path: join_path(&prefix, name),
                name: display_name(name, task),
                state: RunState::Pending,
                detail: None,
            });
        }
        let mut running: JoinSet<(String, Outcome)> = JoinSet::new();
        loop {
            let mut settled_inline = false;
            let ready: Vec<String> = waiting
                .iter()
                .filter(|t| {
                    dag.tasks[*t].upstream_tasks().iter().all(|u| done.contains_key(*u) || !dag.tasks.contains_key(*u))
                })
                .cloned()
                .collect();
            for name in ready {
                waiting.remove(&name);
                let task = dag.tasks[&name].clone();
                let path = join_path(&prefix, &name);
                let display = display_name(&name, &task);
                let strategy = task.trigger_policy.as_ref().and_then(|p| p.strategy.clone());
                let completed_strategy = strategy == Some(TriggerStrategy::AllUpstreamTasksCompleted);
                let blocked: Vec<&str> = task
                    .upstream_tasks()
                    .into_iter()
                    .filter(|u| done.get(*u).is_some_and(|o| !o.lets_downstream_run()))
                    .collect();
                if self.canceled() {
                    self.record_task(simple_record(&path, &display, "task", RunState::Canceled, None));
                    done.insert(name, Outcome::Canceled);
                    settled_inline = true;
                    continue;
                }
                if !blocked.is_empty() && !completed_strategy {
                    let why = format!("not run: upstream task `{}` did not succeed", blocked.join("`, `"));
                    self.record_task(simple_record(&path, &display, "task", RunState::Skipped, Some(why.clone())));
                    done.insert(name, Outcome::NotRun(why));
                    settled_inline = true;
                    continue;
                }
                let engine = self.clone();
                let scope = inputs.clone();
                let upstream: Done = task
                    .upstream_tasks()
                    .iter()
                    .filter_map(|u| done.get(*u).map(|o| ((*u).to_owned(), o.clone())))
                    .collect();
                running.spawn(async move {
                    let outcome = engine.run_task(task, display, scope, upstream, path).await;
                    (name, outcome)
                });
            }
            if running.is_empty() && settled_inline {
                continue; // tasks settled without running may unblock others
            }
            let Some(joined) = running.join_next().await else { break };
            match joined {
                Ok((name, outcome)) => {
                    done.insert(name, outcome);
                }
                Err(e) => return Outcome::Failed(format!("internal error: a task panicked: {e}")),
            }
        }
        if !waiting.is_empty() {
            return Outcome::Failed(format!(
                "tasks {} wait on each other (a dependency cycle) or on missing tasks",
                waiting.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        if done.values().any(|o| matches!(o, Outcome::Canceled)) || self.canceled() {
            return Outcome::Canceled;
        }
        let failed: Vec<String> = done
            .iter()
            .filter_map(|(n, o)| match o {
                Outcome::Failed(m) => Some(format!("task `{n}` failed: {m}")),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            let mut failed = failed;
            failed.sort();
            return Outcome::Failed(failed.join("\n"));
        }
        match dag_outputs(&dag, &done) {
            Ok(io) => Outcome::Succeeded(io),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Resolve a task's inputs, evaluate its condition, then run it (once, or per loop item).
    async fn run_task(
        self: Arc<Self>,
        task: PipelineTaskSpec,
        display: String,
        scope: Io,
        upstream: Done,
        path: String,
    ) -> Outcome {
        let started = Instant::now();
        let mut inputs = match self.resolve_inputs(&task, &scope, &upstream) {
            Ok(io) => io,
            Err(e) => return self.finish_simple(&path, &display, started, Outcome::Failed(e)),
        };
        if let Some(condition) =
            task.trigger_policy.as_ref().and_then(|p| p.condition.as_deref()).filter(|c| !c.is_empty())
        {
            match cel::eval_condition(condition, &inputs.params) {
                Ok(true) => {}
                Ok(false) => return self.finish_simple(&path, &display, started, Outcome::Skipped),
                Err(e) => {
                    return self.finish_simple(
                        &path,
                        &display,
                        started,
                        Outcome::Failed(format!("cannot evaluate the condition `{condition}`: {e}")),
                    );
                }
            }
        }
        let Some(component) = task.component_name().map(str::to_owned) else {
            return self.finish_simple(&path, &display, started, Outcome::Failed("the task names no component".into()));
        };
        let iteration = if let Some(iter) = &task.parameter_iterator {
            let source = iter.items.as_ref().map(|i| (i.raw.as_deref(), i.input_parameter.as_deref()));
            match iteration_items(source, &inputs) {
                Ok(items) => Some((iter.item_input.clone(), LoopItems::Params(items))),
                Err(e) => return self.finish_simple(&path, &display, started, Outcome::Failed(e)),
            }
        } else if let Some(iter) = &task.artifact_iterator {
            let source = iter.items.as_ref().map(|i| i.input_artifact.as_str()).unwrap_or_default();
            Some((iter.item_input.clone(), LoopItems::Artifacts(inputs.artifacts.remove(source).unwrap_or_default())))
        } else {
            None
        };
        if let Some((item_input, items)) = iteration {
            let limit = task.iterator_policy.as_ref().and_then(|p| p.parallelism_limit).filter(|l| *l > 0);
            let lp = Loop { display: &display, component: &component, item_input: &item_input, limit, path: &path };
            return self.run_loop(&task, lp, inputs, items, started).await;
        }
        self.run_component(&task, &display, &component, inputs, &path).await
    }

    async fn run_loop(
        self: &Arc<Self>,
        task: &PipelineTaskSpec,
        lp: Loop<'_>,
        inputs: Io,
        items: LoopItems,
        started: Instant,
    ) -> Outcome {
        let Loop { display, component, item_input, limit, path } = lp;
        self.record_task(TaskRecord {
            started_at: Some(now_rfc3339()),
            ..simple_record(path, display, "loop", RunState::Running, None)
        });
        let gate =
            Arc::new(Semaphore::new(limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(Semaphore::MAX_PERMITS)));
        let mut set: JoinSet<(usize, Outcome)> = JoinSet::new();
        let count = items.len();
        for i in 0..count {
            let engine = self.clone();
            let gate = gate.clone();
            let mut io = inputs.clone();
            match &items {
                LoopItems::Params(values) => {
                    io.params.insert(item_input.to_owned(), values[i].clone());
                }
                LoopItems::Artifacts(list) => {
                    io.artifacts.insert(item_input.to_owned(), vec![list[i].clone()]);
                }
            }
            let task = task.clone();
            let component = component.to_owned();
            let display = format!("{display} #{i}");
            let iter_path = format!("{path}/iteration-{i}");
            set.spawn(async move {
                let Ok(_permit) = gate.acquire_owned().await else { return (i, Outcome::Canceled) };
                (i, engine.run_component(&task, &display, &component, io, &iter_path).await)
            });
        }
        let mut results: Vec<Option<Outcome>> = vec![None; count];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, o)) => results[i] = Some(o),
                Err(e) => {
                    return self.finish_simple(path, display, started, Outcome::Failed(format!("internal error: {e}")));
                }
            }
        }
        let results: Vec<Outcome> = results.into_iter().map(|o| o.unwrap_or(Outcome::Canceled)).collect();
        let outcome = if results.iter().any(|o| matches!(o, Outcome::Canceled)) {
            Outcome::Canceled
        } else if let Some(err) = results.iter().enumerate().find_map(|(i, o)| match o {
            Outcome::Failed(m) => Some(format!("iteration {i} failed: {m}")),
            _ => None,
        }) {
            Outcome::Failed(err)
        } else {
            // Fan-in (`dsl.Collected`): each loop output is the list of the iterations' values.
            let mut io = Io::default();
            let declared =
                self.spec.component(component).and_then(|c| c.output_definitions.clone()).unwrap_or_default();
            for name in declared.parameters.keys() {
                let values: Vec<Value> =
                    results.iter().filter_map(|o| o.outputs().and_then(|io| io.params.get(name)).cloned()).collect();
                io.params.insert(name.clone(), Value::Array(values));
            }
            for name in declared.artifacts.keys() {
                let arts = results
                    .iter()
                    .filter_map(|o| o.outputs().and_then(|io| io.artifacts.get(name)))
                    .flatten()
                    .cloned()
                    .collect();
                io.artifacts.insert(name.clone(), arts);
            }
            Outcome::Succeeded(io)
        };
        self.finish_simple(path, display, started, outcome)
    }

    /// Run a component (DAG or executor) once, with retries for executors.
    async fn run_component(
        self: &Arc<Self>,
        task: &PipelineTaskSpec,
        display: &str,
        component_name: &str,
        inputs: Io,
        path: &str,
    ) -> Outcome {
        let started = Instant::now();
        let Some(component) = self.spec.component(component_name).cloned() else {
            return self.finish_simple(
                path,
                display,
                started,
                Outcome::Failed(format!("component `{component_name}` does not exist")),
            );
        };
        let inputs = match apply_definitions(&component, inputs) {
            Ok(io) => io,
            Err(e) => return self.finish_simple(path, display, started, Outcome::Failed(e)),
        };
        if component.dag.is_some() {
            self.record_task(TaskRecord {
                started_at: Some(now_rfc3339()),
                ..simple_record(path, display, "dag", RunState::Running, None)
            });
            let outcome = self.clone().run_dag(component_name.to_owned(), inputs, path.to_owned()).await;
            return self.finish_simple(path, display, started, outcome);
        }
        let Some(label) = component.executor_label.clone() else {
            return self.finish_simple(
                path,
                display,
                started,
                Outcome::Failed(format!("component `{component_name}` has neither a DAG nor an executor")),
            );
        };
        let Some(executor) = self.spec.executor(&label).cloned() else {
            return self.finish_simple(
                path,
                display,
                started,
                Outcome::Failed(format!("executor `{label}` does not exist")),
            );
        };
        let retry = task.retry_policy.clone().unwrap_or_default();
        let max_retries = u32::try_from(retry.max_retry_count.unwrap_or(0).max(0)).unwrap_or(0);
        let factor = retry.backoff_factor.as_ref().and_then(serde_json::Number::as_f64).unwrap_or(2.0);
        let base = retry.backoff().ok().flatten();
        let cap = retry.backoff_max().ok().flatten();
        let task_dir = self.run_dir.join("tasks").join(path);
        let task_uuid = uuid4();
        let platform = self
            .platform
            .as_ref()
            .and_then(|p| p.pointer(&format!("/platforms/kubernetes/deploymentSpec/executors/{label}")));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let Ok(_slot) = self.slots.clone().acquire_owned().await else { return Outcome::Canceled };
            if self.canceled() {
                return self.finish(path, display, "task", started, attempt, Outcome::Canceled);
            }
            self.record_task(TaskRecord {
                started_at: Some(now_rfc3339()),
                attempts: attempt,
                log: Some(format!("tasks/{path}/log.txt")),
                ..simple_record(path, display, "task", RunState::Running, None)
            });
            let exec = Execution {
                component: &component,
                inputs: &inputs,
                task_dir: &task_dir,
                task_name: display,
                task_uuid: &task_uuid,
                facts: &self.facts,
                project_root: &self.project_root,
                env: &self.env,
                venvs: &self.venvs,
                cancel: self.cancel.clone(),
                platform,
            };
            let result = match executor.kind() {
                Ok(ExecutorKind::Container(c)) => exec.container(c).await,
                Ok(ExecutorKind::Importer(i)) => exec.importer(i).map(|io| (io, "importer")),
                Ok(ExecutorKind::Resolver(_)) => Err(ExecFailure::Failed(
                    "resolver executors (artifact queries against ML Metadata) need Kubeflow; the local runner has no metadata store".into(),
                )),
                Err(e) => Err(ExecFailure::Failed(format!("executor `{label}`: {e}"))),
            };
            match result {
                Ok((io, kind)) => return self.finish(path, display, kind, started, attempt, Outcome::Succeeded(io)),
                Err(ExecFailure::Canceled) => {
                    return self.finish(path, display, "task", started, attempt, Outcome::Canceled);
                }
                Err(ExecFailure::Failed(m)) if attempt > max_retries => {
                    let m = if attempt > 1 { format!("{m}\n(failed {attempt} attempts)") } else { m };
                    return self.finish(path, display, "task", started, attempt, Outcome::Failed(m));
                }
                Err(ExecFailure::Failed(m)) => {
                    self.progress.event(ProgressEvent::Warning(format!(
                        "task `{display}` failed (attempt {attempt} of {}), retrying: {}",
                        max_retries + 1,
                        m.lines().next().unwrap_or_default()
                    )));
                    drop(_slot);
                    let wait = backoff(base, factor, cap, attempt);
                    let mut cancel = self.cancel.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.wait_for(|c| *c) => {}
                    }
                }
            }
        }
    }

    fn finish_simple(&self, path: &str, display: &str, started: Instant, outcome: Outcome) -> Outcome {
        let kind =
            self.record.lock().ok().and_then(|r| r.tasks.iter().find(|t| t.path == path).map(|t| t.kind.clone()));
        self.finish(path, display, kind.as_deref().unwrap_or("task"), started, 1, outcome)
    }

    fn finish(
        &self,
        path: &str,
        display: &str,
        kind: &str,
        started: Instant,
        attempts: u32,
        outcome: Outcome,
    ) -> Outcome {
        let previous = self.record.lock().ok().and_then(|r| r.tasks.iter().find(|t| t.path == path).cloned());
        let (params, artifacts) = match &outcome {
            Outcome::Succeeded(io) => (io.params.clone().into_iter().collect(), io.artifacts.clone()),
            _ => (BTreeMap::new(), BTreeMap::new()),
        };
        let ran = !matches!(outcome, Outcome::Skipped | Outcome::NotRun(_));
        self.record_task(TaskRecord {
            path: path.to_owned(),
            name: display.to_owned(),
            state: outcome.state(),
            kind: kind.to_owned(),
            started_at: previous.as_ref().and_then(|p| p.started_at.clone()),
            finished_at: Some(now_rfc3339()),
            duration_ms: ran.then(|| u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
            attempts: if ran { attempts } else { 0 },
            outputs: params,
            artifacts,
            error: outcome.error(),
            log: previous.and_then(|p| p.log),
        });
        outcome
    }

    /// The inputs of `task`, from the enclosing DAG's inputs and the upstream tasks' outputs.
    fn resolve_inputs(&self, task: &PipelineTaskSpec, scope: &Io, upstream: &Done) -> Result<Io, String> {
        let mut io = Io::default();
        let mut constants_with_placeholders = Vec::new();
        for (name, input) in task.input_parameters() {
            let value = match input.source().map_err(|e| format!("input `{name}`: {e}"))? {
                ParameterSource::ComponentInput(src) | ParameterSource::RuntimeParameter(src) => {
                    scope.params.get(src).cloned()
                }
                ParameterSource::TaskOutput(r) => upstream
                    .get(&r.producer_task)
                    .and_then(|o| o.outputs())
                    .and_then(|io| io.params.get(&r.output_parameter_key))
                    .cloned(),
                ParameterSource::Constant(v) => {
                    if v.as_str().is_some_and(|s| s.contains("{{$")) {
                        constants_with_placeholders.push(name.clone());
                    }
                    Some(v.clone())
                }
                ParameterSource::TaskFinalStatus(producer) => Some(self.final_status(producer, upstream)),
            };
            let value = match (value, input.parameter_expression_selector.as_deref()) {
                (Some(v), Some(selector)) if !selector.is_empty() => {
                    let selected = cel::eval_selector(selector, &v)
                        .map_err(|e| format!("input `{name}`: selector `{selector}`: {e}"))?;
                    // As the backend does: a selected value feeding a STRING input becomes its text.
                    let declared = task
                        .component_name()
                        .and_then(|c| self.spec.component(c))
                        .and_then(|c| c.input_parameter(name))
                        .and_then(|d| d.parameter_type.clone());
                    Some(match (declared, selected) {
                        (Some(ParameterType::String), v) if !v.is_string() => Value::String(cel::pb_value_to_text(&v)),
                        (_, v) => v,
                    })
                }
                (v, _) => v,
            };
            if let Some(v) = value {
                io.params.insert(name.clone(), v);
            }
        }
        // f-strings compile to constants that embed other inputs of the same task.
        for name in constants_with_placeholders {
            if let Some(Value::String(text)) = io.params.get(&name).cloned() {
                let resolved = substitute_inputs(&text, &io.params);
                io.params.insert(name, Value::String(resolved));
            }
        }
        for (name, input) in task.input_artifacts() {
            let arts = match input.source().map_err(|e| format!("input artifact `{name}`: {e}"))? {
                ArtifactSource::ComponentInput(src) => scope.artifacts.get(src).cloned(),
                ArtifactSource::TaskOutput(r) => upstream
                    .get(&r.producer_task)
                    .and_then(|o| o.outputs())
                    .and_then(|io| io.artifacts.get(&r.output_artifact_key))
                    .cloned(),
            };
            if let Some(a) = arts {
                io.artifacts.insert(name.clone(), a);
            }
        }
        Ok(io)
    }

    /// `PipelineTaskFinalStatus` of an upstream task, as the backend passes it to exit handlers.
    fn final_status(&self, producer: &str, upstream: &Done) -> Value {
        let outcome = upstream.get(producer);
        let state = outcome.map_or(RunState::Unknown, Outcome::state);
        let error = match outcome.and_then(Outcome::error) {
            Some(message) => json!({"code": 2, "message": message}),
            None => json!({}),
        };
        json!({
            "state": state.as_str(),
            "pipelineJobResourceName": self.facts.resource_name,
            "pipelineTaskName": producer,
            "error": error,
        })
    }
}

/// `taskInfo.name`, else the task's key.
fn display_name(name: &str, task: &PipelineTaskSpec) -> String {
    task.task_info.as_ref().map(|i| i.name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| name.to_owned())
}

fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") }
}

fn simple_record(path: &str, name: &str, kind: &str, state: RunState, error: Option<String>) -> TaskRecord {
    TaskRecord {
        path: path.to_owned(),
        name: name.to_owned(),
        state,
        kind: kind.to_owned(),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        attempts: 0,
        outputs: BTreeMap::new(),
        artifacts: BTreeMap::new(),
        error,
        log: None,
    }
}

/// Replace `{{$.inputs.parameters['x']}}` in a constant with the task's other inputs.
fn substitute_inputs(text: &str, params: &Map<String, Value>) -> String {
    let mut out = text.to_owned();
    for (name, value) in params {
        for quote in ['\'', '"'] {
            let ph = format!("{{{{$.inputs.parameters[{quote}{name}{quote}]}}}}");
            if out.contains(&ph) {
                out = out.replace(&ph, &format_parameter_value(value));
            }
        }
    }
    out
}

/// The items a `parameterIterator` loops over.
fn iteration_items(items: Option<(Option<&str>, Option<&str>)>, inputs: &Io) -> Result<Vec<Value>, String> {
    let value = match items {
        Some((Some(raw), _)) => serde_json::from_str::<Value>(raw)
            .map_err(|e| format!("the loop items `{raw}` are not a JSON list: {e}"))?,
        Some((None, Some(param))) => match inputs.params.get(param) {
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.clone())),
            Some(v) => v.clone(),
            None => return Err(format!("the loop's items input `{param}` has no value")),
        },
        _ => return Err("the loop has no items".into()),
    };
    match value {
        Value::Array(items) => Ok(items),
        other => Err(format!("the loop items must be a list, got {other}")),
    }
}

/// Check and complete a component's inputs: cast by declared type, fill defaults.
fn apply_definitions(component: &ComponentSpec, mut io: Io) -> Result<Io, String> {
    let Some(defs) = &component.input_definitions else { return Ok(io) };
    let mut problems = Vec::new();
    for (name, def) in &defs.parameters {
        let ty = def.parameter_type.clone().unwrap_or(ParameterType::Unspecified);
        match io.params.get(name).filter(|v| !v.is_null()).cloned() {
            Some(v) => match ty.cast(&v) {
                Some(cast) => {
                    io.params.insert(name.clone(), cast);
                }
                None => problems.push(format!("input `{name}` expects {} ({}), got {v}", ty.as_str(), ty.describe())),
            },
            None => {
                io.params.remove(name);
                if let Some(default) = def.typed_default() {
                    io.params.insert(name.clone(), default);
                } else if def.required() {
                    problems.push(format!("required input `{name}` has no value"));
                }
            }
        }
    }
    if problems.is_empty() { Ok(io) } else { Err(problems.join("; ")) }
}

/// A DAG's outputs from its tasks' outcomes.
fn dag_outputs(dag: &DagSpec, done: &Done) -> Result<Io, String> {
    let mut io = Io::default();
    let Some(outputs) = &dag.outputs else { return Ok(io) };
    for (name, out) in &outputs.parameters {
        let value = out.selectors().find_map(|sel| {
            done.get(&sel.producer_subtask)
                .and_then(Outcome::outputs)
                .and_then(|o| o.params.get(&sel.output_parameter_key))
                .cloned()
        });
        if let Some(v) = value {
            io.params.insert(name.clone(), v);
        }
    }
    for (name, out) in &outputs.artifacts {
        let arts = out.artifact_selectors.iter().find_map(|sel| {
            done.get(&sel.producer_subtask)
                .and_then(Outcome::outputs)
                .and_then(|o| o.artifacts.get(&sel.output_artifact_key))
                .cloned()
        });
        if let Some(a) = arts {
            io.artifacts.insert(name.clone(), a);
        }
    }
    Ok(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_string_constants_embed_other_inputs() {
        let mut params = Map::new();
        params.insert("pipelinechannel--name".into(), json!("kfp"));
        params.insert("pipelinechannel--n".into(), json!(3));
        assert_eq!(
            substitute_inputs(
                "hello {{$.inputs.parameters['pipelinechannel--name']}} x{{$.inputs.parameters['pipelinechannel--n']}}",
                &params
            ),
            "hello kfp x3"
        );
    }

    #[test]
    fn loop_items_from_raw_json_or_an_input() {
        let mut io = Io::default();
        io.params.insert("items".into(), json!([{"a": 1}, {"a": 2}]));
        io.params.insert("text".into(), json!("[1, 2]"));
        assert_eq!(iteration_items(Some((Some("[1, 2, 3]"), None)), &io), Ok(vec![json!(1), json!(2), json!(3)]));
        assert_eq!(iteration_items(Some((None, Some("items"))), &io), Ok(vec![json!({"a": 1}), json!({"a": 2})]));
        assert_eq!(iteration_items(Some((None, Some("text"))), &io), Ok(vec![json!(1), json!(2)]));
        assert!(iteration_items(Some((Some("{"), None)), &io).is_err());
        assert!(iteration_items(Some((None, Some("missing"))), &io).is_err());
    }
}
