//! The webhook front door: `POST /webhooks/github`, health, readiness and metrics.
//!
//! A delivery is answered only after its fate is durable: the signature is
//! verified before anything is parsed (401 and nothing stored otherwise),
//! then a command (or a command that failed to parse, to be reported back)
//! is committed to the [`Store`] under its delivery id, and only then does
//! the 2xx go out. Work happens in workers that read the store; the handler
//! never waits for GitHub or Kubeflow.
//!
//! | outcome                                  | status | stored |
//! |------------------------------------------|--------|--------|
//! | missing / wrong signature                | 401    | no     |
//! | signed but malformed, no delivery id     | 400    | no     |
//! | body over the limit                      | 413    | no     |
//! | not for us (other events, edits, …)      | 200    | no     |
//! | new command or invalid command           | 202    | yes    |
//! | redelivery of an accepted delivery       | 200    | no     |
//! | the store failed                         | 503    | no (GitHub may redeliver) |

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;

use kfops_core::scm::WebhookOutcome;
use kfops_core::{ErrorKind, WebhookVerifier};

use crate::store::{Accepted, Store};

/// Default largest accepted webhook body. GitHub caps deliveries at 25 MB,
/// but an `issue_comment` delivery is a few tens of kilobytes.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The webhook results counted in `/metrics` (label `result`).
const RESULTS: [&str; 7] =
    ["accepted", "rejected_command", "duplicate", "ignored", "unauthorized", "bad_request", "store_error"];

/// Upper bounds (seconds) of the response-time histogram.
const BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    results: [AtomicU64; RESULTS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_us: AtomicU64,
    /// `(kind, outcome)` → (count, total seconds).
    commands: std::sync::Mutex<std::collections::BTreeMap<(String, String), (u64, f64)>>,
}

impl Metrics {
    fn count(&self, result: &str, started: Instant) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.results[i].fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = started.elapsed();
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Count a finished command of `kind` (`build`, `run`, …) with `outcome`
    /// (`succeeded`, `failed`, `denied`) that took `took` in this process.
    pub fn command_finished(&self, kind: &str, outcome: &str, took: std::time::Duration) {
        let mut map = self.commands.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.entry((kind.to_owned(), outcome.to_owned())).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += took.as_secs_f64();
    }

