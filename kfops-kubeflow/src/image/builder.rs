//! Image builders: for each image the build context is assembled
//! deterministically and hashed;
//! the tag is derived from the hash (and build args), and the registry is asked
//! whether that tag exists — a hit skips the build entirely. Misses go to a
//! [`BuildBackend`]: [`LocalTool`] (docker, podman or buildah on this machine,
//! building a materialised copy of exactly the hashed context) or the
//! in-cluster Kaniko backend. Builds run in parallel (bounded); the first
//! failure stops the others and is reported with the image's name and the tail
//! of its log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use kfops_core::image::{BuiltImage, ImageSpec};
use kfops_core::progress::{Progress, ProgressEvent};
use kfops_core::{Error as CoreError, ErrorKind, ImageBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::context::{BuildContext, EntryKind};
use super::pin::ImageRef;
use super::registry::RegistryClient;

/// Container tools the local builder can drive, in the order they are looked for.
pub const TOOLS: [&str; 3] = ["docker", "podman", "buildah"];

/// How many log lines a failure report carries.
const LOG_TAIL: usize = 30;

/// Builds and pushes one image whose context is known (what differs between builders).
#[async_trait]
pub trait BuildBackend: Send + Sync + 'static {
    /// Build `reference` from `context` and push it; `log` receives output lines.
    /// On failure, the message to show (with the relevant log tail).
    async fn build_and_push(
        &self,
        image: &ImageSpec,
        context: &BuildContext,
        reference: &str,
        build_args: &BTreeMap<String, String>,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), String>;
}

/// An [`ImageBuilder`] over a [`BuildBackend`]: content-addressed tags, registry probe, parallel builds.
pub struct ContextImageBuilder<B> {
    backend: Arc<B>,
    project_root: PathBuf,
    build_args: BTreeMap<String, String>,
    registry: Arc<RegistryClient>,
    parallel: usize,
}

/// The `local` builder: docker, podman or buildah on this machine.
pub type LocalImageBuilder = ContextImageBuilder<LocalTool>;

impl<B> std::fmt::Debug for ContextImageBuilder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextImageBuilder").field("parallel", &self.parallel).finish_non_exhaustive()
    }
}

/// Find the container tool: `configured` (a name or path) or the first of [`TOOLS`] on `PATH`.
pub fn find_tool(configured: Option<&str>) -> Result<PathBuf, CoreError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let lookup = |name: &str| -> Option<PathBuf> {
        if name.contains('/') {
            return Path::new(name).is_file().then(|| PathBuf::from(name));
        }
        std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
    };
    match configured {
        Some(name) => lookup(name).ok_or_else(|| {
            CoreError::new(ErrorKind::NotFound, format!("the configured image build tool `{name}` is not installed"))
        }),
        None => TOOLS.iter().find_map(|t| lookup(t)).ok_or_else(|| {
            CoreError::new(
                ErrorKind::NotFound,
                "no container tool found to build images (looked for docker, podman, buildah on PATH); install one, or use the in-cluster `kaniko` builder",
            )
        }),
    }
}

impl LocalImageBuilder {
    /// A builder using the container `tool` for the project at `project_root`.
    pub fn new(
        tool: PathBuf,
        project_root: PathBuf,
        build_args: BTreeMap<String, String>,
        registry: RegistryClient,
    ) -> Self {
        ContextImageBuilder::with_backend(LocalTool { tool }, project_root, build_args, registry)
    }
}

impl<B: BuildBackend> ContextImageBuilder<B> {
    /// A builder that hands misses to `backend`.
    pub fn with_backend(
        backend: B,
        project_root: PathBuf,
        build_args: BTreeMap<String, String>,
        registry: RegistryClient,
    ) -> Self {
        ContextImageBuilder {
            backend: Arc::new(backend),
            project_root,
            build_args,
            registry: Arc::new(registry),
            parallel: 2,
        }
    }

    /// Build at most `n` images at once (default 2).
    pub fn parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }
}

