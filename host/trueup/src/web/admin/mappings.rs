//! Mappings: the PSA's companies, vendor accounts mapped to them (or
//! excluded), and the SKU table.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::mapping::SkuMapEntry;
use trueup_core::matching::Suggestion;
use trueup_core::model::{
    AccountId, AccountMappingStatus, CompanyId, CompanyStatus, MappingMethod, VendorId,
};
use trueup_store::mappings::{MappingOverride, StoredSkuEntry};

use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult, JsonBody, QueryParams};

/// A PSA company.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompanyView {
    /// The PSA's id.
    #[schema(value_type = String)]
    pub id: CompanyId,
    /// Its name.
    pub name: String,
    /// Its short identifier.
    pub identifier: Option<String>,
    /// Its domains.
    pub domains: Vec<String>,
    /// Active or not.
    #[schema(value_type = String)]
    pub status: CompanyStatus,
}

/// `GET /api/v1/companies`.
#[utoipa::path(
    get,
    path = "/api/v1/companies",
    tag = "mappings",
    responses((status = 200, description = "The PSA's companies", body = Vec<CompanyView>)),
)]
pub async fn companies(State(state): State<AppState>) -> ApiResult<Json<Vec<CompanyView>>> {
    Ok(Json(
        state
            .app
            .store()
            .psa_state()
            .await?
            .data
            .companies
            .into_iter()
            .map(|c| CompanyView {
                id: c.id,
                name: c.name,
                identifier: c.identifier,
                domains: c.domains,
                status: c.status,
            })
            .collect(),
    ))
}

/// A vendor account's mapping.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The vendor integration.
    #[schema(value_type = String)]
    pub vendor: VendorId,
    /// The account.
    #[schema(value_type = String)]
    pub account: AccountId,
    /// Its name, when a sync listed it.
    pub name: Option<String>,
    /// `mapped`, `unmapped` or `excluded`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// The company, when mapped.
    #[schema(value_type = Option<String>)]
    pub company: Option<CompanyId>,
    /// How it was decided.
    #[schema(value_type = Object)]
    pub method: MappingMethod,
    /// Why.
    pub reason: String,
    /// Candidates not applied, with score and reason (accept one with
    /// `POST /api/v1/mappings/accounts`).
    #[schema(value_type = Vec<Object>)]
    pub suggestions: Vec<Suggestion>,
    /// Whether a person decided it (a manual mapping or exclusion).
    pub manual: bool,
}

/// Vendor accounts and their counts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountsAnswer {
    /// Accounts per status.
    #[schema(value_type = std::collections::BTreeMap<String, usize>)]
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    /// The accounts (filtered).
    pub accounts: Vec<AccountView>,
}

/// `?status=&vendor=` of the accounts list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountsQuery {
    /// mapped, unmapped or excluded.
    pub status: Option<String>,
    /// One vendor integration.
    pub vendor: Option<String>,
}

fn status_word(status: &AccountMappingStatus) -> &'static str {
    match status {
        AccountMappingStatus::Mapped(_) => "mapped",
        AccountMappingStatus::Unmapped => "unmapped",
        AccountMappingStatus::Excluded => "excluded",
    }
}

/// `GET /api/v1/mappings/accounts`: the last match's decisions (manual
/// mappings included), with the account names of the last syncs.
#[utoipa::path(
    get,
    path = "/api/v1/mappings/accounts",
    tag = "mappings",
    params(AccountsQuery),
    responses((status = 200, description = "Accounts with counts per status", body = AccountsAnswer), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn accounts(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<AccountsQuery>,
) -> ApiResult<Json<AccountsAnswer>> {
    let store = state.app.store();
    let names: std::collections::HashMap<(String, String), String> = store
        .vendor_accounts(None)
        .await?
        .into_iter()
        .map(|a| ((a.vendor.to_string(), a.id.to_string()), a.name))
        .collect();
    let overrides: std::collections::HashSet<(String, String)> = store
        .mapping_overrides()
        .await?
        .into_iter()
        .map(|o| (o.vendor.to_string(), o.account.to_string()))
        .collect();
    let mut counts =
        std::collections::BTreeMap::from([("mapped", 0), ("unmapped", 0), ("excluded", 0)]);
    let mut accounts = Vec::new();
    for outcome in store.match_results().await? {
        let m = outcome.mapping;
        let status = status_word(&m.status);
        *counts.entry(status).or_default() += 1;
        if query.status.as_deref().is_some_and(|s| s != status)
            || query
                .vendor
                .as_deref()
                .is_some_and(|v| v != m.vendor.as_str())
        {
            continue;
        }
        let key = (m.vendor.to_string(), m.account.to_string());
        accounts.push(AccountView {
            name: names.get(&key).cloned(),
            manual: overrides.contains(&key),
            company: match &m.status {
                AccountMappingStatus::Mapped(c) => Some(c.clone()),
                _ => None,
            },
            status,
            vendor: m.vendor,
            account: m.account,
            method: m.method,
            reason: m.reason,
            suggestions: outcome.suggestions,
        });
    }
    Ok(Json(AccountsAnswer { counts, accounts }))
}

/// A manual mapping or exclusion.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MapAccount {
    /// The vendor integration.
    pub vendor: String,
    /// The account.
    pub account: String,
    /// The company to bill it to; `null` excludes the account.
    pub company: Option<String>,
    /// Why (kept for the audit trail).
    pub reason: String,
}

