//! Pinning built images into a compiled pipeline.
//!
//! After the images of `image_builder` are built (content-addressed tags),
//! every executor whose image refers to one of them — by bare name, or under
//! the configured registry, with or without a tag or digest — is rewritten to
//! the exact built reference, so a run always uses the images built from the
//! same commit. Images that are neither built by kfops nor pinned to a tag or
//! digest get a warning: such a run can change when someone pushes over the tag.

use std::fmt;

use kfops_core::image::BuiltImage;

use crate::ir::PipelineSpec;

/// A parsed image reference: `[registry/]path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (`registry.example.com`, `localhost:5000`), if the reference names one.
    pub registry: Option<String>,
    /// Repository path (`team/trainer`, `python`).
    pub path: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse a reference the way Docker does: the first path component is a
    /// registry if it contains `.` or `:`, or is `localhost`.
    pub fn parse(reference: &str) -> ImageRef {
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d.to_owned())),
            None => (reference, None),
        };
        // A tag is after the last `:` that comes after the last `/`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, tail)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (Some(first.to_owned()), tail.to_owned())
            }
            _ => (None, name.to_owned()),
        };
        ImageRef { registry, path, tag, digest }
    }

    /// `registry/path` without tag or digest.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// Whether the reference pins a version: a digest, or a tag other than `latest`.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some() || self.tag.as_deref().is_some_and(|t| t != "latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// What [`pin_images`] changed and what it warns about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinReport {
    /// `(executor label, image before, image after)` for every rewritten executor.
    pub pinned: Vec<(String, String, String)>,
    /// One message per executor image that is neither built by kfops nor pinned.
    pub warnings: Vec<String>,
}

/// Whether `image` (as written in the pipeline) means the configured image `name` under `registry`.
pub fn refers_to(image: &str, name: &str, registry: &str) -> bool {
    let repo = ImageRef::parse(image).repository();
    let registry = registry.trim_end_matches('/');
    repo == name || (!registry.is_empty() && repo == format!("{registry}/{name}"))
}

/// Rewrite the executor images of `spec` that refer to `built` images (configured under
/// `registry`) to the built references, and warn about unpinned images that are not built.
pub fn pin_images(spec: &mut PipelineSpec, built: &[BuiltImage], registry: &str) -> PinReport {
    let mut report = PinReport::default();
    if let Some(deployment) = spec.deployment_spec.as_mut() {
        for (label, executor) in &mut deployment.executors {
            let Some(container) = executor.container.as_mut() else { continue };
            if let Some(b) = built.iter().find(|b| refers_to(&container.image, &b.name, registry))
                && container.image != b.reference
            {
                let before = std::mem::replace(&mut container.image, b.reference.clone());
                report.pinned.push((label.clone(), before, b.reference.clone()));
            }
        }
    }
    let names: Vec<&str> = built.iter().map(|b| b.name.as_str()).collect();
    report.warnings = image_warnings(spec, &names, registry);
    report
}

/// One warning per executor image that is neither one of the `configured` images (under
/// `registry`) nor pinned to a tag or digest.
pub fn image_warnings(spec: &PipelineSpec, configured: &[&str], registry: &str) -> Vec<String> {
    let Some(deployment) = spec.deployment_spec.as_ref() else { return Vec::new() };
    deployment
        .executors
        .iter()
        .filter_map(|(label, executor)| executor.container.as_ref().map(|c| (label, c.image.as_str())))
        .filter(|(_, image)| !configured.iter().any(|name| refers_to(image, name, registry)))
        .filter(|(_, image)| !ImageRef::parse(image).is_pinned())
        .map(|(label, image)| format!(
            "executor `{label}` uses the image `{image}`, which kfops does not build and which is not pinned to a tag or digest; runs may change when the image is pushed again (use a version tag or a digest)"
        ))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s)
    }

    #[test]
    fn references_parse_like_docker() {
        assert_eq!(
            r("python:3.11-slim"),
            ImageRef { registry: None, path: "python".into(), tag: Some("3.11-slim".into()), digest: None }
        );
        assert_eq!(r("localhost:5000/team/trainer").registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r("localhost:5000/team/trainer").tag, None);
        assert_eq!(r("registry.example.com/team/trainer:v1@sha256:ab").digest.as_deref(), Some("sha256:ab"));
        assert_eq!(r("registry.example.com/team/trainer:v1@sha256:ab").tag.as_deref(), Some("v1"));
        assert_eq!(r("team/trainer").registry, None, "docker hub namespaces are not registries");
        assert_eq!(r("gcr.io/kaniko-project/executor:latest").to_string(), "gcr.io/kaniko-project/executor:latest");
        assert!(!r("alpine").is_pinned());
        assert!(!r("alpine:latest").is_pinned());
        assert!(r("alpine:3.20").is_pinned());
        assert!(r("alpine@sha256:00").is_pinned());
    }

    #[test]
    fn configured_images_are_recognised_with_or_without_registry_and_tag() {
        let reg = "registry.example.com/team/";
        for image in [
            "trainer",
            "trainer:latest",
            "trainer:v3",
            "registry.example.com/team/trainer",
            "registry.example.com/team/trainer:dev",
        ] {
            assert!(refers_to(image, "trainer", reg), "{image}");
        }
        for image in ["other/trainer", "registry.example.com/trainer", "trainer-gpu", "docker.io/library/python:3.11"] {
            assert!(!refers_to(image, "trainer", reg), "{image}");
        }
    }
}
