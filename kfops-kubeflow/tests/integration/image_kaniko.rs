//! The Kaniko build Job: its manifest checked against the Kubernetes OpenAPI
//! types, and the runner exercised against a `tower-test` mock API server.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::batch::v1::Job;
use kfops_kubeflow::error::KanikoError;
use kfops_kubeflow::image::kaniko::{KANIKO_IMAGE, KanikoJob, KanikoRunner, job_manifest, job_name};
use kube::client::Body;
use serde_json::{Value, json};

const NS: &str = "kubeflow";
const NAME: &str = "kaniko-team-trainer-ctx-01234567";
const JOB_PATH: &str = "/apis/batch/v1/namespaces/kubeflow/jobs/kaniko-team-trainer-ctx-01234567";

fn sample() -> KanikoJob {
    KanikoJob {
        image: "team/trainer".into(),
        name: job_name("team/trainer", "ctx-0123456789abcdef"),
        namespace: NS.into(),
        image_reference: "registry.local:5000/team/trainer:ctx-0123456789abcdef".into(),
        context_url: "s3://image-build-artifacts/trainer-ctx-0123.tar.gz".into(),
        s3_endpoint: "http://minio-service.kubeflow:9000".into(),
        s3_region: "us-east-1".into(),
        credentials_secret: "kfops-build-s3".into(),
        registry_secret: Some("regcred".into()),
        insecure: true,
        build_args: BTreeMap::from([("PY".into(), "3.12".into()), ("BASE".into(), "slim".into())]),
        labels: BTreeMap::from([("team".into(), "ml".into())]),
        active_deadline_seconds: 1800,
    }
}

// ---- the manifest ----

#[test]
fn job_names_are_dns_labels() {
    assert_eq!(job_name("team/trainer", "ctx-0123456789abcdef"), NAME);
    assert_eq!(job_name("My_Image..X", "ABC"), "kaniko-my-image-x-abc");
    let long = job_name(&"very-long-image-name/".repeat(10), "0123456789abcdef0123");
    assert!(long.len() <= 63, "{long}");
    assert!(long.ends_with("-0123456789ab"), "{long}");
    assert!(!long.contains("--") && long.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
}

#[test]
fn manifest_round_trips_through_the_openapi_types() {
    let json = serde_json::to_value(job_manifest(&sample())).unwrap();
    // k8s-openapi ignores unknown fields, so a dropped field shows as a difference.
    let typed: Job = serde_json::from_value(json.clone()).expect("a valid batch/v1 Job");
    assert_eq!(serde_json::to_value(&typed).unwrap(), json);
    assert_eq!(json["apiVersion"], "batch/v1");
    assert_eq!(json["kind"], "Job");
    assert_eq!(json["metadata"]["name"], NAME);
    assert_eq!(json["metadata"]["namespace"], NS);
    let labels = json!({"app.kubernetes.io/managed-by": "kfops", "kfops.dev/image": "team-trainer", "team": "ml"});
    assert_eq!(json["metadata"]["labels"], labels);
    let spec = &json["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["ttlSecondsAfterFinished"], 600);
    assert_eq!(spec["activeDeadlineSeconds"], 1800);
    assert_eq!(spec["template"]["metadata"]["labels"], labels);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["volumes"], json!([{"name": "docker-config", "secret": {"secretName": "regcred"}}]));
    let c = &pod["containers"][0];
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    assert_eq!(c["name"], "kaniko");
    assert_eq!(c["image"], KANIKO_IMAGE);
    assert_eq!(KANIKO_IMAGE, "gcr.io/kaniko-project/executor:v1.23.2");
    assert_eq!(
        c["args"],
        json!([
            "--dockerfile=Dockerfile",
            "--context=s3://image-build-artifacts/trainer-ctx-0123.tar.gz",
            "--destination=registry.local:5000/team/trainer:ctx-0123456789abcdef",
            "--build-arg=BASE=slim",
            "--build-arg=PY=3.12",
            "--insecure",
            "--skip-tls-verify",
        ])
    );
    assert_eq!(c["volumeMounts"], json!([{"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": true}]));
    let secret = |key: &str| json!({"secretKeyRef": {"name": "kfops-build-s3", "key": key, "optional": false}});
    assert_eq!(
        c["env"],
        json!([
            {"name": "AWS_REGION", "value": "us-east-1"},
            {"name": "S3_ENDPOINT", "value": "http://minio-service.kubeflow:9000"},
            {"name": "S3_FORCE_PATH_STYLE", "value": "true"},
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": secret("AWS_ACCESS_KEY_ID")},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": secret("AWS_SECRET_ACCESS_KEY")},
        ])
    );
    // No credential-looking variable carries a literal value.
    for env in c["env"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        if ["KEY", "SECRET", "PASSWORD", "TOKEN"].iter().any(|w| name.contains(w)) {
            assert!(env.get("value").is_none(), "{name} has a literal value");
        }
    }
}

