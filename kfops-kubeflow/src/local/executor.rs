//! Running one executor: building the ExecutorInput, resolving placeholders,
//! starting the process, and reading its outputs back — the way the KFP
//! launcher does, with local paths in place of object storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::process::Command;
use tokio::sync::watch;

use super::python::{self, VenvCache};
use super::store::ArtifactRecord;
use super::util::{last_lines, protojson, protojson_map};
use crate::ir::placeholder::{Arg, ArtifactField, Placeholder, Resolver};
use crate::ir::{ComponentSpec, ContainerSpec, ImporterSpec, ParameterType, format_parameter_value};

/// Inputs or outputs of a task: typed parameters and artifacts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Io {
    /// Parameters by name (absent = not given).
    pub(crate) params: Map<String, Value>,
    /// Artifacts by name (lists for list-of-artifact inputs).
    pub(crate) artifacts: BTreeMap<String, Vec<ArtifactRecord>>,
}

/// Run-level facts placeholders can refer to.
#[derive(Debug, Clone)]
pub(crate) struct JobFacts {
    pub(crate) job_name: String,
    pub(crate) resource_name: String,
    pub(crate) job_uuid: String,
    pub(crate) create_time: String,
    pub(crate) pipeline_root: PathBuf,
    pub(crate) workspace: PathBuf,
}

/// Everything one execution needs.
pub(crate) struct Execution<'a> {
    pub(crate) component: &'a ComponentSpec,
    pub(crate) inputs: &'a Io,
    pub(crate) task_dir: &'a Path,
    pub(crate) task_name: &'a str,
    pub(crate) task_uuid: &'a str,
    pub(crate) facts: &'a JobFacts,
    pub(crate) project_root: &'a Path,
    pub(crate) env: &'a [(String, String)],
    pub(crate) venvs: &'a VenvCache,
    pub(crate) cancel: watch::Receiver<bool>,
    pub(crate) platform: Option<&'a Value>,
}

/// How an execution ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExecFailure {
    /// The task failed; the message says why (and carries the log tail).
    Failed(String),
    /// The run was cancelled while the task ran.
    Canceled,
}

/// What kind of executor ran, for the run record.
pub(crate) fn kind_name(lightweight: bool) -> &'static str {
    if lightweight { "python" } else { "container" }
}

