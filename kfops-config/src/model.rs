//! The typed configuration: what `kfops.yaml` may contain.
//!
//! Every struct rejects unknown keys; the JSON Schema in
//! `schema/kfops.schema.json` is generated from these types (doc comments
//! become descriptions), and the validator checks files against that schema,
//! so the types, the schema and the validation can never disagree.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole repository configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kfops repository configuration", extend("$id" = "https://kfops.dev/schema/kfops.schema.json"))]
pub struct Config {
    /// The repository this project lives in. Used by the bot to check that the
    /// configuration belongs to the repository the command came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// The pipeline: where its source is, how it is named on Kubeflow, and its run arguments.
    pub pipeline: Pipeline,
    /// Model deployment to KServe (`/deploy`, `/staging_deploy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// Container images to build for the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_builder: Option<ImageBuilder>,
    /// How to reach Kubeflow Pipelines. Connection details are not per
    /// repository, so every key here may also come from the environment
    /// (`KFOPS_KUBEFLOW__URL`, …) or from `kfc` flags. Without a URL, `kfc`
    /// uses the embedded local runner.
    #[serde(default, skip_serializing_if = "Kubeflow::is_empty")]
    pub kubeflow: Kubeflow,
}

/// The repository this project lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// Owner: user, organisation or group.
    pub owner: String,
    /// Repository name.
    pub name: String,
}

/// The pipeline section. It is the only section that `--config-override`
/// files and `--set` may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Pipeline name on Kubeflow; versions are published under it.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Description shown in the Kubeflow UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Kubeflow profile namespace for experiments and runs (multi-user
    /// Kubeflow). Falls back to `kubeflow.namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Experiment the runs are filed under; created if missing.
    #[serde(default = "default_experiment")]
    pub experiment_name: String,
    /// The pipeline source, relative to the project root: a Python file with a
    /// `@dsl.pipeline` function, or an already compiled `.yaml`/`.json`.
    pub pipeline_path: String,
    /// Which `@dsl.pipeline` function to compile when the file defines several.
    #[serde(default, deserialize_with = "empty_as_none", skip_serializing_if = "Option::is_none")]
    pub pipeline_function_name: Option<String>,
    /// Accepted for compatibility with kfops 0.1 (KFP v1); KFP v2 has a
    /// single execution mode, so the value is ignored with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_mode: Option<ExecutionMode>,
    /// Run arguments, checked against the pipeline's declared inputs before
    /// anything runs. Values keep their YAML types.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub pipeline_args: BTreeMap<String, serde_json::Value>,
}

fn default_experiment() -> String {
    "Default".to_owned()
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.trim().is_empty()))
}

/// KFP v1 execution modes (kfops 0.1 compatibility only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(non_camel_case_types)]
pub enum ExecutionMode {
    /// KFP v1 legacy mode.
    V1_LEGACY,
    /// KFP v1 "v2 compatible" mode.
    V2_COMPATIBLE,
    /// KFP v2 engine.
    V2_ENGINE,
}

