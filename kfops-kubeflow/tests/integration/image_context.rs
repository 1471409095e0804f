//! Image build contexts: assembly rules, the content hash's stability and
//! sensitivity, and the reproducible tar.gz (read back with the system `tar`).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use kfops_kubeflow::image::context::{BuildContext, ContextError, EntryKind};

/// Writes `contents` at `root/rel` with permission bits `mode` and modification time `mtime`.
fn put(root: &Path, rel: &str, contents: &str, mode: u32, mtime: SystemTime) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    fs::write(&path, contents).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    fs::File::options().write(true).open(&path).expect("open").set_modified(mtime).expect("mtime");
}

/// The sample project: `docker/` is the Dockerfile folder, `src/lib/` and
/// `shared/` are extras. `modes` is (regular, executable) permission bits.
const FILES: &[(&str, &str, bool)] = &[
    ("docker/Dockerfile", "FROM python:3.11\nCOPY . /app\n", false),
    ("docker/app.py", "print('hi')\n", false),
    ("docker/run.sh", "#!/bin/sh\nexec python app.py\n", true),
    ("docker/conf/settings.toml", "x = 1\n", false),
    ("docker/__pycache__/app.cpython-311.pyc", "bytecode", false),
    ("docker/stale.pyc", "bytecode", false),
    ("docker/.git/HEAD", "ref: refs/heads/main\n", false),
    ("src/lib/util.py", "def f():\n    return 1\n", false),
    ("src/lib/__pycache__/util.cpython-311.pyc", "bytecode", false),
    ("src/lib/.svn/entries", "12\n", false),
    ("shared/common.txt", "shared\n", false),
    ("shared/.hg/store", "x", false),
];

fn sample(root: &Path, modes: (u32, u32), mtime: SystemTime, reverse: bool) {
    let mut files: Vec<_> = FILES.to_vec();
    if reverse {
        files.reverse();
    }
    for (rel, contents, exec) in files {
        put(root, rel, contents, if exec { modes.1 } else { modes.0 }, mtime);
    }
}

fn extras() -> Vec<String> {
    vec!["src/lib".to_owned(), "shared/".to_owned()]
}

fn assemble(root: &Path) -> BuildContext {
    BuildContext::assemble(root, "docker", &extras()).expect("assembles")
}

fn paths(ctx: &BuildContext) -> Vec<&str> {
    ctx.files().iter().map(|e| e.path()).collect()
}

fn epoch(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn tar_gz(ctx: &BuildContext) -> Vec<u8> {
    ctx.write_tar_gz(Vec::new()).expect("archive")
}

/// Runs the system `tar` on an archive given on stdin.
fn system_tar(args: &[&str], archive: &[u8], dir: Option<&Path>) -> String {
    use std::io::Write;
    let mut cmd = Command::new("tar");
    cmd.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("the system `tar` runs");
    child.stdin.take().expect("stdin").write_all(archive).expect("feed tar");
    let out = child.wait_with_output().expect("tar finishes");
    assert!(out.status.success(), "tar {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 listing")
}

#[test]
fn assembles_the_dockerfile_folder_at_the_root_and_extras_under_base_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    sample(dir.path(), (0o644, 0o755), epoch(1_000_000_000), false);
    let ctx = assemble(dir.path());
    assert_eq!(
        paths(&ctx),
        [
            "Dockerfile",
            "app.py",
            "conf",
            "conf/settings.toml",
            "lib",
            "lib/util.py",
            "run.sh",
            "shared",
            "shared/common.txt",
        ],
        "sorted, VCS folders, __pycache__ and *.pyc skipped, `shared/` under `shared`"
    );
    let modes: BTreeMap<&str, (u32, &EntryKind)> =
        ctx.files().iter().map(|e| (e.path(), (e.mode(), e.kind()))).collect();
    assert_eq!(modes["run.sh"], (0o755, &EntryKind::File));
    assert_eq!(modes["app.py"], (0o644, &EntryKind::File));
    assert_eq!(modes["conf"], (0o755, &EntryKind::Dir));
    assert_eq!(modes["lib"], (0o755, &EntryKind::Dir));
    let expected: u64 = [
        "docker/Dockerfile",
        "docker/app.py",
        "docker/run.sh",
        "docker/conf/settings.toml",
        "src/lib/util.py",
        "shared/common.txt",
    ]
    .iter()
    .map(|rel| fs::metadata(dir.path().join(rel)).expect("stat").len())
    .sum();
    assert_eq!(ctx.size_bytes(), expected);
    let util = ctx.files().iter().find(|e| e.path() == "lib/util.py").expect("util.py");
    assert_eq!(util.size(), 22);
    assert_eq!(util.content_sha256().expect("a file has a hash").len(), 64);
}

