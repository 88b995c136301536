//! One module per `trueup` subcommand.

pub mod plugin;