#[test]
fn secure_manifest_without_registry_secret() {
    let job = KanikoJob { insecure: false, registry_secret: None, build_args: BTreeMap::new(), ..sample() };
    let json = serde_json::to_value(job_manifest(&job)).unwrap();
    let typed: Job = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), json);
    let c = &json["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"].as_array().unwrap().len(), 3);
    assert!(c.get("volumeMounts").is_none());
    assert!(json["spec"]["template"]["spec"].get("volumes").is_none());
}

// ---- the runner against a mock API server ----

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One request the mock server saw: `METHOD path[?query]` and the JSON body (or null).
#[derive(Debug)]
struct Seen {
    line: String,
    body: Value,
}

fn job_json(status: Value) -> Value {
    let mut job = serde_json::to_value(job_manifest(&sample())).unwrap();
    job["status"] = status;
    job
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// Answers every request with `respond(line)` until the client is gone.
fn serve(
    mut handle: Handle,
    mut respond: impl FnMut(&str) -> (u16, String) + Send + 'static,
) -> tokio::task::JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            // kube leaves an empty pair (`?&a=b`) in its query strings; compare the pairs.
            let query: Vec<&str> = req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()).collect();
            let line = if query.is_empty() {
                format!("{} {}", req.method(), req.uri().path())
            } else {
                format!("{} {}?{}", req.method(), req.uri().path(), query.join("&"))
            };
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let (status, text) = respond(&line);
            seen.push(Seen { line, body });
            send.send_response(Response::builder().status(status).body(Body::from(text.into_bytes())).unwrap());
        }
        seen
    })
}

fn runner() -> (KanikoRunner, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    (KanikoRunner::new(client).with_poll_interval(Duration::from_millis(5)), handle)
}

/// Standard answers; GETs of the Job answer with the next of `job_statuses` (the last repeats).
fn api(job_statuses: Vec<Value>) -> impl FnMut(&str) -> (u16, String) + Send + 'static {
    let mut gets = 0;
    move |line| {
        let ok = |v: Value| (200, v.to_string());
        match line {
            "POST /apis/batch/v1/namespaces/kubeflow/jobs" => (201, job_json(Value::Null).to_string()),
            l if l == format!("GET {JOB_PATH}") => {
                let s = job_statuses[gets.min(job_statuses.len() - 1)].clone();
                gets += 1;
                ok(job_json(s))
            }
            l if l == format!("DELETE {JOB_PATH}") => ok(job_json(Value::Null)),
            l if l.starts_with("GET /api/v1/namespaces/kubeflow/pods?") => ok(json!({
                "kind": "PodList", "apiVersion": "v1", "metadata": {},
                "items": [{"metadata": {"name": "kaniko-team-trainer-ctx-01234567-x7k2p", "namespace": NS,
                           "creationTimestamp": "2025-01-01T00:00:00Z"}}]})),
            l if l.starts_with("GET /api/v1/namespaces/kubeflow/pods/") => (
                200,
                "INFO Retrieving image manifest python:3.12\nerror building image: RUN pip install: exit 1\n".into(),
            ),
            other => panic!("unexpected request {other}"),
        }
    }
}

fn lines(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.line.as_str()).collect()
}

fn assert_deleted_in_background(seen: &[Seen]) {
    let last = seen.last().expect("requests");
    assert_eq!(last.line, format!("DELETE {JOB_PATH}"));
    assert_eq!(last.body, json!({"propagationPolicy": "Background"}));
}

async fn finish(server: tokio::task::JoinHandle<Vec<Seen>>) -> Vec<Seen> {
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("mock server still waiting").unwrap()
}

#[tokio::test]
async fn successful_build_creates_polls_and_deletes() {
    let (runner, handle) = runner();
    let server = serve(handle, api(vec![json!({"active": 1}), json!({"succeeded": 1})]));
    let mut log = Vec::new();
    let result = runner.run(&sample(), Duration::from_secs(10), |l| log.push(l.to_string())).await;
    drop(runner);
    let seen = finish(server).await;
    result.expect("build succeeds");
    assert_eq!(
        lines(&seen),
        [
            "POST /apis/batch/v1/namespaces/kubeflow/jobs".to_string(),
            format!("GET {JOB_PATH}"),
            format!("GET {JOB_PATH}"),
            format!("DELETE {JOB_PATH}"),
        ]
    );
    assert_eq!(seen[0].body, serde_json::to_value(job_manifest(&sample())).unwrap());
    assert_deleted_in_background(&seen);
    assert!(log.iter().any(|l| l.contains("created Kaniko Job kubeflow/kaniko-team-trainer-ctx-01234567")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("pushed registry.local:5000/team/trainer")), "{log:?}");
}

