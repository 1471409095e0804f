//! The KFP API test server: the official Python client (`kfp.Client`) against
//! it, and its run state machine, conflicts, paging, namespaces, auth, faults
//! and request validation over plain HTTP.
//!
//! The Python test needs an interpreter with `kfp` 2.x: `KFOPS_PYTHON`, else
//! the workspace `.venv` (created by `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kfops_kubeflow::kfp::testserver::{Auth, Fault, LOGIN_PATH, Progression, RunState, TestServer, TestServerOptions};
use reqwest::Method;
use serde_json::{Value, json};

const API: &str = "/apis/v2beta1";

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KFOPS_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "no Python with kfp: run `cargo xtask test` (creates .venv) or set KFOPS_PYTHON");
    venv
}

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/kfp-ir-examples").join(name)
}

fn p1() -> Vec<u8> {
    std::fs::read(reference("p1_linear_params.yaml")).expect("reference p1")
}

/// A small HTTP client over the server's API (redirects are not followed).
struct Api {
    base: String,
    http: reqwest::Client,
    headers: Vec<(&'static str, String)>,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Api { base: server.url(), http, headers: Vec::new() }
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Api {
        self.headers.push((name, value.to_owned()));
        self
    }

    async fn raw(&self, method: Method, path: &str, body: Option<&Value>) -> reqwest::Response {
        let url = if path.starts_with('/') && !path.starts_with(API) && !path.starts_with("/oauth2") {
            format!("{}{API}{path}", self.base)
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.http.request(method, url);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        request.send().await.expect("request")
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let response = self.raw(method, path, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(&body)).await
    }

    async fn upload(&self, path_and_query: &str, filename: &str, content: Vec<u8>) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(content).file_name(filename.to_owned());
        let form = reqwest::multipart::Form::new().part("uploadfile", part);
        let mut request = self.http.post(format!("{}{API}{path_and_query}", self.base)).multipart(form);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("upload");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Uploads p1 as `name`; returns (pipeline id, version id).
    async fn pipeline(&self, name: &str) -> (String, String) {
        let (status, pipeline) = self.upload(&format!("/pipelines/upload?name={name}"), "p1.yaml", p1()).await;
        assert_eq!(status, 200, "{pipeline}");
        let id = pipeline["pipeline_id"].as_str().expect("pipeline_id").to_owned();
        let (_, versions) = self.get(&format!("/pipelines/{id}/versions?sort_by=created_at%20desc&page_size=1")).await;
        let version = versions["pipeline_versions"][0]["pipeline_version_id"].as_str().expect("version").to_owned();
        (id, version)
    }

    async fn experiment(&self, name: &str, namespace: Option<&str>) -> String {
        let mut body = json!({ "display_name": name });
        if let Some(ns) = namespace {
            body["namespace"] = json!(ns);
        }
        let (status, experiment) = self.post("/experiments", body).await;
        assert_eq!(status, 200, "{experiment}");
        experiment["experiment_id"].as_str().expect("experiment_id").to_owned()
    }

    async fn run(&self, experiment: &str, version: (&str, &str), parameters: Value) -> String {
        let (status, run) = self
            .post(
                "/runs",
                json!({
                    "display_name": "r",
                    "experiment_id": experiment,
                    "pipeline_version_reference": {"pipeline_id": version.0, "pipeline_version_id": version.1},
                    "runtime_config": {"parameters": parameters},
                }),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        run["run_id"].as_str().expect("run_id").to_owned()
    }

    async fn state(&self, run: &str) -> String {
        let (status, run) = self.get(&format!("/runs/{run}")).await;
        assert_eq!(status, 200, "{run}");
        run["state"].as_str().expect("state").to_owned()
    }
}

fn filter(predicates: Value) -> String {
    percent(&json!({ "predicates": predicates }).to_string())
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list[field].as_array().into_iter().flatten().map(|p| p["display_name"].as_str().unwrap_or("?").to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn kfp_python_client_works_against_the_server() {
    let token = "kfops-e2e-token";
    let server =
        TestServer::start_blocking(TestServerOptions { auth: Auth::Bearer(token.into()), ..Default::default() });
    let home = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kfp_client_check.py");
    let mut command = Command::new(python());
    command.arg(&script).arg(server.url()).arg(reference("p1_linear_params.yaml")).arg(token);
    command.env("HOME", home.path()).env("PYTHONUNBUFFERED", "1");
    for var in
        ["KF_PIPELINES_ENDPOINT", "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME", "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME"]
    {
        command.env_remove(var);
    }
    let output = command.output().expect("runs the Python fixture");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kfp.Client check failed ({}):\n{stdout}\n{stderr}", output.status);
    for step in [
        "client",
        "get_kfp_healthz",
        "upload_pipeline",
        "upload_pipeline duplicate",
        "upload_pipeline_version",
        "list_pipelines",
        "get_pipeline_id",
        "list_pipeline_versions",
        "create_experiment",
        "get_experiment",
        "list_experiments",
        "run_pipeline",
        "create_run_from_pipeline_package",
        "get_run",
        "wait_for_run_completion",
        "list_runs",
        "terminate_run",
        "delete_run",
        "ALL OK",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("OK {step}")) || l == step), "no {step:?} in\n{stdout}");
    }

    let requests = server.requests();
    assert!(requests.iter().all(|r| r.header("authorization") == Some("Bearer kfops-e2e-token")));
    assert!(requests.iter().all(|r| r.status < 500), "server errors: {requests:?}");
    let upload = requests.iter().find(|r| r.path == "/apis/v2beta1/pipelines/upload").expect("an upload");
    assert!(upload.header("content-type").is_some_and(|c| c.starts_with("multipart/form-data")));
    assert!(upload.query_pairs().contains(&("name".to_owned(), "kfops-e2e-linear".to_owned())));
    let create = requests.iter().find(|r| r.path == "/apis/v2beta1/runs" && r.method == "POST").expect("a run");
    assert!(create.body_json().is_some_and(|b| b["pipeline_version_reference"].is_object()), "{create:?}");
    assert!(requests.iter().any(|r| r.path.ends_with(":terminate")));
    server.shutdown();
}

#[tokio::test]
async fn healthz_reports_the_configured_server() {
    let server = TestServer::start(TestServerOptions { tag_name: "2.5.0".into(), ..Default::default() }).await;
    let (status, health) = Api::new(&server).get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(
        health,
        json!({"commit_sha": kfops_kubeflow::kfp::testserver::COMMIT_SHA, "tag_name": "2.5.0", "multi_user": false,
               "pipeline_store": "database"})
    );
    assert_eq!(server.requests().len(), 1);
    let multi =
        TestServer::start(TestServerOptions { multi_user: true, record_requests: false, ..Default::default() }).await;
    assert_eq!(Api::new(&multi).get("/healthz").await.1["multi_user"], json!(true));
    assert!(multi.requests().is_empty(), "recording is off");
}

#[tokio::test]
async fn runs_advance_one_step_per_get_with_the_root_dag_tasks() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let (pipeline, version) = api.pipeline("p1").await;
    let experiment = api.experiment("e", None).await;
    let (status, created) = api
        .post(
            "/runs",
            json!({"displayName": "first", "experimentId": experiment,
                   "pipelineVersionReference": {"pipelineId": pipeline, "pipelineVersionId": version},
                   "runtimeConfig": {"parameters": {"name": "kfp", "times": 3.0, "scale": 0.5}}}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["state"], "PENDING");
    assert_eq!(created["finished_at"], "1970-01-01T00:00:00Z");
    assert_eq!(created["storage_state"], "AVAILABLE");
    assert_eq!(created["runtime_config"]["parameters"], json!({"name": "kfp", "times": 3, "scale": 0.5}));
    assert!(created.get("run_details").is_none(), "{created}");
    let id = created["run_id"].as_str().expect("id");
    // Listing does not move runs.
    assert_eq!(api.get("/runs").await.1["runs"][0]["state"], "PENDING");

    let (_, running) = api.get(&format!("/runs/{id}")).await;
    assert_eq!(running["state"], "RUNNING");
    let tasks = running["run_details"]["task_details"].as_array().expect("tasks");
    let by_name = |name: &str| tasks.iter().find(|t| t["display_name"] == name).expect(name).clone();
    assert_eq!(tasks.len(), 3);
    assert_eq!(by_name("make-greeting")["state"], "RUNNING");
    assert_eq!(by_name("measure")["state"], "PENDING");
    assert_eq!(by_name("report")["state"], "PENDING");
    assert_ne!(by_name("make-greeting")["start_time"], "1970-01-01T00:00:00Z");
    assert_eq!(by_name("measure")["start_time"], "1970-01-01T00:00:00Z");
    assert!(running["run_details"]["pipeline_context_id"].is_string(), "int64 as string");
    assert!(by_name("measure")["execution_id"].is_string());

    let (_, done) = api.get(&format!("/runs/{id}")).await;
    assert_eq!(done["state"], "SUCCEEDED");
    assert_ne!(done["finished_at"], "1970-01-01T00:00:00Z");
    let tasks = done["run_details"]["task_details"].as_array().expect("tasks");
    let order: Vec<&str> = tasks.iter().map(|t| t["display_name"].as_str().unwrap_or("?")).collect();
    assert_eq!(order, ["make-greeting", "measure", "report"]);
    assert!(tasks.iter().all(|t| t["state"] == "SUCCEEDED" && t["end_time"] != "1970-01-01T00:00:00Z"));
    let history: Vec<&str> =
        done["state_history"].as_array().expect("history").iter().map(|h| h["state"].as_str().unwrap_or("?")).collect();
    assert_eq!(history, ["PENDING", "RUNNING", "SUCCEEDED"]);
    // Terminal runs stay where they are.
    assert_eq!(api.state(id).await, "SUCCEEDED");
    assert_eq!(server.run_state(id), Some(RunState::Succeeded));

    // The experiment remembers its last run.
    let (_, experiment) = api.get(&format!("/experiments/{experiment}")).await;
    assert_ne!(experiment["last_run_created_at"], "1970-01-01T00:00:00Z");
}

#[tokio::test]
async fn failing_runs_and_retries() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let (pipeline, version) = api.pipeline("p1").await;
    let experiment = api.experiment("e", None).await;

    // `fail: 1` fails the first attempt only.
    let once = api.run(&experiment, (&pipeline, &version), json!({"fail": 1})).await;
    assert_eq!(api.state(&once).await, "RUNNING");
    let (_, failed) = api.get(&format!("/runs/{once}")).await;
    assert_eq!(failed["state"], "FAILED");
    let tasks = failed["run_details"]["task_details"].as_array().expect("tasks");
    assert_eq!(tasks[2]["display_name"], "report");
    assert_eq!(tasks[2]["state"], "FAILED");
    assert!(tasks[2]["error"]["message"].is_string());
    assert_eq!(tasks[0]["state"], "SUCCEEDED");
    assert!(failed.get("error").is_none(), "run.error is for conversion errors only");

    let (status, answer) = api.post(&format!("/runs/{once}:retry"), json!({})).await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(server.run_state(&once), Some(RunState::Pending));
    let (_, running) = api.get(&format!("/runs/{once}")).await;
    assert_eq!(running["state"], "RUNNING");
    let tasks = running["run_details"]["task_details"].as_array().expect("tasks");
    assert_eq!(tasks[0]["state"], "SUCCEEDED", "succeeded tasks are kept on retry");
    assert_eq!(tasks[2]["state"], "RUNNING");
    assert_eq!(api.state(&once).await, "SUCCEEDED");

    // A succeeded run cannot be retried.
    let (status, error) = api.post(&format!("/runs/{once}:retry"), json!({})).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], 9);

    // `fail: true` fails every attempt.
    let always = api.run(&experiment, (&pipeline, &version), json!({"fail": true})).await;
    for _ in 0..2 {
        api.state(&always).await;
        assert_eq!(api.state(&always).await, "FAILED");
        assert_eq!(api.post(&format!("/runs/{always}:retry"), json!({})).await.0, 200);
    }

    // The server knob fails every run.
    let failing = TestServer::start(TestServerOptions { fail_runs: true, ..Default::default() }).await;
    let api = Api::new(&failing);
    let (pipeline, version) = api.pipeline("p1").await;
    let experiment = api.experiment("e", None).await;
    let run = api.run(&experiment, (&pipeline, &version), json!({})).await;
    api.state(&run).await;
    assert_eq!(api.state(&run).await, "FAILED");
}

