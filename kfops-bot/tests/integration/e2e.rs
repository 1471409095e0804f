//! End to end: the `kfops-bot` binary (`serve --config`) between the test
//! GitHub server (every request checked against GitHub's OpenAPI
//! description) and the KFP test server, fed with signed webhooks built from
//! GitHub's recorded deliveries, on a real git repository holding the
//! `examples/churn-model` project (compiled with the real `kfp`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use kfops_bot::{CommandState, Store};
use kfops_kubeflow::kfp::testserver::{Progression, RunState as KfpRunState, TestServer, TestServerOptions};
use kfops_scm::github::testserver::{TestComment, TestGithub, TestPr};
use kfops_scm::signature::SignatureVerifier;

const SECRET: &str = "e2e-webhook-secret";
const TOKEN: &str = "ghs_e2e-token";
const BOT_LOGIN: &str = "kfops-e2e-bot";
const OWNER: &str = "acme";
const REPO: &str = "churn-model";

/// A scratch directory removed at the end.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=kfops test", "-c", "user.email=test@kfops.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == ".kfops" || name == "__pycache__" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy");
        }
    }
}

/// A git repository with the churn example at its root; returns the commit.
fn project_repo(dir: &Path) -> String {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/churn-model");
    copy_dir(&example, dir);
    git(dir, &["init", "-q"]);
    git(dir, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "churn model"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Commit a change to `file` and return the new sha.
fn commit_change(dir: &Path, file: &str, content: &str) -> String {
    std::fs::write(dir.join(file), content).expect("write");
    git(dir, &["commit", "-qam", "change"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// How the bot authenticates to the test GitHub.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GithubLogin {
    /// A machine user's token.
    Token,
    /// A GitHub App (installation tokens).
    App,
}

const APP_ID: u64 = 4242;
const APP_SLUG: &str = "kfops-e2e";

struct World {
    scratch: Scratch,
    login: String,
    github: TestGithub,
    kfp: TestServer,
    source: PathBuf,
    head: String,
    config: PathBuf,
}

impl World {
    async fn new(name: &str, progression: Progression) -> World {
        World::with_login(name, progression, GithubLogin::Token).await
    }

    async fn with_login(name: &str, progression: Progression, auth: GithubLogin) -> World {
        let root = std::env::temp_dir().join(format!("kfops-bot-e2e-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        std::fs::create_dir_all(&root).expect("mkdir");
        let scratch = Scratch(root.clone());
        let source = root.join("source");
        let head = project_repo(&source);
        let github = TestGithub::start().await;
        let clone_url = format!("file://{}", source.display());
        github.add_repo(OWNER, REPO, &clone_url);
        let mut pr = TestPr::new(7, &head);
        pr.author = "alice".into();
        pr.head_ref = "feature/better-model".into();
        github.add_pr(OWNER, REPO, pr);
        github.set_permission(OWNER, REPO, "alice", "write");
        github.set_permission(OWNER, REPO, "bob", "read");
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kfops-scm/tests/fixtures");
        let (login, auth_yaml) = match auth {
            GithubLogin::Token => {
                github.use_token(TOKEN, BOT_LOGIN);
                (
                    BOT_LOGIN.to_owned(),
                    format!("    token: {{ file: {} }}\n    login: {BOT_LOGIN}\n", root.join("token").display()),
                )
            }
            GithubLogin::App => {
                let public = std::fs::read_to_string(fixtures.join("test-app.public-key.pem")).expect("public key");
                github.use_app(APP_ID, &public, APP_SLUG, 99, Duration::from_secs(3600));
                (
                    format!("{APP_SLUG}[bot]"),
                    format!(
                        "    app_id: {APP_ID}\n    app_slug: {APP_SLUG}\n    private_key: {{ file: {} }}\n",
                        fixtures.join("test-app.private-key.pem").display()
                    ),
                )
            }
        };
        let kfp = TestServer::start(TestServerOptions { progression, ..TestServerOptions::default() }).await;

        std::fs::write(root.join("token"), TOKEN).expect("token");
        std::fs::write(root.join("secret"), SECRET).expect("secret");
        let python = std::env::var("KFOPS_PYTHON").ok();
        let config = root.join("bot.yaml");
        let text = format!(
            "listen: 127.0.0.1:0\n\
             state_dir: {state}\n\
             repositories: [{OWNER}/{REPO}]\n\
             github:\n  api_url: {gh}\n  auth:\n{auth_yaml}  \
             webhook_secrets: [{{ file: {secret} }}]\n  pacing_ms: 0\n\
             kubeflow:\n  url: {kfp}\n  auth: {{ none: true }}\n\
             workers:\n  concurrency: 2\n  poll_interval_seconds: 0.05\n{python}",
            state = root.join("state").display(),
            gh = github.url(),
            secret = root.join("secret").display(),
            kfp = kfp.url(),
            python = python.map(|p| format!("  python: {p}\n")).unwrap_or_default(),
        );
        std::fs::write(&config, text).expect("config");
        World { scratch, login, github, kfp, source, head, config }
    }

    /// The ledger once every command is final (the final comment is edited
    /// just before the final ledger record, so the two are not simultaneous).
    async fn settled_store(&self, bot: &dyn BotHandle) -> Store {
        let store = self.store();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !store.unfinished().expect("ledger").is_empty() {
            assert!(Instant::now() < deadline, "commands stay unfinished:\n{}", bot.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store
    }

    fn store(&self) -> Store {
        Store::open(&self.scratch.0.join("state/bot.db")).expect("store")
    }

    /// The bot's status comments (and denials) on PR 7.
    fn bot_comments(&self, number: u64) -> Vec<TestComment> {
        self.github.comments(OWNER, REPO, number).into_iter().filter(|c| c.user == self.login).collect()
    }

    /// Wait until a bot comment on PR `number` satisfies `done`.
    async fn wait_for_comment(
        &self,
        bot: &dyn BotHandle,
        number: u64,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> TestComment {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(c) = self.bot_comments(number).into_iter().find(|c| done(&c.body)) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no bot comment {what} on PR {number}; comments: {:#?}\nbot log:\n{}",
                self.bot_comments(number),
                bot.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A running bot, as the tests talk to it.
pub(crate) trait BotHandle {
    /// Where it listens.
    fn addr(&self) -> std::net::SocketAddr;
    /// Its log so far (for failure messages).
    fn log(&self) -> String;
}

impl BotHandle for Bot {
    fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

/// The `kfops-bot serve` process.
struct Bot {
    child: Child,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Bot {
    fn start(config: &Path) -> Bot {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kfops-bot"))
            .args(["serve", "--config"])
            .arg(config)
            // A secret in the bot's environment that pipeline code must never see.
            .env("KFOPS_E2E_CANARY_SECRET", "canary-value")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kfops-bot starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("kfops-bot: listening on ") {
                    let _ = tx.send(addr.parse::<std::net::SocketAddr>().expect("address"));
                }
                let mut l = sink.lock().expect("log");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("kfops-bot did not start:\n{}", log.lock().expect("log"))
        });
        Bot { child, addr, log }
    }

    /// SIGKILL: no shutdown, no cleanup.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A recorded `issue_comment` delivery, moved onto PR `number` of the test repository.
fn comment_delivery(action: &str, number: u64, comment_id: u64, user: &str, body: &str) -> Vec<u8> {
    let mut p: Value = kfops_scm::github::examples::pr_comment(action, body).unwrap_or_else(|e| panic!("{e}"));
    p["repository"]["name"] = json!(REPO);
    p["repository"]["full_name"] = json!(format!("{OWNER}/{REPO}"));
    p["repository"]["owner"]["login"] = json!(OWNER);
    p["issue"]["number"] = json!(number);
    p["comment"]["id"] = json!(comment_id);
    p["comment"]["user"]["login"] = json!(user);
    p["comment"]["user"]["type"] = json!("User");
    p["sender"]["login"] = json!(user);
    serde_json::to_vec(&p).expect("json")
}

async fn deliver(bot: &dyn BotHandle, delivery: &str, body: &[u8], signature: Option<String>) -> (u16, String) {
    let mut headers = vec![
        ("X-GitHub-Event", "issue_comment".to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ];
    if let Some(s) = signature {
        headers.push(("X-Hub-Signature-256", s));
    }
    super::request(bot.addr(), "POST", "/webhooks/github", &headers, body).await
}

fn sign(body: &[u8]) -> Option<String> {
    SignatureVerifier::new([SECRET]).sign(body)
}

/// A human writes `text` on PR `number`, and GitHub delivers it.
async fn command(world: &World, bot: &dyn BotHandle, delivery: &str, number: u64, user: &str, text: &str) -> u64 {
    let id = world.github.add_comment(OWNER, REPO, number, user, text);
    let body = comment_delivery("created", number, id, user, text);
    let (status, reply) = deliver(bot, delivery, &body, sign(&body)).await;
    assert_eq!(status, 202, "{reply}");
    id
}

fn is_final(body: &str) -> bool {
    body.starts_with("<!-- kfops:command=") && (body.contains("✅") || body.contains("❌"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_run_goes_through_every_stage_and_reports_into_the_pr() {
    let world = World::new("build-run", Progression::OnGet).await;
    let bot = Bot::start(&world.config);
    let comment = command(&world, &bot, "d-build-run", 7, "alice", "Looks good.\n/build_run").await;

    let done = world.wait_for_comment(&bot, 7, "finished", is_final).await;
    assert!(done.body.contains("✅"), "{}", done.body);
    assert!(done.body.contains("**SUCCEEDED**"), "{}", done.body);
    assert!(done.body.contains(&format!("at `{}`", &world.head[..12])), "{}", done.body);
    assert!(done.body.contains("[open in Kubeflow]("), "{}", done.body);
    assert!(done.body.contains("| <code>learning\\_rate</code> | <code>0.5</code> |"), "{}", done.body);
    assert!(done.edits >= 4, "edited in place through the stages: {done:?}");
    assert_eq!(world.bot_comments(7).len(), 1, "one status comment per command");
    assert_eq!(world.github.reactions(comment), ["eyes"]);

    // The ledger has every step, the version and the run.
    let store = world.settled_store(&bot).await;
    let last = store.last_run(&kfops_core::scm::PrRef {
        repo: kfops_core::scm::RepoRef { owner: OWNER.into(), name: REPO.into() },
        number: 7,
    });
    let last = last.expect("ledger").expect("a run of PR 7");
    assert_eq!(last.state, CommandState::Succeeded);
    assert_eq!(last.sha.as_deref(), Some(world.head.as_str()));
    assert!(last.pipeline_version.is_some() && last.run_id.is_some(), "{last:?}");
    let work = world.scratch.0.join("state/work");
    assert_eq!(std::fs::read_dir(&work).expect("workdir root").count(), 0, "per-command workdirs are removed");
    let stages: Vec<String> = store.steps(last.id).expect("steps").into_iter().map(|s| s.stage).collect();
    for stage in ["queued", "pinned", "compiling", "uploading", "running", "finished"] {
        assert!(stages.iter().any(|s| s == stage), "{stage} missing from {stages:?}");
    }

    // Kubeflow got one run with the project's parameters, in the project's experiment.
    let runs: Vec<_> = world
        .kfp
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/apis/v2beta1/runs"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = runs[0].body_json().expect("json");
    assert_eq!(run["runtime_config"]["parameters"]["epochs"], json!(200));
    assert!(run["display_name"].as_str().expect("name").contains("PR #7"), "{run}");

    assert_eq!(world.github.violations(), Vec::<String>::new());
    drop(bot);
}

fn pr7() -> kfops_core::scm::PrRef {
    kfops_core::scm::PrRef { repo: kfops_core::scm::RepoRef { owner: OWNER.into(), name: REPO.into() }, number: 7 }
}

fn runs_created(kfp: &TestServer) -> usize {
    kfp.requests().iter().filter(|r| r.method == "POST" && r.path.starts_with("/apis/v2beta1/runs")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_killed_while_watching_a_run_finishes_it_after_restart_with_one_final_comment() {
    let world = World::new("sigkill", Progression::Manual).await;
    let bot = Bot::start(&world.config);
    command(&world, &bot, "d-kill", 7, "alice", "/build_run").await;
    world
        .wait_for_comment(&bot, 7, "with the run link", |b| b.contains("**running**") && b.contains("open in Kubeflow"))
        .await;
    let store = world.store();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        if let Some(id) = store.unfinished().expect("ledger").first().and_then(|r| r.run_id.clone()) {
            break id;
        }
        assert!(Instant::now() < deadline, "no run recorded:\n{}", bot.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    bot.kill();
    assert!(world.kfp.set_run_state(&run_id, KfpRunState::Succeeded), "run {run_id} exists");
    let bot = Bot::start(&world.config);
    let done = world.wait_for_comment(&bot, 7, "finished", is_final).await;
    assert!(done.body.contains("**SUCCEEDED**"), "{}", done.body);
    assert!(bot.log().contains("resuming 1 unfinished command(s)"), "{}", bot.log());
    let store = world.settled_store(&bot).await;
    let last = store.last_run(&pr7()).expect("ledger").expect("run");
    assert_eq!(last.run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(last.state, CommandState::Succeeded);
    // Exactly once: one status comment, one run; the ledger is final so nothing more will come.
    assert_eq!(world.bot_comments(7).len(), 1, "{:#?}", world.bot_comments(7));
    assert_eq!(runs_created(&world.kfp), 1);
    assert!(store.unfinished().expect("ledger").is_empty());
    assert_eq!(world.github.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_redelivered_edited_fork_unauthorized_and_invalid_comments_are_handled() {
    let world = World::new("refusals", Progression::OnGet).await;
    let mut fork = TestPr::new(8, &world.head);
    fork.author = "mallory".into();
    fork.fork = true;
    world.github.add_pr(OWNER, REPO, fork);
    world.github.set_permission(OWNER, REPO, "mallory", "write");
    world.github.add_pr(OWNER, REPO, TestPr::new(9, &world.head));
    world.github.add_pr(OWNER, REPO, TestPr::new(10, &world.head));
    let bot = Bot::start(&world.config);
    let store = world.store();

    // Unsigned and forged: 401, nothing stored.
    let body = comment_delivery("created", 7, 1, "alice", "/build");
    assert_eq!(deliver(&bot, "d-unsigned", &body, None).await.0, 401);
    let forged = SignatureVerifier::new(["not-the-secret"]).sign(&body);
    assert_eq!(deliver(&bot, "d-forged", &body, forged).await.0, 401);
    assert!(!store.seen("d-unsigned").expect("seen") && !store.seen("d-forged").expect("seen"));

    // Edited comments and the bot's own comments are acknowledged and ignored.
    let edited = comment_delivery("edited", 7, 2, "alice", "/build");
    let (status, reply) = deliver(&bot, "d-edited", &edited, sign(&edited)).await;
    assert_eq!(status, 200, "{reply}");
    let own = comment_delivery("created", 7, 3, BOT_LOGIN, "/build");
    let (status, reply) = deliver(&bot, "d-own", &own, sign(&own)).await;
    assert_eq!(status, 200, "{reply}");
    assert!(!store.seen("d-edited").expect("seen") && !store.seen("d-own").expect("seen"));

    // A fork PR: polite refusal, nothing built.
    command(&world, &bot, "d-fork", 8, "mallory", "/build").await;
    let refusal = world.wait_for_comment(&bot, 8, "refusing the fork", |b| b.contains("forks")).await;
    assert!(refusal.body.contains("not run for pull requests from forks"), "{}", refusal.body);

    // Read permission is not enough for /build.
    let bobs = command(&world, &bot, "d-bob", 9, "bob", "/build").await;
    let denial = world.wait_for_comment(&bot, 9, "denying bob", |b| b.contains("needs")).await;
    assert!(
        denial.body.contains("`/build` needs `write` permission on this repository (you have `read`)"),
        "{}",
        denial.body
    );
    assert_eq!(world.github.reactions(bobs), ["-1"]);

    // A malformed command is explained.
    let bad = command(&world, &bot, "d-bad", 10, "alice", "/deploy --run-id $(id)").await;
    let confused = world.wait_for_comment(&bot, 10, "explaining", |b| b.contains("could not understand")).await;
    assert!(confused.body.contains("invalid value"), "{}", confused.body);
    assert_eq!(world.github.reactions(bad), ["confused"]);

    // A redelivery of an accepted command is acknowledged and dropped.
    let id = world.github.add_comment(OWNER, REPO, 7, "alice", "/build");
    let body = comment_delivery("created", 7, id, "alice", "/build");
    assert_eq!(deliver(&bot, "d-build", &body, sign(&body)).await.0, 202);
    let (status, reply) = deliver(&bot, "d-build", &body, sign(&body)).await;
    assert_eq!((status, reply.contains("duplicate")), (200, true), "{reply}");
    let done = world.wait_for_comment(&bot, 7, "finished", is_final).await;
    assert!(done.body.contains("✅"), "{}", done.body);
    assert_eq!(world.bot_comments(7).len(), 1);
    assert_eq!(runs_created(&world.kfp), 0, "/build does not run");
    assert!(world.bot_comments(8).len() == 1 && world.bot_comments(9).len() == 1);

    // A command on a pull request GitHub does not know fails once (recorded), instead of
    // being retried forever and blocking the queue.
    let ghost = comment_delivery("created", 99, 424_242, "alice", "/build");
    assert_eq!(deliver(&bot, "d-ghost", &ghost, sign(&ghost)).await.0, 202);
    let store = world.settled_store(&bot).await;
    let ghost = store.command(4).expect("the ghost command");
    assert_eq!((ghost.event.pr.number, ghost.state), (99, CommandState::Failed));
    let last = store.steps(4).expect("steps").pop().expect("a step");
    assert!(last.detail.starts_with("reading the PR: "), "{last:?}");

    // Denials are counted (the counters move right after the ledger's final record).
    let wanted = [
        "kfops_bot_commands_total{kind=\"build\",outcome=\"denied\"} 2",
        "kfops_bot_commands_total{kind=\"build\",outcome=\"succeeded\"} 1",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (_, metrics) = super::request(bot.addr, "GET", "/metrics", &[], b"").await;
        if wanted.iter().all(|w| metrics.contains(w)) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(metrics.contains("kfops_bot_webhooks_total{result=\"unauthorized\"} 2"), "{metrics}");
    assert_eq!(world.github.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_build_builds_first_and_errors_land_in_the_status_comment() {
    let world = World::new("run-and-errors", Progression::OnGet).await;
    let broken = commit_change(
        &world.source,
        "pipeline.py",
        "import os\n\
         seen = []\n\
         for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n\
         \x20   try:\n\
         \x20       if b'canary-value' in open('/proc/%s/environ' % pid, 'rb').read(): seen.append(pid)\n\
         \x20   except OSError: pass\n\
         state = os.path.exists('../../bot.db')\n\
         raise RuntimeError('broken on purpose; environment: %s; canary in: %s; state visible: %s'\n\
         \x20   % (' '.join(sorted(os.environ)), seen, state))\n",
    );
    world.github.add_pr(OWNER, REPO, TestPr::new(11, &broken));
    let bot = Bot::start(&world.config);

    command(&world, &bot, "d-run", 7, "alice", "/run").await;
    let done = world.wait_for_comment(&bot, 7, "finished", is_final).await;
    assert!(done.body.contains("**SUCCEEDED**"), "{}", done.body);
    assert!(done.body.contains("no &#96;/build&#96; of this commit yet: built it first"), "{}", done.body);

    command(&world, &bot, "d-broken", 11, "alice", "/build_run").await;
    let failed = world.wait_for_comment(&bot, 11, "failed", is_final).await;
    assert!(failed.body.contains("❌"), "{}", failed.body);
    assert!(failed.body.contains("Error: the pipeline does not compile"), "{}", failed.body);
    assert!(failed.body.contains("broken on purpose"), "{}", failed.body);
    // The compiler ran in a scrubbed environment: PATH yes, the bot's secrets no.
    assert!(failed.body.contains(" PATH"), "{}", failed.body);
    assert!(!failed.body.contains("KFOPS_E2E_CANARY_SECRET"), "{}", failed.body);
    // … and in the sandbox: no process of the bot to read secrets from, no state directory.
    assert!(failed.body.contains("canary in: []; state visible: False"), "{}", failed.body);
    assert_eq!(runs_created(&world.kfp), 1, "the broken commit never reached Kubeflow");
    let failed_record = world.settled_store(&bot).await.command(2).expect("command 2");
    assert_eq!(failed_record.state, CommandState::Failed);
    assert_eq!(world.github.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_one_pr_run_in_order_while_other_prs_proceed_as_a_github_app() {
    let world = World::with_login("ordering", Progression::Manual, GithubLogin::App).await;
    world.github.add_pr(OWNER, REPO, TestPr::new(9, &world.head));
    let bot = Bot::start(&world.config);
    command(&world, &bot, "d-first", 7, "alice", "/build_run").await;
    world.wait_for_comment(&bot, 7, "running", |b| b.contains("**running**") && b.contains("open in Kubeflow")).await;
    command(&world, &bot, "d-second", 7, "alice", "/build").await;
    command(&world, &bot, "d-other", 9, "alice", "/build").await;

    // Another PR is not held up by PR 7's run …
    let other = world.wait_for_comment(&bot, 9, "finished", is_final).await;
    assert!(other.body.contains("✅"), "{}", other.body);
    // … but PR 7's second command waits for its first.
    let store = world.store();
    let first = store.command(1).expect("first");
    let second = store.command(2).expect("second");
    assert_eq!((first.state, second.state), (CommandState::InProgress, CommandState::Queued));
    assert_eq!(world.bot_comments(7).len(), 1, "no status comment for the waiting command yet");

    let run_id = first.run_id.expect("the first command's run is recorded");
    assert!(world.kfp.set_run_state(&run_id, KfpRunState::Succeeded));
    let store = {
        world.wait_for_comment(&bot, 7, "second finished", |b| is_final(b) && b.contains("`/build`**")).await;
        world.settled_store(&bot).await
    };
    let finished_first = store.steps(1).expect("steps").into_iter().find(|s| s.stage == "finished").expect("finished");
    let pinned_second = store.steps(2).expect("steps").into_iter().find(|s| s.stage == "pinned").expect("pinned");
    assert!(pinned_second.at_ms >= finished_first.at_ms, "{finished_first:?} then {pinned_second:?}");
    // Comments come from the App's bot account, authenticated with installation tokens.
    assert_eq!(world.bot_comments(7).len(), 2);
    assert!(world.github.requests().iter().any(|r| r.path.starts_with("/app/installations/99/access_tokens")));
    assert_eq!(world.github.violations(), Vec::<String>::new());
}

mod deploy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_run_gives_its_worker_slot_back() {
    let world = World::new("slots", Progression::Manual).await;
    let config = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(&world.config, config.replace("concurrency: 2", "concurrency: 1")).expect("config");
    world.github.add_pr(OWNER, REPO, TestPr::new(9, &world.head));
    let bot = Bot::start(&world.config);
    command(&world, &bot, "d-long", 7, "alice", "/build_run").await;
    world.wait_for_comment(&bot, 7, "running", |b| b.contains("**running**") && b.contains("open in Kubeflow")).await;
    // With a single worker slot, another PR's build still gets through while the run is watched.
    command(&world, &bot, "d-other", 9, "alice", "/build").await;
    let other = world.wait_for_comment(&bot, 9, "finished", is_final).await;
    assert!(other.body.contains("✅"), "{}", other.body);
    let store = world.store();
    assert_eq!(store.command(1).expect("first").state, CommandState::InProgress, "still watching");
    let run_id = store.command(1).expect("first").run_id.expect("run");
    assert!(world.kfp.set_run_state(&run_id, KfpRunState::Succeeded));
    let done = world.wait_for_comment(&bot, 7, "finished", is_final).await;
    assert!(done.body.contains("**SUCCEEDED**"), "{}", done.body);
}
