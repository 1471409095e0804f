//! Model deployments: the vocabulary of [`crate::DeployTarget`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pipeline::RunId;
use crate::scm::{PrRef, Sha};

/// The environment a model is deployed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// `/staging_deploy`: never merges the PR.
    Staging,
    /// `/deploy`: merges and closes the PR on success.
    Production,
}

impl Environment {
    /// Lowercase name, as used in configuration and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// The label that marks the PR currently deployed to this environment.
    pub fn label(self) -> &'static str {
        match self {
            Environment::Staging => "Deployed-to-staging",
            Environment::Production => "Deployed-to-production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to roll a trained model out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    /// Target environment.
    pub environment: Environment,
    /// The succeeded run whose model is deployed.
    pub run_id: RunId,
    /// The pipeline version id of that run, if known (for storage-URI templates).
    pub version_id: Option<String>,
    /// The pull request the deploy was requested from, if any.
    pub pr: Option<PrRef>,
    /// The commit the run was built from.
    pub sha: Option<Sha>,
}

/// What a finished deploy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployOutcome {
    /// Name of the serving resource (e.g. the InferenceService).
    pub service: String,
    /// Namespace it lives in.
    pub namespace: String,
    /// `true` for a first deploy (created), `false` for a canary rollout over an existing one.
    pub created: bool,
    /// The revision now serving 100 % of traffic, if the target has revisions.
    pub revision: Option<String>,
    /// The model's storage URI that was deployed.
    pub storage_uri: String,
    /// URL of the serving endpoint, if known.
    pub url: Option<String>,
    /// The revision that served before this deploy (what a rollback returns to), if any.
    pub previous_revision: Option<String>,
    /// The inference check's findings, one line each (protocol, status, latencies).
    pub checks: Vec<String>,
}
