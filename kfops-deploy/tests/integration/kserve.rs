//! The KServe rollout against a stateful fake API server (tower-test mock).
//!
//! The fake keeps one InferenceService and plays KServe's Knative bookkeeping:
//! a changed predictor template creates a revision; whether it becomes ready
//! depends on its storage URI (`…broken…` fails to load, `…slow…` never gets
//! ready, `…reject…` is refused by the admission webhook with a 422, anything
//! else is ready after two reads, while the stale top-level `Ready` stays
//! `True`); traffic follows `canaryTrafficPercent` and
//! `latestRolledoutRevision` like KServe's ksvc reconciler. Every apply body is
//! validated against the CRD.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::{Request, Response};
use kfops_core::deploy::{DeployOutcome, DeployRequest, Environment};
use kfops_core::pipeline::RunId;
use kfops_core::scm::{PrRef, RepoRef, Sha};
use kfops_core::{DeployTarget, ErrorKind, Progress, ProgressEvent};
use kfops_deploy::CheckError;
use kfops_deploy::check::{CheckReport, CheckSettings, CheckTarget, InferenceCheck, Protocol};
use kfops_deploy::kserve::{DeploymentMode, KserveSettings, KserveTarget};
use kfops_deploy::manifest::{build, validate};
use kfops_deploy::storage::TemplateVars;
use kube::client::Body;
use serde_json::{Value, json};

const NAME: &str = "iris";
const NS: &str = "staging";
const PATH: &str = "/apis/serving.kserve.io/v1beta1/namespaces/staging/inferenceservices/iris";
const V1: &str = "s3://trained-models/run-1/";
const V2: &str = "s3://trained-models/run-2/";

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One request the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    query: String,
    body: Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Ready,
    Broken,
    Slow,
    Reject,
    /// The revision fails (`RevisionFailed`) while the model status still says `InProgress`.
    Crash,
}

/// The `fieldsV1` set of everything in `value` (what one manager applying `value` owns).
fn fields_of(value: &Value) -> Value {
    match value {
        Value::Object(obj) => {
            let mut set = serde_json::Map::new();
            set.insert(".".into(), json!({}));
            for (k, v) in obj {
                set.insert(format!("f:{k}"), fields_of(v));
            }
            Value::Object(set)
        }
        _ => json!({}),
    }
}

fn behaviour(storage_uri: &str) -> Behaviour {
    if storage_uri.contains("broken") {
        Behaviour::Broken
    } else if storage_uri.contains("slow") {
        Behaviour::Slow
    } else if storage_uri.contains("reject") {
        Behaviour::Reject
    } else if storage_uri.contains("crash") {
        Behaviour::Crash
    } else {
        Behaviour::Ready
    }
}

#[derive(Debug, Clone)]
struct Revision {
    template: Value,
    behaviour: Behaviour,
}

/// The fake API server's state: one InferenceService.
#[derive(Debug)]
struct Fake {
    mode: DeploymentMode,
    obj: Option<Value>,
    generation: i64,
    revisions: Vec<Revision>,
    created: Option<String>,
    ready: Option<String>,
    rolled_out: Option<String>,
    previous_rolled_out: Option<String>,
    /// Reads left until the latest created revision becomes ready.
    reads_until_ready: u32,
    seen: Vec<Seen>,
    invalid: Vec<String>,
    /// From this apply on (0-based), applies fail with this status code.
    failing_applies: Option<(usize, u16)>,
    /// The next ready revision gets all traffic at once, ignoring `canaryTrafficPercent` (KServe without a
    /// rolled-out revision to split with).
    blue_green_once: bool,
    /// The status has only `url` and `conditions` (no `deploymentMode`, no Knative components).
    bare_status: bool,
    /// KServe never records a rolled-out revision (`latestRolledoutRevision` stays empty).
    never_rolls_out: bool,
}

impl Fake {
    fn empty(mode: DeploymentMode) -> Self {
        Fake {
            mode,
            obj: None,
            generation: 0,
            revisions: Vec::new(),
            created: None,
            ready: None,
            rolled_out: None,
            previous_rolled_out: None,
            reads_until_ready: 0,
            seen: Vec::new(),
            invalid: Vec::new(),
            failing_applies: None,
            blue_green_once: false,
            bare_status: false,
            never_rolls_out: false,
        }
    }

    /// An InferenceService kfops deployed before, serving `V1` from revision 00001.
    fn existing(mode: DeploymentMode) -> Self {
        let mut fake = Fake::empty(mode);
        let manifest = build(&settings(mode, V1), &vars("run-1")).expect("builds");
        fake.store(&manifest);
        fake.reads_until_ready = 0;
        fake.advance();
        fake.seen.clear();
        fake
    }

