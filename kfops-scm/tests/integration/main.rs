//! Integration tests of kfops-scm.

use kfops_scm::SignatureError;
use kfops_scm::signature::SignatureVerifier;

/// GitHub's documented test vector ("Validating webhook deliveries").
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_PAYLOAD: &[u8] = b"Hello, World!";
const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn githubs_documented_vector_verifies() {
    let v = SignatureVerifier::new([GITHUB_SECRET]);
    assert_eq!(v.verify(Some(GITHUB_SIGNATURE), GITHUB_PAYLOAD), Ok(()));
    assert_eq!(v.sign(GITHUB_PAYLOAD).as_deref(), Some(GITHUB_SIGNATURE));
}

#[test]
fn rotation_accepts_any_configured_secret() {
    let v = SignatureVerifier::new(["new-secret", GITHUB_SECRET]);
    assert_eq!(v.verify(Some(GITHUB_SIGNATURE), GITHUB_PAYLOAD), Ok(()));
}

#[test]
fn everything_else_is_refused() {
    let v = SignatureVerifier::new([GITHUB_SECRET]);
    let upper = GITHUB_SIGNATURE.to_uppercase().replace("SHA256=", "sha256=");
    let cases: &[(Option<&str>, &[u8], SignatureError)] = &[
        (None, GITHUB_PAYLOAD, SignatureError::Missing),
        (Some("sha1=757107ea0eb2509fc211221cce984b8a37570b6d"), GITHUB_PAYLOAD, SignatureError::Malformed),
        (
            Some("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
            GITHUB_PAYLOAD,
            SignatureError::Malformed,
        ),
        (
            Some("sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
            GITHUB_PAYLOAD,
            SignatureError::Malformed,
        ),
        (Some("sha256=757107"), GITHUB_PAYLOAD, SignatureError::Malformed),
        (Some(GITHUB_SIGNATURE), b"Hello, World?", SignatureError::Mismatch),
        (
            Some("sha256=0000000000000000000000000000000000000000000000000000000000000000"),
            GITHUB_PAYLOAD,
            SignatureError::Mismatch,
        ),
    ];
    for (header, body, want) in cases {
        assert_eq!(v.verify(*header, body), Err(want.clone()), "{header:?}");
    }
    // Hex case does not matter.
    assert_eq!(v.verify(Some(&upper), GITHUB_PAYLOAD), Ok(()));
    // With no (or only empty) secrets nothing verifies.
    assert_eq!(
        SignatureVerifier::new([""]).verify(Some(GITHUB_SIGNATURE), GITHUB_PAYLOAD),
        Err(SignatureError::NoSecret)
    );
    assert!(!format!("{v:?}").contains("Secret to Everybody"));
}

#[test]
fn git_checkouts_are_inspected() {
    use kfops_scm::git::inspect;
    let dir = tempfile_dir("git");
    let none = inspect(&dir, None);
    assert_eq!(none.source.commit, None, "not a repository");
    assert!(!none.dirty);
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("git").args(args).current_dir(&dir).output().expect("git").status.success();
        assert!(ok, "git {args:?}");
    };
    run(&["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("a.txt"), "a").expect("write");
    run(&["add", "a.txt"]);
    run(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]);
    let clean = inspect(&dir, Some("acme/churn".into()));
    assert_eq!(clean.source.commit.as_deref().map(str::len), Some(40));
    assert_eq!(clean.source.branch.as_deref(), Some("main"));
    assert_eq!(clean.source.repository.as_deref(), Some("acme/churn"));
    assert!(!clean.dirty);
    // kfops's own run store and changes outside the project folder do not count.
    std::fs::create_dir_all(dir.join("proj/.kfops/runs")).expect("mkdir");
    std::fs::write(dir.join("proj/.kfops/runs/r.json"), "{}").expect("write");
    std::fs::write(dir.join("proj/p.py"), "x").expect("write");
    run(&["add", "proj/p.py"]);
    run(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "two"]);
    std::fs::write(dir.join("other.txt"), "elsewhere in the monorepo").expect("write");
    assert!(!inspect(&dir.join("proj"), None).dirty, "untracked .kfops and changes elsewhere are ignored");
    std::fs::write(dir.join("proj/p.py"), "changed").expect("write");
    assert!(inspect(&dir.join("proj"), None).dirty);
    std::fs::write(dir.join("a.txt"), "changed").expect("write");
    assert!(inspect(&dir, None).dirty);
    std::fs::remove_dir_all(&dir).ok();
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kfops-scm-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}
mod github_client;
mod github_server;
mod openapi;
mod retry;
mod webhook;
