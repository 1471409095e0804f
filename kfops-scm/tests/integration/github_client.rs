//! The GitHub `ScmProvider` against the test GitHub server.

use std::time::Duration;

use kfops_core::scm::{CommentId, CommentRef, Label, Permission, PrRef, Reaction, RepoRef, Sha};
use kfops_core::{ErrorKind, ScmProvider};
use kfops_scm::github::client::{DEFAULT_FETCH_TIMEOUT, git_credential_env, git_failure_kind};
use kfops_scm::github::retry::RetryPolicy;
use kfops_scm::github::testserver::{Fault, TestGithub, TestPr};
use kfops_scm::github::{GithubAuth, GithubConfig, GithubProvider};

pub(crate) const TOKEN: &str = "ghp_kfopsTestToken0123456789";
pub(crate) const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Retries in milliseconds, no pacing to speak of: tests stay fast.
pub(crate) fn config(url: &str, auth: GithubAuth) -> GithubConfig {
    GithubConfig {
        api_url: url.into(),
        auth,
        retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_wait: Duration::from_secs(5),
        },
        pacing: Duration::from_millis(1),
        fetch_timeout: Duration::from_secs(60),
    }
}

pub(crate) async fn server() -> TestGithub {
    let gh = TestGithub::start().await;
    gh.add_repo("acme", "churn", "https://github.example.invalid/acme/churn.git");
    gh.use_token(TOKEN, "kfops-bot");
    gh
}

pub(crate) fn provider(gh: &TestGithub) -> GithubProvider {
    GithubProvider::new(config(&gh.url(), GithubAuth::Token(TOKEN.into()))).expect("provider")
}

pub(crate) fn repo() -> RepoRef {
    RepoRef { owner: "acme".into(), name: "churn".into() }
}

pub(crate) fn pr(number: u64) -> PrRef {
    PrRef { repo: repo(), number }
}

pub(crate) fn assert_clean(gh: &TestGithub) {
    let v = gh.violations();
    assert!(v.is_empty(), "OpenAPI violations: {v:#?}");
}

#[tokio::test]
async fn a_pull_request_is_read() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = provider(&gh).pull_request(&pr(7)).await.expect("pull_request");
    assert_eq!(p.head_sha.0, SHA);
    assert_eq!(p.author, "octocat");
    assert!(!p.is_fork && p.is_open && !p.is_draft);
    assert_eq!(p.mergeable, Some(true));
    assert_eq!(p.clone_url, "https://github.example.invalid/acme/churn.git");
    let provider = provider(&gh);
    assert_eq!((provider.kind(), provider.max_comment_chars()), ("github", Some(65_536)));
    assert_clean(&gh);
}

#[tokio::test]
async fn a_github_enterprise_api_root_keeps_its_path() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let ghes = GithubProvider::new(config(&format!("{}/api/v3/", gh.url()), GithubAuth::Token(TOKEN.into())))
        .expect("provider");
    assert_eq!(ghes.pull_request(&pr(7)).await.expect("pull_request").head_sha.0, SHA);
    assert!(ghes.post_comment(&pr(7), "hello").await.is_ok());
    let paths: Vec<String> = gh.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/api/v3/repos/acme/churn/pulls/7", "/api/v3/repos/acme/churn/issues/7/comments"]);
    assert_clean(&gh);
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How many requests of `method` went to a path starting with `prefix`, and their statuses.
fn statuses(gh: &TestGithub, method: &str, prefix: &str) -> Vec<u16> {
    gh.requests().into_iter().filter(|r| r.method == method && r.path.starts_with(prefix)).map(|r| r.status).collect()
}

