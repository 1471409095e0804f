//! The durable inbox and command ledger (SQLite).
//!
//! An accepted command is committed here, keyed by the SCM's delivery id,
//! **before** the webhook is answered: a crash after the 2xx loses nothing,
//! and a redelivery of the same id is recognised and dropped. Every step a
//! command goes through is appended to its ledger entry; on restart
//! [`Store::unfinished`] lists what has to be resumed. The ledger, not
//! comment markers, answers "the last run of this PR" ([`Store::last_run`]).
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a committed
//! transaction survives a power loss, not only a process crash.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use kfops_core::scm::{ChatOpsEvent, CommentRef, PrRef};

use crate::error::StoreError;

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandState {
    /// Accepted, not started.
    Queued,
    /// A worker is on it.
    InProgress,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error (reported in the PR).
    Failed,
    /// Refused by the authorization policy (reported in the PR).
    Denied,
}

impl CommandState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::InProgress => "in_progress",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::Denied => "denied",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::InProgress, Self::Succeeded, Self::Failed, Self::Denied]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// Whether nothing more will happen to the command.
    pub fn is_final(self) -> bool {
        matches!(self, CommandState::Succeeded | CommandState::Failed | CommandState::Denied)
    }
}

/// A step of a command, as recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Accepted into the inbox.
    Queued,
    /// The commenter's permission was checked.
    Authorized,
    /// The PR head sha was pinned.
    Pinned,
    /// The status comment was posted.
    Reported,
    /// The pipeline is being compiled.
    Compiling,
    /// Images are being built.
    BuildingImages,
    /// The pipeline version is being uploaded.
    Uploading,
    /// The run was created and is being watched.
    Running,
    /// About to ask the backend to start a run (a crash right after leaves the run's fate unknown).
    StartingRun,
    /// A transient failure; the command is tried again later.
    Retrying,
    /// Checking the PR and the run before a deploy.
    Checking,
    /// Rolling a model out.
    Deploying,
    /// The rollout succeeded (the detail holds its outcome as JSON).
    Deployed,
    /// The PR was merged after a production deploy.
    Merged,
    /// The command finished (see the command's state).
    Finished,
}

impl Stage {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Authorized => "authorized",
            Stage::Pinned => "pinned",
            Stage::Reported => "reported",
            Stage::Compiling => "compiling",
            Stage::BuildingImages => "building_images",
            Stage::Uploading => "uploading",
            Stage::Running => "running",
            Stage::StartingRun => "starting_run",
            Stage::Retrying => "retrying",
            Stage::Checking => "checking",
            Stage::Deploying => "deploying",
            Stage::Deployed => "deployed",
            Stage::Merged => "merged",
            Stage::Finished => "finished",
        }
    }
}

/// What [`Store::accept`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// New: committed under this ledger id.
    New(i64),
    /// This delivery id was accepted before (a redelivery): nothing was stored.
    Duplicate,
}

/// One command of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Ledger id (increasing in acceptance order).
    pub id: i64,
    /// The event as accepted.
    pub event: ChatOpsEvent,
    /// Current state.
    pub state: CommandState,
    /// The pinned PR head sha, once pinned.
    pub sha: Option<String>,
    /// The bot's status comment, once posted.
    pub status_comment: Option<String>,
    /// The pipeline version uploaded for it, if any.
    pub pipeline_version: Option<String>,
    /// The backend run id, once a run was created.
    pub run_id: Option<String>,
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Position within the command (0, 1, …).
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The stage's stored spelling.
    pub stage: String,
    /// Free-form detail (sha, run id, error summary).
    pub detail: String,
}

/// A deploy as it starts (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployStart {
    /// The `/deploy` or `/staging_deploy` command.
    pub command_id: i64,
    /// `production` or `staging`.
    pub environment: String,
    /// The PR it was requested on.
    pub pr: PrRef,
    /// The commit the deployed run was built from.
    pub sha: String,
    /// The run whose model is deployed.
    pub run_id: String,
    /// Who asked.
    pub requested_by: String,
}

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeployEnd {
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// The InferenceService.
    pub service: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// The revision serving before.
    pub previous_revision: Option<String>,
    /// The revision serving after (on failure: after the rollback).
    pub new_revision: Option<String>,
    /// What happened, in a line or a few.
    pub detail: String,
}

/// One deploy of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeployRecord {
    /// The command's ledger id.
    pub command_id: i64,
    /// `production` or `staging`.
    pub environment: String,
    /// `owner/name`.
    pub repo: String,
    /// The PR number.
    pub pr_number: u64,
    /// The commit the model's run was built from.
    pub sha: String,
    /// The run whose model was deployed.
    pub run_id: String,
    /// Who asked.
    pub requested_by: String,
    /// When it started (Unix ms).
    pub started_at_ms: i64,
    /// When it ended (Unix ms), if it has.
    pub finished_at_ms: Option<i64>,
    /// `succeeded` / `failed`, once ended.
    pub outcome: Option<String>,
    /// The InferenceService.
    pub service: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// The revision serving before.
    pub previous_revision: Option<String>,
    /// The revision serving after.
    pub new_revision: Option<String>,
    /// What happened.
    pub detail: Option<String>,
}

