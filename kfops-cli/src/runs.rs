//! `kfc local run`, `kfc build-run` (local runner), `kfc runs list|show`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kfops_core::pipeline::RunState;
use kfops_kubeflow::compile::Compiler;
use kfops_kubeflow::ir::PipelineJob;
use kfops_kubeflow::local::store::RunRecord;
use kfops_kubeflow::local::{LocalRun, LocalRunner, LocalRunnerOptions};
use serde_json::{Value, json};

use crate::cli::{Format, LocalRunArgs};
use crate::commands::Context;
use crate::error::CliError;
use crate::progress::RunProgress;

/// Parse `-p NAME=VALUE` arguments (values are YAML scalars).
pub(crate) fn parse_params(params: &[String]) -> Result<BTreeMap<String, Value>, CliError> {
    let mut out = BTreeMap::new();
    for p in params {
        let (name, raw) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("`-p {p}` is not NAME=VALUE (e.g. `-p epochs=10`)")))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(CliError::Usage(format!("`-p {p}` has an empty name")));
        }
        let value = if raw.is_empty() {
            Value::String(String::new())
        } else {
            let yaml: serde_yaml::Value = serde_yaml::from_str(raw)
                .map_err(|e| CliError::Usage(format!("`-p {p}`: cannot read the value as YAML: {e}")))?;
            serde_json::to_value(yaml).map_err(|e| CliError::Usage(format!("`-p {p}`: {e}")))?
        };
        if out.insert(name.to_owned(), value).is_some() {
            return Err(CliError::Usage(format!("`-p {name}=…` is given more than once")));
        }
    }
    Ok(out)
}

/// Run `job` on the local runner with live progress and Ctrl-C handling, then print the result.
pub(crate) async fn run_locally(
    ctx: &Context,
    job: &PipelineJob,
    args: &BTreeMap<String, Value>,
    root: &Path,
    run: &LocalRunArgs,
) -> Result<(), CliError> {
    let mut options = LocalRunnerOptions::default();
    if let Some(n) = run.max_parallel {
        options.max_parallel = usize::from(n);
    }
    let runner = LocalRunner::new(root, options);
    let progress = Arc::new(RunProgress::new(ctx.printer.quiet || ctx.printer.format == Format::Json));
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let ticker_progress = progress.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            ticker_progress.tick();
        }
    });
    // Ctrl-C and SIGTERM (CI timeouts, `timeout`, container stops) both cancel the run cleanly.
    let signals = tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        let _ = cancel_tx.send(true);
    });
    let result = runner.run(job, args, progress.clone(), cancel_rx).await;
    ticker.abort();
    signals.abort();
    progress.finish();
    let run = result?;
    report(ctx, &run);
    outcome(&run)
}

fn report(ctx: &Context, run: &LocalRun) {
    let r = &run.record;
    if ctx.printer.format == Format::Json {
        ctx.printer.json(&run_json(r));
        return;
    }
    let secs = r.duration_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
    ctx.printer.out(&format!("run {} {} in {secs:.2}s ({})", r.id, r.state, run.dir.display()));
    for (k, v) in &r.outputs {
        ctx.printer.out(&format!("  output {k} = {v}"));
    }
}

fn outcome(run: &LocalRun) -> Result<(), CliError> {
    let r = &run.record;
    match r.state {
        RunState::Succeeded => Ok(()),
        RunState::Canceled => {
            Err(CliError::Interrupted(format!("run {} was cancelled; its record is in {}", r.id, run.dir.display())))
        }
        _ => Err(CliError::RunFailed(format!(
            "run {} {}: {}\n(`kfc runs show {}` for details; logs in {})",
            r.id,
            r.state,
            r.error.as_deref().unwrap_or("no reason recorded"),
            &r.id[..8.min(r.id.len())],
            run.dir.join("tasks").display()
        ))),
    }
}

