//! Precedence and merge behaviour of the configuration layers.

use kfops_config::{FlagValue, Origin};
use serde_json::json;

use crate::{MINIMAL, load_with, project};

const BASE: &str = "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\n  experiment_name: base-exp\n  pipeline_args:\n    lr: 0.5\n    epochs: 10\n    tags: [a]\n";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn later_layers_win_and_mappings_merge_deeply() {
    let dir = project(&[
        ("kfops.yaml", BASE),
        ("pipeline.py", ""),
        ("o1.yaml", "pipeline:\n  experiment_name: o1-exp\n  pipeline_args:\n    epochs: 20\n"),
        ("o2.yaml", "pipeline:\n  experiment_name: o2-exp\n  description: from o2\n"),
    ]);
    let loaded = load_with(dir.path(), |l| {
        l.override_file(dir.path().join("o1.yaml"))
            .override_file(dir.path().join("o2.yaml"))
            .env(env(&[("KFOPS_PIPELINE__DESCRIPTION", "from env"), ("KFOPS_PIPELINE__PIPELINE_ARGS__BATCH", "32")]))
            .set("pipeline.pipeline_args.lr=0.1")
            .set("pipeline.pipeline_args.tags=[x, y]")
    })
    .expect("valid");
    let p = &loaded.config.pipeline;
    assert_eq!(p.experiment_name, "o2-exp");
    assert_eq!(p.description.as_deref(), Some("from env"));
    assert_eq!(json!(p.pipeline_args), json!({"batch": 32, "epochs": 20, "lr": 0.1, "tags": ["x", "y"]}));
    // Provenance: each value knows its layer.
    assert!(
        matches!(loaded.origin("pipeline.experiment_name"), Origin::File { ref path, line: 2, column: 20, .. } if path.ends_with("o2.yaml"))
    );
    assert!(
        matches!(loaded.origin("pipeline.description"), Origin::Env { ref var } if var == "KFOPS_PIPELINE__DESCRIPTION")
    );
    assert!(
        matches!(loaded.origin("pipeline.pipeline_args.lr"), Origin::Set { ref flag } if flag == "--set pipeline.pipeline_args.lr=0.1")
    );
    assert!(
        matches!(loaded.origin("pipeline.pipeline_args.epochs"), Origin::File { ref path, .. } if path.ends_with("o1.yaml"))
    );
    assert!(
        matches!(loaded.origin("pipeline.name"), Origin::File { ref path, line: 2, column: 9, .. } if path.ends_with("kfops.yaml"))
    );
}

#[test]
fn set_values_are_yaml_scalars() {
    let dir = project(&[("kfops.yaml", MINIMAL), ("pipeline.py", "")]);
    let loaded = load_with(dir.path(), |l| {
        l.set("pipeline.pipeline_args.i=3")
            .set("pipeline.pipeline_args.f=0.25")
            .set("pipeline.pipeline_args.b=true")
            .set("pipeline.pipeline_args.s=\"3\"")
            .set("pipeline.pipeline_args.l=[a,b]")
            .set("pipeline.pipeline_args.m={k: v}")
            .set("pipeline.pipeline_args.e=")
            .set("pipeline.pipeline_args.eq=a=b")
            .set("pipeline.pipeline_args.n=null")
    })
    .expect("valid");
    assert_eq!(
        json!(loaded.config.pipeline.pipeline_args),
        json!({"b": true, "e": "", "eq": "a=b", "f": 0.25, "i": 3, "l": ["a", "b"], "m": {"k": "v"}, "n": null, "s": "3"})
    );
}

#[test]
fn kfops_01_style_set_keys_are_relative_to_the_pipeline_section() {
    let dir = project(&[("kfops.yaml", MINIMAL), ("pipeline.py", "")]);
    let loaded = load_with(dir.path(), |l| l.set("experiment_name=x").set("pipeline_args.p1=v1")).expect("valid");
    assert_eq!(loaded.config.pipeline.experiment_name, "x");
    assert_eq!(json!(loaded.config.pipeline.pipeline_args), json!({"p1": "v1"}));
}

