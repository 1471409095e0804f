//! The placeholder language of container commands and arguments.
//!
//! A container `command`/`args` item is either
//! * a string with embedded `{{$…}}` placeholders, replaced textually
//!   (`"--out={{$.outputs.artifacts['model'].path}}"`), parsed into a
//!   [`Template`]; or
//! * a whole-argument JSON object, written by the SDK for
//!   `dsl.ConcatPlaceholder` (`{"Concat": [...]}`) and `dsl.IfPresentPlaceholder`
//!   (`{"IfPresent": {"InputName": …, "Then": …, "Else": …}}`), whose items are
//!   again strings or such objects.
//!
//! [`Arg::parse`] turns an item into an [`Arg`] tree; [`Arg::resolve`] expands it
//! into the final argv strings given a [`Resolver`] that knows the values.
//! Unknown `{{$…}}` forms are errors, never passed through silently.
//!
//! ```
//! use kfops_kubeflow::ir::placeholder::{Arg, Placeholder};
//!
//! let arg = Arg::parse("--rows={{$.inputs.parameters['rows']}}")?;
//! let found: Vec<_> = arg.placeholders().into_iter().cloned().collect();
//! assert_eq!(found, [Placeholder::InputParameter { name: "rows".into(), json_escape: None }]);
//! # Ok::<(), kfops_kubeflow::ir::placeholder::PlaceholderError>(())
//! ```

use std::fmt;

use serde_json::{Map, Value};

pub use crate::error::PlaceholderError;

/// A parsed container command or argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A string, possibly with embedded placeholders; resolves to one argument.
    Text(Template),
    /// `{"Concat": [...]}`: the items resolved and joined into one argument.
    Concat(Vec<Arg>),
    /// `{"IfPresent": {...}}`: one branch, expanded into zero or more arguments.
    IfPresent(IfPresent),
}

/// The body of an `IfPresent` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfPresent {
    /// `InputName`: the input whose presence decides.
    pub input_name: String,
    /// `Then`: used when the input is present (and not null).
    pub then: Branch,
    /// `Else`: used otherwise; nothing when absent.
    pub otherwise: Option<Branch>,
}

/// A `Then`/`Else` branch: a single item or a list of items (each list item is
/// one argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Branch {
    /// A single item (string or nested placeholder object).
    One(Box<Arg>),
    /// A list of items.
    Many(Vec<Arg>),
}

impl Branch {
    /// The branch's items.
    pub fn items(&self) -> &[Arg] {
        match self {
            Self::One(arg) => std::slice::from_ref(arg),
            Self::Many(args) => args,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Self::One(arg) => arg.to_value(),
            Self::Many(args) => Value::Array(args.iter().map(Arg::to_value).collect()),
        }
    }
}

/// A string made of literal text and `{{$…}}` placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    /// The pieces in order.
    pub segments: Vec<Segment>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Literal(String),
    /// A placeholder to substitute.
    Placeholder(Placeholder),
}

/// Which part of an artifact an artifact placeholder refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactField {
    /// `.path`: the local file path.
    Path,
    /// `.uri`: the remote URI.
    Uri,
    /// `.metadata`: the whole metadata object as JSON.
    Metadata,
    /// `.metadata['key']`: one metadata entry.
    MetadataKey(String),
    /// No field: the whole list of artifacts (list-of-artifacts inputs/outputs).
    List,
}

