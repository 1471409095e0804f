//! The inference check against a real KServe model server (kserve 0.21.0 from `.venv-kserve`, serving an iris
//! model trained here) and against a replay of real kserve and MLServer answers (`recorded_responses.json`).
//!
//! The real server needs `KFOPS_KSERVE_PYTHON` (set by `cargo xtask test`); without it these tests fail and
//! say how to create the virtualenv. Latencies are written to stderr, never asserted.

use std::io::Write as _;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use kfops_deploy::CheckError;
use kfops_deploy::check::{
    CheckReport, CheckSettings, CheckTarget, HttpInferenceCheck, InferenceCheck, Protocol, detect_protocol,
};
use serde_json::{Value, json};

fn reference(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/kserve").join(path)
}

fn read_json(path: &str) -> Value {
    let file = reference(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()))
}

fn settings(sample: Value, expect: Option<Value>, requests: u32, timeout: Duration) -> CheckSettings {
    CheckSettings { protocol: None, sample, expect, requests, timeout }
}

/// Latencies go to the test log (stderr), for people; no test asserts on them.
fn report(name: &str, report: &CheckReport) {
    let mut err = std::io::stderr().lock();
    for line in report.lines() {
        let _ = writeln!(err, "[{name}] {line}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The real KServe model server.

fn kserve_python() -> PathBuf {
    let python = std::env::var_os("KFOPS_KSERVE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "KFOPS_KSERVE_PYTHON is not set: these tests run a real KServe model server from the virtualenv that \
             `cargo xtask test` creates (.venv-kserve); run `cargo xtask test`, or `cargo xtask venv-kserve` and \
             export KFOPS_KSERVE_PYTHON=<the printed path>"
        )
    });
    assert!(
        python.is_file(),
        "KFOPS_KSERVE_PYTHON={} does not exist; run `cargo xtask venv-kserve` to create .venv-kserve",
        python.display()
    );
    python
}

/// The iris model, trained once per test run by `local-server/train.py` (a folder with `model.joblib`).
fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kfops-deploy-check-iris-model");
        let out = Command::new(kserve_python())
            .arg(reference("local-server/train.py"))
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("running train.py");
        assert!(
            out.status.success(),
            "train.py failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dir.join("model.joblib").is_file(), "train.py wrote no model.joblib into {}", dir.display());
        dir
    })
}