#[tokio::test]
async fn forks_drafts_closed_and_unknown_mergeability_are_reported() {
    let gh = server().await;
    let mut fork = TestPr::new(8, SHA);
    fork.fork = true;
    fork.author = "mallory".into();
    fork.draft = true;
    fork.mergeable = None;
    gh.add_pr("acme", "churn", fork);
    let p = provider(&gh).pull_request(&pr(8)).await.expect("pull_request");
    assert!(p.is_fork && p.is_draft);
    assert_eq!(p.head_repo, RepoRef { owner: "mallory".into(), name: "churn".into() });
    assert_eq!(p.mergeable, None);
    assert_eq!(p.clone_url, "https://github.example.invalid/mallory/churn.git");
    assert_eq!((p.base_ref.as_str(), p.head_ref.as_str()), ("main", "feature-8"));
    provider(&gh).close(&pr(8)).await.expect("close");
    assert!(!provider(&gh).pull_request(&pr(8)).await.expect("pull_request").is_open);
    assert_eq!(gh.pr("acme", "churn", 8).state, "closed");
    assert_clean(&gh);
}

#[tokio::test]
async fn permissions_keep_maintain_and_triage_and_unknown_users_have_none() {
    let gh = server().await;
    let cases = [
        ("ada", "admin", Permission::Admin),
        ("max", "maintain", Permission::Maintain),
        ("wes", "write", Permission::Write),
        ("tia", "triage", Permission::Triage),
        ("rea", "read", Permission::Read),
        ("nob", "none", Permission::None),
    ];
    for (user, role, _) in cases {
        gh.set_permission("acme", "churn", user, role);
    }
    let p = provider(&gh);
    for (user, role, want) in cases {
        assert_eq!(p.permission(&repo(), user).await.expect("permission"), want, "{user} ({role})");
    }
    assert_eq!(p.permission(&repo(), "stranger").await.expect("404 is none"), Permission::None);
    assert_clean(&gh);
}

#[tokio::test]
async fn comments_are_posted_edited_and_reacted_to() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = provider(&gh);
    let id = p.post_comment(&pr(7), "Running `/run` …").await.expect("post");
    p.edit_comment(&pr(7), &id, "Done ✅").await.expect("edit");
    let comments = gh.comments("acme", "churn", 7);
    assert_eq!(comments.len(), 1);
    assert_eq!((comments[0].id.to_string(), comments[0].user.as_str()), (id.0.clone(), "kfops-bot"));
    assert_eq!((comments[0].body.as_str(), comments[0].edits), ("Done ✅", 1));
    // The longest body GitHub takes is fine; one character more is refused before any request.
    let longest = "é".repeat(65_536);
    p.post_comment(&pr(7), &longest).await.expect("65536 characters");
    let before = gh.requests().len();
    let err = p.post_comment(&pr(7), &format!("{longest}x")).await.expect_err("too long");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("65537") && err.message().contains("65536"), "{}", err.message());
    let err = p.edit_comment(&pr(7), &id, &format!("{longest}x")).await.expect_err("too long");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(gh.requests().len(), before, "nothing was sent");
    // Reactions on a human's command comment.
    let human = gh.add_comment("acme", "churn", 7, "alice", "/run");
    let comment = CommentRef { pr: pr(7), id: CommentId(human.to_string()) };
    for r in [Reaction::Eyes, Reaction::PlusOne, Reaction::MinusOne, Reaction::Confused, Reaction::Rocket] {
        p.react(&comment, r).await.expect("react");
    }
    p.react(&comment, Reaction::Eyes).await.expect("reacting twice is fine");
    assert_eq!(gh.reactions(human), ["eyes", "+1", "-1", "confused", "rocket"]);
    // Editing someone else's comment is refused by GitHub.
    let err = p.edit_comment(&pr(7), &comment.id, "hijack").await.expect_err("not ours");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_clean(&gh);
}

