//! Lightweight Python components: one cached virtualenv per package set.
//!
//! A lightweight component's command is the KFP bootstrap
//! `sh -c "<pip install …> && \"$0\" \"$@\"" sh -ec "<write the source, run kfp.dsl.executor_main>" <source> …`.
//! Running it as written would `pip install` on every task. The runner instead
//! reads the pip requirements from the first script, makes sure a virtualenv
//! with exactly those requirements exists (created once, reused by every task
//! and every run, keyed by interpreter and requirements), and runs the rest of
//! the component's own command (`sh -ec …`) with that virtualenv first on
//! `PATH`. No shell is added: the shells are the component's.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::Command;
use tokio::sync::Mutex;

use crate::compile::PYTHON_ENV;

/// A recognised lightweight-component command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lightweight {
    /// One `pip install` invocation's arguments per element, in order.
    pub(crate) requirements: Vec<Vec<String>>,
    /// The command to run once the requirements are met (the component's own `sh -ec …`).
    pub(crate) command: Vec<String>,
}

/// Flags that only change pip's output, not what is installed.
const NOISE_FLAGS: &[&str] = &["--quiet", "-q", "--no-warn-script-location", "--disable-pip-version-check"];

/// Recognise the KFP lightweight bootstrap in a resolved command line.
pub(crate) fn detect(argv: &[String]) -> Option<Lightweight> {
    let [sh, dash_c, script, rest @ ..] = argv else { return None };
    if sh != "sh" || dash_c != "-c" || !script.contains("pip install") || !script.trim_end().ends_with("\"$0\" \"$@\"")
    {
        return None;
    }
    if rest.is_empty() {
        return None;
    }
    let mut requirements = Vec::new();
    let mut remaining = script.as_str();
    while let Some(i) = remaining.find("pip install") {
        let after = &remaining[i + "pip install".len()..];
        let end = after.find("&&").unwrap_or(after.len());
        let args: Vec<String> =
            shell_words(&after[..end]).into_iter().filter(|a| !NOISE_FLAGS.contains(&a.as_str())).collect();
        if !args.is_empty() {
            requirements.push(args);
        }
        remaining = &after[end..];
    }
    Some(Lightweight { requirements, command: rest.to_vec() })
}

/// Split a POSIX-shell fragment into words (single and double quotes, backslashes).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        _ => cur.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Creates and caches virtualenvs for lightweight components.
#[derive(Debug, Clone)]
pub(crate) struct VenvCache {
    dir: PathBuf,
    base_python: PathBuf,
    locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl VenvCache {
    /// A cache in `dir`, creating virtualenvs from `base_python`.
    pub(crate) fn new(dir: PathBuf, base_python: PathBuf) -> Self {
        VenvCache { dir, base_python, locks: Arc::default() }
    }

    /// The default location: `$KFOPS_CACHE_DIR`, else `$XDG_CACHE_HOME/kfops`, else `~/.cache/kfops`, then `/venvs`.
    pub(crate) fn default_dir() -> PathBuf {
        let base = std::env::var_os("KFOPS_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|x| PathBuf::from(x).join("kfops"))
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kfops")))
                .unwrap_or_else(|| std::env::temp_dir().join("kfops-cache"))
        });
        base.join("venvs")
    }

    /// The default base interpreter: `$KFOPS_PYTHON`, else `python3`.
    pub(crate) fn default_python() -> PathBuf {
        std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| "python3".into())
    }

    /// The virtualenv for `requirements`, creating it on first use. Returns its folder.
    pub(crate) async fn ensure(&self, requirements: &[Vec<String>]) -> Result<PathBuf, String> {
        let key = self.key(requirements);
        let lock = {
            let mut locks = self.locks.lock().await;
            locks.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let target = self.dir.join(&key);
        if target.join(".kfops-ready").is_file() {
            return Ok(target);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("creating `{}`: {e}", self.dir.display()))?;
        let tmp = self.dir.join(format!("{key}.tmp-{}", super::util::uuid4()));
        let result = self.create(&tmp, requirements).await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, &target) {
            Ok(()) => Ok(target),
            // Another process finished the same virtualenv first: use theirs.
            Err(_) if target.join(".kfops-ready").is_file() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(target)
            }
            Err(e) => Err(format!("moving the new virtualenv to `{}`: {e}", target.display())),
        }
    }

    fn key(&self, requirements: &[Vec<String>]) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.base_python.hash(&mut h);
        requirements.hash(&mut h);
        format!("{:016x}", h.finish())
    }

    async fn create(&self, dir: &Path, requirements: &[Vec<String>]) -> Result<(), String> {
        run(Command::new(&self.base_python).arg("-m").arg("venv").arg(dir), "creating a virtualenv with")
            .await
            .map_err(|e| {
                format!("{e}; lightweight Python components need Python 3 with the venv module (set {PYTHON_ENV})")
            })?;
        let python = dir.join("bin/python");
        for args in requirements {
            run(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--no-warn-script-location",
                    ])
                    .args(args),
                "installing the component's packages with",
            )
            .await
            .map_err(|e| format!("{e} (pip install {})", args.join(" ")))?;
        }
        std::fs::write(dir.join(".kfops-ready"), format!("{}\n{requirements:?}\n", self.base_python.display()))
            .map_err(|e| format!("marking the virtualenv ready: {e}"))
    }
}

async fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{what} `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} `{program}` failed ({}): {}",
            out.status,
            super::util::last_lines(&String::from_utf8_lossy(&out.stderr), 15)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn kfp_bootstrap_is_recognised() {
        let script = "\nif ! [ -x \"$(command -v pip)\" ]; then\n    python3 -m ensurepip || python3 -m ensurepip --user || apt-get install python3-pip\nfi\n\nPIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet --no-warn-script-location 'kfp==2.17.3' '--no-deps' 'typing-extensions>=3.7.4,<5; python_version<\"3.9\"'  &&  python3 -m pip install --quiet --no-warn-script-location 'numpy==2.1' && \"$0\" \"$@\"\n";
        let argv = s(&["sh", "-c", script, "sh", "-ec", "program", "def f(): pass", "--executor_input", "{}"]);
        let lw = detect(&argv).expect("lightweight");
        assert_eq!(
            lw.requirements,
            vec![
                s(&["kfp==2.17.3", "--no-deps", "typing-extensions>=3.7.4,<5; python_version<\"3.9\""]),
                s(&["numpy==2.1"])
            ]
        );
        assert_eq!(lw.command, s(&["sh", "-ec", "program", "def f(): pass", "--executor_input", "{}"]));
    }

    #[test]
    fn other_commands_are_not_lightweight() {
        assert_eq!(detect(&s(&["sh", "-c", "echo hi"])), None);
        assert_eq!(detect(&s(&["python3", "-m", "kfp.dsl.executor_main"])), None);
        assert_eq!(detect(&s(&["sh", "-c", "pip install x && \"$0\" \"$@\""])), None, "nothing to run after");
    }

    #[test]
    fn shell_words_follow_posix_quoting() {
        assert_eq!(shell_words(r#" a 'b c' "d \"e\"" f\ g '' "#), s(&["a", "b c", "d \"e\"", "f g", ""]));
    }
}
