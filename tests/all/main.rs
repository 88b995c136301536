//! Trueup's integration tests: one binary, one module per topic (as
//! wasmtime does), so the suite links once.
//!
//! Plugin tests load components built by `scripts/setup` from
//! `target/plugins/`; run `scripts/test`, which builds them first.

mod support;
mod support_webdriver;

mod browser;
mod card_staging;
mod cli_operations;
mod conformance;
mod connector_autotask;
mod connector_connectwise;
mod connector_faults;
mod connector_halopsa;
mod connector_harness;
mod connector_huntress;
mod connector_microsoft365;
mod connector_ninjaone;
mod connector_pax8;
mod hardening;
mod ingest_csv;
mod ingest_push;
mod jobs;
mod manifest;
mod month_end;
mod month_end_scale;
mod one_mapping_path;
mod plugin_cache;
mod plugin_capabilities;
mod plugin_limits;
mod plugin_versioning;
mod product_build;
mod pull;
mod reconcile_as_of;
mod run_exclusions;
mod web_api;
mod web_auth;
mod write_back_crash;
mod write_back_faults;
mod write_back_review;
