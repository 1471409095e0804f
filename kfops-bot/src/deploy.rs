//! `/deploy` and `/staging_deploy`: roll a PR's trained model out to KServe.
//!
//! What the bot decides (never the PR): whether deploys are enabled at all,
//! which namespaces and kubeconfig contexts the repository may deploy to,
//! where the inference check reaches the model, and who may deploy (the
//! policy). What the repository decides, from `kfops.yaml` at the commit the
//! deployed run was built from: the InferenceService (name, format, runtime,
//! resources, or a manifest template), the sample request and expected output.
//!
//! The run deployed is, per the ledger, the latest succeeded run of this PR,
//! or the one named by `--run-id` when it belongs to this PR. Production
//! additionally requires, before anything is touched, that the PR is not
//! behind its base, that its head is the commit that run was built from
//! (both waived by `--force`), and that GitHub considers it mergeable.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Notify;

use kfops_core::deploy::Environment;
use kfops_core::progress::ProgressEvent;
use kfops_core::{DeployTarget, Error, Progress};
use kfops_deploy::check::InferenceCheck;
use kfops_deploy::kserve::{KserveSettings, KserveTarget};

/// Connects deploy targets (one per environment and deploy).
#[async_trait]
pub trait DeployTargets: Send + Sync {
    /// A target for these settings (connects to the cluster named by `settings.context`).
    async fn target(&self, settings: KserveSettings) -> Result<Arc<dyn DeployTarget>, Error>;
}

/// KServe through the kubeconfig context (or in-cluster configuration), checked over HTTP.
pub struct KserveTargets {
    checker: Arc<dyn InferenceCheck>,
}

impl KserveTargets {
    /// Targets that run `checker` before promoting a model.
    pub fn new(checker: Arc<dyn InferenceCheck>) -> Self {
        KserveTargets { checker }
    }
}

impl std::fmt::Debug for KserveTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KserveTargets").finish_non_exhaustive()
    }
}

#[async_trait]
impl DeployTargets for KserveTargets {
    async fn target(&self, settings: KserveSettings) -> Result<Arc<dyn DeployTarget>, Error> {
        let target = KserveTarget::connect(settings, Arc::clone(&self.checker))
            .await
            .map_err(|e| Error::new(kfops_core::ErrorKind::Unavailable, format!("connecting to Kubernetes: {e}")))?;
        Ok(Arc::new(target))
    }
}

/// `deploy:` in the bot configuration. Without it, deploy commands are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySection {
    /// Where production deploys may go; without namespaces, `/deploy` is refused.
    pub production: EnvironmentLimits,
    /// Where staging deploys may go; without namespaces, `/staging_deploy` is refused.
    pub staging: EnvironmentLimits,
    /// Storage-URI prefixes models may be loaded from (e.g. `s3://trained-models/`); empty allows any.
    pub storage_uri_prefixes: Vec<String>,
    /// Accept `deployment.manifest_template_path` (the repository then controls the whole predictor
    /// pod: image, service account, volumes). Off by default.
    pub allow_manifest_templates: bool,
    /// Where the inference check reaches predictors (e.g. the ingress gateway), with the
    /// service's host name as `Host` header; default: the URLs KServe reports.
    pub check_base_url: Option<String>,
    /// Limit for each check request and for the model to report ready, in seconds (default 60).
    pub check_timeout_seconds: u64,
    /// How often the InferenceService status is polled during a rollout, in seconds (default 2).
    pub poll_interval_seconds: f64,
    /// Longest time a repository may ask a rollout to wait for readiness, in seconds (default 1800).
    pub max_ready_timeout_seconds: u64,
}

/// `deploy.production` / `deploy.staging`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentLimits {
    /// Namespaces repositories may deploy to in this environment (at least one to enable it).
    pub namespaces: Vec<String>,
    /// kubeconfig contexts repositories may name; empty allows only the default context.
    pub contexts: Vec<String>,
}

impl Default for DeploySection {
    fn default() -> Self {
        DeploySection {
            production: EnvironmentLimits::default(),
            staging: EnvironmentLimits::default(),
            storage_uri_prefixes: Vec::new(),
            allow_manifest_templates: false,
            check_base_url: None,
            check_timeout_seconds: 60,
            poll_interval_seconds: 2.0,
            max_ready_timeout_seconds: 1800,
        }
    }
}

