//! The one integration-test binary of `kfops-kubeflow`.

mod compile;
mod image_builder;
mod image_context;
mod image_registry;
mod ir;
mod kfp_client;
mod kfp_server;
mod local;