#[tokio::test]
async fn failed_build_reports_the_log_tail_and_deletes() {
    let (runner, handle) = runner();
    let failed = json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]});
    let server = serve(handle, api(vec![failed]));
    let mut log = Vec::new();
    let result = runner.run(&sample(), Duration::from_secs(10), |l| log.push(l.to_string())).await;
    drop(runner);
    let seen = finish(server).await;
    assert_eq!(
        lines(&seen),
        [
            "POST /apis/batch/v1/namespaces/kubeflow/jobs".to_string(),
            format!("GET {JOB_PATH}"),
            "GET /api/v1/namespaces/kubeflow/pods?labelSelector=job-name%3Dkaniko-team-trainer-ctx-01234567".to_string(),
            "GET /api/v1/namespaces/kubeflow/pods/kaniko-team-trainer-ctx-01234567-x7k2p/log?container=kaniko&tailLines=50"
                .to_string(),
            format!("DELETE {JOB_PATH}"),
        ]
    );
    assert_deleted_in_background(&seen);
    let err = result.expect_err("build fails");
    let message = err.to_string();
    match &err {
        KanikoError::BuildFailed { image, reason, log_tail } => {
            assert_eq!(image, "team/trainer");
            assert!(reason.contains("BackoffLimitExceeded"), "{reason}");
            assert!(log_tail.ends_with("error building image: RUN pip install: exit 1"), "{log_tail}");
        }
        other => panic!("expected BuildFailed, got {other:?}"),
    }
    assert!(message.contains("building image `team/trainer` failed"), "{message}");
    assert!(log.iter().any(|l| l.contains("RUN pip install")), "{log:?}");
}

