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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::actions::{Action, DecisionContext, Resolution, decide as decide_card};
use trueup_core::card::{CardCategory, CardKey, CardTotals, ServiceCard};
use trueup_core::model::{CompanyId, ServiceLineId, UsageObservation, VendorId};
use trueup_plugin_host::{PlannedCall, QuantityChange};
use trueup_store::cards::{CardNote, CardState, CardStatus, DecisionRecord};
use trueup_store::ledger::MonthFigures;
use trueup_store::outbox::{OutboxEntry, OutboxStatus};
use trueup_store::reconcile::{
    CardFilter, CardGroup, CardHistoryEntry, CardSummary, GroupBy, MAX_PAGE_SIZE, ReconcileRun,
    ReconcileRunId,
};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult, JsonBody, QueryParams, parse_query};
use crate::app::decide::{DecideOutcome, quantity_change};

/// How long a cached list, totals or groups answer may be served.
pub const CARDS_CACHE_TTL: Duration = Duration::from_secs(2);

/// Cached answers kept at most (all are dropped when full).
pub const CARDS_CACHE_ENTRIES: usize = 2048;

/// Cards per page when the client names no limit.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Cards one bulk request may name.
pub const MAX_BULK_CARDS: usize = 10_000;

/// Usage rows shown with one card at most (the total is given too).
pub const MAX_DETAIL_USAGE_ROWS: usize = 500;

/// Runs, outbox entries or audit entries one list returns at most.
pub const MAX_LIST: u32 = 1_000;

struct Cached {
    generation: u64,
    at: Instant,
    body: Bytes,
}

/// Cached card answers and the latest run's usage rows.
#[derive(Default)]
pub(crate) struct CardsCache {
    answers: Mutex<HashMap<String, Cached>>,
    /// Per query: held while its answer is computed.
    computing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    usage: Mutex<Option<(ReconcileRunId, Arc<Vec<UsageObservation>>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn json_response(body: Bytes) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl CardsCache {
    fn get(&self, key: &str, generation: u64) -> Option<Bytes> {
        let answers = lock(&self.answers);
        answers
            .get(key)
            .filter(|c| c.generation == generation && c.at.elapsed() < CARDS_CACHE_TTL)
            .map(|c| c.body.clone())
    }

    fn put(&self, key: String, generation: u64, body: Bytes) {
        let mut answers = lock(&self.answers);
        if answers.len() >= CARDS_CACHE_ENTRIES {
            answers.clear();
        }
        answers.insert(
            key,
            Cached {
                generation,
                at: Instant::now(),
                body,
            },
        );
    }

    /// The lock whose holder computes `key`'s answer.
    fn computing(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut computing = lock(&self.computing);
        if let Some(turn) = computing.get(key) {
            return Arc::clone(turn);
        }
        if computing.len() >= CARDS_CACHE_ENTRIES {
            // A lock dropped here only lets two requests compute at once.
            computing.clear();
        }
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        computing.insert(key.to_owned(), Arc::clone(&turn));
        turn
    }
}

/// Serves `key` from the cache, or computes, caches and serves it.
async fn cached<T, F>(state: &AppState, key: String, compute: F) -> ApiResult<Response>
where
    T: Serialize,
    F: std::future::Future<Output = ApiResult<T>>,
{
    let cache = &state.shared.cards;
    if let Some(body) = cache.get(&key, state.generation()) {
        return Ok(json_response(body));
    }
    // One computation per query at a time; who waited for it is served
    // its answer.
    let turn = cache.computing(&key);
    let _turn = turn.lock().await;
    let generation = state.generation();
    if let Some(body) = cache.get(&key, generation) {
        return Ok(json_response(body));
    }
    let value = compute.await?;
    let body = Bytes::from(
        serde_json::to_vec(&value).map_err(|e| ApiError::Internal(format!("encoding: {e}")))?,
    );
    state.shared.cards.put(key, generation, body.clone());
    Ok(json_response(body))
}

/// A run as lists name it.
#[derive(Debug, Clone, Serialize)]
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

/// Filters of card lists (every one optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardQuery {
    /// The run (default: the latest).
    pub run: Option<i64>,
    /// Categories, comma-separated (`new_revenue,reconcile`).
    pub category: Option<String>,
    /// A vendor integration id.
    pub vendor: Option<String>,
    /// A company (account) id.
    pub company: Option<String>,
    /// A tag.
    pub tag: Option<String>,
    /// A status today: open, approved, dismissed, snoozed, excluded.
    pub status: Option<String>,
    /// The pagination cursor (`next` of the previous page).
    pub after: Option<i64>,
    /// Cards per page (default 50, at most 1000).
    pub limit: Option<u32>,
    /// For groups: company (or account), contract, product (or service),
    /// category, vendor, status.
    pub by: Option<String>,
}

fn parse_word<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> ApiResult<T> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_owned()))
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a {what}")))
}

