//! The subcommands: each composes the library crates and prints.

use std::path::{Path, PathBuf};

use kfops_config::{ConfigError, ConfigLoader, FlagValue, LoadedConfig};
use kfops_kubeflow::compile::{Compiled, Compiler};
use kfops_kubeflow::ir::{ArgumentProblem, Diagnostic as LintDiagnostic, Severity as LintSeverity};
use serde_json::{Value, json};

use crate::cli::{Format, GlobalArgs, IrFormat};
use crate::error::CliError;
use crate::output::{Printer, diagnostic_json};

/// Shared state of one `kfc` invocation.
pub(crate) struct Context {
    pub(crate) global: GlobalArgs,
    pub(crate) printer: Printer,
    pub(crate) root: PathBuf,
}

impl Context {
    /// The configuration loader for this invocation's flags and environment.
    fn loader(&self) -> ConfigLoader {
        let mut loader = ConfigLoader::new(&self.root).env(std::env::vars());
        if let Some(f) = &self.global.config {
            loader = loader.file(f);
        }
        for o in &self.global.config_override {
            loader = loader.override_file(o);
        }
        for s in &self.global.set {
            loader = loader.set(s.clone());
        }
        if let Some(url) = &self.global.kubeflow_url {
            loader = loader.flag(FlagValue {
                flag: "--kubeflow-url".into(),
                key: "kubeflow.url".into(),
                value: url.clone(),
            });
        }
        if let Some(ns) = &self.global.namespace {
            loader = loader.flag(FlagValue {
                flag: "--namespace".into(),
                key: "kubeflow.namespace".into(),
                value: ns.clone(),
            });
        }
        loader
    }

    /// Load and validate the configuration, printing its warnings.
    pub(crate) fn load(&self) -> Result<LoadedConfig, ConfigError> {
        self.load_config()
    }

    /// Load and validate the configuration, printing its warnings.
    fn load_config(&self) -> Result<LoadedConfig, ConfigError> {
        let loaded = self.loader().load()?;
        self.printer.warnings(&loaded.warnings);
        Ok(loaded)
    }

    pub(crate) async fn compile(&self, source: &Path, function: Option<&str>) -> Result<Compiled, CliError> {
        self.printer.note(&format!("compiling {}", source.display()));
        let compiled = Compiler::new().compile(source, function, &self.root).await?;
        if let Some(py) = &compiled.python {
            self.printer.detail(&format!("compiled with {} in {:.2?}", py.display(), compiled.elapsed));
        }
        if !compiled.compiler_messages.is_empty() {
            self.printer.detail(&compiled.compiler_messages);
        }
        Ok(compiled)
    }
}

