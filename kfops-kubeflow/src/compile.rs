//! Compiling pipeline sources into IR.
//!
//! * `.py`: the real KFP compiler (`kfp dsl compile`) runs in a child Python
//!   process. The interpreter is `$KFOPS_PYTHON` if set, else the first of
//!   `python3`, `python` on `PATH`. The user's module runs inside it, so the
//!   child gets no stdin, is killed on timeout or when the caller gives up, and
//!   can be given a scrubbed environment and a [`Sandbox`] (the bot does
//!   both: the PR's code sees no tokens, no files of the bot, no network).
//! * `.yaml`/`.yml`/`.json`: an already compiled pipeline, used as it is.
//!
//! Either way the result is parsed into [`PipelineJob`] so callers get a
//! typed, validated pipeline, and the exact text for publishing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::error::CompileError;
use crate::ir::PipelineJob;

/// Environment variable naming the Python interpreter to compile with.
pub const PYTHON_ENV: &str = "KFOPS_PYTHON";

/// Exit status the bootstrap uses when `kfp` is missing or too old.
const KFP_MISSING_EXIT: i32 = 97;

/// Runs inside the child interpreter: checks `kfp`, runs its `dsl compile`
/// command, and on failure prints only the traceback frames of the user's
/// code (not kfp's internals), then the exception.
const BOOTSTRAP: &str = r#"import sys, traceback
try:
    import kfp
    from kfp.cli.compile_ import compile_ as command
except Exception as e:
    sys.stderr.write("cannot import kfp (%s: %s)\n" % (type(e).__name__, e)); sys.exit(97)
major = kfp.__version__.split(".")[0]
if not major.isdigit() or int(major) < 2:
    sys.stderr.write("kfp %s is installed, but kfops needs kfp 2.x\n" % kfp.__version__); sys.exit(97)
try:
    command.main(args=sys.argv[1:], prog_name="kfp dsl compile", standalone_mode=False)
except Exception as e:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "site-packages" not in f.filename and not f.filename.startswith("<")]
    if frames:
        sys.stderr.write("Traceback (pipeline code, most recent call last):\n" + "".join(traceback.format_list(frames)))
    sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
    sys.exit(1)
"#;

/// Environment variables a scrubbed compiler process keeps.
const SCRUBBED_KEEP: &[&str] =
    &["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "VIRTUAL_ENV", "PYTHONPATH"];

/// System directories a sandboxed compiler sees (read-only), when they exist.
const SANDBOX_SYSTEM: &[&str] =
    &["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime"];

/// Confinement for compiling code from an untrusted checkout (what the bot
/// compiles comes from a pull request).
///
/// The compiler runs under [bubblewrap](https://github.com/containers/bubblewrap)
/// in new user, PID, network, IPC, UTS and mount namespaces, with no
/// capabilities, in its own session, and dies with its parent. It sees only
/// the system directories, the interpreter's installation, the checkout
/// (read-only), an empty `/tmp` and the folder it writes the IR to: not the
/// caller's files (state, keys, kubeconfig), not the caller's processes
/// (so not `/proc/<pid>/environ`), and no network to send anything to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    bwrap: PathBuf,
    read_only: Vec<PathBuf>,
}

impl Sandbox {
    /// A sandbox using the `bwrap` executable at `program` (a path, or a name looked up on `PATH`).
    pub fn bubblewrap(program: impl Into<PathBuf>) -> Self {
        Sandbox { bwrap: program.into(), read_only: Vec::new() }
    }

    /// Also show `path` (read-only) inside, e.g. a shared package cache.
    pub fn read_only(mut self, path: impl Into<PathBuf>) -> Self {
        self.read_only.push(path.into());
        self
    }

    /// The `bwrap` executable this sandbox runs.
    pub fn program(&self) -> &Path {
        &self.bwrap
    }