    fn store(&mut self, body: &Value) {
        let spec_changed = self.obj.as_ref().is_none_or(|o| o["spec"] != body["spec"]);
        if spec_changed {
            self.generation += 1;
        }
        let mut obj = json!({
            "apiVersion": body["apiVersion"], "kind": body["kind"],
            "metadata": body["metadata"], "spec": body["spec"],
        });
        obj["metadata"]["generation"] = json!(self.generation);
        obj["metadata"]["uid"] = json!("5d1c0a7e-0000-4000-8000-000000000001");
        let owned = json!({"f:metadata": fields_of(&body["metadata"]), "f:spec": fields_of(&body["spec"])});
        obj["metadata"]["managedFields"] = json!([
            {"manager": "kfops", "operation": "Apply", "apiVersion": body["apiVersion"], "fieldsType": "FieldsV1",
             "fieldsV1": owned}
        ]);
        self.obj = Some(obj);
        if self.mode == DeploymentMode::Standard {
            self.reads_until_ready = 2;
            return;
        }
        let pinned = self.canary_percent().is_some_and(|p| p < 100);
        if pinned && self.ready.is_some() && self.rolled_out == self.ready && self.previous_rolled_out.is_some() {
            // Pinning a fully rolled-out revision back: KServe resets latestRolledoutRevision to the previous one.
            self.rolled_out = self.previous_rolled_out.take();
        }
        let mut template = body["spec"]["predictor"].clone();
        if let Some(t) = template.as_object_mut() {
            t.remove("canaryTrafficPercent");
        }
        if self.revisions.last().is_none_or(|r| r.template != template) {
            let name = format!("{NAME}-predictor-{:05}", self.revisions.len() + 1);
            let uri = template["model"]["storageUri"].as_str().unwrap_or_default();
            self.revisions.push(Revision { behaviour: behaviour(uri), template });
            self.created = Some(name);
            self.reads_until_ready = 2;
        }
        self.settle();
    }

    fn latest(&self) -> Option<&Revision> {
        self.revisions.last()
    }

    /// One read: time passes, a pending revision may become ready.
    fn advance(&mut self) {
        if self.reads_until_ready > 0 {
            self.reads_until_ready -= 1;
        }
        if self.reads_until_ready == 0 && self.latest().is_some_and(|r| r.behaviour == Behaviour::Ready) {
            self.ready = self.created.clone();
        }
        self.settle();
    }

    fn canary_percent(&self) -> Option<i64> {
        self.obj.as_ref()?["spec"]["predictor"]["canaryTrafficPercent"].as_i64()
    }

    /// KServe's bookkeeping: without a canary split, the latest ready revision is rolled out.
    fn settle(&mut self) {
        let pinned = self.canary_percent().is_some_and(|p| p < 100);
        let split = pinned && self.rolled_out.is_some() && !self.blue_green_once;
        if !split && !self.never_rolls_out && self.ready.is_some() && self.rolled_out != self.ready {
            self.previous_rolled_out = self.rolled_out.take();
            self.rolled_out = self.ready.clone();
            self.blue_green_once = false;
        }
    }

    fn url(tag: Option<&str>) -> String {
        match tag {
            Some(t) => format!("http://{t}-{NAME}-predictor.{NS}.example.com"),
            None => format!("http://{NAME}.{NS}.example.com"),
        }
    }

    fn traffic(&self) -> Value {
        let Some(ready) = &self.ready else { return json!([]) };
        match (self.canary_percent(), &self.rolled_out) {
            (Some(p), Some(rolled)) if p < 100 => json!([
                {"revisionName": ready, "percent": p, "latestRevision": true, "tag": "latest", "url": Fake::url(Some("latest"))},
                {"revisionName": rolled, "percent": 100 - p, "latestRevision": false, "tag": "prev", "url": Fake::url(Some("prev"))}
            ]),
            _ => json!([
                {"revisionName": ready, "percent": 100, "latestRevision": true, "tag": "latest", "url": Fake::url(Some("latest"))}
            ]),
        }
    }

