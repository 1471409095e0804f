//! A stateful Kubeflow Pipelines v2beta1 API server for tests and benchmarks.
//!
//! [`TestServer`] speaks the REST API of the KFP API server (backend tag
//! `2.17.0`) closely enough for the official Python client (`kfp.Client`
//! 2.17.3) to work against it. Everything lives in memory; every request is
//! recorded ([`TestServer::requests`]) so tests can run them through the
//! swagger checker.
//!
//! # Endpoints (under `/apis/v2beta1`)
//!
//! | Method | Path | Notes |
//! |---|---|---|
//! | GET | `/healthz` | `{"commit_sha","tag_name","multi_user","pipeline_store":"database"}` |
//! | POST | `/pipelines/upload` | multipart `uploadfile`; query `name` > `display_name` > filename, `description`, `namespace`, `tags`, `code_source_url`; returns the `Pipeline` |
//! | POST | `/pipelines/upload_version` | multipart `uploadfile`; query `pipelineid` (required), `name`, `display_name`, `description`, `tags`, `code_source_url` |
//! | POST | `/pipelines` | body `Pipeline`, creates a pipeline without versions |
//! | POST | `/pipelines/create` | body `{pipeline, pipeline_version}` with `package_url` (see [`TestServer::register_package`]) |
//! | GET | `/pipelines` | `namespace`, `page_token`, `page_size`, `sort_by`, `filter` |
//! | GET | `/pipelines/names/{name}` | `namespace` |
//! | GET, DELETE | `/pipelines/{pipeline_id}` | DELETE: `cascade` |
//! | GET, POST | `/pipelines/{pipeline_id}/versions` | POST body `PipelineVersion` with `package_url` |
//! | GET, DELETE | `/pipelines/{pipeline_id}/versions/{pipeline_version_id}` | |
//! | GET, POST | `/experiments` | list: paging, `filter`, `namespace` |
//! | GET, DELETE | `/experiments/{experiment_id}` | |
//! | POST | `/experiments/{experiment_id}:archive`, `:unarchive` | archiving also archives the experiment's runs |
//! | GET, POST | `/runs` | list: `experiment_id` or `namespace`, paging, `filter` |
//! | GET, DELETE | `/runs/{run_id}` | |
//! | POST | `/runs/{run_id}:terminate`, `:retry`, `:archive`, `:unarchive` | |
//!
//! Other paths answer 404 `{"code":5,"message":"Not Found","details":[]}`, and a
//! known path with another method answers 501 `{"code":12,"message":"Method Not Allowed"}`,
//! as grpc-gateway does.
//!
//! # Conventions (those of the real server)
//!
//! * JSON out uses proto field names (snake_case) and omits empty fields;
//!   int64 fields are strings; timestamps are RFC 3339 with second precision,
//!   and unset ones (`finished_at` of an unfinished run, `last_run_created_at`
//!   of an experiment without runs, task start/end) are `1970-01-01T00:00:00Z`.
//! * JSON in accepts snake_case and lowerCamelCase keys; an unknown key, a
//!   duplicate key, a value of the wrong type or two members of a oneof answer
//!   400 `{"code":3,"message":"proto: …","details":[]}`. An empty body is an
//!   empty message. Unknown query parameters are ignored.
//! * Errors of the grpc-gateway routes are `google.rpc.Status`
//!   (`{"code","message","details":[{"@type":"type.googleapis.com/google.rpc.Status",…}]}`),
//!   HTTP status from the gRPC code (3→400, 5→404, 6→409, 9→400, 16→401).
//!   The upload routes answer `{"error_message","error_details"}`: 400 for an
//!   unreadable form or file, 409 for a duplicate name, and 500 for a spec the
//!   server cannot use (the real upload handler maps every non-conflict error
//!   of the creation to 500).
//! * Lists: `page_size` default 20, capped at 200, negative → 400; `sort_by`
//!   `"field"`, `"field asc"`, `"field desc"` over the resource's API→model
//!   field map (unknown field → 400); `filter` is the URL-encoded JSON `Filter`
//!   (operations by name or number, values `string_value`, `int_value`,
//!   `long_value`, `timestamp_value`, `*_values` for `IN`; keys checked against
//!   the same map; string comparisons are case-insensitive as with MySQL);
//!   `next_page_token` is base64 of the server's JSON token (sort field and
//!   value, key, direction, filter). A page token must come back with the same
//!   `sort_by`/`filter`, or with both omitted, else 400 "page token does not
//!   match…". `total_size` counts every match. Ties on the sort field are broken
//!   by the id, and ids are time-ordered UUIDs (version 7), so equal
//!   `created_at` seconds keep creation order.
//! * Uploaded specs are parsed from YAML (or JSON): the document with the
//!   pipeline spec is checked as the real server does (`pipelineInfo.name`
//!   present, `root` present); a second document with `platforms` is the
//!   platform spec, and then the stored and returned `pipeline_spec` is
//!   `{"pipeline_spec": <IR>, "platform_spec": <PlatformSpec>}`, the wrapper the
//!   real server uses. Whole numbers are written as integers (Go protojson).
//!
//! # Namespaces
//!
//! Single-user (default): every namespace is replaced by `""`; listing
//! experiments with a non-empty `namespace` answers 400; a `Default`
//! experiment exists from the start and receives runs created without
//! `experiment_id`. Multi-user: experiments need a namespace (create and
//! list); runs need an experiment (their namespace is the experiment's) and
//! listing runs needs `experiment_id` or `namespace`; pipelines uploaded
//! without a namespace are shared (namespace `""`). No RBAC is simulated.
//!
//! # How runs progress
//!
//! Runs start `PENDING`. With [`Progression::OnGet`] (the default) each
//! `GET /runs/{run_id}` first moves the run one step and then answers:
//! `PENDING → RUNNING → SUCCEEDED` (or `FAILED`), `CANCELING → CANCELED`;
//! terminal and `PAUSED` runs do not move, and listing never moves runs. So
//! the first GET after creation sees `RUNNING` and the second a terminal
//! state. [`Progression::Timed`] moves a run one step per elapsed period,
//! evaluated whenever the run is read (get, list, terminate, retry).
//! [`Progression::Manual`] only moves runs through [`TestServer::set_run_state`].
//!
//! A run ends `FAILED` instead of `SUCCEEDED` when
//! [`TestServerOptions::fail_runs`] is set, or when its
//! `runtime_config.parameters` has [`FAIL_PARAMETER`] (`fail`) equal to `true`
//! (or `"true"`), or to a number `n` and the attempt is one of the first `n`
//! (attempts count from 1; each retry is a new attempt).
//!
//! `:terminate` moves `PENDING`/`RUNNING`/`PAUSED` to `CANCELING` (else 400);
//! the next step is `CANCELED`. `:retry` moves `FAILED`/`CANCELED` back to
//! `PENDING` (else 400), keeping the tasks that succeeded.
//!
//! `run_details.task_details` lists the tasks of the spec's root DAG
//! (`root.dag.tasks`, in dependency order, display name from `taskInfo.name`)
//! once the run has started: on `RUNNING` the tasks whose dependencies
//! succeeded run and the others are `PENDING`; on `SUCCEEDED` all succeed; on
//! `FAILED` the last task fails (with an `error`) and the others succeed;
//! `CANCELING`/`CANCELED` apply to the tasks that had not finished.
//!
//! # Authentication, faults
//!
//! [`Auth`] requires a bearer token or a cookie on every request (401
//! `google.rpc.Status` otherwise), or imitates an auth proxy that answers
//! unauthenticated requests with a 302 to [`LOGIN_PATH`] or a 200 HTML login
//! page. [`TestServer::inject_fault`] makes the next requests under a path
//! prefix answer 503 or 429 (with `Retry-After`). Faults are checked first,
//! then authentication; every request is recorded with its response status.
//!
//! # Not simulated
//!
//! Recurring runs, `PATCH` updates, logs and artifacts, `.zip`/`.tar.gz`
//! packages (400 with a clear message), RBAC, and the check of run parameters
//! against the spec's inputs (the real server leaves it to the driver).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Number, Value, json};
use tokio::sync::oneshot;

/// The `tag_name` reported by `healthz` unless [`TestServerOptions::tag_name`] says otherwise.
pub const DEFAULT_TAG_NAME: &str = "2.17.0";

/// The `commit_sha` reported by `healthz`: the commit of kubeflow/pipelines tag `2.17.0`.
pub const COMMIT_SHA: &str = "4a3592cb2dd0a91a4652ab93893ec8beda1f3158";

/// The run parameter that makes a run fail (see the module documentation).
pub const FAIL_PARAMETER: &str = "fail";

/// Display name of the experiment that receives runs created without one (single-user).
pub const DEFAULT_EXPERIMENT_NAME: &str = "Default";

/// Where the auth-proxy modes redirect unauthenticated requests (with `?rd=<original path>`).
pub const LOGIN_PATH: &str = "/oauth2/start";

const DEFAULT_EXPERIMENT_DESCRIPTION: &str = "All runs created without specifying an experiment will be grouped here.";
const API_PREFIX: &str = "/apis/v2beta1";
const BODY_LIMIT: usize = 64 << 20;
const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 200;
const MAX_NAME_LENGTH: usize = 128;
const AVAILABLE: &str = "AVAILABLE";
const ARCHIVED: &str = "ARCHIVED";

// ---------------------------------------------------------------------------------------------
// Public configuration and records
// ---------------------------------------------------------------------------------------------

/// How a [`TestServer`] behaves. `Default` is a single-user server reporting
/// tag `2.17.0`, without authentication, whose runs advance on each GET, and
/// which records requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestServerOptions {
    /// Multi-user mode (`healthz.multi_user`) and its namespace rules.
    pub multi_user: bool,
    /// `healthz.tag_name`.
    pub tag_name: String,
    /// What requests must carry.
    pub auth: Auth,
    /// How runs move between states.
    pub progression: Progression,
    /// Every run ends `FAILED` instead of `SUCCEEDED`.
    pub fail_runs: bool,
    /// Keep every request for [`TestServer::requests`] (turn off for long benchmarks).
    pub record_requests: bool,
}

impl Default for TestServerOptions {
    fn default() -> Self {
        TestServerOptions {
            multi_user: false,
            tag_name: DEFAULT_TAG_NAME.to_owned(),
            auth: Auth::None,
            progression: Progression::OnGet,
            fail_runs: false,
            record_requests: true,
        }
    }
}

/// What every request must carry (all paths, `healthz` included, as behind an
/// authenticating ingress).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// Nothing.
    #[default]
    None,
    /// `Authorization: Bearer <token>` with exactly this token; 401 otherwise.
    Bearer(String),
    /// A `Cookie` header containing this `name=value` pair; 401 otherwise.
    Cookie(String),
    /// Like an oauth2-proxy: without the cookie (`name=value`), a 302 to
    /// [`LOGIN_PATH`]`?rd=<path>`; [`LOGIN_PATH`] itself serves an HTML login page.
    ProxyRedirect {
        /// The `name=value` cookie pair that passes the proxy.
        cookie: String,
    },
    /// Like Dex behind a proxy: without the cookie, a 200 `text/html` login page.
    ProxyLoginPage {
        /// The `name=value` cookie pair that passes the proxy.
        cookie: String,
    },
}

/// How runs move from state to state (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progression {
    /// Each `GET /runs/{run_id}` moves the run one step before answering.
    #[default]
    OnGet,
    /// A run moves one step per elapsed period, evaluated whenever it is read.
    Timed(Duration),
    /// Runs only move through [`TestServer::set_run_state`] (and terminate/retry).
    Manual,
}

/// Makes the next `count` requests whose path starts with `path_prefix` fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Prefix of the request path (e.g. `/apis/v2beta1/runs`); empty matches every request.
    pub path_prefix: String,
    /// The answer.
    pub status: FaultStatus,
    /// Value of a `Retry-After` header (seconds), if any.
    pub retry_after_secs: Option<u64>,
    /// How many requests fail.
    pub count: usize,
}

impl Fault {
    /// 503 with an Envoy-like `text/plain` body and no `Retry-After`.
    pub fn unavailable(path_prefix: impl Into<String>, count: usize) -> Self {
        Fault {
            path_prefix: path_prefix.into(),
            status: FaultStatus::ServiceUnavailable,
            retry_after_secs: None,
            count,
        }
    }

    /// 429 with `Retry-After: <retry_after_secs>` and a `google.rpc.Status` body (code 8).
    pub fn throttled(path_prefix: impl Into<String>, count: usize, retry_after_secs: u64) -> Self {
        Fault {
            path_prefix: path_prefix.into(),
            status: FaultStatus::TooManyRequests,
            retry_after_secs: Some(retry_after_secs),
            count,
        }
    }
}

/// The status of an injected [`Fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStatus {
    /// 503 Service Unavailable.
    ServiceUnavailable,
    /// 429 Too Many Requests.
    TooManyRequests,
}

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path as sent (not percent-decoded), e.g. `/apis/v2beta1/runs`.
    pub path: String,
    /// Raw query string without `?`, if any.
    pub query: Option<String>,
    /// Headers in order, names lowercase, values lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Status code of the answer.
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The query parameters, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.as_deref().map(decode_query).unwrap_or_default()
    }

    /// The body as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A run's `state` (`RuntimeState` of the API, without `RUNTIME_STATE_UNSPECIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// `PENDING`
    Pending,
    /// `RUNNING`
    Running,
    /// `SUCCEEDED`
    Succeeded,
    /// `SKIPPED`
    Skipped,
    /// `FAILED`
    Failed,
    /// `CANCELING`
    Canceling,
    /// `CANCELED`
    Canceled,
    /// `PAUSED`
    Paused,
}

