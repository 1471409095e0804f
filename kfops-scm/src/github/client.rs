//! [`GithubProvider`]: the [`ScmProvider`] for github.com and GitHub
//! Enterprise Server, on `octocrab`'s HTTP stack.
//!
//! Requests go through octocrab's raw interface (`build_request`/`execute`),
//! so the provider sees status and headers and deserializes only the fields
//! it uses. octocrab's own retry layer is not compiled in; every request
//! instead follows [`RetryPolicy::decide`] (5xx and connection failures back
//! off with jitter, primary and secondary rate limits wait as GitHub's headers
//! say), and content-creating requests (comments, reactions, labels, merges,
//! closing) are spaced by a [`Pacer`]. A `POST` (a comment, a reaction, a
//! label) is never sent again after a failure that leaves its outcome unknown
//! (a `5xx`, or a connection lost after sending: GitHub may have created it):
//! that is an `Unavailable` error saying so, and only rate-limit answers and
//! refused connections (GitHub did nothing) are retried.
//! [`ScmProvider::find_comment`] reads every page of a PR's comments, so a
//! caller can adopt a comment it posted before a crash instead of posting twice.
//!
//! Authentication is a token ([`GithubAuth::Token`]) or a GitHub App
//! ([`GithubAuth::App`]): an RS256 JWT finds the installation of each
//! repository (cached) and buys installation tokens (cached, renewed before
//! they expire, and once more if GitHub answers 401). Secrets never appear in
//! `Debug` output or error messages; `git` gets its credentials as an HTTP
//! header through `GIT_CONFIG_*` environment variables, never in a URL, an
//! argument or the checkout's config.
//!
//! `checkout` runs `git` with a cleared environment (only `PATH`, a `HOME`
//! inside the new repository's `.git`, no prompts, no system or global
//! config, the `C` locale, the credential variables), under a timeout per step
//! ([`GithubConfig::fetch_timeout`] for the fetch, a minute otherwise; a
//! stalled transfer is also stopped by `http.lowSpeedLimit`), and never
//! follows a redirect with the credentials. A failure is classified from
//! git's stderr by [`git_failure_kind`] (only network trouble is
//! `Unavailable`, i.e. worth retrying); the token and its base64 form are
//! redacted from every message.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};
use kfops_core::scm::{CommentId, CommentRef, Label, Permission, PrRef, PullRequest, Reaction, RepoRef, Sha};
use kfops_core::{Error, ErrorKind, ScmProvider};
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::{Value, json};

use super::retry::{Decision, Pacer, Response, RetryPolicy};

/// github.com's API root.
pub const GITHUB_API: &str = "https://api.github.com";

/// GitHub's limit on comment bodies, in characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;

/// How long `checkout` lets `git fetch` run by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How long every other `git` step of `checkout` may run.
const GIT_STEP_TIMEOUT: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, Error>;

/// How the provider authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum GithubAuth {
    /// A personal access token or any other bearer token.
    Token(String),
    /// A GitHub App: its id and its private key (PEM, PKCS#1 or PKCS#8).
    App {
        /// The app id (`iss` of the JWTs).
        app_id: u64,
        /// The app's private key in PEM.
        private_key_pem: String,
    },
}

impl fmt::Debug for GithubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GithubAuth::Token(_) => f.write_str("Token(\"***\")"),
            GithubAuth::App { app_id, .. } => {
                f.debug_struct("App").field("app_id", app_id).field("private_key_pem", &"***").finish()
            }
        }
    }
}

/// Where and how to talk to GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubConfig {
    /// API root: [`GITHUB_API`], or `https://<host>/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    /// Credentials.
    pub auth: GithubAuth,
    /// Retry limits.
    pub retry: RetryPolicy,
    /// Least time between two content-creating requests (GitHub asks for a second).
    pub pacing: Duration,
    /// Longest time the `git fetch` of a checkout may take ([`DEFAULT_FETCH_TIMEOUT`]).
    pub fetch_timeout: Duration,
}

