//! The build context of one container image, assembled deterministically, and
//! its content hash.
//!
//! A context is what `docker build` (or Kaniko) sees: the contents of the
//! image's `dockerfile_folder_path` at the archive root, plus every
//! `other_folders_path` entry under its base name (`src/lib/` becomes `lib/`).
//! [`BuildContext::assemble`] walks those folders once, applying these rules:
//!
//! * **Always skipped**, anywhere and whatever `.dockerignore` says: entries
//!   named `.git`, `.hg`, `.svn` (folders, or the `.git` file of a submodule or
//!   worktree), `__pycache__` folders and `*.pyc` files.
//! * **`.dockerignore`** at the root of the Dockerfile folder is honoured with
//!   Docker's semantics (see [`DockerIgnore`]); patterns are matched against
//!   paths relative to the context root, so they also apply inside the extra
//!   folders. As with Docker, the root `Dockerfile` and `.dockerignore` are
//!   always kept in the context even when a pattern excludes them: the builder
//!   needs them (Kaniko reads the `Dockerfile` from the context).
//! * **Symlinks are never followed.** A symlink is stored as a symlink entry
//!   with its target text unchanged, provided the target is relative and stays
//!   (lexically, from the link's real location) inside the project root. An
//!   absolute target, or one that climbs out of the project, is refused with
//!   [`ContextError::SymlinkOutside`]: in the image it would dangle or point at
//!   something nobody packaged. The configured folders themselves may be
//!   reached through symlinks, but must resolve inside the project root.
//! * **Metadata is normalised**: owner and group 0, no user or group names,
//!   modification time 0; folders are `0755`, symlinks `0777`, and regular
//!   files `0755` when the owner-execute bit is set and `0644` otherwise.
//!   Nothing else about the checkout (timestamps, umask, owner, readdir order,
//!   absolute location) can change the context.
//! * Entries are **sorted by archive path, component by component**, so a
//!   folder is directly followed by its contents.
//!
//! [`BuildContext::digest`] is a SHA-256 over a canonical encoding of every
//! entry's path, kind, normalised mode and content (or link target), so it is
//! stable across checkouts, machines and timestamps, and changes with any
//! content edit, rename, exec-bit flip, added or removed file or folder.
//! [`BuildContext::tag`] derives the image tag from it and the build args, and
//! [`BuildContext::write_tar_gz`] writes the byte-for-byte reproducible
//! archive (POSIX ustar, with pax records only for paths over 100 bytes;
//! gzip with modification time 0 and no file name).
//!
//! Assembling and writing are blocking file-system work; call them from
//! `tokio::task::spawn_blocking` in async code.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use crate::error::ContextError;

/// Names that never enter a build context (version-control metadata).
const VCS_NAMES: [&str; 3] = [".git", ".hg", ".svn"];
/// Python bytecode caches.
const PYCACHE: &str = "__pycache__";
/// The Dockerfile the context must contain at its root.
pub const DOCKERFILE: &str = "Dockerfile";
/// The ignore file read from the context root.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// Bytes read at a time when hashing or archiving a file.
const CHUNK: usize = 64 * 1024;
/// The tar block size.
const BLOCK: usize = 512;

/// What a [`ContextEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A folder.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link, stored as a link (never followed).
    Symlink {
        /// The link target, exactly as stored on disk (always relative).
        target: String,
    },
}

/// One entry of a [`BuildContext`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    path: String,
    kind: EntryKind,
    mode: u32,
    size: u64,
    sha256: [u8; 32],
    source: PathBuf,
}

impl ContextEntry {
    /// The path inside the archive: relative, `/`-separated, no trailing slash
    /// (folders get theirs only in the tar header).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Folder, file or symlink.
    pub fn kind(&self) -> &EntryKind {
        &self.kind
    }

    /// The normalised permission bits: `0o755` or `0o644` for files, `0o755`
    /// for folders, `0o777` for symlinks.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The content length of a file; 0 for folders and symlinks.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The SHA-256 of a file's content, as lowercase hex; `None` for folders and symlinks.
    pub fn content_sha256(&self) -> Option<String> {
        matches!(self.kind, EntryKind::File).then(|| hex::encode(self.sha256))
    }

    /// Where the entry was read from on disk (canonical path).
    pub fn source(&self) -> &Path {
        &self.source
    }
}

/// The deterministic build context of one image: its entries, their content
/// hash, and the archive that is sent to the builder.
#[derive(Debug, Clone)]
pub struct BuildContext {
    entries: Vec<ContextEntry>,
    digest: String,
    size: u64,
}

