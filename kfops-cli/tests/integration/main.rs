//! End-to-end tests of `kfc` on fixture projects, with the real `kfp` compiler.
//!
//! Tests that compile Python need an interpreter with `kfp` 2.x: `KFOPS_PYTHON`
//! (set by `cargo xtask test`), else the workspace's `.venv`. They fail, never
//! skip, when neither exists.

mod commands;
mod kubeflow;
mod local;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// The Python interpreter with kfp the tests compile with.
pub(crate) fn python() -> String {
    if let Ok(p) = std::env::var("KFOPS_PYTHON")
        && !p.is_empty()
    {
        return p;
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with kfp for the compile tests: run `cargo xtask test` (it creates .venv with kfp) or set KFOPS_PYTHON"
    );
    venv.display().to_string()
}

/// `kfc` with a clean, predictable environment (no KFOPS_* leaking from the developer's shell).
pub(crate) fn kfc() -> Command {
    let mut cmd = Command::cargo_bin("kfc").expect("kfc binary");
    for (k, _) in std::env::vars() {
        if k.starts_with("KFOPS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("KFOPS_PYTHON", python());
    // Lightweight-component virtualenvs are cached once for all tests.
    cmd.env("KFOPS_CACHE_DIR", workspace().join("target/kfops-test-cache"));
    cmd
}

/// A temporary project with the given files.
pub(crate) fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, contents) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, contents).expect("write");
    }
    dir
}

/// The example pipeline's source.
pub(crate) fn hello_pipeline_py() -> String {
    std::fs::read_to_string(workspace().join("examples/hello-pipeline/pipeline.py")).expect("example")
}

/// A reference pipeline compiled by kfp 2.17.3.
pub(crate) fn reference_ir(name: &str) -> String {
    let path = workspace().join("../shared/reference/kfp-ir-examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reference pipeline {}: {e}", path.display()))
}

/// stdout and stderr as text, with the temporary directory replaced by `<project>`.
pub(crate) fn texts(out: &std::process::Output, dir: &Path) -> (String, String) {
    let scrub = |b: &[u8]| {
        let mut s = String::from_utf8_lossy(b).into_owned();
        for d in [dir.to_path_buf(), dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())] {
            s = s.replace(&d.display().to_string(), "<project>");
        }
        s
    };
    (scrub(&out.stdout), scrub(&out.stderr))
}
