//! In-cluster image builds with [Kaniko](https://github.com/GoogleContainerTools/kaniko).
//!
//! One Kubernetes Job per image: Kaniko reads the build context from an
//! `s3://` URL (MinIO in Kubeflow, uploaded beforehand) and pushes the result
//! to the image reference.
//!
//! * [`job_manifest`] turns a [`KanikoJob`] into the Job. S3 credentials come
//!   from a Secret through `secretKeyRef`, never as literal values; registry
//!   credentials, when needed, from a Secret mounted at `/kaniko/.docker`.
//! * [`KanikoRunner::run`] creates the Job, polls it until it succeeds, fails
//!   (the tail of the Kaniko log is fetched) or times out, and always deletes
//!   it afterwards (also when the returned future is dropped). The Job also
//!   carries `ttlSecondsAfterFinished` and `activeDeadlineSeconds`, so the
//!   cluster cleans up even if kfops dies mid-build.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, Pod, PodSpec, PodTemplateSpec, SecretKeySelector, SecretVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};

use crate::error::KanikoError;

/// The Kaniko executor image (pinned).
pub const KANIKO_IMAGE: &str = "gcr.io/kaniko-project/executor:v1.23.2";
/// The name of the Kaniko container in the Job's pod.
pub const CONTAINER_NAME: &str = "kaniko";
/// Key of the S3 access key id in the credentials Secret.
pub const ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// Key of the S3 secret access key in the credentials Secret.
pub const SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Where the registry Secret (with a `config.json` key) is mounted.
pub const DOCKER_CONFIG_DIR: &str = "/kaniko/.docker";
/// How long a finished Job is kept before the cluster deletes it (a safety
/// net; [`KanikoRunner`] deletes it right away).
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 600;
/// The default for [`KanikoJob::active_deadline_seconds`].
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 3600;
/// The label every object created by kfops carries (`managed-by: kfops`).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The label naming the configured image a build Job is for.
pub const IMAGE_LABEL: &str = "kfops.dev/image";
/// The number of log lines fetched from a failed build.
pub const LOG_TAIL_LINES: i64 = 50;

const DNS_LABEL_MAX: usize = 63;
const SHORT_TAG_LEN: usize = 12;
const MAX_CONSECUTIVE_POLL_ERRORS: u32 = 3;

/// One in-cluster image build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KanikoJob {
    /// The configured image name (for labels and messages).
    pub image: String,
    /// The Job name: a DNS-1123 label of at most 63 characters, see [`job_name`].
    pub name: String,
    /// The namespace the Job runs in.
    pub namespace: String,
    /// Where the image is pushed (`--destination`), e.g. `registry:5000/team/trainer:ctx-0123`.
    pub image_reference: String,
    /// The build context archive, `s3://bucket/key.tar.gz`.
    pub context_url: String,
    /// The S3 endpoint, e.g. `http://minio-service.kubeflow:9000`.
    pub s3_endpoint: String,
    /// The S3 region (MinIO accepts any, e.g. `us-east-1`).
    pub s3_region: String,
    /// The Secret holding [`ACCESS_KEY_ID_KEY`] and [`SECRET_ACCESS_KEY_KEY`].
    pub credentials_secret: String,
    /// A Secret with a `config.json` key (Docker config with registry auth),
    /// mounted at [`DOCKER_CONFIG_DIR`].
    pub registry_secret: Option<String>,
    /// Push over plain HTTP / without TLS verification (`--insecure`, `--skip-tls-verify`).
    pub insecure: bool,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Extra labels for the Job and its pod.
    pub labels: BTreeMap<String, String>,
    /// The in-cluster time limit of the Job (`activeDeadlineSeconds`).
    pub active_deadline_seconds: i64,
}