    fn status(&self) -> Value {
        if self.mode == DeploymentMode::Standard {
            let ready = self.reads_until_ready == 0;
            return json!({
                "deploymentMode": "Standard",
                "observedGeneration": if ready { self.generation } else { self.generation - 1 },
                "url": Fake::url(None),
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" }}]
            });
        }
        let latest_behaviour = self.latest().map(|r| r.behaviour);
        let pending = self.created != self.ready;
        let (conditions, model_status) = match (pending, latest_behaviour) {
            (true, Some(Behaviour::Broken)) => (
                json!([
                    {"type": "IngressReady", "status": "True"},
                    {"type": "PredictorReady", "status": "False", "reason": "RevisionFailed",
                     "message": format!("Revision \"{}\" failed with message: model load failed", self.created.as_deref().unwrap_or(""))},
                    {"type": "Ready", "status": "False", "reason": "RevisionFailed"}
                ]),
                json!({"transitionStatus": "BlockedByFailedLoad",
                       "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no model found in s3://trained-models/broken/"}}),
            ),
            (true, Some(Behaviour::Crash)) => (
                json!([
                    {"type": "IngressReady", "status": "True"},
                    {"type": "PredictorReady", "status": "False", "reason": "RevisionFailed",
                     "message": format!("Revision \"{}\" failed with message: Container failed with: exec format error", self.created.as_deref().unwrap_or(""))},
                    {"type": "Ready", "status": "False", "reason": "RevisionFailed"}
                ]),
                json!({"transitionStatus": "InProgress"}),
            ),
            (true, Some(Behaviour::Slow)) => (
                json!([
                    {"type": "IngressReady", "status": "True"},
                    {"type": "PredictorReady", "status": "Unknown", "reason": "RevisionMissing",
                     "message": "Configuration is waiting for a Revision to become ready."},
                    {"type": "Ready", "status": "Unknown", "reason": "RevisionMissing"}
                ]),
                json!({"transitionStatus": "InProgress"}),
            ),
            // Pending but fine: the top-level Ready is stale (still about the previous revision).
            _ => (
                json!([
                    {"type": "IngressReady", "status": "True"},
                    {"type": "PredictorReady", "status": "True"},
                    {"type": "Ready", "status": if self.ready.is_some() { "True" } else { "Unknown" }}
                ]),
                json!({"transitionStatus": if pending { "InProgress" } else { "UpToDate" }}),
            ),
        };
        if self.bare_status {
            return json!({"url": Fake::url(None), "conditions": conditions});
        }
        json!({
            "deploymentMode": "Knative",
            "observedGeneration": self.generation,
            "url": Fake::url(None),
            "address": {"url": format!("http://{NAME}-predictor.{NS}.svc.cluster.local")},
            "conditions": conditions,
            "modelStatus": model_status,
            "components": {"predictor": {
                "latestCreatedRevision": self.created,
                "latestReadyRevision": self.ready,
                "latestRolledoutRevision": self.rolled_out,
                "previousRolledoutRevision": self.previous_rolled_out,
                "url": Fake::url(Some("predictor")),
                "traffic": self.traffic(),
            }}
        })
    }

    fn full(&self) -> Option<Value> {
        let mut obj = self.obj.clone()?;
        obj["status"] = self.status();
        Some(obj)
    }

    fn answer(&mut self, method: &str, path: &str, query: &str, content_type: &str, body: Value) -> (u16, Value) {
        self.seen.push(Seen { method: method.into(), query: query.into(), body: body.clone() });
        assert_eq!(path, PATH, "{method} {path}");
        match method {
            "GET" => {
                self.advance();
                match self.full() {
                    Some(obj) => (200, obj),
                    None => (404, status(404, "NotFound", "inferenceservices.serving.kserve.io \"iris\" not found")),
                }
            }
            "PATCH" => {
                assert_eq!(content_type, "application/apply-patch+yaml");
                if let Err(errors) = validate(&body) {
                    self.invalid.extend(errors);
                }
                let index = self.seen.iter().filter(|s| s.method == "PATCH").count() - 1;
                if let Some((from, code)) = self.failing_applies
                    && index >= from
                {
                    let (reason, message) = match code {
                        403 => (
                            "Forbidden",
                            "inferenceservices.serving.kserve.io \"iris\" is forbidden: User \"system:serviceaccount:kfops:bot\" cannot patch resource",
                        ),
                        _ => ("InternalError", "Internal error occurred: etcdserver: request timed out"),
                    };
                    return (code, status(code, reason, message));
                }
                let uri = body["spec"]["predictor"]["model"]["storageUri"].as_str().unwrap_or_default();
                if behaviour(uri) == Behaviour::Reject {
                    let message = "admission webhook \"inferenceservice.kserve-webhook-server.validator\" denied the \
                                   request: storageUri scheme is not supported";
                    return (422, status(422, "Invalid", message));
                }
                self.store(&body);
                (200, self.full().expect("stored"))
            }
            "DELETE" => match self.full() {
                Some(mut obj) => {
                    obj["metadata"]["deletionTimestamp"] = json!("2026-11-28T18:00:00Z");
                    self.obj = None;
                    self.revisions.clear();
                    (200, obj)
                }
                None => (404, status(404, "NotFound", "not found")),
            },
            other => panic!("unexpected {other} {path}"),
        }
    }

    fn applied(&self) -> Vec<&Value> {
        self.seen.iter().filter(|s| s.method == "PATCH").map(|s| &s.body).collect()
    }

    fn methods(&self) -> Vec<&str> {
        self.seen.iter().map(|s| s.method.as_str()).collect()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn serve(mut handle: Handle, fake: Arc<Mutex<Fake>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or("").to_owned();
            let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let bytes = req.into_body().collect_bytes().await.expect("body");
            let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json") };
            let (code, answer) = fake.lock().expect("lock").answer(&method, &path, &query, &content_type, body);
            let response = Response::builder().status(code).body(Body::from(answer.to_string().into_bytes()));
            send.send_response(response.expect("response"));
        }
    })
}

/// A check that passes or fails, and records what it was pointed at and
/// whether the revision behind the `latest` tag was ready at that moment.
struct FakeCheck {
    fail: bool,
    fake: Arc<Mutex<Fake>>,
    calls: Mutex<Vec<(CheckTarget, bool)>>,
}

#[async_trait]
impl InferenceCheck for FakeCheck {
    async fn check(&self, target: &CheckTarget, _settings: &CheckSettings) -> Result<CheckReport, CheckError> {
        let ready = {
            let f = self.fake.lock().expect("lock");
            f.created.is_some() && f.created == f.ready
        };
        self.calls.lock().expect("lock").push((target.clone(), ready));
        if self.fail {
            return Err(CheckError::Predict {
                attempt: 1,
                message: "HTTP 500: {\"error\":\"X has 3 features\"}".into(),
            });
        }
        Ok(CheckReport {
            protocol: Protocol::V2,
            requests: 3,
            latencies_ms: vec![4.0, 2.0, 3.0],
            output: "{\"outputs\":[{\"name\":\"output-0\",\"data\":[1,1]}]}".into(),
        })
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<ProgressEvent>>);

impl Progress for Events {
    fn event(&self, event: ProgressEvent) {
        self.0.lock().expect("lock").push(event);
    }
}

impl Events {
    fn stages(&self) -> Vec<String> {
        let events = self.0.lock().expect("lock");
        events.iter().filter_map(|e| if let ProgressEvent::Stage(s) = e { Some(s.clone()) } else { None }).collect()
    }
}

fn vars(run: &str) -> TemplateVars {
    TemplateVars { run_id: Some(run.into()), version_id: None, sha: Some("0123abcd".into()), pr: Some(17) }
}

fn settings(mode: DeploymentMode, storage_uri: &str) -> KserveSettings {
    let mut s = KserveSettings::new(NAME, NS, storage_uri, "sklearn");
    s.mode = mode;
    s.protocol_version = Some("v2".into());
    s.labels = [("kfops.dev/pr".to_owned(), "17".to_owned())].into();
    s.ready_timeout = Duration::from_secs(60);
    s.poll_interval = Duration::from_secs(1);
    s.check = Some(CheckSettings {
        protocol: None,
        sample: json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [6.8, 2.8, 4.8, 1.4]}]}),
        expect: None,
        requests: 3,
        timeout: Duration::from_secs(5),
    });
    s
}