impl BuildContext {
    /// Assembles the context of an image from its configured folders.
    ///
    /// `dockerfile_folder` (the `dockerfile_folder_path` key) and each of
    /// `other_folders` (`other_folders_path`) are relative to `project_root`;
    /// trailing slashes and `./` segments are ignored. The rules are in the
    /// [module documentation](self).
    ///
    /// # Errors
    ///
    /// A folder that is absolute, leaves the project, or is missing; no regular
    /// `Dockerfile` at the root; two extra folders with the same base name, or
    /// one whose base name is already an entry of the Dockerfile folder; a
    /// symlink pointing out of the project; an invalid `.dockerignore` pattern;
    /// a socket, FIFO or device in the context; a file name that is not UTF-8;
    /// or a read error.
    pub fn assemble(
        project_root: &Path,
        dockerfile_folder: &str,
        other_folders: &[String],
    ) -> Result<BuildContext, ContextError> {
        let root = fs::canonicalize(project_root).map_err(|source| ContextError::Io {
            action: "resolving the project root",
            path: project_root.to_path_buf(),
            source,
        })?;
        let main = Folder::resolve(&root, dockerfile_folder, false)?;
        check_dockerfile(&main)?;
        let ignore = read_dockerignore(&main)?;

        // Base names of the extras must be unique and must not shadow anything
        // the Dockerfile folder already has at the root.
        let root_names = list_names(&main.fs)?;
        let mut extras: Vec<Folder> = Vec::with_capacity(other_folders.len());
        for configured in other_folders {
            let folder = Folder::resolve(&root, configured, true)?;
            if always_skipped(&folder.base, true) {
                return Err(ContextError::InvalidFolder {
                    path: configured.clone(),
                    reason: format!("`{}` folders are always left out of build contexts", folder.base),
                });
            }
            if let Some(other) = extras.iter().find(|e| e.base == folder.base) {
                return Err(ContextError::Collision {
                    archive_path: folder.base.clone(),
                    first: other.configured.clone(),
                    second: configured.clone(),
                });
            }
            if root_names.contains(&folder.base) {
                return Err(ContextError::Collision {
                    archive_path: folder.base.clone(),
                    first: main.child_display(&folder.base),
                    second: configured.clone(),
                });
            }
            extras.push(folder);
        }

        let mut walk = Walk { ignore: &ignore, found: Vec::new() };
        walk.dir(&main.fs, "", &main.project_rel)?;
        for extra in &extras {
            let excluded = ignore.is_excluded(&extra.base);
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            walk.found.push(Found { entry: dir_entry(&extra.base, &extra.fs), excluded });
            walk.dir(&extra.fs, &extra.base, &extra.project_rel)?;
        }
        let entries = finish_entries(walk.found);
        let digest = digest_of(&entries);
        let size = entries.iter().map(|e| e.size).sum();
        Ok(BuildContext { entries, digest, size })
    }

    /// The entries, sorted by archive path (component by component).
    pub fn files(&self) -> &[ContextEntry] {
        &self.entries
    }

    /// The content hash: 64 lowercase hex digits of a SHA-256 over every
    /// entry's path, kind, normalised mode and content or link target.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The image tag for this context built with `build_args`: `ctx-` and 16
    /// hex digits (a valid Docker tag).
    ///
    /// Without build args the digits are the first 16 of [`Self::digest`], so
    /// a tag can be traced back to its context; with build args they come from
    /// a SHA-256 over the digest and every name and value, so changing,
    /// adding or removing an argument changes the tag.
    pub fn tag(&self, build_args: &BTreeMap<String, String>) -> String {
        if build_args.is_empty() {
            return format!("ctx-{}", &self.digest[..16]);
        }
        let mut h = Sha256::new();
        h.update(b"kfops-image-tag/v1\n");
        h.update(self.digest.as_bytes());
        for (name, value) in build_args {
            put_bytes(&mut h, name.as_bytes());
            put_bytes(&mut h, value.as_bytes());
        }
        format!("ctx-{}", &hex::encode(h.finalize())[..16])
    }

    /// The total size of the file contents, in bytes (without archive overhead).
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Writes the context as an uncompressed tar archive and returns the writer.
    ///
    /// The bytes depend only on the entries: the same context always gives the
    /// same archive. Files are re-read while writing; if one no longer has the
    /// content it had when the context was assembled, writing stops with
    /// [`ContextError::Changed`], since the archive would not match the digest.
    ///
    /// # Errors
    ///
    /// A file that changed or cannot be read, or a failing writer.
    pub fn write_tar<W: Write>(&self, mut out: W) -> Result<W, ContextError> {
        for entry in &self.entries {
            write_entry(&mut out, entry)?;
        }
        out.write_all(&[0u8; 2 * BLOCK]).map_err(ContextError::Write)?;
        out.flush().map_err(ContextError::Write)?;
        Ok(out)
    }

