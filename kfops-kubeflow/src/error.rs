//! Errors of `kfops-kubeflow`.

use std::path::PathBuf;

use serde_json::Value;

use crate::ir::{ParameterType, value_kind};

/// Why a pipeline source could not be compiled into IR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The sandbox for untrusted code cannot run here.
    #[error(
        "the compiler sandbox `{}` does not work here: {reason}; install bubblewrap (e.g. `apt install bubblewrap`) \
         and allow unprivileged user namespaces, or point to a working `bwrap`",
        program.display()
    )]
    SandboxUnavailable {
        /// The `bwrap` executable.
        program: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The pipeline file does not exist.
    #[error("pipeline file `{}` does not exist", path.display())]
    SourceMissing {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// The file extension is not one we know how to handle.
    #[error("cannot compile `{}`: expected a Python pipeline (`.py`) or a compiled pipeline (`.yaml`, `.yml`, `.json`)", path.display())]
    UnsupportedSource {
        /// The offending path.
        path: PathBuf,
    },
    /// No usable Python interpreter.
    #[error("no Python interpreter found to compile `{}` (tried {tried}); install Python 3.9+ or set KFOPS_PYTHON to the interpreter that has the `kfp` package", path.display())]
    PythonMissing {
        /// The pipeline that needed compiling.
        path: PathBuf,
        /// The interpreters that were tried.
        tried: String,
    },
    /// The interpreter exists but cannot import `kfp` (or it is too old).
    #[error(
        "`{python}` cannot compile pipelines: {reason}; install it with `{python} -m pip install 'kfp>=2,<3'` or set KFOPS_PYTHON to an interpreter that has it"
    )]
    KfpMissing {
        /// The interpreter that was used.
        python: String,
        /// What is wrong (not importable, wrong version).
        reason: String,
    },
    /// The user's pipeline code failed to compile; `output` is the compiler's own message.
    #[error("compiling `{}` failed (kfp exited with {status}):\n{output}{}", path.display(), hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    CompilerFailed {
        /// The pipeline source.
        path: PathBuf,
        /// The exit status, as text.
        status: String,
        /// The compiler's stderr/stdout, trimmed to the part that explains the failure.
        output: String,
        /// What to change in kfops.yaml, when the failure is about the configuration.
        hint: Option<String>,
    },
    /// The compiler ran longer than allowed.
    #[error("compiling `{}` did not finish within {secs} s; is the pipeline module doing work at import time?", path.display())]
    Timeout {
        /// The pipeline source.
        path: PathBuf,
        /// The limit in seconds.
        secs: u64,
    },
    /// Reading or writing a file failed.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What was being done ("reading", "writing", "starting").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The compiled output is not a valid pipeline.
    #[error(transparent)]
    Ir(#[from] IrError),
}

// ---- IR errors (owned by the `ir` module) ----

/// The text format of a compiled pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// YAML, as written by `kfp dsl compile` (possibly several documents).
    Yaml,
    /// JSON, as taken and returned by the KFP API.
    Json,
}

impl std::fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Yaml => "YAML",
            Self::Json => "JSON",
        })
    }
}

/// How a pipeline is named in messages: the file, or "the pipeline document".
fn subject(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!("`{}`", path.display()),
        None => "the pipeline document".to_owned(),
    }
}

/// Where an error is, as a message prefix: `file:line:column: ` when the file is
/// known, `line L, column C: ` otherwise, nothing when nothing is known.
fn place(file: &Option<PathBuf>, line: &Option<usize>, column: &Option<usize>) -> String {
    let at = match (line, column) {
        (Some(line), Some(column)) => Some((line, column)),
        _ => None,
    };
    match (file, at) {
        (Some(path), Some((line, column))) => format!("{}:{line}:{column}: ", path.display()),
        (Some(path), None) => format!("{}: ", path.display()),
        (None, Some((line, column))) => format!("line {line}, column {column}: "),
        (None, None) => String::new(),
    }
}

