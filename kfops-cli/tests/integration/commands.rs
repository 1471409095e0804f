//! `kfc validate`, `config show|schema`, `compile`, `completions`, help and exit codes.

use serde_json::{Value, json};

use crate::{hello_pipeline_py, kfc, project, reference_ir, texts, workspace};

const HELLO_CONFIG: &str =
    "pipeline:\n  name: hello\n  pipeline_path: pipeline.py\n  pipeline_args:\n    name: kfops\n    times: 3\n";

#[test]
fn validate_accepts_the_example_project() {
    let out = kfc().arg("-C").arg(workspace().join("examples/hello-pipeline")).arg("validate").output().expect("runs");
    let (stdout, stderr) = texts(&out, &workspace());
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(stderr.contains("ok       arguments name=\"kfops\" scale=0.5 times=3"), "{stderr}");
}

#[test]
fn a_relative_project_path_works() {
    let out = kfc()
        .current_dir(workspace())
        .args(["-C", "examples/hello-pipeline", "validate", "-q"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn validate_json_reports_typed_arguments_with_defaults() {
    let dir = project(&[("kfops.yaml", HELLO_CONFIG), ("pipeline.py", &hello_pipeline_py())]);
    let out = kfc().arg("-C").arg(dir.path()).args(["validate", "--output", "json"]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["pipeline"]["name"], json!("hello-pipeline"));
    // `scale` comes from the pipeline's default; `times` stays an integer.
    assert_eq!(v["arguments"]["values"], json!({"name": "kfops", "scale": 1.0, "times": 3}));
}

#[test]
fn set_overrides_reach_the_argument_check() {
    let dir = project(&[("kfops.yaml", HELLO_CONFIG), ("pipeline.py", &hello_pipeline_py())]);
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args([
            "--output",
            "json",
            "validate",
            "--set",
            "pipeline.pipeline_args.times=5",
            "--set",
            "pipeline.pipeline_args.scale=2",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["arguments"]["values"], json!({"name": "kfops", "scale": 2.0, "times": 5}));
}

#[test]
fn validate_reports_every_argument_problem_and_exits_3() {
    let config = "pipeline:\n  name: hello\n  pipeline_path: pipeline.py\n  pipeline_args:\n    nmae: kfops\n    times: \"3\"\n    scale: [1]\n";
    let dir = project(&[("kfops.yaml", config), ("pipeline.py", &hello_pipeline_py())]);
    let out = kfc().arg("-C").arg(dir.path()).arg("validate").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("nmae"), "{stderr}");
    assert!(stderr.contains("did you mean `name`"), "{stderr}");
    assert!(stderr.contains("times"), "{stderr}");
    assert!(stderr.contains("scale"), "{stderr}");
    assert!(stderr.contains("<project>/kfops.yaml:5:5"), "points at the argument: {stderr}");
    assert!(stderr.contains("the pipeline is not valid: 3 argument problem(s)"), "{stderr}");
}

#[test]
fn invalid_configuration_exits_3_with_located_diagnostics() {
    let dir = project(&[("kfops.yaml", "pipeline:\n  nam: x\n  pipeline_path: missing.py\n"), ("pipeline.py", "")]);
    let out = kfc().arg("-C").arg(dir.path()).arg("validate").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(3));
    insta::assert_snapshot!(stderr);
}

#[test]
fn user_code_errors_show_the_compilers_traceback_and_exit_4() {
    let broken = "from kfp import dsl\n\n@dsl.component\ndef a(x: int) -> int:\n    return x\n\n@dsl.pipeline(name='p')\ndef p(x: int = 1):\n    a(x=undefined_name)\n";
    let dir =
        project(&[("kfops.yaml", "pipeline:\n  name: p\n  pipeline_path: pipeline.py\n"), ("pipeline.py", broken)]);
    let out = kfc().arg("-C").arg(dir.path()).arg("validate").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("compiling `pipeline.py` failed"), "{stderr}");
    assert!(stderr.contains("<project>/pipeline.py\", line 9, in p"), "{stderr}");
    assert!(stderr.contains("NameError: name 'undefined_name' is not defined"), "{stderr}");
}

#[test]
fn several_pipelines_without_a_function_name_get_a_hint() {
    let two = "from kfp import dsl\n\n@dsl.component\ndef a() -> int:\n    return 1\n\n@dsl.pipeline(name='p1')\ndef p1():\n    a()\n\n@dsl.pipeline(name='p2')\ndef p2():\n    a()\n";
    let dir = project(&[("kfops.yaml", "pipeline:\n  name: p\n  pipeline_path: pipeline.py\n"), ("pipeline.py", two)]);
    let out = kfc().arg("-C").arg(dir.path()).arg("validate").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr.contains("hint: name the pipeline function to compile: `pipeline.pipeline_function_name`"),
        "{stderr}"
    );

    let ok = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["validate", "--set", "pipeline.pipeline_function_name=p2"])
        .output()
        .expect("runs");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn missing_python_or_kfp_is_actionable() {
    let dir = project(&[("kfops.yaml", HELLO_CONFIG), ("pipeline.py", &hello_pipeline_py())]);
    let out = kfc()
        .env("KFOPS_PYTHON", "/nonexistent/python3")
        .arg("-C")
        .arg(dir.path())
        .arg("compile")
        .output()
        .expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr.contains("no Python interpreter found to compile `pipeline.py` (tried /nonexistent/python3)"),
        "{stderr}"
    );
    assert!(stderr.contains("set KFOPS_PYTHON"), "{stderr}");

    // An interpreter without kfp: a script that behaves like Python failing the import.
    let fake = dir.path().join("fake-python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'cannot import kfp (ModuleNotFoundError: No module named '\\''kfp'\\'')' >&2\nexit 97\n",
    )
    .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = kfc().env("KFOPS_PYTHON", &fake).arg("-C").arg(dir.path()).arg("compile").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr.contains("cannot compile pipelines: cannot import kfp (ModuleNotFoundError: No module named 'kfp')"),
        "{stderr}"
    );
    assert!(stderr.contains("-m pip install 'kfp>=2,<3'"), "{stderr}");
}