#[test]
fn the_digest_is_stable_across_checkouts_times_modes_and_locations() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let b_root = b.path().join("deeper/checkout of the repo");
    // Different times, different umask-style group/other bits, reversed creation order.
    sample(a.path(), (0o644, 0o755), epoch(1_000_000_000), false);
    sample(&b_root, (0o600, 0o700), epoch(1_700_000_000), true);
    let (ca, cb) = (assemble(a.path()), assemble(&b_root));
    assert_eq!(ca.digest(), cb.digest());
    assert_eq!(ca.digest().len(), 64);
    assert!(ca.digest().bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(ca.tag(&BTreeMap::new()), cb.tag(&BTreeMap::new()));
    assert_eq!(tar_gz(&ca), tar_gz(&cb), "the archives are identical too");
    // Assembling again (e.g. after a touch) changes nothing.
    fs::File::options()
        .write(true)
        .open(a.path().join("docker/app.py"))
        .expect("open")
        .set_modified(epoch(5))
        .expect("touch");
    assert_eq!(assemble(a.path()).digest(), ca.digest());
}

#[test]
fn the_digest_changes_with_content_names_modes_and_membership() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    sample(root, (0o644, 0o755), epoch(1_000_000_000), false);
    let base = assemble(root).digest().to_owned();
    let mut seen = HashSet::from([base.clone()]);
    let mut check = |what: &str, digest: String| {
        assert_ne!(digest, base, "{what} must change the digest");
        assert!(seen.insert(digest), "{what} gave a digest seen before");
    };

    // Content change (same size).
    put(root, "docker/app.py", "print('ho')\n", 0o644, epoch(1_000_000_000));
    check("a content change", assemble(root).digest().to_owned());
    put(root, "docker/app.py", "print('hi')\n", 0o644, epoch(1_000_000_000));
    assert_eq!(assemble(root).digest(), base, "restoring the content restores the digest");

    // Rename.
    fs::rename(root.join("docker/app.py"), root.join("docker/main.py")).expect("rename");
    check("a rename", assemble(root).digest().to_owned());
    fs::rename(root.join("docker/main.py"), root.join("docker/app.py")).expect("rename back");

    // Exec bit.
    fs::set_permissions(root.join("docker/app.py"), fs::Permissions::from_mode(0o744)).expect("chmod");
    check("setting the exec bit", assemble(root).digest().to_owned());
    fs::set_permissions(root.join("docker/app.py"), fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(assemble(root).digest(), base, "only the owner-exec bit counts");

    // New file, in an extra folder.
    put(root, "src/lib/new.py", "", 0o644, epoch(1));
    check("a new file", assemble(root).digest().to_owned());
    fs::remove_file(root.join("src/lib/new.py")).expect("rm");
    assert_eq!(assemble(root).digest(), base);

    // Deleted file.
    fs::remove_file(root.join("shared/common.txt")).expect("rm");
    check("a deleted file", assemble(root).digest().to_owned());
    put(root, "shared/common.txt", "shared\n", 0o644, epoch(1));

    // New empty folder.
    fs::create_dir(root.join("docker/empty")).expect("mkdir");
    check("a new empty folder", assemble(root).digest().to_owned());
    fs::remove_dir(root.join("docker/empty")).expect("rmdir");

    // Moving a file between folders keeps its name but changes its path.
    fs::rename(root.join("docker/conf/settings.toml"), root.join("docker/settings.toml")).expect("move");
    check("a move", assemble(root).digest().to_owned());
    fs::rename(root.join("docker/settings.toml"), root.join("docker/conf/settings.toml")).expect("move back");

    // Skipped entries do not count.
    put(root, "docker/__pycache__/other.pyc", "x", 0o644, epoch(1));
    put(root, "docker/.git/index", "x", 0o644, epoch(1));
    assert_eq!(assemble(root).digest(), base, "skipped entries do not change the digest");
}

