//! What people do to cards: the dry-run plan of a write-back,
//! decisions singly and in bulk, reopen, tags and notes.

use axum::extract::{Path, State};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::actions::{Action, DecisionContext, Resolution, Staged, decide as decide_card};
use trueup_core::card::CardKey;
use trueup_plugin_host::{PlannedCall, QuantityChange};
use trueup_store::cards::CardNote;
use trueup_store::outbox::OutboxStatus;
use trueup_store::reconcile::ReconcileRunId;

use super::{MAX_BULK_CARDS, card_key, require_run};
use crate::app::decide::{DecideOutcome, DecisionPreview, StageOutcome, quantity_change};
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult, JsonBody};

/// A dry-run request: plan the card's pending write-back, or an approval
/// (or, with a quantity or date, an adjustment) of it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The run (default: the latest).
    #[serde(default)]
    pub run: Option<i64>,
    /// Adjust to this quantity.
    #[serde(default, with = "trueup_core::model::amount::option")]
    #[schema(value_type = Option<String>)]
    pub quantity: Option<Decimal>,
    /// Adjust to this effective date.
    #[serde(default)]
    pub effective_date: Option<NaiveDate>,
}

/// The exact calls a write-back would make.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanAnswer {
    /// The change planned.
    #[schema(value_type = Object)]
    pub change: QuantityChange,
    /// Whether it is the card's pending write-back (else a preview of an
    /// approval or adjustment).
    pub pending: bool,
    /// The HTTP calls, in order, without secrets.
    #[schema(value_type = Vec<Object>)]
    pub calls: Vec<PlannedCall>,
}

/// `POST /api/v1/cards/{key}/plan`.
#[utoipa::path(
    post,
    path = "/api/v1/cards/{key}/plan",
    tag = "cards",
    params(("key" = String, Path, description = "The card key (32 hex digits)")),
    request_body = PlanRequest,
    responses((status = 200, description = "The change and the PSA calls it would make", body = PlanAnswer), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such card or run", body = crate::web::openapi::ErrorBody), (status = 502, description = "The PSA or a connector failed", body = crate::web::openapi::ErrorBody)),
)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The run the cards were shown from (default: the latest).
    #[serde(default)]
    pub run: Option<i64>,
    /// The cards (one or many).
    #[schema(value_type = Vec<String>)]
    pub cards: Vec<CardKey>,
    /// What to do: `{"action":"approve"}` (with the card's staged change,
    /// if it has one), `{"action":"adjust",
    /// "quantity":"12","effective_date":"2026-12-01"}` (either part may be
    /// left out: the card's staged value, then its proposal, fills it),
    /// `{"action":"dismiss"}`, `{"action":"snooze","until":{"date":
    /// "2027-01-01"}}` or `{"action":"snooze","until":"numbers_change"}`,
    /// `{"action":"exclude","reason":"..."}`.
    #[schema(value_type = Object)]
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
#[utoipa::path(
    post,
    path = "/api/v1/decisions",
    tag = "cards",
    request_body = DecisionRequest,
    responses((status = 200, description = "Per card: decided, or why not; write-backs enqueued", body = Object), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody), (status = 409, description = "Conflicts with the stored state", body = crate::web::openapi::ErrorBody)),
)]
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

/// `POST /api/v1/decisions/preview`.
#[utoipa::path(
    post,
    path = "/api/v1/decisions/preview",
    tag = "cards",
    request_body = DecisionRequest,
    responses((status = 200, description = "What the decision would write to the PSA, per card (account, service, from → to quantity, unit price, monthly effect, effective date) with totals, and the cards it would refuse; nothing is recorded or sent", body = DecisionPreview), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody)),
)]
pub async fn preview(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<DecisionRequest>,
) -> ApiResult<axum::Json<DecisionPreview>> {
    check_selection(&request.cards)?;
    Ok(axum::Json(
        state
            .app
            .preview_decision(
                request.run.map(ReconcileRunId),
                &request.cards,
                &request.action,
            )
            .await?,
    ))
}

