//! The kfops repository configuration file (`kfops.yaml`).
//!
//! * [`model`]: the typed configuration ([`Config`]) — the single source of
//!   truth for keys, types, defaults and documentation.
//! * [`ConfigLoader`]: finds the file, layers `--config-override` files,
//!   `KFOPS_*` environment variables, `--set` assignments and flags on top
//!   (with figment), and validates the result against the JSON Schema
//!   generated from the types, reporting **every** problem with its origin
//!   (`file:line:column`, variable or flag) and a suggestion where one helps.
//! * [`json_schema`]: the JSON Schema, committed as `schema/kfops.schema.json`
//!   for editors.
//!
//! This crate knows nothing about Kubeflow, Git hosts or Kubernetes; it only
//! reads files from the project root to check that configured paths exist.

mod error;
mod load;
pub mod model;
mod validate;
mod yaml;

pub use error::{ConfigError, Diagnostic, FileRole, Origin, Severity};
pub use load::{CONFIG_FILE_NAMES, ConfigLoader, ENV_PREFIX, FlagValue, LoadedConfig};
pub use model::{Config, Secret};

/// The JSON Schema (draft 2020-12) of the configuration file.
pub fn json_schema() -> serde_json::Value {
    schema_ref().clone()
}

/// The schema, generated once per process.
pub(crate) fn schema_ref() -> &'static serde_json::Value {
    static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(serde_json::Value::Null))
}

/// The JSON Schema as committed in `schema/kfops.schema.json` (pretty, trailing newline).
pub fn json_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(schema_ref()).unwrap_or_default();
    s.push('\n');
    s
}
