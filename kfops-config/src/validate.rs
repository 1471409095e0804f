//! Checking a merged configuration value against the generated JSON Schema.
//!
//! The validator understands the subset of JSON Schema that `schemars`
//! produces for our types (`type`, `properties`, `additionalProperties`,
//! `required`, `$ref`/`$defs`, `anyOf`/`oneOf`, `const`/`enum`, `items`,
//! `minLength`, `pattern`). It reports every problem instead of stopping at
//! the first, and leaves locating them to the caller.

use figment::value::{Num, Value};
use serde_json::Value as Json;

use crate::yaml::join;

/// One schema violation, before it is given a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Dotted path of the offending value.
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
    /// How to fix it.
    pub(crate) help: Option<String>,
    /// `true` if the position of the key (not the value) is the best place to point at.
    pub(crate) at_key: bool,
}

/// Validate `value` against `schema` (the root schema, holding `$defs`).
pub(crate) fn validate(schema: &Json, value: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    check(schema, schema, value, "", &mut out);
    out
}

fn resolve<'a>(root: &'a Json, schema: &'a Json) -> &'a Json {
    let mut s = schema;
    for _ in 0..16 {
        match s.get("$ref").and_then(Json::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            Some(name) => match root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => s = target,
                None => return s,
            },
            None => return s,
        }
    }
    s
}

/// The JSON-Schema type name of a figment value.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::String(..) | Value::Char(..) => "string",
        Value::Bool(..) => "boolean",
        Value::Num(_, n) => match n {
            Num::F32(_) | Num::F64(_) => "number",
            _ => "integer",
        },
        Value::Empty(..) => "null",
        Value::Dict(..) => "object",
        Value::Array(..) => "array",
    }
}

/// How a schema type is named to users.
fn human(t: &str) -> &str {
    match t {
        "string" => "a string",
        "boolean" => "a boolean (true or false)",
        "integer" => "an integer",
        "number" => "a number",
        "null" => "empty",
        "object" => "a mapping",
        "array" => "a list",
        other => other,
    }
}

/// How a value is described to users, with a short rendering of scalars.
fn describe(v: &Value) -> String {
    match v {
        Value::String(_, s) => format!("the string {s:?}"),
        Value::Char(_, c) => format!("the string {:?}", c.to_string()),
        Value::Bool(_, b) => format!("the boolean {b}"),
        Value::Num(_, n) => format!("the number {}", num_text(n)),
        Value::Empty(..) => "nothing (an empty value)".into(),
        Value::Dict(..) => "a mapping".into(),
        Value::Array(..) => "a list".into(),
    }
}

fn num_text(n: &Num) -> String {
    match n.to_i128() {
        Some(i) => i.to_string(),
        None => n.to_f64().map_or_else(|| "?".into(), |f| f.to_string()),
    }
}

fn type_matches(expected: &str, actual: &str) -> bool {
    expected == actual || (expected == "number" && actual == "integer")
}

fn allowed_types(schema: &Json) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Json::String(t) => Some(vec![t.as_str()]),
        Json::Array(ts) => Some(ts.iter().filter_map(Json::as_str).collect()),
        _ => None,
    }
}