    /// Writes the context as a gzip-compressed tar archive (what Kaniko and
    /// `docker build -` accept) and returns the writer.
    ///
    /// The gzip header carries modification time 0, no file name and "unknown"
    /// as the operating system, so the output is byte-for-byte reproducible.
    ///
    /// # Errors
    ///
    /// As for [`Self::write_tar`].
    pub fn write_tar_gz<W: Write>(&self, out: W) -> Result<W, ContextError> {
        let gz = flate2::GzBuilder::new().mtime(0).operating_system(255).write(out, flate2::Compression::default());
        let gz = self.write_tar(gz)?;
        gz.finish().map_err(ContextError::Write)
    }
}

// ---- Assembling ----

/// A configured folder, resolved inside the project.
struct Folder {
    /// As written in the configuration.
    configured: String,
    /// Lexically cleaned (no trailing slash, no `.` segments).
    cleaned: String,
    /// Canonical location on disk.
    fs: PathBuf,
    /// Canonical location relative to the project root, `/`-separated ("" for the root).
    project_rel: String,
    /// The last component of `cleaned`.
    base: String,
}

impl Folder {
    fn resolve(root: &Path, configured: &str, extra: bool) -> Result<Folder, ContextError> {
        let invalid =
            |reason: &str| ContextError::InvalidFolder { path: configured.to_owned(), reason: reason.to_owned() };
        if configured.trim().is_empty() {
            return Err(invalid("the path is empty"));
        }
        if configured.starts_with('/') || Path::new(configured).is_absolute() {
            return Err(invalid("the path must be relative to the project root"));
        }
        let cleaned = clean_slash_path(configured);
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(invalid("the path leaves the project root"));
        }
        if extra && cleaned == "." {
            return Err(invalid("this is the project root itself, which has no base name to put it under"));
        }
        let joined = if cleaned == "." { root.to_path_buf() } else { root.join(&cleaned) };
        let meta = match fs::metadata(&joined) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContextError::FolderMissing { path: configured.to_owned(), looked_at: joined });
            }
            Err(source) => return Err(ContextError::Io { action: "reading", path: joined, source }),
        };
        if !meta.is_dir() {
            return Err(invalid("this is not a folder"));
        }
        let fs_path = fs::canonicalize(&joined).map_err(|source| ContextError::Io {
            action: "resolving",
            path: joined.clone(),
            source,
        })?;
        let Ok(rel) = fs_path.strip_prefix(root) else {
            return Err(invalid("the path resolves outside the project root through a symlink"));
        };
        let project_rel = utf8(rel)?.to_owned();
        let base = cleaned.rsplit('/').next().unwrap_or(&cleaned).to_owned();
        Ok(Folder { configured: configured.to_owned(), cleaned, fs: fs_path, project_rel, base })
    }

    /// How to name a child of this folder in messages (project-relative).
    fn child_display(&self, name: &str) -> String {
        if self.cleaned == "." { name.to_owned() } else { format!("{}/{name}", self.cleaned) }
    }
}

/// Fails unless the Dockerfile folder has a regular `Dockerfile`.
fn check_dockerfile(main: &Folder) -> Result<(), ContextError> {
    let path = main.fs.join(DOCKERFILE);
    let hint = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => {
            Some("`Dockerfile` is a symlink; the context needs the file itself".to_owned())
        }
        Ok(_) => Some("`Dockerfile` is not a regular file".to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => list_names(&main.fs)?
            .into_iter()
            .find(|name| name.eq_ignore_ascii_case(DOCKERFILE))
            .map(|name| format!("found `{name}`; the name is case-sensitive, rename it to `Dockerfile`")),
        Err(source) => return Err(ContextError::Io { action: "reading", path, source }),
    };
    Err(ContextError::DockerfileMissing { folder: main.configured.clone(), hint })
}

/// Reads the `.dockerignore` at the context root, if any.
fn read_dockerignore(main: &Folder) -> Result<DockerIgnore, ContextError> {
    let path = main.fs.join(DOCKERIGNORE);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(ContextError::UnsupportedFileType { path, what: "not a regular file" }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DockerIgnore::default()),
        Err(source) => return Err(ContextError::Io { action: "reading", path, source }),
    }
    let bytes = fs::read(&path).map_err(|source| ContextError::Io { action: "reading", path: path.clone(), source })?;
    DockerIgnore::parse(&String::from_utf8_lossy(&bytes))
}

