//! The Trueup host process as a library: configuration, the plugin runtime,
//! and (in later modules) sync, write-back and the web server. The `trueup`
//! binary is a thin CLI over it.

pub mod app;
pub mod auth;
pub mod backoff;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod ingest;
pub mod jobs;
mod lock;
pub mod pull;
pub mod queue_worker;
pub mod runtime;
pub mod schedule;
pub mod secret_box;
pub mod server;
pub mod web;