    /// Check that bubblewrap runs here (installed, namespaces allowed): the
    /// bot calls this at start so a broken sandbox is a start-up error, not a
    /// failure of every command.
    pub async fn probe(&self) -> Result<(), CompileError> {
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
        self.system_binds(&mut cmd);
        cmd.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "true"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        let out = match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(CompileError::SandboxUnavailable {
                    program: self.bwrap.clone(),
                    reason: format!("cannot start it: {e}"),
                });
            }
            Err(_) => {
                return Err(CompileError::SandboxUnavailable {
                    program: self.bwrap.clone(),
                    reason: "it did not finish within 30 s".into(),
                });
            }
        };
        if out.status.success() {
            Ok(())
        } else {
            Err(CompileError::SandboxUnavailable {
                program: self.bwrap.clone(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    fn system_binds(&self, cmd: &mut Command) {
        for dir in SANDBOX_SYSTEM {
            cmd.args(["--ro-bind-try", dir, dir]);
        }
    }

    /// The `bwrap` command running `python` in `cwd`, writing into `out_dir`.
    fn command(&self, python: &Path, cwd: &Path, out_dir: &Path) -> Command {
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
        self.system_binds(&mut cmd);
        // /tmp first: the binds below may live under it.
        cmd.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        let mut read_only: Vec<PathBuf> = interpreter_roots(python);
        read_only.extend(self.read_only.iter().cloned());
        read_only.push(cwd.to_owned());
        for dir in read_only {
            cmd.arg("--ro-bind-try").arg(&dir).arg(&dir);
        }
        cmd.arg("--bind").arg(out_dir).arg(out_dir);
        cmd.arg("--chdir").arg(cwd);
        cmd.args(["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--"]);
        cmd.arg(python);
        cmd
    }
}

/// The installation folders of an interpreter (a virtualenv's root, and the
/// root of the interpreter it links to), so a sandbox can show them.
fn interpreter_roots(python: &Path) -> Vec<PathBuf> {
    let root_of = |p: &Path| -> Option<PathBuf> {
        let bin = p.parent()?;
        if bin.file_name().is_some_and(|n| n == "bin") {
            bin.parent().map(Path::to_owned)
        } else {
            Some(bin.to_owned())
        }
    };
    let mut roots = Vec::new();
    if let Some(r) = root_of(python) {
        roots.push(r);
    }
    if let Ok(real) = std::fs::canonicalize(python)
        && let Some(r) = root_of(&real)
        && !roots.contains(&r)
    {
        roots.push(r);
    }
    roots.retain(|r| r != Path::new("/") && !r.as_os_str().is_empty());
    roots
}

/// Find `name` on the `PATH` given (or the process's).
pub fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let path = path.map(std::ffi::OsStr::to_owned).or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// What kind of source a pipeline path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A Python file compiled with `kfp dsl compile`.
    Python,
    /// A compiled pipeline in YAML.
    Yaml,
    /// A compiled pipeline in JSON.
    Json,
}

impl SourceKind {
    /// Classify by file extension.
    pub fn of(path: &Path) -> Option<SourceKind> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "py" => Some(SourceKind::Python),
            "yaml" | "yml" => Some(SourceKind::Yaml),
            "json" => Some(SourceKind::Json),
            _ => None,
        }
    }
}

/// A compiled pipeline.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The parsed IR.
    pub job: PipelineJob,
    /// The IR text exactly as the compiler wrote it (or as the file holds it).
    pub text: String,
    /// What it was compiled from.
    pub kind: SourceKind,
    /// The interpreter used, for `.py` sources.
    pub python: Option<PathBuf>,
    /// What the compiler printed on stderr while succeeding (deprecation warnings and such).
    pub compiler_messages: String,
    /// How long compilation took.
    pub elapsed: Duration,
}

/// Compiles pipeline sources. Cheap to build; holds only settings.
#[derive(Debug, Clone)]
pub struct Compiler {
    python: Option<PathBuf>,
    timeout: Duration,
    scrub_env: bool,
    env: Vec<(OsString, OsString)>,
    sandbox: Option<Sandbox>,
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler {
            python: None,
            timeout: Duration::from_secs(300),
            scrub_env: false,
            env: std::env::vars_os().collect(),
            sandbox: None,
        }
    }
}

impl Compiler {
    /// A compiler with the process environment and a 5-minute timeout.
    pub fn new() -> Self {
        Compiler::default()
    }

