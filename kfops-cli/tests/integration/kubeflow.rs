//! `kfc build`, `run`, `build-run --wait`, `runs …` against the stateful KFP test server.

use kfops_kubeflow::kfp::testserver::{Auth, TestServer, TestServerOptions};
use serde_json::Value;

use crate::{kfc, project, texts, workspace};

fn p1_project() -> tempfile::TempDir {
    let p1 = std::fs::read_to_string(workspace().join("../shared/reference/kfp-ir-examples/p1_linear_params.yaml"))
        .expect("p1");
    project(&[
        (
            "kfops.yaml",
            "pipeline:\n  name: linear\n  experiment_name: tuning\n  pipeline_path: p1.yaml\n  pipeline_args:\n    name: kfops\n    times: 3\n",
        ),
        ("p1.yaml", &p1),
    ])
}

fn kfc_at(server: &TestServer, dir: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = kfc();
    cmd.env("KFOPS_POLL_INTERVAL_MS", "10").arg("-C").arg(dir).arg("--kubeflow-url").arg(server.url()).arg("--no-auth");
    cmd
}

#[test]
fn build_publishes_once_per_checkout_and_prints_the_link() {
    let server = TestServer::start_blocking(TestServerOptions::default());
    let dir = p1_project();
    let out = kfc_at(&server, dir.path()).arg("build").output().expect("runs");
    let (stdout, stderr) = texts(&out, dir.path());
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("/#/pipelines/details/") && stdout.contains("/version/"), "{stdout}");
    assert!(stderr.contains("published version `ir-"), "{stderr}");
    let again = kfc_at(&server, dir.path()).arg("build").output().expect("runs");
    let (_, stderr) = texts(&again, dir.path());
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("reused the existing version"), "{stderr}");
    let uploads =
        server.requests().iter().filter(|r| r.path.ends_with("/upload") || r.path.ends_with("/upload_version")).count();
    assert_eq!(uploads, 1, "the same checkout is uploaded once");
}

#[test]
fn build_run_waits_for_success_and_shows_parameters() {
    let server = TestServer::start_blocking(TestServerOptions::default());
    let dir = p1_project();
    let out = kfc_at(&server, dir.path()).args(["build-run", "--wait"]).output().expect("runs");
    let (stdout, stderr) = texts(&out, dir.path());
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("/#/runs/details/"), "{stdout}");
    assert!(stdout.contains("times") && stdout.contains("3") && stdout.contains("kfops"), "parameter table: {stdout}");
    assert!(stdout.contains("SUCCEEDED"), "{stdout}");
    // The run carries typed parameters, defaults included.
    let create = server
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/apis/v2beta1/runs")
        .expect("run created");
    let body = create.body_json().expect("json body");
    assert_eq!(body["runtime_config"]["parameters"]["times"], serde_json::json!(3));
    assert_eq!(body["runtime_config"]["parameters"]["scale"], serde_json::json!(0.5));
}

#[test]
fn failed_runs_exit_6_and_runs_commands_follow_kubeflow() {
    let server = TestServer::start_blocking(TestServerOptions { fail_runs: true, ..TestServerOptions::default() });
    let dir = p1_project();
    let out = kfc_at(&server, dir.path()).args(["build-run", "--wait"]).output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("FAILED"), "{stderr}");

    let list = kfc_at(&server, dir.path()).args(["runs", "list", "--output", "json"]).output().expect("runs");
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let runs: Value = serde_json::from_slice(&list.stdout).expect("json");
    let id = runs[0]["run_id"].as_str().expect("id").to_owned();
    assert_eq!(runs[0]["state"], serde_json::json!("FAILED"));
    let show = kfc_at(&server, dir.path()).args(["runs", "show", &id]).output().expect("runs");
    assert!(String::from_utf8_lossy(&show.stdout).contains("FAILED"));
    let retry = kfc_at(&server, dir.path()).args(["runs", "retry", &id]).output().expect("runs");
    assert!(retry.status.success(), "{}", String::from_utf8_lossy(&retry.stderr));
}

