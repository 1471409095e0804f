//! The Kubeflow Pipelines v2beta1 REST client.
//!
//! [`KfpClient`] publishes compiled pipelines (idempotently per version name),
//! finds or creates experiments, and creates, lists, waits for, terminates and
//! retries runs. Around every call it:
//!
//! * asks `GET /apis/v2beta1/healthz` once (cached) whether the server runs in
//!   multi-user mode and which release it is, then sends `namespace` exactly
//!   where multi-user mode needs it (never in single-user mode, which rejects
//!   it) and only sends request fields the server release knows;
//! * adds the credentials ([`KfpAuth`]): a bearer token or a session cookie,
//!   from a value, an environment variable or a file re-read on every request;
//! * turns an authentication proxy's answer (a redirect, an HTML sign-in page)
//!   into [`KfpError::NotAuthenticated`] instead of a JSON parse error, and
//!   every error body shape into one [`KfpError::Api`];
//! * retries transient failures with exponential backoff and jitter
//!   ([`RetryPolicy`]); requests that create something are retried only when
//!   they cannot have been processed (connection refused) or the server said
//!   so (502, 503, 504, 429).

use std::ffi::OsString;
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kfops_core::pipeline::SourceInfo;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::types::{
    Experiment, Filter, Healthz, ListExperimentsResponse, ListPipelineVersionsResponse, ListPipelinesResponse,
    ListRunsResponse, Pipeline, PipelineVersion, Run, ServerVersion,
};
use crate::error::KfpError;

/// Path prefix of the v2beta1 API.
pub const API_PREFIX: &str = "/apis/v2beta1";
/// The server's upload limit (`common.MaxFileLength`).
pub const MAX_UPLOAD_BYTES: usize = 32 << 20;
/// Where Kubeflow mounts the pipelines service-account token in a pod.
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubeflow/pipelines/token";
/// The variable `kfp.Client` reads the token path from.
pub const TOKEN_PATH_ENV: &str = "KF_PIPELINES_SA_TOKEN_PATH";
/// The release that added `display_name` to the upload routes.
pub const DISPLAY_NAME_UPLOAD_SINCE: ServerVersion = ServerVersion::new(2, 14, 0);
/// The release that added pipeline and version `tags`.
pub const TAGS_SINCE: ServerVersion = ServerVersion::new(2, 17, 0);
/// The release that added `GET /pipelines/names/{name}`.
pub const PIPELINE_BY_NAME_SINCE: ServerVersion = ServerVersion::new(2, 0, 5);

/// The line of a version description that names the kfops version it was published as.
const VERSION_MARKER: &str = "kfops version: ";

/// Where the credentials come from. Values never appear in `Debug` output or errors.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KfpAuth {
    /// Resolved when the client is built: the token file named by
    /// `KF_PIPELINES_SA_TOKEN_PATH`, else [`DEFAULT_TOKEN_PATH`] if that file
    /// exists (a pod with the Kubeflow PodDefault), else no credentials.
    #[default]
    Auto,
    /// No credentials (standalone KFP, port-forward).
    None,
    /// A bearer token.
    Token(String),
    /// A bearer token read from this environment variable on every request.
    TokenEnv(String),
    /// A bearer token read from this file on every request (rotated service-account tokens).
    TokenFile(PathBuf),
    /// A session cookie `name=value` (Dex / oauth2-proxy).
    Cookie(String),
    /// A session cookie read from this environment variable on every request.
    CookieEnv(String),
    /// A session cookie read from this file on every request.
    CookieFile(PathBuf),
}

impl fmt::Debug for KfpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KfpAuth {
    /// What the credentials are and where they come from, without their value.
    pub fn describe(&self) -> String {
        match self {
            KfpAuth::Auto => "automatic (in-cluster service-account token if mounted)".into(),
            KfpAuth::None => "none".into(),
            KfpAuth::Token(_) => "a bearer token from the configuration".into(),
            KfpAuth::TokenEnv(var) => format!("a bearer token from the environment variable `{var}`"),
            KfpAuth::TokenFile(path) => format!("a bearer token from the file `{}`", path.display()),
            KfpAuth::Cookie(_) => "a session cookie from the configuration".into(),
            KfpAuth::CookieEnv(var) => format!("a session cookie from the environment variable `{var}`"),
            KfpAuth::CookieFile(path) => format!("a session cookie from the file `{}`", path.display()),
        }
    }

    /// Resolves [`KfpAuth::Auto`] from the process environment (other variants are returned as they are).
    pub fn resolve(self) -> KfpAuth {
        match self {
            KfpAuth::Auto => {
                KfpAuth::detect_in_cluster(std::env::var_os(TOKEN_PATH_ENV), Path::new(DEFAULT_TOKEN_PATH))
            }
            other => other,
        }
    }

    /// The in-cluster default: `token_path_env` (the value of
    /// `KF_PIPELINES_SA_TOKEN_PATH`) if set, else `default_path` if that file
    /// exists, else [`KfpAuth::None`].
    pub fn detect_in_cluster(token_path_env: Option<OsString>, default_path: &Path) -> KfpAuth {
        match token_path_env.filter(|p| !p.is_empty()) {
            Some(path) => KfpAuth::TokenFile(PathBuf::from(path)),
            None if default_path.is_file() => KfpAuth::TokenFile(default_path.to_path_buf()),
            None => KfpAuth::None,
        }
    }

    /// The header to send, read now (files and variables are read on every call).
    fn header(&self) -> Result<Option<(HeaderName, HeaderValue)>, KfpError> {
        let (name, value) = match self {
            KfpAuth::Auto | KfpAuth::None => return Ok(None),
            KfpAuth::Token(_) | KfpAuth::TokenEnv(_) | KfpAuth::TokenFile(_) => {
                let token = self.read_secret()?;
                (header::AUTHORIZATION, format!("Bearer {token}"))
            }
            KfpAuth::Cookie(_) | KfpAuth::CookieEnv(_) | KfpAuth::CookieFile(_) => {
                let cookie = self.read_secret()?;
                if !cookie.contains('=') {
                    return Err(
                        self.credentials_error("expected a cookie `name=value`, e.g. `oauth2_proxy_kubeflow=…`")
                    );
                }
                (header::COOKIE, cookie)
            }
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| self.credentials_error("it contains characters that cannot be sent in an HTTP header"))?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }

