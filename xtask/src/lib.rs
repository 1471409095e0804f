//! Developer tasks for the kfops workspace, as a library so tests can call them.
//!
//! * [`codegen`]: write (or check) generated files (`schema/kfops.schema.json`).
//! * [`bench`]: the local-runner benchmark against kfp.local.
//! * [`bench_bot`]: the bot's webhook front door under load.
//! * [`tidy`]: check the architecture invariants of `ARCHITECTURE.md` against
//!   `cargo metadata` and the sources.

pub mod bench;
pub mod bench_bot;
pub mod codegen;
pub mod tidy;

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}
