//! The compiled Kubeflow Pipelines IR (`PipelineSpec`, schema 2.1.0) as typed Rust.
//!
//! `kfp dsl compile` turns a Python pipeline into a YAML file whose first document
//! is the protobuf-JSON form (lowerCamelCase keys) of `ml_pipelines.PipelineSpec`
//! and whose optional later documents form a `PlatformSpec` (kfp-kubernetes
//! settings such as secrets, node selectors and PVC mounts). This module models
//! that file:
//!
//! * [`PipelineJob`]: the whole file (spec + optional platform spec), with
//!   [`PipelineJob::from_yaml_str`], [`PipelineJob::from_json_str`],
//!   [`PipelineJob::from_path`] and the emitters [`PipelineJob::to_yaml_string`]
//!   and [`PipelineJob::to_json_value`]. Documents that are not a KFP v2 pipeline
//!   (a v1 Argo workflow, a component file, another schema version, an empty
//!   file) are rejected with an [`IrError`](crate::IrError) that says what was
//!   found and where.
//! * [`PipelineSpec`] and its parts ([`ComponentSpec`], [`DagSpec`],
//!   [`PipelineTaskSpec`], [`ExecutorSpec`], …). Every struct keeps the fields it
//!   does not know in an `extra` map, so parsing and re-emitting a document gives
//!   back the same document.
//! * [`placeholder`]: the `{{$…}}` placeholder language and the `Concat` /
//!   `IfPresent` JSON arguments of container commands, parsed into a tree that a
//!   runner can resolve.
//! * [`PipelineSpec::lint`]: structural checks (dangling references, cycles,
//!   undeclared inputs and outputs, bad placeholders) plus warnings for features
//!   the open-source KFP backend cannot execute.
//! * [`PipelineSpec::check_arguments`]: run arguments checked against the
//!   pipeline's declared inputs, returning the effective typed parameters.
//!
//! ```
//! use kfops_kubeflow::ir::PipelineJob;
//!
//! let yaml = r#"
//! pipelineInfo: {name: hello}
//! root:
//!   dag: {tasks: {}}
//!   inputDefinitions:
//!     parameters:
//!       times: {parameterType: NUMBER_INTEGER, defaultValue: 2.0, isOptional: true}
//! schemaVersion: 2.1.0
//! "#;
//! let job = PipelineJob::from_yaml_str(yaml)?;
//! assert!(job.spec.lint().is_empty());
//! // No arguments given: the defaults apply, cast by type (2.0 becomes 2).
//! let args = job.spec.check_arguments(&Default::default()).expect("defaults are valid");
//! assert_eq!(args["times"], serde_json::json!(2));
//! # Ok::<(), kfops_kubeflow::IrError>(())
//! ```

/// Declares a protobuf enum that is serialized as its name and keeps names this
/// version does not know in an `Unknown` variant, so documents round-trip.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A name this version does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The protobuf name of the value, as written in the IR.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Unknown(name) => name,
                }
            }

            /// Parses a protobuf name; unknown names become `Unknown`.
            pub fn from_name(name: &str) -> Self {
                match name {
                    $( $text => Self::$variant, )+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::from_name(&name))
            }
        }
    };
}

mod arguments;
mod document;
mod lint;
mod parameter;
pub mod placeholder;
mod spec;

pub use crate::error::{ArgumentProblem, SourceError};
pub use arguments::{InputKind, RootInput};
pub use document::{PipelineJob, PlatformDeploymentSpec, PlatformSpec, SinglePlatformSpec};
pub use lint::{Diagnostic, Severity};
pub use parameter::{ParameterType, format_parameter_value, value_kind};
pub(crate) use parameter::{go_format_g, go_json};
pub use spec::{
    AcceleratorConfig, ArtifactDefinition, ArtifactIterator, ArtifactIteratorItems, ArtifactQuery, ArtifactSelector,
    ArtifactSource, ArtifactTypeSchema, CachingOptions, ComponentRef, ComponentSpec, ContainerSpec, DagOutputArtifact,
    DagOutputParameter, DagOutputs, DagSpec, DeploymentSpec, EnvVar, ExecutorKind, ExecutorSpec, ImporterSpec,
    InputDefinitions, IteratorPolicy, Lifecycle, LifecycleExec, OutputArtifactDefinition, OutputDefinitions,
    OutputParameterDefinition, ParameterDefinition, ParameterIterator, ParameterIteratorItems, ParameterSelector,
    ParameterSelectors, ParameterSource, PipelineInfo, PipelineSpec, PipelineTaskSpec, ResolverSpec, ResourceSpec,
    RetryPolicy, TaskFinalStatusRef, TaskInfo, TaskInputArtifact, TaskInputParameter, TaskInputs,
    TaskOutputArtifactRef, TaskOutputParameterRef, TriggerPolicy, TriggerStrategy, ValueOrRuntimeParameter,
    parse_proto_duration,
};

/// The declared name closest to `name` (for "did you mean …?" hints), if any is
/// close enough to be a plausible typo.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn closest_finds_plausible_typos_only() {
        let names = ["times", "name", "scale", "comp-measure"];
        assert_eq!(closest("tmes", names), Some("times"));
        assert_eq!(closest("comp-mesure", names), Some("comp-measure"));
        assert_eq!(closest("zzz", names), None);
    }
}
