//! A stateful fake of the GitHub REST API for tests (feature `testing`).
//!
//! [`TestGithub::start`] serves on `127.0.0.1:<free port>` from its own
//! thread and tokio runtime, so it keeps answering while a test blocks (for
//! example on a child process that talks to it). Every request is first
//! checked against GitHub's official OpenAPI description ([`super::openapi`]):
//! a request that does not fit gets a 4xx whose `message` names the operation
//! and the JSON path of each problem, and is recorded in
//! [`TestGithub::violations`]. Every answer the fake gives is shaped by and
//! checked against the schema the operation declares for that status, so it
//! never answers in a shape GitHub could not; a misfit is recorded too.
//!
//! Semantics follow GitHub where the provider depends on them: integer ids,
//! `node_id`s, users with `login`/`id`/`type`, the `sha` guard of merges (409
//! when the head moved, 405 when not mergeable), 422 for comment bodies over
//! 65 536 characters and for labels that already exist, 404 for unknown
//! collaborators and for removing an absent label, labels created on the fly
//! when added to an issue, the search qualifiers `repo:`, `is:pr`/`is:issue`,
//! `is:open`/`is:closed`, `state:` and `label:` (quoted or not), pagination
//! with `per_page`/`page`. Authentication: a personal token registered with
//! [`TestGithub::use_token`], or a GitHub App ([`TestGithub::use_app`]) whose
//! RS256 JWT (signature, `iss`, `exp` at most ten minutes after `iat`) buys
//! expiring installation tokens. Faults ([`Fault`]) can be injected per
//! method and path prefix.
//!
//! The API is served at the root ([`TestGithub::url`], like api.github.com)
//! and under `/api/v3` (like GitHub Enterprise Server); fault prefixes match
//! the path without `/api/v3`.
//!
//! Not modelled: write-permission checks of the acting token, ETags, the
//! `Link` header, GraphQL, and every operation the provider does not use
//! (they answer 404 naming the operation).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::openapi::{HttpRequest, Matched, Spec};

const DOCS: &str = "https://docs.github.com/rest";

/// A pull request to seed the fake with. [`TestPr::new`] fills in the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPr {
    /// PR number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Login of the author.
    pub author: String,
    /// Head commit.
    pub head_sha: String,
    /// Head branch.
    pub head_ref: String,
    /// Base branch.
    pub base_ref: String,
    /// Whether the head lives in the author's fork.
    pub fork: bool,
    /// Draft PR.
    pub draft: bool,
    /// Commits on the base the head does not have (the compare endpoint).
    pub behind_by: u64,
    /// Mergeability (`None`: GitHub is still computing it).
    pub mergeable: Option<bool>,
    /// `mergeable_state` when it is not what `mergeable` implies (e.g. `blocked` by
    /// branch protection: mergeable, but the merge endpoint answers 405).
    pub mergeable_state: Option<String>,
    /// Clone URL of the head repository (default: the base repository's, or the fork's).
    pub head_clone_url: Option<String>,
    /// Labels the PR starts with (created in the repository if needed).
    pub labels: Vec<String>,
}

impl TestPr {
    /// An open, mergeable, non-draft PR from a branch of the same repository,
    /// by `octocat`, from `feature-<number>` into `main`.
    pub fn new(number: u64, head_sha: &str) -> TestPr {
        TestPr {
            number,
            title: format!("Change #{number}"),
            author: "octocat".into(),
            head_sha: head_sha.into(),
            head_ref: format!("feature-{number}"),
            base_ref: "main".into(),
            fork: false,
            draft: false,
            behind_by: 0,
            mergeable: Some(true),
            mergeable_state: None,
            head_clone_url: None,
            labels: Vec::new(),
        }
    }
}

/// What happened to a PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPrState {
    /// `open` or `closed`.
    pub state: String,
    /// Whether it was merged.
    pub merged: bool,
    /// The merge commit, once merged.
    pub merged_sha: Option<String>,
    /// The current head commit.
    pub head_sha: String,
}

/// A comment on a PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestComment {
    /// Comment id.
    pub id: u64,
    /// Login of its author (`<slug>[bot]` for an app).
    pub user: String,
    /// Current body.
    pub body: String,
    /// How often it was edited.
    pub edits: u32,
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path with the query, e.g. `/search/issues?q=…`.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// When it was answered.
    pub at: SystemTime,
}

