//! The bot's image builder: the repository says which images, the bot's
//! configuration says how they are built and where they may be pushed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use kfops_core::image::{BuiltImage, ImageSpec};
use kfops_core::{Error, ErrorKind, ImageBuilder as _, Progress};
use kfops_kubeflow::image::builder::{
    ContextImageBuilder, KanikoBackend, KanikoSettings, LocalImageBuilder, find_tool,
};
use kfops_kubeflow::image::registry::RegistryClient;

use crate::config::{BuilderKind, ImageBuilderSection};
use crate::error::ConfigError;
use crate::worker::ImageBuilds;

/// [`ImageBuilds`] from the bot's `image_builder` section.
pub struct ConfiguredImageBuilds {
    section: ImageBuilderSection,
    s3_secret: Option<String>,
}

impl std::fmt::Debug for ConfiguredImageBuilds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredImageBuilds")
            .field("section", &self.section)
            .field("s3_secret", &self.s3_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ConfiguredImageBuilds {
    /// Read the section's secrets now.
    pub fn new(section: ImageBuilderSection) -> Result<Self, ConfigError> {
        let s3_secret = match section.kaniko.as_ref().and_then(|k| k.s3_secret_key.as_ref()) {
            Some(source) => Some(source.read("image_builder.kaniko.s3_secret_key")?),
            None => None,
        };
        Ok(ConfiguredImageBuilds { section, s3_secret })
    }
}

fn backend_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Other, e.to_string())
}

#[async_trait]
impl ImageBuilds for ConfiguredImageBuilds {
    fn allows_registry(&self, registry: &str) -> bool {
        let allowed = &self.section.allowed_registries;
        allowed.is_empty()
            || allowed.iter().any(|prefix| {
                registry == prefix.trim_end_matches('/')
                    || registry.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
            })
    }

    async fn build(
        &self,
        root: &Path,
        build_args: &BTreeMap<String, String>,
        images: &[ImageSpec],
        progress: &dyn Progress,
    ) -> Result<Vec<BuiltImage>, Error> {
        let ib = &self.section;
        // Whether to talk plain HTTP to a registry is the bot's decision, not the PR's.
        let images: Vec<ImageSpec> =
            images.iter().cloned().map(|spec| ImageSpec { insecure: ib.insecure, ..spec }).collect();
        let images = images.as_slice();
        let registry = RegistryClient::new(ib.insecure, None).map_err(backend_error)?;
        match ib.builder {
            BuilderKind::Local => {
                let tool = find_tool(ib.tool.as_deref()).map_err(backend_error)?;
                LocalImageBuilder::new(tool, root.to_owned(), build_args.clone(), registry)
                    .build(images, progress)
                    .await
            }
            BuilderKind::Kaniko => {
                let k = ib.kaniko.as_ref().ok_or_else(|| {
                    Error::new(ErrorKind::InvalidInput, "image_builder.kaniko is missing in the bot configuration")
                })?;
                let settings = KanikoSettings {
                    namespace: k.namespace.clone(),
                    credentials_secret: k.credentials_secret.clone(),
                    registry_secret: k.registry_secret.clone(),
                    timeout: Duration::from_secs(k.timeout_seconds),
                    bucket: k.context_bucket.clone(),
                    s3_endpoint: k.s3_endpoint.clone(),
                    s3_credentials: match (&k.s3_access_key, &self.s3_secret) {
                        (Some(a), Some(s)) => Some((a.clone(), s.clone())),
                        _ => None,
                    },
                };
                let backend = KanikoBackend::connect(settings).await.map_err(backend_error)?;
                ContextImageBuilder::with_backend(backend, root.to_owned(), build_args.clone(), registry)
                    .build(images, progress)
                    .await
            }
        }
    }
}
