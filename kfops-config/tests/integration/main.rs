//! Integration tests of kfops-config: error messages, layering, schema.

mod errors;
mod layering;
mod schema;

use std::path::Path;

use kfops_config::{ConfigLoader, LoadedConfig};

/// A temporary project with the given files (path, contents).
pub(crate) fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, contents) in files {
        let full = dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(full, contents).expect("write");
    }
    dir
}

/// A minimal valid configuration plus the pipeline file it names.
pub(crate) const MINIMAL: &str = "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\n";

/// Load with a loader customised by `f`, rendering errors with the temp dir replaced by `<project>`.
pub(crate) fn load_with(dir: &Path, f: impl FnOnce(ConfigLoader) -> ConfigLoader) -> Result<LoadedConfig, String> {
    let loader = f(ConfigLoader::new(dir).env(Vec::new()));
    loader.load().map_err(|e| scrub(dir, &e.to_string()))
}

/// Replace the temporary directory in messages so snapshots are stable.
pub(crate) fn scrub(dir: &Path, text: &str) -> String {
    let mut out = text.replace(&dir.display().to_string(), "<project>");
    if let Ok(canon) = dir.canonicalize() {
        out = out.replace(&canon.display().to_string(), "<project>");
    }
    out
}