/// A running `local-server/serve.py` serving the model as `iris`; killed when dropped.
struct KserveServer {
    child: Child,
    base_url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl KserveServer {
    /// Starts the server with extra environment (`FAKE_FAIL`, `FAKE_DELAY_MS`) and waits until it is ready.
    async fn start(env: &[(&str, &str)]) -> KserveServer {
        let python = kserve_python();
        let model = model_dir();
        let port = StdListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("serve.log");
        let out = std::fs::File::create(&log).expect("the log file");
        let child = Command::new(python)
            .arg(reference("local-server/serve.py"))
            .args(["--model_name", "iris", "--model_dir"])
            .arg(model)
            .args(["--http_port", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("the log file"))
            .stderr(out)
            .spawn()
            .expect("starting serve.py");
        let mut server = KserveServer { child, base_url: format!("http://127.0.0.1:{port}"), log, _dir: dir };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let url = format!("{}/v2/health/ready", self.base_url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve.py exited ({status}) before it was ready:\n{}", self.log_text());
            }
            let ok =
                client.get(&url).timeout(Duration::from_secs(2)).send().await.is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "serve.py was not ready within 90 s:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn target(&self, model_name: &str) -> CheckTarget {
        CheckTarget { base_url: self.base_url.clone(), host: None, model_name: model_name.into() }
    }
}

impl Drop for KserveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn checker() -> HttpInferenceCheck {
    HttpInferenceCheck::new().expect("the HTTP client")
}

#[tokio::test]
async fn real_kserve_server_passes_v1_and_v2_samples_and_explains_failures() {
    let server = KserveServer::start(&[]).await;
    let check = checker();
    let limit = Duration::from_secs(10);
    let v1 = read_json("samples/sklearn_v1_iris-input.json");
    let v2 = read_json("samples/sklearn_v2_iris-input.json");

    // V1, detected from `instances`, with the expected classes.
    let r = check
        .check(&server.target("iris"), &settings(v1.clone(), Some(json!({"predictions": [1, 1]})), 5, limit))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    report("kserve v1", &r);
    assert_eq!(r.protocol, Protocol::V1);
    assert_eq!(r.requests, 5);
    assert_eq!(r.latencies_ms.len(), 5);
    assert_eq!(r.output, "[1,1]");
    assert_eq!(r.lines()[0], "protocol v1, 5 requests answered 200");
    assert!(r.lines()[1].starts_with("latency p50 "), "{:?}", r.lines());
    assert_eq!(r.lines()[2], "output: [1,1]");

    // V2, detected from `inputs`; the expectation is a subset of the answer (no id, version or shape).
    let r = check
        .check(
            &server.target("iris"),
            &settings(v2.clone(), Some(json!({"outputs": [{"data": [1, 1.0000001]}]})), 3, limit),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    report("kserve v2", &r);
    assert_eq!(r.protocol, Protocol::V2);
    assert_eq!(r.output, "output-0=[1,1]");
    assert_eq!(r.lines()[0], "protocol v2, 3 requests answered 200");

    // A different class than the model answers: the path names the element.
    let err = check
        .check(&server.target("iris"), &settings(v1, Some(json!({"predictions": [1, 2]})), 1, limit))
        .await
        .expect_err("class 2 is not what the model answers");
    assert_eq!(
        err,
        CheckError::Unexpected { path: "$.predictions[1]".into(), expected: "2".into(), actual: "1".into() }
    );
    let err = check
        .check(&server.target("iris"), &settings(v2.clone(), Some(json!({"outputs": [{"name": "predict"}]})), 1, limit))
        .await
        .expect_err("kserve names its output output-0");
    assert!(
        matches!(&err, CheckError::Unexpected { path, actual, .. } if path == "$.outputs[0].name" && actual == "\"output-0\""),
        "{err:?}"
    );
    let err = check
        .check(&server.target("iris"), &settings(v2.clone(), Some(json!({"outputs": [{"data": [1]}]})), 1, limit))
        .await
        .expect_err("arrays must have the same length");
    assert!(matches!(&err, CheckError::Unexpected { path, .. } if path == "$.outputs[0].data"), "{err:?}");

    // An unknown model never becomes ready; the error quotes the server's 404.
    let short = Duration::from_millis(600);
    for (sample, path) in
        [(v2, "/v2/models/nope/ready"), (read_json("samples/sklearn_v1_iris-input.json"), "/v1/models/nope")]
    {
        let err =
            check.check(&server.target("nope"), &settings(sample, None, 1, short)).await.expect_err("no such model");
        let CheckError::NotReady(why) = &err else { panic!("expected NotReady, got {err:?}") };
        assert!(why.contains(path) && why.contains("404") && why.contains("does not exist"), "{why}");
    }
}

#[tokio::test]
async fn real_kserve_server_that_fails_predictions_is_a_predict_error() {
    let server = KserveServer::start(&[("FAKE_FAIL", "1")]).await;
    let err = checker()
        .check(
            &server.target("iris"),
            &settings(read_json("samples/sklearn_v2_iris-input.json"), None, 3, Duration::from_secs(10)),
        )
        .await
        .expect_err("FAKE_FAIL=1 makes every prediction fail");
    let CheckError::Predict { attempt, message } = &err else { panic!("expected Predict, got {err:?}") };
    assert_eq!(*attempt, 1);
    assert!(message.contains("HTTP 500") && message.contains("FAKE_FAIL=1"), "{message}");
    assert!(
        err.to_string().starts_with("prediction request 1 failed: POST /v2/models/iris/infer answered HTTP 500"),
        "{err}"
    );
}

#[tokio::test]
async fn real_kserve_server_slower_than_the_limit_is_a_timeout() {
    let server = KserveServer::start(&[("FAKE_DELAY_MS", "300")]).await;
    let err = checker()
        .check(
            &server.target("iris"),
            &settings(read_json("samples/sklearn_v1_iris-input.json"), None, 2, Duration::from_millis(100)),
        )
        .await
        .expect_err("300 ms of delay against a 100 ms limit");
    assert!(matches!(&err, CheckError::Timeout { what, .. } if what.starts_with("prediction request 1 ")), "{err:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Replayed recordings of kserve 0.21.0 and MLServer 1.7.1.

struct Replay {
    calls: Vec<Value>,
    seen: Mutex<Vec<(String, String, Option<String>)>>,
}

/// Answers with the recorded call of the same method and path (and, among several, the same request body);
/// routes that were not recorded answer 404 like the servers do for routes they lack.
async fn replay(
    State(replay): State<Arc<Replay>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    replay.seen.lock().expect("seen").push((method.to_string(), uri.path().to_owned(), host));
    let sent: Option<Value> = serde_json::from_slice(&body).ok();
    let candidates: Vec<&Value> =
        replay.calls.iter().filter(|c| c["method"] == method.as_str() && c["path"] == uri.path()).collect();
    let call = candidates
        .iter()
        .find(|c| sent.is_some() && c["request"] == sent.clone().unwrap_or_default())
        .or(candidates.first());
    let Some(call) = call else {
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], "{\"detail\":\"Not Found\"}")
            .into_response();
    };
    let status = StatusCode::from_u16(call["status"].as_u64().expect("status") as u16).expect("a status code");
    let raw = call["raw_body"].as_str().expect("raw_body").to_owned();
    let content_type = if call["body"].is_object() { "application/json" } else { "text/plain; charset=utf-8" };
    (status, [(header::CONTENT_TYPE, content_type)], raw).into_response()
}

async fn start_replay(server: &str) -> (String, Arc<Replay>) {
    let recorded = read_json("recorded_responses.json");
    let calls = recorded[server]["calls"].as_array().unwrap_or_else(|| panic!("no calls for {server}")).clone();
    let state = Arc::new(Replay { calls, seen: Mutex::new(Vec::new()) });
    let app = axum::Router::new().fallback(replay).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

/// The request a recording was made with (the sample that gets the recorded answer).
fn recorded_request(server: &str, method_path: (&str, &str), status: u64) -> Value {
    let recorded = read_json("recorded_responses.json");
    recorded[server]["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["method"] == method_path.0 && c["path"] == method_path.1 && c["status"] == status)
        .unwrap_or_else(|| panic!("no recorded {} {} {status} for {server}", method_path.0, method_path.1))["request"]
        .clone()
}

#[tokio::test]
async fn recorded_kserve_answers_pass_v1_and_v2_with_the_host_header() {
    const SERVER: &str = "kserve-0.21.0-custom-sklearn";
    let (base, replay) = start_replay(SERVER).await;
    let target = CheckTarget {
        base_url: format!("{base}/"),
        host: Some("iris-predictor-latest.models.example.com".into()),
        model_name: "iris".into(),
    };
    let check = checker();
    let limit = Duration::from_secs(5);

    let v1 = recorded_request(SERVER, ("POST", "/v1/models/iris:predict"), 200);
    let r = check.check(&target, &settings(v1, Some(json!({"predictions": [1, 1]})), 2, limit)).await.expect("v1");
    report("recorded kserve v1", &r);
    assert_eq!((r.protocol, r.output.as_str()), (Protocol::V1, "[1,1]"));

    let v2 = recorded_request(SERVER, ("POST", "/v2/models/iris/infer"), 200);
    let expect = json!({"model_name": "iris", "outputs": [{"name": "output-0", "shape": [2], "data": [1, 1]}]});
    let r = check.check(&target, &settings(v2, Some(expect), 2, limit)).await.expect("v2");
    report("recorded kserve v2", &r);
    assert_eq!((r.protocol, r.output.as_str()), (Protocol::V2, "output-0=[1,1]"));

    // The recorded wrong-feature-count request gets kserve's JSON 500.
    let bad = recorded_request(SERVER, ("POST", "/v2/models/iris/infer"), 500);
    let err = check.check(&target, &settings(bad, None, 1, limit)).await.expect_err("500");
    assert!(
        matches!(&err, CheckError::Predict { message, .. } if message.contains("HTTP 500") && message.contains("X has 3 features")),
        "{err:?}"
    );

    let seen = replay.seen.lock().expect("seen").clone();
    let paths: Vec<&str> = seen.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        &paths[..5],
        [
            "/v1/models/iris",
            "/v1/models/iris:predict",
            "/v1/models/iris:predict",
            "/v2/health/ready",
            "/v2/models/iris/ready"
        ]
    );
    assert!(
        seen.iter().all(|(_, _, host)| host.as_deref() == Some("iris-predictor-latest.models.example.com")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn recorded_mlserver_answers_pass_v2_with_empty_health_bodies() {
    const SERVER: &str = "mlserver-1.7.1-sklearn";
    let (base, _replay) = start_replay(SERVER).await;
    let target = CheckTarget { base_url: base, host: None, model_name: "iris".into() };
    let check = checker();
    let limit = Duration::from_secs(5);

    // Empty bodies on /v2/health/ready and /v2/models/iris/ready are ready; MLServer names its output `predict`.
    let v2 = recorded_request(SERVER, ("POST", "/v2/models/iris/infer"), 200);
    let r = check
        .check(
            &target,
            &settings(v2.clone(), Some(json!({"outputs": [{"name": "predict", "data": [1, 1]}]})), 3, limit),
        )
        .await
        .expect("mlserver v2");
    report("recorded mlserver v2", &r);
    assert_eq!((r.protocol, r.output.as_str()), (Protocol::V2, "predict=[1,1]"));

    // Its plain-text 500 is quoted as it is.
    let bad = recorded_request(SERVER, ("POST", "/v2/models/iris/infer"), 500);
    let err = check.check(&target, &settings(bad, None, 1, limit)).await.expect_err("500");
    assert_eq!(
        err.to_string(),
        "prediction request 1 failed: POST /v2/models/iris/infer answered HTTP 500 Internal Server Error: Internal Server Error"
    );

    // MLServer has no V1 routes: a V1 check never sees the model ready.
    let v1 = read_json("samples/sklearn_v1_iris-input.json");
    let err = check.check(&target, &settings(v1, None, 1, Duration::from_millis(300))).await.expect_err("no V1");
    assert!(
        matches!(&err, CheckError::NotReady(why) if why.contains("GET /v1/models/iris answered HTTP 404")),
        "{err:?}"
    );

    // A configured protocol wins over detection.
    let forced = CheckSettings { protocol: Some(Protocol::V2), ..settings(v2, None, 1, limit) };
    assert_eq!(check.check(&target, &forced).await.expect("forced v2").protocol, Protocol::V2);
}

#[tokio::test]
async fn nothing_listening_is_not_ready() {
    let port = StdListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port();
    let target = CheckTarget { base_url: format!("http://127.0.0.1:{port}"), host: None, model_name: "iris".into() };
    let err = checker()
        .check(&target, &settings(read_json("samples/sklearn_v2_iris-input.json"), None, 1, Duration::from_millis(300)))
        .await
        .expect_err("nothing listens");
    assert!(matches!(&err, CheckError::NotReady(why) if why.contains("connecting failed")), "{err:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Protocol detection.

#[test]
fn detect_protocol_accepts_v1_and_v2_samples_and_explains_the_rest() {
    assert_eq!(detect_protocol(&read_json("samples/sklearn_v1_iris-input.json")), Ok(Protocol::V1));
    assert_eq!(detect_protocol(&read_json("samples/sklearn_v2_iris-input.json")), Ok(Protocol::V2));
    assert_eq!(detect_protocol(&read_json("samples/xgboost_iris-input.json")), Ok(Protocol::V2));
    assert_eq!(detect_protocol(&json!({"instances": []})), Ok(Protocol::V1));
    assert_eq!(
        detect_protocol(
            &json!({"id": "1", "inputs": [{"name": "a", "shape": [1], "datatype": "BOOL", "data": [true]}]})
        ),
        Ok(Protocol::V2)
    );

    let bad: &[(Value, &str)] = &[
        (json!([1, 2]), "the sample is an array, not a JSON object"),
        (json!("x"), "the sample is a string, not a JSON object"),
        (json!({}), "the sample has neither `instances` nor `inputs`"),
        (json!({"data": [1]}), "the sample has neither `instances` nor `inputs`"),
        (json!({"instances": {"a": 1}}), "`instances` is an object, not an array"),
        (json!({"inputs": "x"}), "`inputs` is a string, not an array"),
        (json!({"inputs": []}), "`inputs` is empty"),
        (json!({"inputs": [3]}), "`inputs[0]` is a number, so it is not a V2 tensor"),
        (json!({"instances": [], "inputs": []}), "both `instances` and `inputs`"),
        // The LightGBM sample uses `inputs` for V1-style named columns: not V2 tensors.
        (
            read_json("samples/lightgbm_iris-input.json"),
            "`inputs[0]` lacks `name`, `shape`, `datatype`, `data`, so it is not a V2 tensor",
        ),
        (
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}, {"name": "b"}]}),
            "`inputs[1]` lacks `shape`, `datatype`, `data`",
        ),
    ];
    for (sample, says) in bad {
        match detect_protocol(sample) {
            Err(CheckError::Sample(why)) => {
                assert!(why.contains(says), "{sample}: {why}");
                assert!(
                    why.contains("a V1 sample is {\"instances\"") && why.contains("a V2 sample is {\"inputs\""),
                    "{why}"
                );
            }
            other => panic!("{sample}: expected a Sample error, got {other:?}"),
        }
    }
}

#[test]
fn report_lines_show_p50_and_max() {
    let r = CheckReport { protocol: Protocol::V2, requests: 1, latencies_ms: vec![3.12], output: "x=[0]".into() };
    assert_eq!(r.lines(), ["protocol v2, 1 request answered 200", "latency p50 3.1 ms, max 3.1 ms", "output: x=[0]"]);
    let r = CheckReport {
        protocol: Protocol::V1,
        requests: 4,
        latencies_ms: vec![9.0, 1.0, 4.0, 2.0],
        output: String::new(),
    };
    assert_eq!(r.lines()[1], "latency p50 2.0 ms, max 9.0 ms");
}

// ---------------------------------------------------------------------------------------------------------------
// Response size.

#[tokio::test]
async fn an_answer_over_one_mib_is_refused_unread() {
    async fn answer(uri: Uri) -> Response {
        if uri.path() == "/v2/models/iris/infer" {
            let huge = format!("{{\"outputs\":[{{\"name\":\"o\",\"data\":\"{}\"}}]}}", "x".repeat(2 * 1024 * 1024));
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], huge).into_response();
        }
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"ready\":true}").into_response()
    }
    let app = axum::Router::new().fallback(answer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let target = CheckTarget { base_url: base, host: None, model_name: "iris".into() };
    let err = checker()
        .check(&target, &settings(read_json("samples/sklearn_v2_iris-input.json"), None, 1, Duration::from_secs(5)))
        .await
        .expect_err("too large");
    assert_eq!(
        err.to_string(),
        format!(
            "prediction request 1 failed: POST /v2/models/iris/infer answered 200 OK with a body over {} bytes; \
             kfops reads at most that much",
            kfops_deploy::check::MAX_BODY_BYTES
        )
    );
}
