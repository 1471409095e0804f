//! `/deploy` and `/staging_deploy` end to end: the bot in process (so the
//! deploy target can be a scripted double — the KServe rollout itself is
//! tested against a mocked Kubernetes API in `kfops-deploy`), the test GitHub
//! server checking every request against GitHub's OpenAPI description, the
//! KFP test server, and a real git repository with the churn example.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use kfops_bot::config::BotConfig;
use kfops_bot::deploy::DeployTargets;
use kfops_core::deploy::{DeployOutcome, DeployRequest};
use kfops_core::progress::{Progress, ProgressEvent};
use kfops_core::{DeployTarget, Error, ErrorKind};
use kfops_deploy::kserve::KserveSettings;

use super::*;

/// What the next deploy does.
enum Plan {
    /// Roll out and succeed.
    Succeed,
    /// Wait for the notify, then succeed (to hold the environment busy).
    Hold(Arc<Notify>),
    /// Fail as a target does after rolling back.
    Fail(String),
}

/// Records deploys and plays them by plan.
#[derive(Default)]
struct Deployers {
    plans: Mutex<VecDeque<Plan>>,
    calls: Mutex<Vec<(KserveSettings, DeployRequest)>>,
}

impl Deployers {
    fn plan(&self, plan: Plan) {
        self.plans.lock().expect("plans").push_back(plan);
    }

    fn calls(&self) -> Vec<(KserveSettings, DeployRequest)> {
        self.calls.lock().expect("calls").clone()
    }
}

struct Target {
    parent: Arc<Deployers>,
    settings: KserveSettings,
}

/// The bot's view of [`Deployers`].
struct Targets(Arc<Deployers>);

#[async_trait]
impl DeployTargets for Targets {
    async fn target(&self, settings: KserveSettings) -> Result<Arc<dyn DeployTarget>, Error> {
        Ok(Arc::new(Target { parent: Arc::clone(&self.0), settings }))
    }
}

#[async_trait]
impl DeployTarget for Target {
    async fn deploy(&self, request: DeployRequest, progress: &dyn Progress) -> Result<DeployOutcome, Error> {
        let n = {
            let mut calls = self.parent.calls.lock().expect("calls");
            calls.push((self.settings.clone(), request.clone()));
            calls.len()
        };
        let plan = self.parent.plans.lock().expect("plans").pop_front().unwrap_or(Plan::Succeed);
        progress.event(ProgressEvent::Stage("canary at 0 %: waiting for the new revision".into()));
        match plan {
            Plan::Succeed => {}
            Plan::Hold(release) => release.notified().await,
            Plan::Fail(why) => return Err(Error::new(ErrorKind::Other, why)),
        }
        Ok(DeployOutcome {
            service: self.settings.service_name.clone(),
            namespace: self.settings.namespace.clone(),
            created: n == 1,
            revision: Some(format!("{}-predictor-0000{n}", self.settings.service_name)),
            storage_uri: self.settings.storage_uri.clone(),
            url: Some(format!("http://{}.{}.example.com", self.settings.service_name, self.settings.namespace)),
            previous_revision: (n > 1).then(|| format!("{}-predictor-0000{}", self.settings.service_name, n - 1)),
            checks: vec!["protocol v1, 5 requests answered 200".into(), "latency p50 3.0 ms, max 4.1 ms".into()],
        })
    }
}

/// The bot running inside the test process.
struct InProcess {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), kfops_bot::BotError>>>,
}

impl BotHandle for InProcess {
    fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    fn log(&self) -> String {
        "(the bot runs in the test process: its log is on the test's stderr)".into()
    }
}

