//! The embedded local runner on the reference pipelines and on small fixture
//! pipelines for concurrency, loops, retries and cancellation.
//!
//! Lightweight Python components need a Python with `venv` (`KFOPS_PYTHON`,
//! set by `cargo xtask test`, else the workspace `.venv`); their virtualenv is
//! cached under `target/kfops-test-cache` and shared by all tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kfops_core::pipeline::RunState;
use kfops_core::progress::NoProgress;
use kfops_kubeflow::ir::PipelineJob;
use kfops_kubeflow::local::store::RunRecord;
use kfops_kubeflow::local::{LocalRun, LocalRunner, LocalRunnerOptions};
use serde_json::{Value, json};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KFOPS_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "no Python: run `cargo xtask test` (creates .venv) or set KFOPS_PYTHON");
    venv
}

fn runner(root: &Path, max_parallel: usize) -> LocalRunner {
    LocalRunner::new(
        root,
        LocalRunnerOptions {
            max_parallel,
            python: python(),
            venv_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kfops-test-cache/venvs"),
        },
    )
}

fn reference(name: &str) -> PipelineJob {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/kfp-ir-examples").join(name);
    PipelineJob::from_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn run(job: &PipelineJob, args: Value, max_parallel: usize) -> (tempfile::TempDir, LocalRun) {
    let dir = tempfile::tempdir().expect("tempdir");
    let args: BTreeMap<String, Value> = serde_json::from_value(args).expect("args");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let result = rt.block_on(runner(dir.path(), max_parallel).run(job, &args, Arc::new(NoProgress), rx)).expect("runs");
    (dir, result)
}

fn task<'a>(r: &'a RunRecord, path: &str) -> &'a kfops_kubeflow::local::store::TaskRecord {
    r.tasks
        .iter()
        .find(|t| t.path == path)
        .unwrap_or_else(|| panic!("no task {path} in {:?}", r.tasks.iter().map(|t| &t.path).collect::<Vec<_>>()))
}

fn log(run: &LocalRun, path: &str) -> String {
    std::fs::read_to_string(run.dir.join("tasks").join(path).join("log.txt")).unwrap_or_default()
}

#[test]
fn p1_lightweight_python_outputs_are_typed() {
    let (_dir, run) = run(&reference("p1_linear_params.yaml"), json!({"name": "kfp"}), 4);
    let r = &run.record;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    assert_eq!(task(r, "measure").outputs, serde_json::from_value(json!({"length": 21, "score": 10.5})).expect("map"));
    assert_eq!(
        r.outputs.get("Output"),
        Some(&json!("'Hello kfp! Hello kfp!' length=21 score=10.5 tags=['a', 'b'] config={'k': 'v'}"))
    );
    // The ExecutorInput carries integers as integers, as the KFP backend writes them.
    let input: Value =
        serde_json::from_slice(&std::fs::read(run.dir.join("tasks/report/executor_input.json")).expect("input"))
            .expect("json");
    assert_eq!(input.pointer("/inputs/parameterValues/length"), Some(&json!(21)));
    assert_eq!(input.pointer("/inputs/parameterValues/tags"), Some(&json!(["a", "b"])));
    // Persisted: the store gives back the same record.
    let store = kfops_kubeflow::local::store::RunStore::new(
        run.dir.parent().and_then(Path::parent).and_then(Path::parent).expect("root"),
    );
    assert_eq!(&store.load(&r.id[..8]).expect("load"), r);
}

#[test]
fn p3_container_components_run_on_the_host() {
    let (_dir, run) = run(&reference("p3_artifacts_container.yaml"), json!({}), 4);
    let r = &run.record;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    assert_eq!(task(r, "train").outputs.get("n_lines"), Some(&json!(10)));
    let dataset = &task(r, "make-dataset").artifacts["dataset"][0];
    assert!(Path::new(&dataset.uri).exists(), "artifact written at its path");
}

