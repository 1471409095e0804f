//! The bot configuration file: the documented example, secrets, and the
//! messages for mistakes (file, line, column and key).

use std::path::{Path, PathBuf};

use kfops_bot::config::BotConfig;
use kfops_bot::error::ConfigError;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/bot/kfops-bot.yaml")
}

fn parse(text: &str) -> Result<BotConfig, ConfigError> {
    BotConfig::parse(text, Path::new("bot.yaml"))
}

const MINIMAL: &str = "
state_dir: /tmp/kfops-bot
repositories: [acme/churn-model]
github:
  auth: { token: { env: GH_TOKEN }, login: acme-bot }
  webhook_secrets: [{ env: HOOK_SECRET }]
kubeflow:
  url: http://localhost:8888
";

#[test]
fn the_documented_example_parses_with_every_section() {
    let config = BotConfig::load(&example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.port(), 8080);
    assert_eq!(config.repositories, ["acme/churn-model", "acme-ml/*"]);
    assert_eq!(config.bot_login(), "kfops[bot]");
    assert_eq!(config.github.webhook_secrets.len(), 2);
    assert_eq!(config.kubeflow.namespace.as_deref(), Some("team-ml"));
    let ib = config.image_builder.as_ref().expect("image_builder");
    assert_eq!(ib.kaniko.as_ref().map(|k| k.namespace.as_str()), Some("kfops-builds"));
    assert_eq!(config.policy.staging_deploy.users, ["release-captain"]);
    assert_eq!(config.workers.concurrency, 4);
    let deploy = config.deploy.as_ref().expect("deploy");
    assert_eq!(deploy.production.namespaces, ["models"]);
    assert_eq!(deploy.staging.namespaces, ["models-staging"]);
    assert!(!deploy.allow_manifest_templates);
    assert_eq!(config.database_path(), Path::new("/var/lib/kfops-bot/bot.db"));
}

#[test]
fn defaults_fill_what_a_minimal_file_leaves_out() {
    let config = parse(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.github.api_url, "https://api.github.com");
    assert_eq!(config.github.pacing_ms, 1000);
    assert_eq!(config.body_limit_bytes, 1024 * 1024);
    assert_eq!(config.policy, kfops_bot::policy::Policy::default());
    assert!(config.image_builder.is_none());
    assert_eq!(config.bot_login(), "acme-bot");
}

#[test]
fn unknown_keys_are_errors_with_their_position() {
    let text = MINIMAL.replace("kubeflow:\n", "kubeflow:\n  namspace: x\n");
    let err = parse(&text).expect_err("typo").to_string();
    assert!(err.starts_with("bot.yaml:8:"), "{err}");
    assert!(err.contains("unknown field `namspace`") && err.contains("namespace"), "{err}");
}

#[test]
fn every_rule_violation_is_reported_at_once() {
    let text = "
state_dir: /tmp/x
repositories: []
github:
  api_url: ftp://github.example
  auth: { token: { env: A }, app_id: 3 }
  webhook_secrets: [{ env: A, file: /b }]
kubeflow:
  url: localhost:8888
  auth: { token: { env: T }, none: true }
workers: { concurrency: 0 }
";
    let err = parse(text).expect_err("invalid").to_string();
    for expected in [
        "`repositories` is empty",
        "`github.webhook_secrets[0]`: give exactly one of `file` or `env`",
        "`github.api_url` `ftp://github.example` is not an http(s) URL",
        "`kubeflow.url` `localhost:8888` is not an http(s) URL",
        "`github.auth`: give either `token` + `login` or `app_id`",
        "`kubeflow.auth`: give at most one of",
        "`workers.concurrency` must be at least 1",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn an_incomplete_app_names_the_missing_keys() {
    let text = MINIMAL.replace("{ token: { env: GH_TOKEN }, login: acme-bot }", "{ app_id: 7 }");
    let err = parse(&text).expect_err("incomplete").to_string();
    assert!(err.contains("`github.auth.app_slug` is missing"), "{err}");
    assert!(err.contains("`github.auth.private_key` is missing"), "{err}");
    assert!(!err.contains("`github.auth.app_id` is missing"), "{err}");
}

#[test]
fn secrets_come_from_files_and_env_and_are_never_printed() {
    let dir = std::env::temp_dir().join(format!("kfops-bot-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("secret");
    std::fs::write(&file, "s3cr3t-from-file\n").expect("write");
    let text = MINIMAL.replace(
        "webhook_secrets: [{ env: HOOK_SECRET }]",
        &format!("webhook_secrets: [{{ file: {} }}, {{ env: KFOPS_TEST_UNSET_SECRET_VAR }}]", file.display()),
    );
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let err = config.webhook_secrets().expect_err("the env var is unset").to_string();
    assert_eq!(
        err,
        "`github.webhook_secrets[1]`: the environment variable KFOPS_TEST_UNSET_SECRET_VAR is not set (or not UTF-8)"
    );
    assert_eq!(config.github.webhook_secrets[0].read("k").expect("file"), "s3cr3t-from-file");
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    std::fs::write(&file, "  \n").expect("write");
    let err = config.github.webhook_secrets[0].read("github.webhook_secrets[0]").expect_err("empty").to_string();
    assert_eq!(err, "`github.webhook_secrets[0]`: the secret is empty");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_config_names_the_problem_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("kfops-bot-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("bot.yaml");
    std::fs::write(&path, MINIMAL.replace("repositories: [acme/churn-model]", "repositories: [acme]")).expect("write");
    let out = super::bot().args(["check-config", "--config"]).arg(&path).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("repository allowlist entry `acme` is not `owner/name` or `owner/*`"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