/// A failure to inject into the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a plain error body (e.g. 502).
    Status(u16),
    /// 403 with `Retry-After` (GitHub's secondary rate limit).
    SecondaryRateLimit {
        /// The `Retry-After` value.
        retry_after_secs: u64,
    },
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` this far in the future.
    PrimaryRateLimit {
        /// Seconds until the reset.
        reset_in_secs: u64,
    },
}

#[derive(Debug, Clone)]
struct Pr {
    seed: TestPr,
    id: u64,
    state: &'static str,
    merged_sha: Option<String>,
    labels: Vec<String>,
    title: String,
}

#[derive(Debug, Clone)]
struct LabelDef {
    id: u64,
    name: String,
    color: String,
    description: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Repo {
    id: u64,
    owner: String,
    name: String,
    clone_url: String,
    prs: BTreeMap<u64, Pr>,
    labels: Vec<LabelDef>,
    permissions: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct Comment {
    id: u64,
    repo: (String, String),
    number: u64,
    user: String,
    body: String,
    edits: u32,
    reactions: Vec<(String, String, u64)>,
}

struct App {
    app_id: u64,
    key: jsonwebtoken::DecodingKey,
    slug: String,
    installation_id: u64,
    token_ttl: Duration,
}

struct TokenInfo {
    login: String,
    bot: bool,
    expires: Option<SystemTime>,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<(String, String), Repo>,
    comments: BTreeMap<u64, Comment>,
    users: HashMap<String, u64>,
    next_id: u64,
    tokens: HashMap<String, TokenInfo>,
    app: Option<App>,
    issued: u64,
    requests: Vec<TestRequest>,
    violations: Vec<String>,
    faults: Vec<(String, String, Fault)>,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn user_id(&mut self, login: &str) -> u64 {
        if let Some(id) = self.users.get(login) {
            return *id;
        }
        let id = 1000 + self.users.len() as u64;
        self.users.insert(login.to_owned(), id);
        id
    }

    fn user(&mut self, login: &str) -> Value {
        let id = self.user_id(login);
        let bot = login.ends_with("[bot]");
        json!({
            "login": login,
            "id": id,
            "node_id": node_id(if bot { "BOT" } else { "U" }, id),
            "type": if bot { "Bot" } else { "User" },
            "site_admin": false,
            "url": format!("https://api.github.example.invalid/users/{login}"),
            "html_url": format!("https://github.example.invalid/{login}"),
            "avatar_url": format!("https://avatars.github.example.invalid/u/{id}"),
        })
    }

    fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.repos.get_mut(&key(owner, name))
    }
}

fn key(owner: &str, name: &str) -> (String, String) {
    (owner.to_ascii_lowercase(), name.to_ascii_lowercase())
}

fn node_id(prefix: &str, id: u64) -> String {
    format!("{prefix}_kwDO{id:08X}")
}

fn now_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn timestamp(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn error_body(message: &str) -> Value {
    json!({ "message": message, "documentation_url": DOCS })
}

/// A reply before shaping: status, extra headers, JSON body.
type Reply = (u16, Vec<(&'static str, String)>, Option<Value>);

fn reply(status: u16, body: Value) -> Reply {
    (status, Vec::new(), Some(body))
}

fn fail(status: u16, message: &str) -> Reply {
    reply(status, error_body(message))
}

struct Shared {
    spec: &'static Spec,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake. Stops when dropped.
pub struct TestGithub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestGithub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestGithub").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for TestGithub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TestGithub {
    /// Start the fake on a free loopback port, on its own thread.
    ///
    /// # Panics
    ///
    /// If GitHub's OpenAPI description cannot be read (the message says how
    /// to install it), or no port can be bound.
    pub async fn start() -> TestGithub {
        let spec = match Spec::github() {
            Ok(spec) => spec,
            Err(e) => panic!("the test GitHub server needs GitHub's OpenAPI description: {e}"),
        };
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind the test GitHub server to 127.0.0.1: {e}"));
        std_listener.set_nonblocking(true).unwrap_or_else(|e| panic!("test GitHub server: {e}"));
        let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("test GitHub server: {e}"));
        let shared = Arc::new(Shared { spec, state: Mutex::new(State { next_id: 1_000_000, ..State::default() }) });
        let (stop, stopped) = oneshot::channel::<()>();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("test-github".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => panic!("test GitHub server runtime: {e}"),
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => panic!("test GitHub server listener: {e}"),
                    };
                    let app = axum::Router::new().fallback(handle).with_state(server_shared);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .unwrap_or_else(|e| panic!("cannot start the test GitHub server thread: {e}"));
        TestGithub { addr, shared, stop: Some(stop), thread: Some(thread) }
    }

    /// The API root, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add a repository (`clone_url` is what PRs from its own branches clone from).
    pub fn add_repo(&self, owner: &str, name: &str, clone_url: &str) {
        let mut st = self.shared.lock();
        let id = st.id();
        st.repos.insert(
            key(owner, name),
            Repo { id, owner: owner.into(), name: name.into(), clone_url: clone_url.into(), ..Repo::default() },
        );
    }

    /// Add (or replace) a pull request of a repository added before.
    ///
    /// # Panics
    ///
    /// If the repository is unknown.
    pub fn add_pr(&self, owner: &str, name: &str, pr: TestPr) {
        let mut st = self.shared.lock();
        let id = st.id();
        let mut label_ids = Vec::new();
        for _ in &pr.labels {
            label_ids.push(st.id());
        }
        let repo = st.repo_mut(owner, name).unwrap_or_else(|| panic!("add_repo({owner}, {name}) first"));
        for (label, id) in pr.labels.iter().zip(label_ids) {
            if !repo.labels.iter().any(|l| l.name.eq_ignore_ascii_case(label)) {
                repo.labels.push(LabelDef { id, name: label.clone(), color: "ededed".into(), description: None });
            }
        }
        let labels = pr.labels.clone();
        let title = pr.title.clone();
        repo.prs.insert(pr.number, Pr { seed: pr, id, state: "open", merged_sha: None, labels, title });
    }

    /// Simulate a push: the PR's head becomes `sha`.
    pub fn set_head(&self, owner: &str, name: &str, number: u64, sha: &str) {
        let mut st = self.shared.lock();
        if let Some(pr) = st.repo_mut(owner, name).and_then(|r| r.prs.get_mut(&number)) {
            pr.seed.head_sha = sha.into();
        }
    }

    /// Give `user` a role on the repository: `admin`, `maintain`, `write`, `triage`, `read` or `none`.
    pub fn set_permission(&self, owner: &str, name: &str, user: &str, permission: &str) {
        let mut st = self.shared.lock();
        if let Some(repo) = st.repo_mut(owner, name) {
            repo.permissions.insert(user.to_ascii_lowercase(), permission.into());
        }
    }

    /// A human's comment on PR `number`; returns its id.
    pub fn add_comment(&self, owner: &str, name: &str, number: u64, user: &str, body: &str) -> u64 {
        let mut st = self.shared.lock();
        let id = st.id();
        st.comments.insert(
            id,
            Comment {
                id,
                repo: key(owner, name),
                number,
                user: user.into(),
                body: body.into(),
                edits: 0,
                reactions: Vec::new(),
            },
        );
        id
    }

    /// The comments on PR `number`, oldest first.
    pub fn comments(&self, owner: &str, name: &str, number: u64) -> Vec<TestComment> {
        let st = self.shared.lock();
        let repo = key(owner, name);
        st.comments
            .values()
            .filter(|c| c.repo == repo && c.number == number)
            .map(|c| TestComment { id: c.id, user: c.user.clone(), body: c.body.clone(), edits: c.edits })
            .collect()
    }

    /// The reactions on a comment, in order (e.g. `["eyes"]`).
    pub fn reactions(&self, comment_id: u64) -> Vec<String> {
        let st = self.shared.lock();
        st.comments.get(&comment_id).map(|c| c.reactions.iter().map(|r| r.0.clone()).collect()).unwrap_or_default()
    }

    /// The labels on PR `number`.
    pub fn labels(&self, owner: &str, name: &str, number: u64) -> Vec<String> {
        let st = self.shared.lock();
        st.repos.get(&key(owner, name)).and_then(|r| r.prs.get(&number)).map(|p| p.labels.clone()).unwrap_or_default()
    }

    /// The labels defined in the repository with their colours.
    pub fn repo_labels(&self, owner: &str, name: &str) -> Vec<(String, String)> {
        let st = self.shared.lock();
        st.repos
            .get(&key(owner, name))
            .map(|r| r.labels.iter().map(|l| (l.name.clone(), l.color.clone())).collect())
            .unwrap_or_default()
    }

    /// State, merge and head of PR `number`.
    ///
    /// # Panics
    ///
    /// If there is no such PR.
    pub fn pr(&self, owner: &str, name: &str, number: u64) -> TestPrState {
        let st = self.shared.lock();
        let pr = st
            .repos
            .get(&key(owner, name))
            .and_then(|r| r.prs.get(&number))
            .unwrap_or_else(|| panic!("no PR {owner}/{name}#{number}"));
        TestPrState {
            state: pr.state.into(),
            merged: pr.merged_sha.is_some(),
            merged_sha: pr.merged_sha.clone(),
            head_sha: pr.seed.head_sha.clone(),
        }
    }

    /// Accept `token` (as `Bearer` or `token`), acting as the user `login`.
    pub fn use_token(&self, token: &str, login: &str) {
        let mut st = self.shared.lock();
        st.tokens.insert(token.into(), TokenInfo { login: login.into(), bot: false, expires: None });
    }

    /// Register a GitHub App: JWTs signed by the private key of
    /// `public_key_pem` buy installation tokens living `token_ttl`; whatever is
    /// done with them is done by `<slug>[bot]`. Every repository is in the installation.
    ///
    /// # Panics
    ///
    /// If the PEM is not an RSA public key.
    pub fn use_app(&self, app_id: u64, public_key_pem: &str, slug: &str, installation_id: u64, token_ttl: Duration) {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("use_app: not an RSA public key in PEM: {e}"));
        let mut st = self.shared.lock();
        st.app = Some(App { app_id, key, slug: slug.into(), installation_id, token_ttl });
    }

    /// Revoke every installation token issued so far (the next use answers 401).
    pub fn revoke_installation_tokens(&self) {
        self.shared.lock().tokens.retain(|_, t| !t.bot);
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<TestRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every OpenAPI violation so far, of requests and of the fake's own responses.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Answer the next request whose method is `method` and whose path starts
    /// with `path_prefix` with `fault` instead (after the OpenAPI check).
    /// Several faults queue up in order.
    pub fn fail_next(&self, method: &str, path_prefix: &str, fault: Fault) {
        self.shared.lock().faults.push((method.to_ascii_uppercase(), path_prefix.into(), fault));
    }
}

async fn handle(AxState(shared): AxState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 32 << 20).await.unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, headers, body) = respond(
        &shared,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        header("authorization").as_deref(),
        header("content-type").as_deref(),
        header("accept").as_deref(),
        &bytes,
    );
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-github-api-version-selected", "2022-11-28");
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    builder.body(Body::from(text)).unwrap_or_else(|_| Response::new(Body::empty()))
}

#[allow(clippy::too_many_arguments)]
fn respond(
    shared: &Shared,
    method: &str,
    path: &str,
    query: Option<&str>,
    authorization: Option<&str>,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: &[u8],
) -> Reply {
    let full = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    // GitHub Enterprise Server serves the same API under `/api/v3`.
    let path = path.strip_prefix("/api/v3").filter(|p| p.starts_with('/')).unwrap_or(path);
    let request = HttpRequest { method, path, query, content_type, accept, body };
    let checked = shared.spec.check_request(&request);
    let mut st = shared.lock();
    let (status, headers, body) = match checked {
        Err(violations) => {
            let status = match violations[0].location.as_str() {
                "path" => 404,
                "header.content-type" => 415,
                "header.accept" => 406,
                _ => 422,
            };
            let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
            for v in &text {
                st.violations.push(format!("request {method} {full}: {v}"));
            }
            (status, Vec::new(), Some(error_body(&format!("OpenAPI violation: {}", text.join("; ")))))
        }
        Ok(matched) => {
            let (status, headers, body) = answer(&mut st, &matched, method, path, authorization);
            let body = match (shared.spec.response_schema(&matched.operation_id, status), body) {
                (Ok(Some(schema)), Some(b)) => Some(shared.spec.synthesize(schema, Some(&b))),
                (_, b) => b,
            };
            for v in shared.spec.check_response(&matched.operation_id, status, body.as_ref()) {
                st.violations.push(format!("response to {method} {full}: {v}"));
            }
            (status, headers, body)
        }
    };
    st.requests.push(TestRequest { method: method.into(), path: full, status, at: SystemTime::now() });
    (status, headers, body)
}

/// Faults, then authentication, then the operation.
fn answer(st: &mut State, m: &Matched, method: &str, path: &str, authorization: Option<&str>) -> Reply {
    if let Some(i) = st.faults.iter().position(|(fm, prefix, _)| fm == method && path.starts_with(prefix.as_str())) {
        let (_, _, fault) = st.faults.remove(i);
        return match fault {
            Fault::Status(status) => fail(status, "Server Error (injected)"),
            Fault::SecondaryRateLimit { retry_after_secs } => (
                403,
                vec![("retry-after", retry_after_secs.to_string())],
                Some(error_body(
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                )),
            ),
            Fault::PrimaryRateLimit { reset_in_secs } => (
                403,
                vec![
                    ("x-ratelimit-limit", "5000".into()),
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-used", "5000".into()),
                    ("x-ratelimit-reset", (now_epoch() + reset_in_secs).to_string()),
                ],
                Some(error_body("API rate limit exceeded for installation.")),
            ),
        };
    }
    let token = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")).or_else(|| h.strip_prefix("token "))
        })
        .map(str::trim);
    let op = m.operation_id.as_str();
    if matches!(op, "apps/create-installation-access-token" | "apps/get-repo-installation") {
        if let Err(why) = verify_jwt(st, token) {
            return fail(401, &why);
        }
        return match op {
            "apps/get-repo-installation" => get_installation(st, m),
            _ => create_token(st, m),
        };
    }
    let actor = match token.and_then(|t| st.tokens.get(t)) {
        Some(info) if info.expires.is_none_or(|e| e > SystemTime::now()) => (info.login.clone(), info.bot),
        _ => return fail(401, "Bad credentials"),
    };
    let (owner, name) = (m.param("owner").to_owned(), m.param("repo").to_owned());
    if op != "search/issues-and-pull-requests" && st.repo_mut(&owner, &name).is_none() {
        return fail(404, "Not Found");
    }
    match op {
        "pulls/get" => with_pr(st, m, |st, pr_key| Ok(reply(200, pr_json(st, pr_key)))),
        "pulls/update" => update_pr(st, m),
        "pulls/merge" => merge_pr(st, m),
        "repos/get-collaborator-permission-level" => permission(st, m),
        "issues/create-comment" => create_comment(st, m, &actor.0),
        "issues/update-comment" => update_comment(st, m, &actor.0),
        "issues/list-comments" => list_comments(st, m),
        "reactions/create-for-issue-comment" => react(st, m, &actor.0),
        "issues/create-label" => create_label(st, m),
        "issues/add-labels" => add_labels(st, m),
        "issues/remove-label" => remove_label(st, m),
        "search/issues-and-pull-requests" => search(st, m),
        "repos/compare-commits" => compare(st, m),
        other => fail(404, &format!("Not Found (the test GitHub server does not implement `{other}`)")),
    }
}

fn verify_jwt(st: &State, token: Option<&str>) -> Result<(), String> {
    let app = st.app.as_ref().ok_or("A JSON web token could not be decoded (no app is registered)")?;
    let token = token.ok_or("A JSON web token could not be decoded (no bearer token)")?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // `iss` may be a number (GitHub accepts both), which jsonwebtoken's own check refuses: checked below.
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(token, &app.key, &validation)
        .map_err(|e| format!("A JSON web token could not be decoded ({e})"))?;
    let claims = data.claims;
    let iss = match &claims["iss"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("Missing 'issuer' claim ('iss')".into()),
    };
    if iss != app.app_id.to_string() {
        return Err(format!("'Issuer' claim ('iss') must be the app's id {}, got {iss}", app.app_id));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err("Missing 'issued at' claim ('iat')".into());
    };
    if exp > iat + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    if iat > now_epoch() + 60 {
        return Err("'Issued at' claim ('iat') must be an Integer representing a time in the past".into());
    }
    Ok(())
}

fn get_installation(st: &mut State, m: &Matched) -> Reply {
    let (owner, name) = (m.param("owner"), m.param("repo"));
    if st.repo_mut(owner, name).is_none() {
        return fail(404, "Not Found");
    }
    let Some((id, app_id, slug)) = st.app.as_ref().map(|a| (a.installation_id, a.app_id, a.slug.clone())) else {
        return fail(404, "Not Found");
    };
    let account = st.user(owner);
    let account_id = account["id"].clone();
    reply(
        200,
        json!({
            "id": id,
            "app_id": app_id,
            "app_slug": slug,
            "client_id": format!("Iv1.{app_id:016x}"),
            "account": account,
            "target_id": account_id,
            "target_type": "Organization",
            "repository_selection": "all",
            "access_tokens_url": format!("https://api.github.example.invalid/app/installations/{id}/access_tokens"),
            "repositories_url": "https://api.github.example.invalid/installation/repositories",
            "html_url": format!("https://github.example.invalid/settings/installations/{id}"),
            "permissions": { "issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read" },
            "events": ["issue_comment"],
            "created_at": timestamp(SystemTime::now()),
            "updated_at": timestamp(SystemTime::now()),
            "single_file_name": null,
        }),
    )
}

fn create_token(st: &mut State, m: &Matched) -> Reply {
    let Some((installation, ttl, slug)) = st.app.as_ref().map(|a| (a.installation_id, a.token_ttl, a.slug.clone()))
    else {
        return fail(404, "Not Found");
    };
    if m.param("installation_id") != installation.to_string() {
        return fail(404, "Not Found");
    }
    st.issued += 1;
    let token = format!("ghs_test{:04}{:x}", st.issued, now_epoch());
    let expires = SystemTime::now() + ttl;
    st.tokens.insert(token.clone(), TokenInfo { login: format!("{slug}[bot]"), bot: true, expires: Some(expires) });
    reply(
        201,
        json!({
            "token": token,
            "expires_at": timestamp(expires),
            "permissions": { "issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read" },
            "repository_selection": "all",
        }),
    )
}

type PrKey = ((String, String), u64);

/// Run `f` on an existing PR (`pull_number` or `issue_number`), 404 otherwise.
fn with_pr(st: &mut State, m: &Matched, f: impl FnOnce(&mut State, &PrKey) -> Result<Reply, Reply>) -> Reply {
    let number = m.path_params.get("pull_number").or_else(|| m.path_params.get("issue_number"));
    let number: u64 = number.and_then(|n| n.parse().ok()).unwrap_or(0);
    let repo = key(m.param("owner"), m.param("repo"));
    if !st.repos.get(&repo).is_some_and(|r| r.prs.contains_key(&number)) {
        return fail(404, "Not Found");
    }
    f(st, &(repo, number)).unwrap_or_else(|e| e)
}

fn pr_ref<'s>(st: &'s mut State, k: &PrKey) -> &'s mut Pr {
    st.repos.get_mut(&k.0).and_then(|r| r.prs.get_mut(&k.1)).unwrap_or_else(|| unreachable!("checked by with_pr"))
}

fn repo_json(st: &mut State, owner: &str, name: &str, id: u64, clone_url: &str, fork: bool) -> Value {
    let owner_json = st.user(owner);
    json!({
        "id": id,
        "node_id": node_id("R", id),
        "name": name,
        "full_name": format!("{owner}/{name}"),
        "owner": owner_json,
        "private": false,
        "fork": fork,
        "html_url": format!("https://github.example.invalid/{owner}/{name}"),
        "url": format!("https://api.github.example.invalid/repos/{owner}/{name}"),
        "clone_url": clone_url,
        "default_branch": "main",
        "visibility": "public",
    })
}

fn label_json(label: &LabelDef) -> Value {
    json!({
        "id": label.id,
        "node_id": node_id("LA", label.id),
        "url": format!("https://api.github.example.invalid/labels/{}", label.id),
        "name": label.name,
        "color": label.color,
        "description": label.description,
        "default": false,
    })
}

fn issue_labels(st: &State, k: &PrKey) -> Vec<Value> {
    let repo = &st.repos[&k.0];
    repo.prs[&k.1]
        .labels
        .iter()
        .filter_map(|name| repo.labels.iter().find(|l| l.name.eq_ignore_ascii_case(name)))
        .map(label_json)
        .collect()
}

fn pr_json(st: &mut State, k: &PrKey) -> Value {
    let repo = st.repos[&k.0].clone();
    let pr = repo.prs[&k.1].clone();
    let seed = &pr.seed;
    let base_repo = repo_json(st, &repo.owner, &repo.name, repo.id, &repo.clone_url, false);
    let head_repo = if seed.fork {
        let url = seed
            .head_clone_url
            .clone()
            .unwrap_or_else(|| format!("https://github.example.invalid/{}/{}.git", seed.author, repo.name));
        repo_json(st, &seed.author, &repo.name, repo.id + 500_000, &url, true)
    } else {
        let url = seed.head_clone_url.clone().unwrap_or_else(|| repo.clone_url.clone());
        repo_json(st, &repo.owner, &repo.name, repo.id, &url, false)
    };
    let head_owner = if seed.fork { seed.author.clone() } else { repo.owner.clone() };
    let (user, head_user, base_user) = (st.user(&seed.author), st.user(&head_owner), st.user(&repo.owner));
    let labels = issue_labels(st, k);
    let web = format!("https://github.example.invalid/{}/{}/pull/{}", repo.owner, repo.name, seed.number);
    let api = format!("https://api.github.example.invalid/repos/{}/{}/pulls/{}", repo.owner, repo.name, seed.number);
    let now = timestamp(SystemTime::now());
    let closed = pr.state == "closed";
    json!({
        "id": pr.id,
        "node_id": node_id("PR", pr.id),
        "number": seed.number,
        "state": pr.state,
        "locked": false,
        "title": pr.title,
        "body": null,
        "user": user,
        "labels": labels,
        "draft": seed.draft,
        "merged": pr.merged_sha.is_some(),
        "mergeable": if closed { Value::Null } else { json!(seed.mergeable) },
        "mergeable_state": seed.mergeable_state.clone().unwrap_or_else(|| match seed.mergeable {
            Some(true) => "clean".to_owned(),
            Some(false) => "dirty".to_owned(),
            None => "unknown".to_owned(),
        }),
        "merged_at": pr.merged_sha.as_ref().map(|_| now.clone()),
        "closed_at": if closed { json!(now) } else { Value::Null },
        "merge_commit_sha": pr.merged_sha,
        "created_at": now,
        "updated_at": now,
        "html_url": web,
        "url": api,
        "head": {
            "label": format!("{head_owner}:{}", seed.head_ref),
            "ref": seed.head_ref,
            "sha": seed.head_sha,
            "user": head_user,
            "repo": head_repo,
        },
        "base": {
            "label": format!("{}:{}", repo.owner, seed.base_ref),
            "ref": seed.base_ref,
            "sha": fake_sha(&format!("base-{}-{}", repo.name, seed.base_ref)),
            "user": base_user,
            "repo": base_repo,
        },
        "author_association": "CONTRIBUTOR",
        "comments": 0,
        "review_comments": 0,
        "commits": 1,
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
        "maintainer_can_modify": false,
    })
}

/// A deterministic 40-hex-digit id (FNV-1a, four rounds).
fn fake_sha(seed: &str) -> String {
    (0..5u64)
        .map(|round| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round;
            for b in seed.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("{:08x}", h as u32)
        })
        .collect()
}

fn update_pr(st: &mut State, m: &Matched) -> Reply {
    with_pr(st, m, |st, k| {
        let pr = pr_ref(st, k);
        if let Some(title) = m.body.get("title").and_then(Value::as_str) {
            pr.title = title.into();
        }
        match m.body.get("state").and_then(Value::as_str) {
            Some("closed") => pr.state = "closed",
            Some("open") if pr.merged_sha.is_none() => pr.state = "open",
            Some("open") => return Err(fail(422, "Validation Failed: a merged pull request cannot be reopened")),
            _ => {}
        }
        Ok(reply(200, pr_json(st, k)))
    })
}

fn merge_pr(st: &mut State, m: &Matched) -> Reply {
    with_pr(st, m, |st, k| {
        let pr = pr_ref(st, k);
        if pr.state != "open"
            || pr.seed.mergeable != Some(true)
            || pr.seed.mergeable_state.as_deref().is_some_and(|s| matches!(s, "blocked" | "dirty" | "draft"))
        {
            return Err(fail(405, "Pull Request is not mergeable"));
        }
        if let Some(sha) = m.body.get("sha").and_then(Value::as_str)
            && sha != pr.seed.head_sha
        {
            return Err(fail(409, "Head branch was modified. Review and try the merge again."));
        }
        let merged = fake_sha(&format!("merge-{}-{}", pr.id, pr.seed.head_sha));
        pr.merged_sha = Some(merged.clone());
        pr.state = "closed";
        Ok(reply(200, json!({ "sha": merged, "merged": true, "message": "Pull Request successfully merged" })))
    })
}

fn permission(st: &mut State, m: &Matched) -> Reply {
    let user = m.param("username").to_owned();
    let role = st
        .repo_mut(m.param("owner"), m.param("repo"))
        .and_then(|r| r.permissions.get(&user.to_ascii_lowercase()).cloned());
    let Some(role) = role else {
        return fail(404, &format!("{user} is not a user"));
    };
    let permission = match role.as_str() {
        "maintain" => "write",
        "triage" => "read",
        other => other,
    }
    .to_owned();
    let mut collaborator = st.user(&user);
    collaborator["role_name"] = json!(role);
    collaborator["permissions"] = json!({
        "admin": role == "admin",
        "maintain": matches!(role.as_str(), "admin" | "maintain"),
        "push": matches!(role.as_str(), "admin" | "maintain" | "write"),
        "triage": matches!(role.as_str(), "admin" | "maintain" | "write" | "triage"),
        "pull": role != "none",
    });
    reply(200, json!({ "permission": permission, "role_name": role, "user": collaborator }))
}

const MAX_COMMENT_CHARS: usize = 65_536;

fn too_long() -> Reply {
    reply(
        422,
        json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "IssueComment", "code": "custom", "field": "body",
                         "message": "body is too long (maximum is 65536 characters)" }],
            "documentation_url": DOCS,
        }),
    )
}

fn comment_json(st: &mut State, c: &Comment) -> Value {
    let user = st.user(&c.user);
    let (owner, name) = st.repos.get(&c.repo).map(|r| (r.owner.clone(), r.name.clone())).unwrap_or_default();
    let now = timestamp(SystemTime::now());
    json!({
        "id": c.id,
        "node_id": node_id("IC", c.id),
        "url": format!("https://api.github.example.invalid/repos/{owner}/{name}/issues/comments/{}", c.id),
        "html_url": format!("https://github.example.invalid/{owner}/{name}/pull/{}#issuecomment-{}", c.number, c.id),
        "issue_url": format!("https://api.github.example.invalid/repos/{owner}/{name}/issues/{}", c.number),
        "body": c.body,
        "user": user,
        "created_at": now,
        "updated_at": now,
        "author_association": "NONE",
    })
}

fn create_comment(st: &mut State, m: &Matched, actor: &str) -> Reply {
    with_pr(st, m, |st, k| {
        let body = m.body["body"].as_str().unwrap_or_default().to_owned();
        if body.chars().count() > MAX_COMMENT_CHARS {
            return Err(too_long());
        }
        let id = st.id();
        let c =
            Comment { id, repo: k.0.clone(), number: k.1, user: actor.into(), body, edits: 0, reactions: Vec::new() };
        st.comments.insert(id, c.clone());
        Ok(reply(201, comment_json(st, &c)))
    })
}

fn find_comment(st: &State, m: &Matched) -> Option<u64> {
    let id: u64 = m.param("comment_id").parse().ok()?;
    let repo = key(m.param("owner"), m.param("repo"));
    st.comments.get(&id).filter(|c| c.repo == repo).map(|c| c.id)
}

fn update_comment(st: &mut State, m: &Matched, actor: &str) -> Reply {
    let Some(id) = find_comment(st, m) else { return fail(404, "Not Found") };
    let body = m.body["body"].as_str().unwrap_or_default().to_owned();
    if body.chars().count() > MAX_COMMENT_CHARS {
        return too_long();
    }
    let Some(c) = st.comments.get_mut(&id) else { return fail(404, "Not Found") };
    if c.user != actor {
        return fail(403, "Resource not accessible by integration");
    }
    c.body = body;
    c.edits += 1;
    let c = c.clone();
    reply(200, comment_json(st, &c))
}

/// `per_page` (default 30, at most 100) and `page` (from 1) applied to `items`.
fn page<T: Clone>(m: &Matched, items: &[T]) -> Vec<T> {
    let per_page = m.query_param("per_page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(30).clamp(1, 100);
    let page = m.query_param("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
    items.iter().skip((page - 1) * per_page).take(per_page).cloned().collect()
}

fn list_comments(st: &mut State, m: &Matched) -> Reply {
    with_pr(st, m, |st, k| {
        let all: Vec<Comment> = st.comments.values().filter(|c| c.repo == k.0 && c.number == k.1).cloned().collect();
        let items: Vec<Value> = page(m, &all).iter().map(|c| comment_json(st, c)).collect();
        Ok(reply(200, Value::Array(items)))
    })
}

fn react(st: &mut State, m: &Matched, actor: &str) -> Reply {
    let Some(id) = find_comment(st, m) else { return fail(404, "Not Found") };
    let content = m.body["content"].as_str().unwrap_or_default().to_owned();
    let existing = st.comments[&id].reactions.iter().find(|r| r.0 == content && r.1 == actor).map(|r| r.2);
    let (status, reaction_id) = match existing {
        Some(rid) => (200, rid),
        None => {
            let rid = st.id();
            if let Some(c) = st.comments.get_mut(&id) {
                c.reactions.push((content.clone(), actor.into(), rid));
            }
            (201, rid)
        }
    };
    let user = st.user(actor);
    reply(
        status,
        json!({ "id": reaction_id, "node_id": node_id("REA", reaction_id), "user": user, "content": content,
                "created_at": timestamp(SystemTime::now()) }),
    )
}

fn create_label(st: &mut State, m: &Matched) -> Reply {
    let name = m.body["name"].as_str().unwrap_or_default().to_owned();
    let color = m.body["color"].as_str().unwrap_or("ededed").trim_start_matches('#').to_ascii_lowercase();
    let description = m.body["description"].as_str().map(str::to_owned);
    let id = st.id();
    let Some(repo) = st.repo_mut(m.param("owner"), m.param("repo")) else { return fail(404, "Not Found") };
    if repo.labels.iter().any(|l| l.name.eq_ignore_ascii_case(&name)) {
        return reply(
            422,
            json!({ "message": "Validation Failed", "documentation_url": DOCS,
                    "errors": [{ "resource": "Label", "code": "already_exists", "field": "name" }] }),
        );
    }
    if color.len() != 6 || !color.chars().all(|c| c.is_ascii_hexdigit()) {
        return reply(
            422,
            json!({ "message": "Validation Failed", "documentation_url": DOCS,
                    "errors": [{ "resource": "Label", "code": "invalid", "field": "color" }] }),
        );
    }
    let label = LabelDef { id, name, color, description };
    repo.labels.push(label.clone());
    reply(201, label_json(&label))
}

fn add_labels(st: &mut State, m: &Matched) -> Reply {
    with_pr(st, m, |st, k| {
        let list = match &m.body {
            Value::Object(o) => o.get("labels").cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        let names: Vec<String> = match list {
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().or_else(|| i.get("name").and_then(Value::as_str)).map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        for name in names {
            let id = st.id();
            let Some(repo) = st.repos.get_mut(&k.0) else { continue };
            let canonical = match repo.labels.iter().find(|l| l.name.eq_ignore_ascii_case(&name)) {
                Some(l) => l.name.clone(),
                None => {
                    repo.labels.push(LabelDef { id, name: name.clone(), color: "ededed".into(), description: None });
                    name
                }
            };
            let pr = pr_ref(st, k);
            if !pr.labels.iter().any(|l| l.eq_ignore_ascii_case(&canonical)) {
                pr.labels.push(canonical);
            }
        }
        Ok(reply(200, Value::Array(issue_labels(st, k))))
    })
}

fn remove_label(st: &mut State, m: &Matched) -> Reply {
    with_pr(st, m, |st, k| {
        let name = m.param("name").to_owned();
        let pr = pr_ref(st, k);
        let Some(i) = pr.labels.iter().position(|l| l.eq_ignore_ascii_case(&name)) else {
            return Err(fail(404, "Label does not exist"));
        };
        pr.labels.remove(i);
        Ok(reply(200, Value::Array(issue_labels(st, k))))
    })
}

/// Split a search query into terms, keeping `"quoted values"` together.
fn search_terms(q: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    terms.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        terms.push(current);
    }
    terms
}

fn search(st: &mut State, m: &Matched) -> Reply {
    let q = m.query_param("q").unwrap_or_default().to_owned();
    let mut repo_filter = None;
    let mut state_filter = None;
    let mut labels = Vec::new();
    let mut words = Vec::new();
    let mut issues_only = false;
    for term in search_terms(&q) {
        match term.split_once(':') {
            Some(("repo", r)) => match r.split_once('/') {
                Some((o, n)) => repo_filter = Some(key(o, n)),
                None => return fail(422, "Validation Failed: repo: needs owner/name"),
            },
            Some(("is", "pr")) | Some(("type", "pr")) => {}
            Some(("is", "issue")) | Some(("type", "issue")) => issues_only = true,
            Some(("is", s @ ("open" | "closed"))) | Some(("state", s @ ("open" | "closed"))) => {
                state_filter = Some(s.to_owned());
            }
            Some(("label", l)) => labels.push(l.to_owned()),
            Some((qualifier, _)) => {
                return fail(
                    422,
                    &format!("Validation Failed: the test server does not know the qualifier `{qualifier}:`"),
                );
            }
            None => words.push(term.to_ascii_lowercase()),
        }
    }
    let mut hits: Vec<PrKey> = Vec::new();
    if !issues_only {
        for (rk, repo) in &st.repos {
            if repo_filter.as_ref().is_some_and(|f| f != rk) {
                continue;
            }
            for (number, pr) in &repo.prs {
                let state_ok = state_filter.as_deref().is_none_or(|s| s == pr.state);
                let labels_ok = labels.iter().all(|l| pr.labels.iter().any(|p| p.eq_ignore_ascii_case(l)));
                let words_ok = words.iter().all(|w| pr.title.to_ascii_lowercase().contains(w));
                if state_ok && labels_ok && words_ok {
                    hits.push((rk.clone(), *number));
                }
            }
        }
    }
    let total = hits.len();
    let items: Vec<Value> = page(m, &hits)
        .iter()
        .map(|k| {
            let pr = pr_json(st, k);
            let api_issue = format!(
                "https://api.github.example.invalid/repos/{}/issues/{}",
                pr["base"]["repo"]["full_name"].as_str().unwrap_or_default(),
                k.1
            );
            json!({
                "id": pr["id"], "node_id": pr["node_id"], "number": k.1, "title": pr["title"], "state": pr["state"],
                "locked": false, "user": pr["user"], "labels": pr["labels"], "assignee": null, "milestone": null,
                "comments": 0, "created_at": pr["created_at"], "updated_at": pr["updated_at"], "closed_at": pr["closed_at"],
                "draft": pr["draft"], "score": 1.0, "author_association": "CONTRIBUTOR",
                "url": api_issue, "html_url": pr["html_url"],
                "repository_url": pr["base"]["repo"]["url"],
                "labels_url": format!("{api_issue}/labels{{/name}}"), "comments_url": format!("{api_issue}/comments"),
                "events_url": format!("{api_issue}/events"),
                "pull_request": { "url": pr["url"], "html_url": pr["html_url"],
                                  "diff_url": format!("{}.diff", pr["html_url"].as_str().unwrap_or_default()),
                                  "patch_url": format!("{}.patch", pr["html_url"].as_str().unwrap_or_default()),
                                  "merged_at": pr["merged_at"] },
            })
        })
        .collect();
    reply(200, json!({ "total_count": total, "incomplete_results": false, "items": items }))
}

fn compare(st: &mut State, m: &Matched) -> Reply {
    let (base, head) = (m.param("base").to_owned(), m.param("head").to_owned());
    let head = head.rsplit(':').next().unwrap_or_default().to_owned();
    let Some(repo) = st.repo_mut(m.param("owner"), m.param("repo")) else { return fail(404, "Not Found") };
    let Some(pr) =
        repo.prs.values().find(|p| p.seed.base_ref == base && (p.seed.head_sha == head || p.seed.head_ref == head))
    else {
        return fail(404, &format!("No common ancestor between {base} and {head}."));
    };
    let behind = pr.seed.behind_by;
    let (owner, name) = (repo.owner.clone(), repo.name.clone());
    let web = format!("https://github.example.invalid/{owner}/{name}/compare/{base}...{head}");
    reply(
        200,
        json!({
            "url": format!("https://api.github.example.invalid/repos/{owner}/{name}/compare/{base}...{head}"),
            "html_url": web,
            "permalink_url": web,
            "diff_url": format!("{web}.diff"),
            "patch_url": format!("{web}.patch"),
            "status": if behind > 0 { "diverged" } else { "ahead" },
            "ahead_by": 1,
            "behind_by": behind,
            "total_commits": 1,
            "commits": [],
            "files": [],
        }),
    )
}
