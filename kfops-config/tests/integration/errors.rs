//! The error messages users see for bad configuration files (snapshots).

use crate::{load_with, project};

/// Each case: a name and a `kfops.yaml`. The project also has `pipeline.py`,
/// `sample.json` and `images/trainer/Dockerfile`, so only the configuration is wrong.
const CASES: &[(&str, &str)] = &[
    ("unknown_top_level_key", "pipelin:\n  name: demo\n  pipeline_path: pipeline.py\n"),
    ("unknown_nested_key", "pipeline:\n  name: demo\n  pipline_path: pipeline.py\n"),
    ("wrong_type_string", "pipeline:\n  name: [a, b]\n  pipeline_path: pipeline.py\n"),
    (
        "wrong_type_bool",
        "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nimage_builder:\n  container_registry_uri: r.example.com/t\n  insecure: \"yes\"\n",
    ),
    ("number_for_string", "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\n  namespace: 42\n"),
    ("missing_required_key", "pipeline:\n  name: demo\n"),
    ("missing_pipeline_section", "repository:\n  owner: acme\n  name: churn\n"),
    ("empty_value", "pipeline:\n  name:\n  pipeline_path: pipeline.py\n"),
    (
        "every_problem_at_once",
        "repository:\n  owner: acme\n  nme: churn\npipeline:\n  name: 7\n  pipeline_path: ../outside.py\n  pipeline_args: [1, 2]\ndeployment:\n  inference_service_name: churn\n  production: {}\nimage_builder:\n  container_registry_uri: r.example.com/t\n  images:\n    - name: trainer\n      dockerfile_folder: images/trainer\nextra: true\n",
    ),
    ("yaml_syntax_error", "pipeline:\n  name: demo\n   pipeline_path: pipeline.py\n"),
    ("yaml_duplicate_key", "pipeline:\n  name: demo\n  name: other\n  pipeline_path: pipeline.py\n"),
    ("empty_file", ""),
    ("top_level_list", "- pipeline\n- name\n"),
    ("two_documents", "pipeline:\n  name: a\n  pipeline_path: pipeline.py\n---\npipeline:\n  name: b\n"),
    ("yaml_tag", "pipeline:\n  name: !env NAME\n  pipeline_path: pipeline.py\n"),
    ("enum_typo", "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\n  pipeline_execution_mode: V2_COMPATIBL\n"),
    ("path_outside_repository", "pipeline:\n  name: demo\n  pipeline_path: ../../etc/passwd\n"),
    ("absolute_path", "pipeline:\n  name: demo\n  pipeline_path: /etc/passwd\n"),
    ("missing_pipeline_file", "pipeline:\n  name: demo\n  pipeline_path: pipelines/train.py\n"),
    ("folder_is_not_a_file", "pipeline:\n  name: demo\n  pipeline_path: images\n"),
    (
        "image_paths",
        "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nimage_builder:\n  container_registry_uri: r.example.com/t\n  images:\n    - name: trainer\n      dockerfile_folder_path: images/trainer\n      other_folders_path: [../shared, src]\n    - name: trainer\n      dockerfile_folder_path: images/missing\n",
    ),
    (
        "url_without_scheme",
        "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nkubeflow:\n  url: kubeflow.example.com\n",
    ),
    (
        "two_credentials",
        "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nkubeflow:\n  auth:\n    token_env: KF_TOKEN\n    cookie_file: /tmp/cookie\n",
    ),
    ("empty_name", "pipeline:\n  name: \"\"\n  pipeline_path: pipeline.py\n"),
    (
        "kaniko_without_settings",
        "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nimage_builder:\n  container_registry_uri: r.example.com/t\n  builder: kanikoo\n",
    ),
    (
        "kaniko_section_missing",
        "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\nimage_builder:\n  container_registry_uri: r.example.com/t\n  builder: kaniko\n",
    ),
    (
        "deployment_missing_production",
        "pipeline:\n  name: demo\n  pipeline_path: pipeline.py\ndeployment:\n  inference_service_name: churn\n  pre_deployment_test_sample_input_path: sample.json\n  stagin:\n    namespace: staging\n",
    ),
];

#[test]
fn bad_configurations_are_explained() {
    for (name, config) in CASES {
        let dir = project(&[
            ("kfops.yaml", config),
            ("pipeline.py", "# pipeline\n"),
            ("sample.json", "{}"),
            ("images/trainer/Dockerfile", "FROM scratch\n"),
            ("src/x.py", ""),
        ]);
        let err = match load_with(dir.path(), |l| l) {
            Ok(_) => panic!("case {name}: expected an error"),
            Err(e) => e,
        };
        insta::assert_snapshot!(*name, err);
    }
}

#[test]
fn symlinks_out_of_the_repository_are_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("p.py"), "").expect("write");
    let dir = project(&[("kfops.yaml", "pipeline:\n  name: demo\n  pipeline_path: link.py\n")]);
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("p.py"), dir.path().join("link.py")).expect("symlink");
    let err = load_with(dir.path(), |l| l).expect_err("symlink escapes");
    assert!(err.contains("points outside the repository through a symbolic link"), "{err}");
    assert!(err.contains("kfops.yaml:3:18"), "{err}");
}

#[test]
fn missing_configuration_file_says_where_it_looked() {
    let dir = project(&[("pipeline.py", "")]);
    let err = load_with(dir.path(), |l| l).expect_err("no config");
    insta::assert_snapshot!(err, @"no kfops configuration in `<project>`: looked for `kfops.yaml` and `config_files/config.yaml`; create `kfops.yaml` there (see `kfc config schema` for every key) or point at one with --config");
}