#[tokio::test]
async fn terminate_cancels_and_retry_restarts() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let (pipeline, version) = api.pipeline("p1").await;
    let experiment = api.experiment("e", None).await;

    let pending = api.run(&experiment, (&pipeline, &version), json!({})).await;
    assert_eq!(api.post(&format!("/runs/{pending}:terminate"), json!({})).await, (200, json!({})));
    assert_eq!(server.run_state(&pending), Some(RunState::Canceling));
    assert_eq!(api.state(&pending).await, "CANCELED");
    let (status, error) = api.post(&format!("/runs/{pending}:terminate"), json!({})).await;
    assert_eq!(status, 400, "a canceled run cannot be terminated: {error}");

    let running = api.run(&experiment, (&pipeline, &version), json!({})).await;
    assert_eq!(api.state(&running).await, "RUNNING");
    api.post(&format!("/runs/{running}:terminate"), json!({})).await;
    let (_, canceling) = api.get(&format!("/runs/{running}")).await;
    assert_eq!(canceling["state"], "CANCELED");
    let tasks = canceling["run_details"]["task_details"].as_array().expect("tasks");
    assert!(tasks.iter().all(|t| t["state"] == "CANCELED"), "{tasks:?}");
    assert_ne!(canceling["finished_at"], "1970-01-01T00:00:00Z");

    // Retry of a canceled run.
    api.post(&format!("/runs/{running}:retry"), json!({})).await;
    let (_, retried) = api.get(&format!("/runs/{running}")).await;
    assert_eq!(retried["state"], "RUNNING");
    assert_eq!(retried["finished_at"], "1970-01-01T00:00:00Z");
    assert_eq!(api.state(&running).await, "SUCCEEDED");
    let (status, _) = api.post(&format!("/runs/{running}:terminate"), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(api.post("/runs/missing:terminate", json!({})).await.0, 404);
}

