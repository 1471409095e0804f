//! Finding, layering and validating the configuration.
//!
//! Layers, lowest to highest priority:
//!
//! 1. the configuration file (`kfops.yaml`, or `config_files/config.yaml` for
//!    projects coming from kfops 0.1, or `--config FILE`);
//! 2. each `--config-override FILE`, in order (only a `pipeline:` section);
//! 3. `KFOPS_<SECTION>__<KEY>[__<KEY>…]` environment variables (`pipeline`
//!    and `kubeflow` sections);
//! 4. each `--set key.path=value`, in order (only `pipeline` keys);
//! 5. dedicated flags such as `--kubeflow-url` (only `kubeflow` keys).
//!
//! Mappings merge deeply, so `--set pipeline.pipeline_args.lr=0.1` keeps the
//! other arguments; lists and scalars are replaced. Values from `--set` and
//! the environment are read as YAML scalars (`3` is an integer, `[a, b]` a
//! list, `"3"` a string).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value as Json;

use crate::error::{ConfigError, Diagnostic, FileRole, Origin, Severity};
use crate::model::Config;
use crate::validate::{nearest, validate};
use crate::yaml::{YamlFile, join, yaml_to_value};

/// Where the configuration file is looked for, in order, relative to the project root.
pub const CONFIG_FILE_NAMES: [&str; 2] = ["kfops.yaml", "config_files/config.yaml"];

/// The environment-variable prefix for configuration keys.
pub const ENV_PREFIX: &str = "KFOPS_";

/// Sections that `--config-override` files and `--set` may change.
const DEV_OVERRIDABLE: &[&str] = &["pipeline"];
/// Sections the environment may set.
const ENV_SECTIONS: &[&str] = &["pipeline", "kubeflow"];

/// A value given by a dedicated command-line flag (e.g. `--kubeflow-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    /// The flag as shown to users, e.g. `--kubeflow-url`.
    pub flag: String,
    /// The configuration key it sets, e.g. `kubeflow.url`.
    pub key: String,
    /// The value, taken as a string.
    pub value: String,
}

/// Everything needed to load a configuration; build one, then call [`ConfigLoader::load`].
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    root: PathBuf,
    file: Option<PathBuf>,
    overrides: Vec<PathBuf>,
    env: Vec<(String, String)>,
    sets: Vec<String>,
    flags: Vec<FlagValue>,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// The project root every path in the configuration is relative to.
    pub root: PathBuf,
    /// The configuration file that was read.
    pub file: PathBuf,
    /// Things worth telling the user that do not stop anything.
    pub warnings: Vec<Diagnostic>,
    provenance: Provenance,
}

impl LoadedConfig {
    /// Where the effective value at `path` (dotted, e.g. `pipeline.name`) came from.
    pub fn origin(&self, path: &str) -> Origin {
        self.provenance.origin_of(path, false)
    }

    /// Where the key at `path` was written (the key itself rather than its value).
    pub fn key_origin(&self, path: &str) -> Origin {
        self.provenance.origin_of(path, true)
    }

    /// The configuration as JSON, with secrets masked.
    pub fn to_masked_json(&self) -> Json {
        serde_json::to_value(&self.config).unwrap_or(Json::Null)
    }

    /// Resolve a path from the configuration against the project root.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

impl ConfigLoader {
    /// A loader for the project rooted at `root` (the repository root).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ConfigLoader { root: root.into(), ..ConfigLoader::default() }
    }