fn request(run: &str) -> DeployRequest {
    DeployRequest {
        environment: Environment::Staging,
        run_id: RunId(run.into()),
        version_id: None,
        pr: Some(PrRef { repo: RepoRef { owner: "acme".into(), name: "churn".into() }, number: 17 }),
        sha: Some(Sha("0123abcd".into())),
    }
}

struct Run {
    result: kfops_core::Result<DeployOutcome>,
    fake: Arc<Mutex<Fake>>,
    checks: Vec<(CheckTarget, bool)>,
    events: Events,
}

async fn deploy(fake: Fake, settings: KserveSettings, fail_check: bool) -> Run {
    deploy_request(fake, settings, fail_check, request("run-2")).await
}

async fn deploy_request(fake: Fake, settings: KserveSettings, fail_check: bool, request: DeployRequest) -> Run {
    let fake = Arc::new(Mutex::new(fake));
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(handle, fake.clone());
    let checker = Arc::new(FakeCheck { fail: fail_check, fake: fake.clone(), calls: Mutex::new(Vec::new()) });
    let target = KserveTarget::new(kube::Client::new(svc, "default"), settings, checker.clone());
    let events = Events::default();
    let result = target.deploy(request, &events).await;
    drop(target);
    server.await.expect("fake API server");
    let checks = checker.calls.lock().expect("lock").clone();
    {
        let f = fake.lock().expect("lock");
        assert!(f.invalid.is_empty(), "bodies the CRD rejects were sent: {:?}", f.invalid);
        for s in f.seen.iter().filter(|s| s.method == "PATCH") {
            let pairs: Vec<&str> = s.query.split('&').collect();
            assert!(pairs.contains(&"fieldManager=kfops") && pairs.contains(&"force=true"), "{}", s.query);
        }
    }
    Run { result, fake, checks, events }
}

fn storage(body: &Value) -> &str {
    body["spec"]["predictor"]["model"]["storageUri"].as_str().expect("storageUri")
}