    /// Use this interpreter instead of `$KFOPS_PYTHON` / `python3` / `python`.
    pub fn python(mut self, path: impl Into<PathBuf>) -> Self {
        self.python = Some(path.into());
        self
    }

    /// Give up (and kill the compiler) after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Run the compiler with only a minimal environment (PATH, HOME, locale,
    /// TMPDIR, VIRTUAL_ENV, PYTHONPATH), for compiling untrusted code.
    pub fn scrub_env(mut self, scrub: bool) -> Self {
        self.scrub_env = scrub;
        self
    }

    /// Run the compiler inside `sandbox` (see [`Sandbox`]); implies nothing about
    /// the environment, so combine with [`Compiler::scrub_env`].
    pub fn sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Replace the environment the compiler inherits and reads `KFOPS_PYTHON` from.
    pub fn env(mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// The interpreters that will be tried, in order.
    pub fn candidates(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.python {
            return vec![p.clone()];
        }
        if let Some((_, v)) = self.env.iter().find(|(k, v)| k == PYTHON_ENV && !v.is_empty()) {
            return vec![PathBuf::from(v)];
        }
        vec![PathBuf::from("python3"), PathBuf::from("python")]
    }

    /// Compile `source` (absolute, or relative to `cwd`), running the compiler in `cwd`.
    ///
    /// `function` selects the `@dsl.pipeline` function when the module defines several.
    pub async fn compile(&self, source: &Path, function: Option<&str>, cwd: &Path) -> Result<Compiled, CompileError> {
        let started = Instant::now();
        let joined = if source.is_absolute() { source.to_owned() } else { cwd.join(source) };
        // The compiler runs inside `cwd`, so hand it an absolute path (a relative `cwd` would apply twice).
        let path = std::path::absolute(&joined).map_err(|e| io("resolving", &joined, e))?;
        if !path.is_file() {
            return Err(CompileError::SourceMissing { path: source.to_owned() });
        }
        let kind = SourceKind::of(&path).ok_or_else(|| CompileError::UnsupportedSource { path: source.to_owned() })?;
        let (text, python, compiler_messages) = match kind {
            SourceKind::Yaml | SourceKind::Json => {
                let text = tokio::fs::read_to_string(&path).await.map_err(|e| io("reading", &path, e))?;
                (text, None, String::new())
            }
            SourceKind::Python => {
                let (text, python, messages) = self.run_kfp(&path, source, function, cwd).await?;
                (text, Some(python), messages)
            }
        };
        let job = match kind {
            SourceKind::Json => PipelineJob::from_json_str(&text),
            _ => PipelineJob::from_yaml_str(&text),
        }
        .map_err(|e| e.in_file(source))?;
        Ok(Compiled { job, text, kind, python, compiler_messages, elapsed: started.elapsed() })
    }

    async fn run_kfp(
        &self,
        path: &Path,
        shown: &Path,
        function: Option<&str>,
        cwd: &Path,
    ) -> Result<(String, PathBuf, String), CompileError> {
        let out_dir =
            tempfile::tempdir().map_err(|e| io("creating a temporary folder for", Path::new("compiler output"), e))?;
        let out_file = out_dir.path().join("pipeline.yaml");
        let mut tried = Vec::new();
        let path_var = self.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
        for python in self.candidates() {
            let mut cmd = match &self.sandbox {
                None => Command::new(&python),
                Some(sandbox) => {
                    // Inside, the interpreter is found by absolute path only.
                    let resolved = if python.components().count() > 1 {
                        Some(std::path::absolute(&python).unwrap_or_else(|_| python.clone()))
                    } else {
                        find_on_path(&python.to_string_lossy(), path_var)
                    };
                    let Some(resolved) = resolved.filter(|p| p.is_file()) else {
                        tried.push(python.display().to_string());
                        continue;
                    };
                    sandbox.command(&resolved, cwd, out_dir.path())
                }
            };
            cmd.arg("-W").arg("ignore::FutureWarning").arg("-c").arg(BOOTSTRAP);
            cmd.arg("--py").arg(path).arg("--output").arg(&out_file);
            if let Some(f) = function {
                cmd.arg("--function").arg(f);
            }
            cmd.current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
            cmd.env_clear();
            for (k, v) in &self.env {
                if !self.scrub_env || SCRUBBED_KEEP.iter().any(|keep| k == keep) {
                    cmd.env(k, v);
                }
            }
            cmd.env("PYTHONDONTWRITEBYTECODE", "1");
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tried.push(python.display().to_string());
                    continue;
                }
                Err(e) => return Err(io("starting", &python, e)),
            };
            let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
                Ok(r) => r.map_err(|e| io("running", &python, e))?,
                Err(_) => return Err(CompileError::Timeout { path: shown.to_owned(), secs: self.timeout.as_secs() }),
            };
            let stderr = String::from_utf8_lossy(&output.stderr).trim_end().to_owned();
            let stdout = String::from_utf8_lossy(&output.stdout).trim_end().to_owned();
            if output.status.code() == Some(KFP_MISSING_EXIT) {
                return Err(CompileError::KfpMissing { python: python.display().to_string(), reason: stderr });
            }
            if !output.status.success() {
                let combined = [stdout.as_str(), stderr.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n");
                let hint = if combined.contains("specify which pipeline or component to compile using --function") {
                    Some("name the pipeline function to compile: `pipeline.pipeline_function_name` in kfops.yaml, or `--function NAME`".to_owned())
                } else if combined.contains("not found in module") {
                    Some("the pipeline function name (`pipeline.pipeline_function_name` or `--function`) must name a `@dsl.pipeline` function in the file".to_owned())
                } else {
                    None
                };
                return Err(CompileError::CompilerFailed {
                    path: shown.to_owned(),
                    status: output.status.code().map_or_else(|| "a signal".to_owned(), |c| format!("status {c}")),
                    output: tail_lines(&combined, 60),
                    hint,
                });
            }
            let text = match tokio::fs::read_to_string(&out_file).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(CompileError::CompilerFailed {
                        path: shown.to_owned(),
                        status: "status 0".into(),
                        output: format!(
                            "kfp wrote no pipeline; does the module exit early (e.g. `sys.exit()` at import)?\n{stderr}"
                        )
                        .trim_end()
                        .to_owned(),
                        hint: None,
                    });
                }
                Err(e) => return Err(io("reading the compiler output", &out_file, e)),
            };
            return Ok((text, python, stderr));
        }
        Err(CompileError::PythonMissing { path: shown.to_owned(), tried: tried.join(", ") })
    }
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> CompileError {
    CompileError::Io { action, path: path.to_owned(), source }
}