/// Why a compiled pipeline (IR) could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IrError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file name does not say YAML or JSON.
    #[error("cannot read `{}` as a compiled pipeline: expected a `.yaml`, `.yml` or `.json` file", path.display())]
    UnsupportedExtension {
        /// The file.
        path: PathBuf,
    },
    /// There is nothing in the document.
    #[error("{} is empty; expected a compiled KFP pipeline (the output of `kfp dsl compile`)", subject(.file))]
    Empty {
        /// The file, when known.
        file: Option<PathBuf>,
    },
    /// The text is not valid YAML/JSON, or a field has the wrong shape.
    #[error("{}invalid {format}: {message}", place(.file, .line, .column))]
    Invalid {
        /// The file, when known.
        file: Option<PathBuf>,
        /// YAML or JSON.
        format: DocumentFormat,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// 1-based column of the problem, when known.
        column: Option<usize>,
        /// What is wrong, with the key path (`root.dag.tasks.x.dependentTasks: …`)
        /// when the parser knows it.
        message: String,
    },
    /// The document is something else than a compiled KFP v2 pipeline.
    #[error("{} is not a compiled KFP pipeline: found {found}; {hint}", subject(.file))]
    NotAPipeline {
        /// The file, when known.
        file: Option<PathBuf>,
        /// What was found instead (`a list`, `a KFP v1 component definition`, …).
        found: String,
        /// How to get a compiled pipeline.
        hint: String,
    },
    /// The document is an Argo `Workflow`, i.e. a pipeline compiled by kfp 1.x.
    #[error(
        "{} is a KFP v1 pipeline (an Argo `Workflow` compiled by kfp 1.x); kfops needs a KFP v2 \
         pipeline: port the pipeline code to kfp 2 and compile it with `kfp dsl compile`",
        subject(.file)
    )]
    KfpV1Workflow {
        /// The file, when known.
        file: Option<PathBuf>,
    },
    /// The `schemaVersion` is not 2.x.
    #[error(
        "{} has schemaVersion {found}, which is not supported; kfops reads KFP v2 pipelines \
         (schemaVersion 2.x, e.g. `2.1.0` as written by kfp 2)",
        subject(.file)
    )]
    UnsupportedSchemaVersion {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The version found, as shown in the message (`` `1.0.0` ``, or a
        /// description when it is not a string).
        found: String,
    },
}

impl IrError {
    /// Names `file` in an error from parsing text (e.g. [`PipelineJob::from_yaml_str`]
    /// on a file's contents), so the message points at it. Errors that already name
    /// a file are returned unchanged.
    ///
    /// [`PipelineJob::from_yaml_str`]: crate::ir::PipelineJob::from_yaml_str
    pub fn in_file(mut self, file: &std::path::Path) -> Self {
        match &mut self {
            Self::Empty { file: slot }
            | Self::Invalid { file: slot, .. }
            | Self::NotAPipeline { file: slot, .. }
            | Self::KfpV1Workflow { file: slot }
            | Self::UnsupportedSchemaVersion { file: slot, .. } => {
                slot.get_or_insert_with(|| file.to_path_buf());
            }
            Self::Read { .. } | Self::UnsupportedExtension { .. } => {}
        }
        self
    }
}

// ---- Problems found while reading IR (used by the `ir` module) ----

/// A problem with one run argument (or a missing one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgumentProblem {
    /// The pipeline has no input of this name.
    #[error("unknown pipeline input `{name}`{}; {}", suggestion_text(.suggestion), declared_text(.declared))]
    Unknown {
        /// The argument name given.
        name: String,
        /// The closest declared name, if one is plausible.
        suggestion: Option<String>,
        /// Every declared parameter input.
        declared: Vec<String>,
    },
    /// The input is an artifact, which runs cannot receive as arguments.
    #[error(
        "`{name}` is an artifact input of the pipeline; artifacts cannot be passed as run \
         arguments, only parameters can (create the artifact inside the pipeline instead, e.g. \
         with `dsl.importer` from a string parameter holding its URI)"
    )]
    ArtifactInput {
        /// The input name.
        name: String,
    },
    /// The value does not fit the declared type.
    #[error(
        "input `{name}` expects {expected} ({}), got {}: {}{}",
        expected.describe(),
        article(value_kind(.value)),
        short_json(.value),
        type_hint(expected, .value)
    )]
    WrongType {
        /// The input name.
        name: String,
        /// The declared type.
        expected: ParameterType,
        /// The value given.
        value: Value,
    },
    /// A required input (not optional, no default) was not given.
    #[error("missing required input `{name}` ({expected}): it has no default; pass a value for it")]
    Missing {
        /// The input name.
        name: String,
        /// The declared type.
        expected: ParameterType,
    },
}

