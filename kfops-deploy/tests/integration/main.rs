//! Integration tests of kfops-deploy.

mod check;
mod kserve;
mod manifest;

use kfops_deploy::TemplateError;
use kfops_deploy::storage::{DEFAULT_STORAGE_URI, StorageUriTemplate, TemplateVars};

fn vars() -> TemplateVars {
    TemplateVars {
        run_id: Some("6f1c2a9e-1111".into()),
        version_id: Some("v-42".into()),
        sha: Some("0123abcd".into()),
        pr: Some(17),
    }
}

#[test]
fn default_template_matches_kfops_storage_layout() {
    let t = StorageUriTemplate::parse(DEFAULT_STORAGE_URI).expect("parses");
    assert_eq!(t, StorageUriTemplate::default());
    assert_eq!(t.render(&vars()).expect("renders"), "s3://trained-models/6f1c2a9e-1111/");
    assert_eq!(t.variables(), vec!["run_id"]);
}

#[test]
fn all_variables_and_literal_braces() {
    let t = StorageUriTemplate::parse("gs://m/{{pr}}/{pr}/{sha}/{version_id}/{run_id}/{run_id}").expect("parses");
    assert_eq!(t.render(&vars()).expect("renders"), "gs://m/{pr}/17/0123abcd/v-42/6f1c2a9e-1111/6f1c2a9e-1111");
    assert_eq!(t.variables(), vec!["pr", "sha", "version_id", "run_id"]);
}

#[test]
fn bad_templates_and_values_are_explained() {
    let err = StorageUriTemplate::parse("s3://m/{runid}/").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown variable `{runid}` in `s3://m/{runid}/` (did you mean `{run_id}`?); known variables: {run_id}, {version_id}, {sha}, {pr}"
    );
    assert!(matches!(StorageUriTemplate::parse("s3://m/{run_id"), Err(TemplateError::Unbalanced { position: 7, .. })));
    assert!(matches!(StorageUriTemplate::parse("s3://m/run_id}"), Err(TemplateError::Unbalanced { position: 13, .. })));

    let t = StorageUriTemplate::parse("s3://m/{pr}/{run_id}").expect("parses");
    let err = t.render(&TemplateVars { pr: None, ..vars() }).expect_err("missing pr");
    assert_eq!(
        err.to_string(),
        "`s3://m/{pr}/{run_id}` uses `{pr}`, which is not known for this deploy (the deploy was not requested from a pull request)"
    );
    for evil in ["../other-bucket", "a/b", "x?y=1", "..", "", "ü"] {
        let err = t.render(&TemplateVars { run_id: Some(evil.into()), ..vars() }).expect_err(evil);
        assert!(matches!(err, TemplateError::UnsafeValue { .. }), "{evil}: {err}");
    }
}