    /// Use this configuration file instead of looking for one (relative to the current directory or absolute).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Add a `--config-override` file (applied in the order added).
    pub fn override_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.push(path.into());
        self
    }

    /// The environment to read `KFOPS_*` variables from (pass `std::env::vars()`).
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// Add a `--set key.path=value` (applied in the order added).
    pub fn set(mut self, assignment: impl Into<String>) -> Self {
        self.sets.push(assignment.into());
        self
    }

    /// Add a dedicated flag's value (applied last).
    pub fn flag(mut self, flag: FlagValue) -> Self {
        self.flags.push(flag);
        self
    }

    /// Find the configuration file, without reading it.
    pub fn locate(&self) -> Result<PathBuf, ConfigError> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        CONFIG_FILE_NAMES.iter().map(|n| self.root.join(n)).find(|p| p.is_file()).ok_or_else(|| ConfigError::NotFound {
            dir: self.root.clone(),
            tried: CONFIG_FILE_NAMES.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" and "),
        })
    }

    /// Read every layer, merge, validate, and return the configuration or every problem found.
    pub fn load(&self) -> Result<LoadedConfig, ConfigError> {
        let file = self.locate()?;
        let mut diagnostics = Vec::new();
        let mut warnings = Vec::new();
        let mut layers: Vec<Layer> = Vec::new();

        // 1. The configuration file.
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
            what: "configuration file",
            path: file.clone(),
            source,
        })?;
        let base_parsed = match YamlFile::parse(&file, FileRole::Config, text) {
            Ok(y) => {
                layers.push(Layer::file(y));
                true
            }
            Err(mut d) => {
                diagnostics.append(&mut d);
                false
            }
        };
        if self.file.is_none() && file.ends_with(CONFIG_FILE_NAMES[0]) && self.root.join(CONFIG_FILE_NAMES[1]).is_file()
        {
            warnings.push(Diagnostic {
                severity: Severity::Warning,
                path: String::new(),
                message: format!(
                    "both `{}` and `{}` exist; using `{}`",
                    CONFIG_FILE_NAMES[0], CONFIG_FILE_NAMES[1], CONFIG_FILE_NAMES[0]
                ),
                help: Some(format!("delete `{}` to avoid confusion", CONFIG_FILE_NAMES[1])),
                origin: Origin::File {
                    path: file.clone(),
                    line: 1,
                    column: 1,
                    source_line: None,
                    role: FileRole::Config,
                },
            });
        }

        // 2. Override files.
        for path in &self.overrides {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                what: "override file",
                path: path.clone(),
                source,
            })?;
            match YamlFile::parse(path, FileRole::Override, text) {
                Ok(mut y) => {
                    let refused: Vec<String> =
                        y.dict.keys().filter(|k| !DEV_OVERRIDABLE.contains(&k.as_str())).cloned().collect();
                    for key in refused {
                        diagnostics.push(section_refused(&key, y.origin(&key, true), "an override file"));
                        y.dict.remove(&key);
                    }
                    layers.push(Layer::file(y));
                }
                Err(mut d) => diagnostics.append(&mut d),
            }
        }

        // 3. Environment.
        let mut env_dict = Dict::new();
        let mut env_vars = HashMap::new();
        let mut env_vars_sorted: Vec<&(String, String)> = self.env.iter().collect();
        env_vars_sorted.sort();
        for (name, raw) in env_vars_sorted {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            if !rest.contains("__") {
                continue; // KFOPS_PYTHON and friends are not configuration keys.
            }
            let segments: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            let origin = Origin::Env { var: name.clone() };
            if segments.iter().any(String::is_empty) {
                diagnostics.push(error(
                    "",
                    origin,
                    format!("`{name}` has an empty key segment"),
                    Some("separate keys with exactly two underscores, e.g. KFOPS_KUBEFLOW__URL".into()),
                ));
                continue;
            }
            if !ENV_SECTIONS.contains(&segments[0].as_str()) {
                let suggestion = nearest(&segments[0], ENV_SECTIONS);
                diagnostics.push(error(
                    &segments[0],
                    origin,
                    format!(
                        "`{name}` names the section `{}`, which cannot come from the environment{}",
                        segments[0],
                        suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
                    ),
                    Some("only `pipeline` and `kubeflow` keys may be set with KFOPS_<SECTION>__<KEY> variables".into()),
                ));
                continue;
            }
            match parse_scalar(raw) {
                Ok(v) => {
                    let path = segments.join(".");
                    insert_path(&mut env_dict, &segments, v);
                    env_vars.insert(path, name.clone());
                }
                Err(e) => diagnostics.push(error(
                    &segments.join("."),
                    origin,
                    format!("cannot read the value of `{name}`: {e}"),
                    Some("quote strings that contain YAML punctuation, e.g. '\"a: b\"'".into()),
                )),
            }
        }
        if !env_dict.is_empty() {
            layers.push(Layer {
                name: "KFOPS_ environment".into(),
                dict: env_dict,
                source: LayerSource::Env(env_vars),
            });
        }

        // 4. --set.
        let pipeline_keys = pipeline_keys();
        for assignment in &self.sets {
            let flag = format!("--set {assignment}");
            let origin = Origin::Set { flag: flag.clone() };
            let Some((key, raw)) = assignment.split_once('=') else {
                diagnostics.push(error(
                    "",
                    origin,
                    format!("`{flag}` is not of the form KEY=VALUE"),
                    Some("write e.g. --set pipeline.pipeline_args.lr=0.1".into()),
                ));
                continue;
            };
            let mut segments: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                diagnostics.push(error(
                    "",
                    origin,
                    format!("`{flag}` has an empty key segment in `{key}`"),
                    Some("keys are dotted paths such as pipeline.pipeline_args.lr".into()),
                ));
                continue;
            }
            // kfops 0.1 wrote keys relative to the pipeline section (`--set pipeline_args.p1=v`).
            if !segments.is_empty() && pipeline_keys.contains(&segments[0]) && segments[0] != "pipeline" {
                segments.insert(0, "pipeline".into());
            }
            if !DEV_OVERRIDABLE.contains(&segments[0].as_str()) {
                diagnostics.push(section_refused(&segments[0], origin, "`--set`"));
                continue;
            }
            if segments.len() < 2 {
                diagnostics.push(error(
                    "pipeline",
                    origin,
                    format!("`{flag}` replaces the whole `pipeline` section"),
                    Some("set individual keys, e.g. --set pipeline.name=x".into()),
                ));
                continue;
            }
            let value = if raw.is_empty() { Ok(Value::from(String::new())) } else { parse_scalar(raw) };
            match value {
                Ok(v) => {
                    let mut dict = Dict::new();
                    insert_path(&mut dict, &segments, v);
                    layers.push(Layer { name: flag.clone(), dict, source: LayerSource::Set(flag) });
                }
                Err(e) => diagnostics.push(error(
                    &segments.join("."),
                    origin,
                    format!("cannot read the value in `{flag}`: {e}"),
                    Some(
                        "quote strings that contain YAML punctuation, e.g. --set 'pipeline.description=\"a: b\"'"
                            .into(),
                    ),
                )),
            }
        }

        // 5. Dedicated flags.
        for f in &self.flags {
            let segments: Vec<String> = f.key.split('.').map(str::to_owned).collect();
            let mut dict = Dict::new();
            insert_path(&mut dict, &segments, Value::from(f.value.clone()));
            layers.push(Layer { name: format!("flag {}", f.flag), dict, source: LayerSource::Flag(f.flag.clone()) });
        }

        // Merge. Layer names are unique, so a value's tag leads back to its layer.
        let mut figment = Figment::new();
        for layer in &layers {
            figment = figment.merge(layer.clone());
        }
        let merged = Provider::data(&figment).ok().and_then(|mut m| m.remove(&Profile::Default)).unwrap_or_default();
        let provenance = Provenance::new(&figment, &merged, layers);

        // Validate whatever could be read, so every problem is reported in one go.
        if base_parsed {
            let merged = Value::from(merged);
            for v in validate(crate::schema_ref(), &merged) {
                let origin = provenance.origin_of(&v.path, v.at_key);
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    path: v.path,
                    message: v.message,
                    help: v.help,
                    origin,
                });
            }
            check_semantics(&merged, &self.root, &provenance, &mut diagnostics, &mut warnings);
        }
        if !diagnostics.is_empty() {
            sort_diagnostics(&mut diagnostics);
            return Err(ConfigError::Invalid { diagnostics });
        }

        let config: Config = match figment.extract() {
            Ok(c) => c,
            Err(e) => {
                let diagnostics = e
                    .into_iter()
                    .map(|e| {
                        let path = e.path.join(".");
                        let origin = provenance.origin_of(&path, false);
                        error(&path, origin, e.kind.to_string(), None)
                    })
                    .collect();
                return Err(ConfigError::Invalid { diagnostics });
            }
        };

        Ok(LoadedConfig { config, root: self.root.clone(), file, warnings, provenance })
    }
}