#[tokio::test]
async fn labels_are_created_once_added_and_removed() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(1, SHA));
    gh.add_pr("acme", "churn", TestPr::new(2, SHA));
    let p = provider(&gh);
    let label = Label { name: "Deployed to production".into(), color: "#0E8A16".into() };
    p.add_label(&pr(1), &label).await.expect("add (creates)");
    p.add_label(&pr(2), &label).await.expect("add (exists)");
    p.add_label(&pr(2), &label).await.expect("add again");
    assert_eq!(gh.labels("acme", "churn", 1), ["Deployed to production"]);
    assert_eq!(gh.labels("acme", "churn", 2), ["Deployed to production"]);
    assert_eq!(gh.repo_labels("acme", "churn"), [("Deployed to production".to_owned(), "0e8a16".to_owned())]);
    assert_eq!(statuses(&gh, "POST", "/repos/acme/churn/labels"), [201, 422, 422]);
    p.remove_label(&pr(1), "Deployed to production").await.expect("remove");
    p.remove_label(&pr(1), "Deployed to production").await.expect("absent is fine");
    assert!(gh.labels("acme", "churn", 1).is_empty());
    assert_eq!(statuses(&gh, "DELETE", "/repos/acme/churn/issues/1/labels/"), [200, 404]);
    assert_clean(&gh);
}

#[tokio::test]
async fn prs_with_a_label_come_from_every_search_page() {
    let gh = server().await;
    gh.add_repo("acme", "other", "https://github.example.invalid/acme/other.git");
    for n in 1..=205 {
        let mut p = TestPr::new(n, SHA);
        if n % 50 != 0 {
            p.labels = vec!["Deployed-to-production".into()];
        }
        gh.add_pr("acme", "churn", p);
    }
    let mut elsewhere = TestPr::new(1, SHA);
    elsewhere.labels = vec!["Deployed-to-production".into()];
    gh.add_pr("acme", "other", elsewhere);
    let p = provider(&gh);
    p.close(&pr(3)).await.expect("close");
    let found = p.prs_with_label(&repo(), "Deployed-to-production").await.expect("search");
    let numbers: Vec<u64> = found.iter().map(|r| r.number).collect();
    let want: Vec<u64> = (1..=205).filter(|n| n % 50 != 0).collect();
    assert_eq!(numbers, want, "open and closed, this repository only");
    assert!(found.iter().all(|r| r.repo == repo()));
    assert_eq!(statuses(&gh, "GET", "/search/issues").len(), 3, "three pages of 100");
    assert!(p.prs_with_label(&repo(), "nothing").await.expect("search").is_empty());
    let err = p.prs_with_label(&repo(), "a\"b").await.expect_err("quote");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_clean(&gh);
}

#[tokio::test]
async fn behind_base_comes_from_compare() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(1, SHA));
    let mut behind = TestPr::new(2, "fedcba9876543210fedcba9876543210fedcba98");
    behind.behind_by = 3;
    gh.add_pr("acme", "churn", behind);
    let p = provider(&gh);
    assert!(!p.is_behind_base(&pr(1)).await.expect("compare"));
    assert!(p.is_behind_base(&pr(2)).await.expect("compare"));
    assert_eq!(statuses(&gh, "GET", &format!("/repos/acme/churn/compare/main...{SHA}")), [200]);
    assert_clean(&gh);
}

#[tokio::test]
async fn merges_are_guarded_by_the_head_sha() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(1, SHA));
    let mut conflicted = TestPr::new(2, SHA);
    conflicted.mergeable = Some(false);
    gh.add_pr("acme", "churn", conflicted);
    let p = provider(&gh);
    gh.set_head("acme", "churn", 1, "1111111111111111111111111111111111111111");
    let err = p.merge(&pr(1), &Sha(SHA.into())).await.expect_err("head moved");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message().contains("409") && err.message().contains(SHA), "{}", err.message());
    assert!(!gh.pr("acme", "churn", 1).merged);
    p.merge(&pr(1), &Sha("1111111111111111111111111111111111111111".into())).await.expect("merge");
    let state = gh.pr("acme", "churn", 1);
    assert!(state.merged && state.state == "closed" && state.merged_sha.is_some());
    let err = p.merge(&pr(2), &Sha(SHA.into())).await.expect_err("not mergeable");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message().contains("not mergeable"), "{}", err.message());
    assert_clean(&gh);
}

