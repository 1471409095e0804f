//! A compact contract checker for GitHub's official OpenAPI description
//! (`@octokit/openapi`, `generated/api.github.com.json`), feature `testing`.
//!
//! [`Spec::github`] parses the description once per process. Then:
//!
//! * [`Spec::check_request`] finds the operation for a method and path (path
//!   templates, including segments with several variables such as
//!   `{base}...{head}`; the most literal template wins), checks path parameters
//!   against their schemas, query parameters (required ones present, no
//!   undeclared ones, values of the declared type), `Content-Type` and
//!   `Accept`, and validates a JSON body against the operation's
//!   `requestBody` schema;
//! * [`Spec::check_response`] validates a response body against the schema
//!   the operation declares for that status (statuses the operation does not
//!   declare must be GitHub's plain `{"message", "documentation_url"}` errors);
//! * [`Spec::validate`] is the JSON-Schema subset GitHub uses: `$ref`, `type`
//!   (also arrays of types), `nullable`, `properties`, `required`,
//!   `additionalProperties`, `enum`, `oneOf`/`anyOf`/`allOf`, `items`,
//!   `minItems`/`maxItems`, `minimum`/`maximum`, `minLength`/`maxLength` and
//!   `pattern`. `oneOf` is read as "at least one alternative fits": GitHub's
//!   alternatives are open objects that overlap by design. `format` is not
//!   checked;
//! * [`Spec::synthesize`] builds the smallest value a schema accepts, with a
//!   caller's overlay merged in, so a fake server answers in shapes GitHub could.
//!
//! Every problem names the JSON path (`body.labels[0]`, `query.per_page`).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

/// The version of `@octokit/openapi` `cargo xtask test` installs.
pub const PACKAGE_VERSION: &str = "23.0.2";

/// Where GitHub's description is read from: `$KFOPS_NPM_REFS` (or the
/// workspace's `.npm-ref/node_modules`) + `@octokit/openapi/generated/api.github.com.json`.
pub fn spec_path() -> PathBuf {
    let refs = std::env::var_os("KFOPS_NPM_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.npm-ref/node_modules"));
    refs.join("@octokit/openapi/generated/api.github.com.json")
}

/// One way a request or response does not fit the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The operation (`pulls/get`), or `METHOD /path` when none matched.
    pub operation: String,
    /// Where: `path`, `path.<param>`, `query.<param>`, `header.<name>`, `body…`, `response.<status>…`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.operation, self.location, self.message)
    }
}