#[test]
fn p6_concat_and_if_present_resolve() {
    let (_dir, run) = run(&reference("p6_concat_placeholder.yaml"), json!({"a": "it's \"quoted\""}), 4);
    assert_eq!(run.record.state, RunState::Succeeded);
    assert_eq!(log(&run, "show").trim(), "--x=it's \"quoted\"-z --b z");
}

#[test]
fn p4_cluster_only_features_fail_clearly() {
    let (_dir, run) = run(&reference("p4_platform_spec_importer.yaml"), json!({}), 4);
    let r = &run.record;
    assert_eq!(r.state, RunState::Failed);
    let createpvc = task(r, "createpvc").error.clone().unwrap_or_default();
    assert!(createpvc.contains("no command: its entrypoint is inside the image `argostub/createpvc`"), "{createpvc}");
    let importer = task(r, "importer").error.clone().unwrap_or_default();
    assert!(importer.contains("the local runner reads local files only"), "{importer}");
    // Nothing downstream of a failure runs, and every task is accounted for.
    assert!(r.tasks.iter().all(|t| t.state != RunState::Running && t.state != RunState::Pending));
}

/// A compiled pipeline of `sh -c` container tasks: (name, script, upstream tasks).
fn shell_pipeline(name: &str, tasks: &[(&str, &str, &[&str])]) -> PipelineJob {
    let mut components = serde_json::Map::new();
    let mut executors = serde_json::Map::new();
    let mut dag = serde_json::Map::new();
    for (task, script, deps) in tasks {
        components.insert(format!("comp-{task}"), json!({"executorLabel": format!("exec-{task}")}));
        executors.insert(
            format!("exec-{task}"),
            json!({"container": {"image": "alpine:3.20", "command": ["sh", "-c"], "args": [script]}}),
        );
        dag.insert((*task).to_owned(), json!({"componentRef": {"name": format!("comp-{task}")}, "taskInfo": {"name": task}, "dependentTasks": deps}));
    }
    let spec = json!({
        "components": components,
        "deploymentSpec": {"executors": executors},
        "pipelineInfo": {"name": name},
        "root": {"dag": {"tasks": dag}},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.17.3"
    });
    PipelineJob::from_json_str(&spec.to_string()).expect("fixture pipeline")
}

fn interval(t: &kfops_kubeflow::local::store::TaskRecord) -> (String, String) {
    (t.started_at.clone().expect("started"), t.finished_at.clone().expect("finished"))
}

#[test]
fn independent_tasks_run_concurrently_and_dependencies_are_respected() {
    let job = shell_pipeline(
        "fan-out",
        &[("a", "sleep 1", &[]), ("b", "sleep 1", &[]), ("c", "sleep 1", &[]), ("after", "true", &["a", "b", "c"])],
    );
    let (_dir, run) = run(&job, json!({}), 3);
    let r = &run.record;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    let (a, b, c) = (interval(task(r, "a")), interval(task(r, "b")), interval(task(r, "c")));
    // All three started before any finished: they overlapped.
    let first_end = [&a.1, &b.1, &c.1].into_iter().min().cloned().expect("ends");
    assert!([&a.0, &b.0, &c.0].iter().all(|s| **s < first_end), "{a:?} {b:?} {c:?}");
    let last_end = [&a.1, &b.1, &c.1].into_iter().max().cloned().expect("ends");
    assert!(interval(task(r, "after")).0 >= last_end, "`after` waited for its upstream tasks");
}

#[test]
fn max_parallel_bounds_concurrency() {
    let job = shell_pipeline("serial", &[("a", "sleep 0.3", &[]), ("b", "sleep 0.3", &[])]);
    let (_dir, run) = run(&job, json!({}), 1);
    let (a, b) = (interval(task(&run.record, "a")), interval(task(&run.record, "b")));
    assert!(a.1 <= b.0 || b.1 <= a.0, "with --max-parallel 1 the tasks must not overlap: {a:?} {b:?}");
}

