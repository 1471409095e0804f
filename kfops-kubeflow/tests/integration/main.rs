//! The one integration-test binary of `kfops-kubeflow`.

mod compile;
mod ir;
mod local;
