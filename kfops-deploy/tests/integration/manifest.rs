//! The InferenceService manifest and its validation against the KServe CRD.

use std::collections::BTreeMap;

use kfops_deploy::DeployError;
use kfops_deploy::kserve::{DeploymentMode, KserveSettings};
use kfops_deploy::manifest::{self, build, validate, validate_against};
use kfops_deploy::storage::TemplateVars;
use serde_json::{Value, json};

fn vars() -> TemplateVars {
    TemplateVars {
        run_id: Some("run-42".into()),
        version_id: Some("v-7".into()),
        sha: Some("0123abcd".into()),
        pr: Some(17),
    }
}

fn settings(mode: DeploymentMode) -> KserveSettings {
    let mut s = KserveSettings::new("churn-model", "staging", "s3://trained-models/run-42/", "sklearn");
    s.mode = mode;
    s
}

fn full_settings(mode: DeploymentMode) -> KserveSettings {
    let mut s = settings(mode);
    s.runtime = Some("kserve-sklearnserver".into());
    s.protocol_version = Some("v2".into());
    s.service_account = Some("models-s3".into());
    s.resources = Some(json!({"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}));
    s.labels = BTreeMap::from([("kfops.dev/run-id".to_owned(), "run-42".to_owned())]);
    s
}

const TEMPLATE: &str = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {service_name}
  namespace: {namespace}
  labels:
    kfops.dev/pr: "{pr}"
    kfops.dev/sha: "{sha}"
    kfops.dev/version: "{version_id}"
spec:
  predictor:
    minReplicas: 1
    model:
      modelFormat: {{name: sklearn}}
      storageUri: {storage_uri}
      env:
        - name: RUN_ID
          value: "{run_id}"
"#;

#[test]
fn default_manifests_have_the_model_and_validate_in_both_modes() {
    let m = build(&full_settings(DeploymentMode::Knative), &vars()).expect("builds");
    assert_eq!(
        m,
        json!({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": "churn-model", "namespace": "staging",
                "labels": {"kfops.dev/run-id": "run-42"},
                "annotations": {"serving.kserve.io/deploymentMode": "Knative", "serving.kserve.io/enable-tag-routing": "true"}
            },
            "spec": {"predictor": {
                "serviceAccountName": "models-s3",
                "model": {
                    "modelFormat": {"name": "sklearn"}, "runtime": "kserve-sklearnserver", "protocolVersion": "v2",
                    "storageUri": "s3://trained-models/run-42/",
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}
                }
            }}
        })
    );
    validate(&m).expect("full Knative manifest validates");

    let m = build(&full_settings(DeploymentMode::Standard), &vars()).expect("builds");
    assert_eq!(m["metadata"]["annotations"], json!({"serving.kserve.io/deploymentMode": "Standard"}));
    validate(&m).expect("full Standard manifest validates");

    for mode in [DeploymentMode::Knative, DeploymentMode::Standard] {
        let m = build(&settings(mode), &vars()).expect("builds");
        assert!(m["metadata"].get("labels").is_none());
        assert_eq!(
            m["spec"]["predictor"],
            json!({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://trained-models/run-42/"}})
        );
        validate(&m).expect("minimal manifest validates");
        let mut canary = m.clone();
        canary["spec"]["predictor"]["canaryTrafficPercent"] = json!(0);
        validate(&canary).expect("canary manifest validates");
    }
}

#[test]
fn template_manifests_are_rendered_completed_and_validated() {
    for mode in [DeploymentMode::Knative, DeploymentMode::Standard] {
        let mut s = full_settings(mode);
        s.manifest_template = Some(TEMPLATE.into());
        let m = build(&s, &vars()).expect("builds");
        assert_eq!(m["metadata"]["name"], "churn-model");
        assert_eq!(
            m["metadata"]["labels"],
            json!({"kfops.dev/pr": "17", "kfops.dev/sha": "0123abcd", "kfops.dev/version": "v-7", "kfops.dev/run-id": "run-42"})
        );
        assert_eq!(m["metadata"]["annotations"]["serving.kserve.io/deploymentMode"], mode.as_str());
        assert_eq!(
            m["metadata"]["annotations"].get("serving.kserve.io/enable-tag-routing").is_some(),
            mode == DeploymentMode::Knative
        );
        assert_eq!(m["spec"]["predictor"]["model"]["modelFormat"], json!({"name": "sklearn"}));
        assert_eq!(m["spec"]["predictor"]["model"]["storageUri"], "s3://trained-models/run-42/");
        assert_eq!(m["spec"]["predictor"]["model"]["env"][0]["value"], "run-42");
        validate(&m).expect("template manifest validates");
    }

    // A legacy mode name in the template is accepted and normalised.
    let mut s = settings(DeploymentMode::Knative);
    s.manifest_template = Some(TEMPLATE.replace(
        "  namespace: {namespace}\n",
        "  namespace: {namespace}\n  annotations:\n    serving.kserve.io/deploymentMode: Serverless\n",
    ));
    let m = build(&s, &vars()).expect("builds");
    assert_eq!(m["metadata"]["annotations"]["serving.kserve.io/deploymentMode"], "Knative");
}

fn template_error(template: &str, mode: DeploymentMode, vars: TemplateVars) -> String {
    let mut s = settings(mode);
    s.manifest_template = Some(template.into());
    build(&s, &vars).expect_err(template).to_string()
}

#[test]
fn bad_templates_are_explained() {
    let err = template_error(&TEMPLATE.replace("{run_id}", "{runid}"), DeploymentMode::Knative, vars());
    assert!(err.contains("unknown variable `{runid}`") && err.contains("did you mean `{run_id}`"), "{err}");
    assert!(err.contains("{storage_uri}, {service_name}, {namespace}"), "{err}");

    let err = template_error(TEMPLATE, DeploymentMode::Knative, TemplateVars { pr: None, ..vars() });
    assert!(err.contains("uses `{pr}`") && err.contains("not requested from a pull request"), "{err}");

    let err = template_error(&TEMPLATE.replace("name: {service_name}", "name: other"), DeploymentMode::Knative, vars());
    assert!(err.contains("`metadata.name` is \"other\", but it must be `churn-model`"), "{err}");

    let conflicting = TEMPLATE.replace(
        "  namespace: {namespace}\n",
        "  namespace: {namespace}\n  annotations:\n    serving.kserve.io/deploymentMode: RawDeployment\n",
    );
    let err = template_error(&conflicting, DeploymentMode::Knative, vars());
    assert!(err.contains("deploymentMode: \"RawDeployment\"") && err.contains("configured for Knative mode"), "{err}");

    let err = template_error(
        &TEMPLATE.replace("minReplicas: 1", "canaryTrafficPercent: 10"),
        DeploymentMode::Knative,
        vars(),
    );
    assert!(err.contains("kfops controls traffic"), "{err}");

    let err =
        template_error(&TEMPLATE.replace("{{name: sklearn}}", "{{name: sklearn"), DeploymentMode::Knative, vars());
    assert!(err.contains("not valid YAML"), "{err}");

    let mut s = settings(DeploymentMode::Knative);
    s.storage_uri = "ftp://models/run-42/".into();
    let err = build(&s, &vars()).expect_err("scheme").to_string();
    assert!(
        err.starts_with(
            "the storage URI `ftp://models/run-42/` has a scheme KServe cannot download from; supported: gs://, s3://"
        ),
        "{err}"
    );

    // A value can never inject YAML.
    let mut s = settings(DeploymentMode::Knative);
    s.storage_uri = "s3://m/x\n    runtime: evil".into();
    s.manifest_template = Some(TEMPLATE.into());
    let err = build(&s, &vars()).expect_err("unsafe");
    assert!(matches!(err, DeployError::Template(_)), "{err}");
    assert!(err.to_string().contains("`{storage_uri}` contains characters that are not allowed"), "{err}");
}

fn errors(m: &Value) -> Vec<String> {
    validate(m).expect_err("must be rejected")
}

#[test]
fn broken_manifests_are_rejected_with_their_json_path() {
    let good = build(&full_settings(DeploymentMode::Knative), &vars()).expect("builds");

    let mut m = good.clone();
    m["spec"]["predictor"]["model"]["storageURI"] = json!("s3://typo/");
    let e = errors(&m);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("spec.predictor.model.storageURI: unknown field (allowed: "), "{e:?}");
    assert!(e[0].contains("storageUri"), "{e:?}");

    let mut m = good.clone();
    m["spec"]["predictor"]["canaryTrafficPercent"] = json!("10");
    assert_eq!(errors(&m), vec!["spec.predictor.canaryTrafficPercent: must be integer, got string \"10\"".to_owned()]);

    let mut m = good.clone();
    m["spec"] = json!({});
    assert_eq!(errors(&m), vec!["spec.predictor: required field is missing".to_owned()]);

    let mut m = good.clone();
    m["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = json!(true);
    assert_eq!(
        errors(&m),
        vec!["spec.predictor.model.resources.limits.cpu: must be an integer or a string, got boolean".to_owned()]
    );

    let mut m = good.clone();
    m["spec"]["predictor"]["minReplicas"] = json!(1_i64 << 40);
    let e = errors(&m);
    assert!(e[0].starts_with("spec.predictor.minReplicas: 1099511627776 is out of range"), "{e:?}");

    let mut m = good;
    m["metadata"]["labels"]["kfops.dev/pr"] = json!(17);
    assert_eq!(errors(&m), vec!["metadata.labels.kfops.dev/pr: must be a string, got integer".to_owned()]);
}

#[test]
fn kserve_samples_validate() {
    let dir = manifest::crd_path().parent().expect("dir").join("samples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("samples dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document).expect("yaml");
            if value["kind"] != "InferenceService" {
                continue;
            }
            if let Err(e) = validate(&value) {
                panic!("{}: {e:?}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} samples");
}

#[test]
fn the_validator_knows_its_schema_subset() {
    let schema = json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {"type": "object", "properties": {
                "mode": {"type": "string", "enum": ["a", "b"]},
                "count": {"type": "integer", "format": "int32", "minimum": 0},
                "note": {"type": "string", "nullable": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}
            }}
        }
    });
    let ok = json!({"metadata": {"name": "x"}, "spec": {"mode": "a", "count": 3, "note": null, "free": {"any": [1]},
                    "env": {"A": "1"}, "items": [{"name": "n"}]}});
    validate_against(&schema, &ok).expect("valid");
    let bad = json!({"metadata": {"name": "x"}, "spec": {"mode": "c", "count": -1, "env": {"A": 1}, "items": [{}],
                     "extra": 1}});
    assert_eq!(
        validate_against(&schema, &bad).expect_err("invalid"),
        vec![
            "spec.mode: \"c\" is not one of \"a\", \"b\"".to_owned(),
            "spec.count: -1 is out of range 0..=2147483647".to_owned(),
            "spec.env.A: must be string, got integer 1".to_owned(),
            "spec.items[0].name: required field is missing".to_owned(),
            "spec.extra: unknown field (allowed: count, env, free, items, mode, note)".to_owned(),
        ]
    );
    assert_eq!(
        validate_against(&schema, &json!({"spec": {}})).expect_err("no metadata"),
        vec!["metadata: required object missing".to_owned()]
    );
}

#[test]
fn build_refuses_a_template_the_crd_rejects_with_every_path() {
    let mut s = settings(DeploymentMode::Knative);
    s.manifest_template = Some(
        TEMPLATE
            .replace("      storageUri: {storage_uri}\n", "      storageUri: {storage_uri}\n      storageURI: typo\n"),
    );
    s.manifest_template = s.manifest_template.map(|t| t.replace("minReplicas: 1", "minReplicas: many"));
    let err = build(&s, &vars()).expect_err("the CRD rejects it");
    let DeployError::Invalid { errors } = &err else { panic!("expected Invalid, got {err:?}") };
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("spec.predictor.model.storageURI: unknown field")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("spec.predictor.minReplicas: must be integer")), "{errors:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("the manifest does not match the InferenceService CRD: spec."), "{msg}");
    assert!(msg.contains("spec.predictor.model.storageURI") && msg.contains("spec.predictor.minReplicas"), "{msg}");
}