/// The last `n` lines of `text` (a traceback's end is what explains it).
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= n {
        return text.to_owned();
    }
    format!("[… {} earlier lines omitted]\n{}", lines.len() - n, lines[lines.len() - n..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_kinds_by_extension() {
        assert_eq!(SourceKind::of(Path::new("a/p.py")), Some(SourceKind::Python));
        assert_eq!(SourceKind::of(Path::new("p.YAML")), Some(SourceKind::Yaml));
        assert_eq!(SourceKind::of(Path::new("p.yml")), Some(SourceKind::Yaml));
        assert_eq!(SourceKind::of(Path::new("p.json")), Some(SourceKind::Json));
        assert_eq!(SourceKind::of(Path::new("p.zip")), None);
        assert_eq!(SourceKind::of(Path::new("pipeline")), None);
    }

    #[test]
    fn interpreter_candidates() {
        let c = Compiler::new().env(vec![]);
        assert_eq!(c.candidates(), vec![PathBuf::from("python3"), PathBuf::from("python")]);
        let c = Compiler::new().env(vec![(PYTHON_ENV.into(), "/opt/py/bin/python".into())]);
        assert_eq!(c.candidates(), vec![PathBuf::from("/opt/py/bin/python")]);
        let c = c.python("/x/python");
        assert_eq!(c.candidates(), vec![PathBuf::from("/x/python")]);
    }

    #[test]
    fn long_compiler_output_keeps_its_end() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail_lines(&text, 3);
        assert_eq!(t, "[… 97 earlier lines omitted]\nline 97\nline 98\nline 99");
    }
}
