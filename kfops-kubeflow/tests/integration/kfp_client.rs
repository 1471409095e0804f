//! The KFP REST client against a small scripted server.
//!
//! Every test starts an axum server on a free local port that records each
//! request and answers as a real KFP server does (snake_case, int64 as
//! strings, omitted defaults, the Unix epoch for unset timestamps). Besides the
//! behaviour, every recorded request is checked against the official v2beta1
//! swagger files (`shared/reference/kfp-api`): zero violations allowed.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use kfops_core::pipeline::{CompiledPipeline, PipelineSource, RunId, RunRequest, RunState, SourceInfo, VersionName};
use kfops_core::{ErrorKind, PipelineBackend};
use kfops_kubeflow::KfpError;
use kfops_kubeflow::kfp::backend::KfpBackend;
use kfops_kubeflow::kfp::client::{
    CreateRun, KfpAuth, KfpClient, KfpConfig, ListOptions, PublishRequest, RetryPolicy, RunPipeline, WaitOptions,
};
use kfops_kubeflow::kfp::swagger::{HttpRequest, SwaggerChecker, reference_dir};
use kfops_kubeflow::kfp::types::{Filter, Run};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The scripted server.

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// Decoded query parameters, in order.
    fn params(&self) -> Vec<(String, String)> {
        let url = reqwest::Url::parse(&format!("http://x/?{}", self.query.as_deref().unwrap_or(""))).expect("url");
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    fn param(&self, name: &str) -> Option<String> {
        self.params().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }

    fn filter(&self) -> Option<Value> {
        self.param("filter").map(|f| serde_json::from_str(&f).expect("filter JSON"))
    }

    fn filter_key_value(&self) -> Option<(String, String)> {
        let f = self.filter()?;
        let p = &f["predicates"][0];
        Some((p["key"].as_str()?.to_owned(), p["string_value"].as_str()?.to_owned()))
    }
}

/// The answer to one request.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn json_reply(status: u16, value: Value) -> Reply {
    Reply { status, headers: vec![("content-type", "application/json".into())], body: value.to_string().into_bytes() }
}

fn ok(value: Value) -> Reply {
    json_reply(200, value)
}

fn reply(status: u16, content_type: &str, body: &str) -> Reply {
    Reply { status, headers: vec![("content-type", content_type.to_owned())], body: body.as_bytes().to_vec() }
}

fn not_found(what: &str) -> Reply {
    json_reply(
        404,
        json!({"code": 5, "message": format!("Failed to get {what}: ResourceNotFoundError: {what} not found"),
               "details": [{"@type": "type.googleapis.com/google.rpc.Status", "code": 5, "message": format!("{what} not found")}]}),
    )
}

fn healthz(multi_user: bool, tag: Option<&str>) -> Reply {
    let mut body = json!({"commit_sha": "4a3592cb", "pipeline_store": "database"});
    if let Some(tag) = tag {
        body["tag_name"] = json!(tag);
    }
    if multi_user {
        body["multi_user"] = json!(true);
    }
    ok(body)
}

type Script = Box<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Script>,
}

async fn handle(State(shared): State<Shared>, request: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.map(|b| b.to_vec()).unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    shared.requests.lock().expect("lock").push(recorded.clone());
    let reply = (shared.script)(&recorded);
    let mut response = axum::response::Response::builder().status(reply.status);
    for (k, v) in reply.headers {
        response = response.header(k, v);
    }
    response.body(axum::body::Body::from(reply.body)).expect("response")
}

struct Mock {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Mock {
    async fn start(script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Shared { requests: Arc::default(), script: Arc::new(Box::new(script)) };
        let requests = shared.requests.clone();
        let app = axum::Router::new().fallback(handle).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Mock { base, requests }
    }

    fn config(&self) -> KfpConfig {
        KfpConfig::new(&self.base).with_auth(KfpAuth::None).with_retry(fast_retry())
    }

    fn client(&self) -> KfpClient {
        KfpClient::new(self.config()).expect("client")
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }

    /// Requests other than healthz.
    fn api_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path != "/apis/v2beta1/healthz").collect()
    }

    /// Every recorded request fits the swagger.
    fn assert_contract(&self) {
        let checker = checker();
        let mut violations = Vec::new();
        for r in self.requests() {
            let content_type = r.header("content-type");
            violations.extend(checker.check(&HttpRequest {
                method: &r.method,
                path: &r.path,
                query: r.query.as_deref(),
                content_type: content_type.as_deref(),
                body: &r.body,
            }));
        }
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "swagger violations:\n{}", text.join("\n"));
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(5),
    }
}

fn checker() -> &'static SwaggerChecker {
    static CHECKER: OnceLock<SwaggerChecker> = OnceLock::new();
    CHECKER.get_or_init(|| SwaggerChecker::load_dir(&reference_dir()).expect("swagger files"))
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/kfp-ir-examples").join(name);
    std::fs::read_to_string(path).expect("example pipeline")
}

fn source() -> SourceInfo {
    SourceInfo {
        repository: Some("acme/ml".into()),
        branch: None,
        pull_request: Some(12),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
    }
}

fn publish_request(version: &str) -> PublishRequest {
    PublishRequest {
        pipeline_name: "platform-spec-importer".into(),
        pipeline_display_name: Some("Platform spec importer".into()),
        pipeline_description: Some("Counts lines".into()),
        version_name: version.into(),
        spec_yaml: example("p4_platform_spec_importer.yaml"),
        source: source(),
    }
}

const PID: &str = "6f1e2d3c-0000-4000-8000-000000000001";
const VID: &str = "a2c4e6f8-0000-4000-8000-000000000002";

fn pipeline_json() -> Value {
    json!({"pipeline_id": PID, "name": "platform-spec-importer", "display_name": "Platform spec importer",
           "description": "Counts lines", "created_at": "2026-11-28T14:00:00Z"})
}

fn version_json(id: &str, name: &str, description: &str) -> Value {
    json!({"pipeline_id": PID, "pipeline_version_id": id, "name": name, "display_name": name,
           "description": description, "created_at": "2026-11-28T14:00:01Z",
           "pipeline_spec": {"pipelineInfo": {"name": "platform-spec-importer"}, "schemaVersion": "2.1.0"}})
}

fn run_json(id: &str, state: &str) -> Value {
    let finished = if matches!(state, "SUCCEEDED" | "FAILED" | "CANCELED" | "SKIPPED") {
        "2026-11-28T14:05:00Z"
    } else {
        "1970-01-01T00:00:00Z"
    };
    json!({"experiment_id": "e1", "run_id": id, "display_name": "nightly", "storage_state": "AVAILABLE",
           "pipeline_version_reference": {"pipeline_id": PID, "pipeline_version_id": VID},
           "runtime_config": {"parameters": {"times": 3, "name": "kfp"}},
           "service_account": "pipeline-runner",
           "created_at": "2026-11-28T14:00:00Z", "scheduled_at": "2026-11-28T14:00:00Z", "finished_at": finished,
           "state": state,
           "state_history": [{"update_time": "2026-11-28T14:00:01Z", "state": "PENDING"}]})
}

// ---------------------------------------------------------------------------------------------
// Publish.

