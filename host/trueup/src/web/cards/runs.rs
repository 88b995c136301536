//! Reconcile runs and write-back progress (the outbox).

use axum::extract::State;
use trueup_store::outbox::{OutboxEntry, OutboxStatus};
use trueup_store::reconcile::ReconcileRun;

use super::{ListQuery, parse_word};
use crate::web::AppState;
use crate::web::error::{ApiResult, QueryParams};

/// `GET /api/v1/runs`.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "cards",
    params(crate::web::cards::ListQuery),
    responses((status = 200, description = "Reconcile runs (id, as-of date, started/finished, counts)", body = Vec<Object>), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn runs(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<axum::Json<Vec<ReconcileRun>>> {
    Ok(axum::Json(
        state.app.store().reconcile_runs(query.limit()).await?,
    ))
}

/// `GET /api/v1/outbox`.
#[utoipa::path(
    get,
    path = "/api/v1/outbox",
    tag = "cards",
    params(crate::web::cards::ListQuery),
    responses((status = 200, description = "Write-backs: card, change, status, attempts, PSA record ids or rejection", body = Vec<Object>), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
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
