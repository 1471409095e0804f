//! `cargo xtask`: developer tasks for the kfops workspace.
//!
//! ```text
//! cargo xtask codegen [--check]   write (or check) generated files
//! cargo xtask tidy                check the architecture invariants
//! cargo xtask test                set up the Python venvs (kfp; kserve) and the npm reference packages, then run every test
//! cargo xtask demo                the README's main job on examples/
//! cargo xtask bench local [--reps N]  local runner vs kfp.local → BENCHMARKS.md
//! cargo xtask bench kfp [--reps N]    kfc build-run vs the kfp CLI against the KFP test server → BENCHMARKS.md
//! cargo xtask bench bot               signed webhooks against the bot's front door vs the store's insert rate → BENCHMARKS.md
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use xtask::{codegen, tidy, workspace_root};

/// The `kfp` version the tests and the demo compile with.
const KFP_VERSION: &str = "2.17.3";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("codegen") => run_codegen(&root, args.iter().any(|a| a == "--check")),
        Some("tidy") => run_tidy(&root),
        Some("test") => run_tests(&root, &args[1..]),
        Some("demo") => run_demo(&root),
        Some("bench") if args.get(1).map(String::as_str) == Some("local") => run_bench(&root, &args[2..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("kfp") => run_bench_kfp(&root, &args[2..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("bot") => run_bench_bot(&root, &args[2..]),
        Some("bench-bot-run") => run_bench_bot_release(&root),
        Some("bench-bot-server") => match args.get(1) {
            Some(dir) => xtask::bench_bot::serve(Path::new(dir)),
            None => Err("usage: xtask bench-bot-server <state dir>".into()),
        },
        Some("measure") => run_measure(&args[1..]),
        Some("venv") => ensure_venv(&root).map(|p| println!("{}", p.display())),
        Some("venv-kserve") => ensure_kserve_venv(&root).map(|p| println!("{}", p.display())),
        _ => Err("usage: cargo xtask <codegen [--check] | tidy | test [cargo test args] | demo | bench local|kfp [--reps N] | bench bot | venv | venv-kserve>".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_codegen(root: &Path, check: bool) -> Result<(), String> {
    if check {
        let stale = codegen::stale(root);
        if stale.is_empty() {
            println!("generated files are up to date");
            return Ok(());
        }
        let names: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
        return Err(format!("out of date: {}; run `cargo xtask codegen` and commit", names.join(", ")));
    }
    let changed = codegen::write(root).map_err(|e| format!("writing generated files: {e}"))?;
    for p in &changed {
        println!("wrote {}", p.display());
    }
    if changed.is_empty() {
        println!("generated files are up to date");
    }
    Ok(())
}

fn run_tidy(root: &Path) -> Result<(), String> {
    let problems = tidy::check(root)?;
    if problems.is_empty() {
        println!("tidy: all architecture invariants hold");
        Ok(())
    } else {
        Err(format!("{} violation(s):\n  {}", problems.len(), problems.join("\n  ")))
    }
}

/// The project-local virtualenv with the pinned `kfp`, created on first use.
fn ensure_venv(root: &Path) -> Result<PathBuf, String> {
    // moto's `moto_server` is the S3-compatible server of the S3 client's integration test.
    ensure_pinned_venv(&root.join(".venv"), &[("kfp", "kfp", KFP_VERSION), ("moto", "moto[server]", "5.2.5")])
}

/// The second virtualenv, `.venv-kserve`, with the pinned `kserve` model server and scikit-learn: the
/// inference check's integration tests train an iris model and serve it with the real KServe server.
fn ensure_kserve_venv(root: &Path) -> Result<PathBuf, String> {
    ensure_pinned_venv(
        &root.join(".venv-kserve"),
        &[("kserve", "kserve", "0.21.0"), ("scikit-learn", "scikit-learn", "1.9.1"), ("joblib", "joblib", "1.6.0")],
    )
}

/// A virtualenv at `venv` with exactly these `(distribution, pip requirement, version)` pins,
/// created on first use; when present with the pinned versions, only the version check runs.
fn ensure_pinned_venv(venv: &Path, pins: &[(&str, &str, &str)]) -> Result<PathBuf, String> {
    let python = venv.join("bin/python");
    let wanted: Vec<String> = pins.iter().map(|(dist, _, version)| format!("('{dist}', '{version}')")).collect();
    let check = format!(
        "import sys; from importlib.metadata import version as v; \
         sys.exit(0 if all(v(d) == want for d, want in [{}]) else 1)",
        wanted.join(", ")
    );
    if Command::new(&python).args(["-c", &check]).output().is_ok_and(|o| o.status.success()) {
        return Ok(python);
    }
    let specs: Vec<String> = pins.iter().map(|(_, requirement, version)| format!("{requirement}=={version}")).collect();
    eprintln!("xtask: creating {} with {} (once)", venv.display(), specs.join(", "));
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    status(
        Command::new(&system_python).args(["-m", "venv"]).arg(venv),
        &format!("creating the virtualenv {}", venv.display()),
    )?;
    status(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(&specs),
        &format!("installing {}", specs.join(", ")),
    )?;
    Ok(python)
}

/// The npm reference packages the tests validate against, installed into
/// `.npm-ref/` on first use. Returns the `node_modules` directory.
fn ensure_npm_refs(root: &Path) -> Result<PathBuf, String> {
    // Real webhook payloads recorded by GitHub, published by Octokit.
    const PACKAGES: &[(&str, &str)] = &[("@octokit/webhooks-examples", "7.6.1"), ("@octokit/openapi", "23.0.2")];
    let prefix = root.join(".npm-ref");
    let modules = prefix.join("node_modules");
    let installed = |name: &str, version: &str| {
        std::fs::read_to_string(modules.join(name).join("package.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| v["version"] == version)
    };
    if PACKAGES.iter().all(|(n, v)| installed(n, v)) {
        return Ok(modules);
    }
    let specs: Vec<String> = PACKAGES.iter().map(|(n, v)| format!("{n}@{v}")).collect();
    eprintln!("xtask: installing {} into {} (once)", specs.join(" "), prefix.display());
    std::fs::create_dir_all(&prefix).map_err(|e| format!("creating {}: {e}", prefix.display()))?;
    status(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error", "--prefix"])
            .arg(&prefix)
            .args(&specs),
        "installing the npm reference packages (is npm installed?)",
    )?;
    Ok(modules)
}

fn run_tests(root: &Path, extra: &[String]) -> Result<(), String> {
    let python = ensure_venv(root)?;
    let kserve_python = ensure_kserve_venv(root)?;
    let npm_refs = ensure_npm_refs(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    status(
        Command::new(cargo)
            .args(["test", "--workspace", "--locked"])
            .args(extra)
            .env("KFOPS_PYTHON", &python)
            .env("KFOPS_KSERVE_PYTHON", &kserve_python)
            .env("KFOPS_NPM_REFS", &npm_refs)
            .current_dir(root),
        "cargo test",
    )
}

fn run_demo(root: &Path) -> Result<(), String> {
    let python = ensure_venv(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let example = root.join("examples/churn-model");
    // Validate, then a real run on the embedded local runner (no Kubeflow configured).
    for args in [vec!["validate"], vec!["build-run"]] {
        status(
            Command::new(&cargo)
                .args(["run", "--quiet", "--package", "kfops-cli", "--bin", "kfc", "--", "-C"])
                .arg(&example)
                .args(&args)
                .env("KFOPS_PYTHON", &python)
                .current_dir(root),
            "kfc",
        )?;
    }
    Ok(())
}

fn status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let st = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{what} failed ({st})")) }
}

fn run_bench(root: &Path, args: &[String]) -> Result<(), String> {
    let reps = match args {
        [flag, n] if flag == "--reps" => n.parse::<usize>().map_err(|_| format!("--reps takes a number, got `{n}`"))?,
        [] => 5,
        other => return Err(format!("unexpected arguments {other:?}; usage: cargo xtask bench local [--reps N]")),
    };
    let python = ensure_venv(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    status(
        Command::new(&cargo).args(["build", "--release", "--quiet", "-p", "kfops-cli"]).current_dir(root),
        "building kfc (release)",
    )?;
    let env = xtask::bench::BenchEnv {
        root: root.to_path_buf(),
        python,
        kfc: root.join("target/release/kfc"),
        work: root.join("target/bench"),
    };
    let results = xtask::bench::run_cases(&env, reps)?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let machine = format!("{cpus} CPUs, {} {}", std::env::consts::OS, std::env::consts::ARCH);
    let text = xtask::bench::render(&results, reps, &machine);
    write_bench_section(root, "local", &text)
}

fn write_bench_section(root: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = root.join("BENCHMARKS.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, xtask::bench::replace_section(&current, name, text))
        .map_err(|e| format!("writing BENCHMARKS.md: {e}"))?;
    println!("{text}");
    Ok(())
}

fn run_bench_kfp(root: &Path, args: &[String]) -> Result<(), String> {
    let reps = match args {
        [flag, n] if flag == "--reps" => n.parse::<usize>().map_err(|_| format!("--reps takes a number, got `{n}`"))?,
        [] => 5,
        other => return Err(format!("unexpected arguments {other:?}; usage: cargo xtask bench kfp [--reps N]")),
    };
    let python = ensure_venv(root)?;
    let kfp_cli = python.with_file_name("kfp");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    status(
        Command::new(&cargo)
            .args(["build", "--release", "--quiet", "-p", "kfops-cli", "-p", "xtask"])
            .current_dir(root),
        "building kfc and xtask (release)",
    )?;
    let work = root.join("target/bench-kfp");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let pipeline = root.join("../shared/reference/kfp-ir-examples/p1_linear_params.yaml");
    std::fs::copy(&pipeline, work.join("p1.yaml")).map_err(|e| format!("copying {}: {e}", pipeline.display()))?;
    std::fs::write(
        work.join("kfops.yaml"),
        "pipeline:\n  name: bench\n  experiment_name: bench\n  pipeline_path: p1.yaml\n",
    )
    .map_err(|e| e.to_string())?;
    let server = kfops_kubeflow::kfp::testserver::TestServer::start_blocking(
        kfops_kubeflow::kfp::testserver::TestServerOptions { record_requests: false, ..Default::default() },
    );
    let xtask_bin = root.join("target/release/xtask");
    let measure = |commands: &[Vec<String>]| -> Result<xtask::bench::Measured, String> {
        let mut cmd = Command::new(&xtask_bin);
        cmd.arg("measure");
        for (i, c) in commands.iter().enumerate() {
            if i > 0 {
                cmd.arg("::");
            }
            cmd.args(c);
        }
        let out = cmd.output().map_err(|e| format!("xtask measure: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("measure output: {e}"))?;
        Ok(xtask::bench::Measured {
            wall: std::time::Duration::from_secs_f64(v["wall_ms"].as_f64().unwrap_or_default() / 1000.0),
            max_rss_kib: v["max_rss_kib"].as_i64().unwrap_or_default(),
        })
    };
    // Warm-up: file caches and Python bytecode are not what is measured.
    measure(&[vec![root.join("target/release/kfc").display().to_string(), "--version".into()]])?;
    measure(&[vec![
        kfp_cli.display().to_string(),
        "--endpoint".into(),
        server.url(),
        "pipeline".into(),
        "list".into(),
    ]])?;
    let result = xtask::bench::run_kfp_bench(
        reps,
        &server.url(),
        &root.join("target/release/kfc"),
        &kfp_cli,
        &work,
        &work.join("p1.yaml"),
        &measure,
    )?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let machine = format!("{cpus} CPUs, {} {}", std::env::consts::OS, std::env::consts::ARCH);
    write_bench_section(root, "kfp", &xtask::bench::render_kfp(&result, &machine))
}

/// `cargo xtask measure CMD ARGS… [:: CMD ARGS…]`: run the commands, print wall time and peak memory as JSON.
/// `bench bot`: build the release xtask and run the benchmark there (a debug
/// load generator would measure itself).
fn run_bench_bot(root: &Path, args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("unexpected arguments {args:?}; usage: cargo xtask bench bot"));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    status(
        Command::new(&cargo).args(["build", "--release", "--quiet", "-p", "xtask"]).current_dir(root),
        "building xtask (release)",
    )?;
    let modules = ensure_npm_refs(root)?;
    status(
        Command::new(root.join("target/release/xtask"))
            .arg("bench-bot-run")
            .env("KFOPS_NPM_REFS", modules)
            .current_dir(root),
        "the bot benchmark",
    )
}

fn run_bench_bot_release(root: &Path) -> Result<(), String> {
    use std::io::BufRead;
    const RATE: u32 = 500;
    const SECS: u32 = 10;
    const CONNECTIONS: usize = 32;
    const SUSTAINED_SECS: u32 = 5;
    // Recorded deliveries, found through KFOPS_NPM_REFS (set by `bench bot`) as in the tests.
    ensure_npm_refs(root)?;
    let bodies = xtask::bench_bot::bodies()?;

    let work = root.join("target/bench-bot");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let insert_rate = xtask::bench_bot::insert_rate(&work, 2000)?;
    eprintln!("xtask: raw durable inserts: {insert_rate:.0}/s");

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut server = Command::new(exe)
        .arg("bench-bot-server")
        .arg(&work)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the bench server: {e}"))?;
    let mut addr = String::new();
    std::io::BufReader::new(server.stdout.take().ok_or("no server stdout")?)
        .read_line(&mut addr)
        .map_err(|e| format!("reading the server address: {e}"))?;
    let addr = addr.trim().to_owned();
    if addr.is_empty() {
        let _ = server.kill();
        return Err("the bench server did not start".into());
    }
    let loaded = xtask::bench_bot::load(&addr, &bodies, RATE, SECS, CONNECTIONS, SUSTAINED_SECS);
    let peak_kib = std::fs::read_to_string(format!("/proc/{}/status", server.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0);
    drop(server.stdin.take());
    let exit = server.wait().map_err(|e| e.to_string())?;
    let (open_latencies, sustained_rate, commands_accepted, failures) = loaded?;
    if !exit.success() {
        return Err(format!("the bench server failed ({exit})"));
    }
    let store = kfops_bot::Store::open(&work.join("state.db")).map_err(|e| e.to_string())?;
    let commands_stored = store.unfinished_count().map_err(|e| e.to_string())?;
    let result = xtask::bench_bot::BotBenchResult {
        insert_rate,
        open_rate: RATE,
        open_secs: SECS,
        open_latencies,
        sustained_rate,
        connections: CONNECTIONS,
        commands_accepted,
        commands_stored,
        failures,
        server_peak_kib: peak_kib,
    };
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let machine = format!("{cpus} CPUs, {} {}", std::env::consts::OS, std::env::consts::ARCH);
    let section = xtask::bench_bot::render(&result, &machine);
    print!("{section}");
    let path = root.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, xtask::bench::replace_section(&doc, "bot", &section)).map_err(|e| e.to_string())?;
    Ok(())
}

fn run_measure(args: &[String]) -> Result<(), String> {
    let commands: Vec<Vec<String>> =
        args.split(|a| a == "::").map(<[String]>::to_vec).filter(|c: &Vec<String>| !c.is_empty()).collect();
    let m = xtask::bench::measure_children(&commands)?;
    println!("{}", serde_json::json!({"wall_ms": m.wall.as_secs_f64() * 1000.0, "max_rss_kib": m.max_rss_kib}));
    Ok(())
}