#[test]
fn build_args_change_the_tag() {
    let dir = tempfile::tempdir().expect("tempdir");
    sample(dir.path(), (0o644, 0o755), epoch(1), false);
    let ctx = assemble(dir.path());
    let none = ctx.tag(&BTreeMap::new());
    assert_eq!(none, format!("ctx-{}", &ctx.digest()[..16]));
    let one = ctx.tag(&BTreeMap::from([("PY".to_owned(), "3.11".to_owned())]));
    let other = ctx.tag(&BTreeMap::from([("PY".to_owned(), "3.12".to_owned())]));
    let two = ctx.tag(&BTreeMap::from([("PY".to_owned(), "3.11".to_owned()), ("X".to_owned(), String::new())]));
    let tags = HashSet::from([&none, &one, &other, &two]);
    assert_eq!(tags.len(), 4, "{tags:?}");
    for tag in tags {
        // Docker: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
        assert_eq!(tag.len(), 20, "{tag}");
        assert!(tag.starts_with("ctx-"), "{tag}");
        assert!(tag.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'), "{tag}");
    }
}

#[test]
fn dockerignore_excludes_and_reincludes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let t = epoch(1);
    put(root, "ctx/Dockerfile", "FROM scratch\n", 0o644, t);
    put(
        root,
        "ctx/.dockerignore",
        "# build outputs\n*.md\n!README*.md\nREADME-secret.md\n/data\n!data/keep.csv\n**/*.log\nlib/tests\nDockerfile\n",
        0o644,
        t,
    );
    for rel in [
        "ctx/README.md",
        "ctx/README-secret.md",
        "ctx/CHANGES.md",
        "ctx/docs/guide.md",
        "ctx/data/big.csv",
        "ctx/data/keep.csv",
        "ctx/data/raw/x.bin",
        "ctx/run.log",
        "ctx/sub/deep/trace.log",
        "ctx/sub/ok.txt",
        "extra/lib/tests/test_a.py",
        "extra/lib/code.py",
    ] {
        put(root, rel, rel, 0o644, t);
    }
    let ctx = BuildContext::assemble(root, "ctx", &["extra/lib".to_owned()]).expect("assembles");
    assert_eq!(
        paths(&ctx),
        [
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "data",
            "data/keep.csv",
            "docs",
            "docs/guide.md",
            "lib",
            "lib/code.py",
            "sub",
            "sub/deep",
            "sub/ok.txt",
        ],
        "`*.md` is root-only, `!data/keep.csv` reaches into the excluded folder, patterns apply to extras, \
         and the Dockerfile is kept although listed"
    );
}

#[test]
fn dockerignore_without_exceptions_prunes_whole_folders_and_bad_patterns_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    put(root, "Dockerfile", "FROM scratch\n", 0o644, epoch(1));
    put(root, ".dockerignore", "node_modules\n", 0o644, epoch(1));
    put(root, "node_modules/a/b.js", "", 0o644, epoch(1));
    put(root, "index.js", "", 0o644, epoch(1));
    let ctx = BuildContext::assemble(root, ".", &[]).expect("the project root can be the context");
    assert_eq!(paths(&ctx), [".dockerignore", "Dockerfile", "index.js"]);

    put(root, ".dockerignore", "ok\n\n[unclosed\n", 0o644, epoch(1));
    let err = BuildContext::assemble(root, ".", &[]).expect_err("bad pattern");
    assert!(matches!(err, ContextError::InvalidIgnorePattern { line: 3, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        ".dockerignore line 3: invalid pattern `[unclosed`: the character class `[` is not closed"
    );
}

#[test]
fn missing_dockerfile_is_reported_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    put(root, "img/app.py", "", 0o644, epoch(1));
    let err = BuildContext::assemble(root, "img/", &[]).expect_err("no Dockerfile");
    assert_eq!(err.to_string(), "the Dockerfile folder `img/` has no `Dockerfile`");
    assert_eq!(err.kind(), kfops_core::ErrorKind::InvalidInput);

    put(root, "img/dockerfile", "FROM scratch\n", 0o644, epoch(1));
    let err = BuildContext::assemble(root, "img", &[]).expect_err("wrong case");
    assert_eq!(
        err.to_string(),
        "the Dockerfile folder `img` has no `Dockerfile` (found `dockerfile`; the name is case-sensitive, rename it to `Dockerfile`)"
    );
}