#[test]
fn a_failed_task_stops_its_dependents_and_reports_its_log() {
    let job = shell_pipeline(
        "failing",
        &[
            ("bad", "echo preparing; echo 'boom: disk full' >&2; exit 3", &[]),
            ("next", "true", &["bad"]),
            ("other", "true", &[]),
        ],
    );
    let (_dir, run) = run(&job, json!({}), 2);
    let r = &run.record;
    assert_eq!(r.state, RunState::Failed);
    let err = r.error.clone().unwrap_or_default();
    assert!(err.contains("task `bad` failed: the command exited with status 3"), "{err}");
    assert!(err.contains("boom: disk full"), "the log tail is in the error: {err}");
    assert_eq!(task(r, "next").state, RunState::Skipped);
    assert!(task(r, "next").error.as_deref().unwrap_or_default().contains("upstream task `bad` did not succeed"));
    assert_eq!(task(r, "other").state, RunState::Succeeded, "independent work still runs");
}

#[test]
fn retries_follow_the_retry_policy() {
    let mut job = shell_pipeline(
        "flaky",
        &[(
            "flaky",
            "if [ -f \"{{$.workspace_path}}/tried\" ]; then echo ok; else touch \"{{$.workspace_path}}/tried\"; exit 1; fi",
            &[],
        )],
    );
    let t = job.spec.root.dag.as_mut().and_then(|d| d.tasks.get_mut("flaky")).expect("task");
    t.retry_policy = serde_json::from_value(json!({"maxRetryCount": 2, "backoffDuration": "0s"})).expect("policy");
    let (_dir, run) = run(&job, json!({}), 2);
    assert_eq!(run.record.state, RunState::Succeeded, "{:?}", run.record.error);
    assert_eq!(task(&run.record, "flaky").attempts, 2);
}

#[test]
fn cancellation_kills_running_tasks_and_marks_the_run_canceled() {
    let job = shell_pipeline(
        "long",
        &[("sleeper", "echo $$ > \"{{$.workspace_path}}/pid\"; sleep 30", &[]), ("later", "true", &["sleeper"])],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let run = rt.block_on(async {
        let r = runner(dir.path(), 2);
        let handle = tokio::spawn(async move { r.run(&job, &BTreeMap::new(), Arc::new(NoProgress), rx).await });
        // Wait until the task has started (it writes its pid), then cancel.
        let pid_file = loop {
            let found = std::fs::read_dir(dir.path().join(".kfops/runs"))
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.path().join("workspace/pid"));
            if let Some(p) = found.filter(|p| p.exists()) {
                break p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let _ = tx.send(true);
        let run = handle.await.expect("join").expect("run");
        (run, std::fs::read_to_string(pid_file).expect("pid"))
    });
    let (run, pid) = run;
    assert_eq!(run.record.state, RunState::Canceled);
    assert_eq!(task(&run.record, "sleeper").state, RunState::Canceled);
    assert_eq!(task(&run.record, "later").state, RunState::Canceled);
    assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "the task's process was killed");
}

#[test]
fn wrong_arguments_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let args: BTreeMap<String, Value> = serde_json::from_value(json!({"nmae": "x", "times": "2"})).expect("args");
    let err = rt
        .block_on(runner(dir.path(), 1).run(&reference("p1_linear_params.yaml"), &args, Arc::new(NoProgress), rx))
        .expect_err("bad args");
    let text = err.to_string();
    assert!(
        text.contains("unknown pipeline input `nmae`") && text.contains("input `times` expects NUMBER_INTEGER"),
        "{text}"
    );
    assert!(!dir.path().join(".kfops/runs").exists(), "no run was created");
}

