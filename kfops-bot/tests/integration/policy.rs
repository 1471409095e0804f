//! The authorization policy.

use kfops_bot::policy::{Decision, Policy};
use kfops_core::CommandKind;
use kfops_core::scm::{Permission, PrRef, PullRequest, RepoRef, Sha};

fn pr() -> PullRequest {
    let repo = RepoRef { owner: "acme".into(), name: "churn-model".into() };
    PullRequest {
        pr: PrRef { repo: repo.clone(), number: 4 },
        title: "Tune the learning rate".into(),
        author: "alice".into(),
        head_sha: Sha("0123456789abcdef0123456789abcdef01234567".into()),
        head_ref: "tune".into(),
        head_repo: repo,
        base_ref: "main".into(),
        is_fork: false,
        is_draft: false,
        is_open: true,
        mergeable: Some(true),
        mergeable_state: Some("clean".into()),
        clone_url: "https://github.com/acme/churn-model.git".into(),
    }
}

fn denied(d: Decision) -> String {
    match d {
        Decision::Deny(why) => why,
        Decision::Allow => panic!("expected a denial"),
    }
}

#[test]
fn the_default_policy_on_a_table() {
    use CommandKind::*;
    use Permission::*;
    let policy = Policy::default();
    let cases = [
        (Build, Write, true),
        (Build, Triage, false),
        (Run, Read, false),
        (Run, Admin, true),
        (BuildRun, Write, true),
        (BuildRun, None, false),
        (StagingDeploy, Write, true),
        (Deploy, Write, false),
        (Deploy, Maintain, true),
        (Deploy, Admin, true),
    ];
    for (kind, permission, allowed) in cases {
        let d = policy.decide(kind, "bob", permission, &pr());
        assert_eq!(d == Decision::Allow, allowed, "{kind:?} with {permission:?}: {d:?}");
    }
    let why = denied(policy.decide(Deploy, "bob", Write, &pr()));
    assert_eq!(
        why,
        "Sorry @bob, `/deploy` needs `maintain` permission on this repository (you have `write`). \
         Ask a maintainer to run it or to grant you access."
    );
}

#[test]
fn forks_drafts_and_closed_prs_are_refused_unless_allowed() {
    let policy = Policy::default();
    let mut fork = pr();
    fork.is_fork = true;
    assert!(denied(policy.decide(CommandKind::Build, "bob", Permission::Admin, &fork)).contains("forks"));
    let mut draft = pr();
    draft.is_draft = true;
    assert!(denied(policy.decide(CommandKind::Build, "bob", Permission::Admin, &draft)).contains("ready for review"));
    let mut closed = pr();
    closed.is_open = false;
    assert!(
        denied(policy.decide(CommandKind::Build, "bob", Permission::Admin, &closed)).contains("open pull requests")
    );

    let open_minded = Policy { allow_forks: true, allow_drafts: true, ..Policy::default() };
    assert_eq!(open_minded.decide(CommandKind::Build, "bob", Permission::Write, &fork), Decision::Allow);
    assert_eq!(open_minded.decide(CommandKind::Build, "bob", Permission::Write, &draft), Decision::Allow);
}

#[test]
fn named_users_and_configuration() {
    let policy: Policy = serde_json::from_value(serde_json::json!({
        "deploy": {"min_permission": "admin", "users": ["Release-Bot"]},
        "allow_drafts": true
    }))
    .expect("valid policy");
    assert_eq!(policy.decide(CommandKind::Deploy, "release-bot", Permission::Read, &pr()), Decision::Allow);
    assert!(matches!(policy.decide(CommandKind::Deploy, "bob", Permission::Maintain, &pr()), Decision::Deny(_)));
    // Unset commands keep their defaults.
    assert_eq!(policy.build, Policy::default().build);

    let err =
        serde_json::from_value::<Policy>(serde_json::json!({"deploy": {"min_permision": "admin"}})).expect_err("typo");
    assert!(err.to_string().contains("unknown field `min_permision`"), "{err}");
    let err = serde_json::from_value::<Policy>(serde_json::json!({"build": {"min_permission": "owner"}}))
        .expect_err("not a permission");
    assert!(err.to_string().contains("unknown variant `owner`"), "{err}");
}