#[async_trait]
impl<B: BuildBackend> ImageBuilder for ContextImageBuilder<B> {
    async fn build(&self, images: &[ImageSpec], progress: &dyn Progress) -> Result<Vec<BuiltImage>, CoreError> {
        let slots = Arc::new(Semaphore::new(self.parallel));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
        let mut set: JoinSet<(usize, Result<BuiltImage, CoreError>)> = JoinSet::new();
        for (i, image) in images.iter().cloned().enumerate() {
            let job = Job {
                image,
                backend: self.backend.clone(),
                root: self.project_root.clone(),
                args: self.build_args.clone(),
                registry: self.registry.clone(),
                events: tx.clone(),
            };
            let slots = slots.clone();
            set.spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return (i, Err(CoreError::new(ErrorKind::Canceled, "image builds were stopped")));
                };
                (i, job.run().await)
            });
        }
        drop(tx);
        let mut results: Vec<Option<BuiltImage>> = vec![None; images.len()];
        loop {
            tokio::select! {
                Some(event) = rx.recv() => progress.event(event),
                joined = set.join_next() => match joined {
                    None => break,
                    Some(Ok((i, Ok(built)))) => results[i] = Some(built),
                    Some(Ok((_, Err(e)))) => {
                        // The first failure stops the other builds (their processes are killed on drop).
                        set.abort_all();
                        while let Ok(event) = rx.try_recv() {
                            progress.event(event);
                        }
                        return Err(e);
                    }
                    Some(Err(e)) => {
                        set.abort_all();
                        return Err(CoreError::new(ErrorKind::Other, format!("an image build panicked: {e}")));
                    }
                },
            }
        }
        while let Ok(event) = rx.try_recv() {
            progress.event(event);
        }
        Ok(results.into_iter().flatten().collect())
    }
}

struct Job<B> {
    image: ImageSpec,
    backend: Arc<B>,
    root: PathBuf,
    args: BTreeMap<String, String>,
    registry: Arc<RegistryClient>,
    events: tokio::sync::mpsc::UnboundedSender<ProgressEvent>,
}

impl<B: BuildBackend> Job<B> {
    fn say(&self, message: String) {
        let _ = self.events.send(ProgressEvent::Message(message));
    }

    async fn run(self) -> Result<BuiltImage, CoreError> {
        let name = self.image.name.clone();
        let fail = |kind: ErrorKind, m: String| CoreError::new(kind, format!("image `{name}`: {m}"));
        let folder = self.image.dockerfile_folder.to_string_lossy().into_owned();
        let others: Vec<String> = self.image.other_folders.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let root = self.root.clone();
        let context = tokio::task::spawn_blocking(move || BuildContext::assemble(&root, &folder, &others))
            .await
            .map_err(|e| fail(ErrorKind::Other, format!("assembling the build context: {e}")))?
            .map_err(|e| fail(ErrorKind::InvalidInput, e.to_string()))?;
        let tag = context.tag(&self.args);
        let reference = format!("{}/{}:{tag}", self.image.registry.trim_end_matches('/'), self.image.name);
        match self.registry.manifest_exists(&ImageRef::parse(&reference)).await {
            Ok(true) => {
                self.say(format!("image `{name}`: {reference} already exists; not rebuilt"));
                return Ok(BuiltImage { name: name.clone(), reference, built: false });
            }
            Ok(false) => {}
            // The registry could not be asked: build anyway (the push will say if it is really unreachable).
            Err(e) => self.say(format!("image `{name}`: cannot check the registry ({e}); building")),
        }
        self.say(format!("image `{name}`: building {reference}"));
        let events = self.events.clone();
        let source = name.clone();
        let log = move |line: String| {
            let _ = events.send(ProgressEvent::Log { source: source.clone(), line });
        };
        self.backend
            .build_and_push(&self.image, &context, &reference, &self.args, &log)
            .await
            .map_err(|m| fail(ErrorKind::Other, m))?;
        Ok(BuiltImage { name, reference, built: true })
    }
}

/// The `local` backend: a container tool on this machine.
#[derive(Debug, Clone)]
pub struct LocalTool {
    /// docker, podman or buildah (path).
    pub tool: PathBuf,
}

impl LocalTool {
    fn is_docker(&self) -> bool {
        self.tool.file_name().is_some_and(|n| n == "docker")
    }

