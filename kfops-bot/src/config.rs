//! The bot's own configuration file (`kfops-bot serve --config FILE`).
//!
//! Everything that decides what the bot may do lives here, never in the
//! pull request: which repositories it serves, who may run what, which
//! Kubeflow it talks to and with which credentials, how images are built.
//! A repository's `kfops.yaml` only describes its pipeline; its `kubeflow`
//! section is ignored by the bot (a PR must not be able to send the bot's
//! credentials elsewhere).
//!
//! Secrets are never written in the file itself: each is a [`SecretSource`]
//! naming a file or an environment variable, read when the bot starts.
//!
//! Unknown keys are errors (a typo must not silently disable a rule), and
//! every error names the file, line and column and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::policy::Policy;

/// The whole bot configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    /// Address the HTTP server listens on (default `0.0.0.0:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the state store (`bot.db`) and per-command workdirs.
    pub state_dir: PathBuf,
    /// Repositories served: `owner/name` or `owner/*`.
    pub repositories: Vec<String>,
    /// GitHub connection, credentials and webhook secrets.
    pub github: GithubSection,
    /// The Kubeflow Pipelines server runs go to.
    pub kubeflow: KubeflowSection,
    /// How container images are built (only needed when repositories declare images).
    #[serde(default)]
    pub image_builder: Option<ImageBuilderSection>,
    /// Who may run which command.
    #[serde(default)]
    pub policy: Policy,
    /// Model deployment (`/deploy`, `/staging_deploy`); without it they are refused.
    #[serde(default)]
    pub deploy: Option<crate::deploy::DeploySection>,
    /// Worker settings.
    #[serde(default)]
    pub workers: WorkersSection,
    /// Largest accepted webhook body in bytes (default 1 MiB).
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_body_limit() -> usize {
    crate::server::DEFAULT_BODY_LIMIT
}

/// Where a secret comes from: exactly one of `file` or `env`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// A file holding the secret (surrounding whitespace is trimmed).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, &self.env) {
            (Some(p), _) => write!(f, "SecretSource(file {})", p.display()),
            (None, Some(v)) => write!(f, "SecretSource(env {v})"),
            (None, None) => f.write_str("SecretSource(none)"),
        }
    }
}

impl SecretSource {
    /// Read the secret now. `key` names the configuration key for messages.
    pub fn read(&self, key: &str) -> Result<String, ConfigError> {
        let value = match (&self.file, &self.env) {
            (Some(path), None) => std::fs::read_to_string(path).map_err(|e| ConfigError::Secret {
                key: key.to_owned(),
                message: format!("reading {}: {e}", path.display()),
            })?,
            (None, Some(var)) => std::env::var(var).map_err(|_| ConfigError::Secret {
                key: key.to_owned(),
                message: format!("the environment variable {var} is not set (or not UTF-8)"),
            })?,
            _ => {
                return Err(ConfigError::Secret {
                    key: key.to_owned(),
                    message: "give exactly one of `file` or `env`".into(),
                });
            }
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(ConfigError::Secret { key: key.to_owned(), message: "the secret is empty".into() });
        }
        Ok(value)
    }
}

/// `github:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSection {
    /// REST API root: `https://api.github.com` (default) or `https://HOST/api/v3` for Enterprise Server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// How the bot authenticates to GitHub.
    pub auth: GithubAuthSection,
    /// Webhook secrets; a delivery signed with any of them is accepted (rotation).
    pub webhook_secrets: Vec<SecretSource>,
    /// Extra logins whose comments are never commands (the bot's own login is always included).
    #[serde(default)]
    pub ignore_users: Vec<String>,
    /// Minimum spacing of content-creating requests in milliseconds (default 1000).
    #[serde(default = "default_pacing_ms")]
    pub pacing_ms: u64,
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

fn default_pacing_ms() -> u64 {
    1000
}

/// `github.auth`: either `token` + `login`, or `app_id` + `app_slug` + `private_key`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAuthSection {
    /// A personal access or machine-user token.
    #[serde(default)]
    pub token: Option<SecretSource>,
    /// The token owner's login (its comments are never commands).
    #[serde(default)]
    pub login: Option<String>,
    /// The GitHub App id: installation tokens are requested and refreshed per repository.
    #[serde(default)]
    pub app_id: Option<u64>,
    /// The App's slug (its comments appear as `<slug>[bot]`).
    #[serde(default)]
    pub app_slug: Option<String>,
    /// The App's private key (PEM).
    #[serde(default)]
    pub private_key: Option<SecretSource>,
}

