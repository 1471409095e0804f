//! [`PipelineBackend`] on a Kubeflow Pipelines server.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kfops_core::pipeline::{
    CompiledPipeline, PipelineSource, PipelineVersion, RunHandle, RunId, RunInfo, RunRequest, SourceInfo, TaskInfo,
    VersionName,
};
use kfops_core::{Error as CoreError, ErrorKind, PipelineBackend};

use super::client::{CreateRun, KfpClient, PublishRequest, RunPipeline};
use super::types::Run;
use crate::ir::PipelineJob;

/// Kubeflow Pipelines as a [`PipelineBackend`]: publishes versions, starts
/// runs in an experiment (created if missing), reads runs with their tasks,
/// and terminates runs. Links point at the KFP web UI.
#[derive(Debug)]
pub struct KfpBackend {
    client: KfpClient,
}

impl KfpBackend {
    /// A backend on `client`.
    pub fn new(client: KfpClient) -> Self {
        KfpBackend { client }
    }

    /// The underlying client (for what the trait does not cover: listing, waiting, retrying).
    pub fn client(&self) -> &KfpClient {
        &self.client
    }
}

/// The pipeline's `pipelineInfo.displayName`, when the spec parses and has one.
fn display_name_of(spec_yaml: &str) -> Option<String> {
    let job = PipelineJob::from_yaml_str(spec_yaml).ok()?;
    job.spec.pipeline_info.display_name.filter(|d| !d.trim().is_empty())
}

/// A run as [`RunInfo`], with its tasks.
pub fn run_info(client: &KfpClient, run: &Run) -> RunInfo {
    let id = run.run_id.clone().unwrap_or_default();
    RunInfo {
        web_url: (!id.is_empty()).then(|| client.run_url(&id)),
        id: RunId(id),
        display_name: run.display_name.clone().unwrap_or_default(),
        state: run.run_state(),
        created_at: run.created_at.clone(),
        finished_at: run.finished_at.clone(),
        parameters: run
            .runtime_config
            .as_ref()
            .map(|c| c.parameters.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        tasks: run
            .tasks()
            .iter()
            .map(|t| TaskInfo {
                name: t.name().to_owned(),
                state: t.run_state(),
                started_at: t.start_time.clone(),
                finished_at: t.end_time.clone(),
                outputs: BTreeMap::new(),
                error: t.error_message(),
            })
            .collect(),
        outputs: BTreeMap::new(),
        error: run.error_message(),
    }
}

#[async_trait]
impl PipelineBackend for KfpBackend {
    fn name(&self) -> &str {
        "kubeflow"
    }

    async fn publish(
        &self,
        pipeline: &CompiledPipeline,
        version: &VersionName,
        source: &SourceInfo,
    ) -> Result<PipelineVersion, CoreError> {
        let request = PublishRequest {
            pipeline_name: pipeline.name.clone(),
            pipeline_display_name: display_name_of(&pipeline.spec_yaml),
            pipeline_description: pipeline.description.clone(),
            version_name: version.0.clone(),
            spec_yaml: pipeline.spec_yaml.clone(),
            source: source.clone(),
        };
        let published = self.client.publish(&request).await?;
        Ok(PipelineVersion {
            web_url: Some(self.client.pipeline_version_url(&published.pipeline_id, &published.version_id)),
            pipeline_id: published.pipeline_id,
            version_id: published.version_id,
            name: version.clone(),
            created: published.created,
        })
    }

    async fn start_run(&self, request: RunRequest) -> Result<RunHandle, CoreError> {
        let pipeline = match &request.pipeline {
            PipelineSource::Version { pipeline_id, version_id } => {
                RunPipeline::Version { pipeline_id: pipeline_id.clone(), version_id: Some(version_id.clone()) }
            }
            PipelineSource::Inline(compiled) => {
                let job = PipelineJob::from_yaml_str(&compiled.spec_yaml).map_err(|e| {
                    CoreError::new(
                        ErrorKind::InvalidInput,
                        format!("the pipeline `{}` cannot be run: {e}", compiled.name),
                    )
                    .with_source(e)
                })?;
                RunPipeline::Spec(job.to_json_value())
            }
        };
        let experiment = self.client.ensure_experiment(&request.experiment).await?;
        let experiment_id = experiment.experiment_id.filter(|id| !id.is_empty()).ok_or_else(|| {
            CoreError::new(ErrorKind::Other, format!("the experiment `{}` has no id", request.experiment))
        })?;
        let create = CreateRun {
            display_name: request.display_name.clone(),
            description: None,
            experiment_id: Some(experiment_id),
            pipeline,
            parameters: request.parameters.into_iter().collect(),
            service_account: request.service_account.clone(),
            pipeline_root: None,
        };
        let run = self.client.create_run(&create).await?;
        let id = run.run_id.filter(|id| !id.is_empty()).ok_or_else(|| {
            let why = run.error.as_ref().and_then(|e| e.user_message()).unwrap_or_else(|| "no run_id".into());
            CoreError::new(
                ErrorKind::Other,
                format!("the server accepted run `{}` but returned {why}", request.display_name),
            )
        })?;
        Ok(RunHandle { web_url: Some(self.client.run_url(&id)), id: RunId(id) })
    }

    async fn run(&self, id: &RunId) -> Result<RunInfo, CoreError> {
        let run = self.client.get_run(&id.0).await?;
        Ok(run_info(&self.client, &run))
    }

    async fn terminate(&self, id: &RunId) -> Result<(), CoreError> {
        self.client.terminate_run(&id.0).await?;
        Ok(())
    }
}
