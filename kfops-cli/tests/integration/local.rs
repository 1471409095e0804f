//! `kfc local run`, `kfc build-run` on the local runner, `kfc runs list|show`.

use serde_json::{Value, json};

use crate::{kfc, project, texts, workspace};

fn reference_path(name: &str) -> std::path::PathBuf {
    workspace().join("../shared/reference/kfp-ir-examples").join(name)
}

#[test]
fn local_run_prints_exactly_one_json_object_with_typed_values() {
    let dir = project(&[]);
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["local", "run"])
        .arg(reference_path("p3_artifacts_container.yaml"))
        .args(["-p", "rows=7", "-p", "label=run-a", "--output", "json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("exactly one JSON document on stdout");
    assert_eq!(v["state"], json!("SUCCEEDED"));
    assert!(v["run_id"].as_str().is_some_and(|id| id.len() == 36));
    assert_eq!(v["outputs"], json!({}));
    let tasks = v["tasks"].as_array().expect("tasks");
    let train = tasks.iter().find(|t| t["name"] == json!("train")).expect("train");
    assert_eq!(train, &json!({"name": "train", "state": "SUCCEEDED", "outputs": {"n_lines": 7}}));
    assert_eq!(
        v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["run_id".into(), "state".into(), "outputs".into(), "tasks".into()])
    );
}

