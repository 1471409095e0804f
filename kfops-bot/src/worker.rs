//! Workers: take commands from the ledger and carry them out.
//!
//! The [`Dispatcher`] reads unfinished commands from the [`Store`] (woken by
//! the webhook handler, and on a timer), runs at most `concurrency` at once,
//! and never two of the same pull request at the same time (they run in the
//! order they arrived). A command goes:
//!
//! 1. **authorize**: the PR (open, fork, draft) and the commenter's
//!    permission from the SCM, judged by the bot's [`Policy`]; a denial is
//!    answered in the PR and recorded;
//! 2. **pin**: 👀 on the command comment, the PR head sha recorded;
//! 3. **report**: one status comment, edited in place from then on;
//! 4. **build** (every command): the pinned sha checked out into a fresh
//!    workdir, the repository's `kfops.yaml` loaded (without the bot's
//!    environment), the pipeline compiled in a scrubbed child process,
//!    linted, its arguments checked, images built and pinned, the version
//!    published (idempotent per commit and pipeline, so `/run` without a
//!    prior `/build` simply builds first, and says so);
//! 5. **run** (`/run`, `/build_run`): the run started and its id recorded,
//!    then watched until it ends; the final state, duration and failed tasks
//!    go into the status comment.
//!
//! Every step is appended to the ledger. After a restart, a command with a
//! recorded run is watched again (its final comment is an edit of the same
//! status comment, so it arrives once); one without is redone from the
//! checkout (publishing is idempotent). A command that fails for a
//! transient reason (GitHub or Kubeflow unreachable) stays unfinished and is
//! retried with a growing delay.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore};

use kfops_core::command::Command;
use kfops_core::deploy::{DeployRequest, Environment};
use kfops_core::image::{BuiltImage, ImageSpec};
use kfops_core::pipeline::{
    CompiledPipeline, PipelineSource, PipelineVersion, RunId, RunInfo, RunRequest, SourceInfo, VersionName,
};
use kfops_core::scm::{CommentId, CommentRef, PullRequest, Reaction, Sha};
use kfops_core::{ErrorKind, PipelineBackend, Progress, ScmProvider};
use kfops_kubeflow::compile::Compiler;
use kfops_kubeflow::ir::format_parameter_value;

use crate::policy::{Decision, Policy};
use crate::report::{Outcome, Problem, ReportStage, StatusReport, inline, render};
use crate::server::Metrics;
use crate::store::{CommandRecord, CommandState, Stage, Store};

/// GitHub's comment limit, used when the provider names none.
const DEFAULT_MAX_COMMENT: usize = 65_536;

/// Builds the images of one checkout.
#[async_trait]
pub trait ImageBuilds: Send + Sync {
    /// Whether images may be pushed to `registry` (the bot's allowlist).
    fn allows_registry(&self, registry: &str) -> bool;

    /// Build (or find) `images` from the checkout at `root`.
    async fn build(
        &self,
        root: &Path,
        build_args: &BTreeMap<String, String>,
        images: &[ImageSpec],
        progress: &dyn Progress,
    ) -> Result<Vec<BuiltImage>, kfops_core::Error>;
}

/// Everything a worker needs, shared by all of them.
pub struct Services {
    /// The SCM (GitHub).
    pub scm: Arc<dyn ScmProvider>,
    /// Where pipelines are published and run.
    pub backend: Arc<dyn PipelineBackend>,
    /// The image builder, if the bot has one configured.
    pub images: Option<Arc<dyn ImageBuilds>>,
    /// The pipeline compiler (scrubbed environment).
    pub compiler: Compiler,
    /// The inbox and ledger.
    pub store: Arc<Store>,
    /// Who may do what.
    pub policy: Policy,
    /// Parent of the per-command checkouts.
    pub workdir_root: PathBuf,
    /// Deploy settings of the bot; `None` refuses deploy commands.
    pub deploy: Option<crate::deploy::DeploySection>,
    /// Connects deploy targets (KServe); used when `deploy` is set.
    pub deployers: Option<Arc<dyn crate::deploy::DeployTargets>>,
    /// InferenceServices being rolled out right now (`context/namespace/service`).
    pub busy_services: Mutex<HashSet<String>>,
    /// The bot's own login (to find comments it posted before a crash).
    pub bot_login: String,
    /// How often a running pipeline run is polled.
    pub poll_interval: Duration,
    /// Counters exported at `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("scm", &self.scm.kind())
            .field("backend", &self.backend.name())
            .field("workdir_root", &self.workdir_root)
            .finish_non_exhaustive()
    }
}

/// Runs commands from the ledger with bounded concurrency, one at a time per PR.
pub struct Dispatcher {
    services: Arc<Services>,
    slots: Arc<Semaphore>,
    work: Arc<Notify>,
    state: Mutex<DispatchState>,
    stopping: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct DispatchState {
    running: HashSet<i64>,
    /// Commands that failed transiently: attempt count and when to try again.
    backoff: HashMap<i64, (u32, Instant)>,
    rejections_running: bool,
    /// After a transient failure to answer an invalid command, wait until then.
    rejections_not_before: Option<Instant>,
    /// Queue positions already shown to waiting deploys.
    announced: HashMap<i64, usize>,
    tasks: tokio::task::JoinSet<()>,
}

/// Transient failures a command survives before it is given up (delays double up to 5 minutes: ~40 min).
const MAX_ATTEMPTS: u32 = 12;

/// How long a graceful shutdown waits for commands to reach a step boundary.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("services", &self.services).finish_non_exhaustive()
    }
}

/// How a command attempt ended.
enum Attempt {
    /// Finished (succeeded, failed or denied); recorded in the ledger.
    Done,
    /// Could not finish for a reason that may pass (an SCM or backend outage); retry later.
    Retry,
}

