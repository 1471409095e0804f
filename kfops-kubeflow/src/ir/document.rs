//! The compiled pipeline file: reading, recognising and writing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lint::{Diagnostic, Severity};
use super::spec::{PipelineSpec, to_json_value};
use crate::error::{DocumentFormat, IrError};

/// A compiled pipeline file: the [`PipelineSpec`] plus, when the pipeline uses
/// kfp-kubernetes features, the [`PlatformSpec`] from the later YAML documents.
///
/// (Not to be confused with the protobuf `PipelineJob` message, which is a run.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineJob {
    /// The pipeline (first YAML document).
    pub spec: PipelineSpec,
    /// The platform spec: all later YAML documents merged the way `kfp.Client`
    /// does (top-level keys of later documents replace earlier ones).
    pub platform: Option<PlatformSpec>,
}

/// `ml_pipelines.PlatformSpec`: platform-specific settings by platform name
/// (`kubernetes` for kfp-kubernetes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSpec {
    /// Settings by platform name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, SinglePlatformSpec>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The settings for one platform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinglePlatformSpec {
    /// `config`: free-form platform configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
    /// `deploymentSpec`: per-executor settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_spec: Option<PlatformDeploymentSpec>,
    /// `pipelineConfig`: pipeline-wide settings (workspace, TTLs, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_config: Option<Map<String, Value>>,
    /// `platform`: the platform's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `PlatformDeploymentConfig`: settings keyed by executor label (kfp-kubernetes:
/// `secretAsEnv`, `pvcMount`, `nodeSelector`, `imagePullPolicy`, …), kept as
/// free-form JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformDeploymentSpec {
    /// Settings by executor label (a key of `deploymentSpec.executors`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub executors: BTreeMap<String, Map<String, Value>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PlatformSpec {
    /// The platform spec as a protobuf-JSON value.
    pub fn to_json_value(&self) -> Value {
        to_json_value(self)
    }
}

/// The API's wrapped form, used when a platform spec exists
/// (`{"pipeline_spec": …, "platform_spec": …}`).
#[derive(Deserialize)]
struct Wrapped {
    pipeline_spec: PipelineSpec,
    #[serde(default)]
    platform_spec: Option<PlatformSpec>,
}

/// The top-level keys of a compiled pipeline, for the "not a pipeline" message.
const PIPELINE_KEYS: &str = "`components`, `deploymentSpec`, `pipelineInfo`, `root`, `schemaVersion`";

/// How the first document is shaped, once recognised as a pipeline.
enum Shape {
    /// A bare PipelineSpec.
    Bare,
    /// The API's `{"pipeline_spec": …, "platform_spec": …}` wrapper.
    Wrapped,
}

/// Where the text came from, for error messages.
#[derive(Clone, Copy)]
struct Origin<'a> {
    file: Option<&'a Path>,
    format: DocumentFormat,
}

impl Origin<'_> {
    fn file(&self) -> Option<PathBuf> {
        self.file.map(Path::to_path_buf)
    }

    fn not_a_pipeline(&self, found: impl Into<String>, hint: impl Into<String>) -> IrError {
        IrError::NotAPipeline { file: self.file(), found: found.into(), hint: hint.into() }
    }

    /// A syntax or shape error at `line`/`column`, with the parser's own text
    /// minus the "at line L column C" it appends (we print the location first).
    fn invalid(&self, location: Option<(usize, usize)>, message: String) -> IrError {
        let message = match location {
            Some((line, column)) => {
                let suffix = format!(" at line {line} column {column}");
                match message.find(&suffix) {
                    Some(at) => format!("{}{}", &message[..at], &message[at + suffix.len()..]),
                    None => message,
                }
            }
            None => message,
        };
        IrError::Invalid {
            file: self.file(),
            format: self.format,
            line: location.map(|l| l.0),
            column: location.map(|l| l.1),
            message,
        }
    }

    fn yaml_error(&self, error: &serde_yaml::Error) -> IrError {
        let location = error.location().map(|l| (l.line(), l.column()));
        self.invalid(location, error.to_string())
    }

    fn json_error(&self, error: &serde_json::Error) -> IrError {
        let location = (error.line() > 0).then(|| (error.line(), error.column()));
        self.invalid(location, error.to_string())
    }

    /// Deserializes JSON text into `T`. serde_json does not report the key path
    /// of a type error, but JSON is YAML, so the same text is tried through the
    /// YAML deserializer, whose message has the path; it is used only when it
    /// points at the same line, so YAML/JSON differences cannot mislead.
    fn typed_json<T: DeserializeOwned>(&self, text: &str) -> Result<T, IrError> {
        serde_json::from_str(text).map_err(|error| {
            let same_line = |e: &serde_yaml::Error| e.location().is_some_and(|l| l.line() == error.line());
            match serde_yaml::from_str::<T>(text) {
                Err(yaml) if error.is_data() && same_line(&yaml) => {
                    let location = yaml.location().map(|l| (l.line(), l.column()));
                    self.invalid(location, yaml.to_string())
                }
                _ => self.json_error(&error),
            }
        })
    }
}

