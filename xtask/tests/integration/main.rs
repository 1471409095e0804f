//! Tests of the xtask checks: the real workspace passes them, and each rule catches what it is for.

use serde_json::json;
use xtask::tidy::{Crate, check_dependencies, parse_metadata};
use xtask::{codegen, tidy, workspace_root};

#[test]
fn the_workspace_keeps_its_architecture_invariants() {
    let problems = tidy::check(&workspace_root()).expect("cargo metadata");
    assert!(problems.is_empty(), "architecture invariants broken:\n  {}", problems.join("\n  "));
}

#[test]
fn generated_files_are_up_to_date() {
    let stale = codegen::stale(&workspace_root());
    assert!(stale.is_empty(), "out of date: {stale:?}; run `cargo xtask codegen` and commit the result");
}

fn krate(name: &str, deps: &[&str]) -> Crate {
    Crate { name: name.into(), deps: deps.iter().map(|d| (*d).to_owned()).collect() }
}

#[test]
fn dependency_rules_catch_each_kind_of_violation() {
    let ok = vec![
        krate("kfops-core", &["serde", "async-trait"]),
        krate("kfops-config", &["kfops-core", "figment"]),
        krate("kfops-kubeflow", &["kfops-core", "tokio"]),
        krate("kfops-cli", &["kfops-core", "kfops-config", "kfops-kubeflow", "clap"]),
        krate("kfops-bot", &["kfops-core", "rusqlite", "axum"]),
        // xtask's benchmarks drive the services through their libraries.
        krate("xtask", &["kfops-bot", "kfops-scm"]),
    ];
    assert!(check_dependencies(&ok).is_empty());

    let cases: &[(Crate, &str)] = &[
        (krate("kfops-core", &["tokio"]), "`kfops-core` must stay free of IO, but depends on `tokio`"),
        (krate("kfops-core", &["kfops-config"]), "`kfops-core` must not depend on the workspace crate `kfops-config`"),
        (
            krate("kfops-deploy", &["kfops-core", "kfops-kubeflow"]),
            "adapter `kfops-deploy` must not depend on adapter `kfops-kubeflow`",
        ),
        (krate("kfops-config", &["kfops-cli"]), "must not depend on the binary crate `kfops-cli`"),
        (krate("kfops-kubeflow", &["octocrab"]), "`octocrab` may only be used by kfops-scm"),
        (krate("kfops-deploy", &["figment"]), "`figment` may only be used by kfops-config"),
        (krate("kfops-extra", &[]), "`kfops-extra` is not a known workspace crate"),
        (krate("kfops-cli", &["kfops-bot"]), "must not depend on the binary crate `kfops-bot`"),
        (krate("kfops-cli", &["rusqlite"]), "`rusqlite` may only be used by kfops-bot"),
    ];
    for (c, want) in cases {
        let problems = check_dependencies(std::slice::from_ref(c));
        assert!(problems.iter().any(|p| p.contains(want)), "{c:?}: {problems:?}");
    }
}

#[test]
fn metadata_parsing_ignores_dev_and_build_dependencies() {
    let meta = json!({"packages": [{"name": "kfops-core", "dependencies": [
        {"name": "serde", "kind": null},
        {"name": "tokio", "kind": "dev"},
        {"name": "cc", "kind": "build"}
    ]}]});
    let crates = parse_metadata(&meta).expect("parse");
    assert_eq!(crates, vec![krate("kfops-core", &["serde"])]);
}

#[test]
fn source_rules_catch_io_in_core_and_stray_test_binaries() {
    let dir = tempfile_dir();
    let core = dir.join("kfops-core");
    std::fs::create_dir_all(core.join("src")).expect("mkdir");
    std::fs::create_dir_all(core.join("tests")).expect("mkdir");
    std::fs::write(core.join("src/lib.rs"), "//! core\npub fn f() { let _ = std::fs::read(\"x\"); }\n").expect("write");
    std::fs::write(core.join("src/error.rs"), "//! errors\n").expect("write");
    std::fs::write(core.join("src/other.rs"), "#[derive(thiserror::Error)] pub struct E;\n").expect("write");
    std::fs::write(core.join("tests/extra.rs"), "").expect("write");
    let problems = tidy::check_sources(&dir, &[krate("kfops-core", &[])]);
    let text = problems.join("\n");
    assert!(text.contains("mentions `std::fs`"), "{text}");
    assert!(text.contains("defines an error type outside error.rs"), "{text}");
    assert!(text.contains("tests/extra.rs`: integration tests live in tests/integration/"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kfops-tidy-test-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn bench_medians_and_fixture() {
    use std::time::Duration;
    let ms = Duration::from_millis;
    assert_eq!(xtask::bench::median(vec![ms(5), ms(1), ms(3)]), ms(3));
    assert_eq!(xtask::bench::median(vec![ms(4), ms(1), ms(3), ms(2)]), ms(2));
    let chain: serde_json::Value = serde_json::from_str(&xtask::bench::trivial_chain_json(3)).expect("json");
    assert_eq!(chain.pointer("/root/dag/tasks/t2/dependentTasks"), Some(&serde_json::json!(["t1"])));
}

#[test]
fn benchmark_sections_are_replaced_in_place() {
    use xtask::bench::replace_section;
    let doc = replace_section("", "local", "## Local\nfigures 1");
    assert!(doc.starts_with("# Benchmarks\n\n<!-- bench:local -->\n## Local\nfigures 1\n<!-- /bench:local -->"));
    let doc = replace_section(&doc, "kfp", "## KFP\nfigures 2");
    let doc = replace_section(&doc, "local", "## Local\nfigures 3");
    assert!(doc.contains("figures 3") && !doc.contains("figures 1") && doc.contains("figures 2"), "{doc}");
    assert!(doc.find("bench:local").unwrap_or(0) < doc.find("bench:kfp").unwrap_or(0), "order kept: {doc}");
}

#[test]
fn the_bot_benchmark_reports_percentiles_and_losses() {
    use std::time::Duration;
    let r = xtask::bench_bot::BotBenchResult {
        insert_rate: 1000.0,
        open_rate: 500,
        open_secs: 10,
        open_latencies: (1..=100).map(Duration::from_millis).collect(),
        sustained_rate: 1500.0,
        connections: 32,
        commands_accepted: 10,
        commands_stored: 9,
        failures: 2,
        server_peak_kib: 2048,
    };
    let text = xtask::bench_bot::render(&r, "test machine");
    for want in [
        "| raw durable inserts/s (anchor, sequential `Store::accept`) | 1000 /s | 1.000 |",
        "| sustained webhooks/s (closed loop; half are commands) | 1500 /s | 1.500 |",
        "p50 time to 2xx | 51.00 ms |",
        "p99 time to 2xx (target < 20 ms) | 99.00 ms |",
        "| open loop 500/s: max | 100.00 ms |",
        "| 10 / 9 / 1 |",
        "| non-2xx answers | 2 |",
        "| 2.0 MiB |",
    ] {
        assert!(text.contains(want), "missing `{want}` in\n{text}");
    }
}