impl Execution<'_> {
    /// Run a container executor.
    pub(crate) async fn container(&self, spec: &ContainerSpec) -> Result<(Io, &'static str), ExecFailure> {
        let fail = |m: String| ExecFailure::Failed(m);
        std::fs::create_dir_all(self.task_dir.join("outputs"))
            .and_then(|()| std::fs::create_dir_all(self.task_dir.join("artifacts")))
            .map_err(|e| fail(format!("creating the task folder `{}`: {e}", self.task_dir.display())))?;
        if let Some(platform) = self.platform {
            check_platform(platform)?;
        }
        let outputs = self.planned_outputs();
        let executor_input = self.executor_input(&outputs);
        let input_path = self.task_dir.join("executor_input.json");
        let _ = std::fs::write(&input_path, serde_json::to_vec_pretty(&executor_input).unwrap_or_default());

        let resolver = LocalResolver { exec: self, executor_input: &executor_input, outputs: &outputs };
        let mut argv = Vec::new();
        for text in spec.command.iter().chain(spec.args.iter()) {
            let arg = Arg::parse(text).map_err(|e| fail(format!("cannot read the command argument `{text}`: {e}")))?;
            argv.extend(arg.resolve(&resolver).map_err(fail)?);
        }
        let image = spec.image.as_str();
        if spec.command.is_empty() {
            return Err(fail(format!(
                "the executor has no command: its entrypoint is inside the image `{image}`, and running images needs a container runtime, which the local runner does not use; give the component an explicit command, or run the pipeline on Kubeflow"
            )));
        }
        let lightweight = python::detect(&argv);
        let mut path_prefix: Option<PathBuf> = None;
        let program_argv = match &lightweight {
            Some(lw) => {
                let venv = self
                    .venvs
                    .ensure(&lw.requirements)
                    .await
                    .map_err(|e| fail(format!("preparing the Python environment: {e}")))?;
                path_prefix = Some(venv.join("bin"));
                lw.command.clone()
            }
            None => {
                if argv.len() >= 3
                    && argv[0].starts_with("python")
                    && argv[1] == "-m"
                    && argv[2] == "kfp.dsl.executor_main"
                {
                    return Err(fail(format!(
                        "this is a containerized Python component: its code is packaged inside the image `{image}`, which needs a container runtime to run; the local runner runs lightweight components (`@dsl.component` without `target_image`) and plain commands"
                    )));
                }
                argv.clone()
            }
        };
        let program = resolve_program(&program_argv[0], path_prefix.as_deref(), self.env)
            .ok_or_else(|| fail(format!("`{}` is not installed on this machine; inside the image `{image}` it would be, but the local runner runs commands on the host", program_argv[0])))?;

        let log_path = self.task_dir.join("log.txt");
        let log =
            std::fs::File::create(&log_path).map_err(|e| fail(format!("creating `{}`: {e}", log_path.display())))?;
        let log_err = log.try_clone().map_err(|e| fail(format!("opening `{}`: {e}", log_path.display())))?;
        let mut cmd = Command::new(&program);
        cmd.args(&program_argv[1..])
            .current_dir(self.task_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .env_clear();
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        if let Some(bin) = &path_prefix {
            let host_path = self.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("");
            cmd.env("PATH", format!("{}:{host_path}", bin.display()));
            if let Some(venv) = bin.parent() {
                cmd.env("VIRTUAL_ENV", venv);
            }
            cmd.env_remove("PYTHONHOME");
        }
        for e in &spec.env {
            let value = Arg::parse(&e.value).map_err(|err| fail(format!("env `{}`: {err}", e.name)))?;
            cmd.env(&e.name, value.resolve(&resolver).map_err(fail)?.join(""));
        }
        #[cfg(unix)]
        cmd.process_group(0);

        let mut child = cmd.spawn().map_err(|e| fail(format!("starting `{}`: {e}", program.display())))?;
        let pid = child.id();
        let mut cancel = self.cancel.clone();
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| fail(format!("waiting for `{}`: {e}", program.display())))?,
            _ = wait_cancel(&mut cancel) => {
                kill_group(pid);
                let _ = child.wait().await;
                return Err(ExecFailure::Canceled);
            }
        };
        // The component may have left children in its process group; they die with it.
        kill_group(pid);
        if !status.success() {
            let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let how = match status.code() {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".to_owned(),
            };
            return Err(fail(format!("the command {how}; last log lines:\n{}", last_lines(&log_text, 20))));
        }
        let produced = self.read_outputs(&outputs).map_err(fail)?;
        Ok((produced, kind_name(lightweight.is_some())))
    }

    /// Run an importer: the artifact is a local file or folder.
    pub(crate) fn importer(&self, spec: &ImporterSpec) -> Result<Io, ExecFailure> {
        let fail = |m: String| ExecFailure::Failed(m);
        let uri_source = spec.artifact_uri.as_ref().ok_or_else(|| fail("the importer has no artifactUri".into()))?;
        let uri = match (&uri_source.constant, &uri_source.runtime_parameter) {
            (Some(Value::String(s)), _) => s.clone(),
            (_, Some(param)) => match self.inputs.params.get(param) {
                Some(Value::String(s)) => s.clone(),
                other => return Err(fail(format!("the importer's URI input `{param}` is {other:?}, not a string"))),
            },
            _ => return Err(fail("the importer's artifactUri is neither a string constant nor an input".into())),
        };
        let local = uri.strip_prefix("file://").unwrap_or(&uri);
        if local.contains("://") {
            return Err(fail(format!(
                "the importer refers to `{uri}`; the local runner reads local files only (a path, or file://…): download the artifact and import its local path, or run on Kubeflow"
            )));
        }
        let path = if Path::new(local).is_absolute() { PathBuf::from(local) } else { self.project_root.join(local) };
        if !path.exists() {
            return Err(fail(format!("the imported artifact `{}` does not exist", path.display())));
        }
        let schema = spec.type_schema.clone().unwrap_or_default();
        let metadata = spec.metadata.clone().unwrap_or_default();
        let record = ArtifactRecord {
            name: "artifact".into(),
            schema_title: schema.schema_title.unwrap_or_else(|| "system.Artifact".into()),
            schema_version: schema.schema_version.unwrap_or_else(|| "0.0.1".into()),
            uri: path.display().to_string(),
            metadata,
        };
        let mut io = Io::default();
        io.artifacts.insert("artifact".into(), vec![record]);
        Ok(io)
    }

    /// Where each declared output goes.
    fn planned_outputs(&self) -> Io {
        let mut out = Io::default();
        if let Some(defs) = &self.component.output_definitions {
            for name in defs.parameters.keys() {
                let file = self.task_dir.join("outputs").join(name);
                out.params.insert(name.clone(), Value::String(file.display().to_string()));
            }
            for (name, def) in &defs.artifacts {
                let schema = def.artifact_type.clone().unwrap_or_default();
                out.artifacts.insert(
                    name.clone(),
                    vec![ArtifactRecord {
                        name: name.clone(),
                        schema_title: schema.schema_title.unwrap_or_else(|| "system.Artifact".into()),
                        schema_version: schema.schema_version.unwrap_or_else(|| "0.0.1".into()),
                        uri: self.task_dir.join("artifacts").join(name).display().to_string(),
                        metadata: Map::new(),
                    }],
                );
            }
        }
        out
    }

    fn executor_input(&self, outputs: &Io) -> Value {
        let artifacts_json = |arts: &BTreeMap<String, Vec<ArtifactRecord>>| -> Map<String, Value> {
            arts.iter()
                .map(|(name, list)| {
                    (name.clone(), json!({"artifacts": list.iter().map(artifact_json).collect::<Vec<_>>()}))
                })
                .collect()
        };
        let mut inputs = Map::new();
        if !self.inputs.params.is_empty() {
            inputs.insert("parameterValues".into(), Value::Object(protojson_map(&self.inputs.params)));
        }
        if !self.inputs.artifacts.is_empty() {
            inputs.insert("artifacts".into(), Value::Object(artifacts_json(&self.inputs.artifacts)));
        }
        let mut out = Map::new();
        if !outputs.params.is_empty() {
            out.insert(
                "parameters".into(),
                Value::Object(outputs.params.iter().map(|(k, f)| (k.clone(), json!({"outputFile": f}))).collect()),
            );
        }
        if !outputs.artifacts.is_empty() {
            out.insert("artifacts".into(), Value::Object(artifacts_json(&outputs.artifacts)));
        }
        out.insert(
            "outputFile".into(),
            Value::String(self.task_dir.join("executor_output.json").display().to_string()),
        );
        json!({"inputs": inputs, "outputs": out})
    }

    /// Read what the component produced: `executor_output.json` first, then the output files.
    fn read_outputs(&self, planned: &Io) -> Result<Io, String> {
        let exec_out_path = self.task_dir.join("executor_output.json");
        let exec_out: Value = match std::fs::read(&exec_out_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the component wrote an invalid `{}`: {e}", exec_out_path.display()))?,
            Err(_) => Value::Null,
        };
        let declared = self.component.output_definitions.as_ref();
        let mut io = Io::default();
        for (name, file) in &planned.params {
            let ty = declared
                .and_then(|d| d.parameters.get(name))
                .and_then(|p| p.parameter_type.clone())
                .unwrap_or(ParameterType::String);
            let from_exec = exec_out.pointer(&format!("/parameterValues/{}", pointer_escape(name))).cloned();
            let raw = match from_exec {
                Some(v) => v,
                None => {
                    let path = Path::new(file.as_str().unwrap_or_default());
                    let text = std::fs::read_to_string(path).map_err(|_| {
                        format!(
                            "the component did not write its output parameter `{name}` (expected in `{}`)",
                            path.display()
                        )
                    })?;
                    parse_output_text(&ty, &text).map_err(|e| format!("output parameter `{name}`: {e}"))?
                }
            };
            let value = ty.cast(&raw).ok_or_else(|| {
                format!("output parameter `{name}` is declared {} but the component produced {raw}", ty.describe())
            })?;
            io.params.insert(name.clone(), value);
        }
        for (name, list) in &planned.artifacts {
            let mut records = list.clone();
            if let Some(produced) =
                exec_out.pointer(&format!("/artifacts/{}/artifacts", pointer_escape(name))).and_then(Value::as_array)
            {
                for (rec, prod) in records.iter_mut().zip(produced) {
                    if let Some(meta) = prod.get("metadata").and_then(Value::as_object) {
                        rec.metadata = protojson_map(meta);
                    }
                    if let Some(uri) = prod.get("uri").and_then(Value::as_str) {
                        rec.uri = uri.to_owned();
                    }
                }
            }
            io.artifacts.insert(name.clone(), records);
        }
        Ok(io)
    }
}

