//! The library behind `kfops-bot`, the kfops ChatOps service.
//!
//! Today: [`store`], the durable inbox and command ledger every accepted
//! webhook is committed to before the bot answers GitHub. The HTTP server,
//! workers and reporting are built on it.

pub mod error;
pub mod store;

pub use error::{BotError, StoreError};
pub use store::{Accepted, CommandRecord, CommandState, Stage, StepRecord, Store};
