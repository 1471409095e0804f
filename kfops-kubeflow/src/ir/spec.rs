//! Serde types for `ml_pipelines.PipelineSpec` in its protobuf-JSON form.
//!
//! Conventions, identical for every struct:
//! * fields are declared in the alphabetical order of their JSON names, which is
//!   the order the KFP compiler writes, so re-emitted YAML reads like the input;
//! * optional messages are `Option`s, skipped when `None`; strings that protobuf
//!   omits when empty (names, references) are `String`s skipped when empty;
//!   repeated fields and maps are skipped when empty;
//! * `google.protobuf.Value` fields are kept as [`serde_json::Value`] exactly as
//!   written (an explicit `null` survives); numbers of `double` fields are kept
//!   as [`serde_json::Number`] so `2` stays `2` and `2.0` stays `2.0`;
//! * unknown fields are kept in `extra` and written back after the known ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Number, Value};

use super::parameter::ParameterType;
use crate::error::SourceError;

/// Deserializes a present `google.protobuf.Value`, keeping an explicit `null` as
/// `Some(Value::Null)` (plain `Option<Value>` would turn it into `None`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The whole compiled pipeline (the first YAML document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// Every component used by the pipeline, by name (`comp-…`), including the
    /// sub-DAGs the compiler creates for conditions, loops, exit handlers and
    /// nested pipelines.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentSpec>,
    /// `defaultPipelineRoot`: where artifacts go unless the run overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pipeline_root: Option<String>,
    /// `deploymentSpec`: how each executor runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_spec: Option<DeploymentSpec>,
    /// `pipelineInfo`: the pipeline's name and description.
    pub pipeline_info: PipelineInfo,
    /// `root`: the pipeline itself, a DAG component with the pipeline's inputs
    /// and outputs.
    pub root: ComponentSpec,
    /// `schemaVersion`, `2.1.0` for current compilers.
    pub schema_version: String,
    /// `sdkVersion`, e.g. `kfp-2.17.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    /// Fields this version does not model, kept for lossless round-trips.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PipelineSpec {
    /// The component called `name` in `components`.
    pub fn component(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.get(name)
    }

    /// The executor labelled `label` in `deploymentSpec.executors`.
    pub fn executor(&self, label: &str) -> Option<&ExecutorSpec> {
        self.deployment_spec.as_ref()?.executors.get(label)
    }

    /// The component a task runs (its `componentRef`), if it exists.
    pub fn task_component(&self, task: &PipelineTaskSpec) -> Option<&ComponentSpec> {
        self.component(task.component_name()?)
    }

    /// The spec as a protobuf-JSON value (what the KFP API takes as `pipeline_spec`).
    pub fn to_json_value(&self) -> Value {
        to_json_value(self)
    }
}

/// Serializes one of this module's types. They only contain string-keyed maps
/// and infallible serializers, so this cannot fail.
pub(super) fn to_json_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("IR types always serialize to JSON")
}

/// `pipelineInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineInfo {
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Human display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The pipeline name (required by the backend; names the MLMD context).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A component: a DAG of tasks or a single executor, with declared inputs and
/// outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// The DAG, for pipelines and the compiler's control-flow sub-DAGs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag: Option<DagSpec>,
    /// The executor (a key of `deploymentSpec.executors`), for leaf components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_label: Option<String>,
    /// `inputDefinitions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_definitions: Option<InputDefinitions>,
    /// `outputDefinitions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_definitions: Option<OutputDefinitions>,
    /// Fields this version does not model (e.g. `singlePlatformSpecs`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ComponentSpec {
    /// The declared input parameter `name`.
    pub fn input_parameter(&self, name: &str) -> Option<&ParameterDefinition> {
        self.input_definitions.as_ref()?.parameters.get(name)
    }

    /// The declared input artifact `name`.
    pub fn input_artifact(&self, name: &str) -> Option<&ArtifactDefinition> {
        self.input_definitions.as_ref()?.artifacts.get(name)
    }

    /// The declared output parameter `name`.
    pub fn output_parameter(&self, name: &str) -> Option<&OutputParameterDefinition> {
        self.output_definitions.as_ref()?.parameters.get(name)
    }

    /// The declared output artifact `name`.
    pub fn output_artifact(&self, name: &str) -> Option<&OutputArtifactDefinition> {
        self.output_definitions.as_ref()?.artifacts.get(name)
    }

    /// All declared input parameters (none when there are no input definitions).
    pub fn input_parameters(&self) -> impl Iterator<Item = (&String, &ParameterDefinition)> + Clone {
        self.input_definitions.iter().flat_map(|d| d.parameters.iter())
    }

    /// All declared input artifacts.
    pub fn input_artifacts(&self) -> impl Iterator<Item = (&String, &ArtifactDefinition)> + Clone {
        self.input_definitions.iter().flat_map(|d| d.artifacts.iter())
    }
}

