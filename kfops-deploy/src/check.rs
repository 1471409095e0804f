//! The inference check: before a new model gets traffic, ask it to answer.
//!
//! The rollout calls an [`InferenceCheck`] against the new revision only
//! (tag routing in Knative mode): readiness first, then the sample request
//! from `pre_deployment_test_sample_input_path`, sent with the V1 or V2
//! (Open Inference) protocol — configured, or detected from the sample's
//! shape — a few times, requiring HTTP 200 and, when configured, an
//! expected output. The [`CheckReport`] carries what the PR comment shows.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::CheckError;

/// The prediction protocol of a model server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// KServe V1: `GET /v1/models/{name}`, `POST /v1/models/{name}:predict` with `{"instances": …}`.
    V1,
    /// Open Inference Protocol (V2): `GET /v2/health/ready`, `GET /v2/models/{name}/ready`,
    /// `POST /v2/models/{name}/infer` with `{"inputs": [{name, shape, datatype, data}]}`.
    V2,
}

impl Protocol {
    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }
}

/// Where the model being checked answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    /// Base URL requests go to, e.g. `http://churn-model-predictor-latest.models.example.com`
    /// or a gateway address.
    pub base_url: String,
    /// `Host` header to send (when `base_url` is a gateway that routes by host), if any.
    pub host: Option<String>,
    /// The model name in the protocol paths (usually the InferenceService name).
    pub model_name: String,
}

/// What to send and what to require.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    /// The protocol; `None` detects it from the sample (`instances` → V1, `inputs` → V2).
    pub protocol: Option<Protocol>,
    /// The request body to send (the repository's sample file).
    pub sample: Value,
    /// Required output: the response body must contain this JSON (object keys recursively, arrays element-wise).
    pub expect: Option<Value>,
    /// How many prediction requests to send (at least 1); latency is reported over them.
    pub requests: u32,
    /// Limit for each request, and for waiting until the model reports ready.
    pub timeout: Duration,
}

/// What the check saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// The protocol used.
    pub protocol: Protocol,
    /// How many prediction requests were sent (all answered 200).
    pub requests: u32,
    /// Latencies of the prediction requests, in milliseconds, in order.
    pub latencies_ms: Vec<f64>,
    /// A short rendering of the (first) response body.
    pub output: String,
}

/// Checks a model server before it gets traffic.
#[async_trait]
pub trait InferenceCheck: Send + Sync {
    /// Readiness, then `settings.requests` predictions; `Err` says which step failed and why.
    async fn check(&self, target: &CheckTarget, settings: &CheckSettings) -> Result<CheckReport, CheckError>;
}
