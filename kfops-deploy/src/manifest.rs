//! The InferenceService manifest: built from [`KserveSettings`] (or from the
//! user's manifest template) and checked against the official CRD schema.
//!
//! [`build`] produces the object kfops applies with server-side apply:
//! `apiVersion: serving.kserve.io/v1beta1`, `kind: InferenceService`, the
//! configured name, namespace and labels, the `serving.kserve.io/deploymentMode`
//! annotation (always explicit: the controller's built-in default changed
//! between KServe versions) and, in Knative mode,
//! `serving.kserve.io/enable-tag-routing: "true"` so the new revision can be
//! checked through its own `latest` tag URL before it gets traffic. The
//! storage URI's scheme must be one KServe supports ([`STORAGE_SCHEMES`]).
//!
//! A manifest template (`manifest_template`) gives full control over the
//! object. Its variables are `{run_id}`, `{version_id}`, `{sha}`, `{pr}`,
//! `{storage_uri}`, `{service_name}` and `{namespace}`, with the rules of
//! [`crate::storage`]: `{{`/`}}` are literal braces, unknown variables and
//! unbalanced braces are errors, and values must be plain tokens (no spaces,
//! quotes or YAML punctuation) so a value can never change the YAML structure.
//!
//! [`validate`] checks a manifest against the CRD's `openAPIV3Schema` with a
//! compact validator for the JSON-Schema subset Kubernetes structural schemas
//! use (type, properties, required, additionalProperties, enum, items, anyOf,
//! x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields, nullable,
//! int32/int64 ranges, minimum/maximum, min/max length and items). `pattern`
//! is not checked. Unknown fields are reported (the API server would prune or
//! reject them), with the JSON path of every problem.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::error::{DeployError, TemplateError};
use crate::kserve::{DeploymentMode, KserveSettings};
use crate::storage::TemplateVars;

/// `apiVersion` of the InferenceService.
pub const API_VERSION: &str = "serving.kserve.io/v1beta1";
/// `kind` of the InferenceService.
pub const KIND: &str = "InferenceService";
/// The annotation that selects Knative or Standard mode.
pub const MODE_ANNOTATION: &str = "serving.kserve.io/deploymentMode";
/// The annotation that gives the latest revision its own `latest` tag URL (Knative mode).
pub const TAG_ROUTING_ANNOTATION: &str = "serving.kserve.io/enable-tag-routing";
/// The variables a manifest template may use.
pub const TEMPLATE_VARIABLES: [&str; 7] =
    ["run_id", "version_id", "sha", "pr", "storage_uri", "service_name", "namespace"];
/// The storage-URI schemes KServe's storage initializer accepts (`SupportedStorageURIPrefixList`).
pub const STORAGE_SCHEMES: [&str; 12] = [
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "hf://",
    "oci://",
    "oci+native://",
    "oci+fetch://",
];
/// The CRD file, relative to the directory that holds the workspace.
pub const CRD_FILE: &str = "shared/reference/kserve/serving.kserve.io_inferenceservices.yaml";