/// Why a command or argument could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceholderError {
    /// A `{{$…}}` form this parser does not know.
    #[error(
        "unknown placeholder `{placeholder}`; expected one of {{{{$}}}}, \
         {{{{$.inputs.parameters['NAME']}}}}, {{{{$.inputs.artifacts['NAME'].path|uri|metadata}}}}, \
         {{{{$.outputs.parameters['NAME'].output_file}}}}, {{{{$.outputs.artifacts['NAME'].path|uri|metadata}}}}, \
         {{{{$.outputs.output_file}}}}, {{{{$.outputMetadataUri}}}} or a {{{{$.pipeline_*}}}} / {{{{$.workspace_path}}}} placeholder"
    )]
    Unknown {
        /// The placeholder as written, braces included.
        placeholder: String,
    },
    /// `{{$` without a closing `}}`.
    #[error("placeholder `{snippet}` is not closed with `}}}}`")]
    Unterminated {
        /// The text from `{{$` on (shortened).
        snippet: String,
    },
    /// The argument starts like a `Concat`/`IfPresent` object but is not valid JSON.
    #[error("argument looks like a {kind} placeholder but is not valid JSON: {message}")]
    MalformedJson {
        /// `Concat` or `IfPresent`.
        kind: &'static str,
        /// The JSON parser's message.
        message: String,
    },
    /// A `Concat`/`IfPresent` object with the wrong shape.
    #[error("invalid {kind} placeholder: {message}")]
    Invalid {
        /// `Concat`, `IfPresent` or `placeholder` (for an unexpected item).
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Why a binding has no single value source (protobuf `oneof kind`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// None of the source fields is set.
    #[error("no value source is set (expected one of {})", .expected.join(", "))]
    Missing {
        /// The fields one of which was expected.
        expected: &'static [&'static str],
    },
    /// More than one source field is set.
    #[error("several value sources are set ({}); keep exactly one", .found.join(", "))]
    Several {
        /// The fields that are set.
        found: Vec<&'static str>,
    },
}

// Message helpers of `ArgumentProblem`.

fn suggestion_text(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
}

fn declared_text(declared: &[String]) -> String {
    if declared.is_empty() {
        "the pipeline declares no parameter inputs".to_owned()
    } else {
        let names: Vec<String> = declared.iter().map(|n| format!("`{n}`")).collect();
        format!("the pipeline's inputs are {}", names.join(", "))
    }
}

/// How to fix the most common mismatches: a quoted number or boolean, an
/// unquoted string (values are never coerced silently).
fn type_hint(expected: &ParameterType, value: &Value) -> &'static str {
    match (expected, value) {
        (ParameterType::String, Value::Number(_) | Value::Bool(_)) => {
            " (quote it to pass it as a string: in YAML `key: \"1\"`, on the command line `-p 'key=\"1\"'`)"
        }
        (ParameterType::NumberInteger | ParameterType::NumberDouble, Value::String(s))
            if s.trim().parse::<f64>().is_ok() =>
        {
            " (pass it unquoted, as a JSON number)"
        }
        (ParameterType::Boolean, Value::String(s)) if s == "true" || s == "false" => {
            " (pass it unquoted, as a JSON boolean)"
        }
        _ => "",
    }
}

/// "an integer", "a float", … for a [`value_kind`].
fn article(kind: &str) -> String {
    let vowel = kind.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// The value as compact JSON, shortened for messages.
fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 { format!("{}…", text.chars().take(57).collect::<String>()) } else { text }
}

// ---- Local runner ----

/// Why the embedded local runner could not run (or finish) a pipeline.
///
/// Task failures are not errors: they are recorded in the run (state FAILED
/// with the task's message and log tail). These are the failures of the runner itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// Reading or writing the run store failed.
    #[error("{action} `{}`: {source}", path.display())]
    Store {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A run record could not be read back.
    #[error("the run record `{}` is damaged: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// No run with this id exists in the store.
    #[error("no local run `{id}` under `{}`; `kfc runs list` shows the runs there", root.display())]
    NotFound {
        /// The requested id (or prefix).
        id: String,
        /// The run store.
        root: PathBuf,
    },
    /// A run-id prefix matches several runs.
    #[error("`{id}` matches {count} runs; give more of the id")]
    Ambiguous {
        /// The prefix.
        id: String,
        /// How many runs match.
        count: usize,
    },
    /// The pipeline's run arguments do not fit its inputs.
    #[error("the run arguments do not fit the pipeline:\n  {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Arguments {
        /// Every problem.
        problems: Vec<ArgumentProblem>,
    },
    /// The pipeline has structural errors the runner cannot work around.
    #[error("the pipeline cannot run: {0}")]
    Invalid(String),
    /// A published version of that name exists with different contents.
    #[error(
        "pipeline `{pipeline}` already has a version `{version}` with different contents; publish under a new version name"
    )]
    VersionConflict {
        /// The pipeline name.
        pipeline: String,
        /// The version name.
        version: String,
    },
}