#[tokio::test(start_paused = true)]
async fn first_deploy_creates_waits_for_the_revision_and_checks_it() {
    let run = deploy(Fake::empty(DeploymentMode::Knative), settings(DeploymentMode::Knative, V2), false).await;
    let outcome = run.result.expect("deploys");
    assert_eq!(
        outcome,
        DeployOutcome {
            service: NAME.into(),
            namespace: NS.into(),
            created: true,
            revision: Some("iris-predictor-00001".into()),
            storage_uri: V2.into(),
            url: Some("http://iris.staging.example.com".into()),
            previous_revision: None,
            checks: vec![
                "v2: 3 prediction request(s) answered 200".into(),
                "latency ms: min 2.0, median 3.0, max 4.0".into(),
                "output: {\"outputs\":[{\"name\":\"output-0\",\"data\":[1,1]}]}".into(),
            ],
        }
    );
    let fake = run.fake.lock().expect("lock");
    assert_eq!(fake.methods()[..2], ["GET", "PATCH"]);
    let applied = fake.applied();
    assert_eq!(applied.len(), 1);
    assert!(applied[0]["spec"]["predictor"].get("canaryTrafficPercent").is_none());
    assert_eq!(applied[0]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"], "Knative");
    assert_eq!(applied[0]["metadata"]["labels"]["kfops.dev/pr"], "17");
    assert_eq!(run.checks.len(), 1);
    let (target, ready) = &run.checks[0];
    assert!(*ready, "checked before the revision was ready");
    assert_eq!(target.base_url, "http://iris.staging.example.com");
    assert_eq!(target.host, None);
    assert_eq!(target.model_name, NAME);
}

#[tokio::test(start_paused = true)]
async fn canary_is_checked_through_its_tag_then_promoted() {
    let mut s = settings(DeploymentMode::Knative, V2);
    s.check_base_url = Some("http://istio-ingressgateway.istio-system".into());
    let run = deploy(Fake::existing(DeploymentMode::Knative), s, false).await;
    let outcome = run.result.expect("deploys");
    assert!(!outcome.created);
    assert_eq!(outcome.revision.as_deref(), Some("iris-predictor-00002"));
    assert_eq!(outcome.previous_revision.as_deref(), Some("iris-predictor-00001"));
    assert_eq!(outcome.checks.len(), 3);

    let fake = run.fake.lock().expect("lock");
    let applied = fake.applied();
    assert_eq!(applied.len(), 2, "canary, then promotion");
    assert_eq!(applied[0]["spec"]["predictor"]["canaryTrafficPercent"], 0);
    assert_eq!(storage(applied[0]), V2);
    assert_eq!(applied[0]["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"], "true");
    assert!(applied[1]["spec"]["predictor"].get("canaryTrafficPercent").is_none(), "promotion drops the pin");
    assert_eq!(storage(applied[1]), V2);
    assert_eq!(
        fake.traffic(),
        json!([{"revisionName": "iris-predictor-00002", "percent": 100, "latestRevision": true,
        "tag": "latest", "url": "http://latest-iris-predictor.staging.example.com"}])
    );

    assert_eq!(run.checks.len(), 1);
    let (target, ready) = &run.checks[0];
    assert!(*ready, "checked before the new revision was ready (stale Ready trusted?)");
    assert_eq!(target.base_url, "http://istio-ingressgateway.istio-system");
    assert_eq!(target.host.as_deref(), Some("latest-iris-predictor.staging.example.com"));

    let stages = run.events.stages();
    for expected in [
        "applying the new model as a canary at 0 %",
        "waiting for the new revision",
        "checking revision iris-predictor-00002",
        "promoting revision iris-predictor-00002",
    ] {
        assert!(stages.iter().any(|s| s.starts_with(expected)), "{expected} not in {stages:?}");
    }
}

fn assert_rolled_back(fake: &Fake) {
    let applied = fake.applied();
    assert_eq!(applied.len(), 2, "canary, then rollback: {:?}", fake.methods());
    assert_eq!(applied[0]["spec"]["predictor"]["canaryTrafficPercent"], 0);
    assert_eq!(storage(applied[1]), V1, "the rollback re-applies the previous model");
    assert_eq!(applied[1]["spec"]["predictor"]["canaryTrafficPercent"], 0, "pinned to the previous revision");
    let traffic = fake.traffic();
    let on_previous: i64 = traffic
        .as_array()
        .expect("traffic")
        .iter()
        .filter(|t| t["revisionName"] == "iris-predictor-00001")
        .map(|t| t["percent"].as_i64().expect("percent"))
        .sum();
    assert_eq!(on_previous, 100, "{traffic}");
}

#[tokio::test(start_paused = true)]
async fn canary_that_never_gets_ready_is_rolled_back() {
    let run = deploy(
        Fake::existing(DeploymentMode::Knative),
        settings(DeploymentMode::Knative, "s3://trained-models/broken/"),
        false,
    )
    .await;
    let err = run.result.expect_err("fails");
    let msg = err.message();
    assert!(
        msg.starts_with("the new revision failed: model status BlockedByFailedLoad (ModelLoadFailed: no model found"),
        "{msg}"
    );
    assert!(msg.contains("PredictorReady=False (RevisionFailed: Revision \"iris-predictor-00002\" failed with message: model load failed)"), "{msg}");
    assert!(
        msg.contains("latestCreatedRevision iris-predictor-00002, latestReadyRevision iris-predictor-00001"),
        "{msg}"
    );
    assert!(msg.ends_with("rolled back to revision iris-predictor-00001 (100 % of the traffic; the previous spec is pinned with canaryTrafficPercent: 0)"), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Other);
    assert!(run.checks.is_empty(), "a revision that is not ready is not checked");
    assert_rolled_back(&run.fake.lock().expect("lock"));
    assert!(run.events.stages().iter().any(|s| s == "rolling back to revision iris-predictor-00001"));
}

#[tokio::test(start_paused = true)]
async fn failed_check_is_rolled_back_before_promotion() {
    let run = deploy(Fake::existing(DeploymentMode::Knative), settings(DeploymentMode::Knative, V2), true).await;
    let err = run.result.expect_err("fails");
    let msg = err.message();
    assert!(msg.starts_with("the inference check of revision iris-predictor-00002 at http://latest-iris-predictor.staging.example.com failed: prediction request 1 failed: HTTP 500"), "{msg}");
    assert!(msg.ends_with("; rolled back to revision iris-predictor-00001 (100 % of the traffic; the previous spec is pinned with canaryTrafficPercent: 0)"), "{msg}");
    assert_eq!(run.checks.len(), 1);
    assert_rolled_back(&run.fake.lock().expect("lock"));
}

#[tokio::test(start_paused = true)]
async fn rejected_apply_is_reported_and_nothing_else_is_applied() {
    let run =
        deploy(Fake::existing(DeploymentMode::Knative), settings(DeploymentMode::Knative, "s3://reject/model/"), false)
            .await;
    let err = run.result.expect_err("fails");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.message(),
        "the API server rejected applying the canary to InferenceService staging/iris (422 Invalid): admission webhook \
         \"inferenceservice.kserve-webhook-server.validator\" denied the request: storageUri scheme is not supported; \
         nothing was changed"
    );
    let fake = run.fake.lock().expect("lock");
    assert_eq!(fake.methods(), ["GET", "PATCH"]);
    assert!(run.checks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeout_waiting_for_the_revision_is_rolled_back() {
    let run = deploy(
        Fake::existing(DeploymentMode::Knative),
        settings(DeploymentMode::Knative, "s3://trained-models/slow/"),
        false,
    )
    .await;
    let err = run.result.expect_err("fails");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let msg = err.message();
    assert!(msg.starts_with("timed out after 60s waiting for the new revision; conditions: PredictorReady=Unknown (RevisionMissing: Configuration is waiting for a Revision to become ready.), Ready=Unknown (RevisionMissing)"), "{msg}");
    assert!(msg.ends_with("rolled back to revision iris-predictor-00001 (100 % of the traffic; the previous spec is pinned with canaryTrafficPercent: 0)"), "{msg}");
    assert!(run.checks.is_empty());
    assert_rolled_back(&run.fake.lock().expect("lock"));
}

#[tokio::test(start_paused = true)]
async fn failed_first_deploy_deletes_the_new_inference_service() {
    let run = deploy(
        Fake::empty(DeploymentMode::Knative),
        settings(DeploymentMode::Knative, "s3://trained-models/broken/"),
        false,
    )
    .await;
    let err = run.result.expect_err("fails");
    let msg = err.message();
    assert!(
        msg.starts_with("the new InferenceService to become ready failed: model status BlockedByFailedLoad"),
        "{msg}"
    );
    assert!(msg.ends_with("; rolled back: the new InferenceService staging/iris was deleted"), "{msg}");
    let fake = run.fake.lock().expect("lock");
    assert_eq!(fake.methods().last(), Some(&"DELETE"));
    assert!(fake.obj.is_none());
}

#[tokio::test(start_paused = true)]
async fn redeploying_the_serving_model_applies_nothing() {
    // The existing object serves V1 with the same labels; deploy the very same model again.
    let run = deploy(Fake::existing(DeploymentMode::Knative), settings(DeploymentMode::Knative, V1), false).await;
    let outcome = run.result.expect("no-op");
    assert_eq!(outcome.revision.as_deref(), Some("iris-predictor-00001"));
    assert_eq!(
        outcome.checks,
        vec!["unchanged: InferenceService staging/iris already serves s3://trained-models/run-1/".to_owned()]
    );
    assert_eq!(run.fake.lock().expect("lock").methods(), ["GET"]);
}

#[tokio::test(start_paused = true)]
async fn standard_mode_first_deploy_works_and_updates_are_refused() {
    let run = deploy(Fake::empty(DeploymentMode::Standard), settings(DeploymentMode::Standard, V2), false).await;
    let outcome = run.result.expect("deploys");
    assert!(outcome.created);
    assert_eq!(outcome.revision, None);
    assert_eq!(outcome.url.as_deref(), Some("http://iris.staging.example.com"));
    assert_eq!(run.checks.len(), 1);
    {
        let fake = run.fake.lock().expect("lock");
        let applied = fake.applied();
        assert_eq!(applied[0]["metadata"]["annotations"], json!({"serving.kserve.io/deploymentMode": "Standard"}));
        // Ready only after the generation was observed.
        assert!(fake.methods().iter().filter(|m| **m == "GET").count() >= 3, "{:?}", fake.methods());
    }

    let run = deploy(Fake::existing(DeploymentMode::Standard), settings(DeploymentMode::Standard, V2), false).await;
    let err = run.result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(
        err.message().contains("KServe ignores canaryTrafficPercent") && err.message().contains("Use Knative mode"),
        "{}",
        err.message()
    );
    assert!(err.message().ends_with("nothing was changed"));
    assert_eq!(run.fake.lock().expect("lock").methods(), ["GET"]);
}

#[tokio::test(start_paused = true)]
async fn switching_the_mode_of_an_existing_service_is_refused() {
    let run = deploy(Fake::existing(DeploymentMode::Knative), settings(DeploymentMode::Standard, V2), false).await;
    let err = run.result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(
        err.message().contains("runs in Knative mode, but the deployment is configured for Standard mode"),
        "{}",
        err.message()
    );
    assert_eq!(run.fake.lock().expect("lock").methods(), ["GET"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollback_is_reported() {
    let mut fake = Fake::existing(DeploymentMode::Knative);
    fake.failing_applies = Some((1, 403));
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), true).await;
    let err = run.result.expect_err("fails");
    let msg = err.message();
    assert!(msg.starts_with("the inference check of revision iris-predictor-00002"), "{msg}");
    assert!(
        msg.ends_with(
            "; rollback failed: re-applying the previous spec of InferenceService staging/iris failed: the API server \
             answered 403 Forbidden: inferenceservices.serving.kserve.io \"iris\" is forbidden: User \
             \"system:serviceaccount:kfops:bot\" cannot patch resource"
        ),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_apply_with_unknown_outcome_is_rolled_back() {
    let mut fake = Fake::existing(DeploymentMode::Knative);
    fake.failing_applies = Some((0, 500));
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), false).await;
    let err = run.result.expect_err("fails");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let msg = err.message();
    assert!(
        msg.starts_with(
            "applying the canary to InferenceService staging/iris failed: the API server answered 500 InternalError: \
             Internal error occurred: etcdserver: request timed out; rollback failed: re-applying the previous spec"
        ),
        "{msg}"
    );
    let fake = run.fake.lock().expect("lock");
    let applied = fake.applied();
    assert_eq!(applied.len(), 2, "the canary and the attempted rollback");
    assert_eq!(storage(applied[1]), V1);
    assert!(run.checks.is_empty());
}

fn warnings(events: &Events) -> Vec<String> {
    let events = events.0.lock().expect("lock");
    events.iter().filter_map(|e| if let ProgressEvent::Warning(s) = e { Some(s.clone()) } else { None }).collect()
}

#[tokio::test(start_paused = true)]
async fn update_without_a_rolled_out_revision_is_refused_before_applying() {
    let mut fake = Fake::existing(DeploymentMode::Knative);
    fake.rolled_out = None;
    fake.never_rolls_out = true;
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), false).await;
    let err = run.result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let msg = err.message();
    assert!(msg.contains("has no rolled-out revision"), "{msg}");
    assert!(msg.contains("KServe ignores canaryTrafficPercent"), "{msg}");
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert!(msg.contains("Wait until the current revision is fully rolled out"), "{msg}");
    assert_eq!(run.fake.lock().expect("lock").methods(), ["GET"]);
    assert!(run.checks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn renaming_the_predictor_is_refused_before_applying() {
    let mut s = settings(DeploymentMode::Knative, V2);
    s.manifest_template = Some(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: {service_name}\n  \
         namespace: {namespace}\nspec:\n  predictor:\n    name: v2\n    model:\n      modelFormat: {{name: sklearn}}\n      \
         protocolVersion: v2\n      storageUri: {storage_uri}\n"
            .into(),
    );
    let run = deploy(Fake::existing(DeploymentMode::Knative), s, false).await;
    let err = run.result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let msg = err.message();
    assert!(
        msg.contains("changes `spec.predictor.name` of InferenceService staging/iris from (none) to `v2`"),
        "{msg}"
    );
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert_eq!(run.fake.lock().expect("lock").methods(), ["GET"]);
}

#[tokio::test(start_paused = true)]
async fn canary_that_takes_traffic_before_the_check_is_rolled_back() {
    let mut fake = Fake::existing(DeploymentMode::Knative);
    fake.blue_green_once = true;
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), false).await;
    let err = run.result.expect_err("fails");
    let msg = err.message();
    assert!(
        msg.starts_with(
            "the new revision failed: the previous revision iris-predictor-00001 has only 0 % of the traffic although \
             the canary is pinned at 0 %: KServe routed traffic to the unchecked revision iris-predictor-00002"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("rolled back to revision iris-predictor-00001 (100 % of the traffic; the previous spec is pinned with canaryTrafficPercent: 0)"), "{msg}");
    assert!(run.checks.is_empty(), "an unchecked revision that got traffic is not checked, it is rolled back");
    assert_rolled_back(&run.fake.lock().expect("lock"));
}

#[tokio::test(start_paused = true)]
async fn existing_service_of_unknown_mode_is_refused_without_knative_status() {
    let mut fake = Fake::existing(DeploymentMode::Knative);
    fake.bare_status = true;
    if let Some(obj) = fake.obj.as_mut() {
        obj["metadata"]["annotations"] = json!({});
    }
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), false).await;
    let err = run.result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let msg = err.message();
    assert!(
        msg.contains("has neither the `serving.kserve.io/deploymentMode` annotation nor `status.deploymentMode`"),
        "{msg}"
    );
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert_eq!(run.fake.lock().expect("lock").methods(), ["GET"]);

    // Without the annotation but with Knative revisions and traffic in its status, it is updated as Knative.
    let mut fake = Fake::existing(DeploymentMode::Knative);
    if let Some(obj) = fake.obj.as_mut() {
        obj["metadata"]["annotations"] = json!({});
    }
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), false).await;
    let outcome = run.result.expect("deploys as Knative");
    assert_eq!(outcome.revision.as_deref(), Some("iris-predictor-00002"));
}