/// `inputDefinitions` of a component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputDefinitions {
    /// Input artifacts by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, ArtifactDefinition>,
    /// Input parameters by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, ParameterDefinition>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A declared input parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterDefinition {
    /// `defaultValue`, exactly as written (integers appear as floats: `2.0`);
    /// see [`ParameterDefinition::typed_default`].
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `isOptional`: the input may be left out (then `defaultValue` applies, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_optional: Option<bool>,
    /// `parameterType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_type: Option<ParameterType>,
    /// Fields this version does not model (e.g. `literals`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ParameterDefinition {
    /// The declared type, `PARAMETER_TYPE_ENUM_UNSPECIFIED` when absent.
    pub fn ty(&self) -> ParameterType {
        self.parameter_type.clone().unwrap_or(ParameterType::Unspecified)
    }

    /// Whether the input may be left out.
    pub fn optional(&self) -> bool {
        self.is_optional.unwrap_or(false)
    }

    /// Whether a value must be supplied: not optional and no default.
    pub fn required(&self) -> bool {
        !self.optional() && self.default_value.is_none()
    }

    /// The default cast by the declared type (`2.0` → `2` for `NUMBER_INTEGER`);
    /// the raw default when it does not fit the type (the lint reports that).
    pub fn typed_default(&self) -> Option<Value> {
        let raw = self.default_value.as_ref()?;
        Some(self.ty().cast(raw).unwrap_or_else(|| raw.clone()))
    }
}

/// A declared input artifact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactDefinition {
    /// `artifactType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<ArtifactTypeSchema>,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `isArtifactList`: a list of artifacts rather than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_artifact_list: Option<bool>,
    /// `isOptional`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_optional: Option<bool>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `outputDefinitions` of a component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputDefinitions {
    /// Output artifacts by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, OutputArtifactDefinition>,
    /// Output parameters by name (a single Python return value is `Output`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, OutputParameterDefinition>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A declared output parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputParameterDefinition {
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `parameterType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_type: Option<ParameterType>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A declared output artifact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputArtifactDefinition {
    /// `artifactType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<ArtifactTypeSchema>,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `isArtifactList`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_artifact_list: Option<bool>,
    /// Static artifact metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `artifactType` / `typeSchema`: the MLMD type of an artifact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactTypeSchema {
    /// `instanceSchema`: an inline YAML schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_schema: Option<String>,
    /// `schemaTitle`, e.g. `system.Dataset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_title: Option<String>,
    /// `schemaUri` (deprecated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_uri: Option<String>,
    /// `schemaVersion`, e.g. `0.0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A DAG: tasks and how the DAG's outputs are taken from them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DagSpec {
    /// `outputs`: where the DAG component's outputs come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<DagOutputs>,
    /// Tasks by name (names are unique within one DAG only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, PipelineTaskSpec>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `dag.outputs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DagOutputs {
    /// Output artifacts by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, DagOutputArtifact>,
    /// Output parameters by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, DagOutputParameter>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One DAG output artifact: the sub-task outputs it is collected from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DagOutputArtifact {
    /// `artifactSelectors`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_selectors: Vec<ArtifactSelector>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Selects an output artifact of a sub-task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactSelector {
    /// `outputArtifactKey`: the producer component's output artifact.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_artifact_key: String,
    /// `producerSubtask`: a task of the same DAG.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub producer_subtask: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One DAG output parameter: `valueFromParameter` or (for `dsl.OneOf`)