#[test]
fn environment_and_flags_set_the_connection() {
    let dir = project(&[
        (
            "kfops.yaml",
            "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nkubeflow:\n  url: http://file\n  namespace: file-ns\n",
        ),
        ("pipeline.py", ""),
    ]);
    let loaded = load_with(dir.path(), |l| {
        l.env(env(&[
            ("KFOPS_KUBEFLOW__URL", "https://env.example.com"),
            ("KFOPS_KUBEFLOW__NAMESPACE", "env-ns"),
            ("KFOPS_PYTHON", "/usr/bin/python3"),
            ("HOME", "/root"),
        ]))
        .flag(FlagValue {
            flag: "--namespace".into(),
            key: "kubeflow.namespace".into(),
            value: "flag-ns".into(),
        })
    })
    .expect("valid");
    assert_eq!(loaded.config.kubeflow.url.as_deref(), Some("https://env.example.com"));
    assert_eq!(loaded.config.kubeflow.namespace.as_deref(), Some("flag-ns"));
    assert!(matches!(loaded.origin("kubeflow.namespace"), Origin::Flag { ref flag } if flag == "--namespace"));
}

#[test]
fn defaults_are_applied() {
    let dir = project(&[
        (
            "kfops.yaml",
            "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\n  pipeline_function_name: ''\nimage_builder:\n  container_registry_uri: r\n  minio:\n    context_files_bucket_name: ''\n",
        ),
        ("pipeline.py", ""),
    ]);
    let c = load_with(dir.path(), |l| l).expect("valid").config;
    assert_eq!(c.pipeline.experiment_name, "Default");
    assert_eq!(c.pipeline.pipeline_function_name, None);
    let ib = c.image_builder.expect("image builder");
    assert!(!ib.insecure);
    assert!(ib.images.is_empty());
    assert_eq!(ib.minio.expect("minio").context_files_bucket_name, "image-build-artifacts");
}

#[test]
fn legacy_location_is_found_and_kfops_yaml_wins() {
    let legacy = project(&[("config_files/config.yaml", MINIMAL), ("pipeline.py", "")]);
    let loaded = load_with(legacy.path(), |l| l).expect("legacy layout loads");
    assert!(loaded.file.ends_with("config_files/config.yaml"));
    assert!(loaded.warnings.is_empty());

    let both = project(&[("kfops.yaml", MINIMAL), ("config_files/config.yaml", "garbage: ["), ("pipeline.py", "")]);
    let loaded = load_with(both.path(), |l| l).expect("kfops.yaml wins");
    assert!(loaded.file.ends_with("kfops.yaml"));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("both `kfops.yaml` and `config_files/config.yaml` exist"));
}

#[test]
fn secrets_are_masked() {
    let dir = project(&[
        (
            "kfops.yaml",
            "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nkubeflow:\n  auth:\n    token: s3cr3t-token\n",
        ),
        ("pipeline.py", ""),
    ]);
    let loaded = load_with(dir.path(), |l| l).expect("valid");
    let shown = loaded.to_masked_json().to_string();
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("********"));
    assert!(!format!("{loaded:?}").contains("s3cr3t"));
    assert_eq!(loaded.config.kubeflow.auth.token.as_ref().map(|t| t.expose()), Some("s3cr3t-token"));
}

#[test]
fn override_errors_name_their_layer() {
    let dir = project(&[
        ("kfops.yaml", BASE),
        ("pipeline.py", ""),
        ("bad.yaml", "pipeline:\n  experiment_nam: x\ndeployment:\n  inference_service_name: y\n"),
    ]);
    let err = load_with(dir.path(), |l| {
        l.override_file(dir.path().join("bad.yaml"))
            .env(env(&[
                ("KFOPS_DEPLOYMENT__X", "1"),
                ("KFOPS_PIPELINE__NAME", "[unclosed"),
                ("KFOPS_PIPELINE____X", "1"),
            ]))
            .set("kubeflow.url=http://x")
            .set("image_builder.insecure=true")
            .set("pipeline.name")
            .set("pipeline..name=x")
            .set("pipeline=x")
    })
    .expect_err("invalid");
    insta::assert_snapshot!(crate::scrub(dir.path(), &err));
}

#[test]
fn type_errors_from_set_and_env_name_the_flag_or_variable() {
    let dir = project(&[("kfops.yaml", MINIMAL), ("pipeline.py", "")]);
    let err = load_with(dir.path(), |l| {
        l.set("pipeline.name=[1, 2]")
            .set("pipeline.pipeline_args=3")
            .env(env(&[("KFOPS_KUBEFLOW__URL", "ftp://x"), ("KFOPS_PIPELINE__DESCRIPTON", "typo")]))
    })
    .expect_err("invalid");
    insta::assert_snapshot!(err);
}