#[tokio::test]
async fn timed_and_manual_progression() {
    let timed = TestServer::start(TestServerOptions {
        progression: Progression::Timed(Duration::from_millis(150)),
        ..Default::default()
    })
    .await;
    let api = Api::new(&timed);
    let (pipeline, version) = api.pipeline("p1").await;
    let experiment = api.experiment("e", None).await;
    let run = api.run(&experiment, (&pipeline, &version), json!({})).await;
    assert_eq!(api.state(&run).await, "PENDING", "no step before the period");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Listing catches up too.
    assert_eq!(api.get(&format!("/runs?experiment_id={experiment}")).await.1["runs"][0]["state"], "SUCCEEDED");

    let manual = TestServer::start(TestServerOptions { progression: Progression::Manual, ..Default::default() }).await;
    let api = Api::new(&manual);
    let (pipeline, version) = api.pipeline("p1").await;
    let experiment = api.experiment("e", None).await;
    let run = api.run(&experiment, (&pipeline, &version), json!({})).await;
    assert_eq!(api.state(&run).await, "PENDING");
    assert_eq!(api.state(&run).await, "PENDING");
    assert!(manual.set_run_state(&run, RunState::Running));
    assert_eq!(api.state(&run).await, "RUNNING");
    assert!(manual.set_run_state(&run, RunState::Paused));
    let (status, _) = api.post(&format!("/runs/{run}:terminate"), json!({})).await;
    assert_eq!(status, 200, "paused runs can be terminated");
    assert_eq!(api.state(&run).await, "CANCELING");
    assert!(manual.set_run_state(&run, RunState::Canceled));
    assert_eq!(api.state(&run).await, "CANCELED");
    assert!(!manual.set_run_state("missing", RunState::Failed));
}