/// The names in a folder, minus those that are always skipped.
fn list_names(dir: &Path) -> Result<BTreeSet<String>, ContextError> {
    let read =
        fs::read_dir(dir).map_err(|source| ContextError::Io { action: "listing", path: dir.to_path_buf(), source })?;
    let mut names = BTreeSet::new();
    for item in read {
        let item = item.map_err(|source| ContextError::Io { action: "listing", path: dir.to_path_buf(), source })?;
        let name = item.file_name();
        let Some(name) = name.to_str() else {
            return Err(ContextError::NonUtf8Path { path: item.path() });
        };
        let is_dir = item.file_type().is_ok_and(|t| t.is_dir());
        if !always_skipped(name, is_dir) {
            names.insert(name.to_owned());
        }
    }
    Ok(names)
}

/// The entries no context ever contains, whatever `.dockerignore` says.
fn always_skipped(name: &str, is_dir: bool) -> bool {
    VCS_NAMES.contains(&name) || (is_dir && name == PYCACHE) || (!is_dir && name.ends_with(".pyc"))
}

fn utf8(path: &Path) -> Result<&str, ContextError> {
    path.to_str().ok_or_else(|| ContextError::NonUtf8Path { path: path.to_path_buf() })
}

fn join_rel(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") }
}

fn dir_entry(path: &str, source: &Path) -> ContextEntry {
    ContextEntry {
        path: path.to_owned(),
        kind: EntryKind::Dir,
        mode: 0o755,
        size: 0,
        sha256: [0; 32],
        source: source.to_path_buf(),
    }
}

/// An entry seen during the walk; `excluded` folders are kept only when some
/// re-included entry lies below them.
struct Found {
    entry: ContextEntry,
    excluded: bool,
}

struct Walk<'a> {
    ignore: &'a DockerIgnore,
    found: Vec<Found>,
}

impl Walk<'_> {
    /// Adds everything below `dir`, which is `archive` in the context and
    /// `project_rel` in the project.
    fn dir(&mut self, dir: &Path, archive: &str, project_rel: &str) -> Result<(), ContextError> {
        let read = fs::read_dir(dir).map_err(|source| ContextError::Io {
            action: "listing",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut children = Vec::new();
        for item in read {
            let item =
                item.map_err(|source| ContextError::Io { action: "listing", path: dir.to_path_buf(), source })?;
            let path = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                return Err(ContextError::NonUtf8Path { path });
            };
            children.push((name, path));
        }
        // Sorted so that the first error reported does not depend on readdir order.
        children.sort();
        for (name, path) in children {
            let meta = fs::symlink_metadata(&path).map_err(|source| ContextError::Io {
                action: "reading",
                path: path.clone(),
                source,
            })?;
            let kind = meta.file_type();
            if always_skipped(&name, kind.is_dir()) {
                continue;
            }
            let arch = join_rel(archive, &name);
            let proj = join_rel(project_rel, &name);
            let excluded = self.ignore.is_excluded(&arch);
            if kind.is_dir() {
                if excluded && !self.ignore.has_exceptions() {
                    continue;
                }
                self.found.push(Found { entry: dir_entry(&arch, &path), excluded });
                self.dir(&path, &arch, &proj)?;
                continue;
            }
            let kept_anyway = arch == DOCKERFILE || arch == DOCKERIGNORE;
            if excluded && !kept_anyway {
                continue;
            }
            let entry = if kind.is_file() {
                let (size, sha256) = hash_file(&path)?;
                let mode = if is_owner_executable(&meta) { 0o755 } else { 0o644 };
                ContextEntry { path: arch, kind: EntryKind::File, mode, size, sha256, source: path }
            } else if kind.is_symlink() {
                let target = Self::link_target(&path, project_rel)?;
                ContextEntry {
                    path: arch,
                    kind: EntryKind::Symlink { target },
                    mode: 0o777,
                    size: 0,
                    sha256: [0; 32],
                    source: path,
                }
            } else {
                return Err(ContextError::UnsupportedFileType { path, what: "a socket, FIFO or device" });
            };
            self.found.push(Found { entry, excluded: false });
        }
        Ok(())
    }

    /// The target of a symlink in `project_rel`, refused when it leaves the project.
    fn link_target(link: &Path, project_rel: &str) -> Result<String, ContextError> {
        let target = fs::read_link(link).map_err(|source| ContextError::Io {
            action: "reading the symlink",
            path: link.to_path_buf(),
            source,
        })?;
        let text = utf8(&target)?.to_owned();
        let outside = || ContextError::SymlinkOutside { link: link.to_path_buf(), target: target.clone() };
        if text.is_empty() || text.starts_with('/') || target.is_absolute() {
            return Err(outside());
        }
        let resolved = clean_slash_path(&join_rel(project_rel, &text));
        if resolved == ".." || resolved.starts_with("../") || resolved.starts_with('/') {
            return Err(outside());
        }
        Ok(text)
    }
}