// ---- CEL (local runner conditions) ----

/// Why a CEL expression of a compiled pipeline (a task's `triggerPolicy.condition` or an
/// input's `parameterExpressionSelector`) could not be parsed or evaluated by the local runner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CelError {
    /// The text is not valid CEL.
    #[error("syntax error at line {line}, column {column}: {message}\n{snippet}")]
    Syntax {
        /// What is wrong.
        message: String,
        /// 1-based line of the offending character.
        line: usize,
        /// 1-based column (in characters) of the offending character.
        column: usize,
        /// The offending line with a caret under the column.
        snippet: String,
    },
    /// Well-formed, but rejected by the type check cel-go runs before evaluating: operands
    /// whose types can never match, an unknown function.
    #[error("type error at line {line}, column {column}: {message}\n{snippet}")]
    Check {
        /// What is wrong.
        message: String,
        /// 1-based line of the offending operator or name.
        line: usize,
        /// 1-based column (in characters) of the offending operator or name.
        column: usize,
        /// The offending line with a caret under the column.
        snippet: String,
    },
    /// The expression is longer than the evaluator accepts.
    #[error("the expression is {chars} characters long; the limit is {limit}")]
    TooLong {
        /// Length of the expression, in characters.
        chars: usize,
        /// The limit, in characters.
        limit: usize,
    },
    /// The expression nests sub-expressions deeper than the evaluator accepts.
    #[error("the expression nests more than {limit} levels deep at line {line}, column {column}\n{snippet}")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
        /// 1-based line where the limit was crossed.
        line: usize,
        /// 1-based column where the limit was crossed.
        column: usize,
        /// The line with a caret under the column.
        snippet: String,
    },
    /// Valid CEL, but a part of the language this evaluator does not implement.
    #[error("{feature} is not supported by the local runner's CEL evaluator")]
    Unsupported {
        /// The unsupported feature.
        feature: String,
    },
    /// A name that is neither a bound variable nor a type.
    #[error("undeclared reference to '{name}'")]
    UnknownVariable {
        /// The name.
        name: String,
    },
    /// A variable the environment declares but that has no value in this evaluation (as the
    /// backend's selector environment, where only the set field of the input value is bound).
    #[error("no such attribute: '{name}' is not set for this value")]
    UnsetVariable {
        /// The variable.
        name: String,
    },
    /// A map (for instance `inputs.parameter_values`) has no entry for the key.
    #[error("no such key: {key}{}", cel_known_keys(known))]
    NoSuchKey {
        /// The missing key, as a CEL literal.
        key: String,
        /// Some keys the map does have, as CEL literals.
        known: Vec<String>,
    },
    /// A list index outside the list.
    #[error("index {index} out of range in list of size {size}")]
    IndexOutOfRange {
        /// The index.
        index: i64,
        /// The list's size.
        size: usize,
    },
    /// An operator or function applied to operand types it has no overload for.
    #[error("no such overload: {signature}")]
    NoSuchOverload {
        /// The operation with its operand types, such as `string + int`.
        signature: String,
    },
    /// Integer division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// Integer modulus by zero.
    #[error("modulus by zero")]
    ModulusByZero,
    /// An integer operation or conversion whose result does not fit 64 bits.
    #[error("{} overflow: {operation}", if *unsigned { "unsigned integer" } else { "integer" })]
    Overflow {
        /// The operation, such as `9223372036854775807 + 1`.
        operation: String,
        /// Whether the result type is `uint`.
        unsigned: bool,
    },
    /// A conversion function (`int()`, `double()`, `bool()`, …) that cannot convert its argument.
    #[error("type conversion error: cannot convert {value} to {target}: {reason}")]
    Conversion {
        /// The argument, with its type (`string "abc"`).
        value: String,
        /// The target type.
        target: String,
        /// Why it cannot be converted.
        reason: String,
    },
    /// `parseJson()` was given text that is not JSON.
    #[error("parseJson: failed to unmarshal JSON: {message}")]
    ParseJson {
        /// The JSON parser's message.
        message: String,
    },
    /// Any other evaluation error (ordering NaN, a duplicate map key, iterating a non-list, …).
    #[error("{message}")]
    Eval {
        /// What went wrong.
        message: String,
    },
    /// The evaluation took more steps than allowed (nested comprehensions over large inputs).
    #[error("the evaluation exceeded the cost limit of {limit} steps")]
    CostLimit {
        /// The limit.
        limit: u64,
    },
    /// A condition evaluated to something else than a bool.
    #[error("the condition evaluated to {kind} {value}, not to a bool")]
    NotBool {
        /// The result's CEL type.
        kind: String,
        /// The result, as a CEL literal.
        value: String,
    },
    /// A selector's result has no JSON (protobuf `Value`) form.
    #[error("the result cannot be converted to a JSON value: {reason}")]
    NotJson {
        /// Why not.
        reason: String,
    },
}

