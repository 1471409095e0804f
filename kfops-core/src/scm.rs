//! Source-control vocabulary: repositories, pull requests, comments, permissions.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::Command;

/// A repository on an SCM host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoRef {
    /// Owner (user, organisation or group path).
    pub owner: String,
    /// Repository name.
    pub name: String,
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A pull (merge) request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrRef {
    /// The repository the PR targets.
    pub repo: RepoRef,
    /// The PR number (GitHub number, GitLab iid, Gitea index).
    pub number: u64,
}

impl fmt::Display for PrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.repo, self.number)
    }
}

/// A full commit hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sha(pub String);

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A comment id, as the SCM spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommentId(pub String);

/// A comment on a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommentRef {
    /// The PR it was written on.
    pub pr: PrRef,
    /// Its id.
    pub id: CommentId,
}

/// What the SCM knows about a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Which PR.
    pub pr: PrRef,
    /// Title.
    pub title: String,
    /// Login of the author.
    pub author: String,
    /// Current head commit.
    pub head_sha: Sha,
    /// Head branch name.
    pub head_ref: String,
    /// The repository the head lives in (differs from `pr.repo` for forks).
    pub head_repo: RepoRef,
    /// Base branch name.
    pub base_ref: String,
    /// Whether the head lives in a fork.
    pub is_fork: bool,
    /// Whether the PR is a draft.
    pub is_draft: bool,
    /// Whether it is open.
    pub is_open: bool,
    /// Mergeability; `None` while the SCM is still computing it.
    pub mergeable: Option<bool>,
    /// The SCM's finer merge state when it has one (GitHub's `mergeable_state`:
    /// `clean`, `unstable`, `has_hooks`, `behind`, `blocked` by branch
    /// protection, `dirty` with conflicts, `draft`, `unknown`).
    pub mergeable_state: Option<String>,
    /// Clone URL of the head repository (without credentials).
    pub clone_url: String,
}

/// A user's permission on a repository, ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// No access.
    None,
    /// Read.
    Read,
    /// Triage (GitHub).
    Triage,
    /// Write / push.
    Write,
    /// Maintain.
    Maintain,
    /// Admin / owner.
    Admin,
}

/// Reactions the bot puts on command comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reaction {
    /// 👀: seen, working on it.
    Eyes,
    /// 👍: done.
    PlusOne,
    /// 👎: refused.
    MinusOne,
    /// 😕: could not understand.
    Confused,
    /// 🚀: deployed.
    Rocket,
}

/// A PR label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Colour as 6 hex digits, used when the label has to be created.
    pub color: String,
}

/// A verified, parsed PR-comment command: what the bot queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatOpsEvent {
    /// Delivery id from the SCM (dedup key).
    pub delivery_id: String,
    /// The PR the comment was written on.
    pub pr: PrRef,
    /// The comment carrying the command.
    pub comment: CommentId,
    /// Login of the commenter.
    pub author: String,
    /// Installation / tenant id for multi-installation providers (GitHub Apps).
    pub installation: Option<u64>,
    /// The parsed command.
    pub command: Command,
}

/// What a webhook turned out to be after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A new command to run.
    Command(ChatOpsEvent),
    /// A command comment that failed to parse; the error should be reported on the PR.
    Invalid {
        /// Delivery id.
        delivery_id: String,
        /// The comment.
        comment: CommentRef,
        /// Who wrote it.
        author: String,
        /// Why it was rejected.
        error: crate::error::CommandError,
    },
    /// Verified, but nothing for us (edits, other events, non-command comments, our own comments).
    Ignored {
        /// Delivery id, when present.
        delivery_id: Option<String>,
        /// Why it is ignored (for logs and metrics).
        reason: String,
    },
}