#[test]
fn local_run_exit_codes_follow_the_run() {
    let dir = project(&[]);
    // Failed run: exit 6 with the failing task's reason.
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["local", "run"])
        .arg(reference_path("p4_platform_spec_importer.yaml"))
        .output()
        .expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert!(stderr.contains("kfc runs show"), "{stderr}");
    // Arguments that do not fit: exit 3 before anything runs.
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["local", "run"])
        .arg(reference_path("p3_artifacts_container.yaml"))
        .args(["-p", "rows=\"7\"", "-p", "nope=1"])
        .output()
        .expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("unknown pipeline input `nope`") && stderr.contains("input `rows` expects NUMBER_INTEGER"),
        "{stderr}"
    );
    // Malformed -p: usage error.
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["local", "run"])
        .arg(reference_path("p3_artifacts_container.yaml"))
        .args(["-p", "rows"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn runs_are_listed_and_shown() {
    let dir = project(&[]);
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["local", "run"])
        .arg(reference_path("p6_concat_placeholder.yaml"))
        .args(["--output", "json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = serde_json::from_slice::<Value>(&out.stdout).expect("json")["run_id"].as_str().expect("id").to_owned();

    let out = kfc().arg("-C").arg(dir.path()).args(["runs", "list"]).output().expect("runs");
    let (stdout, _) = texts(&out, dir.path());
    assert!(out.status.success());
    assert!(
        stdout.contains(&id[..8]) && stdout.contains("concat-placeholder") && stdout.contains("SUCCEEDED"),
        "{stdout}"
    );

    let out = kfc().arg("-C").arg(dir.path()).args(["runs", "show", &id[..8]]).output().expect("runs");
    let (stdout, _) = texts(&out, dir.path());
    assert!(out.status.success());
    assert!(
        stdout.contains(&format!("run       {id}")) && stdout.contains("show") && stdout.contains("a = \"q\""),
        "{stdout}"
    );

    let out = kfc().arg("-C").arg(dir.path()).args(["runs", "show", "ffffffff"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no local run `ffffffff`"));
}

#[test]
fn build_run_without_kubeflow_runs_the_example_locally() {
    let out = kfc()
        .arg("-C")
        .arg(workspace().join("examples/churn-model"))
        .args(["build-run", "--output", "json"])
        .output()
        .expect("runs");
    let (stdout, stderr) = texts(&out, &workspace());
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["state"], json!("SUCCEEDED"));
    let accuracy = v["outputs"]["Output"].as_f64().expect("accuracy output");
    assert!(accuracy > 0.75, "the example model learns something: {accuracy}");
    let gate = v["tasks"].as_array().expect("tasks").iter().find(|t| t["name"] == json!("condition-1")).expect("gate");
    assert_eq!(gate["state"], json!("SUCCEEDED"));
}

#[test]
fn build_run_notice_and_kubeflow_backend_message() {
    let dir = project(&[
        ("kfops.yaml", "pipeline:\n  name: p6\n  pipeline_path: p6.yaml\n"),
        ("p6.yaml", &std::fs::read_to_string(reference_path("p6_concat_placeholder.yaml")).expect("p6")),
    ]);
    let out = kfc().arg("-C").arg(dir.path()).arg("build-run").output().expect("runs");
    let (stdout, stderr) = texts(&out, dir.path());
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no Kubeflow endpoint configured (kubeflow.url); running on the embedded local runner"),
        "{stderr}"
    );
    assert!(stdout.contains("SUCCEEDED"), "{stdout}");

    // --local wins over a configured endpoint: nothing is contacted.
    let out = kfc()
        .arg("-C")
        .arg(dir.path())
        .args(["build-run", "--local", "--kubeflow-url", "https://kf.example.com/pipeline", "-q"])
        .output()
        .expect("runs");
    assert!(out.status.success());
}

/// A `kfc local run` of one long `sh -c` task, started and waited for until the task runs;
/// returns the project, the `kfc` process, and the file holding the task's pid.
fn start_long_run() -> (tempfile::TempDir, std::process::Child, std::path::PathBuf) {
    let spec = json!({
        "components": {"comp-nap": {"executorLabel": "exec-nap"}},
        "deploymentSpec": {"executors": {"exec-nap": {"container": {"image": "alpine", "command": ["sh", "-c"],
                           "args": ["echo $$ > \"{{$.workspace_path}}/pid\"; sleep 30"]}}}},
        "pipelineInfo": {"name": "napping"},
        "root": {"dag": {"tasks": {"nap": {"componentRef": {"name": "comp-nap"}, "taskInfo": {"name": "nap"}}}}},
        "schemaVersion": "2.1.0"
    });
    let dir = project(&[("nap.json", &spec.to_string())]);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kfc"))
        .arg("-C")
        .arg(dir.path())
        .args(["local", "run", "nap.json"])
        .env("KFOPS_PYTHON", crate::python())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let runs = dir.path().join(".kfops/runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let pid_file = loop {
        let found = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("workspace/pid"));
        if let Some(p) = found.filter(|p| p.exists()) {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "the task never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (dir, child, pid_file)
}

/// Send `signal` to the `kfc` of [`start_long_run`]; it must cancel the run, kill the task and exit 130.
fn interrupt(child: std::process::Child, pid_file: &std::path::Path, signal: &str) -> String {
    assert!(
        std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill").success()
    );
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let task_pid = std::fs::read_to_string(pid_file).expect("pid");
    assert!(!std::path::Path::new(&format!("/proc/{}", task_pid.trim())).exists(), "the task's process was killed");
    stderr
}

#[test]
fn ctrl_c_cancels_the_run_and_exits_130() {
    let (dir, child, pid_file) = start_long_run();
    let stderr = interrupt(child, &pid_file, "-INT");
    assert!(stderr.contains("was cancelled"), "{stderr}");
    let listed = kfc().arg("-C").arg(dir.path()).args(["runs", "list", "--output", "json"]).output().expect("runs");
    let v: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(v[0]["state"], json!("CANCELED"));
}

#[test]
fn sigterm_cancels_the_run_like_ctrl_c() {
    let (dir, child, pid_file) = start_long_run();
    interrupt(child, &pid_file, "-TERM");
    // Run records never make the checkout dirty.
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".kfops/.gitignore")).expect("gitignore").lines().last(),
        Some("*")
    );
}

#[test]
fn local_runs_are_listed_even_when_the_configuration_is_broken() {
    let dir =
        project(&[("p6.yaml", &std::fs::read_to_string(reference_path("p6_concat_placeholder.yaml")).expect("p6"))]);
    let out = kfc().arg("-C").arg(dir.path()).args(["local", "run", "p6.yaml", "-q"]).output().expect("runs");
    assert!(out.status.success());
    std::fs::write(dir.path().join("kfops.yaml"), "pipeline:\n  nam: typo\n").expect("write");
    let out = kfc().arg("-C").arg(dir.path()).args(["runs", "list"]).output().expect("runs");
    let (stdout, stderr) = texts(&out, dir.path());
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("concat-placeholder"), "{stdout}");
    assert!(stderr.contains("only local runs are shown") && stderr.contains("unknown key `nam`"), "{stderr}");
}
