//! The four integration points of kfops.
//!
//! The operations (build, run, deploy) are written once against these traits;
//! `kfops-kubeflow`, `kfops-scm` and `kfops-deploy` implement them, and the
//! binaries compose the implementations they were configured with.

use std::path::Path;

use async_trait::async_trait;

use crate::deploy::{DeployOutcome, DeployRequest};
use crate::error::Result;
use crate::image::{BuiltImage, ImageSpec};
use crate::pipeline::{
    CompiledPipeline, PipelineVersion, RunHandle, RunId, RunInfo, RunRequest, SourceInfo, VersionName,
};
use crate::progress::Progress;
use crate::scm::{
    CommentId, CommentRef, Label, Permission, PrRef, PullRequest, Reaction, RepoRef, Sha, WebhookOutcome,
};

/// Where pipelines are published and run: a Kubeflow Pipelines server or the embedded local runner.
#[async_trait]
pub trait PipelineBackend: Send + Sync {
    /// A short name for messages (`kubeflow`, `local`).
    fn name(&self) -> &str;

    /// Publish `pipeline` as version `version`.
    ///
    /// Idempotent per version name: if a version of that name exists, it is
    /// returned with `created: false` and nothing is uploaded.
    async fn publish(
        &self,
        pipeline: &CompiledPipeline,
        version: &VersionName,
        source: &SourceInfo,
    ) -> Result<PipelineVersion>;

    /// Start a run. Returns as soon as the backend accepted it.
    async fn start_run(&self, request: RunRequest) -> Result<RunHandle>;

    /// The current state of a run, its tasks and (where known) outputs.
    async fn run(&self, id: &RunId) -> Result<RunInfo>;

    /// Ask the backend to stop a run. Returns once the request is accepted;
    /// poll [`PipelineBackend::run`] for the final state.
    async fn terminate(&self, id: &RunId) -> Result<()>;
}

/// Builds and pushes the container images a pipeline uses.
#[async_trait]
pub trait ImageBuilder: Send + Sync {
    /// Build (or find already built) every image in `images`, reporting progress.
    ///
    /// On failure no partial result is returned: the error names the image
    /// that failed and carries the tail of its build log.
    async fn build(&self, images: &[ImageSpec], progress: &dyn Progress) -> Result<Vec<BuiltImage>>;
}

/// Where trained models are served (KServe).
#[async_trait]
pub trait DeployTarget: Send + Sync {
    /// Roll the model of `request.run_id` out: create on first deploy;
    /// otherwise canary at 0 % → ready → inference check → promote to 100 %.
    /// Any failure rolls back to the previous revision before returning the error.
    async fn deploy(&self, request: DeployRequest, progress: &dyn Progress) -> Result<DeployOutcome>;
}

/// A source-control host (GitHub, GitLab, Gitea/Forgejo) as the bot needs it.
#[async_trait]
pub trait ScmProvider: Send + Sync {
    /// The provider's registry name (`github`, `gitlab`, …).
    fn kind(&self) -> &str;

    /// Maximum comment length in characters, if the host has one (GitHub: 65 536).
    fn max_comment_chars(&self) -> Option<usize>;

    /// Fetch a pull request: head sha, base, mergeability, fork and draft flags, author.
    async fn pull_request(&self, pr: &PrRef) -> Result<PullRequest>;

    /// The highest permission `user` has on `repo`.
    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission>;

    /// Post a new comment on a PR.
    async fn post_comment(&self, pr: &PrRef, body: &str) -> Result<CommentId>;

    /// The first comment on `pr` written by `author` whose body contains `marker`, if any
    /// (lets a caller adopt a comment it may have posted before a crash instead of posting twice).
    async fn find_comment(&self, pr: &PrRef, author: &str, marker: &str) -> Result<Option<CommentId>>;

    /// Replace the body of a comment the bot posted earlier.
    async fn edit_comment(&self, pr: &PrRef, id: &CommentId, body: &str) -> Result<()>;

    /// React to a comment.
    async fn react(&self, comment: &CommentRef, reaction: Reaction) -> Result<()>;

    /// Add a label to a PR, creating the label in the repository if needed.
    async fn add_label(&self, pr: &PrRef, label: &Label) -> Result<()>;

    /// Remove a label from a PR; absent labels are not an error.
    async fn remove_label(&self, pr: &PrRef, label: &str) -> Result<()>;

    /// Every PR (open or closed) of `repo` carrying `label`.
    async fn prs_with_label(&self, repo: &RepoRef, label: &str) -> Result<Vec<PrRef>>;

    /// Whether the base branch has commits the PR head does not.
    async fn is_behind_base(&self, pr: &PrRef) -> Result<bool>;

    /// Merge the PR, but only if its head is still `expected_head`.
    async fn merge(&self, pr: &PrRef, expected_head: &Sha) -> Result<()>;

    /// Close the PR without merging.
    async fn close(&self, pr: &PrRef) -> Result<()>;

    /// Fetch exactly `pr.head_sha` into the empty directory `into`.
    ///
    /// Credentials go in headers, never in the URL or the checkout's config.
    async fn checkout(&self, pr: &PullRequest, into: &Path) -> Result<()>;
}

/// Authenticates and parses incoming webhooks of one SCM.
pub trait WebhookVerifier: Send + Sync {
    /// Verify the signature of `body` (before parsing anything), then parse it.
    ///
    /// `header` looks a header up case-insensitively. An `Err` of kind
    /// [`crate::ErrorKind::Unauthenticated`] means the request must be refused
    /// and nothing stored.
    fn verify_and_parse(&self, header: &dyn Fn(&str) -> Option<String>, body: &[u8]) -> Result<WebhookOutcome>;
}