#[tokio::test]
async fn duplicate_names_conflict() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let (pipeline, _) = api.pipeline("dup").await;

    let (status, error) = api.upload("/pipelines/upload?name=dup", "p1.yaml", p1()).await;
    assert_eq!(status, 409);
    assert!(error["error_message"].as_str().is_some_and(|m| m.contains("already exist")), "{error}");
    assert!(error["error_details"].is_string());

    let (status, version) =
        api.upload(&format!("/pipelines/upload_version?pipelineid={pipeline}&name=v2"), "p1.yaml", p1()).await;
    assert_eq!(status, 200, "{version}");
    let (status, error) =
        api.upload(&format!("/pipelines/upload_version?pipelineid={pipeline}&name=v2"), "p1.yaml", p1()).await;
    assert_eq!(status, 409, "{error}");
    assert!(error.get("error_message").is_some());

    let (status, error) = api.post("/pipelines", json!({"name": "dup"})).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], 6);

    api.experiment("exp", None).await;
    let (status, error) = api.post("/experiments", json!({"display_name": "exp"})).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], 6);
    assert_eq!(error["details"][0]["@type"], "type.googleapis.com/google.rpc.Status");

    // Per namespace in multi-user mode.
    let multi = TestServer::start(TestServerOptions { multi_user: true, ..Default::default() }).await;
    let api = Api::new(&multi);
    api.experiment("exp", Some("team-a")).await;
    api.experiment("exp", Some("team-b")).await;
    let (status, _) = api.post("/experiments", json!({"display_name": "exp", "namespace": "team-a"})).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn page_tokens_round_trip_with_the_same_filter() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    for i in 0..5 {
        api.experiment(&format!("nightly-{i}"), None).await;
    }
    api.experiment("other", None).await;
    let f = filter(json!([{"operation": "IS_SUBSTRING", "key": "display_name", "stringValue": "NIGHTLY"}]));

    let mut seen = Vec::new();
    let (status, page) = api.get(&format!("/experiments?page_size=2&filter={f}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_size"], 5);
    seen.extend(names(&page, "experiments"));
    let mut token = page["next_page_token"].as_str().expect("token").to_owned();
    // The token is base64 of the server's JSON token.
    let decoded = String::from_utf8(base64(&token)).expect("utf-8");
    assert!(decoded.contains("\"SortByFieldName\":\"CreatedAtInSec\""), "{decoded}");
    assert!(decoded.contains("experiments.Name"), "{decoded}");

    // Same filter, then no filter at all: both are accepted.
    let (status, page) = api.get(&format!("/experiments?page_size=2&filter={f}&page_token={}", percent(&token))).await;
    assert_eq!(status, 200, "{page}");
    seen.extend(names(&page, "experiments"));
    token = page["next_page_token"].as_str().expect("token").to_owned();
    let (_, page) = api.get(&format!("/experiments?page_size=2&page_token={}", percent(&token))).await;
    seen.extend(names(&page, "experiments"));
    assert!(page.get("next_page_token").is_none(), "last page: {page}");
    assert_eq!(seen, (0..5).map(|i| format!("nightly-{i}")).collect::<Vec<_>>());

    // A different filter or sort with the token: 400.
    let (_, first) = api.get(&format!("/experiments?page_size=2&filter={f}")).await;
    let token = percent(first["next_page_token"].as_str().expect("token"));
    let other = filter(json!([{"operation": "IS_SUBSTRING", "key": "display_name", "string_value": "other"}]));
    let (status, error) = api.get(&format!("/experiments?page_size=2&filter={other}&page_token={token}")).await;
    assert_eq!(status, 400);
    assert!(error["message"].as_str().is_some_and(|m| m.contains("page token does not match")), "{error}");
    let (status, _) = api.get(&format!("/experiments?page_size=2&filter={f}&sort_by=name&page_token={token}")).await;
    assert_eq!(status, 400);
    let (status, _) = api.get("/experiments?page_token=not-base64!").await;
    assert_eq!(status, 400);

    // Page sizes.
    assert_eq!(api.get("/experiments?page_size=-1").await.0, 400);
    let (status, error) = api.get("/experiments?page_size=abc").await;
    assert_eq!((status, error["details"].clone()), (400, json!([])));
    let (_, all) = api.get("/experiments?page_size=1000").await;
    assert_eq!(all["experiments"].as_array().map(Vec::len), Some(7), "Default + 6");

    // Descending order keeps working across pages.
    let (_, desc) = api.get(&format!("/experiments?page_size=4&sort_by={}", percent("display_name desc"))).await;
    let token = percent(desc["next_page_token"].as_str().expect("token"));
    let (_, rest) = api.get(&format!("/experiments?page_size=4&page_token={token}")).await;
    let mut all_desc = names(&desc, "experiments");
    all_desc.extend(names(&rest, "experiments"));
    let mut expected = all_desc.clone();
    expected.sort_by_key(|name| std::cmp::Reverse(name.to_lowercase()));
    assert_eq!(all_desc, expected);
    assert_eq!(all_desc.len(), 7);
}

fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for b in text.bytes().take_while(|b| *b != b'=') {
        let v = ALPHABET.iter().position(|c| *c == b).expect("base64") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[tokio::test]
async fn filters_and_sorting() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let (alpha, _) = api.pipeline("alpha").await;
    api.pipeline("beta").await;
    let (gamma, _) = api.pipeline("gamma-nightly").await;
    api.pipeline("Delta").await;

    let get = |q: String| {
        let api = &api;
        async move { api.get(&format!("/pipelines?{q}")).await }
    };
    let (_, eq) =
        get(format!("filter={}", filter(json!([{"operation": 1, "key": "name", "string_value": "Alpha"}])))).await;
    assert_eq!(names(&eq, "pipelines"), ["alpha"], "EQUALS (by number), case-insensitive");
    let (_, r#in) = get(format!(
        "filter={}",
        filter(
            json!([{"operation": "IN", "key": "display_name", "stringValues": {"values": ["alpha", "gamma-nightly"]}}])
        )
    ))
    .await;
    assert_eq!(names(&r#in, "pipelines"), ["alpha", "gamma-nightly"]);
    let (_, sub) = get(format!(
        "filter={}",
        filter(json!([{"operation": "IS_SUBSTRING", "key": "name", "string_value": "nightly"}]))
    ))
    .await;
    assert_eq!(names(&sub, "pipelines"), ["gamma-nightly"]);
    let (_, none) =
        get(format!("filter={}", filter(json!([{"operation": "EQUALS", "key": "name", "string_value": "zz"}])))).await;
    assert_eq!(none, json!({}), "empty lists omit every field");
    let (_, by_id) = get(format!(
        "filter={}",
        filter(json!([{"operation": "NOT_EQUALS", "key": "pipeline_id", "string_value": alpha}]))
    ))
    .await;
    assert_eq!(by_id["total_size"], 3);
    let (_, newer) = get(format!(
        "filter={}",
        filter(json!([{"operation": "GREATER_THAN_EQUALS", "key": "created_at", "timestamp_value": "2000-01-01T00:00:00Z"}]))
    ))
    .await;
    assert_eq!(newer["total_size"], 4);

    // Sorting.
    let (_, desc) = get(format!("sort_by={}", percent("name DESC"))).await;
    assert_eq!(names(&desc, "pipelines"), ["gamma-nightly", "Delta", "beta", "alpha"], "case-insensitive like MySQL");
    let (_, asc) = get("sort_by=display_name&page_size=2".into()).await;
    let token = percent(asc["next_page_token"].as_str().expect("token"));
    let (_, rest) = get(format!("page_token={token}")).await;
    assert_eq!(names(&asc, "pipelines"), ["alpha", "beta"]);
    assert_eq!(names(&rest, "pipelines"), ["Delta", "gamma-nightly"]);
    let (status, error) = get("sort_by=color".into()).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(get(format!("sort_by={}", percent("name sideways"))).await.0, 400);

    // Bad filters.
    for bad in [
        json!([{"operation": "EQUALS", "key": "color", "string_value": "x"}]),
        json!([{"op": "EQUALS", "key": "name", "string_value": "x"}]),
        json!([{"operation": "IN", "key": "name", "string_value": "x"}]),
        json!([{"operation": "EQUALS", "key": "name", "string_values": {"values": ["x"]}}]),
        json!([{"operation": "IS_SUBSTRING", "key": "name", "int_value": 3}]),
        json!([{"key": "name", "string_value": "x"}]),
        json!([{"operation": "EQUALS", "key": "name"}]),
    ] {
        let (status, error) = get(format!("filter={}", filter(bad.clone()))).await;
        assert_eq!(status, 400, "{bad} → {error}");
        assert_eq!(error["code"], 3);
    }
    assert_eq!(get("filter=%7Bnot-json".into()).await.0, 400);

    // Versions: newest first with `created_at desc`.
    let (_, v2) = api.upload(&format!("/pipelines/upload_version?pipelineid={gamma}&name=v2"), "p1.yaml", p1()).await;
    let (_, versions) = api.get(&format!("/pipelines/{gamma}/versions?sort_by={}", percent("created_at desc"))).await;
    assert_eq!(versions["total_size"], 2);
    assert_eq!(versions["pipeline_versions"][0]["pipeline_version_id"], v2["pipeline_version_id"]);
    let (_, named) = api
        .get(&format!(
            "/pipelines/{gamma}/versions?filter={}",
            filter(json!([{"operation": "EQUALS", "key": "name", "string_value": "v2"}]))
        ))
        .await;
    assert_eq!(named["total_size"], 1);

    // Runs: filter on state.
    let experiment = api.experiment("e", None).await;
    let version = v2["pipeline_version_id"].as_str().expect("id");
    let done = api.run(&experiment, (&gamma, version), json!({})).await;
    api.run(&experiment, (&gamma, version), json!({})).await;
    api.state(&done).await;
    api.state(&done).await;
    let (_, succeeded) = api
        .get(&format!(
            "/runs?experiment_id={experiment}&filter={}",
            filter(json!([{"operation": "IN", "key": "state", "string_values": {"values": ["SUCCEEDED", "FAILED"]}}]))
        ))
        .await;
    assert_eq!(succeeded["total_size"], 1);
    assert_eq!(succeeded["runs"][0]["run_id"], json!(done));
}

#[tokio::test]
async fn multi_user_namespace_rules() {
    let server = TestServer::start(TestServerOptions { multi_user: true, ..Default::default() }).await;
    let api = Api::new(&server);
    assert!(server.default_experiment_id().is_none(), "no Default experiment in multi-user mode");

    let (status, error) = api.post("/experiments", json!({"display_name": "e"})).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("empty namespace")));
    let experiment = api.experiment("e", Some("team-a")).await;
    assert_eq!(api.get("/experiments").await.0, 400, "namespace is required to list experiments");
    let (_, team_a) = api.get("/experiments?namespace=team-a").await;
    assert_eq!(team_a["experiments"][0]["namespace"], "team-a");
    assert_eq!(api.get("/experiments?namespace=team-b").await.1, json!({}));

    // Pipelines without a namespace are shared.
    let (pipeline, version) = api.pipeline("shared").await;
    let (_, shared) = api.get("/pipelines").await;
    assert_eq!(shared["total_size"], 1);
    assert!(shared["pipelines"][0].get("namespace").is_none());
    let (status, private) = api.upload("/pipelines/upload?name=private&namespace=team-a", "p1.yaml", p1()).await;
    assert_eq!(status, 200, "{private}");
    assert_eq!(private["namespace"], "team-a");
    assert_eq!(api.get("/pipelines?namespace=team-a").await.1["total_size"], 1);
    assert_eq!(api.get("/pipelines/names/private?namespace=team-a").await.0, 200);
    assert_eq!(api.get("/pipelines/names/private").await.0, 404);

    // Runs take the experiment's namespace and need an experiment.
    let (status, error) = api
        .post(
            "/runs",
            json!({"display_name": "r", "pipeline_version_reference": {"pipeline_id": pipeline, "pipeline_version_id": version}}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    let run = api.run(&experiment, (&pipeline, &version), json!({})).await;
    assert_eq!(api.get("/runs").await.0, 400, "listing runs needs experiment_id or namespace");
    assert_eq!(api.get("/runs?namespace=team-a").await.1["runs"][0]["run_id"], json!(run));
    assert_eq!(api.get(&format!("/runs?experiment_id={experiment}")).await.1["total_size"], 1);
    assert_eq!(api.get("/runs?namespace=team-b").await.1, json!({}));
    assert_eq!(api.get("/runs?experiment_id=missing").await.0, 404);
}

#[tokio::test]
async fn single_user_namespace_rules_and_the_default_experiment() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let default = server.default_experiment_id().expect("Default experiment");
    let (_, experiments) = api.get("/experiments").await;
    assert_eq!(names(&experiments, "experiments"), ["Default"]);
    assert_eq!(experiments["experiments"][0]["experiment_id"], json!(default));

    let (status, error) = api.get("/experiments?namespace=kubeflow").await;
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("single-user")));
    assert_eq!(api.get("/experiments?namespace=").await.0, 200, "an empty namespace is no namespace");

    // Namespaces given elsewhere are dropped.
    let (_, experiment) = api.post("/experiments", json!({"display_name": "e", "namespace": "team-a"})).await;
    assert!(experiment.get("namespace").is_none(), "{experiment}");

    // A run without experiment goes to Default.
    let (pipeline, version) = api.pipeline("p").await;
    let (status, run) =
        api.post("/runs", json!({"display_name": "r", "pipeline_version_reference": {"pipeline_id": pipeline}})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["experiment_id"], json!(default));
    assert_eq!(run["pipeline_version_reference"]["pipeline_version_id"], json!(version), "latest version");
    assert_eq!(api.get("/runs").await.1["total_size"], 1);
}