#[test]
fn compile_writes_yaml_or_json_and_uses_compiled_files_as_they_are() {
    let dir = project(&[("kfops.yaml", HELLO_CONFIG), ("pipeline.py", &hello_pipeline_py())]);
    let out_file = dir.path().join("out/hello.yaml");
    std::fs::create_dir_all(out_file.parent().expect("parent")).expect("mkdir");
    let out = kfc().arg("-C").arg(dir.path()).args(["compile", "--output"]).arg(&out_file).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = std::fs::read_to_string(&out_file).expect("written");
    assert!(yaml.starts_with("# PIPELINE DEFINITION\n# Name: hello-pipeline"), "{yaml}");

    let out = kfc().arg("-C").arg(dir.path()).args(["compile", "--format", "json"]).output().expect("runs");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json IR");
    assert_eq!(v["pipelineInfo"]["name"], json!("hello-pipeline"));
    assert_eq!(v["schemaVersion"], json!("2.1.0"));

    // A compiled reference pipeline (two documents) passes through byte for byte, without a config.
    let p4 = reference_ir("p4_platform_spec_importer.yaml");
    let refdir = project(&[("p4.yaml", &p4)]);
    let out = kfc().arg("-C").arg(refdir.path()).args(["compile", "p4.yaml"]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), p4);
}

