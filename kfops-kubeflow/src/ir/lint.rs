//! Structural checks of a [`PipelineSpec`], plus warnings for features the
//! open-source KFP backend cannot execute.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use super::closest;
use super::placeholder::{Arg, Placeholder, Template};
use super::spec::{
    ArtifactSource, ComponentSpec, ContainerSpec, DagSpec, ExecutorKind, ParameterSource, PipelineSpec,
    PipelineTaskSpec, TaskInputParameter,
};
use crate::error::SourceError;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The pipeline is broken: the backend (or a runner) will reject or
    /// mis-execute it.
    Error,
    /// The pipeline is valid but uses something that does not work everywhere.
    Warning,
}

/// One finding of [`PipelineSpec::lint`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// The key path of the offending field, e.g.
    /// `root.dag.tasks.measure.componentRef.name`.
    pub path: String,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `path`.
    pub fn new(severity: Severity, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), severity, message: message.into() }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)
    }
}

/// ` (did you mean `x`?)` when a close name exists, else nothing.
fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default()
}

/// `a, b, c` (or `none`) for "it declares: …" lists.
fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// Compiler plumbing: f-strings and string placeholders in resource fields make
/// the compiler add task inputs the component does not declare, named
/// `pipelinechannel--…` or holding a constant with `{{$…}}` placeholders.
fn is_compiler_plumbing(name: &str, binding: &TaskInputParameter) -> bool {
    name.starts_with("pipelinechannel--")
        || matches!(
            binding.source(),
            Ok(ParameterSource::Constant(Value::String(s))) if s.contains("{{$")
        )
}

/// A component with its key path and the name used in messages.
#[derive(Clone, Copy)]
struct Named<'a> {
    path: &'a str,
    label: &'a str,
    spec: &'a ComponentSpec,
}

struct Linter<'a> {
    spec: &'a PipelineSpec,
    /// Tasks running each component, to know the inputs they always provide.
    users: BTreeMap<&'a str, Vec<&'a PipelineTaskSpec>>,
    out: Vec<Diagnostic>,
}