/// The one JSON object `--output json` prints for a run.
pub(crate) fn run_json(r: &RunRecord) -> Value {
    json!({
        "run_id": r.id,
        "state": r.effective_state().as_str(),
        "outputs": r.outputs,
        "tasks": r.tasks.iter().map(|t| json!({"name": t.path, "state": t.state.as_str(), "outputs": t.outputs})).collect::<Vec<_>>(),
    })
}

/// `kfc local run`.
pub(crate) async fn local_run(
    ctx: &Context,
    pipeline: &Path,
    params: &[String],
    root: Option<PathBuf>,
    function: Option<&str>,
    run: &LocalRunArgs,
) -> Result<(), CliError> {
    let args = parse_params(params)?;
    let compiled = Compiler::new().compile(pipeline, function, &ctx.root).await?;
    let root = root.map(|r| if r.is_absolute() { r } else { ctx.root.join(r) }).unwrap_or_else(|| ctx.root.clone());
    run_locally(ctx, &compiled.job, &args, &root, run).await
}

/// `kfc runs list`.
pub(crate) fn runs_list(ctx: &Context, root: Option<PathBuf>) -> Result<(), CliError> {
    let runner = LocalRunner::new(root.unwrap_or_else(|| ctx.root.clone()), LocalRunnerOptions::default());
    let runs = runner.store().list()?;
    if ctx.printer.format == Format::Json {
        ctx.printer.json(&Value::Array(runs.iter().map(list_json).collect()));
        return Ok(());
    }
    if runs.is_empty() {
        ctx.printer.out(&format!("no local runs in {}", runner.store().runs_dir().display()));
        return Ok(());
    }
    ctx.printer
        .out(&format!("{:<8}  {:<24}  {:<9}  {:<19}  {:>9}", "RUN", "PIPELINE", "STATE", "CREATED (UTC)", "DURATION"));
    for r in &runs {
        ctx.printer.out(&format!(
            "{:<8}  {:<24}  {:<9}  {:<19}  {:>9}",
            &r.id[..8.min(r.id.len())],
            r.pipeline_name,
            r.effective_state().as_str(),
            r.created_at.get(..19).unwrap_or(&r.created_at).replace('T', " "),
            r.duration_ms.map(|ms| format!("{:.2}s", ms as f64 / 1000.0)).unwrap_or_else(|| "-".into())
        ));
    }
    Ok(())
}

fn list_json(r: &RunRecord) -> Value {
    json!({
        "run_id": r.id,
        "pipeline": r.pipeline_name,
        "state": r.effective_state().as_str(),
        "created_at": r.created_at,
        "finished_at": r.finished_at,
        "duration_ms": r.duration_ms,
    })
}