/// " (the map has keys …)" for [`CelError::NoSuchKey`].
fn cel_known_keys(known: &[String]) -> String {
    match known {
        [] => " (the map is empty)".to_owned(),
        keys => format!(" (the map has keys {})", keys.join(", ")),
    }
}

// ---- KFP REST client ----

/// The credential options, named in "not authenticated" errors.
const KFP_AUTH_HINT: &str = "configure credentials with one of kubeflow.auth.token, kubeflow.auth.token_env, \
kubeflow.auth.token_file, kubeflow.auth.cookie, kubeflow.auth.cookie_env or kubeflow.auth.cookie_file \
(or the variables KFOPS_KUBEFLOW__AUTH__TOKEN, KFOPS_KUBEFLOW__AUTH__TOKEN_ENV, KFOPS_KUBEFLOW__AUTH__TOKEN_FILE, \
KFOPS_KUBEFLOW__AUTH__COOKIE, KFOPS_KUBEFLOW__AUTH__COOKIE_ENV, KFOPS_KUBEFLOW__AUTH__COOKIE_FILE)";

/// Why a call to the Kubeflow Pipelines REST API (v2beta1) failed.
///
/// Messages never contain credentials: requests are named by method and path
/// (without the query string), credential sources by their kind and location.
/// [`KfpError::kind`] (and the `From` conversion into [`kfops_core::Error`])
/// classify the failure independently of the server's error body shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KfpError {
    /// The configured endpoint is not a usable `http(s)://` URL.
    #[error("invalid Kubeflow Pipelines endpoint `{url}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered with an error status. `message` is taken from the
    /// body, whatever its shape (`google.rpc.Status`, the upload routes'
    /// `error_message`, KFP 1.x `error`, or plain text).
    #[error("{method} {path} failed with HTTP {status}: {message}{}", kfp_status_hint(*status))]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The server's message (the user-facing detail when the body has one).
        message: String,
        /// The HTTP method.
        method: String,
        /// The request path, without the query string.
        path: String,
    },
    /// An authentication proxy in front of KFP refused the request: it
    /// redirected to a sign-in page, or answered with HTML instead of JSON.
    #[error(
        "not authenticated to Kubeflow Pipelines ({method} {path}): {reason}; credentials in use: {credentials}; {KFP_AUTH_HINT}"
    )]
    NotAuthenticated {
        /// The HTTP method.
        method: String,
        /// The request path, without the query string.
        path: String,
        /// What the proxy did (redirect target, HTML page).
        reason: String,
        /// Which credential source was used (never its value).
        credentials: String,
    },
    /// A credential source could not be read.
    #[error("cannot read the Kubeflow Pipelines credentials from {source_name}: {reason}")]
    Credentials {
        /// The source, e.g. "the token file `/var/run/…/token`" or "the environment variable `KFP_TOKEN`".
        source_name: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The request did not reach the server or the connection broke.
    #[error("{method} {path}: cannot reach Kubeflow Pipelines at {endpoint}: {message}")]
    Transport {
        /// The HTTP method.
        method: String,
        /// The request path, without the query string.
        path: String,
        /// The configured endpoint.
        endpoint: String,
        /// The transport error chain.
        message: String,
    },
    /// The server did not answer within the request timeout.
    #[error("{method} {path}: no answer from Kubeflow Pipelines within {} s", after.as_secs_f32())]
    Timeout {
        /// The HTTP method.
        method: String,
        /// The request path, without the query string.
        path: String,
        /// The timeout that passed.
        after: std::time::Duration,
    },
    /// A successful answer whose body is not what the API returns.
    #[error("{method} {path}: unexpected response from Kubeflow Pipelines: {message}")]
    Decode {
        /// The HTTP method.
        method: String,
        /// The request path, without the query string.
        path: String,
        /// What could not be read, with the start of the body.
        message: String,
    },
    /// The server runs in multi-user mode and no namespace is configured.
    #[error(
        "Kubeflow Pipelines runs in multi-user mode, so {operation} needs a profile namespace; set kubeflow.namespace (or pipeline.namespace, KFOPS_KUBEFLOW__NAMESPACE, --namespace)"
    )]
    NamespaceRequired {
        /// What was being done, e.g. "listing experiments".
        operation: String,
    },
    /// The pipeline package exceeds the server's upload limit.
    #[error("the compiled pipeline is {bytes} bytes; Kubeflow Pipelines accepts uploads of at most {limit} bytes")]
    TooLarge {
        /// Size of the package.
        bytes: usize,
        /// The server's limit.
        limit: usize,
    },
    /// Waiting for a run to finish took longer than allowed.
    #[error("run {run_id} did not finish within {} s (last state: {state})", waited.as_secs())]
    WaitTimeout {
        /// The run.
        run_id: String,
        /// Its last polled state.
        state: String,
        /// How long it was waited for.
        waited: std::time::Duration,
    },
    /// The server's answers contradict each other (e.g. an upload succeeded
    /// but the new version is not listed).
    #[error("Kubeflow Pipelines answered inconsistently: {message}")]
    Unexpected {
        /// What was inconsistent.
        message: String,
    },
}

