//! Tests of `kfops-bot`: the binary end to end, and the state store.

use assert_cmd::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// One HTTP/1.1 request; returns (status, body).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

mod config;
mod e2e;
mod policy;
mod report;
mod server;
mod store;