/// One request, as seen on the wire.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// Method, e.g. `POST`.
    pub method: &'a str,
    /// Path without the query, still percent-encoded.
    pub path: &'a str,
    /// The raw query string without `?`.
    pub query: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Accept` header.
    pub accept: Option<&'a str>,
    /// The body bytes.
    pub body: &'a [u8],
}

/// The operation a request matched, with its decoded parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// `operationId`, e.g. `issues/create-comment`.
    pub operation_id: String,
    /// Upper-case method.
    pub method: String,
    /// The path template, e.g. `/repos/{owner}/{repo}/pulls/{pull_number}`.
    pub template: String,
    /// Path parameters, percent-decoded.
    pub path_params: HashMap<String, String>,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when empty).
    pub body: Value,
}

impl Matched {
    /// A path parameter (empty when absent).
    pub fn param(&self, name: &str) -> &str {
        self.path_params.get(name).map_or("", String::as_str)
    }

    /// The first value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Var(String),
}

#[derive(Debug, Clone)]
struct Operation {
    id: String,
    method: String,
    template: String,
    segments: Vec<Vec<Part>>,
    literals: usize,
}

/// GitHub's OpenAPI description, indexed for checking.
pub struct Spec {
    doc: Arc<Value>,
    operations: Vec<Operation>,
    patterns: Mutex<HashMap<String, Option<regex::Regex>>>,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec").field("operations", &self.operations.len()).finish_non_exhaustive()
    }
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];
const MAX_DEPTH: usize = 64;

impl Spec {
    /// The description at [`spec_path`], parsed once per process.
    pub fn github() -> Result<&'static Spec, String> {
        static SPEC: OnceLock<Result<Spec, String>> = OnceLock::new();
        SPEC.get_or_init(|| {
            let path = spec_path();
            let text = std::fs::read(&path).map_err(|e| {
                format!(
                    "{}: {e}; `cargo xtask test` installs @octokit/openapi {PACKAGE_VERSION} (or set KFOPS_NPM_REFS)",
                    path.display()
                )
            })?;
            let doc: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Spec::from_value(doc)
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// Index a parsed description.
    pub fn from_value(doc: Value) -> Result<Spec, String> {
        let paths = doc.get("paths").and_then(Value::as_object).ok_or("the description has no `paths`")?;
        let mut operations = Vec::new();
        for (template, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for (method, op) in item {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let id = op.get("operationId").and_then(Value::as_str).unwrap_or(template).to_owned();
                let segments: Vec<Vec<Part>> = template.trim_start_matches('/').split('/').map(parse_segment).collect();
                let literals = segments
                    .iter()
                    .flatten()
                    .map(|p| match p {
                        Part::Lit(l) => l.len(),
                        Part::Var(_) => 0,
                    })
                    .sum();
                operations.push(Operation {
                    id,
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    segments,
                    literals,
                });
            }
        }
        Ok(Spec { doc: Arc::new(doc), operations, patterns: Mutex::new(HashMap::new()) })
    }

    /// The whole description.
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// The operation object of `operation_id` (its method and template too).
    pub fn operation(&self, operation_id: &str) -> Option<(&str, &str, &Value)> {
        let op = self.operations.iter().find(|o| o.id == operation_id)?;
        let value = self.doc.get("paths")?.get(&op.template)?.get(op.method.to_ascii_lowercase())?;
        Some((op.method.as_str(), op.template.as_str(), value))
    }

    /// Follow `$ref`s (`#/components/...`) until a schema without one.
    pub fn resolve<'s>(&'s self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..MAX_DEPTH {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                    Some(target) => schema = target,
                    None => return &Value::Null,
                },
                None => return schema,
            }
        }
        schema
    }

    /// Match `method` and `path` (percent-encoded, no query) to an operation.
    fn route(&self, method: &str, path: &str) -> Result<(&Operation, HashMap<String, String>), String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(&Operation, HashMap<String, String>)> = None;
        let mut other_methods = Vec::new();
        for op in &self.operations {
            if op.segments.len() != segments.len() {
                continue;
            }
            let mut params = HashMap::new();
            if !op.segments.iter().zip(&segments).all(|(parts, seg)| match_segment(parts, seg, &mut params)) {
                continue;
            }
            if !op.method.eq_ignore_ascii_case(method) {
                other_methods.push(op.method.clone());
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| op.literals > b.literals) {
                best = Some((op, params));
            }
        }
        match best {
            Some(found) => Ok(found),
            None if other_methods.is_empty() => {
                Err(format!("no operation of the description matches the path `{path}`"))
            }
            None => {
                Err(format!("the path `{path}` exists, but not with {method} (declared: {})", other_methods.join(", ")))
            }
        }
    }

    /// The parameters of an operation (path-item level ones included), `$ref`s resolved.
    fn parameters<'s>(&'s self, op: &Operation) -> Vec<&'s Value> {
        let item = self.doc.get("paths").and_then(|p| p.get(&op.template));
        let mut out = Vec::new();
        for list in [
            item.and_then(|i| i.get("parameters")),
            item.and_then(|i| i.get(op.method.to_ascii_lowercase())).and_then(|o| o.get("parameters")),
        ]
        .into_iter()
        .flatten()
        {
            for p in list.as_array().into_iter().flatten() {
                out.push(self.resolve(p));
            }
        }
        out
    }

    /// Check one request; the matched operation, or every violation found.
    pub fn check_request(&self, req: &HttpRequest<'_>) -> Result<Matched, Vec<Violation>> {
        let (op, raw_params) = match self.route(req.method, req.path) {
            Ok(found) => found,
            Err(message) => {
                return Err(vec![Violation {
                    operation: format!("{} {}", req.method, req.path),
                    location: "path".into(),
                    message,
                }]);
            }
        };
        let mut violations = Vec::new();
        let mut push = |location: String, message: String| {
            violations.push(Violation { operation: op.id.clone(), location, message });
        };
        let path_params: HashMap<String, String> =
            raw_params.into_iter().map(|(k, v)| (k, percent_decode(&v, false))).collect();
        let query: Vec<(String, String)> = req
            .query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        let params = self.parameters(op);
        for p in &params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            let location = p.get("in").and_then(Value::as_str).unwrap_or_default();
            let schema = p.get("schema").unwrap_or(&Value::Null);
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            let values: Vec<&str> = match location {
                "path" => path_params.get(name).map(String::as_str).into_iter().collect(),
                "query" => query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect(),
                _ => continue,
            };
            if values.is_empty() && required {
                push(format!("{location}.{name}"), "required parameter is missing".into());
            }
            if values.len() > 1 && self.resolve(schema).get("type").and_then(Value::as_str) != Some("array") {
                push(format!("{location}.{name}"), format!("given {} times", values.len()));
            }
            for raw in values {
                let value = coerce(raw, self.resolve(schema));
                for problem in self.validate(&value, schema, &format!("{location}.{name}")) {
                    push(problem.0, problem.1);
                }
            }
        }
        for (k, _) in &query {
            let declared = params.iter().any(|p| {
                p.get("in").and_then(Value::as_str) == Some("query") && p.get("name").and_then(Value::as_str) == Some(k)
            });
            if !declared {
                push(format!("query.{k}"), "the operation declares no such query parameter".into());
            }
        }
        if let Some(accept) = req.accept
            && !accept.split(',').any(|a| {
                let a = a.split(';').next().unwrap_or_default().trim();
                a == "*/*" || a == "application/*" || a == "application/json" || a.starts_with("application/vnd.github")
            })
        {
            push("header.accept".into(), format!("`{accept}` accepts no JSON media type GitHub serves"));
        }
        let op_value =
            self.doc.get("paths").and_then(|p| p.get(&op.template)).and_then(|i| i.get(op.method.to_ascii_lowercase()));
        let request_body = op_value.and_then(|o| o.get("requestBody")).map(|b| self.resolve(b));
        let mut body = Value::Null;
        match request_body {
            _ if req.body.is_empty() => {
                if request_body.and_then(|b| b.get("required")).and_then(Value::as_bool) == Some(true) {
                    push("body".into(), "the operation requires a request body".into());
                }
            }
            None => push("body".into(), format!("the operation takes no request body, got {} bytes", req.body.len())),
            Some(rb) => {
                let media = req.content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim();
                let is_json = media == "application/json" || media.ends_with("+json");
                let schema = rb.get("content").and_then(|c| c.get("application/json")).and_then(|c| c.get("schema"));
                if !is_json {
                    push("header.content-type".into(), format!("`{media}` is not JSON (application/json)"));
                } else {
                    match serde_json::from_slice::<Value>(req.body) {
                        Err(e) => push("body".into(), format!("not JSON: {e}")),
                        Ok(v) => {
                            if let Some(schema) = schema {
                                for (loc, msg) in self.validate(&v, schema, "body") {
                                    push(loc, msg);
                                }
                            }
                            body = v;
                        }
                    }
                }
            }
        }
        if violations.is_empty() {
            Ok(Matched {
                operation_id: op.id.clone(),
                method: op.method.clone(),
                template: op.template.clone(),
                path_params,
                query,
                body,
            })
        } else {
            Err(violations)
        }
    }

    /// The JSON schema of `operation_id`'s response for `status`, if it declares one.
    /// `Err` when the operation does not declare the status at all.
    pub fn response_schema(&self, operation_id: &str, status: u16) -> Result<Option<&Value>, String> {
        let (_, _, op) = self.operation(operation_id).ok_or_else(|| format!("unknown operation `{operation_id}`"))?;
        let responses = op.get("responses").and_then(Value::as_object).cloned().unwrap_or_default();
        let key = status.to_string();
        let class = format!("{}XX", status / 100);
        let response = op
            .get("responses")
            .and_then(|r| r.get(&key).or_else(|| r.get(&class)).or_else(|| r.get("default")))
            .ok_or_else(|| {
                format!(
                    "status {status} is not declared (declared: {})",
                    responses.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
        let response = self.resolve(response);
        Ok(response.get("content").and_then(|c| c.get("application/json")).and_then(|c| c.get("schema")))
    }

    /// Check a response body (`None`: no body) for `status` of `operation_id`.
    pub fn check_response(&self, operation_id: &str, status: u16, body: Option<&Value>) -> Vec<Violation> {
        let location = format!("response.{status}");
        let violation =
            |location: String, message: String| Violation { operation: operation_id.to_owned(), location, message };
        match self.response_schema(operation_id, status) {
            Err(message) => {
                // GitHub answers any operation with a plain error object (401, 403, rate limits …).
                let plain = json_object(&[("message", "string"), ("documentation_url", "string")]);
                if status >= 400 && body.is_some_and(|b| self.validate(b, &plain, "").is_empty()) {
                    Vec::new()
                } else {
                    vec![violation(location, message)]
                }
            }
            Ok(None) => match body {
                Some(b) => vec![violation(location, format!("the status declares no body, got {b}"))],
                None => Vec::new(),
            },
            Ok(Some(schema)) => match body {
                None => vec![violation(location, "the status declares a JSON body, got none".into())],
                Some(b) => self.validate(b, schema, &location).into_iter().map(|(l, m)| violation(l, m)).collect(),
            },
        }
    }

    /// Validate `value` against `schema`; each problem as (JSON path under `path`, message).
    pub fn validate(&self, value: &Value, schema: &Value, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.validate_into(value, schema, path, &mut out, 0);
        out
    }

    fn validate_into(&self, v: &Value, schema: &Value, path: &str, out: &mut Vec<(String, String)>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let s = self.resolve(schema);
        let Some(obj) = s.as_object() else { return };
        let mut err = |msg: String| out.push((path.to_owned(), msg));
        let types: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true) || types.contains(&"null");
        if v.is_null() && nullable {
            return;
        }
        if !types.is_empty() && !types.iter().any(|t| type_matches(v, t)) {
            err(format!("expected {}, got {}", types.join(" or "), kind(v)));
            return;
        }
        if v.is_null()
            && types.is_empty()
            && obj.get("enum").is_none()
            && ["properties", "items"].iter().any(|k| obj.contains_key(*k))
        {
            err("null is not allowed here".into());
            return;
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.validate_into(v, sub, path, out, depth + 1);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = obj.get(key).and_then(Value::as_array) {
                let mut first = None;
                let fits = alts.iter().any(|alt| {
                    let mut sub = Vec::new();
                    self.validate_into(v, alt, path, &mut sub, depth + 1);
                    let ok = sub.is_empty();
                    if first.is_none() {
                        first = sub.into_iter().next();
                    }
                    ok
                });
                if !fits {
                    let hint = first.map(|(l, m)| format!(" (first alternative: {l}: {m})")).unwrap_or_default();
                    out.push((path.to_owned(), format!("fits none of the {} alternatives of {key}{hint}", alts.len())));
                }
            }
        }
        let mut err = |msg: String| out.push((path.to_owned(), msg));
        if let Some(allowed) = obj.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            err(format!("{v} is not one of {}", list.join(", ")));
        }
        match v {
            Value::String(text) => {
                let chars = text.chars().count() as u64;
                if let Some(min) = obj.get("minLength").and_then(Value::as_u64)
                    && chars < min
                {
                    err(format!("{chars} characters, fewer than minLength {min}"));
                }
                if let Some(max) = obj.get("maxLength").and_then(Value::as_u64)
                    && chars > max
                {
                    err(format!("{chars} characters, more than maxLength {max}"));
                }
                if let Some(pattern) = obj.get("pattern").and_then(Value::as_str)
                    && self.pattern_rejects(pattern, text)
                {
                    err(format!("{v} does not match the pattern `{pattern}`"));
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or_default();
                if let Some(min) = obj.get("minimum").and_then(Value::as_f64)
                    && x < min
                {
                    err(format!("{n} is less than the minimum {min}"));
                }
                if let Some(max) = obj.get("maximum").and_then(Value::as_f64)
                    && x > max
                {
                    err(format!("{n} is more than the maximum {max}"));
                }
            }
            Value::Array(items) => {
                let len = items.len() as u64;
                if let Some(min) = obj.get("minItems").and_then(Value::as_u64)
                    && len < min
                {
                    err(format!("{len} items, fewer than minItems {min}"));
                }
                if let Some(max) = obj.get("maxItems").and_then(Value::as_u64)
                    && len > max
                {
                    err(format!("{len} items, more than maxItems {max}"));
                }
                if let Some(item_schema) = obj.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.validate_into(item, item_schema, &format!("{path}[{i}]"), out, depth + 1);
                    }
                }
            }
            Value::Object(fields) => {
                let props = obj.get("properties").and_then(Value::as_object);
                for name in
                    obj.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
                {
                    if !fields.contains_key(name) {
                        out.push((join(path, name), "required property is missing".into()));
                    }
                }
                for (name, field) in fields {
                    if let Some(prop) = props.and_then(|p| p.get(name)) {
                        self.validate_into(field, prop, &join(path, name), out, depth + 1);
                        continue;
                    }
                    match obj.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            out.push((join(path, name), "property not allowed (additionalProperties: false)".into()));
                        }
                        Some(extra @ Value::Object(_)) => {
                            self.validate_into(field, extra, &join(path, name), out, depth + 1)
                        }
                        _ => {}
                    }
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// Whether `pattern` (ECMA-262 as GitHub writes it) rejects `text`; patterns
    /// the `regex` crate cannot compile are skipped.
    fn pattern_rejects(&self, pattern: &str, text: &str) -> bool {
        let mut cache = self.patterns.lock().unwrap_or_else(|e| e.into_inner());
        let re = cache.entry(pattern.to_owned()).or_insert_with(|| regex::Regex::new(pattern).ok());
        re.as_ref().is_some_and(|re| !re.is_match(text))
    }

    /// The smallest value `schema` accepts, with `overlay` merged in: objects
    /// get their required properties (plus the overlay's), arrays their
    /// overlay's items shaped by `items`, nullable values `null`, enums their
    /// first member, strings with a `format` a plausible value.
    pub fn synthesize(&self, schema: &Value, overlay: Option<&Value>) -> Value {
        self.synth(schema, overlay, 0)
    }

    fn synth(&self, schema: &Value, overlay: Option<&Value>, depth: usize) -> Value {
        let s = self.resolve(schema);
        if depth > MAX_DEPTH {
            return overlay.cloned().unwrap_or(Value::Null);
        }
        let Some(obj) = s.as_object() else { return overlay.cloned().unwrap_or(Value::Null) };
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            let mut merged = Value::Null;
            for sub in all {
                let part = self.synth(sub, overlay, depth + 1);
                merged = merge(merged, part);
            }
            return merged;
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = obj.get(key).and_then(Value::as_array) {
                let want = overlay.map(kind);
                let pick = alts
                    .iter()
                    .find(|a| {
                        let a = self.resolve(a);
                        let t = a.get("type").and_then(Value::as_str);
                        match want {
                            Some(w) => t.is_none_or(|t| t == w || (t == "integer" && w == "number")),
                            None => t != Some("null"),
                        }
                    })
                    .or(alts.first());
                return pick.map_or(Value::Null, |p| self.synth(p, overlay, depth + 1));
            }
        }
        let types: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true) || types.contains(&"null");
        match overlay {
            Some(Value::Object(fields)) => {
                let mut out = match self.synth_plain(obj, &types, depth) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let props = obj.get("properties").and_then(Value::as_object);
                for (name, value) in fields {
                    let shaped = match props
                        .and_then(|p| p.get(name))
                        .or_else(|| obj.get("additionalProperties").filter(|a| a.is_object()))
                    {
                        Some(prop) => self.synth(prop, Some(value), depth + 1),
                        None => value.clone(),
                    };
                    out.insert(name.clone(), shaped);
                }
                Value::Object(out)
            }
            Some(Value::Array(items)) => {
                let item_schema = obj.get("items").cloned().unwrap_or(Value::Null);
                Value::Array(items.iter().map(|i| self.synth(&item_schema, Some(i), depth + 1)).collect())
            }
            Some(other) => other.clone(),
            None if nullable => Value::Null,
            None => self.synth_plain(obj, &types, depth),
        }
    }

    fn synth_plain(&self, obj: &Map<String, Value>, types: &[&str], depth: usize) -> Value {
        if let Some(first) = obj.get("enum").and_then(Value::as_array).and_then(|e| e.iter().find(|v| !v.is_null())) {
            return first.clone();
        }
        let t = types.iter().find(|t| **t != "null").copied().unwrap_or(if obj.contains_key("properties") {
            "object"
        } else {
            ""
        });
        match t {
            "object" => {
                let mut out = Map::new();
                let props = obj.get("properties").and_then(Value::as_object);
                for name in
                    obj.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
                {
                    let prop = props.and_then(|p| p.get(name)).cloned().unwrap_or(Value::Null);
                    out.insert(name.to_owned(), self.synth(&prop, None, depth + 1));
                }
                Value::Object(out)
            }
            "array" => Value::Array(Vec::new()),
            "string" => {
                let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
                let text = match obj.get("format").and_then(Value::as_str) {
                    Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
                    Some("date") => "2026-01-01".to_owned(),
                    Some("uri") | Some("url") => "https://github.example.invalid/".to_owned(),
                    Some("email") => "octocat@github.example.invalid".to_owned(),
                    Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
                    _ => String::new(),
                };
                Value::String(if text.len() < min { "x".repeat(min) } else { text })
            }
            "integer" | "number" => {
                Value::from(obj.get("minimum").and_then(Value::as_f64).map_or(0, |m| m.max(0.0) as u64))
            }
            "boolean" => Value::Bool(false),
            _ => Value::Null,
        }
    }
}