impl GithubAuthSection {
    fn problems(&self) -> Vec<String> {
        let token = self.token.is_some() || self.login.is_some();
        let app = self.app_id.is_some() || self.app_slug.is_some() || self.private_key.is_some();
        match (token, app) {
            (true, true) => vec![
                "`github.auth`: give either `token` + `login` or `app_id` + `app_slug` + \
                                  `private_key`, not both"
                    .into(),
            ],
            (false, false) => vec![
                "`github.auth` is empty: give `token` + `login` (a token) or `app_id` + \
                                    `app_slug` + `private_key` (a GitHub App)"
                    .into(),
            ],
            (true, false) => ["token", "login"]
                .iter()
                .zip([self.token.is_none(), self.login.is_none()])
                .filter(|(_, missing)| *missing)
                .map(|(k, _)| format!("`github.auth.{k}` is missing (token authentication needs `token` and `login`)"))
                .collect(),
            (false, true) => ["app_id", "app_slug", "private_key"]
                .iter()
                .zip([self.app_id.is_none(), self.app_slug.is_none(), self.private_key.is_none()])
                .filter(|(_, missing)| *missing)
                .map(|(k, _)| {
                    format!(
                        "`github.auth.{k}` is missing (GitHub App authentication needs `app_id`, `app_slug` \
                         and `private_key`)"
                    )
                })
                .collect(),
        }
    }
}

/// `kubeflow:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeflowSection {
    /// KFP API endpoint.
    pub url: String,
    /// Web UI root for links, if different from `url`.
    #[serde(default)]
    pub ui_url: Option<String>,
    /// Namespace (multi-user Kubeflow); the PR cannot choose another one.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Credentials (default: the in-cluster service-account token if present, else none).
    #[serde(default)]
    pub auth: KubeflowAuthSection,
}

/// `kubeflow.auth`: at most one of these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeflowAuthSection {
    /// A bearer token.
    #[serde(default)]
    pub token: Option<SecretSource>,
    /// A session cookie (`name=value`).
    #[serde(default)]
    pub cookie: Option<SecretSource>,
    /// Send no credentials at all.
    #[serde(default)]
    pub none: bool,
}

/// `image_builder:`: the builder the bot uses for the images repositories declare.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageBuilderSection {
    /// `local` (docker/podman/buildah on the bot's host) or `kaniko` (Jobs in the cluster).
    pub builder: BuilderKind,
    /// Container tool for `local` (default: the first of docker, podman, buildah found).
    #[serde(default)]
    pub tool: Option<String>,
    /// Talk plain HTTP to the registry.
    #[serde(default)]
    pub insecure: bool,
    /// Registry prefixes repositories may push to; empty allows any.
    #[serde(default)]
    pub allowed_registries: Vec<String>,
    /// Kaniko settings (required for `kaniko`).
    #[serde(default)]
    pub kaniko: Option<KanikoSection>,
}

/// Which image builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuilderKind {
    /// A local container tool.
    Local,
    /// Kaniko Jobs in Kubernetes.
    Kaniko,
}

/// `image_builder.kaniko`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KanikoSection {
    /// Namespace the build Jobs run in.
    pub namespace: String,
    /// Secret (in that namespace) with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, for reading build contexts.
    pub credentials_secret: String,
    /// Secret with the registry credentials (`.dockerconfigjson`).
    #[serde(default)]
    pub registry_secret: Option<String>,
    /// Build timeout in seconds (default 1800).
    #[serde(default = "default_build_timeout")]
    pub timeout_seconds: u64,
    /// Bucket for build contexts (default `image-build-artifacts`).
    #[serde(default = "default_bucket")]
    pub context_bucket: String,
    /// S3/MinIO endpoint for build contexts.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// S3 access key id.
    #[serde(default)]
    pub s3_access_key: Option<String>,
    /// S3 secret key.
    #[serde(default)]
    pub s3_secret_key: Option<SecretSource>,
}

fn default_build_timeout() -> u64 {
    1800
}

fn default_bucket() -> String {
    "image-build-artifacts".into()
}

