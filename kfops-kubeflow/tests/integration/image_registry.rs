//! The registry probe against a test registry that follows the OCI distribution spec,
//! anonymous and with the token-auth challenge.

use kfops_kubeflow::RegistryError;
use kfops_kubeflow::image::pin::ImageRef;
use kfops_kubeflow::image::registry::{RegistryClient, RegistryCredentials};
use kfops_kubeflow::image::testregistry::{RegistryAuth, TestRegistry};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn anonymous_registry_hits_and_misses() {
    let registry = TestRegistry::start(RegistryAuth::None).expect("registry");
    registry.add_manifest("team/trainer", "ctx-0123");
    let client = RegistryClient::new(true, None).expect("client");
    let hit = ImageRef::parse(&format!("{}/team/trainer:ctx-0123", registry.host()));
    let miss = ImageRef::parse(&format!("{}/team/trainer:ctx-9999", registry.host()));
    let rt = rt();
    assert_eq!(rt.block_on(client.manifest_exists(&hit)), Ok(true));
    assert_eq!(rt.block_on(client.manifest_exists(&miss)), Ok(false));
    assert_eq!(
        registry.requests(),
        ["HEAD /v2/team/trainer/manifests/ctx-0123", "HEAD /v2/team/trainer/manifests/ctx-9999"]
    );
}

#[test]
fn token_auth_challenge_is_answered_and_the_token_reused() {
    let registry =
        TestRegistry::start(RegistryAuth::Token { credentials: Some("robot:s3cret".into()) }).expect("registry");
    registry.add_manifest("team/trainer", "ctx-0123");
    let creds = RegistryCredentials { username: "robot".into(), password: "s3cret".into() };
    let client = RegistryClient::new(true, Some(creds)).expect("client");
    let hit = ImageRef::parse(&format!("{}/team/trainer:ctx-0123", registry.host()));
    let miss = ImageRef::parse(&format!("{}/team/trainer:ctx-9", registry.host()));
    let rt = rt();
    assert_eq!(rt.block_on(client.manifest_exists(&hit)), Ok(true));
    assert_eq!(rt.block_on(client.manifest_exists(&miss)), Ok(false));
    assert_eq!(
        registry.requests(),
        [
            "HEAD /v2/team/trainer/manifests/ctx-0123",
            "GET /token",
            "HEAD /v2/team/trainer/manifests/ctx-0123",
            "HEAD /v2/team/trainer/manifests/ctx-9",
        ],
        "401 → token → retry; the token is reused for the repository"
    );
    assert!(!format!("{client:?}").contains("s3cret"));
}

#[test]
fn wrong_or_missing_credentials_are_explained() {
    let registry =
        TestRegistry::start(RegistryAuth::Token { credentials: Some("robot:s3cret".into()) }).expect("registry");
    let image = ImageRef::parse(&format!("{}/team/trainer:ctx-1", registry.host()));
    let rt = rt();
    let anonymous = RegistryClient::new(true, None).expect("client");
    let err = rt.block_on(anonymous.manifest_exists(&image)).expect_err("no credentials");
    assert!(
        matches!(&err, RegistryError::Unauthorized { reason, .. } if reason.contains("answered HTTP 401")),
        "{err}"
    );
    let wrong =
        RegistryClient::new(true, Some(RegistryCredentials { username: "robot".into(), password: "nope".into() }))
            .expect("client");
    let err = rt.block_on(wrong.manifest_exists(&image)).expect_err("bad credentials");
    assert!(err.to_string().starts_with("the registry refused http://"), "{err}");
    // Nothing listens here: a transport error, not a panic.
    let closed = ImageRef::parse("127.0.0.1:9/team/trainer:x");
    assert!(matches!(rt.block_on(anonymous.manifest_exists(&closed)), Err(RegistryError::Transport { .. })));
}
