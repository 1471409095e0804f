//! Tests of `kfops-bot`: the binary end to end, and the state store.

use assert_cmd::Command;

fn bot() -> Command {
    Command::cargo_bin("kfops-bot").expect("binary")
}

#[test]
fn parse_command_prints_the_command_as_json() {
    let out = bot().args(["parse-command", "LGTM\n/deploy --run-id=42 --force"]).output().expect("runs");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v, serde_json::json!({"command": {"command": "deploy", "run_id": "42", "force": true}}));
}

#[test]
fn parse_command_reads_stdin_and_reports_no_command() {
    let out = bot().arg("parse-command").write_stdin("just a review comment").output().expect("runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"command":null}"#);
}

#[test]
fn invalid_commands_exit_3_with_the_reason() {
    let out = bot().args(["parse-command", "/deploy --run-id $(id)"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value `$(id)` for `--run-id`"));
    assert!(out.stdout.is_empty());
}

mod policy;
mod report;
mod server;
mod store;