/// `kfc runs show`.
pub(crate) fn runs_show(ctx: &Context, id: &str, root: Option<PathBuf>) -> Result<(), CliError> {
    let runner = LocalRunner::new(root.unwrap_or_else(|| ctx.root.clone()), LocalRunnerOptions::default());
    let r = runner.store().load(id)?;
    if ctx.printer.format == Format::Json {
        ctx.printer.json(&serde_json::to_value(&r).unwrap_or(Value::Null));
        return Ok(());
    }
    let p = &ctx.printer;
    p.out(&format!("run       {}", r.id));
    p.out(&format!("pipeline  {}", r.pipeline_name));
    p.out(&format!("state     {}", r.effective_state()));
    p.out(&format!("created   {}", r.created_at));
    if let Some(ms) = r.duration_ms {
        p.out(&format!("duration  {:.2}s", ms as f64 / 1000.0));
    }
    p.out(&format!("folder    {}", runner.store().run_dir(&r.id).display()));
    if !r.parameters.is_empty() {
        p.out("arguments");
        for (k, v) in &r.parameters {
            p.out(&format!("  {k} = {v}"));
        }
    }
    if !r.outputs.is_empty() {
        p.out("outputs");
        for (k, v) in &r.outputs {
            p.out(&format!("  {k} = {v}"));
        }
    }
    p.out("tasks");
    for t in &r.tasks {
        let d = t.duration_ms.map(|ms| format!("{:.2}s", ms as f64 / 1000.0)).unwrap_or_default();
        p.out(&format!("  {:<44} {:<9} {:>8}", t.path, t.state.as_str(), d));
        for (k, v) in &t.outputs {
            p.out(&format!("      {k} = {}", truncate(&v.to_string(), 100)));
        }
        if let Some(e) = &t.error {
            for line in e.lines().take(25) {
                p.out(&format!("      {line}"));
            }
        }
    }
    if let Some(e) = &r.error {
        p.out(&format!("error: {}", e.lines().next().unwrap_or_default()));
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

/// `kfc runs …`: Kubeflow runs when an endpoint is configured (and not `--local`), local runs otherwise.
pub(crate) async fn runs(ctx: &Context, command: crate::cli::RunsCommand) -> Result<(), CliError> {
    use crate::cli::RunsCommand;
    use crate::kubeflow::{RunAction, connection, optional_config};

    let force_local = match &command {
        RunsCommand::List { target, .. } | RunsCommand::Show { target, .. } | RunsCommand::Terminate { target, .. } => {
            target.local
        }
        RunsCommand::Wait { .. } | RunsCommand::Retry { .. } => false,
    };
    let loaded = if force_local {
        None
    } else {
        match optional_config(ctx) {
            Ok(l) => l,
            // Local run records do not need a valid configuration: say why Kubeflow is not used, go on locally.
            Err(CliError::Config(e))
                if ctx.global.kubeflow_url.is_none() && std::env::var_os("KFOPS_KUBEFLOW__URL").is_none() =>
            {
                ctx.printer.note(&format!("warning: the configuration is invalid, so only local runs are shown:\n{e}"));
                None
            }
            Err(e) => return Err(e),
        }
    };
    let conn = if force_local { None } else { connection(ctx, loaded.as_ref(), &ctx.global.auth) };
    match (command, conn) {
        (RunsCommand::List { .. }, Some(conn)) => crate::kubeflow::runs_list(ctx, loaded.as_ref(), conn).await,
        (RunsCommand::Show { id, .. }, Some(conn)) => crate::kubeflow::runs_action(ctx, conn, &id, RunAction::Show).await,
        (RunsCommand::Wait { id, .. }, Some(conn)) => crate::kubeflow::runs_action(ctx, conn, &id, RunAction::Wait).await,
        (RunsCommand::Terminate { id, .. }, Some(conn)) => {
            crate::kubeflow::runs_action(ctx, conn, &id, RunAction::Terminate).await
        }
        (RunsCommand::Retry { id }, Some(conn)) => crate::kubeflow::runs_action(ctx, conn, &id, RunAction::Retry).await,
        (RunsCommand::List { target, .. }, None) => runs_list(ctx, target.root),
        (RunsCommand::Show { id, target, .. }, None) => runs_show(ctx, &id, target.root),
        (RunsCommand::Terminate { id, target }, None) => {
            let runner = LocalRunner::new(target.root.unwrap_or_else(|| ctx.root.clone()), LocalRunnerOptions::default());
            let record = runner.store().load(&id)?;
            let state = record.effective_state();
            if state.is_terminal() {
                ctx.printer.out(&format!("run {} has already finished ({state}); nothing to cancel", record.id));
                return Ok(());
            }
            use kfops_core::PipelineBackend;
            runner
                .terminate(&kfops_core::pipeline::RunId(record.id.clone()))
                .await
                .map_err(|e| CliError::Backend(e.to_string()))?;
            ctx.printer.out(&format!("cancellation of local run {} requested", record.id));
            Ok(())
        }
        (RunsCommand::Wait { .. } | RunsCommand::Retry { .. }, None) => Err(CliError::Usage(
            "`kfc runs wait` and `kfc runs retry` work on Kubeflow runs, and no Kubeflow endpoint is configured (kubeflow.url, KFOPS_KUBEFLOW__URL or --kubeflow-url)".into(),
        )),
    }
}