impl Dispatcher {
    /// A dispatcher running at most `concurrency` commands at once, woken by `work`.
    pub fn new(services: Services, concurrency: usize, work: Arc<Notify>) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            services: Arc::new(services),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            work,
            state: Mutex::new(DispatchState::default()),
            stopping: tokio::sync::watch::channel(false).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DispatchState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Dispatch until `shutdown` resolves. Then commands in flight are asked
    /// to stop at their next step boundary (a watched run is left running on
    /// the backend) and given a grace period; whatever is unfinished stays so
    /// in the ledger and is resumed by the next start.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.dispatch_once().await;
            tokio::select! {
                () = self.work.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = &mut shutdown => break,
            }
        }
        let _ = self.stopping.send(true);
        let mut tasks = std::mem::take(&mut self.lock().tasks);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            crate::app::log("commands still busy after the grace period were stopped; they resume at the next start");
            tasks.abort_all();
        }
    }

    /// Start whatever can start now.
    pub async fn dispatch_once(self: &Arc<Self>) {
        let store = Arc::clone(&self.services.store);
        let listed = tokio::task::spawn_blocking(move || (store.unfinished(), store.unreported_rejections())).await;
        {
            // Reap finished tasks.
            let mut st = self.lock();
            while st.tasks.try_join_next().is_some() {}
        }
        let Ok((Ok(unfinished), rejections)) = listed else {
            return;
        };
        if rejections.is_ok_and(|r| !r.is_empty()) {
            let mut st = self.lock();
            let due = st.rejections_not_before.is_none_or(|at| at <= Instant::now());
            if due && !std::mem::replace(&mut st.rejections_running, true) {
                let me = Arc::clone(self);
                st.tasks.spawn(async move {
                    let retry_later = me.report_rejections().await;
                    let mut st = me.lock();
                    st.rejections_running = false;
                    st.rejections_not_before = retry_later.then(|| Instant::now() + Duration::from_secs(30));
                });
            }
        }
        // Ordered by id: the first unfinished command of a PR is the only one
        // of that PR that may run; later ones wait for it. Deploys also queue
        // per repository and environment: one at a time, in order, and the
        // waiting ones are told their position.
        let mut seen_prs = HashSet::new();
        let mut deploy_queues: HashMap<(String, Environment), usize> = HashMap::new();
        for record in unfinished {
            let key = (record.event.pr.repo.to_string(), record.event.pr.number);
            let first_in_pr = seen_prs.insert(key);
            let ahead = deploy_environment(&record.event.command).map(|env| {
                let n = deploy_queues.entry((record.event.pr.repo.to_string(), env)).or_insert(0);
                *n += 1;
                (env, *n - 1)
            });
            if !first_in_pr {
                continue;
            }
            if let Some((env, ahead)) = ahead
                && ahead > 0
            {
                self.announce_queued(&record, env, ahead);
                continue;
            }
            let mut st = self.lock();
            let tries = st.backoff.get(&record.id).map_or(0, |(n, _)| *n);
            if st.running.contains(&record.id) || st.backoff.get(&record.id).is_some_and(|(_, at)| *at > Instant::now())
            {
                continue;
            }
            let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else { break };
            st.running.insert(record.id);
            let me = Arc::clone(self);
            let stop = self.stopping.subscribe();
            st.tasks.spawn(async move {
                let id = record.id;
                // The slot travels with the command; watching a run gives it back early.
                let slot = Slot(Arc::new(Mutex::new(Some(permit))));
                let attempt = me.services.process(id, tries + 1, stop, slot.clone()).await;
                {
                    let mut st = me.lock();
                    st.running.remove(&id);
                    match attempt {
                        Attempt::Done => {
                            st.backoff.remove(&id);
                        }
                        Attempt::Retry => {
                            let delay = Duration::from_secs(2u64.saturating_pow((tries + 1).min(8)).min(300));
                            st.backoff.insert(id, (tries + 1, Instant::now() + delay));
                        }
                    }
                }
                slot.release();
                me.work.notify_one();
            });
        }
    }

    /// Tell a waiting deploy how many deploys are ahead of it (once per change).
    fn announce_queued(self: &Arc<Self>, record: &CommandRecord, env: Environment, ahead: usize) {
        let mut st = self.lock();
        if st.running.contains(&record.id) || st.announced.get(&record.id) == Some(&ahead) {
            return;
        }
        st.announced.insert(record.id, ahead);
        st.running.insert(record.id);
        let me = Arc::clone(self);
        let record = record.clone();
        st.tasks.spawn(async move {
            let s = &me.services;
            let report = StatusReport {
                progress: Some(format!(
                    "waiting in the {env} deploy queue: {ahead} deploy{} ahead of this one",
                    if ahead == 1 { "" } else { "s" }
                )),
                ..StatusReport::queued(record.id, record.event.command.clone(), record.event.author.clone())
            };
            let body = render(&report, s.scm.max_comment_chars().unwrap_or(DEFAULT_MAX_COMMENT));
            let pr = record.event.pr.clone();
            let shown = match &record.status_comment {
                Some(c) => s.scm.edit_comment(&pr, &CommentId(c.clone()), &body).await,
                None => match s.scm.post_comment(&pr, &body).await {
                    Ok(cid) => {
                        let id = record.id;
                        s.ledger(move |st| st.set_status_comment(id, &cid.0)).await.map_err(|f| {
                            kfops_core::Error::new(ErrorKind::Other, format!("{}: {}", f.summary, f.detail))
                        })
                    }
                    Err(e) => Err(e),
                },
            };
            let mut st = me.lock();
            st.running.remove(&record.id);
            if shown.is_err() {
                // Say it again on a later pass.
                st.announced.remove(&record.id);
            }
        });
    }

    /// Answer invalid commands. `true` when a transient failure means "try again later".
    async fn report_rejections(&self) -> bool {
        let s = &self.services;
        // Listed here, not by the caller: a snapshot taken earlier may hold rejections answered since.
        let Ok(rejections) = s.ledger(Store::unreported_rejections).await else { return true };
        for (id, comment, author, error) in rejections {
            let marker = format!("<!-- kfops:rejection={id} -->");
            let body = format!(
                "{marker}\n😕 {}, I could not understand that command: {}\n\n\
                 Commands: `/build`, `/run`, `/build_run`, `/deploy`, `/staging_deploy`.",
                inline(&author),
                inline(&error)
            );
            // An earlier attempt may have posted it before failing.
            let posted = match s.scm.find_comment(&comment.pr, &s.bot_login, &marker).await {
                Ok(Some(_)) => Ok(()),
                _ => s.scm.post_comment(&comment.pr, &body).await.map(drop),
            };
            match posted {
                Ok(()) => {
                    let _ = s.scm.react(&comment, Reaction::Confused).await;
                }
                Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) => {
                    crate::app::log(&format!("answering invalid command {id} on {}: {e}; retrying later", comment.pr));
                    return true;
                }
                Err(e) => {
                    // Locked conversation, deleted PR, no permission: it will never work.
                    crate::app::log(&format!("cannot answer invalid command {id} on {}: {e}; giving up", comment.pr));
                }
            }
            if s.ledger(move |st| st.mark_rejection_reported(id)).await.is_err() {
                return true;
            }
        }
        false
    }
}

