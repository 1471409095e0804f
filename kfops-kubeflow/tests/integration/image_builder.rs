//! The `local` image builder with a stand-in container tool (a script that
//! records its arguments) and the test registry: content-addressed tags,
//! skipping images the registry already has, build and push, failures with log tails.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kfops_core::ImageBuilder;
use kfops_core::image::ImageSpec;
use kfops_core::progress::{Progress, ProgressEvent};
use kfops_kubeflow::image::builder::LocalImageBuilder;
use kfops_kubeflow::image::registry::RegistryClient;
use kfops_kubeflow::image::testregistry::{RegistryAuth, TestRegistry};

#[derive(Default)]
struct Events(Mutex<Vec<ProgressEvent>>);

impl Progress for Events {
    fn event(&self, event: ProgressEvent) {
        if let Ok(mut e) = self.0.lock() {
            e.push(event);
        }
    }
}

/// A `docker` stand-in: records each call; `build` checks the context and prints steps;
/// an image named `broken` fails to build.
fn fake_tool(dir: &Path) -> PathBuf {
    let tool = dir.join("docker");
    let log = dir.join("calls.log");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{log}'\ncase \"$1\" in\n  build)\n    eval ctx=\\${{$#}}\n    test -f \"$ctx/Dockerfile\" || {{ echo 'no Dockerfile in context' >&2; exit 2; }}\n    ls -R \"$ctx\" >> '{log}'\n    echo 'Step 1/2 : FROM scratch'\n    case \"$*\" in *broken*) echo 'error: failed to solve: process \"/bin/sh -c make\" did not complete' >&2; exit 1;; esac\n    echo 'Successfully built';;\n  push) echo \"pushed $2\";;\nesac\n",
        log = log.display()
    );
    std::fs::write(&tool, script).expect("write tool");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    tool
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in [
        ("images/trainer/Dockerfile", "FROM scratch\nCOPY src /src\n"),
        ("images/evaluator/Dockerfile", "FROM scratch\n"),
        ("images/broken/Dockerfile", "FROM scratch\nRUN make\n"),
        ("src/train.py", "print('train')\n"),
    ] {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
    dir
}

fn spec(name: &str, registry: &str, others: &[&str]) -> ImageSpec {
    ImageSpec {
        name: name.into(),
        dockerfile_folder: format!("images/{name}").into(),
        other_folders: others.iter().map(PathBuf::from).collect(),
        registry: registry.into(),
        insecure: true,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn images_are_built_once_per_content_and_pushed() {
    let registry = TestRegistry::start(RegistryAuth::None).expect("registry");
    let uri = format!("{}/team", registry.host());
    let proj = project();
    let bin = tempfile::tempdir().expect("bin");
    let tool = fake_tool(bin.path());
    let builder = LocalImageBuilder::new(
        tool,
        proj.path().to_owned(),
        Default::default(),
        RegistryClient::new(true, None).expect("client"),
    );
    let images = [spec("trainer", &uri, &["src"]), spec("evaluator", &uri, &[])];
    let events = Events::default();
    let built = rt().block_on(builder.build(&images, &events)).expect("builds");
    assert_eq!(built.len(), 2);
    for (b, name) in built.iter().zip(["trainer", "evaluator"]) {
        assert_eq!(b.name, name);
        assert!(b.built);
        assert!(b.reference.starts_with(&format!("{uri}/{name}:ctx-")), "{}", b.reference);
    }
    let calls = std::fs::read_to_string(bin.path().join("calls.log")).expect("calls");
    // docker: insecure registries are a daemon setting, so no TLS flag on the push.
    assert!(calls.contains(&format!("push {}", built[0].reference)), "{calls}");
    assert!(calls.contains("train.py"), "the extra folder is in the context: {calls}");
    let logs = events.0.lock().expect("events").iter().filter(|e| matches!(e, ProgressEvent::Log { .. })).count();
    assert!(logs >= 4, "build output streamed as progress");

    // The registry now has the trainer's tag: the same content is not rebuilt.
    let tag = built[0].reference.rsplit_once(':').map(|(_, t)| t.to_owned()).expect("tag");
    registry.add_manifest("team/trainer", &tag);
    std::fs::remove_file(bin.path().join("calls.log")).expect("reset");
    let again = rt().block_on(builder.build(&images[..1], &Events::default())).expect("builds");
    assert_eq!(again[0].reference, built[0].reference, "same content, same tag");
    assert!(!again[0].built, "skipped");
    assert!(!bin.path().join("calls.log").exists(), "the tool was not called");

    // A content change gives a new tag.
    std::fs::write(proj.path().join("src/train.py"), "print('train v2')\n").expect("write");
    let changed = rt().block_on(builder.build(&images[..1], &Events::default())).expect("builds");
    assert_ne!(changed[0].reference, built[0].reference);
    assert!(changed[0].built);
}

#[test]
fn a_failed_build_names_the_image_and_shows_its_log_tail() {
    let registry = TestRegistry::start(RegistryAuth::None).expect("registry");
    let uri = format!("{}/team", registry.host());
    let proj = project();
    let bin = tempfile::tempdir().expect("bin");
    let builder = LocalImageBuilder::new(
        fake_tool(bin.path()),
        proj.path().to_owned(),
        Default::default(),
        RegistryClient::new(true, None).expect("client"),
    );
    let err = rt().block_on(builder.build(&[spec("broken", &uri, &[])], &Events::default())).expect_err("fails");
    let text = err.to_string();
    assert!(text.starts_with("image `broken`: the build failed"), "{text}");
    assert!(text.contains("did not complete"), "log tail: {text}");
    // A missing Dockerfile folder is reported before any tool runs.
    let err = rt().block_on(builder.build(&[spec("missing", &uri, &[])], &Events::default())).expect_err("fails");
    assert!(err.to_string().starts_with("image `missing`:"), "{err}");
}
