//! `cargo xtask bench local`: the embedded local runner against kfp.local.
//!
//! Every case runs both tools as whole commands (process start included),
//! alternating them so machine noise hits both alike, and reports medians and
//! the ratio kfc / anchor measured in the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One measured case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// What the anchor is.
    pub anchor_name: String,
    /// Median wall time of the anchor.
    pub anchor: Option<Duration>,
    /// Median wall time of `kfc`.
    pub kfc: Duration,
    /// What the case shows.
    pub note: String,
}

/// Median of a non-empty list (the lower middle for even counts).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len().saturating_sub(1) / 2).copied().unwrap_or_default()
}

/// Wall time of one command run; fails if the command fails.
pub fn time_command(cmd: &mut Command) -> Result<Duration, String> {
    let started = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(elapsed)
}

/// A compiled pipeline of `n` trivial container tasks in a chain (`sh -c true`).
pub fn trivial_chain_json(n: usize) -> String {
    let mut components = serde_json::Map::new();
    let mut executors = serde_json::Map::new();
    let mut tasks = serde_json::Map::new();
    for i in 0..n {
        components.insert(format!("comp-t{i}"), serde_json::json!({"executorLabel": format!("exec-t{i}")}));
        executors.insert(
            format!("exec-t{i}"),
            serde_json::json!({"container": {"image": "alpine:3.20", "command": ["sh", "-c"], "args": ["true"]}}),
        );
        let deps: Vec<String> = if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] };
        tasks.insert(
            format!("t{i}"),
            serde_json::json!({"componentRef": {"name": format!("comp-t{i}")}, "taskInfo": {"name": format!("t{i}")}, "dependentTasks": deps}),
        );
    }
    serde_json::json!({
        "components": components,
        "deploymentSpec": {"executors": executors},
        "pipelineInfo": {"name": "bench-trivial-chain"},
        "root": {"dag": {"tasks": tasks}},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.17.3"
    })
    .to_string()
}

/// Render the results as the BENCHMARKS.md section.
pub fn render(results: &[CaseResult], reps: usize, machine: &str) -> String {
    let mut out = String::from(
        "## Local runner (`cargo xtask bench local`)\n\nEvery figure is a median of whole-command wall times, \
         kfc and its anchor alternated in the same run. Ratios are kfc / anchor (below 1 = kfc faster).\n\n",
    );
    out.push_str(&format!("Machine: {machine}. Repetitions per case: {reps}.\n\n"));
    out.push_str("| case | anchor | anchor median | kfc median | ratio | what it shows |\n|---|---|---|---|---|---|\n");
    for r in results {
        let (anchor, ratio) = match r.anchor {
            Some(a) => (human(a), format!("{:.3}", r.kfc.as_secs_f64() / a.as_secs_f64().max(1e-9))),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {anchor} | {} | {ratio} | {} |\n",
            r.name,
            r.anchor_name,
            human(r.kfc),
            r.note
        ));
    }
    out
}

/// A duration for the table: seconds above one second, milliseconds below.
fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.3} s", d.as_secs_f64())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    }
}

/// Paths the benchmark needs.
pub struct BenchEnv {
    /// The workspace root.
    pub root: PathBuf,
    /// Python with kfp (the anchor's interpreter).
    pub python: PathBuf,
    /// The release `kfc` binary.
    pub kfc: PathBuf,
    /// Scratch folder.
    pub work: PathBuf,
}

impl BenchEnv {
    fn kfc(&self, pipeline: &Path, params: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kfc);
        // Sleeping tasks are not CPU-bound: allow them all at once (the default is the CPU count).
        cmd.arg("-C").arg(&self.work).args(["-q", "local", "run", "--max-parallel", "8"]).arg(pipeline);
        for p in params {
            cmd.args(["-p", p]);
        }
        cmd.env("KFOPS_PYTHON", &self.python);
        cmd
    }

    fn kfp_local(&self, pipeline: &Path, params: &[&str]) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.root.join("xtask/bench/kfp_local_run.py")).arg(pipeline).arg(self.work.join("kfp-local-outputs"));
        cmd.args(params);
        cmd
    }
}