/// A hint appended to [`KfpError::Api`] for statuses with a known remedy.
fn kfp_status_hint(status: u16) -> String {
    match status {
        401 => format!(" (the server refused the credentials; {KFP_AUTH_HINT})"),
        403 => {
            " (the credentials are valid but lack access; check the namespace and the profile's contributors)".into()
        }
        _ => String::new(),
    }
}

impl KfpError {
    /// The failure class, independent of how the server phrased it.
    pub fn kind(&self) -> kfops_core::ErrorKind {
        use kfops_core::ErrorKind;
        match self {
            KfpError::InvalidEndpoint { .. } | KfpError::NamespaceRequired { .. } | KfpError::TooLarge { .. } => {
                ErrorKind::InvalidInput
            }
            KfpError::Api { status, .. } => match status {
                400 | 422 => ErrorKind::InvalidInput,
                401 => ErrorKind::Unauthenticated,
                403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                409 | 412 => ErrorKind::Conflict,
                408 | 504 => ErrorKind::Timeout,
                429 | 502 | 503 => ErrorKind::Unavailable,
                501 => ErrorKind::Unsupported,
                400..=499 => ErrorKind::InvalidInput,
                _ => ErrorKind::Other,
            },
            KfpError::NotAuthenticated { .. } | KfpError::Credentials { .. } => ErrorKind::Unauthenticated,
            KfpError::Transport { .. } => ErrorKind::Unavailable,
            KfpError::Timeout { .. } | KfpError::WaitTimeout { .. } => ErrorKind::Timeout,
            KfpError::Decode { .. } | KfpError::Unexpected { .. } => ErrorKind::Other,
        }
    }

    /// The HTTP status of an [`KfpError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            KfpError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<KfpError> for kfops_core::Error {
    fn from(e: KfpError) -> Self {
        kfops_core::Error::new(e.kind(), e.to_string()).with_source(e)
    }
}

// ---- Container registries ----

/// Why a registry could not tell whether an image exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The reference has neither a tag nor a digest.
    #[error("cannot look up `{image}` in its registry: the reference has no tag or digest")]
    NoTag {
        /// The reference.
        image: String,
    },
    /// The registry could not be reached.
    #[error("cannot reach the registry at {url}: {message}")]
    Transport {
        /// What was requested.
        url: String,
        /// The transport error.
        message: String,
    },
    /// Authentication failed or is missing.
    #[error("the registry refused {url}: {reason}")]
    Unauthorized {
        /// What was requested.
        url: String,
        /// Why.
        reason: String,
    },
    /// Any other unexpected answer.
    #[error("the registry answered HTTP {status} for {url}")]
    Status {
        /// What was requested.
        url: String,
        /// The HTTP status.
        status: u16,
    },
}

// ---- Image build contexts ----