    /// Run a tool command, streaming its output to `log`; on failure, the log tail.
    async fn stream(&self, mut cmd: Command, what: &str, log: &(dyn Fn(String) + Send + Sync)) -> Result<(), String> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start `{}` ({what}): {e}", self.tool.display()))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("cannot read the tool's output".into());
        };
        let mut lines = BufReader::new(out).lines();
        let mut err_lines = BufReader::new(err).lines();
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut keep = |line: String| {
            log(line.clone());
            tail.push_back(line);
            if tail.len() > LOG_TAIL {
                tail.pop_front();
            }
        };
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            tokio::select! {
                line = lines.next_line(), if !out_done => match line {
                    Ok(Some(l)) => keep(l),
                    _ => out_done = true,
                },
                line = err_lines.next_line(), if !err_done => match line {
                    Ok(Some(l)) => keep(l),
                    _ => err_done = true,
                },
            }
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{} {what}` exited with {status}; last lines:\n{}",
                self.tool.display(),
                Vec::from(tail).join("\n")
            ))
        }
    }
}

#[async_trait]
impl BuildBackend for LocalTool {
    async fn build_and_push(
        &self,
        image: &ImageSpec,
        context: &BuildContext,
        reference: &str,
        build_args: &BTreeMap<String, String>,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary folder: {e}"))?;
        materialize(context, dir.path()).map_err(|e| format!("writing the build context: {e}"))?;
        let mut build = Command::new(&self.tool);
        build.arg("build").arg("--tag").arg(reference);
        for (k, v) in build_args {
            build.arg("--build-arg").arg(format!("{k}={v}"));
        }
        build.arg("--file").arg(dir.path().join("Dockerfile")).arg(dir.path());
        self.stream(build, "build", log).await.map_err(|tail| format!("the build failed:\n{tail}"))?;
        let mut push = Command::new(&self.tool);
        push.arg("push");
        // podman and buildah take the TLS choice per push; docker's insecure registries are a daemon setting.
        if image.insecure && !self.is_docker() {
            push.arg("--tls-verify=false");
        }
        push.arg(reference);
        self.stream(push, "push", log).await.map_err(|tail| format!("pushing {reference} failed:\n{tail}"))
    }
}

/// Write the context's entries (exactly what was hashed) into `dir`.
fn materialize(context: &BuildContext, dir: &Path) -> std::io::Result<()> {
    for entry in context.files() {
        let target = dir.join(entry.path());
        match entry.kind() {
            EntryKind::Dir => std::fs::create_dir_all(&target)?,
            EntryKind::File => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(entry.source(), &target)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(entry.mode()))?;
                }
            }
            EntryKind::Symlink { target: link } => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                #[cfg(unix)]
                std::os::unix::fs::symlink(link, &target)?;
            }
        }
    }
    Ok(())
}

/// The `kaniko` backend: the context is uploaded to S3-compatible storage
/// (MinIO in Kubeflow) and built by a Kaniko Job in the cluster; the Job and
/// the uploaded context are removed afterwards, whatever happened.
pub struct KanikoBackend {
    /// Runs the Jobs.
    pub runner: super::kaniko::KanikoRunner,
    /// Uploads contexts.
    pub s3: super::s3::S3Client,
    /// Bucket for contexts (created if missing).
    pub bucket: String,
    /// Namespace of the Jobs.
    pub namespace: String,
    /// The S3 endpoint as the Jobs reach it (e.g. `http://minio-service.kubeflow:9000`).
    pub s3_endpoint: String,
    /// The S3 region.
    pub s3_region: String,
    /// Secret with the S3 keys, for the Jobs.
    pub credentials_secret: String,
    /// Secret with a registry `config.json`, for pushing.
    pub registry_secret: Option<String>,
    /// Limit for one build.
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for KanikoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KanikoBackend")
            .field("namespace", &self.namespace)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl BuildBackend for KanikoBackend {
    async fn build_and_push(
        &self,
        image: &ImageSpec,
        context: &BuildContext,
        reference: &str,
        build_args: &BTreeMap<String, String>,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), String> {
        let tag = reference.rsplit_once(':').map_or(reference, |(_, t)| t);
        let archive = context.write_tar_gz(Vec::new()).map_err(|e| format!("packing the build context: {e}"))?;
        let key = format!("kfops/contexts/{}-{tag}.tar.gz", image.name);
        self.s3.ensure_bucket(&self.bucket).await.map_err(|e| format!("preparing the context bucket: {e}"))?;
        self.s3
            .put_object(&self.bucket, &key, archive, "application/gzip")
            .await
            .map_err(|e| format!("uploading the build context: {e}"))?;
        let job = super::kaniko::KanikoJob {
            image: image.name.clone(),
            name: super::kaniko::job_name(&image.name, tag),
            namespace: self.namespace.clone(),
            image_reference: reference.to_owned(),
            context_url: self.s3.object_url(&self.bucket, &key),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            credentials_secret: self.credentials_secret.clone(),
            registry_secret: self.registry_secret.clone(),
            insecure: image.insecure,
            build_args: build_args.clone(),
            labels: BTreeMap::new(),
            active_deadline_seconds: i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX),
        };
        let result = self.runner.run(&job, self.timeout, |line| log(line.to_owned())).await;
        // The context is only needed by the Job: remove it whatever happened.
        if let Err(e) = self.s3.delete_object(&self.bucket, &key).await {
            log(format!("could not remove the build context s3://{}/{key}: {e}", self.bucket));
        }
        result.map_err(|e| e.to_string())
    }
}