#[tokio::test]
async fn errors_name_the_request_and_never_the_token() {
    let gh = server().await;
    let p = provider(&gh);
    let err = p.pull_request(&pr(99)).await.expect_err("no such PR");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("GET /repos/acme/churn/pulls/99 answered 404: Not Found"), "{}", err.message());
    let wrong =
        GithubProvider::new(config(&gh.url(), GithubAuth::Token("ghp_wrongSecretValue".into()))).expect("provider");
    let err = wrong.pull_request(&pr(1)).await.expect_err("bad token");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(err.message().contains("Bad credentials"), "{}", err.message());
    for text in [err.to_string(), format!("{err:?}"), format!("{wrong:?}")] {
        assert!(!text.contains("ghp_wrongSecretValue"), "{text}");
    }
    let cfg = config(&gh.url(), GithubAuth::Token(TOKEN.into()));
    assert!(!format!("{cfg:?}").contains(TOKEN));
    let app = GithubAuth::App { app_id: 1, private_key_pem: fixture("test-app.private-key.pem") };
    assert!(!format!("{app:?}").contains("PRIVATE KEY"));
    // An unreachable host is `Unavailable` after the retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let nowhere = GithubProvider::new(config(&url, GithubAuth::Token(TOKEN.into()))).expect("provider");
    let err = nowhere.pull_request(&pr(1)).await.expect_err("nobody listens");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.message().contains("GET /repos/acme/churn/pulls/1") && !err.message().contains(TOKEN),
        "{}",
        err.message()
    );
    assert_clean(&gh);
}

#[tokio::test]
async fn server_errors_are_retried_and_a_plain_403_is_not() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = provider(&gh);
    gh.fail_next("GET", "/repos/acme/churn/pulls/7", Fault::Status(502));
    gh.fail_next("GET", "/repos/acme/churn/pulls/7", Fault::Status(503));
    assert_eq!(p.pull_request(&pr(7)).await.expect("third time lucky").head_sha.0, SHA);
    assert_eq!(statuses(&gh, "GET", "/repos/acme/churn/pulls/7"), [502, 503, 200]);
    // Idempotent writes (editing a comment's body) get the whole policy.
    let human = gh.add_comment("acme", "churn", 7, "kfops-bot", "first");
    for _ in 0..4 {
        gh.fail_next("PATCH", "/repos/acme/churn/issues/comments/", Fault::Status(500));
    }
    let err = p.edit_comment(&pr(7), &CommentId(human.to_string()), "hello").await.expect_err("gives up");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("HTTP 500") && err.message().contains("4 attempts"), "{}", err.message());
    assert_eq!(statuses(&gh, "PATCH", "/repos/acme/churn/issues/comments/"), [500, 500, 500, 500]);
    gh.fail_next("PUT", "/repos/acme/churn/pulls/7/merge", Fault::Status(403));
    let err = p.merge(&pr(7), &Sha(SHA.into())).await.expect_err("forbidden");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(statuses(&gh, "PUT", "/repos/acme/churn/pulls/7/merge"), [403]);
    assert_eq!(gh.comments("acme", "churn", 7).len(), 1, "only the one added by the test");
    assert_clean(&gh);
}

#[tokio::test]
async fn a_502_on_posting_a_comment_is_not_repeated() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = provider(&gh);
    gh.fail_next("POST", "/repos/acme/churn/issues/7/comments", Fault::Status(502));
    let err = p.post_comment(&pr(7), "hello").await.expect_err("outcome unknown");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("502") && err.message().contains("outcome is unknown"), "{}", err.message());
    assert_eq!(statuses(&gh, "POST", "/repos/acme/churn/issues/7/comments"), [502], "one request, no retry");
    // Reactions and labels are POSTs too.
    let human = gh.add_comment("acme", "churn", 7, "alice", "/run");
    let comment = CommentRef { pr: pr(7), id: CommentId(human.to_string()) };
    gh.fail_next("POST", "/repos/acme/churn/issues/comments/", Fault::Status(504));
    let err = p.react(&comment, Reaction::Eyes).await.expect_err("outcome unknown");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(statuses(&gh, "POST", "/repos/acme/churn/issues/comments/"), [504]);
    assert_clean(&gh);
}