/// Describes a JSON value's kind for "found a …" messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a plain string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks that the first document is a KFP v2 pipeline, with a precise message
/// for the usual mistakes.
fn recognise(doc: &Value, origin: Origin<'_>) -> Result<Shape, IrError> {
    let Value::Object(map) = doc else {
        return Err(origin
            .not_a_pipeline(describe(doc), format!("a compiled pipeline is a mapping with the keys {PIPELINE_KEYS}")));
    };
    if map.is_empty() {
        return Err(IrError::Empty { file: origin.file() });
    }
    if let Some(inner) = map.get("pipeline_spec") {
        recognise(inner, origin)?;
        return Ok(Shape::Wrapped);
    }
    if let Some(kind) = map.get("kind").and_then(Value::as_str) {
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        if kind == "Workflow" && api_version.starts_with("argoproj.io") {
            return Err(IrError::KfpV1Workflow { file: origin.file() });
        }
        let hint = if api_version.starts_with("pipelines.kubeflow.org") {
            "this is the Kubernetes-native pipeline store format; compile without \
             `--kubernetes-manifest-format` to get the pipeline spec"
        } else {
            "expected the output of `kfp dsl compile`"
        };
        return Err(origin.not_a_pipeline(format!("a Kubernetes `{kind}` manifest"), hint));
    }
    if map.contains_key("implementation") {
        return Err(origin.not_a_pipeline(
            "a KFP v1 component definition (`implementation:`)",
            "use the component inside a pipeline and compile that pipeline with KFP v2 \
             (`kfp dsl compile`)",
        ));
    }
    let missing: Vec<&str> =
        ["root", "pipelineInfo", "schemaVersion"].into_iter().filter(|key| !map.contains_key(*key)).collect();
    if !missing.is_empty() {
        let found = if missing.contains(&"root") && (map.contains_key("executorLabel") || map.contains_key("dag")) {
            "a single component spec, not a whole pipeline".to_owned()
        } else {
            let keys: Vec<String> = map.keys().take(8).map(|k| format!("`{k}`")).collect();
            format!("a mapping with the keys {}", keys.join(", "))
        };
        let missing: Vec<String> = missing.iter().map(|k| format!("`{k}`")).collect();
        return Err(origin.not_a_pipeline(
            found,
            format!("{} missing; a compiled KFP v2 pipeline has the keys {PIPELINE_KEYS}", missing.join(", ")),
        ));
    }
    match map.get("schemaVersion").unwrap_or(&Value::Null) {
        Value::String(version) if version.starts_with("2.") => Ok(Shape::Bare),
        other => Err(IrError::UnsupportedSchemaVersion {
            file: origin.file(),
            found: match other {
                Value::String(version) => format!("`{version}`"),
                Value::Null => "null".to_owned(),
                other => format!("`{other}` (a {}; write it as a string such as \"2.1.0\")", super::value_kind(other)),
            },
        }),
    }
}

/// Merges the platform documents like `kfp.Client`: empty documents are skipped,
/// later top-level keys replace earlier ones.
fn merge_platform_docs(
    docs: impl IntoIterator<Item = (usize, Value)>,
    origin: Origin<'_>,
) -> Result<Option<Map<String, Value>>, IrError> {
    let mut merged: Option<Map<String, Value>> = None;
    for (index, doc) in docs {
        match doc {
            Value::Null => {}
            Value::Object(map) => merged.get_or_insert_with(Map::new).extend(map),
            other => {
                return Err(origin.invalid(
                    None,
                    format!(
                        "YAML document {} is {}; the documents after the pipeline must be a \
                         kfp-kubernetes platform spec (a mapping with `platforms:`)",
                        index + 1,
                        describe(&other)
                    ),
                ));
            }
        }
    }
    Ok(merged)
}

/// Deserializes an already parsed value (no location information available).
fn from_value<T: DeserializeOwned>(value: Value, origin: Origin<'_>, what: &str) -> Result<T, IrError> {
    serde_json::from_value(value).map_err(|e| origin.invalid(None, format!("{what}: {e}")))
}

impl PipelineJob {
    /// Parses a compiled pipeline YAML (one or more documents).
    pub fn from_yaml_str(text: &str) -> Result<Self, IrError> {
        Self::parse_yaml(text, None)
    }

    /// Parses a compiled pipeline in JSON: a bare PipelineSpec, or the API's
    /// `{"pipeline_spec": …, "platform_spec": …}` wrapper.
    pub fn from_json_str(text: &str) -> Result<Self, IrError> {
        Self::parse_json(text, None)
    }