impl CardQuery {
    fn filter(&self, today: NaiveDate) -> ApiResult<CardFilter> {
        let categories = match &self.category {
            Some(text) => text
                .split(',')
                .filter(|c| !c.trim().is_empty())
                .map(|c| {
                    parse_word::<CardCategory>(
                        "card category (new_revenue, reconcile, no_change, no_vendor_data, unmapped, rule_error)",
                        c,
                    )
                })
                .collect::<ApiResult<Vec<_>>>()?,
            None => Vec::new(),
        };
        let status = self
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_word::<CardStatus>(
                    "card status (open, approved, dismissed, snoozed, excluded)",
                    s,
                )
            })
            .transpose()?;
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(CardFilter {
            categories,
            vendor: nonempty(&self.vendor).map(VendorId::from),
            company: nonempty(&self.company).map(CompanyId::from),
            tag: nonempty(&self.tag),
            status,
            today: Some(today),
        })
    }

    fn group_by(&self) -> ApiResult<GroupBy> {
        match self.by.as_deref().unwrap_or("company") {
            "company" | "account" => Ok(GroupBy::Company),
            "contract" => Ok(GroupBy::Contract),
            "product" | "service" => Ok(GroupBy::Product),
            "category" => Ok(GroupBy::Category),
            "vendor" => Ok(GroupBy::Vendor),
            "status" => Ok(GroupBy::Status),
            other => Err(ApiError::BadRequest(format!(
                "cannot group by {other:?}; use company, contract, product, category, vendor or status"
            ))),
        }
    }
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

/// A page of cards.
#[derive(Debug, Serialize)]
pub struct CardList {
    /// The run listed (`null` before the first reconcile).
    pub run: Option<RunRef>,
    /// The cards.
    pub cards: Vec<CardSummary>,
    /// The cursor of the next page.
    pub next: Option<i64>,
    /// Cards matching in the whole run.
    pub total: u64,
}

/// `GET /api/v1/cards`.
pub async fn list(State(state): State<AppState>, uri: Uri) -> ApiResult<Response> {
    let key = format!("list?{}", uri.query().unwrap_or_default());
    let query: CardQuery = parse_query(&uri)?;
    let compute = async {
        let Some(run) = resolve_run(&state, query.run).await? else {
            return Ok(CardList {
                run: None,
                cards: Vec::new(),
                next: None,
                total: 0,
            });
        };
        let filter = query.filter(state.app.today())?;
        let limit = query
            .limit
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let page = state
            .app
            .store()
            .cards_page(run.id, &filter, query.after, limit)
            .await?;
        Ok(CardList {
            run: Some(RunRef::from(&run)),
            cards: page.cards,
            next: page.next,
            total: page.total,
        })
    };
    cached(&state, key, compute).await
}

/// Totals of the filtered cards.
#[derive(Debug, Serialize)]
pub struct TotalsAnswer {
    /// The run.
    pub run: Option<RunRef>,
    /// Counts per category and money at stake, under- and over-billed.
    pub totals: CardTotals,
}

/// `GET /api/v1/cards/totals`.
pub async fn totals(State(state): State<AppState>, uri: Uri) -> ApiResult<Response> {
    let key = format!("totals?{}", uri.query().unwrap_or_default());
    let query: CardQuery = parse_query(&uri)?;
    let compute = async {
        let Some(run) = resolve_run(&state, query.run).await? else {
            return Ok(TotalsAnswer {
                run: None,
                totals: CardTotals::default(),
            });
        };
        let filter = query.filter(state.app.today())?;
        let totals = state.app.store().card_totals(run.id, &filter).await?;
        Ok(TotalsAnswer {
            run: Some(RunRef::from(&run)),
            totals,
        })
    };
    cached(&state, key, compute).await
}