impl DeploySection {
    /// The limits of `environment`.
    pub fn limits(&self, environment: Environment) -> &EnvironmentLimits {
        match environment {
            Environment::Production => &self.production,
            Environment::Staging => &self.staging,
        }
    }

    /// Why `namespace` / `context` may not be deployed to in `environment`, if they may not.
    pub fn refuse(&self, environment: Environment, namespace: &str, context: Option<&str>) -> Option<String> {
        let limits = self.limits(environment);
        if limits.namespaces.is_empty() {
            return Some(format!(
                "this bot does not deploy to {environment}: its configuration lists no namespace under \
                 `deploy.{environment}.namespaces`"
            ));
        }
        if !limits.namespaces.iter().any(|n| n == namespace) {
            return Some(format!(
                "`deployment.{environment}.namespace` `{namespace}` is not one this bot deploys {environment} \
                 models to (allowed: {})",
                limits.namespaces.join(", ")
            ));
        }
        if let Some(ctx) = context
            && !limits.contexts.iter().any(|c| c == ctx)
        {
            return Some(format!(
                "`deployment.{environment}.context` `{ctx}` is not one this bot deploys {environment} models to \
                 (allowed: {})",
                if limits.contexts.is_empty() {
                    "only the default context".to_owned()
                } else {
                    limits.contexts.join(", ")
                }
            ));
        }
        None
    }
}

/// Collects a rollout's progress for the status comment.
#[derive(Debug, Default)]
pub struct ProgressLine {
    latest: Mutex<Option<String>>,
    changed: Notify,
}