    /// Reads a `.yaml`/`.yml` or `.json` file; errors name the file.
    pub fn from_path(path: &Path) -> Result<Self, IrError> {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let format = match extension.as_deref() {
            Some("yaml" | "yml") => DocumentFormat::Yaml,
            Some("json") => DocumentFormat::Json,
            _ => {
                return Err(IrError::UnsupportedExtension { path: path.to_path_buf() });
            }
        };
        let text =
            std::fs::read_to_string(path).map_err(|source| IrError::Read { path: path.to_path_buf(), source })?;
        match format {
            DocumentFormat::Yaml => Self::parse_yaml(&text, Some(path)),
            DocumentFormat::Json => Self::parse_json(&text, Some(path)),
        }
    }

    fn parse_yaml(text: &str, file: Option<&Path>) -> Result<Self, IrError> {
        let origin = Origin { file, format: DocumentFormat::Yaml };
        let mut docs = Vec::new();
        for document in serde_yaml::Deserializer::from_str(text) {
            docs.push(Value::deserialize(document).map_err(|e| origin.yaml_error(&e))?);
        }
        let mut docs = docs.into_iter().enumerate();
        let first = match docs.next() {
            None | Some((_, Value::Null)) => {
                return Err(IrError::Empty { file: origin.file() });
            }
            Some((_, first)) => first,
        };
        let (spec, wrapped_platform) = match recognise(&first, origin)? {
            // Parse the document again, typed, straight from the text: errors then
            // carry the key path and line/column.
            Shape::Bare => {
                let document =
                    serde_yaml::Deserializer::from_str(text).next().ok_or(IrError::Empty { file: origin.file() })?;
                let spec = PipelineSpec::deserialize(document).map_err(|e| origin.yaml_error(&e))?;
                (spec, None)
            }
            Shape::Wrapped => {
                let wrapped: Wrapped = from_value(first, origin, "pipeline_spec")?;
                (wrapped.pipeline_spec, wrapped.platform_spec)
            }
        };
        let merged = merge_platform_docs(docs, origin)?;
        let platform = match merged {
            Some(map) => Some(from_value(Value::Object(map), origin, "platform spec")?),
            None => wrapped_platform,
        };
        Ok(Self { spec, platform })
    }

    fn parse_json(text: &str, file: Option<&Path>) -> Result<Self, IrError> {
        let origin = Origin { file, format: DocumentFormat::Json };
        if text.trim().is_empty() {
            return Err(IrError::Empty { file: origin.file() });
        }
        let value: Value = serde_json::from_str(text).map_err(|e| origin.json_error(&e))?;
        match recognise(&value, origin)? {
            Shape::Bare => Ok(Self { spec: origin.typed_json(text)?, platform: None }),
            Shape::Wrapped => {
                let wrapped: Wrapped = origin.typed_json(text)?;
                Ok(Self { spec: wrapped.pipeline_spec, platform: wrapped.platform_spec })
            }
        }
    }

    /// The file as YAML: the spec, then `---` and the platform spec if any.
    /// (Comments of the original, like the compiler's header, are not kept.)
    pub fn to_yaml_string(&self) -> String {
        let mut out = yaml_document(&self.spec.to_json_value());
        if let Some(platform) = &self.platform {
            out.push_str("---\n");
            out.push_str(&yaml_document(&platform.to_json_value()));
        }
        out
    }

    /// The file as the KFP API takes it inline in a run (`pipeline_spec`): the
    /// bare spec, or `{"pipeline_spec": …, "platform_spec": …}` when a platform
    /// spec exists.
    pub fn to_json_value(&self) -> Value {
        let spec = self.spec.to_json_value();
        match &self.platform {
            None => spec,
            Some(platform) => {
                let mut map = Map::new();
                map.insert("pipeline_spec".into(), spec);
                map.insert("platform_spec".into(), platform.to_json_value());
                Value::Object(map)
            }
        }
    }

    /// [`PipelineSpec::lint`] plus checks of the platform spec: every executor
    /// label it configures must exist in `deploymentSpec.executors`.
    pub fn lint(&self) -> Vec<Diagnostic> {
        let mut diagnostics = self.spec.lint();
        for (platform, single) in self.platform.iter().flat_map(|p| &p.platforms) {
            let executors = single.deployment_spec.iter().flat_map(|d| d.executors.keys());
            for label in executors {
                if self.spec.executor(label).is_none() {
                    diagnostics.push(Diagnostic::new(
                        Severity::Error,
                        format!("platforms.{platform}.deploymentSpec.executors.{label}"),
                        format!(
                            "configures executor `{label}`, which is not in deploymentSpec.executors; \
                             remove it or recompile the pipeline so both documents match"
                        ),
                    ));
                }
            }
        }
        diagnostics
    }
}

/// One YAML document for a JSON value. Serializing a `serde_json::Value` to YAML
/// cannot fail (string keys only, no I/O).
fn yaml_document(value: &Value) -> String {
    serde_yaml::to_string(value).expect("a JSON value always serializes to YAML")
}