#[test]
fn service_name_and_namespace_must_be_dns_labels() {
    let long = "m".repeat(64);
    for (name, ns, says) in [
        ("Churn", "staging", "the service name `Churn` is not a valid Kubernetes name: it contains `C`"),
        ("churn_model", "staging", "the service name `churn_model` is not a valid Kubernetes name: it contains `_`"),
        ("-churn", "staging", "the service name `-churn` is not a valid Kubernetes name: it starts or ends with `-`"),
        ("churn", "staging-", "the namespace `staging-` is not a valid Kubernetes name: it starts or ends with `-`"),
        ("churn", "", "the namespace `` is not a valid Kubernetes name: it is empty"),
        (long.as_str(), "staging", "is not a valid Kubernetes name: it is 64 characters long"),
    ] {
        let s = KserveSettings::new(name, ns, "s3://trained-models/run-42/", "sklearn");
        let err = build(&s, &vars()).expect_err(name);
        assert!(matches!(err, DeployError::Manifest(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(says) && msg.contains("a DNS-1123 label"), "{msg}");
    }
    let ok = KserveSettings::new("m".repeat(63), "a-1", "s3://trained-models/run-42/", "sklearn");
    assert!(build(&ok, &vars()).is_ok());
    assert_eq!(manifest::dns_label("0-a"), Ok(()));
}
