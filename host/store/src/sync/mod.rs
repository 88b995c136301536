//! Sync runs, the PSA's current state, and vendor data (integrations,
//! accounts, usage observations, pushed usage).
//!
//! A sync is recorded in two steps: [`Store::begin_sync`] writes a
//! `running` row (so the UI shows it), then exactly one of
//! [`Store::complete_psa_sync`], [`Store::complete_vendor_sync`] or
//! [`Store::fail_sync`] finishes it. Completing replaces the current state
//! and appends to the ledger in ONE transaction with marking the run
//! succeeded; a failure keeps the previous state, which keeps the time of
//! the sync that wrote it (stale data is never shown as fresh).
//!
//! Rooms: run bookkeeping (start, finish, health) in `runs`;
//! the PSA's current state in `psa`; vendor integrations, accounts and
//! vendor syncs in `vendors`. The usage a vendor sync appends goes to the
//! usage ledger (`crate::usage`), which CSV imports and pushes share.

mod psa;
mod runs;
mod vendors;

pub use crate::ids::SyncRunId;
pub use crate::usage::PushOutcome;
pub use psa::{PsaData, PsaState};
pub use runs::{SourceHealth, SyncKind, SyncRun, SyncStats, SyncStatus};
pub use vendors::VendorData;
