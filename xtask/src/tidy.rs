//! The architecture invariants of `ARCHITECTURE.md`, checked mechanically.
//!
//! Dependency rules are checked on `cargo metadata` (declared dependencies of
//! every workspace member); source rules on the files themselves.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The layer a workspace crate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `kfops-core`: domain types and traits, no IO.
    Core,
    /// `kfops-config`, `kfops-kubeflow`, `kfops-deploy`, `kfops-scm`.
    Adapter,
    /// `kfops-cli`, `kfops-bot`.
    Binary,
    /// `xtask`.
    Tool,
}

/// The layer of a workspace crate, by name.
pub fn layer(name: &str) -> Option<Layer> {
    match name {
        "kfops-core" => Some(Layer::Core),
        "kfops-config" | "kfops-kubeflow" | "kfops-deploy" | "kfops-scm" => Some(Layer::Adapter),
        "kfops-cli" | "kfops-bot" => Some(Layer::Binary),
        "xtask" => Some(Layer::Tool),
        _ => None,
    }
}

/// The only crates `kfops-core` may depend on: nothing that does IO.
pub const CORE_ALLOWED: &[&str] = &["serde", "serde_json", "async-trait", "thiserror", "strsim"];

/// Third-party crates that only some workspace crates may use.
pub const RESTRICTED: &[(&str, &[&str])] = &[
    ("figment", &["kfops-config"]),
    ("octocrab", &["kfops-scm"]),
    ("kube", &["kfops-deploy", "kfops-kubeflow"]),
    ("axum", &["kfops-bot", "kfops-kubeflow", "kfops-scm"]),
    ("reqwest", &["kfops-kubeflow", "kfops-deploy", "kfops-scm"]),
    ("clap", &["kfops-cli", "kfops-bot"]),
    ("rusqlite", &["kfops-bot"]),
];

/// One workspace crate and its normal (non-dev, non-build) dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crate {
    /// Package name.
    pub name: String,
    /// Names of its normal dependencies (package names, not renames).
    pub deps: Vec<String>,
}

/// Read the workspace crates from `cargo metadata`.
pub fn workspace_crates(root: &Path) -> Result<Vec<Crate>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("parsing cargo metadata: {e}"))?;
    parse_metadata(&meta)
}

/// Extract [`Crate`]s from `cargo metadata` JSON.
pub fn parse_metadata(meta: &Value) -> Result<Vec<Crate>, String> {
    let packages = meta.get("packages").and_then(Value::as_array).ok_or("cargo metadata has no packages")?;
    Ok(packages
        .iter()
        .map(|p| Crate {
            name: p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            deps: p
                .get("dependencies")
                .and_then(Value::as_array)
                .map(|deps| {
                    deps.iter()
                        .filter(|d| d.get("kind").is_none_or(Value::is_null))
                        .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

/// Check the dependency rules; returns one message per violation.
pub fn check_dependencies(crates: &[Crate]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in crates {
        let Some(own) = layer(&c.name) else {
            problems.push(format!(
                "`{}` is not a known workspace crate: add it to xtask's tidy::layer and ARCHITECTURE.md",
                c.name
            ));
            continue;
        };
        for dep in &c.deps {
            let dep_layer = layer(dep);
            match (own, dep_layer) {
                (Layer::Core, Some(_)) => {
                    problems.push(format!("`kfops-core` must not depend on the workspace crate `{dep}`"))
                }
                (Layer::Core, None) if !CORE_ALLOWED.contains(&dep.as_str()) => problems.push(format!(
                    "`kfops-core` must stay free of IO, but depends on `{dep}` (allowed: {})",
                    CORE_ALLOWED.join(", ")
                )),
                (Layer::Adapter, Some(Layer::Adapter)) => problems
                    .push(format!("adapter `{}` must not depend on adapter `{dep}`; compose them in a binary", c.name)),
                // xtask benchmarks the services through their libraries.
                (Layer::Tool, Some(Layer::Binary)) => {}
                (_, Some(Layer::Binary)) => {
                    problems.push(format!("`{}` must not depend on the binary crate `{dep}`", c.name))
                }
                (_, Some(Layer::Tool)) => problems.push(format!("`{}` must not depend on `xtask`", c.name)),
                _ => {}
            }
            if let Some((_, allowed)) = RESTRICTED.iter().find(|(name, _)| name == dep)
                && !allowed.contains(&c.name.as_str())
            {
                problems.push(format!(
                    "`{dep}` may only be used by {}, but `{}` depends on it",
                    allowed.join(", "),
                    c.name
                ));
            }
        }
    }
    problems
}

/// Words that mean IO; none may appear in `kfops-core`'s sources.
pub const CORE_FORBIDDEN_SOURCE: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "tokio",
    "reqwest",
    "SystemTime::now",
    "Instant::now",
    "thread::sleep",
];

/// Check source-level rules under `root`; returns one message per violation.
pub fn check_sources(root: &Path, crates: &[Crate]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in crates {
        let dir = root.join(&c.name);
        let files = rust_files(&dir.join("src"));
        // One error.rs per crate (tools are exempt).
        if layer(&c.name) != Some(Layer::Tool) {
            if !dir.join("src/error.rs").is_file() {
                problems.push(format!("`{}` has no src/error.rs", c.name));
            }
            for (path, text) in &files {
                if !path.ends_with("error.rs") && text.contains("thiserror::Error") {
                    problems.push(format!("`{}` defines an error type outside error.rs: {}", c.name, path.display()));
                }
            }
        }
        // Crate docs.
        for entry in ["src/lib.rs", "src/main.rs"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(entry))
                && !text.trim_start().starts_with("//!")
            {
                problems.push(format!("`{}/{entry}` does not start with crate documentation (`//!`)", c.name));
            }
        }
        // One integration-test binary: tests/integration/main.rs and nothing else at the top of tests/.
        if let Ok(entries) = std::fs::read_dir(dir.join("tests")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name != "integration" && name != "fixtures" && name != "snapshots" {
                    problems.push(format!(
                        "`{}/tests/{name}`: integration tests live in tests/integration/ (one test binary per crate)",
                        c.name
                    ));
                }
            }
        }
        if layer(&c.name) == Some(Layer::Core) {
            for (path, text) in &files {
                for word in CORE_FORBIDDEN_SOURCE {
                    if text.lines().any(|l| !l.trim_start().starts_with("//") && l.contains(word)) {
                        problems.push(format!("kfops-core must not do IO, but {} mentions `{word}`", path.display()));
                    }
                }
            }
        }
    }
    problems
}

fn rust_files(dir: &Path) -> BTreeMap<std::path::PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && let Ok(text) = std::fs::read_to_string(&p)
            {
                out.insert(p, text);
            }
        }
    }
    out
}

/// All tidy checks on the workspace at `root`.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let crates = workspace_crates(root)?;
    let mut problems = check_dependencies(&crates);
    problems.extend(check_sources(root, &crates));
    Ok(problems)
}