/// Sorts the entries and keeps excluded folders only as parents of kept entries.
fn finish_entries(found: Vec<Found>) -> Vec<ContextEntry> {
    let mut needed: HashSet<&str> = HashSet::new();
    for f in found.iter().filter(|f| !f.excluded) {
        let mut path = f.entry.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            needed.insert(parent);
            path = parent;
        }
    }
    let keep: Vec<bool> = found.iter().map(|f| !f.excluded || needed.contains(f.entry.path.as_str())).collect();
    let mut entries: Vec<ContextEntry> =
        found.into_iter().zip(keep).filter(|(_, keep)| *keep).map(|(f, _)| f.entry).collect();
    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    entries
}

#[cfg(unix)]
fn is_owner_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_owner_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// Size and SHA-256 of a file's content.
fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), ContextError> {
    let io_err = |source| ContextError::Io { action: "reading", path: path.to_path_buf(), source };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finalize().into()))
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The canonical encoding: a version line, then per entry its kind, path,
/// mode and, for files, size and content hash, for symlinks the target.
/// Every variable-length field is length-prefixed, so no two contexts encode alike.
fn digest_of(entries: &[ContextEntry]) -> String {
    let mut h = Sha256::new();
    h.update(b"kfops-build-context/v1\n");
    for e in entries {
        let tag: &[u8] = match e.kind {
            EntryKind::Dir => b"d",
            EntryKind::File => b"f",
            EntryKind::Symlink { .. } => b"l",
        };
        h.update(tag);
        put_bytes(&mut h, e.path.as_bytes());
        h.update(e.mode.to_be_bytes());
        match &e.kind {
            EntryKind::Dir => {}
            EntryKind::File => {
                h.update(e.size.to_be_bytes());
                h.update(e.sha256);
            }
            EntryKind::Symlink { target } => put_bytes(&mut h, target.as_bytes()),
        }
    }
    hex::encode(h.finalize())
}

/// Go's `path.Clean` for `/`-separated paths (what Docker applies to patterns).
fn clean_slash_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            seg => parts.push(seg),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

// ---- .dockerignore ----

/// The patterns of a `.dockerignore` file, with Docker's semantics.
///
/// * Lines starting with `#` are comments (only in the first column, as in
///   Docker); surrounding whitespace is trimmed and blank lines are skipped.
/// * Each pattern is cleaned like a path (`./a//b/` is `a/b`), and a leading
///   `/` is dropped: patterns are relative to the context root.
/// * `*` matches any run of characters except `/`, `?` one character except
///   `/`, `[...]` / `[^...]` a character class, `\` escapes the next
///   character, and `**` any number of folders, including none (`**/*.go`
///   also matches `main.go`; a trailing `**` matches everything below).
/// * A pattern must match the whole path, but a pattern that matches a folder
///   also matches everything inside it.
/// * `!pattern` re-includes what earlier patterns excluded; the last pattern
///   that matches a path decides.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<IgnorePattern>,
    has_exceptions: bool,
}

#[derive(Debug, Clone)]
struct IgnorePattern {
    exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone)]
