//! Reconcile runs and write-back progress (the outbox).

use axum::extract::{Path, State};
use serde::Deserialize;
use trueup_core::eligibility::ExclusionCode;
use trueup_store::outbox::{OutboxEntry, OutboxStatus};
use trueup_store::reconcile::{ExclusionFilter, ExclusionPage, ReconcileRun, ReconcileRunId};

use super::{ListQuery, parse_word};
use crate::web::AppState;
use crate::web::error::{ApiError, ApiResult, QueryParams};

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
                "write-back status (pending, in_flight, applied, rejected, needs_review, cancelled)",
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

/// `?reason=&after=&limit=` of a run's exclusions.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExclusionQuery {
    /// Only this reason (`contract_inactive`, `account_excluded`, ...).
    pub reason: Option<String>,
    /// The previous page's `next`.
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// `GET /api/v1/runs/{run}/exclusions`: what a run left out or noted (an
/// inactive contract, an ended line, an excluded account, usage a rule does
/// not bill, ...), with the company concerned, by reason and paged, and
/// the counts per reason.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run}/exclusions",
    tag = "cards",
    params(("run" = i64, Path, description = "The reconcile run id"), ExclusionQuery),
    responses(
        (status = 200, description = "counts (per reason), total (matching the reason), exclusions (position, subject {kind, id}, code, severity, reason, name, company {id, name}, source) and next", body = Object),
        (status = 400, description = "An unknown reason or parameter (the message lists the reasons)", body = crate::web::openapi::ErrorBody),
        (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody),
    ),
)]
pub async fn exclusions(
    State(state): State<AppState>,
    Path(run): Path<i64>,
    QueryParams(query): QueryParams<ExclusionQuery>,
) -> ApiResult<axum::Json<ExclusionPage>> {
    let code = query
        .reason
        .as_deref()
        .map(|reason| {
            ExclusionCode::parse(reason).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "reason {reason:?} is not an exclusion reason; use one of: {}",
                    ExclusionCode::ALL.map(ExclusionCode::as_str).join(", ")
                ))
            })
        })
        .transpose()?;
    let filter = ExclusionFilter {
        code,
        after: query.after,
        limit: query.limit.unwrap_or(100),
    };
    Ok(axum::Json(
        state
            .app
            .store()
            .run_exclusion_page(ReconcileRunId(run), filter)
            .await?,
    ))
}
