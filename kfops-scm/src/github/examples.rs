//! GitHub's recorded webhook deliveries (`@octokit/webhooks-examples`), for
//! tests and benchmarks (feature `testing`).
//!
//! `cargo xtask test` installs the package into `.npm-ref/` and points
//! `KFOPS_NPM_REFS` at its `node_modules`; without the variable the
//! workspace's `.npm-ref/node_modules` is used.

use std::path::PathBuf;

use serde_json::Value;

/// The version `cargo xtask test` installs.
pub const PACKAGE_VERSION: &str = "7.6.1";

/// Every recorded delivery of `event` (e.g. `issue_comment`), or why they cannot be read.
pub fn recorded(event: &str) -> Result<Vec<Value>, String> {
    Ok(all()?.into_iter().find(|(name, _)| name == event).map(|(_, examples)| examples).unwrap_or_default())
}

/// Every event of the package with its recorded deliveries.
pub fn all() -> Result<Vec<(String, Vec<Value>)>, String> {
    let refs = std::env::var_os("KFOPS_NPM_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.npm-ref/node_modules"));
    let path = refs.join("@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}; `cargo xtask test` installs the npm reference packages", path.display()))?;
    let events: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(events
        .into_iter()
        .filter_map(|mut e| {
            let name = e["name"].as_str()?.to_owned();
            let examples = e["examples"].take().as_array().cloned().unwrap_or_default();
            Some((name, examples))
        })
        .collect())
}

/// The first recorded `issue_comment` delivery with `action`, moved onto pull
/// request #1 of its repository (GitHub adds `issue.pull_request`) and saying `body`.
pub fn pr_comment(action: &str, body: &str) -> Result<Value, String> {
    let mut p = recorded("issue_comment")?
        .into_iter()
        .find(|p| p["action"] == action)
        .ok_or_else(|| format!("no recorded issue_comment `{action}` delivery"))?;
    let number = p["issue"]["number"].clone();
    let repo = p["repository"]["full_name"].as_str().unwrap_or_default().to_owned();
    p["issue"]["pull_request"] = serde_json::json!({
        "url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
        "html_url": format!("https://github.com/{repo}/pull/{number}"),
        "diff_url": format!("https://github.com/{repo}/pull/{number}.diff"),
        "patch_url": format!("https://github.com/{repo}/pull/{number}.patch"),
        "merged_at": null
    });
    p["comment"]["body"] = Value::from(body);
    Ok(p)
}
