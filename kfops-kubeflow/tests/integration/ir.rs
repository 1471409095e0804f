//! `kfops_kubeflow::ir` against the reference pipelines compiled by kfp 2.17.3
//! (`shared/reference/kfp-ir-examples/`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kfops_kubeflow::IrError;
use kfops_kubeflow::ir::placeholder::Arg;
use kfops_kubeflow::ir::{
    ArgumentProblem, ExecutorSpec, InputKind, ParameterType, PipelineJob, PipelineSpec, PipelineTaskSpec, Severity,
    format_parameter_value,
};
use serde_json::{Value, json};

/// The compiled reference pipelines, in `shared/` next to the workspace checkout.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/kfp-ir-examples")
}

/// Every compiled example (file stem).
const EXAMPLES: [&str; 5] = [
    "p1_linear_params",
    "p2_control_flow",
    "p3_artifacts_container",
    "p4_platform_spec_importer",
    "p6_concat_placeholder",
];

fn example_path(name: &str) -> PathBuf {
    examples_dir().join(format!("{name}.yaml"))
}

fn example(name: &str) -> PipelineJob {
    PipelineJob::from_path(&example_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn spec(name: &str) -> PipelineSpec {
    example(name).spec
}

/// Every YAML document of a file, parsed straight into JSON values.
fn raw_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("valid YAML"))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn task<'a>(spec: &'a mut PipelineSpec, component: &str, task: &str) -> &'a mut PipelineTaskSpec {
    let owner = if component == "root" {
        &mut spec.root
    } else {
        spec.components.get_mut(component).expect("component exists")
    };
    owner.dag.as_mut().expect("a DAG").tasks.get_mut(task).expect("task exists")
}

fn executor<'a>(spec: &'a mut PipelineSpec, label: &str) -> &'a mut ExecutorSpec {
    let deployment = spec.deployment_spec.as_mut().expect("deploymentSpec");
    deployment.executors.get_mut(label).expect("executor exists")
}

fn container_args<'a>(spec: &'a mut PipelineSpec, label: &str) -> &'a mut Vec<String> {
    &mut executor(spec, label).container.as_mut().expect("a container").args
}

#[test]
fn every_reference_example_is_covered() {
    let mut found: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples directory exists")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "yaml").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    found.sort();
    assert_eq!(found, EXAMPLES);
}

#[test]
fn every_reference_example_parses() {
    let mut summary = String::new();
    for name in EXAMPLES {
        let job = example(name);
        let spec = &job.spec;
        let tasks: usize = std::iter::once(&spec.root)
            .chain(spec.components.values())
            .filter_map(|c| c.dag.as_ref())
            .map(|d| d.tasks.len())
            .sum();
        writeln!(
            summary,
            "{name}: pipeline `{}`, schema {}, {} components, {} executors, {tasks} tasks, platform: {}",
            spec.pipeline_info.name,
            spec.schema_version,
            spec.components.len(),
            spec.deployment_spec.as_ref().map_or(0, |d| d.executors.len()),
            job.platform
                .as_ref()
                .map_or("none".to_owned(), |p| { p.platforms.keys().cloned().collect::<Vec<_>>().join(",") }),
        )
        .expect("write to string");
        assert_eq!(spec.sdk_version.as_deref(), Some("kfp-2.17.3"));
    }
    insta::assert_snapshot!(summary);

    let p2 = spec("p2_control_flow");
    let cleanup = &p2.root.dag.as_ref().expect("dag").tasks["cleanup"];
    assert_eq!(
        cleanup.trigger_policy.as_ref().and_then(|t| t.strategy.as_ref()).map(ToString::to_string),
        Some("ALL_UPSTREAM_TASKS_COMPLETED".to_owned())
    );
    let p3 = spec("p3_artifacts_container");
    let train = &p3.root.dag.as_ref().expect("dag").tasks["train"];
    let retry = train.retry_policy.as_ref().expect("retry policy");
    assert_eq!(retry.max_retry_count, Some(2));
    assert_eq!(retry.backoff_max(), Ok(Some(std::time::Duration::from_secs(3600))));
    let importer = p4_importer();
    assert_eq!(importer.0.as_deref(), Some("uri"));
    assert_eq!(importer.1.as_deref(), Some("system.Dataset"));
}

/// The importer of p4's inner pipeline: its runtime parameter and type.
fn p4_importer() -> (Option<String>, Option<String>) {
    let p4 = spec("p4_platform_spec_importer");
    let importer = p4.executor("exec-importer").and_then(|e| e.importer.clone()).expect("importer");
    (importer.artifact_uri.and_then(|u| u.runtime_parameter), importer.type_schema.and_then(|t| t.schema_title))
}