fn production(run: &str) -> DeployRequest {
    DeployRequest { environment: Environment::Production, ..request(run) }
}

#[tokio::test(start_paused = true)]
async fn production_without_an_inference_check_is_refused() {
    let mut s = settings(DeploymentMode::Knative, V2);
    s.check = None;
    let run = deploy_request(Fake::existing(DeploymentMode::Knative), s, false, production("run-2")).await;
    let err = run.result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let msg = err.message();
    assert!(msg.contains("production deploys need `deployment.pre_deployment_test_sample_input_path`"), "{msg}");
    assert!(msg.ends_with("InferenceService staging/iris was not changed"), "{msg}");
    assert!(run.fake.lock().expect("lock").methods().is_empty(), "nothing was read or applied");

    // With a check, production deploys.
    let run = deploy_request(
        Fake::existing(DeploymentMode::Knative),
        settings(DeploymentMode::Knative, V2),
        false,
        production("run-2"),
    )
    .await;
    run.result.expect("deploys");
}

#[tokio::test(start_paused = true)]
async fn staging_without_an_inference_check_warns_and_says_so() {
    let mut s = settings(DeploymentMode::Knative, V2);
    s.check = None;
    let run = deploy(Fake::existing(DeploymentMode::Knative), s, false).await;
    let outcome = run.result.expect("deploys");
    assert_eq!(outcome.checks, vec![kfops_deploy::kserve::NO_CHECK_LINE.to_owned()]);
    assert_eq!(outcome.checks, vec!["no inference check (no sample configured)".to_owned()]);
    assert!(run.checks.is_empty());
    let warnings = warnings(&run.events);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("revision iris-predictor-00002 is not checked: no inference check"), "{warnings:?}");
}

