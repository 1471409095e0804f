//! GitHub etiquette: when to retry, how long to wait, how fast to create content.
//!
//! Pure decisions (no clock, no randomness of its own) so every rule is
//! tested on a table; the HTTP client applies them.
//!
//! * `5xx` and connection errors: exponential backoff with jitter, capped.
//! * `403`/`429` with `Retry-After`: wait exactly that (secondary rate limit).
//! * `403`/`429` with `x-ratelimit-remaining: 0`: wait until
//!   `x-ratelimit-reset` (primary rate limit), plus a second of slack.
//! * `403`/`429` with neither: a secondary limit without a hint; GitHub asks
//!   for at least a minute, then exponentially longer; a `403` that is not a
//!   rate limit (a permission problem) is final.
//! * other `4xx`: never retried (the request itself is wrong).
//! * waits longer than the policy's `max_wait`, or too many attempts: give up
//!   with a message that says until when the limit holds.
//!
//! These rules assume the request may be repeated. The client does not repeat
//! a `POST` after a `5xx` or a connection lost after sending (the outcome is
//! unknown, a repeat could duplicate a comment); for those only the rate-limit
//! rules apply.
//!
//! [`Pacer`] spaces content-creating requests (comments, reactions, labels)
//! at least a second apart, as GitHub's best practices ask.

use std::time::{Duration, Instant};

/// What to do after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The response is final (success or a non-retryable error).
    Done,
    /// Send the same request again after this long.
    RetryAfter(Duration),
    /// Stop retrying; the message says why.
    GiveUp(String),
}

/// Retry limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    /// First backoff for `5xx`.
    pub base: Duration,
    /// Largest backoff for `5xx`.
    pub max_backoff: Duration,
    /// Longest single wait for a rate limit before giving up.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// The response facts a decision needs. `None` status means the connection failed.
#[derive(Clone, Copy)]
pub struct Response<'a> {
    /// HTTP status, or `None` for a transport error.
    pub status: Option<u16>,
    /// Header lookup (case-insensitive names).
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The start of the response body (GitHub says "secondary rate limit" there).
    pub body: &'a str,
}

impl RetryPolicy {
    /// Decide after attempt number `attempt` (1 for the first) got `response`.
    ///
    /// `now_epoch` is the current Unix time in seconds (for `x-ratelimit-reset`),
    /// `jitter` a number in `[0, 1)` from the caller's random source.
    pub fn decide(&self, attempt: u32, response: Response<'_>, now_epoch: u64, jitter: f64) -> Decision {
        let header = |name: &str| (response.header)(name).map(|v| v.trim().to_owned());
        let wait = match response.status {
            Some(s) if (200..400).contains(&s) => return Decision::Done,
            None | Some(500..=599) => self.backoff(attempt, jitter),
            Some(403 | 429) => {
                if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
                    Duration::from_secs(secs)
                } else if header("x-ratelimit-remaining").as_deref() == Some("0") {
                    match header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
                        Some(reset) => Duration::from_secs(reset.saturating_sub(now_epoch) + 1),
                        None => Duration::from_secs(60),
                    }
                } else if response.status == Some(429) || response.body.to_ascii_lowercase().contains("rate limit") {
                    // A secondary limit without a hint: at least a minute, then longer.
                    Duration::from_secs(60).saturating_mul(1 << attempt.saturating_sub(1).min(4))
                } else {
                    // A plain 403 is a permission problem: retrying will not help.
                    return Decision::Done;
                }
            }
            Some(_) => return Decision::Done,
        };
        if wait > self.max_wait {
            return Decision::GiveUp(format!(
                "GitHub rate limit: the next attempt would be in {} s, more than the {} s the bot waits; \
                 the command is retried when the limit resets",
                wait.as_secs(),
                self.max_wait.as_secs()
            ));
        }
        if attempt >= self.max_attempts {
            let what = response.status.map_or_else(|| "connection failures".to_owned(), |s| format!("HTTP {s}"));
            return Decision::GiveUp(format!("GitHub kept failing ({what}) after {attempt} attempts"));
        }
        Decision::RetryAfter(wait)
    }

    /// Exponential backoff with "equal jitter": half fixed, half random.
    fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max_backoff);
        exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// Spaces content-creating requests at least `gap` apart.
#[derive(Debug, Clone)]
pub struct Pacer {
    gap: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer allowing one request per `gap`.
    pub fn new(gap: Duration) -> Self {
        Pacer { gap, next: None }
    }

    /// Reserve the next slot at or after `now`; returns how long to wait for it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let slot = self.next.map_or(now, |n| n.max(now));
        self.next = Some(slot + self.gap);
        slot - now
    }
}
