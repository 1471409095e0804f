//! The GitHub webhook verifier against real deliveries recorded by GitHub
//! (`@octokit/webhooks-examples`, installed by `cargo xtask test`).

use std::collections::HashMap;

use serde_json::{Value, json};

use kfops_core::scm::{PrRef, RepoRef, WebhookOutcome};
use kfops_core::{Command, CommandError, ErrorKind, WebhookVerifier};
use kfops_scm::github::{GithubWebhooks, RepoAllowlist};
use kfops_scm::signature::SignatureVerifier;

const SECRET: &str = "webhook-secret-for-tests";

fn examples() -> Vec<(String, Vec<Value>)> {
    kfops_scm::github::examples::all().unwrap_or_else(|e| panic!("{e}"))
}

fn issue_comments() -> Vec<Value> {
    kfops_scm::github::examples::recorded("issue_comment").unwrap_or_else(|e| panic!("{e}"))
}

fn pr_comment(body: &str) -> Value {
    kfops_scm::github::examples::pr_comment("created", body).unwrap_or_else(|e| panic!("{e}"))
}

fn verifier() -> GithubWebhooks {
    GithubWebhooks::new(SignatureVerifier::new([SECRET]), RepoAllowlist::new(["codertocat/hello-world"]).expect("list"))
        .with_bot_logins(["kfops-bot[bot]"])
}

/// Deliver `body` as GitHub would: event and delivery headers, and a signature made with `secret`.
fn deliver(v: &GithubWebhooks, event: &str, body: &[u8], secret: Option<&str>) -> kfops_core::Result<WebhookOutcome> {
    let mut headers: HashMap<String, String> = HashMap::new();
    headers.insert("x-github-event".into(), event.into());
    headers.insert("x-github-delivery".into(), "72d3162e-cc78-11e3-81ab-4c9367dc0958".into());
    if let Some(secret) = secret {
        headers.insert("x-hub-signature-256".into(), SignatureVerifier::new([secret]).sign(body).expect("sign"));
    }
    v.verify_and_parse(&|name: &str| headers.get(&name.to_ascii_lowercase()).cloned(), body)
}

fn outcome(v: &GithubWebhooks, payload: &Value) -> WebhookOutcome {
    deliver(v, "issue_comment", &serde_json::to_vec(payload).expect("json"), Some(SECRET)).expect("accepted")
}

