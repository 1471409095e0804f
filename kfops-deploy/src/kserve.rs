//! The KServe [`DeployTarget`]: server-side apply of an InferenceService, the
//! canary rollout with an inference check, promotion, and roll back.
//!
//! # Flow
//!
//! * **First deploy** (the InferenceService does not exist): apply the manifest,
//!   wait until it is ready, run the inference check against its URL. Any
//!   failure after the apply deletes the new InferenceService again.
//! * **Update, Knative mode**: remember the revision serving production
//!   (`status.components.predictor.latestRolledoutRevision`, else the traffic
//!   entry at 100 %) and the current spec; apply the new spec with
//!   `canaryTrafficPercent: 0`; wait until the **new** revision is ready;
//!   check it through its `latest` tag URL only; promote by applying the
//!   spec without `canaryTrafficPercent` (server-side apply removes the field
//!   kfops owns); wait until the new revision has 100 % of the traffic.
//!   Any failure re-applies the previous spec pinned with
//!   `canaryTrafficPercent: 0` (the `rollout_pinned` pattern: all traffic on the
//!   previous rolled-out revision at once, no waiting for new pods) and waits
//!   until the traffic shows the previous revision at 100 %. The
//!   InferenceService is then left pinned, with the previous model in its
//!   spec; the next successful deploy removes the pin. The rollback body holds
//!   only kfops's own intent (see `previous_manifest`): the fields kfops owned
//!   in the previous object's `managedFields`, never fields other managers set.
//! * **Refused before anything is applied** (Knative updates): no
//!   `latestRolledoutRevision` (KServe ignores `canaryTrafficPercent` then and
//!   gives the new revision 100 % once ready); a changed `spec.predictor.name`
//!   (a new component without rolled-out revision); an existing service with
//!   neither a mode annotation nor `status.deploymentMode` whose status shows
//!   no Knative revisions and traffic. For every deploy: a service labelled
//!   [`REPO_LABEL`] for another repository than the settings' label; a
//!   production deploy without an inference check. A staging deploy without
//!   a check warns and records [`NO_CHECK_LINE`].
//! * **Update, Standard mode: refused.** `canaryTrafficPercent` is ignored in
//!   Standard mode (KServe only reads it in the Knative reconciler), so
//!   applying would replace the serving model with a plain rolling update
//!   before any check could run. KServe v0.20's Standard-mode canary
//!   (`spec.canary[]`, weights on a Gateway API HTTPRoute) is a different API
//!   that cannot be verified here; until kfops supports it, an update in
//!   Standard mode fails before anything is applied, saying to use Knative
//!   mode for checked canary rollouts. First deploys work in both modes.
//!
//! # Readiness
//!
//! The top-level `Ready` condition is not trusted during an update: it can be
//! stale (still describing the previous revision) or flip to Unknown while the
//! previous revision serves. The new revision is judged from
//! `status.components.predictor`: `latestCreatedRevision` differs from the one
//! before the apply **and** equals `latestReadyRevision`, and the `traffic`
//! list holds it with tag `latest` while the previous revision still has
//! 100 %. A first deploy (Knative) needs `Ready=True` and
//! `latestReadyRevision == latestCreatedRevision`; in Standard mode `Ready=True`
//! and, when present, `status.observedGeneration >= metadata.generation`.
//! `status.modelStatus.transitionStatus` `BlockedByFailedLoad` or `InvalidSpec`,
//! and `PredictorReady`/`Ready` `False` with a [`TERMINAL_REASONS`] reason about
//! the new revision, fail the wait at once; so does, during the canary, the
//! previous revision dropping below 100 % of the traffic once the new revision
//! exists (it got traffic before its check). Otherwise it ends at `ready_timeout`. Failures
//! report the conditions that are not `True` with their reason and message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kfops_core::deploy::{DeployOutcome, DeployRequest, Environment};
use kfops_core::{DeployTarget, Error, ErrorKind, Progress, ProgressEvent};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use crate::check::{CheckReport, CheckSettings, CheckTarget, InferenceCheck};
use crate::error::DeployError;
use crate::manifest::{self, MODE_ANNOTATION};
use crate::storage::TemplateVars;

/// The field manager of every server-side apply kfops makes.
pub const FIELD_MANAGER: &str = "kfops";
/// The line [`DeployOutcome::checks`] holds when a (staging) deploy ran without an inference check.
pub const NO_CHECK_LINE: &str = "no inference check (no sample configured)";
/// The label naming the repository an InferenceService is deployed from (`owner/name`, as the bot sets it).
pub const REPO_LABEL: &str = "kfops.dev/repo";
/// Condition reasons that mean the new revision failed for good (waiting longer does not help).
pub const TERMINAL_REASONS: [&str; 1] = ["RevisionFailed"];
/// The longest DNS label (RFC 1123); Knative tag hosts such as `latest-{name}-predictor` must fit in it.
pub const DNS_LABEL_MAX: usize = 63;