/// The first 12 characters of a sha.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Marks an InferenceService as being rolled out; released when dropped.
struct ServiceLock<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl<'a> ServiceLock<'a> {
    fn take(set: &'a Mutex<HashSet<String>>, key: &str) -> Option<Self> {
        let mut busy = set.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        busy.insert(key.to_owned()).then(|| ServiceLock { set, key: key.to_owned() })
    }
}

impl Drop for ServiceLock<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.key);
    }
}

/// The environment a command deploys to, if it is a deploy.
fn deploy_environment(command: &Command) -> Option<Environment> {
    match command {
        Command::Deploy { .. } => Some(Environment::Production),
        Command::StagingDeploy { .. } => Some(Environment::Staging),
        Command::Build | Command::Run | Command::BuildRun => None,
    }
}

/// Collects the facts of one command for its status comment.
struct Job<'a> {
    s: &'a Services,
    id: i64,
    pr: kfops_core::scm::PrRef,
    report: StatusReport,
    comment: Option<CommentId>,
    started: Instant,
    created_ms: i64,
    /// Whether an earlier attempt may have posted the status comment already.
    resumed: bool,
    /// Becomes `true` when the bot shuts down.
    stop: tokio::sync::watch::Receiver<bool>,
    /// This command's worker slot.
    slot: Slot,
}