#[tokio::test]
async fn publish_uploads_a_new_pipeline_then_looks_up_its_version() {
    let version = VersionName::for_build(&source(), false, "");
    assert!(version.0.starts_with("0123456789ab-"), "{version}");
    let marker = format!("kfops version: {version}");
    let mock = Mock::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, Some("2.17.0")),
        ("GET", "/apis/v2beta1/pipelines/names/platform-spec-importer") => not_found("pipeline"),
        ("POST", "/apis/v2beta1/pipelines/upload") => ok(pipeline_json()),
        ("GET", p) if p == format!("/apis/v2beta1/pipelines/{PID}/versions") => {
            ok(json!({"pipeline_versions": [version_json(VID, "platform-spec-importer", "…")], "total_size": 1,
                      "next_page_token": "eyJTb3J0QnlGaWVsZE5hbWUiOiJDcmVhdGVkQXRJblNlYyJ9"}))
        }
        _ => not_found("route"),
    })
    .await;
    let client = mock.client();
    let published = client.publish(&publish_request(&version.0)).await.expect("publish");
    assert!(published.created && published.pipeline_created);
    assert_eq!((published.pipeline_id.as_str(), published.version_id.as_str()), (PID, VID));
    assert_eq!(
        client.pipeline_version_url(&published.pipeline_id, &published.version_id),
        format!("{}/#/pipelines/details/{PID}/version/{VID}", mock.base)
    );

    let requests = mock.api_requests();
    let paths: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        paths,
        [
            "GET /apis/v2beta1/pipelines/names/platform-spec-importer".to_owned(),
            "POST /apis/v2beta1/pipelines/upload".to_owned(),
            format!("GET /apis/v2beta1/pipelines/{PID}/versions"),
        ]
    );
    let upload = &requests[1];
    assert_eq!(upload.param("name").as_deref(), Some("platform-spec-importer"));
    assert_eq!(upload.param("display_name").as_deref(), Some("Platform spec importer"), "2.17 takes display_name");
    assert_eq!(upload.param("namespace"), None, "single-user: no namespace");
    let description = upload.param("description").expect("description");
    assert!(description.starts_with("Counts lines\n\n"), "{description}");
    assert!(
        description.contains("Source: acme/ml, pull request #12, commit 0123456789abcdef0123456789abcdef01234567"),
        "{description}"
    );
    assert!(description.ends_with(&marker), "{description}");
    // The multipart part: field `uploadfile`, a `.yaml` filename, the whole multi-document YAML.
    let body = String::from_utf8_lossy(&upload.body);
    assert!(body.contains("name=\"uploadfile\"; filename=\"pipeline.yaml\""), "{body}");
    assert!(body.contains("\n---\nplatforms:"), "both YAML documents are uploaded");
    assert!(upload.header("content-type").is_some_and(|c| c.starts_with("multipart/form-data; boundary=")));
    let lookup = &requests[2];
    assert_eq!(lookup.param("sort_by").as_deref(), Some("created_at desc"));
    assert_eq!(lookup.param("page_size").as_deref(), Some("1"));
    mock.assert_contract();
}

#[tokio::test]
async fn publish_adds_a_version_to_an_existing_pipeline() {
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, Some("2.17.0")),
        ("GET", "/apis/v2beta1/pipelines/names/platform-spec-importer") => ok(pipeline_json()),
        ("GET", p) if p.ends_with("/versions") => match r.filter_key_value() {
            // By name or display name: nothing.
            Some(_) => ok(json!({})),
            // The recent versions: only the pipeline's first, published for another commit.
            None => ok(json!({"pipeline_versions": [
                version_json("first", "platform-spec-importer", "Counts lines\n\nkfops version: git-ffffffffffff")],
                "total_size": 1})),
        },
        ("POST", "/apis/v2beta1/pipelines/upload_version") => ok(version_json(VID, "git-0123456789ab", "…")),
        _ => not_found("route"),
    })
    .await;
    let published = mock.client().publish(&publish_request("git-0123456789ab")).await.expect("publish");
    assert!(published.created && !published.pipeline_created);
    assert_eq!(published.version_id, VID);

    let requests = mock.api_requests();
    let lookups: Vec<(String, String)> = requests.iter().filter_map(Recorded::filter_key_value).collect();
    assert_eq!(
        lookups,
        [
            ("name".to_owned(), "git-0123456789ab".to_owned()),
            ("display_name".to_owned(), "git-0123456789ab".to_owned()),
        ]
    );
    let scan = requests.iter().find(|r| r.path.ends_with("/versions") && r.filter_key_value().is_none()).expect("scan");
    assert_eq!(scan.param("sort_by").as_deref(), Some("created_at desc"));
    let upload = requests.iter().find(|r| r.is("POST", "/apis/v2beta1/pipelines/upload_version")).expect("upload");
    assert_eq!(upload.param("pipelineid").as_deref(), Some(PID));
    assert_eq!(upload.param("name").as_deref(), Some("git-0123456789ab"));
    assert_eq!(upload.param("namespace"), None, "upload_version takes the pipeline's namespace");
    let tags: Value = serde_json::from_str(&upload.param("tags").expect("tags on 2.17")).expect("tags JSON");
    assert_eq!(
        tags,
        json!({"kfops-repository": "acme/ml", "kfops-pull-request": "12",
               "kfops-commit": "0123456789abcdef0123456789abcdef01234567"})
    );
    mock.assert_contract();
}

#[tokio::test]
async fn publishing_the_same_version_again_reuses_it() {
    // By name.
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, Some("2.17.0")),
        ("GET", "/apis/v2beta1/pipelines/names/platform-spec-importer") => ok(pipeline_json()),
        ("GET", p) if p.ends_with("/versions") => {
            ok(json!({"pipeline_versions": [version_json(VID, "git-0123456789ab", "…")], "total_size": 1}))
        }
        _ => not_found("route"),
    })
    .await;
    let published = mock.client().publish(&publish_request("git-0123456789ab")).await.expect("publish");
    assert!(!published.created && !published.pipeline_created);
    assert_eq!(published.version_id, VID);
    assert!(mock.requests().iter().all(|r| !r.path.contains("upload")), "nothing uploaded");
    assert_eq!(mock.api_requests().len(), 2);
    mock.assert_contract();

    // The pipeline's first version (named after the pipeline by the server) found by its description.
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, Some("2.17.0")),
        ("GET", "/apis/v2beta1/pipelines/names/platform-spec-importer") => ok(pipeline_json()),
        ("GET", p) if p.ends_with("/versions") => match r.filter_key_value() {
            Some(_) => ok(json!({"total_size": 0})),
            None => ok(json!({"pipeline_versions": [
                version_json("first", "platform-spec-importer", "Counts lines\n\nSource: acme/ml\nkfops version: git-0123456789ab")]})),
        },
        _ => not_found("route"),
    })
    .await;
    let published = mock.client().publish(&publish_request("git-0123456789ab")).await.expect("publish");
    assert!(!published.created);
    assert_eq!(published.version_id, "first");
    assert!(mock.requests().iter().all(|r| !r.path.contains("upload")), "nothing uploaded");
    mock.assert_contract();
}

