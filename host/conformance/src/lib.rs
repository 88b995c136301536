//! Trueup's conformance kit: standard scenarios that run a connector
//! against the bundled emulators (`trueup-emulators`, started in-process on
//! loopback ports) and report every check as a pass/fail row.
//!
//! - [`psa`]: the PSA connector scenario behind `trueup plugin test
//!   <plugin> --against <emulator>`, and the helpers (full sync, truth
//!   check, write targets) tests and benchmarks drive connectors with;
//! - [`report`]: the report every kit prints.
//!
//! Test infrastructure, not product: the `trueup` binary links it only with
//! its `demo` feature (the default build), never in the product build.

pub mod psa;
pub mod report;