/// Where the `kaniko` backend runs and stores contexts (from `image_builder.kaniko` and `image_builder.minio`).
#[derive(Debug, Clone)]
pub struct KanikoSettings {
    /// Namespace of the build Jobs.
    pub namespace: String,
    /// Secret with `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, for the Jobs.
    pub credentials_secret: String,
    /// Secret with a registry `config.json`.
    pub registry_secret: Option<String>,
    /// Limit for one build.
    pub timeout: std::time::Duration,
    /// Context bucket.
    pub bucket: String,
    /// S3 endpoint (`host:port` or a URL); default `http://minio-service.kubeflow:9000`.
    pub s3_endpoint: Option<String>,
    /// S3 access and secret key; default: Kubeflow's `mlpipeline-minio-artifact` secret in `kubeflow`.
    pub s3_credentials: Option<(String, String)>,
}

/// Kubeflow's MinIO service, as the pipelines reach it.
pub const KUBEFLOW_MINIO: &str = "http://minio-service.kubeflow:9000";

impl KanikoBackend {
    /// Connect to the cluster (kubeconfig or in-cluster service account) and to the context storage.
    pub async fn connect(settings: KanikoSettings) -> Result<KanikoBackend, CoreError> {
        let client = kube::Client::try_default().await.map_err(|e| {
            CoreError::new(
                ErrorKind::Unavailable,
                format!("the kaniko builder needs a Kubernetes cluster, and none is configured (kubeconfig or in-cluster): {e}"),
            )
        })?;
        let (access, secret) = match settings.s3_credentials {
            Some(c) => c,
            None => {
                let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
                    kube::Api::namespaced(client.clone(), "kubeflow");
                let found = secrets.get("mlpipeline-minio-artifact").await.map_err(|e| {
                    CoreError::new(
                        ErrorKind::NotFound,
                        format!("reading the MinIO credentials from the secret kubeflow/mlpipeline-minio-artifact: {e}; or set image_builder.minio.credentials"),
                    )
                })?;
                let data: BTreeMap<String, String> = found
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                super::s3::credentials_from_secret(&data)
                    .map_err(|e| CoreError::new(ErrorKind::InvalidInput, e.to_string()))?
            }
        };
        let endpoint = match settings.s3_endpoint {
            Some(e) if e.contains("://") => e,
            Some(e) => format!("http://{e}"),
            None => KUBEFLOW_MINIO.to_owned(),
        };
        let s3 = super::s3::S3Client::new(super::s3::S3Config::new(endpoint.clone(), access, secret))
            .map_err(|e| CoreError::new(ErrorKind::InvalidInput, e.to_string()))?;
        Ok(KanikoBackend {
            runner: super::kaniko::KanikoRunner::new(client),
            s3,
            bucket: settings.bucket,
            namespace: settings.namespace,
            s3_endpoint: endpoint,
            s3_region: "us-east-1".to_owned(),
            credentials_secret: settings.credentials_secret,
            registry_secret: settings.registry_secret,
            timeout: settings.timeout,
        })
    }
}
