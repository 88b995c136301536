//! Decisions on a write-back a person must look at: accept what the PSA
//! stored, send it again explicitly, or cancel one that has not run; and
//! the review itself (what was sent, what the PSA stored, the journalled
//! writes) for the card.

use axum::extract::{Path, State};
use trueup_store::outbox::OutboxId;
use trueup_store::write_review::{ReviewDecision, ReviewedEntry};

use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

/// A decision's answer, or 409 with the store's reason.
fn decided(state: &AppState, decision: ReviewDecision) -> ApiResult<axum::Json<ReviewDecision>> {
    match decision {
        ReviewDecision::Refused { reason } => Err(ApiError::Conflict(reason)),
        done @ ReviewDecision::Done { .. } => {
            state.changed();
            Ok(axum::Json(done))
        }
    }
}

/// `GET /api/v1/outbox/{id}/review`.
#[utoipa::path(
    get,
    path = "/api/v1/outbox/{id}/review",
    tag = "cards",
    params(("id" = i64, Path, description = "The outbox entry (write-back) id")),
    responses(
        (status = 200, description = "review (reason, sent {quantity, effective_date, unit_price}, stored line, mismatches [{field, sent, stored}], connector_said, record_ids) and writes (the journal: attempt, method, url, outcome, status, record_id, recorded_at); null when the write-back has no review", body = Object),
        (status = 404, description = "No such write-back", body = crate::web::openapi::ErrorBody),
    ),
)]
pub async fn review(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<Option<ReviewedEntry>>> {
    Ok(axum::Json(
        state.app.store().write_review(OutboxId(id)).await?,
    ))
}

/// `POST /api/v1/outbox/{id}/accept`.
#[utoipa::path(
    post,
    path = "/api/v1/outbox/{id}/accept",
    tag = "cards",
    params(("id" = i64, Path, description = "The outbox entry (write-back) id")),
    responses(
        (status = 200, description = "Accepted: what the PSA stored is the truth; the write-back is applied", body = Object),
        (status = 404, description = "No such write-back", body = crate::web::openapi::ErrorBody),
        (status = 409, description = "The write-back does not need review (the message says its state)", body = crate::web::openapi::ErrorBody),
    ),
)]
pub async fn accept(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<ReviewDecision>> {
    let decision = state
        .app
        .store()
        .accept_write_back(OutboxId(id), &caller.name, state.app.now())
        .await?;
    decided(&state, decision)
}

/// `POST /api/v1/outbox/{id}/retry`.
#[utoipa::path(
    post,
    path = "/api/v1/outbox/{id}/retry",
    tag = "cards",
    params(("id" = i64, Path, description = "The outbox entry (write-back) id")),
    responses(
        (status = 200, description = "Queued again now: the worker sends the change once more", body = Object),
        (status = 404, description = "No such write-back", body = crate::web::openapi::ErrorBody),
        (status = 409, description = "The write-back does not need review (the message says its state)", body = crate::web::openapi::ErrorBody),
    ),
)]
pub async fn retry(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<ReviewDecision>> {
    let decision = state
        .app
        .store()
        .retry_reviewed_write_back(OutboxId(id), &caller.name, state.app.now())
        .await?;
    decided(&state, decision)
}

/// `POST /api/v1/outbox/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/api/v1/outbox/{id}/cancel",
    tag = "cards",
    params(("id" = i64, Path, description = "The outbox entry (write-back) id")),
    responses(
        (status = 200, description = "Cancelled before it ran; the card is open again", body = Object),
        (status = 404, description = "No such write-back", body = crate::web::openapi::ErrorBody),
        (status = 409, description = "It already ran (the message names the PSA record and when) or is running", body = crate::web::openapi::ErrorBody),
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<ReviewDecision>> {
    let decision = state
        .app
        .store()
        .cancel_write_back(OutboxId(id), &caller.name, state.app.now())
        .await?;
    decided(&state, decision)
}
