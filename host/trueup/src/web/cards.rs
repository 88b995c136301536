//! Cards: lists (filters, totals, groups, pagination, CSV), one card in
//! full, decisions singly and in bulk, tags, notes, the dry-run plan of a
//! write-back, write-back progress, and history.
//!
//! List, totals and group answers are cached per query for
//! [`CARDS_CACHE_TTL`] and dropped as soon as this process changes or
//! hears of a change to cards (a decision, tag, note, reconcile or
//! write-back): a change made by another process sharing the database
//! shows within the TTL. One request at a time computes a missing answer;
//! concurrent requests for the same query wait for it and are served it
//! (rather than all running the same queries when an answer expires).
//!
//! One file per purpose: [`list`] (filters, totals, groups), [`export`]
//! (CSV), [`detail`], [`history`], [`actions`] (plan, decisions, tags,
//! notes), [`runs`] (runs and the outbox) and the answers' [`cache`].

pub mod actions;
mod cache;
pub mod detail;
pub mod export;
pub mod history;
pub mod list;
pub mod review;
pub mod runs;

use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use trueup_core::card::CardKey;
use trueup_store::reconcile::{ReconcileRun, ReconcileRunId};

use crate::web::AppState;
use crate::web::error::{ApiError, ApiResult};

pub(crate) use cache::CardsCache;

/// How long a cached list, totals or groups answer may be served.
pub const CARDS_CACHE_TTL: Duration = Duration::from_secs(2);

/// Cached answers kept at most (all are dropped when full).
pub const CARDS_CACHE_ENTRIES: u64 = 2048;

/// Cards per page when the client names no limit.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Cards one bulk request may name.
pub const MAX_BULK_CARDS: usize = 10_000;

/// Usage rows shown with one card at most (the total is given too).
pub const MAX_DETAIL_USAGE_ROWS: usize = 500;

/// Runs, outbox entries or audit entries one list returns at most.
pub const MAX_LIST: u32 = 1_000;

/// A run as lists name it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunRef {
    /// The run id.
    pub id: i64,
    /// Its as-of date.
    pub as_of: NaiveDate,
}

impl From<&ReconcileRun> for RunRef {
    fn from(run: &ReconcileRun) -> Self {
        Self {
            id: run.id.0,
            as_of: run.as_of,
        }
    }
}

/// Reads a word of a query (`open`, `reconcile`) as `T`, naming `what`
/// it should be when it is not one.
fn parse_word<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> ApiResult<T> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_owned()))
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a {what}")))
}

/// The run a query names, or the latest; `None` before the first
/// reconcile.
async fn resolve_run(state: &AppState, run: Option<i64>) -> ApiResult<Option<ReconcileRun>> {
    let store = state.app.store();
    match run {
        Some(id) => Ok(Some(store.reconcile_run(ReconcileRunId(id)).await?)),
        None => Ok(store.latest_reconcile_run().await?),
    }
}

async fn require_run(state: &AppState, run: Option<i64>) -> ApiResult<ReconcileRun> {
    resolve_run(state, run)
        .await?
        .ok_or_else(|| ApiError::NotFound("no reconcile has run yet".into()))
}

fn card_key(text: &str) -> ApiResult<CardKey> {
    CardKey::from_hex(text)
        .ok_or_else(|| ApiError::BadRequest(format!("{text:?} is not a card key (32 hex digits)")))
}

/// `?status=&limit=` of lists.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

impl ListQuery {
    /// The limit, defaulted and capped.
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(100).clamp(1, MAX_LIST)
    }
}