/// `kfc validate`.
pub(crate) async fn validate(ctx: &Context) -> Result<(), CliError> {
    let p = ctx.printer;
    let mut report = json!({"ok": false});
    let loaded = match ctx.load_config() {
        Ok(l) => l,
        Err(e) => {
            if p.format == Format::Json {
                report["config"] = config_error_json(&e);
                p.json(&report);
            }
            return Err(e.into());
        }
    };
    report["config"] = json!({
        "file": loaded.file.display().to_string(),
        "warnings": loaded.warnings.iter().map(diagnostic_json).collect::<Vec<_>>(),
    });
    p.note(&format!("ok       configuration {}", loaded.file.display()));

    let pipeline = &loaded.config.pipeline;
    let compiled =
        match ctx.compile(Path::new(&pipeline.pipeline_path), pipeline.pipeline_function_name.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                if p.format == Format::Json {
                    report["compile"] = json!({"error": e.to_string()});
                    p.json(&report);
                }
                return Err(e);
            }
        };
    let spec = &compiled.job.spec;
    report["pipeline"] = json!({
        "name": spec.pipeline_info.name,
        "source": pipeline.pipeline_path,
        "tasks": spec.root.dag.as_ref().map_or(0, |d| d.tasks.len()),
        "components": spec.components.len(),
    });
    p.note(&format!(
        "ok       compiled {} → pipeline `{}` ({} components)",
        pipeline.pipeline_path,
        spec.pipeline_info.name,
        spec.components.len()
    ));

    let mut lint = spec.lint();
    // Images the project does not build must be pinned, or runs are not reproducible.
    let (configured, registry) = match &loaded.config.image_builder {
        Some(ib) => (ib.images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ib.container_registry_uri.as_str()),
        None => (Vec::new(), ""),
    };
    for message in kfops_kubeflow::image::pin::image_warnings(spec, &configured, registry) {
        lint.push(LintDiagnostic { severity: LintSeverity::Warning, path: "deploymentSpec.executors".into(), message });
    }
    let lint_errors = lint.iter().filter(|d| d.severity == LintSeverity::Error).count();
    report["lint"] = Value::Array(lint.iter().map(lint_json).collect());
    if p.format == Format::Text {
        for d in &lint {
            if d.severity == LintSeverity::Error || !p.quiet {
                eprintln_lint(d);
            }
        }
    }
    if lint_errors == 0 {
        p.note(&format!("ok       lint ({} warnings)", lint.len()));
    }

    let arg_result = spec.check_arguments(&loaded.config.pipeline.pipeline_args);
    match &arg_result {
        Ok(values) => {
            report["arguments"] = json!({"values": values});
            let rendered: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            p.note(&format!(
                "ok       arguments {}",
                if rendered.is_empty() { "(none)".into() } else { rendered.join(" ") }
            ));
        }
        Err(problems) => {
            report["arguments"] = json!({"problems": problems.iter().map(|pr| json!({"input": pr.name(), "message": pr.to_string()})).collect::<Vec<_>>()});
            if p.format == Format::Text {
                for pr in problems {
                    let path = format!("pipeline.pipeline_args.{}", pr.name());
                    // An unknown name is best shown at its key; a bad value at the value.
                    let origin = if matches!(pr, ArgumentProblem::Unknown { .. }) {
                        loaded.key_origin(&path)
                    } else {
                        loaded.origin(&path)
                    };
                    eprintln_text(&format!("error: pipeline.pipeline_args: {pr}\n  --> {origin}"));
                }
            }
        }
    }

    let ok = lint_errors == 0 && arg_result.is_ok();
    report["ok"] = json!(ok);
    if p.format == Format::Json {
        p.json(&report);
    }
    if ok {
        if p.format == Format::Text && !p.quiet {
            p.out(&format!("{} is valid", loaded.file.display()));
        }
        Ok(())
    } else {
        let mut reasons = Vec::new();
        if lint_errors > 0 {
            reasons.push(format!("{lint_errors} lint error(s)"));
        }
        if let Err(problems) = &arg_result {
            reasons.push(format!("{} argument problem(s)", problems.len()));
        }
        Err(CliError::InvalidPipeline(format!("the pipeline is not valid: {}", reasons.join(", "))))
    }
}

fn lint_json(d: &LintDiagnostic) -> Value {
    json!({
        "severity": if d.severity == LintSeverity::Error { "error" } else { "warning" },
        "path": d.path,
        "message": d.message,
    })
}

fn eprintln_lint(d: &LintDiagnostic) {
    let label = if d.severity == LintSeverity::Error { "error" } else { "warning" };
    eprintln_text(&format!("{label}: {}\n  --> compiled pipeline: {}", d.message, d.path));
}

fn eprintln_text(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn config_error_json(e: &ConfigError) -> Value {
    match e {
        ConfigError::Invalid { diagnostics } => {
            json!({"errors": diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>()})
        }
        other => json!({"errors": [{"severity": "error", "message": other.to_string()}]}),
    }
}

/// `kfc config show`.
pub(crate) fn config_show(ctx: &Context) -> Result<(), CliError> {
    let loaded = ctx.load_config()?;
    let value = loaded.to_masked_json();
    match ctx.printer.format {
        Format::Json => ctx.printer.json(&value),
        Format::Text | Format::Yaml => {
            let text =
                serde_yaml::to_string(&value).map_err(|e| CliError::Usage(format!("cannot render YAML: {e}")))?;
            ctx.printer.out_raw(&text);
        }
    }
    Ok(())
}

/// `kfc config schema`.
pub(crate) fn config_schema(ctx: &Context) {
    ctx.printer.out_raw(&kfops_config::json_schema_text());
}

/// `kfc compile`.
pub(crate) async fn compile(
    ctx: &Context,
    source: Option<PathBuf>,
    function: Option<String>,
    output: Option<PathBuf>,
    format: IrFormat,
) -> Result<(), CliError> {
    let (source, function) = match source {
        Some(s) => (s, function),
        None => {
            let loaded = ctx.load_config()?;
            let p = loaded.config.pipeline;
            (PathBuf::from(p.pipeline_path), function.or(p.pipeline_function_name))
        }
    };
    let compiled = ctx.compile(&source, function.as_deref()).await?;
    let text = match format {
        IrFormat::Yaml => compiled.text.clone(),
        IrFormat::Json => {
            let mut s = serde_json::to_string_pretty(&compiled.job.to_json_value()).unwrap_or_default();
            s.push('\n');
            s
        }
    };
    match output.as_deref() {
        None => ctx.printer.out_raw(&text),
        Some(p) if p == Path::new("-") => ctx.printer.out_raw(&text),
        Some(p) => {
            std::fs::write(p, &text).map_err(|source| CliError::Io { what: p.display().to_string(), source })?;
            ctx.printer.note(&format!("wrote {} (pipeline `{}`)", p.display(), compiled.job.spec.pipeline_info.name));
        }
    }
    Ok(())
}

/// Refuse a compiled pipeline with lint errors.
pub(crate) fn ensure_lint_clean(job: &kfops_kubeflow::ir::PipelineJob) -> Result<(), CliError> {
    let errors: Vec<String> = job
        .lint()
        .into_iter()
        .filter(|d| d.severity == LintSeverity::Error)
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::InvalidPipeline(format!("the compiled pipeline has errors:\n  {}", errors.join("\n  "))))
    }
}

