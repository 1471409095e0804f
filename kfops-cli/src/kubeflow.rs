//! `kfc build`, `kfc run`, `kfc build-run` and `kfc runs …` against a Kubeflow Pipelines server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kfops_config::{ConfigError, LoadedConfig};
use kfops_core::pipeline::{RunState, VersionName};
use kfops_core::progress::{Progress, ProgressEvent};
use kfops_kubeflow::compile::Compiled;
use kfops_kubeflow::ir::{PipelineJob, format_parameter_value};
use kfops_kubeflow::kfp::client::{
    CreateRun, KfpAuth, KfpClient, KfpConfig, ListOptions, PublishRequest, Published, RunPipeline, WaitOptions,
};
use kfops_kubeflow::kfp::types::Run;
use serde_json::{Map, Value, json};

use crate::cli::{AuthArgs, Format};
use crate::commands::Context;
use crate::error::CliError;
use crate::progress::RunProgress;

/// How to reach Kubeflow, from the configuration (if there is one), the environment and flags.
pub(crate) fn connection(ctx: &Context, loaded: Option<&LoadedConfig>, auth: &AuthArgs) -> Option<KfpConfig> {
    let (url, ui_url, namespace, config_auth) = match loaded {
        Some(l) => {
            let k = &l.config.kubeflow;
            (
                k.url.clone(),
                k.ui_url.clone(),
                l.config.pipeline.namespace.clone().or_else(|| k.namespace.clone()),
                Some(&k.auth),
            )
        }
        // Without a project configuration: flags, then the environment.
        None => (
            ctx.global.kubeflow_url.clone().or_else(|| std::env::var("KFOPS_KUBEFLOW__URL").ok()),
            std::env::var("KFOPS_KUBEFLOW__UI_URL").ok(),
            ctx.global.namespace.clone().or_else(|| std::env::var("KFOPS_KUBEFLOW__NAMESPACE").ok()),
            None,
        ),
    };
    let mut config = KfpConfig::new(url?);
    if let Some(ui) = ui_url {
        config = config.with_ui_url(ui);
    }
    if let Some(ns) = namespace {
        config = config.with_namespace(ns);
    }
    let root = loaded.map(|l| l.root.clone());
    Some(config.with_auth(auth_from(auth, config_auth, root.as_deref())))
}

/// Credentials: a flag wins over the configuration; with neither, the in-cluster token if present.
fn auth_from(flags: &AuthArgs, config: Option<&kfops_config::model::Auth>, root: Option<&std::path::Path>) -> KfpAuth {
    // Paths in kfops.yaml are relative to the project root (flags to the current directory).
    let in_project = |f: &str| match root {
        Some(r) if std::path::Path::new(f).is_relative() => r.join(f),
        _ => PathBuf::from(f),
    };
    if let Some(f) = &flags.token_file {
        return KfpAuth::TokenFile(f.clone());
    }
    if let Some(v) = &flags.token_env {
        return KfpAuth::TokenEnv(v.clone());
    }
    if let Some(f) = &flags.cookie_file {
        return KfpAuth::CookieFile(f.clone());
    }
    if flags.no_auth {
        return KfpAuth::None;
    }
    let Some(a) = config else { return KfpAuth::Auto };
    if let Some(t) = &a.token {
        KfpAuth::Token(t.expose().to_owned())
    } else if let Some(v) = &a.token_env {
        KfpAuth::TokenEnv(v.clone())
    } else if let Some(f) = &a.token_file {
        KfpAuth::TokenFile(in_project(f))
    } else if let Some(c) = &a.cookie {
        KfpAuth::Cookie(c.expose().to_owned())
    } else if let Some(v) = &a.cookie_env {
        KfpAuth::CookieEnv(v.clone())
    } else if let Some(f) = &a.cookie_file {
        KfpAuth::CookieFile(in_project(f))
    } else {
        KfpAuth::Auto
    }
}

fn client(config: KfpConfig) -> Result<KfpClient, CliError> {
    KfpClient::new(config).map_err(CliError::Kfp)
}

