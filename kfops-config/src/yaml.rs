//! Reading YAML files into figment values, with a position for every key.
//!
//! Values come from `serde_yaml` (the authority on what a scalar means); a
//! second pass over the same text with `saphyr-parser` records where each key
//! path starts, so every diagnostic can point at `file:line:column`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Empty, Num, Value};
use saphyr_parser::{Event, Parser};

use crate::error::{Diagnostic, FileRole, Origin, Severity};

/// Positions of keys and values in one YAML text, by dotted key path.
#[derive(Debug, Default, Clone)]
pub(crate) struct PositionIndex {
    /// path → (line, column) of the key (for mapping entries) or of the item (for list items).
    keys: HashMap<String, (usize, usize)>,
    /// path → (line, column) of the value.
    values: HashMap<String, (usize, usize)>,
}

impl PositionIndex {
    /// Build the index; a text the parser rejects yields an empty index.
    pub(crate) fn build(text: &str) -> Self {
        let mut index = PositionIndex::default();
        // Each frame: the path of the container and, for mappings, the pending key.
        enum Frame {
            Map { path: String, key: Option<String> },
            Seq { path: String, next: usize },
        }
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            if let Event::DocumentStart(_) = event {
                documents += 1;
                if documents > 1 {
                    break;
                }
                continue;
            }
            // Where does this node sit?
            let node_path = match stack.last_mut() {
                Some(Frame::Map { path, key }) => match key.take() {
                    None => {
                        // This node is a key.
                        if let Event::Scalar(s, ..) = &event {
                            let child = join(path, s);
                            index.keys.insert(child, pos);
                            *key = Some(s.to_string());
                        } else if !matches!(event, Event::MappingEnd) {
                            *key = Some(String::new());
                        }
                        if matches!(event, Event::MappingEnd) {
                            stack.pop();
                        }
                        continue;
                    }
                    Some(k) => Some(join(path, &k)),
                },
                Some(Frame::Seq { path, next }) => {
                    if matches!(event, Event::SequenceEnd) {
                        stack.pop();
                        continue;
                    }
                    let child = format!("{path}[{next}]");
                    *next += 1;
                    index.keys.insert(child.clone(), pos);
                    Some(child)
                }
                None => Some(String::new()),
            };
            let Some(node_path) = node_path else { continue };
            match event {
                Event::MappingStart(..) => {
                    index.values.entry(node_path.clone()).or_insert(pos);
                    stack.push(Frame::Map { path: node_path, key: None });
                }
                Event::SequenceStart(..) => {
                    index.values.entry(node_path.clone()).or_insert(pos);
                    stack.push(Frame::Seq { path: node_path, next: 0 });
                }
                Event::MappingEnd => {
                    stack.pop();
                }
                _ => {
                    index.values.entry(node_path).or_insert(pos);
                }
            }
        }
        index
    }

    /// The best position for a problem at `path`: the value, else the key,
    /// else the nearest ancestor that has one.
    pub(crate) fn value_pos(&self, path: &str) -> Option<(usize, usize)> {
        self.lookup(path, true)
    }

    /// The position of the key itself (for unknown keys), else as [`Self::value_pos`].
    pub(crate) fn key_pos(&self, path: &str) -> Option<(usize, usize)> {
        self.lookup(path, false)
    }

    fn lookup(&self, path: &str, value_first: bool) -> Option<(usize, usize)> {
        let mut p = path.to_owned();
        loop {
            let (a, b) = if value_first { (&self.values, &self.keys) } else { (&self.keys, &self.values) };
            if let Some(pos) = a.get(&p).or_else(|| b.get(&p)) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(&p).to_owned();
        }
    }
}

/// Join a key onto a dotted path.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// The parent of a dotted/indexed path (`a.b[2]` → `a.b`, `a.b` → `a`).
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// A parsed YAML file: its values, where they are, and its text.
#[derive(Debug, Clone)]
pub(crate) struct YamlFile {
    pub(crate) path: PathBuf,
    pub(crate) role: FileRole,
    pub(crate) text: String,
    pub(crate) dict: Dict,
    pub(crate) index: PositionIndex,
}

