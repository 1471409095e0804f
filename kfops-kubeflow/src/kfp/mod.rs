//! Kubeflow Pipelines over its v2beta1 REST API.
//!
//! * [`client`]: the typed client (publish, experiments, runs, auth, retries).
//! * [`types`]: the API's JSON messages as the server writes them.
//! * [`backend`]: [`kfops_core::PipelineBackend`] on top of the client.
//! * `swagger` and `testserver` (feature `testing`): a checker of requests
//!   against the official swagger, and a stateful KFP API server for tests.

pub mod backend;
pub mod client;
#[cfg(feature = "testing")]
pub mod swagger;
#[cfg(feature = "testing")]
pub mod testserver;
pub mod types;
