//! One card in full: usage rows, trace, money, state, decisions, notes
//! and write-backs.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use trueup_core::card::ServiceCard;
use trueup_core::model::UsageObservation;
use trueup_store::cards::{CardNote, CardState, CardStatus, DecisionRecord};
use trueup_store::outbox::OutboxEntry;
use trueup_store::reconcile::ReconcileRun;

use super::{MAX_DETAIL_USAGE_ROWS, RunRef, card_key, require_run};
use crate::lock::lock;
use crate::web::AppState;
use crate::web::error::{ApiError, ApiResult, QueryParams};

/// `?run=` of card routes.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// The run (default: the latest).
    pub run: Option<i64>,
}

/// How one distinct mapping behind a card was decided.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceView {
    /// What the usage maps to ("M365-BP ×1").
    pub maps_to: String,
    /// Why a rule deliberately does not bill it, when it does not.
    pub ignored: Option<String>,
    /// The rules considered, in order: `✓ rule (file:line:col): outcome`.
    pub steps: Vec<String>,
}

/// The usage rows behind a card.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// Whether the rows could be read back as the run read them.
    pub available: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Rows behind the card.
    pub total: usize,
    /// The first [`MAX_DETAIL_USAGE_ROWS`] of them.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<UsageObservation>,
}

/// One card in full.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CardDetail {
    /// The run it is from.
    pub run: RunRef,
    /// The card as reconciled: quantities, money (cost, price, margin
    /// before and after), effective date and proration preview
    /// (`change`), policy, suggestions, notes.
    #[schema(value_type = Object)]
    pub card: ServiceCard,
    /// Its status today.
    #[schema(value_type = String)]
    pub status: CardStatus,
    /// The stored state, if anyone acted on it.
    #[schema(value_type = Option<Object>)]
    pub state: Option<CardState>,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub notes: Vec<CardNote>,
    /// Decisions, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub decisions: Vec<DecisionRecord>,
    /// Write-backs, oldest first: status, attempts, PSA record ids or the
    /// PSA's rejection.
    #[schema(value_type = Vec<Object>)]
    pub write_backs: Vec<OutboxEntry>,
    /// The rule trace of each distinct mapping behind the card.
    pub trace: Vec<TraceView>,
    /// The service policy applied, in words.
    pub policy: Option<String>,
    /// The usage rows behind the vendor quantity.
    pub usage: UsageView,
}

/// The usage rows `run` read (cached for the latest run asked).
async fn run_usage(state: &AppState, run: &ReconcileRun) -> ApiResult<Arc<Vec<UsageObservation>>> {
    if let Some((id, rows)) = lock(&state.shared.cards.usage).as_ref()
        && *id == run.id
    {
        return Ok(Arc::clone(rows));
    }
    let from = crate::app::reconcile::history_start(run.as_of);
    let rows = Arc::new(state.app.store().usage_for_period(from, run.as_of).await?);
    *lock(&state.shared.cards.usage) = Some((run.id, Arc::clone(&rows)));
    Ok(rows)
}

/// `GET /api/v1/cards/{key}`.
#[utoipa::path(
    get,
    path = "/api/v1/cards/{key}",
    tag = "cards",
    params(("key" = String, Path, description = "The card key (32 hex digits)"), RunQuery),
    responses((status = 200, description = "The card in full", body = CardDetail), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such card or run", body = crate::web::openapi::ErrorBody)),
)]
pub async fn detail(
    State(state): State<AppState>,
    Path(key): Path<String>,
    QueryParams(query): QueryParams<RunQuery>,
) -> ApiResult<axum::Json<CardDetail>> {
    let key = card_key(&key)?;
    let run = require_run(&state, query.run).await?;
    let store = state.app.store();
    let card = store
        .card(run.id, &key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {} has no card {key}", run.id.0)))?;
    // One snapshot, so the state and the write-backs agree.
    let (card_state, write_backs) = store.card_state_and_write_backs(&key).await?;
    let status = card_state
        .as_ref()
        .map(|s| s.status_on(state.app.today(), &card.numbers_fingerprint()))
        .unwrap_or(CardStatus::Open);
    let trace = card
        .mappings
        .iter()
        .map(|m| TraceView {
            maps_to: trueup_rules::cases::mapping_text(m),
            ignored: m.ignored.as_deref().map(str::to_owned),
            steps: trueup_rules::explain::trace_lines(&m.trace),
        })
        .collect();
    let policy = card
        .policy
        .as_deref()
        .map(trueup_rules::explain::policy_text);
    let usage = if card.usage_rows.is_empty() {
        UsageView {
            available: true,
            reason: None,
            total: 0,
            rows: Vec::new(),
        }
    } else if let Some(rows) = store
        .card_usage_rows(
            run.id,
            crate::app::reconcile::history_start(run.as_of),
            run.as_of,
            &card.usage_rows,
            MAX_DETAIL_USAGE_ROWS,
        )
        .await?
    {
        // Only this card's accounts' rows, by index (issue 16).
        UsageView {
            available: true,
            reason: None,
            total: card.usage_rows.len(),
            rows,
        }
    } else {
        let rows = run_usage(&state, &run).await?;
        if rows.len() == run.stats.usage_rows {
            UsageView {
                available: true,
                reason: None,
                total: card.usage_rows.len(),
                rows: card
                    .usage_rows
                    .iter()
                    .take(MAX_DETAIL_USAGE_ROWS)
                    .filter_map(|&i| rows.get(i as usize).cloned())
                    .collect(),
            }
        } else {
            UsageView {
                available: false,
                reason: Some(format!(
                    "usage was synced again after run {} (it read {} rows, the period now has {}); reconcile again to see the rows behind this card",
                    run.id.0,
                    run.stats.usage_rows,
                    rows.len()
                )),
                total: card.usage_rows.len(),
                rows: Vec::new(),
            }
        }
    };
    Ok(axum::Json(CardDetail {
        run: RunRef::from(&run),
        status,
        tags: store.card_tags(&key).await?,
        notes: store.card_notes(&key).await?,
        decisions: store.card_decisions(&key).await?,
        write_backs,
        state: card_state,
        trace,
        policy,
        usage,
        card,
    }))
}