/// The state store. Cheap to share behind an `Arc`; calls serialise on one connection.
pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS commands (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      TEXT NOT NULL UNIQUE,
    repo             TEXT NOT NULL,
    pr_number        INTEGER NOT NULL,
    event            TEXT NOT NULL,
    state            TEXT NOT NULL,
    sha              TEXT,
    status_comment   TEXT,
    pipeline_version TEXT,
    run_id           TEXT,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_by_pr ON commands (repo, pr_number, id);
CREATE INDEX IF NOT EXISTS commands_by_state ON commands (state, id);
CREATE TABLE IF NOT EXISTS rejections (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL UNIQUE,
    comment       TEXT NOT NULL,
    author        TEXT NOT NULL,
    error         TEXT NOT NULL,
    reported      INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deploys (
    command_id        INTEGER PRIMARY KEY REFERENCES commands (id),
    environment       TEXT NOT NULL,
    repo              TEXT NOT NULL,
    pr_number         INTEGER NOT NULL,
    sha               TEXT NOT NULL,
    run_id            TEXT NOT NULL,
    requested_by      TEXT NOT NULL,
    started_at_ms     INTEGER NOT NULL,
    finished_at_ms    INTEGER,
    outcome           TEXT,
    service           TEXT,
    namespace         TEXT,
    previous_revision TEXT,
    new_revision      TEXT,
    detail            TEXT
);
CREATE INDEX IF NOT EXISTS deploys_by_repo ON deploys (repo, started_at_ms);
CREATE TABLE IF NOT EXISTS steps (
    command_id INTEGER NOT NULL REFERENCES commands (id),
    seq        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    stage      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    PRIMARY KEY (command_id, seq)
);
";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// PR numbers are far below `i64::MAX`; saturate rather than wrap if one is not.
fn pr_number(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn q(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

impl Store {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_owned(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied
        // (SQLite rolls it back), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commit `event` (and its first step) durably, unless its delivery id was seen before.
    pub fn accept(&self, event: &ChatOpsEvent) -> Result<Accepted, StoreError> {
        let json = serde_json::to_string(event).map_err(|source| StoreError::Corrupt { id: 0, source })?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("starting a transaction"))?;
        let now = now_ms();
        let inserted = tx
            .execute(
                "INSERT INTO commands (delivery_id, repo, pr_number, event, state, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5) ON CONFLICT (delivery_id) DO NOTHING",
                params![event.delivery_id, event.pr.repo.to_string(), pr_number(event.pr.number), json, now],
            )
            .map_err(q("inserting a command"))?;
        if inserted == 0 {
            return Ok(Accepted::Duplicate);
        }
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO steps (command_id, seq, at_ms, stage, detail) VALUES (?1, 0, ?2, ?3, ?4)",
            params![id, now, Stage::Queued.as_str(), event.command.to_string()],
        )
        .map_err(q("recording the first step"))?;
        tx.commit().map_err(q("committing a command"))?;
        Ok(Accepted::New(id))
    }

    /// Commit a comment whose command could not be parsed, so its author can be
    /// told why, unless its delivery id was seen before.
    pub fn accept_rejection(
        &self,
        delivery_id: &str,
        comment: &CommentRef,
        author: &str,
        error: &str,
    ) -> Result<Accepted, StoreError> {
        let json = serde_json::to_string(comment).map_err(|source| StoreError::Corrupt { id: 0, source })?;
        let conn = self.conn();
        let known = conn
            .query_row("SELECT 1 FROM commands WHERE delivery_id = ?1", params![delivery_id], |_| Ok(()))
            .optional()
            .map_err(q("looking up a delivery"))?;
        if known.is_some() {
            return Ok(Accepted::Duplicate);
        }
        let inserted = conn
            .execute(
                "INSERT INTO rejections (delivery_id, comment, author, error, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (delivery_id) DO NOTHING",
                params![delivery_id, json, author, error, now_ms()],
            )
            .map_err(q("inserting a rejection"))?;
        Ok(if inserted == 0 { Accepted::Duplicate } else { Accepted::New(conn.last_insert_rowid()) })
    }

    /// Rejections not yet reported in their PR, oldest first: `(id, comment, author, error)`.
    pub fn unreported_rejections(&self) -> Result<Vec<(i64, CommentRef, String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, comment, author, error FROM rejections WHERE reported = 0 ORDER BY id")
            .map_err(q("listing rejections"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?)))
            .map_err(q("listing rejections"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, comment, author, error) = row.map_err(q("listing rejections"))?;
            let comment = serde_json::from_str(&comment).map_err(|source| StoreError::Corrupt { id, source })?;
            out.push((id, comment, author, error));
        }
        Ok(out)
    }

    /// Mark rejection `id` as reported in its PR.
    pub fn mark_rejection_reported(&self, id: i64) -> Result<(), StoreError> {
        match self.conn().execute("UPDATE rejections SET reported = 1 WHERE id = ?1", params![id]) {
            Ok(0) => Err(StoreError::UnknownCommand(id)),
            Ok(_) => Ok(()),
            Err(source) => Err(StoreError::Query { what: "marking a rejection reported", source }),
        }
    }

    /// How many commands are queued or in progress (the queue depth).
    pub fn unfinished_count(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM commands WHERE state IN ('queued', 'in_progress')", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(q("counting unfinished commands"))
    }

    /// Append a step to command `id` and set its state.
    pub fn record(&self, id: i64, stage: Stage, state: CommandState, detail: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("starting a transaction"))?;
        let now = now_ms();
        let updated = tx
            .execute(
                "UPDATE commands SET state = ?2, updated_at_ms = ?3 WHERE id = ?1",
                params![id, state.as_str(), now],
            )
            .map_err(q("updating a command"))?;
        if updated == 0 {
            return Err(StoreError::UnknownCommand(id));
        }
        tx.execute(
            "INSERT INTO steps (command_id, seq, at_ms, stage, detail)
             SELECT ?1, COALESCE(MAX(seq) + 1, 0), ?2, ?3, ?4 FROM steps WHERE command_id = ?1",
            params![id, now, stage.as_str(), detail],
        )
        .map_err(q("recording a step"))?;
        tx.commit().map_err(q("committing a step"))
    }

    /// Remember the pinned head sha of command `id`.
    pub fn set_sha(&self, id: i64, sha: &str) -> Result<(), StoreError> {
        self.set(id, "UPDATE commands SET sha = ?2 WHERE id = ?1", sha, "pinning the sha")
    }

    /// Remember the status comment of command `id`.
    pub fn set_status_comment(&self, id: i64, comment: &str) -> Result<(), StoreError> {
        self.set(id, "UPDATE commands SET status_comment = ?2 WHERE id = ?1", comment, "saving the status comment")
    }

    /// Remember the pipeline version uploaded for command `id`.
    pub fn set_pipeline_version(&self, id: i64, version: &str) -> Result<(), StoreError> {
        self.set(id, "UPDATE commands SET pipeline_version = ?2 WHERE id = ?1", version, "saving the pipeline version")
    }

    /// Remember the run created for command `id`.
    pub fn set_run_id(&self, id: i64, run_id: &str) -> Result<(), StoreError> {
        self.set(id, "UPDATE commands SET run_id = ?2 WHERE id = ?1", run_id, "saving the run id")
    }

    fn set(&self, id: i64, sql: &str, value: &str, what: &'static str) -> Result<(), StoreError> {
        match self.conn().execute(sql, params![id, value]).map_err(q(what))? {
            0 => Err(StoreError::UnknownCommand(id)),
            _ => Ok(()),
        }
    }

    /// Command `id`.
    pub fn command(&self, id: i64) -> Result<CommandRecord, StoreError> {
        self.query_commands("SELECT * FROM commands WHERE id = ?1", params![id], "reading a command")?
            .pop()
            .ok_or(StoreError::UnknownCommand(id))
    }

    /// Every command not yet finished, oldest first: what a restarted bot resumes.
    pub fn unfinished(&self) -> Result<Vec<CommandRecord>, StoreError> {
        self.query_commands(
            "SELECT * FROM commands WHERE state IN ('queued', 'in_progress') ORDER BY id",
            [],
            "listing unfinished commands",
        )
    }

    /// The most recent command of `pr` that produced a succeeded run (what `/deploy` deploys).
    pub fn last_run(&self, pr: &PrRef) -> Result<Option<CommandRecord>, StoreError> {
        Ok(self
            .query_commands(
                "SELECT * FROM commands WHERE repo = ?1 AND pr_number = ?2 AND state = 'succeeded'
                 AND run_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![pr.repo.to_string(), pr_number(pr.number)],
                "finding the last run of a PR",
            )?
            .pop())
    }

    /// The steps of command `id`, in order.
    pub fn steps(&self, id: i64) -> Result<Vec<StepRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, at_ms, stage, detail FROM steps WHERE command_id = ?1 ORDER BY seq")
            .map_err(q("reading steps"))?;
        let rows = stmt
            .query_map(params![id], |r| {
                Ok(StepRecord { seq: r.get(0)?, at_ms: r.get(1)?, stage: r.get(2)?, detail: r.get(3)? })
            })
            .map_err(q("reading steps"))?;
        rows.collect::<Result<_, _>>().map_err(q("reading steps"))
    }

    fn query_commands(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        what: &'static str,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).map_err(q(what))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>("id")?,
                    r.get::<_, String>("event")?,
                    r.get::<_, String>("state")?,
                    r.get::<_, Option<String>>("sha")?,
                    r.get::<_, Option<String>>("status_comment")?,
                    r.get::<_, Option<String>>("pipeline_version")?,
                    r.get::<_, Option<String>>("run_id")?,
                ))
            })
            .map_err(q(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, event, state, sha, status_comment, pipeline_version, run_id) = row.map_err(q(what))?;
            let event = serde_json::from_str(&event).map_err(|source| StoreError::Corrupt { id, source })?;
            let state = CommandState::parse(&state).ok_or(StoreError::UnknownCommand(id))?;
            out.push(CommandRecord { id, event, state, sha, status_comment, pipeline_version, run_id });
        }
        Ok(out)
    }

    /// The succeeded command of `pr` that recorded run `run_id`, if any
    /// (`/deploy --run-id` may only name a run of the same PR).
    pub fn run_of_pr(&self, pr: &PrRef, run_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        Ok(self
            .query_commands(
                "SELECT * FROM commands WHERE repo = ?1 AND pr_number = ?2 AND state = 'succeeded'
                 AND run_id = ?3 ORDER BY id DESC LIMIT 1",
                params![pr.repo.to_string(), pr_number(pr.number), run_id],
                "finding a run of a PR",
            )?
            .pop())
    }

    /// Record that command `start.command_id` is deploying (idempotent: a resumed deploy keeps its row).
    pub fn start_deploy(&self, start: &DeployStart) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO deploys (command_id, environment, repo, pr_number, sha, run_id, requested_by, started_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (command_id) DO NOTHING",
                params![
                    start.command_id,
                    start.environment,
                    start.pr.repo.to_string(),
                    pr_number(start.pr.number),
                    start.sha,
                    start.run_id,
                    start.requested_by,
                    now_ms()
                ],
            )
            .map(drop)
            .map_err(q("recording a deploy"))
    }

    /// Record how deploy `command_id` ended.
    pub fn finish_deploy(&self, command_id: i64, end: &DeployEnd) -> Result<(), StoreError> {
        match self
            .conn()
            .execute(
                "UPDATE deploys SET finished_at_ms = ?2, outcome = ?3, service = ?4, namespace = ?5,
                 previous_revision = ?6, new_revision = ?7, detail = ?8 WHERE command_id = ?1",
                params![
                    command_id,
                    now_ms(),
                    end.outcome,
                    end.service,
                    end.namespace,
                    end.previous_revision,
                    end.new_revision,
                    end.detail
                ],
            )
            .map_err(q("recording a deploy's end"))?
        {
            0 => Err(StoreError::UnknownCommand(command_id)),
            _ => Ok(()),
        }
    }

    /// The deploy audit trail, newest first; only `repo` (`owner/name`) when given.
    pub fn audit(&self, repo: Option<&str>, limit: u32) -> Result<Vec<DeployRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT command_id, environment, repo, pr_number, sha, run_id, requested_by, started_at_ms,
                 finished_at_ms, outcome, service, namespace, previous_revision, new_revision, detail
                 FROM deploys WHERE ?1 IS NULL OR repo = ?1 ORDER BY started_at_ms DESC, command_id DESC LIMIT ?2",
            )
            .map_err(q("reading the audit trail"))?;
        let rows = stmt
            .query_map(params![repo, limit], |r| {
                Ok(DeployRecord {
                    command_id: r.get(0)?,
                    environment: r.get(1)?,
                    repo: r.get(2)?,
                    pr_number: r.get::<_, i64>(3)?.try_into().unwrap_or(0),
                    sha: r.get(4)?,
                    run_id: r.get(5)?,
                    requested_by: r.get(6)?,
                    started_at_ms: r.get(7)?,
                    finished_at_ms: r.get(8)?,
                    outcome: r.get(9)?,
                    service: r.get(10)?,
                    namespace: r.get(11)?,
                    previous_revision: r.get(12)?,
                    new_revision: r.get(13)?,
                    detail: r.get(14)?,
                })
            })
            .map_err(q("reading the audit trail"))?;
        rows.collect::<Result<_, _>>().map_err(q("reading the audit trail"))
    }

    /// Whether `delivery_id` has been accepted before (as a command or a rejection).
    pub fn seen(&self, delivery_id: &str) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM commands WHERE delivery_id = ?1 UNION ALL SELECT 1 FROM rejections WHERE delivery_id = ?1",
                params![delivery_id],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(q("looking up a delivery"))
    }
}