impl RunState {
    /// The API spelling, e.g. `SUCCEEDED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "PENDING",
            RunState::Running => "RUNNING",
            RunState::Succeeded => "SUCCEEDED",
            RunState::Skipped => "SKIPPED",
            RunState::Failed => "FAILED",
            RunState::Canceling => "CANCELING",
            RunState::Canceled => "CANCELED",
            RunState::Paused => "PAUSED",
        }
    }

    /// The state for an API spelling.
    pub fn parse(name: &str) -> Option<RunState> {
        [
            RunState::Pending,
            RunState::Running,
            RunState::Succeeded,
            RunState::Skipped,
            RunState::Failed,
            RunState::Canceling,
            RunState::Canceled,
            RunState::Paused,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// `SUCCEEDED`, `SKIPPED`, `FAILED` and `CANCELED` (the server's own list).
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Skipped | RunState::Failed | RunState::Canceled)
    }

    /// The v1 `status` (Argo phase) the model keeps next to the v2 state.
    fn v1_status(self) -> &'static str {
        match self {
            RunState::Pending => "Pending",
            RunState::Running | RunState::Paused => "Running",
            RunState::Succeeded => "Succeeded",
            RunState::Skipped => "Skipped",
            RunState::Failed => "Failed",
            RunState::Canceling => "Terminating",
            RunState::Canceled => "Terminated",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server handle
// ---------------------------------------------------------------------------------------------

/// A running KFP API test server on `127.0.0.1` (see the module documentation).
///
/// Dropping it (or [`TestServer::shutdown`]) stops it.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("addr", &self.addr).field("options", &self.shared.options).finish()
    }
}

impl TestServer {
    /// Starts a server on `127.0.0.1:<free port>` as a task of the current tokio runtime.
    ///
    /// # Panics
    ///
    /// If no port can be bound on `127.0.0.1` ([`TestServer::try_start`] returns the error instead).
    pub async fn start(options: TestServerOptions) -> TestServer {
        match Self::try_start(options).await {
            Ok(server) => server,
            Err(e) => panic!("cannot start the KFP test server on 127.0.0.1: {e}"),
        }
    }