fn ignored_reason(o: WebhookOutcome) -> String {
    match o {
        WebhookOutcome::Ignored { reason, delivery_id } => {
            assert_eq!(delivery_id.as_deref(), Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
            reason
        }
        other => panic!("expected Ignored, got {other:?}"),
    }
}

#[test]
fn a_command_on_a_pull_request_becomes_an_event() {
    let v = verifier();
    for p in issue_comments().into_iter().filter(|p| p["action"] == "created") {
        let mut p = p;
        let number = p["issue"]["number"].as_u64().expect("number");
        p["issue"]["pull_request"] = pr_comment("")["issue"]["pull_request"].clone();
        p["comment"]["body"] = json!("Looks good.\r\n\r\n/deploy --run-id 7f3c2a --force\r\n");
        let WebhookOutcome::Command(event) = outcome(&v, &p) else { panic!("expected a command") };
        assert_eq!(
            event.pr,
            PrRef { repo: RepoRef { owner: "Codertocat".into(), name: "Hello-World".into() }, number }
        );
        assert_eq!(event.comment.0, p["comment"]["id"].as_u64().expect("id").to_string());
        assert_eq!(event.author, "Codertocat");
        assert_eq!(event.installation, p["installation"]["id"].as_u64());
        assert_eq!(event.command, Command::Deploy { run_id: Some("7f3c2a".into()), force: true });
        assert_eq!(event.delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    }
}

#[test]
fn a_bad_command_is_reported_back_not_dropped() {
    let payload = pr_comment("/deploy --froce");
    let WebhookOutcome::Invalid { comment, author, error, .. } = outcome(&verifier(), &payload) else {
        panic!("expected Invalid")
    };
    assert_eq!(author, "Codertocat");
    assert_eq!(Some(comment.pr.number), payload["issue"]["number"].as_u64());
    assert_eq!(comment.id.0, payload["comment"]["id"].as_u64().expect("id").to_string());
    assert!(matches!(&error, CommandError::UnknownFlag { suggestion: Some(s), .. } if s == "--force"), "{error:?}");
}

#[test]
fn recorded_comments_that_are_not_pr_commands_are_ignored() {
    let v = verifier();
    let mut seen = 0;
    for p in issue_comments() {
        let reason = ignored_reason(outcome(&v, &p));
        match p["action"].as_str() {
            Some("created") => assert_eq!(reason, "comment on an issue, not a pull request"),
            Some(action) => assert_eq!(reason, format!("comment {action}: only new comments carry commands")),
            None => panic!("no action"),
        }
        seen += 1;
    }
    assert!(seen >= 5, "the package has several issue_comment deliveries ({seen})");

    let cases: Vec<(Value, &str)> = vec![
        (pr_comment("Thanks, /build later maybe"), "comment has no command line"),
        (pr_comment("```\n/build\n```"), "comment has no command line"),
        (pr_comment("> /deploy --force"), "comment has no command line"),
        (
            {
                let mut p = pr_comment("/build");
                p["comment"]["user"]["type"] = json!("Bot");
                p["comment"]["user"]["login"] = json!("dependabot[bot]");
                p
            },
            "comment by bot account dependabot[bot]",
        ),
        (
            {
                let mut p = pr_comment("/build");
                p["comment"]["user"]["login"] = json!("KFOPS-BOT[bot]");
                p
            },
            "comment by bot account KFOPS-BOT[bot]",
        ),
        (
            {
                let mut p = pr_comment("/build");
                p["repository"]["owner"]["login"] = json!("someone-else");
                p
            },
            "repository someone-else/Hello-World is not in the allowlist",
        ),
    ];
    for (payload, want) in cases {
        assert_eq!(ignored_reason(outcome(&v, &payload)), want, "{}", payload["comment"]["body"]);
    }
}

#[test]
fn every_other_recorded_event_is_ignored() {
    let v = verifier();
    let mut events = 0;
    for (name, examples) in examples().into_iter().filter(|(n, _)| n != "issue_comment") {
        let Some(first) = examples.first() else { continue };
        let reason = ignored_reason(
            deliver(&v, &name, &serde_json::to_vec(first).expect("json"), Some(SECRET)).expect("accepted"),
        );
        assert_eq!(reason, format!("`{name}` event: only `issue_comment` carries commands"));
        events += 1;
    }
    assert!(events > 40, "the package records most GitHub events ({events})");
}

#[test]
fn unsigned_forged_or_tampered_deliveries_are_refused() {
    let v = verifier();
    let body = serde_json::to_vec(&pr_comment("/build")).expect("json");
    for secret in [None, Some("not-the-secret")] {
        let err = deliver(&v, "issue_comment", &body, secret).expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{secret:?}: {err}");
    }
    // Signed, then one byte changed in transit.
    let mut headers: HashMap<String, String> = HashMap::new();
    headers.insert("X-GitHub-Event".into(), "issue_comment".into());
    headers.insert("X-GitHub-Delivery".into(), "d-1".into());
    headers.insert("X-Hub-Signature-256".into(), SignatureVerifier::new([SECRET]).sign(&body).expect("sign"));
    let tampered = String::from_utf8(body.clone()).expect("utf8").replace("/build", "/deploy");
    let err = v.verify_and_parse(&|n: &str| headers.get(n).cloned(), tampered.as_bytes()).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    // Rotation: old and new secret both verify.
    let rotating = GithubWebhooks::new(
        SignatureVerifier::new(["new-secret", SECRET]),
        RepoAllowlist::new(["Codertocat/*"]).expect("list"),
    );
    assert!(matches!(outcome(&rotating, &pr_comment("/build")), WebhookOutcome::Command(_)));
}

#[test]
fn signed_but_malformed_deliveries_say_what_is_wrong() {
    let v = verifier();
    let err = deliver(&v, "issue_comment", b"{\"action\": \"created\"}", Some(SECRET)).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("missing field `issue`"), "{err}");

    let body = serde_json::to_vec(&pr_comment("/build")).expect("json");
    let signature = SignatureVerifier::new([SECRET]).sign(&body).expect("sign");
    let headers = |n: &str| match n {
        "X-Hub-Signature-256" => Some(signature.clone()),
        "X-GitHub-Event" => Some("issue_comment".to_owned()),
        _ => None,
    };
    let err = v.verify_and_parse(&headers, &body).expect_err("no delivery id");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("X-GitHub-Delivery"), "{err}");
}

#[test]
fn the_allowlist_is_parsed_strictly_and_matched_case_insensitively() {
    let list = RepoAllowlist::new(["acme/churn-model", "Data.Team/*"]).expect("valid");
    let repo = |o: &str, n: &str| RepoRef { owner: o.into(), name: n.into() };
    assert!(list.allows(&repo("ACME", "Churn-Model")));
    assert!(list.allows(&repo("data.team", "anything")));
    assert!(!list.allows(&repo("acme", "other")));
    assert!(!RepoAllowlist::default().allows(&repo("acme", "churn-model")), "empty allows nothing");
    for bad in ["acme", "acme/", "/x", "*/*", "acme/churn model", "acme/a/b"] {
        let err = RepoAllowlist::new([bad]).expect_err(bad);
        assert!(err.contains(&format!("`{bad}`")) && err.contains("owner/name"), "{err}");
    }
}