impl GithubConfig {
    /// `api_url` and `auth` with the default retry policy, a one-second pacing
    /// and a ten-minute fetch timeout.
    pub fn new(api_url: impl Into<String>, auth: GithubAuth) -> GithubConfig {
        GithubConfig {
            api_url: api_url.into(),
            auth,
            retry: RetryPolicy::default(),
            pacing: Duration::from_secs(1),
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// Whether a request may be sent again after a failure that leaves its outcome unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Idempotent (GET, PUT, PATCH, DELETE, token requests): the whole retry policy applies.
    Safe,
    /// Creates something (POST): a `5xx` or a connection lost after sending may
    /// mean GitHub did create it, so only answers that say GitHub did nothing
    /// (rate limits, a refused connection) are retried.
    RateLimitsOnly,
}

enum Auth {
    Token(String),
    App { app_id: u64, key: jsonwebtoken::EncodingKey },
}

struct CachedToken {
    token: String,
    refresh_at: SystemTime,
}

/// The GitHub [`ScmProvider`].
pub struct GithubProvider {
    api: Octocrab,
    api_url: String,
    auth: Auth,
    retry: RetryPolicy,
    fetch_timeout: Duration,
    pacer: Mutex<Pacer>,
    installations: Mutex<HashMap<RepoRef, u64>>,
    tokens: Mutex<HashMap<u64, CachedToken>>,
}

impl fmt::Debug for GithubProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Token(_) => "token".to_owned(),
            Auth::App { app_id, .. } => format!("app {app_id}"),
        };
        f.debug_struct("GithubProvider").field("api_url", &self.api_url).field("auth", &auth).finish_non_exhaustive()
    }
}

/// A final answer: status and body text.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json<T: for<'de> Deserialize<'de>>(&self, what: &str) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| {
            Error::new(ErrorKind::Other, format!("GitHub: {what}: unexpected answer ({e})")).with_source(e)
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A number in `[0, 1)` from the standard library's per-process random hasher keys.
fn jitter() -> f64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let h = std::collections::hash_map::RandomState::new().hash_one(nanos);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Percent-encode one path segment or query value (everything but unreserved characters).
fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn repo_path(repo: &RepoRef) -> String {
    format!("/repos/{}/{}", enc(&repo.owner), enc(&repo.name))
}

/// The host of an `http(s)://host[:port]/…` URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host))
}