impl<'a> Linter<'a> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Diagnostic::new(Severity::Error, path, message));
    }

    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Diagnostic::new(Severity::Warning, path, message));
    }

    fn components(&self) -> Vec<(String, &'a str, &'a ComponentSpec)> {
        let spec = self.spec;
        std::iter::once(("root".to_owned(), "root", &spec.root))
            .chain(spec.components.iter().map(|(name, c)| (format!("components.{name}"), name.as_str(), c)))
            .collect()
    }

    fn run(mut self) -> Vec<Diagnostic> {
        if self.spec.pipeline_info.name.is_empty() {
            self.error("pipelineInfo.name", "the pipeline has no name; the backend requires `pipelineInfo.name`");
        }
        if self.spec.root.dag.is_none() {
            self.error(
                "root",
                "the root component must be a DAG (`root.dag`); compile a pipeline, not a bare component",
            );
        }
        for (_, _, component) in self.components() {
            for task in component.dag.iter().flat_map(|d| d.tasks.values()) {
                if let Some(name) = task.component_name() {
                    self.users.entry(name).or_default().push(task);
                }
            }
        }
        for (path, label, spec) in self.components() {
            self.component(Named { path: &path, label, spec });
        }
        self.out.sort();
        self.out.dedup();
        self.out
    }

    fn component(&mut self, component: Named<'_>) {
        let Named { path, spec, .. } = component;
        match (&spec.dag, &spec.executor_label) {
            (Some(_), Some(_)) => {
                self.error(path, "has both `dag` and `executorLabel`; a component is either a DAG or an executor")
            }
            (None, None) => self.error(path, "has neither `dag` nor `executorLabel`; give it one of them"),
            _ => {}
        }
        for (name, definition) in spec.input_parameters() {
            if let Some(default) = &definition.default_value
                && definition.ty().cast(default).is_none()
            {
                let ty = definition.ty();
                self.error(
                    format!("{path}.inputDefinitions.parameters.{name}.defaultValue"),
                    format!(
                        "default {default} ({}) does not fit the declared type {ty} ({}); fix the default or the type",
                        super::value_kind(default),
                        ty.describe()
                    ),
                );
            }
        }
        if let Some(label) = &spec.executor_label {
            self.executor(component, label);
        }
        if let Some(dag) = &spec.dag {
            self.dag(component, dag);
        }
    }

    fn dag(&mut self, parent: Named<'_>, dag: &DagSpec) {
        for (name, task) in &dag.tasks {
            let path = format!("{}.dag.tasks.{name}", parent.path);
            self.task(parent, dag, name, task, &path);
        }
        self.cycles(parent.path, dag);
        self.dag_outputs(parent, dag);
    }

    /// Checks that `producer` is a task of `dag`; returns its component.
    fn producer(&mut self, path: String, dag: &DagSpec, producer: &str) -> Option<&'a ComponentSpec> {
        if producer.is_empty() {
            self.error(path, "the producer task is empty; name a task of the same DAG");
            return None;
        }
        let Some(task) = dag.tasks.get(producer) else {
            let hint = did_you_mean(producer, dag.tasks.keys().map(String::as_str));
            self.error(
                path,
                format!(
                    "`{producer}` is not a task of this DAG{hint}; tasks can only use outputs of \
                     tasks in the same DAG (tasks here: {})",
                    list(dag.tasks.keys().map(String::as_str))
                ),
            );
            return None;
        };
        self.spec.task_component(task)
    }

    fn task(&mut self, parent: Named<'_>, dag: &DagSpec, name: &str, task: &PipelineTaskSpec, path: &str) {
        let component_path = format!("components.{}", task.component_name().unwrap_or_default());
        let component = match task.component_name() {
            None => {
                self.error(
                    format!("{path}.componentRef"),
                    "the task has no `componentRef.name`; name the component it runs",
                );
                None
            }
            Some(reference) => {
                let found = self.spec.component(reference);
                if found.is_none() {
                    let hint = did_you_mean(reference, self.spec.components.keys().map(String::as_str));
                    self.error(
                        format!("{path}.componentRef.name"),
                        format!("component `{reference}` does not exist in `components`{hint}"),
                    );
                }
                found.map(|spec| Named { path: &component_path, label: reference, spec })
            }
        };

        for (i, dependency) in task.dependent_tasks.iter().enumerate() {
            if !dag.tasks.contains_key(dependency) {
                let hint = did_you_mean(dependency, dag.tasks.keys().map(String::as_str));
                self.error(
                    format!("{path}.dependentTasks[{i}]"),
                    format!(
                        "`{dependency}` is not a task of this DAG{hint}; remove it or name one of {}",
                        list(dag.tasks.keys().map(String::as_str))
                    ),
                );
            }
        }

        self.task_parameters(parent, dag, task, component, path);
        self.task_artifacts(parent, dag, task, component, path);
        if let Some(component) = component {
            self.required_inputs(task, component, path);
        }
        self.iterators(name, task, component, path);

        if let Some(retry) = &task.retry_policy {
            for (field, parsed) in [("backoffDuration", retry.backoff()), ("backoffMaxDuration", retry.backoff_max())] {
                if let Err(text) = parsed {
                    self.error(
                        format!("{path}.retryPolicy.{field}"),
                        format!("`{text}` is not a protobuf duration; write seconds with an `s` suffix, e.g. `3600s`"),
                    );
                }
            }
        }
    }

    fn task_parameters(
        &mut self,
        parent: Named<'_>,
        dag: &DagSpec,
        task: &PipelineTaskSpec,
        component: Option<Named<'_>>,
        path: &str,
    ) {
        for (input, binding) in task.input_parameters() {
            let at = format!("{path}.inputs.parameters.{input}");
            if let Some(component) = component
                && component.spec.input_parameter(input).is_none()
                && !is_compiler_plumbing(input, binding)
            {
                let declared = component.spec.input_parameters().map(|(n, _)| n.as_str());
                let hint = did_you_mean(input, declared.clone());
                self.error(
                    &at,
                    format!(
                        "component `{}` declares no input parameter `{input}`{hint}; it declares {}",
                        component.label,
                        list(declared)
                    ),
                );
            }
            match binding.source() {
                Err(e) => self.error(&at, e.to_string()),
                Ok(ParameterSource::ComponentInput(source)) => {
                    self.parent_parameter(parent, format!("{at}.componentInputParameter"), source);
                }
                Ok(ParameterSource::RuntimeParameter(source)) => {
                    self.parent_parameter(parent, format!("{at}.runtimeValue.runtimeParameter"), source);
                }
                Ok(ParameterSource::TaskOutput(reference)) => {
                    let producer =
                        self.producer(format!("{at}.taskOutputParameter.producerTask"), dag, &reference.producer_task);
                    let key = &reference.output_parameter_key;
                    if let Some(producer) = producer
                        && producer.output_parameter(key).is_none()
                    {
                        let outputs = producer.output_definitions.iter().flat_map(|o| o.parameters.keys());
                        let hint = did_you_mean(key, outputs.clone().map(String::as_str));
                        self.error(
                            format!("{at}.taskOutputParameter.outputParameterKey"),
                            format!(
                                "task `{}` has no output parameter `{key}`{hint}; its outputs are {}",
                                reference.producer_task,
                                list(outputs.map(String::as_str))
                            ),
                        );
                    }
                }
                Ok(ParameterSource::TaskFinalStatus(producer)) => {
                    self.producer(format!("{at}.taskFinalStatus.producerTask"), dag, producer);
                }
                Ok(ParameterSource::Constant(Value::String(text))) if text.contains("{{$") => {
                    self.constant_placeholders(task, format!("{at}.runtimeValue.constant"), text);
                }
                Ok(ParameterSource::Constant(_)) => {}
            }
        }
    }

    /// A constant embedding placeholders (from an f-string) may only read the
    /// task's own input parameters.
    fn constant_placeholders(&mut self, task: &PipelineTaskSpec, at: String, text: &str) {
        match Template::parse(text) {
            Err(e) => self.error(at, e.to_string()),
            Ok(template) => {
                for placeholder in template.placeholders() {
                    if let Placeholder::InputParameter { name, .. } = placeholder
                        && !task.input_parameters().any(|(n, _)| n == name)
                    {
                        self.error(
                            &at,
                            format!(
                                "placeholder `{placeholder}` reads task input `{name}`, which this task does not set; \
                                 add it to the task's inputs.parameters"
                            ),
                        );
                    }
                }
            }
        }
    }

    fn parent_parameter(&mut self, parent: Named<'_>, at: String, source: &str) {
        if parent.spec.input_parameter(source).is_none() {
            let declared = parent.spec.input_parameters().map(|(n, _)| n.as_str());
            let hint = did_you_mean(source, declared.clone());
            self.error(
                at,
                format!(
                    "the enclosing DAG (`{}`) declares no input parameter `{source}`{hint}; it declares {}",
                    parent.label,
                    list(declared)
                ),
            );
        }
    }

    fn task_artifacts(
        &mut self,
        parent: Named<'_>,
        dag: &DagSpec,
        task: &PipelineTaskSpec,
        component: Option<Named<'_>>,
        path: &str,
    ) {
        for (input, binding) in task.input_artifacts() {
            let at = format!("{path}.inputs.artifacts.{input}");
            if let Some(component) = component
                && component.spec.input_artifact(input).is_none()
            {
                let declared = component.spec.input_artifacts().map(|(n, _)| n.as_str());
                let hint = did_you_mean(input, declared.clone());
                self.error(
                    &at,
                    format!(
                        "component `{}` declares no input artifact `{input}`{hint}; it declares {}",
                        component.label,
                        list(declared)
                    ),
                );
            }
            match binding.source() {
                Err(e) => self.error(&at, e.to_string()),
                Ok(ArtifactSource::ComponentInput(source)) => {
                    if parent.spec.input_artifact(source).is_none() {
                        let declared = parent.spec.input_artifacts().map(|(n, _)| n.as_str());
                        self.error(
                            format!("{at}.componentInputArtifact"),
                            format!(
                                "the enclosing DAG (`{}`) declares no input artifact `{source}`{}; it declares {}",
                                parent.label,
                                did_you_mean(source, declared.clone()),
                                list(declared)
                            ),
                        );
                    }
                }
                Ok(ArtifactSource::TaskOutput(reference)) => {
                    let producer =
                        self.producer(format!("{at}.taskOutputArtifact.producerTask"), dag, &reference.producer_task);
                    let key = &reference.output_artifact_key;
                    if let Some(producer) = producer
                        && producer.output_artifact(key).is_none()
                    {
                        let outputs = producer.output_definitions.iter().flat_map(|o| o.artifacts.keys());
                        let hint = did_you_mean(key, outputs.clone().map(String::as_str));
                        self.error(
                            format!("{at}.taskOutputArtifact.outputArtifactKey"),
                            format!(
                                "task `{}` has no output artifact `{key}`{hint}; its output artifacts are {}",
                                reference.producer_task,
                                list(outputs.map(String::as_str))
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Every required input of the component must be bound (or fed by the loop).
    fn required_inputs(&mut self, task: &PipelineTaskSpec, component: Named<'_>, path: &str) {
        let loop_parameter = task.parameter_iterator.as_ref().map(|i| i.item_input.as_str());
        for (name, definition) in component.spec.input_parameters() {
            let bound = task.input_parameters().any(|(n, _)| n == name) || loop_parameter == Some(name.as_str());
            if definition.required() && !bound {
                self.error(
                    format!("{path}.inputs.parameters"),
                    format!(
                        "required input parameter `{name}` ({}) of component `{}` is not set; bind it \
                         here, or give it a default / mark it optional in the component",
                        definition.ty(),
                        component.label
                    ),
                );
            }
        }
        let loop_artifact = task.artifact_iterator.as_ref().map(|i| i.item_input.as_str());
        for (name, definition) in component.spec.input_artifacts() {
            let bound = task.input_artifacts().any(|(n, _)| n == name) || loop_artifact == Some(name.as_str());
            if !definition.is_optional.unwrap_or(false) && !bound {
                self.error(
                    format!("{path}.inputs.artifacts"),
                    format!(
                        "required input artifact `{name}` of component `{}` is not set; bind it here or \
                         mark it optional in the component",
                        component.label
                    ),
                );
            }
        }
    }

    fn iterators(&mut self, name: &str, task: &PipelineTaskSpec, component: Option<Named<'_>>, path: &str) {
        if task.parameter_iterator.is_some() && task.artifact_iterator.is_some() {
            self.error(path, format!("task `{name}` has both a parameterIterator and an artifactIterator; keep one"));
        }
        if let Some(iterator) = &task.parameter_iterator {
            let at = format!("{path}.parameterIterator");
            let item = iterator.item_input.as_str();
            if item.is_empty() {
                self.error(format!("{at}.itemInput"), "the loop has no itemInput; name the loop body's item input");
            } else if let Some(component) = component
                && component.spec.input_parameter(item).is_none()
            {
                self.error(
                    format!("{at}.itemInput"),
                    format!(
                        "itemInput `{item}` is not an input parameter of the loop body `{}`; the body \
                         must declare the item it receives",
                        component.label
                    ),
                );
            }
            match iterator.items.as_ref().map(|i| (&i.raw, &i.input_parameter)) {
                Some((Some(raw), None)) => {
                    if serde_json::from_str::<Vec<Value>>(raw).is_err() {
                        self.error(
                            format!("{at}.items.raw"),
                            format!("`{raw}` is not a JSON list; write the items as a JSON array"),
                        );
                    }
                }
                Some((None, Some(source))) => {
                    if !task.input_parameters().any(|(n, _)| n == source) {
                        self.error(
                            format!("{at}.items.inputParameter"),
                            format!(
                                "`{source}` is not one of this task's input parameters; bind it in \
                                 inputs.parameters so the loop has items"
                            ),
                        );
                    }
                }
                _ => self.error(
                    format!("{at}.items"),
                    "the loop needs exactly one of `items.raw` or `items.inputParameter`",
                ),
            }
        }
        if let Some(iterator) = &task.artifact_iterator {
            let at = format!("{path}.artifactIterator");
            let item = iterator.item_input.as_str();
            if let Some(component) = component
                && (item.is_empty() || component.spec.input_artifact(item).is_none())
            {
                self.error(
                    format!("{at}.itemInput"),
                    format!("itemInput `{item}` is not an input artifact of the loop body `{}`", component.label),
                );
            }
            let source = iterator.items.as_ref().map(|i| i.input_artifact.as_str()).unwrap_or_default();
            if !task.input_artifacts().any(|(n, _)| n == source) {
                self.error(
                    format!("{at}.items.inputArtifact"),
                    format!("`{source}` is not one of this task's input artifacts; bind it in inputs.artifacts"),
                );
            }
        }
    }

    /// Reports dependency cycles among the tasks of one DAG.
    fn cycles(&mut self, parent_path: &str, dag: &DagSpec) {
        let edges: BTreeMap<&str, Vec<&str>> = dag
            .tasks
            .iter()
            .map(|(name, task)| {
                let upstream = task.upstream_tasks().into_iter().filter(|t| dag.tasks.contains_key(*t)).collect();
                (name.as_str(), upstream)
            })
            .collect();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut cycles: BTreeSet<Vec<&str>> = BTreeSet::new();
        for start in edges.keys() {
            let mut stack = Vec::new();
            find_cycles(start, &edges, &mut stack, &mut done, &mut cycles);
        }
        // One diagnostic per group of intertwined cycles, showing the shortest.
        let mut cycles: Vec<Vec<&str>> = cycles.into_iter().collect();
        cycles.sort_by_key(Vec::len);
        let mut groups: Vec<(Vec<&str>, BTreeSet<&str>)> = Vec::new();
        for cycle in cycles {
            match groups.iter_mut().find(|(_, members)| cycle.iter().any(|t| members.contains(t))) {
                Some((_, members)) => members.extend(cycle),
                None => {
                    let members = cycle.iter().copied().collect();
                    groups.push((cycle, members));
                }
            }
        }
        for (cycle, members) in groups {
            let chain: Vec<&str> = cycle.iter().chain(cycle.first()).copied().collect();
            let others: Vec<&str> = members.into_iter().filter(|t| !cycle.contains(t)).collect();
            let also = if others.is_empty() { String::new() } else { format!("; also caught in it: {}", list(others)) };
            self.error(
                format!("{parent_path}.dag.tasks.{}", cycle[0]),
                format!(
                    "dependency cycle {} (each task waits for the next{also}); remove one of these \
                     dependencies (dependentTasks or an input taken from a downstream task)",
                    chain.join(" → ")
                ),
            );
        }
    }

    fn dag_outputs(&mut self, parent: Named<'_>, dag: &DagSpec) {
        let path = parent.path;
        let outputs = dag.outputs.as_ref();
        for (name, output) in outputs.iter().flat_map(|o| &o.parameters) {
            let at = format!("{path}.dag.outputs.parameters.{name}");
            if parent.spec.output_parameter(name).is_none() {
                self.error(
                    &at,
                    format!("`{name}` is not declared in {path}.outputDefinitions.parameters; declare it or remove this output"),
                );
            }
            if output.selectors().next().is_none() {
                self.error(&at, "the output has no valueFromParameter/valueFromOneof selector");
            }
            let oneof = output.value_from_oneof.is_some();
            for (i, selector) in output.selectors().enumerate() {
                let at = if oneof {
                    format!("{at}.valueFromOneof.parameterSelectors[{i}]")
                } else {
                    format!("{at}.valueFromParameter")
                };
                let producer = self.producer(format!("{at}.producerSubtask"), dag, &selector.producer_subtask);
                let key = &selector.output_parameter_key;
                if let Some(producer) = producer
                    && producer.output_parameter(key).is_none()
                {
                    self.error(
                        format!("{at}.outputParameterKey"),
                        format!("task `{}` has no output parameter `{key}`", selector.producer_subtask),
                    );
                }
            }
        }
        for (name, output) in outputs.iter().flat_map(|o| &o.artifacts) {
            let at = format!("{path}.dag.outputs.artifacts.{name}");
            if parent.spec.output_artifact(name).is_none() {
                self.error(
                    &at,
                    format!("`{name}` is not declared in {path}.outputDefinitions.artifacts; declare it or remove this output"),
                );
            }
            if output.artifact_selectors.is_empty() {
                self.error(&at, "the output has no artifactSelectors");
            }
            for (i, selector) in output.artifact_selectors.iter().enumerate() {
                let at = format!("{at}.artifactSelectors[{i}]");
                let producer = self.producer(format!("{at}.producerSubtask"), dag, &selector.producer_subtask);
                let key = &selector.output_artifact_key;
                if let Some(producer) = producer
                    && producer.output_artifact(key).is_none()
                {
                    self.error(
                        format!("{at}.outputArtifactKey"),
                        format!("task `{}` has no output artifact `{key}`", selector.producer_subtask),
                    );
                }
            }
        }
        let declared = parent.spec.output_definitions.iter();
        for name in declared.clone().flat_map(|d| d.parameters.keys()) {
            if !outputs.is_some_and(|o| o.parameters.contains_key(name)) {
                self.error(
                    format!("{path}.outputDefinitions.parameters.{name}"),
                    format!("declared output `{name}` is never produced; add dag.outputs.parameters.{name}"),
                );
            }
        }
        for name in declared.flat_map(|d| d.artifacts.keys()) {
            if !outputs.is_some_and(|o| o.artifacts.contains_key(name)) {
                self.error(
                    format!("{path}.outputDefinitions.artifacts.{name}"),
                    format!("declared output `{name}` is never produced; add dag.outputs.artifacts.{name}"),
                );
            }
        }
    }

    fn executor(&mut self, component: Named<'_>, label: &str) {
        let path = format!("deploymentSpec.executors.{label}");
        let Some(executor) = self.spec.executor(label) else {
            let labels = self.spec.deployment_spec.iter().flat_map(|d| d.executors.keys().map(String::as_str));
            let hint = did_you_mean(label, labels);
            self.error(
                format!("{}.executorLabel", component.path),
                format!("executor `{label}` does not exist in deploymentSpec.executors{hint}"),
            );
            return;
        };
        match executor.kind() {
            Err(SourceError::Missing { expected }) => self.error(
                path,
                format!(
                    "the executor has none of {}; found only {}",
                    list(expected.iter().copied()),
                    list(executor.extra.keys().map(String::as_str))
                ),
            ),
            Err(SourceError::Several { found }) => {
                self.error(path, format!("the executor has several kinds ({}); keep exactly one", list(found)))
            }
            Ok(ExecutorKind::Container(container)) => self.container(component, &path, container),
            Ok(ExecutorKind::Importer(importer)) => {
                let uri = importer.artifact_uri.as_ref();
                match uri.and_then(|u| u.runtime_parameter.as_deref()) {
                    Some(parameter) if component.spec.input_parameter(parameter).is_none() => self.error(
                        format!("{path}.importer.artifactUri.runtimeParameter"),
                        format!(
                            "the importer reads input `{parameter}`, which component `{}` does not declare",
                            component.label
                        ),
                    ),
                    Some(_) => {}
                    None if uri.and_then(|u| u.constant.as_ref()).is_none() => self.error(
                        format!("{path}.importer.artifactUri"),
                        "the importer has no artifactUri (a constant or a runtimeParameter)",
                    ),
                    None => {}
                }
            }
            Ok(ExecutorKind::Resolver(_)) => {}
        }
    }

    /// Every string field of a container that may hold placeholders, with its path.
    fn container_strings(path: &str, container: &'a ContainerSpec) -> Vec<(String, &'a str)> {
        let mut fields: Vec<(String, &str)> = Vec::new();
        for (name, items) in [("command", &container.command), ("args", &container.args)] {
            fields.extend(items.iter().enumerate().map(|(i, s)| (format!("{path}.container.{name}[{i}]"), s.as_str())));
        }
        for (i, env) in container.env.iter().enumerate() {
            fields.push((format!("{path}.container.env[{i}].value"), &env.value));
        }
        if let Some(resources) = &container.resources {
            let accelerator = resources.accelerator.as_ref();
            for (name, value) in [
                ("resourceCpuLimit", resources.resource_cpu_limit.as_deref()),
                ("resourceCpuRequest", resources.resource_cpu_request.as_deref()),
                ("resourceMemoryLimit", resources.resource_memory_limit.as_deref()),
                ("resourceMemoryRequest", resources.resource_memory_request.as_deref()),
                ("accelerator.resourceType", accelerator.and_then(|a| a.resource_type.as_deref())),
                ("accelerator.resourceCount", accelerator.and_then(|a| a.resource_count.as_deref())),
            ] {
                if let Some(value) = value {
                    fields.push((format!("{path}.container.resources.{name}"), value));
                }
            }
        }
        fields
    }

    fn container(&mut self, component: Named<'_>, path: &str, container: &'a ContainerSpec) {
        // Inputs every task running this component sets (compiler plumbing may
        // pass inputs the component does not declare).
        let users = self.users.get(component.label).cloned().unwrap_or_default();
        let provided =
            |name: &str| !users.is_empty() && users.iter().all(|t| t.input_parameters().any(|(n, _)| n == name));
        for (at, text) in Self::container_strings(path, container) {
            let arg = match Arg::parse(text) {
                Ok(arg) => arg,
                Err(e) => {
                    self.error(at, format!("{e}"));
                    continue;
                }
            };
            for placeholder in arg.placeholders() {
                self.placeholder(component, &at, placeholder, &provided);
            }
            for body in arg.if_presents() {
                let name = body.input_name.as_str();
                if component.spec.input_parameter(name).is_none() && component.spec.input_artifact(name).is_none() {
                    self.error(
                        &at,
                        format!(
                            "IfPresent tests input `{name}`, which component `{}` does not declare",
                            component.label
                        ),
                    );
                }
            }
            if arg.contains_concat() {
                self.warning(
                    &at,
                    "Concat placeholders are not resolved by the open-source KFP backend (the JSON is \
                     passed literally; only kfp.local and Vertex AI resolve it); build the string in the \
                     command instead, e.g. `sh -c '… \"$0$1\"'` with the parts as separate arguments",
                );
            }
            if !arg.if_presents().is_empty() {
                self.warning(
                    &at,
                    "IfPresent placeholders need KFP backend 2.17.0 or newer, and there only with plain \
                     string items; on older backends handle the optional input in the command instead",
                );
            }
        }
    }

    fn placeholder(
        &mut self,
        component: Named<'_>,
        at: &str,
        placeholder: &Placeholder,
        provided: &dyn Fn(&str) -> bool,
    ) {
        let spec = component.spec;
        let (missing, what) = match placeholder {
            Placeholder::InputParameter { name, json_escape } => {
                if json_escape.is_some() {
                    self.warning(
                        at,
                        format!(
                            "`{placeholder}`: json_escape placeholders are resolved by neither the \
                             open-source KFP backend nor kfp.local; pass the value unescaped"
                        ),
                    );
                }
                (spec.input_parameter(name).is_none() && !provided(name), ("input parameter", name))
            }
            Placeholder::InputArtifact { name, .. } => (spec.input_artifact(name).is_none(), ("input artifact", name)),
            Placeholder::OutputParameterFile { name } => {
                (spec.output_parameter(name).is_none(), ("output parameter", name))
            }
            Placeholder::OutputArtifact { name, .. } => {
                (spec.output_artifact(name).is_none(), ("output artifact", name))
            }
            _ => return,
        };
        if missing {
            let (kind, name) = what;
            self.error(
                at,
                format!(
                    "placeholder `{placeholder}` refers to {kind} `{name}`, which component `{}` does not \
                     declare; fix the name or declare it",
                    component.label
                ),
            );
        }
        if placeholder.is_metadata() {
            self.warning(
                at,
                format!(
                    "`{placeholder}`: artifact metadata placeholders have no resolver in the open-source \
                     KFP backend; read the metadata inside the component instead"
                ),
            );
        }
    }
}

/// Depth-first search recording every cycle reached from `node` (rotated to
/// start at its smallest task name so each is reported once).
fn find_cycles<'a>(
    node: &'a str,
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    stack: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
    cycles: &mut BTreeSet<Vec<&'a str>>,
) {
    if done.contains(node) {
        return;
    }
    if let Some(at) = stack.iter().position(|n| *n == node) {
        let mut cycle = stack[at..].to_vec();
        let smallest = cycle.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
        cycle.rotate_left(smallest);
        cycles.insert(cycle);
        return;
    }
    stack.push(node);
    for next in edges.get(node).into_iter().flatten() {
        find_cycles(next, edges, stack, done, cycles);
    }
    stack.pop();
    done.insert(node);
}

impl PipelineSpec {
    /// Checks the pipeline's structure; returns errors and warnings sorted by
    /// key path (empty when all is well).
    ///
    /// Errors: a `componentRef` to a missing component; an `executorLabel` to a
    /// missing executor; a component with both or neither of `dag` and
    /// `executorLabel`; `dependentTasks`, `producerTask` or `producerSubtask`
    /// naming a task outside the DAG; dependency cycles; task inputs the
    /// component does not declare (compiler plumbing aside) or required inputs
    /// left unset; outputs read from a producer that does not declare them;
    /// `componentInputParameter`/`componentInputArtifact` naming an input the
    /// enclosing DAG does not declare; inputs with zero or several value
    /// sources; DAG outputs that are undeclared, unselected or never produced;
    /// inconsistent loops (`parameterIterator`/`artifactIterator`); placeholders
    /// that are unparseable or refer to undeclared inputs/outputs; defaults that
    /// do not fit their type; bad retry durations; a root that is not a DAG.
    ///
    /// Warnings (remote compatibility): `Concat` placeholders (the open-source
    /// backend cannot resolve them), `IfPresent` (needs backend ≥ 2.17.0),
    /// artifact `.metadata` and `json_escape` placeholders.
    pub fn lint(&self) -> Vec<Diagnostic> {
        let mut out = Linter { spec: self, users: BTreeMap::new(), out: Vec::new() }.run();
        out.extend(self.condition_diagnostics());
        out.sort();
        out.dedup();
        out
    }

    /// Trigger conditions that CEL cannot parse (the run would fail when it reaches them).
    fn condition_diagnostics(&self) -> Vec<Diagnostic> {
        let dags = std::iter::once(("root".to_owned(), &self.root))
            .chain(self.components.iter().map(|(name, c)| (format!("components.{name}"), c)));
        let mut out = Vec::new();
        for (prefix, component) in dags {
            let Some(dag) = &component.dag else { continue };
            for (task_name, task) in &dag.tasks {
                let Some(condition) = task.trigger_policy.as_ref().and_then(|p| p.condition.as_deref()) else {
                    continue;
                };
                if condition.is_empty() {
                    continue;
                }
                if let Err(e) = crate::local::cel::Program::parse(condition) {
                    out.push(Diagnostic::new(
                        Severity::Error,
                        format!("{prefix}.dag.tasks.{task_name}.triggerPolicy.condition"),
                        format!("the condition `{condition}` is not valid CEL, so the task would fail when it is reached: {e}"),
                    ));
                }
            }
        }
        out
    }
}
