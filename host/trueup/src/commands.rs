//! One module per `trueup` subcommand.

pub mod demo;
pub mod import;
pub mod openapi;
pub mod plugin;
pub mod reconcile;
pub mod rules;
pub mod serve;
pub mod token;
pub mod user;
