//! The committed JSON Schema is what the code generates.

use std::path::PathBuf;

#[test]
fn committed_schema_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema/kfops.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == kfops_config::json_schema_text(),
        "schema/kfops.schema.json is out of date with the configuration types; run `cargo xtask codegen` and commit the result"
    );
}

#[test]
fn schema_describes_every_key() {
    fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, child) in props {
                if child.get("description").is_none() {
                    missing.push(format!("{path}.{k}"));
                }
            }
        }
        if let Some(defs) = v.get("$defs").and_then(|d| d.as_object()) {
            for (name, def) in defs {
                walk(def, name, missing);
            }
        }
    }
    let mut missing = Vec::new();
    walk(&kfops_config::json_schema(), "Config", &mut missing);
    assert!(missing.is_empty(), "keys without a description: {missing:?}");
}