/// Run every case `reps` times.
pub fn run_cases(env: &BenchEnv, reps: usize) -> Result<Vec<CaseResult>, String> {
    std::fs::create_dir_all(&env.work).map_err(|e| e.to_string())?;
    let fanout = env.work.join("fanout.yaml");
    compile(env, &env.root.join("xtask/bench/fanout.py"), &fanout)?;
    let p1 = env.root.join("../shared/reference/kfp-ir-examples/p1_linear_params.yaml");
    let chain_n = 20;
    let chain = env.work.join("trivial-chain.json");
    std::fs::write(&chain, trivial_chain_json(chain_n)).map_err(|e| e.to_string())?;

    // Warm up: virtualenv creation and file caches are not what is measured.
    time_command(&mut env.kfc(&p1, &[]))?;
    time_command(&mut env.kfp_local(&p1, &[]))?;

    let mut results = Vec::new();
    for (name, path, note) in [
        (
            "fan-out: 4 independent 1 s tasks",
            &fanout,
            "kfc (`--max-parallel 8`) ≈ the slowest task; kfp.local runs them one after another",
        ),
        ("p1: 3-task lightweight pipeline", &p1, "per-task overhead of lightweight Python components"),
    ] {
        let (mut a, mut k) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            a.push(time_command(&mut env.kfp_local(path, &[]))?);
            k.push(time_command(&mut env.kfc(path, &[]))?);
        }
        results.push(CaseResult {
            name: name.into(),
            anchor_name: "kfp.local 2.17.3 (use_venv=False)".into(),
            anchor: Some(median(a)),
            kfc: median(k),
            note: note.into(),
        });
    }

    // Per-task overhead of a trivial container task, against spawning the same command directly.
    let (mut a, mut k) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let started = Instant::now();
        for _ in 0..chain_n {
            time_command(Command::new("sh").args(["-c", "true"]))?;
        }
        a.push(started.elapsed() / u32::try_from(chain_n).unwrap_or(1));
        k.push(time_command(&mut env.kfc(&chain, &[]))? / u32::try_from(chain_n).unwrap_or(1));
    }
    let per_task = median(k);
    results.push(CaseResult {
        name: format!("trivial container task (chain of {chain_n}, per task)"),
        anchor_name: "spawning `sh -c true` directly".into(),
        anchor: Some(median(a)),
        kfc: per_task,
        note: format!(
            "kfc per-task cost {:.1} ms (target < 50 ms; includes process start of kfc / {chain_n})",
            per_task.as_secs_f64() * 1000.0
        ),
    });
    Ok(results)
}

fn compile(env: &BenchEnv, source: &Path, out: &Path) -> Result<(), String> {
    time_command(
        Command::new(&env.kfc).args(["compile"]).arg(source).arg("--output").arg(out).env("KFOPS_PYTHON", &env.python),
    )
    .map(|_| ())
}

/// Replace (or append) the section `name` of BENCHMARKS.md, keeping the other benchmarks' sections.
pub fn replace_section(document: &str, name: &str, section: &str) -> String {
    let begin = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let block = format!("{begin}\n{}\n{end}", section.trim_end());
    match (document.find(&begin), document.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &document[..b], &document[e + end.len()..]),
        _ if document.trim().is_empty() => format!("# Benchmarks\n\n{block}\n"),
        _ => format!("{}\n\n{block}\n", document.trim_end()),
    }
}

/// Wall time and peak memory of one measured command sequence (`cargo xtask measure`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Wall time of the whole sequence.
    pub wall: Duration,
    /// Peak resident memory of the largest process in it, in KiB.
    pub max_rss_kib: i64,
}