#[tokio::test]
async fn a_secondary_rate_limit_on_posting_a_comment_is_retried() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = provider(&gh);
    gh.fail_next("POST", "/repos/acme/churn/issues/7/comments", Fault::SecondaryRateLimit { retry_after_secs: 0 });
    gh.fail_next("POST", "/repos/acme/churn/issues/7/comments", Fault::SecondaryRateLimit { retry_after_secs: 0 });
    let id = p.post_comment(&pr(7), "after two secondary limits").await.expect("comment");
    assert_eq!(statuses(&gh, "POST", "/repos/acme/churn/issues/7/comments"), [403, 403, 201]);
    let comments = gh.comments("acme", "churn", 7);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].id.to_string(), id.0);
    assert_clean(&gh);
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_a_post() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let nowhere = GithubProvider::new(config(&url, GithubAuth::Token(TOKEN.into()))).expect("provider");
    let err = nowhere.post_comment(&pr(1), "hello").await.expect_err("nobody listens");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    // Nothing was sent, so the policy applied: it gave up after its attempts, not at once.
    assert!(err.message().contains("4 attempts") && !err.message().contains("unknown"), "{}", err.message());
}

#[tokio::test]
async fn find_comment_adopts_the_bots_own_marked_comment_on_a_later_page() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    gh.add_pr("acme", "churn", TestPr::new(8, SHA));
    for i in 0..130 {
        gh.add_comment("acme", "churn", 7, if i % 2 == 0 { "alice" } else { "kfops-bot" }, &format!("chatter {i}"));
    }
    let marker = "<!-- kfops:ledger:42 -->";
    // A human quoting the marker comes first and must not be adopted.
    gh.add_comment("acme", "churn", 7, "mallory", &format!("fake status {marker}"));
    let ours = gh.add_comment("acme", "churn", 7, "KFOPS-BOT", &format!("status\n{marker}"));
    gh.add_comment("acme", "churn", 7, "kfops-bot", &format!("a later copy {marker}"));
    gh.add_comment("acme", "churn", 8, "kfops-bot", "<!-- kfops:ledger:43 -->");
    let p = provider(&gh);
    let found = p.find_comment(&pr(7), "kfops-bot", marker).await.expect("find");
    assert_eq!(found, Some(CommentId(ours.to_string())), "the first of the bot's own, case-insensitively");
    let pages: Vec<String> = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/repos/acme/churn/issues/7/comments"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        pages,
        [
            "/repos/acme/churn/issues/7/comments?per_page=100&page=1",
            "/repos/acme/churn/issues/7/comments?per_page=100&page=2"
        ]
    );
    assert_clean(&gh);
}

#[tokio::test]
async fn find_comment_ignores_humans_and_returns_none_when_absent() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    gh.add_pr("acme", "churn", TestPr::new(9, SHA));
    let marker = "<!-- kfops:ledger:42 -->";
    for i in 0..100 {
        gh.add_comment("acme", "churn", 7, "kfops-bot", &format!("other {i} <!-- kfops:ledger:41 -->"));
    }
    gh.add_comment("acme", "churn", 7, "alice", &format!("copied {marker}"));
    let p = provider(&gh);
    assert_eq!(p.find_comment(&pr(7), "kfops-bot", marker).await.expect("find"), None);
    assert_eq!(
        statuses(&gh, "GET", "/repos/acme/churn/issues/7/comments"),
        [200, 200],
        "a full page, then a short one"
    );
    assert_eq!(p.find_comment(&pr(9), "kfops-bot", marker).await.expect("no comments at all"), None);
    let err = p.find_comment(&pr(99), "kfops-bot", marker).await.expect_err("no such PR");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_clean(&gh);
}