#[test]
fn folder_errors_name_the_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("project");
    put(&root, "img/Dockerfile", "FROM scratch\n", 0o644, epoch(1));
    put(dir.path(), "outside/secret.txt", "s", 0o644, epoch(1));

    let err = BuildContext::assemble(&root, "nope", &[]).expect_err("missing");
    assert!(matches!(err, ContextError::FolderMissing { .. }), "{err:?}");
    assert!(err.to_string().starts_with("image folder `nope` does not exist"), "{err}");
    assert_eq!(err.kind(), kfops_core::ErrorKind::NotFound);

    let cases: [(&str, Vec<String>, &str); 5] = [
        (
            "img",
            vec!["../outside".into()],
            "image folder `../outside` cannot be used: the path leaves the project root",
        ),
        (
            "img",
            vec!["/etc".into()],
            "image folder `/etc` cannot be used: the path must be relative to the project root",
        ),
        ("img", vec!["./".into()], "image folder `./` cannot be used: this is the project root itself"),
        ("img", vec!["img/Dockerfile".into()], "image folder `img/Dockerfile` cannot be used: this is not a folder"),
        ("img", vec!["img/.git".into()], "image folder `img/.git` cannot be used: `.git` folders are always left out"),
    ];
    fs::create_dir_all(root.join("img/.git")).expect("mkdir");
    for (main, extras, want) in cases {
        let err = BuildContext::assemble(&root, main, &extras).expect_err(want);
        assert!(err.to_string().starts_with(want), "{err}");
    }

    // A folder reached through a symlink must stay inside the project.
    symlink(dir.path().join("outside"), root.join("escape")).expect("symlink");
    let err = BuildContext::assemble(&root, "img", &["escape".to_owned()]).expect_err("escapes");
    assert_eq!(
        err.to_string(),
        "image folder `escape` cannot be used: the path resolves outside the project root through a symlink"
    );
}

#[test]
fn colliding_base_names_are_errors_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    put(root, "img/Dockerfile", "FROM scratch\n", 0o644, epoch(1));
    put(root, "img/lib/x.py", "", 0o644, epoch(1));
    put(root, "a/utils/u.py", "", 0o644, epoch(1));
    put(root, "b/utils/u.py", "", 0o644, epoch(1));
    put(root, "c/lib/l.py", "", 0o644, epoch(1));

    let err = BuildContext::assemble(root, "img", &["a/utils".to_owned(), "b/utils/".to_owned()]).expect_err("clash");
    assert_eq!(
        err.to_string(),
        "`a/utils` and `b/utils/` would both be `utils` in the build context; rename one of them or drop it from `other_folders_path`"
    );
    let err = BuildContext::assemble(root, "img", &["c/lib/".to_owned()]).expect_err("clash with root");
    assert_eq!(
        err.to_string(),
        "`img/lib` and `c/lib/` would both be `lib` in the build context; rename one of them or drop it from `other_folders_path`"
    );
    // The trailing slash no longer merges a folder into the root (kfops 0.1 did).
    let ctx = BuildContext::assemble(root, "img", &["a/utils/".to_owned()]).expect("assembles");
    assert_eq!(paths(&ctx), ["Dockerfile", "lib", "lib/x.py", "utils", "utils/u.py"]);
}

#[test]
fn symlinks_are_stored_as_links_or_refused_when_they_leave_the_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("project");
    put(&root, "img/Dockerfile", "FROM scratch\n", 0o644, epoch(1));
    put(&root, "img/real.txt", "real\n", 0o644, epoch(1));
    put(&root, "shared/data.txt", "data\n", 0o644, epoch(1));
    symlink("real.txt", root.join("img/alias.txt")).expect("symlink");
    symlink("../shared", root.join("img/shared-link")).expect("symlink to a folder");
    let ctx = BuildContext::assemble(&root, "img", &[]).expect("links inside the project are fine");
    let kinds: Vec<(&str, &EntryKind, u32)> = ctx.files().iter().map(|e| (e.path(), e.kind(), e.mode())).collect();
    assert_eq!(
        kinds,
        [
            ("Dockerfile", &EntryKind::File, 0o644),
            ("alias.txt", &EntryKind::Symlink { target: "real.txt".into() }, 0o777),
            ("real.txt", &EntryKind::File, 0o644),
            ("shared-link", &EntryKind::Symlink { target: "../shared".into() }, 0o777),
        ],
        "links are not followed: the folder behind `shared-link` is not copied"
    );
    let listing = system_tar(&["--numeric-owner", "-tvzf", "-"], &tar_gz(&ctx), None);
    assert!(
        listing.lines().any(|l| l.starts_with("lrwxrwxrwx 0/0") && l.ends_with("alias.txt -> real.txt")),
        "{listing}"
    );

    for (name, target) in [("up", "../../outside.txt"), ("abs", "/etc/passwd")] {
        let link = root.join("img").join(name);
        symlink(target, &link).expect("symlink");
        let err = BuildContext::assemble(&root, "img", &[]).expect_err(name);
        assert!(matches!(err, ContextError::SymlinkOutside { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("points to `{target}`, outside the project")), "{text}");
        // An ignored link is not an error.
        put(&root, "img/.dockerignore", &format!("{name}\n"), 0o644, epoch(1));
        BuildContext::assemble(&root, "img", &[]).expect("ignored links are skipped");
        fs::remove_file(&link).expect("rm link");
        fs::remove_file(root.join("img/.dockerignore")).expect("rm ignore");
    }
}

