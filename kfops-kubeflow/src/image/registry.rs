//! Asking a container registry whether an image tag exists (OCI distribution API).
//!
//! `HEAD /v2/<name>/manifests/<tag>` answers 200 when the tag exists and 404
//! when it does not. Registries that require authentication answer 401 with a
//! `WWW-Authenticate` challenge: `Bearer realm=…,service=…,scope=…` (Docker
//! Hub, GHCR, Harbor, ECR's token endpoint, the CNCF distribution registry
//! with token auth) — the client fetches a token from the realm (with basic
//! credentials when it has them) and repeats the request — or `Basic`.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use tokio::sync::Mutex;

use super::pin::ImageRef;
use crate::error::RegistryError;

/// Manifest media types a HEAD request accepts (OCI and Docker, single and multi-arch).
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Docker Hub's registry host, for references without a registry.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// User name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Asks registries whether tags exist.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    insecure: bool,
    credentials: Option<RegistryCredentials>,
    tokens: Mutex<HashMap<String, String>>,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
    /// `Basic realm="…"`.
    Basic,
}

impl Challenge {
    /// Parse a `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut fields: HashMap<String, String> = HashMap::new();
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], quoted[end + 1..].trim_start())
            } else {
                match after.find(',') {
                    Some(i) => (&after[..i], &after[i..]),
                    None => (after, ""),
                }
            };
            fields.insert(key.trim().to_ascii_lowercase(), value.to_owned());
            rest = next.trim_start_matches(',').trim_start();
        }
        Some(Challenge::Bearer {
            realm: fields.remove("realm")?,
            service: fields.remove("service"),
            scope: fields.remove("scope"),
        })
    }
}

impl RegistryClient {
    /// A client; `insecure` uses plain HTTP (the `image_builder.insecure` setting).
    pub fn new(insecure: bool, credentials: Option<RegistryCredentials>) -> Result<Self, RegistryError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RegistryError::Transport { url: String::new(), message: e.to_string() })?;
        Ok(RegistryClient { http, insecure, credentials, tokens: Mutex::new(HashMap::new()) })
    }

    /// The manifest URL of `image` (which must carry a tag or digest).
    pub fn manifest_url(&self, image: &ImageRef) -> Result<String, RegistryError> {
        let reference = image
            .digest
            .clone()
            .or_else(|| image.tag.clone())
            .ok_or_else(|| RegistryError::NoTag { image: image.to_string() })?;
        let (host, path) = match &image.registry {
            Some(r) => (r.as_str(), image.path.clone()),
            None if image.path.contains('/') => (DOCKER_HUB, image.path.clone()),
            None => (DOCKER_HUB, format!("library/{}", image.path)),
        };
        let scheme = if self.insecure { "http" } else { "https" };
        Ok(format!("{scheme}://{host}/v2/{path}/manifests/{reference}"))
    }

    /// Whether the tag (or digest) of `image` exists in its registry.
    pub async fn manifest_exists(&self, image: &ImageRef) -> Result<bool, RegistryError> {
        let url = self.manifest_url(image)?;
        let cached = self.tokens.lock().await.get(&image.repository()).cloned();
        let mut auth = cached.map(|t| format!("Bearer {t}"));
        for attempt in 0..2 {
            let mut request = self.http.head(&url).header(ACCEPT, MANIFEST_TYPES);
            if let Some(a) = &auth {
                request = request.header(AUTHORIZATION, a);
            }
            let response = request
                .send()
                .await
                .map_err(|e| RegistryError::Transport { url: url.clone(), message: e.to_string() })?;
            match response.status() {
                s if s.is_success() => return Ok(true),
                StatusCode::NOT_FOUND => return Ok(false),
                StatusCode::UNAUTHORIZED if attempt == 0 => {
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(Challenge::parse)
                        .ok_or_else(|| RegistryError::Unauthorized {
                            url: url.clone(),
                            reason: "the registry sent no usable WWW-Authenticate challenge".into(),
                        })?;
                    auth = Some(match challenge {
                        Challenge::Bearer { realm, service, scope } => {
                            let token = self.token(&realm, service.as_deref(), scope.as_deref(), &url).await?;
                            self.tokens.lock().await.insert(image.repository(), token.clone());
                            format!("Bearer {token}")
                        }
                        Challenge::Basic => match &self.credentials {
                            Some(c) => basic(c),
                            None => {
                                return Err(RegistryError::Unauthorized {
                                    url,
                                    reason: "the registry wants a user name and password, and none are configured"
                                        .into(),
                                });
                            }
                        },
                    });
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(RegistryError::Unauthorized {
                        url,
                        reason: format!(
                            "HTTP {} after authenticating; check the registry credentials",
                            response.status().as_u16()
                        ),
                    });
                }
                s => return Err(RegistryError::Status { url, status: s.as_u16() }),
            }
        }
        Err(RegistryError::Unauthorized { url, reason: "the registry kept asking for credentials".into() })
    }

    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        for_url: &str,
    ) -> Result<String, RegistryError> {
        let mut request = self.http.get(realm);
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        if let Some(s) = scope {
            query.push(("scope", s));
        }
        request = request.query(&query);
        if let Some(c) = &self.credentials {
            request = request.header(AUTHORIZATION, basic(c));
        }
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::Transport { url: realm.to_owned(), message: e.to_string() })?;
        if !response.status().is_success() {
            return Err(RegistryError::Unauthorized {
                url: for_url.to_owned(),
                reason: format!("the token endpoint {realm} answered HTTP {}", response.status().as_u16()),
            });
        }
        let body: serde_json::Value = response.json().await.map_err(|e| RegistryError::Unauthorized {
            url: for_url.to_owned(),
            reason: format!("the token endpoint sent no JSON: {e}"),
        })?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::Unauthorized {
                url: for_url.to_owned(),
                reason: "the token endpoint's answer has no token".into(),
            })
    }
}

fn basic(c: &RegistryCredentials) -> String {
    format!("Basic {}", base64(format!("{}:{}", c.username, c.password).as_bytes()))
}

/// Standard base64 with padding (for the Basic scheme).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(Challenge::parse("Basic realm=\"Registry\""), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=\"x\""), None, "a realm is required");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"user:p@ss"), "dXNlcjpwQHNz");
    }

    #[test]
    fn manifest_urls() {
        let c = RegistryClient::new(false, None).expect("client");
        assert_eq!(
            c.manifest_url(&ImageRef::parse("alpine:3.20")).expect("url"),
            "https://registry-1.docker.io/v2/library/alpine/manifests/3.20"
        );
        assert_eq!(
            c.manifest_url(&ImageRef::parse("localhost:5000/team/trainer:ctx-1")).expect("url"),
            "https://localhost:5000/v2/team/trainer/manifests/ctx-1"
        );
        assert!(c.manifest_url(&ImageRef::parse("alpine")).is_err(), "no tag");
        let insecure = RegistryClient::new(true, None).expect("client");
        assert!(insecure.manifest_url(&ImageRef::parse("r.local:5000/x:1")).expect("url").starts_with("http://"));
    }
}
