//! The status comment renderer.

use std::time::Duration;

use kfops_bot::report::{Outcome, Problem, ReportStage, StatusReport, ledger_id_of, render};
use kfops_core::Command;

const GITHUB_MAX: usize = 65_536;

fn report() -> StatusReport {
    StatusReport {
        sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
        stage: ReportStage::Running,
        run_url: Some("https://kubeflow.example.com/#/runs/details/9f1c".into()),
        parameters: vec![("learning_rate".into(), "0.1".into()), ("epochs".into(), "3".into())],
        ..StatusReport::queued(42, Command::BuildRun, "alice".into())
    }
}

#[test]
fn a_finished_build_run_reads_well() {
    let mut r = report();
    r.stage = ReportStage::Finished;
    r.outcome = Some(Outcome { succeeded: false, state: "failed".into(), duration: Duration::from_secs(754) });
    r.metrics = vec![("accuracy".into(), "0.93".into())];
    r.problems = vec![
        Problem {
            error: true,
            summary: "task `train` failed".into(),
            detail: "Traceback (most recent call last):\n  File \"train.py\", line 3\nValueError: bad".into(),
        },
        Problem { error: false, summary: "image cache miss".into(), detail: "rebuilt trainer".into() },
    ];
    let body = render(&r, GITHUB_MAX);
    insta::assert_snapshot!(body);
    assert_eq!(ledger_id_of(&body), Some(42));
}

#[test]
fn stages_follow_the_command() {
    let mut r = report();
    r.command = Command::Run;
    let body = render(&r, GITHUB_MAX);
    assert!(
        body.contains("~~queued~~ → ~~compiling~~ → ~~building images~~ → ~~uploading~~ → **running** → finished"),
        "{body}"
    );
    r.command = Command::Build;
    r.stage = ReportStage::Compiling;
    r.outcome = Some(Outcome { succeeded: false, state: "FAILED".into(), duration: Duration::from_secs(3) });
    let body = render(&r, GITHUB_MAX);
    assert!(body.contains("~~queued~~ → **compiling** ❌ → building images → uploading → finished"), "{body}");
    assert!(!body.contains("running"), "{body}");
    r.outcome = None;
    r.command = Command::Build;
    r.stage = ReportStage::Compiling;
    let body = render(&r, GITHUB_MAX);
    assert!(body.contains("~~queued~~ → **compiling** → building images → uploading → finished"), "{body}");
}

#[test]
fn text_from_the_pr_cannot_inject_markup_or_mentions() {
    let mut r = report();
    r.author = "mallory <b>".into();
    r.parameters =
        vec![("x | y".into(), "`a` <script>alert(1)</script> @org/admins **bold**\n| injected | row |".into())];
    r.problems = vec![Problem {
        error: true,
        summary: "<img src=x> @everyone\n".into(),
        detail: "```\nclosing the fence early\n````\n</details>".into(),
    }];
    let body = render(&r, GITHUB_MAX);
    for bad in ["<script>", "<b>", "<img", "@org", "@everyone", "**bold**", "\n| injected"] {
        assert!(!body.contains(bad), "`{bad}` leaked into\n{body}");
    }
    // The log is fenced with more backticks than it contains, so it cannot close the block.
    assert!(body.contains("`````text\n```\nclosing the fence early\n````\n</details>\n`````"), "{body}");
    // Only http(s) run links, with nothing that could break out of the link.
    r.run_url = Some("javascript:alert(1)".into());
    assert!(!render(&r, GITHUB_MAX).contains("javascript"));
    r.run_url = Some("https://kf.example.com/#/runs/a b)<x>".into());
    assert!(render(&r, GITHUB_MAX).contains("[open in Kubeflow](https://kf.example.com/#/runs/a%20b%29%3Cx%3E)"));
    // Exactly one row per parameter.
    assert_eq!(body.lines().filter(|l| l.starts_with("| <code>")).count(), 1);
}

#[test]
fn huge_logs_are_cut_to_the_limit_keeping_their_tail() {
    let mut r = report();
    let log: String = (0..20_000).map(|i| format!("line {i}: building layer\n")).collect();
    r.problems =
        vec![Problem { error: true, summary: "image build failed".into(), detail: format!("{log}FATAL: out of disk") }];
    let body = render(&r, GITHUB_MAX);
    assert!(body.chars().count() <= GITHUB_MAX, "{}", body.chars().count());
    assert!(body.contains("FATAL: out of disk"), "the tail survives");
    assert!(body.contains("line(s) cut"), "the cut is said");
    assert!(!body.contains("line 0: building"), "the head went");
    assert_eq!(ledger_id_of(&body), Some(42));
    assert!(body.trim_end().ends_with("</details>"), "the block is still closed");

    // Tiny limits still give a bounded body that starts with the marker.
    let tiny = render(&r, 300);
    assert!(tiny.chars().count() <= 300);
    assert_eq!(ledger_id_of(&tiny), Some(42));
}

#[test]
fn markers_are_read_back_only_when_well_formed() {
    assert_eq!(ledger_id_of("<!-- kfops:command=7 -->\nhello"), Some(7));
    assert_eq!(ledger_id_of("no marker"), None);
    assert_eq!(ledger_id_of("<!-- kfops:command=x -->"), None);
    assert_eq!(ledger_id_of("<!-- kfops:command=7"), None);
}
