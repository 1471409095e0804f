//! A contract checker: does an HTTP request fit the official KFP v2beta1 swagger?
//!
//! [`SwaggerChecker::load_dir`] reads every `*.swagger.json` of a directory
//! (the verbatim files of `kubeflow/pipelines/backend/api/v2beta1/swagger`);
//! [`SwaggerChecker::check`] then validates one request and returns every
//! [`Violation`]:
//!
//! * the path must match a path template (`/apis/v2beta1/runs/{run_id}`,
//!   custom verbs such as `{run_id}:terminate`) that has the method;
//! * every query parameter must be declared by the operation, once (unless an
//!   array), with a value of its type (`integer`, `boolean`, `int64` strings,
//!   enums); required ones must be present. The `filter` parameter's JSON is
//!   also checked against the `v2beta1Filter` definition;
//! * a JSON body must fit the body parameter's schema: `$ref`s into
//!   `definitions` are resolved, every field must be declared (at any depth),
//!   and typed: `string`, `int64` as a JSON string, `date-time`, enums (names,
//!   or numbers as protojson accepts), `integer`, `number`, `boolean`, arrays,
//!   maps (`additionalProperties`). Schemas without a type (protobuf `Value`)
//!   and objects without properties (protobuf `Struct`) accept any JSON;
//! * a multipart body (the upload routes) must carry exactly the declared
//!   `formData` parts; `file` parts need a filename;
//! * operations without a body parameter take no body.
//!
//! `null` is accepted for any field: protojson reads it as "not set".

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

/// The reference swagger files of this repository's shared data
/// (`KFOPS_KFP_SWAGGER_DIR` overrides).
pub fn reference_dir() -> PathBuf {
    match std::env::var_os("KFOPS_KFP_SWAGGER_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/kfp-api"),
    }
}

/// One request, as seen on the wire.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path, e.g. `/apis/v2beta1/runs/abc:terminate` (a `?query` suffix is split off).
    pub path: &'a str,
    /// The raw query string without `?`, if any.
    pub query: Option<&'a str>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The body bytes.
    pub body: &'a [u8],
}

/// A way a request does not fit the swagger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The request, `METHOD /path`.
    pub request: String,
    /// Where: `path`, `method`, `query.<name>`, `body.<field>…`, `form.<part>`, `content-type`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.request, self.location, self.message)
    }
}

/// One segment of a path template: a literal, or a variable with optional literal prefix/suffix.
#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Var { prefix: String, name: String, suffix: String },
}

impl Segment {
    fn parse(text: &str) -> Segment {
        match (text.find('{'), text.find('}')) {
            (Some(open), Some(close)) if open < close => Segment::Var {
                prefix: text[..open].to_owned(),
                name: text[open + 1..close].to_owned(),
                suffix: text[close + 1..].to_owned(),
            },
            _ => Segment::Literal(text.to_owned()),
        }
    }

    /// Literal characters: the more, the more specific the template.
    fn literal_len(&self) -> usize {
        match self {
            Segment::Literal(l) => l.len() + 1,
            Segment::Var { prefix, suffix, .. } => prefix.len() + suffix.len(),
        }
    }

    /// The variable's raw value if `segment` matches.
    fn matches<'s>(&self, segment: &'s str) -> Option<Option<(&str, &'s str)>> {
        match self {
            Segment::Literal(l) => (l == segment).then_some(None),
            Segment::Var { prefix, name, suffix } => {
                let rest = segment.strip_prefix(prefix.as_str())?.strip_suffix(suffix.as_str())?;
                // Without a verb suffix, a `:verb` belongs to another template.
                if rest.is_empty() || (suffix.is_empty() && rest.contains(':')) {
                    return None;
                }
                Some(Some((name.as_str(), rest)))
            }
        }
    }
}

/// One operation of the swagger.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    template: String,
    segments: Vec<Segment>,
    operation_id: String,
    params: Vec<Value>,
    consumes: Vec<String>,
    definitions: Arc<Map<String, Value>>,
}

