//! Who may run which command: the authorization policy.
//!
//! The policy comes from the **bot's** configuration, never from files in the
//! pull request (a PR could otherwise grant itself rights). Each command
//! needs a minimum repository permission, as GitHub's collaborator-permission
//! API reports it, or membership in a list of named users; fork and draft
//! PRs are refused unless the policy allows them. [`Policy::decide`] is pure:
//! the worker fetches the facts and reports the [`Decision`] in the PR.

use serde::Deserialize;

use kfops_core::CommandKind;
use kfops_core::scm::{Permission, PullRequest};

/// The rule for one command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Minimum permission on the repository.
    pub min_permission: Permission,
    /// Users allowed regardless of their permission (logins, case-insensitive).
    #[serde(default)]
    pub users: Vec<String>,
}

impl Rule {
    fn at_least(min_permission: Permission) -> Self {
        Rule { min_permission, users: Vec::new() }
    }
}

/// The authorization policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// `/build`.
    pub build: Rule,
    /// `/run`.
    pub run: Rule,
    /// `/build_run`.
    pub build_run: Rule,
    /// `/deploy`.
    pub deploy: Rule,
    /// `/staging_deploy`.
    pub staging_deploy: Rule,
    /// Act on PRs whose head lives in a fork (their code runs with the bot's credentials).
    pub allow_forks: bool,
    /// Act on draft PRs.
    pub allow_drafts: bool,
}

impl Default for Policy {
    /// `write` for build and run commands, `maintain` for deployments; forks and drafts refused.
    fn default() -> Self {
        Policy {
            build: Rule::at_least(Permission::Write),
            run: Rule::at_least(Permission::Write),
            build_run: Rule::at_least(Permission::Write),
            deploy: Rule::at_least(Permission::Maintain),
            staging_deploy: Rule::at_least(Permission::Write),
            allow_forks: false,
            allow_drafts: false,
        }
    }
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused; the message is posted in the PR, politely, and says what would be needed.
    Deny(String),
}

fn permission_name(p: Permission) -> &'static str {
    match p {
        Permission::None => "none",
        Permission::Read => "read",
        Permission::Triage => "triage",
        Permission::Write => "write",
        Permission::Maintain => "maintain",
        Permission::Admin => "admin",
    }
}

impl Policy {
    /// The rule for `kind`.
    pub fn rule(&self, kind: CommandKind) -> &Rule {
        match kind {
            CommandKind::Build => &self.build,
            CommandKind::Run => &self.run,
            CommandKind::BuildRun => &self.build_run,
            CommandKind::Deploy => &self.deploy,
            CommandKind::StagingDeploy => &self.staging_deploy,
        }
    }

    /// May `user`, whose permission on the repository is `permission`, run `kind` on `pr`?
    pub fn decide(&self, kind: CommandKind, user: &str, permission: Permission, pr: &PullRequest) -> Decision {
        let command = format!("/{}", kind.name());
        if !pr.is_open {
            return Decision::Deny(format!("`{command}` only runs on open pull requests; reopen this one first."));
        }
        if pr.is_fork && !self.allow_forks {
            return Decision::Deny(format!(
                "`{command}` is not run for pull requests from forks: their code would run with this bot's \
                 credentials. A maintainer can push the branch to this repository and open the PR from there."
            ));
        }
        if pr.is_draft && !self.allow_drafts {
            return Decision::Deny(format!(
                "`{command}` is not run on draft pull requests; mark the PR ready for review and comment again."
            ));
        }
        let rule = self.rule(kind);
        if permission >= rule.min_permission || rule.users.iter().any(|u| u.eq_ignore_ascii_case(user)) {
            return Decision::Allow;
        }
        Decision::Deny(format!(
            "Sorry @{user}, `{command}` needs `{}` permission on this repository (you have `{}`). \
             Ask a maintainer to run it or to grant you access.",
            permission_name(rule.min_permission),
            permission_name(permission)
        ))
    }
}
