//! The push API: vendors without a connector SET their unit counts.
//!
//! - `POST /api/v1/usage` sets the count of (account, service) for a day —
//!   an idempotent set, not a delta — for one item or a batch
//!   (`{"items": [...]}`, all or nothing).
//! - `GET /api/v1/usage/accounts` lists the accounts the key may report on
//!   and how each is mapped.
//! - `GET /api/v1/usage/services` lists the services (SKUs) the vendor has
//!   reported and the PSA products the active rules map them to.
//!
//! Requests authenticate with the push integration's own key
//! (`Authorization: Bearer <key>`; see [`create_push_integration`]), not
//! with a user session: mount [`router`] outside the session layer. Each
//! key has a token-bucket rate limit. A push that changed something asks
//! the app's [`Debouncer`](crate::app::debounce::Debouncer) for a reconcile.
//!
//! The contract, with examples, is `docs/push-api.md`; the OpenAPI 3.1
//! fragment is `push.openapi.json` beside this file ([`OPENAPI_FRAGMENT`]).

mod admin;
pub mod body;
mod rate_limit;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::json;
use trueup_core::mapping::UsageMapper as _;
use trueup_core::model::{
    AccountMappingStatus, Attributes, Company, CompanyId, UsageObservation, VendorId,
};
use trueup_store::StoreError;
use trueup_store::imports::PushIntegration;
use trueup_store::sync::PushOutcome;

pub use admin::{
    CreatedPushIntegration, NewPushIntegration, PUSH_KEY_PREFIX, create_push_integration,
    push_integrations, revoke_push_integration, set_push_rate_limits,
};
use body::{BodyError, Problem};
pub use rate_limit::{DEFAULT_BURST, DEFAULT_REQUESTS_PER_MINUTE};
use rate_limit::{RateLimiter, retry_after_secs};

use crate::app::App;
use crate::app::debounce::mark_usage_changed;
use crate::ingest::day_start;

/// Where usage is pushed.
pub const USAGE_PATH: &str = "/api/v1/usage";
/// The accounts listing.
pub const ACCOUNTS_PATH: &str = "/api/v1/usage/accounts";
/// The services listing.
pub const SERVICES_PATH: &str = "/api/v1/usage/services";

/// Largest request body accepted (1 MiB holds [`body::MAX_BATCH_ITEMS`]
/// items with room to spare).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The unit recorded when a push sends none.
pub const DEFAULT_UNIT: &str = "unit";

/// The OpenAPI 3.1 fragment (paths and schemas) of these endpoints, for
/// the served API document.
pub const OPENAPI_FRAGMENT: &str = include_str!("push.openapi.json");

#[derive(Clone)]
struct PushState {
    app: App,
    limiter: Arc<RateLimiter>,
}

/// The push API's routes, authenticating with push keys (not sessions).
/// Serve it at the root so its paths are `/api/v1/usage...`.
pub fn router(app: App) -> Router {
    let state = PushState {
        app,
        limiter: Arc::default(),
    };
    Router::new()
        .route(USAGE_PATH, post(set_usage))
        .route(ACCOUNTS_PATH, get(list_accounts))
        .route(SERVICES_PATH, get(list_services))
        .with_state(state)
}

// ------------------------------------------------------------------ errors