/// A schema object `{type: object, required: [names], properties: {name: {type}}}`.
fn json_object(fields: &[(&str, &str)]) -> Value {
    let mut props = Map::new();
    for (name, t) in fields {
        props.insert((*name).to_owned(), serde_json::json!({ "type": t }));
    }
    serde_json::json!({ "type": "object", "required": ["message"], "properties": props })
}

/// Merge two synthesized values: objects field by field, otherwise the later one.
fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Value::Object(a)
        }
        (a, Value::Null) => a,
        (_, b) => b,
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

fn kind(v: &Value) -> &'static str {
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

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// A query or path string as the JSON value its schema expects.
fn coerce(raw: &str, schema: &Value) -> Value {
    let t = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or(""),
        _ => "",
    };
    match t {
        "integer" => raw.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.to_owned())),
        "number" => raw
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        "boolean" => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(raw.to_owned()),
        },
        "array" => Value::Array(raw.split(',').map(|s| Value::String(s.to_owned())).collect()),
        _ => Value::String(raw.to_owned()),
    }
}

fn parse_segment(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| c + open) else { break };
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_owned()));
        }
        parts.push(Part::Var(rest[open + 1..close].to_owned()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_owned()));
    }
    parts
}

/// Match one path segment; variables take at least one character, up to the next literal.
fn match_segment(parts: &[Part], seg: &str, params: &mut HashMap<String, String>) -> bool {
    match parts.split_first() {
        None => seg.is_empty(),
        Some((Part::Lit(l), rest)) => seg.strip_prefix(l.as_str()).is_some_and(|s| match_segment(rest, s, params)),
        Some((Part::Var(name), rest)) => {
            let end = match rest.first() {
                None => seg.len(),
                Some(Part::Lit(l)) => match seg.get(1..).and_then(|s| s.find(l.as_str())) {
                    Some(i) => i + 1,
                    None => return false,
                },
                Some(Part::Var(_)) => return false,
            };
            if end == 0 {
                return false;
            }
            params.insert(name.clone(), seg[..end].to_owned());
            match_segment(rest, &seg[end..], params)
        }
    }
}

/// Percent-decoding (and `+` as space in queries); invalid escapes stay as written.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