#[tokio::test(start_paused = true)]
async fn service_of_another_repository_is_refused_and_unlabelled_ones_are_adopted() {
    let repo_label = kfops_deploy::kserve::REPO_LABEL;
    let mut fake = Fake::existing(DeploymentMode::Knative);
    if let Some(obj) = fake.obj.as_mut() {
        obj["metadata"]["labels"][repo_label] = json!("acme.other");
    }
    let mut s = settings(DeploymentMode::Knative, V2);
    s.labels.insert(repo_label.to_owned(), "acme.churn".to_owned());
    let run = deploy(fake, s.clone(), false).await;
    let err = run.result.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        err.message().starts_with("InferenceService iris in staging belongs to repository acme.other"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("nothing was changed"), "{}", err.message());
    assert_eq!(run.fake.lock().expect("lock").methods(), ["GET"]);

    // Unlabelled: adopted, and labelled from now on.
    let run = deploy(Fake::existing(DeploymentMode::Knative), s, false).await;
    run.result.expect("adopted");
    let fake = run.fake.lock().expect("lock");
    assert_eq!(fake.applied()[0]["metadata"]["labels"][repo_label], "acme.churn");
}

#[tokio::test(start_paused = true)]
async fn failed_revision_fails_the_wait_at_once() {
    let started = tokio::time::Instant::now();
    let run = deploy(
        Fake::existing(DeploymentMode::Knative),
        settings(DeploymentMode::Knative, "s3://trained-models/crash/"),
        false,
    )
    .await;
    let err = run.result.expect_err("fails");
    let msg = err.message();
    assert!(
        msg.starts_with(
            "the new revision failed: revision iris-predictor-00002 failed (PredictorReady=False, RevisionFailed)"
        ),
        "{msg}"
    );
    assert!(msg.contains("exec format error"), "{msg}");
    assert!(msg.ends_with("rolled back to revision iris-predictor-00001 (100 % of the traffic; the previous spec is pinned with canaryTrafficPercent: 0)"), "{msg}");
    let fake = run.fake.lock().expect("lock");
    // GET, PATCH (canary), one GET that sees the failure, PATCH (rollback), GET(s) until the previous serves again.
    assert_eq!(fake.methods()[..4], ["GET", "PATCH", "GET", "PATCH"]);
    assert_rolled_back(&fake);
    // Paused time: far below the 60 s ready timeout (only the rollback's polls, 1 s each, at most).
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn rollback_applies_only_what_kfops_manages() {
    let mut fake = Fake::existing(DeploymentMode::Knative);
    if let Some(obj) = fake.obj.as_mut() {
        // Set by other field managers (an operator, a webhook): kfops never sets these.
        obj["spec"]["predictor"]["minReplicas"] = json!(2);
        obj["spec"]["predictor"]["model"]["args"] = json!(["--workers=2"]);
        obj["metadata"]["annotations"]["autoscaling.knative.dev/target"] = json!("5");
        obj["metadata"]["labels"]["team"] = json!("risk");
    }
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), true).await;
    run.result.expect_err("the check fails");
    let rollback = run.fake.lock().expect("lock").applied()[1].clone();
    assert_eq!(
        rollback,
        json!({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": NAME,
                "namespace": NS,
                "labels": {"kfops.dev/pr": "17"},
                "annotations": {
                    "serving.kserve.io/deploymentMode": "Knative",
                    "serving.kserve.io/enable-tag-routing": "true"
                }
            },
            "spec": {"predictor": {
                "canaryTrafficPercent": 0,
                "model": {"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2", "storageUri": V1}
            }}
        })
    );

    // Without managedFields (a service kfops adopted): kfops's labels and annotations, the spec fields the new
    // manifest sets, and the previous model as it was.
    let mut fake = Fake::existing(DeploymentMode::Knative);
    if let Some(obj) = fake.obj.as_mut() {
        obj["metadata"]["managedFields"] = json!([]);
        obj["spec"]["predictor"]["minReplicas"] = json!(2);
        obj["spec"]["predictor"]["model"]["args"] = json!(["--workers=2"]);
        obj["metadata"]["annotations"]["autoscaling.knative.dev/target"] = json!("5");
    }
    let run = deploy(fake, settings(DeploymentMode::Knative, V2), true).await;
    run.result.expect_err("the check fails");
    let fake = run.fake.lock().expect("lock");
    let rollback = &fake.applied()[1];
    assert_eq!(
        rollback["spec"],
        json!({"predictor": {"canaryTrafficPercent": 0, "model": {"modelFormat": {"name": "sklearn"},
               "protocolVersion": "v2", "storageUri": V1, "args": ["--workers=2"]}}})
    );
    assert_eq!(
        rollback["metadata"]["annotations"],
        json!({"serving.kserve.io/deploymentMode": "Knative", "serving.kserve.io/enable-tag-routing": "true"})
    );
}

#[tokio::test(start_paused = true)]
async fn long_service_names_warn_that_the_canary_tag_host_is_too_long() {
    // 47 characters: `latest-{name}-predictor` has 64, one over the DNS label limit. The production refusal (no
    // check) comes after the warning, so nothing reaches the fake API server.
    let name = "m".repeat(47);
    let mut s = KserveSettings { service_name: name.clone(), ..settings(DeploymentMode::Knative, V2) };
    s.check = None;
    let run = deploy_request(Fake::empty(DeploymentMode::Knative), s.clone(), false, production("run-2")).await;
    run.result.expect_err("production without a check");
    let seen = warnings(&run.events);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!("the canary's tag host `latest-{name}-predictor` is 64 characters")),
        "{seen:?}"
    );
    assert!(seen[0].contains("use a service name of at most 46 characters"), "{seen:?}");

    let short = KserveSettings { service_name: "m".repeat(46), ..s };
    let run = deploy_request(Fake::empty(DeploymentMode::Knative), short, false, production("run-2")).await;
    run.result.expect_err("production without a check");
    assert!(warnings(&run.events).is_empty());
}