/// Why the build context of an image could not be assembled or archived
/// (see [`crate::image::context`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A configured folder (`dockerfile_folder_path` or an `other_folders_path`
    /// entry) cannot be used.
    #[error("image folder `{path}` cannot be used: {reason}")]
    InvalidFolder {
        /// The folder as configured.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configured folder does not exist.
    #[error("image folder `{path}` does not exist (looked for `{}`); paths are relative to the project root", looked_at.display())]
    FolderMissing {
        /// The folder as configured.
        path: String,
        /// Where it was looked for.
        looked_at: PathBuf,
    },
    /// The Dockerfile folder has no `Dockerfile`.
    #[error("the Dockerfile folder `{folder}` has no `Dockerfile`{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    DockerfileMissing {
        /// The folder as configured.
        folder: String,
        /// A likely fix, e.g. a file whose name differs only in case.
        hint: Option<String>,
    },
    /// Two folders would land on the same path in the context.
    #[error(
        "`{first}` and `{second}` would both be `{archive_path}` in the build context; rename one of them or drop it from `other_folders_path`"
    )]
    Collision {
        /// The path in the context both would occupy.
        archive_path: String,
        /// The entry that was there first (project-relative or as configured).
        first: String,
        /// The extra folder that collides with it, as configured.
        second: String,
    },
    /// A symlink points outside the project (or is absolute).
    #[error(
        "symlink `{}` points to `{}`, outside the project; build contexts keep symlinks as links, so it would dangle in the image: replace it with a copy or list it in `.dockerignore`",
        link.display(),
        target.display()
    )]
    SymlinkOutside {
        /// The link.
        link: PathBuf,
        /// Its target, as stored.
        target: PathBuf,
    },
    /// An entry that is not a regular file, folder or symlink.
    #[error("`{}` is {what}, which cannot go into a build context; list it in `.dockerignore`", path.display())]
    UnsupportedFileType {
        /// The entry.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// A file name (or symlink target) that is not UTF-8.
    #[error("`{}` is not valid UTF-8; build contexts need UTF-8 file names", path.display())]
    NonUtf8Path {
        /// The path, lossily displayed.
        path: PathBuf,
    },
    /// A `.dockerignore` line is not a valid pattern.
    #[error(".dockerignore line {line}: invalid pattern `{pattern}`: {reason}")]
    InvalidIgnorePattern {
        /// The 1-based line number.
        line: usize,
        /// The line, trimmed.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading the context from disk failed.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file changed between assembling the context and writing its archive.
    #[error("`{}` changed while the build context was being archived; assemble the context again", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// Writing the archive failed.
    #[error("writing the build-context archive: {0}")]
    Write(#[source] std::io::Error),
}

impl ContextError {
    /// The failure class.
    pub fn kind(&self) -> kfops_core::ErrorKind {
        use kfops_core::ErrorKind;
        match self {
            ContextError::FolderMissing { .. } => ErrorKind::NotFound,
            ContextError::Changed { .. } => ErrorKind::Conflict,
            ContextError::Io { .. } | ContextError::Write(_) => ErrorKind::Other,
            ContextError::InvalidFolder { .. }
            | ContextError::DockerfileMissing { .. }
            | ContextError::Collision { .. }
            | ContextError::SymlinkOutside { .. }
            | ContextError::UnsupportedFileType { .. }
            | ContextError::NonUtf8Path { .. }
            | ContextError::InvalidIgnorePattern { .. } => ErrorKind::InvalidInput,
        }
    }
}

impl From<ContextError> for kfops_core::Error {
    fn from(e: ContextError) -> Self {
        kfops_core::Error::new(e.kind(), e.to_string()).with_source(e)
    }
}

// ---- S3 ----

/// Why a request to S3-compatible storage (MinIO in Kubeflow, AWS S3) failed
/// (see [`crate::image::s3`]). Never carries the secret key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The configuration or an argument is unusable (endpoint URL, bucket name, object key).
    #[error("invalid S3 configuration: {0}")]
    Config(String),
    /// A key of the credentials secret is missing or empty.
    #[error(
        "the S3 credentials secret has no (or an empty) `{key}` key; Kubeflow's `mlpipeline-minio-artifact` \
         secret carries the keys `accesskey` and `secretkey`"
    )]
    MissingCredential {
        /// The missing key.
        key: String,
    },
    /// The server could not be reached, or its answer could not be read.
    #[error("S3 {operation} of `{target}`: cannot reach {endpoint}: {message}")]
    Transport {
        /// The S3 operation (`PutObject`, `HeadBucket`, ...).
        operation: String,
        /// `bucket` or `bucket/key`.
        target: String,
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        message: String,
    },
    /// The server answered with an error status.
    #[error("S3 {operation} of `{target}` failed with HTTP {status} {code}: {message}")]
    Status {
        /// The S3 operation (`PutObject`, `HeadBucket`, ...).
        operation: String,
        /// `bucket` or `bucket/key`.
        target: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code from the XML body (`SignatureDoesNotMatch`, `NoSuchBucket`, ...),
        /// or the HTTP reason phrase when the answer had no body (HEAD requests).
        code: String,
        /// The S3 error message from the XML body, or a description of the status.
        message: String,
    },
}