#[test]
fn loops_honour_parallelism_limit_and_collect_typed_outputs() {
    let square = "sleep 0.3; echo $(( {{$.inputs.parameters['x']}} * {{$.inputs.parameters['x']}} )) > \"{{$.outputs.parameters['Output'].output_file}}\"";
    let spec = json!({
        "components": {
            "comp-for-loop-1": {
                "dag": {
                    "tasks": {"work": {"componentRef": {"name": "comp-work"}, "taskInfo": {"name": "work"},
                                       "inputs": {"parameters": {"x": {"componentInputParameter": "item"}}}}},
                    "outputs": {"parameters": {"work-Output": {"valueFromParameter": {"producerSubtask": "work", "outputParameterKey": "Output"}}}}
                },
                "inputDefinitions": {"parameters": {"item": {"parameterType": "NUMBER_INTEGER"}}},
                "outputDefinitions": {"parameters": {"work-Output": {"parameterType": "LIST"}}}
            },
            "comp-work": {"executorLabel": "exec-work",
                          "inputDefinitions": {"parameters": {"x": {"parameterType": "NUMBER_INTEGER"}}},
                          "outputDefinitions": {"parameters": {"Output": {"parameterType": "NUMBER_INTEGER"}}}},
            "comp-total": {"executorLabel": "exec-total",
                           "inputDefinitions": {"parameters": {"values": {"parameterType": "LIST"}}},
                           "outputDefinitions": {"parameters": {"Output": {"parameterType": "STRING"}}}}
        },
        "deploymentSpec": {"executors": {
            "exec-work": {"container": {"image": "alpine", "command": ["sh", "-c"], "args": [square]}},
            "exec-total": {"container": {"image": "alpine", "command": ["sh", "-c"],
                           "args": ["printf '%s' '{{$.inputs.parameters['values']}}' > \"{{$.outputs.parameters['Output'].output_file}}\""]}}
        }},
        "pipelineInfo": {"name": "loop"},
        "root": {
            "dag": {
                "tasks": {
                    "for-loop-1": {"componentRef": {"name": "comp-for-loop-1"}, "taskInfo": {"name": "for-loop-1"},
                                   "parameterIterator": {"itemInput": "item", "items": {"raw": "[1, 2, 3, 4]"}},
                                   "iteratorPolicy": {"parallelismLimit": 2}},
                    "total": {"componentRef": {"name": "comp-total"}, "taskInfo": {"name": "total"}, "dependentTasks": ["for-loop-1"],
                              "inputs": {"parameters": {"values": {"taskOutputParameter": {"producerTask": "for-loop-1", "outputParameterKey": "work-Output"}}}}}
                },
                "outputs": {"parameters": {"Output": {"valueFromParameter": {"producerSubtask": "total", "outputParameterKey": "Output"}}}}
            },
            "outputDefinitions": {"parameters": {"Output": {"parameterType": "STRING"}}}
        },
        "schemaVersion": "2.1.0"
    });
    let job = PipelineJob::from_json_str(&spec.to_string()).expect("fixture");
    let (_dir, run) = run(&job, json!({}), 8);
    let r = &run.record;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    // Fan-in keeps the integers as integers, in iteration order.
    assert_eq!(task(r, "for-loop-1").outputs.get("work-Output"), Some(&json!([1, 4, 9, 16])));
    assert_eq!(r.outputs.get("Output"), Some(&json!("[1,4,9,16]")));
    // parallelismLimit 2: at no moment do more than two iterations run.
    let intervals: Vec<(String, String)> =
        (0..4).map(|i| interval(task(r, &format!("for-loop-1/iteration-{i}/work")))).collect();
    assert_eq!(max_overlap(&intervals), 2, "{intervals:?}");
}