/// One `{{$…}}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// `{{$}}`: the whole ExecutorInput as JSON.
    ExecutorInput,
    /// `{{$.inputs.parameters['name']}}`, optionally `.json_escape[N]`.
    InputParameter {
        /// The input parameter name.
        name: String,
        /// The JSON-escaping level of `.json_escape[N]`, if present.
        json_escape: Option<u32>,
    },
    /// `{{$.inputs.artifacts['name']…}}`.
    InputArtifact {
        /// The input artifact name.
        name: String,
        /// Which part of it.
        field: ArtifactField,
    },
    /// `{{$.outputs.parameters['name'].output_file}}`: where to write an output parameter.
    OutputParameterFile {
        /// The output parameter name.
        name: String,
    },
    /// `{{$.outputs.artifacts['name']…}}`.
    OutputArtifact {
        /// The output artifact name.
        name: String,
        /// Which part of it.
        field: ArtifactField,
    },
    /// `{{$.outputs.output_file}}`: where to write the executor output JSON.
    ExecutorOutputFile,
    /// `{{$.outputMetadataUri}}`: the same file under its older name.
    OutputMetadataUri,
    /// `{{$.pipeline_job_name}}`.
    PipelineJobName,
    /// `{{$.pipeline_job_resource_name}}`.
    PipelineJobResourceName,
    /// `{{$.pipeline_job_uuid}}`.
    PipelineJobUuid,
    /// `{{$.pipeline_task_name}}`.
    PipelineTaskName,
    /// `{{$.pipeline_task_uuid}}`.
    PipelineTaskUuid,
    /// `{{$.pipeline_root}}`.
    PipelineRoot,
    /// `{{$.pipeline_job_create_time_utc}}`.
    PipelineJobCreateTimeUtc,
    /// `{{$.pipeline_job_schedule_time_utc}}`.
    PipelineJobScheduleTimeUtc,
    /// `{{$.workspace_path}}`.
    WorkspacePath,
}

/// Placeholders without arguments, by their expression text (after `$.`).
const FIXED: &[(&str, Placeholder)] = &[
    ("outputs.output_file", Placeholder::ExecutorOutputFile),
    ("outputMetadataUri", Placeholder::OutputMetadataUri),
    ("pipeline_job_name", Placeholder::PipelineJobName),
    ("pipeline_job_resource_name", Placeholder::PipelineJobResourceName),
    ("pipeline_job_uuid", Placeholder::PipelineJobUuid),
    ("pipeline_task_name", Placeholder::PipelineTaskName),
    ("pipeline_task_uuid", Placeholder::PipelineTaskUuid),
    ("pipeline_root", Placeholder::PipelineRoot),
    ("pipeline_job_create_time_utc", Placeholder::PipelineJobCreateTimeUtc),
    ("pipeline_job_schedule_time_utc", Placeholder::PipelineJobScheduleTimeUtc),
    ("workspace_path", Placeholder::WorkspacePath),
];

/// Values for resolving placeholders, supplied by a runner.
pub trait Resolver {
    /// Why a value is not available.
    type Error;

    /// The text to substitute for `placeholder`.
    fn resolve(&self, placeholder: &Placeholder) -> Result<String, Self::Error>;

    /// Whether the input (parameter or artifact) `name` is present and not null,
    /// for `IfPresent`.
    fn is_present(&self, name: &str) -> bool;
}

impl Placeholder {
    /// Parses the text between `{{` and `}}` (`$`, `$.inputs.parameters['x']`, …).
    fn parse_expression(expr: &str) -> Option<Self> {
        if expr == "$" {
            return Some(Self::ExecutorInput);
        }
        let rest = expr.strip_prefix("$.")?;
        if let Some((_, fixed)) = FIXED.iter().find(|(text, _)| *text == rest) {
            return Some(fixed.clone());
        }
        if let Some(r) = rest.strip_prefix("inputs.parameters") {
            let (name, tail) = quoted_key(r)?;
            let json_escape = match tail {
                "" => None,
                t => Some(t.strip_prefix(".json_escape[")?.strip_suffix(']')?.parse().ok()?),
            };
            return Some(Self::InputParameter { name, json_escape });
        }
        if let Some(r) = rest.strip_prefix("inputs.artifacts") {
            let (name, tail) = quoted_key(r)?;
            let field = artifact_field(tail)?;
            return Some(Self::InputArtifact { name, field });
        }
        if let Some(r) = rest.strip_prefix("outputs.parameters") {
            let (name, tail) = quoted_key(r)?;
            return (tail == ".output_file").then_some(Self::OutputParameterFile { name });
        }
        if let Some(r) = rest.strip_prefix("outputs.artifacts") {
            let (name, tail) = quoted_key(r)?;
            let field = artifact_field(tail)?;
            return Some(Self::OutputArtifact { name, field });
        }
        None
    }