/// The InferenceService to apply for `settings` and the deploy's `vars`
/// (without `canaryTrafficPercent`: the rollout adds it).
pub fn build(settings: &KserveSettings, vars: &TemplateVars) -> Result<Value, DeployError> {
    for (what, value) in [("service name", &settings.service_name), ("namespace", &settings.namespace)] {
        if let Err(why) = dns_label(value) {
            return Err(DeployError::Manifest(format!(
                "the {what} `{value}` is not a valid Kubernetes name: {why} (a DNS-1123 label: lowercase letters, \
                 digits and `-`, at most 63 characters, starting and ending with a letter or digit)"
            )));
        }
    }
    if !STORAGE_SCHEMES.iter().any(|p| settings.storage_uri.starts_with(p)) {
        return Err(DeployError::Manifest(format!(
            "the storage URI `{}` has a scheme KServe cannot download from; supported: {}",
            settings.storage_uri,
            STORAGE_SCHEMES.join(", ")
        )));
    }
    let mut manifest = match &settings.manifest_template {
        Some(template) => from_template(template, settings, vars)?,
        None => default_manifest(settings),
    };
    let metadata = object_at(&mut manifest, "metadata")?;
    if !settings.labels.is_empty() {
        let labels = object_in(metadata, "labels", "metadata.labels")?;
        for (k, v) in &settings.labels {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let annotations = object_in(metadata, "annotations", "metadata.annotations")?;
    match annotations.get(MODE_ANNOTATION) {
        None => {
            annotations.insert(MODE_ANNOTATION.into(), settings.mode.as_str().into());
        }
        Some(v) => {
            let given = v.as_str().and_then(DeploymentMode::from_annotation);
            if given != Some(settings.mode) {
                return Err(DeployError::Manifest(format!(
                    "the manifest template sets `{MODE_ANNOTATION}: {}`, but the deployment is configured for {} mode; \
                     remove the annotation from the template or change the configured mode",
                    v,
                    settings.mode.as_str()
                )));
            }
            annotations.insert(MODE_ANNOTATION.into(), settings.mode.as_str().into());
        }
    }
    if settings.mode == DeploymentMode::Knative {
        match annotations.get(TAG_ROUTING_ANNOTATION) {
            None => {
                annotations.insert(TAG_ROUTING_ANNOTATION.into(), "true".into());
            }
            Some(v) if v.as_str() == Some("true") => {}
            Some(v) => {
                return Err(DeployError::Manifest(format!(
                    "the manifest template sets `{TAG_ROUTING_ANNOTATION}: {v}`; kfops needs tag routing to check the \
                     new revision before it gets traffic; remove the annotation from the template"
                )));
            }
        }
    }
    if let Err(errors) = validate(&manifest) {
        return Err(DeployError::Invalid { errors });
    }
    Ok(manifest)
}

/// Why `name` is not a DNS-1123 label, if it is not one.
pub fn dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 63 {
        return Err(format!("it is {} characters long", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(format!("it contains `{c}`"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("it starts or ends with `-`".into());
    }
    Ok(())
}

fn default_manifest(settings: &KserveSettings) -> Value {
    let mut model = Map::new();
    model.insert("modelFormat".into(), json!({"name": settings.model_format}));
    if let Some(r) = &settings.runtime {
        model.insert("runtime".into(), r.clone().into());
    }
    if let Some(p) = &settings.protocol_version {
        model.insert("protocolVersion".into(), p.clone().into());
    }
    model.insert("storageUri".into(), settings.storage_uri.clone().into());
    if let Some(r) = &settings.resources {
        model.insert("resources".into(), r.clone());
    }
    let mut predictor = Map::new();
    if let Some(sa) = &settings.service_account {
        predictor.insert("serviceAccountName".into(), sa.clone().into());
    }
    predictor.insert("model".into(), Value::Object(model));
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": settings.service_name, "namespace": settings.namespace},
        "spec": {"predictor": predictor},
    })
}

fn from_template(template: &str, settings: &KserveSettings, vars: &TemplateVars) -> Result<Value, DeployError> {
    let text = render(template, settings, vars)?;
    let value: Value = serde_yaml::from_str(&text).map_err(|e| DeployError::Yaml(e.to_string()))?;
    if !value.is_object() {
        return Err(DeployError::Yaml("the document is not a mapping (one InferenceService object)".into()));
    }
    let expect = [
        ("apiVersion", &value["apiVersion"], API_VERSION),
        ("kind", &value["kind"], KIND),
        ("metadata.name", &value["metadata"]["name"], settings.service_name.as_str()),
        ("metadata.namespace", &value["metadata"]["namespace"], settings.namespace.as_str()),
    ];
    for (path, actual, wanted) in expect {
        if actual.as_str() != Some(wanted) {
            return Err(DeployError::Manifest(format!(
                "the manifest template's `{path}` is {actual}, but it must be `{wanted}` (the configured InferenceService); \
                 use `{{service_name}}` and `{{namespace}}` in the template"
            )));
        }
    }
    if !value["spec"]["predictor"].is_object() {
        return Err(DeployError::Manifest("the manifest template has no `spec.predictor` object".into()));
    }
    if value["spec"]["predictor"].get("canaryTrafficPercent").is_some() {
        return Err(DeployError::Manifest(
            "the manifest template sets `spec.predictor.canaryTrafficPercent`; kfops controls traffic during the \
             rollout, remove it from the template"
                .into(),
        ));
    }
    Ok(value)
}

/// Render a manifest template: [`TEMPLATE_VARIABLES`] with the rules of [`crate::storage`].
fn render(template: &str, settings: &KserveSettings, vars: &TemplateVars) -> Result<String, DeployError> {
    let chars: Vec<char> = template.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' if chars.get(i + 1) == Some(&'{') => {
                out.push('{');
                i += 2;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                out.push('}');
                i += 2;
            }
            '{' => {
                let Some(close) = chars[i + 1..].iter().position(|c| *c == '}').map(|p| p + i + 1) else {
                    return Err(TemplateError::Unbalanced { template: template.into(), position: i }.into());
                };
                let name: String = chars[i + 1..close].iter().collect();
                out.push_str(&value_of(&name, template, settings, vars)?);
                i = close + 1;
            }
            '}' => return Err(TemplateError::Unbalanced { template: template.into(), position: i }.into()),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn value_of(name: &str, template: &str, settings: &KserveSettings, vars: &TemplateVars) -> Result<String, DeployError> {
    let missing = |why: &str| TemplateError::Missing { template: template.into(), name: name.into(), why: why.into() };
    let (value, extra): (String, &str) = match name {
        "run_id" => (vars.run_id.clone().ok_or_else(|| missing("the run does not record it"))?, ""),
        "version_id" => (vars.version_id.clone().ok_or_else(|| missing("the run does not record it"))?, ""),
        "sha" => (vars.sha.clone().ok_or_else(|| missing("the run does not record it"))?, ""),
        "pr" => (
            vars.pr
                .map(|n| n.to_string())
                .ok_or_else(|| missing("the deploy was not requested from a pull request"))?,
            "",
        ),
        "storage_uri" => (settings.storage_uri.clone(), ":/?&=%+@,~"),
        "service_name" => (settings.service_name.clone(), ""),
        "namespace" => (settings.namespace.clone(), ""),
        _ => {
            let lowered = name.to_lowercase();
            let suggestion = TEMPLATE_VARIABLES
                .iter()
                .map(|v| (strsim::levenshtein(&lowered, v), *v))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, v)| v.to_owned());
            return Err(TemplateError::UnknownVariable {
                template: template.into(),
                name: name.into(),
                suggestion,
                known: TEMPLATE_VARIABLES.iter().map(|v| format!("{{{v}}}")).collect::<Vec<_>>().join(", "),
            }
            .into());
        }
    };
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(c);
    if value.is_empty() || !value.chars().all(safe) || value.chars().all(|c| c == '.') {
        return Err(TemplateError::UnsafeValue { name: name.into(), value }.into());
    }
    Ok(value)
}

fn object_at<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>, DeployError> {
    let Some(obj) = v.as_object_mut() else {
        return Err(DeployError::Manifest("the manifest is not an object".into()));
    };
    object_in(obj, key, key)
}

fn object_in<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, DeployError> {
    let entry = obj.entry(key.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().ok_or_else(|| DeployError::Manifest(format!("`{path}` in the manifest is not a mapping")))
}

/// Where the InferenceService CRD file lies in a checkout: `shared/` beside the workspace
/// (`$CARGO_MANIFEST_DIR/../../shared/reference/kserve/…`); [`EMBEDDED_CRD`] is compiled from it.
pub fn crd_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(CRD_FILE)
}

/// The InferenceService CRD (KServe v0.20), compiled into the binary from [`CRD_FILE`].
pub const EMBEDDED_CRD: &str =
    include_str!("../../../shared/reference/kserve/serving.kserve.io_inferenceservices.yaml");

/// The CRD's `spec.versions[0].schema.openAPIV3Schema`, parsed once from [`EMBEDDED_CRD`].
pub fn crd_schema() -> Result<&'static Value, DeployError> {
    static SCHEMA: OnceLock<Result<Value, String>> = OnceLock::new();
    let loaded = SCHEMA.get_or_init(|| {
        let crd: Value = serde_yaml::from_str(EMBEDDED_CRD).map_err(|e| format!("not YAML: {e}"))?;
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        if schema.is_object() { Ok(schema) } else { Err("no spec.versions[0].schema.openAPIV3Schema".into()) }
    });
    loaded
        .as_ref()
        .map_err(|reason| DeployError::Schema { path: format!("{CRD_FILE} (embedded)"), reason: reason.clone() })
}

/// Validate `manifest` against the InferenceService CRD ([`crd_schema`]); every
/// problem is one message starting with its JSON path.
pub fn validate(manifest: &Value) -> Result<(), Vec<String>> {
    let schema = crd_schema().map_err(|e| vec![e.to_string()])?;
    validate_against(schema, manifest)
}

/// Validate `value` against an OpenAPI v3 structural `schema` (the subset in the module docs).
pub fn validate_against(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    check_root(schema, value, &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn check_root(schema: &Value, value: &Value, errors: &mut Vec<String>) {
    let Some(obj) = value.as_object() else {
        errors.push(format!("(root): must be an object, got {}", type_name(value)));
        return;
    };
    // The API server validates `metadata` itself; the CRD only says `type: object`.
    let meta = &value["metadata"];
    if !meta.is_object() {
        errors.push("metadata: required object missing".into());
    } else {
        if !meta["name"].is_string() {
            errors.push("metadata.name: must be a string".into());
        }
        for key in ["labels", "annotations"] {
            if let Some(map) = meta.get(key) {
                match map.as_object() {
                    Some(m) => {
                        for (k, v) in m {
                            if !v.is_string() {
                                errors.push(format!("metadata.{key}.{k}: must be a string, got {}", type_name(v)));
                            }
                        }
                    }
                    None => errors.push(format!("metadata.{key}: must be an object of strings")),
                }
            }
        }
    }
    check_object(schema, obj, "", errors);
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let at = shown(path);
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            errors.push(format!("{at}: must not be null"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !matches!(type_name(value), "integer" | "string") {
            errors.push(format!("{at}: must be an integer or a string, got {}", type_name(value)));
        }
        return;
    }
    if let Some(ty) = schema["type"].as_str() {
        let actual = type_name(value);
        let ok = match ty {
            "number" => matches!(actual, "integer" | "number"),
            other => other == actual,
        };
        if !ok {
            errors.push(format!("{at}: must be {ty}, got {actual} {value}"));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let list = options.iter().map(Value::to_string).collect::<Vec<_>>().join(", ");
        errors.push(format!("{at}: {value} is not one of {list}"));
    }
    if let Some(any) = schema["anyOf"].as_array()
        && !any.iter().any(|s| {
            let mut e = Vec::new();
            check(s, value, path, &mut e);
            e.is_empty()
        })
    {
        errors.push(format!("{at}: matches none of the allowed alternatives"));
    }
    check_ranges(schema, value, at, errors);
    match value {
        Value::Object(obj) => check_object(schema, obj, path, errors),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn check_ranges(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(n) = value.as_i64() {
        let (lo, hi) = match schema["format"].as_str() {
            Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
            _ => (i64::MIN, i64::MAX),
        };
        let lo = schema["minimum"].as_i64().map_or(lo, |m| m.max(lo));
        let hi = schema["maximum"].as_i64().map_or(hi, |m| m.min(hi));
        if n < lo || n > hi {
            errors.push(format!("{at}: {n} is out of range {lo}..={hi}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|m| len < m)
            || schema["maxLength"].as_u64().is_some_and(|m| len > m)
        {
            errors.push(format!("{at}: length {len} is outside the allowed length"));
        }
    }
    if let Some(items) = value.as_array()
        && schema["minItems"].as_u64().is_some_and(|m| (items.len() as u64) < m)
    {
        errors.push(format!("{at}: needs at least {} items", schema["minItems"]));
    }
}

fn check_object(schema: &Value, obj: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    if let Some(required) = schema["required"].as_array() {
        for key in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                errors.push(format!("{}: required field is missing", join(path, key)));
            }
        }
    }
    let props = schema["properties"].as_object();
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    for (key, v) in obj {
        let child = join(path, key);
        if path.is_empty() && key == "metadata" {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(key)) {
            check(s, v, &child, errors);
            continue;
        }
        match schema.get("additionalProperties") {
            Some(Value::Bool(true)) => {}
            Some(s @ Value::Object(_)) => check(s, v, &child, errors),
            _ if preserve => {}
            _ => {
                let mut allowed: Vec<&str> = props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                allowed.sort_unstable();
                let hint = if allowed.is_empty() {
                    "no fields are allowed here".to_owned()
                } else {
                    format!("allowed: {}", allowed.join(", "))
                };
                errors.push(format!("{child}: unknown field ({hint})"));
            }
        }
    }
}
