//! GitHub webhook deliveries → ChatOps commands.
//!
//! Order of checks, each one cheap and each one final:
//!
//! 1. `X-Hub-Signature-256` against every configured secret (constant time);
//!    anything else is [`ErrorKind::Unauthenticated`] and the caller answers
//!    401 without storing anything.
//! 2. `X-GitHub-Delivery` must be present (it is the deduplication key).
//! 3. Only `issue_comment` / `created` on a **pull request** of an
//!    allowlisted repository, written by a human who is not the bot, is
//!    considered; everything else is [`WebhookOutcome::Ignored`] with a reason
//!    (the caller answers 2xx so GitHub does not retry).
//! 4. The comment body goes through [`kfops_core::parse_comment`]: no command
//!    line is ignored, a valid one becomes [`WebhookOutcome::Command`], a bad
//!    one [`WebhookOutcome::Invalid`] so the author can be told why.
//!
//! Only the fields used are deserialised; unknown fields are ignored, so new
//! GitHub payload fields never break the bot.

use serde::Deserialize;

use kfops_core::scm::{ChatOpsEvent, CommentId, CommentRef, PrRef, RepoRef, WebhookOutcome};
use kfops_core::{Error, ErrorKind, Result, WebhookVerifier, parse_comment};

use crate::signature::SignatureVerifier;

/// Header carrying the event name.
pub const EVENT_HEADER: &str = "X-GitHub-Event";
/// Header carrying the unique delivery id.
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";
/// Header carrying the HMAC-SHA256 signature.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Which repositories the bot acts for: `owner/name` or `owner/*`, compared
/// case-insensitively as GitHub does. An empty allowlist allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoAllowlist {
    entries: Vec<(String, Option<String>)>,
}

impl RepoAllowlist {
    /// Parse entries such as `acme/churn-model` or `acme/*`.
    ///
    /// Errors name the entry and the expected form.
    pub fn new<I, S>(entries: I) -> std::result::Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            let Some((owner, name)) = entry.split_once('/') else {
                return Err(format!("repository allowlist entry `{entry}` is not `owner/name` or `owner/*`"));
            };
            if !valid(owner) || !(name == "*" || valid(name)) {
                return Err(format!(
                    "repository allowlist entry `{entry}` is not `owner/name` or `owner/*` \
                     (letters, digits, `-`, `_` and `.` only)"
                ));
            }
            let name = (name != "*").then(|| name.to_ascii_lowercase());
            parsed.push((owner.to_ascii_lowercase(), name));
        }
        Ok(RepoAllowlist { entries: parsed })
    }

    /// Whether `repo` is allowed.
    pub fn allows(&self, repo: &RepoRef) -> bool {
        self.entries.iter().any(|(owner, name)| {
            owner.eq_ignore_ascii_case(&repo.owner) && name.as_ref().is_none_or(|n| n.eq_ignore_ascii_case(&repo.name))
        })
    }
}

/// The GitHub [`WebhookVerifier`]: signature check, then filtering and parsing.
#[derive(Debug, Clone)]
pub struct GithubWebhooks {
    signatures: SignatureVerifier,
    allowlist: RepoAllowlist,
    bot_logins: Vec<String>,
}

impl GithubWebhooks {
    /// A verifier accepting deliveries signed with any of the verifier's
    /// secrets, for repositories in `allowlist`.
    pub fn new(signatures: SignatureVerifier, allowlist: RepoAllowlist) -> Self {
        GithubWebhooks { signatures, allowlist, bot_logins: Vec::new() }
    }

    /// Logins whose comments are never commands: the bot's own account
    /// (`my-app[bot]` for a GitHub App, the user for a token). Comments by any
    /// account of type `Bot` are ignored regardless.
    pub fn with_bot_logins<I, S>(mut self, logins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.bot_logins = logins.into_iter().map(Into::into).collect();
        self
    }
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    action: String,
    issue: Issue,
    comment: Comment,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    /// Present (an object) only when the issue is a pull request.
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    body: Option<String>,
    user: User,
}

#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    name: String,
    owner: Owner,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

fn ignored(delivery_id: &str, reason: impl Into<String>) -> WebhookOutcome {
    WebhookOutcome::Ignored { delivery_id: Some(delivery_id.to_owned()), reason: reason.into() }
}

impl WebhookVerifier for GithubWebhooks {
    fn verify_and_parse(&self, header: &dyn Fn(&str) -> Option<String>, body: &[u8]) -> Result<WebhookOutcome> {
        self.signatures
            .verify(header(SIGNATURE_HEADER).as_deref(), body)
            .map_err(|e| Error::new(ErrorKind::Unauthenticated, format!("webhook refused: {e}")).with_source(e))?;
        let delivery_id = header(DELIVERY_HEADER).map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
        let Some(delivery_id) = delivery_id else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("webhook has no `{DELIVERY_HEADER}` header; it is required to deduplicate redeliveries"),
            ));
        };
        let event = header(EVENT_HEADER).unwrap_or_default();
        if event != "issue_comment" {
            let what = if event.is_empty() { "no event header".to_owned() } else { format!("`{event}` event") };
            return Ok(ignored(&delivery_id, format!("{what}: only `issue_comment` carries commands")));
        }
        let payload: IssueCommentPayload = serde_json::from_slice(body).map_err(|e| {
            Error::new(ErrorKind::InvalidInput, format!("`issue_comment` payload is not what GitHub sends: {e}"))
                .with_source(e)
        })?;
        if payload.action != "created" {
            return Ok(ignored(&delivery_id, format!("comment {}: only new comments carry commands", payload.action)));
        }
        if payload.issue.pull_request.is_none() {
            return Ok(ignored(&delivery_id, "comment on an issue, not a pull request"));
        }
        let repo = RepoRef { owner: payload.repository.owner.login, name: payload.repository.name };
        if !self.allowlist.allows(&repo) {
            return Ok(ignored(&delivery_id, format!("repository {repo} is not in the allowlist")));
        }
        let author = payload.comment.user.login;
        if payload.comment.user.kind.as_deref() == Some("Bot")
            || self.bot_logins.iter().any(|b| b.eq_ignore_ascii_case(&author))
        {
            return Ok(ignored(&delivery_id, format!("comment by bot account {author}")));
        }
        let pr = PrRef { repo, number: payload.issue.number };
        let comment = CommentRef { pr, id: CommentId(payload.comment.id.to_string()) };
        match parse_comment(payload.comment.body.as_deref().unwrap_or_default()) {
            Ok(None) => Ok(ignored(&delivery_id, "comment has no command line")),
            Ok(Some(command)) => Ok(WebhookOutcome::Command(ChatOpsEvent {
                delivery_id,
                pr: comment.pr,
                comment: comment.id,
                author,
                installation: payload.installation.map(|i| i.id),
                command,
            })),
            Err(error) => Ok(WebhookOutcome::Invalid { delivery_id, comment, author, error }),
        }
    }
}
