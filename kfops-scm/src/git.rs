//! The local git checkout a build comes from: commit, branch, cleanliness.
//!
//! Uses the `git` command (no credentials are involved: it only reads the
//! local repository). Outside a repository, or without git, every field is
//! unknown and nothing fails: a build from a plain folder is still a build.

use std::path::Path;
use std::process::{Command, Stdio};

use kfops_core::pipeline::SourceInfo;

/// What `git` says about the checkout containing `dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkout {
    /// Commit, branch (and repository, when given) for version descriptions.
    pub source: SourceInfo,
    /// Whether tracked or untracked files differ from the commit.
    pub dirty: bool,
}

/// Inspect the checkout containing `dir`; `repository` (`owner/name`) is recorded as given.
///
/// Only changes inside `dir` (the project) count as dirty, and kfops's own
/// `.kfops/` run store never does.
pub fn inspect(dir: &Path, repository: Option<String>) -> Checkout {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD"]);
    let branch = git(dir, &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD");
    let dirty = commit.is_some()
        && git(
            dir,
            &[
                "status",
                "--porcelain",
                "--untracked-files=normal",
                "--",
                ".",
                ":(exclude).kfops",
                ":(exclude)**/.kfops/**",
            ],
        )
        .is_some_and(|s| !s.is_empty());
    Checkout { source: SourceInfo { repository, branch, pull_request: None, commit }, dirty }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