/// A change to stage on cards.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// The run the cards were shown from (default: the latest).
    #[serde(default)]
    pub run: Option<i64>,
    /// The cards.
    #[schema(value_type = Vec<String>)]
    pub cards: Vec<CardKey>,
    /// The quantity to bill (default: the card's proposal).
    #[serde(default, with = "trueup_core::model::amount::option")]
    #[schema(value_type = Option<String>)]
    pub quantity: Option<Decimal>,
    /// The effective date (default: the card's proposal).
    #[serde(default)]
    pub effective_date: Option<NaiveDate>,
}

/// `POST /api/v1/cards/stage`.
#[utoipa::path(
    post,
    path = "/api/v1/cards/stage",
    tag = "cards",
    request_body = StageRequest,
    responses((status = 200, description = "Per card: staged, or why not (the stage is checked as an approval would be); nothing is written to the PSA", body = StageOutcome), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody)),
)]
pub async fn stage(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<StageRequest>,
) -> ApiResult<axum::Json<StageOutcome>> {
    check_selection(&request.cards)?;
    if request.quantity.is_none() && request.effective_date.is_none() {
        return Err(ApiError::BadRequest(
            "stage a quantity, an effective_date or both".into(),
        ));
    }
    let outcome = state
        .app
        .stage(
            request.run.map(ReconcileRunId),
            &request.cards,
            Staged {
                quantity: request.quantity,
                effective_date: request.effective_date,
            },
            &caller.name,
        )
        .await;
    state.changed();
    Ok(axum::Json(outcome?))
}

/// `POST /api/v1/cards/unstage`.
#[utoipa::path(
    post,
    path = "/api/v1/cards/unstage",
    tag = "cards",
    request_body = Selection,
    responses((status = 204, description = "The cards' staged changes are dropped"), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn unstage(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<Selection>,
) -> ApiResult<axum::http::StatusCode> {
    check_selection(&request.cards)?;
    state.app.store().unstage_changes(&request.cards).await?;
    state.changed();
    let keys: Vec<&str> = request.cards.iter().map(|k| k.as_str()).collect();
    state
        .app
        .audit(
            &caller.name,
            "cards.unstage",
            "cards",
            serde_json::json!({ "cards": keys }),
        )
        .await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A selection of cards.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// The cards.
    #[schema(value_type = Vec<String>)]
    pub cards: Vec<CardKey>,
}

/// `POST /api/v1/cards/reopen`.
#[utoipa::path(
    post,
    path = "/api/v1/cards/reopen",
    tag = "cards",
    request_body = Selection,
    responses((status = 204, description = "The cards are open again"), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 409, description = "Conflicts with the stored state", body = crate::web::openapi::ErrorBody)),
)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// The cards.
    #[schema(value_type = Vec<String>)]
    pub cards: Vec<CardKey>,
    /// The tag (lower-cased, no spaces, at most 40 characters).
    pub tag: String,
}

/// A tag in use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TagCount {
    /// The tag.
    pub tag: String,
    /// Cards carrying it.
    pub cards: u64,
}

/// `GET /api/v1/tags`.
#[utoipa::path(
    get,
    path = "/api/v1/tags",
    tag = "cards",
    responses((status = 200, description = "Tags with their card counts", body = Vec<TagCount>)),
)]
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
#[utoipa::path(
    post,
    path = "/api/v1/tags",
    tag = "cards",
    request_body = TagRequest,
    responses((status = 204, description = "Tagged"), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
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
#[utoipa::path(
    post,
    path = "/api/v1/tags/remove",
    tag = "cards",
    request_body = TagRequest,
    responses((status = 204, description = "Untagged"), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// The text (1 to 2000 characters).
    pub text: String,
}

/// `POST /api/v1/cards/{key}/notes`.
#[utoipa::path(
    post,
    path = "/api/v1/cards/{key}/notes",
    tag = "cards",
    params(("key" = String, Path, description = "The card key (32 hex digits)")),
    request_body = NoteRequest,
    responses((status = 201, description = "The note (id, card, author, text, created_at)", body = Object), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such card", body = crate::web::openapi::ErrorBody)),
)]
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