impl Operation {
    fn specificity(&self) -> usize {
        self.segments.iter().map(Segment::literal_len).sum()
    }

    fn params_in<'s>(&'s self, location: &'s str) -> impl Iterator<Item = &'s Value> + 's {
        self.params.iter().filter(move |p| p.get("in").and_then(Value::as_str) == Some(location))
    }
}

/// An operation and the raw values of its path variables.
type Route<'c, 'p> = (&'c Operation, Vec<(String, &'p str)>);

/// Checks requests against the KFP swagger files.
#[derive(Debug, Clone)]
pub struct SwaggerChecker {
    operations: Vec<Operation>,
    /// The `v2beta1Filter` schema (and its file's definitions), for the `filter` query parameter.
    filter: Option<(Arc<Map<String, Value>>, Value)>,
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

impl SwaggerChecker {
    /// Reads every `*.swagger.json` in `dir`. The merged
    /// `kfp_api_single_file.swagger.json` only fills in operations the
    /// per-service files do not have.
    pub fn load_dir(dir: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("reading `{}`: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".swagger.json")))
            .collect();
        files.sort_by_key(|p| (p.file_name().is_some_and(|n| n.to_string_lossy().contains("single_file")), p.clone()));
        if files.is_empty() {
            return Err(format!("no *.swagger.json files in `{}`", dir.display()));
        }
        let mut documents = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("reading `{}`: {e}", file.display()))?;
            let doc: Value = serde_json::from_str(&text).map_err(|e| format!("parsing `{}`: {e}", file.display()))?;
            documents.push(doc);
        }
        Self::from_documents(documents)
    }

    /// Builds a checker from parsed swagger documents (earlier documents win
    /// when two declare the same method and path).
    pub fn from_documents(documents: Vec<Value>) -> Result<Self, String> {
        let mut operations: Vec<Operation> = Vec::new();
        let mut filter = None;
        for doc in documents {
            let definitions = Arc::new(doc.get("definitions").and_then(Value::as_object).cloned().unwrap_or_default());
            if filter.is_none() && definitions.contains_key("v2beta1Filter") {
                filter = Some((definitions.clone(), serde_json::json!({"$ref": "#/definitions/v2beta1Filter"})));
            }
            let file_consumes = string_list(doc.get("consumes"));
            let Some(paths) = doc.get("paths").and_then(Value::as_object) else { continue };
            for (template, item) in paths {
                let Some(item) = item.as_object() else { continue };
                for (method, op) in item {
                    if !METHODS.contains(&method.as_str()) {
                        continue;
                    }
                    let method = method.to_ascii_uppercase();
                    if operations.iter().any(|o| o.method == method && &o.template == template) {
                        continue;
                    }
                    let consumes = match op.get("consumes") {
                        Some(c) => string_list(Some(c)),
                        None => file_consumes.clone(),
                    };
                    let mut params: Vec<Value> =
                        item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
                    params.extend(op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default());
                    operations.push(Operation {
                        method,
                        template: template.clone(),
                        segments: template.trim_start_matches('/').split('/').map(Segment::parse).collect(),
                        operation_id: op.get("operationId").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        params,
                        consumes,
                        definitions: definitions.clone(),
                    });
                }
            }
        }
        if operations.is_empty() {
            return Err("the swagger documents declare no operations".into());
        }
        Ok(SwaggerChecker { operations, filter })
    }

    /// Number of operations known.
    pub fn operation_count(&self) -> usize {
        self.operations.len()
    }

    /// The `operationId` a request would be routed to, if any.
    pub fn operation_id(&self, method: &str, path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or(path);
        self.route(method, path).ok().map(|(op, _)| op.operation_id.as_str())
    }