impl ProgressLine {
    /// The latest line, if any.
    pub fn latest(&self) -> Option<String> {
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Resolves after the next event.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Progress for ProgressLine {
    fn event(&self, event: ProgressEvent) {
        let line = match event {
            ProgressEvent::Stage(s) => s,
            ProgressEvent::Message(m) => m,
            ProgressEvent::Warning(w) => format!("warning: {w}"),
            ProgressEvent::Task { .. } | ProgressEvent::Log { .. } => return,
        };
        *self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(line);
        self.changed.notify_one();
    }
}

/// The values a deploy's templates may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    /// The run whose model is deployed.
    pub run_id: String,
    /// Its pipeline version id, when the ledger has it.
    pub version_id: Option<String>,
    /// The commit the run was built from.
    pub sha: String,
    /// The PR number.
    pub pr: u64,
    /// The deploy command's ledger id (a label on the InferenceService, for audits).
    pub command_id: i64,
    /// The repository (`owner/name`); the InferenceService is labelled with it and
    /// a service labelled for another repository is never touched.
    pub repo: String,
}

/// The KServe settings of one deploy: the repository's `deployment` section
/// (as of the deployed run's commit) within the limits of the bot's `deploy` section.
pub fn settings(
    loaded: &kfops_config::LoadedConfig,
    environment: Environment,
    section: &DeploySection,
    vars: &Vars,
) -> Result<KserveSettings, String> {
    use kfops_config::model::{DeployMode, ProtocolVersion};
    use kfops_deploy::check::{CheckSettings, Protocol};
    use kfops_deploy::kserve::DeploymentMode;
    use kfops_deploy::storage::{StorageUriTemplate, TemplateVars};

    let d = loaded.config.deployment.as_ref().ok_or_else(|| {
        "`kfops.yaml` has no `deployment` section; add one with `inference_service_name` and the targets".to_owned()
    })?;
    let target = match environment {
        Environment::Production => &d.production,
        Environment::Staging => d.staging.as_ref().ok_or_else(|| {
            "`kfops.yaml` has no `deployment.staging`; add it (with `namespace`) to use `/staging_deploy`".to_owned()
        })?,
    };
    if let Some(why) = section.refuse(environment, &target.namespace, target.context.as_deref()) {
        return Err(why);
    }
    if d.manifest_template_path.is_some() && !section.allow_manifest_templates {
        return Err("`deployment.manifest_template_path` is set, but this bot does not accept manifest templates \
             (they control the whole predictor pod); use `model_format` and the other `deployment` keys, or ask \
             the bot's operators to set `deploy.allow_manifest_templates`"
            .to_owned());
    }
    if !(d.storage_uri.contains("{run_id}") || d.storage_uri.contains("{version_id}")) {
        return Err(format!(
            "`deployment.storage_uri` `{}` must contain `{{run_id}}` or `{{version_id}}`, so the deployed model is \
             the one the run trained",
            d.storage_uri
        ));
    }
    if d.model_format.is_none() && d.manifest_template_path.is_none() {
        return Err("`deployment` needs `model_format` (e.g. `sklearn`) or `manifest_template_path`".to_owned());
    }
    let storage_uri = StorageUriTemplate::parse(&d.storage_uri)
        .and_then(|t| {
            t.render(&TemplateVars {
                run_id: Some(vars.run_id.clone()),
                version_id: vars.version_id.clone(),
                sha: Some(vars.sha.clone()),
                pr: Some(vars.pr),
            })
        })
        .map_err(|e| format!("`deployment.storage_uri`: {e}"))?;
    if !section.storage_uri_prefixes.is_empty()
        && !section.storage_uri_prefixes.iter().any(|p| storage_uri.starts_with(p))
    {
        return Err(format!(
            "the model's storage URI `{storage_uri}` is not under a prefix this bot loads models from ({})",
            section.storage_uri_prefixes.join(", ")
        ));
    }
    let read = |key: &str, rel: &str| {
        std::fs::read_to_string(loaded.resolve(rel)).map_err(|e| format!("`deployment.{key}` `{rel}`: {e}"))
    };
    let json = |key: &str, rel: &str| -> Result<serde_json::Value, String> {
        serde_json::from_str(&read(key, rel)?).map_err(|e| format!("`deployment.{key}` `{rel}` is not JSON: {e}"))
    };
    let manifest_template = match &d.manifest_template_path {
        Some(rel) => Some(read("manifest_template_path", rel)?),
        None => None,
    };
    let check = match &d.pre_deployment_test_sample_input_path {
        Some(rel) => Some(CheckSettings {
            protocol: d.protocol_version.map(|p| match p {
                ProtocolVersion::V1 => Protocol::V1,
                ProtocolVersion::V2 => Protocol::V2,
            }),
            sample: json("pre_deployment_test_sample_input_path", rel)?,
            expect: match &d.expected_output_path {
                Some(rel) => Some(json("expected_output_path", rel)?),
                None => None,
            },
            requests: d.check_requests,
            timeout: std::time::Duration::from_secs(section.check_timeout_seconds),
        }),
        None => None,
    };
    let resources = d.resources.as_ref().map(|r| serde_json::json!({ "requests": r.requests, "limits": r.limits }));
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("kfops.dev/run-id".to_owned(), vars.run_id.clone());
    labels.insert("kfops.dev/pr".to_owned(), vars.pr.to_string());
    labels.insert("kfops.dev/sha".to_owned(), vars.sha.get(..12).unwrap_or(&vars.sha).to_owned());
    labels.insert("kfops.dev/command".to_owned(), vars.command_id.to_string());
    labels.insert(kfops_deploy::kserve::REPO_LABEL.to_owned(), vars.repo.replace('/', "."));
    Ok(KserveSettings {
        service_name: d.inference_service_name.clone(),
        namespace: target.namespace.clone(),
        context: target.context.clone(),
        mode: match d.mode {
            DeployMode::Knative => DeploymentMode::Knative,
            DeployMode::Standard => DeploymentMode::Standard,
        },
        storage_uri,
        model_format: d.model_format.clone().unwrap_or_default(),
        runtime: d.runtime.clone(),
        protocol_version: d.protocol_version.map(|p| match p {
            ProtocolVersion::V1 => "v1".to_owned(),
            ProtocolVersion::V2 => "v2".to_owned(),
        }),
        service_account: d.service_account.clone(),
        resources,
        manifest_template,
        labels,
        ready_timeout: std::time::Duration::from_secs(d.ready_timeout_seconds.min(section.max_ready_timeout_seconds)),
        poll_interval: std::time::Duration::from_secs_f64(section.poll_interval_seconds.max(0.01)),
        check,
        check_base_url: section.check_base_url.clone(),
    })
}