/// Diagnostics in a stable order: by layer kind and position.
fn sort_diagnostics(d: &mut [Diagnostic]) {
    d.sort_by_key(|d| match &d.origin {
        Origin::File { role, line, column, path, .. } => (0, *role == FileRole::Override, path.clone(), *line, *column),
        Origin::Env { .. } => (1, false, PathBuf::new(), 0, 0),
        Origin::Set { .. } => (2, false, PathBuf::new(), 0, 0),
        Origin::Flag { .. } => (3, false, PathBuf::new(), 0, 0),
        Origin::Default => (4, false, PathBuf::new(), 0, 0),
    });
}

fn error(path: &str, origin: Origin, message: String, help: Option<String>) -> Diagnostic {
    Diagnostic { severity: Severity::Error, path: path.to_owned(), message, help, origin }
}

fn section_refused(section: &str, origin: Origin, what: &str) -> Diagnostic {
    let help = if section == "kubeflow" {
        "connection settings come from the configuration file, KFOPS_KUBEFLOW__* variables, or --kubeflow-url / --namespace".to_owned()
    } else {
        format!("change `{section}` in the configuration file itself; {what} is for experiments with the pipeline")
    };
    error(section, origin, format!("{what} may only change the `pipeline` section, not `{section}`"), Some(help))
}