#[test]
fn run_needs_a_published_version() {
    let server = TestServer::start_blocking(TestServerOptions::default());
    let dir = p1_project();
    let out = kfc_at(&server, dir.path()).arg("run").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("is not published") && stderr.contains("run `kfc build`"), "{stderr}");
    let built = kfc_at(&server, dir.path()).args(["build", "--output", "json"]).output().expect("runs");
    let v: Value = serde_json::from_slice(&built.stdout).expect("json");
    let version = v["version_id"].as_str().expect("version").to_owned();
    let out = kfc_at(&server, dir.path()).args(["run", "--version-id", &version, "--wait"]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kfc_at(&server, dir.path()).args(["run", "--wait"]).output().expect("runs");
    assert!(out.status.success(), "the version of this checkout is found: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn authentication_failures_name_the_options() {
    let token_server = TestServer::start_blocking(TestServerOptions {
        auth: Auth::Bearer("s3cret".into()),
        ..TestServerOptions::default()
    });
    let dir = p1_project();
    let out = kfc_at(&token_server, dir.path()).arg("build").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("HTTP 401") && stderr.contains("kubeflow.auth.token_file"), "{stderr}");
    assert!(!stderr.contains("s3cret"));
    std::fs::write(dir.path().join("token"), "s3cret\n").expect("write");
    // A relative token_file in kfops.yaml is relative to the project, whatever the current directory.
    let config = std::fs::read_to_string(dir.path().join("kfops.yaml")).expect("config");
    std::fs::write(dir.path().join("kfops.yaml"), format!("{config}kubeflow:\n  auth:\n    token_file: token\n"))
        .expect("write");
    let mut from_elsewhere = kfc();
    from_elsewhere
        .current_dir(std::env::temp_dir())
        .arg("-C")
        .arg(dir.path())
        .arg("--kubeflow-url")
        .arg(token_server.url())
        .arg("build");
    let out = from_elsewhere.output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ok = kfc();
    ok.arg("-C")
        .arg(dir.path())
        .arg("--kubeflow-url")
        .arg(token_server.url())
        .arg("--token-file")
        .arg(dir.path().join("token"))
        .arg("build");
    let out = ok.output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let proxy = TestServer::start_blocking(TestServerOptions {
        auth: Auth::ProxyRedirect { cookie: "oauth2_proxy_kubeflow=abc".into() },
        ..TestServerOptions::default()
    });
    let out = kfc_at(&proxy, dir.path()).arg("build").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("not authenticated") && stderr.contains("cookie"), "{stderr}");
}

#[test]
fn build_and_run_need_a_kubeflow_endpoint() {
    let dir = p1_project();
    let out = kfc().arg("-C").arg(dir.path()).arg("build").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no endpoint is configured"));
}

#[test]
fn transient_server_errors_are_retried_and_terminated_runs_end_canceled() {
    use kfops_kubeflow::kfp::testserver::{Fault, Progression};
    let server = TestServer::start_blocking(TestServerOptions {
        progression: Progression::Manual,
        ..TestServerOptions::default()
    });
    let dir = p1_project();
    // Two 503s on the run endpoints: the client retries them.
    server.inject_fault(Fault::unavailable("/apis/v2beta1/runs", 2));
    let out = kfc_at(&server, dir.path()).args(["build-run", "--output", "json"]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = v["run_id"].as_str().expect("run id").to_owned();
    assert!(server.requests().iter().any(|r| r.status == 503), "faults were served");

    let out = kfc_at(&server, dir.path()).args(["runs", "terminate", &id]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.set_run_state(&id, kfops_kubeflow::kfp::testserver::RunState::Canceled);
    let out = kfc_at(&server, dir.path()).args(["runs", "wait", &id]).output().expect("runs");
    let (stdout, stderr) = texts(&out, dir.path());
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stdout.contains("CANCELED") || stderr.contains("CANCELED"), "{stdout}{stderr}");
}

#[test]
fn build_builds_configured_images_and_publishes_the_pinned_pipeline() {
    use kfops_kubeflow::image::testregistry::{RegistryAuth, TestRegistry};
    let server = TestServer::start_blocking(TestServerOptions::default());
    let registry = TestRegistry::start(RegistryAuth::None).expect("registry");
    let dir = p1_project();
    // A stand-in container tool that records its calls.
    let tool = dir.path().join("fake-docker");
    std::fs::write(&tool, format!("#!/bin/sh\necho \"$@\" >> '{}'\n", dir.path().join("calls.log").display()))
        .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::create_dir_all(dir.path().join("images/python")).expect("mkdir");
    std::fs::write(dir.path().join("images/python/Dockerfile"), "FROM python:3.11-slim\n").expect("write");
    let config = std::fs::read_to_string(dir.path().join("kfops.yaml")).expect("config");
    let uri = format!("{}/team", registry.host());
    std::fs::write(
        dir.path().join("kfops.yaml"),
        format!(
            "{config}image_builder:\n  container_registry_uri: {uri}\n  insecure: true\n  tool: {}\n  images:\n    - name: python\n      dockerfile_folder_path: images/python\n",
            tool.display()
        ),
    )
    .expect("write");
    let out = kfc_at(&server, dir.path()).arg("build").output().expect("runs");
    let (_, stderr) = texts(&out, dir.path());
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("built and pushed"), "{stderr}");
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).expect("calls");
    assert!(calls.starts_with(&format!("build --tag {uri}/python:ctx-")), "{calls}");
    // The p1 executors ran `python:3.11-slim`; the published pipeline uses the built image.
    let upload = server.requests().into_iter().find(|r| r.path.ends_with("/upload")).expect("upload");
    let body = String::from_utf8_lossy(&upload.body).into_owned();
    assert!(body.contains(&format!("image: {uri}/python:ctx-")), "pinned image in the published spec");
    assert!(!body.contains("image: python:3.11-slim"), "no unpinned executor left");
}