#[tokio::test]
async fn a_concurrent_publish_of_the_same_version_is_reused_after_409() {
    let lookups = AtomicUsize::new(0);
    let mock = Mock::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, Some("2.17.0")),
        ("GET", "/apis/v2beta1/pipelines/names/platform-spec-importer") => ok(pipeline_json()),
        ("GET", p) if p.ends_with("/versions") => {
            // Empty for the three lookups before the upload; the other publisher's version after it.
            if lookups.fetch_add(1, Ordering::SeqCst) < 3 {
                ok(json!({}))
            } else {
                ok(json!({"pipeline_versions": [version_json(VID, "git-0123456789ab", "…")]}))
            }
        }
        ("POST", "/apis/v2beta1/pipelines/upload_version") => json_reply(
            409,
            json!({"error_message": "Failed to create a pipeline version",
                   "error_details": "Failed to create a pipeline version\ngithub.com/kubeflow/pipelines/backend/src/apiserver/server.(*PipelineUploadServer).UploadPipelineVersion\n\t/go/src/…"}),
        ),
        _ => not_found("route"),
    })
    .await;
    let published = mock.client().publish(&publish_request("git-0123456789ab")).await.expect("publish");
    assert!(!published.created);
    assert_eq!(published.version_id, VID);
    mock.assert_contract();
}

#[tokio::test]
async fn servers_of_unknown_release_get_only_the_conservative_fields() {
    // No tag: no names route (list with a filter), no display_name, no tags.
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, None),
        ("GET", "/apis/v2beta1/pipelines") => ok(json!({})),
        ("POST", "/apis/v2beta1/pipelines/upload") => ok(pipeline_json()),
        ("GET", p) if p.ends_with("/versions") => ok(json!({"pipeline_versions": [version_json(VID, "x", "…")]})),
        _ => not_found("route"),
    })
    .await;
    mock.client().publish(&publish_request("git-0123456789ab")).await.expect("publish");
    let requests = mock.api_requests();
    assert_eq!(requests[0].path, "/apis/v2beta1/pipelines");
    assert_eq!(
        requests[0].filter(),
        Some(json!({"predicates": [{"operation": "EQUALS", "key": "name", "string_value": "platform-spec-importer"}]}))
    );
    let upload = requests.iter().find(|r| r.path.ends_with("/upload")).expect("upload");
    let keys: Vec<String> = upload.params().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["name", "description"]);
    mock.assert_contract();

    // 2.13: the names route, but no tags on upload_version.
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, Some("2.13.0")),
        ("GET", "/apis/v2beta1/pipelines/names/platform-spec-importer") => ok(pipeline_json()),
        ("GET", p) if p.ends_with("/versions") => ok(json!({})),
        ("POST", "/apis/v2beta1/pipelines/upload_version") => ok(version_json(VID, "git-0123456789ab", "…")),
        _ => not_found("route"),
    })
    .await;
    mock.client().publish(&publish_request("git-0123456789ab")).await.expect("publish");
    let upload = mock.requests().into_iter().find(|r| r.path.ends_with("/upload_version")).expect("upload");
    let keys: Vec<String> = upload.params().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["pipelineid", "name", "description"]);
    mock.assert_contract();
}

// ---------------------------------------------------------------------------------------------
// Experiments and namespaces.

fn experiment_script(multi_user: bool) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(multi_user, Some("2.17.0")),
        ("GET", "/apis/v2beta1/experiments") => match r.filter_key_value() {
            Some((_, name)) if name == "existing" => ok(json!({"experiments": [{
                "experiment_id": "e-existing", "display_name": "existing", "created_at": "2026-11-01T10:00:00Z",
                "storage_state": "AVAILABLE", "last_run_created_at": "1970-01-01T00:00:00Z"}], "total_size": 1})),
            _ => ok(json!({})),
        },
        ("POST", "/apis/v2beta1/experiments") => {
            let mut e = r.json();
            e["experiment_id"] = json!("e-new");
            e["created_at"] = json!("2026-11-28T14:00:00Z");
            e["storage_state"] = json!("AVAILABLE");
            ok(e)
        }
        _ => not_found("route"),
    }
}

#[tokio::test]
async fn single_user_experiments_never_send_a_namespace() {
    let mock = Mock::start(experiment_script(false)).await;
    // A configured namespace is ignored: single-user servers reject namespace filters.
    let client = KfpClient::new(mock.config().with_namespace("team-a")).expect("client");
    let found = client.ensure_experiment("existing").await.expect("find");
    assert_eq!(found.experiment_id.as_deref(), Some("e-existing"));
    assert_eq!(found.last_run_created_at, None, "epoch = unset");
    let created = client.ensure_experiment("fresh").await.expect("create");
    assert_eq!(created.experiment_id.as_deref(), Some("e-new"));

    let requests = mock.requests();
    assert_eq!(requests.iter().filter(|r| r.path.ends_with("/healthz")).count(), 1, "healthz is cached");
    for r in requests.iter().filter(|r| r.path.ends_with("/experiments")) {
        assert_eq!(r.param("namespace"), None, "{r:?}");
    }
    let create = requests.iter().find(|r| r.method == "POST").expect("create");
    assert_eq!(create.json(), json!({"display_name": "fresh"}));
    let list = &requests[1];
    assert_eq!(
        list.filter(),
        Some(json!({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": "existing"}]}))
    );
    mock.assert_contract();
}

#[tokio::test]
async fn multi_user_experiments_send_the_namespace() {
    let mock = Mock::start(experiment_script(true)).await;
    let client = KfpClient::new(mock.config().with_namespace("team-a")).expect("client");
    client.ensure_experiment("fresh").await.expect("create");
    let requests = mock.api_requests();
    assert_eq!(requests[0].param("namespace").as_deref(), Some("team-a"));
    assert_eq!(requests[1].json(), json!({"display_name": "fresh", "namespace": "team-a"}));
    mock.assert_contract();

    // Without a namespace, multi-user calls fail before anything but healthz is sent.
    let mock = Mock::start(experiment_script(true)).await;
    let err = mock.client().ensure_experiment("fresh").await.expect_err("needs a namespace");
    assert!(matches!(err, KfpError::NamespaceRequired { .. }), "{err:?}");
    assert!(err.to_string().contains("kubeflow.namespace"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(mock.api_requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Runs.

#[tokio::test]
async fn run_create_sends_the_exact_body_with_typed_parameters() {
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/apis/v2beta1/runs") => {
            let mut run = r.json();
            run["run_id"] = json!("r-1");
            run["state"] = json!("PENDING");
            run["created_at"] = json!("2026-11-28T14:00:00Z");
            run["finished_at"] = json!("1970-01-01T00:00:00Z");
            ok(run)
        }
        _ => not_found("route"),
    })
    .await;
    let parameters = json!({"name": "kfp", "times": 3, "scale": 0.5, "excited": true,
                            "tags": ["a", "b"], "config": {"k": "v", "n": [1, 2]}});
    let create = CreateRun {
        display_name: "linear-params 2026-11-28".into(),
        description: Some("from kfops".into()),
        experiment_id: Some("e-1".into()),
        pipeline: RunPipeline::Version { pipeline_id: PID.into(), version_id: Some(VID.into()) },
        parameters: parameters.as_object().cloned().expect("object"),
        service_account: Some("pipeline-runner".into()),
        pipeline_root: None,
    };
    let client = mock.client();
    let run = client.create_run(&create).await.expect("create");
    assert_eq!(run.run_id.as_deref(), Some("r-1"));
    assert_eq!(run.run_state(), RunState::Pending);
    assert_eq!(run.finished_at, None);
    let body = mock.requests()[0].json();
    assert_eq!(
        body,
        json!({"display_name": "linear-params 2026-11-28", "description": "from kfops", "experiment_id": "e-1",
               "pipeline_version_reference": {"pipeline_id": PID, "pipeline_version_id": VID},
               "runtime_config": {"parameters": parameters},
               "service_account": "pipeline-runner"})
    );
    // Types survive: integers stay integers, floats floats, booleans booleans.
    assert!(body["runtime_config"]["parameters"]["times"].is_u64());
    assert!(body["runtime_config"]["parameters"]["scale"].is_f64());
    assert_eq!(client.run_url("r-1"), format!("{}/#/runs/details/r-1", mock.base));
    mock.assert_contract();
}

#[tokio::test]
async fn wait_follows_a_cancellation_to_canceled() {
    let states = ["PENDING", "RUNNING", "CANCELING", "CANCELING", "CANCELED"];
    let polls = AtomicUsize::new(0);
    let mock = Mock::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/runs/r-1") => {
            let i = polls.fetch_add(1, Ordering::SeqCst).min(states.len() - 1);
            ok(run_json("r-1", states[i]))
        }
        ("POST", "/apis/v2beta1/runs/r-1:terminate") => ok(json!({})),
        _ => not_found("route"),
    })
    .await;
    let client = mock.client();
    client.terminate_run("r-1").await.expect("terminate");
    let mut seen = Vec::new();
    let options = WaitOptions { poll_interval: Duration::from_millis(1), timeout: Some(Duration::from_secs(10)) };
    let run = client
        .wait_for_run("r-1", &options, |run: &Run| seen.push((run.run_state(), run.finished_at.clone())))
        .await
        .expect("wait");
    assert_eq!(run.run_state(), RunState::Canceled);
    let order: Vec<RunState> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        order,
        [RunState::Pending, RunState::Running, RunState::Canceling, RunState::Canceling, RunState::Canceled]
    );
    assert!(seen[..4].iter().all(|(_, finished)| finished.is_none()), "epoch finished_at reads as unset");
    assert_eq!(seen[4].1.as_deref(), Some("2026-11-28T14:05:00Z"));
    mock.assert_contract();
}

