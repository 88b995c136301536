//! Trueup's billing domain, free of I/O: the normalized model, billing
//! cycles and effective dates, proration, account matching, and
//! reconciliation of vendor usage against PSA recurring services into
//! service cards.
//!
//! A run, end to end: load a [`snapshot::Snapshot`] (or build the slices
//! from a store), decide account mappings with [`matching`], pick a
//! [`mapping::UsageMapper`] (the built-in SKU table or the Rhai rules), call
//! [`reconcile::reconcile`] to get sorted [`card::ServiceCard`]s with
//! exclusions and totals, and turn a person's decisions into
//! [`actions::PendingWriteBack`]s with [`actions::decide`].

pub mod actions;
pub mod card;
pub mod catalog;
pub mod cycles;
pub mod effective;
pub mod eligibility;
pub mod fasthash;
pub mod mapping;
pub mod matching;
pub mod model;
pub mod proration;
pub mod reconcile;
pub mod snapshot;
pub mod synth;
#[cfg(test)]
mod testkit;