#[test]
fn json_round_trip_is_lossless() {
    for name in EXAMPLES {
        let text = read(&example_path(name));
        let raw = raw_documents(&text);
        let job = PipelineJob::from_yaml_str(&text).expect("parses");
        assert_eq!(job.spec.to_json_value(), raw[0], "{name}: pipeline spec");
        match &job.platform {
            Some(platform) => {
                assert_eq!(raw.len(), 2, "{name}");
                assert_eq!(platform.to_json_value(), raw[1], "{name}: platform spec");
                assert_eq!(
                    job.to_json_value(),
                    json!({"pipeline_spec": raw[0], "platform_spec": raw[1]}),
                    "{name}: API form"
                );
            }
            None => {
                assert_eq!(raw.len(), 1, "{name}");
                assert_eq!(job.to_json_value(), raw[0], "{name}: API form");
            }
        }
    }
}

#[test]
fn re_emitted_documents_parse_back_equal() {
    for name in EXAMPLES {
        let job = example(name);
        let yaml = job.to_yaml_string();
        assert_eq!(yaml.matches("\n---\n").count(), usize::from(job.platform.is_some()), "{name}");
        assert_eq!(PipelineJob::from_yaml_str(&yaml).expect("re-parses"), job, "{name}: YAML");
        let json = job.to_json_value().to_string();
        assert_eq!(PipelineJob::from_json_str(&json).expect("re-parses"), job, "{name}: JSON");
    }
}

#[test]
fn unknown_fields_survive_round_trip() {
    let text = read(&example_path("p4_platform_spec_importer"));
    let mut raw = raw_documents(&text);
    let additions = [
        ("/", "futureTopLevel", json!({"a": [1, 2.5]})),
        ("/pipelineInfo", "owner", json!("team-a")),
        ("/components/comp-inner-pipeline", "singlePlatformSpecs", json!([{"platform": "x"}])),
        ("/components/comp-createpvc/inputDefinitions/parameters/access_modes", "literals", json!(["a"])),
        ("/root/dag/tasks/count-lines", "newTaskField", json!(null)),
        (
            "/root/dag/tasks/createpvc/inputs/parameters/size/runtimeValue",
            "constantValue",
            json!({"stringValue": "1Gi"}),
        ),
        ("/root/dag/tasks/count-lines/cachingOptions", "cacheKey", json!("k")),
        ("/deploymentSpec/executors/exec-count-lines/container", "securityContext", json!({"runAsUser": 1000})),
        ("/deploymentSpec/executors/exec-importer", "customJob", json!({"x": 1})),
        ("/deploymentSpec/executors/exec-importer/importer/typeSchema", "instanceSchema", json!("title: X")),
    ];
    for (pointer, key, value) in &additions {
        let target = if *pointer == "/" { Some(&mut raw[0]) } else { raw[0].pointer_mut(pointer) };
        target
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{pointer} exists"))
            .insert((*key).to_owned(), value.clone());
    }
    raw[1]["platforms"]["kubernetes"]["futurePlatformField"] = json!(true);
    raw[1]["platforms"]["kubernetes"]["pipelineConfig"] = json!({"workspace": {"size": "1Gi"}});

    let yaml = format!(
        "{}---\n{}",
        serde_yaml::to_string(&raw[0]).expect("YAML"),
        serde_yaml::to_string(&raw[1]).expect("YAML")
    );
    let job = PipelineJob::from_yaml_str(&yaml).expect("parses");
    assert_eq!(job.spec.extra["futureTopLevel"], json!({"a": [1, 2.5]}));
    assert_eq!(job.spec.pipeline_info.extra["owner"], json!("team-a"));
    let count_lines = &job.spec.root.dag.as_ref().expect("dag").tasks["count-lines"];
    assert_eq!(count_lines.extra.get("newTaskField"), Some(&Value::Null));
    assert_eq!(count_lines.caching_options.as_ref().and_then(|c| c.cache_key.as_deref()), Some("k"));
    let platform = job.platform.as_ref().expect("platform");
    assert_eq!(platform.platforms["kubernetes"].extra["futurePlatformField"], json!(true));
    assert_eq!(job.spec.to_json_value(), raw[0]);
    assert_eq!(platform.to_json_value(), raw[1]);
    let again = PipelineJob::from_yaml_str(&job.to_yaml_string()).expect("re-parses");
    assert_eq!(again, job);
}

#[test]
fn api_wrapper_json_and_yaml_forms_are_accepted() {
    let job = example("p4_platform_spec_importer");
    let wrapped = job.to_json_value();
    assert!(wrapped.get("pipeline_spec").is_some());
    let from_json = PipelineJob::from_json_str(&wrapped.to_string()).expect("parses");
    assert_eq!(from_json, job);
    let from_yaml = PipelineJob::from_yaml_str(&serde_yaml::to_string(&wrapped).expect("YAML")).expect("parses");
    assert_eq!(from_yaml, job);
}

#[test]
fn later_documents_merge_into_the_platform_spec() {
    let text = read(&example_path("p6_concat_placeholder"));
    let yaml = format!("{text}---\nplatforms:\n  kubernetes:\n    platform: first\n---\n---\nextraKey: 1\n");
    let job = PipelineJob::from_yaml_str(&yaml).expect("parses");
    let platform = job.platform.expect("platform spec");
    assert_eq!(platform.platforms["kubernetes"].platform.as_deref(), Some("first"));
    assert_eq!(platform.extra["extraKey"], json!(1));
    // A trailing empty document is not a platform spec.
    let job = PipelineJob::from_yaml_str(&format!("{text}---\n")).expect("parses");
    assert_eq!(job.platform, None);
}