/// A command's place among the `workers.concurrency` active commands. Watching a
/// run is cheap (a poll every few seconds), so it gives the slot back: long
/// training runs never keep other PRs' builds waiting.
#[derive(Clone)]
struct Slot(Arc<Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl Slot {
    fn release(&self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A failure with what to show in the PR.
struct Failure {
    summary: String,
    detail: String,
    transient: bool,
}

impl Failure {
    fn new(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure { summary: summary.into(), detail: detail.into(), transient: false }
    }

    fn from_error(summary: &str, e: &kfops_core::Error) -> Self {
        Failure {
            summary: summary.to_owned(),
            detail: e.to_string(),
            transient: matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        }
    }
}

/// Removes a workdir when dropped.
struct Workdir(PathBuf);

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Services {
    async fn ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, crate::StoreError> + Send + 'static,
    ) -> Result<T, Failure> {
        let store = Arc::clone(&self.store);
        let failed = |detail: String| Failure { summary: "the bot's ledger failed".into(), detail, transient: true };
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    async fn record(&self, id: i64, stage: Stage, state: CommandState, detail: String) -> Result<(), Failure> {
        self.ledger(move |s| s.record(id, stage, state, &detail)).await
    }

    /// One attempt (number `attempt`, from 1) at command `id`.
    async fn process(&self, id: i64, attempt: u32, stop: tokio::sync::watch::Receiver<bool>, slot: Slot) -> Attempt {
        // The dispatcher's list may be stale: act on the ledger as it is now.
        let record = match self.ledger(move |s| s.command(id)).await {
            Ok(r) => r,
            Err(f) => {
                crate::app::log(&format!("command {id}: {}: {}", f.summary, f.detail));
                return Attempt::Retry;
            }
        };
        if record.state.is_final() {
            return Attempt::Done;
        }
        let kind = record.event.command.kind();
        let pr = record.event.pr.clone();
        let started = Instant::now();
        crate::app::log(&format!("command {id} ({pr}, {}) attempt {attempt}", record.event.command));
        let failure = match self.drive(record.clone(), stop, slot).await {
            Ok(outcome) => {
                self.metrics.command_finished(kind.name(), outcome, started.elapsed());
                crate::app::log(&format!("command {id} ({pr}) {outcome} in {:.1?}", started.elapsed()));
                return Attempt::Done;
            }
            Err(f) => f,
        };
        if failure.transient && attempt < MAX_ATTEMPTS {
            crate::app::log(&format!("command {id} ({pr}) will be retried: {}: {}", failure.summary, failure.detail));
            return Attempt::Retry;
        }
        // It will not get better: make it final and say so.
        crate::app::log(&format!("command {id} ({pr}) failed: {}: {}", failure.summary, failure.detail));
        let gave_up = if failure.transient { format!(" (gave up after {attempt} attempts)") } else { String::new() };
        let detail = format!("{}{gave_up}: {}", failure.summary, failure.detail);
        if self.record(id, Stage::Finished, CommandState::Failed, detail).await.is_err() {
            return Attempt::Retry;
        }
        self.metrics.command_finished(kind.name(), "failed", started.elapsed());
        let body = format!(
            "{}\n❌ **`{}`** requested by {} could not be carried out: {}{gave_up}.\n\n<details><summary>Details</summary>\n\n{}\n\n</details>",
            crate::report::marker(id),
            record.event.command,
            inline(&record.event.author),
            inline(&failure.summary),
            inline(&failure.detail),
        );
        let posted = match &record.status_comment {
            Some(c) => self.scm.edit_comment(&pr, &CommentId(c.clone()), &body).await,
            None => self.scm.post_comment(&pr, &body).await.map(drop),
        };
        if let Err(e) = posted {
            crate::app::log(&format!("command {id} ({pr}): could not report the failure in the PR: {e}"));
        }
        Attempt::Done
    }

    /// Carry a command as far as it goes. `Ok` with the outcome label once it is final in the ledger.
    async fn drive(
        &self,
        record: CommandRecord,
        stop: tokio::sync::watch::Receiver<bool>,
        slot: Slot,
    ) -> Result<&'static str, Failure> {
        let id = record.id;
        let event = record.event.clone();
        let comment_ref = CommentRef { pr: event.pr.clone(), id: event.comment.clone() };
        let steps = self.ledger(move |s| s.steps(id)).await?;
        let created_ms = steps.first().map_or_else(now_ms, |s| s.at_ms);
        let resumed = steps.len() > 1;
        let starting_run =
            steps.iter().rev().find(|s| s.stage == Stage::StartingRun.as_str()).map(|s| s.detail.clone());
        let pr = self.scm.pull_request(&event.pr).await.map_err(|e| Failure::from_error("reading the PR", &e))?;

        // 1–2. Authorize and pin, once.
        let sha = match (&record.state, &record.sha) {
            (CommandState::InProgress, Some(sha)) => sha.clone(),
            _ => {
                let permission = self
                    .scm
                    .permission(&event.pr.repo, &event.author)
                    .await
                    .map_err(|e| Failure::from_error("reading the commenter's permission", &e))?;
                if let Decision::Deny(why) = self.policy.decide(event.command.kind(), &event.author, permission, &pr) {
                    let body = format!("{}\n🚫 {why}", crate::report::marker(id));
                    self.post_once(&event.pr, id, &body, resumed).await?;
                    let _ = self.scm.react(&comment_ref, Reaction::MinusOne).await;
                    self.record(id, Stage::Finished, CommandState::Denied, why).await?;
                    return Ok("denied");
                }
                if matches!(event.command, Command::Deploy { .. } | Command::StagingDeploy { .. })
                    && (self.deploy.is_none() || self.deployers.is_none())
                {
                    let why = format!(
                        "`{}` is not available on this bot: it has no deployment target configured, so it \
                         cannot deploy models. Ask the bot's operators to configure one.",
                        event.command
                    );
                    let body = format!("{}\n❌ {why}", crate::report::marker(id));
                    self.post_once(&event.pr, id, &body, resumed).await?;
                    self.record(id, Stage::Finished, CommandState::Failed, why).await?;
                    return Ok("failed");
                }
                self.scm.react(&comment_ref, Reaction::Eyes).await.map_err(|e| Failure::from_error("reacting", &e))?;
                let sha = pr.head_sha.0.clone();
                let pinned = sha.clone();
                self.ledger(move |s| s.set_sha(id, &pinned)).await?;
                self.record(id, Stage::Pinned, CommandState::InProgress, format!("{} by {permission:?}", sha)).await?;
                sha
            }
        };

        let mut job = Job {
            s: self,
            id,
            pr: event.pr.clone(),
            report: StatusReport {
                sha: Some(sha.clone()),
                ..StatusReport::queued(id, event.command.clone(), event.author.clone())
            },
            comment: record.status_comment.clone().map(CommentId),
            started: Instant::now(),
            created_ms,
            resumed,
            stop,
            slot,
        };
        if record.run_id.is_some() {
            job.report.stage = ReportStage::Running;
        }
        job.show().await?;

        let result = job.work(&record, &pr, &sha, starting_run).await;
        match result {
            Ok(succeeded) => job.finish(succeeded).await,
            Err(f) if f.transient => {
                let detail = format!("{}: {}", f.summary, f.detail);
                self.record(id, Stage::Retrying, CommandState::InProgress, detail.clone()).await?;
                // Tell the PR why nothing moves (best effort).
                job.report.progress = Some(format!("waiting to retry: {detail}"));
                let _ = job.show().await;
                Err(f)
            }
            Err(f) => {
                job.report.problems.push(Problem { error: true, summary: f.summary.clone(), detail: f.detail.clone() });
                job.finish(false).await
            }
        }
    }
}

impl Services {
    /// Post a comment carrying command `id`'s marker, unless an earlier attempt already did.
    async fn post_once(&self, pr: &kfops_core::scm::PrRef, id: i64, body: &str, resumed: bool) -> Result<(), Failure> {
        if resumed && let Ok(Some(_)) = self.scm.find_comment(pr, &self.bot_login, &crate::report::marker(id)).await {
            return Ok(());
        }
        self.scm.post_comment(pr, body).await.map(drop).map_err(|e| Failure::from_error("answering the PR", &e))
    }
}

impl Job<'_> {
    /// Post or edit the status comment.
    async fn show(&mut self) -> Result<(), Failure> {
        let max = self.s.scm.max_comment_chars().unwrap_or(DEFAULT_MAX_COMMENT);
        let body = render(&self.report, max);
        let pr = self.report_pr();
        if self.comment.is_none() && self.resumed {
            // An earlier attempt may have posted it and died before saving its id.
            let marker = crate::report::marker(self.id);
            if let Ok(Some(found)) = self.s.scm.find_comment(&pr, &self.s.bot_login, &marker).await {
                self.save_comment(found).await?;
            }
        }
        if let Some(cid) = &self.comment {
            match self.s.scm.edit_comment(&pr, cid, &body).await {
                Ok(()) => return Ok(()),
                // Someone deleted it: post a new one below.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Failure::from_error("updating the status comment", &e)),
            }
        }
        let cid = self.s.scm.post_comment(&pr, &body).await.map_err(|e| Failure::from_error("commenting", &e))?;
        self.save_comment(cid).await
    }

    async fn save_comment(&mut self, cid: CommentId) -> Result<(), Failure> {
        let (id, saved) = (self.id, cid.0.clone());
        self.s.ledger(move |s| s.set_status_comment(id, &saved)).await?;
        self.comment = Some(cid);
        Ok(())
    }

    fn report_pr(&self) -> kfops_core::scm::PrRef {
        self.pr.clone()
    }

    async fn stage(&mut self, stage: ReportStage, ledger: Stage, detail: String) -> Result<(), Failure> {
        self.s.record(self.id, ledger, CommandState::InProgress, detail).await?;
        self.report.stage = stage;
        self.show().await
    }

    /// The command's work after pinning. `Ok(true)` when it succeeded.
    async fn work(
        &mut self,
        record: &CommandRecord,
        pr: &PullRequest,
        sha: &str,
        starting_run: Option<String>,
    ) -> Result<bool, Failure> {
        let command = record.event.command.clone();
        let wants_run = match &command {
            Command::Build => false,
            Command::Run | Command::BuildRun => true,
            Command::Deploy { run_id, force } => {
                return self.deploy(pr, sha, Environment::Production, run_id.as_deref(), *force).await;
            }
            Command::StagingDeploy { run_id } => {
                return self.deploy(pr, sha, Environment::Staging, run_id.as_deref(), false).await;
            }
        };
        if let Some(run_id) = &record.run_id {
            // Resumed after a restart: the run exists; follow it to its end.
            self.report.stage = ReportStage::Running;
            return self.watch(RunId(run_id.clone())).await;
        }
        if let Some(name) = starting_run {
            // The bot stopped between asking for a run and learning its id: the
            // run may exist. Starting another could run the pipeline twice.
            return Err(Failure::new(
                "the bot was interrupted while starting the run",
                format!(
                    "A run named `{name}` may or may not have started on Kubeflow. Look for it in the \
                     experiment's runs; comment `/run` again if it is not there."
                ),
            ));
        }
        let built = self.build(pr, sha).await?;
        if matches!(command, Command::Run) && built.version.created {
            self.report.problems.push(Problem {
                error: false,
                summary: "no `/build` of this commit yet: built it first".into(),
                detail: format!("published pipeline version `{}`", built.version.name),
            });
        }
        if !wants_run {
            return Ok(true);
        }
        self.stage(ReportStage::Running, Stage::Running, "starting the run".into()).await?;
        let request = RunRequest {
            display_name: format!(
                "{} PR #{} {} (kfops #{})",
                built.pipeline_name,
                self.pr.number,
                sha.get(..12).unwrap_or(sha),
                self.id
            ),
            pipeline: PipelineSource::Version {
                pipeline_id: built.version.pipeline_id.clone(),
                version_id: built.version.version_id.clone(),
            },
            experiment: built.experiment,
            parameters: built.args,
            service_account: None,
        };
        let display_name = request.display_name.clone();
        let experiment = request.experiment.clone();
        self.s.record(self.id, Stage::StartingRun, CommandState::InProgress, display_name.clone()).await?;
        let handle = self.s.backend.start_run(request).await.map_err(|e| {
            let mut f = Failure::from_error("starting the run", &e);
            if f.transient {
                // Kubeflow may have created the run before the answer was lost: never start it twice.
                f.transient = false;
                f.detail = format!(
                    "{}\n\nThe run `{display_name}` may or may not have started; look for it in experiment \
                     `{experiment}` and comment `/run` again if it is not there.",
                    f.detail
                );
            }
            f
        })?;
        let (id, run) = (self.id, handle.id.0.clone());
        self.s.ledger(move |s| s.set_run_id(id, &run)).await?;
        self.s.record(self.id, Stage::Running, CommandState::InProgress, format!("run {}", handle.id)).await?;
        self.report.run_url.clone_from(&handle.web_url);
        self.show().await?;
        self.watch(handle.id).await
    }

    /// Check the PR and the run, then roll the run's model out.
    ///
    /// Resumable: the rollout's success (`deployed`, with its outcome) and the
    /// merge (`merged`) are ledger steps, so a retry or restart after them
    /// never deploys or merges again; a restart *during* the rollout is
    /// reported rather than rolled out a second time.
    async fn deploy(
        &mut self,
        pr: &PullRequest,
        pinned: &str,
        environment: Environment,
        run_flag: Option<&str>,
        force: bool,
    ) -> Result<bool, Failure> {
        let (Some(section), Some(deployers)) = (self.s.deploy.clone(), self.s.deployers.clone()) else {
            return Err(Failure::new("deploys are not enabled on this bot", "the bot has no `deploy` section"));
        };
        let id = self.id;
        let steps = self.s.ledger(move |s| s.steps(id)).await?;
        let step = |stage: Stage| steps.iter().rev().find(|s| s.stage == stage.as_str()).map(|s| s.detail.clone());
        let (deployed, merged, deploying) = (step(Stage::Deployed), step(Stage::Merged), step(Stage::Deploying));
        if deployed.is_none() {
            self.stage(ReportStage::Checking, Stage::Checking, format!("{environment} deploy")).await?;
        }

        // The run, from the ledger (not from comments).
        let pr_ref = self.pr.clone();
        let run = match run_flag {
            Some(run) => {
                let (p, r) = (pr_ref.clone(), run.to_owned());
                self.s.ledger(move |s| s.run_of_pr(&p, &r)).await?.ok_or_else(|| {
                    Failure::new(
                        format!("run `{run}` is not a succeeded run of this pull request"),
                        "Only runs started from this PR (by `/run` or `/build_run`) and finished successfully can \
                         be deployed from it. Leave out `--run-id` to deploy the latest one.",
                    )
                })?
            }
            None => {
                let p = pr_ref.clone();
                self.s.ledger(move |s| s.last_run(&p)).await?.ok_or_else(|| {
                    Failure::new(
                        "this pull request has no succeeded run yet",
                        "Comment `/build_run` and deploy once the run succeeded.",
                    )
                })?
            }
        };
        let run_id = run.run_id.clone().unwrap_or_default();
        let run_sha = run.sha.clone().unwrap_or_default();
        let version_id = run.pipeline_version.as_deref().and_then(|v| v.split('/').nth(1)).map(str::to_owned);
        self.report.facts.push(("run".into(), format!("{run_id} (from {})", short(&run_sha))));
        let start = crate::store::DeployStart {
            command_id: id,
            environment: environment.to_string(),
            pr: pr_ref.clone(),
            sha: run_sha.clone(),
            run_id: run_id.clone(),
            requested_by: self.report.author.clone(),
        };
        self.s.ledger(move |s| s.start_deploy(&start)).await?;

        let result = match deployed {
            // Resumed after the rollout succeeded: finish the bookkeeping only.
            Some(outcome) => serde_json::from_str::<kfops_core::deploy::DeployOutcome>(&outcome)
                .map_err(|e| Failure::new("the ledger's record of the rollout is unreadable", e.to_string())),
            None if deploying.is_some() => Err(Failure::new(
                "the bot was interrupted during the rollout",
                format!(
                    "The rollout of run `{run_id}` ({}) was under way when the bot stopped. The rollout keeps \
                     production on the previous revision until the new one passed its check, so traffic was not \
                     moved to an unchecked model; look at the InferenceService's traffic and comment the deploy \
                     command again to finish it.",
                    deploying.unwrap_or_default()
                ),
            )),
            None => {
                self.roll_out(pr, pinned, environment, force, &section, deployers, &run_id, &run_sha, version_id).await
            }
        };
        let outcome = match result {
            Ok(o) => o,
            Err(f) => {
                if !f.transient {
                    self.audit_end(false, None, None, None, &format!("{}: {}", f.summary, f.detail)).await?;
                }
                return Err(f);
            }
        };
        self.report.facts.push(("model".into(), outcome.storage_uri.clone()));
        self.report.facts.push(("service".into(), format!("{} in namespace {}", outcome.service, outcome.namespace)));
        let revision_line = match (&outcome.previous_revision, &outcome.revision) {
            (Some(prev), Some(new)) => format!("{new} (was {prev})"),
            (None, Some(new)) => format!("{new} (first deploy)"),
            _ => if outcome.created { "created" } else { "updated" }.to_owned(),
        };
        self.report.facts.push(("revision".into(), revision_line));
        for line in &outcome.checks {
            self.report.facts.push(("inference check".into(), line.clone()));
        }
        if let Some(url) = &outcome.url {
            self.report.facts.push(("url".into(), url.clone()));
        }

        // Labels: this PR carries the environment's label, no other PR does.
        let label = kfops_core::scm::Label {
            name: environment.label().to_owned(),
            color: if environment == Environment::Production { "0e8a16" } else { "fbca04" }.to_owned(),
        };
        let others = self
            .s
            .scm
            .prs_with_label(&pr_ref.repo, &label.name)
            .await
            .map_err(|e| Failure::from_error("labels", &e))?;
        for other in others.iter().filter(|p| p.number != pr_ref.number) {
            self.s
                .scm
                .remove_label(other, &label.name)
                .await
                .map_err(|e| Failure::from_error(&format!("removing `{}` from {other}", label.name), &e))?;
        }
        self.s.scm.add_label(&pr_ref, &label).await.map_err(|e| Failure::from_error("labelling the PR", &e))?;
        self.report.facts.push(("label".into(), label.name.clone()));

        if environment == Environment::Production && merged.is_none() {
            if let Err(e) = self.s.scm.merge(&pr_ref, &Sha(pinned.to_owned())).await {
                let f = Failure::new(
                    "deployed, but the pull request could not be merged",
                    format!(
                        "{e}\n\nThe model is live in production and this PR carries `{}`. Merge the PR by hand \
                         (its head moved, or GitHub refused the merge), or deploy another PR's run to replace the \
                         model.",
                        label.name
                    ),
                );
                self.audit_end(true, Some(&outcome), Some("merge failed"), None, &f.detail).await?;
                return Err(f);
            }
            self.s.record(id, Stage::Merged, CommandState::InProgress, pinned.to_owned()).await?;
        }
        if environment == Environment::Production {
            let after =
                self.s.scm.pull_request(&pr_ref).await.map_err(|e| Failure::from_error("reading the PR", &e))?;
            if after.is_open {
                self.s.scm.close(&pr_ref).await.map_err(|e| Failure::from_error("closing the PR", &e))?;
            }
            self.report.facts.push(("merged".into(), format!("at {}", short(pinned))));
        }
        self.audit_end(true, Some(&outcome), None, None, &outcome.checks.join("; ")).await?;
        Ok(true)
    }

    /// The gates and the rollout itself; the outcome is recorded as the `deployed` step.
    #[allow(clippy::too_many_arguments)]
    async fn roll_out(
        &mut self,
        pr: &PullRequest,
        pinned: &str,
        environment: Environment,
        force: bool,
        section: &crate::deploy::DeploySection,
        deployers: Arc<dyn crate::deploy::DeployTargets>,
        run_id: &str,
        run_sha: &str,
        version_id: Option<String>,
    ) -> Result<kfops_core::deploy::DeployOutcome, Failure> {
        let pr_ref = self.pr.clone();
        // Production: the PR must be fit to merge, checked before anything is deployed.
        if environment == Environment::Production {
            self.production_gates(pr, pinned, force, run_id, run_sha).await?;
        }

        // The repository's deployment settings, at the commit the run was built from.
        let (workdir, loaded) = self.checkout(pr, run_sha).await?;
        let settings = crate::deploy::settings(
            &loaded,
            environment,
            section,
            &crate::deploy::Vars {
                run_id: run_id.to_owned(),
                version_id: version_id.clone(),
                sha: run_sha.to_owned(),
                pr: pr_ref.number,
                command_id: self.id,
                repo: pr_ref.repo.to_string(),
            },
        )
        .map_err(|why| Failure::new("the deployment cannot be prepared", why))?;
        drop(workdir);

        // One rollout per InferenceService at a time, whichever repository or environment asks.
        let service_key =
            format!("{}/{}/{}", settings.context.as_deref().unwrap_or("-"), settings.namespace, settings.service_name);
        let Some(_busy) = ServiceLock::take(&self.s.busy_services, &service_key) else {
            return Err(Failure {
                summary: format!("another deploy of `{}` is under way", settings.service_name),
                detail: "this deploy waits and is retried".into(),
                transient: true,
            });
        };
        let detail = format!("{environment}: {} in {}", settings.service_name, settings.namespace);
        self.stage(ReportStage::Deploying, Stage::Deploying, detail).await?;
        let target =
            deployers.target(settings).await.map_err(|e| Failure::from_error("connecting to the cluster", &e))?;
        let request = DeployRequest {
            environment,
            run_id: RunId(run_id.to_owned()),
            version_id,
            pr: Some(pr_ref.clone()),
            sha: Some(Sha(run_sha.to_owned())),
        };
        let progress = crate::deploy::ProgressLine::default();
        let rollout = target.deploy(request, &progress);
        tokio::pin!(rollout);
        let result = loop {
            tokio::select! {
                r = &mut rollout => break r,
                () = progress.changed() => {
                    self.report.progress = progress.latest();
                    let _ = self.show().await;
                }
            }
        };
        self.report.progress = None;
        // The target rolled back before returning an error; its message says what failed and how it ended.
        let outcome = result.map_err(|e| Failure::new(format!("the {environment} deploy failed"), e.to_string()))?;
        let recorded = serde_json::to_string(&outcome).unwrap_or_default();
        self.s.record(self.id, Stage::Deployed, CommandState::InProgress, recorded).await?;
        Ok(outcome)
    }

    /// Before a production deploy: head unchanged, not behind the base, the run built from the head
    /// (the last two waived by `--force`), and mergeable as GitHub sees it (branch protection included).
    async fn production_gates(
        &self,
        pr: &PullRequest,
        pinned: &str,
        force: bool,
        run_id: &str,
        run_sha: &str,
    ) -> Result<(), Failure> {
        let pr_ref = self.pr.clone();
        if !force {
            let behind = self
                .s
                .scm
                .is_behind_base(&pr_ref)
                .await
                .map_err(|e| Failure::from_error("comparing the PR with its base", &e))?;
            if behind {
                return Err(Failure::new(
                    "the pull request is behind its base branch",
                    format!(
                        "`{}` has commits this PR does not. Merge or rebase them, run `/build_run` again and deploy \
                         that run, or deploy anyway with `/deploy --force`.",
                        pr.base_ref
                    ),
                ));
            }
            if !run_sha.eq_ignore_ascii_case(pinned) {
                return Err(Failure::new(
                    "the run was not built from the PR's head",
                    format!(
                        "Run `{run_id}` was built from {} but the PR is at {}; merging would ship code the model \
                         was not trained with. Run `/build_run` again, or deploy anyway with `/deploy --force`.",
                        short(run_sha),
                        short(pinned)
                    ),
                ));
            }
        }
        let mut current = pr.clone();
        for attempt in 0..6 {
            if attempt > 0 {
                // GitHub computes mergeability in the background.
                tokio::time::sleep(self.s.poll_interval.max(Duration::from_millis(200))).await;
            }
            current = self.s.scm.pull_request(&pr_ref).await.map_err(|e| Failure::from_error("reading the PR", &e))?;
            let settled = current.mergeable.is_some() && current.mergeable_state.as_deref() != Some("unknown");
            if settled {
                break;
            }
        }
        if !current.head_sha.0.eq_ignore_ascii_case(pinned) {
            return Err(Failure::new(
                "the pull request changed after the deploy was requested",
                format!(
                    "The PR was at {} when `/deploy` was commented and is now at {}. Comment the deploy command \
                     again for the new head.",
                    short(pinned),
                    short(&current.head_sha.0)
                ),
            ));
        }
        match (current.mergeable, current.mergeable_state.as_deref()) {
            (Some(true), None | Some("clean" | "unstable" | "has_hooks")) => Ok(()),
            (Some(true), Some("behind")) if force => Ok(()),
            (None, _) | (_, Some("unknown")) => Err(Failure {
                summary: "GitHub has not computed whether the pull request can be merged".into(),
                detail: "It usually takes a few seconds; the deploy is retried.".into(),
                transient: true,
            }),
            (_, state) => Err(Failure::new(
                "the pull request cannot be merged",
                format!(
                    "GitHub reports it as `{}`: resolve conflicts, get the required reviews and checks, or mark it \
                     ready for review, then deploy again. Nothing was deployed.",
                    state.unwrap_or("not mergeable")
                ),
            )),
        }
    }

    async fn audit_end(
        &self,
        succeeded: bool,
        outcome: Option<&kfops_core::deploy::DeployOutcome>,
        note: Option<&str>,
        new_revision_after_failure: Option<String>,
        detail: &str,
    ) -> Result<(), Failure> {
        let end = crate::store::DeployEnd {
            outcome: if succeeded { "succeeded" } else { "failed" }.to_owned(),
            service: outcome.map(|o| o.service.clone()),
            namespace: outcome.map(|o| o.namespace.clone()),
            previous_revision: outcome.and_then(|o| o.previous_revision.clone()),
            new_revision: outcome.and_then(|o| o.revision.clone()).or(new_revision_after_failure),
            detail: match note {
                Some(n) => format!("{n}: {detail}"),
                None => detail.to_owned(),
            },
        };
        let id = self.id;
        self.s.ledger(move |s| s.finish_deploy(id, &end)).await
    }

    /// `sha` of the PR checked out into this command's fresh workdir (removed when the
    /// returned guard drops), and the repository's configuration there, loaded without
    /// the bot's environment or flags.
    async fn checkout(&self, pr: &PullRequest, sha: &str) -> Result<(Workdir, kfops_config::LoadedConfig), Failure> {
        let dir = self.s.workdir_root.join(format!("command-{}", self.id));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Failure {
            summary: "creating the workdir".into(),
            detail: format!("{}: {e}", dir.display()),
            transient: true,
        })?;
        let workdir = Workdir(dir);
        let mut at = pr.clone();
        at.head_sha = Sha(sha.to_owned());
        self.s
            .scm
            .checkout(&at, &workdir.0)
            .await
            .map_err(|e| Failure::from_error(&format!("checking out {}", short(sha)), &e))?;
        let loaded = kfops_config::ConfigLoader::new(&workdir.0).load().map_err(|e| {
            // Paths relative to the repository, as the author knows them.
            let prefix = format!("{}/", workdir.0.display());
            Failure::new("the repository's kfops configuration is invalid", e.to_string().replace(&prefix, ""))
        })?;
        Ok((workdir, loaded))
    }

    /// Check out, load the configuration, compile, check, build images, publish.
    async fn build(&mut self, pr: &PullRequest, sha: &str) -> Result<Built, Failure> {
        self.stage(ReportStage::Compiling, Stage::Compiling, "checking out and compiling".into()).await?;
        let (workdir, loaded) = self.checkout(pr, sha).await?;
        for w in &loaded.warnings {
            self.report.problems.push(Problem {
                error: false,
                summary: "configuration warning".into(),
                detail: w.to_string(),
            });
        }
        let pipeline = &loaded.config.pipeline;
        let source = workdir.0.join(&pipeline.pipeline_path);
        let mut compiled =
            self.s.compiler.compile(&source, pipeline.pipeline_function_name.as_deref(), &workdir.0).await.map_err(
                |e| {
                    // Paths relative to the repository, as the author knows them.
                    let prefix = format!("{}/", workdir.0.display());
                    Failure::new("the pipeline does not compile", e.to_string().replace(&prefix, ""))
                },
            )?;
        let lint: Vec<String> = compiled
            .job
            .lint()
            .into_iter()
            .filter(|d| d.severity == kfops_kubeflow::ir::Severity::Error)
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect();
        if !lint.is_empty() {
            return Err(Failure::new("the compiled pipeline has errors", lint.join("\n")));
        }
        let args = compiled.job.spec.check_arguments(&pipeline.pipeline_args).map_err(|problems| {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("{p}\n    --> {}", loaded.origin(&format!("pipeline.pipeline_args.{}", p.name()))))
                .collect();
            Failure::new("`pipeline.pipeline_args` do not fit the pipeline", lines.join("\n"))
        })?;
        self.report.parameters = args.iter().map(|(k, v)| (k.clone(), format_parameter_value(v))).collect();

        if let Some(ib) = loaded.config.image_builder.as_ref().filter(|ib| !ib.images.is_empty()) {
            self.stage(ReportStage::BuildingImages, Stage::BuildingImages, format!("{} image(s)", ib.images.len()))
                .await?;
            let builds = self.s.images.as_ref().ok_or_else(|| {
                Failure::new(
                    "this bot cannot build images",
                    "The repository declares images under `image_builder.images`, but the bot has no \
                     `image_builder` configured. Ask the bot's operators to configure one.",
                )
            })?;
            if !builds.allows_registry(&ib.container_registry_uri) {
                return Err(Failure::new(
                    "registry not allowed",
                    format!(
                        "`image_builder.container_registry_uri` `{}` is not one of the registries this bot pushes to",
                        ib.container_registry_uri
                    ),
                ));
            }
            let specs = ib.image_specs();
            let built = builds
                .build(&workdir.0, &ib.build_args, &specs, &kfops_core::progress::NoProgress)
                .await
                .map_err(|e| Failure::from_error("building images", &e))?;
            let pin =
                kfops_kubeflow::image::pin::pin_images(&mut compiled.job.spec, &built, &ib.container_registry_uri);
            for w in pin.warnings {
                self.report.problems.push(Problem { error: false, summary: "image not pinned".into(), detail: w });
            }
            compiled.text = compiled.job.to_yaml_string();
        }

        self.stage(ReportStage::Uploading, Stage::Uploading, "publishing".into()).await?;
        let repository = format!("{}", self.pr.repo);
        let info = SourceInfo {
            repository: Some(repository),
            branch: Some(pr.head_ref.clone()),
            pull_request: Some(self.pr.number),
            commit: Some(sha.to_owned()),
        };
        let name = VersionName::for_build(&info, false, &compiled.text);
        let version = self
            .s
            .backend
            .publish(
                &CompiledPipeline {
                    name: pipeline.name.clone(),
                    description: pipeline.description.clone(),
                    spec_yaml: compiled.text.clone(),
                },
                &name,
                &info,
            )
            .await
            .map_err(|e| Failure::from_error("publishing the pipeline", &e))?;
        let (id, saved) = (self.id, format!("{}/{}", version.pipeline_id, version.version_id));
        self.s.ledger(move |s| s.set_pipeline_version(id, &saved)).await?;
        self.s
            .record(
                self.id,
                Stage::Uploading,
                CommandState::InProgress,
                format!("version {} ({})", version.name, if version.created { "published" } else { "reused" }),
            )
            .await?;
        if self.report.run_url.is_none() {
            self.report.run_url.clone_from(&version.web_url);
        }
        Ok(Built { version, args, experiment: pipeline.experiment_name.clone(), pipeline_name: pipeline.name.clone() })
    }

    /// Follow a run to its end, keeping the status comment current.
    async fn watch(&mut self, run: RunId) -> Result<bool, Failure> {
        self.slot.release();
        let mut last_shown = String::new();
        let mut failures = 0u32;
        loop {
            let info = match self.s.backend.run(&run).await {
                Ok(info) => info,
                Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) && failures < 30 => {
                    failures += 1;
                    tokio::time::sleep(self.s.poll_interval * failures.min(6)).await;
                    continue;
                }
                Err(e) => return Err(Failure::from_error(&format!("following run {run}"), &e)),
            };
            failures = 0;
            if self.report.run_url.is_none() || self.report.parameters.is_empty() {
                self.report.run_url.clone_from(&info.web_url);
                if self.report.parameters.is_empty() {
                    self.report.parameters =
                        info.parameters.iter().map(|(k, v)| (k.clone(), format_parameter_value(v))).collect();
                }
            }
            if info.state.is_terminal() {
                return Ok(self.conclude(&info));
            }
            let summary = progress_line(&info);
            if summary != last_shown {
                self.report.stage = ReportStage::Running;
                self.report.progress = Some(summary.clone());
                self.show().await?;
                last_shown = summary;
            }
            tokio::select! {
                () = tokio::time::sleep(self.s.poll_interval) => {}
                _ = self.stop.changed() => {
                    // Shutting down: the run goes on; the next start watches it again.
                    return Err(Failure {
                        summary: "the bot is restarting".into(),
                        detail: format!("run {run} keeps running and will be followed again"),
                        transient: true,
                    });
                }
            }
        }
    }

    /// Fold a finished run into the report.
    fn conclude(&mut self, info: &RunInfo) -> bool {
        for t in info.tasks.iter().filter(|t| t.state == kfops_core::pipeline::RunState::Failed) {
            self.report.problems.push(Problem {
                error: true,
                summary: format!("task `{}` failed", t.name),
                detail: t.error.clone().unwrap_or_else(|| "no error message from Kubeflow".into()),
            });
        }
        if !info.state.is_success()
            && let Some(e) = &info.error
        {
            self.report.problems.push(Problem {
                error: true,
                summary: format!("run {}", info.state),
                detail: e.clone(),
            });
        }
        self.report.metrics = info.outputs.iter().map(|(k, v)| (k.clone(), format_parameter_value(v))).collect();
        self.report.outcome = Some(Outcome {
            succeeded: info.state.is_success(),
            state: info.state.to_string(),
            duration: Duration::ZERO,
        });
        info.state.is_success()
    }

    /// Record the final state and show it.
    async fn finish(&mut self, succeeded: bool) -> Result<&'static str, Failure> {
        let elapsed_ms = u64::try_from((now_ms() - self.created_ms).max(0)).unwrap_or(0);
        let duration = Duration::from_millis(elapsed_ms).max(self.started.elapsed());
        let state = self
            .report
            .outcome
            .as_ref()
            .map_or_else(|| if succeeded { "SUCCEEDED".to_owned() } else { "FAILED".to_owned() }, |o| o.state.clone());
        self.report.outcome = Some(Outcome { succeeded, state: state.clone(), duration });
        if succeeded || self.report.stage == ReportStage::Running {
            // A failed build keeps its stage, so the comment shows where it stopped.
            self.report.stage = ReportStage::Finished;
        }
        // Show first, then record: if the bot dies in between, the resumed
        // command edits the same comment again rather than losing it.
        self.show().await?;
        let final_state = if succeeded { CommandState::Succeeded } else { CommandState::Failed };
        self.s.record(self.id, Stage::Finished, final_state, state).await?;
        Ok(if succeeded { "succeeded" } else { "failed" })
    }
}

/// What the build step produced.
struct Built {
    version: PipelineVersion,
    args: BTreeMap<String, serde_json::Value>,
    experiment: String,
    pipeline_name: String,
}

/// `3/5 tasks done, running: train` style summary.
fn progress_line(info: &RunInfo) -> String {
    let done = info.tasks.iter().filter(|t| t.state.is_terminal()).count();
    let running: Vec<&str> = info
        .tasks
        .iter()
        .filter(|t| t.state == kfops_core::pipeline::RunState::Running)
        .map(|t| t.name.as_str())
        .collect();
    let mut line = format!("run {}: {done}/{} tasks done", info.state, info.tasks.len());
    if !running.is_empty() {
        line.push_str(", running: ");
        line.push_str(&running.join(", "));
    }
    line
}