    fn read_secret(&self) -> Result<String, KfpError> {
        let raw = match self {
            KfpAuth::Token(v) | KfpAuth::Cookie(v) => v.clone(),
            KfpAuth::TokenEnv(var) | KfpAuth::CookieEnv(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => return Err(self.credentials_error("the variable is not set")),
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(self.credentials_error("the variable is not valid UTF-8"));
                }
            },
            KfpAuth::TokenFile(path) | KfpAuth::CookieFile(path) => {
                std::fs::read_to_string(path).map_err(|e| self.credentials_error(&e.to_string()))?
            }
            KfpAuth::Auto | KfpAuth::None => String::new(),
        };
        let value = raw.trim();
        if value.is_empty() {
            return Err(self.credentials_error("it is empty"));
        }
        Ok(value.to_owned())
    }

    fn credentials_error(&self, reason: &str) -> KfpError {
        let source_name = match self {
            KfpAuth::Token(_) => "kubeflow.auth.token".to_owned(),
            KfpAuth::Cookie(_) => "kubeflow.auth.cookie".to_owned(),
            KfpAuth::TokenEnv(var) | KfpAuth::CookieEnv(var) => format!("the environment variable `{var}`"),
            KfpAuth::TokenFile(path) | KfpAuth::CookieFile(path) => format!("the file `{}`", path.display()),
            KfpAuth::Auto | KfpAuth::None => "nowhere".to_owned(),
        };
        KfpError::Credentials { source_name, reason: reason.to_owned() }
    }
}

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (1 = no retries).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further retry (with jitter).
    pub initial_backoff: Duration,
    /// Upper bound of the exponential delay.
    pub max_backoff: Duration,
    /// Upper bound for a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The delay before retry number `retry` (1-based): half the exponential
    /// delay plus a random part of up to the other half.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let full = self.initial_backoff.saturating_mul(1 << exponent).min(self.max_backoff);
        let half = full / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// A uniformly distributed number in `[0, 1)`, from the standard library's randomly keyed hasher.
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// Everything needed to talk to one KFP server.
#[derive(Debug, Clone)]
pub struct KfpConfig {
    /// The API endpoint: `https://host/pipeline` (full Kubeflow),
    /// `http://localhost:3000` (port-forwarded UI service) or
    /// `http://ml-pipeline.kubeflow:8888` (API server). A trailing
    /// `/apis/v2beta1` is accepted and dropped.
    pub endpoint: String,
    /// Base of the web UI for links; defaults to the endpoint.
    pub ui_url: Option<String>,
    /// Profile namespace, used only when the server runs in multi-user mode.
    pub namespace: Option<String>,
    /// Credentials.
    pub auth: KfpAuth,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Limit for one request (connect, send, answer).
    pub request_timeout: Duration,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
}

impl KfpConfig {
    /// A configuration with defaults: automatic credentials, default retries,
    /// 120 s request and 10 s connect timeouts.
    pub fn new(endpoint: impl Into<String>) -> Self {
        KfpConfig {
            endpoint: endpoint.into(),
            ui_url: None,
            namespace: None,
            auth: KfpAuth::Auto,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the web UI base for links.
    pub fn with_ui_url(mut self, ui_url: impl Into<String>) -> Self {
        self.ui_url = Some(ui_url.into());
        self
    }

    /// Sets the profile namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the credentials.
    pub fn with_auth(mut self, auth: KfpAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// What `healthz` says about the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// Multi-user mode: namespaces are required on experiments, runs and uploads.
    pub multi_user: bool,
    /// The release tag, if the server reports one.
    pub tag_name: Option<String>,
    /// The release, if the tag parses as one.
    pub version: Option<ServerVersion>,
    /// `database` or `kubernetes`.
    pub pipeline_store: Option<String>,
    /// The server's build commit.
    pub commit_sha: Option<String>,
}

impl ServerInfo {
    /// Reads a `healthz` answer.
    pub fn from_healthz(healthz: Healthz) -> Self {
        ServerInfo {
            multi_user: healthz.multi_user.unwrap_or(false),
            version: healthz.tag_name.as_deref().and_then(ServerVersion::parse),
            tag_name: healthz.tag_name,
            pipeline_store: healthz.pipeline_store,
            commit_sha: healthz.commit_sha,
        }
    }

    /// Whether the server is known to be at least `version` (unknown releases are not).
    pub fn at_least(&self, version: ServerVersion) -> bool {
        self.version.is_some_and(|v| v >= version)
    }

    /// Whether the upload routes take `display_name`.
    pub fn supports_upload_display_name(&self) -> bool {
        self.at_least(DISPLAY_NAME_UPLOAD_SINCE)
    }

    /// Whether pipelines and versions take `tags`.
    pub fn supports_tags(&self) -> bool {
        self.at_least(TAGS_SINCE)
    }

    /// Whether `GET /pipelines/names/{name}` exists.
    pub fn supports_pipeline_by_name(&self) -> bool {
        self.at_least(PIPELINE_BY_NAME_SINCE)
    }
}

/// Paging, sorting and filtering of a list call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOptions {
    /// Items per page (server default 20, capped at 200).
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page (send the same `sort_by` and `filter`).
    pub page_token: Option<String>,
    /// `"<field>"`, `"<field> desc"` or `"<field> asc"`, e.g. `created_at desc`.
    pub sort_by: Option<String>,
    /// Predicates that must all hold.
    pub filter: Option<Filter>,
}

impl ListOptions {
    /// No paging, sorting or filtering.
    pub fn new() -> Self {
        ListOptions::default()
    }

    /// Sets the page size.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// Continues after a previous page.
    pub fn page_token(mut self, token: impl Into<String>) -> Self {
        self.page_token = Some(token.into());
        self
    }

    /// Sets the sort order.
    pub fn sort_by(mut self, sort_by: impl Into<String>) -> Self {
        self.sort_by = Some(sort_by.into());
        self
    }

    /// Sets the filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    fn push_query(&self, query: &mut Vec<(&'static str, String)>) {
        if let Some(token) = &self.page_token {
            query.push(("page_token", token.clone()));
        }
        if let Some(size) = self.page_size {
            query.push(("page_size", size.to_string()));
        }
        if let Some(sort) = &self.sort_by {
            query.push(("sort_by", sort.clone()));
        }
        if let Some(filter) = self.filter.as_ref().filter(|f| !f.predicates.is_empty()) {
            query.push(("filter", serde_json::to_string(filter).unwrap_or_default()));
        }
    }
}

/// One page of a list call.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Number of matches over all pages, if the server says.
    pub total_size: Option<i32>,
    /// Pass to [`ListOptions::page_token`] for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// What to publish: one compiled pipeline as one named version.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    /// The pipeline's name (unique per namespace).
    pub pipeline_name: String,
    /// A display name for a new pipeline (sent to servers 2.14+ only).
    pub pipeline_display_name: Option<String>,
    /// The pipeline's description.
    pub pipeline_description: Option<String>,
    /// The version name; see [`kfops_core::pipeline::VersionName::for_build`].
    pub version_name: String,
    /// The compiled pipeline, YAML (possibly multi-document).
    pub spec_yaml: String,
    /// Where it was built from; goes into the version's description (and tags on 2.17+).
    pub source: SourceInfo,
}