/// Groups of the filtered cards.
#[derive(Debug, Serialize)]
pub struct GroupsAnswer {
    /// The run.
    pub run: Option<RunRef>,
    /// What the groups are by.
    pub by: String,
    /// The groups, by key (no key first).
    pub groups: Vec<CardGroup>,
}

/// `GET /api/v1/cards/groups?by=...`.
pub async fn groups(State(state): State<AppState>, uri: Uri) -> ApiResult<Response> {
    let key = format!("groups?{}", uri.query().unwrap_or_default());
    let query: CardQuery = parse_query(&uri)?;
    let by = query.group_by()?;
    let compute = async {
        let by_text = query.by.clone().unwrap_or_else(|| "company".into());
        let Some(run) = resolve_run(&state, query.run).await? else {
            return Ok(GroupsAnswer {
                run: None,
                by: by_text,
                groups: Vec::new(),
            });
        };
        let filter = query.filter(state.app.today())?;
        let groups = state.app.store().card_groups(run.id, &filter, by).await?;
        Ok(GroupsAnswer {
            run: Some(RunRef::from(&run)),
            by: by_text,
            groups,
        })
    };
    cached(&state, key, compute).await
}

/// Quotes a CSV field; text that a spreadsheet would run as a formula is
/// prefixed with `'`.
fn csv_field(out: &mut String, text: &str, is_text: bool) {
    let guarded = is_text && text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let needs_quotes = guarded || text.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    for c in text.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if needs_quotes {
        out.push('"');
    }
}

/// The CSV export's columns.
pub const CSV_COLUMNS: &[&str] = &[
    "key",
    "category",
    "status",
    "company",
    "contract",
    "line",
    "product",
    "vendors",
    "psa_quantity",
    "vendor_quantity",
    "target_quantity",
    "variance",
    "unit_price",
    "money_delta",
    "effective_date",
    "write_back",
    "tags",
];