/// Keys of the `pipeline` section, from the schema.
fn pipeline_keys() -> Vec<String> {
    crate::schema_ref()
        .pointer("/$defs/Pipeline/properties")
        .and_then(Json::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Read a `--set`/environment value as a YAML scalar (or flow collection).
fn parse_scalar(raw: &str) -> Result<Value, String> {
    serde_yaml::from_str::<serde_yaml::Value>(raw).map(yaml_to_value).map_err(|e| {
        let msg = e.to_string();
        match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        }
    })
}

fn insert_path(dict: &mut Dict, segments: &[String], value: Value) {
    match segments {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry(first.clone()).or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum LayerSource {
    File(Box<YamlFile>),
    Env(HashMap<String, String>),
    Set(String),
    Flag(String),
}

#[derive(Clone)]
struct Layer {
    name: String,
    dict: Dict,
    source: LayerSource,
}

impl Layer {
    fn file(y: YamlFile) -> Layer {
        let role = match y.role {
            FileRole::Config => "config",
            FileRole::Override => "override",
        };
        Layer {
            name: format!("{role} {}", y.path.display()),
            dict: y.dict.clone(),
            source: LayerSource::File(Box::new(y)),
        }
    }

    fn origin(&self, path: &str, at_key: bool) -> Origin {
        match &self.source {
            LayerSource::File(y) => y.origin(path, at_key),
            LayerSource::Env(vars) => {
                let var = vars.get(path).cloned().unwrap_or_else(|| {
                    let up: Vec<String> = path.split('.').map(str::to_uppercase).collect();
                    format!("{ENV_PREFIX}{}", up.join("__"))
                });
                Origin::Env { var }
            }
            LayerSource::Set(flag) => Origin::Set { flag: flag.clone() },
            LayerSource::Flag(flag) => Origin::Flag { flag: flag.clone() },
        }
    }
}

impl std::fmt::Debug for Layer {
    /// Only the name: the layer's values may hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Which layer each value of the merged configuration came from.
#[derive(Debug, Clone, Default)]
struct Provenance {
    /// Dotted path → index into `layers` of the layer that supplied the effective value.
    by_path: HashMap<String, usize>,
    layers: Vec<Layer>,
}

impl Provenance {
    /// Record, for every value of `merged`, which layer supplied it (figment tags each value with its provider).
    fn new(figment: &Figment, merged: &Dict, layers: Vec<Layer>) -> Provenance {
        fn walk(
            figment: &Figment,
            names: &HashMap<&str, usize>,
            v: &Value,
            path: String,
            out: &mut HashMap<String, usize>,
        ) {
            if let Some(i) = figment.get_metadata(v.tag()).and_then(|m| names.get(m.name.as_ref())) {
                out.insert(path.clone(), *i);
            }
            match v {
                Value::Dict(_, d) => {
                    for (k, child) in d {
                        walk(figment, names, child, join(&path, k), out);
                    }
                }
                Value::Array(_, items) => {
                    for (i, child) in items.iter().enumerate() {
                        walk(figment, names, child, format!("{path}[{i}]"), out);
                    }
                }
                _ => {}
            }
        }
        let names: HashMap<&str, usize> = layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let mut by_path = HashMap::new();
        for (k, v) in merged {
            walk(figment, &names, v, k.clone(), &mut by_path);
        }
        Provenance { by_path, layers }
    }

    /// The origin of the value at `path` (or of its nearest recorded ancestor).
    fn origin_of(&self, path: &str, at_key: bool) -> Origin {
        let mut p = path.to_owned();
        loop {
            if let Some(i) = self.by_path.get(&p) {
                return self.layers[*i].origin(path, at_key);
            }
            if p.is_empty() {
                break;
            }
            p = crate::yaml::parent(&p).to_owned();
        }
        // The whole document: point at the start of the configuration file.
        self.layers.first().map_or(Origin::Default, |l| l.origin(path, at_key))
    }
}

/// Checks beyond the schema (paths on disk, "at most one", uniqueness), run on
/// the merged values so that they are reported together with schema problems.
fn check_semantics(
    merged: &Value,
    root: &Path,
    provenance: &Provenance,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) {
    let str_at = |path: &str| merged.find_ref(path).and_then(Value::as_str);
    let mut paths: Vec<(String, bool)> = Vec::new();
    for (key, must_be_file) in [
        ("pipeline.pipeline_path", true),
        ("deployment.inference_service_function_path", true),
        ("deployment.pre_deployment_test_sample_input_path", true),
        ("deployment.manifest_template_path", true),
        ("deployment.expected_output_path", true),
    ] {
        if str_at(key).is_some() {
            paths.push((key.to_owned(), must_be_file));
        }
    }
    if let Some(Value::Array(_, images)) = merged.find_ref("image_builder.images") {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, img) in images.iter().enumerate() {
            if img.find_ref("dockerfile_folder_path").and_then(Value::as_str).is_some() {
                paths.push((format!("image_builder.images[{i}].dockerfile_folder_path"), false));
            }
            if let Some(Value::Array(_, others)) = img.find_ref("other_folders_path") {
                for (j, other) in others.iter().enumerate() {
                    if other.as_str().is_some() {
                        paths.push((format!("image_builder.images[{i}].other_folders_path[{j}]"), false));
                    }
                }
            }
            if let Some(name) = img.find_ref("name").and_then(Value::as_str)
                && let Some(first) = seen.insert(name, i)
            {
                let path = format!("image_builder.images[{i}].name");
                errors.push(error(
                    &path,
                    provenance.origin_of(&path, false),
                    format!("image name `{name}` is used twice (also by image_builder.images[{first}])"),
                    Some("give every image a unique name".into()),
                ));
            }
        }
    }
    for (path, must_be_file) in paths {
        let Some(value) = find_indexed(merged, &path).and_then(Value::as_str) else { continue };
        if let Err((message, help)) = check_repo_path(root, value, must_be_file) {
            errors.push(error(&path, provenance.origin_of(&path, false), format!("`{path}` {message}"), help));
        }
    }

    if str_at("image_builder.builder") == Some("kaniko") && merged.find_ref("image_builder.kaniko").is_none() {
        let path = "image_builder.builder";
        errors.push(error(
            path,
            provenance.origin_of(path, false),
            "`image_builder.builder` is `kaniko`, but there is no `image_builder.kaniko` section".into(),
            Some("add `kaniko:` with at least `credentials_secret:` (a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the context bucket)".into()),
        ));
    }
    if let Some(Value::Dict(_, auth)) = merged.find_ref("kubeflow.auth") {
        let sources: Vec<&String> = auth.keys().collect();
        if sources.len() > 1 {
            let path = format!("kubeflow.auth.{}", sources[1]);
            errors.push(error(
                &path,
                provenance.origin_of(&path, true),
                format!(
                    "`kubeflow.auth` sets {}; set only one credential source",
                    sources.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" and ")
                ),
                None,
            ));
        }
    }
    if merged.find_ref("pipeline.pipeline_execution_mode").is_some() {
        let path = "pipeline.pipeline_execution_mode";
        warnings.push(Diagnostic {
            severity: Severity::Warning,
            path: path.into(),
            message: "`pipeline.pipeline_execution_mode` is ignored: Kubeflow Pipelines v2 has a single execution mode"
                .into(),
            help: Some("remove the key".into()),
            origin: provenance.origin_of(path, true),
        });
    }
}

/// Look up a dotted path that may contain list indexes (`a.b[1].c`).
fn find_indexed<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        cur = match cur {
            Value::Dict(_, d) => d.get(key)?,
            _ => return None,
        };
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = match cur {
                Value::Array(_, items) => items.get(n)?,
                _ => return None,
            };
        }
    }
    Some(cur)
}

