//! Container images for pipelines: build contexts, content-addressed tags,
//! and pinning the built references into the compiled pipeline.
//!
//! * [`context`]: the build context of one image, assembled deterministically
//!   (sorted entries, normalised modes and times, `.dockerignore`, no VCS or
//!   `__pycache__` folders), and its content hash, which names the image tag.
//! * [`pin`]: rewriting the executor images of a compiled pipeline to the
//!   built references, and warning about images that are neither configured
//!   nor fully qualified.
//! * [`builder`]: [`kfops_core::ImageBuilder`]s over a build backend: `local`
//!   (docker, podman or buildah) and `kaniko` (in-cluster Jobs).
//! * [`s3`]: uploading build contexts to S3-compatible storage (SigV4).
//! * [`kaniko`]: Kaniko Job manifests and running them through the Kubernetes API.
//! * [`registry`]: whether a tag already exists in its registry (OCI
//!   distribution API with token auth), so unchanged images are not rebuilt.

pub mod builder;
pub mod context;
pub mod kaniko;
pub mod pin;
pub mod registry;
pub mod s3;
#[cfg(feature = "testing")]
pub mod testregistry;