/// `valueFromOneof`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DagOutputParameter {
    /// `valueFromOneof`: the first of several sub-task outputs that was produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from_oneof: Option<ParameterSelectors>,
    /// `valueFromParameter`: one sub-task output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from_parameter: Option<ParameterSelector>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DagOutputParameter {
    /// Every selector, whichever form is used.
    pub fn selectors(&self) -> impl Iterator<Item = &ParameterSelector> {
        self.value_from_parameter.iter().chain(self.value_from_oneof.iter().flat_map(|o| o.parameter_selectors.iter()))
    }
}

/// `valueFromOneof`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterSelectors {
    /// `parameterSelectors`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_selectors: Vec<ParameterSelector>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Selects an output parameter of a sub-task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterSelector {
    /// `outputParameterKey`: the producer component's output parameter.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_parameter_key: String,
    /// `producerSubtask`: a task of the same DAG.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub producer_subtask: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A task of a DAG (`PipelineTaskSpec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTaskSpec {
    /// `artifactIterator`: fan out over a list of artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_iterator: Option<ArtifactIterator>,
    /// `cachingOptions` (`{}` means caching disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching_options: Option<CachingOptions>,
    /// `componentRef`: the component this task runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_ref: Option<ComponentRef>,
    /// `dependentTasks`: upstream tasks of the same DAG.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependent_tasks: Vec<String>,
    /// `inputs`: where the component's inputs come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<TaskInputs>,
    /// `iteratorPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterator_policy: Option<IteratorPolicy>,
    /// `parameterIterator`: fan out over a list parameter (`dsl.ParallelFor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_iterator: Option<ParameterIterator>,
    /// `retryPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// `taskInfo`: the display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_info: Option<TaskInfo>,
    /// `triggerPolicy`: condition and trigger strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_policy: Option<TriggerPolicy>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PipelineTaskSpec {
    /// The referenced component name, when set and non-empty.
    pub fn component_name(&self) -> Option<&str> {
        self.component_ref.as_ref().map(|r| r.name.as_str()).filter(|name| !name.is_empty())
    }

    /// The task's input parameter bindings (empty when none).
    pub fn input_parameters(&self) -> impl Iterator<Item = (&String, &TaskInputParameter)> {
        self.inputs.iter().flat_map(|i| i.parameters.iter())
    }

    /// The task's input artifact bindings (empty when none).
    pub fn input_artifacts(&self) -> impl Iterator<Item = (&String, &TaskInputArtifact)> {
        self.inputs.iter().flat_map(|i| i.artifacts.iter())
    }

    /// Names of the tasks of the same DAG this task waits for: `dependentTasks`
    /// plus every producer of an input, without duplicates, in first-seen order.
    pub fn upstream_tasks(&self) -> Vec<&str> {
        let producers = self
            .input_parameters()
            .filter_map(|(_, p)| match p.source() {
                Ok(ParameterSource::TaskOutput(r)) => Some(r.producer_task.as_str()),
                Ok(ParameterSource::TaskFinalStatus(task)) => Some(task),
                _ => None,
            })
            .chain(self.input_artifacts().filter_map(|(_, a)| match a.source() {
                Ok(ArtifactSource::TaskOutput(r)) => Some(r.producer_task.as_str()),
                _ => None,
            }));
        let mut upstream: Vec<&str> = Vec::new();
        for name in self.dependent_tasks.iter().map(String::as_str).chain(producers) {
            if !upstream.contains(&name) {
                upstream.push(name);
            }
        }
        upstream
    }
}