impl InProcess {
    async fn start(config: &Path, deployers: Arc<Deployers>) -> InProcess {
        let config = BotConfig::load(config).unwrap_or_else(|e| panic!("{e}"));
        let scm = kfops_bot::app::github_provider(&config).unwrap_or_else(|e| panic!("{e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let targets: Arc<dyn DeployTargets> = Arc::new(Targets(deployers));
        let task = tokio::spawn(kfops_bot::app::run(
            config,
            scm,
            Some(targets),
            async {
                stopped.await.ok();
            },
            move |addr| {
                let _ = tx.send(addr);
            },
        ));
        let addr = tokio::time::timeout(Duration::from_secs(60), rx).await.expect("bot starts").expect("address");
        InProcess { addr, stop: Some(stop), task: Some(task) }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// A world whose project can be deployed (an sklearn model format) and whose bot deploys.
async fn deploy_world(name: &str) -> World {
    let world = World::new(name, Progression::OnGet).await;
    let config = std::fs::read_to_string(world.source.join("kfops.yaml")).expect("kfops.yaml");
    let head = commit_change(
        &world.source,
        "kfops.yaml",
        &config.replace("deployment:\n", "deployment:\n  model_format: sklearn\n  check_requests: 5\n"),
    );
    world.github.set_head(OWNER, REPO, 7, &head);
    let mut bot_config = std::fs::read_to_string(&world.config).expect("bot config");
    bot_config.push_str(
        "deploy:\n  production: { namespaces: [models] }\n  staging: { namespaces: [models-staging] }\n  \
         storage_uri_prefixes: [\"s3://trained-models/\"]\n  poll_interval_seconds: 0.05\n",
    );
    std::fs::write(&world.config, bot_config).expect("bot config");
    world.github.set_permission(OWNER, REPO, "alice", "maintain");
    world
}

/// `/build_run` on PR `number` and wait until it succeeded; the run id.
async fn trained(world: &World, bot: &dyn BotHandle, number: u64, delivery: &str) -> String {
    command(world, bot, delivery, number, "alice", "/build_run").await;
    let done =
        world.wait_for_comment(bot, number, "run finished", |b| is_final(b) && b.contains("`/build_run`**")).await;
    assert!(done.body.contains("**SUCCEEDED**"), "{}", done.body);
    let store = world.settled_store(bot).await;
    let pr =
        kfops_core::scm::PrRef { repo: kfops_core::scm::RepoRef { owner: OWNER.into(), name: REPO.into() }, number };
    store.last_run(&pr).expect("ledger").and_then(|r| r.run_id).expect("a run")
}

fn deploy_final(body: &str) -> bool {
    is_final(body) && (body.contains("`/deploy") || body.contains("`/staging_deploy"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_labels_merges_and_closes_and_staging_does_not_merge() {
    let world = deploy_world("deploy").await;
    let mut old = TestPr::new(8, &world.head);
    old.labels = vec!["Deployed-to-production".into(), "Deployed-to-staging".into()];
    world.github.add_pr(OWNER, REPO, old);
    let deployers = Arc::new(Deployers::default());
    let bot = InProcess::start(&world.config, Arc::clone(&deployers)).await;
    let run_id = trained(&world, &bot, 7, "d-train").await;

    command(&world, &bot, "d-staging", 7, "alice", "/staging_deploy").await;
    let staged = world.wait_for_comment(&bot, 7, "staged", |b| deploy_final(b) && b.contains("staging")).await;
    assert!(staged.body.contains("✅"), "{}", staged.body);
    assert!(staged.body.contains("churn-model in namespace models-staging"), "{}", staged.body);
    assert_eq!(world.github.labels(OWNER, REPO, 7), ["Deployed-to-staging"]);
    assert_eq!(world.github.labels(OWNER, REPO, 8), ["Deployed-to-production"], "moved, not copied");
    assert!(!world.github.pr(OWNER, REPO, 7).merged, "staging never merges");

    command(&world, &bot, "d-prod", 7, "alice", "/deploy").await;
    let done = world.wait_for_comment(&bot, 7, "deployed", |b| deploy_final(b) && b.contains("`/deploy`**")).await;
    assert!(done.body.contains("✅"), "{}", done.body);
    for fact in [
        format!("s3://trained-models/{run_id}/"),
        "churn-model in namespace models".to_owned(),
        "churn-model-predictor-00002 (was churn-model-predictor-00001)".to_owned(),
        "protocol v1, 5 requests answered 200".to_owned(),
    ] {
        assert!(done.body.contains(&fact), "{fact} missing from:\n{}", done.body);
    }
    let pr = world.github.pr(OWNER, REPO, 7);
    assert!(pr.merged && pr.state == "closed", "{pr:?}");
    assert_eq!(pr.head_sha, git(&world.source, &["rev-parse", "HEAD"]), "merged at the deployed head");
    let mut labels = world.github.labels(OWNER, REPO, 7);
    labels.sort();
    assert_eq!(labels, ["Deployed-to-production", "Deployed-to-staging"]);
    assert!(world.github.labels(OWNER, REPO, 8).is_empty());

    // What the target was asked to do, from the repository's kfops.yaml within the bot's limits.
    let calls = deployers.calls();
    assert_eq!(calls.len(), 2);
    let (settings, request) = &calls[1];
    assert_eq!((settings.service_name.as_str(), settings.namespace.as_str()), ("churn-model", "models"));
    assert_eq!(settings.model_format, "sklearn");
    assert_eq!(settings.labels.get("kfops.dev/repo").map(String::as_str), Some("acme.churn-model"));
    assert_eq!(settings.storage_uri, format!("s3://trained-models/{run_id}/"));
    assert_eq!(request.run_id.0, run_id);
    let check = settings.check.as_ref().expect("the sample is sent");
    assert_eq!(check.sample["instances"][0], json!([3, 105.5, 4, 1, 0]));
    assert_eq!(check.requests, 5);

    // The audit trail.
    let store = world.settled_store(&bot).await;
    let audit = store.audit(Some("acme/churn-model"), 10).expect("audit");
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].environment, "production");
    assert_eq!(audit[0].outcome.as_deref(), Some("succeeded"));
    assert_eq!(audit[0].requested_by, "alice");
    assert_eq!(audit[0].run_id, run_id);
    assert_eq!(audit[0].new_revision.as_deref(), Some("churn-model-predictor-00002"));
    assert_eq!(audit[0].previous_revision.as_deref(), Some("churn-model-predictor-00001"));
    assert_eq!(audit[1].environment, "staging");
    assert_eq!(world.github.violations(), Vec::<String>::new());
    bot.stop().await;

    // … and from the command line.
    let out = super::super::bot().args(["audit", "--json", "--config"]).arg(&world.config).output().expect("audit");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(printed.as_array().map(Vec::len), Some(2), "{printed}");
    assert_eq!(printed[0]["environment"], "production");
    assert_eq!(printed[0]["pr_number"], 7);
    let table = super::super::bot().args(["audit", "--config"]).arg(&world.config).output().expect("audit");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("STARTED (UTC)"), "{table}");
    assert!(table.contains("churn-model-predictor-00001 → churn-model-predictor-00002"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_are_refused_until_the_pr_is_fit_and_queue_per_environment() {
    let world = deploy_world("deploy-gates").await;
    let config = std::fs::read_to_string(world.source.join("kfops.yaml")).expect("kfops.yaml");
    let head = git(&world.source, &["rev-parse", "HEAD"]);
    assert!(config.contains("model_format: sklearn"));
    // Its own head (the test server's compare endpoint finds the PR by its head).
    let own_head = commit_change(&world.source, "README.md", "churn model, PR 9\n");
    let mut behind = TestPr::new(9, &own_head);
    behind.behind_by = 2;
    world.github.add_pr(OWNER, REPO, behind);
    world.github.add_pr(OWNER, REPO, TestPr::new(10, &head));
    let deployers = Arc::new(Deployers::default());
    let bot = InProcess::start(&world.config, Arc::clone(&deployers)).await;
    let run7 = trained(&world, &bot, 7, "d-train-7").await;
    trained(&world, &bot, 9, "d-train-9").await;
    trained(&world, &bot, 10, "d-train-10").await;

    // Not a maintainer.
    world.github.set_permission(OWNER, REPO, "bob", "write");
    command(&world, &bot, "d-bob", 9, "bob", "/deploy").await;
    let denied = world.wait_for_comment(&bot, 9, "denied", |b| b.contains("needs `maintain`")).await;
    assert!(denied.body.contains("you have `write`"), "{}", denied.body);

    // A run of another PR.
    command(&world, &bot, "d-other-run", 9, "alice", &format!("/deploy --run-id {run7}")).await;
    let refused =
        world.wait_for_comment(&bot, 9, "other run", |b| deploy_final(b) && b.contains("not a succeeded run")).await;
    assert!(refused.body.contains("❌"), "{}", refused.body);

    // Behind its base: refused, then forced.
    command(&world, &bot, "d-behind", 9, "alice", "/deploy").await;
    let behind = world.wait_for_comment(&bot, 9, "behind", |b| deploy_final(b) && b.contains("behind its base")).await;
    assert!(behind.body.contains("/deploy --force"), "{}", behind.body);
    assert!(deployers.calls().is_empty(), "nothing deployed before the checks pass");
    command(&world, &bot, "d-forced", 9, "alice", "/deploy --force").await;
    let forced =
        world.wait_for_comment(&bot, 9, "forced", |b| deploy_final(b) && b.contains("`/deploy --force`**")).await;
    assert!(forced.body.contains("✅"), "{}", forced.body);
    assert!(world.github.pr(OWNER, REPO, 9).merged);

    // Branch protection: GitHub says mergeable, but blocked; refused before anything is deployed.
    let mut blocked = TestPr::new(11, &head);
    blocked.mergeable_state = Some("blocked".into());
    world.github.add_pr(OWNER, REPO, blocked);
    trained(&world, &bot, 11, "d-train-11").await;
    let deploys_before = deployers.calls().len();
    command(&world, &bot, "d-blocked", 11, "alice", "/deploy").await;
    let refused =
        world.wait_for_comment(&bot, 11, "blocked", |b| deploy_final(b) && b.contains("cannot be merged")).await;
    assert!(refused.body.contains("`blocked`"), "{}", refused.body);
    assert_eq!(deployers.calls().len(), deploys_before, "nothing deployed");

    // A staging deploy cannot reach production's namespace.
    let config = std::fs::read_to_string(world.source.join("kfops.yaml")).expect("kfops.yaml");
    let sneaky =
        commit_change(&world.source, "kfops.yaml", &config.replace("namespace: models-staging", "namespace: models"));
    world.github.set_head(OWNER, REPO, 11, &sneaky);
    trained(&world, &bot, 11, "d-train-11b").await;
    command(&world, &bot, "d-sneaky", 11, "alice", "/staging_deploy").await;
    let refused =
        world.wait_for_comment(&bot, 11, "sneaky", |b| deploy_final(b) && b.contains("`/staging_deploy`**")).await;
    assert!(
        refused.body.contains("`deployment.staging.namespace` &#96;models&#96;")
            || refused.body.contains("is not one this bot deploys staging models to"),
        "{}",
        refused.body
    );
    assert_eq!(deployers.calls().len(), deploys_before, "nothing deployed");

    // A failed check: rolled back by the target, no label, no merge.
    deployers.plan(Plan::Fail(
        "inference check failed: prediction request 1 answered HTTP 500; rolled back to revision churn-model-predictor-00001"
            .into(),
    ));
    command(&world, &bot, "d-fail", 10, "alice", "/deploy").await;
    let failed = world.wait_for_comment(&bot, 10, "failed", deploy_final).await;
    assert!(failed.body.contains("❌") && failed.body.contains("rolled back to revision"), "{}", failed.body);
    assert!(world.github.labels(OWNER, REPO, 10).is_empty());
    assert!(!world.github.pr(OWNER, REPO, 10).merged);

    // One production deploy at a time: the second waits, told its position.
    let release = Arc::new(Notify::new());
    deployers.plan(Plan::Hold(Arc::clone(&release)));
    command(&world, &bot, "d-first", 10, "alice", "/staging_deploy").await;
    world
        .wait_for_comment(&bot, 10, "deploying", |b| b.contains("**deploying**") && b.contains("staging_deploy"))
        .await;
    command(&world, &bot, "d-second", 7, "alice", "/staging_deploy").await;
    let waiting = world
        .wait_for_comment(&bot, 7, "queued", |b| b.contains("waiting in the staging deploy queue: 1 deploy ahead"))
        .await;
    assert!(waiting.body.contains("`/staging_deploy`**"), "{}", waiting.body);
    release.notify_one();
    let second = world
        .wait_for_comment(&bot, 7, "second deployed", |b| deploy_final(b) && b.contains("`/staging_deploy`**"))
        .await;
    assert!(second.body.contains("✅"), "{}", second.body);
    assert_eq!(second.id, waiting.id, "the queued comment becomes the status comment");
    let store = world.settled_store(&bot).await;
    let audit = store.audit(None, 20).expect("audit");
    assert!(audit.iter().any(|a| a.outcome.as_deref() == Some("failed") && a.pr_number == 10), "{audit:?}");
    assert_eq!(world.github.violations(), Vec::<String>::new());
    bot.stop().await;
}