#[test]
fn the_archive_is_reproducible_and_readable_by_tar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    sample(root, (0o644, 0o755), epoch(1_650_000_000), false);
    let long = format!("docker/{}/{}.txt", "nested-folder-name".repeat(4), "a-long-file-name".repeat(5));
    put(root, &long, "long\n", 0o644, epoch(1));
    fs::create_dir_all(root.join("docker/empty")).expect("mkdir");
    let ctx = assemble(root);

    let first = tar_gz(&ctx);
    let second = tar_gz(&ctx);
    assert_eq!(first, second, "two writes give the same bytes");
    // gzip: magic, deflate, no flags (no file name), mtime 0, OS unknown.
    assert_eq!(&first[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    assert_eq!(first[9], 255);
    let plain = ctx.write_tar(Vec::new()).expect("tar");
    assert_eq!(plain.len() % 512, 0);

    let listing = system_tar(&["--numeric-owner", "--utc", "-tvzf", "-"], &first, None);
    let rows: Vec<(String, String, String, String)> = listing
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // mode owner size date time name
            (cols[0].to_owned(), cols[1].to_owned(), cols[3].to_owned(), cols[5..].join(" "))
        })
        .collect();
    let long_in_ctx = long.strip_prefix("docker/").expect("under docker/");
    let long_dir = long_in_ctx.rsplit_once('/').expect("nested").0;
    let expected = [
        ("-rw-r--r--", "Dockerfile"),
        ("-rw-r--r--", "app.py"),
        ("drwxr-xr-x", "conf/"),
        ("-rw-r--r--", "conf/settings.toml"),
        ("drwxr-xr-x", "empty/"),
        ("drwxr-xr-x", "lib/"),
        ("-rw-r--r--", "lib/util.py"),
        ("drwxr-xr-x", &format!("{long_dir}/")),
        ("-rw-r--r--", long_in_ctx),
        ("-rwxr-xr-x", "run.sh"),
        ("drwxr-xr-x", "shared/"),
        ("-rw-r--r--", "shared/common.txt"),
    ];
    assert_eq!(
        rows.iter().map(|r| (r.0.as_str(), r.3.as_str())).collect::<Vec<_>>(),
        expected.iter().map(|(m, n)| (*m, *n)).collect::<Vec<_>>(),
        "{listing}"
    );
    for row in &rows {
        assert_eq!(row.1, "0/0", "{listing}");
        assert_eq!(row.2, "1970-01-01", "{listing}");
    }

    // Extracting gives back the contents.
    let out = tempfile::tempdir().expect("tempdir");
    system_tar(&["-xzf", "-"], &first, Some(out.path()));
    let read = |rel: &str| fs::read_to_string(out.path().join(rel)).expect("extracted");
    assert_eq!(read("run.sh"), "#!/bin/sh\nexec python app.py\n");
    assert_eq!(read("lib/util.py"), "def f():\n    return 1\n");
    assert_eq!(read(long_in_ctx), "long\n");
    let mode = fs::metadata(out.path().join("run.sh")).expect("stat").permissions().mode();
    assert_ne!(mode & 0o100, 0, "the exec bit survives");
}

#[test]
fn writing_notices_files_changed_since_assembly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    sample(root, (0o644, 0o755), epoch(1), false);
    let ctx = assemble(root);
    put(root, "docker/app.py", "print('HI')\n", 0o644, epoch(1));
    let err = ctx.write_tar_gz(Vec::new()).expect_err("content changed");
    assert!(matches!(&err, ContextError::Changed { path } if path.ends_with("docker/app.py")), "{err:?}");
    put(root, "docker/app.py", "print('hi')\n# longer\n", 0o644, epoch(1));
    assert!(matches!(ctx.write_tar(Vec::new()), Err(ContextError::Changed { .. })));
}
