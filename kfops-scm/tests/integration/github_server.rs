//! The test GitHub server on the wire: contract checks, authentication, GitHub's answers.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kfops_scm::github::testserver::{TestGithub, TestPr};
use serde_json::{Value, json};

use crate::github_client::{SHA, TOKEN, server};

/// One HTTP/1.1 request over a plain socket: exactly these headers and bytes.
fn raw(gh: &TestGithub, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let addr = gh.url().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const AUTH: (&str, &str) = ("Authorization", "Bearer ghp_kfopsTestToken0123456789");
const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test]
async fn a_request_the_description_forbids_is_rejected_and_recorded() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    let (status, body) = raw(&gh, "POST", "/repos/acme/churn/issues/7/comments", &[AUTH, JSON], br#"{"body": 5}"#);
    assert_eq!(status, 422);
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("issues/create-comment: body.body: expected string, got integer"), "{message}");
    assert!(gh.comments("acme", "churn", 7).is_empty(), "not handled");
    let violations = gh.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("POST /repos/acme/churn/issues/7/comments") && violations[0].contains("body.body"));
    let (status, _) = raw(&gh, "GET", "/repos/acme/churn/pullz/7", &[AUTH], b"");
    assert_eq!(status, 404);
    let (status, _) =
        raw(&gh, "POST", "/repos/acme/churn/issues/7/comments", &[AUTH, ("Content-Type", "text/plain")], b"hi");
    assert_eq!(status, 415);
    assert_eq!(gh.violations().len(), 3);
    let statuses: Vec<u16> = gh.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [422, 404, 415]);
}

#[tokio::test]
async fn answers_follow_github() {
    let gh = server().await;
    gh.add_pr("acme", "churn", TestPr::new(7, SHA));
    // Without or with an unknown token: 401.
    assert_eq!(raw(&gh, "GET", "/repos/acme/churn/pulls/7", &[], b"").0, 401);
    assert_eq!(raw(&gh, "GET", "/repos/acme/churn/pulls/7", &[("Authorization", "token nope")], b"").0, 401);
    let (status, pr) =
        raw(&gh, "GET", "/repos/acme/churn/pulls/7", &[("Authorization", &format!("token {TOKEN}"))], b"");
    assert_eq!(status, 200);
    assert_eq!((pr["number"].as_u64(), pr["head"]["sha"].as_str()), (Some(7), Some(SHA)));
    assert!(pr["id"].is_u64() && pr["node_id"].is_string() && pr["user"]["type"] == "User");
    // Comments longer than 65536 characters are refused as GitHub does.
    let long = json!({ "body": "x".repeat(65_537) }).to_string();
    let (status, body) = raw(&gh, "POST", "/repos/acme/churn/issues/7/comments", &[AUTH, JSON], long.as_bytes());
    assert_eq!(status, 422);
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("too long")), "{body}");
    // Labels: creating twice is 422, removing an absent one 404.
    let label = br#"{"name":"deployed","color":"0e8a16"}"#;
    assert_eq!(raw(&gh, "POST", "/repos/acme/churn/labels", &[AUTH, JSON], label).0, 201);
    assert_eq!(raw(&gh, "POST", "/repos/acme/churn/labels", &[AUTH, JSON], label).0, 422);
    assert_eq!(raw(&gh, "DELETE", "/repos/acme/churn/issues/7/labels/deployed", &[AUTH], b"").0, 404);
    // Search: qualifiers it does not know are refused rather than ignored.
    let (status, found) = raw(&gh, "GET", "/search/issues?q=repo:acme/churn+is:pr+is:open", &[AUTH], b"");
    assert_eq!((status, found["total_count"].as_u64()), (200, Some(1)));
    let (status, found) = raw(&gh, "GET", "/search/issues?q=repo:acme/churn+is:closed", &[AUTH], b"");
    assert_eq!((status, found["total_count"].as_u64()), (200, Some(0)));
    assert_eq!(raw(&gh, "GET", "/search/issues?q=author:alice", &[AUTH], b"").0, 422);
    // Unknown repositories and PRs.
    assert_eq!(raw(&gh, "GET", "/repos/acme/nope/pulls/7", &[AUTH], b"").0, 404);
    assert_eq!(raw(&gh, "GET", "/repos/acme/churn/pulls/8", &[AUTH], b"").0, 404);
    let v = gh.violations();
    assert!(v.is_empty(), "{v:#?}");
}

fn jwt(key: &str, claims: &Value) -> String {
    let pem =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(key)).expect("key");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("rsa key");
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), claims, &key).expect("sign")
}

#[tokio::test]
async fn app_jwts_are_verified_and_installation_tokens_expire() {
    let gh = server().await;
    let public = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-app.public-key.pem"),
    )
    .expect("public key");
    gh.use_app(11, &public, "kfops", 99, Duration::ZERO);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let path = "/app/installations/99/access_tokens";
    let bearer = |t: String| format!("Bearer {t}");
    let cases = [
        (jwt("test-app.private-key.pem", &json!({ "iat": now - 60, "exp": now + 540, "iss": "11" })), 201),
        (jwt("test-app.private-key.pem", &json!({ "iat": now - 60, "exp": now + 540, "iss": 11 })), 201),
        (jwt("other.private-key.pem", &json!({ "iat": now - 60, "exp": now + 540, "iss": "11" })), 401),
        (jwt("test-app.private-key.pem", &json!({ "iat": now - 60, "exp": now + 540, "iss": "12" })), 401),
        (jwt("test-app.private-key.pem", &json!({ "iat": now, "exp": now + 601, "iss": "11" })), 401),
        (jwt("test-app.private-key.pem", &json!({ "iat": now - 700, "exp": now - 100, "iss": "11" })), 401),
        (TOKEN.to_owned(), 401),
    ];
    let mut tokens = Vec::new();
    for (i, (token, want)) in cases.into_iter().enumerate() {
        let (status, body) = raw(&gh, "POST", path, &[("Authorization", &bearer(token))], b"");
        assert_eq!(status, want, "case {i}: {body}");
        if let Some(t) = body["token"].as_str() {
            tokens.push(t.to_owned());
        }
    }
    assert_eq!(
        raw(
            &gh,
            "POST",
            "/app/installations/98/access_tokens",
            &[(
                "Authorization",
                &bearer(jwt("test-app.private-key.pem", &json!({ "iat": now - 60, "exp": now + 540, "iss": "11" })))
            )],
            b""
        )
        .0,
        404
    );
    // A token that lives zero seconds is refused.
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        raw(&gh, "GET", "/repos/acme/churn/labels/x", &[("Authorization", &bearer(tokens[0].clone()))], b"").0,
        401
    );
    let v = gh.violations();
    assert!(v.is_empty(), "{v:#?}");
}