#[tokio::test]
async fn rate_limits_are_waited_out() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = provider(&gh);
    gh.fail_next("POST", "/repos/acme/churn/issues/7/comments", Fault::SecondaryRateLimit { retry_after_secs: 1 });
    p.post_comment(&pr(7), "after a secondary limit").await.expect("comment");
    assert_eq!(statuses(&gh, "POST", "/repos/acme/churn/issues/7/comments"), [403, 201]);
    gh.fail_next("GET", "/repos/acme/churn/pulls/7", Fault::PrimaryRateLimit { reset_in_secs: 0 });
    p.pull_request(&pr(7)).await.expect("after the reset");
    assert_eq!(statuses(&gh, "GET", "/repos/acme/churn/pulls/7"), [403, 200]);
    // A limit that holds longer than the policy waits is an error, after one request.
    gh.fail_next("GET", "/repos/acme/churn/pulls/7", Fault::PrimaryRateLimit { reset_in_secs: 3600 });
    let err = p.pull_request(&pr(7)).await.expect_err("too long a wait");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("rate limit"), "{}", err.message());
    assert_eq!(statuses(&gh, "GET", "/repos/acme/churn/pulls/7"), [403, 200, 403]);
    assert_eq!(gh.comments("acme", "churn", 7).len(), 1);
    assert_clean(&gh);
}

fn app_provider(gh: &TestGithub, key: &str) -> GithubProvider {
    let auth = GithubAuth::App { app_id: 4242, private_key_pem: fixture(key) };
    GithubProvider::new(config(&gh.url(), auth)).expect("provider")
}

#[tokio::test]
async fn a_github_app_finds_its_installation_and_reuses_its_token() {
    let gh = server().await;
    gh.use_app(4242, &fixture("test-app.public-key.pem"), "kfops", 777, Duration::from_secs(3600));
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = app_provider(&gh, "test-app.private-key.pem");
    p.pull_request(&pr(7)).await.expect("pull_request");
    let id = p.post_comment(&pr(7), "from the app").await.expect("comment");
    p.react(&CommentRef { pr: pr(7), id }, Reaction::Eyes).await.expect("react");
    assert_eq!(gh.comments("acme", "churn", 7)[0].user, "kfops[bot]");
    assert_eq!(statuses(&gh, "GET", "/repos/acme/churn/installation"), [200]);
    assert_eq!(statuses(&gh, "POST", "/app/installations/777/access_tokens"), [201]);
    // A revoked token is renewed once, transparently.
    gh.revoke_installation_tokens();
    p.pull_request(&pr(7)).await.expect("after revocation");
    assert_eq!(statuses(&gh, "GET", "/repos/acme/churn/pulls/7"), [200, 401, 200]);
    assert_eq!(statuses(&gh, "POST", "/app/installations/777/access_tokens"), [201, 201]);
    assert_clean(&gh);
}

#[tokio::test]
async fn installation_tokens_are_renewed_when_they_expire() {
    let gh = server().await;
    gh.use_app(4242, &fixture("test-app.public-key.pem"), "kfops", 777, Duration::from_secs(1));
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let p = app_provider(&gh, "test-app.private-key.pem");
    p.pull_request(&pr(7)).await.expect("first");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    p.pull_request(&pr(7)).await.expect("second, with a new token");
    assert_eq!(statuses(&gh, "POST", "/app/installations/777/access_tokens"), [201, 201]);
    assert_eq!(statuses(&gh, "GET", "/repos/acme/churn/pulls/7"), [200, 200], "renewed before use, no 401");
    assert_eq!(statuses(&gh, "GET", "/repos/acme/churn/installation"), [200], "installation cached");
    assert_clean(&gh);
}