/// Output parameter files hold text: STRING as is, BOOLEAN as `true`/`True`, others as JSON.
fn parse_output_text(ty: &ParameterType, text: &str) -> Result<Value, String> {
    match ty {
        ParameterType::String => Ok(Value::String(text.to_owned())),
        ParameterType::Boolean => match text.trim() {
            "true" | "True" => Ok(Value::Bool(true)),
            "false" | "False" => Ok(Value::Bool(false)),
            other => Err(format!("`{other}` is not a boolean")),
        },
        _ => serde_json::from_str(text.trim()).map_err(|e| format!("`{}` is not JSON: {e}", text.trim())),
    }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn artifact_json(a: &ArtifactRecord) -> Value {
    json!({
        "name": a.name,
        "type": {"schemaTitle": a.schema_title, "schemaVersion": a.schema_version},
        "uri": a.uri,
        "metadata": protojson(&Value::Object(a.metadata.clone())),
    })
}

/// Placeholders resolved against one execution.
struct LocalResolver<'a> {
    exec: &'a Execution<'a>,
    executor_input: &'a Value,
    outputs: &'a Io,
}

impl Resolver for LocalResolver<'_> {
    type Error = String;

    fn resolve(&self, placeholder: &Placeholder) -> Result<String, String> {
        let e = self.exec;
        let artifact = |arts: &BTreeMap<String, Vec<ArtifactRecord>>,
                        name: &str,
                        field: &ArtifactField,
                        what: &str|
         -> Result<String, String> {
            let list = arts.get(name).ok_or_else(|| format!("the task has no {what} artifact `{name}`"))?;
            if let ArtifactField::List = field {
                return Ok(Value::Array(list.iter().map(artifact_json).collect()).to_string());
            }
            let a = list.first().ok_or_else(|| format!("the {what} artifact `{name}` is an empty list"))?;
            Ok(match field {
                ArtifactField::Path | ArtifactField::Uri => a.uri.clone(),
                ArtifactField::Metadata => protojson(&Value::Object(a.metadata.clone())).to_string(),
                ArtifactField::MetadataKey(k) => {
                    a.metadata.get(k).map(|v| format_parameter_value(&protojson(v))).unwrap_or_default()
                }
                ArtifactField::List => unreachable_list(),
            })
        };
        Ok(match placeholder {
            Placeholder::ExecutorInput => self.executor_input.to_string(),
            Placeholder::InputParameter { name, json_escape } => {
                let text = e.inputs.params.get(name).map(format_parameter_value).unwrap_or_default();
                let mut out = text;
                for _ in 0..json_escape.unwrap_or(0) {
                    let quoted = Value::String(out).to_string();
                    out = quoted[1..quoted.len() - 1].to_owned();
                }
                out
            }
            Placeholder::InputArtifact { name, field } => artifact(&e.inputs.artifacts, name, field, "input")?,
            Placeholder::OutputParameterFile { name } => self
                .outputs
                .params
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("the component declares no output parameter `{name}`"))?,
            Placeholder::OutputArtifact { name, field } => artifact(&self.outputs.artifacts, name, field, "output")?,
            Placeholder::ExecutorOutputFile | Placeholder::OutputMetadataUri => {
                e.task_dir.join("executor_output.json").display().to_string()
            }
            Placeholder::PipelineJobName => e.facts.job_name.clone(),
            Placeholder::PipelineJobResourceName => e.facts.resource_name.clone(),
            Placeholder::PipelineJobUuid => e.facts.job_uuid.clone(),
            Placeholder::PipelineTaskName => e.task_name.to_owned(),
            Placeholder::PipelineTaskUuid => e.task_uuid.to_owned(),
            Placeholder::PipelineRoot => e.facts.pipeline_root.display().to_string(),
            Placeholder::PipelineJobCreateTimeUtc | Placeholder::PipelineJobScheduleTimeUtc => {
                e.facts.create_time.clone()
            }
            Placeholder::WorkspacePath => e.facts.workspace.display().to_string(),
        })
    }

    fn is_present(&self, name: &str) -> bool {
        let e = self.exec;
        e.inputs.params.get(name).is_some_and(|v| !v.is_null()) || e.inputs.artifacts.contains_key(name)
    }
}