/// The Job name for an image and its tag: `kaniko-<image>-<first 12 of tag>`,
/// lowercased, with anything but `[a-z0-9]` turned into `-`, shortened to a
/// DNS-1123 label (at most 63 characters).
pub fn job_name(image: &str, tag: &str) -> String {
    let image = dns_part(image);
    let tag: String = dns_part(tag).chars().take(SHORT_TAG_LEN).collect();
    let tag = tag.trim_matches('-');
    let fixed = "kaniko-".len() + if tag.is_empty() { 0 } else { tag.len() + 1 };
    let image: String = image.chars().take(DNS_LABEL_MAX - fixed).collect();
    let mut name = String::from("kaniko");
    for part in [image.trim_matches('-'), tag] {
        if !part.is_empty() {
            name.push('-');
            name.push_str(part);
        }
    }
    name
}

/// Lowercase, `[a-z0-9-]` only, no repeated or surrounding dashes.
fn dns_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A label value for the image name (at most 63 characters of `[A-Za-z0-9._-]`,
/// starting and ending alphanumeric).
fn label_value(s: &str) -> String {
    let mapped: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let cut: String = trimmed.chars().take(DNS_LABEL_MAX).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS_LABEL_MAX
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl KanikoJob {
    /// Checks what [`job_manifest`] relies on: DNS-1123 names, an `s3://`
    /// context, a destination and a positive deadline.
    pub fn validate(&self) -> Result<(), KanikoError> {
        let invalid = |reason: String| Err(KanikoError::InvalidJob { image: self.image.clone(), reason });
        if !is_dns_label(&self.name) {
            return invalid(format!(
                "Job name `{}` is not a DNS-1123 label (lowercase alphanumerics and `-`, at most 63 characters)",
                self.name
            ));
        }
        if !is_dns_label(&self.namespace) {
            return invalid(format!("namespace `{}` is not a DNS-1123 label", self.namespace));
        }
        if self.image_reference.trim().is_empty() || self.image_reference.contains(char::is_whitespace) {
            return invalid(format!("destination `{}` is not an image reference", self.image_reference));
        }
        match self.context_url.strip_prefix("s3://") {
            Some(rest) if rest.split_once('/').is_some_and(|(b, k)| !b.is_empty() && !k.is_empty()) => {}
            _ => return invalid(format!("build context `{}` is not an `s3://bucket/key` URL", self.context_url)),
        }
        if self.credentials_secret.is_empty() {
            return invalid("no Secret with the S3 credentials is configured".into());
        }
        if self.active_deadline_seconds <= 0 {
            return invalid(format!("active deadline must be positive, got {}", self.active_deadline_seconds));
        }
        if let Some(k) = self.build_args.keys().find(|k| k.is_empty() || k.contains(['=', ' '])) {
            return invalid(format!("build argument name `{k}` is invalid"));
        }
        Ok(())
    }

    /// The labels of the Job and its pod: the extra labels, then
    /// `app.kubernetes.io/managed-by: kfops` and `kfops.dev/image: <image>`.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(MANAGED_BY_LABEL.into(), "kfops".into());
        labels.insert(IMAGE_LABEL.into(), label_value(&self.image));
        labels
    }

    /// The Kaniko arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--dockerfile=Dockerfile".to_string(),
            format!("--context={}", self.context_url),
            format!("--destination={}", self.image_reference),
        ];
        args.extend(self.build_args.iter().map(|(k, v)| format!("--build-arg={k}={v}")));
        if self.insecure {
            args.push("--insecure".into());
            args.push("--skip-tls-verify".into());
        }
        args
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(false) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Kubernetes Job that builds `job` with Kaniko.
pub fn job_manifest(job: &KanikoJob) -> Job {
    let labels = job.all_labels();
    let (volumes, mounts) = match &job.registry_secret {
        Some(secret) => (
            Some(vec![Volume {
                name: "docker-config".into(),
                secret: Some(SecretVolumeSource { secret_name: Some(secret.clone()), ..Default::default() }),
                ..Default::default()
            }]),
            Some(vec![VolumeMount {
                name: "docker-config".into(),
                mount_path: DOCKER_CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]),
        ),
        None => (None, None),
    };
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(KANIKO_IMAGE.into()),
        args: Some(job.args()),
        env: Some(vec![
            env("AWS_REGION", &job.s3_region),
            env("S3_ENDPOINT", &job.s3_endpoint),
            env("S3_FORCE_PATH_STYLE", "true"),
            secret_env("AWS_ACCESS_KEY_ID", &job.credentials_secret, ACCESS_KEY_ID_KEY),
            secret_env("AWS_SECRET_ACCESS_KEY", &job.credentials_secret, SECRET_ACCESS_KEY_KEY),
        ]),
        volume_mounts: mounts,
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job.name.clone()),
            namespace: Some(job.namespace.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
            active_deadline_seconds: Some(job.active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes,
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Runs [`KanikoJob`]s in a cluster.
#[derive(Clone)]
pub struct KanikoRunner {
    client: kube::Client,
    poll_interval: Duration,
}

impl std::fmt::Debug for KanikoRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KanikoRunner").field("poll_interval", &self.poll_interval).finish_non_exhaustive()
    }
}

/// What one look at the Job said.
enum Phase {
    Running(String),
    Succeeded,
    Failed(String),
}

fn phase(status: Option<&JobStatus>) -> Phase {
    let Some(s) = status else { return Phase::Running("pending".into()) };
    let condition = |ty: &str| {
        s.conditions.iter().flatten().find(|c| c.type_ == ty && c.status == "True").map(|c| {
            match (c.reason.as_deref(), c.message.as_deref()) {
                (Some(r), Some(m)) => format!("{r}: {m}"),
                (Some(r), None) => r.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => ty.to_string(),
            }
        })
    };
    if s.succeeded.unwrap_or(0) >= 1 || condition("Complete").is_some() {
        return Phase::Succeeded;
    }
    if s.failed.unwrap_or(0) >= 1 || condition("Failed").is_some() {
        return Phase::Failed(condition("Failed").unwrap_or_else(|| "the Kaniko pod failed".into()));
    }
    let active = s.active.unwrap_or(0);
    Phase::Running(if active == 0 {
        "pending (no pod active yet)".into()
    } else {
        format!("{active} pod(s) active, {} ready", s.ready.unwrap_or(0))
    })
}

/// Deletes the Job if dropped while armed (e.g. when the build is cancelled).
struct DeleteOnDrop {
    jobs: Option<Api<Job>>,
    name: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let (Some(jobs), Ok(rt)) = (self.jobs.take(), tokio::runtime::Handle::try_current()) {
            let name = std::mem::take(&mut self.name);
            rt.spawn(async move {
                let _ = jobs.delete(&name, &DeleteParams::background()).await;
            });
        }
    }
}

impl KanikoRunner {
    /// The default time between two looks at a running Job.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

    /// A runner using `client`, polling every [`Self::DEFAULT_POLL_INTERVAL`].
    pub fn new(client: kube::Client) -> Self {
        KanikoRunner { client, poll_interval: Self::DEFAULT_POLL_INTERVAL }
    }

    /// Sets the time between two looks at a running Job.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Builds `job`: creates the Job, polls it until it succeeds, fails or
    /// `timeout` passes, and deletes it (background propagation, so its pod
    /// goes too) in every case once it was created, also when this future is
    /// dropped. Progress lines and, on failure, the log tail go to `on_log`.
    pub async fn run(
        &self,
        job: &KanikoJob,
        timeout: Duration,
        mut on_log: impl FnMut(&str),
    ) -> Result<(), KanikoError> {
        job.validate()?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &job.namespace);
        let kube_err =
            |action, e: kube::Error| KanikoError::Kube { image: job.image.clone(), action, source: Box::new(e) };
        match jobs.create(&PostParams::default(), &job_manifest(job)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() || s.code == 409 => {
                return Err(KanikoError::AlreadyExists {
                    image: job.image.clone(),
                    namespace: job.namespace.clone(),
                    name: job.name.clone(),
                });
            }
            Err(e) => return Err(kube_err("creating the Kaniko Job", e)),
        }
        on_log(&format!("created Kaniko Job {}/{} for {}", job.namespace, job.name, job.image_reference));
        let mut guard = DeleteOnDrop { jobs: Some(jobs.clone()), name: job.name.clone() };
        let result = self.watch(&jobs, job, timeout, &mut on_log).await;
        match jobs.delete(&job.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => on_log(&format!(
                "warning: could not delete Kaniko Job {}/{} (the cluster removes it {TTL_SECONDS_AFTER_FINISHED} s after it finishes): {e}",
                job.namespace, job.name
            )),
        }
        guard.jobs = None;
        result
    }

    async fn watch(
        &self,
        jobs: &Api<Job>,
        job: &KanikoJob,
        timeout: Duration,
        on_log: &mut impl FnMut(&str),
    ) -> Result<(), KanikoError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_status = "not observed yet".to_string();
        let mut errors = 0;
        loop {
            match jobs.get(&job.name).await {
                Ok(current) => {
                    errors = 0;
                    match phase(current.status.as_ref()) {
                        Phase::Succeeded => {
                            on_log(&format!("pushed {}", job.image_reference));
                            return Ok(());
                        }
                        Phase::Failed(reason) => {
                            let log_tail = self.log_tail(job).await;
                            for line in log_tail.lines() {
                                on_log(line);
                            }
                            return Err(KanikoError::BuildFailed { image: job.image.clone(), reason, log_tail });
                        }
                        Phase::Running(status) => {
                            if status != last_status {
                                on_log(&format!("Kaniko Job {}: {status}", job.name));
                            }
                            last_status = status;
                        }
                    }
                }
                Err(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => {
                    return Err(KanikoError::Kube {
                        image: job.image.clone(),
                        action: "reading the Kaniko Job",
                        source: Box::new(kube::Error::Api(s)),
                    });
                }
                Err(e) => {
                    errors += 1;
                    if errors >= MAX_CONSECUTIVE_POLL_ERRORS {
                        return Err(KanikoError::Kube {
                            image: job.image.clone(),
                            action: "reading the Kaniko Job",
                            source: Box::new(e),
                        });
                    }
                    on_log(&format!("warning: reading Kaniko Job {} failed (will retry): {e}", job.name));
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(KanikoError::Timeout { image: job.image.clone(), after: timeout, last_status });
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }

    /// The last [`LOG_TAIL_LINES`] lines of the Kaniko container of the
    /// Job's newest pod, or why they could not be read.
    async fn log_tail(&self, job: &KanikoJob) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &job.namespace);
        let list = match pods.list(&ListParams::default().labels(&format!("job-name={}", job.name))).await {
            Ok(list) => list,
            Err(e) => return format!("(the Kaniko pod could not be listed: {e})"),
        };
        let Some(pod) = list.items.iter().max_by_key(|p| p.metadata.creation_timestamp.clone()) else {
            return "(the Kaniko pod is gone; no log available)".into();
        };
        let Some(pod_name) = pod.metadata.name.as_deref() else {
            return "(the Kaniko pod has no name; no log available)".into();
        };
        let lp = LogParams {
            container: Some(CONTAINER_NAME.into()),
            tail_lines: Some(LOG_TAIL_LINES),
            ..Default::default()
        };
        match pods.logs(pod_name, &lp).await {
            Ok(log) if log.trim().is_empty() => format!("(pod {pod_name} wrote no log)"),
            Ok(log) => log.trim_end().to_string(),
            Err(e) => format!("(the log of pod {pod_name} could not be read: {e})"),
        }
    }
}
