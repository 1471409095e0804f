//! Container images for pipelines: build contexts, content-addressed tags,
//! and pinning the built references into the compiled pipeline.
//!
//! * [`context`]: the build context of one image, assembled deterministically
//!   (sorted entries, normalised modes and times, `.dockerignore`, no VCS or
//!   `__pycache__` folders), and its content hash, which names the image tag.
//! * [`pin`]: rewriting the executor images of a compiled pipeline to the
//!   built references, and warning about images that are neither configured
//!   nor fully qualified.
//! * [`builder`]: the `local` [`kfops_core::ImageBuilder`] (docker, podman or buildah).
//! * [`registry`]: whether a tag already exists in its registry (OCI
//!   distribution API with token auth), so unchanged images are not rebuilt.

pub mod builder;
pub mod context;
pub mod pin;
pub mod registry;
#[cfg(feature = "testing")]
pub mod testregistry;
