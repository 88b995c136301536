//! Card lists: filters, pagination, totals and groups.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use trueup_core::card::{CardCategory, CardTotals};
use trueup_core::model::{CompanyId, VendorId};
use trueup_store::cards::{CardStatus, WriteBackStatus};
use trueup_store::reconcile::{CardFilter, CardGroup, CardSummary, GroupBy, MAX_PAGE_SIZE};

use super::cache::cached;
use super::{DEFAULT_PAGE_SIZE, RunRef, parse_word, resolve_run};
use crate::web::AppState;
use crate::web::error::{ApiError, ApiResult, parse_query};

/// Filters of card lists (every one optional).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
    /// Where the card's write-back stands: needs_review, pending, failed
    /// (the PSA refused it), applied or cancelled.
    pub write_back: Option<String>,
    /// The pagination cursor (`next` of the previous page).
    pub after: Option<i64>,
    /// Cards per page (default 50, at most 1000).
    pub limit: Option<u32>,
    /// For groups: company (or account), contract, product (or service),
    /// category, vendor, status.
    pub by: Option<String>,
}

impl CardQuery {
    pub(super) fn filter(&self, today: NaiveDate) -> ApiResult<CardFilter> {
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
        let write_back = match self.write_back.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("needs_review") => Some(WriteBackStatus::NeedsReview),
            Some("pending") => Some(WriteBackStatus::Pending),
            Some("failed" | "rejected") => Some(WriteBackStatus::Rejected),
            Some("applied") => Some(WriteBackStatus::Applied),
            Some("cancelled") => Some(WriteBackStatus::Cancelled),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "{other:?} is not a write-back state; use needs_review, pending, failed, applied or cancelled"
                )));
            }
        };
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(CardFilter {
            categories,
            vendor: nonempty(&self.vendor).map(VendorId::from),
            company: nonempty(&self.company).map(CompanyId::from),
            tag: nonempty(&self.tag),
            status,
            write_back,
            today: Some(today),
        })
    }

    pub(super) fn group_by(&self) -> ApiResult<GroupBy> {
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

/// A page of cards.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CardList {
    /// The run listed (`null` before the first reconcile).
    pub run: Option<RunRef>,
    /// The cards.
    #[schema(value_type = Vec<Object>)]
    pub cards: Vec<CardSummary>,
    /// The cursor of the next page.
    pub next: Option<i64>,
    /// Cards matching in the whole run.
    pub total: u64,
}

/// `GET /api/v1/cards`.
#[utoipa::path(
    get,
    path = "/api/v1/cards",
    tag = "cards",
    params(CardQuery),
    responses((status = 200, description = "A page of cards", body = CardList), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody)),
)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotalsAnswer {
    /// The run.
    pub run: Option<RunRef>,
    /// Counts per category and money at stake, under- and over-billed.
    #[schema(value_type = Object)]
    pub totals: CardTotals,
}

/// `GET /api/v1/cards/totals`.
#[utoipa::path(
    get,
    path = "/api/v1/cards/totals",
    tag = "cards",
    params(CardQuery),
    responses((status = 200, description = "Counts and money of the filtered cards", body = TotalsAnswer), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody)),
)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupsAnswer {
    /// The run.
    pub run: Option<RunRef>,
    /// What the groups are by.
    pub by: String,
    /// The groups, by key (no key first).
    #[schema(value_type = Vec<Object>)]
    pub groups: Vec<CardGroup>,
}

/// `GET /api/v1/cards/groups?by=...`.
#[utoipa::path(
    get,
    path = "/api/v1/cards/groups",
    tag = "cards",
    params(CardQuery),
    responses((status = 200, description = "The groups with their totals", body = GroupsAnswer), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such run", body = crate::web::openapi::ErrorBody)),
)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