/// Model deployment settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Name of the KServe InferenceService.
    #[schemars(length(min = 1))]
    pub inference_service_name: String,
    /// kfops 0.1: a Python file defining `inference_service_instance`.
    /// Accepted for compatibility; relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_service_function_path: Option<String>,
    /// A JSON file with a sample request, sent to the new model before it
    /// receives traffic. Relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_deployment_test_sample_input_path: Option<String>,
    /// Production target (`/deploy`).
    pub production: DeploymentTarget,
    /// Staging target (`/staging_deploy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<DeploymentTarget>,
    /// KServe deployment mode, always set explicitly on the InferenceService:
    /// `knative` (revisions, canary at 0 % then promotion) or `standard`
    /// (plain Kubernetes Deployments).
    #[serde(default)]
    pub mode: DeployMode,
    /// Where the trained model is, as a template with `{run_id}`,
    /// `{version_id}`, `{sha}` and `{pr}`.
    #[serde(default = "default_storage_uri")]
    pub storage_uri: String,
    /// The model format KServe picks a serving runtime for (`sklearn`,
    /// `xgboost`, `lightgbm`, `tensorflow`, `pytorch`, `onnx`, …). Required
    /// unless `manifest_template_path` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_format: Option<String>,
    /// A specific ServingRuntime / ClusterServingRuntime name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The prediction protocol of the model server (`v1` or `v2`); the
    /// inference check detects it from the sample when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<ProtocolVersion>,
    /// Service account of the predictor (e.g. one with storage credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// CPU and memory of the predictor container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// For full control: an InferenceService manifest in the repository,
    /// rendered with `{run_id}`, `{version_id}`, `{sha}`, `{pr}`,
    /// `{storage_uri}`, `{service_name}` and `{namespace}`. Relative to the
    /// project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_template_path: Option<String>,
    /// A JSON file with output the model must produce for the sample (a
    /// subset of the response). Relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output_path: Option<String>,
    /// Prediction requests the inference check sends (latency is reported over them).
    #[serde(default = "default_check_requests")]
    #[schemars(range(min = 1, max = 100))]
    pub check_requests: u32,
    /// How long a new revision may take to become ready, in seconds.
    #[serde(default = "default_ready_timeout")]
    #[schemars(range(min = 1))]
    pub ready_timeout_seconds: u64,
}

fn default_storage_uri() -> String {
    "s3://trained-models/{run_id}/".into()
}

fn default_check_requests() -> u32 {
    5
}

fn default_ready_timeout() -> u64 {
    600
}

/// The KServe deployment mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployMode {
    /// Knative (`Serverless`): revisions, canary traffic split, scale to zero.
    #[default]
    Knative,
    /// Standard (`RawDeployment`): Kubernetes Deployments and Services.
    Standard,
}

/// A model server protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolVersion {
    /// KServe V1 (`instances` / `predictions`).
    V1,
    /// Open Inference Protocol V2 (`inputs` / `outputs`).
    V2,
}

/// Container resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Requests, e.g. `cpu: 100m`, `memory: 256Mi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// Limits, e.g. `cpu: "1"`, `memory: 1Gi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// One deployment environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentTarget {
    /// Kubernetes namespace the InferenceService lives in.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// kubeconfig context of the cluster (staging and production may be
    /// different clusters); default: the current context, or in-cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Container images built for the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageBuilder {
    /// Registry prefix images are pushed to, e.g. `registry.example.com/team`.
    #[schemars(length(min = 1))]
    pub container_registry_uri: String,
    /// Push over plain HTTP / without TLS verification.
    #[serde(default)]
    pub insecure: bool,
    /// The images.
    #[serde(default)]
    pub images: Vec<Image>,
    /// Where images are built: `local` (docker/podman/buildah on this
    /// machine) or `kaniko` (Kubernetes Jobs in the cluster, contexts uploaded
    /// to object storage).
    #[serde(default)]
    pub builder: BuilderKind,
    /// Settings of the `kaniko` builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kaniko: Option<Kaniko>,
    /// The container tool that builds and pushes images locally: `docker`,
    /// `podman`, `buildah`, or a path. Default: the first of them on `PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `--build-arg` values passed to every image build; they are part of the image tag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// Object storage for build contexts (in-cluster builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio: Option<Minio>,
}

impl ImageBuilder {
    /// The images as the core [`kfops_core::image::ImageSpec`]s an image builder takes.
    pub fn image_specs(&self) -> Vec<kfops_core::image::ImageSpec> {
        self.images
            .iter()
            .map(|i| kfops_core::image::ImageSpec {
                name: i.name.clone(),
                dockerfile_folder: i.dockerfile_folder_path.clone().into(),
                other_folders: i.other_folders_path.iter().map(Into::into).collect(),
                registry: self.container_registry_uri.clone(),
                insecure: self.insecure,
            })
            .collect()
    }
}