/// `workers:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersSection {
    /// Commands processed at once (default 4); commands of one PR always run one after another.
    pub concurrency: usize,
    /// Seconds between polls of a running pipeline run (default 10).
    pub poll_interval_seconds: f64,
    /// Longest pipeline compilation in seconds (default 300).
    pub compile_timeout_seconds: u64,
    /// Python interpreter with `kfp` for compiling (default: `$KFOPS_PYTHON`, then `python3`).
    pub python: Option<PathBuf>,
    /// How the PR's pipeline code is confined while it compiles (default `bubblewrap`).
    pub sandbox: SandboxKind,
    /// The `bwrap` executable (default: `bwrap` on `PATH`).
    pub bwrap: Option<PathBuf>,
}

/// `workers.sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxKind {
    /// bubblewrap: no network, no view of the bot's files or processes.
    Bubblewrap,
    /// No confinement beyond a scrubbed environment: the PR's code can read
    /// whatever the bot's user can. Only for trusted repositories.
    None,
}

impl Default for WorkersSection {
    fn default() -> Self {
        WorkersSection {
            concurrency: 4,
            poll_interval_seconds: 10.0,
            compile_timeout_seconds: 300,
            python: None,
            sandbox: SandboxKind::Bubblewrap,
            bwrap: None,
        }
    }
}

impl WorkersSection {
    /// The poll interval as a duration (at least 10 ms).
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.poll_interval_seconds.max(0.01))
    }
}

impl BotConfig {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<BotConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parse and check configuration text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<BotConfig, ConfigError> {
        let config: BotConfig = serde_yaml::from_str(text).map_err(|e| {
            let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
            ConfigError::Invalid { at: format!("{}{at}", path.display()), message: e.to_string() }
        })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.repositories.is_empty() {
            problems.push(
                "`repositories` is empty: list the repositories the bot serves (`owner/name` or `owner/*`)".into(),
            );
        }
        if let Err(e) = kfops_scm::github::RepoAllowlist::new(&self.repositories) {
            problems.push(format!("`repositories`: {e}"));
        }
        if self.github.webhook_secrets.is_empty() {
            problems.push("`github.webhook_secrets` is empty: give at least one `{file: …}` or `{env: …}`".into());
        }
        for (i, s) in self.github.webhook_secrets.iter().enumerate() {
            if s.file.is_some() == s.env.is_some() {
                problems.push(format!("`github.webhook_secrets[{i}]`: give exactly one of `file` or `env`"));
            }
        }
        if !(self.github.api_url.starts_with("https://") || self.github.api_url.starts_with("http://")) {
            problems.push(format!("`github.api_url` `{}` is not an http(s) URL", self.github.api_url));
        }
        if !(self.kubeflow.url.starts_with("https://") || self.kubeflow.url.starts_with("http://")) {
            problems.push(format!("`kubeflow.url` `{}` is not an http(s) URL", self.kubeflow.url));
        }
        problems.extend(self.github.auth.problems());
        let a = &self.kubeflow.auth;
        if usize::from(a.token.is_some()) + usize::from(a.cookie.is_some()) + usize::from(a.none) > 1 {
            problems.push("`kubeflow.auth`: give at most one of `token`, `cookie`, `none: true`".into());
        }
        if let Some(ib) = &self.image_builder
            && ib.builder == BuilderKind::Kaniko
            && ib.kaniko.is_none()
        {
            problems.push("`image_builder.builder` is `kaniko` but `image_builder.kaniko` is missing".into());
        }
        if self.workers.concurrency == 0 {
            problems.push("`workers.concurrency` must be at least 1".into());
        }
        if !(self.workers.poll_interval_seconds.is_finite() && self.workers.poll_interval_seconds > 0.0) {
            problems.push("`workers.poll_interval_seconds` must be a positive number".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { at: path.display().to_string(), message: problems.join("\n  ") })
        }
    }

    /// The webhook secrets, read now (for rotation: all of them are accepted).
    pub fn webhook_secrets(&self) -> Result<Vec<String>, ConfigError> {
        self.github
            .webhook_secrets
            .iter()
            .enumerate()
            .map(|(i, s)| s.read(&format!("github.webhook_secrets[{i}]")))
            .collect()
    }

    /// The bot's own login on GitHub (its comments are never commands).
    pub fn bot_login(&self) -> String {
        let auth = &self.github.auth;
        match (&auth.login, &auth.app_slug) {
            (Some(login), _) => login.clone(),
            (None, Some(slug)) => format!("{slug}[bot]"),
            (None, None) => String::new(),
        }
    }

    /// Where the state store lives.
    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join("bot.db")
    }

    /// Where per-command checkouts are made.
    pub fn workdir_root(&self) -> PathBuf {
        self.state_dir.join("work")
    }
}