/// How KServe runs the predictor (the `serving.kserve.io/deploymentMode` annotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentMode {
    /// Knative Serving: revisions, `canaryTrafficPercent`, tag routing (legacy name `Serverless`).
    Knative,
    /// Plain Deployments and Services (legacy name `RawDeployment`).
    Standard,
}

impl DeploymentMode {
    /// The annotation value: `Knative` or `Standard`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentMode::Knative => "Knative",
            DeploymentMode::Standard => "Standard",
        }
    }

    /// Read an annotation value, accepting the legacy names `Serverless` and `RawDeployment`.
    pub fn from_annotation(value: &str) -> Option<Self> {
        match value {
            "Knative" | "Serverless" => Some(DeploymentMode::Knative),
            "Standard" | "RawDeployment" => Some(DeploymentMode::Standard),
            _ => None,
        }
    }
}

/// Everything the KServe target needs for one deploy (the bot maps its configuration to this).
#[derive(Debug, Clone, PartialEq)]
pub struct KserveSettings {
    /// The InferenceService name.
    pub service_name: String,
    /// Its namespace.
    pub namespace: String,
    /// The kubeconfig context to use ([`KserveTarget::connect`]); `None`: the current context, or in-cluster.
    pub context: Option<String>,
    /// Knative or Standard mode; always written to the manifest.
    pub mode: DeploymentMode,
    /// The model's storage URI, already rendered from the storage-URI template.
    pub storage_uri: String,
    /// `predictor.model.modelFormat.name`, e.g. `sklearn`.
    pub model_format: String,
    /// `predictor.model.runtime`: a ServingRuntime to pin.
    pub runtime: Option<String>,
    /// `predictor.model.protocolVersion` (`v1`, `v2`, …).
    pub protocol_version: Option<String>,
    /// `predictor.serviceAccountName` (storage credentials).
    pub service_account: Option<String>,
    /// `predictor.model.resources` (a Kubernetes ResourceRequirements).
    pub resources: Option<Value>,
    /// A full manifest template instead of the fields above (see [`crate::manifest`]).
    pub manifest_template: Option<String>,
    /// Labels added to the InferenceService (run id, PR, commit for audit).
    pub labels: BTreeMap<String, String>,
    /// How long to wait for a revision to become ready (and for traffic to move).
    pub ready_timeout: Duration,
    /// How often to read the InferenceService while waiting.
    pub poll_interval: Duration,
    /// The inference check; `None` skips it (no sample configured).
    pub check: Option<CheckSettings>,
    /// Send the check here (e.g. an ingress gateway) with the `Host` header of the status URL.
    pub check_base_url: Option<String>,
}

impl KserveSettings {
    /// Settings with the defaults: Knative mode, no runtime/protocol/service account/resources/template,
    /// no labels, 10 minutes ready timeout, 5 s poll interval, no check.
    pub fn new(
        service_name: impl Into<String>,
        namespace: impl Into<String>,
        storage_uri: impl Into<String>,
        model_format: impl Into<String>,
    ) -> Self {
        KserveSettings {
            service_name: service_name.into(),
            namespace: namespace.into(),
            context: None,
            mode: DeploymentMode::Knative,
            storage_uri: storage_uri.into(),
            model_format: model_format.into(),
            runtime: None,
            protocol_version: None,
            service_account: None,
            resources: None,
            manifest_template: None,
            labels: BTreeMap::new(),
            ready_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
            check: None,
            check_base_url: None,
        }
    }
}

/// `serving.kserve.io/v1beta1` `InferenceService` (plural `inferenceservices`).
pub fn inference_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    )
}

/// One line per finding of an inference check, as the PR comment shows them.
pub fn report_lines(report: &CheckReport) -> Vec<String> {
    let mut sorted = report.latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let mut lines =
        vec![format!("{}: {} prediction request(s) answered 200", report.protocol.as_str(), report.requests)];
    if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
        let median = sorted[sorted.len() / 2];
        lines.push(format!("latency ms: min {min:.1}, median {median:.1}, max {max:.1}"));
    }
    lines.push(format!("output: {}", report.output));
    lines
}

/// The KServe [`DeployTarget`] (see the module docs for the flow).
pub struct KserveTarget {
    api: Api<DynamicObject>,
    settings: KserveSettings,
    checker: Arc<dyn InferenceCheck>,
}

impl std::fmt::Debug for KserveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KserveTarget").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// A failure inside the rollout, before the rollback result is added.
struct Failure {
    kind: ErrorKind,
    message: String,
    source: Option<DeployError>,
    /// Whether the cluster may have changed (an apply may have happened).
    changed: bool,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure { kind, message: message.into(), source: None, changed: true }
    }
}

enum Judgement {
    Done,
    Pending,
    Failed(String),
}