/// Check `pipeline_args` against the pipeline's inputs; the typed, defaulted arguments.
pub(crate) fn check_args(
    loaded: &LoadedConfig,
    job: &kfops_kubeflow::ir::PipelineJob,
    args: &std::collections::BTreeMap<String, Value>,
) -> Result<std::collections::BTreeMap<String, Value>, CliError> {
    job.spec.check_arguments(args).map_err(|problems| {
        let lines: Vec<String> = problems
            .iter()
            .map(|pr| format!("{pr}\n    --> {}", loaded.origin(&format!("pipeline.pipeline_args.{}", pr.name()))))
            .collect();
        CliError::InvalidPipeline(format!("pipeline.pipeline_args do not fit the pipeline:\n  {}", lines.join("\n  ")))
    })
}

/// `kfc build-run`: on Kubeflow when an endpoint is configured (unless `--local`), else on the local runner.
pub(crate) async fn build_run(
    ctx: &Context,
    force_local: bool,
    wait: bool,
    run: &crate::cli::LocalRunArgs,
) -> Result<(), CliError> {
    let loaded = ctx.load_config()?;
    if !force_local {
        if let Some(conn) = crate::kubeflow::connection(ctx, Some(&loaded), &ctx.global.auth) {
            return crate::kubeflow::build_run(ctx, &loaded, conn, wait).await;
        }
        ctx.printer.note("no Kubeflow endpoint configured (kubeflow.url); running on the embedded local runner");
    }
    let pipeline = &loaded.config.pipeline;
    let compiled = ctx.compile(Path::new(&pipeline.pipeline_path), pipeline.pipeline_function_name.as_deref()).await?;
    ensure_lint_clean(&compiled.job)?;
    check_args(&loaded, &compiled.job, &pipeline.pipeline_args)?;
    crate::runs::run_locally(ctx, &compiled.job, &pipeline.pipeline_args, &loaded.root, run).await
}

/// `kfc build`: publish to Kubeflow (which must be configured).
pub(crate) async fn build(ctx: &Context) -> Result<(), CliError> {
    let loaded = ctx.load_config()?;
    let conn = require_kubeflow(ctx, &loaded, "build")?;
    crate::kubeflow::build(ctx, &loaded, conn).await
}

/// `kfc run`: start a run on Kubeflow (which must be configured).
pub(crate) async fn run(ctx: &Context, version_id: Option<String>, wait: bool) -> Result<(), CliError> {
    let loaded = ctx.load_config()?;
    let conn = require_kubeflow(ctx, &loaded, "run")?;
    crate::kubeflow::run(ctx, &loaded, conn, version_id, wait).await
}

fn require_kubeflow(
    ctx: &Context,
    loaded: &LoadedConfig,
    command: &str,
) -> Result<kfops_kubeflow::kfp::client::KfpConfig, CliError> {
    crate::kubeflow::connection(ctx, Some(loaded), &ctx.global.auth).ok_or_else(|| {
        CliError::Usage(format!(
            "`kfc {command}` needs Kubeflow, and no endpoint is configured: set `kubeflow.url` in kfops.yaml, KFOPS_KUBEFLOW__URL, or --kubeflow-url (`kfc build-run` runs locally without one)"
        ))
    })
}