fn task(name: &str, state: &str, start: &str, end: &str) -> Value {
    json!({"run_id": "r-2", "task_id": format!("t-{name}"), "display_name": name,
           "create_time": "2026-11-28T14:00:02Z", "start_time": start, "end_time": end,
           "state": state, "execution_id": "42", "pod_name": format!("nightly-{name}-123"),
           "executor_detail": {"main_job": format!("nightly-{name}")},
           "child_tasks": [{"pod_name": format!("nightly-{name}-123")}],
           "outputs": {"dataset": {"artifact_ids": ["7", "8"]}}})
}

#[tokio::test]
async fn wait_until_succeeded_exposes_typed_task_details() {
    let polls = AtomicUsize::new(0);
    let mock = Mock::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/runs/r-2") => {
            let mut run = run_json("r-2", "RUNNING");
            if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                run["run_details"] = json!({"pipeline_context_id": "11", "pipeline_run_context_id": "12", "task_details": [
                    task("make-greeting", "SUCCEEDED", "2026-11-28T14:00:03Z", "2026-11-28T14:00:10Z"),
                    task("measure", "RUNNING", "2026-11-28T14:00:11Z", "1970-01-01T00:00:00Z")]});
            } else {
                run = run_json("r-2", "SUCCEEDED");
                let mut failed = task("flaky", "FAILED", "2026-11-28T14:00:11Z", "2026-11-28T14:00:12Z");
                failed["error"] = json!({"code": 2, "message": "exit status 1",
                    "details": [{"@type": "type.googleapis.com/google.rpc.Status", "message": "container exited with 1"}]});
                run["run_details"] = json!({"task_details": [
                    task("make-greeting", "SUCCEEDED", "2026-11-28T14:00:03Z", "2026-11-28T14:00:10Z"),
                    task("measure", "SUCCEEDED", "2026-11-28T14:00:11Z", "2026-11-28T14:00:20Z"),
                    failed,
                    task("skipped-branch", "SKIPPED", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z")]});
            }
            ok(run)
        }
        _ => not_found("route"),
    })
    .await;
    let client = mock.client();
    let mut progress = Vec::new();
    let options = WaitOptions { poll_interval: Duration::from_millis(1), timeout: None };
    let run = client
        .wait_for_run("r-2", &options, |run: &Run| {
            progress.push(run.tasks().iter().map(|t| format!("{}={}", t.name(), t.run_state())).collect::<Vec<_>>())
        })
        .await
        .expect("wait");
    assert_eq!(progress[0], ["make-greeting=SUCCEEDED", "measure=RUNNING"]);
    assert_eq!(run.run_state(), RunState::Succeeded);
    let measure_running = &progress[0][1];
    assert_eq!(measure_running, "measure=RUNNING");

    let backend = KfpBackend::new(mock.client());
    let info = backend.run(&RunId("r-2".into())).await.expect("run info");
    assert_eq!(info.state, RunState::Succeeded);
    assert_eq!(info.web_url.as_deref(), Some(format!("{}/#/runs/details/r-2", mock.base).as_str()));
    assert_eq!(info.parameters.get("times"), Some(&json!(3)));
    let tasks: Vec<String> = info
        .tasks
        .iter()
        .map(|t| {
            let time = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
            let error = t.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
            format!("{} {} {}..{}{error}", t.name, t.state, time(&t.started_at), time(&t.finished_at))
        })
        .collect();
    assert_eq!(
        tasks,
        [
            "make-greeting SUCCEEDED 2026-11-28T14:00:03Z..2026-11-28T14:00:10Z",
            "measure SUCCEEDED 2026-11-28T14:00:11Z..2026-11-28T14:00:20Z",
            "flaky FAILED 2026-11-28T14:00:11Z..2026-11-28T14:00:12Z (container exited with 1)",
            "skipped-branch SKIPPED -..-",
        ]
    );
    let detail = &run.tasks()[0];
    assert_eq!(detail.execution_id.as_deref(), Some("42"));
    assert_eq!(detail.outputs["dataset"].artifact_ids, ["7", "8"]);
    mock.assert_contract();
}

#[tokio::test]
async fn wait_gives_up_after_its_timeout() {
    let mock = Mock::start(|_| ok(run_json("r-3", "PAUSED"))).await;
    let options = WaitOptions { poll_interval: Duration::from_millis(5), timeout: Some(Duration::from_millis(40)) };
    let err = mock.client().wait_for_run("r-3", &options, |_| {}).await.expect_err("paused is not terminal");
    assert!(matches!(&err, KfpError::WaitTimeout { state, .. } if state == "PAUSED"), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn terminate_and_retry_post_colon_verbs_without_body() {
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/apis/v2beta1/runs/r-1:terminate" | "/apis/v2beta1/runs/r-1:retry") => ok(json!({})),
        _ => not_found("route"),
    })
    .await;
    let client = mock.client();
    client.terminate_run("r-1").await.expect("terminate");
    client.retry_run("r-1").await.expect("retry");
    let backend = KfpBackend::new(mock.client());
    backend.terminate(&RunId("r-1".into())).await.expect("terminate via backend");
    let requests = mock.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/apis/v2beta1/runs/r-1:terminate", "/apis/v2beta1/runs/r-1:retry", "/apis/v2beta1/runs/r-1:terminate"]
    );
    assert!(requests.iter().all(|r| r.method == "POST" && r.body.is_empty()));
    assert!(requests.iter().all(|r| r.header("content-length").as_deref() == Some("0")));
    mock.assert_contract();
}

