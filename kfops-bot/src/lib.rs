//! The library behind `kfops-bot`, the kfops ChatOps service.
//!
//! Today: [`store`], the durable inbox and command ledger every accepted
//! webhook is committed to before the bot answers GitHub, and [`server`], the
//! HTTP front door (webhooks, health, readiness, metrics) over it, and
//! [`report`], the status comment each command keeps up to date, and
//! [`policy`], who may run which command. Workers build on these.

pub mod app;
pub mod config;
pub mod deploy;
pub mod error;
pub mod images;
pub mod policy;
pub mod report;
pub mod server;
pub mod store;
pub mod worker;

pub use error::{BotError, ConfigError, StoreError};
pub use store::{Accepted, CommandRecord, CommandState, Stage, StepRecord, Store};