/// Where images are built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuilderKind {
    /// docker, podman or buildah on this machine.
    #[default]
    Local,
    /// Kaniko Jobs in the cluster.
    Kaniko,
}

/// Settings of the in-cluster Kaniko builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kaniko {
    /// Namespace the build Jobs run in.
    #[serde(default = "default_kaniko_namespace")]
    pub namespace: String,
    /// Secret (in that namespace) with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` for reading build contexts.
    pub credentials_secret: String,
    /// Secret with a registry `config.json`, mounted at `/kaniko/.docker`, for pushing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_secret: Option<String>,
    /// Give up on a build after this many seconds.
    #[serde(default = "default_kaniko_timeout")]
    pub timeout_seconds: u64,
}

fn default_kaniko_namespace() -> String {
    "kfops".to_owned()
}

fn default_kaniko_timeout() -> u64 {
    1800
}

/// One image to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Image name (without registry and tag).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Folder with the `Dockerfile`, relative to the project root; it becomes the build-context root.
    pub dockerfile_folder_path: String,
    /// Extra folders (relative to the project root) copied into the context under their base names.
    #[serde(default)]
    pub other_folders_path: Vec<String>,
}

/// Object storage for image build contexts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Minio {
    /// Bucket for build contexts.
    #[serde(default = "default_bucket", deserialize_with = "empty_as_default_bucket")]
    pub context_files_bucket_name: String,
    /// Credentials; when absent they are read from the cluster's `mlpipeline-minio-artifact` secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<MinioCredentials>,
}

fn default_bucket() -> String {
    "image-build-artifacts".to_owned()
}

fn empty_as_default_bucket<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.trim().is_empty()).unwrap_or_else(default_bucket))
}

/// S3/MinIO credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MinioCredentials {
    /// Endpoint `host[:port]`.
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key. Prefer the cluster secret over writing it here.
    pub secret_key: Secret,
}

/// How to reach Kubeflow Pipelines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kubeflow {
    /// KFP API endpoint, e.g. `https://kubeflow.example.com/pipeline` (full
    /// Kubeflow) or `http://localhost:3000` (port-forwarded standalone KFP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// Base URL of the KFP web UI for links, when it differs from `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub ui_url: Option<String>,
    /// Profile namespace (multi-user Kubeflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Credentials. At most one source may be set.
    #[serde(default, skip_serializing_if = "Auth::is_empty")]
    pub auth: Auth,
}

impl Kubeflow {
    fn is_empty(&self) -> bool {
        self == &Kubeflow::default()
    }
}

/// Credentials for Kubeflow Pipelines; set at most one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// A bearer token (prefer `token_env` or `token_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Name of an environment variable holding a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// A file holding a bearer token, re-read on every request (rotated
    /// service-account tokens, e.g. `/var/run/secrets/kubeflow/pipelines/token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// A session cookie `name=value` (Dex / oauth2-proxy deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<Secret>,
    /// Name of an environment variable holding the session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_env: Option<String>,
    /// A file holding the session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_file: Option<String>,
}

impl Auth {
    fn is_empty(&self) -> bool {
        self == &Auth::default()
    }

    /// The keys that are set, for the "at most one" rule.
    pub fn configured_sources(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (set, name) in [
            (self.token.is_some(), "token"),
            (self.token_env.is_some(), "token_env"),
            (self.token_file.is_some(), "token_file"),
            (self.cookie.is_some(), "cookie"),
            (self.cookie_env.is_some(), "cookie_env"),
            (self.cookie_file.is_some(), "cookie_file"),
        ] {
            if set {
                out.push(name);
            }
        }
        out
    }
}

/// A secret string: never printed by `Debug`, masked when serialized.
#[derive(Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The text written in place of a secret.
    pub const MASK: &'static str = "********";

    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where it is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Secret::MASK)
    }
}
