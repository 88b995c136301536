//! One module per `trueup` subcommand.

pub mod plugin;
pub mod reconcile;
pub mod rules;