/// The result of [`KfpClient::publish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The pipeline's id.
    pub pipeline_id: String,
    /// The version's id.
    pub version_id: String,
    /// The version as the server reports it.
    pub version: PipelineVersion,
    /// `true` if this call uploaded the version, `false` if an existing one was reused.
    pub created: bool,
    /// `true` if this call also created the pipeline.
    pub pipeline_created: bool,
}

/// What a run executes.
#[derive(Debug, Clone, PartialEq)]
pub enum RunPipeline {
    /// A published version (`pipeline_version_reference`).
    Version {
        /// The pipeline's id.
        pipeline_id: String,
        /// The version's id; `None` runs the latest version.
        version_id: Option<String>,
    },
    /// An inline spec (`pipeline_spec`): the IR as JSON, or `{pipeline_spec, platform_spec}`.
    Spec(Value),
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRun {
    /// The run's name.
    pub display_name: String,
    /// Its description.
    pub description: Option<String>,
    /// The experiment (`None`: the server's default experiment; single-user only).
    pub experiment_id: Option<String>,
    /// What to run.
    pub pipeline: RunPipeline,
    /// Arguments by input name, typed as the pipeline declares them (numbers, booleans, lists, objects).
    pub parameters: Map<String, Value>,
    /// Kubernetes service account of the run's pods.
    pub service_account: Option<String>,
    /// Root of the output artifacts, if not the pipeline's default.
    pub pipeline_root: Option<String>,
}

impl CreateRun {
    /// The request body (`Run` message) as sent.
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("display_name".into(), Value::String(self.display_name.clone()));
        if let Some(d) = &self.description {
            body.insert("description".into(), Value::String(d.clone()));
        }
        if let Some(e) = &self.experiment_id {
            body.insert("experiment_id".into(), Value::String(e.clone()));
        }
        match &self.pipeline {
            RunPipeline::Version { pipeline_id, version_id } => {
                let mut reference = Map::new();
                reference.insert("pipeline_id".into(), Value::String(pipeline_id.clone()));
                if let Some(v) = version_id {
                    reference.insert("pipeline_version_id".into(), Value::String(v.clone()));
                }
                body.insert("pipeline_version_reference".into(), Value::Object(reference));
            }
            RunPipeline::Spec(spec) => {
                body.insert("pipeline_spec".into(), spec.clone());
            }
        }
        let mut runtime = Map::new();
        runtime.insert("parameters".into(), Value::Object(self.parameters.clone()));
        if let Some(root) = &self.pipeline_root {
            runtime.insert("pipeline_root".into(), Value::String(root.clone()));
        }
        body.insert("runtime_config".into(), Value::Object(runtime));
        if let Some(sa) = &self.service_account {
            body.insert("service_account".into(), Value::String(sa.clone()));
        }
        Value::Object(body)
    }
}

/// How [`KfpClient::wait_for_run`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Pause between polls.
    pub poll_interval: Duration,
    /// Give up after this long (`None`: wait as long as it takes).
    pub timeout: Option<Duration>,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions { poll_interval: Duration::from_secs(5), timeout: None }
    }
}

/// One line naming the source: `Source: owner/repo, pull request #12, commit abc…`.
pub fn source_line(source: &SourceInfo) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(repo) = source.repository.as_deref().filter(|r| !r.is_empty()) {
        parts.push(repo.to_owned());
    }
    if let Some(pr) = source.pull_request {
        parts.push(format!("pull request #{pr}"));
    }
    if let Some(branch) = source.branch.as_deref().filter(|b| !b.is_empty()) {
        parts.push(format!("branch {branch}"));
    }
    if let Some(commit) = source.commit.as_deref().filter(|c| !c.is_empty()) {
        parts.push(format!("commit {commit}"));
    }
    (!parts.is_empty()).then(|| format!("Source: {}", parts.join(", ")))
}

/// The description kfops gives a version: the pipeline's description, the
/// source line, and a line naming the version (so the first version of a
/// pipeline, which the server names after the pipeline, is found again).
pub fn version_description(pipeline_description: Option<&str>, source: &SourceInfo, version_name: &str) -> String {
    let mut out = String::new();
    if let Some(d) = pipeline_description.map(str::trim).filter(|d| !d.is_empty()) {
        out.push_str(d);
        out.push_str("\n\n");
    }
    if let Some(line) = source_line(source) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(VERSION_MARKER);
    out.push_str(version_name);
    out
}

/// Whether a version's description marks it as published as `version_name`.
fn has_version_marker(version: &PipelineVersion, version_name: &str) -> bool {
    version
        .description
        .as_deref()
        .is_some_and(|d| d.lines().any(|l| l.trim().strip_prefix(VERSION_MARKER) == Some(version_name)))
}

/// The version tags kfops sets on servers that support tags (values over the
/// server's 63-character limit are left out).
fn source_tags(source: &SourceInfo) -> Map<String, Value> {
    let candidates = [
        ("kfops-repository", source.repository.clone()),
        ("kfops-branch", source.branch.clone()),
        ("kfops-pull-request", source.pull_request.map(|p| p.to_string())),
        ("kfops-commit", source.commit.clone()),
    ];
    candidates
        .into_iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty() && v.chars().count() <= 63).map(|v| (k.to_owned(), Value::String(v)))
        })
        .collect()
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Normalises the endpoint: `http(s)://host[:port][/prefix]` without a trailing slash.
fn normalize_endpoint(url: &str) -> Result<String, KfpError> {
    let invalid = |reason: &str| KfpError::InvalidEndpoint { url: url.to_owned(), reason: reason.to_owned() };
    let trimmed = url.trim();
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| {
        if trimmed.contains("://") {
            invalid(&e.to_string())
        } else {
            invalid("write the full URL with its scheme, e.g. https://kubeflow.example.com/pipeline")
        }
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("credentials in the URL are not supported; use kubeflow.auth"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("it must not have a query string or fragment"));
    }
    let mut base = parsed.as_str().trim_end_matches('/').to_owned();
    for suffix in ["/apis/v2beta1", "/apis/v1beta1", "/apis"] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped.trim_end_matches('/').to_owned();
            break;
        }
    }
    Ok(base)
}