    /// The input (parameter or artifact) this placeholder reads, if any.
    pub fn input_name(&self) -> Option<&str> {
        match self {
            Self::InputParameter { name, .. } | Self::InputArtifact { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether this is an artifact `.metadata` placeholder (no resolver for it
    /// exists in the open-source KFP backend).
    pub fn is_metadata(&self) -> bool {
        matches!(
            self,
            Self::InputArtifact { field: ArtifactField::Metadata | ArtifactField::MetadataKey(_), .. }
                | Self::OutputArtifact { field: ArtifactField::Metadata | ArtifactField::MetadataKey(_), .. }
        )
    }
}

/// Splits `['name']rest` into `name` and `rest`.
fn quoted_key(text: &str) -> Option<(String, &str)> {
    let inner = text.strip_prefix("['")?;
    let end = inner.find("']")?;
    let name = &inner[..end];
    (!name.is_empty()).then(|| (name.to_owned(), &inner[end + 2..]))
}

fn artifact_field(tail: &str) -> Option<ArtifactField> {
    match tail {
        "" => Some(ArtifactField::List),
        ".path" => Some(ArtifactField::Path),
        ".uri" => Some(ArtifactField::Uri),
        ".metadata" => Some(ArtifactField::Metadata),
        t => {
            let (key, rest) = quoted_key(t.strip_prefix(".metadata")?)?;
            rest.is_empty().then_some(ArtifactField::MetadataKey(key))
        }
    }
}

impl fmt::Display for ArtifactField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path => f.write_str(".path"),
            Self::Uri => f.write_str(".uri"),
            Self::Metadata => f.write_str(".metadata"),
            Self::MetadataKey(key) => write!(f, ".metadata['{key}']"),
            Self::List => Ok(()),
        }
    }
}

impl fmt::Display for Placeholder {
    /// The canonical text, braces included (`{{$.inputs.parameters['x']}}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((text, _)) = FIXED.iter().find(|(_, p)| p == self) {
            return write!(f, "{{{{$.{text}}}}}");
        }
        match self {
            Self::ExecutorInput => f.write_str("{{$}}"),
            Self::InputParameter { name, json_escape } => {
                write!(f, "{{{{$.inputs.parameters['{name}']")?;
                if let Some(level) = json_escape {
                    write!(f, ".json_escape[{level}]")?;
                }
                f.write_str("}}")
            }
            Self::InputArtifact { name, field } => {
                write!(f, "{{{{$.inputs.artifacts['{name}']{field}}}}}")
            }
            Self::OutputParameterFile { name } => {
                write!(f, "{{{{$.outputs.parameters['{name}'].output_file}}}}")
            }
            Self::OutputArtifact { name, field } => {
                write!(f, "{{{{$.outputs.artifacts['{name}']{field}}}}}")
            }
            // Every other variant is in FIXED.
            _ => Ok(()),
        }
    }
}

