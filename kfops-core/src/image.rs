//! Container images built for a pipeline: the vocabulary of [`crate::ImageBuilder`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One image to build, as configured in the `image_builder` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Image name (the repository part, without registry or tag).
    pub name: String,
    /// Folder (relative to the project root) holding the `Dockerfile`; it becomes the build-context root.
    pub dockerfile_folder: PathBuf,
    /// Extra folders copied into the context under their base names.
    pub other_folders: Vec<PathBuf>,
    /// The registry prefix to push to, e.g. `registry.example.com/team`.
    pub registry: String,
    /// Push over plain HTTP / without TLS verification.
    pub insecure: bool,
}

/// An image that exists in the registry after [`crate::ImageBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    /// The configured image name.
    pub name: String,
    /// The full reference the pipeline must use, `registry/name:tag` (or `@sha256:…`).
    pub reference: String,
    /// `false` when the tag already existed and the build was skipped.
    pub built: bool,
}