/// Normalises a UI base: no fragment, no trailing slash.
fn normalize_ui(url: &str) -> String {
    let url = url.trim();
    let url = url.split('#').next().unwrap_or(url);
    url.trim_end_matches('/').to_owned()
}

/// Whether a body is an HTML page (an auth proxy's sign-in page, a proxy error page).
fn looks_like_html(content_type: Option<&str>, body: &[u8]) -> bool {
    if content_type.is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.contains("text/html") || ct.contains("application/xhtml")
    }) {
        return true;
    }
    let start: Vec<u8> = body.iter().copied().skip_while(u8::is_ascii_whitespace).take(15).collect();
    let start = String::from_utf8_lossy(&start).to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html") || start.starts_with("<head")
}

/// The `<title>` of an HTML page, if short.
fn html_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = lower[start..].find('>')? + start + 1;
    let end = lower[open_end..].find("</title")? + open_end;
    let title = text.get(open_end..end)?.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty() && title.chars().count() <= 120).then_some(title)
}

/// Truncates to `max` characters, marking the cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The message of an error body, whatever its shape.
fn error_message(status: StatusCode, content_type: Option<&str>, body: &[u8]) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        // google.rpc.Status (KFP 2) or KFP 1.x: the user-facing message is in the details.
        if let Some(details) = map.get("details").and_then(Value::as_array) {
            for d in details {
                if let Some(m) = non_empty(d.get("message")).or_else(|| non_empty(d.get("error_message"))) {
                    return truncate(m, 2000);
                }
            }
        }
        // Upload routes: `error_details` is `error_message` plus a Go stack trace.
        if let Some(m) = non_empty(map.get("error_message")) {
            return truncate(m, 2000);
        }
        if let Some(m) = non_empty(map.get("message")).or_else(|| non_empty(map.get("error"))) {
            return truncate(m, 2000);
        }
        if let Some(first) = non_empty(map.get("error_details")).and_then(|d| d.lines().next()) {
            return truncate(first, 2000);
        }
        return truncate(&Value::Object(map).to_string(), 500);
    }
    if looks_like_html(content_type, body) {
        return match html_title(body) {
            Some(title) => format!("the server answered with an HTML page \"{title}\""),
            None => "the server answered with an HTML page".to_owned(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { status.canonical_reason().unwrap_or("no message").to_owned() } else { truncate(text, 2000) }
}

/// A non-empty, trimmed string value.
fn non_empty(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// The messages of an error and its sources, de-duplicated.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// A request body.
enum Payload<'a> {
    None,
    Json(&'a Value),
    Upload { content: &'a [u8] },
}

/// One API call, replayable for retries.
struct Call<'a> {
    method: Method,
    /// Path below [`API_PREFIX`], already encoded.
    path: String,
    query: Vec<(&'static str, String)>,
    payload: Payload<'a>,
    /// Whether repeating it is harmless (GET); otherwise it is retried only
    /// when it cannot have been processed.
    idempotent: bool,
}

impl Call<'_> {
    fn full_path(&self) -> String {
        format!("{API_PREFIX}{}", self.path)
    }
}

/// The result of one attempt.
enum Attempt {
    Done(Vec<u8>),
    Retry(KfpError, Option<Duration>),
    Fail(KfpError),
}

/// The Kubeflow Pipelines v2beta1 REST client.
#[derive(Debug)]
pub struct KfpClient {
    http: reqwest::Client,
    endpoint: String,
    ui_base: String,
    namespace: Option<String>,
    auth: KfpAuth,
    retry: RetryPolicy,
    request_timeout: Duration,
    server: OnceCell<ServerInfo>,
}

impl KfpClient {
    /// Builds a client. Nothing is sent until the first call.
    pub fn new(config: KfpConfig) -> Result<Self, KfpError> {
        let endpoint = normalize_endpoint(&config.endpoint)?;
        let ui_base = match config.ui_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(ui) => normalize_ui(ui),
            None => endpoint.clone(),
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("kfops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KfpError::InvalidEndpoint { url: config.endpoint.clone(), reason: error_chain(&e) })?;
        Ok(KfpClient {
            http,
            endpoint,
            ui_base,
            namespace: config.namespace.filter(|n| !n.trim().is_empty()),
            auth: config.auth.resolve(),
            retry: config.retry,
            request_timeout: config.request_timeout,
            server: OnceCell::new(),
        })
    }

    /// The normalised API endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The web UI base used for links.
    pub fn ui_base(&self) -> &str {
        &self.ui_base
    }

    /// The credentials in use (resolved), for display.
    pub fn auth(&self) -> &KfpAuth {
        &self.auth
    }

    /// The configured namespace.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Link to a run in the UI: `<ui>/#/runs/details/<id>`.
    pub fn run_url(&self, run_id: &str) -> String {
        format!("{}/#/runs/details/{run_id}", self.ui_base)
    }

    /// Link to a pipeline version in the UI: `<ui>/#/pipelines/details/<pid>/version/<vid>`.
    pub fn pipeline_version_url(&self, pipeline_id: &str, version_id: &str) -> String {
        format!("{}/#/pipelines/details/{pipeline_id}/version/{version_id}", self.ui_base)
    }

    /// Link to an experiment in the UI: `<ui>/#/experiments/details/<id>`.
    pub fn experiment_url(&self, experiment_id: &str) -> String {
        format!("{}/#/experiments/details/{experiment_id}", self.ui_base)
    }

    // ---- server ----

    /// What the server is (asked once, then cached; failures are not cached).
    pub async fn server_info(&self) -> Result<&ServerInfo, KfpError> {
        self.server
            .get_or_try_init(|| async {
                let healthz: Healthz = self.get("/healthz".into(), Vec::new()).await?;
                Ok(ServerInfo::from_healthz(healthz))
            })
            .await
    }

    /// The namespace to send: `None` in single-user mode, the configured one
    /// in multi-user mode (an error if there is none).
    async fn required_namespace(&self, operation: &str) -> Result<Option<String>, KfpError> {
        if !self.server_info().await?.multi_user {
            return Ok(None);
        }
        match &self.namespace {
            Some(ns) => Ok(Some(ns.clone())),
            None => Err(KfpError::NamespaceRequired { operation: operation.to_owned() }),
        }
    }

    /// The namespace to send where multi-user mode allows but does not need one.
    async fn optional_namespace(&self) -> Result<Option<String>, KfpError> {
        Ok(if self.server_info().await?.multi_user { self.namespace.clone() } else { None })
    }

    // ---- pipelines ----

    /// Lists pipelines (in the namespace, in multi-user mode).
    pub async fn list_pipelines(&self, options: &ListOptions) -> Result<Page<Pipeline>, KfpError> {
        let mut query = Vec::new();
        if let Some(ns) = self.optional_namespace().await? {
            query.push(("namespace", ns));
        }
        options.push_query(&mut query);
        let r: ListPipelinesResponse = self.get("/pipelines".into(), query).await?;
        Ok(Page { items: r.pipelines, total_size: r.total_size, next_page_token: r.next_page_token })
    }

    /// A pipeline by id.
    pub async fn get_pipeline(&self, pipeline_id: &str) -> Result<Pipeline, KfpError> {
        self.get(format!("/pipelines/{}", encode_segment(pipeline_id)), Vec::new()).await
    }

    /// A pipeline by its unique name (in the namespace, in multi-user mode), or `None`.
    pub async fn find_pipeline(&self, name: &str) -> Result<Option<Pipeline>, KfpError> {
        let namespace = self.optional_namespace().await?;
        if self.server_info().await?.supports_pipeline_by_name() {
            let query = namespace.map(|ns| vec![("namespace", ns)]).unwrap_or_default();
            match self.get::<Pipeline>(format!("/pipelines/names/{}", encode_segment(name)), query).await {
                Ok(p) => Ok(Some(p)),
                Err(e) if e.status() == Some(404) => Ok(None),
                Err(e) => Err(e),
            }
        } else {
            let page = self.list_pipelines(&ListOptions::new().filter(Filter::new().equals("name", name))).await?;
            Ok(page.items.into_iter().find(|p| p.name.as_deref().or(p.display_name.as_deref()) == Some(name)))
        }
    }

    /// Lists the versions of a pipeline.
    pub async fn list_pipeline_versions(
        &self,
        pipeline_id: &str,
        options: &ListOptions,
    ) -> Result<Page<PipelineVersion>, KfpError> {
        let mut query = Vec::new();
        options.push_query(&mut query);
        let r: ListPipelineVersionsResponse =
            self.get(format!("/pipelines/{}/versions", encode_segment(pipeline_id)), query).await?;
        Ok(Page { items: r.pipeline_versions, total_size: r.total_size, next_page_token: r.next_page_token })
    }

    /// A pipeline version by id.
    pub async fn get_pipeline_version(&self, pipeline_id: &str, version_id: &str) -> Result<PipelineVersion, KfpError> {
        let path = format!("/pipelines/{}/versions/{}", encode_segment(pipeline_id), encode_segment(version_id));
        self.get(path, Vec::new()).await
    }

    /// The newest version of a pipeline.
    pub async fn latest_pipeline_version(&self, pipeline_id: &str) -> Result<Option<PipelineVersion>, KfpError> {
        let options = ListOptions::new().sort_by("created_at desc").page_size(1);
        Ok(self.list_pipeline_versions(pipeline_id, &options).await?.items.into_iter().next())
    }

    /// A version of a pipeline by name: its `name`, else its `display_name`.
    pub async fn find_pipeline_version(
        &self,
        pipeline_id: &str,
        name: &str,
    ) -> Result<Option<PipelineVersion>, KfpError> {
        for key in ["name", "display_name"] {
            let options = ListOptions::new().filter(Filter::new().equals(key, name)).page_size(1);
            if let Some(v) = self.list_pipeline_versions(pipeline_id, &options).await?.items.into_iter().next() {
                return Ok(Some(v));
            }
        }
        // The first version, created with the pipeline, carries the pipeline's
        // name; kfops marks which version it is in the description.
        let recent = ListOptions::new().sort_by("created_at desc").page_size(50);
        let versions = self.list_pipeline_versions(pipeline_id, &recent).await?.items;
        Ok(versions.into_iter().find(|v| has_version_marker(v, name)))
    }

    /// Uploads a compiled pipeline as a new pipeline (with its first version,
    /// which the server names after the pipeline). Returns the pipeline only.
    pub async fn upload_pipeline(
        &self,
        spec_yaml: &str,
        name: &str,
        display_name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Pipeline, KfpError> {
        check_size(spec_yaml)?;
        let namespace = self.required_namespace("uploading a pipeline").await?;
        let info = self.server_info().await?;
        let mut query = vec![("name", name.to_owned())];
        if let Some(d) = display_name.filter(|_| info.supports_upload_display_name()) {
            query.push(("display_name", d.to_owned()));
        }
        if let Some(d) = description {
            query.push(("description", d.to_owned()));
        }
        if let Some(ns) = namespace {
            query.push(("namespace", ns));
        }
        self.upload("/pipelines/upload", query, spec_yaml).await
    }

    /// Uploads a compiled pipeline as a new version of `pipeline_id`. `tags`
    /// are sent to servers 2.17+ only.
    pub async fn upload_pipeline_version(
        &self,
        pipeline_id: &str,
        spec_yaml: &str,
        name: &str,
        description: Option<&str>,
        tags: &Map<String, Value>,
    ) -> Result<PipelineVersion, KfpError> {
        check_size(spec_yaml)?;
        let info = self.server_info().await?;
        let mut query = vec![("pipelineid", pipeline_id.to_owned()), ("name", name.to_owned())];
        if let Some(d) = description {
            query.push(("description", d.to_owned()));
        }
        if !tags.is_empty() && info.supports_tags() {
            query.push(("tags", Value::Object(tags.clone()).to_string()));
        }
        self.upload("/pipelines/upload_version", query, spec_yaml).await
    }

    /// Publishes a compiled pipeline as version `version_name`, idempotently:
    ///
    /// 1. the pipeline is looked up by name; if it does not exist it is
    ///    uploaded (its first version carries the source and the version name
    ///    in its description) and the new version's id fetched;
    /// 2. otherwise an existing version of that name is reused (looked up by
    ///    `name`, then `display_name`, then the pipeline's first version whose
    ///    description names the version), and only if there is none a new
    ///    version is uploaded.
    ///
    /// A concurrent publish of the same name (409) ends in the reuse of what
    /// the other one created.
    pub async fn publish(&self, request: &PublishRequest) -> Result<Published, KfpError> {
        self.required_namespace("publishing a pipeline").await?;
        let description =
            version_description(request.pipeline_description.as_deref(), &request.source, &request.version_name);
        if let Some(pipeline) = self.find_pipeline(&request.pipeline_name).await? {
            return self.publish_version(request, &pipeline, &description).await;
        }
        let uploaded = self
            .upload_pipeline(
                &request.spec_yaml,
                &request.pipeline_name,
                request.pipeline_display_name.as_deref(),
                Some(&description),
            )
            .await;
        let pipeline = match uploaded {
            Ok(p) => p,
            Err(e) if e.status() == Some(409) => match self.find_pipeline(&request.pipeline_name).await? {
                Some(pipeline) => return self.publish_version(request, &pipeline, &description).await,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let pipeline_id = pipeline_id_of(&pipeline)?;
        let version = self.latest_pipeline_version(&pipeline_id).await?.ok_or_else(|| KfpError::Unexpected {
            message: format!("pipeline {pipeline_id} was uploaded but has no version"),
        })?;
        let version_id = version_id_of(&version)?;
        Ok(Published { pipeline_id, version_id, version, created: true, pipeline_created: true })
    }

    async fn publish_version(
        &self,
        request: &PublishRequest,
        pipeline: &Pipeline,
        description: &str,
    ) -> Result<Published, KfpError> {
        let pipeline_id = pipeline_id_of(pipeline)?;
        if let Some(version) = self.existing_version(&pipeline_id, request).await? {
            let version_id = version_id_of(&version)?;
            return Ok(Published { pipeline_id, version_id, version, created: false, pipeline_created: false });
        }
        let tags = source_tags(&request.source);
        let uploaded = self
            .upload_pipeline_version(&pipeline_id, &request.spec_yaml, &request.version_name, Some(description), &tags)
            .await;
        match uploaded {
            Ok(version) => {
                let version_id = version_id_of(&version)?;
                Ok(Published { pipeline_id, version_id, version, created: true, pipeline_created: false })
            }
            Err(e) if e.status() == Some(409) => match self.existing_version(&pipeline_id, request).await? {
                Some(version) => {
                    let version_id = version_id_of(&version)?;
                    Ok(Published { pipeline_id, version_id, version, created: false, pipeline_created: false })
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The version published earlier as `request.version_name`, if any.
    async fn existing_version(
        &self,
        pipeline_id: &str,
        request: &PublishRequest,
    ) -> Result<Option<PipelineVersion>, KfpError> {
        self.find_pipeline_version(pipeline_id, &request.version_name).await
    }

    // ---- experiments ----

    /// Lists experiments (in the namespace, in multi-user mode).
    pub async fn list_experiments(&self, options: &ListOptions) -> Result<Page<Experiment>, KfpError> {
        let mut query = Vec::new();
        options.push_query(&mut query);
        if let Some(ns) = self.required_namespace("listing experiments").await? {
            query.push(("namespace", ns));
        }
        let r: ListExperimentsResponse = self.get("/experiments".into(), query).await?;
        Ok(Page { items: r.experiments, total_size: r.total_size, next_page_token: r.next_page_token })
    }

    /// An experiment by id.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, KfpError> {
        self.get(format!("/experiments/{}", encode_segment(experiment_id)), Vec::new()).await
    }

    /// An experiment by display name (in the namespace, in multi-user mode), or `None`.
    pub async fn find_experiment(&self, display_name: &str) -> Result<Option<Experiment>, KfpError> {
        let options = ListOptions::new().filter(Filter::new().equals("display_name", display_name)).page_size(1);
        let page = self.list_experiments(&options).await?;
        Ok(page.items.into_iter().next())
    }

    /// Creates an experiment (in the namespace, in multi-user mode).
    pub async fn create_experiment(
        &self,
        display_name: &str,
        description: Option<&str>,
    ) -> Result<Experiment, KfpError> {
        let namespace = self.required_namespace("creating an experiment").await?;
        let mut body = Map::new();
        body.insert("display_name".into(), Value::String(display_name.to_owned()));
        if let Some(d) = description {
            body.insert("description".into(), Value::String(d.to_owned()));
        }
        if let Some(ns) = namespace {
            body.insert("namespace".into(), Value::String(ns));
        }
        self.post("/experiments".into(), &Value::Object(body)).await
    }

    /// The experiment of that display name, created if missing.
    pub async fn ensure_experiment(&self, display_name: &str) -> Result<Experiment, KfpError> {
        if let Some(e) = self.find_experiment(display_name).await? {
            return Ok(e);
        }
        match self.create_experiment(display_name, None).await {
            Ok(e) => Ok(e),
            // Created concurrently by someone else.
            Err(e) if e.status() == Some(409) => self.find_experiment(display_name).await?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    // ---- runs ----

    /// Creates (starts) a run.
    pub async fn create_run(&self, run: &CreateRun) -> Result<Run, KfpError> {
        self.post("/runs".into(), &run.to_body()).await
    }

    /// A run by id, with its task details.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, KfpError> {
        self.get(format!("/runs/{}", encode_segment(run_id)), Vec::new()).await
    }

    /// Lists runs, of one experiment or (in multi-user mode) of the namespace.
    pub async fn list_runs(&self, experiment_id: Option<&str>, options: &ListOptions) -> Result<Page<Run>, KfpError> {
        let mut query = Vec::new();
        let namespace = match experiment_id {
            Some(_) => self.optional_namespace().await?,
            None => self.required_namespace("listing runs").await?,
        };
        if let Some(ns) = namespace {
            query.push(("namespace", ns));
        }
        if let Some(e) = experiment_id {
            query.push(("experiment_id", e.to_owned()));
        }
        options.push_query(&mut query);
        let r: ListRunsResponse = self.get("/runs".into(), query).await?;
        Ok(Page { items: r.runs, total_size: r.total_size, next_page_token: r.next_page_token })
    }

    /// Asks the server to stop a run (its state becomes `CANCELING`, then usually `CANCELED`).
    pub async fn terminate_run(&self, run_id: &str) -> Result<(), KfpError> {
        self.post_verb(run_id, "terminate").await
    }

    /// Re-runs the failed tasks of a failed or terminated run.
    pub async fn retry_run(&self, run_id: &str) -> Result<(), KfpError> {
        self.post_verb(run_id, "retry").await
    }

    /// Archives a run.
    pub async fn archive_run(&self, run_id: &str) -> Result<(), KfpError> {
        self.post_verb(run_id, "archive").await
    }

    async fn post_verb(&self, run_id: &str, verb: &str) -> Result<(), KfpError> {
        let call = Call {
            method: Method::POST,
            path: format!("/runs/{}:{verb}", encode_segment(run_id)),
            query: Vec::new(),
            payload: Payload::None,
            idempotent: false,
        };
        let _: Value = self.call(&call).await?;
        Ok(())
    }

    /// Polls a run until it reaches a terminal state (`SUCCEEDED`, `FAILED`,
    /// `SKIPPED`, `CANCELED`; `CANCELING` and `PAUSED` are not terminal).
    /// `on_poll` sees every polled run, e.g. to show task progress.
    pub async fn wait_for_run<F>(&self, run_id: &str, options: &WaitOptions, mut on_poll: F) -> Result<Run, KfpError>
    where
        F: FnMut(&Run) + Send,
    {
        let started = tokio::time::Instant::now();
        loop {
            let run = self.get_run(run_id).await?;
            on_poll(&run);
            if run.run_state().is_terminal() {
                return Ok(run);
            }
            let mut pause = options.poll_interval;
            if let Some(timeout) = options.timeout {
                let waited = started.elapsed();
                if waited >= timeout {
                    return Err(KfpError::WaitTimeout {
                        run_id: run_id.to_owned(),
                        state: run.state.clone().unwrap_or_else(|| "unknown".into()),
                        waited,
                    });
                }
                pause = pause.min(timeout - waited);
            }
            tokio::time::sleep(pause).await;
        }
    }

    // ---- transport ----

    async fn get<T: DeserializeOwned>(&self, path: String, query: Vec<(&'static str, String)>) -> Result<T, KfpError> {
        let call = Call { method: Method::GET, path, query, payload: Payload::None, idempotent: true };
        self.call(&call).await
    }

    async fn post<T: DeserializeOwned>(&self, path: String, body: &Value) -> Result<T, KfpError> {
        let call =
            Call { method: Method::POST, path, query: Vec::new(), payload: Payload::Json(body), idempotent: false };
        self.call(&call).await
    }

    async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&'static str, String)>,
        spec_yaml: &str,
    ) -> Result<T, KfpError> {
        let call = Call {
            method: Method::POST,
            path: path.to_owned(),
            query,
            payload: Payload::Upload { content: spec_yaml.as_bytes() },
            idempotent: false,
        };
        self.call(&call).await
    }

    /// Sends a call (with retries) and decodes the JSON answer.
    async fn call<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, KfpError> {
        let body = self.execute(call).await?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &body };
        serde_json::from_slice(body).map_err(|e| KfpError::Decode {
            method: call.method.to_string(),
            path: call.full_path(),
            message: format!("{e}; the body starts with {:?}", truncate(&String::from_utf8_lossy(body), 200)),
        })
    }

    async fn execute(&self, call: &Call<'_>) -> Result<Vec<u8>, KfpError> {
        let attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.attempt(call).await {
                Attempt::Done(body) => return Ok(body),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry(error, _) if attempt >= attempts => return Err(error),
                Attempt::Retry(_, after) => {
                    let delay = match after {
                        Some(after) => after.min(self.retry.max_retry_after),
                        None => self.retry.backoff(attempt),
                    };
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Attempt {
        let method = call.method.to_string();
        let path = call.full_path();
        let mut request = self
            .http
            .request(call.method.clone(), format!("{}{path}", self.endpoint))
            .header(header::ACCEPT, "application/json");
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        match self.auth.header() {
            Ok(Some((name, value))) => request = request.header(name, value),
            Ok(None) => {}
            Err(e) => return Attempt::Fail(e),
        }
        request = match call.payload {
            // An explicit empty body sends `Content-Length: 0`, which some proxies require on POST.
            Payload::None if call.method == Method::POST => {
                request.header(header::CONTENT_LENGTH, "0").body(Vec::new())
            }
            Payload::None => request,
            Payload::Json(value) => request.json(value),
            Payload::Upload { content } => {
                let part = reqwest::multipart::Part::bytes(content.to_vec()).file_name("pipeline.yaml");
                let part = match part.mime_str("application/yaml") {
                    Ok(p) => p,
                    Err(e) => return Attempt::Fail(self.transport_error(&method, &path, &e)),
                };
                request.multipart(reqwest::multipart::Form::new().part("uploadfile", part))
            }
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let error = if e.is_timeout() && !e.is_connect() {
                    KfpError::Timeout { method, path, after: self.request_timeout }
                } else {
                    self.transport_error(&method, &path, &e)
                };
                // A refused connection never reached the server; anything else may have.
                return if e.is_connect() || call.idempotent {
                    Attempt::Retry(error, None)
                } else {
                    Attempt::Fail(error)
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_redirection() {
            let target = headers
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(|l| l.split(['?', '#']).next().unwrap_or(l).to_owned())
                .unwrap_or_else(|| "another page".into());
            let reason = format!(
                "the server redirected (HTTP {}) to {target}, an authentication proxy's sign-in flow",
                status.as_u16()
            );
            return Attempt::Fail(self.not_authenticated(method, path, reason));
        }
        let body = match response.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                let error = self.transport_error(&method, &path, &e);
                return if call.idempotent { Attempt::Retry(error, None) } else { Attempt::Fail(error) };
            }
        };
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if status.is_success() {
            if looks_like_html(content_type, &body) {
                let page = html_title(&body).map(|t| format!(" (\"{t}\")")).unwrap_or_default();
                let reason = format!(
                    "the server answered with an HTML page{page} instead of JSON, as an authentication proxy's sign-in page does"
                );
                return Attempt::Fail(self.not_authenticated(method, path, reason));
            }
            return Attempt::Done(body);
        }
        let code = status.as_u16();
        if matches!(code, 401 | 403) && looks_like_html(content_type, &body) {
            let page = html_title(&body).map(|t| format!(" \"{t}\"")).unwrap_or_default();
            let reason = format!("the server answered HTTP {code} with an HTML sign-in page{page}");
            return Attempt::Fail(self.not_authenticated(method, path, reason));
        }
        let error = KfpError::Api { status: code, message: error_message(status, content_type, &body), method, path };
        match code {
            429 => Attempt::Retry(error, retry_after(&headers)),
            // 503: the server did not take the request. 502/504 from a proxy may come after the
            // API server acted, so only idempotent requests are repeated then (no duplicate runs).
            503 => Attempt::Retry(error, retry_after(&headers)),
            502 | 504 if call.idempotent => Attempt::Retry(error, None),
            _ => Attempt::Fail(error),
        }
    }

    fn not_authenticated(&self, method: String, path: String, reason: String) -> KfpError {
        KfpError::NotAuthenticated { method, path, reason, credentials: self.auth.describe() }
    }

    fn transport_error(&self, method: &str, path: &str, error: &reqwest::Error) -> KfpError {
        // reqwest's own message names the full URL (with the query); say what failed instead.
        let what = if error.is_connect() {
            "connecting failed"
        } else if error.is_timeout() {
            "timed out"
        } else if error.is_body() || error.is_decode() {
            "reading the answer failed"
        } else {
            "sending the request failed"
        };
        let message = match std::error::Error::source(error) {
            Some(source) => format!("{what}: {}", error_chain(source)),
            None => what.to_owned(),
        };
        KfpError::Transport {
            method: method.to_owned(),
            path: path.to_owned(),
            endpoint: self.endpoint.clone(),
            message,
        }
    }
}

fn check_size(spec_yaml: &str) -> Result<(), KfpError> {
    if spec_yaml.len() > MAX_UPLOAD_BYTES {
        return Err(KfpError::TooLarge { bytes: spec_yaml.len(), limit: MAX_UPLOAD_BYTES });
    }
    Ok(())
}

fn pipeline_id_of(pipeline: &Pipeline) -> Result<String, KfpError> {
    pipeline.pipeline_id.clone().filter(|id| !id.is_empty()).ok_or_else(|| KfpError::Unexpected {
        message: format!(
            "pipeline `{}` has no pipeline_id{}",
            pipeline.name.as_deref().unwrap_or_default(),
            pipeline.error.as_ref().and_then(|e| e.user_message()).map(|m| format!(" ({m})")).unwrap_or_default()
        ),
    })
}

fn version_id_of(version: &PipelineVersion) -> Result<String, KfpError> {
    version.pipeline_version_id.clone().filter(|id| !id.is_empty()).ok_or_else(|| KfpError::Unexpected {
        message: format!(
            "pipeline version `{}` has no pipeline_version_id{}",
            version.name.as_deref().unwrap_or_default(),
            version.error.as_ref().and_then(|e| e.user_message()).map(|m| format!(" ({m})")).unwrap_or_default()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_carry_the_source_and_the_version() {
        let source = SourceInfo {
            repository: Some("acme/ml".into()),
            branch: Some("main".into()),
            pull_request: None,
            commit: Some("abc".into()),
        };
        let d = version_description(Some("Trains.\n"), &source, "git-abc");
        assert_eq!(d, "Trains.\n\nSource: acme/ml, branch main, commit abc\nkfops version: git-abc");
        let version = PipelineVersion { description: Some(d), ..PipelineVersion::default() };
        assert!(has_version_marker(&version, "git-abc"));
        assert!(!has_version_marker(&version, "git-ab"));
        assert_eq!(version_description(None, &SourceInfo::default(), "v"), "kfops version: v");
        let long = SourceInfo { branch: Some("b".repeat(64)), commit: Some("c".into()), ..SourceInfo::default() };
        assert_eq!(Value::Object(source_tags(&long)), serde_json::json!({"kfops-commit": "c"}));
    }

    #[test]
    fn error_bodies_of_every_shape() {
        let s = StatusCode::BAD_REQUEST;
        let upload = br#"{"error_message":"Failed to create a pipeline version","error_details":"Failed to create a pipeline version\ngithub.com/kubeflow/pipelines/backend.(*X).Y\n\t/go/src/x.go:12"}"#;
        assert_eq!(error_message(s, Some("application/json"), upload), "Failed to create a pipeline version");
        assert_eq!(error_message(s, None, br#"{"error":"bad","code":3}"#), "bad");
        assert_eq!(error_message(s, Some("text/plain"), b"  Invalid name\n"), "Invalid name");
        assert_eq!(error_message(StatusCode::SERVICE_UNAVAILABLE, None, b""), "Service Unavailable");
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, None, b"<html><head><title>502 Bad Gateway</title></head></html>"),
            "the server answered with an HTML page \"502 Bad Gateway\""
        );
        assert_eq!(error_message(s, None, br#"{"code":3}"#), r#"{"code":3}"#);
    }

    #[test]
    fn html_is_recognised_by_type_or_content() {
        assert!(looks_like_html(Some("text/html; charset=utf-8"), b"{}"));
        assert!(looks_like_html(None, b"\n  <!DOCTYPE html><html>"));
        assert!(looks_like_html(Some("application/octet-stream"), b"<HTML><body>"));
        assert!(!looks_like_html(Some("application/json"), br#"{"a":"<html>"}"#));
    }

    #[test]
    fn endpoints_and_segments() {
        assert_eq!(normalize_endpoint("https://h/pipeline/apis/v2beta1").ok().as_deref(), Some("https://h/pipeline"));
        assert_eq!(normalize_endpoint(" http://localhost:3000/ ").ok().as_deref(), Some("http://localhost:3000"));
        assert!(normalize_endpoint("localhost:3000").is_err());
        assert_eq!(normalize_ui("https://h/_/pipeline/#/"), "https://h/_/pipeline");
        assert_eq!(encode_segment("my pipeline/v1"), "my%20pipeline%2Fv1");
        assert_eq!(encode_segment("6f1e-AZ_.~"), "6f1e-AZ_.~");
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..20 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let capped = policy.backoff(10);
            assert!(capped >= Duration::from_millis(150) && capped <= Duration::from_millis(300), "{capped:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn credentials_are_described_without_their_value() {
        let auth = KfpAuth::Token("s3cret".into());
        assert!(!format!("{auth:?}").contains("s3cret"));
        assert!(matches!(KfpAuth::Cookie("x".into()).header(), Err(KfpError::Credentials { .. })));
        let (name, value) = KfpAuth::Token(" t \n".into()).header().ok().flatten().expect("header");
        assert_eq!((name, value.to_str().ok()), (header::AUTHORIZATION, Some("Bearer t")));
        assert!(value.is_sensitive());
    }
}