#[tokio::test]
async fn timeout_deletes_the_job_and_says_so() {
    let (runner, handle) = runner();
    let server = serve(handle, api(vec![json!({"active": 1, "ready": 1})]));
    let result = runner.run(&sample(), Duration::from_millis(60), |_| {}).await;
    drop(runner);
    let seen = finish(server).await;
    let l = lines(&seen);
    assert_eq!(l[0], "POST /apis/batch/v1/namespaces/kubeflow/jobs");
    let gets = &l[1..l.len() - 1];
    assert!(gets.len() >= 2, "{l:?}");
    assert!(gets.iter().all(|g| *g == format!("GET {JOB_PATH}")), "{l:?}");
    assert_deleted_in_background(&seen);
    let err = result.expect_err("build times out");
    assert!(matches!(&err, KanikoError::Timeout { after, .. } if *after == Duration::from_millis(60)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("timed out after 60ms"), "{message}");
    assert!(message.contains("1 pod(s) active, 1 ready"), "{message}");
    assert_eq!(err.kind(), kfops_core::ErrorKind::Timeout);
}

#[tokio::test]
async fn existing_job_is_a_clear_conflict_and_left_alone() {
    let (runner, handle) = runner();
    let server = serve(handle, |line| {
        assert_eq!(line, "POST /apis/batch/v1/namespaces/kubeflow/jobs");
        let msg = format!("jobs.batch \"{NAME}\" already exists");
        (409, status_json(409, "AlreadyExists", &msg).to_string())
    });
    let result = runner.run(&sample(), Duration::from_secs(10), |_| {}).await;
    drop(runner);
    let seen = finish(server).await;
    // The Job belongs to another build: it is not deleted.
    assert_eq!(lines(&seen), ["POST /apis/batch/v1/namespaces/kubeflow/jobs"]);
    let err = result.expect_err("conflict");
    assert!(matches!(&err, KanikoError::AlreadyExists { name, .. } if name == NAME), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("already exists"), "{message}");
    assert!(message.contains("kubectl delete job -n kubeflow kaniko-team-trainer-ctx-01234567"), "{message}");
    assert_eq!(err.kind(), kfops_core::ErrorKind::Conflict);
}

#[tokio::test]
async fn cancelled_build_still_deletes_the_job() {
    let (runner, handle) = runner();
    let server = serve(handle, api(vec![json!({"active": 1})]));
    let cancelled =
        tokio::time::timeout(Duration::from_millis(40), runner.run(&sample(), Duration::from_secs(60), |_| {})).await;
    assert!(cancelled.is_err(), "the build should still be running");
    drop(runner);
    let seen = finish(server).await;
    assert_eq!(seen[0].line, "POST /apis/batch/v1/namespaces/kubeflow/jobs");
    assert_deleted_in_background(&seen);
}

#[tokio::test]
async fn invalid_job_sends_nothing() {
    let (runner, handle) = runner();
    let server = serve(handle, |line| panic!("unexpected request {line}"));
    let job = KanikoJob { context_url: "/tmp/context.tar.gz".into(), ..sample() };
    let err = runner.run(&job, Duration::from_secs(1), |_| {}).await.expect_err("invalid");
    drop(runner);
    assert!(finish(server).await.is_empty());
    assert!(matches!(err, KanikoError::InvalidJob { .. }), "{err:?}");
    assert!(err.to_string().contains("s3://bucket/key"), "{err}");
}

/// The whole `kaniko` builder: context assembled and hashed, uploaded to a real S3 server (moto),
/// a Job created, polled and deleted through the mock Kubernetes API, and the context removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaniko_builder_uploads_the_context_runs_the_job_and_cleans_up() {
    use kfops_core::ImageBuilder;
    use kfops_core::image::ImageSpec;
    use kfops_core::progress::NoProgress;
    use kfops_kubeflow::image::builder::{ContextImageBuilder, KanikoBackend};
    use kfops_kubeflow::image::registry::RegistryClient;
    use kfops_kubeflow::image::s3::{S3Client, S3Config};
    use kfops_kubeflow::image::testregistry::{RegistryAuth, TestRegistry};

    let (moto, access, secret) = crate::image_s3::start_moto().await;
    let s3 = S3Client::new(S3Config::new(moto.endpoint.clone(), access.clone(), secret.clone())).expect("s3");
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let runner = KanikoRunner::new(kube::Client::new(svc, "default")).with_poll_interval(Duration::from_millis(5));
    let server = serve(handle, move |line| {
        let ok = |v: Value| (200, v.to_string());
        if line == "POST /apis/batch/v1/namespaces/builds/jobs" {
            (
                201,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "namespace": "builds"}})
                    .to_string(),
            )
        } else if line.starts_with("GET /apis/batch/v1/namespaces/builds/jobs/")
            || line.starts_with("DELETE /apis/batch/v1/namespaces/builds/jobs/")
        {
            ok(
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "namespace": "builds"}, "status": {"succeeded": 1}}),
            )
        } else {
            (404, status_json(404, "NotFound", &format!("unexpected request {line}")).to_string())
        }
    });
    let backend = KanikoBackend {
        runner,
        s3: S3Client::new(S3Config::new(moto.endpoint.clone(), access.clone(), secret.clone())).expect("s3"),
        bucket: "contexts".into(),
        namespace: "builds".into(),
        s3_endpoint: "http://minio-service.kubeflow:9000".into(),
        s3_region: "us-east-1".into(),
        credentials_secret: "kfops-s3".into(),
        registry_secret: Some("regcred".into()),
        timeout: Duration::from_secs(10),
    };
    let project = tempfile::tempdir().expect("project");
    std::fs::create_dir_all(project.path().join("images/trainer")).expect("mkdir");
    std::fs::write(project.path().join("images/trainer/Dockerfile"), "FROM scratch\n").expect("write");
    let registry = TestRegistry::start(RegistryAuth::None).expect("registry");
    let builder = ContextImageBuilder::with_backend(
        backend,
        project.path().to_owned(),
        Default::default(),
        RegistryClient::new(true, None).expect("registry client"),
    );
    let spec = ImageSpec {
        name: "trainer".into(),
        dockerfile_folder: "images/trainer".into(),
        other_folders: vec![],
        registry: format!("{}/team", registry.host()),
        insecure: true,
    };
    let built = builder.build(&[spec], &NoProgress).await.expect("builds");
    drop(builder);
    let seen = finish(server).await;
    assert!(built[0].built && built[0].reference.contains("/team/trainer:ctx-"), "{built:?}");
    assert_eq!(seen[0].line, "POST /apis/batch/v1/namespaces/builds/jobs");
    let args: Vec<String> =
        serde_json::from_value(seen[0].body["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .expect("args");
    let tag = built[0].reference.rsplit_once(':').map(|(_, t)| t.to_owned()).expect("tag");
    assert!(args.contains(&format!("--context=s3://contexts/kfops/contexts/trainer-{tag}.tar.gz")), "{args:?}");
    assert!(args.contains(&format!("--destination={}", built[0].reference)), "{args:?}");
    assert!(args.contains(&"--insecure".to_owned()), "{args:?}");
    assert!(seen.last().is_some_and(|s| s.line.starts_with("DELETE ")), "the Job was deleted");
    // The uploaded context was removed after the build.
    let gone = s3.get_object("contexts", &format!("kfops/contexts/trainer-{tag}.tar.gz")).await;
    assert!(gone.is_err(), "context removed");
}
