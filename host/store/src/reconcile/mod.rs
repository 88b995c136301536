//! Reconcile runs and their cards: writing a run's output (append-only),
//! and the queries the UI needs (filtered, grouped, paginated cards of a
//! run, totals, one card with its history).
//!
//! A card is stored as list columns (category, ids, quantities, money,
//! effective date, the numbers fingerprint) plus a `detail` JSON holding
//! the rest of the [`ServiceCard`]. The service policies, mappings, change
//! constraints, vendor lists and billing periods that many cards share are
//! stored once per run (the run's `shared` JSON) and referred to by index,
//! and money the reconcile computed from unit price, unit cost and the
//! card's quantities keeps only those (the amounts are computed again on
//! read), which makes a card's row about a quarter of its plain JSON.
//! [`Store::card`] reassembles the exact card that was written.
//!
//! Writing a run's ~200,000 cards is on the month-end path:
//! `cargo bench -p trueup-store --bench store_write` measures it.
//!
//! Rooms: run bookkeeping in `runs`; how a card is stored (its row, its
//! detail and the parts a run's cards share) in `card_rows`; the UI's card
//! listings (pages, totals, groups, whole cards) in `listing`; a card
//! across runs in `history`.

mod card_rows;
mod exclusions;
mod history;
mod listing;
mod runs;

pub use crate::ids::ReconcileRunId;
pub use exclusions::{
    ExclusionCount, ExclusionFilter, ExclusionPage, MAX_EXCLUSION_PAGE, StoredExclusion,
};
pub use history::CardHistoryEntry;
pub use listing::{CardFilter, CardGroup, CardPage, CardSummary, GroupBy, MAX_PAGE_SIZE};
pub use runs::{NewReconcileRun, ReconcileRun};

pub(crate) use card_rows::card_key;