    /// Checks a request with an optional JSON body (convenience for [`SwaggerChecker::check`]).
    pub fn check_json(&self, method: &str, path_and_query: &str, body: Option<&Value>) -> Vec<Violation> {
        let text = body.map(Value::to_string).unwrap_or_default();
        self.check(&HttpRequest {
            method,
            path: path_and_query,
            query: None,
            content_type: body.map(|_| "application/json"),
            body: text.as_bytes(),
        })
    }

    /// Every way `request` does not fit the swagger (empty when it fits).
    pub fn check(&self, request: &HttpRequest<'_>) -> Vec<Violation> {
        let (path, query) = match request.path.split_once('?') {
            Some((p, q)) => (p, Some(q).filter(|q| !q.is_empty()).or(request.query)),
            None => (request.path, request.query),
        };
        let method = request.method.to_ascii_uppercase();
        let mut out = Report { request: format!("{method} {path}"), violations: Vec::new() };
        let (op, vars) = match self.route(&method, path) {
            Ok(found) => found,
            Err(message) => {
                let location = if message.starts_with("method") { "method" } else { "path" };
                out.push(location, message);
                return out.violations;
            }
        };
        for (name, raw) in vars {
            match percent_decode(raw, false) {
                Some(v) if !v.is_empty() => {}
                Some(_) => out.push(&format!("path.{name}"), "is empty".into()),
                None => out.push(&format!("path.{name}"), format!("`{raw}` is not valid percent-encoded UTF-8")),
            }
        }
        self.check_query(op, query.unwrap_or(""), &mut out);
        self.check_body(op, request, &mut out);
        out.violations
    }

    /// The operation for a method and path, with the raw path variables.
    fn route<'p>(&self, method: &str, path: &'p str) -> Result<Route<'_, 'p>, String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut matching: Vec<Route<'_, 'p>> = Vec::new();
        for op in &self.operations {
            if op.segments.len() != segments.len() {
                continue;
            }
            let mut vars = Vec::new();
            let ok = op.segments.iter().zip(&segments).all(|(t, s)| match t.matches(s) {
                Some(Some((name, value))) => {
                    vars.push((name.to_owned(), value));
                    true
                }
                Some(None) => true,
                None => false,
            });
            if ok {
                matching.push((op, vars));
            }
        }
        if matching.is_empty() {
            return Err(format!("no operation of the swagger matches `{path}`"));
        }
        matching.sort_by_key(|(op, _)| std::cmp::Reverse(op.specificity()));
        if let Some(i) = matching.iter().position(|(op, _)| op.method == method) {
            return Ok(matching.swap_remove(i));
        }
        let template = &matching[0].0.template;
        let allowed: Vec<&str> =
            matching.iter().filter(|(op, _)| &op.template == template).map(|(op, _)| op.method.as_str()).collect();
        Err(format!("method {method} is not declared for `{template}` (declared: {})", allowed.join(", ")))
    }

    fn check_query(&self, op: &Operation, query: &str, out: &mut Report) {
        let declared: Vec<&Value> = op.params_in("query").collect();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(name), Some(value)) = (percent_decode(raw_name, true), percent_decode(raw_value, true)) else {
                out.push("query", format!("`{pair}` is not valid percent-encoded UTF-8"));
                continue;
            };
            let location = format!("query.{name}");
            let Some(param) = declared.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
            else {
                let known: Vec<&str> = declared.iter().filter_map(|p| p.get("name").and_then(Value::as_str)).collect();
                let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
                out.push(&location, format!("unknown query parameter (declared: {known})"));
                continue;
            };
            let count = seen.entry(name.clone()).or_default();
            *count += 1;
            let is_array = param.get("type").and_then(Value::as_str) == Some("array");
            if *count == 2 && !is_array {
                out.push(&location, "given more than once".into());
            }
            let item_schema = if is_array { param.get("items").unwrap_or(&Value::Null) } else { param };
            if let Err(message) = check_scalar_text(item_schema, &value) {
                out.push(&location, message);
            } else if name == "filter"
                && let Some((definitions, schema)) = &self.filter
            {
                match serde_json::from_str::<Value>(&value) {
                    Ok(filter) => check_value(definitions, schema, &filter, &location, out, 0),
                    Err(e) => out.push(&location, format!("is not JSON: {e}")),
                }
            }
        }
        for param in declared {
            let name = param.get("name").and_then(Value::as_str).unwrap_or_default();
            if param.get("required").and_then(Value::as_bool) == Some(true) && !seen.contains_key(name) {
                out.push(&format!("query.{name}"), "required query parameter is missing".into());
            }
        }
    }

    fn check_body(&self, op: &Operation, request: &HttpRequest<'_>, out: &mut Report) {
        let form: Vec<&Value> = op.params_in("formData").collect();
        let body_param = op.params_in("body").next();
        let content_type = request.content_type.map(str::to_ascii_lowercase);
        let empty = request.body.iter().all(u8::is_ascii_whitespace);
        if !form.is_empty() {
            check_multipart(&form, request, out);
            return;
        }
        let Some(param) = body_param else {
            if !empty && request.body != b"{}" {
                out.push("body", "the operation takes no request body".into());
            }
            return;
        };
        if empty {
            if param.get("required").and_then(Value::as_bool) == Some(true) {
                out.push("body", "the required request body is missing".into());
            }
            return;
        }
        let json_ok = content_type.as_deref().is_some_and(|ct| ct.starts_with("application/json"));
        if !json_ok {
            let declared = if op.consumes.is_empty() { "application/json".to_owned() } else { op.consumes.join(", ") };
            out.push(
                "content-type",
                format!("`{}` is not what the operation consumes ({declared})", request.content_type.unwrap_or("none")),
            );
        }
        match serde_json::from_slice::<Value>(request.body) {
            Ok(value) => {
                let schema = param.get("schema").unwrap_or(&Value::Null);
                check_value(&op.definitions, schema, &value, "body", out, 0);
            }
            Err(e) => out.push("body", format!("is not JSON: {e}")),
        }
    }
}