/// Renders an error for the snapshot.
fn failure(result: Result<PipelineJob, IrError>) -> String {
    match result {
        Ok(_) => "unexpectedly parsed".to_owned(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_documents_are_rejected_with_clear_messages() {
    let p1 = read(&example_path("p1_linear_params"));
    let cases: Vec<(&str, Result<PipelineJob, IrError>)> = vec![
        ("empty", PipelineJob::from_yaml_str("")),
        ("only comments", PipelineJob::from_yaml_str("# nothing here\n")),
        ("empty mapping", PipelineJob::from_yaml_str("{}")),
        ("empty JSON", PipelineJob::from_json_str("  \n")),
        ("a list", PipelineJob::from_yaml_str("- a\n- b\n")),
        ("a scalar", PipelineJob::from_yaml_str("hello\n")),
        (
            "unrelated mapping",
            PipelineJob::from_yaml_str("name: my-app\nversion: 3\nimage: nginx\n"),
        ),
        (
            "kfp v1 Argo workflow",
            PipelineJob::from_yaml_str(
                "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: hello-\nspec:\n  entrypoint: hello\n",
            ),
        ),
        (
            "kubernetes manifest store",
            PipelineJob::from_yaml_str(
                "apiVersion: pipelines.kubeflow.org/v2beta1\nkind: PipelineVersion\nmetadata:\n  name: p\n",
            ),
        ),
        (
            "other kubernetes manifest",
            PipelineJob::from_yaml_str("apiVersion: v1\nkind: ConfigMap\n"),
        ),
        (
            "kfp v1 component",
            PipelineJob::from_yaml_str(
                "name: Echo\ninputs:\n- {name: msg, type: String}\nimplementation:\n  container:\n    image: alpine\n",
            ),
        ),
        (
            "a single component spec",
            PipelineJob::from_yaml_str("executorLabel: exec-a\ninputDefinitions: {}\n"),
        ),
        ("schemaVersion 1.0.0", PipelineJob::from_yaml_str(&p1.replace("schemaVersion: 2.1.0", "schemaVersion: 1.0.0"))),
        ("schemaVersion as a number", PipelineJob::from_yaml_str(&p1.replace("schemaVersion: 2.1.0", "schemaVersion: 2.1"))),
        (
            "YAML syntax error",
            PipelineJob::from_yaml_str("pipelineInfo:\n  name: x\nroot: [unclosed\nschemaVersion: 2.1.0\n"),
        ),
        (
            "YAML bad indentation",
            PipelineJob::from_yaml_str("pipelineInfo:\n  name: x\n bad: indent\n"),
        ),
        (
            "wrong type with key path",
            PipelineJob::from_yaml_str(&p1.replace(
                "        dependentTasks:\n        - make-greeting\n        inputs:\n          parameters:\n            scale:",
                "        dependentTasks: make-greeting\n        inputs:\n          parameters:\n            scale:",
            )),
        ),
        (
            "unknown enum is fine but a list is not",
            PipelineJob::from_yaml_str(&p1.replace("parameterType: LIST", "parameterType: [LIST]")),
        ),
        (
            "platform document is a list",
            PipelineJob::from_yaml_str(&format!("{p1}---\n- a\n")),
        ),
        ("JSON syntax error", PipelineJob::from_json_str("{\"pipelineInfo\": {\"name\": \"x\",}}")),
        (
            "JSON wrong type",
            PipelineJob::from_json_str(
                r#"{"pipelineInfo": {"name": "x"}, "root": {"dag": {"tasks": []}}, "schemaVersion": "2.1.0"}"#,
            ),
        ),
    ];
    let mut out = String::new();
    for (label, result) in cases {
        writeln!(out, "{label}:\n  {}", failure(result)).expect("write to string");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "pipelineInfo:\n  name: x\nroot: [unclosed\n").expect("write");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").expect("write");
    let shown =
        |result: Result<PipelineJob, IrError>| failure(result).replace(&dir.path().display().to_string(), "<tmp>");
    let mut out = String::new();
    for (label, result) in [
        ("YAML syntax error in a file", PipelineJob::from_path(&broken)),
        ("empty JSON file", PipelineJob::from_path(&empty)),
        ("missing file", PipelineJob::from_path(&dir.path().join("nope.yaml"))),
        ("unsupported extension", PipelineJob::from_path(&dir.path().join("pipeline.py"))),
        (
            "text error given a file name later",
            PipelineJob::from_yaml_str("- a\n").map_err(|e| e.in_file(Path::new("compiled/p.yaml"))),
        ),
    ] {
        writeln!(out, "{label}:\n  {}", shown(result)).expect("write to string");
    }
    insta::assert_snapshot!(out);

    let error = PipelineJob::from_path(&broken).expect_err("broken");
    assert!(matches!(error, IrError::Invalid { line: Some(4), column: Some(_), .. }), "{error:?}");
    // A name given later does not replace the file the error already names.
    let named = error.in_file(Path::new("other.yaml"));
    assert!(named.to_string().contains("broken.yaml"), "{named}");
}

#[test]
fn placeholders_parse_on_every_arg_of_every_example() {
    let mut out = String::new();
    let mut parsed = 0;
    for name in EXAMPLES {
        let spec = spec(name);
        for (label, executor) in &spec.deployment_spec.as_ref().expect("executors").executors {
            let Some(container) = &executor.container else {
                continue;
            };
            for (field, items) in [("command", &container.command), ("args", &container.args)] {
                for (i, text) in items.iter().enumerate() {
                    let arg = Arg::parse(text).unwrap_or_else(|e| panic!("{name} {label} {field}[{i}]: {e}"));
                    parsed += 1;
                    // Parsing loses nothing: text prints back as is, JSON forms
                    // give back the same object.
                    let expected = if matches!(arg, Arg::Text(_)) {
                        Value::String(text.clone())
                    } else {
                        serde_json::from_str(text).expect("JSON placeholder")
                    };
                    assert_eq!(arg.to_value(), expected, "{name} {label} {field}[{i}]");
                    if !arg.placeholders().is_empty() || !matches!(arg, Arg::Text(_)) {
                        writeln!(out, "{name} {label} {field}[{i}]: {arg:?}").expect("write to string");
                    }
                }
            }
        }
    }
    assert!(parsed > 50, "only {parsed} items");
    insta::assert_snapshot!(out);
}

#[test]
fn reference_examples_lint_without_errors() {
    let mut out = String::new();
    for name in EXAMPLES {
        let job = example(name);
        let diagnostics = job.lint();
        let errors: Vec<String> = diagnostics.iter().filter(|d| d.is_error()).map(ToString::to_string).collect();
        assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
        writeln!(out, "{name}:").expect("write to string");
        for diagnostic in diagnostics {
            assert_eq!(diagnostic.severity, Severity::Warning);
            writeln!(out, "  {diagnostic}").expect("write to string");
        }
    }
    insta::assert_snapshot!(out);
}

#[test]
fn remote_compatibility_warnings() {
    let mut spec = spec("p3_artifacts_container");
    let args = container_args(&mut spec, "exec-evaluate");
    args[1] = "{{$.inputs.parameters['n_lines'].json_escape[0]}}".into();
    args[2] = "--meta={{$.inputs.artifacts['model'].metadata['k']}}".into();
    args.push(
        r#"{"IfPresent": {"InputName": "n_lines", "Then": {"Concat": ["--n=", "{{$.inputs.parameters['n_lines']}}"]}}}"#
            .into(),
    );
    let diagnostics = spec.lint();
    assert!(diagnostics.iter().all(|d| d.severity == Severity::Warning));
    let rendered: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

type Mutation = fn(&mut PipelineJob);

#[test]
fn broken_variants_produce_the_expected_errors() {
    let cases: Vec<(&str, &str, Mutation, &str)> = vec![
        (
            "componentRef to a missing component",
            "p1_linear_params",
            |j| {
                task(&mut j.spec, "root", "measure").component_ref.as_mut().expect("ref").name = "comp-mesure".into();
            },
            "root.dag.tasks.measure.componentRef.name",
        ),
        (
            "executorLabel to a missing executor",
            "p1_linear_params",
            |j| {
                j.spec.components.get_mut("comp-measure").expect("component").executor_label =
                    Some("exec-mesure".into());
            },
            "components.comp-measure.executorLabel",
        ),
        (
            "component with dag and executorLabel",
            "p4_platform_spec_importer",
            |j| {
                j.spec.components.get_mut("comp-inner-pipeline").expect("component").executor_label =
                    Some("exec-importer".into());
            },
            "components.comp-inner-pipeline",
        ),
        (
            "dependentTasks naming a missing task",
            "p1_linear_params",
            |j| {
                task(&mut j.spec, "root", "report").dependent_tasks.push("mesure".into());
            },
            "root.dag.tasks.report.dependentTasks[2]",
        ),
        (
            "producerTask naming a missing task",
            "p1_linear_params",
            |j| {
                let text = task(&mut j.spec, "root", "report")
                    .inputs
                    .as_mut()
                    .expect("inputs")
                    .parameters
                    .get_mut("text")
                    .expect("text");
                text.task_output_parameter.as_mut().expect("task output").producer_task = "greeting".into();
            },
            "root.dag.tasks.report.inputs.parameters.text.taskOutputParameter.producerTask",
        ),
        (
            "producerTask in another DAG",
            "p2_control_flow",
            |j| {
                let status = task(&mut j.spec, "root", "cleanup")
                    .inputs
                    .as_mut()
                    .expect("inputs")
                    .parameters
                    .get_mut("status")
                    .expect("status");
                status.task_final_status.as_mut().expect("final status").producer_task = "flip".into();
            },
            "root.dag.tasks.cleanup.inputs.parameters.status.taskFinalStatus.producerTask",
        ),
        (
            "dependency cycle",
            "p1_linear_params",
            |j| {
                task(&mut j.spec, "root", "make-greeting").dependent_tasks.push("report".into());
            },
            "root.dag.tasks.make-greeting",
        ),
        (
            "task input the component does not declare",
            "p1_linear_params",
            |j| {
                let inputs = &mut task(&mut j.spec, "root", "measure").inputs.as_mut().expect("inputs").parameters;
                let scale = inputs["scale"].clone();
                inputs.insert("factor".into(), scale);
            },
            "root.dag.tasks.measure.inputs.parameters.factor",
        ),
        (
            "required component input missing",
            "p1_linear_params",
            |j| {
                task(&mut j.spec, "root", "measure").inputs.as_mut().expect("inputs").parameters.remove("text");
            },
            "root.dag.tasks.measure.inputs.parameters",
        ),
        (
            "required input artifact missing",
            "p3_artifacts_container",
            |j| {
                task(&mut j.spec, "root", "evaluate").inputs.as_mut().expect("inputs").artifacts.clear();
            },
            "root.dag.tasks.evaluate.inputs.artifacts",
        ),
        (
            "input with no value source",
            "p1_linear_params",
            |j| {
                let inputs = &mut task(&mut j.spec, "root", "measure").inputs.as_mut().expect("inputs").parameters;
                inputs.insert("scale".into(), Default::default());
            },
            "root.dag.tasks.measure.inputs.parameters.scale",
        ),
        (
            "taskOutputParameter naming an undeclared output",
            "p1_linear_params",
            |j| {
                let length = task(&mut j.spec, "root", "report")
                    .inputs
                    .as_mut()
                    .expect("inputs")
                    .parameters
                    .get_mut("length")
                    .expect("length");
                length.task_output_parameter.as_mut().expect("task output").output_parameter_key = "lenght".into();
            },
            "root.dag.tasks.report.inputs.parameters.length.taskOutputParameter.outputParameterKey",
        ),
        (
            "outputArtifactKey naming an undeclared output",
            "p3_artifacts_container",
            |j| {
                let model = task(&mut j.spec, "root", "evaluate")
                    .inputs
                    .as_mut()
                    .expect("inputs")
                    .artifacts
                    .get_mut("model")
                    .expect("model");
                model.task_output_artifact.as_mut().expect("task output").output_artifact_key = "models".into();
            },
            "root.dag.tasks.evaluate.inputs.artifacts.model.taskOutputArtifact.outputArtifactKey",
        ),
        (
            "componentInputParameter the DAG does not declare",
            "p1_linear_params",
            |j| {
                let name = task(&mut j.spec, "root", "make-greeting")
                    .inputs
                    .as_mut()
                    .expect("inputs")
                    .parameters
                    .get_mut("name")
                    .expect("name");
                name.component_input_parameter = Some("nmae".into());
            },
            "root.dag.tasks.make-greeting.inputs.parameters.name.componentInputParameter",
        ),
        (
            "componentInputParameter in a sub-DAG",
            "p2_control_flow",
            |j| {
                let seed = task(&mut j.spec, "comp-exit-handler-1", "flip")
                    .inputs
                    .as_mut()
                    .expect("inputs")
                    .parameters
                    .get_mut("seed")
                    .expect("seed");
                seed.component_input_parameter = Some("seed".into());
            },
            "components.comp-exit-handler-1.dag.tasks.flip.inputs.parameters.seed.componentInputParameter",
        ),
        (
            "placeholder naming an undeclared input",
            "p3_artifacts_container",
            |j| {
                container_args(&mut j.spec, "exec-evaluate")[1] = "{{$.inputs.parameters['lines']}}".into();
            },
            "deploymentSpec.executors.exec-evaluate.container.args[1]",
        ),
        (
            "placeholder naming an undeclared output",
            "p3_artifacts_container",
            |j| {
                container_args(&mut j.spec, "exec-train")[3] = "{{$.outputs.parameters['lines'].output_file}}".into();
            },
            "deploymentSpec.executors.exec-train.container.args[3]",
        ),
        (
            "unparseable placeholder",
            "p3_artifacts_container",
            |j| {
                container_args(&mut j.spec, "exec-make-dataset")[1] = "{{$.inputs.rows}}".into();
            },
            "deploymentSpec.executors.exec-make-dataset.container.args[1]",
        ),
        (
            "IfPresent on an undeclared input",
            "p3_artifacts_container",
            |j| {
                let args = container_args(&mut j.spec, "exec-train");
                args[4] = args[4].replace("\"InputName\": \"label\"", "\"InputName\": \"lable\"");
            },
            "deploymentSpec.executors.exec-train.container.args[4]",
        ),
        (
            "parameterIterator.itemInput not declared by the loop body",
            "p2_control_flow",
            |j| {
                task(&mut j.spec, "comp-condition-branches-2", "for-loop-5")
                    .parameter_iterator
                    .as_mut()
                    .expect("iterator")
                    .item_input = "pipelinechannel--item".into();
            },
            "components.comp-condition-branches-2.dag.tasks.for-loop-5.parameterIterator.itemInput",
        ),
        (
            "parameterIterator items from an unbound input",
            "p2_control_flow",
            |j| {
                let iterator = task(&mut j.spec, "comp-condition-branches-2", "for-loop-5")
                    .parameter_iterator
                    .as_mut()
                    .expect("iterator");
                iterator.items.as_mut().expect("items").input_parameter = Some("pipelinechannel--list".into());
            },
            "components.comp-condition-branches-2.dag.tasks.for-loop-5.parameterIterator.items.inputParameter",
        ),
        (
            "parameterIterator raw items that are not a list",
            "p2_control_flow",
            |j| {
                let iterator = task(&mut j.spec, "comp-condition-branches-2", "for-loop-5")
                    .parameter_iterator
                    .as_mut()
                    .expect("iterator");
                let items = iterator.items.as_mut().expect("items");
                items.input_parameter = None;
                items.raw = Some("1, 2".into());
            },
            "components.comp-condition-branches-2.dag.tasks.for-loop-5.parameterIterator.items.raw",
        ),
        (
            "DAG output from a missing task",
            "p1_linear_params",
            |j| {
                let outputs = j.spec.root.dag.as_mut().expect("dag").outputs.as_mut().expect("outputs");
                let output = outputs.parameters.get_mut("Output").expect("Output");
                output.value_from_parameter.as_mut().expect("selector").producer_subtask = "reprot".into();
            },
            "root.dag.outputs.parameters.Output.valueFromParameter.producerSubtask",
        ),
        (
            "declared DAG output never produced",
            "p4_platform_spec_importer",
            |j| {
                let inner = j.spec.components.get_mut("comp-inner-pipeline").expect("component");
                inner.dag.as_mut().expect("dag").outputs = None;
            },
            "components.comp-inner-pipeline.outputDefinitions.parameters.Output",
        ),
        (
            "default that does not fit the type",
            "p1_linear_params",
            |j| {
                let definitions = j.spec.root.input_definitions.as_mut().expect("inputs");
                definitions.parameters.get_mut("times").expect("times").default_value = Some(json!(2.5));
            },
            "root.inputDefinitions.parameters.times.defaultValue",
        ),
        (
            "f-string constant reading an unset task input",
            "p2_control_flow",
            |j| {
                let msg = task(&mut j.spec, "comp-condition-3", "announce")
                    .inputs
                    .as_mut()
                    .expect("inputs")
                    .parameters
                    .get_mut("msg")
                    .expect("msg");
                msg.runtime_value.as_mut().expect("runtime value").constant =
                    Some(json!("got {{$.inputs.parameters['pipelinechannel--flip-Output']}}"));
            },
            "components.comp-condition-3.dag.tasks.announce.inputs.parameters.msg.runtimeValue.constant",
        ),
        (
            "importer reading an undeclared input",
            "p4_platform_spec_importer",
            |j| {
                let executor = j
                    .spec
                    .deployment_spec
                    .as_mut()
                    .expect("deploymentSpec")
                    .executors
                    .get_mut("exec-importer")
                    .expect("importer");
                executor.importer.as_mut().expect("importer").artifact_uri.as_mut().expect("uri").runtime_parameter =
                    Some("url".into());
            },
            "deploymentSpec.executors.exec-importer.importer.artifactUri.runtimeParameter",
        ),
        (
            "retry duration that is not a protobuf duration",
            "p3_artifacts_container",
            |j| {
                task(&mut j.spec, "root", "train").retry_policy.as_mut().expect("retry").backoff_duration =
                    Some("1m".into());
            },
            "root.dag.tasks.train.retryPolicy.backoffDuration",
        ),
        (
            "platform spec configuring a missing executor",
            "p4_platform_spec_importer",
            |j| {
                let platform = j.platform.as_mut().expect("platform");
                let executors = &mut platform
                    .platforms
                    .get_mut("kubernetes")
                    .expect("kubernetes")
                    .deployment_spec
                    .as_mut()
                    .expect("deploymentSpec")
                    .executors;
                let settings = executors.remove("exec-count-lines").expect("settings");
                executors.insert("exec-count-line".into(), settings);
            },
            "platforms.kubernetes.deploymentSpec.executors.exec-count-line",
        ),
        (
            "pipeline without a name",
            "p6_concat_placeholder",
            |j| j.spec.pipeline_info.name.clear(),
            "pipelineInfo.name",
        ),
        ("root that is not a DAG", "p6_concat_placeholder", |j| j.spec.root.dag = None, "root"),
        (
            "executor of no known kind",
            "p6_concat_placeholder",
            |j| {
                let executor = executor(&mut j.spec, "exec-show");
                executor.container = None;
                executor.extra.insert("customJob".into(), json!({}));
            },
            "deploymentSpec.executors.exec-show",
        ),
        (
            "executor of several kinds",
            "p6_concat_placeholder",
            |j| executor(&mut j.spec, "exec-show").importer = Some(Default::default()),
            "deploymentSpec.executors.exec-show",
        ),
        (
            "importer without artifactUri",
            "p4_platform_spec_importer",
            |j| {
                let importer = executor(&mut j.spec, "exec-importer").importer.as_mut();
                importer.expect("importer").artifact_uri = None;
            },
            "deploymentSpec.executors.exec-importer.importer.artifactUri",
        ),
        (
            "both a parameter and an artifact iterator",
            "p2_control_flow",
            |j| {
                let for_loop = task(&mut j.spec, "comp-condition-branches-2", "for-loop-5");
                for_loop.artifact_iterator = Some(
                    serde_json::from_value(json!({
                        "itemInput": "pipelinechannel--items-loop-item",
                        "items": {"inputArtifact": "pipelinechannel--models"}
                    }))
                    .expect("artifact iterator"),
                );
            },
            "components.comp-condition-branches-2.dag.tasks.for-loop-5",
        ),
        (
            "componentInputArtifact the DAG does not declare",
            "p3_artifacts_container",
            |j| {
                let inputs = task(&mut j.spec, "root", "evaluate").inputs.as_mut();
                let model = inputs.expect("inputs").artifacts.get_mut("model");
                *model.expect("model") =
                    serde_json::from_value(json!({"componentInputArtifact": "model"})).expect("binding");
            },
            "root.dag.tasks.evaluate.inputs.artifacts.model.componentInputArtifact",
        ),
        (
            "DAG output artifact undeclared and from an unknown output",
            "p4_platform_spec_importer",
            |j| {
                let inner = j.spec.components.get_mut("comp-inner-pipeline");
                let outputs = inner.expect("component").dag.as_mut().expect("dag").outputs.as_mut();
                outputs.expect("outputs").artifacts.insert(
                    "lines".into(),
                    serde_json::from_value(json!({"artifactSelectors": [
                        {"producerSubtask": "count-lines", "outputArtifactKey": "outt"}
                    ]}))
                    .expect("output"),
                );
            },
            "components.comp-inner-pipeline.dag.outputs.artifacts.lines.artifactSelectors[0].outputArtifactKey",
        ),
        (
            "valueFromOneof selecting an unknown output",
            "p1_linear_params",
            |j| {
                let outputs = j.spec.root.dag.as_mut().expect("dag").outputs.as_mut();
                let output = outputs.expect("outputs").parameters.get_mut("Output");
                *output.expect("Output") = serde_json::from_value(json!({"valueFromOneof": {
                    "parameterSelectors": [
                        {"producerSubtask": "report", "outputParameterKey": "Output"},
                        {"producerSubtask": "measure", "outputParameterKey": "Output"}
                    ]
                }}))
                .expect("output");
            },
            "root.dag.outputs.parameters.Output.valueFromOneof.parameterSelectors[1].outputParameterKey",
        ),
    ];
    let mut out = String::new();
    for (label, name, mutate, expected_path) in cases {
        let mut job = example(name);
        mutate(&mut job);
        let errors: Vec<_> = job.lint().into_iter().filter(|d| d.is_error()).collect();
        assert!(
            errors.iter().any(|d| d.path == expected_path),
            "{label}: no error at {expected_path}; got {errors:#?}"
        );
        writeln!(out, "{label}:").expect("write to string");
        for error in errors {
            writeln!(out, "  {error}").expect("write to string");
        }
    }
    insta::assert_snapshot!(out);
}

/// Runs a table of argument checks against `spec` and renders the outcomes.
fn argument_table(spec: &PipelineSpec, cases: &[(&str, Value)], out: &mut String) {
    for (label, args) in cases {
        let args: BTreeMap<String, Value> = serde_json::from_value(args.clone()).expect("arguments are an object");
        match spec.check_arguments(&args) {
            Ok(effective) => {
                writeln!(out, "{label}: ok {}", serde_json::to_string(&effective).expect("JSON"))
            }
            Err(problems) => writeln!(out, "{label}:")
                .and_then(|()| problems.iter().try_for_each(|p| writeln!(out, "  [{}] {p}", p.name()))),
        }
        .expect("write to string");
    }
}

#[test]
fn run_arguments_are_checked_against_declared_inputs() {
    let p1 = spec("p1_linear_params");
    let mut out = String::new();
    argument_table(
        &p1,
        &[
            ("no arguments: typed defaults", json!({})),
            ("integer as integer", json!({"times": 3})),
            ("integer as whole float", json!({"times": 3.0})),
            ("integer as fractional float", json!({"times": 2.5})),
            ("integer as string", json!({"times": "2"})),
            ("double as integer", json!({"scale": 1})),
            ("double as string", json!({"scale": "0.5"})),
            ("boolean as string", json!({"excited": "true"})),
            ("boolean as number", json!({"excited": 1})),
            ("string as number", json!({"name": 5})),
            ("list as string", json!({"tags": "a,b"})),
            ("list", json!({"tags": ["x", 1]})),
            ("struct as list", json!({"config": [1]})),
            ("struct", json!({"config": {"k": 1}})),
            ("unknown name with suggestion", json!({"tmes": 3})),
            ("unknown name without suggestion", json!({"zzz": 1})),
            ("null leaves the default", json!({"name": null})),
            ("all problems at once", json!({"tmes": 1, "times": "x", "name": 1, "scale": 0.25})),
        ],
        &mut out,
    );

    let p3 = spec("p3_artifacts_container");
    argument_table(
        &p3,
        &[
            ("optional input without default stays absent", json!({})),
            ("optional input given", json!({"label": "v1", "rows": 4.0})),
        ],
        &mut out,
    );

    // A required input (no default, not optional) and a pipeline-level artifact.
    let mut strict = p1.clone();
    let name = strict.root.input_definitions.as_mut().expect("inputs").parameters.get_mut("name").expect("name");
    name.default_value = None;
    name.is_optional = None;
    let mut with_artifact = p3.clone();
    with_artifact.root.input_definitions.as_mut().expect("inputs").artifacts.insert(
        "data".into(),
        serde_json::from_value(json!({"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}))
            .expect("artifact definition"),
    );
    argument_table(&strict, &[("missing required input", json!({"times": 1}))], &mut out);
    argument_table(&strict, &[("required input given", json!({"name": "kfp"}))], &mut out);
    argument_table(&with_artifact, &[("artifact given as argument", json!({"data": "gs://b/d"}))], &mut out);
    insta::assert_snapshot!(out);

    let effective = p1.check_arguments(&BTreeMap::new()).expect("defaults are valid");
    assert_eq!(effective["times"], json!(2));
    assert!(effective["times"].is_i64());
    assert_eq!(effective["scale"], json!(0.5));
    let problems = p1
        .check_arguments(&BTreeMap::from([("tmes".to_owned(), json!(1)), ("times".to_owned(), json!("x"))]))
        .expect_err("two problems");
    assert!(matches!(&problems[..], [
        ArgumentProblem::WrongType { expected: ParameterType::NumberInteger, .. },
        ArgumentProblem::Unknown { suggestion: Some(s), .. },
    ] if s == "times"));
}

#[test]
fn root_inputs_describe_the_pipeline_inputs() {
    let mut out = String::new();
    for name in ["p1_linear_params", "p3_artifacts_container"] {
        for input in spec(name).root_inputs() {
            assert_eq!(input.kind, InputKind::Parameter);
            writeln!(
                out,
                "{name}: {} {} default={} optional={} required={} as text={:?}",
                input.name,
                input.parameter_type.as_ref().map_or("-".to_owned(), ToString::to_string),
                input.default_value.as_ref().map_or("-".to_owned(), Value::to_string),
                input.optional,
                input.required(),
                input.default_value.as_ref().map(format_parameter_value),
            )
            .expect("write to string");
        }
    }
    insta::assert_snapshot!(out);
}

#[test]
fn built_images_are_pinned_into_reference_pipelines() {
    use kfops_core::image::BuiltImage;
    use kfops_kubeflow::image::pin::pin_images;

    // p3 runs `alpine:3.20`; pretend kfops builds an image named `alpine`.
    let mut job = example("p3_artifacts_container");
    let built = vec![BuiltImage {
        name: "alpine".into(),
        reference: "registry.example.com/team/alpine:ctx-0123456789abcdef".into(),
        built: true,
    }];
    let report = pin_images(&mut job.spec, &built, "registry.example.com/team");
    assert!(!report.pinned.is_empty());
    for (_, before, after) in &report.pinned {
        assert_eq!(before, "alpine:3.20");
        assert_eq!(after, "registry.example.com/team/alpine:ctx-0123456789abcdef");
    }
    let yaml = job.to_yaml_string();
    assert!(!yaml.contains("image: alpine:3.20"), "every executor was rewritten");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    // p4's stub images are neither built nor pinned: warned about.
    let mut p4 = example("p4_platform_spec_importer");
    let report = pin_images(&mut p4.spec, &[], "registry.example.com/team");
    assert!(report.pinned.is_empty());
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("`argostub/createpvc`") && w.contains("not pinned to a tag or digest"))
    );
}

#[test]
fn conditions_that_are_not_valid_cel_are_lint_errors() {
    let mut job = example("p2_control_flow");
    let t = task(&mut job.spec, "comp-condition-branches-2", "condition-3");
    t.trigger_policy.as_mut().expect("policy").condition = Some("inputs.parameter_values['x'] == 'it's'".into());
    let errors: Vec<String> = job.lint().into_iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("condition-3.triggerPolicy.condition") && errors[0].contains("is not valid CEL"),
        "{errors:?}"
    );
}