/// `taskInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    /// The task's display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `componentRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRef {
    /// A key of [`PipelineSpec::components`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `cachingOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachingOptions {
    /// `cacheKey`: a custom cache key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// `enableCache` (absent means false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_cache: Option<bool>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `inputs` of a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInputs {
    /// Artifact bindings by component input name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, TaskInputArtifact>,
    /// Parameter bindings by component input name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, TaskInputParameter>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Picks the single set field of a protobuf `oneof`.
fn single_source<T>(
    expected: &'static [&'static str],
    candidates: Vec<(&'static str, Option<T>)>,
) -> Result<T, SourceError> {
    let mut set: Vec<(&'static str, T)> =
        candidates.into_iter().filter_map(|(name, value)| value.map(|v| (name, v))).collect();
    match set.len() {
        0 => Err(SourceError::Missing { expected }),
        1 => Ok(set.remove(0).1),
        _ => Err(SourceError::Several { found: set.into_iter().map(|(name, _)| name).collect() }),
    }
}

/// Where a task input parameter gets its value (`TaskInputsSpec.InputParameterSpec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInputParameter {
    /// `componentInputParameter`: an input of the enclosing DAG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_input_parameter: Option<String>,
    /// `parameterExpressionSelector`: a CEL expression applied to the value
    /// (e.g. `parseJson(string_value)["a"]` for loops over dicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_expression_selector: Option<String>,
    /// `runtimeValue`: a constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_value: Option<ValueOrRuntimeParameter>,
    /// `taskFinalStatus`: the final status of an upstream task (exit handlers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_final_status: Option<TaskFinalStatusRef>,
    /// `taskOutputParameter`: an output of a task of the same DAG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_output_parameter: Option<TaskOutputParameterRef>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The value source of a [`TaskInputParameter`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParameterSource<'a> {
    /// From the enclosing DAG's input of this name.
    ComponentInput(&'a str),
    /// From an upstream task's output.
    TaskOutput(&'a TaskOutputParameterRef),
    /// A constant (may embed `{{$…}}` placeholders when it is a string).
    Constant(&'a Value),
    /// `runtimeValue.runtimeParameter`: an input of the enclosing DAG.
    RuntimeParameter(&'a str),
    /// The final status of the named upstream task.
    TaskFinalStatus(&'a str),
}

impl TaskInputParameter {
    /// The single value source, or why there is not exactly one.
    pub fn source(&self) -> Result<ParameterSource<'_>, SourceError> {
        const EXPECTED: &[&str] =
            &["componentInputParameter", "taskOutputParameter", "runtimeValue", "taskFinalStatus"];
        let runtime = match &self.runtime_value {
            None => None,
            Some(v) => Some(single_source(
                &["constant", "runtimeParameter"],
                vec![
                    ("constant", v.constant.as_ref().map(ParameterSource::Constant)),
                    ("runtimeParameter", v.runtime_parameter.as_deref().map(ParameterSource::RuntimeParameter)),
                ],
            )?),
        };
        single_source(
            EXPECTED,
            vec![
                (
                    "componentInputParameter",
                    self.component_input_parameter.as_deref().map(ParameterSource::ComponentInput),
                ),
                ("taskOutputParameter", self.task_output_parameter.as_ref().map(ParameterSource::TaskOutput)),
                ("runtimeValue", runtime),
                (
                    "taskFinalStatus",
                    self.task_final_status.as_ref().map(|s| ParameterSource::TaskFinalStatus(&s.producer_task)),
                ),
            ],
        )
    }
}

/// `taskOutputParameter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOutputParameterRef {
    /// `outputParameterKey`: the producer component's output parameter.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_parameter_key: String,
    /// `producerTask`: a task of the same DAG.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub producer_task: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `taskFinalStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFinalStatusRef {
    /// `producerTask`: the task (usually an exit-handler sub-DAG) whose status is passed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub producer_task: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ValueOrRuntimeParameter`: a constant or a reference to a DAG input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueOrRuntimeParameter {
    /// `constant`, exactly as written.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub constant: Option<Value>,
    /// `runtimeParameter`: an input parameter of the enclosing component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_parameter: Option<String>,
    /// Fields this version does not model (e.g. the deprecated `constantValue`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a task input artifact comes from (`TaskInputsSpec.InputArtifactSpec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInputArtifact {
    /// `componentInputArtifact`: an input artifact of the enclosing DAG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_input_artifact: Option<String>,
    /// `taskOutputArtifact`: an output of a task of the same DAG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_output_artifact: Option<TaskOutputArtifactRef>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The source of a [`TaskInputArtifact`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArtifactSource<'a> {
    /// From the enclosing DAG's input artifact of this name.
    ComponentInput(&'a str),
    /// From an upstream task's output artifact.
    TaskOutput(&'a TaskOutputArtifactRef),
}

impl TaskInputArtifact {
    /// The single source, or why there is not exactly one.
    pub fn source(&self) -> Result<ArtifactSource<'_>, SourceError> {
        single_source(
            &["componentInputArtifact", "taskOutputArtifact"],
            vec![
                (
                    "componentInputArtifact",
                    self.component_input_artifact.as_deref().map(ArtifactSource::ComponentInput),
                ),
                ("taskOutputArtifact", self.task_output_artifact.as_ref().map(ArtifactSource::TaskOutput)),
            ],
        )
    }
}

/// `taskOutputArtifact`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOutputArtifactRef {
    /// `outputArtifactKey`: the producer component's output artifact.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_artifact_key: String,
    /// `producerTask`: a task of the same DAG.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub producer_task: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

string_enum! {
    /// `triggerPolicy.strategy`.
    pub enum TriggerStrategy {
        /// `TRIGGER_STRATEGY_UNSPECIFIED`: same as all-succeeded.
        Unspecified => "TRIGGER_STRATEGY_UNSPECIFIED",
        /// `ALL_UPSTREAM_TASKS_SUCCEEDED`: run when every upstream task succeeded.
        AllUpstreamTasksSucceeded => "ALL_UPSTREAM_TASKS_SUCCEEDED",
        /// `ALL_UPSTREAM_TASKS_COMPLETED`: run when every upstream task finished
        /// in any state (exit handlers, `ignore_upstream_failure`).
        AllUpstreamTasksCompleted => "ALL_UPSTREAM_TASKS_COMPLETED",
    }
}

/// `triggerPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerPolicy {
    /// `condition`: a CEL expression over the task's inputs
    /// (`inputs.parameter_values['…'] == 'heads'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// `strategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<TriggerStrategy>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `parameterIterator` (`dsl.ParallelFor` over parameters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterIterator {
    /// `itemInput`: the input parameter of the iterated component that receives
    /// each item.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub item_input: String,
    /// `items`: what to iterate over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ParameterIteratorItems>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `parameterIterator.items`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterIteratorItems {
    /// `inputParameter`: one of the task's own input parameters, holding a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_parameter: Option<String>,
    /// `raw`: a JSON array written as a string (`'[1, 2, 3]'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `artifactIterator` (`dsl.ParallelFor` over a list of artifacts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactIterator {
    /// `itemInput`: the input artifact of the iterated component receiving each item.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub item_input: String,
    /// `items`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ArtifactIteratorItems>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `artifactIterator.items`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactIteratorItems {
    /// `inputArtifact`: one of the task's own input artifacts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub input_artifact: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `iteratorPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IteratorPolicy {
    /// `parallelismLimit`: at most this many iterations at once (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism_limit: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `retryPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// `backoffDuration`, a protobuf duration such as `"0s"` or `"1.5s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_duration: Option<String>,
    /// `backoffFactor` (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_factor: Option<Number>,
    /// `backoffMaxDuration` (default and maximum `3600s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_duration: Option<String>,
    /// `maxRetryCount`: retries after the first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_count: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RetryPolicy {
    /// `backoffDuration` parsed; `Ok(None)` when absent, `Err` with the text when
    /// it is not a protobuf duration.
    pub fn backoff(&self) -> Result<Option<Duration>, String> {
        parse_optional_duration(self.backoff_duration.as_deref())
    }

    /// `backoffMaxDuration` parsed, like [`RetryPolicy::backoff`].
    pub fn backoff_max(&self) -> Result<Option<Duration>, String> {
        parse_optional_duration(self.backoff_max_duration.as_deref())
    }
}

fn parse_optional_duration(text: Option<&str>) -> Result<Option<Duration>, String> {
    text.map(|t| parse_proto_duration(t).ok_or_else(|| t.to_owned())).transpose()
}

/// Parses a `google.protobuf.Duration` in its JSON form: seconds with up to nine
/// fractional digits and an `s` suffix (`"0s"`, `"3600s"`, `"1.5s"`). Negative
/// durations are rejected.
pub fn parse_proto_duration(text: &str) -> Option<Duration> {
    let number = text.strip_suffix('s')?;
    let (secs, frac) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !all_digits(secs) || !all_digits(frac) || frac.len() > 9 {
        return None;
    }
    let nanos = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    Some(Duration::new(secs.parse().ok()?, nanos))
}

/// `deploymentSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Executors by label (`exec-…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub executors: BTreeMap<String, ExecutorSpec>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One executor: exactly one of `container`, `importer`, `resolver`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorSpec {
    /// A container run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// An artifact import (`dsl.importer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importer: Option<ImporterSpec>,
    /// An artifact query against metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<ResolverSpec>,
    /// Fields this version does not model (e.g. the deprecated `customJob`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The kind of an [`ExecutorSpec`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExecutorKind<'a> {
    /// `container`.
    Container(&'a ContainerSpec),
    /// `importer`.
    Importer(&'a ImporterSpec),
    /// `resolver`.
    Resolver(&'a ResolverSpec),
}

impl ExecutorSpec {
    /// The single executor kind, or why there is not exactly one.
    pub fn kind(&self) -> Result<ExecutorKind<'_>, SourceError> {
        single_source(
            &["container", "importer", "resolver"],
            vec![
                ("container", self.container.as_ref().map(ExecutorKind::Container)),
                ("importer", self.importer.as_ref().map(ExecutorKind::Importer)),
                ("resolver", self.resolver.as_ref().map(ExecutorKind::Resolver)),
            ],
        )
    }
}

/// `container`: what the executor runs (`PipelineContainerSpec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// Arguments; may contain placeholders (see [`super::placeholder`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Command, overriding the image entrypoint; may contain placeholders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// The image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// `lifecycle` hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// `resources`: CPU, memory, accelerators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSpec>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An environment variable of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// The variable name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The value (protobuf omits it when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `resources` of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    /// `accelerator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<AcceleratorConfig>,
    /// `cpuLimit` in cores (deprecated; see `resourceCpuLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<Number>,
    /// `cpuRequest` in cores (deprecated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<Number>,
    /// `memoryLimit` in GB (deprecated; see `resourceMemoryLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<Number>,
    /// `memoryRequest` in GB (deprecated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<Number>,
    /// `resourceCpuLimit`, Kubernetes quantity (`500m`) or placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_cpu_limit: Option<String>,
    /// `resourceCpuRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_cpu_request: Option<String>,
    /// `resourceMemoryLimit`, Kubernetes quantity (`256Mi`) or placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_memory_limit: Option<String>,
    /// `resourceMemoryRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_memory_request: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `resources.accelerator`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorConfig {
    /// `count` (deprecated int64, a number or a string in JSON).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub count: Option<Value>,
    /// `resourceCount`, e.g. `'1'` or a placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_count: Option<String>,
    /// `resourceType`, e.g. `nvidia.com/gpu` or a placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// `type` (deprecated).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub accelerator_type: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `lifecycle` of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// `preCacheCheck`: runs before the cache lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_cache_check: Option<LifecycleExec>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A lifecycle hook's program.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleExec {
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `importer`: brings an existing artifact into the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImporterSpec {
    /// `artifactUri`: a constant URI or an input parameter holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_uri: Option<ValueOrRuntimeParameter>,
    /// `downloadToWorkspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_to_workspace: Option<bool>,
    /// `metadata` of the imported artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// `reimport`: import again even if already known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reimport: Option<bool>,
    /// `typeSchema`: the artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_schema: Option<ArtifactTypeSchema>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `resolver`: picks artifacts from metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolverSpec {
    /// `outputArtifactQueries` by output artifact name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub output_artifact_queries: BTreeMap<String, ArtifactQuery>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One resolver query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactQuery {
    /// `filter`, e.g. `artifact_type="system.Model"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `limit` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn protobuf_durations() {
        assert_eq!(parse_proto_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_proto_duration("3600s"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_proto_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_proto_duration("0.000000001s"), Some(Duration::from_nanos(1)));
        for bad in ["", "s", "5", "5m", "-1s", "1.s0", "1.1234567891s", "a1s"] {
            assert_eq!(parse_proto_duration(bad), None, "{bad}");
        }
        let policy = RetryPolicy {
            backoff_duration: Some("2s".into()),
            backoff_max_duration: Some("1h".into()),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(), Ok(Some(Duration::from_secs(2))));
        assert_eq!(policy.backoff_max(), Err("1h".to_owned()));
        assert_eq!(RetryPolicy::default().backoff(), Ok(None));
    }

    #[test]
    fn explicit_null_values_survive() {
        let v = json!({"constant": null});
        let parsed: ValueOrRuntimeParameter = serde_json::from_value(v.clone()).expect("parses");
        assert_eq!(parsed.constant, Some(Value::Null));
        assert_eq!(to_json_value(&parsed), v);
    }

    #[test]
    fn parameter_sources() {
        let input = |v: Value| -> TaskInputParameter { serde_json::from_value(v).expect("parses") };
        assert_eq!(input(json!({"componentInputParameter": "x"})).source(), Ok(ParameterSource::ComponentInput("x")));
        assert_eq!(input(json!({"runtimeValue": {"constant": 3}})).source(), Ok(ParameterSource::Constant(&json!(3))));
        assert_eq!(
            input(json!({"runtimeValue": {"runtimeParameter": "p"}})).source(),
            Ok(ParameterSource::RuntimeParameter("p"))
        );
        assert_eq!(
            input(json!({"taskFinalStatus": {"producerTask": "t"}})).source(),
            Ok(ParameterSource::TaskFinalStatus("t"))
        );
        assert!(matches!(input(json!({})).source(), Err(SourceError::Missing { .. })));
        assert_eq!(
            input(json!({"componentInputParameter": "x", "runtimeValue": {"constant": 1}})).source(),
            Err(SourceError::Several { found: vec!["componentInputParameter", "runtimeValue"] })
        );
        assert!(matches!(input(json!({"runtimeValue": {}})).source(), Err(SourceError::Missing { .. })));
        let artifact: TaskInputArtifact =
            serde_json::from_value(json!({"componentInputArtifact": "a"})).expect("parses");
        assert_eq!(artifact.source(), Ok(ArtifactSource::ComponentInput("a")));
    }

    #[test]
    fn upstream_tasks_merge_dependencies_and_producers() {
        let task: PipelineTaskSpec = serde_json::from_value(json!({
            "dependentTasks": ["a", "b"],
            "inputs": {
                "parameters": {
                    "x": {"taskOutputParameter": {"producerTask": "b", "outputParameterKey": "o"}},
                    "s": {"taskFinalStatus": {"producerTask": "c"}}
                },
                "artifacts": {"m": {"taskOutputArtifact": {"producerTask": "d", "outputArtifactKey": "m"}}}
            }
        }))
        .expect("parses");
        assert_eq!(task.upstream_tasks(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn executor_kinds() {
        let exec: ExecutorSpec = serde_json::from_value(json!({"container": {"image": "alpine"}})).expect("parses");
        assert!(matches!(exec.kind(), Ok(ExecutorKind::Container(c)) if c.image == "alpine"));
        let none: ExecutorSpec = serde_json::from_value(json!({"customJob": {}})).expect("parses");
        assert!(matches!(none.kind(), Err(SourceError::Missing { .. })));
    }
}