#[test]
fn exit_handlers_get_the_real_final_status() {
    let spec = json!({
        "components": {
            "comp-exit-handler-1": {"dag": {"tasks": {"work": {"componentRef": {"name": "comp-work"}, "taskInfo": {"name": "work"}}}}},
            "comp-work": {"executorLabel": "exec-work"},
            "comp-cleanup": {"executorLabel": "exec-cleanup",
                             "inputDefinitions": {"parameters": {"status": {"parameterType": "TASK_FINAL_STATUS"}}}}
        },
        "deploymentSpec": {"executors": {
            "exec-work": {"container": {"image": "alpine", "command": ["sh", "-c"], "args": ["echo 'out of memory' >&2; exit 137"]}},
            "exec-cleanup": {"container": {"image": "alpine", "command": ["sh", "-c"], "args": ["printf '%s' '{{$.inputs.parameters['status']}}'"]}}
        }},
        "pipelineInfo": {"name": "exit-handler"},
        "root": {"dag": {"tasks": {
            "exit-handler-1": {"componentRef": {"name": "comp-exit-handler-1"}, "taskInfo": {"name": "main-body"}},
            "cleanup": {"componentRef": {"name": "comp-cleanup"}, "taskInfo": {"name": "cleanup"}, "dependentTasks": ["exit-handler-1"],
                        "triggerPolicy": {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"},
                        "inputs": {"parameters": {"status": {"taskFinalStatus": {"producerTask": "exit-handler-1"}}}}}
        }}},
        "schemaVersion": "2.1.0"
    });
    let job = PipelineJob::from_json_str(&spec.to_string()).expect("fixture");
    let (_dir, run) = run(&job, json!({}), 2);
    let r = &run.record;
    assert_eq!(r.state, RunState::Failed, "the guarded task failed, so the run failed");
    assert_eq!(task(r, "cleanup").state, RunState::Succeeded, "the exit handler still ran");
    let status: Value = serde_json::from_str(log(&run, "cleanup").trim()).expect("status JSON");
    assert_eq!(status["state"], json!("FAILED"));
    assert_eq!(status["pipelineTaskName"], json!("exit-handler-1"));
    assert!(status["error"]["message"].as_str().is_some_and(|m| m.contains("out of memory")), "{status}");
    assert!(status["pipelineJobResourceName"].as_str().is_some_and(|n| n.starts_with("exit-handler-")), "{status}");
}

#[test]
fn p2_control_flow_succeeds_where_kfp_local_fails() {
    // kfp.local 2.17.3 fails this pipeline: `dsl.Collected` ints arrive as floats.
    let (_dir, run) = run(&reference("p2_control_flow.yaml"), json!({"seed": 1}), 4);
    let r = &run.record;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    let base = "exit-handler-1/condition-branches-2";
    assert_eq!(
        task(r, &format!("{base}/for-loop-5")).outputs.get("pipelinechannel--square-Output"),
        Some(&json!([1, 4, 9, 16]))
    );
    assert_eq!(task(r, &format!("{base}/total")).outputs.get("Output"), Some(&json!(30)));
    assert!(log(&run, &format!("{base}/total")).contains("values [1, 4, 9, 16]"), "integers stay integers");
    // 30 > threshold 10: the big-total branch ran.
    assert_eq!(task(r, &format!("{base}/condition-6")).state, RunState::Succeeded);
    // Exactly one of the heads/tails branches ran.
    let branches = [task(r, &format!("{base}/condition-3")).state, task(r, &format!("{base}/condition-4")).state];
    assert_eq!(branches.iter().filter(|s| **s == RunState::Succeeded).count(), 1, "{branches:?}");
    assert_eq!(branches.iter().filter(|s| **s == RunState::Skipped).count(), 1, "{branches:?}");
    // The exit handler saw the guarded group's real state.
    assert!(log(&run, "cleanup").contains("exit handler: state = SUCCEEDED"), "{}", log(&run, "cleanup"));
    // Loop iterations ran two at a time (parallelism=2) and the four 1 s squares overlapped.
    let squares: Vec<(String, String)> =
        (0..4).map(|i| interval(task(r, &format!("{base}/for-loop-5/iteration-{i}/square")))).collect();
    assert_eq!(max_overlap(&squares), 2, "two iterations at a time: {squares:?}");
}

/// The largest number of intervals that are running at the same moment.
fn max_overlap(intervals: &[(String, String)]) -> usize {
    intervals
        .iter()
        .map(|(start, _)| intervals.iter().filter(|(s, e)| s <= start && start < e).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn job_placeholders_artifact_metadata_and_local_importers() {
    let facts = "printf '%s|%s|%s|%s|%s|%s|%s|%s|%s' '{{$.pipeline_job_name}}' '{{$.pipeline_job_resource_name}}' \
                 '{{$.pipeline_job_uuid}}' '{{$.pipeline_task_name}}' '{{$.pipeline_task_uuid}}' '{{$.pipeline_root}}' \
                 '{{$.pipeline_job_create_time_utc}}' '{{$.pipeline_job_schedule_time_utc}}' '{{$.workspace_path}}'";
    // A producer that reports artifact metadata as a float, the way Python writes `5.0`.
    let produce = "cp \"{{$.inputs.artifacts['data'].path}}\" \"{{$.outputs.artifacts['copy'].path}}\"; \
                   printf '{\"artifacts\": {\"copy\": {\"artifacts\": [{\"name\": \"copy\", \"metadata\": {\"rows\": 5.0, \"tags\": [1.0, 2.5]}}]}}}' \
                   > \"{{$.outputs.output_file}}\"";
    let consume = "cat \"{{$.inputs.artifacts['copy'].path}}\"; echo; echo '{{$.inputs.artifacts['copy'].metadata}}'";
    let spec = json!({
        "components": {
            "comp-facts": {"executorLabel": "exec-facts"},
            "comp-importer": {"executorLabel": "exec-importer", "inputDefinitions": {"parameters": {"uri": {"parameterType": "STRING"}}},
                              "outputDefinitions": {"artifacts": {"artifact": {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}}}},
            "comp-produce": {"executorLabel": "exec-produce",
                             "inputDefinitions": {"artifacts": {"data": {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}}},
                             "outputDefinitions": {"artifacts": {"copy": {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}}}},
            "comp-consume": {"executorLabel": "exec-consume",
                             "inputDefinitions": {"artifacts": {"copy": {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}}}}
        },
        "deploymentSpec": {"executors": {
            "exec-facts": {"container": {"image": "alpine", "command": ["sh", "-c"], "args": [facts]}},
            "exec-importer": {"importer": {"artifactUri": {"runtimeParameter": "uri"}, "typeSchema": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}},
            "exec-produce": {"container": {"image": "alpine", "command": ["sh", "-c"], "args": [produce]}},
            "exec-consume": {"container": {"image": "alpine", "command": ["sh", "-c"], "args": [consume]}}
        }},
        "pipelineInfo": {"name": "facts"},
        "root": {"dag": {"tasks": {
            "facts": {"componentRef": {"name": "comp-facts"}, "taskInfo": {"name": "facts"}},
            "importer": {"componentRef": {"name": "comp-importer"}, "taskInfo": {"name": "importer"},
                         "inputs": {"parameters": {"uri": {"runtimeValue": {"constant": "data/lines.txt"}}}}},
            "produce": {"componentRef": {"name": "comp-produce"}, "taskInfo": {"name": "produce"},
                        "inputs": {"artifacts": {"data": {"taskOutputArtifact": {"producerTask": "importer", "outputArtifactKey": "artifact"}}}}},
            "consume": {"componentRef": {"name": "comp-consume"}, "taskInfo": {"name": "consume"},
                        "inputs": {"artifacts": {"copy": {"taskOutputArtifact": {"producerTask": "produce", "outputArtifactKey": "copy"}}}}}
        }}},
        "schemaVersion": "2.1.0"
    });
    let job = PipelineJob::from_json_str(&spec.to_string()).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/lines.txt"), "a\nb\n").expect("write");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let run = rt.block_on(runner(dir.path(), 2).run(&job, &BTreeMap::new(), Arc::new(NoProgress), rx)).expect("runs");
    let r = &run.record;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);

    let facts = log(&run, "facts");
    let parts: Vec<&str> = facts.split('|').collect();
    assert_eq!(parts.len(), 9, "{facts}");
    assert!(parts.iter().all(|p| !p.is_empty()), "every placeholder resolves: {facts}");
    assert_eq!(parts[0], r.display_name);
    assert_eq!(parts[1], format!("facts-{}", &r.id[..8]));
    assert_eq!(parts[2], r.id);
    assert_eq!(parts[3], "facts");
    assert_eq!(parts[4].len(), 36, "task uuid");
    assert_eq!(parts[6], r.created_at);
    assert!(Path::new(parts[8]).is_dir(), "workspace exists");

    // The local file was imported, copied, and its metadata reached the consumer with integers kept.
    let consumed = log(&run, "consume");
    assert!(consumed.starts_with("a\nb\n"), "{consumed}");
    assert!(consumed.contains(r#"{"rows":5,"tags":[1,2.5]}"#), "{consumed}");
    let input: Value =
        serde_json::from_slice(&std::fs::read(run.dir.join("tasks/consume/executor_input.json")).expect("input"))
            .expect("json");
    assert_eq!(
        input.pointer("/inputs/artifacts/copy/artifacts/0/metadata"),
        Some(&json!({"rows": 5, "tags": [1, 2.5]}))
    );
}

#[test]
fn loops_over_a_task_output_list_of_dicts_with_field_selectors() {
    let item = "pipelinechannel--make-Output-loop-item";
    let spec = json!({
        "components": {
            "comp-make": {"executorLabel": "exec-make", "outputDefinitions": {"parameters": {"Output": {"parameterType": "LIST"}}}},
            "comp-for-loop-1": {
                "dag": {
                    "tasks": {"use": {"componentRef": {"name": "comp-use"}, "taskInfo": {"name": "use"}, "inputs": {"parameters": {
                        "a": {"componentInputParameter": item, "parameterExpressionSelector": "parseJson(string_value)[\"a\"]"},
                        "b": {"componentInputParameter": item, "parameterExpressionSelector": "parseJson(string_value)[\"b\"]"}
                    }}}},
                    "outputs": {"parameters": {"pipelinechannel--use-Output": {"valueFromParameter": {"producerSubtask": "use", "outputParameterKey": "Output"}}}}
                },
                "inputDefinitions": {"parameters": {"pipelinechannel--make-Output": {"parameterType": "LIST"}, item: {"parameterType": "STRUCT"}}},
                "outputDefinitions": {"parameters": {"pipelinechannel--use-Output": {"parameterType": "LIST"}}}
            },
            "comp-use": {"executorLabel": "exec-use",
                         "inputDefinitions": {"parameters": {"a": {"parameterType": "NUMBER_INTEGER"}, "b": {"parameterType": "STRING"}}},
                         "outputDefinitions": {"parameters": {"Output": {"parameterType": "STRING"}}}}
        },
        "deploymentSpec": {"executors": {
            "exec-make": {"container": {"image": "alpine", "command": ["sh", "-c"],
                          "args": ["printf '[{\"a\": 1, \"b\": \"x\"}, {\"a\": 2, \"b\": \"y\"}]' > \"{{$.outputs.parameters['Output'].output_file}}\""]}},
            "exec-use": {"container": {"image": "alpine", "command": ["sh", "-c"],
                         "args": ["printf '%s-%s' '{{$.inputs.parameters['a']}}' '{{$.inputs.parameters['b']}}' > \"{{$.outputs.parameters['Output'].output_file}}\""]}}
        }},
        "pipelineInfo": {"name": "dict-loop"},
        "root": {"dag": {"tasks": {
            "make": {"componentRef": {"name": "comp-make"}, "taskInfo": {"name": "make"}},
            "for-loop-1": {"componentRef": {"name": "comp-for-loop-1"}, "taskInfo": {"name": "for-loop-1"}, "dependentTasks": ["make"],
                           "inputs": {"parameters": {"pipelinechannel--make-Output": {"taskOutputParameter": {"producerTask": "make", "outputParameterKey": "Output"}}}},
                           "parameterIterator": {"itemInput": item, "items": {"inputParameter": "pipelinechannel--make-Output"}}}
        }}},
        "schemaVersion": "2.1.0"
    });
    let job = PipelineJob::from_json_str(&spec.to_string()).expect("fixture");
    let (_dir, run) = run(&job, json!({}), 2);
    let r = &run.record;
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    assert_eq!(task(r, "for-loop-1").outputs.get("pipelinechannel--use-Output"), Some(&json!(["1-x", "2-y"])));
}
