//! The one integration-test binary of `kfops-kubeflow`.

mod compile;
mod image_builder;
mod image_context;
mod image_kaniko;
mod image_registry;
mod image_s3;
mod ir;
mod kfp_client;
mod kfp_server;
mod local;