#[tokio::test]
async fn a_wrong_app_key_or_a_missing_installation_is_refused() {
    let gh = server().await;
    gh.use_app(4242, &fixture("test-app.public-key.pem"), "kfops", 777, Duration::from_secs(3600));
    let err = app_provider(&gh, "other.private-key.pem").pull_request(&pr(7)).await.expect_err("wrong key");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(err.message().contains("GET /repos/acme/churn/installation answered 401"), "{}", err.message());
    let err = app_provider(&gh, "test-app.private-key.pem")
        .pull_request(&PrRef { repo: RepoRef { owner: "acme".into(), name: "absent".into() }, number: 1 })
        .await
        .expect_err("not installed");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("not installed on acme/absent"), "{}", err.message());
    let bad = GithubAuth::App { app_id: 1, private_key_pem: "-----BEGIN RSA PRIVATE KEY-----\nnope\n".into() };
    let err = GithubProvider::new(config(&gh.url(), bad)).expect_err("not a key");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!err.message().contains("nope"), "{}", err.message());
    assert_clean(&gh);
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").args(args).current_dir(dir).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = e.path();
        if path.is_dir() { out.extend(files(&path)) } else { out.push(path) }
    }
    out
}

#[tokio::test]
async fn checkout_fetches_exactly_the_pinned_sha_without_storing_credentials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("source");
    std::fs::create_dir_all(&source).expect("mkdir");
    git(&source, &["init", "-q", "-b", "main"]);
    git(&source, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
    std::fs::write(source.join("pipeline.py"), "one").expect("write");
    git(&source, &["add", "."]);
    git(&source, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]);
    let pinned = git(&source, &["rev-parse", "HEAD"]);
    std::fs::write(source.join("pipeline.py"), "two").expect("write");
    git(&source, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "two"]);
    let url = format!("file://{}", source.display());
    let gh = server().await;
    let mut seed = TestPr::new(7, &pinned);
    seed.head_clone_url = Some(url.clone());
    gh.add_pr("acme", "churn", seed);
    let p = provider(&gh);
    let pull = p.pull_request(&pr(7)).await.expect("pull_request");
    assert_eq!(pull.clone_url, url);
    let into = tmp.path().join("checkout");
    p.checkout(&pull, &into).await.expect("checkout");
    assert_eq!(git(&into, &["rev-parse", "HEAD"]), pinned, "the pinned commit, not the branch tip");
    assert_eq!(std::fs::read_to_string(into.join("pipeline.py")).expect("read"), "one");
    for file in files(&into.join(".git")) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(!String::from_utf8_lossy(&bytes).contains(TOKEN), "token in {}", file.display());
    }
    // Not into a directory that has files, and not a sha that is not there.
    let err = p.checkout(&pull, &into).await.expect_err("not empty");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let mut missing = pull.clone();
    missing.head_sha = Sha("2222222222222222222222222222222222222222".into());
    let err = p.checkout(&missing, &tmp.path().join("missing")).await.expect_err("no such commit");
    assert!(err.message().contains("git fetch of 2222222222222222222222222222222222222222"), "{}", err.message());
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.message());
    assert!(!err.is_transient());
    assert!(err.message().contains("no longer exists on the remote"), "{}", err.message());
    assert_clean(&gh);
}

#[tokio::test]
async fn a_fetch_that_hangs_is_stopped_by_the_timeout() {
    // A server that accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/acme/churn.git", silent.local_addr().expect("addr"));
    let gh = server().await;
    let mut seed = TestPr::new(7, SHA);
    seed.head_clone_url = Some(url);
    gh.add_pr("acme", "churn", seed);
    let mut cfg = config(&gh.url(), GithubAuth::Token(TOKEN.into()));
    cfg.fetch_timeout = Duration::from_secs(1);
    let p = GithubProvider::new(cfg).expect("provider");
    let pull = p.pull_request(&pr(7)).await.expect("pull_request");
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = p.checkout(&pull, &tmp.path().join("checkout")).await.expect_err("hangs");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{}", err.message());
    assert!(err.message().contains("git fetch of") && err.message().contains("1 s"), "{}", err.message());
    assert_eq!(
        GithubConfig::new("https://api.github.com", GithubAuth::Token(TOKEN.into())).fetch_timeout,
        DEFAULT_FETCH_TIMEOUT
    );
    drop(silent);
    assert_clean(&gh);
}

