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
//! The contract, with examples, is `docs/push-api.md`; the handlers'
//! `#[utoipa::path]` annotations and [`routes`] make the push API's part
//! of the served OpenAPI document (`crate::web::openapi`).

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
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use trueup_core::mapping::UsageMapper as _;
use trueup_core::model::{
    AccountMappingStatus, Attributes, Company, CompanyId, UsageObservation, VendorId,
};
use trueup_store::StoreError;
use trueup_store::imports::PushIntegration;
use trueup_store::sync::PushOutcome;
use utoipa_axum::routes;

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
use crate::web::openapi::Routes;
use crate::web::{Access, RouteInfo};

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

#[derive(Clone)]
pub(crate) struct PushState {
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
    routes().router.with_state(state)
}

/// The push API's route table, router and OpenAPI operations, built
/// together from the handlers' annotations (see `crate::web::openapi`).
#[rustfmt::skip]
pub(crate) fn routes() -> Routes<PushState> {
    Routes::new()
        .add(Access::PushKey, "Set the unit count of (account, service) for a day", routes!(set_usage))
        .add(Access::PushKey, "The accounts this key may report on, and how each is mapped", routes!(list_accounts))
        .add(Access::PushKey, "The services (SKUs) this vendor has reported and the PSA products they map to under the active rules", routes!(list_services))
}

/// The push API's routes with their access, in declaration order.
pub fn route_table() -> Vec<RouteInfo> {
    routes().table
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

/// An error answer of the push API.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PushError)]
struct ErrorAnswer<'a> {
    /// `unauthorized`, `rate_limited`, `malformed`, `too_large`,
    /// `too_many_items`, `invalid`, `account_not_mapped` or `internal`.
    error: &'a str,
    /// What is wrong and how to fix it.
    message: &'a str,
    /// What is wrong where (at most 100).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    problems: &'a [Problem],
    /// How many problems there were in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem_count: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorAnswer {
            error: self.code,
            message: &self.message,
            problems: &self.problems,
            problem_count: (!self.problems.is_empty()).then_some(self.problem_count),
        };
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

/// `set` when a count changed, `unchanged` when it already had this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PushSetStatus)]
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

#[utoipa::path(
    post,
    path = "/api/v1/usage",
    tag = "push",
    request_body(content = UsageBody, description = "One item, or `{\"items\": [...]}` (1 to 1000 items, all or nothing)"),
    responses(
        (status = 200, description = "Stored: `set` when any count changed, `unchanged` when every count already had this value", body = UsageAnswer),
        (status = 400, description = "Not JSON, or not an item or a batch", body = ErrorAnswer),
        (status = 404, description = "An account is not mapped to a PSA company (nothing was set); problems[] names each", body = ErrorAnswer),
        (status = 413, description = "The body is over 1 MiB or has more than 1000 items", body = ErrorAnswer),
        (status = 422, description = "Well-formed, but a value is wrong (nothing was set); problems[] says where", body = ErrorAnswer),
        (status = 401, description = "No, a malformed, an unknown or a revoked push key (WWW-Authenticate: Bearer)", body = ErrorAnswer),
        (status = 429, description = "Over the key's rate limit; retry after Retry-After seconds", body = ErrorAnswer),
        (status = 500, description = "A failure on the server; the MSP's logs have the details", body = ErrorAnswer)
    ),
)]
async fn set_usage(State(state): State<PushState>, request: Request) -> Response {
    match set_usage_inner(&state, request).await {
        Ok(answer) => answer,
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

async fn set_usage_inner(state: &PushState, request: Request) -> Result<Response, ApiError> {
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
    let answer = if parsed.batch {
        UsageAnswer::Batch(BatchResult {
            status,
            set,
            unchanged: statuses.len() - set,
            items: statuses
                .into_iter()
                .map(|status| ItemResult { status })
                .collect(),
        })
    } else {
        UsageAnswer::Item(ItemResult { status })
    };
    Ok(axum::Json(answer).into_response())
}

/// What `POST /api/v1/usage` takes: one item or a batch.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = PushUsage)]
#[expect(
    dead_code,
    reason = "describes the body for the OpenAPI document; body::parse reads it field by field to name every problem"
)]
enum UsageBody {
    /// One item.
    Item(Box<body::RawItem>),
    /// A batch, all or nothing.
    Batch(body::RawBatch),
}

/// What `POST /api/v1/usage` answers: as the request was, one item or a
/// batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = PushUsageAnswer)]
enum UsageAnswer {
    /// To one item.
    Item(ItemResult),
    /// To a batch.
    Batch(BatchResult),
}

/// The answer to one item.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PushUsageResult)]
struct ItemResult {
    /// Whether the count changed.
    status: SetStatus,
}

/// The answer to a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PushUsageBatchResult)]
struct BatchResult {
    /// `set` when any count changed.
    status: SetStatus,
    /// Items whose count changed.
    set: usize,
    /// Items whose count already had this value.
    unchanged: usize,
    /// Each item's outcome, in the order sent.
    items: Vec<ItemResult>,
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PushAccount)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PushCompany)]
struct CompanyRef {
    id: String,
    name: Option<String>,
}

/// The vendor integration a push key belongs to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PushVendor)]
struct VendorRef {
    /// The vendor integration id.
    id: String,
    /// Its display name.
    name: Option<String>,
}