    /// How many commands of `kind` ended with `outcome`.
    pub fn commands(&self, kind: &str, outcome: &str) -> u64 {
        let map = self.commands.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(kind.to_owned(), outcome.to_owned())).map_or(0, |e| e.0)
    }

    /// How many webhooks ended with `result` (one of the `result` labels).
    pub fn webhooks(&self, result: &str) -> u64 {
        RESULTS.iter().position(|r| *r == result).map_or(0, |i| self.results[i].load(Ordering::Relaxed))
    }

    fn render(&self, queue_depth: Option<u64>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP kfops_bot_webhooks_total Webhook deliveries by result.\n# TYPE kfops_bot_webhooks_total counter\n",
        );
        for (i, r) in RESULTS.iter().enumerate() {
            let _ =
                writeln!(out, "kfops_bot_webhooks_total{{result=\"{r}\"}} {}", self.results[i].load(Ordering::Relaxed));
        }
        out.push_str(
            "# HELP kfops_bot_webhook_response_seconds Time from request to response.\n\
             # TYPE kfops_bot_webhook_response_seconds histogram\n",
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "kfops_bot_webhook_response_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "kfops_bot_webhook_response_seconds_bucket{{le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "kfops_bot_webhook_response_seconds_sum {sum}");
        let _ = writeln!(out, "kfops_bot_webhook_response_seconds_count {count}");
        let commands = self.commands.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        out.push_str(
            "# HELP kfops_bot_commands_total Commands finished, by kind and outcome.\n\
             # TYPE kfops_bot_commands_total counter\n",
        );
        for ((kind, outcome), (n, _)) in &commands {
            let _ = writeln!(out, "kfops_bot_commands_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}");
        }
        out.push_str(
            "# HELP kfops_bot_command_duration_seconds Time spent on commands, by kind and outcome.\n\
             # TYPE kfops_bot_command_duration_seconds summary\n",
        );
        for ((kind, outcome), (n, secs)) in &commands {
            let _ =
                writeln!(out, "kfops_bot_command_duration_seconds_sum{{kind=\"{kind}\",outcome=\"{outcome}\"}} {secs}");
            let _ =
                writeln!(out, "kfops_bot_command_duration_seconds_count{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}");
        }
        if let Some(depth) = queue_depth {
            out.push_str(
                "# HELP kfops_bot_queue_depth Commands queued or in progress.\n# TYPE kfops_bot_queue_depth gauge\n",
            );
            let _ = writeln!(out, "kfops_bot_queue_depth {depth}");
        }
        out
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    verifier: Arc<dyn WebhookVerifier>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    work: Arc<Notify>,
}

impl AppState {
    /// Handlers over `verifier` and `store`. `work` is notified after every
    /// newly stored command or rejection, so workers wake up without polling.
    pub fn new(verifier: Arc<dyn WebhookVerifier>, store: Arc<Store>, work: Arc<Notify>) -> Self {
        AppState { verifier, store, metrics: Arc::new(Metrics::default()), work }
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }
}

/// The routes, with a body limit of `body_limit` bytes.
pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/webhooks/github", post(webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` resolves, then finish the
/// requests in flight (graceful shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

fn reply(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], format!("{}\n", serde_json::json!({ "message": message })))
        .into_response()
}

async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let outcome = match state.verifier.verify_and_parse(&lookup, &body) {
        Ok(outcome) => outcome,
        Err(e) if e.kind() == ErrorKind::Unauthenticated => {
            state.metrics.count("unauthorized", started);
            // Do not tell the sender which check failed.
            return reply(StatusCode::UNAUTHORIZED, "signature verification failed");
        }
        Err(e) => {
            state.metrics.count("bad_request", started);
            return reply(StatusCode::BAD_REQUEST, e.message());
        }
    };
    let store = Arc::clone(&state.store);
    let (label, stored) = match outcome {
        WebhookOutcome::Ignored { reason, .. } => {
            state.metrics.count("ignored", started);
            return reply(StatusCode::OK, &format!("ignored: {reason}"));
        }
        WebhookOutcome::Command(event) => ("accepted", tokio::task::spawn_blocking(move || store.accept(&event)).await),
        WebhookOutcome::Invalid { delivery_id, comment, author, error } => (
            "rejected_command",
            tokio::task::spawn_blocking(move || {
                store.accept_rejection(&delivery_id, &comment, &author, &error.to_string())
            })
            .await,
        ),
    };
    match stored {
        Ok(Ok(Accepted::New(id))) => {
            state.work.notify_one();
            state.metrics.count(label, started);
            reply(StatusCode::ACCEPTED, &format!("{label}: ledger entry {id}"))
        }
        Ok(Ok(Accepted::Duplicate)) => {
            state.metrics.count("duplicate", started);
            reply(StatusCode::OK, "duplicate delivery: already accepted")
        }
        Ok(Err(e)) => {
            state.metrics.count("store_error", started);
            reply(StatusCode::SERVICE_UNAVAILABLE, &format!("not stored, retry later: {e}"))
        }
        Err(join) => {
            state.metrics.count("store_error", started);
            reply(StatusCode::SERVICE_UNAVAILABLE, &format!("not stored, retry later: {join}"))
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || store.unfinished_count()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("state store unavailable: {e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("state store unavailable: {e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let store = Arc::clone(&state.store);
    let depth = tokio::task::spawn_blocking(move || store.unfinished_count()).await.ok().and_then(Result::ok);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(depth)).into_response()
}