impl KserveTarget {
    /// A target using `client`.
    pub fn new(client: kube::Client, settings: KserveSettings, checker: Arc<dyn InferenceCheck>) -> Self {
        let api = Api::namespaced_with(client, &settings.namespace, &inference_service_resource());
        KserveTarget { api, settings, checker }
    }

    /// A target whose client comes from the kubeconfig context `settings.context`, or, without one,
    /// from the current kubeconfig context or the in-cluster service account.
    pub async fn connect(settings: KserveSettings, checker: Arc<dyn InferenceCheck>) -> Result<Self, DeployError> {
        let config = match &settings.context {
            Some(context) => {
                let options = kube::config::KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| DeployError::Connect(format!("kubeconfig context `{context}`: {e}")))?
            }
            None => kube::Config::infer().await.map_err(|e| DeployError::Connect(e.to_string()))?,
        };
        let client = kube::Client::try_from(config).map_err(|e| DeployError::Connect(e.to_string()))?;
        Ok(KserveTarget::new(client, settings, checker))
    }

    /// The settings this target deploys with.
    pub fn settings(&self) -> &KserveSettings {
        &self.settings
    }

    fn what(&self) -> String {
        format!("InferenceService {}/{}", self.settings.namespace, self.settings.service_name)
    }

    fn kube_failure(&self, action: &str, e: kube::Error) -> Failure {
        let (kind, message, changed) = match &e {
            kube::Error::Api(s) => {
                let kind = match s.code {
                    400 | 422 => ErrorKind::InvalidInput,
                    401 => ErrorKind::Unauthenticated,
                    403 => ErrorKind::PermissionDenied,
                    404 => ErrorKind::NotFound,
                    409 => ErrorKind::Conflict,
                    c if c >= 500 || c == 429 => ErrorKind::Unavailable,
                    _ => ErrorKind::Other,
                };
                let msg = if s.code == 400 || s.code == 422 {
                    format!("the API server rejected {action} ({} {}): {}", s.code, s.reason, s.message)
                } else {
                    format!("{action} failed: the API server answered {} {}: {}", s.code, s.reason, s.message)
                };
                (kind, msg, s.code >= 500)
            }
            other => (ErrorKind::Unavailable, format!("{action} failed: {other}"), true),
        };
        Failure {
            kind,
            message,
            source: Some(DeployError::Kube { action: action.into(), source: Box::new(e) }),
            changed,
        }
    }

    async fn apply(&self, manifest: &Value, action: &str) -> Result<Value, Failure> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match self.api.patch(&self.settings.service_name, &params, &Patch::Apply(manifest)).await {
            Ok(obj) => Ok(obj_json(&obj)),
            Err(e) => Err(self.kube_failure(&format!("{action} {}", self.what()), e)),
        }
    }

    async fn get(&self) -> Result<Option<Value>, Failure> {
        match self.api.get_opt(&self.settings.service_name).await {
            Ok(obj) => Ok(obj.as_ref().map(obj_json)),
            Err(e) => Err(self.kube_failure(&format!("reading {}", self.what()), e)),
        }
    }

    /// Poll until `judge` says done or failed, or the ready timeout passes.
    async fn wait_for(&self, what: &str, mut judge: impl FnMut(&Value) -> Judgement) -> Result<Value, Failure> {
        let deadline = tokio::time::Instant::now() + self.settings.ready_timeout;
        loop {
            let Some(obj) = self.get().await? else {
                return Err(Failure::new(
                    ErrorKind::NotFound,
                    format!("{} disappeared while waiting for {what}", self.what()),
                ));
            };
            match judge(&obj) {
                Judgement::Done => return Ok(obj),
                Judgement::Failed(why) => {
                    return Err(Failure::new(
                        ErrorKind::Other,
                        format!("{what} failed: {why}; {}", describe_status(&obj["status"])),
                    ));
                }
                Judgement::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Failure::new(
                    ErrorKind::Timeout,
                    format!(
                        "timed out after {:?} waiting for {what}; {}",
                        self.settings.ready_timeout,
                        describe_status(&obj["status"])
                    ),
                ));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    async fn check(&self, url: Option<&str>, what: &str, progress: &dyn Progress) -> Result<Vec<String>, Failure> {
        let Some(settings) = &self.settings.check else {
            progress.event(ProgressEvent::Warning(format!(
                "{what} is not checked: no inference check (no sample configured); set \
                 `deployment.pre_deployment_test_sample_input_path` to check models before they serve"
            )));
            return Ok(vec![NO_CHECK_LINE.into()]);
        };
        let Some(url) = url else {
            return Err(Failure::new(
                ErrorKind::Other,
                format!("{} reports no URL for {what}, so it cannot be checked", self.what()),
            ));
        };
        let target = match &self.settings.check_base_url {
            Some(base) => CheckTarget {
                base_url: base.clone(),
                host: Some(host_of(url).to_owned()),
                model_name: self.settings.service_name.clone(),
            },
            None => {
                CheckTarget { base_url: url.to_owned(), host: None, model_name: self.settings.service_name.clone() }
            }
        };
        progress.event(ProgressEvent::Stage(format!("checking {what} at {url}")));
        match self.checker.check(&target, settings).await {
            Ok(report) => {
                let lines = report_lines(&report);
                for line in &lines {
                    progress.event(ProgressEvent::Message(line.clone()));
                }
                Ok(lines)
            }
            Err(e) => {
                Err(Failure::new(ErrorKind::Other, format!("the inference check of {what} at {url} failed: {e}")))
            }
        }
    }

    fn outcome(
        &self,
        created: bool,
        obj: &Value,
        revision: Option<String>,
        previous: Option<String>,
        checks: Vec<String>,
    ) -> DeployOutcome {
        DeployOutcome {
            service: self.settings.service_name.clone(),
            namespace: self.settings.namespace.clone(),
            created,
            revision,
            storage_uri: self.settings.storage_uri.clone(),
            url: main_url(obj).map(str::to_owned),
            previous_revision: previous,
            checks,
        }
    }

    /// Refuse (before applying) an InferenceService labelled for another repository than [`REPO_LABEL`] in the settings.
    fn refuse_foreign(&self, current: &Value) -> Result<(), Error> {
        let Some(ours) = self.settings.labels.get(REPO_LABEL) else {
            return Ok(());
        };
        match current["metadata"]["labels"][REPO_LABEL].as_str() {
            Some(theirs) if theirs != ours => Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "InferenceService {} in {} belongs to repository {theirs} (label `{REPO_LABEL}`), not {ours}; \
                     nothing was changed. Deploy under another service name, or remove the label if the service \
                     really moved to this repository",
                    self.settings.service_name, self.settings.namespace
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Refuse (before applying) a Knative update KServe would not run as a canary at 0 %.
    fn refuse_unsafe_canary(&self, current: &Value, manifest: &Value) -> Result<(), Error> {
        if predictor(current, "latestRolledoutRevision").is_none() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} has no rolled-out revision (`status.components.predictor.latestRolledoutRevision` is empty), \
                     and without one KServe ignores canaryTrafficPercent: the new model would get 100 % of the \
                     traffic as soon as it is ready, before kfops could check it; nothing was changed. Wait until \
                     the current revision is fully rolled out (`kubectl get isvc` shows it ready with all traffic), \
                     or delete the InferenceService and deploy again as a first deploy (this interrupts serving)",
                    self.what()
                ),
            ));
        }
        let wanted = &manifest["spec"]["predictor"]["name"];
        let existing = &current["spec"]["predictor"]["name"];
        if wanted != existing {
            let show = |v: &Value| v.as_str().map_or("(none)".to_owned(), |s| format!("`{s}`"));
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the manifest changes `spec.predictor.name` of {} from {} to {}: that renames the predictor \
                     component, which starts a new revision history without a rolled-out revision, so KServe would \
                     give the new model 100 % of the traffic before kfops could check it; nothing was changed. Keep \
                     `spec.predictor.name` as it is in the manifest template",
                    self.what(),
                    show(existing),
                    show(wanted)
                ),
            ));
        }
        Ok(())
    }

    async fn first_deploy(&self, manifest: &Value, progress: &dyn Progress) -> Result<DeployOutcome, Error> {
        progress.event(ProgressEvent::Stage(format!("applying the new {}", self.what())));
        if let Err(f) = self.apply(manifest, "creating").await {
            if !f.changed {
                return Err(finish(f, "nothing was created".into()));
            }
            let rollback = self.delete_new(progress).await;
            return Err(finish(f, rollback));
        }
        let mode = self.settings.mode;
        let result = async {
            progress.event(ProgressEvent::Stage(format!("waiting until {} is ready", self.what())));
            let obj = self.wait_for("the new InferenceService to become ready", |o| first_ready(o, mode)).await?;
            let checks = self.check(main_url(&obj), "the new InferenceService", progress).await?;
            Ok::<_, Failure>((obj, checks))
        }
        .await;
        match result {
            Ok((obj, checks)) => {
                let revision = predictor(&obj, "latestReadyRevision").map(str::to_owned);
                progress.event(ProgressEvent::Message(format!("{} is serving", self.what())));
                Ok(self.outcome(true, &obj, revision, None, checks))
            }
            Err(f) => {
                let rollback = self.delete_new(progress).await;
                Err(finish(f, rollback))
            }
        }
    }

    async fn delete_new(&self, progress: &dyn Progress) -> String {
        progress.event(ProgressEvent::Stage(format!("rolling back: deleting the new {}", self.what())));
        match self.api.delete(&self.settings.service_name, &DeleteParams::default()).await {
            Ok(_) => format!("rolled back: the new {} was deleted", self.what()),
            Err(kube::Error::Api(s)) if s.code == 404 => format!("rolled back: {} does not exist", self.what()),
            Err(e) => format!("rollback failed: deleting {} failed: {e}", self.what()),
        }
    }

    async fn canary(&self, current: Value, manifest: &Value, progress: &dyn Progress) -> Result<DeployOutcome, Error> {
        let previous = predictor(&current, "latestRolledoutRevision").map(str::to_owned);
        let created_before = predictor(&current, "latestCreatedRevision").map(str::to_owned);
        let previous_manifest = previous_manifest(&current, manifest, &self.settings);
        if unchanged(manifest, &current) {
            progress.event(ProgressEvent::Message(format!("{} already serves this model; nothing to do", self.what())));
            let lines = vec![format!("unchanged: {} already serves {}", self.what(), self.settings.storage_uri)];
            return Ok(self.outcome(false, &current, previous.clone(), previous, lines));
        }

        let mut canary = manifest.clone();
        canary["spec"]["predictor"]["canaryTrafficPercent"] = json!(0);
        let shown_prev = previous.as_deref().unwrap_or("(none)");
        progress.event(ProgressEvent::Stage(format!(
            "applying the new model as a canary at 0 % (revision {shown_prev} keeps all traffic)"
        )));
        if let Err(f) = self.apply(&canary, "applying the canary to").await {
            if !f.changed {
                return Err(finish(f, "nothing was changed".into()));
            }
            let rollback = self.roll_back(&previous_manifest, previous.as_deref(), progress).await;
            return Err(finish(f, rollback));
        }

        let result = async {
            progress.event(ProgressEvent::Stage("waiting for the new revision".into()));
            let obj = self
                .wait_for("the new revision", |o| canary_ready(o, created_before.as_deref(), previous.as_deref()))
                .await?;
            let revision = predictor(&obj, "latestReadyRevision").unwrap_or_default().to_owned();
            progress.event(ProgressEvent::Message(format!("revision {revision} is ready with 0 % of the traffic")));
            let url = tagged_url(&obj, "latest");
            let checks = self.check(url, &format!("revision {revision}"), progress).await?;
            progress.event(ProgressEvent::Stage(format!("promoting revision {revision} to 100 %")));
            self.apply(manifest, "promoting").await?;
            let obj = self
                .wait_for(&format!("revision {revision} to get 100 % of the traffic"), |o| {
                    if percent_of(o, &revision) == 100 { Judgement::Done } else { Judgement::Pending }
                })
                .await?;
            Ok::<_, Failure>((obj, revision, checks))
        }
        .await;
        match result {
            Ok((obj, revision, checks)) => {
                progress.event(ProgressEvent::Message(format!("revision {revision} serves 100 % of the traffic")));
                Ok(self.outcome(false, &obj, Some(revision), previous, checks))
            }
            Err(f) => {
                let rollback = self.roll_back(&previous_manifest, previous.as_deref(), progress).await;
                Err(finish(f, rollback))
            }
        }
    }

    /// Re-apply the previous spec pinned at `canaryTrafficPercent: 0` and wait until `previous` has 100 %.
    async fn roll_back(&self, previous_manifest: &Value, previous: Option<&str>, progress: &dyn Progress) -> String {
        let shown = previous.unwrap_or("(unknown)");
        progress.event(ProgressEvent::Stage(format!("rolling back to revision {shown}")));
        let mut pinned = previous_manifest.clone();
        if previous.is_some() {
            pinned["spec"]["predictor"]["canaryTrafficPercent"] = json!(0);
        }
        if let Err(f) = self.apply(&pinned, "re-applying the previous spec of").await {
            return format!("rollback failed: {}", f.message);
        }
        let Some(previous) = previous else {
            return "rolled back: the previous spec was re-applied (no previously rolled-out revision was known)"
                .into();
        };
        let waited = self
            .wait_for(&format!("traffic to return to revision {previous}"), |o| {
                if percent_of(o, previous) == 100 { Judgement::Done } else { Judgement::Pending }
            })
            .await;
        match waited {
            Ok(_) => {
                progress
                    .event(ProgressEvent::Message(format!("revision {previous} serves 100 % of the traffic again")));
                format!(
                    "rolled back to revision {previous} (100 % of the traffic; the previous spec is pinned with canaryTrafficPercent: 0)"
                )
            }
            Err(f) => format!("rollback failed: {}", f.message),
        }
    }
}