/// Run `commands` one after another in this process's children and measure them.
///
/// Meant to run in a fresh process (`cargo xtask measure`): the peak memory is
/// read from `getrusage(RUSAGE_CHILDREN)`, which covers every child waited for.
pub fn measure_children(commands: &[Vec<String>]) -> Result<Measured, String> {
    let started = Instant::now();
    for argv in commands {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let out = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    let wall = started.elapsed();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_err(|e| format!("getrusage: {e}"))?;
    Ok(Measured { wall, max_rss_kib: usage.max_rss() })
}

/// Measures a sequence of commands in a fresh process (see [`measure_children`]).
pub type Measure<'a> = dyn Fn(&[Vec<String>]) -> Result<Measured, String> + 'a;

/// One alternating comparison: `kfc build-run` vs `kfp pipeline create` + `kfp run create`.
pub struct KfpBenchResult {
    /// Median wall time of kfc.
    pub kfc_wall: Duration,
    /// Median wall time of the kfp CLI.
    pub kfp_wall: Duration,
    /// Median peak memory of kfc, KiB.
    pub kfc_rss: i64,
    /// Median peak memory of the kfp CLI, KiB.
    pub kfp_rss: i64,
    /// Repetitions.
    pub reps: usize,
}

fn median_i64(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or_default()
}

/// Run the KFP comparison against the test server at `url`. `measure` builds the command
/// that measures a command sequence in a fresh process (joined with `::`).
pub fn run_kfp_bench(
    reps: usize,
    url: &str,
    kfc: &Path,
    kfp_cli: &Path,
    project: &Path,
    pipeline: &Path,
    measure: &Measure<'_>,
) -> Result<KfpBenchResult, String> {
    let (mut kw, mut pw, mut kr, mut pr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let s = |p: &Path| p.display().to_string();
    for i in 0..reps {
        let kfc_cmd = vec![
            s(kfc),
            "-C".into(),
            s(project),
            "--kubeflow-url".into(),
            url.into(),
            "--no-auth".into(),
            "-q".into(),
            "build-run".into(),
            "--set".into(),
            format!("pipeline.name=bench-kfc-{i}"),
        ];
        let name = format!("bench-kfp-{i}");
        // The kfp CLI cannot run a pipeline by name (`run create -n` needs the version id too),
        // so the ids are read from its JSON output between the calls, as a user's script would.
        let kfp = s(kfp_cli);
        let script = format!(
            "set -e\n\
             P=$('{kfp}' --endpoint '{url}' --output json pipeline create -p '{name}' '{file}' | \
               python3 -c 'import json,re,sys; s=sys.stdin.read(); d=json.JSONDecoder().raw_decode(s[re.search(r\"[[{{]\", s).start():])[0]; print(d[\"pipeline_id\"])')\n\
             V=$('{kfp}' --endpoint '{url}' --output json pipeline list-versions \"$P\" | \
               python3 -c 'import json,re,sys; s=sys.stdin.read(); d=json.JSONDecoder().raw_decode(s[re.search(r\"[[{{]\", s).start():])[0]; d=d[0] if isinstance(d, list) else d; print(d[\"pipeline_version_id\"])')\n\
             '{kfp}' --endpoint '{url}' run create -e bench -r 'run-{i}' -p \"$P\" -v \"$V\"\n",
            file = s(pipeline)
        );
        let kfp_cmds = vec![vec!["sh".to_owned(), "-c".to_owned(), script]];
        let k = measure(&[kfc_cmd])?;
        let p = measure(&kfp_cmds)?;
        kw.push(k.wall);
        kr.push(k.max_rss_kib);
        pw.push(p.wall);
        pr.push(p.max_rss_kib);
    }
    Ok(KfpBenchResult {
        kfc_wall: median(kw),
        kfp_wall: median(pw),
        kfc_rss: median_i64(kr),
        kfp_rss: median_i64(pr),
        reps,
    })
}

/// The BENCHMARKS.md section for the KFP comparison.
pub fn render_kfp(r: &KfpBenchResult, machine: &str) -> String {
    format!(
        "## Kubeflow Pipelines: publish + run (`cargo xtask bench kfp`)\n\n\
         `kfc build-run` (new pipeline, upload, experiment, run; precompiled YAML) against the official `kfp` CLI 2.17.3 doing the same \
         (`kfp pipeline create`, `kfp pipeline list-versions` for the version id that `kfp run create` needs, `kfp run create`; \
         ids read from `--output json` with a one-line `python3 -c`), alternating, both against the kfops KFP test server on localhost. \
         Medians of {reps} runs; peak memory is the largest process's resident set (getrusage). Machine: {machine}.\n\n\
         | measure | kfp CLI (anchor) | kfc | ratio kfc / anchor |\n|---|---|---|---|\n\
         | wall time | {} | {} | {:.3} |\n| peak memory | {:.1} MiB | {:.1} MiB | {:.3} |\n",
        human(r.kfp_wall),
        human(r.kfc_wall),
        r.kfc_wall.as_secs_f64() / r.kfp_wall.as_secs_f64().max(1e-9),
        r.kfp_rss as f64 / 1024.0,
        r.kfc_rss as f64 / 1024.0,
        r.kfc_rss as f64 / (r.kfp_rss as f64).max(1.0),
        reps = r.reps
    )
}
