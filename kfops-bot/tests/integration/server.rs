//! The webhook server on loopback, fed with real GitHub deliveries
//! (`@octokit/webhooks-examples`, installed by `cargo xtask test`) signed here.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;

use kfops_bot::Store;
use kfops_bot::server::{AppState, DEFAULT_BODY_LIMIT, router, serve};
use kfops_scm::github::{GithubWebhooks, RepoAllowlist};
use kfops_scm::signature::SignatureVerifier;

const SECRET: &str = "bot-test-secret";

fn recorded_comment(action: &str) -> Value {
    let all = kfops_scm::github::examples::recorded("issue_comment").unwrap_or_else(|e| panic!("{e}"));
    all.into_iter().find(|p| p["action"] == action).expect("example")
}

/// A recorded `created` comment, moved onto a pull request, saying `body`.
fn pr_comment(body: &str) -> Vec<u8> {
    let p = kfops_scm::github::examples::pr_comment("created", body).unwrap_or_else(|e| panic!("{e}"));
    serde_json::to_vec(&p).expect("json")
}

struct Bot {
    addr: std::net::SocketAddr,
    store: Arc<Store>,
    work: Arc<Notify>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: PathBuf,
}

async fn start(name: &str) -> Bot {
    let dir = std::env::temp_dir().join(format!("kfops-bot-server-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("mkdir");
    let store = Arc::new(Store::open(&dir.join("state.db")).expect("store"));
    let verifier = GithubWebhooks::new(
        SignatureVerifier::new([SECRET]),
        RepoAllowlist::new(["Codertocat/Hello-World"]).expect("allowlist"),
    );
    let work = Arc::new(Notify::new());
    let state = AppState::new(Arc::new(verifier), Arc::clone(&store), Arc::clone(&work));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router(state, DEFAULT_BODY_LIMIT), async {
        stopped.await.ok();
    }));
    Bot { addr, store, work, stop, server, dir }
}

async fn deliver(bot: &Bot, delivery: &str, event: &str, body: &[u8], secret: Option<&str>) -> (u16, String) {
    let mut headers = vec![
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ];
    if let Some(secret) = secret {
        headers.push(("X-Hub-Signature-256", SignatureVerifier::new([secret]).sign(body).expect("sign")));
    }
    super::request(bot.addr, "POST", "/webhooks/github", &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_stored_before_the_ack_and_redeliveries_are_dropped() {
    let bot = start("accept").await;
    let woken = Arc::clone(&bot.work);
    let notified = tokio::spawn(async move { woken.notified().await });

    let (status, body) = deliver(&bot, "d-1", "issue_comment", &pr_comment("/build_run"), Some(SECRET)).await;
    assert_eq!(status, 202, "{body}");
    // Durable at the time of the 2xx, and a worker was woken.
    let unfinished = bot.store.unfinished().expect("unfinished");
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].event.delivery_id, "d-1");
    assert_eq!(unfinished[0].event.command, kfops_core::Command::BuildRun);
    tokio::time::timeout(std::time::Duration::from_secs(5), notified).await.expect("worker woken").expect("join");

    let (status, body) = deliver(&bot, "d-1", "issue_comment", &pr_comment("/build_run"), Some(SECRET)).await;
    assert_eq!((status, body.contains("duplicate")), (200, true), "{body}");
    assert_eq!(bot.store.unfinished().expect("unfinished").len(), 1, "the redelivery stored nothing");

    // An invalid command is stored too, so its author can be told why.
    let (status, body) = deliver(&bot, "d-2", "issue_comment", &pr_comment("/deploy --froce"), Some(SECRET)).await;
    assert_eq!(status, 202, "{body}");
    let rejections = bot.store.unreported_rejections().expect("rejections");
    assert_eq!(rejections.len(), 1);
    assert!(rejections[0].3.contains("--force"), "{}", rejections[0].3);
    shutdown(bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_oversized_and_uninteresting_deliveries_store_nothing() {
    let bot = start("refuse").await;
    let body = pr_comment("/build");
    assert_eq!(deliver(&bot, "u-1", "issue_comment", &body, None).await.0, 401);
    let (status, text) = deliver(&bot, "u-2", "issue_comment", &body, Some("forged")).await;
    assert_eq!(status, 401);
    assert!(!text.contains("mismatch") && text.contains("signature verification failed"), "{text}");

    let edited = serde_json::to_vec(&recorded_comment("edited")).expect("json");
    let (status, text) = deliver(&bot, "u-3", "issue_comment", &edited, Some(SECRET)).await;
    assert_eq!((status, text.contains("only new comments")), (200, true), "{text}");
    let (status, text) = deliver(&bot, "u-4", "issue_comment", &pr_comment("LGTM"), Some(SECRET)).await;
    assert_eq!((status, text.contains("no command")), (200, true), "{text}");
    let (status, text) = deliver(&bot, "u-5", "issue_comment", b"{not json", Some(SECRET)).await;
    assert_eq!(status, 400, "{text}");

    let huge = vec![b' '; DEFAULT_BODY_LIMIT + 1];
    assert_eq!(deliver(&bot, "u-6", "issue_comment", &huge, Some(SECRET)).await.0, 413);

    assert!(bot.store.unfinished().expect("unfinished").is_empty());
    assert!(bot.store.unreported_rejections().expect("rejections").is_empty());
    for id in ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6"] {
        assert!(!bot.store.seen(id).expect("seen"), "{id}");
    }

    let (status, metrics) = super::request(bot.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    for line in [
        "kfops_bot_webhooks_total{result=\"unauthorized\"} 2",
        "kfops_bot_webhooks_total{result=\"ignored\"} 2",
        "kfops_bot_webhooks_total{result=\"bad_request\"} 1",
        "kfops_bot_webhooks_total{result=\"accepted\"} 0",
        "kfops_bot_webhook_response_seconds_count 5",
        "kfops_bot_queue_depth 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in\n{metrics}");
    }
    shutdown(bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_and_shutdown_is_graceful() {
    let bot = start("health").await;
    assert_eq!(super::request(bot.addr, "GET", "/healthz", &[], b"").await, (200, "ok\n".to_owned()));
    assert_eq!(super::request(bot.addr, "GET", "/readyz", &[], b"").await, (200, "ready\n".to_owned()));
    assert_eq!(super::request(bot.addr, "GET", "/nope", &[], b"").await.0, 404);
    let addr = bot.addr;
    shutdown(bot).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
}

async fn shutdown(bot: Bot) {
    bot.stop.send(()).ok();
    tokio::time::timeout(std::time::Duration::from_secs(10), bot.server)
        .await
        .expect("shut down in time")
        .expect("join")
        .expect("serve");
    std::fs::remove_dir_all(&bot.dir).ok();
}