#[async_trait]
impl DeployTarget for KserveTarget {
    async fn deploy(&self, request: DeployRequest, progress: &dyn Progress) -> kfops_core::Result<DeployOutcome> {
        let vars = TemplateVars {
            run_id: Some(request.run_id.0.clone()),
            version_id: request.version_id.clone(),
            sha: request.sha.as_ref().map(|s| s.0.clone()),
            pr: request.pr.as_ref().map(|p| p.number),
        };
        let manifest = manifest::build(&self.settings, &vars).map_err(|e| {
            Error::new(ErrorKind::InvalidInput, format!("cannot build the manifest of {}: {e}", self.what()))
                .with_source(e)
        })?;
        if self.settings.mode == DeploymentMode::Knative {
            let host = format!("latest-{}-predictor", self.settings.service_name);
            if host.len() > DNS_LABEL_MAX {
                progress.event(ProgressEvent::Warning(format!(
                    "the canary's tag host `{host}` is {} characters, over the {DNS_LABEL_MAX}-character DNS label \
                     limit: Knative may not publish the `latest` tag URL, and the canary cannot be checked; use a \
                     service name of at most {} characters",
                    host.len(),
                    DNS_LABEL_MAX - (host.len() - self.settings.service_name.len())
                )));
            }
        }
        if request.environment == Environment::Production && self.settings.check.is_none() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "refusing to deploy to production without an inference check: production deploys need \
                     `deployment.pre_deployment_test_sample_input_path` (a sample request for the model); \
                     {} was not changed",
                    self.what()
                ),
            ));
        }
        progress.event(ProgressEvent::Stage(format!(
            "deploying {} to {} ({} mode, {})",
            self.settings.storage_uri,
            self.what(),
            self.settings.mode.as_str(),
            request.environment
        )));
        let current = self.get().await.map_err(|f| finish(f, "nothing was changed".into()))?;
        let Some(current) = current else {
            return self.first_deploy(&manifest, progress).await;
        };
        self.refuse_foreign(&current)?;
        let existing_mode = current["metadata"]["annotations"][MODE_ANNOTATION]
            .as_str()
            .or(current["status"]["deploymentMode"].as_str())
            .and_then(DeploymentMode::from_annotation);
        if let Some(existing) = existing_mode
            && existing != self.settings.mode
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} runs in {} mode, but the deployment is configured for {} mode; KServe cannot switch an existing \
                     InferenceService's mode in place: configure {} mode, or delete the InferenceService first \
                     (this interrupts serving); nothing was changed",
                    self.what(),
                    existing.as_str(),
                    self.settings.mode.as_str(),
                    existing.as_str()
                ),
            ));
        }
        if existing_mode.is_none() && !looks_knative(&current) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} has neither the `{MODE_ANNOTATION}` annotation nor `status.deploymentMode`, and its status \
                     shows no Knative revisions and traffic (`status.components.predictor.latestCreatedRevision`, \
                     `traffic`), so kfops cannot tell whether a canary would be honoured (in Standard mode the new \
                     model would replace the serving one unchecked); nothing was changed. Set the annotation on the \
                     InferenceService to its actual mode, or wait until KServe reports its status",
                    self.what()
                ),
            ));
        }
        match self.settings.mode {
            DeploymentMode::Knative => {
                self.refuse_unsafe_canary(&current, &manifest)?;
                self.canary(current, &manifest, progress).await
            }
            DeploymentMode::Standard => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} already exists in Standard mode, where KServe ignores canaryTrafficPercent: applying would replace \
                     the serving model before kfops could check it. kfops does not yet drive Standard mode's `spec.canary` \
                     (KServe v0.20, Gateway API HTTPRoute weights). Use Knative mode for checked canary rollouts; \
                     nothing was changed",
                    self.what()
                ),
            )),
        }
    }
}