/// Collects violations of one request.
struct Report {
    request: String,
    violations: Vec<Violation>,
}

impl Report {
    fn push(&mut self, location: &str, message: String) {
        self.violations.push(Violation { request: self.request.clone(), location: location.to_owned(), message });
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Decodes `%XX` (and `+` as a space in query strings); `None` if malformed.
fn percent_decode(text: &str, plus_as_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The JSON kind of a value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a string is an RFC 3339 date-time (`2026-11-28T14:00:00Z`, fractions, offsets).
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

fn is_int64_format(format: Option<&str>) -> bool {
    matches!(format, Some("int64" | "uint64" | "fixed64" | "sfixed64" | "sint64"))
}

/// Checks a query-parameter value (text) against a scalar parameter schema.
fn check_scalar_text(schema: &Value, text: &str) -> Result<(), String> {
    let format = schema.get("format").and_then(Value::as_str);
    let ok = match schema.get("type").and_then(Value::as_str) {
        Some("integer") => match format {
            Some("int32") => text.parse::<i32>().is_ok(),
            Some("uint32") => text.parse::<u32>().is_ok(),
            _ => text.parse::<i64>().is_ok(),
        },
        Some("number") => text.parse::<f64>().is_ok(),
        Some("boolean") => {
            matches!(text, "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False")
        }
        Some("string") if is_int64_format(format) => text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok(),
        Some("string") if format == Some("date-time") => is_rfc3339(text),
        _ => true,
    };
    if !ok {
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or("value");
        let ty = format.map(|f| format!("{ty} ({f})")).unwrap_or_else(|| ty.to_owned());
        return Err(format!("`{text}` is not a valid {ty}"));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.iter().any(|v| v.as_str() == Some(text))
        && !text.parse::<usize>().is_ok_and(|i| i < values.len())
    {
        return Err(format!("`{text}` is not one of {}", enum_list(values)));
    }
    Ok(())
}

fn enum_list(values: &[Value]) -> String {
    values.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
}

/// `snake_case` → `lowerCamelCase`, to recognise fields sent in the other protojson spelling.
fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Validates a JSON value against a schema, recursively.
fn check_value(
    definitions: &Map<String, Value>,
    schema: &Value,
    value: &Value,
    at: &str,
    out: &mut Report,
    depth: usize,
) {
    if depth > 64 {
        out.push(at, "nested more than 64 levels deep".into());
        return;
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        match reference.strip_prefix("#/definitions/").and_then(|name| definitions.get(name)) {
            Some(resolved) => check_value(definitions, resolved, value, at, out, depth + 1),
            None => out.push(at, format!("the swagger's `$ref` {reference} does not resolve")),
        }
        return;
    }
    if value.is_null() {
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let format = schema.get("format").and_then(Value::as_str);
    match ty {
        None if schema.get("properties").is_none() => {} // google.protobuf.Value: any JSON
        None | Some("object") => {
            let Some(object) = value.as_object() else {
                out.push(at, format!("expected an object, got {}", kind(value)));
                return;
            };
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if properties.is_none() && additional.is_none() {
                return; // google.protobuf.Struct: any object
            }
            for (key, field) in object {
                let location = format!("{at}.{key}");
                if let Some(property) = properties.and_then(|p| p.get(key)) {
                    check_value(definitions, property, field, &location, out, depth + 1);
                    continue;
                }
                match additional {
                    Some(Value::Bool(true)) => {}
                    Some(schema @ Value::Object(_)) => {
                        check_value(definitions, schema, field, &location, out, depth + 1)
                    }
                    _ => {
                        let known: Vec<&str> =
                            properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                        let hint = known
                            .iter()
                            .find(|k| camel(k) == *key)
                            .map(|k| format!(" (the proto name is `{k}`)"))
                            .unwrap_or_default();
                        out.push(&location, format!("unknown field{hint}; declared fields: {}", known.join(", ")));
                    }
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                out.push(at, format!("expected an array, got {}", kind(value)));
                return;
            };
            let item_schema = schema.get("items").unwrap_or(&Value::Null);
            for (i, item) in items.iter().enumerate() {
                check_value(definitions, item_schema, item, &format!("{at}[{i}]"), out, depth + 1);
            }
        }
        Some("string") => {
            if let Some(values) = schema.get("enum").and_then(Value::as_array) {
                let ok = match value {
                    Value::String(s) => values.iter().any(|v| v.as_str() == Some(s)),
                    Value::Number(n) => n.as_u64().is_some_and(|i| (i as usize) < values.len()),
                    _ => false,
                };
                if !ok {
                    out.push(at, format!("{value} is not one of {}", enum_list(values)));
                }
                return;
            }
            let Some(text) = value.as_str() else {
                let hint = if is_int64_format(format) && value.is_number() {
                    " (64-bit integers are JSON strings in this API)"
                } else {
                    ""
                };
                out.push(at, format!("expected a string, got {}{hint}", kind(value)));
                return;
            };
            if let Err(message) = check_scalar_text(schema, text) {
                out.push(at, message);
            }
        }
        Some("integer") => {
            let ok = match format {
                Some("int32") => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                Some("uint32") => value.as_u64().is_some_and(|i| u32::try_from(i).is_ok()),
                _ => value.as_i64().is_some() || value.as_u64().is_some(),
            };
            if !ok {
                out.push(at, format!("expected an integer ({}), got {value}", format.unwrap_or("integer")));
            }
        }
        Some("number") => {
            if !value.is_number() {
                out.push(at, format!("expected a number, got {}", kind(value)));
            }
        }
        Some("boolean") => {
            if !value.is_boolean() {
                out.push(at, format!("expected a boolean, got {}", kind(value)));
            }
        }
        Some(other) => out.push(at, format!("the swagger type `{other}` is not supported by the checker")),
    }
}

/// One part of a multipart body.
struct FormPart {
    name: Option<String>,
    filename: Option<String>,
}

/// Checks a `multipart/form-data` body against the `formData` parameters.
fn check_multipart(form: &[&Value], request: &HttpRequest<'_>, out: &mut Report) {
    let content_type = request.content_type.unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        out.push("content-type", format!("`{content_type}` is not multipart/form-data, which the operation consumes"));
        return;
    }
    let Some(boundary) = content_type.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_owned())
    }) else {
        out.push("content-type", "multipart/form-data without a boundary".into());
        return;
    };
    let Some(parts) = split_multipart(request.body, &boundary) else {
        out.push("body", format!("not a multipart body with boundary `{boundary}`"));
        return;
    };
    let mut seen = Vec::new();
    for part in parts {
        let Some(name) = part.name else {
            out.push("form", "a part without a form-data name".into());
            continue;
        };
        let location = format!("form.{name}");
        let Some(param) = form.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str())) else {
            let known: Vec<&str> = form.iter().filter_map(|p| p.get("name").and_then(Value::as_str)).collect();
            out.push(&location, format!("unknown form field (declared: {})", known.join(", ")));
            continue;
        };
        if param.get("type").and_then(Value::as_str) == Some("file")
            && part.filename.as_deref().is_none_or(str::is_empty)
        {
            out.push(&location, "a file part needs a filename".into());
        }
        if seen.contains(&name) {
            out.push(&location, "given more than once".into());
        }
        seen.push(name);
    }
    for param in form {
        let name = param.get("name").and_then(Value::as_str).unwrap_or_default();
        if param.get("required").and_then(Value::as_bool) == Some(true) && !seen.iter().any(|s| s == name) {
            out.push(&format!("form.{name}"), "required form field is missing".into());
        }
    }
}

