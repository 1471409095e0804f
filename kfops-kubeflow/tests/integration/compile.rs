//! The compiler invocation, with the real `kfp` package.
//!
//! Needs a Python with kfp 2.17.3: `KFOPS_PYTHON` (set by `cargo xtask test`),
//! else the workspace's `.venv`. Fails (never skips) without one.

use std::path::{Path, PathBuf};

use kfops_kubeflow::CompileError;
use kfops_kubeflow::compile::{Compiler, SourceKind};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KFOPS_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "no Python with kfp: run `cargo xtask test` (creates .venv with kfp) or set KFOPS_PYTHON");
    venv
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/kfp-ir-examples")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn python_sources_compile_to_exactly_the_reference_ir() {
    // The reference YAMLs were produced by `kfp dsl compile` 2.17.3; ours must be identical.
    let cases = [
        ("p1_linear_params.py", Some("linear_params"), "p1_linear_params.yaml"),
        ("p2_control_flow.py", None, "p2_control_flow.yaml"),
        ("p3_artifacts_container.py", None, "p3_artifacts_container.yaml"),
    ];
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    for (py, function, yaml) in cases {
        std::fs::copy(reference_dir().join(py), dir.path().join(py)).expect("copy source");
        let compiled = rt
            .block_on(Compiler::new().python(python()).compile(Path::new(py), function, dir.path()))
            .unwrap_or_else(|e| panic!("{py}: {e}"));
        assert_eq!(compiled.kind, SourceKind::Python);
        let expected = std::fs::read_to_string(reference_dir().join(yaml)).expect("reference");
        assert_eq!(compiled.text, expected, "{py} compiled differently from the reference {yaml}");
        // What we parsed is what the compiler wrote: re-reading our own emission gives the same pipeline.
        let reparsed =
            kfops_kubeflow::ir::PipelineJob::from_yaml_str(&compiled.job.to_yaml_string()).expect("re-parses");
        assert_eq!(reparsed, compiled.job, "{py}");
    }
}

#[test]
fn compiled_files_are_read_as_they_are() {
    let rt = runtime();
    let compiled = rt
        .block_on(Compiler::new().env(vec![]).compile(
            &reference_dir().join("p4_platform_spec_importer.yaml"),
            None,
            Path::new("/"),
        ))
        .expect("compiles");
    assert_eq!(compiled.kind, SourceKind::Yaml);
    assert!(compiled.python.is_none(), "no Python needed for compiled pipelines");
    assert!(compiled.job.platform.is_some(), "second document kept");
}

#[test]
fn failures_are_classified() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("syntax.py"), "def broken(:\n").expect("write");
    std::fs::write(dir.path().join("hang.py"), "import time\ntime.sleep(30)\n").expect("write");
    std::fs::write(dir.path().join("notes.txt"), "").expect("write");

    let err = rt
        .block_on(Compiler::new().python(python()).compile(Path::new("syntax.py"), None, dir.path()))
        .expect_err("syntax error");
    match &err {
        CompileError::CompilerFailed { output, .. } => {
            assert!(output.contains("syntax.py\", line 1"), "{output}");
            assert!(output.contains("SyntaxError"), "{output}");
        }
        other => panic!("unexpected {other:?}"),
    }

    let err = rt
        .block_on(Compiler::new().python(python()).timeout(std::time::Duration::from_millis(1500)).compile(
            Path::new("hang.py"),
            None,
            dir.path(),
        ))
        .expect_err("timeout");
    assert!(matches!(err, CompileError::Timeout { .. }), "{err:?}");

    let err = rt.block_on(Compiler::new().compile(Path::new("missing.py"), None, dir.path())).expect_err("missing");
    assert!(matches!(err, CompileError::SourceMissing { .. }));
    let err = rt.block_on(Compiler::new().compile(Path::new("notes.txt"), None, dir.path())).expect_err("unsupported");
    assert!(matches!(err, CompileError::UnsupportedSource { .. }));
    let err = rt
        .block_on(Compiler::new().python("/nonexistent/python").compile(Path::new("syntax.py"), None, dir.path()))
        .expect_err("no python");
    assert_eq!(
        err.to_string().lines().next().unwrap_or_default(),
        "no Python interpreter found to compile `syntax.py` (tried /nonexistent/python); install Python 3.9+ or set KFOPS_PYTHON to the interpreter that has the `kfp` package"
    );
}