fn csv_row(out: &mut String, card: &CardSummary) {
    let dec = |d: Option<Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let status = serde_json::to_value(card.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let write_back = card
        .state
        .as_ref()
        .and_then(|s| s.write_back)
        .and_then(|w| serde_json::to_value(w).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let vendors: Vec<&str> = card.vendors.iter().map(|v| v.as_str()).collect();
    let fields: [(String, bool); 17] = [
        (card.key.as_str().to_owned(), false),
        (card.category.as_str().to_owned(), false),
        (status, false),
        (text(&card.company), true),
        (text(&card.contract), true),
        (text(&card.line), true),
        (text(&card.product), true),
        (vendors.join(" "), true),
        (dec(card.psa_quantity), false),
        (dec(card.vendor_quantity), false),
        (dec(card.target_quantity), false),
        (dec(card.variance), false),
        (dec(card.money.map(|m| m.unit_price)), false),
        (dec(card.money.map(|m| m.delta)), false),
        (
            card.effective_date
                .map(|d| d.to_string())
                .unwrap_or_default(),
            false,
        ),
        (write_back, false),
        (card.tags.join(" "), true),
    ];
    for (i, (value, is_text)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, value, *is_text);
    }
    out.push_str("\r\n");
}

/// `GET /api/v1/cards/export.csv`: every card matching the filters.
pub async fn export_csv(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CardQuery>,
) -> ApiResult<Response> {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let mut name = "trueup-cards.csv".to_owned();
    if let Some(run) = resolve_run(&state, query.run).await? {
        name = format!("trueup-cards-run-{}-{}.csv", run.id.0, run.as_of);
        let filter = query.filter(state.app.today())?;
        let mut after = None;
        loop {
            let page = state
                .app
                .store()
                .cards_page(run.id, &filter, after, MAX_PAGE_SIZE)
                .await?;
            for card in &page.cards {
                csv_row(&mut out, card);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `?run=` of card routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// The run (default: the latest).
    pub run: Option<i64>,
}

/// How one distinct mapping behind a card was decided.
#[derive(Debug, Serialize)]
pub struct TraceView {
    /// What the usage maps to ("M365-BP ×1").
    pub maps_to: String,
    /// Why a rule deliberately does not bill it, when it does not.
    pub ignored: Option<String>,
    /// The rules considered, in order: `✓ rule (file:line:col): outcome`.
    pub steps: Vec<String>,
}

/// The usage rows behind a card.
#[derive(Debug, Serialize)]
pub struct UsageView {
    /// Whether the rows could be read back as the run read them.
    pub available: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Rows behind the card.
    pub total: usize,
    /// The first [`MAX_DETAIL_USAGE_ROWS`] of them.
    pub rows: Vec<UsageObservation>,
}

/// One card in full.
#[derive(Debug, Serialize)]
pub struct CardDetail {
    /// The run it is from.
    pub run: RunRef,
    /// The card as reconciled: quantities, money (cost, price, margin
    /// before and after), effective date and proration preview
    /// (`change`), policy, suggestions, notes.
    pub card: ServiceCard,
    /// Its status today.
    pub status: CardStatus,
    /// The stored state, if anyone acted on it.
    pub state: Option<CardState>,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes, oldest first.
    pub notes: Vec<CardNote>,
    /// Decisions, oldest first.
    pub decisions: Vec<DecisionRecord>,
    /// Write-backs, oldest first: status, attempts, PSA record ids or the
    /// PSA's rejection.
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
    let card_state = store.card_state(&key).await?;
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
        write_backs: store.outbox_for_card(&key).await?,
        state: card_state,
        trace,
        policy,
        usage,
        card,
    }))
}

/// `GET /api/v1/cards/{key}/history`.
pub async fn history(
    State(state): State<AppState>,
    Path(key): Path<String>,
    QueryParams(query): QueryParams<RunQuery>,
) -> ApiResult<axum::Json<Vec<CardHistoryEntry>>> {
    let key = card_key(&key)?;
    let run = require_run(&state, query.run).await?;
    let card = state
        .app
        .store()
        .card(run.id, &key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {} has no card {key}", run.id.0)))?;
    Ok(axum::Json(
        state
            .app
            .store()
            .card_history(&key, card.company.as_ref())
            .await?,
    ))
}

/// A dry-run request: plan the card's pending write-back, or an approval
/// (or, with a quantity or date, an adjustment) of it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The run (default: the latest).
    #[serde(default)]
    pub run: Option<i64>,
    /// Adjust to this quantity.
    #[serde(default, with = "trueup_core::model::amount::option")]
    pub quantity: Option<Decimal>,
    /// Adjust to this effective date.
    #[serde(default)]
    pub effective_date: Option<NaiveDate>,
}

/// The exact calls a write-back would make.
#[derive(Debug, Serialize)]
pub struct PlanAnswer {
    /// The change planned.
    pub change: QuantityChange,
    /// Whether it is the card's pending write-back (else a preview of an
    /// approval or adjustment).
    pub pending: bool,
    /// The HTTP calls, in order, without secrets.
    pub calls: Vec<PlannedCall>,
}

/// `POST /api/v1/cards/{key}/plan`.
pub async fn plan(
    State(state): State<AppState>,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<PlanRequest>,
) -> ApiResult<axum::Json<PlanAnswer>> {
    let key = card_key(&key)?;
    let store = state.app.store();
    let pending = if request.quantity.is_none() && request.effective_date.is_none() {
        store
            .outbox_for_card(&key)
            .await?
            .into_iter()
            .rev()
            .find(|e| matches!(e.status, OutboxStatus::Pending | OutboxStatus::InFlight))
    } else {
        None
    };
    let (change, is_pending) = match pending {
        Some(entry) => (
            serde_json::from_value::<QuantityChange>(entry.change).map_err(|e| {
                ApiError::Internal(format!("outbox entry {} cannot be read: {e}", entry.id.0))
            })?,
            true,
        ),
        None => {
            let run = require_run(&state, request.run).await?;
            let card = store
                .card(run.id, &key)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("run {} has no card {key}", run.id.0)))?;
            let action = if request.quantity.is_some() || request.effective_date.is_some() {
                Action::Adjust {
                    quantity: request.quantity,
                    effective_date: request.effective_date,
                }
            } else {
                Action::Approve
            };
            let resolution = decide_card(
                &card,
                &action,
                &DecisionContext {
                    decision_id: "dry-run",
                    today: state.app.today(),
                },
            )
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let Resolution::WriteBack(pending) = resolution else {
                return Err(ApiError::BadRequest(
                    "this action writes nothing to the PSA".into(),
                ));
            };
            (quantity_change(&pending), false)
        }
    };
    let calls = state.app.plan_change(&change).await?;
    Ok(axum::Json(PlanAnswer {
        change,
        pending: is_pending,
        calls,
    }))
}