fn check(root: &Json, schema: &Json, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let schema = resolve(root, schema);

    // anyOf / oneOf: `Option<T>` is `anyOf: [T, null]`; enums are `oneOf` of `const`s.
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Json::as_array) {
            check_alternatives(root, branches, value, path, out);
            return;
        }
    }

    if let Some(types) = allowed_types(schema) {
        let actual = type_of(value);
        if !types.iter().any(|t| type_matches(t, actual)) {
            let wanted: Vec<&str> = types.iter().filter(|t| **t != "null").map(|t| human(t)).collect();
            out.push(Violation {
                path: path.to_owned(),
                message: format!("`{}` must be {}, found {}", display_path(path), wanted.join(" or "), describe(value)),
                help: type_help(&types, value, path),
                at_key: false,
            });
            return;
        }
    }

    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        check_enum(values, value, path, out);
        return;
    }
    if let Some(c) = schema.get("const") {
        check_enum(std::slice::from_ref(c), value, path, out);
        return;
    }

    match value {
        Value::Dict(_, dict) => {
            let props = schema.get("properties").and_then(Json::as_object);
            let additional = schema.get("additionalProperties");
            // Required keys that an unknown key is probably a typo of: reported once, as the typo.
            let mut typo_targets: Vec<&str> = Vec::new();
            for (key, child) in dict {
                let child_path = join(path, key);
                match props.and_then(|p| p.get(key)) {
                    Some(child_schema) => check(root, child_schema, child, &child_path, out),
                    None => match additional {
                        Some(Json::Bool(false)) => {
                            let known: Vec<&str> =
                                props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                            let suggestion = nearest(key, &known);
                            typo_targets.extend(suggestion);
                            let section = if path.is_empty() {
                                "at the top level".to_owned()
                            } else {
                                format!("in `{}`", display_path(path))
                            };
                            out.push(Violation {
                                path: child_path,
                                message: match suggestion {
                                    Some(s) => format!("unknown key `{key}` {section} (did you mean `{s}`?)"),
                                    None => format!("unknown key `{key}` {section}"),
                                },
                                help: Some(format!("valid keys here: {}", known.join(", "))),
                                at_key: true,
                            });
                        }
                        Some(extra @ Json::Object(_)) => check(root, extra, child, &child_path, out),
                        _ => {}
                    },
                }
            }
            if let Some(required) = schema.get("required").and_then(Json::as_array) {
                for name in required.iter().filter_map(Json::as_str) {
                    if !dict.contains_key(name) && !typo_targets.contains(&name) {
                        let what =
                            props.and_then(|p| p.get(name)).and_then(|s| s.get("description")).and_then(Json::as_str);
                        out.push(Violation {
                            path: path.to_owned(),
                            message: format!("missing required key `{}`", display_path(&join(path, name))),
                            help: what.map(|d| format!("add `{name}:` here: {}", first_sentence(d))),
                            at_key: true,
                        });
                    }
                }
            }
        }
        Value::Array(_, items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(root, item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::String(_, s) => {
            if let Some(min) = schema.get("minLength").and_then(Json::as_u64)
                && (s.chars().count() as u64) < min
            {
                out.push(Violation {
                    path: path.to_owned(),
                    message: if min == 1 {
                        format!("`{}` must not be empty", display_path(path))
                    } else {
                        format!("`{}` must be at least {min} characters long", display_path(path))
                    },
                    help: None,
                    at_key: false,
                });
            }
            if let Some(pattern) = schema.get("pattern").and_then(Json::as_str)
                && !matches_pattern(pattern, s)
            {
                out.push(Violation {
                    path: path.to_owned(),
                    message: format!("`{}` is {s:?}, which does not match `{pattern}`", display_path(path)),
                    help: pattern_help(pattern),
                    at_key: false,
                });
            }
        }
        _ => {}
    }
}

fn check_alternatives(root: &Json, branches: &[Json], value: &Value, path: &str, out: &mut Vec<Violation>) {
    // Enums: every branch is a `const` (or `enum`) string.
    let consts: Vec<Json> = branches
        .iter()
        .map(|b| resolve(root, b))
        .flat_map(|b| {
            b.get("const")
                .cloned()
                .into_iter()
                .chain(b.get("enum").and_then(Json::as_array).cloned().unwrap_or_default())
        })
        .collect();
    if !consts.is_empty() && consts.len() >= branches.len() {
        check_enum(&consts, value, path, out);
        return;
    }
    let mut best: Option<Vec<Violation>> = None;
    for branch in branches {
        let mut errs = Vec::new();
        check(root, branch, value, path, &mut errs);
        if errs.is_empty() {
            return;
        }
        // Prefer the branch of the value's own type (a `null` branch never explains a mapping).
        let branch_is_null = allowed_types(resolve(root, branch)).is_some_and(|t| t == ["null"]);
        if !branch_is_null && best.as_ref().is_none_or(|b| errs.len() < b.len()) {
            best = Some(errs);
        }
    }
    if let Some(errs) = best {
        out.extend(errs);
    }
}

fn check_enum(values: &[Json], value: &Value, path: &str, out: &mut Vec<Violation>) {
    let given = match value {
        Value::String(_, s) => Some(s.as_str()),
        _ => None,
    };
    if given.is_some_and(|g| values.iter().any(|v| v.as_str() == Some(g))) {
        return;
    }
    let names: Vec<&str> = values.iter().filter_map(Json::as_str).collect();
    let suggestion = given.and_then(|g| nearest(g, &names));
    out.push(Violation {
        path: path.to_owned(),
        message: format!(
            "`{}` must be one of {}, found {}{}",
            display_path(path),
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            describe(value),
            suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
        ),
        help: None,
        at_key: false,
    });
}

fn type_help(types: &[&str], value: &Value, path: &str) -> Option<String> {
    let wants_string = types.contains(&"string");
    let key = path.rsplit('.').next().unwrap_or(path);
    match value {
        Value::Num(_, n) if wants_string => {
            Some(format!("quote the value to make it a string: `{key}: \"{}\"`", num_text(n)))
        }
        Value::Bool(_, b) if wants_string => Some(format!("quote the value to make it a string: `{key}: \"{b}\"`")),
        Value::String(..) if types.contains(&"boolean") => Some("write true or false without quotes".into()),
        Value::String(..) if types.contains(&"integer") || types.contains(&"number") => {
            Some("write the number without quotes".into())
        }
        Value::Empty(..) => Some("give a value after the colon, or remove the key".into()),
        _ => None,
    }
}

fn pattern_help(pattern: &str) -> Option<String> {
    (pattern == "^https?://")
        .then(|| "write the full URL with its scheme, e.g. https://kubeflow.example.com/pipeline".into())
}

/// The only patterns our schema uses are literal prefixes, optionally with `s?`.
fn matches_pattern(pattern: &str, s: &str) -> bool {
    match pattern {
        "^https?://" => s.starts_with("http://") || s.starts_with("https://"),
        other => other.strip_prefix('^').is_some_and(|p| s.starts_with(p)),
    }
}

fn first_sentence(s: &str) -> String {
    let flat = s.replace('\n', " ");
    match flat.find(". ") {
        Some(i) => flat[..=i].to_owned(),
        None => flat,
    }
}

/// `a.b[0].c` as shown to users (the root is "the configuration").
fn display_path(path: &str) -> &str {
    if path.is_empty() { "the configuration" } else { path }
}

/// The closest known name to `input`, if it is close enough to be a typo.
pub(crate) fn nearest<'a>(input: &str, known: &[&'a str]) -> Option<&'a str> {
    let lowered = input.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&lowered, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