#[test]
fn compile_rejects_what_is_not_a_pipeline() {
    let dir = project(&[("notes.txt", "hi"), ("bad.yaml", "kind: Workflow\napiVersion: argoproj.io/v1alpha1\n")]);
    let out = kfc().arg("-C").arg(dir.path()).args(["compile", "notes.txt"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a Python pipeline (`.py`) or a compiled pipeline"));
    let out = kfc().arg("-C").arg(dir.path()).args(["compile", "bad.yaml"]).output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("bad.yaml"), "{stderr}");
}

#[test]
fn config_show_prints_the_layered_configuration_with_secrets_masked() {
    let config = "pipeline:\n  name: hello\n  pipeline_path: pipeline.py\n  pipeline_args:\n    times: 3\nkubeflow:\n  url: https://kf.example.com/pipeline\n  auth:\n    token: very-secret\n";
    let dir =
        project(&[("kfops.yaml", config), ("pipeline.py", ""), ("o.yaml", "pipeline:\n  experiment_name: tuning\n")]);
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["config", "show", "-o", "o.yaml", "--set", "pipeline.pipeline_args.lr=0.1", "--namespace", "team-a"])
        .env("KFOPS_PIPELINE__DESCRIPTION", "from env")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    let (stdout, stderr) = texts(&out, dir.path());
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("very-secret"));
    insta::assert_snapshot!(stdout);

    let out = kfc().arg("-C").arg(dir.path()).args(["config", "show", "--output", "json"]).output().expect("runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["kubeflow"]["auth"]["token"], json!("********"));
    assert_eq!(v["pipeline"]["experiment_name"], json!("Default"));
}

#[test]
fn config_schema_is_the_committed_schema() {
    let out = kfc().args(["config", "schema"]).output().expect("runs");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(workspace().join("schema/kfops.schema.json")).expect("schema");
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
}

#[test]
fn completions_and_help_work_offline() {
    for shell in ["bash", "zsh", "fish"] {
        let out = kfc().args(["completions", shell]).output().expect("runs");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("validate"), "{shell}");
    }
    let out = kfc().arg("--help").env("KFOPS_KUBEFLOW__URL", "http://127.0.0.1:9").output().expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["validate", "config", "compile", "completions", "--config-override", "--set", "Exit codes"] {
        assert!(help.contains(word), "help lacks {word}:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = kfc().args(["validate", "--bogus"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = kfc().args(["-C", "/nonexistent/dir", "validate"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the project directory `/nonexistent/dir` does not exist"));
}

#[test]
fn validate_warns_about_unpinned_images_the_project_does_not_build() {
    let spec = serde_json::json!({
        "components": {"comp-a": {"executorLabel": "exec-a"}, "comp-b": {"executorLabel": "exec-b"}},
        "deploymentSpec": {"executors": {
            "exec-a": {"container": {"image": "alpine", "command": ["sh", "-c"], "args": ["true"]}},
            "exec-b": {"container": {"image": "trainer", "command": ["python3", "train.py"]}}
        }},
        "pipelineInfo": {"name": "images"},
        "root": {"dag": {"tasks": {
            "a": {"componentRef": {"name": "comp-a"}, "taskInfo": {"name": "a"}},
            "b": {"componentRef": {"name": "comp-b"}, "taskInfo": {"name": "b"}}
        }}},
        "schemaVersion": "2.1.0"
    });
    let config = "pipeline:\n  name: images\n  pipeline_path: p.json\nimage_builder:\n  container_registry_uri: registry.example.com/team\n  images:\n    - name: trainer\n      dockerfile_folder_path: trainer\n";
    let dir =
        project(&[("kfops.yaml", config), ("p.json", &spec.to_string()), ("trainer/Dockerfile", "FROM scratch\n")]);
    let out = kfc().arg("-C").arg(dir.path()).args(["validate", "--output", "json"]).output().expect("runs");
    assert!(out.status.success(), "warnings do not fail validation: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let warnings: Vec<String> =
        v["lint"].as_array().expect("lint").iter().filter_map(|d| d["message"].as_str().map(str::to_owned)).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("`exec-a` uses the image `alpine`"), "{warnings:?}");
}