#[tokio::test]
async fn list_runs_pages_with_next_page_token() {
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(true, Some("2.17.0")),
        ("GET", "/apis/v2beta1/runs") => match r.param("page_token").as_deref() {
            None => ok(json!({"runs": [run_json("r-1", "SUCCEEDED"), run_json("r-2", "FAILED")], "total_size": 3,
                              "next_page_token": "eyJwYWdlIjoyfQ=="})),
            Some("eyJwYWdlIjoyfQ==") => ok(json!({"runs": [run_json("r-3", "RUNNING")], "total_size": 3})),
            Some(_) => json_reply(400, json!({"code": 3, "message": "page token does not match"})),
        },
        _ => not_found("route"),
    })
    .await;
    let client = KfpClient::new(mock.config().with_namespace("team-a")).expect("client");
    let filter = Filter::new().one_of("state", &["SUCCEEDED", "FAILED", "RUNNING"]);
    let mut options = ListOptions::new().page_size(2).sort_by("created_at desc").filter(filter);
    let mut ids = Vec::new();
    loop {
        let page = client.list_runs(None, &options).await.expect("page");
        assert_eq!(page.total_size, Some(3));
        ids.extend(page.items.into_iter().filter_map(|r| r.run_id));
        match page.next_page_token {
            Some(token) => options = options.page_token(token),
            None => break,
        }
    }
    assert_eq!(ids, ["r-1", "r-2", "r-3"]);
    let requests = mock.api_requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.param("namespace").as_deref(), Some("team-a"));
        assert_eq!(r.param("sort_by").as_deref(), Some("created_at desc"));
        assert_eq!(
            r.filter(),
            Some(json!({"predicates": [{"operation": "IN", "key": "state",
                                         "string_values": {"values": ["SUCCEEDED", "FAILED", "RUNNING"]}}]}))
        );
    }
    assert_eq!(requests[1].param("page_token").as_deref(), Some("eyJwYWdlIjoyfQ=="));
    mock.assert_contract();
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[tokio::test]
async fn every_error_body_shape_becomes_one_typed_error() {
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(false, Some("2.17.0")),
        ("GET", "/apis/v2beta1/runs/rpc") => json_reply(
            404,
            json!({"code": 5, "message": "Failed to get run: ResourceNotFoundError: Run rpc not found: internal chain",
                   "details": [{"@type": "type.googleapis.com/google.rpc.Status", "code": 5, "message": "Run rpc not found"}]}),
        ),
        ("GET", "/apis/v2beta1/runs/v1") => json_reply(
            400,
            json!({"error": "Invalid input error: bad run id", "code": 3, "message": "Invalid input error: bad run id",
                   "details": [{"@type": "type.googleapis.com/api.Error", "error_message": "bad run id",
                                "error_details": "Invalid input error: bad run id"}]}),
        ),
        ("GET", "/apis/v2beta1/runs/v1plain") => {
            json_reply(400, json!({"error": "Validate failed: bad id", "code": 3}))
        }
        ("GET", "/apis/v2beta1/runs/text") => reply(400, "text/plain; charset=utf-8", "Invalid Pipeline Name\n"),
        ("POST", "/apis/v2beta1/pipelines/upload") => json_reply(
            409,
            json!({"error_message": "Failed to create a pipeline and a pipeline version",
                   "error_details": "Failed to create a pipeline and a pipeline version\ngithub.com/kubeflow/…\n\t/go/src/…"}),
        ),
        ("GET", "/apis/v2beta1/runs") => json_reply(500, json!({"code": 13, "message": "Internal error: db down",
            "details": [{"@type": "type.googleapis.com/google.rpc.Status", "code": 2, "message": "Internal Server Error"}]})),
        _ => not_found("route"),
    })
    .await;
    let client = mock.client();
    let cases = [
        ("rpc", 404, "Run rpc not found", ErrorKind::NotFound),
        ("v1", 400, "bad run id", ErrorKind::InvalidInput),
        ("v1plain", 400, "Validate failed: bad id", ErrorKind::InvalidInput),
        ("text", 400, "Invalid Pipeline Name", ErrorKind::InvalidInput),
    ];
    for (id, status, message, kind) in cases {
        let err = client.get_run(id).await.expect_err(id);
        let KfpError::Api { status: s, message: m, method, path } = &err else { panic!("{err:?}") };
        assert_eq!(
            (*s, m.as_str(), method.as_str(), path.as_str()),
            (status, message, "GET", &*format!("/apis/v2beta1/runs/{id}"))
        );
        assert_eq!(err.kind(), kind);
        assert_eq!(err.to_string(), format!("GET /apis/v2beta1/runs/{id} failed with HTTP {status}: {message}"));
        let core: kfops_core::Error = err.into();
        assert_eq!(core.kind(), kind);
    }
    let err = client.upload_pipeline("pipelineInfo: {name: x}\n", "x", None, None).await.expect_err("409");
    assert_eq!(
        err.to_string(),
        "POST /apis/v2beta1/pipelines/upload failed with HTTP 409: Failed to create a pipeline and a pipeline version"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    // The path in errors has no query string.
    let options = ListOptions::new().filter(Filter::new().equals("display_name", "secret-ish"));
    let err = client.list_runs(Some("e-1"), &options).await.expect_err("500");
    assert_eq!(err.to_string(), "GET /apis/v2beta1/runs failed with HTTP 500: Internal Server Error");
    assert_eq!(err.kind(), ErrorKind::Other);
    mock.assert_contract();
}

#[tokio::test]
async fn auth_proxy_redirects_are_not_authenticated_errors() {
    let mock = Mock::start(|_| Reply {
        status: 302,
        headers: vec![("location", "https://kubeflow.example.com/oauth2/start?rd=%2Fpipeline&state=s3cr3t".into())],
        body: Vec::new(),
    })
    .await;
    let err = mock.client().get_run("r-1").await.expect_err("redirect");
    assert!(matches!(err, KfpError::NotAuthenticated { .. }), "{err:?}");
    let text = err.to_string();
    for expected in [
        "not authenticated",
        "https://kubeflow.example.com/oauth2/start",
        "kubeflow.auth.token,",
        "kubeflow.auth.token_env",
        "kubeflow.auth.token_file",
        "kubeflow.auth.cookie,",
        "kubeflow.auth.cookie_env",
        "kubeflow.auth.cookie_file",
        "KFOPS_KUBEFLOW__AUTH__TOKEN_FILE",
        "KFOPS_KUBEFLOW__AUTH__COOKIE",
    ] {
        assert!(text.contains(expected), "`{expected}` missing in: {text}");
    }
    assert!(!text.contains("s3cr3t"), "{text}");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert_eq!(mock.requests().len(), 1, "redirects are not followed");
    mock.assert_contract();
}