impl Template {
    /// Parses a string with embedded `{{$…}}` placeholders. Text such as `{{ x }}`
    /// (no `$`) is literal.
    pub fn parse(text: &str) -> Result<Self, PlaceholderError> {
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{$") {
            if start > 0 {
                segments.push(Segment::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(PlaceholderError::Unterminated { snippet: rest[start..].chars().take(60).collect() });
            };
            let expr = &after[..end];
            let placeholder = Placeholder::parse_expression(expr)
                .ok_or_else(|| PlaceholderError::Unknown { placeholder: format!("{{{{{expr}}}}}") })?;
            segments.push(Segment::Placeholder(placeholder));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Self { segments })
    }

    /// The placeholders in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p),
            Segment::Literal(_) => None,
        })
    }

    /// Substitutes every placeholder.
    pub fn resolve<R: Resolver>(&self, resolver: &R) -> Result<String, R::Error> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Placeholder(p) => out.push_str(&resolver.resolve(p)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    /// The template written back as text (identical to the parsed input).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => f.write_str(text)?,
                Segment::Placeholder(p) => write!(f, "{p}")?,
            }
        }
        Ok(())
    }
}

impl Arg {
    /// Parses a container command or argument. Strings starting with
    /// `{"Concat"` or `{"IfPresent"` are the SDK's JSON placeholders; anything
    /// else is a [`Template`].
    pub fn parse(text: &str) -> Result<Self, PlaceholderError> {
        let trimmed = text.trim_start();
        for kind in ["Concat", "IfPresent"] {
            if trimmed.starts_with(&format!("{{\"{kind}\"")) {
                let value: Value = serde_json::from_str(text)
                    .map_err(|e| PlaceholderError::MalformedJson { kind, message: e.to_string() })?;
                return Self::from_value(&value);
            }
        }
        Template::parse(text).map(Self::Text)
    }

    /// Parses a `Concat`/`IfPresent` item: a string or a one-key object.
    fn from_value(value: &Value) -> Result<Self, PlaceholderError> {
        match value {
            Value::String(text) => Template::parse(text).map(Self::Text),
            Value::Object(map) if map.len() == 1 => {
                if let Some(items) = map.get("Concat") {
                    let Value::Array(items) = items else {
                        return Err(invalid("Concat", "the value must be a list of items"));
                    };
                    items.iter().map(Self::from_value).collect::<Result<_, _>>().map(Self::Concat)
                } else if let Some(body) = map.get("IfPresent") {
                    IfPresent::from_value(body).map(Self::IfPresent)
                } else {
                    Err(unexpected_item(value))
                }
            }
            _ => Err(unexpected_item(value)),
        }
    }

    /// The argument in its IR form: a JSON string for text, the object for
    /// `Concat`/`IfPresent` (the SDK writes that object as a JSON string).
    pub fn to_value(&self) -> Value {
        match self {
            Self::Text(template) => Value::String(template.to_string()),
            Self::Concat(items) => {
                let mut map = Map::new();
                map.insert("Concat".into(), Value::Array(items.iter().map(Self::to_value).collect()));
                Value::Object(map)
            }
            Self::IfPresent(body) => {
                let mut inner = Map::new();
                inner.insert("InputName".into(), Value::String(body.input_name.clone()));
                inner.insert("Then".into(), body.then.to_value());
                if let Some(otherwise) = &body.otherwise {
                    inner.insert("Else".into(), otherwise.to_value());
                }
                let mut map = Map::new();
                map.insert("IfPresent".into(), Value::Object(inner));
                Value::Object(map)
            }
        }
    }