/// A decision on cards.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The run the cards were shown from (default: the latest).
    #[serde(default)]
    pub run: Option<i64>,
    /// The cards (one or many).
    pub cards: Vec<CardKey>,
    /// What to do: `{"action":"approve"}`, `{"action":"adjust",
    /// "quantity":"12","effective_date":"2026-12-01"}` (either part may be
    /// left out: "set effective date" is an adjust with only a date),
    /// `{"action":"dismiss"}`, `{"action":"snooze","until":{"date":
    /// "2027-01-01"}}` or `{"action":"snooze","until":"numbers_change"}`,
    /// `{"action":"exclude","reason":"..."}`.
    pub action: Action,
}

fn check_selection(cards: &[CardKey]) -> ApiResult<()> {
    if cards.is_empty() {
        return Err(ApiError::BadRequest("name at least one card".into()));
    }
    if cards.len() > MAX_BULK_CARDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BULK_CARDS} cards per request; split the selection"
        )));
    }
    Ok(())
}

/// `POST /api/v1/decisions`.
pub async fn decide(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<DecisionRequest>,
) -> ApiResult<axum::Json<DecideOutcome>> {
    check_selection(&request.cards)?;
    let outcome = state
        .app
        .decide(
            request.run.map(ReconcileRunId),
            &request.cards,
            &request.action,
            &caller.name,
        )
        .await;
    state.changed();
    Ok(axum::Json(outcome?))
}

/// A selection of cards.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// The cards.
    pub cards: Vec<CardKey>,
}

/// `POST /api/v1/cards/reopen`.
pub async fn reopen(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<Selection>,
) -> ApiResult<axum::http::StatusCode> {
    check_selection(&request.cards)?;
    state
        .app
        .store()
        .reopen_cards(&request.cards, &caller.name, state.app.now())
        .await?;
    state.changed();
    let keys: Vec<&str> = request.cards.iter().map(|k| k.as_str()).collect();
    state
        .app
        .audit(
            &caller.name,
            "cards.reopen",
            "cards",
            serde_json::json!({ "cards": keys }),
        )
        .await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A tag for cards.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// The cards.
    pub cards: Vec<CardKey>,
    /// The tag (lower-cased, no spaces, at most 40 characters).
    pub tag: String,
}

/// A tag in use.
#[derive(Debug, Serialize)]
pub struct TagCount {
    /// The tag.
    pub tag: String,
    /// Cards carrying it.
    pub cards: u64,
}

/// `GET /api/v1/tags`.
pub async fn tags(State(state): State<AppState>) -> ApiResult<axum::Json<Vec<TagCount>>> {
    Ok(axum::Json(
        state
            .app
            .store()
            .all_tags()
            .await?
            .into_iter()
            .map(|(tag, cards)| TagCount { tag, cards })
            .collect(),
    ))
}

/// `POST /api/v1/tags`.
pub async fn tag(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<TagRequest>,
) -> ApiResult<axum::http::StatusCode> {
    check_selection(&request.cards)?;
    state
        .app
        .store()
        .tag_cards(&request.cards, &request.tag, &caller.name, state.app.now())
        .await?;
    state.changed();
    state
        .app
        .audit(
            &caller.name,
            "cards.tag",
            &format!("tag:{}", request.tag),
            serde_json::json!({ "cards": request.cards.len() }),
        )
        .await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `POST /api/v1/tags/remove`.
pub async fn untag(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<TagRequest>,
) -> ApiResult<axum::http::StatusCode> {
    check_selection(&request.cards)?;
    state
        .app
        .store()
        .untag_cards(&request.cards, &request.tag)
        .await?;
    state.changed();
    state
        .app
        .audit(
            &caller.name,
            "cards.untag",
            &format!("tag:{}", request.tag),
            serde_json::json!({ "cards": request.cards.len() }),
        )
        .await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A note.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// The text (1 to 2000 characters).
    pub text: String,
}

/// `POST /api/v1/cards/{key}/notes`.
pub async fn add_note(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<NoteRequest>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<CardNote>)> {
    let key = card_key(&key)?;
    let store = state.app.store();
    let now = state.app.now();
    let id = store
        .add_card_note(&key, &caller.name, &request.text, now)
        .await?;
    state.changed();
    state
        .app
        .audit(
            &caller.name,
            "card.note",
            &format!("card:{key}"),
            serde_json::json!({ "note": id }),
        )
        .await;
    let note = store
        .card_notes(&key)
        .await?
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| ApiError::Internal(format!("note {id} vanished")))?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(note)))
}