impl S3Error {
    /// The failure class.
    pub fn kind(&self) -> kfops_core::ErrorKind {
        use kfops_core::ErrorKind;
        match self {
            S3Error::Config(_) | S3Error::MissingCredential { .. } => ErrorKind::InvalidInput,
            S3Error::Transport { .. } => ErrorKind::Unavailable,
            S3Error::Status { status, code, .. } => match (*status, code.as_str()) {
                (_, "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "InvalidToken" | "ExpiredToken") | (401, _) => {
                    ErrorKind::Unauthenticated
                }
                (403, _) => ErrorKind::PermissionDenied,
                (404, _) => ErrorKind::NotFound,
                (409, _) => ErrorKind::Conflict,
                (400, _) => ErrorKind::InvalidInput,
                (500..=599, _) => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            },
        }
    }
}

impl From<S3Error> for kfops_core::Error {
    fn from(e: S3Error) -> Self {
        kfops_core::Error::new(e.kind(), e.to_string()).with_source(e)
    }
}

// ---- Kaniko ----

/// Why an in-cluster Kaniko image build failed (see [`crate::image::kaniko`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KanikoError {
    /// The build description cannot be turned into a valid Job.
    #[error("invalid Kaniko build for image `{image}`: {reason}")]
    InvalidJob {
        /// The configured image name.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A Job with the same name exists already (typically a build of the same
    /// image and tag that is still running, or one left behind by a crash).
    #[error(
        "cannot build image `{image}`: the Kaniko Job `{namespace}/{name}` already exists (a build of the same image and tag is probably running); wait for it to finish or delete it with `kubectl delete job -n {namespace} {name}`"
    )]
    AlreadyExists {
        /// The configured image name.
        image: String,
        /// The namespace of the Job.
        namespace: String,
        /// The name of the Job.
        name: String,
    },
    /// Kaniko ran and failed; `log_tail` holds the last lines of its log.
    #[error("building image `{image}` failed ({reason}); last lines of the Kaniko log:\n{log_tail}")]
    BuildFailed {
        /// The configured image name.
        image: String,
        /// Why Kubernetes considers the Job failed (its `Failed` condition).
        reason: String,
        /// The tail of the Kaniko container log (or why it could not be read).
        log_tail: String,
    },
    /// The build did not finish in time; the Job was deleted.
    #[error(
        "building image `{image}` timed out after {after:?} (last status: {last_status}); the Kaniko Job was deleted"
    )]
    Timeout {
        /// The configured image name.
        image: String,
        /// The time limit that was exceeded.
        after: std::time::Duration,
        /// The last status of the Job's pod that was observed.
        last_status: String,
    },
    /// The Kubernetes API refused a request or could not be reached.
    #[error("{action} for image `{image}`: {source}")]
    Kube {
        /// The configured image name.
        image: String,
        /// What was being done, e.g. "creating the Kaniko Job".
        action: &'static str,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
}

impl KanikoError {
    /// The failure class.
    pub fn kind(&self) -> kfops_core::ErrorKind {
        use kfops_core::ErrorKind;
        match self {
            KanikoError::InvalidJob { .. } => ErrorKind::InvalidInput,
            KanikoError::AlreadyExists { .. } => ErrorKind::Conflict,
            KanikoError::Timeout { .. } => ErrorKind::Timeout,
            KanikoError::BuildFailed { .. } => ErrorKind::Other,
            KanikoError::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) if s.code == 401 => ErrorKind::Unauthenticated,
                kube::Error::Api(s) if s.code == 403 => ErrorKind::PermissionDenied,
                kube::Error::Api(s) if s.code == 404 => ErrorKind::NotFound,
                kube::Error::Api(s) if s.code == 409 => ErrorKind::Conflict,
                kube::Error::Api(s) if (400..500).contains(&s.code) => ErrorKind::InvalidInput,
                _ => ErrorKind::Unavailable,
            },
        }
    }
}

impl From<KanikoError> for kfops_core::Error {
    fn from(e: KanikoError) -> Self {
        kfops_core::Error::new(e.kind(), e.to_string()).with_source(e)
    }
}