    /// Calls `visit` on this argument and every nested one, depth first.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&'a Arg)) {
        visit(self);
        match self {
            Self::Text(_) => {}
            Self::Concat(items) => items.iter().for_each(|item| item.walk(visit)),
            Self::IfPresent(body) => {
                for branch in std::iter::once(&body.then).chain(&body.otherwise) {
                    branch.items().iter().for_each(|item| item.walk(visit));
                }
            }
        }
    }

    /// Every placeholder, in both `IfPresent` branches, in order.
    pub fn placeholders(&self) -> Vec<&Placeholder> {
        let mut found = Vec::new();
        self.walk(&mut |arg| {
            if let Self::Text(template) = arg {
                found.extend(template.placeholders());
            }
        });
        found
    }

    /// Every `IfPresent` body, nested ones included.
    pub fn if_presents(&self) -> Vec<&IfPresent> {
        let mut found = Vec::new();
        self.walk(&mut |arg| {
            if let Self::IfPresent(body) = arg {
                found.push(body);
            }
        });
        found
    }

    /// Whether a `Concat` appears anywhere in this argument.
    pub fn contains_concat(&self) -> bool {
        let mut found = false;
        self.walk(&mut |arg| found |= matches!(arg, Self::Concat(_)));
        found
    }

    /// Expands the argument into final argv items: text gives one item, `Concat`
    /// one joined item, `IfPresent` the items of the chosen branch (possibly none).
    pub fn resolve<R: Resolver>(&self, resolver: &R) -> Result<Vec<String>, R::Error> {
        match self {
            Self::Text(template) => Ok(vec![template.resolve(resolver)?]),
            Self::Concat(items) => {
                let mut joined = String::new();
                for item in items {
                    joined.extend(item.resolve(resolver)?);
                }
                Ok(vec![joined])
            }
            Self::IfPresent(body) => {
                let branch =
                    if resolver.is_present(&body.input_name) { Some(&body.then) } else { body.otherwise.as_ref() };
                let mut out = Vec::new();
                for item in branch.map(Branch::items).unwrap_or_default() {
                    out.extend(item.resolve(resolver)?);
                }
                Ok(out)
            }
        }
    }
}

impl IfPresent {
    fn from_value(value: &Value) -> Result<Self, PlaceholderError> {
        let Value::Object(map) = value else {
            return Err(invalid("IfPresent", "the value must be an object with `InputName` and `Then`"));
        };
        if let Some(key) = map.keys().find(|k| !["InputName", "Then", "Else"].contains(&k.as_str())) {
            return Err(invalid("IfPresent", &format!("unknown key `{key}` (expected `InputName`, `Then`, `Else`)")));
        }
        let input_name = match map.get("InputName") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => {
                return Err(invalid("IfPresent", "`InputName` must be a non-empty string"));
            }
        };
        let then =
            map.get("Then").ok_or_else(|| invalid("IfPresent", "`Then` is missing")).and_then(Branch::from_value)?;
        let otherwise = match map.get("Else") {
            None | Some(Value::Null) => None,
            Some(value) => Some(Branch::from_value(value)?),
        };
        Ok(Self { input_name, then, otherwise })
    }
}

impl Branch {
    fn from_value(value: &Value) -> Result<Self, PlaceholderError> {
        match value {
            Value::Array(items) => items.iter().map(Arg::from_value).collect::<Result<_, _>>().map(Self::Many),
            other => Arg::from_value(other).map(|arg| Self::One(Box::new(arg))),
        }
    }
}

fn invalid(kind: &'static str, message: &str) -> PlaceholderError {
    PlaceholderError::Invalid { kind, message: message.to_owned() }
}