/// The parts of a multipart body (their headers only); `None` if the boundary never occurs.
fn split_multipart(body: &[u8], boundary: &str) -> Option<Vec<FormPart>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut positions = Vec::new();
    let mut i = 0;
    while i + delimiter.len() <= body.len() {
        if &body[i..i + delimiter.len()] == delimiter {
            positions.push(i);
            i += delimiter.len();
        } else {
            i += 1;
        }
    }
    if positions.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for pair in positions.windows(2) {
        let chunk = &body[pair[0] + delimiter.len()..pair[1]];
        if chunk.starts_with(b"--") {
            break;
        }
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let header_end = chunk.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(chunk.len());
        let headers = String::from_utf8_lossy(&chunk[..header_end]);
        let mut part = FormPart { name: None, filename: None };
        for line in headers.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            if !key.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for param in value.split(';').skip(1) {
                let Some((k, v)) = param.trim().split_once('=') else { continue };
                let v = v.trim().trim_matches('"').to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "name" => part.name = Some(v),
                    "filename" => part.filename = Some(v),
                    _ => {}
                }
            }
        }
        parts.push(part);
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shapes() {
        for ok in ["2026-11-28T14:00:00Z", "1970-01-01T00:00:00.000Z", "2026-11-28T14:00:00+01:00"] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in ["2026-11-28", "2026-11-28 14:00:00Z", "2026-11-28T14:00:00", "yesterday"] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn verb_templates_do_not_swallow_plain_ids() {
        let plain = Segment::parse("{run_id}");
        let verb = Segment::parse("{run_id}:terminate");
        assert!(plain.matches("abc:terminate").is_none());
        assert!(verb.matches("abc:terminate").is_some());
        assert!(verb.matches(":terminate").is_none());
        assert!(plain.matches("abc").is_some());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("created_at+desc", true).as_deref(), Some("created_at desc"));
        assert_eq!(percent_decode("a%20b", false).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%zz", false), None);
    }
}
