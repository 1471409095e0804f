//! The S3 client against a real S3-compatible server: moto's `moto_server`
//! from the project venv (`KFOPS_PYTHON`'s folder, else `.venv`; `cargo xtask
//! test` installs it), with request authentication switched on so that
//! signatures are really checked.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kfops_kubeflow::image::s3::{S3Client, S3Config, S3Error, object_url};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// `moto_server` next to the project's Python; fails (never skips) when it is missing.
fn moto_server() -> PathBuf {
    let bin = match std::env::var_os("KFOPS_PYTHON").filter(|p| !p.is_empty()) {
        Some(python) => PathBuf::from(python).parent().expect("KFOPS_PYTHON has a folder").to_path_buf(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin"),
    };
    let server = bin.join("moto_server");
    assert!(
        server.exists(),
        "{} is missing: run `cargo xtask test` (installs moto[server] into the project venv)",
        server.display()
    );
    server
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running `moto_server`, killed when dropped.
pub(crate) struct Moto {
    _child: tokio::process::Child,
    pub(crate) endpoint: String,
}

/// Starts moto with authentication on after the first three actions, which
/// create an IAM user with an access key and an `s3:*` policy; returns the
/// server and that key pair.
pub(crate) async fn start_moto() -> (Moto, String, String) {
    let port = free_port();
    let child = tokio::process::Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if http.get(format!("{endpoint}/moto-api/")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "moto_server did not answer on {endpoint} within 30 s");
    let moto = Moto { _child: child, endpoint };

    // The IAM calls before authentication starts; the Authorization header only routes them to IAM.
    let iam = |body: String| {
        http.post(&moto.endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(format!("{body}&Version=2010-05-08"))
            .send()
    };
    let text = |r: reqwest::Response| async move {
        let status = r.status();
        let body = r.text().await.expect("IAM answer");
        assert!(status.is_success(), "IAM setup failed with {status}: {body}");
        body
    };
    text(iam("Action=CreateUser&UserName=kfops".into()).await.expect("CreateUser")).await;
    let key = text(iam("Action=CreateAccessKey&UserName=kfops".into()).await.expect("CreateAccessKey")).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    text(
        iam(format!("Action=PutUserPolicy&UserName=kfops&PolicyName=s3&PolicyDocument={}", form_encode(policy)))
            .await
            .expect("PutUserPolicy"),
    )
    .await;
    (moto, element(&key, "AccessKeyId"), element(&key, "SecretAccessKey"))
}

fn element(xml: &str, name: &str) -> String {
    let start = xml.find(&format!("<{name}>")).unwrap_or_else(|| panic!("no <{name}> in {xml}")) + name.len() + 2;
    let end = xml[start..].find(&format!("</{name}>")).expect("closing tag") + start;
    xml[start..end].to_owned()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn upload_fetch_delete_and_a_wrong_secret_against_moto() {
    rt().block_on(async {
        let (moto, access_key, secret_key) = start_moto().await;
        let client = S3Client::new(S3Config::new(&moto.endpoint, &access_key, secret_key.as_str())).expect("client");
        let bucket = "kfops-contexts";
        let key = "trainer/ctx-0123abcd.tar.gz";

        client.ensure_bucket(bucket).await.expect("creating the bucket");
        client.ensure_bucket(bucket).await.expect("the bucket exists already");

        let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        client.put_object(bucket, key, bytes.clone(), "application/gzip").await.expect("put");
        assert_eq!(client.get_object(bucket, key).await.expect("get"), bytes);
        assert_eq!(client.object_url(bucket, key), "s3://kfops-contexts/trainer/ctx-0123abcd.tar.gz");
        assert_eq!(object_url(bucket, key), client.object_url(bucket, key));

        client.delete_object(bucket, key).await.expect("delete");
        client.delete_object(bucket, key).await.expect("deleting again is fine");
        match client.get_object(bucket, key).await {
            Err(S3Error::Status { status: 404, code, .. }) => assert_eq!(code, "NoSuchKey"),
            other => panic!("expected NoSuchKey after the delete, got {other:?}"),
        }

        let wrong = S3Client::new(S3Config::new(&moto.endpoint, &access_key, "not-the-secret")).expect("client");
        let err = wrong.put_object(bucket, key, b"x".to_vec(), "text/plain").await.expect_err("wrong secret");
        let message = err.to_string();
        assert!(
            matches!(&err, S3Error::Status { status: 403, code, .. } if code == "SignatureDoesNotMatch"),
            "{err:?}"
        );
        assert!(message.starts_with("S3 PutObject of `kfops-contexts/trainer/ctx-0123abcd.tar.gz` failed with HTTP 403 SignatureDoesNotMatch: "), "{message}");
        assert!(!message.contains("not-the-secret") && !format!("{err:?}").contains("not-the-secret"));
        assert_eq!(err.kind(), kfops_core::ErrorKind::Unauthenticated);
        drop(moto);
    });
}