#[test]
fn git_failures_are_classified_from_stderr() {
    let cases = [
        (
            "fatal: unable to access 'https://github.com/a/b.git/': Could not resolve host: github.com",
            ErrorKind::Unavailable,
        ),
        (
            "fatal: unable to access 'https://github.com/a/b.git/': Failed to connect to github.com port 443 after 3 ms: Couldn't connect to server",
            ErrorKind::Unavailable,
        ),
        (
            "error: RPC failed; curl 28 Operation too slow. Less than 1000 bytes/sec transferred the last 60 seconds\nfatal: expected flush after ref listing",
            ErrorKind::Unavailable,
        ),
        ("fatal: the remote end hung up unexpectedly", ErrorKind::Unavailable),
        (
            "fatal: unable to access 'https://github.com/a/b.git/': The requested URL returned error: 502",
            ErrorKind::Unavailable,
        ),
        (
            "fatal: remote error: upload-pack: not our ref 2222222222222222222222222222222222222222\nfatal: the remote end hung up unexpectedly",
            ErrorKind::NotFound,
        ),
        ("fatal: couldn't find remote ref refs/heads/gone", ErrorKind::NotFound),
        (
            "error: Server does not allow request for unadvertised object 2222222222222222222222222222222222222222",
            ErrorKind::NotFound,
        ),
        ("fatal: remote did not send all necessary objects", ErrorKind::NotFound),
        (
            "remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/a/b.git/'",
            ErrorKind::PermissionDenied,
        ),
        (
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
            ErrorKind::PermissionDenied,
        ),
        (
            "fatal: unable to access 'https://github.com/a/b.git/': The requested URL returned error: 403",
            ErrorKind::PermissionDenied,
        ),
        (
            "fatal: unable to access 'https://github.com/a/b.git/': The requested URL returned error: 401",
            ErrorKind::PermissionDenied,
        ),
        ("remote: Repository not found.\nfatal: repository 'https://github.com/a/b.git/' not found", ErrorKind::Other),
        ("fatal: unable to access 'https://x/': SSL certificate problem: self-signed certificate", ErrorKind::Other),
        ("fatal: something nobody expected", ErrorKind::Other),
    ];
    for (stderr, want) in cases {
        assert_eq!(git_failure_kind(stderr), want, "{stderr}");
    }
}

#[test]
fn git_gets_credentials_as_a_header_for_the_github_host_only() {
    use base64::Engine as _;
    let env = git_credential_env("https://api.github.com", "https://github.com/acme/churn.git", TOKEN);
    let get = |env: &[(String, String)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get(&env, "GIT_TERMINAL_PROMPT").as_deref(), Some("0"));
    assert_eq!(get(&env, "GIT_CONFIG_COUNT").as_deref(), Some("1"));
    assert_eq!(get(&env, "GIT_CONFIG_KEY_0").as_deref(), Some("http.extraHeader"));
    let value = get(&env, "GIT_CONFIG_VALUE_0").expect("header");
    let basic = value.strip_prefix("Authorization: Basic ").expect("basic auth header");
    let decoded = base64::engine::general_purpose::STANDARD.decode(basic).expect("base64");
    assert_eq!(String::from_utf8(decoded).expect("utf8"), format!("x-access-token:{TOKEN}"));
    // GHES serves git and the API on one host.
    let ghes = git_credential_env("https://git.corp.example/api/v3", "https://git.corp.example/acme/churn.git", TOKEN);
    assert!(get(&ghes, "GIT_CONFIG_VALUE_0").is_some());
    for foreign in ["https://evil.example/acme/churn.git", "http://github.com/acme/churn.git", "file:///tmp/churn"] {
        let env = git_credential_env("https://api.github.com", foreign, TOKEN);
        assert!(env.iter().all(|(_, v)| !v.contains("Authorization")), "{foreign}");
    }
}