    /// [`TestServer::start`], returning the bind error.
    pub async fn try_start(options: TestServerOptions) -> io::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(options));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(serve(listener, Arc::clone(&shared), stopped));
        Ok(TestServer { addr, shared, stop: Some(stop), thread: None })
    }

    /// Starts a server on its own thread with its own (single-threaded) tokio
    /// runtime, for synchronous tests and external clients.
    ///
    /// # Panics
    ///
    /// If no port can be bound or the thread cannot start ([`TestServer::try_start_blocking`]
    /// returns the error instead).
    pub fn start_blocking(options: TestServerOptions) -> TestServer {
        match Self::try_start_blocking(options) {
            Ok(server) => server,
            Err(e) => panic!("cannot start the KFP test server on 127.0.0.1: {e}"),
        }
    }

    /// [`TestServer::start_blocking`], returning the error.
    pub fn try_start_blocking(options: TestServerOptions) -> io::Result<TestServer> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared::new(options));
        let (stop, stopped) = oneshot::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kfp-test-server".to_owned())
            .spawn(move || runtime.block_on(serve(listener, server_shared, stopped)))?;
        Ok(TestServer { addr, shared, stop: Some(stop), thread: Some(thread) })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (the API is under `/apis/v2beta1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The options the server was started with.
    pub fn options(&self) -> &TestServerOptions {
        &self.shared.options
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Adds a fault rule; rules are tried in the order they were added.
    pub fn inject_fault(&self, fault: Fault) {
        if fault.count > 0 {
            lock(&self.shared.faults).push(fault);
        }
    }

    /// Removes every pending fault rule.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// The current state of a run (without moving it).
    pub fn run_state(&self, run_id: &str) -> Option<RunState> {
        lock(&self.shared.store).runs.get(run_id).map(|r| r.state)
    }

    /// Puts a run in `state` as if the backend had reported it (tasks follow as
    /// described in the module documentation). Returns whether the run exists.
    pub fn set_run_state(&self, run_id: &str, state: RunState) -> bool {
        let mut store = lock(&self.shared.store);
        match store.runs.get_mut(run_id) {
            Some(run) => {
                run.transition(state, now_secs());
                true
            }
            None => false,
        }
    }

    /// Id of the `Default` experiment (single-user mode; `None` in multi-user mode
    /// or after it was deleted).
    pub fn default_experiment_id(&self) -> Option<String> {
        let store = lock(&self.shared.store);
        store.default_experiment.clone().filter(|id| store.experiments.contains_key(id))
    }

    /// Makes `url` downloadable for `package_url` (create pipeline and version
    /// from a URL). The URL must still pass the 2.17 URL validation: `https`,
    /// default port, host `storage.googleapis.com`, `s3.amazonaws.com`,
    /// `github.com` or `raw.githubusercontent.com` (or a subdomain).
    pub fn register_package(&self, url: impl Into<String>, content: impl Into<Vec<u8>>) {
        lock(&self.shared.store).packages.insert(url.into(), content.into());
    }

    /// Stops the server (same as dropping it). A thread-backed server is joined.
    pub fn shutdown(self) {}
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, stopped: oneshot::Receiver<()>) {
    let app = Router::new().fallback(handle).with_state(shared);
    let shutdown = async move {
        let _ = stopped.await;
    };
    let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "text/plain; charset=utf-8", "request body too large"),
    };
    let response = shared.respond(&parts.method, &parts.uri, &parts.headers, &body);
    shared.record(&parts.method, &parts.uri, &parts.headers, &body, response.status());
    response
}

// ---------------------------------------------------------------------------------------------
// Shared state, dispatch, auth, faults
// ---------------------------------------------------------------------------------------------

struct Shared {
    options: TestServerOptions,
    store: Mutex<Store>,
    faults: Mutex<Vec<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A parsed request, for the handlers.
struct Req<'a> {
    method: &'a Method,
    query: Vec<(String, String)>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Req<'_> {
    /// A query parameter by proto name or lowerCamelCase name (first occurrence).
    fn param(&self, name: &str) -> Option<&str> {
        let camel = lower_camel(name);
        self.query.iter().find(|(k, _)| k == name || *k == camel).map(|(_, v)| v.as_str())
    }

    fn param_str(&self, name: &str) -> String {
        self.param(name).unwrap_or_default().to_owned()
    }

    /// An integer query parameter, as grpc-gateway parses it.
    fn param_int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.param(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i32>().map(|n| Some(i64::from(n))).map_err(|_| {
                ApiError::gateway(
                    3,
                    format!("type mismatch, parameter: {name}, error: strconv.ParseInt: parsing {v:?}: invalid syntax"),
                )
            }),
        }
    }

    /// A boolean query parameter (Go `strconv.ParseBool`).
    fn param_bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.param(name) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(ApiError::gateway(
                3,
                format!("type mismatch, parameter: {name}, error: strconv.ParseBool: parsing {v:?}: invalid syntax"),
            )),
        }
    }

    /// The body as the given message (empty body = empty message).
    fn message(&self, fields: &'static [Field], name: &str) -> Result<Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        let value: Value =
            serde_json::from_slice(self.body).map_err(|e| ApiError::gateway(3, format!("proto: syntax error: {e}")))?;
        normalize(&value, fields, name).map_err(|e| ApiError::gateway(3, format!("proto: {e}")))
    }
}

impl Shared {
    fn new(options: TestServerOptions) -> Self {
        let mut store = Store::default();
        if !options.multi_user {
            store.default_experiment_id(now_secs());
        }
        Shared { options, store: Mutex::new(store), faults: Mutex::new(Vec::new()), requests: Mutex::new(Vec::new()) }
    }

    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], status: StatusCode) {
        if !self.options.record_requests {
            return;
        }
        let request = RecordedRequest {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: body.to_vec(),
            status: status.as_u16(),
        };
        lock(&self.requests).push(request);
    }

    fn respond(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        let path = uri.path();
        if let Some(response) = self.take_fault(path) {
            return response;
        }
        if let Some(response) = self.check_auth(uri, headers) {
            return response;
        }
        let Some(rest) = path.strip_prefix(API_PREFIX).and_then(|r| r.strip_prefix('/')) else {
            return not_found_route();
        };
        let segments: Vec<String> = rest.split('/').map(percent_decode).collect();
        if segments.iter().any(String::is_empty) {
            return not_found_route();
        }
        let req = Req { method, query: uri.query().map(decode_query).unwrap_or_default(), headers, body };
        self.route(&req, &segments)
    }

    fn take_fault(&self, path: &str) -> Option<Response> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| path.starts_with(&f.path_prefix))?;
        let fault = faults[index].clone();
        if fault.count <= 1 {
            faults.remove(index);
        } else {
            faults[index].count -= 1;
        }
        drop(faults);
        let mut response = match fault.status {
            FaultStatus::ServiceUnavailable => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            FaultStatus::TooManyRequests => ApiError::new(8, "Too many requests, please retry later.").response(),
        };
        if let Some(secs) = fault.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        Some(response)
    }

    fn check_auth(&self, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        let header_value = |name: header::HeaderName| {
            headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join("; ")
        };
        let has_cookie = |pair: &str| header_value(header::COOKIE).split(';').any(|c| c.trim() == pair);
        match &self.options.auth {
            Auth::None => None,
            Auth::Bearer(token) => {
                let value = header_value(header::AUTHORIZATION);
                let given = value.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
                match given {
                    Some((_, t)) if t.trim() == token => None,
                    Some(_) => Some(
                        ApiError::new(
                            16,
                            "Failed to authenticate token review. Review.Status: {Authenticated:false Error:invalid bearer token}",
                        )
                        .response(),
                    ),
                    None => Some(ApiError::new(16, "Request header error: there is no user identity header.").response()),
                }
            }
            Auth::Cookie(pair) => {
                if has_cookie(pair) {
                    None
                } else {
                    Some(ApiError::new(16, "Request header error: there is no user identity header.").response())
                }
            }
            Auth::ProxyRedirect { cookie } => {
                if uri.path() == LOGIN_PATH {
                    return Some(text(StatusCode::OK, "text/html; charset=utf-8", LOGIN_PAGE));
                }
                if has_cookie(cookie) {
                    return None;
                }
                let original = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let location = format!("{LOGIN_PATH}?rd={}", percent_encode(original));
                let body = format!("<a href=\"{location}\">Found</a>.\n");
                let mut response = text(StatusCode::FOUND, "text/html; charset=utf-8", &body);
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                Some(response)
            }
            Auth::ProxyLoginPage { cookie } => {
                if uri.path() != LOGIN_PATH && has_cookie(cookie) {
                    None
                } else {
                    Some(text(StatusCode::OK, "text/html; charset=utf-8", LOGIN_PAGE))
                }
            }
        }
    }

    fn route(&self, req: &Req<'_>, segments: &[String]) -> Response {
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let m = req.method;
        let get = m == Method::GET;
        let post = m == Method::POST;
        let delete = m == Method::DELETE;
        match s.as_slice() {
            ["healthz"] if get => ok(self.healthz()),
            ["healthz"] => method_not_allowed(),
            ["pipelines"] if get => reply(self.list_pipelines(req)),
            ["pipelines"] if post => reply(self.create_pipeline(req)),
            ["pipelines", "upload"] if post => self.upload_pipeline(req),
            ["pipelines", "upload_version"] if post => self.upload_pipeline_version(req),
            ["pipelines", "create"] if post => reply(self.create_pipeline_and_version(req)),
            ["pipelines", "names", name] if get => reply(self.get_pipeline_by_name(req, name)),
            ["pipelines", id] if get => reply(self.get_pipeline(id)),
            ["pipelines", id] if delete => reply(self.delete_pipeline(req, id)),
            ["pipelines", id, "versions"] if get => reply(self.list_pipeline_versions(req, id)),
            ["pipelines", id, "versions"] if post => reply(self.create_pipeline_version(req, id)),
            ["pipelines", _, "versions", vid] if get => reply(self.get_pipeline_version(vid)),
            ["pipelines", _, "versions", vid] if delete => reply(self.delete_pipeline_version(vid)),
            ["pipelines"]
            | ["pipelines", "upload" | "upload_version" | "create"]
            | ["pipelines", "names", _]
            | ["pipelines", _]
            | ["pipelines", _, "versions"]
            | ["pipelines", _, "versions", _] => method_not_allowed(),
            ["experiments"] if get => reply(self.list_experiments(req)),
            ["experiments"] if post => reply(self.create_experiment(req)),
            ["experiments"] => method_not_allowed(),
            ["experiments", target] => match target.split_once(':') {
                Some((id, "archive")) if post => reply(self.set_experiment_storage(id, ARCHIVED)),
                Some((id, "unarchive")) if post => reply(self.set_experiment_storage(id, AVAILABLE)),
                Some((_, "archive" | "unarchive")) => method_not_allowed(),
                Some(_) => not_found_route(),
                None if get => reply(self.get_experiment(target)),
                None if delete => reply(self.delete_experiment(target)),
                None => method_not_allowed(),
            },
            ["runs"] if get => reply(self.list_runs(req)),
            ["runs"] if post => reply(self.create_run(req)),
            ["runs"] => method_not_allowed(),
            ["runs", target] => match target.split_once(':') {
                Some((id, "terminate")) if post => reply(self.terminate_run(id)),
                Some((id, "retry")) if post => reply(self.retry_run(id)),
                Some((id, "archive")) if post => reply(self.set_run_storage(id, ARCHIVED)),
                Some((id, "unarchive")) if post => reply(self.set_run_storage(id, AVAILABLE)),
                Some((_, "terminate" | "retry" | "archive" | "unarchive")) => method_not_allowed(),
                Some(_) => not_found_route(),
                None if get => reply(self.get_run(target)),
                None if delete => reply(self.delete_run(target)),
                None => method_not_allowed(),
            },
            _ => not_found_route(),
        }
    }

    /// Namespace as the server keeps it (`ReplaceNamespace`): `""` in single-user mode.
    fn namespace(&self, given: &str) -> String {
        if self.options.multi_user { given.to_owned() } else { String::new() }
    }

    fn now(&self) -> i64 {
        now_secs()
    }

    // --- healthz ---------------------------------------------------------------------------

    fn healthz(&self) -> Value {
        json!({
            "commit_sha": COMMIT_SHA,
            "tag_name": self.options.tag_name,
            "multi_user": self.options.multi_user,
            "pipeline_store": "database",
        })
    }

    // --- pipelines -------------------------------------------------------------------------

    fn list_pipelines(&self, req: &Req<'_>) -> Result<Value, ApiError> {
        let opts = list_options(req, &PIPELINES)?;
        let namespace = self.namespace(req.param("namespace").unwrap_or_default());
        let store = lock(&self.store);
        let rows = store.pipelines.values().filter(|p| p.namespace == namespace);
        let page = paginate(rows, &opts, &PIPELINES);
        Ok(list_json("pipelines", page.items.iter().map(|p| p.json()).collect(), page.total, &page.next))
    }

    fn create_pipeline(&self, req: &Req<'_>) -> Result<Value, ApiError> {
        let body = req.message(PIPELINE, "v2beta1.Pipeline")?;
        let mut name = str_of(&body, "name");
        let mut display_name = str_of(&body, "display_name");
        if name.is_empty() && display_name.is_empty() {
            return Err(ApiError::invalid(
                "Failed to create a pipeline as pipeline conversion failed: Pipeline name is empty. Please specify a valid name",
            ));
        }
        if name.is_empty() {
            name.clone_from(&display_name);
        }
        if display_name.is_empty() {
            display_name.clone_from(&name);
        }
        check_name_length("Pipeline", &name)?;
        let namespace = self.namespace(&str_of(&body, "namespace"));
        let mut store = lock(&self.store);
        if store.pipeline_by_name(&name, &namespace).is_some() {
            return Err(duplicate_pipeline(&name));
        }
        let now = self.now();
        let pipeline = store.insert_pipeline(PipelineRec {
            id: String::new(),
            name,
            display_name,
            description: str_of(&body, "description"),
            created: now,
            namespace,
            tags: obj_of(&body, "tags"),
        });
        Ok(pipeline.json())
    }

    fn get_pipeline(&self, id: &str) -> Result<Value, ApiError> {
        let store = lock(&self.store);
        store.pipelines.get(id).map(PipelineRec::json).ok_or_else(|| pipeline_not_found(id))
    }

    fn get_pipeline_by_name(&self, req: &Req<'_>, name: &str) -> Result<Value, ApiError> {
        let namespace = self.namespace(req.param("namespace").unwrap_or_default());
        let store = lock(&self.store);
        store.pipeline_by_name(name, &namespace).map(PipelineRec::json).ok_or_else(|| {
            ApiError::not_found(format!(
                "Failed to get a pipeline with name {name} and namespace {namespace}. Check error stack.: \
                 ResourceNotFoundError: Namespace/Pipeline {namespace}/{name} not found"
            ))
        })
    }

    fn delete_pipeline(&self, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
        let cascade = req.param_bool("cascade")?;
        let mut store = lock(&self.store);
        if !store.pipelines.contains_key(id) {
            return Err(pipeline_not_found(id));
        }
        let versions: Vec<String> =
            store.versions.values().filter(|v| v.pipeline_id == id).map(|v| v.id.clone()).collect();
        if !versions.is_empty() && !cascade {
            return Err(ApiError::precondition(format!(
                "Failed to delete pipeline {id}. Pipeline has {} existing pipeline version(s); delete them first \
                 or set cascade=true",
                versions.len()
            )));
        }
        for version in versions {
            store.versions.remove(&version);
        }
        store.pipelines.remove(id);
        Ok(json!({}))
    }

    fn create_pipeline_and_version(&self, req: &Req<'_>) -> Result<Value, ApiError> {
        let body = req.message(CREATE_PIPELINE_AND_VERSION, "v2beta1.CreatePipelineAndVersionRequest")?;
        let pipeline = obj_of(&body, "pipeline");
        let version = obj_of(&body, "pipeline_version");
        let url = version.get("package_url").and_then(|u| u.get("pipeline_url")).and_then(Value::as_str).unwrap_or("");
        if url.is_empty() {
            return Err(ApiError::invalid(
                "Failed to create a pipeline and a pipeline version: pipeline version must have a package url",
            ));
        }
        let url = url.to_owned();
        let bytes = self.download(&url)?;
        let file_name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let name = build_name(&str_of(&pipeline, "name"), &str_of(&pipeline, "display_name"), &file_name);
        let display_name = non_empty_or(str_of(&pipeline, "display_name"), &name);
        check_name_length("Pipeline", &name)?;
        let spec = parse_package(&bytes)
            .map_err(|e| ApiError::invalid(format!("Failed to create a pipeline and a pipeline version: {e}")))?;
        let namespace = self.namespace(&str_of(&pipeline, "namespace"));
        let mut store = lock(&self.store);
        if store.pipeline_by_name(&name, &namespace).is_some() {
            return Err(duplicate_pipeline(&name));
        }
        let now = self.now();
        let description = str_of(&pipeline, "description");
        let created = store.insert_pipeline(PipelineRec {
            id: String::new(),
            name: name.clone(),
            display_name: display_name.clone(),
            description: description.clone(),
            created: now,
            namespace,
            tags: obj_of(&pipeline, "tags"),
        });
        let pipeline_json = created.json();
        let pipeline_id = created.id.clone();
        store.insert_version(VersionRec {
            id: String::new(),
            pipeline_id,
            name,
            display_name,
            description,
            created: now,
            spec,
            package_url: url,
            code_source_url: str_of(&version, "code_source_url"),
            tags: obj_of(&version, "tags"),
        });
        Ok(pipeline_json)
    }

    /// The content registered for a `package_url`, after the 2.17 URL validation.
    fn download(&self, url: &str) -> Result<Vec<u8>, ApiError> {
        validate_package_url(url).map_err(ApiError::invalid)?;
        lock(&self.store).packages.get(url).cloned().ok_or_else(|| {
            ApiError::invalid(format!("error fetching pipeline spec from {url} - request returned 404 Not Found"))
        })
    }

    // --- pipeline versions -----------------------------------------------------------------

    fn list_pipeline_versions(&self, req: &Req<'_>, pipeline_id: &str) -> Result<Value, ApiError> {
        let opts = list_options(req, &VERSIONS)?;
        let store = lock(&self.store);
        if self.options.multi_user && !store.pipelines.contains_key(pipeline_id) {
            return Err(pipeline_not_found(pipeline_id));
        }
        let rows = store.versions.values().filter(|v| v.pipeline_id == pipeline_id);
        let page = paginate(rows, &opts, &VERSIONS);
        Ok(list_json("pipeline_versions", page.items.iter().map(|v| v.json()).collect(), page.total, &page.next))
    }

    fn create_pipeline_version(&self, req: &Req<'_>, pipeline_id: &str) -> Result<Value, ApiError> {
        let body = req.message(VERSION, "v2beta1.PipelineVersion")?;
        let body_pipeline = str_of(&body, "pipeline_id");
        if body_pipeline.is_empty() {
            return Err(ApiError::invalid(
                "Failed to create a pipeline version due to data conversion error: Pipeline id cannot be empty",
            ));
        }
        if body_pipeline != pipeline_id {
            return Err(ApiError::invalid(format!(
                "Failed to create a pipeline version: pipeline id in the path ({pipeline_id}) and in the body \
                 ({body_pipeline}) differ"
            )));
        }
        let url = body.get("package_url").and_then(|u| u.get("pipeline_url")).and_then(Value::as_str).unwrap_or("");
        if url.is_empty() {
            return Err(ApiError::invalid("Failed to create a pipeline version: Pipeline URL is empty"));
        }
        let url = url.to_owned();
        if !lock(&self.store).pipelines.contains_key(pipeline_id) {
            return Err(pipeline_not_found(pipeline_id));
        }
        let bytes = self.download(&url)?;
        let file_name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let name = build_name(&str_of(&body, "name"), &str_of(&body, "display_name"), &file_name);
        let display_name = non_empty_or(str_of(&body, "display_name"), &name);
        check_name_length("PipelineVersion", &name)?;
        let spec = parse_package(&bytes)
            .map_err(|e| ApiError::invalid(format!("Failed to create a pipeline version: {e}")))?;
        let mut store = lock(&self.store);
        if store.versions.values().any(|v| v.pipeline_id == pipeline_id && v.name == name) {
            return Err(duplicate_version(&name));
        }
        let now = self.now();
        let version = store.insert_version(VersionRec {
            id: String::new(),
            pipeline_id: pipeline_id.to_owned(),
            name,
            display_name,
            description: str_of(&body, "description"),
            created: now,
            spec,
            package_url: url,
            code_source_url: str_of(&body, "code_source_url"),
            tags: obj_of(&body, "tags"),
        });
        Ok(version.json())
    }

    fn get_pipeline_version(&self, version_id: &str) -> Result<Value, ApiError> {
        let store = lock(&self.store);
        store.versions.get(version_id).map(VersionRec::json).ok_or_else(|| version_not_found(version_id))
    }

    fn delete_pipeline_version(&self, version_id: &str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        store.versions.remove(version_id).map(|_| json!({})).ok_or_else(|| version_not_found(version_id))
    }

    // --- uploads ---------------------------------------------------------------------------

    fn upload_pipeline(&self, req: &Req<'_>) -> Response {
        let file = match upload_file(req) {
            Ok(file) => file,
            Err(e) => return upload_error(StatusCode::BAD_REQUEST, &format!("Failed to read pipeline from file: {e}")),
        };
        if let Err(e) = check_package_format(&file.filename, &file.data) {
            return upload_error(StatusCode::BAD_REQUEST, &format!("Failed to read a pipeline spec file: {e}"));
        }
        let namespace = self.namespace(req.param("namespace").unwrap_or_default());
        let name = build_name(&req.param_str("name"), &req.param_str("display_name"), &file.filename);
        let display_name = non_empty_or(req.param_str("display_name"), &name);
        if name.len() > MAX_NAME_LENGTH {
            return text(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                &format!("Pipeline.Name length cannot exceed {MAX_NAME_LENGTH}\n"),
            );
        }
        let tags = match parse_tags(req) {
            Ok(tags) => tags,
            Err(e) => return upload_error(StatusCode::BAD_REQUEST, &e),
        };
        let spec = match parse_package(&file.data) {
            Ok(spec) => spec,
            Err(e) => {
                return upload_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("Failed to create a pipeline and a pipeline version: {e}"),
                );
            }
        };
        let mut store = lock(&self.store);
        if store.pipeline_by_name(&name, &namespace).is_some() {
            return upload_error(
                StatusCode::CONFLICT,
                &format!(
                    "Failed to create a pipeline and a pipeline version. The pipeline already exists.: Already exist \
                     error: Failed to create a new pipeline. The name {name} already exist. Please specify a new name"
                ),
            );
        }
        let now = self.now();
        let description = req.param_str("description");
        let pipeline = store.insert_pipeline(PipelineRec {
            id: String::new(),
            name: name.clone(),
            display_name: display_name.clone(),
            description: description.clone(),
            created: now,
            namespace,
            tags,
        });
        let pipeline_json = pipeline.json();
        let pipeline_id = pipeline.id.clone();
        store.insert_version(VersionRec {
            id: String::new(),
            pipeline_id,
            name,
            display_name,
            description,
            created: now,
            spec,
            package_url: String::new(),
            code_source_url: req.param_str("code_source_url"),
            tags: Map::new(),
        });
        ok(pipeline_json)
    }

    fn upload_pipeline_version(&self, req: &Req<'_>) -> Response {
        let file = match upload_file(req) {
            Ok(file) => file,
            Err(e) => {
                return upload_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Failed to create a pipeline version due to error parsing pipeline spec filename: {e}"),
                );
            }
        };
        if let Err(e) = check_package_format(&file.filename, &file.data) {
            return upload_error(
                StatusCode::BAD_REQUEST,
                &format!("Failed to create a pipeline version due to error reading pipeline spec file: {e}"),
            );
        }
        let pipeline_id = req.param_str("pipelineid");
        if pipeline_id.is_empty() {
            return upload_error(
                StatusCode::BAD_REQUEST,
                "Failed to create a pipeline version due to error reading pipeline id",
            );
        }
        let name = build_name(&req.param_str("name"), &req.param_str("display_name"), &file.filename);
        let display_name = non_empty_or(req.param_str("display_name"), &name);
        if name.len() > MAX_NAME_LENGTH {
            return text(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                &format!("PipelineVersion.Name length cannot exceed {MAX_NAME_LENGTH}\n"),
            );
        }
        let tags = match parse_tags(req) {
            Ok(tags) => tags,
            Err(e) => return upload_error(StatusCode::BAD_REQUEST, &e),
        };
        let mut store = lock(&self.store);
        if !store.pipelines.contains_key(&pipeline_id) {
            return upload_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Failed to create a pipeline version due to error reading namespace: Failed to get namespace \
                     for pipeline id {pipeline_id}: ResourceNotFoundError: Pipeline {pipeline_id} not found"
                ),
            );
        }
        let spec = match parse_package(&file.data) {
            Ok(spec) => spec,
            Err(e) => {
                return upload_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("Failed to create a pipeline version: {e}"),
                );
            }
        };
        if store.versions.values().any(|v| v.pipeline_id == pipeline_id && v.name == name) {
            return upload_error(
                StatusCode::CONFLICT,
                &format!(
                    "Failed to create a pipeline version. The pipeline already exists.: Already exist error: \
                     Failed to create a new pipeline version. The name {name} already exist. Please specify a new name"
                ),
            );
        }
        let now = self.now();
        let version = store.insert_version(VersionRec {
            id: String::new(),
            pipeline_id,
            name,
            display_name,
            description: req.param_str("description"),
            created: now,
            spec,
            package_url: String::new(),
            code_source_url: req.param_str("code_source_url"),
            tags,
        });
        ok(version.json())
    }

    // --- experiments -----------------------------------------------------------------------

    fn create_experiment(&self, req: &Req<'_>) -> Result<Value, ApiError> {
        let body = req.message(EXPERIMENT, "v2beta1.Experiment")?;
        let display_name = str_of(&body, "display_name");
        if display_name.is_empty() {
            return Err(ApiError::invalid(
                "[ExperimentServer]: Failed to create a experiment due to conversion error: Experiment must have a \
                 non-empty name",
            ));
        }
        let namespace = self.namespace(&str_of(&body, "namespace"));
        if self.options.multi_user && namespace.is_empty() {
            return Err(ApiError::invalid(
                "Failed to create a experiment: Failed to authorize the request: An experiment cannot have an empty \
                 namespace in multi-user mode",
            ));
        }
        let mut store = lock(&self.store);
        if store.experiments.values().any(|e| e.display_name == display_name && e.namespace == namespace) {
            return Err(ApiError::exists(format!(
                "Failed to create a experiment: Already exist error: Failed to create a new experiment. The name \
                 {display_name} already exists. Please specify a new name"
            )));
        }
        let now = self.now();
        let experiment = store.insert_experiment(display_name, str_of(&body, "description"), namespace, now);
        Ok(experiment.json())
    }

    fn list_experiments(&self, req: &Req<'_>) -> Result<Value, ApiError> {
        let given = req.param("namespace").unwrap_or_default();
        if !self.options.multi_user && !given.is_empty() {
            return Err(ApiError::invalid("In single-user mode, ListExperiment cannot filter by namespace."));
        }
        if self.options.multi_user && given.is_empty() {
            return Err(ApiError::invalid(
                "List experiments failed: Failed to authorize with API: An experiment cannot have an empty namespace \
                 in multi-user mode",
            ));
        }
        let opts = list_options(req, &EXPERIMENTS)?;
        let namespace = self.namespace(given);
        let store = lock(&self.store);
        let rows = store.experiments.values().filter(|e| e.namespace == namespace);
        let page = paginate(rows, &opts, &EXPERIMENTS);
        Ok(list_json("experiments", page.items.iter().map(|e| e.json()).collect(), page.total, &page.next))
    }

    fn get_experiment(&self, id: &str) -> Result<Value, ApiError> {
        let store = lock(&self.store);
        store.experiments.get(id).map(ExperimentRec::json).ok_or_else(|| experiment_not_found(id))
    }

    fn delete_experiment(&self, id: &str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        store.experiments.remove(id).map(|_| json!({})).ok_or_else(|| experiment_not_found(id))
    }

    fn set_experiment_storage(&self, id: &str, storage: &'static str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        let experiment = store.experiments.get_mut(id).ok_or_else(|| experiment_not_found(id))?;
        experiment.storage_state = storage;
        if storage == ARCHIVED {
            for run in store.runs.values_mut().filter(|r| r.experiment_id == id) {
                run.storage_state = ARCHIVED;
            }
        }
        Ok(json!({}))
    }

    // --- runs ------------------------------------------------------------------------------

    fn create_run(&self, req: &Req<'_>) -> Result<Value, ApiError> {
        let body = req.message(RUN, "v2beta1.Run")?;
        let display_name = str_of(&body, "display_name");
        if display_name.is_empty() {
            return Err(ApiError::invalid(
                "Failed to create a run due to invalid input: The run name is empty. Please specify a valid name",
            ));
        }
        let mut store = lock(&self.store);
        let now = self.now();
        let mut experiment_id = str_of(&body, "experiment_id");
        if experiment_id.is_empty() {
            experiment_id = req.param_str("experiment_id");
        }
        if experiment_id.is_empty() {
            if self.options.multi_user {
                return Err(ApiError::invalid(
                    "Failed to create a run: A run cannot have an empty namespace in multi-user mode",
                ));
            }
            experiment_id = store.default_experiment_id(now);
        }
        let experiment = store.experiments.get(&experiment_id).ok_or_else(|| experiment_not_found(&experiment_id))?;
        if experiment.storage_state == ARCHIVED {
            return Err(ApiError::precondition(format!(
                "Failed to create a run: experiment {experiment_id} is archived; unarchive it first"
            )));
        }
        let namespace = experiment.namespace.clone();
        if self.options.multi_user && namespace.is_empty() {
            return Err(ApiError::invalid(
                "Failed to create a run: A run cannot have an empty namespace in multi-user mode",
            ));
        }
        let (source, spec) = resolve_source(&store, &body)?;
        let mut runtime_config = obj_of(&body, "runtime_config");
        if let Some(parameters) = runtime_config.get_mut("parameters") {
            *parameters = protojson(parameters);
        }
        let id = store.new_id();
        let contexts = (store.next_counter(), store.next_counter());
        let tasks: Vec<TaskRec> = task_seeds(&spec)
            .into_iter()
            .map(|(key, display_name, deps)| TaskRec {
                id: String::new(),
                key,
                display_name,
                deps,
                created: 0,
                started: 0,
                ended: 0,
                state: None,
                history: Vec::new(),
                failed: false,
                execution_id: 0,
            })
            .collect();
        let mut run = RunRec {
            id: id.clone(),
            experiment_id: experiment_id.clone(),
            namespace,
            display_name,
            description: str_of(&body, "description"),
            storage_state: AVAILABLE,
            source,
            runtime_config,
            service_account: str_of(&body, "service_account"),
            plugins_input: body.get("plugins_input").cloned(),
            created: now,
            finished: 0,
            state: RunState::Pending,
            history: vec![(now, RunState::Pending)],
            tasks,
            attempt: 1,
            last_change: Instant::now(),
            contexts,
            fail_all: self.options.fail_runs,
        };
        for task in &mut run.tasks {
            task.id = store.new_id();
            task.execution_id = store.next_counter();
        }
        let answer = run.json();
        store.runs.insert(id, run);
        if let Some(experiment) = store.experiments.get_mut(&experiment_id) {
            experiment.last_run_created = now;
        }
        Ok(answer)
    }

    fn get_run(&self, id: &str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        let run = store.runs.get_mut(id).ok_or_else(|| run_not_found(id))?;
        self.progress(run, true);
        Ok(run.json())
    }

    fn list_runs(&self, req: &Req<'_>) -> Result<Value, ApiError> {
        let opts = list_options(req, &RUNS)?;
        let experiment_id = req.param_str("experiment_id");
        let namespace = req.param_str("namespace");
        let mut store = lock(&self.store);
        if self.options.multi_user {
            if experiment_id.is_empty() && namespace.is_empty() {
                return Err(ApiError::invalid(
                    "Failed to list runs: ListRuns must filter by experiment_id or namespace in multi-user mode",
                ));
            }
            if !experiment_id.is_empty() && !store.experiments.contains_key(&experiment_id) {
                return Err(experiment_not_found(&experiment_id));
            }
        }
        for run in store.runs.values_mut() {
            self.progress(run, false);
        }
        let namespace = self.namespace(&namespace);
        let rows = store.runs.values().filter(|r| {
            if !experiment_id.is_empty() { r.experiment_id == experiment_id } else { r.namespace == namespace }
        });
        let page = paginate(rows, &opts, &RUNS);
        Ok(list_json("runs", page.items.iter().map(|r| r.json()).collect(), page.total, &page.next))
    }

    fn terminate_run(&self, id: &str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        let run = store.runs.get_mut(id).ok_or_else(|| run_not_found(id))?;
        self.progress(run, false);
        if !matches!(run.state, RunState::Pending | RunState::Running | RunState::Paused) {
            return Err(ApiError::precondition(format!(
                "Failed to terminate a run {id}: the run is {} and can no longer be terminated",
                run.state.as_str()
            )));
        }
        run.transition(RunState::Canceling, self.now());
        Ok(json!({}))
    }

    fn retry_run(&self, id: &str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        let run = store.runs.get_mut(id).ok_or_else(|| run_not_found(id))?;
        self.progress(run, false);
        if !matches!(run.state, RunState::Failed | RunState::Canceled) {
            return Err(ApiError::precondition(format!(
                "Failed to retry a run {id}: the run is {}; only FAILED or CANCELED runs can be retried",
                run.state.as_str()
            )));
        }
        run.attempt += 1;
        run.transition(RunState::Pending, self.now());
        Ok(json!({}))
    }

    fn set_run_storage(&self, id: &str, storage: &'static str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        let run = store.runs.get(id).ok_or_else(|| run_not_found(id))?;
        if storage == AVAILABLE
            && store.experiments.get(&run.experiment_id).is_some_and(|e| e.storage_state == ARCHIVED)
        {
            return Err(ApiError::precondition(format!(
                "Failed to unarchive run {id}: its experiment {} is archived; unarchive the experiment first",
                run.experiment_id
            )));
        }
        if let Some(run) = store.runs.get_mut(id) {
            run.storage_state = storage;
        }
        Ok(json!({}))
    }

    fn delete_run(&self, id: &str) -> Result<Value, ApiError> {
        let mut store = lock(&self.store);
        store.runs.remove(id).map(|_| json!({})).ok_or_else(|| run_not_found(id))
    }

    /// Moves a run as [`TestServerOptions::progression`] says; `polled` is a `GET /runs/{id}`.
    fn progress(&self, run: &mut RunRec, polled: bool) {
        match self.options.progression {
            Progression::OnGet => {
                if polled {
                    run.advance(now_secs());
                }
            }
            Progression::Timed(step) => loop {
                let due = run.last_change + step;
                if Instant::now() < due || !run.advance(now_secs()) {
                    break;
                }
                run.last_change = due;
            },
            Progression::Manual => {}
        }
    }
}

/// The run's pipeline source and the spec its tasks come from.
fn resolve_source(store: &Store, body: &Map<String, Value>) -> Result<(RunSource, Value), ApiError> {
    let reference = body.get("pipeline_version_reference").and_then(Value::as_object);
    let legacy_version = str_of(body, "pipeline_version_id");
    if reference.is_some() || !legacy_version.is_empty() {
        let (pipeline_id, version_id) = match reference {
            Some(r) => (str_of(r, "pipeline_id"), str_of(r, "pipeline_version_id")),
            None => (String::new(), legacy_version),
        };
        let version = if version_id.is_empty() {
            if pipeline_id.is_empty() {
                return Err(ApiError::invalid(
                    "Failed to create a run: pipeline_version_reference needs a pipeline_id or a pipeline_version_id",
                ));
            }
            if !store.pipelines.contains_key(&pipeline_id) {
                return Err(pipeline_not_found(&pipeline_id));
            }
            store.latest_version(&pipeline_id).ok_or_else(|| {
                ApiError::not_found(format!("Failed to create a run: pipeline {pipeline_id} has no pipeline versions"))
            })?
        } else {
            let version = store.versions.get(&version_id).ok_or_else(|| version_not_found(&version_id))?;
            if !pipeline_id.is_empty() && version.pipeline_id != pipeline_id {
                return Err(ApiError::invalid(format!(
                    "Failed to create a run: pipeline version {version_id} does not belong to pipeline {pipeline_id}"
                )));
            }
            version
        };
        let source = RunSource::Reference { pipeline_id: version.pipeline_id.clone(), version_id: version.id.clone() };
        return Ok((source, version.spec.clone()));
    }
    match body.get("pipeline_spec") {
        Some(spec) => {
            let spec = protojson(spec);
            validate_ir(ir_of(&spec)).map_err(|e| ApiError::invalid(format!("Failed to create a run: {e}")))?;
            Ok((RunSource::Spec(spec.clone()), spec))
        }
        None => Err(ApiError::invalid(
            "Failed to create a run: the run has no pipeline source; set pipeline_version_reference or pipeline_spec",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Store and records
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Store {
    last_id: u64,
    counter: i64,
    pipelines: BTreeMap<String, PipelineRec>,
    versions: BTreeMap<String, VersionRec>,
    experiments: BTreeMap<String, ExperimentRec>,
    runs: BTreeMap<String, RunRec>,
    default_experiment: Option<String>,
    packages: HashMap<String, Vec<u8>>,
}

impl Store {
    /// A UUID version 7: its text sorts in creation order (48-bit milliseconds
    /// and a 12-bit sequence, kept strictly increasing), then random bits.
    fn new_id(&mut self) -> String {
        let millis = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis())
            .unwrap_or(u64::MAX >> 16);
        let ordered = (self.last_id + 1).max(millis << 12);
        self.last_id = ordered;
        let random = random_u64();
        let stamp = ordered >> 12;
        format!(
            "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
            stamp >> 16,
            stamp & 0xffff,
            ordered & 0xfff,
            0x8000 | ((random >> 48) & 0x3fff),
            random & 0xffff_ffff_ffff
        )
    }

    fn next_counter(&mut self) -> i64 {
        self.counter += 1;
        self.counter
    }

    fn default_experiment_id(&mut self, now: i64) -> String {
        if let Some(id) = self.default_experiment.clone().filter(|id| self.experiments.contains_key(id)) {
            return id;
        }
        let existing = self
            .experiments
            .values()
            .find(|e| e.display_name == DEFAULT_EXPERIMENT_NAME && e.namespace.is_empty())
            .map(|e| e.id.clone());
        let id = match existing {
            Some(id) => id,
            None => self
                .insert_experiment(
                    DEFAULT_EXPERIMENT_NAME.to_owned(),
                    DEFAULT_EXPERIMENT_DESCRIPTION.to_owned(),
                    String::new(),
                    now,
                )
                .id
                .clone(),
        };
        self.default_experiment = Some(id.clone());
        id
    }

    fn insert_experiment(
        &mut self,
        display_name: String,
        description: String,
        namespace: String,
        now: i64,
    ) -> &ExperimentRec {
        let id = self.new_id();
        let experiment = ExperimentRec {
            id: id.clone(),
            display_name,
            description,
            created: now,
            namespace,
            storage_state: AVAILABLE,
            last_run_created: 0,
        };
        self.experiments.entry(id).or_insert(experiment)
    }

    fn insert_pipeline(&mut self, mut pipeline: PipelineRec) -> &PipelineRec {
        pipeline.id = self.new_id();
        self.pipelines.entry(pipeline.id.clone()).or_insert(pipeline)
    }

    fn insert_version(&mut self, mut version: VersionRec) -> &VersionRec {
        version.id = self.new_id();
        self.versions.entry(version.id.clone()).or_insert(version)
    }

    fn pipeline_by_name(&self, name: &str, namespace: &str) -> Option<&PipelineRec> {
        self.pipelines.values().find(|p| p.name == name && p.namespace == namespace)
    }

    /// The most recently created version of a pipeline (ids are time-ordered).
    fn latest_version(&self, pipeline_id: &str) -> Option<&VersionRec> {
        self.versions.values().filter(|v| v.pipeline_id == pipeline_id).max_by(|a, b| a.id.cmp(&b.id))
    }
}

struct PipelineRec {
    id: String,
    name: String,
    display_name: String,
    description: String,
    created: i64,
    namespace: String,
    tags: Map<String, Value>,
}

impl PipelineRec {
    fn json(&self) -> Value {
        let mut m = Map::new();
        put(&mut m, "pipeline_id", &self.id);
        put(&mut m, "display_name", &self.display_name);
        put(&mut m, "name", &self.name);
        put(&mut m, "description", &self.description);
        m.insert("created_at".into(), timestamp(self.created));
        put(&mut m, "namespace", &self.namespace);
        if !self.tags.is_empty() {
            m.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        Value::Object(m)
    }
}

struct VersionRec {
    id: String,
    pipeline_id: String,
    name: String,
    display_name: String,
    description: String,
    created: i64,
    spec: Value,
    package_url: String,
    code_source_url: String,
    tags: Map<String, Value>,
}

impl VersionRec {
    fn json(&self) -> Value {
        let mut m = Map::new();
        put(&mut m, "pipeline_id", &self.pipeline_id);
        put(&mut m, "pipeline_version_id", &self.id);
        put(&mut m, "display_name", &self.display_name);
        put(&mut m, "name", &self.name);
        put(&mut m, "description", &self.description);
        m.insert("created_at".into(), timestamp(self.created));
        if !self.package_url.is_empty() {
            m.insert("package_url".into(), json!({ "pipeline_url": self.package_url }));
        }
        put(&mut m, "code_source_url", &self.code_source_url);
        m.insert("pipeline_spec".into(), self.spec.clone());
        if !self.tags.is_empty() {
            m.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        Value::Object(m)
    }
}

struct ExperimentRec {
    id: String,
    display_name: String,
    description: String,
    created: i64,
    namespace: String,
    storage_state: &'static str,
    last_run_created: i64,
}

impl ExperimentRec {
    fn json(&self) -> Value {
        let mut m = Map::new();
        put(&mut m, "experiment_id", &self.id);
        put(&mut m, "display_name", &self.display_name);
        put(&mut m, "description", &self.description);
        m.insert("created_at".into(), timestamp(self.created));
        put(&mut m, "namespace", &self.namespace);
        put(&mut m, "storage_state", self.storage_state);
        m.insert("last_run_created_at".into(), timestamp(self.last_run_created));
        Value::Object(m)
    }
}

enum RunSource {
    Reference { pipeline_id: String, version_id: String },
    Spec(Value),
}

struct RunRec {
    id: String,
    experiment_id: String,
    namespace: String,
    display_name: String,
    description: String,
    storage_state: &'static str,
    source: RunSource,
    runtime_config: Map<String, Value>,
    service_account: String,
    plugins_input: Option<Value>,
    created: i64,
    finished: i64,
    state: RunState,
    history: Vec<(i64, RunState)>,
    tasks: Vec<TaskRec>,
    attempt: u32,
    last_change: Instant,
    contexts: (i64, i64),
    fail_all: bool,
}

struct TaskRec {
    id: String,
    key: String,
    display_name: String,
    deps: Vec<String>,
    created: i64,
    started: i64,
    ended: i64,
    state: Option<RunState>,
    history: Vec<(i64, RunState)>,
    failed: bool,
    execution_id: i64,
}

impl TaskRec {
    fn set(&mut self, state: RunState, now: i64) {
        if self.state != Some(state) {
            if self.created == 0 {
                self.created = now;
            }
            self.state = Some(state);
            self.history.push((now, state));
        }
    }

    fn json(&self, run_id: &str) -> Value {
        let mut m = Map::new();
        put(&mut m, "run_id", run_id);
        put(&mut m, "task_id", &self.id);
        put(&mut m, "display_name", &self.display_name);
        m.insert("create_time".into(), timestamp(self.created));
        m.insert("start_time".into(), timestamp(self.started));
        m.insert("end_time".into(), timestamp(self.ended));
        if let Some(state) = self.state {
            put(&mut m, "state", state.as_str());
        }
        put(&mut m, "execution_id", &self.execution_id.to_string());
        if self.failed {
            m.insert(
                "error".into(),
                json!({
                    "code": 2,
                    "message": format!("task {:?} failed (the KFP test server fails this run)", self.display_name),
                }),
            );
        }
        m.insert("state_history".into(), history_json(&self.history));
        Value::Object(m)
    }
}

impl RunRec {
    /// Whether the current attempt ends `FAILED`.
    fn fails(&self) -> bool {
        if self.fail_all {
            return true;
        }
        match self.runtime_config.get("parameters").and_then(|p| p.get(FAIL_PARAMETER)) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(Value::Number(n)) => n.as_f64().is_some_and(|n| f64::from(self.attempt) <= n),
            _ => false,
        }
    }

    /// One step forward; false when the state does not move on its own.
    fn advance(&mut self, now: i64) -> bool {
        let next = match self.state {
            RunState::Pending => RunState::Running,
            RunState::Running if self.fails() => RunState::Failed,
            RunState::Running => RunState::Succeeded,
            RunState::Canceling => RunState::Canceled,
            _ => return false,
        };
        self.transition(next, now);
        true
    }

    /// Puts the run (and its tasks) in `to`.
    fn transition(&mut self, to: RunState, now: i64) {
        let unfinished = |t: &TaskRec| t.state.is_some_and(|s| !s.is_terminal());
        match to {
            RunState::Pending => {
                for task in self.tasks.iter_mut().filter(|t| t.state != Some(RunState::Succeeded)) {
                    task.state = None;
                    task.started = 0;
                    task.ended = 0;
                    task.failed = false;
                }
                self.finished = 0;
            }
            RunState::Running => {
                let succeeded: HashSet<String> =
                    self.tasks.iter().filter(|t| t.state == Some(RunState::Succeeded)).map(|t| t.key.clone()).collect();
                for task in self.tasks.iter_mut().filter(|t| t.state != Some(RunState::Succeeded)) {
                    if task.deps.iter().all(|d| succeeded.contains(d)) {
                        if task.started == 0 {
                            task.started = now;
                        }
                        task.set(RunState::Running, now);
                    } else {
                        task.set(RunState::Pending, now);
                    }
                }
                self.finished = 0;
            }
            RunState::Succeeded | RunState::Failed => {
                let failing = if to == RunState::Failed {
                    self.tasks.iter().rposition(|t| t.state != Some(RunState::Succeeded))
                } else {
                    None
                };
                for (i, task) in self.tasks.iter_mut().enumerate() {
                    if task.state == Some(RunState::Succeeded) {
                        continue;
                    }
                    if task.started == 0 {
                        task.started = now;
                    }
                    task.ended = now;
                    if Some(i) == failing {
                        task.failed = true;
                        task.set(RunState::Failed, now);
                    } else {
                        task.set(RunState::Succeeded, now);
                    }
                }
                self.finished = now;
            }
            RunState::Canceling => {
                for task in self.tasks.iter_mut().filter(|t| unfinished(t)) {
                    task.set(RunState::Canceling, now);
                }
            }
            RunState::Canceled | RunState::Skipped => {
                for task in self.tasks.iter_mut().filter(|t| unfinished(t)) {
                    task.ended = now;
                    task.set(to, now);
                }
                self.finished = now;
            }
            RunState::Paused => {}
        }
        if self.state != to {
            self.history.push((now, to));
        }
        self.state = to;
        self.last_change = Instant::now();
    }

    fn json(&self) -> Value {
        let mut m = Map::new();
        put(&mut m, "experiment_id", &self.experiment_id);
        put(&mut m, "run_id", &self.id);
        put(&mut m, "display_name", &self.display_name);
        put(&mut m, "storage_state", self.storage_state);
        put(&mut m, "description", &self.description);
        match &self.source {
            RunSource::Spec(spec) => {
                m.insert("pipeline_spec".into(), spec.clone());
            }
            RunSource::Reference { pipeline_id, version_id } => {
                m.insert(
                    "pipeline_version_reference".into(),
                    json!({ "pipeline_id": pipeline_id, "pipeline_version_id": version_id }),
                );
            }
        }
        if !self.runtime_config.is_empty() {
            m.insert("runtime_config".into(), Value::Object(self.runtime_config.clone()));
        }
        put(&mut m, "service_account", &self.service_account);
        m.insert("created_at".into(), timestamp(self.created));
        m.insert("scheduled_at".into(), timestamp(self.created));
        m.insert("finished_at".into(), timestamp(self.finished));
        put(&mut m, "state", self.state.as_str());
        let tasks: Vec<Value> = self.tasks.iter().filter(|t| t.state.is_some()).map(|t| t.json(&self.id)).collect();
        if !tasks.is_empty() {
            m.insert(
                "run_details".into(),
                json!({
                    "pipeline_context_id": self.contexts.0.to_string(),
                    "pipeline_run_context_id": self.contexts.1.to_string(),
                    "task_details": tasks,
                }),
            );
        }
        m.insert("state_history".into(), history_json(&self.history));
        if let Some(plugins) = &self.plugins_input {
            m.insert("plugins_input".into(), plugins.clone());
        }
        Value::Object(m)
    }
}

fn history_json(history: &[(i64, RunState)]) -> Value {
    Value::Array(
        history.iter().map(|(t, s)| json!({ "update_time": timestamp(*t).as_str(), "state": s.as_str() })).collect(),
    )
}

/// The root DAG tasks of a spec, in dependency order: (key, display name, dependencies).
fn task_seeds(spec: &Value) -> Vec<(String, String, Vec<String>)> {
    let Some(tasks) = ir_of(spec).pointer("/root/dag/tasks").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut pending: Vec<(String, String, Vec<String>)> = tasks
        .iter()
        .map(|(key, task)| {
            let display = task.pointer("/taskInfo/name").and_then(Value::as_str).unwrap_or(key).to_owned();
            let deps = task
                .get("dependentTasks")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter().filter_map(Value::as_str).filter(|d| tasks.contains_key(*d)).map(str::to_owned).collect()
                })
                .unwrap_or_default();
            (key.clone(), display, deps)
        })
        .collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let index = pending.iter().position(|(_, _, deps)| deps.iter().all(|d| placed.contains(d))).unwrap_or(0);
        let seed = pending.remove(index);
        placed.insert(seed.0.clone());
        ordered.push(seed);
    }
    ordered
}

// ---------------------------------------------------------------------------------------------
// Pipeline packages
// ---------------------------------------------------------------------------------------------

struct UploadedFile {
    filename: String,
    data: Vec<u8>,
}

/// The `uploadfile` part of a multipart/form-data body (as Go's `r.FormFile`).
fn upload_file(req: &Req<'_>) -> Result<UploadedFile, String> {
    let content_type = req.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let parts = parse_multipart(content_type, req.body)?;
    parts
        .into_iter()
        .find(|p| p.name == "uploadfile" && p.filename.as_deref().is_some_and(|f| !f.is_empty()))
        .map(|p| UploadedFile { filename: p.filename.unwrap_or_default(), data: p.data })
        .ok_or_else(|| "http: no such file".to_owned())
}

struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let (mime, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err("request Content-Type isn't multipart/form-data".to_owned());
    }
    let boundary = header_params(params)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| "no multipart boundary param in Content-Type".to_owned())?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut position = find(body, &delimiter, 0).ok_or("multipart: NextPart: EOF")? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[position..].starts_with(b"--") {
            return Ok(parts);
        }
        position = skip_line_break(body, position);
        let header_end = find(body, b"\r\n\r\n", position).ok_or("multipart: malformed part headers")?;
        let headers = String::from_utf8_lossy(&body[position..header_end]).into_owned();
        let data_start = header_end + 4;
        let mut next_delimiter = b"\r\n".to_vec();
        next_delimiter.extend_from_slice(&delimiter);
        let data_end = find(body, &next_delimiter, data_start).ok_or("multipart: NextPart: unexpected EOF")?;
        let mut name = String::new();
        let mut filename = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else { continue };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                let (_, params) = value.split_once(';').unwrap_or((value, ""));
                for (k, v) in header_params(params) {
                    if k.eq_ignore_ascii_case("name") {
                        name = v;
                    } else if k.eq_ignore_ascii_case("filename") {
                        filename = Some(v.rsplit(['/', '\\']).next().unwrap_or_default().to_owned());
                    }
                }
            }
        }
        parts.push(Part { name, filename, data: body[data_start..data_end].to_vec() });
        position = data_end + next_delimiter.len();
    }
}

fn skip_line_break(body: &[u8], position: usize) -> usize {
    if body[position..].starts_with(b"\r\n") {
        position + 2
    } else if body[position..].starts_with(b"\n") {
        position + 1
    } else {
        position
    }
}

/// `a=b; c="d"` header parameters.
fn header_params(params: &str) -> Vec<(String, String)> {
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            (k.trim().to_owned(), v.replace("\\\"", "\""))
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// The checks of `ReadPipelineFile`: YAML/JSON by extension; archives are not unpacked here.
fn check_package_format(filename: &str, data: &[u8]) -> Result<(), String> {
    let lower = filename.to_ascii_lowercase();
    if [".yaml", ".yml", ".json"].iter().any(|ext| lower.ends_with(ext)) {
        return Ok(());
    }
    if data.starts_with(b"PK\x03\x04") || data.starts_with(&[0x1f, 0x8b]) {
        return Err("the KFP test server does not unpack .zip or .tar.gz packages; upload the YAML itself".to_owned());
    }
    Err("Unexpected pipeline file format. Support .zip, .tar.gz or YAML.".to_owned())
}

/// A package (YAML or JSON, possibly with a platform-spec document) as the API returns it.
fn parse_package(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "invalid pipeline spec: the file is not UTF-8".to_owned())?;
    let mut pipeline_spec = None;
    let mut platform_spec = None;
    for document in serde_yaml::Deserializer::from_str(text) {
        let value =
            Value::deserialize(document).map_err(|e| format!("cannot convert v2 pipeline spec to json format: {e}"))?;
        match &value {
            Value::Null => {}
            Value::Object(map) if map.contains_key("platforms") => {
                if platform_spec.replace(value).is_some() {
                    return Err("multiple platform specs provided".to_owned());
                }
            }
            Value::Object(map)
                if ["pipelineInfo", "root", "components", "deploymentSpec"].iter().any(|k| map.contains_key(*k)) =>
            {
                if pipeline_spec.replace(value).is_some() {
                    return Err("multiple pipeline specs provided".to_owned());
                }
            }
            Value::Object(map) if map.get("kind").and_then(Value::as_str) == Some("Workflow") => {
                return Err("the KFP test server only accepts v2 pipeline specs (not Argo workflows)".to_owned());
            }
            _ => return Err("invalid pipeline spec: unknown YAML document".to_owned()),
        }
    }
    let ir = pipeline_spec.ok_or_else(|| "invalid v2 pipeline spec: no pipeline spec found".to_owned())?;
    validate_ir(&ir)?;
    let ir = protojson(&ir);
    Ok(match platform_spec {
        Some(platform) => json!({ "pipeline_spec": ir, "platform_spec": protojson(&platform) }),
        None => ir,
    })
}

/// The IR inside a spec that may be the `{pipeline_spec, platform_spec}` wrapper.
fn ir_of(spec: &Value) -> &Value {
    match spec.get("pipeline_spec") {
        Some(inner) if spec.get("root").is_none() => inner,
        _ => spec,
    }
}

/// The checks of the real server's `NewV2SpecTemplate`.
fn validate_ir(ir: &Value) -> Result<(), String> {
    let Value::Object(map) = ir else {
        return Err("invalid v2 pipeline spec: the pipeline spec is not an object".to_owned());
    };
    let name = map.get("pipelineInfo").and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err("invalid v2 pipeline spec: name is empty".to_owned());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(
            "invalid v2 pipeline spec: name should consist of lower case alphanumeric characters, '-' or '.', \
                    and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    if !map.get("root").is_some_and(Value::is_object) {
        return Err("invalid v2 pipeline spec: root component is empty".to_owned());
    }
    Ok(())
}

/// `name` > `display_name` > file name (`buildPipelineName`).
fn build_name(name: &str, display_name: &str, file_name: &str) -> String {
    [name, display_name, file_name].into_iter().find(|n| !n.is_empty()).unwrap_or_default().to_owned()
}

fn parse_tags(req: &Req<'_>) -> Result<Map<String, Value>, String> {
    match req.param("tags") {
        None | Some("") => Ok(Map::new()),
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) if map.values().all(Value::is_string) => Ok(map),
            _ => Err(format!("Failed to parse tags {raw:?}: tags must be a JSON object of strings")),
        },
    }
}

/// The `package_url` validation of backend 2.17 (`validation/pipeline_url.go`).
fn validate_package_url(url: &str) -> Result<(), String> {
    const ALLOWED: [&str; 4] =
        ["storage.googleapis.com", "s3.amazonaws.com", "github.com", "raw.githubusercontent.com"];
    let rest =
        url.strip_prefix("https://").ok_or_else(|| format!("invalid pipeline URL {url:?}: only https is allowed"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    if port.is_some_and(|p| p != "443") {
        return Err(format!("invalid pipeline URL {url:?}: only the default port is allowed"));
    }
    let host = host.to_ascii_lowercase();
    if !ALLOWED.iter().any(|a| host == *a || host.ends_with(&format!(".{a}"))) {
        return Err(format!("invalid pipeline URL {url:?}: domain {host} is not in the allow-list"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Request messages (protojson with DiscardUnknown = false)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int32,
    Int64,
    Enum(&'static [(&'static str, i64)]),
    Time,
    Msg(&'static str, &'static [Field]),
    StrMap,
    Struct,
    Any,
    List(&'static Kind),
}

#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    kind: Kind,
    oneof: Option<&'static str>,
}

const fn field(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, oneof: None }
}

const fn member(name: &'static str, kind: Kind, oneof: &'static str) -> Field {
    Field { name, kind, oneof: Some(oneof) }
}

const STORAGE_STATES: &[(&str, i64)] = &[("STORAGE_STATE_UNSPECIFIED", 0), ("AVAILABLE", 1), ("ARCHIVED", 2)];
const RUNTIME_STATES: &[(&str, i64)] = &[
    ("RUNTIME_STATE_UNSPECIFIED", 0),
    ("PENDING", 1),
    ("RUNNING", 2),
    ("SUCCEEDED", 3),
    ("SKIPPED", 4),
    ("FAILED", 5),
    ("CANCELING", 6),
    ("CANCELED", 7),
    ("PAUSED", 8),
];
const OPERATIONS: &[(&str, i64)] = &[
    ("OPERATION_UNSPECIFIED", 0),
    ("EQUALS", 1),
    ("NOT_EQUALS", 2),
    ("GREATER_THAN", 3),
    ("GREATER_THAN_EQUALS", 5),
    ("LESS_THAN", 6),
    ("LESS_THAN_EQUALS", 7),
    ("IN", 8),
    ("IS_SUBSTRING", 9),
];

const STATUS: &[Field] =
    &[field("code", Kind::Int32), field("message", Kind::Str), field("details", Kind::List(&Kind::Any))];
const URL: &[Field] = &[field("pipeline_url", Kind::Str)];
const PIPELINE: &[Field] = &[
    field("pipeline_id", Kind::Str),
    field("display_name", Kind::Str),
    field("name", Kind::Str),
    field("description", Kind::Str),
    field("created_at", Kind::Time),
    field("namespace", Kind::Str),
    field("error", Kind::Msg("google.rpc.Status", STATUS)),
    field("tags", Kind::StrMap),
];
const VERSION: &[Field] = &[
    field("pipeline_id", Kind::Str),
    field("pipeline_version_id", Kind::Str),
    field("display_name", Kind::Str),
    field("name", Kind::Str),
    field("description", Kind::Str),
    field("created_at", Kind::Time),
    field("package_url", Kind::Msg("v2beta1.Url", URL)),
    field("code_source_url", Kind::Str),
    field("pipeline_spec", Kind::Struct),
    field("error", Kind::Msg("google.rpc.Status", STATUS)),
    field("tags", Kind::StrMap),
];
const CREATE_PIPELINE_AND_VERSION: &[Field] = &[
    field("pipeline", Kind::Msg("v2beta1.Pipeline", PIPELINE)),
    field("pipeline_version", Kind::Msg("v2beta1.PipelineVersion", VERSION)),
];
const EXPERIMENT: &[Field] = &[
    field("experiment_id", Kind::Str),
    field("display_name", Kind::Str),
    field("description", Kind::Str),
    field("created_at", Kind::Time),
    field("namespace", Kind::Str),
    field("storage_state", Kind::Enum(STORAGE_STATES)),
    field("last_run_created_at", Kind::Time),
];
const VERSION_REFERENCE: &[Field] = &[field("pipeline_id", Kind::Str), field("pipeline_version_id", Kind::Str)];
const RUNTIME_CONFIG: &[Field] = &[field("parameters", Kind::Struct), field("pipeline_root", Kind::Str)];
const RUN: &[Field] = &[
    field("experiment_id", Kind::Str),
    field("run_id", Kind::Str),
    field("display_name", Kind::Str),
    field("storage_state", Kind::Enum(STORAGE_STATES)),
    field("description", Kind::Str),
    member("pipeline_version_id", Kind::Str, "pipeline_source"),
    member("pipeline_spec", Kind::Struct, "pipeline_source"),
    member(
        "pipeline_version_reference",
        Kind::Msg("v2beta1.PipelineVersionReference", VERSION_REFERENCE),
        "pipeline_source",
    ),
    field("runtime_config", Kind::Msg("v2beta1.RuntimeConfig", RUNTIME_CONFIG)),
    field("service_account", Kind::Str),
    field("created_at", Kind::Time),
    field("scheduled_at", Kind::Time),
    field("finished_at", Kind::Time),
    field("state", Kind::Enum(RUNTIME_STATES)),
    field("error", Kind::Msg("google.rpc.Status", STATUS)),
    field("run_details", Kind::Struct),
    field("recurring_run_id", Kind::Str),
    field("state_history", Kind::List(&Kind::Struct)),
    field("plugins_input", Kind::Struct),
    field("plugins_output", Kind::Struct),
];
const INT_VALUES: &[Field] = &[field("values", Kind::List(&Kind::Int32))];
const LONG_VALUES: &[Field] = &[field("values", Kind::List(&Kind::Int64))];
const STRING_VALUES: &[Field] = &[field("values", Kind::List(&Kind::Str))];
const PREDICATE: &[Field] = &[
    field("operation", Kind::Enum(OPERATIONS)),
    field("key", Kind::Str),
    member("int_value", Kind::Int32, "value"),
    member("long_value", Kind::Int64, "value"),
    member("string_value", Kind::Str, "value"),
    member("timestamp_value", Kind::Time, "value"),
    member("int_values", Kind::Msg("v2beta1.Predicate.IntValues", INT_VALUES), "value"),
    member("long_values", Kind::Msg("v2beta1.Predicate.LongValues", LONG_VALUES), "value"),
    member("string_values", Kind::Msg("v2beta1.Predicate.StringValues", STRING_VALUES), "value"),
];
const FILTER: &[Field] = &[field("predicates", Kind::List(&Kind::Msg("v2beta1.Predicate", PREDICATE)))];

/// Checks a JSON object against a message and returns it with proto field names.
fn normalize(value: &Value, fields: &'static [Field], message: &str) -> Result<Map<String, Value>, String> {
    let Value::Object(input) = value else {
        return Err(format!("invalid value for message {message}: {}", short(value)));
    };
    let mut out = Map::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut oneofs: Vec<&str> = Vec::new();
    for (key, v) in input {
        let Some(f) = fields.iter().find(|f| f.name == key || lower_camel(f.name) == *key) else {
            return Err(format!("unknown field {key:?}"));
        };
        if seen.contains(&f.name) {
            return Err(format!("duplicate field {key:?}"));
        }
        seen.push(f.name);
        if v.is_null() && !matches!(f.kind, Kind::Any) {
            continue;
        }
        if let Some(group) = f.oneof {
            if oneofs.contains(&group) {
                return Err(format!("error parsing {key:?}, oneof {message}.{group} is already set"));
            }
            oneofs.push(group);
        }
        out.insert(f.name.to_owned(), normalize_value(v, f.kind, key)?);
    }
    Ok(out)
}

fn normalize_value(v: &Value, kind: Kind, key: &str) -> Result<Value, String> {
    let invalid = |what: &str| format!("invalid value for {what} field {key}: {}", short(v));
    match kind {
        Kind::Str => v.is_string().then(|| v.clone()).ok_or_else(|| invalid("string")),
        Kind::Int32 | Kind::Int64 => {
            let n = match v {
                Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(exact_i64)),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            let n = n.ok_or_else(|| invalid(if matches!(kind, Kind::Int32) { "int32" } else { "int64" }))?;
            if matches!(kind, Kind::Int32) && i32::try_from(n).is_err() {
                return Err(invalid("int32"));
            }
            Ok(Value::Number(n.into()))
        }
        Kind::Enum(values) => match v {
            Value::String(s) => values
                .iter()
                .find(|(name, _)| name == s)
                .map(|(name, _)| Value::String((*name).to_owned()))
                .ok_or_else(|| invalid("enum")),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(values
                    .iter()
                    .find(|(_, number)| *number == i)
                    .map(|(name, _)| Value::String((*name).to_owned()))
                    .unwrap_or_else(|| Value::Number(i.into()))),
                None => Err(invalid("enum")),
            },
            _ => Err(invalid("enum")),
        },
        Kind::Time => match v.as_str().and_then(parse_rfc3339) {
            Some(_) => Ok(v.clone()),
            None => Err(invalid("google.protobuf.Timestamp")),
        },
        Kind::Msg(name, fields) => normalize(v, fields, name).map(Value::Object),
        Kind::StrMap => match v {
            Value::Object(map) if map.values().all(Value::is_string) => Ok(v.clone()),
            _ => Err(invalid("map<string, string>")),
        },
        Kind::Struct => v.is_object().then(|| v.clone()).ok_or_else(|| invalid("google.protobuf.Struct")),
        Kind::Any => Ok(v.clone()),
        Kind::List(inner) => match v {
            Value::Array(items) => items
                .iter()
                .map(|item| if item.is_null() { Err(invalid("repeated")) } else { normalize_value(item, *inner, key) })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            _ => Err(invalid("repeated")),
        },
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 { format!("{}…", text.chars().take(40).collect::<String>()) } else { text }
}

fn str_of(map: &Map<String, Value>, key: &str) -> String {
    map.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn obj_of(map: &Map<String, Value>, key: &str) -> Map<String, Value> {
    map.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
}

fn non_empty_or(value: String, default: &str) -> String {
    if value.is_empty() { default.to_owned() } else { value }
}

fn check_name_length(resource: &str, name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_NAME_LENGTH {
        return Err(ApiError::invalid(format!("{resource}.Name length cannot exceed {MAX_NAME_LENGTH}")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Listing: sort, filter, page tokens
// ---------------------------------------------------------------------------------------------

/// A listable resource: its table name and API→model field map.
struct Listable {
    model: &'static str,
    kind: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

impl Listable {
    fn model_field(&self, api_field: &str) -> Option<&'static str> {
        self.fields.iter().find(|(api, _)| *api == api_field).map(|(_, model)| *model)
    }

    fn has_model_field(&self, model_field: &str) -> bool {
        self.fields.iter().any(|(_, m)| *m == model_field)
    }
}

const PIPELINES: Listable = Listable {
    model: "pipelines",
    kind: "Pipeline",
    fields: &[
        ("pipeline_id", "UUID"),
        ("name", "Name"),
        ("display_name", "DisplayName"),
        ("created_at", "CreatedAtInSec"),
        ("description", "Description"),
        ("namespace", "Namespace"),
    ],
};
const VERSIONS: Listable = Listable {
    model: "pipeline_versions",
    kind: "PipelineVersion",
    fields: &[
        ("pipeline_version_id", "UUID"),
        ("name", "Name"),
        ("display_name", "DisplayName"),
        ("created_at", "CreatedAtInSec"),
        ("status", "Status"),
        ("description", "Description"),
        ("pipeline_spec", "PipelineSpec"),
    ],
};
const EXPERIMENTS: Listable = Listable {
    model: "experiments",
    kind: "Experiment",
    fields: &[
        ("experiment_id", "UUID"),
        ("display_name", "Name"),
        ("name", "Name"),
        ("created_at", "CreatedAtInSec"),
        ("last_run_created_at", "LastRunCreatedAtInSec"),
        ("description", "Description"),
        ("namespace", "Namespace"),
        ("storage_state", "StorageState"),
    ],
};
const RUNS: Listable = Listable {
    model: "run_details",
    kind: "Run",
    fields: &[
        ("run_id", "UUID"),
        ("id", "UUID"),
        ("display_name", "DisplayName"),
        ("name", "DisplayName"),
        ("created_at", "CreatedAtInSec"),
        ("finished_at", "FinishedAtInSec"),
        ("description", "Description"),
        ("scheduled_at", "ScheduledAtInSec"),
        ("storage_state", "StorageState"),
        ("status", "Conditions"),
        ("namespace", "Namespace"),
        ("experiment_id", "ExperimentUUID"),
        ("state", "State"),
        ("state_history", "StateHistory"),
        ("runtime_details", "PipelineRuntimeManifest"),
        ("recurring_run_id", "JobUUID"),
    ],
};

/// A column value, for sorting and filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Int(i64),
    Text(String),
}

/// Text sorts case-insensitively first (a MySQL `_ci` collation), then by bytes.
impl Ord for Cell {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Text(a), Cell::Text(b)) => a.to_lowercase().cmp(&b.to_lowercase()).then_with(|| a.cmp(b)),
            (Cell::Int(_), Cell::Text(_)) => Ordering::Less,
            (Cell::Text(_), Cell::Int(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Cell {
    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    fn to_json(&self) -> Value {
        match self {
            Cell::Int(i) => Value::Number((*i).into()),
            Cell::Text(s) => Value::String(s.clone()),
        }
    }

    fn from_json(v: &Value) -> Option<Cell> {
        match v {
            Value::Number(n) => n.as_i64().map(Cell::Int),
            Value::String(s) => Some(Cell::Text(s.clone())),
            _ => None,
        }
    }
}

trait Row {
    fn key(&self) -> &str;
    fn cell(&self, model_field: &str) -> Option<Cell>;
}

impl Row for PipelineRec {
    fn key(&self) -> &str {
        &self.id
    }

    fn cell(&self, model_field: &str) -> Option<Cell> {
        Some(match model_field {
            "UUID" => Cell::text(&self.id),
            "Name" => Cell::text(&self.name),
            "DisplayName" => Cell::text(&self.display_name),
            "CreatedAtInSec" => Cell::Int(self.created),
            "Description" => Cell::text(&self.description),
            "Namespace" => Cell::text(&self.namespace),
            _ => return None,
        })
    }
}

impl Row for VersionRec {
    fn key(&self) -> &str {
        &self.id
    }

    fn cell(&self, model_field: &str) -> Option<Cell> {
        Some(match model_field {
            "UUID" => Cell::text(&self.id),
            "Name" => Cell::text(&self.name),
            "DisplayName" => Cell::text(&self.display_name),
            "CreatedAtInSec" => Cell::Int(self.created),
            "Status" => Cell::text("READY"),
            "Description" => Cell::text(&self.description),
            "PipelineSpec" => Cell::Text(self.spec.to_string()),
            _ => return None,
        })
    }
}

impl Row for ExperimentRec {
    fn key(&self) -> &str {
        &self.id
    }

    fn cell(&self, model_field: &str) -> Option<Cell> {
        Some(match model_field {
            "UUID" => Cell::text(&self.id),
            "Name" => Cell::text(&self.display_name),
            "CreatedAtInSec" => Cell::Int(self.created),
            "LastRunCreatedAtInSec" => Cell::Int(self.last_run_created),
            "Description" => Cell::text(&self.description),
            "Namespace" => Cell::text(&self.namespace),
            "StorageState" => Cell::text(self.storage_state),
            _ => return None,
        })
    }
}

impl Row for RunRec {
    fn key(&self) -> &str {
        &self.id
    }

    fn cell(&self, model_field: &str) -> Option<Cell> {
        Some(match model_field {
            "UUID" => Cell::text(&self.id),
            "DisplayName" => Cell::text(&self.display_name),
            "CreatedAtInSec" | "ScheduledAtInSec" => Cell::Int(self.created),
            "FinishedAtInSec" => Cell::Int(self.finished),
            "Description" => Cell::text(&self.description),
            "StorageState" => Cell::text(self.storage_state),
            "Conditions" => Cell::text(self.state.v1_status()),
            "Namespace" => Cell::text(&self.namespace),
            "ExperimentUUID" => Cell::text(&self.experiment_id),
            "State" => Cell::text(self.state.as_str()),
            "StateHistory" => Cell::Text(history_json(&self.history).to_string()),
            "PipelineRuntimeManifest" | "JobUUID" => Cell::text(""),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Substring,
}

const OP_NAMES: [(Op, &str, &str); 8] = [
    (Op::Eq, "EQUALS", "EQ"),
    (Op::Neq, "NOT_EQUALS", "NEQ"),
    (Op::Gt, "GREATER_THAN", "GT"),
    (Op::Gte, "GREATER_THAN_EQUALS", "GTE"),
    (Op::Lt, "LESS_THAN", "LT"),
    (Op::Lte, "LESS_THAN_EQUALS", "LTE"),
    (Op::In, "IN", "IN"),
    (Op::Substring, "IS_SUBSTRING", "SUBSTRING"),
];

#[derive(Debug, Clone, PartialEq)]
struct Predicate {
    op: Op,
    /// `<model>.<ModelField>`, as the server rewrites keys.
    key: String,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    predicates: Vec<Predicate>,
}

impl Filter {
    /// The server's JSON form (`{"EQ":{"pipelines.Name":["x"]},…}`), kept in page tokens.
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (op, _, short) in OP_NAMES {
            let mut keys = Map::new();
            for p in self.predicates.iter().filter(|p| p.op == op) {
                let entry = keys.entry(p.key.clone()).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(values) = entry {
                    values.push(p.value.clone());
                }
            }
            out.insert(short.to_owned(), Value::Object(keys));
        }
        Value::Object(out)
    }

    fn from_json(value: &Value) -> Option<Filter> {
        let map = value.as_object()?;
        let mut predicates = Vec::new();
        for (op, _, short) in OP_NAMES {
            let Some(keys) = map.get(short).and_then(Value::as_object) else { continue };
            for (key, values) in keys {
                for value in values.as_array()? {
                    predicates.push(Predicate { op, key: key.clone(), value: value.clone() });
                }
            }
        }
        Some(Filter { predicates })
    }

    fn matches(&self, row: &impl Row) -> bool {
        self.predicates.iter().all(|p| {
            let field = p.key.rsplit('.').next().unwrap_or_default();
            row.cell(field).is_some_and(|cell| p.holds(&cell))
        })
    }
}

impl Predicate {
    fn holds(&self, cell: &Cell) -> bool {
        match self.op {
            Op::Eq => cell_eq(cell, &self.value),
            Op::Neq => !cell_eq(cell, &self.value),
            Op::Gt => cell_cmp(cell, &self.value) == Some(Ordering::Greater),
            Op::Gte => matches!(cell_cmp(cell, &self.value), Some(Ordering::Greater | Ordering::Equal)),
            Op::Lt => cell_cmp(cell, &self.value) == Some(Ordering::Less),
            Op::Lte => matches!(cell_cmp(cell, &self.value), Some(Ordering::Less | Ordering::Equal)),
            Op::In => self.value.as_array().is_some_and(|values| values.iter().any(|v| cell_eq(cell, v))),
            Op::Substring => match (cell, &self.value) {
                (Cell::Text(s), Value::String(t)) => s.to_lowercase().contains(&t.to_lowercase()),
                _ => false,
            },
        }
    }
}

fn cell_eq(cell: &Cell, value: &Value) -> bool {
    match (cell, value) {
        (Cell::Text(s), Value::String(t)) => s.to_lowercase() == t.to_lowercase(),
        _ => cell_cmp(cell, value) == Some(Ordering::Equal),
    }
}

fn cell_cmp(cell: &Cell, value: &Value) -> Option<Ordering> {
    match (cell, value) {
        (Cell::Int(i), Value::Number(n)) => n.as_i64().map(|n| i.cmp(&n)),
        (Cell::Int(i), Value::String(s)) => s.trim().parse::<i64>().ok().map(|n| i.cmp(&n)),
        (Cell::Text(s), Value::String(t)) => Some(s.to_lowercase().cmp(&t.to_lowercase())),
        (Cell::Text(s), Value::Number(n)) => Some(s.as_str().cmp(n.to_string().as_str())),
        _ => None,
    }
}

/// Parses the `filter` query parameter (`parseAPIFilter` + `NewOptions` key rewriting).
fn parse_filter(raw: &str, listable: &Listable) -> Result<Option<Filter>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let failed = |e: String| ApiError::invalid(format!("failed to parse valid filter from {raw:?}: {e}"));
    let decoded = query_unescape(raw).map_err(failed)?;
    let value: Value = serde_json::from_str(&decoded).map_err(|e| failed(format!("proto: syntax error: {e}")))?;
    let message = normalize(&value, FILTER, "v2beta1.Filter").map_err(|e| failed(format!("proto: {e}")))?;
    let mut predicates = Vec::new();
    for p in message.get("predicates").and_then(Value::as_array).into_iter().flatten() {
        let Some(p) = p.as_object() else { continue };
        let op_name = p.get("operation").map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned));
        let op = op_name.as_deref().and_then(|name| OP_NAMES.iter().find(|(_, n, _)| *n == name)).map(|(op, ..)| *op);
        let Some(op) = op else {
            return Err(ApiError::invalid(format!(
                "Invalid filter: invalid predicate operation: {}",
                op_name.as_deref().unwrap_or("OPERATION_UNSPECIFIED")
            )));
        };
        let value = if let Some(v) = p.get("int_value").or_else(|| p.get("long_value")) {
            v.clone()
        } else if let Some(v) = p.get("string_value") {
            v.clone()
        } else if let Some(t) = p.get("timestamp_value").and_then(Value::as_str) {
            Value::Number(parse_rfc3339(t).unwrap_or_default().into())
        } else if let Some(values) = ["int_values", "long_values", "string_values"]
            .iter()
            .find_map(|k| p.get(*k))
            .map(|v| v.get("values").cloned().unwrap_or_else(|| Value::Array(Vec::new())))
        {
            values
        } else {
            return Err(ApiError::invalid("Invalid filter: a predicate has no value"));
        };
        let key = str_of(p, "key");
        let op_label = OP_NAMES.iter().find(|(o, ..)| *o == op).map(|(_, n, _)| *n).unwrap_or_default();
        if key.is_empty() {
            return Err(ApiError::invalid(format!(
                "Predicate key cannot be empty for operation {op_label} and value {value}"
            )));
        }
        match (op, &value) {
            (Op::In, Value::Array(_)) => {}
            (Op::In, v) => {
                return Err(ApiError::invalid(format!("cannot use IN operator with scalar type {}", go_type(v))));
            }
            (Op::Substring, Value::String(_)) => {}
            (Op::Substring, v) => {
                return Err(ApiError::invalid(format!(
                    "cannot use non string value type {} with operator IS_SUBSTRING",
                    go_type(v)
                )));
            }
            (_, v @ Value::Array(_)) => {
                return Err(ApiError::invalid(format!(
                    "cannot use scalar operator {op_label} on array type {}",
                    go_type(v)
                )));
            }
            _ => {}
        }
        let model = listable
            .model_field(&key)
            .ok_or_else(|| ApiError::invalid(format!("no support for filtering on unrecognized field {key:?}")))?;
        predicates.push(Predicate { op, key: format!("{}.{model}", listable.model), value });
    }
    Ok(if predicates.is_empty() { None } else { Some(Filter { predicates }) })
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "int64",
        Value::Array(items) if items.iter().all(Value::is_string) => "[]string",
        Value::Array(_) => "[]int64",
        _ => "interface {}",
    }
}

struct ListOptions {
    sort_field: String,
    desc: bool,
    filter: Option<Filter>,
    cursor: Option<(Cell, String)>,
    page_size: usize,
}

fn parse_sort(sort_by: &str, listable: &Listable) -> Result<(String, bool), ApiError> {
    let lower = sort_by.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    if words.len() > 2 || (words.len() == 2 && words[1] != "desc" && words[1] != "asc") {
        return Err(ApiError::invalid(format!(
            "Failed to create list options: Received invalid sort by format {sort_by:?}. Supported format: \
             \"field_name\", \"field_name desc\", or \"field_name asc\""
        )));
    }
    let field = match words.first() {
        None => "CreatedAtInSec",
        Some(name) => listable.model_field(name).ok_or_else(|| {
            ApiError::invalid(format!(
                "Failed to create list options: Invalid sorting field: {name:?} on listable type {}",
                listable.kind
            ))
        })?,
    };
    Ok((field.to_owned(), words.get(1) == Some(&"desc")))
}

/// `validatedListOptions`: page size, sort, filter, and the page token.
fn list_options(req: &Req<'_>, listable: &Listable) -> Result<ListOptions, ApiError> {
    let page_size = req.param_int("page_size")?.unwrap_or(0);
    if page_size < 0 {
        return Err(ApiError::invalid(format!(
            "Failed to create list options: The page size should be greater than 0. Got {page_size}"
        )));
    }
    let page_size = if page_size == 0 { DEFAULT_PAGE_SIZE } else { page_size.min(MAX_PAGE_SIZE) };
    let page_size = usize::try_from(page_size).unwrap_or(20);
    let token = req.param_str("page_token");
    let sort_by = req.param_str("sort_by");
    let filter = req.param_str("filter");
    let fresh = || -> Result<(String, bool, Option<Filter>), ApiError> {
        let (field, desc) = parse_sort(&sort_by, listable)?;
        Ok((field, desc, parse_filter(&filter, listable)?))
    };
    if token.is_empty() {
        let (sort_field, desc, filter) = fresh()?;
        return Ok(ListOptions { sort_field, desc, filter, cursor: None, page_size });
    }
    let token = PageToken::decode(&token, listable)?;
    if !sort_by.is_empty() || !filter.is_empty() {
        let (sort_field, desc, filter) = fresh()?;
        if sort_field != token.sort_field
            || desc != token.desc
            || filter.map(|f| f.to_json()) != token.filter.as_ref().map(Filter::to_json)
        {
            return Err(ApiError::invalid(
                "Failed to create list options: page token does not match the supplied sort by and/or filtering \
                 criteria. Either specify the same criteria or leave the latter empty if page token is specified.",
            ));
        }
    }
    Ok(ListOptions {
        sort_field: token.sort_field,
        desc: token.desc,
        filter: token.filter,
        cursor: Some((token.sort_value, token.key)),
        page_size,
    })
}

struct PageToken {
    sort_field: String,
    sort_value: Cell,
    key: String,
    desc: bool,
    filter: Option<Filter>,
}

impl PageToken {
    fn encode(&self, listable: &Listable) -> String {
        let prefix = format!("{}.", listable.model);
        let token = json!({
            "SortByFieldName": self.sort_field,
            "SortByFieldValue": self.sort_value.to_json(),
            "SortByFieldPrefix": prefix,
            "KeyFieldName": "UUID",
            "KeyFieldValue": self.key,
            "KeyFieldPrefix": prefix,
            "IsDesc": self.desc,
            "ModelName": listable.model,
            "Filter": self.filter.as_ref().map_or(Value::Null, Filter::to_json),
        });
        base64_encode(token.to_string().as_bytes())
    }

    fn decode(raw: &str, listable: &Listable) -> Result<PageToken, ApiError> {
        let invalid = || ApiError::invalid("Failed to create list options: Invalid package token");
        let bytes = base64_decode(raw).ok_or_else(invalid)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        let sort_field = value.get("SortByFieldName").and_then(Value::as_str).ok_or_else(invalid)?;
        if value.get("ModelName").and_then(Value::as_str) != Some(listable.model)
            || !listable.has_model_field(sort_field)
        {
            return Err(invalid());
        }
        let filter = match value.get("Filter") {
            None | Some(Value::Null) => None,
            Some(f) => Some(Filter::from_json(f).ok_or_else(invalid)?),
        };
        Ok(PageToken {
            sort_field: sort_field.to_owned(),
            sort_value: value.get("SortByFieldValue").and_then(Cell::from_json).ok_or_else(invalid)?,
            key: value.get("KeyFieldValue").and_then(Value::as_str).ok_or_else(invalid)?.to_owned(),
            desc: value.get("IsDesc").and_then(Value::as_bool).unwrap_or(false),
            filter: filter.filter(|f| !f.predicates.is_empty()),
        })
    }
}

struct Page<'a, T> {
    items: Vec<&'a T>,
    total: usize,
    next: String,
}

fn paginate<'a, T: Row + 'a>(
    rows: impl Iterator<Item = &'a T>,
    opts: &ListOptions,
    listable: &Listable,
) -> Page<'a, T> {
    let mut rows: Vec<&T> = rows.filter(|r| opts.filter.as_ref().is_none_or(|f| f.matches(*r))).collect();
    let total = rows.len();
    let sort_value = |r: &T| r.cell(&opts.sort_field).unwrap_or(Cell::Text(String::new()));
    let order = |a: &T, b_value: &Cell, b_key: &str| {
        let o = sort_value(a).cmp(b_value).then_with(|| a.key().cmp(b_key));
        if opts.desc { o.reverse() } else { o }
    };
    rows.sort_by(|a, b| order(a, &sort_value(b), b.key()));
    if let Some((value, key)) = &opts.cursor {
        rows.retain(|r| order(r, value, key) != Ordering::Less);
    }
    let next = match rows.get(opts.page_size) {
        Some(first_of_next) => PageToken {
            sort_field: opts.sort_field.clone(),
            sort_value: sort_value(first_of_next),
            key: first_of_next.key().to_owned(),
            desc: opts.desc,
            filter: opts.filter.clone(),
        }
        .encode(listable),
        None => String::new(),
    };
    rows.truncate(opts.page_size);
    Page { items: rows, total, next }
}

fn list_json(field: &str, items: Vec<Value>, total: usize, next: &str) -> Value {
    let mut m = Map::new();
    if !items.is_empty() {
        m.insert(field.to_owned(), Value::Array(items));
    }
    if total > 0 {
        m.insert("total_size".into(), Value::Number(total.into()));
    }
    put(&mut m, "next_page_token", next);
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Responses and errors
// ---------------------------------------------------------------------------------------------

/// A `google.rpc.Status` error of the grpc-gateway routes.
#[derive(Debug)]
struct ApiError {
    code: i32,
    message: String,
    /// Whether `details` carries the user-facing status (user errors), or is empty
    /// (errors of the gateway itself: body decoding, query parameters).
    detailed: bool,
}

impl ApiError {
    fn new(code: i32, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), detailed: true }
    }

    fn gateway(code: i32, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), detailed: false }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(3, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(5, message)
    }

    fn exists(message: impl Into<String>) -> Self {
        Self::new(6, message)
    }

    fn precondition(message: impl Into<String>) -> Self {
        Self::new(9, message)
    }

    fn response(&self) -> Response {
        let details = if self.detailed {
            json!([{ "@type": "type.googleapis.com/google.rpc.Status", "code": self.code, "message": self.message }])
        } else {
            json!([])
        };
        let status = match self.code {
            3 | 9 | 11 => StatusCode::BAD_REQUEST,
            5 => StatusCode::NOT_FOUND,
            6 | 10 => StatusCode::CONFLICT,
            7 => StatusCode::FORBIDDEN,
            8 => StatusCode::TOO_MANY_REQUESTS,
            12 => StatusCode::NOT_IMPLEMENTED,
            14 => StatusCode::SERVICE_UNAVAILABLE,
            16 => StatusCode::UNAUTHORIZED,
            4 => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        json_response(status, &json!({ "code": self.code, "message": self.message, "details": details }))
    }
}

fn pipeline_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Failed to get a pipeline {id}. Check error stack: Failed to get pipeline {id}: ResourceNotFoundError: \
         Pipeline {id} not found"
    ))
}

fn version_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Failed to get a pipeline version {id}: ResourceNotFoundError: PipelineVersion {id} not found"
    ))
}

fn experiment_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Failed to fetch experiment: Failed to get experiment {id}: ResourceNotFoundError: Experiment {id} not found"
    ))
}

fn run_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Failed to get a run {id}: ResourceNotFoundError: Run {id} not found"))
}

fn duplicate_pipeline(name: &str) -> ApiError {
    ApiError::exists(format!(
        "Failed to create a pipeline due to server error: Already exist error: Failed to create a new pipeline. The \
         name {name} already exist. Please specify a new name"
    ))
}

fn duplicate_version(name: &str) -> ApiError {
    ApiError::exists(format!(
        "Failed to create a pipeline version: Already exist error: Failed to create a new pipeline version. The name \
         {name} already exist. Please specify a new name"
    ))
}

fn reply(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(value) => ok(value),
        Err(e) => e.response(),
    }
}

fn ok(value: Value) -> Response {
    json_response(StatusCode::OK, &value)
}

fn not_found_route() -> Response {
    ApiError::gateway(5, "Not Found").response()
}

fn method_not_allowed() -> Response {
    ApiError::gateway(12, "Method Not Allowed").response()
}

/// The error shape of the upload routes.
fn upload_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error_message": message, "error_details": message }))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, content_type: &'static str, body: &str) -> Response {
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>Sign In</title>\n</head>\n<body>\n<h1>Log in to Your Account</h1>\n\
<form method=\"post\" action=\"/dex/auth/local/login\">\n\
<input type=\"text\" name=\"login\" placeholder=\"email address\">\n\
<input type=\"password\" name=\"password\" placeholder=\"password\">\n\
<button type=\"submit\">Login</button>\n</form>\n</body>\n</html>\n";

fn put(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers: time, ids, encodings, JSON numbers
// ---------------------------------------------------------------------------------------------

fn now_secs() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()).unwrap_or(0)
}

fn timestamp(secs: i64) -> Value {
    Value::String(rfc3339(secs))
}

/// Seconds since the epoch as RFC 3339 UTC, e.g. `2026-11-28T15:04:05Z`.
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::local::util::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// RFC 3339 to seconds since the epoch (fractions dropped, offsets applied).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| s.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

/// `display_name` → `displayName`.
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(&Uri::from_maybe_shared(format!("/?{query}")).unwrap_or_default())
        .map(|q| q.0)
        .unwrap_or_default()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding of a path segment (invalid escapes are kept as they are).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) =
                (bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `url.QueryUnescape` (`+` is a space; a bad escape is an error).
fn query_unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let h = bytes.get(i + 1).copied().and_then(hex_value);
                let l = bytes.get(i + 2).copied().and_then(hex_value);
                match (h, l) {
                    (Some(h), Some(l)) => out.push(h * 16 + l),
                    _ => {
                        let bad: String = s.chars().skip(i).take(3).collect();
                        return Err(format!("invalid URL escape {bad:?}"));
                    }
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// Percent-encoding of everything but unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (Go `base64.StdEncoding`).
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let last = index == bytes.len() / 4 - 1;
        let padding = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &b in &chunk[..4 - padding] {
            let v = BASE64.iter().position(|c| *c == b)?;
            n = (n << 6) | u32::try_from(v).ok()?;
        }
        n <<= 6 * u32::try_from(padding).ok()?;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

/// JSON as Go protojson writes `google.protobuf.Value`s: whole numbers as integers, at any depth.
fn protojson(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::Number(whole_as_int(n)),
        Value::Array(items) => Value::Array(items.iter().map(protojson).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), protojson(v))).collect()),
        other => other.clone(),
    }
}

fn whole_as_int(n: &Number) -> Number {
    if n.is_i64() || n.is_u64() {
        return n.clone();
    }
    match n.as_f64().filter(|f| f.abs() <= 9_007_199_254_740_992.0).and_then(exact_i64) {
        Some(i) => Number::from(i),
        None => n.clone(),
    }
}

/// A whole double within ±2^63 as an integer (the conversion is then exact).
fn exact_i64(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xff, 0xfe, 0x00, 0x01]] {
            let encoded = base64_encode(input);
            assert_eq!(base64_decode(&encoded).as_deref(), Some(input), "{encoded}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm8").is_none());
        assert!(base64_decode("Z=8=").is_none());
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_878_245), "2026-11-28T15:04:05Z");
        assert_eq!(parse_rfc3339("2026-11-28T15:04:05Z"), Some(1_795_878_245));
        assert_eq!(parse_rfc3339("2026-11-28T16:04:05.123+01:00"), Some(1_795_878_245));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn ids_sort_in_creation_order() {
        let mut store = Store::default();
        let ids: Vec<String> = (0..5000).map(|_| store.new_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids[0].len(), 36);
        assert_eq!(&ids[0][14..15], "7");
    }

    #[test]
    fn messages_accept_both_spellings_and_reject_unknown_fields() {
        let ok = normalize(&json!({"displayName": "a", "namespace": "n"}), EXPERIMENT, "v2beta1.Experiment");
        assert_eq!(ok.ok(), json!({"display_name": "a", "namespace": "n"}).as_object().cloned());
        let unknown = normalize(&json!({"display_name": "a", "bogus": 1}), EXPERIMENT, "v2beta1.Experiment");
        assert_eq!(unknown.err().as_deref(), Some("unknown field \"bogus\""));
        let duplicate = normalize(&json!({"display_name": "a", "displayName": "b"}), EXPERIMENT, "x");
        assert!(duplicate.is_err());
        let oneof = normalize(
            &json!({"pipeline_spec": {}, "pipeline_version_reference": {"pipeline_id": "p"}}),
            RUN,
            "v2beta1.Run",
        );
        assert!(oneof.err().is_some_and(|e| e.contains("oneof v2beta1.Run.pipeline_source is already set")));
        let typed = normalize(&json!({"display_name": 3}), EXPERIMENT, "v2beta1.Experiment");
        assert!(typed.is_err());
        let op = normalize(&json!({"predicates": [{"operation": 9, "key": "k", "stringValue": "v"}]}), FILTER, "f");
        assert_eq!(
            op.ok().and_then(|m| m["predicates"][0]["operation"].as_str().map(str::to_owned)).as_deref(),
            Some("IS_SUBSTRING")
        );
    }

    #[test]
    fn multipart_bodies_parse() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"uploadfile\"; filename=\"dir/p.yaml\"\r\nContent-Type: application/x-yaml\r\n\r\n\
a: 1\r\n--x\r\n--XyZ--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=\"XyZ\"", body).unwrap_or_default();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].name, "uploadfile");
        assert_eq!(parts[1].filename.as_deref(), Some("p.yaml"));
        assert_eq!(parts[1].data, b"a: 1\r\n--x");
        assert!(parse_multipart("application/json", body).is_err());
    }

    #[test]
    fn escapes_follow_go() {
        assert_eq!(query_unescape("a+b%2Fc").as_deref(), Ok("a b/c"));
        assert!(query_unescape("100%").is_err());
        assert_eq!(percent_decode("run%3Aterminate"), "run:terminate");
        assert_eq!(percent_encode("/apis/v2beta1/runs?a=b c"), "/apis/v2beta1/runs%3Fa%3Db%20c");
        assert_eq!(lower_camel("pipeline_version_reference"), "pipelineVersionReference");
    }

    #[test]
    fn task_order_follows_dependencies() {
        let spec = json!({"root": {"dag": {"tasks": {
            "a": {"dependentTasks": ["c"], "taskInfo": {"name": "A"}},
            "b": {},
            "c": {"dependentTasks": ["b"]},
        }}}});
        let keys: Vec<String> = task_seeds(&spec).into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(keys, ["b", "c", "a"]);
        let wrapped = json!({"pipeline_spec": spec, "platform_spec": {}});
        assert_eq!(task_seeds(&wrapped)[2].1, "A");
    }
}
