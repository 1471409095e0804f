//! The durable inbox and command ledger.

use std::path::PathBuf;
use std::sync::Arc;

use kfops_bot::{Accepted, CommandState, Stage, Store, StoreError};
use kfops_core::Command;
use kfops_core::scm::{ChatOpsEvent, CommentId, PrRef, RepoRef};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kfops-bot-store-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn pr(number: u64) -> PrRef {
    PrRef { repo: RepoRef { owner: "acme".into(), name: "churn-model".into() }, number }
}

fn event(delivery: &str, number: u64, command: Command) -> ChatOpsEvent {
    ChatOpsEvent {
        delivery_id: delivery.into(),
        pr: pr(number),
        comment: CommentId("1001".into()),
        author: "alice".into(),
        installation: Some(7),
        command,
    }
}

#[test]
fn a_redelivery_is_dropped_and_the_first_survives_a_restart() {
    let d = dir("redeliver");
    let path = d.join("state.db");
    let id = {
        let store = Store::open(&path).expect("open");
        let Accepted::New(id) = store.accept(&event("d-1", 4, Command::BuildRun)).expect("accept") else {
            panic!("first delivery is new")
        };
        assert_eq!(store.accept(&event("d-1", 4, Command::BuildRun)).expect("accept"), Accepted::Duplicate);
        id
    };
    // Reopened, as after a restart: the command is there, unfinished, and the id is still known.
    let store = Store::open(&path).expect("reopen");
    assert!(store.seen("d-1").expect("seen"));
    assert!(!store.seen("d-2").expect("seen"));
    assert_eq!(store.accept(&event("d-1", 4, Command::BuildRun)).expect("accept"), Accepted::Duplicate);
    let unfinished = store.unfinished().expect("unfinished");
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].id, id);
    assert_eq!(unfinished[0].event, event("d-1", 4, Command::BuildRun));
    assert_eq!(unfinished[0].state, CommandState::Queued);
    let steps = store.steps(id).expect("steps");
    assert_eq!(steps.len(), 1);
    assert_eq!((steps[0].seq, steps[0].stage.as_str(), steps[0].detail.as_str()), (0, "queued", "/build_run"));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn the_ledger_records_every_step_and_knows_the_last_run_of_a_pr() {
    let d = dir("ledger");
    let store = Store::open(&d.join("state.db")).expect("open");
    let run = |delivery: &str, number: u64, run_id: &str, outcome: CommandState| {
        let Accepted::New(id) = store.accept(&event(delivery, number, Command::BuildRun)).expect("accept") else {
            panic!("new")
        };
        store.record(id, Stage::Pinned, CommandState::InProgress, "0123456789abcdef").expect("pin");
        store.set_sha(id, "0123456789abcdef0123456789abcdef01234567").expect("sha");
        store.set_status_comment(id, "555").expect("comment");
        store.record(id, Stage::Uploading, CommandState::InProgress, "").expect("upload");
        store.set_pipeline_version(id, "0123456789ab-deadbeef").expect("version");
        store.record(id, Stage::Running, CommandState::InProgress, run_id).expect("run");
        store.set_run_id(id, run_id).expect("run id");
        store.record(id, Stage::Finished, outcome, outcome.as_str()).expect("finish");
        id
    };
    let first = run("d-1", 4, "run-a", CommandState::Succeeded);
    let _failed = run("d-2", 4, "run-b", CommandState::Failed);
    let _other_pr = run("d-3", 5, "run-c", CommandState::Succeeded);

    let last = store.last_run(&pr(4)).expect("query").expect("a succeeded run");
    assert_eq!(last.id, first, "the failed later run is not deployable");
    assert_eq!(last.run_id.as_deref(), Some("run-a"));
    assert_eq!(last.pipeline_version.as_deref(), Some("0123456789ab-deadbeef"));
    assert_eq!(last.status_comment.as_deref(), Some("555"));
    assert_eq!(last.sha.as_deref(), Some("0123456789abcdef0123456789abcdef01234567"));
    assert_eq!(store.last_run(&pr(6)).expect("query"), None);
    assert!(store.unfinished().expect("unfinished").is_empty());

    let stages: Vec<String> = store.steps(first).expect("steps").into_iter().map(|s| s.stage).collect();
    assert_eq!(stages, ["queued", "pinned", "uploading", "running", "finished"]);
    assert!(store.command(first).expect("command").state.is_final());

    assert!(matches!(
        store.record(999, Stage::Running, CommandState::InProgress, ""),
        Err(StoreError::UnknownCommand(999))
    ));
    assert!(matches!(store.set_run_id(999, "x"), Err(StoreError::UnknownCommand(999))));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn concurrent_deliveries_of_one_id_store_exactly_one_command() {
    let d = dir("race");
    let store = Arc::new(Store::open(&d.join("state.db")).expect("open"));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let shared = store.accept(&event("same", 1, Command::Build)).expect("accept");
                let own = store.accept(&event(&format!("own-{i}"), 1, Command::Run)).expect("accept");
                (shared, own)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
    assert_eq!(results.iter().filter(|(s, _)| matches!(s, Accepted::New(_))).count(), 1);
    assert!(results.iter().all(|(_, o)| matches!(o, Accepted::New(_))));
    assert_eq!(store.unfinished().expect("unfinished").len(), 9);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn an_unwritable_state_directory_is_a_clear_error() {
    let err = Store::open(std::path::Path::new("/nonexistent-kfops-dir/state.db")).expect_err("cannot open");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent-kfops-dir/state.db") && msg.contains("writable"), "{msg}");
}