/// `GET /api/v1/usage/accounts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PushAccountList)]
struct AccountList {
    /// The vendor integration.
    vendor: VendorRef,
    /// Its accounts: known from the MSP's mappings, from earlier pushes or
    /// from the vendor's account list.
    accounts: Vec<AccountEntry>,
}

/// `GET /api/v1/usage/services`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PushServiceList)]
struct ServiceList {
    /// The vendor integration.
    vendor: VendorRef,
    /// The active rules' version label.
    rules: String,
    /// One entry per reported service.
    services: Vec<ServiceEntry>,
}

struct VendorView {
    vendor: VendorRef,
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
        vendor: VendorRef {
            id: vendor.to_string(),
            name: integration.map(|v| v.name),
        },
        accounts,
        companies,
        usage,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/usage/accounts",
    tag = "push",
    responses(
        (status = 200, description = "The vendor integration and its accounts", body = AccountList),
        (status = 401, description = "No, a malformed, an unknown or a revoked push key (WWW-Authenticate: Bearer)", body = ErrorAnswer),
        (status = 429, description = "Over the key's rate limit; retry after Retry-After seconds", body = ErrorAnswer),
        (status = 500, description = "A failure on the server; the MSP's logs have the details", body = ErrorAnswer)
    ),
)]
async fn list_accounts(State(state): State<PushState>, headers: HeaderMap) -> Response {
    let result = async {
        let integration = authenticate(&state, &headers).await?;
        let view = vendor_view(&state.app, &integration.vendor)
            .await
            .map_err(|e| ApiError::internal("listing the accounts", &e))?;
        Ok::<_, ApiError>(AccountList {
            vendor: view.vendor,
            accounts: view.accounts.into_values().collect(),
        })
    }
    .await;
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// One reported service and what the active rules make of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PushService)]
struct ServiceEntry {
    service: String,
    sku_name: String,
    unit: String,
    /// Accounts that reported it.
    accounts: usize,
    last_reported_on: NaiveDate,
    mapping: ServiceMapping,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PushServiceMapping)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PushProduct)]
struct ProductTarget {
    product: String,
    multiplier: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/usage/services",
    tag = "push",
    responses(
        (status = 200, description = "The vendor integration, the rules version and one entry per reported service", body = ServiceList),
        (status = 401, description = "No, a malformed, an unknown or a revoked push key (WWW-Authenticate: Bearer)", body = ErrorAnswer),
        (status = 429, description = "Over the key's rate limit; retry after Retry-After seconds", body = ErrorAnswer),
        (status = 500, description = "A failure on the server; the MSP's logs have the details", body = ErrorAnswer)
    ),
)]
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

async fn services(app: &App, vendor: &VendorId) -> Result<ServiceList, ApiError> {
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
    let active = rules.clone();
    let as_of = app.today();
    // Rules run in the sandboxed engine: CPU work, off the async workers.
    let services = tokio::task::spawn_blocking(move || {
        let mapper = active.mapper(as_of);
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
    Ok(ServiceList {
        vendor: view.vendor,
        rules: rules.version.label(),
        services,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The push API's part of the generated document: every route with its
    /// push-key access, and every answer of the push contract.
    #[test]
    fn the_generated_operations_describe_every_route() {
        let table = route_table();
        let routed: Vec<(String, &str)> = table
            .iter()
            .map(|r| (r.method.to_string(), r.path.as_str()))
            .collect();
        assert_eq!(
            routed,
            [
                ("POST".to_owned(), USAGE_PATH),
                ("GET".to_owned(), ACCOUNTS_PATH),
                ("GET".to_owned(), SERVICES_PATH),
            ]
        );
        assert!(table.iter().all(|r| r.access == Access::PushKey));
        let document = serde_json::to_value(routes().doc).expect("the document is JSON");
        for route in &table {
            let operation = &document["paths"][&route.path][route.method.as_str().to_lowercase()];
            assert_eq!(operation["x-trueup-access"], "push_key", "{}", route.path);
            assert_eq!(operation["security"], json!([{ "push_key": [] }]));
            for status in ["200", "401", "429", "500"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{} {} lacks {status}",
                    route.method,
                    route.path
                );
            }
        }
        let responses = &document["paths"][USAGE_PATH]["post"]["responses"];
        for status in ["400", "404", "413", "422"] {
            assert!(responses[status].is_object(), "POST usage lacks {status}");
        }
        let schemas = &document["components"]["schemas"];
        for name in [
            "PushUsageItem",
            "PushUsageBatch",
            "PushError",
            "PushProblem",
            "PushAccountList",
            "PushServiceList",
        ] {
            assert!(schemas[name].is_object(), "schema {name} is missing");
        }
    }

    /// The error answer is what the document's PushError says.
    #[tokio::test]
    async fn errors_are_answered_as_documented() {
        let response = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "bad")
            .with_problems(
                vec![Problem {
                    path: "$.quantity".into(),
                    message: "negative".into(),
                }],
                3,
            )
            .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            body,
            json!({
                "error": "invalid",
                "message": "bad",
                "problems": [{ "path": "$.quantity", "message": "negative" }],
                "problem_count": 3,
            })
        );
        let plain = ApiError::unauthorized("no key").into_response();
        let bytes = axum::body::to_bytes(plain.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["error"], "unauthorized");
        assert!(body.get("problems").is_none(), "{body}");
    }
}