enum Token {
    Char(char),
    /// `*`: any run of non-`/` characters.
    Star,
    /// `?`: one non-`/` character.
    One,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` before more pattern: `(.*/)?`.
    AnyDirs,
    /// `**` at the end: `.*`.
    AnyTail,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    ///
    /// # Errors
    ///
    /// [`ContextError::InvalidIgnorePattern`] for a lone `!`, an unterminated
    /// character class or a trailing `\`.
    pub fn parse(text: &str) -> Result<DockerIgnore, ContextError> {
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let raw = if index == 0 { raw.strip_prefix('\u{feff}').unwrap_or(raw) } else { raw };
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let invalid = |reason: &str| ContextError::InvalidIgnorePattern {
                line: index + 1,
                pattern: line.to_owned(),
                reason: reason.to_owned(),
            };
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if body.is_empty() {
                return Err(invalid("`!` needs a pattern after it"));
            }
            let mut cleaned = clean_slash_path(body);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let tokens = compile(&cleaned).map_err(invalid)?;
            patterns.push(IgnorePattern { exception, tokens });
        }
        let has_exceptions = patterns.iter().any(|p| p.exception);
        Ok(DockerIgnore { patterns, has_exceptions })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        // Where the parent folders end: "a/b/c" has parents "a" and "a/b".
        let parent_ends: Vec<usize> = chars.iter().enumerate().filter(|(_, c)| **c == '/').map(|(i, _)| i).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // An exclusion only matters while the path is included, and an
            // exception only while it is excluded.
            if pattern.exception != excluded {
                continue;
            }
            let hit = glob_match(&pattern.tokens, &chars)
                || parent_ends.iter().any(|&end| glob_match(&pattern.tokens, &chars[..end]));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether any `!` pattern exists (excluded folders must then be searched
    /// for re-included entries).
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Translates a cleaned pattern into tokens, as Docker's pattern matcher turns
/// it into a regular expression.
fn compile(pattern: &str) -> Result<Vec<Token>, &'static str> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                tokens.push(if chars.peek().is_none() { Token::AnyTail } else { Token::AnyDirs });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => match chars.next() {
                Some(escaped) => tokens.push(Token::Char(escaped)),
                None => return Err("a trailing `\\` escapes nothing"),
            },
            '[' => {
                let negated = chars.peek() == Some(&'^');
                if negated {
                    chars.next();
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(mut lo) = chars.next() else {
                        return Err("the character class `[` is not closed");
                    };
                    if lo == ']' && !first {
                        break;
                    }
                    first = false;
                    if lo == '\\' {
                        lo = chars.next().ok_or("the character class `[` is not closed")?;
                    }
                    let mut hi = lo;
                    let mut ahead = chars.clone();
                    if ahead.next() == Some('-') && ahead.peek().is_some_and(|c| *c != ']') {
                        chars.next();
                        hi = chars.next().ok_or("the character class `[` is not closed")?;
                        if hi == '\\' {
                            hi = chars.next().ok_or("the character class `[` is not closed")?;
                        }
                        if hi < lo {
                            return Err("a character range in `[...]` is reversed");
                        }
                    }
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Char(c)),
        }
    }
    Ok(tokens)
}

/// Whether the tokens match all of `s` (a table over token × position, so
/// no pattern can make it backtrack exponentially).
fn glob_match(tokens: &[Token], s: &[char]) -> bool {
    let n = s.len();
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    for token in tokens {
        let mut next = vec![false; n + 1];
        match token {
            Token::Char(c) => (0..n).for_each(|j| next[j + 1] = cur[j] && s[j] == *c),
            Token::One => (0..n).for_each(|j| next[j + 1] = cur[j] && s[j] != '/'),
            Token::Class { negated, ranges } => (0..n).for_each(|j| {
                let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[j]));
                next[j + 1] = cur[j] && inside != *negated;
            }),
            Token::Star => {
                for j in 0..=n {
                    next[j] = cur[j] || (j > 0 && next[j - 1] && s[j - 1] != '/');
                }
            }
            Token::AnyDirs => {
                // Empty, or any run ending in `/`.
                let mut seen = false;
                for k in 0..=n {
                    next[k] = cur[k] || (seen && s[k - 1] == '/');
                    seen |= cur[k];
                }
            }
            Token::AnyTail => {
                let mut seen = false;
                for k in 0..=n {
                    seen |= cur[k];
                    next[k] = seen;
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        cur = next;
    }
    cur[n]
}

// ---- The tar archive ----

/// Writes one entry: header(s), then for files the content, padded to a block.
fn write_entry<W: Write>(out: &mut W, entry: &ContextEntry) -> Result<(), ContextError> {
    let (typeflag, link, size) = match &entry.kind {
        EntryKind::Dir => (b'5', "", 0),
        EntryKind::File => (b'0', "", entry.size),
        EntryKind::Symlink { target } => (b'2', target.as_str(), 0),
    };
    let name = if matches!(entry.kind, EntryKind::Dir) { format!("{}/", entry.path) } else { entry.path.clone() };
    // Anything the ustar fields cannot hold goes into a pax extended header.
    let mut pax = Vec::new();
    if name.len() > 100 {
        pax_record(&mut pax, "path", &name);
    }
    if link.len() > 100 {
        pax_record(&mut pax, "linkpath", link);
    }
    if size > 0o77777777777 {
        pax_record(&mut pax, "size", &size.to_string());
    }
    if !pax.is_empty() {
        let header = ustar_header("././@PaxHeader", b'x', 0o644, pax.len() as u64, "");
        out.write_all(&header).map_err(ContextError::Write)?;
        out.write_all(&pax).map_err(ContextError::Write)?;
        out.write_all(&vec![0u8; padding(pax.len() as u64)]).map_err(ContextError::Write)?;
    }
    let ustar_size = if size > 0o77777777777 { 0 } else { size };
    out.write_all(&ustar_header(&name, typeflag, entry.mode, ustar_size, link)).map_err(ContextError::Write)?;
    if matches!(entry.kind, EntryKind::File) {
        copy_file(out, entry)?;
        out.write_all(&vec![0u8; padding(size)]).map_err(ContextError::Write)?;
    }
    Ok(())
}

/// Copies a file's content into the archive, checking it still is what was hashed.
fn copy_file<W: Write>(out: &mut W, entry: &ContextEntry) -> Result<(), ContextError> {
    let path = &entry.source;
    let io_err = |source| ContextError::Io { action: "reading", path: path.clone(), source };
    let changed = || ContextError::Changed { path: path.clone() };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = entry.size;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(changed()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(ContextError::Write)?;
        left -= n as u64;
    }
    let mut extra = [0u8; 1];
    let grew = loop {
        match file.read(&mut extra) {
            Ok(n) => break n > 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
    };
    let sha256: [u8; 32] = h.finalize().into();
    if grew || sha256 != entry.sha256 {
        return Err(changed());
    }
    Ok(())
}

fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// Appends a pax record `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let base = key.len() + value.len() + 3;
    let mut len = base + base.to_string().len();
    if len.to_string().len() != base.to_string().len() {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

/// A POSIX ustar header with owner 0:0, no names and modification time 0.
/// Names longer than the field are truncated (the pax record carries them).
fn ustar_header(name: &str, typeflag: u8, mode: u32, size: u64, link: &str) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put_truncated(&mut h[0..100], name);
    put_octal(&mut h[100..108], u64::from(mode));
    put_octal(&mut h[108..116], 0); // uid
    put_octal(&mut h[116..124], 0); // gid
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], 0); // mtime
    h[148..156].fill(b' '); // checksum placeholder
    h[156] = typeflag;
    put_truncated(&mut h[157..257], link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put_octal(&mut h[329..337], 0); // devmajor
    put_octal(&mut h[337..345], 0); // devminor
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let digits = format!("{sum:06o}");
    h[148..154].copy_from_slice(&digits.as_bytes()[digits.len() - 6..]);
    h[154] = 0;
    h[155] = b' ';
    h
}

/// Copies as much of `text` as fits, never splitting a UTF-8 character.
fn put_truncated(field: &mut [u8], text: &str) {
    let mut end = text.len().min(field.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    field[..end].copy_from_slice(&text.as_bytes()[..end]);
}

/// Zero-padded octal filling all but the last byte of the field, which stays NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    let digits = &digits.as_bytes()[digits.len().saturating_sub(width)..];
    field[..width].copy_from_slice(digits);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).expect("valid patterns")
    }

    #[test]
    fn docker_documented_examples() {
        // https://docs.docker.com/build/concepts/context/#dockerignore-files
        let d = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(d.is_excluded("somedir/temporary.txt"));
        assert!(d.is_excluded("somedir/temp"));
        assert!(d.is_excluded("somedir/temp/inner.txt"), "a matched folder excludes its contents");
        assert!(d.is_excluded("somedir/subdir/temporary.txt"));
        assert!(d.is_excluded("tempa"));
        assert!(d.is_excluded("tempb"));
        assert!(!d.is_excluded("temp"), "`temp?` needs one more character");
        assert!(!d.is_excluded("tempab"));
        assert!(!d.is_excluded("temporary.txt"), "`*/temp*` needs a folder level");
        assert!(!d.is_excluded("a/b/c/temp.txt"), "`*/*/temp*` is exactly two levels");
        assert!(!d.is_excluded("# comment"));

        let d = ignore("**/*.go\n");
        assert!(d.is_excluded("main.go"), "`**` matches zero folders");
        assert!(d.is_excluded("cmd/tool/main.go"));
        assert!(!d.is_excluded("main.gox"));

        let d = ignore("*.md\n!README.md\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        assert!(!d.is_excluded("docs/guide.md"), "`*` does not cross folders");

        let d = ignore("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README-public.md"));
        assert!(d.is_excluded("README-secret.md"));

        let d = ignore("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!d.is_excluded("README-secret.md"), "the last matching pattern wins");
        assert!(!d.is_excluded("README.md"));
        assert!(d.is_excluded("CHANGES.md"));
    }

    #[test]
    fn root_relative_and_cleaned_patterns() {
        for text in ["/foo/bar", "foo/bar", "./foo/bar/", "foo//bar", "foo/baz/../bar"] {
            let d = ignore(text);
            assert!(d.is_excluded("foo/bar"), "{text}");
            assert!(d.is_excluded("foo/bar/x.txt"), "{text}");
            assert!(!d.is_excluded("foo/barn"), "{text}");
            assert!(!d.is_excluded("x/foo/bar"), "{text}: patterns are anchored at the root");
        }
        // Only a first-column `#` starts a comment; whitespace is trimmed.
        let d = ignore("  data  \n\t# not a comment\n\u{feff}");
        assert!(d.is_excluded("data"));
        assert!(d.is_excluded("# not a comment"));
        let d = ignore("\u{feff}# bom then comment\nx\n");
        assert!(!d.is_excluded("# bom then comment"));
        assert!(d.is_excluded("x"));
    }

    #[test]
    fn double_star_forms() {
        let d = ignore("logs/**\n");
        assert!(d.is_excluded("logs/a"));
        assert!(d.is_excluded("logs/a/b.txt"));
        let d = ignore("**\n");
        assert!(d.is_excluded("anything/at/all"));
        let d = ignore("a/**/b\n");
        assert!(d.is_excluded("a/b"));
        assert!(d.is_excluded("a/x/y/b"));
        assert!(!d.is_excluded("a/xb"));
        let d = ignore("**/node_modules\n");
        assert!(d.is_excluded("node_modules/x.js"));
        assert!(d.is_excluded("web/app/node_modules/x.js"));
    }

    #[test]
    fn classes_escapes_and_wildcards() {
        let d = ignore("file[0-9].txt\nlit\\*\nx[^a]y\n");
        assert!(d.is_excluded("file7.txt"));
        assert!(!d.is_excluded("fileA.txt"));
        assert!(d.is_excluded("lit*"));
        assert!(!d.is_excluded("litx"));
        assert!(d.is_excluded("xby"));
        assert!(!d.is_excluded("xay"));
        let d = ignore("a?c\n");
        assert!(d.is_excluded("abc"));
        assert!(!d.is_excluded("a/c"), "`?` does not match `/`");
        let d = ignore("[]a]\n");
        assert!(d.is_excluded("]"));
        assert!(d.is_excluded("a"));
    }

    #[test]
    fn exceptions_reach_into_excluded_folders() {
        let d = ignore("build\n!build/keep.txt\n");
        assert!(d.is_excluded("build"));
        assert!(d.is_excluded("build/other.txt"));
        assert!(!d.is_excluded("build/keep.txt"));
        assert!(d.has_exceptions());
        let d = ignore("*\n!src\n");
        assert!(!d.is_excluded("src/deep/file.py"));
        assert!(d.is_excluded("README.md"));
    }

    #[test]
    fn invalid_patterns_are_reported_with_their_line() {
        for (text, reason) in [("ok\n!\n", "`!` needs"), ("a[bc\n", "not closed"), ("x\\", "trailing")] {
            let err = DockerIgnore::parse(text).expect_err(text).to_string();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(err.contains(".dockerignore line"), "{err}");
        }
        let err = DockerIgnore::parse("ok\n!\n").expect_err("lone !").to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn no_exponential_backtracking() {
        let d = ignore(&format!("{}b\n", "*a".repeat(30)));
        assert!(!d.is_excluded(&"a".repeat(200)));
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("a/b/", "a/b"),
            ("./a//b", "a/b"),
            ("a/../..", ".."),
            ("/../x", "/x"),
            ("", "."),
            ("/", "/"),
            ("a/./b/../c", "a/c"),
            ("../../x", "../../x"),
        ] {
            assert_eq!(clean_slash_path(input), want, "{input}");
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for value_len in [1usize, 90, 91, 92, 93, 94, 95, 96, 990, 995, 996, 997, 1000] {
            let value = "v".repeat(value_len);
            let mut out = Vec::new();
            pax_record(&mut out, "path", &value);
            let text = String::from_utf8(out.clone()).expect("ascii");
            let (len, _) = text.split_once(' ').expect("length prefix");
            assert_eq!(len.parse::<usize>().expect("number"), out.len(), "value of {value_len}");
        }
    }

    #[test]
    fn ustar_header_fields_and_checksum() {
        let h = ustar_header("dir/", b'5', 0o755, 0, "");
        assert_eq!(&h[0..4], b"dir/");
        assert_eq!(&h[100..108], b"0000755\0");
        assert_eq!(&h[108..116], b"0000000\0");
        assert_eq!(&h[136..148], b"00000000000\0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        let stored = std::str::from_utf8(&h[148..154]).expect("octal");
        let mut blank = h;
        blank[148..156].fill(b' ');
        let sum: u32 = blank.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).expect("octal"), sum);
        // Truncation never splits a character.
        let mut field = [0u8; 3];
        put_truncated(&mut field, "aé");
        assert_eq!(&field, "aé".as_bytes());
        let mut field = [0u8; 2];
        put_truncated(&mut field, "aé");
        assert_eq!(&field, b"a\0");
    }

    #[test]
    fn tag_uses_digest_prefix_without_build_args() {
        let ctx = BuildContext { entries: Vec::new(), digest: digest_of(&[]), size: 0 };
        assert_eq!(ctx.tag(&BTreeMap::new()), format!("ctx-{}", &ctx.digest()[..16]));
        let args = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_ne!(ctx.tag(&args), ctx.tag(&BTreeMap::new()));
        // Name/value boundaries are unambiguous.
        let ab = BTreeMap::from([("AB".to_owned(), String::new())]);
        let a_b = BTreeMap::from([("A".to_owned(), "B".to_owned())]);
        assert_ne!(ctx.tag(&ab), ctx.tag(&a_b));
    }
}
