//! Errors of `kfops-deploy`.

/// Why a storage-URI template cannot be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// `{name}` is not a known variable.
    #[error("unknown variable `{{{name}}}` in `{template}`{}; known variables: {known}", suggestion.as_ref().map(|s| format!(" (did you mean `{{{s}}}`?)")).unwrap_or_default())]
    UnknownVariable {
        /// The template.
        template: String,
        /// The unknown name.
        name: String,
        /// The closest known name.
        suggestion: Option<String>,
        /// The known variables, formatted.
        known: String,
    },
    /// A `{` without its `}` (or a stray `}`).
    #[error("unbalanced brace at character {position} of `{template}`; write `{{{{` or `}}}}` for a literal brace")]
    Unbalanced {
        /// The template.
        template: String,
        /// Character offset of the brace.
        position: usize,
    },
    /// The template uses a variable that has no value for this deploy.
    #[error("`{template}` uses `{{{name}}}`, which is not known for this deploy ({why})")]
    Missing {
        /// The template.
        template: String,
        /// The variable.
        name: String,
        /// Why it has no value.
        why: String,
    },
    /// A value would not be a safe URI path segment.
    #[error(
        "the value `{value}` of `{{{name}}}` contains characters that are not allowed in a storage path (letters, digits, `.`, `_`, `-`)"
    )]
    UnsafeValue {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
    },
}

/// Why an inference check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The sample is not a V1 or V2 request and no protocol is configured.
    #[error("{0}")]
    Sample(String),
    /// The model never reported ready.
    #[error("the model did not become ready: {0}")]
    NotReady(String),
    /// A prediction request failed (status, body or transport).
    #[error("prediction request {attempt} failed: {message}")]
    Predict {
        /// Which request (1-based).
        attempt: u32,
        /// What went wrong.
        message: String,
    },
    /// The answer does not contain the expected output.
    #[error("unexpected output at {path}: expected {expected}, got {actual}")]
    Unexpected {
        /// JSON path of the difference.
        path: String,
        /// What was expected there.
        expected: String,
        /// What the model answered there.
        actual: String,
    },
    /// A prediction request got no (complete) answer within the limit.
    #[error("{what} timed out after {} ms", limit.as_millis())]
    Timeout {
        /// Which request, e.g. `prediction request 1 (POST /v2/models/iris/infer)`.
        what: String,
        /// The limit.
        limit: std::time::Duration,
    },
    /// The HTTP client could not be built.
    #[error("the HTTP client for the inference check could not be built: {0}")]
    Client(String),
}

/// Why a KServe deploy could not be prepared or carried out.
///
/// [`crate::kserve::KserveTarget`] turns these into a [`kfops_core::Error`]
/// (with the rollback result) at the trait boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The manifest template (or a value substituted into it) is invalid.
    #[error("manifest template: {0}")]
    Template(#[from] TemplateError),
    /// The rendered manifest template is not YAML describing one object.
    #[error("the rendered manifest template is not valid YAML: {0}")]
    Yaml(String),
    /// The manifest does not describe the configured InferenceService.
    #[error("{0}")]
    Manifest(String),
    /// The manifest does not match the InferenceService CRD schema (one entry per problem, each starting with
    /// its JSON path).
    #[error("the manifest does not match the InferenceService CRD: {}", errors.join("; "))]
    Invalid {
        /// The problems, e.g. `spec.predictor.model.storageURI: unknown field (allowed: …)`.
        errors: Vec<String>,
    },
    /// No Kubernetes client could be configured (kubeconfig context or in-cluster).
    #[error("cannot configure the Kubernetes client: {0}")]
    Connect(String),
    /// The CRD schema used to validate manifests cannot be loaded.
    #[error("cannot load the InferenceService CRD schema from {path}: {reason}")]
    Schema {
        /// Where it was looked for.
        path: String,
        /// Why it could not be used.
        reason: String,
    },
    /// A Kubernetes API call failed.
    #[error("{action} failed: {source}")]
    Kube {
        /// What was being done, e.g. `applying InferenceService staging/iris`.
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
}