impl YamlFile {
    /// Parse `text` (read from `path`). Problems are returned as diagnostics.
    pub(crate) fn parse(path: &Path, role: FileRole, text: String) -> Result<YamlFile, Vec<Diagnostic>> {
        let index = PositionIndex::build(&text);
        let mut file = YamlFile { path: path.to_owned(), role, text, dict: Dict::new(), index };
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&file.text) {
            match serde::Deserialize::deserialize(doc) {
                Ok(v) => docs.push(v),
                Err(e) => {
                    let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                    let message = strip_location(&e.to_string());
                    return Err(vec![file.diag_at(
                        "",
                        (line, col),
                        format!("invalid YAML: {message}"),
                        Some("check indentation and quoting around this position".into()),
                    )]);
                }
            }
        }
        let doc = match docs.len() {
            0 => serde_yaml::Value::Null,
            1 => docs.remove(0),
            n => {
                return Err(vec![file.diag_at(
                    "",
                    (1, 1),
                    format!("the file holds {n} YAML documents; a kfops configuration is exactly one"),
                    Some("remove the `---` separators and merge the documents".into()),
                )]);
            }
        };
        let mut problems = Vec::new();
        match doc {
            serde_yaml::Value::Null => problems.push(file.diag_at(
                "",
                (1, 1),
                "the file is empty".into(),
                Some(match role {
                    FileRole::Config => {
                        "a configuration needs at least `pipeline.name` and `pipeline.pipeline_path`".into()
                    }
                    FileRole::Override => "an override file holds a `pipeline:` section with the keys to change".into(),
                }),
            )),
            serde_yaml::Value::Mapping(map) => {
                let mut dict = Dict::new();
                for (k, v) in map {
                    match key_string(&k) {
                        Some(key) => {
                            let child = convert(&file, &key, v, &mut problems);
                            dict.insert(key, child);
                        }
                        None => problems.push(file.diag_at(
                            "",
                            (1, 1),
                            "a top-level key is not a plain scalar".into(),
                            None,
                        )),
                    }
                }
                file.dict = dict;
            }
            other => problems.push(file.diag_at(
                "",
                (1, 1),
                format!("the file must be a mapping of sections (`pipeline:`, …), found {}", yaml_kind(&other)),
                None,
            )),
        }
        if problems.is_empty() { Ok(file) } else { Err(problems) }
    }

    /// The origin of `path` in this file (value position).
    pub(crate) fn origin(&self, path: &str, key: bool) -> Origin {
        let pos = if key { self.index.key_pos(path) } else { self.index.value_pos(path) };
        let (line, column) = pos.unwrap_or((1, 1));
        Origin::File {
            path: self.path.clone(),
            line,
            column,
            source_line: self.text.lines().nth(line.saturating_sub(1)).map(str::to_owned),
            role: self.role,
        }
    }

    fn diag_at(&self, path: &str, (line, column): (usize, usize), message: String, help: Option<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            path: path.to_owned(),
            message,
            help,
            origin: Origin::File {
                path: self.path.clone(),
                line,
                column,
                source_line: self.text.lines().nth(line.saturating_sub(1)).map(str::to_owned),
                role: self.role,
            },
        }
    }
}

/// serde_yaml appends " at line L column C" to messages; the location is shown separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn key_string(k: &serde_yaml::Value) -> Option<String> {
    match k {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A description of a YAML value's kind, for messages.
pub(crate) fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "nothing (null)",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

fn convert(file: &YamlFile, path: &str, v: serde_yaml::Value, problems: &mut Vec<Diagnostic>) -> Value {
    match v {
        serde_yaml::Value::Tagged(t) => {
            problems.push(file.diag_at(
                path,
                file.index.value_pos(path).unwrap_or((1, 1)),
                format!("YAML tags such as `{}` are not supported in a kfops configuration", t.tag),
                Some("remove the tag and write the plain value".into()),
            ));
            Value::Empty(Default::default(), Empty::None)
        }
        serde_yaml::Value::Mapping(map) => {
            let mut dict = Dict::new();
            for (k, v) in map {
                match key_string(&k) {
                    Some(key) => {
                        let child_path = join(path, &key);
                        let child = convert(file, &child_path, v, problems);
                        dict.insert(key, child);
                    }
                    None => problems.push(file.diag_at(
                        path,
                        file.index.value_pos(path).unwrap_or((1, 1)),
                        format!("a key under `{path}` is {}, not a plain scalar", yaml_kind(&k)),
                        None,
                    )),
                }
            }
            Value::from(dict)
        }
        other => yaml_to_value(other),
    }
}

/// Convert a YAML value without positions (used for `--set` and environment values).
pub(crate) fn yaml_to_value(v: serde_yaml::Value) -> Value {
    match v {
        serde_yaml::Value::Null => Value::Empty(Default::default(), Empty::None),
        serde_yaml::Value::Bool(b) => Value::from(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Num(Default::default(), Num::I64(i))
            } else if let Some(u) = n.as_u64() {
                Value::Num(Default::default(), Num::U64(u))
            } else {
                Value::Num(Default::default(), Num::F64(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        serde_yaml::Value::String(s) => Value::from(s),
        serde_yaml::Value::Sequence(seq) => Value::from(seq.into_iter().map(yaml_to_value).collect::<Vec<_>>()),
        serde_yaml::Value::Mapping(map) => {
            let mut dict = Dict::new();
            for (k, v) in map {
                let key = key_string(&k).unwrap_or_else(|| format!("{k:?}"));
                dict.insert(key, yaml_to_value(v));
            }
            Value::from(dict)
        }
        serde_yaml::Value::Tagged(t) => yaml_to_value(t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_records_keys_values_and_list_items() {
        let text = "pipeline:\n  name: x\n  pipeline_args:\n    lr: 0.1\nimage_builder:\n  images:\n    - name: a\n      dockerfile_folder_path: d\n";
        let idx = PositionIndex::build(text);
        assert_eq!(idx.key_pos("pipeline"), Some((1, 1)));
        assert_eq!(idx.key_pos("pipeline.name"), Some((2, 3)));
        assert_eq!(idx.value_pos("pipeline.name"), Some((2, 9)));
        assert_eq!(idx.value_pos("pipeline.pipeline_args.lr"), Some((4, 9)));
        assert_eq!(idx.key_pos("image_builder.images[0].dockerfile_folder_path"), Some((8, 7)));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(idx.value_pos("pipeline.missing"), Some((2, 3)).and(idx.value_pos("pipeline")));
        assert_eq!(parent("a.b[2]"), "a.b");
        assert_eq!(parent("a.b"), "a");
        assert_eq!(parent("a"), "");
    }
}
