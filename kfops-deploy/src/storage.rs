//! The model storage-URI template: `deployment.storage_uri`.
//!
//! Variables: `{run_id}` (the pipeline run that trained the model),
//! `{version_id}` (its pipeline version), `{sha}` (the commit) and `{pr}` (the
//! pull-request number). `{{` and `}}` are literal braces. Values must be safe
//! path segments, so a template can never be steered to another bucket or path.

use std::fmt;

use crate::error::TemplateError;

/// Where kfops 0.1 stored models; the default template.
pub const DEFAULT_STORAGE_URI: &str = "s3://trained-models/{run_id}/";

/// The variables a template may use.
pub const VARIABLES: [&str; 4] = ["run_id", "version_id", "sha", "pr"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(&'static str),
}

/// A parsed storage-URI template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUriTemplate {
    source: String,
    pieces: Vec<Piece>,
}

/// Values for the template variables of one deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateVars {
    /// The run that trained the model.
    pub run_id: Option<String>,
    /// The pipeline version of that run.
    pub version_id: Option<String>,
    /// The commit.
    pub sha: Option<String>,
    /// The pull request number.
    pub pr: Option<u64>,
}

impl StorageUriTemplate {
    /// Parse a template, rejecting unknown variables and unbalanced braces.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let chars: Vec<char> = template.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '{' if chars.get(i + 1) == Some(&'{') => {
                    text.push('{');
                    i += 2;
                }
                '}' if chars.get(i + 1) == Some(&'}') => {
                    text.push('}');
                    i += 2;
                }
                '{' => {
                    let close = chars[i + 1..].iter().position(|c| *c == '}').map(|p| p + i + 1);
                    let Some(close) = close else {
                        return Err(TemplateError::Unbalanced { template: template.into(), position: i });
                    };
                    let name: String = chars[i + 1..close].iter().collect();
                    let Some(var) = VARIABLES.iter().find(|v| **v == name) else {
                        return Err(TemplateError::UnknownVariable {
                            template: template.into(),
                            suggestion: nearest(&name),
                            name,
                            known: VARIABLES.iter().map(|v| format!("{{{v}}}")).collect::<Vec<_>>().join(", "),
                        });
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Var(var));
                    i = close + 1;
                }
                '}' => return Err(TemplateError::Unbalanced { template: template.into(), position: i }),
                c => {
                    text.push(c);
                    i += 1;
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(StorageUriTemplate { source: template.into(), pieces })
    }

    /// The variables this template uses, in order of first use.
    pub fn variables(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for p in &self.pieces {
            if let Piece::Var(v) = p
                && !out.contains(v)
            {
                out.push(*v);
            }
        }
        out
    }

    /// Render with `vars`; every used variable must have a safe value.
    pub fn render(&self, vars: &TemplateVars) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(name) => {
                    let value = match *name {
                        "run_id" => vars.run_id.clone(),
                        "version_id" => vars.version_id.clone(),
                        "sha" => vars.sha.clone(),
                        _ => vars.pr.map(|n| n.to_string()),
                    };
                    let Some(value) = value else {
                        let why = if *name == "pr" {
                            "the deploy was not requested from a pull request"
                        } else {
                            "the run does not record it"
                        };
                        return Err(TemplateError::Missing {
                            template: self.source.clone(),
                            name: (*name).into(),
                            why: why.into(),
                        });
                    };
                    if value.is_empty()
                        || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                        || value.chars().all(|c| c == '.')
                    {
                        return Err(TemplateError::UnsafeValue { name: (*name).into(), value });
                    }
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

impl Default for StorageUriTemplate {
    fn default() -> Self {
        StorageUriTemplate {
            source: DEFAULT_STORAGE_URI.into(),
            pieces: vec![Piece::Text("s3://trained-models/".into()), Piece::Var("run_id"), Piece::Text("/".into())],
        }
    }
}

impl fmt::Display for StorageUriTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn nearest(name: &str) -> Option<String> {
    let lowered = name.to_lowercase();
    VARIABLES
        .iter()
        .map(|v| (strsim::levenshtein(&lowered, v), *v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v.to_owned())
}