/// The environment that makes `git` send `token` to `clone_url` as an HTTP
/// `Authorization` header (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0=http.extraHeader`/`GIT_CONFIG_VALUE_0`),
/// and never prompt. The header is only given to `https` URLs on the API's
/// own host or its web host (`api.github.com` → `github.com`; GHES serves both
/// on one host): a clone URL elsewhere gets no credentials.
pub fn git_credential_env(api_url: &str, clone_url: &str, token: &str) -> Vec<(String, String)> {
    let mut env = vec![("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned())];
    let api_host = host_of(api_url).unwrap_or_default();
    let web_host = api_host.strip_prefix("api.").unwrap_or(api_host);
    let trusted = clone_url.starts_with("https://")
        && host_of(clone_url).is_some_and(|h| h.eq_ignore_ascii_case(api_host) || h.eq_ignore_ascii_case(web_host));
    if trusted {
        let basic = basic_credential(token);
        env.push(("GIT_CONFIG_COUNT".into(), "1".into()));
        env.push(("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()));
        env.push(("GIT_CONFIG_VALUE_0".into(), format!("Authorization: Basic {basic}")));
    }
    env
}

/// `x-access-token:<token>` in base64, as git sends it in the `Authorization: Basic` header.
fn basic_credential(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
}

/// `text` with `token` and its base64 `x-access-token:<token>` form replaced by `***`.
fn redact(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_owned();
    }
    text.replace(&basic_credential(token), "***").replace(token, "***")
}

/// What a failed `git` command's stderr (in the `C` locale) says about the failure.
///
/// * authentication refused (`Authentication failed`, `could not read
///   Username`, HTTP 401/403) → [`ErrorKind::PermissionDenied`];
/// * the wanted commit is not on the remote (`not our ref`, `couldn't find
///   remote ref`, an unadvertised or missing object: it was force-pushed
///   away) → [`ErrorKind::NotFound`];
/// * the network or the host failing (unreachable, reset, hung up, timed
///   out, too slow, HTTP 5xx) → [`ErrorKind::Unavailable`], the only transient kind;
/// * anything else (e.g. a repository that does not exist, a certificate
///   problem) → [`ErrorKind::Other`].
pub fn git_failure_kind(stderr: &str) -> ErrorKind {
    const AUTH: &[&str] = &[
        "authentication failed",
        "could not read username",
        "could not read password",
        "invalid username or password",
        "terminal prompts disabled",
        "returned error: 401",
        "returned error: 403",
        "http basic: access denied",
        "permission denied (publickey",
    ];
    const GONE: &[&str] = &[
        "not our ref",
        "couldn't find remote ref",
        "no such remote ref",
        "unadvertised object",
        "missing object",
        "did not send all necessary objects",
        "reference is not a tree",
        "bad object",
    ];
    const OTHER: &[&str] = &["certificate", "repository not found", "does not appear to be a git repository"];
    const NETWORK: &[&str] = &[
        "could not resolve host",
        "couldn't resolve host",
        "temporary failure in name resolution",
        "failed to connect",
        "couldn't connect",
        "connection refused",
        "connection reset",
        "connection timed out",
        "timed out",
        "operation too slow",
        "network is unreachable",
        "remote end hung up",
        "early eof",
        "unexpected disconnect",
        "rpc failed",
        "transfer closed",
        "empty reply from server",
        "recv failure",
        "send failure",
        "returned error: 5",
        "gnutls_handshake",
        "ssl_connect",
        "ssl_read",
    ];
    let text = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if any(AUTH) {
        ErrorKind::PermissionDenied
    } else if any(GONE) {
        ErrorKind::NotFound
    } else if any(OTHER) {
        ErrorKind::Other
    } else if any(NETWORK) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Other
    }
}

/// `kfops_core::Error` for a final non-success answer.
fn answer_error(what: &str, status: u16, body: &str) -> Error {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let mut message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(200).collect());
    if let Some(errors) = parsed.as_ref().and_then(|v| v.get("errors")).and_then(Value::as_array) {
        let details: Vec<String> = errors
            .iter()
            .map(|e| {
                e.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| {
                    format!("{} {}", e["field"].as_str().unwrap_or("?"), e["code"].as_str().unwrap_or("?"))
                })
            })
            .collect();
        if !details.is_empty() {
            message = format!("{message} ({})", details.join("; "));
        }
    }
    let kind = match status {
        400 | 422 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 | 410 => ErrorKind::NotFound,
        405 | 409 => ErrorKind::Conflict,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    Error::new(kind, format!("GitHub: {what} answered {status}: {message}"))
}

/// Succeed on one of `ok`, map anything else to an error.
fn expect(reply: Reply, what: &str, ok: &[u16]) -> Result<Reply> {
    if ok.contains(&reply.status) { Ok(reply) } else { Err(answer_error(what, reply.status, &reply.body)) }
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct RepoJson {
    name: String,
    full_name: String,
    owner: Login,
    clone_url: Option<String>,
}

#[derive(Deserialize)]
struct BranchJson {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    repo: Option<RepoJson>,
    user: Option<Login>,
}

#[derive(Deserialize)]
struct PullJson {
    number: u64,
    title: String,
    user: Option<Login>,
    state: String,
    draft: Option<bool>,
    mergeable: Option<bool>,
    mergeable_state: Option<String>,
    head: BranchJson,
    base: BranchJson,
}

#[derive(Deserialize)]
struct PermissionJson {
    permission: String,
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct IdJson {
    id: u64,
}

#[derive(Deserialize)]
struct CommentJson {
    id: u64,
    user: Option<Login>,
    body: Option<String>,
}

#[derive(Deserialize)]
struct TokenJson {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct SearchItem {
    number: u64,
    pull_request: Option<Value>,
}

#[derive(Deserialize)]
struct SearchJson {
    total_count: u64,
    items: Vec<SearchItem>,
}

#[derive(Deserialize)]
struct CompareJson {
    behind_by: u64,
}

/// Whether a transport error happened before anything was sent (the
/// connection was refused), so repeating the request cannot duplicate it.
fn refused_before_sending(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        current = e.source();
    }
    false
}

fn permission_from(name: &str) -> Option<Permission> {
    Some(match name {
        "admin" => Permission::Admin,
        "maintain" => Permission::Maintain,
        "write" | "push" => Permission::Write,
        "triage" => Permission::Triage,
        "read" | "pull" => Permission::Read,
        "none" => Permission::None,
        _ => return None,
    })
}

fn reaction_content(reaction: Reaction) -> &'static str {
    match reaction {
        Reaction::Eyes => "eyes",
        Reaction::PlusOne => "+1",
        Reaction::MinusOne => "-1",
        Reaction::Confused => "confused",
        Reaction::Rocket => "rocket",
    }
}

impl GithubProvider {
    /// A provider for `config`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the API URL is not a URL or the app key is not an
    /// RSA private key in PEM (the message never contains the key).
    pub fn new(config: GithubConfig) -> Result<GithubProvider> {
        let api_url = config.api_url.trim_end_matches('/').to_owned();
        let auth = match config.auth {
            GithubAuth::Token(token) => Auth::Token(token),
            GithubAuth::App { app_id, private_key_pem } => {
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("the private key of GitHub App {app_id} is not an RSA private key in PEM ({e})"),
                    )
                })?;
                Auth::App { app_id, key }
            }
        };
        let build = || -> std::result::Result<Octocrab, octocrab::Error> {
            Octocrab::builder()
                .base_uri(api_url.as_str())?
                .set_connect_timeout(Some(Duration::from_secs(10)))
                .set_read_timeout(Some(Duration::from_secs(60)))
                .build()
        };
        let api = build().map_err(|e| {
            Error::new(ErrorKind::InvalidInput, format!("GitHub API URL `{api_url}`: {e}")).with_source(e)
        })?;
        Ok(GithubProvider {
            api,
            api_url,
            auth,
            retry: config.retry,
            fetch_timeout: config.fetch_timeout,
            pacer: Mutex::new(Pacer::new(config.pacing)),
            installations: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// One request for `repo` with retries, rate-limit waits and (when `paced`) pacing;
    /// with app auth, a 401 renews the installation token once.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repo: &RepoRef,
        paced: bool,
    ) -> Result<Reply> {
        if paced {
            let wait = lock(&self.pacer).reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let replay = if method == Method::POST { Replay::RateLimitsOnly } else { Replay::Safe };
        let mut renewed = false;
        loop {
            let header = self.auth_header(repo).await?;
            let reply = self.send_with_retries(&method, path, body, &header, replay).await?;
            if let (401, Auth::App { .. }, false) = (reply.status, &self.auth, renewed) {
                self.forget_token(repo);
                renewed = true;
                continue;
            }
            return Ok(reply);
        }
    }

    async fn send_with_retries(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        auth: &str,
        replay: Replay,
    ) -> Result<Reply> {
        let what = format!("{method} {path}");
        let mut attempt = 1;
        loop {
            let mut value = HeaderValue::from_str(auth).map_err(|_| {
                Error::new(ErrorKind::InvalidInput, "the GitHub credential is not a valid header value")
            })?;
            value.set_sensitive(true);
            let builder = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::ACCEPT, "application/vnd.github+json")
                .header(http::header::USER_AGENT, "kfops")
                .header(http::header::AUTHORIZATION, value);
            let request = self
                .api
                .build_request(builder, body)
                .map_err(|e| Error::new(ErrorKind::Other, format!("GitHub: {what}: cannot build the request ({e})")))?;
            let (status, headers, text, refused) = match self.api.execute(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let text = self.api.body_to_string(response).await.unwrap_or_default();
                    (Some(status), headers, text, false)
                }
                Err(e) => {
                    let refused = refused_before_sending(&e);
                    (None, HeaderMap::new(), format!("{e}"), refused)
                }
            };
            let uncertain = match status {
                None => !refused,
                Some(s) => s >= 500,
            };
            if uncertain && replay == Replay::RateLimitsOnly {
                let failure = match status {
                    Some(s) => format!("answered {s}"),
                    None => format!("lost the connection ({})", text.lines().next().unwrap_or_default()),
                };
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "GitHub: {what} {failure} after the request was sent; the outcome is unknown (GitHub may \
                         have carried it out), so it was not sent again"
                    ),
                ));
            }
            let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let start = (0..=text.len().min(512)).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let facts = Response { status, header: &lookup, body: &text[..start] };
            match self.retry.decide(attempt, facts, now_epoch(), jitter()) {
                Decision::Done => match status {
                    Some(status) => return Ok(Reply { status, body: text }),
                    None => {
                        let first = text.lines().next().unwrap_or_default();
                        return Err(Error::new(ErrorKind::Unavailable, format!("GitHub: {what}: {first}")));
                    }
                },
                Decision::RetryAfter(wait) => {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Decision::GiveUp(why) => {
                    return Err(Error::new(ErrorKind::Unavailable, format!("GitHub: {what}: {why}")));
                }
            }
        }
    }

    async fn auth_header(&self, repo: &RepoRef) -> Result<String> {
        match &self.auth {
            Auth::Token(token) => Ok(format!("Bearer {token}")),
            Auth::App { .. } => Ok(format!("Bearer {}", self.installation_token(repo).await?)),
        }
    }

    /// A JWT for the app: issued a minute ago (clock drift), valid nine minutes from now.
    fn jwt(&self) -> Result<String> {
        let Auth::App { app_id, key } = &self.auth else {
            return Err(Error::new(ErrorKind::Unsupported, "a JWT needs GitHub App authentication"));
        };
        let now = now_epoch();
        let claims = json!({ "iat": now.saturating_sub(60), "exp": now + 540, "iss": app_id.to_string() });
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, key)
            .map_err(|e| Error::new(ErrorKind::Other, format!("cannot sign the JWT of GitHub App {app_id} ({e})")))
    }

    fn forget_token(&self, repo: &RepoRef) {
        if let Some(id) = lock(&self.installations).get(repo).copied() {
            lock(&self.tokens).remove(&id);
        }
    }

    /// The installation token for `repo`: cached per installation, renewed
    /// when less than half its life (at most five minutes) is left.
    async fn installation_token(&self, repo: &RepoRef) -> Result<String> {
        let cached = lock(&self.installations).get(repo).copied();
        let installation = match cached {
            Some(id) => id,
            None => {
                let path = format!("{}/installation", repo_path(repo));
                let jwt = format!("Bearer {}", self.jwt()?);
                let reply = self.send_with_retries(&Method::GET, &path, None, &jwt, Replay::Safe).await?;
                if reply.status == 404 {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("GitHub: the GitHub App is not installed on {repo} (GET {path} answered 404)"),
                    ));
                }
                let id = expect(reply, &format!("GET {path}"), &[200])?.json::<IdJson>(&format!("GET {path}"))?.id;
                lock(&self.installations).insert(repo.clone(), id);
                id
            }
        };
        if let Some(t) = lock(&self.tokens).get(&installation)
            && SystemTime::now() < t.refresh_at
        {
            return Ok(t.token.clone());
        }
        let path = format!("/app/installations/{installation}/access_tokens");
        let what = format!("POST {path}");
        let jwt = format!("Bearer {}", self.jwt()?);
        // A second installation token does no harm: this POST may be repeated.
        let reply = self.send_with_retries(&Method::POST, &path, None, &jwt, Replay::Safe).await?;
        let token: TokenJson = expect(reply, &what, &[201])?.json(&what)?;
        let expires = chrono::DateTime::parse_from_rfc3339(&token.expires_at)
            .map(|t| UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64))
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(600));
        let life = expires.duration_since(SystemTime::now()).unwrap_or_default();
        let refresh_at = expires - (life / 2).min(Duration::from_secs(300));
        lock(&self.tokens).insert(installation, CachedToken { token: token.token.clone(), refresh_at });
        Ok(token.token)
    }

    async fn get(&self, repo: &RepoRef, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, None, repo, false).await
    }

    async fn write(&self, method: Method, repo: &RepoRef, path: &str, body: Value) -> Result<Reply> {
        self.send(method, path, Some(&body), repo, true).await
    }

    fn check_length(&self, body: &str) -> Result<()> {
        let chars = body.chars().count();
        if chars > MAX_COMMENT_CHARS {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a comment of {chars} characters is longer than GitHub's {MAX_COMMENT_CHARS}; shorten it first"
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ScmProvider for GithubProvider {
    fn kind(&self) -> &str {
        "github"
    }

    fn max_comment_chars(&self) -> Option<usize> {
        Some(MAX_COMMENT_CHARS)
    }

    async fn pull_request(&self, pr: &PrRef) -> Result<PullRequest> {
        let path = format!("{}/pulls/{}", repo_path(&pr.repo), pr.number);
        let what = format!("GET {path}");
        let p: PullJson = expect(self.get(&pr.repo, &path).await?, &what, &[200])?.json(&what)?;
        let base_full = p.base.repo.as_ref().map_or_else(|| pr.repo.to_string(), |r| r.full_name.clone());
        let author = p.user.map(|u| u.login).unwrap_or_default();
        let (head_repo, is_fork, clone_url) = match &p.head.repo {
            Some(h) => (
                RepoRef { owner: h.owner.login.clone(), name: h.name.clone() },
                !h.full_name.eq_ignore_ascii_case(&base_full),
                h.clone_url.clone(),
            ),
            // The head repository was deleted: GitHub still serves the head commit from the base repository.
            None => (
                RepoRef {
                    owner: p.head.user.as_ref().map_or_else(|| author.clone(), |u| u.login.clone()),
                    name: pr.repo.name.clone(),
                },
                true,
                None,
            ),
        };
        let clone_url =
            clone_url.or_else(|| p.base.repo.as_ref().and_then(|r| r.clone_url.clone())).unwrap_or_default();
        Ok(PullRequest {
            pr: PrRef { repo: pr.repo.clone(), number: p.number },
            title: p.title,
            author,
            head_sha: Sha(p.head.sha),
            head_ref: p.head.git_ref,
            head_repo,
            base_ref: p.base.git_ref,
            is_fork,
            is_draft: p.draft.unwrap_or(false),
            is_open: p.state == "open",
            mergeable: p.mergeable,
            mergeable_state: p.mergeable_state,
            clone_url,
        })
    }

    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission> {
        let path = format!("{}/collaborators/{}/permission", repo_path(repo), enc(user));
        let what = format!("GET {path}");
        let reply = self.get(repo, &path).await?;
        if reply.status == 404 {
            return Ok(Permission::None);
        }
        let p: PermissionJson = expect(reply, &what, &[200])?.json(&what)?;
        // `permission` folds maintain into write and triage into read; `role_name` keeps them.
        let role = p.role_name.as_deref().and_then(permission_from);
        let base = permission_from(&p.permission).unwrap_or(Permission::None);
        Ok(match role {
            Some(r @ (Permission::Maintain | Permission::Triage)) => r,
            Some(r) if r >= base => r,
            _ => base,
        })
    }

    async fn post_comment(&self, pr: &PrRef, body: &str) -> Result<CommentId> {
        self.check_length(body)?;
        let path = format!("{}/issues/{}/comments", repo_path(&pr.repo), pr.number);
        let what = format!("POST {path}");
        let reply = self.write(Method::POST, &pr.repo, &path, json!({ "body": body })).await?;
        let id: IdJson = expect(reply, &what, &[201])?.json(&what)?;
        Ok(CommentId(id.id.to_string()))
    }

    async fn find_comment(&self, pr: &PrRef, author: &str, marker: &str) -> Result<Option<CommentId>> {
        const PER_PAGE: usize = 100;
        let base = format!("{}/issues/{}/comments", repo_path(&pr.repo), pr.number);
        let mut page = 1;
        loop {
            let path = format!("{base}?per_page={PER_PAGE}&page={page}");
            let what = format!("GET {path}");
            let comments: Vec<CommentJson> = expect(self.get(&pr.repo, &path).await?, &what, &[200])?.json(&what)?;
            let found = comments.iter().find(|c| {
                c.user.as_ref().is_some_and(|u| u.login.eq_ignore_ascii_case(author))
                    && c.body.as_deref().is_some_and(|b| b.contains(marker))
            });
            if let Some(c) = found {
                return Ok(Some(CommentId(c.id.to_string())));
            }
            if comments.len() < PER_PAGE {
                return Ok(None);
            }
            page += 1;
        }
    }

    async fn edit_comment(&self, pr: &PrRef, id: &CommentId, body: &str) -> Result<()> {
        self.check_length(body)?;
        let path = format!("{}/issues/comments/{}", repo_path(&pr.repo), enc(&id.0));
        let reply = self.write(Method::PATCH, &pr.repo, &path, json!({ "body": body })).await?;
        expect(reply, &format!("PATCH {path}"), &[200]).map(drop)
    }

    async fn react(&self, comment: &CommentRef, reaction: Reaction) -> Result<()> {
        let repo = &comment.pr.repo;
        let path = format!("{}/issues/comments/{}/reactions", repo_path(repo), enc(&comment.id.0));
        let reply = self.write(Method::POST, repo, &path, json!({ "content": reaction_content(reaction) })).await?;
        expect(reply, &format!("POST {path}"), &[200, 201]).map(drop)
    }

    async fn add_label(&self, pr: &PrRef, label: &Label) -> Result<()> {
        let color = label.color.trim_start_matches('#');
        let path = format!("{}/labels", repo_path(&pr.repo));
        let reply = self.write(Method::POST, &pr.repo, &path, json!({ "name": label.name, "color": color })).await?;
        let exists = reply.status == 422 && reply.body.contains("already_exists");
        if !exists {
            expect(reply, &format!("POST {path}"), &[201])?;
        }
        let path = format!("{}/issues/{}/labels", repo_path(&pr.repo), pr.number);
        let reply = self.write(Method::POST, &pr.repo, &path, json!({ "labels": [label.name] })).await?;
        expect(reply, &format!("POST {path}"), &[200]).map(drop)
    }

    async fn remove_label(&self, pr: &PrRef, label: &str) -> Result<()> {
        let path = format!("{}/issues/{}/labels/{}", repo_path(&pr.repo), pr.number, enc(label));
        let reply = self.send(Method::DELETE, &path, None, &pr.repo, true).await?;
        expect(reply, &format!("DELETE {path}"), &[200, 204, 404]).map(drop)
    }

    async fn prs_with_label(&self, repo: &RepoRef, label: &str) -> Result<Vec<PrRef>> {
        if label.contains('"') {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("GitHub search cannot look for the label `{label}`: it contains a double quote"),
            ));
        }
        let q = format!("repo:{}/{} is:pr label:\"{label}\"", repo.owner, repo.name);
        const PER_PAGE: usize = 100;
        let mut out = Vec::new();
        // GitHub's search serves at most 1000 results.
        for page in 1..=10 {
            let path = format!("/search/issues?q={}&per_page={PER_PAGE}&page={page}", enc(&q));
            let what = format!("GET {path}");
            let found: SearchJson = expect(self.get(repo, &path).await?, &what, &[200])?.json(&what)?;
            let count = found.items.len();
            out.extend(
                found
                    .items
                    .into_iter()
                    .filter(|i| i.pull_request.is_some())
                    .map(|i| PrRef { repo: repo.clone(), number: i.number }),
            );
            if count < PER_PAGE || (page * PER_PAGE) as u64 >= found.total_count {
                break;
            }
        }
        Ok(out)
    }

    async fn is_behind_base(&self, pr: &PrRef) -> Result<bool> {
        let p = self.pull_request(pr).await?;
        let path = format!("{}/compare/{}...{}", repo_path(&pr.repo), enc(&p.base_ref), enc(&p.head_sha.0));
        let what = format!("GET {path}");
        let c: CompareJson = expect(self.get(&pr.repo, &path).await?, &what, &[200])?.json(&what)?;
        Ok(c.behind_by > 0)
    }

    async fn merge(&self, pr: &PrRef, expected_head: &Sha) -> Result<()> {
        let path = format!("{}/pulls/{}/merge", repo_path(&pr.repo), pr.number);
        let what = format!("PUT {path}");
        let reply = self.write(Method::PUT, &pr.repo, &path, json!({ "sha": expected_head.0 })).await?;
        match reply.status {
            200 => Ok(()),
            409 => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{pr} was not merged: its head is no longer {expected_head} (someone pushed); {what} answered 409"
                ),
            )),
            405 => Err(Error::new(
                ErrorKind::Conflict,
                format!("{pr} cannot be merged now: {}", answer_error(&what, 405, &reply.body).message()),
            )),
            status => Err(answer_error(&what, status, &reply.body)),
        }
    }

    async fn close(&self, pr: &PrRef) -> Result<()> {
        let path = format!("{}/pulls/{}", repo_path(&pr.repo), pr.number);
        let reply = self.write(Method::PATCH, &pr.repo, &path, json!({ "state": "closed" })).await?;
        expect(reply, &format!("PATCH {path}"), &[200]).map(drop)
    }

    async fn checkout(&self, pr: &PullRequest, into: &Path) -> Result<()> {
        let sha = &pr.head_sha.0;
        if sha.len() < 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("`{sha}` is not a full commit hash")));
        }
        if into.exists() && std::fs::read_dir(into).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("{} is not an empty directory", into.display())));
        }
        let token = match &self.auth {
            Auth::Token(t) => t.clone(),
            Auth::App { .. } => self.installation_token(&pr.pr.repo).await?,
        };
        let credentials = git_credential_env(&self.api_url, &pr.clone_url, &token);
        let dir = into.to_string_lossy().into_owned();
        // HOME is the new repository's `.git`: empty of user files (the PR's tree can never write there).
        let home = into.join(".git");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let git = |config: &[&str], args: &[&str], with_credentials: bool| {
            let mut cmd = tokio::process::Command::new("git");
            for c in config {
                cmd.arg("-c").arg(c);
            }
            cmd.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
            cmd.env_clear()
                .env("PATH", &path)
                .env("HOME", &home)
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("LANG", "C")
                .env("LC_ALL", "C");
            if with_credentials {
                cmd.envs(credentials.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            cmd
        };
        let token = token.as_str();
        let run = |mut cmd: tokio::process::Command, step: String, limit: Duration| async move {
            let out = match tokio::time::timeout(limit, cmd.output()).await {
                // Dropping the future kills git (`kill_on_drop`).
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        redact(&format!("{step} did not finish within {} s and was stopped", limit.as_secs()), token),
                    ));
                }
                Ok(out) => out.map_err(|e| {
                    Error::new(ErrorKind::Unavailable, format!("cannot run git ({e}); is git installed?"))
                        .with_source(e)
                })?,
            };
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            let status = out.status.code().map_or_else(|| "a signal".to_owned(), |c| format!("exit status {c}"));
            let kind = git_failure_kind(&stderr);
            let hint = match kind {
                ErrorKind::NotFound => {
                    "; the commit no longer exists on the remote (probably force-pushed away): push again, \
                     or comment the command again to use the PR's current head"
                }
                ErrorKind::PermissionDenied => "; the remote refused the bot's credentials",
                _ => "",
            };
            Err(Error::new(kind, redact(&format!("{step} failed ({status}): {}{hint}", tail.join(" / ")), token)))
        };
        run(git(&[], &["init", "-q", &dir], false), format!("git init {dir}"), GIT_STEP_TIMEOUT).await?;
        run(
            git(
                &["http.lowSpeedLimit=1000", "http.lowSpeedTime=60", "http.followRedirects=false"],
                &["-C", &dir, "fetch", "-q", "--depth", "1", "--no-tags", &pr.clone_url, sha],
                true,
            ),
            format!("git fetch of {sha} from {}", pr.clone_url),
            self.fetch_timeout,
        )
        .await?;
        run(
            git(&[], &["-C", &dir, "checkout", "-q", "--detach", "FETCH_HEAD"], false),
            format!("git checkout {sha}"),
            GIT_STEP_TIMEOUT,
        )
        .await?;
        let head =
            run(git(&[], &["-C", &dir, "rev-parse", "HEAD"], false), "git rev-parse HEAD".into(), GIT_STEP_TIMEOUT)
                .await?;
        if !head.eq_ignore_ascii_case(sha) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("checked out {head}, but {pr} was pinned to {sha}", pr = pr.pr),
            ));
        }
        Ok(())
    }
}