fn unexpected_item(value: &Value) -> PlaceholderError {
    invalid("placeholder", &format!("expected a string or a {{\"Concat\"}}/{{\"IfPresent\"}} object, found `{value}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn text(s: &str) -> Template {
        Template::parse(s).expect("parses")
    }

    #[test]
    fn every_known_placeholder_parses_and_prints_back() {
        let all = [
            ("{{$}}", Placeholder::ExecutorInput),
            ("{{$.inputs.parameters['x']}}", Placeholder::InputParameter { name: "x".into(), json_escape: None }),
            (
                "{{$.inputs.parameters['x'].json_escape[1]}}",
                Placeholder::InputParameter { name: "x".into(), json_escape: Some(1) },
            ),
            (
                "{{$.inputs.artifacts['a'].path}}",
                Placeholder::InputArtifact { name: "a".into(), field: ArtifactField::Path },
            ),
            (
                "{{$.inputs.artifacts['a'].uri}}",
                Placeholder::InputArtifact { name: "a".into(), field: ArtifactField::Uri },
            ),
            (
                "{{$.inputs.artifacts['a'].metadata}}",
                Placeholder::InputArtifact { name: "a".into(), field: ArtifactField::Metadata },
            ),
            (
                "{{$.inputs.artifacts['a'].metadata['k']}}",
                Placeholder::InputArtifact { name: "a".into(), field: ArtifactField::MetadataKey("k".into()) },
            ),
            (
                "{{$.inputs.artifacts['a']}}",
                Placeholder::InputArtifact { name: "a".into(), field: ArtifactField::List },
            ),
            ("{{$.outputs.parameters['y'].output_file}}", Placeholder::OutputParameterFile { name: "y".into() }),
            (
                "{{$.outputs.artifacts['m'].path}}",
                Placeholder::OutputArtifact { name: "m".into(), field: ArtifactField::Path },
            ),
            (
                "{{$.outputs.artifacts['m'].metadata['k']}}",
                Placeholder::OutputArtifact { name: "m".into(), field: ArtifactField::MetadataKey("k".into()) },
            ),
            ("{{$.outputs.output_file}}", Placeholder::ExecutorOutputFile),
            ("{{$.outputMetadataUri}}", Placeholder::OutputMetadataUri),
            ("{{$.pipeline_job_name}}", Placeholder::PipelineJobName),
            ("{{$.pipeline_job_resource_name}}", Placeholder::PipelineJobResourceName),
            ("{{$.pipeline_job_uuid}}", Placeholder::PipelineJobUuid),
            ("{{$.pipeline_task_name}}", Placeholder::PipelineTaskName),
            ("{{$.pipeline_task_uuid}}", Placeholder::PipelineTaskUuid),
            ("{{$.pipeline_root}}", Placeholder::PipelineRoot),
            ("{{$.pipeline_job_create_time_utc}}", Placeholder::PipelineJobCreateTimeUtc),
            ("{{$.pipeline_job_schedule_time_utc}}", Placeholder::PipelineJobScheduleTimeUtc),
            ("{{$.workspace_path}}", Placeholder::WorkspacePath),
        ];
        for (source, expected) in all {
            let template = text(source);
            assert_eq!(template.segments, [Segment::Placeholder(expected.clone())], "{source}");
            assert_eq!(expected.to_string(), source);
        }
    }

    #[test]
    fn embedded_placeholders_keep_surrounding_text() {
        let template = text("--in={{$.inputs.parameters['a']}}-{{$.pipeline_task_name}}; {{ not }}");
        assert_eq!(
            template.segments,
            [
                Segment::Literal("--in=".into()),
                Segment::Placeholder(Placeholder::InputParameter { name: "a".into(), json_escape: None }),
                Segment::Literal("-".into()),
                Segment::Placeholder(Placeholder::PipelineTaskName),
                Segment::Literal("; {{ not }}".into()),
            ]
        );
        assert_eq!(template.to_string(), "--in={{$.inputs.parameters['a']}}-{{$.pipeline_task_name}}; {{ not }}");
    }

    #[test]
    fn bad_placeholders_are_reported() {
        for (source, expected) in [
            ("{{$.inputs.foo}}", "unknown placeholder `{{$.inputs.foo}}`"),
            ("{{$.inputs.parameters[\"x\"]}}", "unknown placeholder"),
            ("{{$.inputs.parameters['']}}", "unknown placeholder"),
            ("{{$.outputs.parameters['y']}}", "unknown placeholder"),
            ("{{$.inputs.artifacts['a'].size}}", "unknown placeholder"),
            ("{{$.inputs.parameters['x'].json_escape[a]}}", "unknown placeholder"),
            ("x {{$.inputs.parameters['x']", "is not closed with `}}`"),
            ("{\"Concat\": [", "not valid JSON"),
            ("{\"Concat\": \"a\"}", "must be a list"),
            ("{\"Concat\": [1]}", "found `1`"),
            ("{\"IfPresent\": []}", "must be an object"),
            ("{\"IfPresent\": {\"Then\": \"x\"}}", "`InputName` must be"),
            ("{\"IfPresent\": {\"InputName\": \"a\"}}", "`Then` is missing"),
            ("{\"IfPresent\": {\"InputName\": \"a\", \"Then\": [], \"Other\": 1}}", "unknown key `Other`"),
            ("{\"Concat\": [{\"Nope\": 1}]}", "found `{\"Nope\":1}`"),
        ] {
            let err = Arg::parse(source).expect_err(source).to_string();
            assert!(err.contains(expected), "{source}: {err}");
        }
    }

    #[test]
    fn json_objects_that_are_not_placeholders_are_text() {
        let arg = Arg::parse(r#"{"lr": 0.1}"#).expect("parses");
        assert_eq!(arg, Arg::Text(text(r#"{"lr": 0.1}"#)));
    }

    /// Resolves from a map of input values; absent names are "not present".
    struct Values(BTreeMap<&'static str, &'static str>);

    impl Resolver for Values {
        type Error = String;

        fn resolve(&self, placeholder: &Placeholder) -> Result<String, String> {
            let name = placeholder.input_name().ok_or_else(|| placeholder.to_string())?;
            self.0.get(name).map(|v| (*v).to_owned()).ok_or_else(|| format!("no value for {name}"))
        }

        fn is_present(&self, name: &str) -> bool {
            self.0.contains_key(name)
        }
    }

    #[test]
    fn resolution_expands_concat_and_if_present() {
        let present = Values(BTreeMap::from([("a", "1"), ("b", "2")]));
        let absent = Values(BTreeMap::from([("a", "1")]));
        let concat = Arg::parse(
            r#"{"Concat": ["--x=", "{{$.inputs.parameters['a']}}", {"IfPresent": {"InputName": "b", "Then": {"Concat": ["-", "{{$.inputs.parameters['b']}}"]}}}]}"#,
        )
        .expect("parses");
        assert_eq!(concat.resolve(&present), Ok(vec!["--x=1-2".to_owned()]));
        assert_eq!(concat.resolve(&absent), Ok(vec!["--x=1".to_owned()]));

        let list = Arg::parse(
            r#"{"IfPresent": {"InputName": "b", "Then": ["--b", "{{$.inputs.parameters['b']}}"], "Else": "none"}}"#,
        )
        .expect("parses");
        assert_eq!(list.resolve(&present), Ok(vec!["--b".to_owned(), "2".to_owned()]));
        assert_eq!(list.resolve(&absent), Ok(vec!["none".to_owned()]));
        let no_else = Arg::parse(r#"{"IfPresent": {"InputName": "b", "Then": ["x"], "Else": null}}"#).expect("parses");
        assert_eq!(no_else.resolve(&absent), Ok(Vec::<String>::new()));
        assert_eq!(
            Arg::parse("{{$.pipeline_root}}").expect("parses").resolve(&present),
            Err("{{$.pipeline_root}}".to_owned())
        );
    }

    #[test]
    fn walking_finds_nested_parts() {
        let arg = Arg::parse(
            r#"{"Concat": ["{{$.inputs.artifacts['d'].metadata}}", {"IfPresent": {"InputName": "b", "Then": "{{$.inputs.parameters['b']}}", "Else": ["{{$.outputs.output_file}}"]}}]}"#,
        )
        .expect("parses");
        assert!(arg.contains_concat());
        assert_eq!(arg.if_presents().len(), 1);
        let found: Vec<String> = arg.placeholders().iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            ["{{$.inputs.artifacts['d'].metadata}}", "{{$.inputs.parameters['b']}}", "{{$.outputs.output_file}}"]
        );
        assert!(arg.placeholders()[0].is_metadata());
        assert!(!arg.placeholders()[1].is_metadata());
        assert!(!Arg::parse("plain").expect("parses").contains_concat());
    }
}
