//! The library behind `kfops-bot`, the kfops ChatOps service.
//!
//! * [`store`]: the durable inbox and command ledger every accepted webhook is
//!   committed to before the bot answers GitHub, and the deploy audit trail;
//! * [`server`]: the HTTP front door (webhooks, health, readiness, metrics);
//! * [`worker`]: the dispatcher and the command flow (authorize, pin, report,
//!   check out, compile in a sandbox, publish, run, watch; deploy);
//! * [`deploy`]: `/deploy` and `/staging_deploy` settings and targets;
//! * [`report`]: the status comment each command keeps up to date;
//! * [`policy`]: who may run which command;
//! * [`config`], [`images`], [`app`]: the bot's configuration file, its image
//!   builder, and the composition behind `kfops-bot serve`.

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