/// `POST /api/v1/mappings/accounts` (also "accept a suggestion": pass its
/// company). Takes effect at the next reconcile.
#[utoipa::path(
    post,
    path = "/api/v1/mappings/accounts",
    tag = "mappings",
    request_body = MapAccount,
    responses((status = 200, description = "The stored mapping override (vendor, account, company or null, reason, by, at)", body = Object), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn map_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<MapAccount>,
) -> ApiResult<Json<MappingOverride>> {
    let o = MappingOverride {
        vendor: VendorId::from(request.vendor.as_str()),
        account: AccountId::from(request.account.as_str()),
        company: request.company.map(CompanyId::from),
        reason: request.reason,
        set_by: caller.name.clone(),
        set_at: state.app.now(),
    };
    state.app.store().set_mapping_override(&o).await?;
    state
        .app
        .audit(
            &caller.name,
            "mapping.set",
            &format!("account:{}/{}", o.vendor, o.account),
            serde_json::json!({ "company": o.company, "reason": o.reason }),
        )
        .await;
    Ok(Json(o))
}

/// `DELETE /api/v1/mappings/accounts/{vendor}/{account}`.
#[utoipa::path(
    delete,
    path = "/api/v1/mappings/accounts/{vendor}/{account}",
    tag = "mappings",
    params(("vendor" = String, Path, description = "The vendor integration"), ("account" = String, Path, description = "The vendor account")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No manual mapping of that account", body = crate::web::openapi::ErrorBody)),
)]
pub async fn unmap_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((vendor, account)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let removed = state
        .app
        .store()
        .clear_mapping_override(
            &VendorId::from(vendor.as_str()),
            &AccountId::from(account.as_str()),
        )
        .await?;
    if !removed {
        return Err(ApiError::NotFound(format!(
            "account {vendor}/{account} has no manual mapping"
        )));
    }
    state
        .app
        .audit(
            &caller.name,
            "mapping.clear",
            &format!("account:{vendor}/{account}"),
            serde_json::json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/mappings/skus`.
#[utoipa::path(
    get,
    path = "/api/v1/mappings/skus",
    tag = "mappings",
    responses((status = 200, description = "SKU table entries (vendor, sku, product, multiplier as a decimal string)", body = Vec<Object>)),
)]
pub async fn skus(State(state): State<AppState>) -> ApiResult<Json<Vec<StoredSkuEntry>>> {
    Ok(Json(state.app.store().sku_entries().await?))
}

/// A SKU table entry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuRequest {
    /// The vendor integration.
    pub vendor: String,
    /// The vendor's SKU.
    pub sku: String,
    /// The PSA product identifier.
    pub product: String,
    /// Units of product per unit of usage (default 1).
    #[serde(default, with = "trueup_core::model::amount::option")]
    #[schema(value_type = Option<String>)]
    pub multiplier: Option<Decimal>,
}

/// `PUT /api/v1/mappings/skus`.
#[utoipa::path(
    put,
    path = "/api/v1/mappings/skus",
    tag = "mappings",
    request_body = SkuRequest,
    responses((status = 204, description = "Stored"), (status = 400, description = "The entry is invalid: an empty field, a multiplier out of range, or a product the PSA does not know (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 409, description = "No PSA data is synced yet, so the product cannot be checked", body = crate::web::openapi::ErrorBody)),
)]
pub async fn put_sku(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<SkuRequest>,
) -> ApiResult<StatusCode> {
    let entry = SkuMapEntry {
        vendor: VendorId::from(request.vendor.as_str()),
        sku: request.sku.as_str().into(),
        product: request.product.as_str().into(),
        multiplier: request.multiplier.unwrap_or(Decimal::ONE),
    };
    entry.check().map_err(ApiError::BadRequest)?;
    // The reconcile reads this table before the rules: a product the PSA
    // does not know would turn usage into cards nobody can approve.
    match state
        .app
        .store()
        .psa_product_known(&request.product)
        .await?
    {
        Some(true) => {}
        Some(false) => {
            return Err(ApiError::BadRequest(format!(
                "product `{}` is not in the PSA's catalogue or on any contract line; pick a product the PSA has (GET /api/v1/companies lists the synced PSA data), or sync the PSA if it was added since",
                request.product
            )));
        }
        None => {
            return Err(ApiError::Conflict(
                "no PSA data has been synced yet, so the product cannot be checked; sync the PSA first (POST /api/v1/syncs)".into(),
            ));
        }
    }
    state
        .app
        .store()
        .put_sku_entry(&entry, &caller.name, state.app.now())
        .await?;
    state
        .app
        .audit(
            &caller.name,
            "sku.put",
            &format!("sku:{}/{}", request.vendor, request.sku),
            serde_json::json!({ "product": request.product, "multiplier": entry.multiplier }),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/mappings/skus/{vendor}/{sku}/{product}`.
#[utoipa::path(
    delete,
    path = "/api/v1/mappings/skus/{vendor}/{sku}/{product}",
    tag = "mappings",
    params(("vendor" = String, Path, description = "The vendor integration"), ("sku" = String, Path, description = "The vendor SKU"), ("product" = String, Path, description = "The PSA product identifier")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such entry", body = crate::web::openapi::ErrorBody)),
)]
pub async fn delete_sku(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((vendor, sku, product)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    if !state
        .app
        .store()
        .delete_sku_entry(&VendorId::from(vendor.as_str()), &sku, &product)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no SKU table entry {vendor}/{sku} → {product}"
        )));
    }
    state
        .app
        .audit(
            &caller.name,
            "sku.delete",
            &format!("sku:{vendor}/{sku}"),
            serde_json::json!({ "product": product }),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
