//! History: one card in every run that had it, a customer's cards and a
//! PSA line month over month.

use axum::extract::{Path, State};
use chrono::{Datelike, Months, NaiveDate};
use serde::Deserialize;
use trueup_core::model::{CompanyId, ServiceLineId};
use trueup_store::ledger::MonthFigures;
use trueup_store::reconcile::CardHistoryEntry;

use super::detail::RunQuery;
use super::{card_key, require_run};
use crate::web::AppState;
use crate::web::error::{ApiError, ApiResult, QueryParams};

/// `GET /api/v1/cards/{key}/history`.
#[utoipa::path(
    get,
    path = "/api/v1/cards/{key}/history",
    tag = "history",
    params(("key" = String, Path, description = "The card key (32 hex digits)"), super::detail::RunQuery),
    responses((status = 200, description = "The card in each run that had it: run, as-of date, category, quantities, money", body = Vec<Object>), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such card or run", body = crate::web::openapi::ErrorBody)),
)]
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

/// `?from=&to=` of company history.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// First day (default: the first of the month a year ago).
    pub from: Option<NaiveDate>,
    /// Last day (default: today).
    pub to: Option<NaiveDate>,
}

/// `GET /api/v1/history/companies/{company}`.
#[utoipa::path(
    get,
    path = "/api/v1/history/companies/{company}",
    tag = "history",
    params(("company" = String, Path, description = "The PSA company id"), RangeQuery),
    responses((status = 200, description = "Month by month: billed, usage, cost, price, margin", body = Vec<Object>), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/history/lines/{line}",
    tag = "history",
    params(("line" = String, Path, description = "The PSA line (addition) id")),
    responses((status = 200, description = "Month by month: billed, usage, cost, price, margin", body = Vec<Object>), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
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