/// `ArtifactField::List` is handled before the match.
fn unreachable_list() -> String {
    String::new()
}

/// Find the program like a shell would: paths as given, bare names on `PATH` (venv first).
fn resolve_program(name: &str, prefix: Option<&Path>, env: &[(String, String)]) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let host_path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default();
    prefix
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&host_path))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Platform-spec (kfp-kubernetes) settings have no local meaning; refuse the ones that change behaviour.
fn check_platform(platform: &Value) -> Result<(), ExecFailure> {
    const IGNORED: &[&str] = &[
        "nodeSelector",
        "imagePullPolicy",
        "tolerations",
        "nodeAffinity",
        "podMetadata",
        "activeDeadlineSeconds",
        "imagePullSecret",
    ];
    let Some(map) = platform.as_object() else { return Ok(()) };
    let unsupported: Vec<&str> = map.keys().map(String::as_str).filter(|k| !IGNORED.contains(k)).collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(ExecFailure::Failed(format!(
        "the task uses Kubernetes settings the local runner cannot provide: {} (secrets, config maps and volumes exist only in the cluster); scheduling hints ({}) are ignored locally. Run this pipeline on Kubeflow, or keep these settings out of the local variant",
        unsupported.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        IGNORED.join(", ")
    )))
}

async fn wait_cancel(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            // The sender is gone: nobody can cancel any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Kill a process group (the task and everything it started).
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// How long to wait before retry `attempt` (1-based) under a retry policy.
pub(crate) fn backoff(base: Option<Duration>, factor: f64, max: Option<Duration>, attempt: u32) -> Duration {
    let base = base.unwrap_or(Duration::ZERO);
    let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = base.as_secs_f64() * factor.max(1.0).powi(exp);
    let d = Duration::from_secs_f64(secs.min(86_400.0));
    max.map_or(d, |m| d.min(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_are_read_by_declared_type() {
        assert_eq!(parse_output_text(&ParameterType::String, "a b\n"), Ok(json!("a b\n")));
        assert_eq!(parse_output_text(&ParameterType::Boolean, "True\n"), Ok(json!(true)));
        assert_eq!(parse_output_text(&ParameterType::NumberInteger, " 42\n"), Ok(json!(42)));
        assert_eq!(parse_output_text(&ParameterType::List, "[1, \"a\"]"), Ok(json!([1, "a"])));
        assert!(parse_output_text(&ParameterType::Boolean, "yes").is_err());
        assert!(parse_output_text(&ParameterType::NumberDouble, "abc").is_err());
    }

    #[test]
    fn retry_backoff_grows_and_is_capped() {
        let s = Duration::from_secs;
        assert_eq!(backoff(Some(s(1)), 2.0, None, 1), s(1));
        assert_eq!(backoff(Some(s(1)), 2.0, None, 3), s(4));
        assert_eq!(backoff(Some(s(1)), 2.0, Some(s(3)), 3), s(3));
        assert_eq!(backoff(None, 2.0, None, 5), Duration::ZERO);
    }

    #[test]
    fn platform_settings_are_refused_or_ignored() {
        assert!(
            check_platform(&json!({"nodeSelector": {"labels": {"pool": "cpu"}}, "imagePullPolicy": "IfNotPresent"}))
                .is_ok()
        );
        let err = check_platform(&json!({"secretAsEnv": [], "nodeSelector": {}})).expect_err("secrets");
        assert!(matches!(err, ExecFailure::Failed(m) if m.contains("`secretAsEnv`")));
    }
}
