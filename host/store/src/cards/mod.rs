//! What people do with cards, kept by card key across runs: the current
//! state (open, approved, dismissed, snoozed, excluded), tags, notes, and
//! the append-only log of decisions.
//!
//! Rooms: the decision log (which also enqueues write-backs in the outbox)
//! in `decisions`, notes in `notes`. A card's state lives in
//! `crate::card_state` and its tags in `crate::tags`, below the outbox
//! and the reconcile's card listings that read them.

mod decisions;
mod notes;

pub use crate::card_state::{CardState, CardStatus, NewStage, StagedChange, WriteBackStatus};
pub use decisions::{DecisionRecord, NewDecision};
pub use notes::CardNote;

pub(crate) use decisions::{DECISION_COLUMNS, decision_from_row};