/// Load the project configuration for a command that can also work without one.
pub(crate) fn optional_config(ctx: &Context) -> Result<Option<LoadedConfig>, CliError> {
    match ctx.load() {
        Ok(l) => Ok(Some(l)),
        Err(ConfigError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Compile, lint, type the arguments, build the configured images and pin them:
/// what `build` and `build-run` on Kubeflow start with.
async fn compile_checked(
    ctx: &Context,
    loaded: &LoadedConfig,
) -> Result<(Compiled, BTreeMap<String, Value>), CliError> {
    let pipeline = &loaded.config.pipeline;
    let mut compiled =
        ctx.compile(std::path::Path::new(&pipeline.pipeline_path), pipeline.pipeline_function_name.as_deref()).await?;
    crate::commands::ensure_lint_clean(&compiled.job)?;
    let args = crate::commands::check_args(loaded, &compiled.job, &pipeline.pipeline_args)?;
    if let Some(ib) = loaded.config.image_builder.as_ref().filter(|ib| !ib.images.is_empty()) {
        let built = build_images(ctx, loaded, ib).await?;
        let report = kfops_kubeflow::image::pin::pin_images(&mut compiled.job.spec, &built, &ib.container_registry_uri);
        for (executor, before, after) in &report.pinned {
            ctx.printer.detail(&format!("pinned {executor}: {before} → {after}"));
        }
        for warning in &report.warnings {
            ctx.printer.note(&format!("warning: {warning}"));
        }
        // What is published is the pinned pipeline.
        compiled.text = compiled.job.to_yaml_string();
    }
    Ok((compiled, args))
}

/// Build (or find already built) the configured images with the local container tool.
async fn build_images(
    ctx: &Context,
    loaded: &LoadedConfig,
    ib: &kfops_config::model::ImageBuilder,
) -> Result<Vec<kfops_core::image::BuiltImage>, CliError> {
    use kfops_config::model::BuilderKind;
    use kfops_core::ImageBuilder as _;
    use kfops_kubeflow::image::builder::{
        ContextImageBuilder, KanikoBackend, KanikoSettings, LocalImageBuilder, find_tool,
    };
    use kfops_kubeflow::image::registry::RegistryClient;

    let registry = || RegistryClient::new(ib.insecure, None).map_err(|e| CliError::Backend(e.to_string()));
    let specs = ib.image_specs();
    let progress = crate::progress::BuildProgress::new(
        ctx.printer.quiet || ctx.printer.format == Format::Json,
        ctx.printer.verbose,
    );
    let built = match ib.builder {
        BuilderKind::Local => {
            let tool = find_tool(ib.tool.as_deref()).map_err(|e| CliError::Backend(e.to_string()))?;
            let builder = LocalImageBuilder::new(tool, loaded.root.clone(), ib.build_args.clone(), registry()?);
            builder.build(&specs, &progress).await
        }
        BuilderKind::Kaniko => {
            let k = ib.kaniko.as_ref().ok_or_else(|| {
                CliError::Usage("image_builder.builder is `kaniko`, but image_builder.kaniko is missing".into())
            })?;
            let minio = ib.minio.as_ref();
            let settings = KanikoSettings {
                namespace: k.namespace.clone(),
                credentials_secret: k.credentials_secret.clone(),
                registry_secret: k.registry_secret.clone(),
                timeout: std::time::Duration::from_secs(k.timeout_seconds),
                bucket: minio
                    .map_or_else(|| "image-build-artifacts".to_owned(), |m| m.context_files_bucket_name.clone()),
                s3_endpoint: minio.and_then(|m| m.credentials.as_ref()).map(|c| c.endpoint.clone()),
                s3_credentials: minio
                    .and_then(|m| m.credentials.as_ref())
                    .map(|c| (c.access_key.clone(), c.secret_key.expose().to_owned())),
            };
            let backend = KanikoBackend::connect(settings).await.map_err(|e| CliError::Backend(e.to_string()))?;
            ContextImageBuilder::with_backend(backend, loaded.root.clone(), ib.build_args.clone(), registry()?)
                .build(&specs, &progress)
                .await
        }
    }
    .map_err(|e| CliError::Backend(e.to_string()))?;
    for b in &built {
        ctx.printer.note(&format!(
            "image {} {}",
            b.reference,
            if b.built { "built and pushed" } else { "already in the registry" }
        ));
    }
    Ok(built)
}

/// `kfc build` on Kubeflow: compile, publish (idempotent per commit), print the version and its link.
pub(crate) async fn build(ctx: &Context, loaded: &LoadedConfig, conn: KfpConfig) -> Result<(), CliError> {
    let (compiled, _) = compile_checked(ctx, loaded).await?;
    let client = client(conn)?;
    let published = publish(ctx, loaded, &client, &compiled).await?;
    let url = client.pipeline_version_url(&published.pipeline_id, &published.version_id);
    if ctx.printer.format == Format::Json {
        ctx.printer.json(&json!({
            "pipeline_id": published.pipeline_id,
            "version_id": published.version_id,
            "version_name": published.version.name,
            "created": published.created,
            "url": url,
        }));
    } else {
        ctx.printer.out(&format!(
            "version   {} ({})",
            published.version_id,
            published.version.name.as_deref().unwrap_or("")
        ));
        ctx.printer.out(&format!("link      {url}"));
        ctx.printer.note(&format!("start a run with: kfc run --version-id {}", published.version_id));
    }
    Ok(())
}

async fn publish(
    ctx: &Context,
    loaded: &LoadedConfig,
    client: &KfpClient,
    compiled: &Compiled,
) -> Result<Published, CliError> {
    let repository = loaded.config.repository.as_ref().map(|r| format!("{}/{}", r.owner, r.name));
    let checkout = kfops_scm::git::inspect(&loaded.root, repository);
    let version_name = VersionName::for_build(&checkout.source, checkout.dirty, &compiled.text);
    let pipeline = &loaded.config.pipeline;
    let request = PublishRequest {
        pipeline_name: pipeline.name.clone(),
        pipeline_display_name: None,
        pipeline_description: pipeline.description.clone(),
        version_name: version_name.0.clone(),
        spec_yaml: compiled.text.clone(),
        source: checkout.source,
    };
    let published = client.publish(&request).await.map_err(CliError::Kfp)?;
    ctx.printer.note(&format!(
        "{} version `{version_name}` of pipeline `{}`",
        if published.created { "published" } else { "reused the existing" },
        pipeline.name
    ));
    Ok(published)
}

/// `kfc run`: start a run of a published version (the one for this commit unless `--version-id`).
pub(crate) async fn run(
    ctx: &Context,
    loaded: &LoadedConfig,
    conn: KfpConfig,
    version_id: Option<String>,
    wait: bool,
) -> Result<(), CliError> {
    let client = client(conn)?;
    let pipeline = &loaded.config.pipeline;
    let found = client.find_pipeline(&pipeline.name).await.map_err(CliError::Kfp)?;
    let Some(pipeline_id) = found.and_then(|p| p.pipeline_id) else {
        return Err(CliError::Backend(format!(
            "pipeline `{}` is not published on {}; run `kfc build` (or `kfc build-run`) first",
            pipeline.name,
            client.endpoint()
        )));
    };
    let version = match version_id {
        Some(id) => client.get_pipeline_version(&pipeline_id, &id).await.map_err(CliError::Kfp)?,
        None => {
            let repository = loaded.config.repository.as_ref().map(|r| format!("{}/{}", r.owner, r.name));
            let checkout = kfops_scm::git::inspect(&loaded.root, repository);
            // The version of this commit: compile to know its name when the tree is dirty.
            let compiled = ctx
                .compile(std::path::Path::new(&pipeline.pipeline_path), pipeline.pipeline_function_name.as_deref())
                .await?;
            let name = VersionName::for_build(&checkout.source, checkout.dirty, &compiled.text);
            client.find_pipeline_version(&pipeline_id, &name.0).await.map_err(CliError::Kfp)?.ok_or_else(|| {
                CliError::Backend(format!(
                    "no version `{name}` (this checkout) of pipeline `{}`; run `kfc build` first or pass --version-id",
                    pipeline.name
                ))
            })?
        }
    };
    let version_id = version.pipeline_version_id.clone().unwrap_or_default();
    let spec = version.pipeline_spec.as_ref().ok_or_else(|| {
        CliError::Backend(format!("the server returned version {version_id} without its pipeline spec"))
    })?;
    let job = job_from_server_spec(spec)?;
    let args = crate::commands::check_args(loaded, &job, &pipeline.pipeline_args)?;
    start_and_report(ctx, loaded, &client, pipeline_id, version_id, &job, args, wait).await
}

/// `kfc build-run` on Kubeflow.
pub(crate) async fn build_run(
    ctx: &Context,
    loaded: &LoadedConfig,
    conn: KfpConfig,
    wait: bool,
) -> Result<(), CliError> {
    let (compiled, args) = compile_checked(ctx, loaded).await?;
    let client = client(conn)?;
    let published = publish(ctx, loaded, &client, &compiled).await?;
    start_and_report(ctx, loaded, &client, published.pipeline_id, published.version_id, &compiled.job, args, wait).await
}

/// The server's `pipeline_spec` (the IR, or `{pipeline_spec, platform_spec}`) as a job.
fn job_from_server_spec(spec: &Value) -> Result<PipelineJob, CliError> {
    PipelineJob::from_json_str(&spec.to_string()).map_err(CliError::Ir)
}

#[allow(clippy::too_many_arguments)]
async fn start_and_report(
    ctx: &Context,
    loaded: &LoadedConfig,
    client: &KfpClient,
    pipeline_id: String,
    version_id: String,
    job: &PipelineJob,
    args: BTreeMap<String, Value>,
    wait: bool,
) -> Result<(), CliError> {
    let pipeline = &loaded.config.pipeline;
    let experiment = client.ensure_experiment(&pipeline.experiment_name).await.map_err(CliError::Kfp)?;
    let display_name = format!("{} {}", pipeline.name, kfops_kubeflow::local::now_display());
    let request = CreateRun {
        display_name,
        description: pipeline.description.clone(),
        experiment_id: experiment.experiment_id.clone(),
        pipeline: RunPipeline::Version { pipeline_id, version_id: Some(version_id) },
        parameters: args.clone().into_iter().collect::<Map<String, Value>>(),
        service_account: None,
        pipeline_root: None,
    };
    let run = client.create_run(&request).await.map_err(CliError::Kfp)?;
    let run_id = run.run_id.clone().unwrap_or_default();
    let url = client.run_url(&run_id);
    if ctx.printer.format == Format::Text {
        ctx.printer.out(&format!("run       {run_id}"));
        ctx.printer.out(&format!("link      {url}"));
        ctx.printer.out("parameters");
        for (k, v) in &args {
            ctx.printer.out(&format!("  {k:<24} {}", format_parameter_value(v)));
        }
    }
    let _ = job;
    if !wait {
        if ctx.printer.format == Format::Json {
            ctx.printer
                .json(&json!({"run_id": run_id, "url": url, "state": run.run_state().as_str(), "parameters": args}));
        }
        return Ok(());
    }
    let finished = wait_with_progress(ctx, client, &run_id).await?;
    report_finished(ctx, client, &finished)
}

/// Poll a run to its end, showing task progress.
async fn wait_with_progress(ctx: &Context, client: &KfpClient, run_id: &str) -> Result<Run, CliError> {
    let progress = Arc::new(RunProgress::new(ctx.printer.quiet || ctx.printer.format == Format::Json));
    let view = progress.clone();
    let options = WaitOptions { poll_interval: poll_interval(), timeout: None };
    let wait = client.wait_for_run(run_id, &options, move |run| {
        for t in run.run_details.as_ref().map(|d| d.task_details.as_slice()).unwrap_or_default() {
            let name = t.display_name.clone().or_else(|| t.task_id.clone()).unwrap_or_default();
            view.event(ProgressEvent::Task {
                path: name.clone(),
                name,
                state: t.run_state(),
                detail: t.error.as_ref().and_then(|e| e.message.clone()),
            });
        }
    });
    let result = tokio::select! {
        r = wait => r.map_err(CliError::Kfp),
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted(format!(
            "stopped waiting; the run {run_id} continues on Kubeflow (`kfc runs terminate {run_id}` stops it)"
        ))),
    };
    progress.finish();
    result
}

/// How often `--wait` polls (`KFOPS_POLL_INTERVAL_MS`, default 2 s).
fn poll_interval() -> Duration {
    std::env::var("KFOPS_POLL_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(2), Duration::from_millis)
}

fn report_finished(ctx: &Context, client: &KfpClient, run: &Run) -> Result<(), CliError> {
    let id = run.run_id.clone().unwrap_or_default();
    let state = run.run_state();
    if ctx.printer.format == Format::Json {
        ctx.printer.json(&run_json(client, run));
    } else {
        ctx.printer.out(&format!("run {id} {state}"));
    }
    match state {
        RunState::Succeeded => Ok(()),
        _ => {
            let failed: Vec<String> = run
                .run_details
                .as_ref()
                .map(|d| d.task_details.as_slice())
                .unwrap_or_default()
                .iter()
                .filter(|t| t.run_state() == RunState::Failed)
                .map(|t| {
                    format!(
                        "task `{}` failed{}",
                        t.display_name.as_deref().unwrap_or("?"),
                        t.error
                            .as_ref()
                            .and_then(|e| e.message.as_deref())
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let why = run.error.as_ref().and_then(|e| e.message.clone());
            Err(CliError::RunFailed(format!(
                "run {id} {state}{}{}\n{}",
                why.map(|w| format!(": {w}")).unwrap_or_default(),
                if failed.is_empty() { String::new() } else { format!("\n  {}", failed.join("\n  ")) },
                client.run_url(&id)
            )))
        }
    }
}

fn run_json(client: &KfpClient, run: &Run) -> Value {
    let id = run.run_id.clone().unwrap_or_default();
    json!({
        "run_id": id,
        "state": run.run_state().as_str(),
        "url": client.run_url(&id),
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "parameters": run.runtime_config.as_ref().map(|c| c.parameters.clone()),
        "tasks": run.run_details.as_ref().map(|d| d.task_details.as_slice()).unwrap_or_default().iter().map(|t| json!({
            "name": t.display_name, "state": t.run_state().as_str(),
        })).collect::<Vec<_>>(),
    })
}

/// `kfc runs list` on Kubeflow: the project's experiment when there is a configuration.
pub(crate) async fn runs_list(ctx: &Context, loaded: Option<&LoadedConfig>, conn: KfpConfig) -> Result<(), CliError> {
    let client = client(conn)?;
    let experiment_id = match loaded {
        Some(l) => client
            .find_experiment(&l.config.pipeline.experiment_name)
            .await
            .map_err(CliError::Kfp)?
            .and_then(|e| e.experiment_id),
        None => None,
    };
    let page = client
        .list_runs(experiment_id.as_deref(), &ListOptions::new().page_size(50).sort_by("created_at desc"))
        .await
        .map_err(CliError::Kfp)?;
    if ctx.printer.format == Format::Json {
        ctx.printer.json(&Value::Array(page.items.iter().map(|r| run_json(&client, r)).collect()));
        return Ok(());
    }
    ctx.printer.out(&format!("{:<36}  {:<32}  {:<10}  {:<20}", "RUN", "NAME", "STATE", "CREATED"));
    for r in &page.items {
        ctx.printer.out(&format!(
            "{:<36}  {:<32}  {:<10}  {:<20}",
            r.run_id.as_deref().unwrap_or(""),
            r.display_name.as_deref().unwrap_or(""),
            r.run_state().as_str(),
            r.created_at.as_deref().unwrap_or("")
        ));
    }
    Ok(())
}

/// `kfc runs show|wait|terminate|retry` on Kubeflow.
pub(crate) async fn runs_action(ctx: &Context, conn: KfpConfig, id: &str, action: RunAction) -> Result<(), CliError> {
    let client = client(conn)?;
    match action {
        RunAction::Show => {
            let run = client.get_run(id).await.map_err(CliError::Kfp)?;
            if ctx.printer.format == Format::Json {
                ctx.printer.json(&run_json(&client, &run));
            } else {
                ctx.printer.out(&format!("run       {id}"));
                ctx.printer.out(&format!("name      {}", run.display_name.as_deref().unwrap_or("")));
                ctx.printer.out(&format!("state     {}", run.run_state()));
                ctx.printer.out(&format!("link      {}", client.run_url(id)));
                if let Some(params) = run.runtime_config.as_ref().map(|c| &c.parameters) {
                    ctx.printer.out("parameters");
                    for (k, v) in params {
                        ctx.printer.out(&format!("  {k:<24} {}", format_parameter_value(v)));
                    }
                }
                for t in run.run_details.as_ref().map(|d| d.task_details.as_slice()).unwrap_or_default() {
                    ctx.printer.out(&format!(
                        "  {:<40} {}",
                        t.display_name.as_deref().unwrap_or("?"),
                        t.run_state().as_str()
                    ));
                }
            }
            Ok(())
        }
        RunAction::Wait => {
            let run = wait_with_progress(ctx, &client, id).await?;
            report_finished(ctx, &client, &run)
        }
        RunAction::Terminate => {
            client.terminate_run(id).await.map_err(CliError::Kfp)?;
            ctx.printer.out(&format!("termination of run {id} requested; `kfc runs wait {id}` follows it"));
            Ok(())
        }
        RunAction::Retry => {
            client.retry_run(id).await.map_err(CliError::Kfp)?;
            ctx.printer.out(&format!("run {id} is being retried; {}", client.run_url(id)));
            Ok(())
        }
    }
}

/// What `kfc runs <action> ID` does on Kubeflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunAction {
    /// Print the run.
    Show,
    /// Follow it to its end.
    Wait,
    /// Stop it.
    Terminate,
    /// Retry it.
    Retry,
}
