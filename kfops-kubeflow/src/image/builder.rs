//! The `local` image builder: the first of `docker`, `podman`, `buildah` on
//! `PATH` (or the configured one) builds and pushes each image.
//!
//! For each image the build context is assembled deterministically and hashed;
//! the tag is derived from the hash (and build args), and the registry is asked
//! whether that tag exists — a hit skips the build entirely. Misses are built
//! from a materialised copy of exactly the hashed context and pushed. Builds
//! run in parallel (bounded); the first failure stops the others and is
//! reported with the image's name and the tail of its log.

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

/// Builds images with a local container tool.
pub struct LocalImageBuilder {
    tool: PathBuf,
    project_root: PathBuf,
    build_args: BTreeMap<String, String>,
    registry: Arc<RegistryClient>,
    parallel: usize,
}

impl std::fmt::Debug for LocalImageBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalImageBuilder")
            .field("tool", &self.tool)
            .field("parallel", &self.parallel)
            .finish_non_exhaustive()
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
    /// A builder using `tool` for the project at `project_root`.
    pub fn new(
        tool: PathBuf,
        project_root: PathBuf,
        build_args: BTreeMap<String, String>,
        registry: RegistryClient,
    ) -> Self {
        LocalImageBuilder { tool, project_root, build_args, registry: Arc::new(registry), parallel: 2 }
    }

    /// Build at most `n` images at once (default 2).
    pub fn parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }
}

#[async_trait]
impl ImageBuilder for LocalImageBuilder {
    async fn build(&self, images: &[ImageSpec], progress: &dyn Progress) -> Result<Vec<BuiltImage>, CoreError> {
        let slots = Arc::new(Semaphore::new(self.parallel));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
        let mut set: JoinSet<(usize, Result<BuiltImage, CoreError>)> = JoinSet::new();
        for (i, image) in images.iter().cloned().enumerate() {
            let job = Job {
                image,
                tool: self.tool.clone(),
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

struct Job {
    image: ImageSpec,
    tool: PathBuf,
    root: PathBuf,
    args: BTreeMap<String, String>,
    registry: Arc<RegistryClient>,
    events: tokio::sync::mpsc::UnboundedSender<ProgressEvent>,
}

impl Job {
    fn is_docker(&self) -> bool {
        self.tool.file_name().is_some_and(|n| n == "docker")
    }

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
        let dir =
            tempfile::tempdir().map_err(|e| fail(ErrorKind::Other, format!("creating a temporary folder: {e}")))?;
        materialize(&context, dir.path())
            .map_err(|e| fail(ErrorKind::Other, format!("writing the build context: {e}")))?;
        self.say(format!("image `{name}`: building {reference}"));
        let mut build = Command::new(&self.tool);
        build.arg("build").arg("--tag").arg(&reference);
        for (k, v) in &self.args {
            build.arg("--build-arg").arg(format!("{k}={v}"));
        }
        build.arg("--file").arg(dir.path().join("Dockerfile")).arg(dir.path());
        self.stream(build, "build")
            .await
            .map_err(|tail| fail(ErrorKind::Other, format!("the build failed:\n{tail}")))?;
        let mut push = Command::new(&self.tool);
        push.arg("push");
        // podman and buildah take the TLS choice per push; docker's insecure registries are a daemon setting.
        if self.image.insecure && !self.is_docker() {
            push.arg("--tls-verify=false");
        }
        push.arg(&reference);
        self.stream(push, "push")
            .await
            .map_err(|tail| fail(ErrorKind::Unavailable, format!("pushing {reference} failed:\n{tail}")))?;
        Ok(BuiltImage { name, reference, built: true })
    }

    /// Run a tool command, streaming its output as log events; on failure, the log tail.
    async fn stream(&self, mut cmd: Command, what: &str) -> Result<(), String> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start `{}` ({what}): {e}", self.tool.display()))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("cannot read the tool's output".into());
        };
        let mut lines = BufReader::new(out).lines();
        let mut err_lines = BufReader::new(err).lines();
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let push_line = |line: String, tail: &mut std::collections::VecDeque<String>| {
            let _ = self.events.send(ProgressEvent::Log { source: self.image.name.clone(), line: line.clone() });
            tail.push_back(line);
            if tail.len() > LOG_TAIL {
                tail.pop_front();
            }
        };
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            tokio::select! {
                line = lines.next_line(), if !out_done => match line {
                    Ok(Some(l)) => push_line(l, &mut tail),
                    _ => out_done = true,
                },
                line = err_lines.next_line(), if !err_done => match line {
                    Ok(Some(l)) => push_line(l, &mut tail),
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