#[tokio::test]
async fn html_sign_in_pages_are_not_authenticated_errors() {
    let page = "<!DOCTYPE html>\n<html><head><title>Log in to Dex</title></head><body><form>…</form></body></html>";
    let mock = Mock::start(move |r| match r.path.as_str() {
        "/apis/v2beta1/runs/html200" => reply(200, "text/html; charset=utf-8", page),
        "/apis/v2beta1/runs/html-untyped" => reply(200, "application/octet-stream", page),
        "/apis/v2beta1/runs/html403" => reply(403, "text/html", "<html><head><title>Sign In</title></head></html>"),
        "/apis/v2beta1/runs/json401" => json_reply(
            401,
            json!({"code": 16, "message": "Unauthenticated: Request header error: there is no user identity header.",
                   "details": [{"@type": "type.googleapis.com/google.rpc.Status", "code": 16,
                                "message": "Request header error: there is no user identity header."}]}),
        ),
        _ => ok(json!({})),
    })
    .await;
    let token = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(token.path(), "t0ken-value\n").expect("write");
    let client =
        KfpClient::new(mock.config().with_auth(KfpAuth::TokenFile(token.path().to_path_buf()))).expect("client");
    for id in ["html200", "html-untyped", "html403"] {
        let err = client.get_run(id).await.expect_err(id);
        assert!(matches!(err, KfpError::NotAuthenticated { .. }), "{id}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("HTML"), "{text}");
        assert!(text.contains("kubeflow.auth.cookie_file"), "{text}");
        assert!(
            text.contains(&format!("credentials in use: a bearer token from the file `{}`", token.path().display()))
        );
        assert!(!text.contains("t0ken-value"));
    }
    let err = client.get_run("html200").await.expect_err("html");
    assert!(err.to_string().contains("Log in to Dex"), "{err}");
    // KFP's own JSON 401 stays an API error (kind Unauthenticated), with the options as a hint.
    let err = client.get_run("json401").await.expect_err("401");
    assert!(matches!(err, KfpError::Api { status: 401, .. }), "{err:?}");
    assert!(err.to_string().contains("there is no user identity header"), "{err}");
    assert!(err.to_string().contains("kubeflow.auth.token_file"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    mock.assert_contract();
}

// ---------------------------------------------------------------------------------------------
// Credentials.

#[tokio::test]
async fn a_token_file_is_read_again_for_every_request() {
    let mock = Mock::start(|r| ok(run_json(r.path.rsplit('/').next().unwrap_or("r"), "RUNNING"))).await;
    let token = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(token.path(), "first-token\n").expect("write");
    let auth = KfpAuth::TokenFile(token.path().to_path_buf());
    let client = KfpClient::new(mock.config().with_auth(auth.clone())).expect("client");
    client.get_run("r-1").await.expect("first");
    std::fs::write(token.path(), "rotated-token").expect("rotate");
    client.get_run("r-2").await.expect("second");
    let headers: Vec<Option<String>> = mock.requests().iter().map(|r| r.header("authorization")).collect();
    assert_eq!(headers, [Some("Bearer first-token".into()), Some("Bearer rotated-token".into())]);
    // Secrets never show in Debug output.
    let debug = format!("{client:?} {auth:?} {:?}", KfpAuth::Token("literal-secret".into()));
    assert!(!debug.contains("rotated-token") && !debug.contains("literal-secret"), "{debug}");

    // A vanished file is a credentials error naming the file, not the token.
    let path = token.path().to_path_buf();
    drop(token);
    let err = client.get_run("r-3").await.expect_err("no file");
    assert!(matches!(err, KfpError::Credentials { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert_eq!(mock.requests().len(), 2, "nothing sent without credentials");
    mock.assert_contract();
}

#[tokio::test]
async fn cookies_tokens_and_environment_sources() {
    let mock = Mock::start(|_| ok(run_json("r-1", "RUNNING"))).await;
    let client = KfpClient::new(mock.config().with_auth(KfpAuth::Cookie("oauth2_proxy_kubeflow=c00kie".into())))
        .expect("client");
    client.get_run("r-1").await.expect("cookie");
    let client = KfpClient::new(mock.config().with_auth(KfpAuth::Token("tok".into()))).expect("client");
    client.get_run("r-1").await.expect("token");
    let requests = mock.requests();
    assert_eq!(requests[0].header("cookie").as_deref(), Some("oauth2_proxy_kubeflow=c00kie"));
    assert_eq!(requests[0].header("authorization"), None);
    assert_eq!(requests[1].header("authorization").as_deref(), Some("Bearer tok"));
    assert_eq!(requests[1].header("cookie"), None);

    let unset = "KFOPS_TEST_KFP_TOKEN_THAT_IS_NOT_SET";
    let client = KfpClient::new(mock.config().with_auth(KfpAuth::TokenEnv(unset.into()))).expect("client");
    let err = client.get_run("r-1").await.expect_err("unset variable");
    assert!(err.to_string().contains(unset), "{err}");
    let client = KfpClient::new(mock.config().with_auth(KfpAuth::Cookie("no-equals-sign".into()))).expect("client");
    let err = client.get_run("r-1").await.expect_err("bad cookie");
    assert!(err.to_string().contains("kubeflow.auth.cookie") && !err.to_string().contains("no-equals-sign"), "{err}");
    assert_eq!(mock.requests().len(), 2);
}

#[test]
fn the_in_cluster_token_is_used_only_when_mounted_or_named() {
    let dir = tempfile::tempdir().expect("temp");
    let mounted = dir.path().join("token");
    assert_eq!(KfpAuth::detect_in_cluster(None, &mounted), KfpAuth::None);
    std::fs::write(&mounted, "t").expect("write");
    assert_eq!(KfpAuth::detect_in_cluster(None, &mounted), KfpAuth::TokenFile(mounted.clone()));
    assert_eq!(
        KfpAuth::detect_in_cluster(Some("/custom/token".into()), &mounted),
        KfpAuth::TokenFile("/custom/token".into())
    );
    assert_eq!(KfpAuth::detect_in_cluster(Some("".into()), &mounted), KfpAuth::TokenFile(mounted));
}

// ---------------------------------------------------------------------------------------------
// Retries.

#[tokio::test]
async fn transient_503_is_retried_until_success() {
    let calls = AtomicUsize::new(0);
    let mock = Mock::start(move |_| {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
            reply(503, "text/plain", "upstream connect error or disconnect/reset before headers")
        } else {
            ok(run_json("r-1", "RUNNING"))
        }
    })
    .await;
    let run = mock.client().get_run("r-1").await.expect("third attempt succeeds");
    assert_eq!(run.run_id.as_deref(), Some("r-1"));
    assert_eq!(mock.requests().len(), 3);

    // Attempts are bounded; the last error is returned.
    let mock = Mock::start(|_| reply(503, "text/plain", "no healthy upstream")).await;
    let err = mock.client().get_run("r-1").await.expect_err("always 503");
    assert_eq!(err.to_string(), "GET /apis/v2beta1/runs/r-1 failed with HTTP 503: no healthy upstream");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(mock.requests().len(), 4);
    mock.assert_contract();
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let calls = AtomicUsize::new(0);
    let mock = Mock::start(move |_| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply {
                status: 429,
                headers: vec![("retry-after", "1".into()), ("content-type", "text/plain".into())],
                body: b"slow down".to_vec(),
            }
        } else {
            ok(run_json("r-1", "RUNNING"))
        }
    })
    .await;
    let started = Instant::now();
    mock.client().get_run("r-1").await.expect("second attempt");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "Retry-After: 1 honoured (waited {waited:?})");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn client_errors_and_non_idempotent_failures_are_not_retried() {
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/runs/bad") => json_reply(400, json!({"code": 3, "message": "bad"})),
        ("GET", "/apis/v2beta1/runs/gone") => not_found("Run gone"),
        ("POST", "/apis/v2beta1/runs") => json_reply(500, json!({"code": 13, "message": "Internal error"})),
        ("POST", "/apis/v2beta1/runs/busy:terminate") => reply(502, "text/html", "<html>Bad Gateway</html>"),
        _ => ok(json!({})),
    })
    .await;
    let client = mock.client();
    assert_eq!(client.get_run("bad").await.expect_err("400").status(), Some(400));
    assert_eq!(client.get_run("gone").await.expect_err("404").kind(), ErrorKind::NotFound);
    let create = CreateRun {
        display_name: "r".into(),
        description: None,
        experiment_id: None,
        pipeline: RunPipeline::Version { pipeline_id: PID.into(), version_id: None },
        parameters: serde_json::Map::new(),
        service_account: None,
        pipeline_root: None,
    };
    let err = client.create_run(&create).await.expect_err("500");
    assert_eq!(err.status(), Some(500));
    let count = |path: &str| mock.requests().iter().filter(|r| r.path == path).count();
    assert_eq!(count("/apis/v2beta1/runs/bad"), 1);
    assert_eq!(count("/apis/v2beta1/runs/gone"), 1);
    assert_eq!(count("/apis/v2beta1/runs"), 1, "a POST answered 500 may have been processed");
    // A 502 from a proxy may come after the API server acted: a POST is not repeated.
    let err = client.terminate_run("busy").await.expect_err("502");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("HTML page"), "{err}");
    assert_eq!(count("/apis/v2beta1/runs/busy:terminate"), 1);
    mock.assert_contract();
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let config = KfpConfig::new(format!("http://127.0.0.1:{port}")).with_auth(KfpAuth::None).with_retry(fast_retry());
    let client = KfpClient::new(config).expect("client");
    let err = client.get_run("r-1").await.expect_err("refused");
    assert!(matches!(err, KfpError::Transport { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "GET /apis/v2beta1/runs/r-1: cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

// ---------------------------------------------------------------------------------------------
// Links and endpoints.

#[test]
fn web_links_for_standalone_and_full_kubeflow() {
    let client = |endpoint: &str, ui: Option<&str>| {
        let mut config = KfpConfig::new(endpoint).with_auth(KfpAuth::None);
        if let Some(ui) = ui {
            config = config.with_ui_url(ui);
        }
        KfpClient::new(config).expect("client")
    };
    let standalone = client("http://localhost:3000", None);
    assert_eq!(standalone.run_url("r1"), "http://localhost:3000/#/runs/details/r1");
    let full = client("https://kubeflow.example.com/pipeline/", None);
    assert_eq!(full.endpoint(), "https://kubeflow.example.com/pipeline");
    assert_eq!(full.run_url("r1"), "https://kubeflow.example.com/pipeline/#/runs/details/r1");
    assert_eq!(
        full.pipeline_version_url("p1", "v1"),
        "https://kubeflow.example.com/pipeline/#/pipelines/details/p1/version/v1"
    );
    assert_eq!(full.experiment_url("e1"), "https://kubeflow.example.com/pipeline/#/experiments/details/e1");
    let pasted = client("https://kubeflow.example.com/pipeline/apis/v2beta1/", None);
    assert_eq!(pasted.endpoint(), "https://kubeflow.example.com/pipeline");
    let in_cluster = client("http://ml-pipeline.kubeflow:8888", Some("https://kubeflow.example.com/_/pipeline/#/"));
    assert_eq!(in_cluster.run_url("r1"), "https://kubeflow.example.com/_/pipeline/#/runs/details/r1");
    assert_eq!(
        client("http://localhost:3000", Some("http://ui:8080//")).run_url("r1"),
        "http://ui:8080/#/runs/details/r1"
    );

    for (bad, why) in [
        ("localhost:3000", "scheme"),
        ("ftp://host", "http or https"),
        ("https://user:pw@host/pipeline", "credentials in the URL"),
        ("https://host/pipeline?x=1", "query"),
    ] {
        let err = KfpClient::new(KfpConfig::new(bad)).expect_err(bad);
        assert!(err.to_string().contains(why), "{bad}: {err}");
        assert!(!err.to_string().contains("pw@") || why != "credentials in the URL" || err.to_string().contains(bad));
    }
}

// ---------------------------------------------------------------------------------------------
// The PipelineBackend.

#[tokio::test]
async fn the_backend_publishes_starts_and_reads_runs() {
    let mock = Mock::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/v2beta1/healthz") => healthz(true, Some("2.16.1")),
        ("GET", "/apis/v2beta1/pipelines/names/platform-spec-importer") => ok(pipeline_json()),
        ("GET", p) if p.ends_with("/versions") => {
            ok(json!({"pipeline_versions": [version_json(VID, "git-0123456789ab", "…")]}))
        }
        ("GET", "/apis/v2beta1/experiments") => ok(json!({})),
        ("POST", "/apis/v2beta1/experiments") => {
            ok(json!({"experiment_id": "e-9", "display_name": "nightly", "namespace": "team-a"}))
        }
        ("POST", "/apis/v2beta1/runs") => {
            let mut run = r.json();
            run["run_id"] = json!("r-9");
            run["state"] = json!("PENDING");
            ok(run)
        }
        _ => not_found("route"),
    })
    .await;
    let backend = KfpBackend::new(KfpClient::new(mock.config().with_namespace("team-a")).expect("client"));
    assert_eq!(backend.name(), "kubeflow");
    let compiled = CompiledPipeline {
        name: "platform-spec-importer".into(),
        description: None,
        spec_yaml: example("p4_platform_spec_importer.yaml"),
    };
    let version =
        backend.publish(&compiled, &VersionName("git-0123456789ab".into()), &source()).await.expect("publish");
    assert!(!version.created);
    assert_eq!(version.version_id, VID);
    assert_eq!(
        version.web_url.as_deref(),
        Some(format!("{}/#/pipelines/details/{PID}/version/{VID}", mock.base).as_str())
    );

    let mut parameters = std::collections::BTreeMap::new();
    parameters.insert("uri".to_owned(), json!("gs://bucket/lines.txt"));
    let handle = backend
        .start_run(RunRequest {
            display_name: "nightly 1".into(),
            pipeline: PipelineSource::Version { pipeline_id: PID.into(), version_id: VID.into() },
            experiment: "nightly".into(),
            parameters: parameters.clone(),
            service_account: None,
        })
        .await
        .expect("start");
    assert_eq!(handle.id, RunId("r-9".into()));
    assert_eq!(handle.web_url.as_deref(), Some(format!("{}/#/runs/details/r-9", mock.base).as_str()));

    // Inline: the multi-document YAML goes as {pipeline_spec, platform_spec}.
    backend
        .start_run(RunRequest {
            display_name: "inline".into(),
            pipeline: PipelineSource::Inline(compiled),
            experiment: "nightly".into(),
            parameters,
            service_account: Some("runner".into()),
        })
        .await
        .expect("inline");
    let runs: Vec<Value> =
        mock.requests().iter().filter(|r| r.is("POST", "/apis/v2beta1/runs")).map(Recorded::json).collect();
    assert_eq!(runs[0]["experiment_id"], "e-9");
    assert_eq!(runs[0]["runtime_config"], json!({"parameters": {"uri": "gs://bucket/lines.txt"}}));
    assert!(runs[0].get("pipeline_spec").is_none());
    let spec = &runs[1]["pipeline_spec"];
    assert_eq!(spec["pipeline_spec"]["pipelineInfo"]["name"], "platform-spec-importer");
    assert!(spec["platform_spec"]["platforms"]["kubernetes"].is_object(), "{spec}");
    assert!(runs[1].get("pipeline_version_reference").is_none());
    assert_eq!(runs[1]["service_account"], "runner");
    let experiments: Vec<Recorded> =
        mock.requests().into_iter().filter(|r| r.path == "/apis/v2beta1/experiments").collect();
    assert!(
        experiments.iter().filter(|r| r.method == "GET").all(|r| r.param("namespace").as_deref() == Some("team-a"))
    );
    mock.assert_contract();

    // Errors cross the trait boundary with their kind.
    let mock = Mock::start(|_| not_found("Run r-0")).await;
    let backend = KfpBackend::new(mock.client());
    let err = backend.run(&RunId("r-0".into())).await.expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("Run r-0 not found"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The swagger checker itself.

#[test]
fn the_checker_catches_contract_violations() {
    let c = checker();
    assert!(c.operation_count() > 30, "{}", c.operation_count());
    assert_eq!(c.operation_id("POST", "/apis/v2beta1/runs/r1:terminate"), Some("RunService_TerminateRun"));
    assert_eq!(c.operation_id("GET", "/apis/v2beta1/runs/r1"), Some("RunService_GetRun"));
    assert_eq!(c.operation_id("POST", "/apis/v2beta1/pipelines/upload"), Some("UploadPipeline"));

    let messages = |violations: Vec<kfops_kubeflow::kfp::swagger::Violation>| -> Vec<String> {
        violations.iter().map(ToString::to_string).collect()
    };
    let valid = json!({"display_name": "r", "experiment_id": "e",
                       "pipeline_version_reference": {"pipeline_id": "p"},
                       "runtime_config": {"parameters": {"any": {"nested": [1, "x", null]}}},
                       "pipeline_spec": {"anything": {"goes": true}}});
    assert_eq!(messages(c.check_json("POST", "/apis/v2beta1/runs", Some(&valid))), Vec::<String>::new());

    let cases: Vec<(&str, &str, Option<Value>, &str)> = vec![
        ("POST", "/apis/v2beta1/runs", Some(json!({"display_name": "r", "bogus": 1})), "body.bogus: unknown field"),
        (
            "POST",
            "/apis/v2beta1/runs",
            Some(json!({"pipeline_version_reference": {"pipeline_id": "p", "version": "v"}})),
            "body.pipeline_version_reference.version: unknown field",
        ),
        ("POST", "/apis/v2beta1/runs", Some(json!({"displayName": "r"})), "(the proto name is `display_name`)"),
        (
            "POST",
            "/apis/v2beta1/runs",
            Some(json!({"display_name": 3})),
            "body.display_name: expected a string, got a number",
        ),
        ("POST", "/apis/v2beta1/runs", Some(json!({"state": "DONE"})), "body.state: \"DONE\" is not one of"),
        (
            "POST",
            "/apis/v2beta1/runs",
            Some(json!({"created_at": "yesterday"})),
            "body.created_at: `yesterday` is not a valid string (date-time)",
        ),
        (
            "POST",
            "/apis/v2beta1/runs",
            Some(json!({"run_details": {"pipeline_context_id": 5}})),
            "64-bit integers are JSON strings",
        ),
        (
            "POST",
            "/apis/v2beta1/runs",
            Some(json!({"runtime_config": []})),
            "body.runtime_config: expected an object, got an array",
        ),
        ("GET", "/apis/v2beta1/runs?bogus=1", None, "query.bogus: unknown query parameter"),
        ("GET", "/apis/v2beta1/runs?page_size=ten", None, "query.page_size: `ten` is not a valid integer (int32)"),
        ("GET", "/apis/v2beta1/runs?page_size=1&page_size=2", None, "query.page_size: given more than once"),
        (
            "GET",
            "/apis/v2beta1/experiments?filter=%7B%22predicates%22%3A%5B%7B%22op%22%3A1%7D%5D%7D",
            None,
            "query.filter.predicates[0].op: unknown field",
        ),
        ("GET", "/apis/v2beta1/nothing", None, "path: no operation of the swagger matches `/apis/v2beta1/nothing`"),
        (
            "GET",
            "/apis/v2beta1/runs/r1:terminate",
            None,
            "method: method GET is not declared for `/apis/v2beta1/runs/{run_id}:terminate`",
        ),
        ("POST", "/apis/v2beta1/runs/r1:stop", None, "no operation of the swagger matches"),
        (
            "POST",
            "/apis/v2beta1/runs/r1:terminate",
            Some(json!({"force": true})),
            "body: the operation takes no request body",
        ),
        ("POST", "/apis/v2beta1/experiments", None, "body: the required request body is missing"),
    ];
    for (method, path, body, expected) in cases {
        let found = messages(c.check_json(method, path, body.as_ref()));
        assert!(found.iter().any(|m| m.contains(expected)), "{method} {path}: expected `{expected}` in {found:#?}");
    }

    // Multipart: the declared `uploadfile` part with a filename; no other parts; no unknown query.
    let body =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"uploadfile\"; filename=\"p.yaml\"\r\n\r\nx: 1\r\n--XyZ--\r\n";
    let upload = |query: &str, content_type: &str, body: &[u8]| {
        messages(c.check(&HttpRequest {
            method: "POST",
            path: "/apis/v2beta1/pipelines/upload",
            query: Some(query),
            content_type: Some(content_type),
            body,
        }))
    };
    assert_eq!(upload("name=p&namespace=team-a", "multipart/form-data; boundary=XyZ", body), Vec::<String>::new());
    let found = upload("name=p&pipelineid=x", "multipart/form-data; boundary=XyZ", body);
    assert!(found.iter().any(|m| m.contains("query.pipelineid: unknown query parameter")), "{found:?}");
    let found = upload("name=p", "application/json", b"{}");
    assert!(found.iter().any(|m| m.contains("is not multipart/form-data")), "{found:?}");
    let other =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.yaml\"\r\n\r\nx: 1\r\n--XyZ--\r\n";
    let found = upload("", "multipart/form-data; boundary=XyZ", other);
    assert!(found.iter().any(|m| m.contains("form.file: unknown form field")), "{found:?}");
    assert!(found.iter().any(|m| m.contains("form.uploadfile: required form field is missing")), "{found:?}");
    let nameless = b"--XyZ\r\nContent-Disposition: form-data; name=\"uploadfile\"\r\n\r\nx: 1\r\n--XyZ--\r\n";
    let found = upload("", "multipart/form-data; boundary=XyZ", nameless);
    assert!(found.iter().any(|m| m.contains("a file part needs a filename")), "{found:?}");
}
