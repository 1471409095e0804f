//! The pipeline's declared inputs, and run arguments checked against them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::closest;
use super::parameter::ParameterType;
use super::spec::PipelineSpec;
use crate::error::ArgumentProblem;

/// Whether a pipeline input is a parameter or an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A parameter: can be given as a run argument.
    Parameter,
    /// An artifact: cannot be given as a run argument.
    Artifact,
}

/// One declared input of the pipeline (`root.inputDefinitions`).
#[derive(Debug, Clone, PartialEq)]
pub struct RootInput {
    /// The input name.
    pub name: String,
    /// Parameter or artifact.
    pub kind: InputKind,
    /// The declared type of a parameter (`None` for artifacts or when not given).
    pub parameter_type: Option<ParameterType>,
    /// The artifact's `schemaTitle` (e.g. `system.Dataset`), for artifacts.
    pub artifact_type: Option<String>,
    /// The default, cast by the declared type (`2.0` → `2` for `NUMBER_INTEGER`).
    pub default_value: Option<Value>,
    /// Whether the input may be left out.
    pub optional: bool,
    /// The description, if any.
    pub description: Option<String>,
}

impl RootInput {
    /// Whether a run must supply it: not optional and no default.
    pub fn required(&self) -> bool {
        !self.optional && self.default_value.is_none()
    }
}

impl ArgumentProblem {
    /// The input (argument) name the problem is about.
    pub fn name(&self) -> &str {
        match self {
            Self::Unknown { name, .. }
            | Self::ArtifactInput { name }
            | Self::WrongType { name, .. }
            | Self::Missing { name, .. } => name,
        }
    }
}

impl PipelineSpec {
    /// The pipeline's declared inputs (`root.inputDefinitions`): parameters then
    /// artifacts, each sorted by name.
    pub fn root_inputs(&self) -> Vec<RootInput> {
        let parameters = self.root.input_parameters().map(|(name, d)| RootInput {
            name: name.clone(),
            kind: InputKind::Parameter,
            parameter_type: d.parameter_type.clone(),
            artifact_type: None,
            default_value: d.typed_default(),
            optional: d.optional(),
            description: d.description.clone(),
        });
        let artifacts = self.root.input_artifacts().map(|(name, d)| RootInput {
            name: name.clone(),
            kind: InputKind::Artifact,
            parameter_type: None,
            artifact_type: d.artifact_type.as_ref().and_then(|t| t.schema_title.clone()),
            default_value: None,
            optional: d.is_optional.unwrap_or(false),
            description: d.description.clone(),
        });
        parameters.chain(artifacts).collect()
    }

    /// Checks run arguments against the pipeline's declared parameter inputs and
    /// returns the effective parameters: the arguments cast by declared type, plus
    /// the (cast) defaults of inputs not given. Optional inputs without a default
    /// stay absent, and so do arguments given as `null`.
    ///
    /// Every problem is reported at once: unknown names (with a suggestion),
    /// artifact inputs given as arguments, values of the wrong type (no silent
    /// coercion: `"2"` is not a number, `2` is not a string), and required
    /// inputs left out.
    pub fn check_arguments(
        &self,
        args: &BTreeMap<String, Value>,
    ) -> Result<BTreeMap<String, Value>, Vec<ArgumentProblem>> {
        let mut problems = Vec::new();
        let mut effective = BTreeMap::new();
        for (name, value) in args {
            let Some(definition) = self.root.input_parameter(name) else {
                if self.root.input_artifact(name).is_some() {
                    problems.push(ArgumentProblem::ArtifactInput { name: name.clone() });
                } else {
                    let declared = self.root.input_parameters().map(|(n, _)| n.as_str());
                    problems.push(ArgumentProblem::Unknown {
                        name: name.clone(),
                        suggestion: closest(name, declared.clone()).map(str::to_owned),
                        declared: declared.map(str::to_owned).collect(),
                    });
                }
                continue;
            };
            if value.is_null() {
                continue;
            }
            let expected = definition.ty();
            match expected.cast(value) {
                Some(typed) => {
                    effective.insert(name.clone(), typed);
                }
                None => {
                    problems.push(ArgumentProblem::WrongType { name: name.clone(), expected, value: value.clone() })
                }
            }
        }
        for (name, definition) in self.root.input_parameters() {
            if args.get(name).is_some_and(|v| !v.is_null()) {
                continue;
            }
            if let Some(default) = definition.typed_default() {
                effective.insert(name.clone(), default);
            } else if definition.required() {
                problems.push(ArgumentProblem::Missing { name: name.clone(), expected: definition.ty() });
            }
        }
        if problems.is_empty() { Ok(effective) } else { Err(problems) }
    }
}
