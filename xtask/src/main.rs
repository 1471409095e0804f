//! `cargo xtask`: developer tasks for the kfops workspace.
//!
//! ```text
//! cargo xtask codegen [--check]   write (or check) generated files
//! cargo xtask tidy                check the architecture invariants
//! cargo xtask test                set up the Python venv with kfp, then run every test
//! cargo xtask demo                the README's main job on examples/
//! cargo xtask bench local [--reps N]  local runner vs kfp.local → BENCHMARKS.md
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
        Some("venv") => ensure_venv(&root).map(|p| println!("{}", p.display())),
        _ => Err("usage: cargo xtask <codegen [--check] | tidy | test [cargo test args] | demo | bench local [--reps N] | venv>".into()),
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
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", &format!("import kfp, sys; sys.exit(0 if kfp.__version__ == '{KFP_VERSION}' else 1)")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(python);
    }
    eprintln!("xtask: creating {} with kfp=={KFP_VERSION} (once)", venv.display());
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    status(Command::new(&system_python).args(["-m", "venv"]).arg(&venv), "creating the virtualenv")?;
    status(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("kfp=={KFP_VERSION}"),
        ]),
        "installing kfp",
    )?;
    Ok(python)
}

fn run_tests(root: &Path, extra: &[String]) -> Result<(), String> {
    let python = ensure_venv(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    status(
        Command::new(cargo)
            .args(["test", "--workspace", "--locked"])
            .args(extra)
            .env("KFOPS_PYTHON", &python)
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
    std::fs::write(root.join("BENCHMARKS.md"), &text).map_err(|e| format!("writing BENCHMARKS.md: {e}"))?;
    println!("{text}");
    Ok(())
}