#[tokio::test]
async fn bearer_and_cookie_authentication() {
    let server =
        TestServer::start(TestServerOptions { auth: Auth::Bearer("s3cret".into()), ..Default::default() }).await;
    let (status, error) = Api::new(&server).get("/healthz").await;
    assert_eq!(status, 401);
    assert_eq!(error["code"], 16);
    assert_eq!(error["details"][0]["@type"], "type.googleapis.com/google.rpc.Status");
    let (status, _) = Api::new(&server).with_header("authorization", "Bearer wrong").get("/pipelines").await;
    assert_eq!(status, 401);
    let (status, _) = Api::new(&server).with_header("authorization", "bearer s3cret").get("/pipelines").await;
    assert_eq!(status, 200);

    let server = TestServer::start(TestServerOptions {
        auth: Auth::Cookie("authservice_session=abc".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(Api::new(&server).get("/healthz").await.0, 401);
    let (status, _) =
        Api::new(&server).with_header("cookie", "other=1; authservice_session=abc").get("/experiments").await;
    assert_eq!(status, 200);
    assert_eq!(Api::new(&server).with_header("cookie", "authservice_session=abd").get("/healthz").await.0, 401);
}

#[tokio::test]
async fn auth_proxy_modes() {
    let cookie = "oauth2_proxy_kubeflow=token".to_owned();
    let server = TestServer::start(TestServerOptions {
        auth: Auth::ProxyRedirect { cookie: cookie.clone() },
        ..Default::default()
    })
    .await;
    let api = Api::new(&server);
    let response = api.raw(Method::GET, "/runs?page_size=5", None).await;
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().expect("location").to_owned();
    assert_eq!(location, format!("{LOGIN_PATH}?rd=/apis/v2beta1/runs%3Fpage_size%3D5"));
    let login = api.raw(Method::GET, &location, None).await;
    assert_eq!(login.status().as_u16(), 200);
    assert!(login.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/html")));
    assert!(login.text().await.expect("html").contains("<form"));
    let api = Api::new(&server).with_header("cookie", &cookie);
    assert_eq!(api.get("/runs").await.0, 200);

    let server = TestServer::start(TestServerOptions {
        auth: Auth::ProxyLoginPage { cookie: cookie.clone() },
        ..Default::default()
    })
    .await;
    let response = Api::new(&server).raw(Method::GET, "/healthz", None).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/html")));
    assert!(response.text().await.expect("html").starts_with("<!DOCTYPE html>"));
    let (status, health) = Api::new(&server).with_header("cookie", &cookie).get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["pipeline_store"], "database");
}

#[tokio::test]
async fn fault_injection() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    server.inject_fault(Fault::unavailable("/apis/v2beta1/experiments", 2));
    server.inject_fault(Fault::throttled("/apis/v2beta1/pipelines", 1, 7));

    let unavailable = api.raw(Method::GET, "/experiments", None).await;
    assert_eq!(unavailable.status().as_u16(), 503);
    assert!(unavailable.headers().get("retry-after").is_none());
    assert_eq!(api.get("/healthz").await.0, 200, "other paths are not affected");
    assert_eq!(api.post("/experiments", json!({"display_name": "e"})).await.0, 503);
    assert_eq!(api.get("/experiments").await.0, 200, "only the next 2 requests fail");

    let throttled = api.raw(Method::GET, "/pipelines", None).await;
    assert_eq!(throttled.status().as_u16(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");
    assert_eq!(throttled.json::<Value>().await.expect("json")["code"], 8);
    assert_eq!(api.get("/pipelines").await.0, 200);

    server.inject_fault(Fault::unavailable("", 10));
    assert_eq!(api.get("/healthz").await.0, 503);
    server.clear_faults();
    assert_eq!(api.get("/healthz").await.0, 200);

    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200, 503, 200, 429, 200, 503, 200], "faults are recorded too");
}

#[tokio::test]
async fn request_bodies_are_checked_like_protojson() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);

    let (status, error) = api.post("/experiments", json!({"display_name": "e", "bogus": 1})).await;
    assert_eq!(status, 400);
    assert_eq!(error, json!({"code": 3, "message": "proto: unknown field \"bogus\"", "details": []}));
    let (status, created) = api.post("/experiments", json!({"displayName": "camel", "description": "d"})).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["display_name"], "camel");
    assert_eq!(created["storage_state"], "AVAILABLE");
    assert_eq!(created["last_run_created_at"], "1970-01-01T00:00:00Z");
    for bad in [
        json!({"display_name": "e", "displayName": "e"}),
        json!({"display_name": 5}),
        json!({"display_name": "e", "storage_state": "SOMETIMES"}),
        json!({"display_name": "e", "created_at": "yesterday"}),
        json!(["not", "an", "object"]),
    ] {
        let (status, error) = api.post("/experiments", bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {error}");
    }
    let (status, error) = api.call(Method::POST, "/experiments", None).await;
    assert_eq!(status, 400, "an empty body is an empty experiment, which has no name: {error}");

    let (pipeline, version) = api.pipeline("p").await;
    let experiment = created["experiment_id"].as_str().expect("id");
    // Nested unknown field, oneof conflict, missing source.
    let (status, error) = api
        .post("/runs", json!({"display_name": "r", "experiment_id": experiment, "runtime_config": {"params": {}}}))
        .await;
    assert_eq!((status, error["message"].clone()), (400, json!("proto: unknown field \"params\"")));
    let spec: Value = serde_yaml::from_slice(&p1()).expect("spec");
    let (status, error) = api
        .post(
            "/runs",
            json!({"display_name": "r", "experiment_id": experiment, "pipeline_spec": spec,
                   "pipeline_version_reference": {"pipeline_id": pipeline, "pipeline_version_id": version}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error["message"].as_str().is_some_and(|m| m.contains("oneof")), "{error}");
    let (status, _) = api.post("/runs", json!({"display_name": "r", "experiment_id": experiment})).await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post("/runs", json!({"display_name": "r", "experiment_id": experiment, "pipeline_spec": {"root": {}}}))
        .await;
    assert_eq!(status, 400, "an inline spec without pipelineInfo.name");
    let (status, _) = api
        .post(
            "/runs",
            json!({"display_name": "r", "experiment_id": "missing",
                   "pipeline_version_reference": {"pipeline_id": pipeline, "pipeline_version_id": version}}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post(
            "/runs",
            json!({"display_name": "r", "experiment_id": experiment,
                   "pipeline_version_reference": {"pipeline_id": pipeline, "pipeline_version_id": "missing"}}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post(
            "/runs",
            json!({"experiment_id": experiment,
                   "pipeline_version_reference": {"pipeline_id": pipeline, "pipeline_version_id": version}}),
        )
        .await;
    assert_eq!(status, 400, "a run needs a display name");

    // Inline specs are echoed back, whole numbers as integers.
    let (status, run) =
        api.post("/runs", json!({"display_name": "inline", "experiment_id": experiment, "pipeline_spec": spec})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["pipeline_spec"]["pipelineInfo"]["name"], "linear-params");
    assert_eq!(run["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]["times"]["defaultValue"], json!(2));
    assert!(run.get("pipeline_version_reference").is_none());

    // Unknown query parameters are ignored; a bad boolean is not.
    assert_eq!(api.get("/pipelines?colour=blue").await.0, 200);
    assert_eq!(api.call(Method::DELETE, &format!("/pipelines/{pipeline}?cascade=maybe"), None).await.0, 400);
}

#[tokio::test]
async fn uploads_name_pipelines_and_store_specs() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);

    let (_, by_name) = api.upload("/pipelines/upload?name=n&display_name=Shown&description=d", "f.yaml", p1()).await;
    assert_eq!((by_name["name"].as_str(), by_name["display_name"].as_str()), (Some("n"), Some("Shown")));
    assert_eq!(by_name["description"], "d");
    assert!(by_name.get("pipeline_spec").is_none(), "upload returns the pipeline only");
    let (_, by_display) = api.upload("/pipelines/upload?display_name=Only%20display", "f.yaml", p1()).await;
    assert_eq!(by_display["name"], "Only display");
    let (_, by_file) = api.upload("/pipelines/upload", "from-file.yaml", p1()).await;
    assert_eq!(
        (by_file["name"].as_str(), by_file["display_name"].as_str()),
        (Some("from-file.yaml"), Some("from-file.yaml"))
    );

    // The first version carries the pipeline's names and the spec.
    let id = by_name["pipeline_id"].as_str().expect("id");
    let (_, versions) = api.get(&format!("/pipelines/{id}/versions")).await;
    let version = &versions["pipeline_versions"][0];
    assert_eq!((version["name"].as_str(), version["display_name"].as_str()), (Some("n"), Some("Shown")));
    assert_eq!(version["pipeline_spec"]["pipelineInfo"]["name"], "linear-params");
    assert_eq!(version["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]["times"]["defaultValue"], json!(2));
    let (status, same) =
        api.get(&format!("/pipelines/{id}/versions/{}", version["pipeline_version_id"].as_str().expect("id"))).await;
    assert_eq!((status, &same), (200, version));
    assert_eq!(api.get("/pipelines/names/n").await.1["pipeline_id"], json!(id));

    // A multi-document package: the platform spec is kept in the wrapper.
    let p4 = std::fs::read(reference("p4_platform_spec_importer.yaml")).expect("p4");
    let (status, pipeline) = api.upload("/pipelines/upload?name=p4", "p4.yaml", p4).await;
    assert_eq!(status, 200, "{pipeline}");
    let (_, versions) =
        api.get(&format!("/pipelines/{}/versions", pipeline["pipeline_id"].as_str().expect("id"))).await;
    let spec = &versions["pipeline_versions"][0]["pipeline_spec"];
    assert_eq!(spec["pipeline_spec"]["pipelineInfo"]["name"], "platform-spec-importer");
    assert!(spec["platform_spec"]["platforms"]["kubernetes"].is_object(), "{spec}");

    // Bad uploads.
    let (status, error) =
        api.upload("/pipelines/upload?name=bad", "bad.yaml", b"pipelineInfo: {}\nroot: {}\n".to_vec()).await;
    assert_eq!(status, 500, "the real handler maps spec errors to 500: {error}");
    assert!(error["error_message"].as_str().is_some_and(|m| m.contains("name is empty")));
    let (status, error) = api.upload("/pipelines/upload?name=txt", "notes.txt", b"hello".to_vec()).await;
    assert_eq!(status, 400, "{error}");
    let (status, _) = api.upload("/pipelines/upload?name=zip", "p.zip", b"PK\x03\x04rest".to_vec()).await;
    assert_eq!(status, 400);
    let (status, error) = api.upload("/pipelines/upload_version?name=v", "p1.yaml", p1()).await;
    assert_eq!(status, 400, "pipelineid is required: {error}");
    let (status, _) = api.upload("/pipelines/upload_version?pipelineid=missing", "p1.yaml", p1()).await;
    assert_eq!(status, 400);
    let (status, error) = api.call(Method::POST, "/pipelines/upload?name=x", Some(&json!({}))).await;
    assert_eq!(status, 400, "not multipart: {error}");
    assert!(error["error_message"].is_string());
    let (status, _) = api.upload(&format!("/pipelines/upload?name={}", "x".repeat(200)), "p1.yaml", p1()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn pipelines_from_package_urls() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let url = "https://raw.githubusercontent.com/example/repo/main/pipeline.yaml";
    server.register_package(url, p1());

    let (status, pipeline) = api
        .post("/pipelines/create", json!({"pipeline": {"display_name": "From URL"}, "pipeline_version": {"package_url": {"pipeline_url": url}}}))
        .await;
    assert_eq!(status, 200, "{pipeline}");
    assert_eq!(pipeline["name"], "From URL");
    let id = pipeline["pipeline_id"].as_str().expect("id");

    let (status, version) = api
        .post(
            &format!("/pipelines/{id}/versions"),
            json!({"pipeline_id": id, "name": "v2", "package_url": {"pipeline_url": url}}),
        )
        .await;
    assert_eq!(status, 200, "{version}");
    assert_eq!(version["package_url"]["pipeline_url"], url);
    assert_eq!(version["pipeline_spec"]["pipelineInfo"]["name"], "linear-params");

    let (status, error) = api
        .post(
            &format!("/pipelines/{id}/versions"),
            json!({"pipeline_id": id, "name": "v3", "package_url": {"pipeline_url": "http://127.0.0.1/p.yaml"}}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    let (status, _) = api
        .post(&format!("/pipelines/{id}/versions"), json!({"name": "v3", "package_url": {"pipeline_url": url}}))
        .await;
    assert_eq!(status, 400, "pipeline_id is required in the body");
    let (status, _) = api
        .post(
            &format!("/pipelines/{id}/versions"),
            json!({"pipeline_id": id, "package_url": {"pipeline_url": "https://github.com/x/unknown.yaml"}}),
        )
        .await;
    assert_eq!(status, 400, "not registered: as if it answered 404");

    // Empty pipelines.
    let (status, empty) = api.post("/pipelines", json!({"name": "empty", "tags": {"team": "a"}})).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!((empty["display_name"].as_str(), empty["tags"]["team"].as_str()), (Some("empty"), Some("a")));
    assert_eq!(api.post("/pipelines", json!({"description": "no name"})).await.0, 400);
}

#[tokio::test]
async fn archive_and_delete() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    let (pipeline, version) = api.pipeline("p").await;
    let experiment = api.experiment("e", None).await;
    let run = api.run(&experiment, (&pipeline, &version), json!({})).await;

    assert_eq!(api.post(&format!("/runs/{run}:archive"), json!({})).await, (200, json!({})));
    assert_eq!(api.get(&format!("/runs/{run}")).await.1["storage_state"], "ARCHIVED");
    api.post(&format!("/runs/{run}:unarchive"), json!({})).await;
    assert_eq!(api.get(&format!("/runs/{run}")).await.1["storage_state"], "AVAILABLE");

    // Archiving an experiment archives its runs, and blocks new runs and unarchiving them.
    assert_eq!(api.post(&format!("/experiments/{experiment}:archive"), json!({})).await.0, 200);
    assert_eq!(api.get(&format!("/experiments/{experiment}")).await.1["storage_state"], "ARCHIVED");
    assert_eq!(api.get(&format!("/runs/{run}")).await.1["storage_state"], "ARCHIVED");
    assert_eq!(api.post(&format!("/runs/{run}:unarchive"), json!({})).await.0, 400);
    let (status, _) = api
        .post(
            "/runs",
            json!({"display_name": "r", "experiment_id": experiment,
                   "pipeline_version_reference": {"pipeline_id": pipeline, "pipeline_version_id": version}}),
        )
        .await;
    assert_eq!(status, 400);
    api.post(&format!("/experiments/{experiment}:unarchive"), json!({})).await;
    assert_eq!(api.post(&format!("/runs/{run}:unarchive"), json!({})).await.0, 200);
    let (_, archived) = api
        .get(&format!(
            "/runs?filter={}",
            filter(json!([{"operation": "EQUALS", "key": "storage_state", "string_value": "ARCHIVED"}]))
        ))
        .await;
    assert_eq!(archived, json!({}));

    // Deletes.
    assert_eq!(api.call(Method::DELETE, &format!("/runs/{run}"), None).await, (200, json!({})));
    assert_eq!(api.get(&format!("/runs/{run}")).await.0, 404);
    assert_eq!(api.call(Method::DELETE, &format!("/runs/{run}"), None).await.0, 404);
    let (status, error) = api.call(Method::DELETE, &format!("/pipelines/{pipeline}"), None).await;
    assert_eq!(status, 400, "a pipeline with versions: {error}");
    assert_eq!(api.call(Method::DELETE, &format!("/pipelines/{pipeline}/versions/{version}"), None).await.0, 200);
    assert_eq!(api.call(Method::DELETE, &format!("/pipelines/{pipeline}"), None).await.0, 200);
    let (other, _) = api.pipeline("other").await;
    assert_eq!(api.call(Method::DELETE, &format!("/pipelines/{other}?cascade=true"), None).await.0, 200);
    assert_eq!(api.get(&format!("/pipelines/{other}")).await.0, 404);
    assert_eq!(api.call(Method::DELETE, &format!("/experiments/{experiment}"), None).await.0, 200);
    assert_eq!(api.get(&format!("/experiments/{experiment}")).await.0, 404);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let server = TestServer::start(TestServerOptions::default()).await;
    let api = Api::new(&server);
    assert_eq!(api.get("/nothing").await, (404, json!({"code": 5, "message": "Not Found", "details": []})));
    assert_eq!(api.get("/apis/v1beta1/runs").await.0, 404);
    assert_eq!(api.get("/runs/").await.0, 404);
    assert_eq!(api.get("/runs/abc:cancel").await.0, 404);
    assert_eq!(
        api.call(Method::PUT, "/experiments", None).await,
        (501, json!({"code": 12, "message": "Method Not Allowed", "details": []}))
    );
    assert_eq!(api.get("/runs/abc:terminate").await.0, 501);
    let (status, error) = api.get("/pipelines/nope").await;
    assert_eq!((status, error["code"].clone()), (404, json!(5)));
    // Percent-encoded verbs are decoded like the gateway does.
    let (pipeline, version) = api.pipeline("p").await;
    let experiment = api.experiment("e", None).await;
    let run = api.run(&experiment, (&pipeline, &version), json!({})).await;
    assert_eq!(api.post(&format!("/runs/{run}%3Aterminate"), json!({})).await.0, 200);

    let recorded = server.requests();
    let last = recorded.last().expect("recorded");
    assert_eq!((last.method.as_str(), last.status), ("POST", 200));
    assert_eq!(last.path, format!("/apis/v2beta1/runs/{run}%3Aterminate"));
    assert_eq!(last.body_json(), Some(json!({})));
    server.clear_requests();
    assert!(server.requests().is_empty());
}