/// `?status=&limit=` of lists.
#[derive(Debug, Default, Deserialize)]
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

/// `GET /api/v1/runs`.
pub async fn runs(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<axum::Json<Vec<ReconcileRun>>> {
    Ok(axum::Json(
        state.app.store().reconcile_runs(query.limit()).await?,
    ))
}

/// `GET /api/v1/outbox`.
pub async fn outbox(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<axum::Json<Vec<OutboxEntry>>> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            parse_word::<OutboxStatus>(
                "write-back status (pending, in_flight, applied, rejected)",
                s,
            )
        })
        .transpose()?;
    Ok(axum::Json(
        state
            .app
            .store()
            .outbox_entries(status, query.limit())
            .await?,
    ))
}

/// `?from=&to=` of company history.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// First day (default: the first of the month a year ago).
    pub from: Option<NaiveDate>,
    /// Last day (default: today).
    pub to: Option<NaiveDate>,
}

/// `GET /api/v1/history/companies/{company}`.
pub async fn company_history(
    State(state): State<AppState>,
    Path(company): Path<String>,
    QueryParams(query): QueryParams<RangeQuery>,
) -> ApiResult<axum::Json<Vec<MonthFigures>>> {
    let to = query.to.unwrap_or_else(|| state.app.today());
    let from = query.from.unwrap_or_else(|| {
        let first = to.with_day(1).unwrap_or(to);
        first.checked_sub_months(Months::new(12)).unwrap_or(first)
    });
    if from > to {
        return Err(ApiError::BadRequest(format!(
            "from {from} is after to {to}"
        )));
    }
    Ok(axum::Json(
        state
            .app
            .store()
            .account_history(&CompanyId::from(company), from, to)
            .await?,
    ))
}

/// `GET /api/v1/history/lines/{line}`.
pub async fn line_history(
    State(state): State<AppState>,
    Path(line): Path<String>,
) -> ApiResult<axum::Json<Vec<MonthFigures>>> {
    Ok(axum::Json(
        state
            .app
            .store()
            .line_history(&ServiceLineId::from(line))
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        csv_field(&mut out, "plain", true);
        out.push('|');
        csv_field(&mut out, "a,b \"c\"", true);
        out.push('|');
        csv_field(&mut out, "=HYPERLINK(\"x\")", true);
        out.push('|');
        csv_field(&mut out, "-12.50", false);
        assert_eq!(
            out,
            "plain|\"a,b \"\"c\"\"\"|\"'=HYPERLINK(\"\"x\"\")\"|-12.50"
        );
    }

    #[test]
    fn filters_parse_and_refuse_unknown_words() {
        let query = CardQuery {
            category: Some("reconcile,new_revenue".into()),
            status: Some("open".into()),
            ..CardQuery::default()
        };
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
        let filter = query.filter(today).expect("valid");
        assert_eq!(
            filter.categories,
            [CardCategory::Reconcile, CardCategory::NewRevenue]
        );
        assert_eq!(filter.status, Some(CardStatus::Open));
        let bad = CardQuery {
            category: Some("lost".into()),
            ..CardQuery::default()
        };
        assert!(matches!(bad.filter(today), Err(ApiError::BadRequest(_))));
        let by = CardQuery {
            by: Some("service".into()),
            ..CardQuery::default()
        };
        assert_eq!(by.group_by().expect("valid"), GroupBy::Product);
    }
}