#[test]
fn a_scrubbed_environment_hides_secrets_from_pipeline_code() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // The pipeline module fails compilation if it can see the secret.
    std::fs::write(
        dir.path().join("p.py"),
        "import os\nfrom kfp import dsl\nassert 'GITHUB_TOKEN' not in os.environ, 'secret leaked'\n@dsl.component\ndef a() -> int:\n    return 1\n@dsl.pipeline(name='p')\ndef p():\n    a()\n",
    )
    .expect("write");
    let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    env.push(("GITHUB_TOKEN".into(), "ghs_secret".into()));
    let leaky =
        rt.block_on(Compiler::new().python(python()).env(env.clone()).compile(Path::new("p.py"), None, dir.path()));
    assert!(
        matches!(leaky, Err(CompileError::CompilerFailed { ref output, .. }) if output.contains("secret leaked")),
        "{leaky:?}"
    );
    let scrubbed = rt.block_on(Compiler::new().python(python()).env(env).scrub_env(true).compile(
        Path::new("p.py"),
        None,
        dir.path(),
    ));
    assert!(scrubbed.is_ok(), "{scrubbed:?}");
}

fn bwrap() -> PathBuf {
    kfops_kubeflow::compile::find_on_path("bwrap", None)
        .expect("bubblewrap (`bwrap`) is needed for the sandbox tests; `.ci/run` installs it (apt install bubblewrap)")
}

#[test]
fn a_sandboxed_compile_sees_no_outside_files_processes_or_network() {
    let rt = runtime();
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("app-key.pem");
    std::fs::write(&secret, "not for pull requests").expect("secret");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let checkout = tempfile::tempdir().expect("tempdir");
    let module = format!(
        r#"import os, socket
from kfp import dsl
leaks = []
if os.path.exists({secret:?}): leaks.append("secret file")
if len([p for p in os.listdir("/proc") if p.isdigit()]) > 3: leaks.append("host processes")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2); leaks.append("network")
except OSError:
    pass
try:
    open("written-into-the-checkout", "w"); leaks.append("writable checkout")
except OSError:
    pass
if leaks: raise RuntimeError("sandbox leaks: " + ", ".join(leaks))

@dsl.component
def hello() -> str:
    return "hi"

@dsl.pipeline(name="sandboxed")
def sandboxed():
    hello()
"#,
        secret = secret.display().to_string()
    );
    std::fs::write(checkout.path().join("pipeline.py"), module).expect("module");
    let compiler =
        Compiler::new().python(python()).scrub_env(true).sandbox(kfops_kubeflow::compile::Sandbox::bubblewrap(bwrap()));
    let compiled = rt
        .block_on(compiler.compile(Path::new("pipeline.py"), None, checkout.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(compiled.job.spec.pipeline_info.name, "sandboxed");
    // The same module unconfined does see the file and the network: the checks above are real.
    let unconfined = rt
        .block_on(Compiler::new().python(python()).compile(Path::new("pipeline.py"), None, checkout.path()))
        .expect_err("leaks outside the sandbox")
        .to_string();
    assert!(unconfined.contains("secret file") && unconfined.contains("network"), "{unconfined}");
    drop(listener);
}

#[test]
fn a_sandbox_that_cannot_run_is_a_clear_error() {
    let rt = runtime();
    let missing = kfops_kubeflow::compile::Sandbox::bubblewrap("/nonexistent/bwrap");
    let err = rt.block_on(missing.probe()).expect_err("no such program").to_string();
    assert!(err.contains("/nonexistent/bwrap") && err.contains("install bubblewrap"), "{err}");
    rt.block_on(kfops_kubeflow::compile::Sandbox::bubblewrap(bwrap()).probe()).unwrap_or_else(|e| panic!("{e}"));
}