/// An error answer: `{"error": code, "message": ..., "problems": [...]}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Vec<Problem>,
    problem_count: usize,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
            problem_count: 0,
            retry_after: None,
        }
    }

    fn with_problems(mut self, problems: Vec<Problem>, count: usize) -> Self {
        self.problem_count = count.max(problems.len());
        self.problems = problems;
        self
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{message}: send `Authorization: Bearer <key>` with the push API key the MSP created for you"
            ),
        )
    }

    /// A failure that is ours, not the client's: logged in full, answered
    /// without internals.
    fn internal(what: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "push API: {what} failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "{what} failed on the server; try again later (the MSP's logs have the details)"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
            body["problem_count"] = json!(self.problem_count);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"trueup-push\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

// ------------------------------------------------------------------ auth

/// The push integration the request's key belongs to, once its rate limit
/// allows the request.
async fn authenticate(state: &PushState, headers: &HeaderMap) -> Result<PushIntegration, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized("no Authorization header"));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer <key>`"))?;
    let integration = state
        .app
        .store()
        .push_integration_by_key(key)
        .await
        .map_err(|e| ApiError::internal("checking the push API key", &e))?
        .ok_or_else(|| ApiError::unauthorized("the push API key is not valid or was revoked"))?;
    state
        .limiter
        .take(
            integration.id,
            integration.requests_per_minute,
            integration.burst,
            Instant::now(),
        )
        .map_err(|wait| {
            let secs = retry_after_secs(wait);
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this key may send {} requests a minute, {} at once; retry after {secs} s",
                    integration.requests_per_minute, integration.burst
                ),
            );
            error.retry_after = Some(secs);
            error
        })?;
    Ok(integration)
}

// ------------------------------------------------------------ POST usage

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum SetStatus {
    Set,
    Unchanged,
}

impl From<PushOutcome> for SetStatus {
    fn from(outcome: PushOutcome) -> Self {
        match outcome {
            PushOutcome::Set => SetStatus::Set,
            PushOutcome::Unchanged => SetStatus::Unchanged,
        }
    }
}

async fn set_usage(State(state): State<PushState>, request: Request) -> Response {
    match set_usage_inner(&state, request).await {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Kept by hand, not `RequestBodyLimitLayer`: the layer answers a plain-text
/// 413, and the push contract answers `too_large` JSON naming the batch limit.
async fn read_body(request: Request) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than {MAX_BODY_BYTES} bytes; send at most {} items per request",
                body::MAX_BATCH_ITEMS
            ),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let mut chain: Option<&dyn std::error::Error> = Some(&e);
            while let Some(error) = chain {
                if error.to_string().contains("length limit exceeded") {
                    return too_large();
                }
                chain = error.source();
            }
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("the body could not be read: {e}"),
            )
        })
}

async fn set_usage_inner(
    state: &PushState,
    request: Request,
) -> Result<serde_json::Value, ApiError> {
    let integration = authenticate(state, request.headers()).await?;
    let app = &state.app;
    let bytes = read_body(request).await?;
    let parsed = body::parse(&bytes, app.today()).map_err(|e| match e {
        BodyError::Malformed(problems) => {
            let count = problems.len();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!(
                    "the body is not a usage item or {{\"items\": [...]}}: {}",
                    first_message(&problems)
                ),
            )
            .with_problems(problems, count)
        }
        BodyError::TooManyItems(n) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_items",
            format!(
                "{n} items in one request; send at most {}",
                body::MAX_BATCH_ITEMS
            ),
        ),
        BodyError::Invalid(problems, count) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "{count} value(s) are not valid and nothing was set: {}",
                first_message(&problems)
            ),
        )
        .with_problems(problems, count),
    })?;
    check_mapped(app, &integration.vendor, &parsed.items).await?;
    let usage: Vec<UsageObservation> = parsed
        .items
        .iter()
        .map(|item| UsageObservation {
            vendor: integration.vendor.clone(),
            account: item.account.as_str().into(),
            sku_id: item.service.as_str().into(),
            sku_name: Arc::from(item.sku_name.as_deref().unwrap_or(&item.service)),
            quantity: item.quantity,
            unit: Arc::from(item.unit.as_deref().unwrap_or(DEFAULT_UNIT)),
            unit_cost: item.unit_cost,
            billing_term: None,
            commitment_end: None,
            attributes: Attributes::default(),
            observed_at: day_start(item.observed_on),
        })
        .collect();
    let outcomes = app
        .store()
        .push_usage_all(integration.id, &usage, app.now())
        .await
        .map_err(|e| match &e {
            // Revoked between the key check and the write.
            StoreError::Invalid { problem, .. } if problem.contains("revoked") => {
                ApiError::unauthorized("the push API key was revoked")
            }
            _ => ApiError::internal("storing the pushed usage", &e),
        })?;
    let statuses: Vec<SetStatus> = outcomes.into_iter().map(SetStatus::from).collect();
    let set = statuses.iter().filter(|s| **s == SetStatus::Set).count();
    if set > 0 {
        mark_usage_changed(app);
    }
    let status = if set > 0 {
        SetStatus::Set
    } else {
        SetStatus::Unchanged
    };
    Ok(if parsed.batch {
        json!({
            "status": status,
            "set": set,
            "unchanged": statuses.len() - set,
            "items": statuses.iter().map(|s| json!({ "status": s })).collect::<Vec<_>>(),
        })
    } else {
        json!({ "status": status })
    })
}

fn first_message(problems: &[Problem]) -> String {
    problems
        .first()
        .map(|p| format!("{}: {}", p.path, p.message))
        .unwrap_or_default()
}

/// Refuses the request (404) when an account is not mapped to a PSA
/// company (excluded accounts are accepted: the MSP decided to ignore
/// them, their usage is stored and not billed).
async fn check_mapped(app: &App, vendor: &VendorId, items: &[body::Item]) -> Result<(), ApiError> {
    let mut decided: HashMap<&str, bool> = HashMap::new();
    let mut problems = Vec::new();
    let mut unmapped = Vec::new();
    for item in items {
        if decided.contains_key(item.account.as_str()) {
            continue;
        }
        let mapping = app
            .store()
            .account_mapping(vendor, &item.account.as_str().into())
            .await
            .map_err(|e| ApiError::internal("reading the account's mapping", &e))?;
        let ok = matches!(
            mapping.map(|m| m.status),
            Some(AccountMappingStatus::Mapped(_) | AccountMappingStatus::Excluded)
        );
        decided.insert(&item.account, ok);
        if !ok {
            unmapped.push(format!("{:?}", item.account));
            problems.push(Problem {
                path: format!("{}.account_id", item.path),
                message: unmapped_message(vendor, &item.account),
            });
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let count = problems.len();
    let message = if count == 1 {
        problems[0].message.clone()
    } else {
        format!(
            "accounts {} of vendor integration {vendor:?} are not mapped to a PSA company; nothing was set. \
             Ask the MSP to map them in Trueup (Mappings), then send again; \
             GET {ACCOUNTS_PATH} lists the accounts this key may report on",
            unmapped.join(", ")
        )
    };
    Err(
        ApiError::new(StatusCode::NOT_FOUND, "account_not_mapped", message)
            .with_problems(problems, count),
    )
}

fn unmapped_message(vendor: &VendorId, account: &str) -> String {
    format!(
        "account {account:?} of vendor integration {vendor:?} is not mapped to a PSA company, so its usage \
         cannot be billed and nothing was set. Ask the MSP to map it in Trueup (Mappings: vendor {vendor}, \
         account {account} -> the customer's company), then send again; GET {ACCOUNTS_PATH} lists the \
         accounts this key may report on"
    )
}

// -------------------------------------------------------------- listings

/// How one account of the vendor stands.
#[derive(Debug, Clone, Serialize)]
struct AccountEntry {
    account_id: String,
    name: Option<String>,
    /// mapped, unmapped or excluded.
    status: &'static str,
    /// manual (set by a person), automatic (the last match) or none.
    decided_by: &'static str,
    /// Whether pushes for it are accepted.
    accepts_usage: bool,
    company: Option<CompanyRef>,
    last_reported_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
struct CompanyRef {
    id: String,
    name: Option<String>,
}

struct VendorView {
    vendor: serde_json::Value,
    accounts: BTreeMap<String, AccountEntry>,
    companies: HashMap<CompanyId, Company>,
    usage: Vec<UsageObservation>,
}

async fn vendor_view(app: &App, vendor: &VendorId) -> Result<VendorView, StoreError> {
    let store = app.store();
    let integration = store
        .vendor_integrations()
        .await?
        .into_iter()
        .find(|v| v.id == *vendor);
    let companies: HashMap<CompanyId, Company> = store
        .psa_companies()
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let usage = store.latest_pushed_usage(vendor).await?;
    let mut accounts: BTreeMap<String, AccountEntry> = BTreeMap::new();
    let entry = |accounts: &mut BTreeMap<String, AccountEntry>, id: &str| {
        accounts
            .entry(id.to_owned())
            .or_insert_with(|| AccountEntry {
                account_id: id.to_owned(),
                name: None,
                status: "unmapped",
                decided_by: "none",
                accepts_usage: false,
                company: None,
                last_reported_on: None,
            })
            .account_id
            .clone()
    };
    for account in store.vendor_accounts(Some(vendor)).await? {
        let id = entry(&mut accounts, account.id.as_str());
        if let Some(e) = accounts.get_mut(&id) {
            e.name = Some(account.name);
        }
    }
    for u in &usage {
        let id = entry(&mut accounts, u.account.as_str());
        if let Some(e) = accounts.get_mut(&id) {
            let day = u.observed_at.date_naive();
            e.last_reported_on = Some(e.last_reported_on.map_or(day, |d| d.max(day)));
        }
    }
    let mut decide = |account: &str, status: &AccountMappingStatus, by: &'static str| {
        let id = entry(&mut accounts, account);
        if let Some(e) = accounts.get_mut(&id) {
            e.decided_by = by;
            (e.status, e.accepts_usage, e.company) = match status {
                AccountMappingStatus::Mapped(company) => (
                    "mapped",
                    true,
                    Some(CompanyRef {
                        id: company.to_string(),
                        name: companies.get(company).map(|c| c.name.clone()),
                    }),
                ),
                AccountMappingStatus::Excluded => ("excluded", true, None),
                AccountMappingStatus::Unmapped => ("unmapped", false, None),
            };
        }
    };
    let overrides = store.mapping_overrides().await?;
    let manual: Vec<_> = overrides.iter().filter(|o| o.vendor == *vendor).collect();
    for outcome in store.match_results().await? {
        let m = &outcome.mapping;
        if m.vendor == *vendor && !manual.iter().any(|o| o.account == m.account) {
            decide(m.account.as_str(), &m.status, "automatic");
        }
    }
    for o in manual {
        decide(o.account.as_str(), &o.to_mapping().status, "manual");
    }
    Ok(VendorView {
        vendor: json!({
            "id": vendor,
            "name": integration.map(|v| v.name),
        }),
        accounts,
        companies,
        usage,
    })
}

async fn list_accounts(State(state): State<PushState>, headers: HeaderMap) -> Response {
    let result = async {
        let integration = authenticate(&state, &headers).await?;
        let view = vendor_view(&state.app, &integration.vendor)
            .await
            .map_err(|e| ApiError::internal("listing the accounts", &e))?;
        Ok::<_, ApiError>(json!({
            "vendor": view.vendor,
            "accounts": view.accounts.into_values().collect::<Vec<_>>(),
        }))
    }
    .await;
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// One reported service and what the active rules make of it.
#[derive(Debug, Clone, Serialize)]
struct ServiceEntry {
    service: String,
    sku_name: String,
    unit: String,
    /// Accounts that reported it.
    accounts: usize,
    last_reported_on: NaiveDate,
    mapping: ServiceMapping,
}

#[derive(Debug, Clone, Serialize)]
struct ServiceMapping {
    /// mapped, unmapped, ignored or rule_error.
    status: &'static str,
    products: Vec<ProductTarget>,
    /// Why it is ignored, or the rule error.
    reason: Option<String>,
    /// The account whose latest report was mapped (rules may map a SKU
    /// differently per customer).
    for_account: String,
}

#[derive(Debug, Clone, Serialize)]
struct ProductTarget {
    product: String,
    multiplier: String,
}

async fn list_services(State(state): State<PushState>, headers: HeaderMap) -> Response {
    let result = async {
        let integration = authenticate(&state, &headers).await?;
        services(&state.app, &integration.vendor).await
    }
    .await;
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn services(app: &App, vendor: &VendorId) -> Result<serde_json::Value, ApiError> {
    let view = vendor_view(app, vendor)
        .await
        .map_err(|e| ApiError::internal("listing the services", &e))?;
    let rules = app
        .active_rules()
        .await
        .map_err(|e| ApiError::internal("loading the active rules", &e))?;
    // Per SKU: the most recent report (the first on ties), and how many
    // accounts report it.
    let mut latest: BTreeMap<&str, (&UsageObservation, usize, NaiveDate)> = BTreeMap::new();
    for u in &view.usage {
        let day = u.observed_at.date_naive();
        latest
            .entry(u.sku_id.as_str())
            .and_modify(|(row, accounts, last)| {
                *accounts += 1;
                if u.observed_at > row.observed_at {
                    *row = u;
                }
                *last = (*last).max(day);
            })
            .or_insert((u, 1, day));
    }
    let jobs: Vec<(UsageObservation, Option<Company>, usize, NaiveDate)> = latest
        .into_values()
        .map(|(row, accounts, last)| {
            let company = view
                .accounts
                .get(row.account.as_str())
                .and_then(|a| a.company.as_ref())
                .and_then(|c| view.companies.get(&CompanyId::from(c.id.as_str())))
                .cloned();
            (row.clone(), company, accounts, last)
        })
        .collect();
    let compiled = Arc::clone(&rules.compiled);
    let as_of = app.today();
    // Rules run in the sandboxed engine: CPU work, off the async workers.
    let services = tokio::task::spawn_blocking(move || {
        let mapper = compiled.mapper(as_of);
        jobs.into_iter()
            .map(|(row, company, accounts, last)| {
                let mapping = match mapper.map_usage(&row, company.as_ref()) {
                    Ok(m) => ServiceMapping {
                        status: if m.is_ignored() {
                            "ignored"
                        } else if m.is_unmapped() {
                            "unmapped"
                        } else {
                            "mapped"
                        },
                        products: m
                            .targets
                            .iter()
                            .map(|t| ProductTarget {
                                product: t.product.to_string(),
                                multiplier: t.multiplier.to_string(),
                            })
                            .collect(),
                        reason: m.ignored.as_deref().map(str::to_owned),
                        for_account: row.account.to_string(),
                    },
                    Err(failure) => ServiceMapping {
                        status: "rule_error",
                        products: Vec::new(),
                        reason: Some(failure.to_string()),
                        for_account: row.account.to_string(),
                    },
                };
                ServiceEntry {
                    service: row.sku_id.to_string(),
                    sku_name: row.sku_name.to_string(),
                    unit: row.unit.to_string(),
                    accounts,
                    last_reported_on: last,
                    mapping,
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal("mapping the services", &e))?;
    Ok(json!({
        "vendor": view.vendor,
        "rules": rules.version.label(),
        "services": services,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_fragment_describes_every_route() {
        let document: serde_json::Value =
            serde_json::from_str(OPENAPI_FRAGMENT).expect("the fragment is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        for (path, method) in [
            (USAGE_PATH, "post"),
            (ACCOUNTS_PATH, "get"),
            (SERVICES_PATH, "get"),
        ] {
            assert!(
                document["paths"][path][method].is_object(),
                "{method} {path} is missing from push.openapi.json"
            );
        }
        let responses = &document["paths"][USAGE_PATH]["post"]["responses"];
        for status in ["200", "400", "401", "404", "413", "422", "429"] {
            assert!(responses[status].is_object(), "POST usage lacks {status}");
        }
        // Every schema a path refers to exists.
        let text = OPENAPI_FRAGMENT;
        for reference in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "schema {name} is referenced but not defined"
            );
        }
    }
}