fn finish(f: Failure, rollback: String) -> Error {
    let error = Error::new(f.kind, format!("{}; {rollback}", f.message));
    match f.source {
        Some(source) => error.with_source(source),
        None => error,
    }
}

fn obj_json(obj: &DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

fn predictor<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["status"]["components"]["predictor"][field].as_str().filter(|s| !s.is_empty())
}

fn traffic(obj: &Value) -> &[Value] {
    obj["status"]["components"]["predictor"]["traffic"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Percent of the traffic on `revision` (summing its entries).
fn percent_of(obj: &Value, revision: &str) -> i64 {
    traffic(obj).iter().filter(|t| t["revisionName"] == revision).filter_map(|t| t["percent"].as_i64()).sum()
}

fn tagged_url<'a>(obj: &'a Value, tag: &str) -> Option<&'a str> {
    traffic(obj).iter().find(|t| t["tag"] == tag).and_then(|t| t["url"].as_str())
}

fn main_url(obj: &Value) -> Option<&str> {
    obj["status"]["url"].as_str().or(predictor(obj, "url"))
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == ty)
}

fn is_true(obj: &Value, ty: &str) -> bool {
    condition(obj, ty).is_some_and(|c| c["status"] == "True")
}

/// kfops's own intent for the previous model, as an apply body for the rollback.
///
/// When the previous object records what kfops owns (`metadata.managedFields`, manager [`FIELD_MANAGER`],
/// operation `Apply`), exactly those fields with their previous values. Otherwise (an adopted service) the
/// configured labels and the annotations kfops sets, and of the spec only the fields the new manifest sets plus
/// the previous `spec.predictor.model` whole. Either way name and namespace are included and fields only other
/// managers set (e.g. `minReplicas` by an operator) are left out, so the forced apply does not take them over.
fn previous_manifest(previous: &Value, manifest: &Value, settings: &KserveSettings) -> Value {
    let owned = previous["metadata"]["managedFields"].as_array().and_then(|entries| {
        entries.iter().find(|e| {
            e["manager"] == FIELD_MANAGER
                && e["operation"] == "Apply"
                && e["subresource"].as_str().is_none_or(str::is_empty)
        })
    });
    let (mut metadata, mut spec) = match owned {
        Some(entry) => {
            let fields = &entry["fieldsV1"];
            (
                owned_part(&fields["f:metadata"], &previous["metadata"]).unwrap_or_else(|| json!({})),
                owned_part(&fields["f:spec"], &previous["spec"]).unwrap_or_else(|| json!({})),
            )
        }
        None => {
            let mut metadata = json!({});
            let labels: serde_json::Map<String, Value> = settings
                .labels
                .keys()
                .filter_map(|k| previous["metadata"]["labels"].get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            if !labels.is_empty() {
                metadata["labels"] = Value::Object(labels);
            }
            let annotations: serde_json::Map<String, Value> = manifest["metadata"]["annotations"]
                .as_object()
                .map(|ours| {
                    ours.keys()
                        .filter_map(|k| previous["metadata"]["annotations"].get(k).map(|v| (k.clone(), v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            if !annotations.is_empty() {
                metadata["annotations"] = Value::Object(annotations);
            }
            let mut spec = project(&manifest["spec"], &previous["spec"]).unwrap_or_else(|| json!({}));
            if previous["spec"]["predictor"]["model"].is_object() {
                spec["predictor"]["model"] = previous["spec"]["predictor"]["model"].clone();
            }
            (metadata, spec)
        }
    };
    metadata["name"] = previous["metadata"]["name"].clone();
    metadata["namespace"] = previous["metadata"]["namespace"].clone();
    if !spec["predictor"]["model"].is_object() && previous["spec"]["predictor"]["model"].is_object() {
        spec["predictor"]["model"] = previous["spec"]["predictor"]["model"].clone();
    }
    json!({
        "apiVersion": manifest::API_VERSION,
        "kind": manifest::KIND,
        "metadata": metadata,
        "spec": spec,
    })
}

/// The parts of `value` a `fieldsV1` set names (`f:<field>` keys, recursively; a field whose set names no
/// sub-fields, such as a list or a leaf, is taken whole).
fn owned_part(fields: &Value, value: &Value) -> Option<Value> {
    if value.is_null() {
        return None;
    }
    let children: Vec<(&str, &Value)> = fields
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| k.strip_prefix("f:").map(|name| (name, v))).collect())
        .unwrap_or_default();
    match value {
        Value::Object(obj) if !children.is_empty() => Some(Value::Object(
            children
                .into_iter()
                .filter_map(|(name, sub)| obj.get(name).and_then(|v| owned_part(sub, v)).map(|v| (name.to_owned(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// The parts of `source` at the keys `shape` has (objects recursively; anything else whole from `source`).
fn project(shape: &Value, source: &Value) -> Option<Value> {
    match (shape, source) {
        (Value::Object(keys), Value::Object(values)) => Some(Value::Object(
            keys.iter()
                .filter_map(|(k, sub)| values.get(k).and_then(|v| project(sub, v)).map(|v| (k.clone(), v)))
                .collect(),
        )),
        (_, Value::Null) => None,
        (_, v) => Some(v.clone()),
    }
}

/// Whether `sub` is contained in `sup` (objects key by key, everything else equal).
fn contained(sub: &Value, sup: &Value) -> bool {
    match (sub, sup) {
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| b.get(k).is_some_and(|w| contained(v, w))),
        _ => sub == sup,
    }
}

/// The existing InferenceService already has the desired spec and metadata, unpinned and fully rolled out.
fn unchanged(manifest: &Value, current: &Value) -> bool {
    let rolled_out = predictor(current, "latestReadyRevision").is_some()
        && predictor(current, "latestReadyRevision") == predictor(current, "latestCreatedRevision")
        && predictor(current, "latestReadyRevision") == predictor(current, "latestRolledoutRevision");
    rolled_out
        && current["spec"]["predictor"].get("canaryTrafficPercent").is_none()
        && contained(&manifest["spec"], &current["spec"])
        && contained(&manifest["metadata"], &current["metadata"])
}

fn model_failure(obj: &Value) -> Option<String> {
    let status = &obj["status"]["modelStatus"];
    let transition = status["transitionStatus"].as_str()?;
    if !matches!(transition, "BlockedByFailedLoad" | "InvalidSpec") {
        return None;
    }
    let info = &status["lastFailureInfo"];
    Some(format!(
        "model status {transition}{}",
        match (info["reason"].as_str(), info["message"].as_str()) {
            (Some(r), Some(m)) => format!(" ({r}: {m})"),
            (Some(r), None) => format!(" ({r})"),
            (None, Some(m)) => format!(" ({m})"),
            (None, None) => String::new(),
        }
    ))
}

/// `PredictorReady` or `Ready` is `False` with a [`TERMINAL_REASONS`] reason about `revision` (a message
/// naming another revision is stale and ignored).
fn revision_failure(obj: &Value, revision: &str) -> Option<String> {
    ["PredictorReady", "Ready"].iter().find_map(|ty| {
        let c = condition(obj, ty)?;
        let reason = c["reason"].as_str()?;
        if c["status"] != "False" || !TERMINAL_REASONS.contains(&reason) {
            return None;
        }
        let message = c["message"].as_str().unwrap_or_default();
        let about_other = message.contains("Revision \"") && !message.contains(&format!("\"{revision}\""));
        if about_other {
            return None;
        }
        Some(format!("revision {revision} failed ({ty}=False, {reason})"))
    })
}

/// Status proof of Knative mode: a created revision and a traffic list.
fn looks_knative(obj: &Value) -> bool {
    predictor(obj, "latestCreatedRevision").is_some() && !traffic(obj).is_empty()
}

fn first_ready(obj: &Value, mode: DeploymentMode) -> Judgement {
    if let Some(why) = model_failure(obj) {
        return Judgement::Failed(why);
    }
    if mode == DeploymentMode::Knative
        && let Some(why) = predictor(obj, "latestCreatedRevision").and_then(|c| revision_failure(obj, c))
    {
        return Judgement::Failed(why);
    }
    let ready = is_true(obj, "Ready");
    let done = match mode {
        DeploymentMode::Knative => {
            ready
                && predictor(obj, "latestReadyRevision").is_some()
                && predictor(obj, "latestReadyRevision") == predictor(obj, "latestCreatedRevision")
        }
        DeploymentMode::Standard => {
            let observed = obj["status"]["observedGeneration"].as_i64();
            let generation = obj["metadata"]["generation"].as_i64();
            ready && observed.zip(generation).is_none_or(|(o, g)| o >= g)
        }
    };
    if done { Judgement::Done } else { Judgement::Pending }
}

fn canary_ready(obj: &Value, created_before: Option<&str>, previous: Option<&str>) -> Judgement {
    let created = predictor(obj, "latestCreatedRevision");
    let Some(new) = created.filter(|c| Some(*c) != created_before) else {
        return Judgement::Pending;
    };
    if let Some(why) = model_failure(obj) {
        return Judgement::Failed(why);
    }
    if let Some(why) = revision_failure(obj, new) {
        return Judgement::Failed(why);
    }
    if let Some(previous) = previous
        && !traffic(obj).is_empty()
    {
        let share = percent_of(obj, previous);
        if share < 100 {
            return Judgement::Failed(format!(
                "the previous revision {previous} has only {share} % of the traffic although the canary is pinned \
                 at 0 %: KServe routed traffic to the unchecked revision {new}"
            ));
        }
    }
    let ready = predictor(obj, "latestReadyRevision");
    let tagged = traffic(obj).iter().any(|t| t["revisionName"].as_str() == created && t["tag"] == "latest");
    let previous_serves = previous.is_none_or(|p| percent_of(obj, p) == 100);
    if ready == created && tagged && previous_serves { Judgement::Done } else { Judgement::Pending }
}

/// The conditions that are not `True` (type, status, reason, message) and the predictor's revisions.
fn describe_status(status: &Value) -> String {
    let mut parts = Vec::new();
    for c in status["conditions"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if c["status"] == "True" {
            continue;
        }
        let mut s = format!("{}={}", c["type"].as_str().unwrap_or("?"), c["status"].as_str().unwrap_or("?"));
        match (c["reason"].as_str(), c["message"].as_str()) {
            (Some(r), Some(m)) => s.push_str(&format!(" ({r}: {m})")),
            (Some(r), None) => s.push_str(&format!(" ({r})")),
            (None, Some(m)) => s.push_str(&format!(" ({m})")),
            (None, None) => {}
        }
        parts.push(s);
    }
    let conditions =
        if parts.is_empty() { "conditions: all True".to_owned() } else { format!("conditions: {}", parts.join(", ")) };
    let p = &status["components"]["predictor"];
    match (p["latestCreatedRevision"].as_str(), p["latestReadyRevision"].as_str()) {
        (Some(c), Some(r)) => format!("{conditions}; latestCreatedRevision {c}, latestReadyRevision {r}"),
        (Some(c), None) => format!("{conditions}; latestCreatedRevision {c}, no ready revision"),
        _ => conditions,
    }
}