/// A path from the configuration must be relative, stay inside the project
/// root (also through symlinks), and exist.
fn check_repo_path(root: &Path, value: &str, must_be_file: bool) -> Result<(), (String, Option<String>)> {
    if value.trim().is_empty() {
        return Err(("is empty".into(), Some("give a path relative to the project root".into())));
    }
    let p = Path::new(value);
    if p.is_absolute() || value.starts_with('~') {
        return Err((
            format!("is an absolute path (`{value}`)"),
            Some("paths in kfops.yaml are relative to the project root, so the project works on every checkout".into()),
        ));
    }
    let mut depth: i32 = 0;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err((
                format!("points outside the repository (`{value}`)"),
                Some("paths must stay inside the project root; move the file into the repository".into()),
            ));
        }
    }
    let full = root.join(p);
    if !full.exists() {
        return Err((
            format!("names `{value}`, which does not exist under the project root `{}`", root.display()),
            None,
        ));
    }
    if let (Ok(canon_root), Ok(canon)) = (root.canonicalize(), full.canonicalize())
        && !canon.starts_with(&canon_root)
    {
        return Err((
            format!("points outside the repository through a symbolic link (`{value}` → `{}`)", canon.display()),
            Some("replace the link with the file itself".into()),
        ));
    }
    if must_be_file && !full.is_file() {
        return Err((format!("names `{value}`, which is not a file"), None));
    }
    if !must_be_file && !full.is_dir() {
        return Err((format!("names `{value}`, which is not a folder"), None));
    }
    Ok(())
}
