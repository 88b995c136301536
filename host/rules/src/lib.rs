//! MSP-editable rules, in a sandboxed Rhai engine: which vendor usage maps
//! to which PSA services, and how each service is counted and changed.
//!
//! A rule file is run **once per version** to *declare* its rules into a
//! native table ([`CompiledRules`]); reconciling then matches usage against
//! that table in Rust, per distinct key of what the rules read, memoised
//! for the run ([`RulesMapper`], a [`trueup_core::mapping::UsageMapper`]).
//! Only closures written in Rhai run Rhai, once per distinct value of the
//! attributes they declare. Every decision carries a trace naming the rules
//! (file:line) that decided it and why the others did not.
//!
//! The script API is documented in `docs/rules.md`; the sandbox's limits
//! are the constants in [`limits`].

// Read bottom-up: limits, glob, table, error and version are the types;
// sync, script, diagnostics and compile load a rule file; mapper applies
// it; text, cases, explain and diff are the tools built on them.
pub mod cases;
pub mod compile;
mod diagnostics;
pub mod diff;
pub mod error;
pub mod explain;
pub mod glob;
pub mod limits;
pub mod mapper;
pub mod script;
mod sync;
pub mod table;
pub mod text;
pub mod version;

pub use compile::{
    CompiledRules, Phase, RuleCache, RuleError, RuleVersion, RuleWarning, tests_path,
};
pub use mapper::{EvalStats, RulesMapper};

#[cfg(test)]
mod mapper_tests;
#[cfg(test)]
mod sandbox_tests;
