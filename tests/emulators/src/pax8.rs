//! Pax8 Partner API emulator (`https://api.pax8.com/v1`).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/token` | JSON `{client_id, client_secret, audience, grant_type}` → `{access_token, expires_in, token_type, scope, expires_at}` |
//! | `GET /v1/companies`, `GET /v1/companies/{id}` | the MSP's customers (plus its internal company) |
//! | `GET /v1/products`, `GET /v1/products/{id}` | the products the world's subscriptions use |
//! | `GET /v1/subscriptions`, `GET /v1/subscriptions/{id}` | subscriptions, filterable by `companyId`, `productId`, `status`, `billingTerm` |
//! | `PUT /v1/subscriptions/{id}` | partial update (`quantity`, `price`, `billingTerm`, `startDate`) |
//! | `DELETE /v1/subscriptions/{id}[?cancelDate=]` | cancel (now, or pending until the date) |
//! | `GET /_emulator/pax8/companies` | inspection: company id ↔ world customer |
//!
//! Auth: every route but the token one needs `Authorization: Bearer` with a
//! token from `/v1/token` issued for [`CLIENT_ID`] / [`CLIENT_SECRET`] and the
//! audience [`AUDIENCE`]. Paging: `page` is 0-based, `size` defaults to 10
//! and is cut to [`Settings::page_size_max`] (200, as documented); lists
//! answer `{"content": [...], "page": {"size", "totalElements",
//! "totalPages", "number"}}` where `page.size` is the size actually used.
//! `sort` takes `field` or `field,direction` (direction case-insensitive).
//! Errors use Pax8's envelope `{type, message, instance, status, details}`.
//! The whole account may make [`Settings::requests_per_minute`] requests a
//! minute (1000); over it, `429` with `Retry-After`. Prices are JSON numbers
//! with two decimals, held as exact cents.
//!
//! Truth: a company whose customer takes the catalogue product reported by
//! a Pax8 subscription has one `Active` subscription of it whose `quantity`
//! is the reported usage. Noise: cancelled earlier subscriptions, trials,
//! orders still `PendingManual`/`WaitingForDetails`, and the MSP's internal
//! company with its own subscriptions.
//!
//! Under a paging-loop fault every page request is answered with page 0.

// Handlers bail out early with a finished HTTP answer (`Err(Response)`);
// boxing it would only add noise to a once-per-request path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration as Days, NaiveTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use crate::EmulatorContext;
use crate::catalog::{PRODUCTS, VendorSource, reported_usage};
use crate::common::decimal_from_json;
use crate::faults::RateWindow;
use crate::vendor_common::{
    MSP_DOMAIN, TokenRefusal, TokenStore, bearer_token, guid, internal_account_name, page_count,
    page_range, reference_time, refuse_when_throttled,
};
use crate::world::SeededRng;

/// The API client id the emulator accepts.
pub const CLIENT_ID: &str = "pax8-emu-client-7Hq2";
/// The matching client secret.
pub const CLIENT_SECRET: &str = "pax8-emu-secret-Zm4vR9";
/// The audience of the partner endpoints.
pub const AUDIENCE: &str = "https://api.pax8.com";
/// Documented largest page.
pub const PAGE_SIZE_MAX: usize = 200;
/// Page size when `size` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 10;
/// Requests allowed per minute for the account.
pub const REQUESTS_PER_MINUTE: usize = 1000;
/// Token lifetime (`expires_in`): one day.
pub const TOKEN_LIFETIME_SECS: u64 = 86_400;

/// Subscription statuses Pax8 uses.
pub const STATUSES: [&str; 10] = [
    "Active",
    "Cancelled",
    "PendingManual",
    "PendingAutomated",
    "PendingCancel",
    "WaitingForDetails",
    "Trial",
    "Converted",
    "PendingActivation",
    "Activated",
];
/// Billing terms Pax8 uses.
pub const BILLING_TERMS: [&str; 7] = [
    "Monthly",
    "Annual",
    "2-Year",
    "3-Year",
    "One-Time",
    "Trial",
    "Activation",
];

/// Knobs of the Pax8 emulator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest page served.
    pub page_size_max: usize,
    /// Requests per minute before 429.
    pub requests_per_minute: usize,
    /// Token lifetime in seconds.
    pub token_lifetime_secs: u64,
    /// The instant dates are relative to (default: start-up wall clock).
    pub as_of: Option<DateTime<Utc>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            page_size_max: PAGE_SIZE_MAX,
            requests_per_minute: REQUESTS_PER_MINUTE,
            token_lifetime_secs: TOKEN_LIFETIME_SECS,
            as_of: None,
        }
    }
}

/// A product on Pax8's price list.
#[derive(Debug)]
struct ProductDef {
    name: &'static str,
    vendor: &'static str,
    sku: &'static str,
    vendor_sku: &'static str,
    price_cents: i64,
    cost_cents: i64,
    unit: &'static str,
}

/// The catalogue's Pax8 product first (its name comes from
/// [`crate::catalog`]), then products only seen as noise.
const NOISE_PRODUCTS: [ProductDef; 2] = [
    ProductDef {
        name: "Keeper Business",
        vendor: "Keeper Security",
        sku: "KSI-BUS-1Y",
        vendor_sku: "KEEPER-BUSINESS",
        price_cents: 375,
        cost_cents: 300,
        unit: "User",
    },
    ProductDef {
        name: "Proofpoint Essentials - Business",
        vendor: "Proofpoint",
        sku: "PFP-ESS-BUS",
        vendor_sku: "PPE-BUSINESS",
        price_cents: 450,
        cost_cents: 290,
        unit: "User",
    },
];

#[derive(Debug, Clone)]
struct Company {
    id: String,
    customer_index: Option<usize>,
    name: String,
    website: String,
    city: &'static str,
    state: &'static str,
    postal_code: String,
    phone: String,
    bill_on_behalf: bool,
    self_service: bool,
    order_approval: bool,
    updated: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Subscription {
    id: String,
    company: usize,
    product: usize,
    quantity: u32,
    status: &'static str,
    billing_term: &'static str,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    price_cents: i64,
    cost_cents: i64,
    commitment: Option<(String, &'static str, DateTime<Utc>)>,
    vendor_subscription_id: String,
}

struct Pax8State {
    ctx: EmulatorContext,
    settings: Settings,
    products: Vec<(String, ProductDef)>,
    companies: Vec<Company>,
    subscriptions: Mutex<Vec<Subscription>>,
    tokens: TokenStore<()>,
    throttle: RateWindow,
}

type Shared = Arc<Pax8State>;

impl Pax8State {
    fn subscriptions(&self) -> MutexGuard<'_, Vec<Subscription>> {
        // Updates replace whole fields; a poisoned lock still guards
        // consistent records.
        self.subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

const CITIES: [(&str, &str); 6] = [
    ("Denver", "CO"),
    ("Austin", "TX"),
    ("Portland", "OR"),
    ("Columbus", "OH"),
    ("Raleigh", "NC"),
    ("Tampa", "FL"),
];

fn midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&at.date_naive().and_time(NaiveTime::MIN))
}

fn build(
    ctx: &EmulatorContext,
    now: DateTime<Utc>,
) -> (Vec<(String, ProductDef)>, Vec<Company>, Vec<Subscription>) {
    let seed = ctx.world.seed;
    let catalog_product = PRODUCTS
        .iter()
        .find(|p| matches!(p.source, VendorSource::Pax8Subscription { .. }));
    let mut products = Vec::new();
    if let Some(p) = catalog_product
        && let VendorSource::Pax8Subscription { product_name } = p.source
    {
        products.push((
            guid(0, "pax8-product", 0),
            ProductDef {
                name: product_name,
                vendor: "Dropsuite",
                sku: "DRS-M365-BKP",
                vendor_sku: "DS-M365-BACKUP",
                // Pax8 bills the MSP the cost; the suggested price is the
                // MSP's catalogue price.
                price_cents: p.unit_price_cents,
                cost_cents: p.unit_cost_cents,
                unit: "User",
            },
        ));
    }
    let catalog_name = products.first().map(|(_, p)| p.name);
    for (i, def) in NOISE_PRODUCTS.into_iter().enumerate() {
        products.push((guid(0, "pax8-product", i as u64 + 1), def));
    }
    let keeper = products.len() - 2;
    let proofpoint = products.len() - 1;

    let mut companies = Vec::new();
    let mut subscriptions = Vec::new();
    let mut serial = 0u64;
    let mut add = |subs: &mut Vec<Subscription>,
                   rng: &mut SeededRng,
                   company: usize,
                   product: usize,
                   quantity: u32,
                   status: &'static str,
                   products: &[(String, ProductDef)]| {
        serial += 1;
        let def = &products[product].1;
        let age = i64::from(rng.range(30, 800));
        let start = midnight(now - Days::days(age)) + Days::hours(8) + Days::minutes(30);
        let annual = status == "Active" && rng.chance(20);
        let billing_term = match status {
            "Trial" => "Trial",
            _ if annual => "Annual",
            _ => "Monthly",
        };
        let end = match status {
            "Cancelled" => Some(midnight(now - Days::days(i64::from(rng.range(3, 200))))),
            "Trial" => Some(midnight(now + Days::days(i64::from(rng.range(3, 30))))),
            _ => None,
        };
        let commitment = annual.then(|| {
            let mut term_end = start;
            while term_end <= now {
                term_end = term_end
                    .checked_add_months(chrono::Months::new(12))
                    .unwrap_or(now + Days::days(365));
            }
            (
                guid(seed, "pax8-commitment", serial),
                "Annual",
                term_end - Days::days(1),
            )
        });
        let free = status == "Trial";
        subs.push(Subscription {
            id: guid(seed, "pax8-subscription", serial),
            company,
            product,
            quantity,
            status,
            billing_term,
            start,
            end,
            created: start - Days::days(i64::from(rng.range(0, 3))),
            updated: start,
            price_cents: if free { 0 } else { def.price_cents },
            cost_cents: if free { 0 } else { def.cost_cents },
            commitment,
            vendor_subscription_id: format!("{:016x}", rng.next_u64()),
        });
    };
    for customer in ctx.world.vendor_customers() {
        let mut rng = SeededRng::stream(seed, "pax8-company", customer.index as u64);
        let company = companies.len();
        let (city, state) = *rng.pick(&CITIES);
        companies.push(Company {
            id: guid(seed, "pax8-company", customer.index as u64),
            customer_index: Some(customer.index),
            name: customer.vendor_name.clone(),
            website: customer.domain.clone(),
            city,
            state,
            postal_code: format!("{:05}", rng.range(10_000, 99_999)),
            phone: format!("555-{:03}-{:04}", rng.range(100, 999), rng.range(0, 9999)),
            bill_on_behalf: rng.chance(10),
            self_service: rng.chance(30),
            order_approval: rng.chance(50),
            updated: midnight(now - Days::days(i64::from(rng.range(1, 400)))),
        });
        let backup = reported_usage(customer).into_iter().find_map(|(p, units)| {
            matches!(p.source, VendorSource::Pax8Subscription { product_name } if Some(product_name) == catalog_name)
                .then_some(units)
        });
        match backup {
            Some(units) if !products.is_empty() => {
                add(
                    &mut subscriptions,
                    &mut rng,
                    company,
                    0,
                    units,
                    "Active",
                    &products,
                );
                if rng.chance(15) {
                    let old = rng.range(1, units.max(1));
                    add(
                        &mut subscriptions,
                        &mut rng,
                        company,
                        0,
                        old,
                        "Cancelled",
                        &products,
                    );
                }
            }
            _ if !products.is_empty() => {
                let roll = rng.range(0, 99);
                let users = customer.m365_users.max(1);
                if roll < 8 {
                    add(
                        &mut subscriptions,
                        &mut rng,
                        company,
                        0,
                        users,
                        "Trial",
                        &products,
                    );
                } else if roll < 12 {
                    add(
                        &mut subscriptions,
                        &mut rng,
                        company,
                        0,
                        users,
                        "PendingManual",
                        &products,
                    );
                } else if roll < 15 {
                    add(
                        &mut subscriptions,
                        &mut rng,
                        company,
                        0,
                        users,
                        "WaitingForDetails",
                        &products,
                    );
                }
            }
            _ => {}
        }
        if rng.chance(10) {
            let seats = rng.range(1, 10);
            add(
                &mut subscriptions,
                &mut rng,
                company,
                keeper,
                seats,
                "Trial",
                &products,
            );
        }
    }
    let internal = companies.len();
    companies.push(Company {
        id: guid(seed, "pax8-company-internal", 0),
        customer_index: None,
        name: internal_account_name(),
        website: MSP_DOMAIN.to_owned(),
        city: "Denver",
        state: "CO",
        postal_code: "80202".into(),
        phone: "555-010-0100".into(),
        bill_on_behalf: false,
        self_service: false,
        order_approval: false,
        updated: midnight(now - Days::days(30)),
    });
    let mut rng = SeededRng::stream(seed, "pax8-company-internal", 0);
    add(
        &mut subscriptions,
        &mut rng,
        internal,
        proofpoint,
        14,
        "Active",
        &products,
    );
    add(
        &mut subscriptions,
        &mut rng,
        internal,
        keeper,
        14,
        "Active",
        &products,
    );
    (products, companies, subscriptions)
}

/// The emulator's API router and its `/_emulator/pax8` inspection router
/// (kept apart so fault injection never touches inspection).
pub fn routers(ctx: &EmulatorContext) -> (Router, Router) {
    let settings = ctx.settings.pax8.clone();
    let now = reference_time(settings.as_of);
    let (products, companies, subscriptions) = build(ctx, now);
    let state = Arc::new(Pax8State {
        ctx: ctx.clone(),
        throttle: RateWindow::new(settings.requests_per_minute, Duration::from_secs(60)),
        settings,
        products,
        companies,
        subscriptions: Mutex::new(subscriptions),
        tokens: TokenStore::new("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.p8", ctx.world.seed),
    });
    let inspection = Router::new()
        .route("/_emulator/pax8/companies", get(inspect_companies))
        .with_state(state.clone());
    let api = Router::new()
        .route("/v1/token", post(token))
        .route("/v1/companies", get(list_companies))
        .route("/v1/companies/{id}", get(get_company))
        .route("/v1/products", get(list_products))
        .route("/v1/products/{id}", get(get_product))
        .route("/v1/subscriptions", get(list_subscriptions))
        .route(
            "/v1/subscriptions/{id}",
            get(get_subscription)
                .put(update_subscription)
                .delete(cancel_subscription),
        )
        .with_state(state);
    (api, inspection)
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Cents as a JSON number the way Pax8 writes amounts: whole amounts as
/// integers (`1500` → `15`), others with their decimals (`1539` → `15.39`;
/// the shortest round-trip form of such a value is exactly its decimal
/// text, so nothing is lost).
fn money(cents: i64) -> Value {
    if cents % 100 == 0 {
        json!(cents / 100)
    } else {
        json!(cents as f64 / 100.0)
    }
}

/// Pax8's error envelope.
fn error(status: StatusCode, kind: &str, message: &str, uri: &Uri) -> Response {
    (
        status,
        Json(json!({
            "type": kind,
            "message": message,
            "instance": uri.path(),
            "status": status.as_u16(),
            "details": [],
        })),
    )
        .into_response()
}

fn not_found(what: &str, id: &str, uri: &Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("{what} {id} not found."),
        uri,
    )
}

/// Checks the bearer token and the account's rate limit.
fn guard(state: &Pax8State, headers: &HeaderMap, uri: &Uri) -> Result<(), Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Full authentication is required to access this resource: send Authorization: Bearer <access_token>.",
            uri,
        ));
    };
    match state.tokens.check(token) {
        Ok(()) => {}
        Err(TokenRefusal::Expired) => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "The access token has expired.",
                uri,
            ));
        }
        Err(TokenRefusal::Unknown) => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "The access token is not valid.",
                uri,
            ));
        }
    }
    refuse_when_throttled(state.throttle.admit(), |secs| {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            &format!(
                "The current rate limit is {} requests per minute; retry in {secs} s.",
                state.settings.requests_per_minute
            ),
            uri,
        )
    })
}

async fn token(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_request", "error_description": format!("The body must be JSON: {e}")})),
            )
                .into_response();
        }
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    if text("grant_type") != Some("client_credentials") {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant type: only client_credentials is allowed."})),
        )
            .into_response();
    }
    if text("client_id") != Some(CLIENT_ID) || text("client_secret") != Some(CLIENT_SECRET) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "access_denied", "error_description": "Unauthorized"})),
        )
            .into_response();
    }
    if text("audience") != Some(AUDIENCE) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "access_denied", "error_description": format!("Service not enabled within domain: {}", text("audience").unwrap_or_default())})),
        )
            .into_response();
    }
    let lifetime = state.settings.token_lifetime_secs;
    let (access_token, expires) = state.tokens.issue((), Duration::from_secs(lifetime));
    Json(json!({
        "access_token": access_token,
        "expires_in": lifetime,
        "token_type": "Bearer",
        "scope": "",
        "expires_at": iso(expires),
    }))
    .into_response()
}

/// Page request parsed from `page`/`size`.
struct PageRequest {
    page: usize,
    size: usize,
}

fn page_request(
    state: &Pax8State,
    query: &HashMap<String, String>,
    uri: &Uri,
) -> Result<PageRequest, Response> {
    let parse = |name: &str, default: usize| match query.get(name) {
        None => Ok(default),
        Some(text) => text.trim().parse::<usize>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("{name} must be a non-negative whole number, got {text:?}."),
                uri,
            )
        }),
    };
    let page = parse("page", 0)?;
    let size = parse("size", DEFAULT_PAGE_SIZE)?;
    if size == 0 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "size must be at least 1.",
            uri,
        ));
    }
    Ok(PageRequest {
        page,
        size: size.min(state.settings.page_size_max.max(1)),
    })
}

/// Cuts `items` to the requested page (page 0 under a paging-loop fault).
fn paged(state: &Pax8State, items: Vec<Value>, request: &PageRequest, uri: &Uri) -> Response {
    let number = if state.ctx.faults.paging_loop(uri.path()) {
        0
    } else {
        request.page
    };
    let total = items.len();
    let range = page_range(total, number, request.size);
    let content: Vec<Value> = items
        .into_iter()
        .skip(range.start)
        .take(range.len())
        .collect();
    Json(json!({
        "content": content,
        "page": {
            "size": request.size,
            "totalElements": total,
            "totalPages": page_count(total, request.size),
            "number": number,
        }
    }))
    .into_response()
}

/// `sort=field[,direction]` → (field, descending).
fn sort_spec<'a>(
    query: &'a HashMap<String, String>,
    allowed: &[&str],
    uri: &Uri,
) -> Result<Option<(&'a str, bool)>, Response> {
    let Some(spec) = query.get("sort") else {
        return Ok(None);
    };
    let (field, direction) = spec.split_once(',').unwrap_or((spec.as_str(), "asc"));
    let field = field.trim();
    if !allowed.contains(&field) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!(
                "Cannot sort by {field:?}; sortable fields: {}.",
                allowed.join(", ")
            ),
            uri,
        ));
    }
    let descending = match direction.trim().to_ascii_lowercase().as_str() {
        "asc" => false,
        "desc" => true,
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("Sort direction must be asc or desc, got {other:?}."),
                uri,
            ));
        }
    };
    Ok(Some((field, descending)))
}

fn company_json(c: &Company) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "address": {
            "street": "100 Main St",
            "city": c.city,
            "stateOrProvince": c.state,
            "postalCode": c.postal_code,
            "country": "US",
        },
        "phone": c.phone,
        "website": c.website,
        "externalId": null,
        "billOnBehalfOfEnabled": c.bill_on_behalf,
        "selfServiceAllowed": c.self_service,
        "orderApprovalRequired": c.order_approval,
        "status": "Active",
        "updatedDate": iso(c.updated),
    })
}

/// Reads one filterable field of a company, as text.
type CompanyField = fn(&Company) -> String;

async fn list_companies(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    let request = match page_request(&state, &query, &uri) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let sort = match sort_spec(
        &query,
        &["name", "city", "country", "stateOrProvince", "postalCode"],
        &uri,
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut companies: Vec<&Company> = state.companies.iter().collect();
    let filters: [(&str, CompanyField); 8] = [
        ("status", |_| "Active".into()),
        ("city", |c| c.city.into()),
        ("country", |_| "US".into()),
        ("stateOrProvince", |c| c.state.into()),
        ("postalCode", |c| c.postal_code.clone()),
        ("selfServiceAllowed", |c| c.self_service.to_string()),
        ("billOnBehalfOfEnabled", |c| c.bill_on_behalf.to_string()),
        ("orderApprovalRequired", |c| c.order_approval.to_string()),
    ];
    for (name, value) in filters {
        if let Some(wanted) = query.get(name) {
            companies.retain(|c| value(c).eq_ignore_ascii_case(wanted));
        }
    }
    if let Some((field, descending)) = sort {
        let key = |c: &Company| -> String {
            match field {
                "city" => c.city.to_ascii_lowercase(),
                "country" => "us".into(),
                "stateOrProvince" => c.state.to_ascii_lowercase(),
                "postalCode" => c.postal_code.clone(),
                _ => c.name.to_ascii_lowercase(),
            }
        };
        companies.sort_by_cached_key(|c| key(c));
        if descending {
            companies.reverse();
        }
    }
    let items = companies.into_iter().map(company_json).collect();
    paged(&state, items, &request, &uri)
}

async fn get_company(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    match state
        .companies
        .iter()
        .find(|c| c.id.eq_ignore_ascii_case(&id))
    {
        Some(c) => Json(company_json(c)).into_response(),
        None => not_found("Company", &id, &uri),
    }
}

fn product_json(id: &str, p: &ProductDef) -> Value {
    json!({
        "id": id,
        "name": p.name,
        "vendorName": p.vendor,
        "shortDescription": format!("{} from {}", p.name, p.vendor),
        "sku": p.sku,
        "vendorSku": p.vendor_sku,
        "requiresCommitment": false,
        "unitOfMeasurement": p.unit,
    })
}

async fn list_products(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    let request = match page_request(&state, &query, &uri) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let items = state
        .products
        .iter()
        .filter(|(_, p)| {
            query
                .get("vendorName")
                .is_none_or(|v| p.vendor.eq_ignore_ascii_case(v))
        })
        .map(|(id, p)| product_json(id, p))
        .collect();
    paged(&state, items, &request, &uri)
}

async fn get_product(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    match state
        .products
        .iter()
        .find(|(pid, _)| pid.eq_ignore_ascii_case(&id))
    {
        Some((pid, p)) => {
            let mut body = product_json(pid, p);
            body["description"] = json!(format!(
                "{} ({}), billed per {}.",
                p.name,
                p.vendor,
                p.unit.to_ascii_lowercase()
            ));
            Json(body).into_response()
        }
        None => not_found("Product", &id, &uri),
    }
}

fn subscription_json(state: &Pax8State, s: &Subscription) -> Value {
    let (product_id, product) = &state.products[s.product];
    let mut body = json!({
        "id": s.id,
        "companyId": state.companies[s.company].id,
        "productId": product_id,
        "productName": product.name,
        "vendorSubscriptionId": s.vendor_subscription_id,
        "vendorSkuId": product.vendor_sku,
        "quantity": s.quantity,
        "startDate": iso(s.start),
        "createdDate": iso(s.created),
        "updatedDate": iso(s.updated),
        "billingStart": s.start.date_naive().to_string(),
        "status": s.status,
        "price": money(s.price_cents),
        "partnerCost": money(s.cost_cents),
        "currencyCode": "USD",
        "billingTerm": s.billing_term,
    });
    if let Some(end) = s.end {
        body["endDate"] = json!(iso(end));
    }
    if let Some((id, term, end)) = &s.commitment {
        body["commitmentTerm"] = json!({"id": id, "term": term, "endDate": iso(*end)});
    }
    body
}

fn enum_filter<'a>(
    query: &'a HashMap<String, String>,
    name: &str,
    allowed: &[&str],
    uri: &Uri,
) -> Result<Option<&'a str>, Response> {
    match query.get(name) {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.as_str())),
        Some(v) => Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("{name} {v:?} is not one of: {}.", allowed.join(", ")),
            uri,
        )),
    }
}

async fn list_subscriptions(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    let request = match page_request(&state, &query, &uri) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let sort = match sort_spec(
        &query,
        &[
            "quantity",
            "startDate",
            "endDate",
            "createdDate",
            "billingStart",
            "price",
        ],
        &uri,
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (status, term) = match (
        enum_filter(&query, "status", &STATUSES, &uri),
        enum_filter(&query, "billingTerm", &BILLING_TERMS, &uri),
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let company = query.get("companyId").map(String::as_str);
    let product = query.get("productId").map(String::as_str);
    let subscriptions = state.subscriptions();
    let mut selected: Vec<&Subscription> = subscriptions
        .iter()
        .filter(|s| status.is_none_or(|v| s.status == v))
        .filter(|s| term.is_none_or(|v| s.billing_term == v))
        .filter(|s| company.is_none_or(|v| state.companies[s.company].id.eq_ignore_ascii_case(v)))
        .filter(|s| product.is_none_or(|v| state.products[s.product].0.eq_ignore_ascii_case(v)))
        .collect();
    if let Some((field, descending)) = sort {
        selected.sort_by_key(|s| match field {
            "quantity" => i64::from(s.quantity),
            "endDate" => s.end.map_or(i64::MAX, |e| e.timestamp()),
            "createdDate" => s.created.timestamp(),
            "price" => s.price_cents,
            _ => s.start.timestamp(),
        });
        if descending {
            selected.reverse();
        }
    }
    let items = selected
        .into_iter()
        .map(|s| subscription_json(&state, s))
        .collect();
    drop(subscriptions);
    paged(&state, items, &request, &uri)
}

async fn get_subscription(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    let subscriptions = state.subscriptions();
    match subscriptions
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
    {
        Some(s) => Json(subscription_json(&state, s)).into_response(),
        None => not_found("Subscription", &id, &uri),
    }
}

/// Cents from a JSON number with at most two decimals.
fn cents(value: &Value) -> Option<i64> {
    let decimal = decimal_from_json(value)?;
    let scaled = decimal.checked_mul(rust_decimal::Decimal::ONE_HUNDRED)?;
    if !scaled.fract().is_zero() || scaled.is_sign_negative() {
        return None;
    }
    scaled.to_i64()
}

async fn update_subscription(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    let unprocessable = |message: String| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNPROCESSABLE_ENTITY",
            &message,
            &uri,
        )
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "The body must be a JSON object.",
                &uri,
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("The body is not valid JSON: {e}."),
                &uri,
            );
        }
    };
    let mut subscriptions = state.subscriptions();
    let Some(s) = subscriptions
        .iter_mut()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
    else {
        return not_found("Subscription", &id, &uri);
    };
    if ["price", "billingTerm", "quantity", "startDate"]
        .iter()
        .all(|k| body.get(*k).is_none())
    {
        return unprocessable(
            "At least one of price, billingTerm, quantity or startDate is required.".into(),
        );
    }
    if matches!(s.status, "Cancelled" | "PendingCancel") {
        return unprocessable(format!(
            "Subscription {} is {} and cannot be updated.",
            s.id, s.status
        ));
    }
    let mut updated = s.clone();
    if let Some(q) = body.get("quantity") {
        match q.as_u64().and_then(|q| u32::try_from(q).ok()) {
            Some(q) if q >= 1 => updated.quantity = q,
            _ => {
                return unprocessable(format!(
                    "quantity must be a whole number of at least 1, got {q}."
                ));
            }
        }
    }
    if let Some(p) = body.get("price") {
        match cents(p) {
            Some(c) => updated.price_cents = c,
            None => {
                return unprocessable(format!(
                    "price must be a non-negative amount with at most two decimals, got {p}."
                ));
            }
        }
    }
    if let Some(t) = body.get("billingTerm") {
        match t.as_str().filter(|t| BILLING_TERMS.contains(t)) {
            Some(t) => {
                updated.billing_term = BILLING_TERMS
                    .into_iter()
                    .find(|b| *b == t)
                    .unwrap_or(updated.billing_term);
            }
            None => {
                return unprocessable(format!(
                    "billingTerm must be one of {}, got {t}.",
                    BILLING_TERMS.join(", ")
                ));
            }
        }
    }
    if let Some(d) = body.get("startDate") {
        match d
            .as_str()
            .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        {
            Some(d) => updated.start = d.with_timezone(&Utc),
            None => {
                return unprocessable(format!("startDate must be an ISO-8601 date-time, got {d}."));
            }
        }
    }
    updated.updated = Utc::now();
    *s = updated;
    let body = subscription_json(&state, s);
    Json(body).into_response()
}

async fn cancel_subscription(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = guard(&state, &headers, &uri) {
        return r;
    }
    let when = match query.get("cancelDate") {
        None => None,
        Some(d) => match DateTime::parse_from_rfc3339(d) {
            Ok(d) => Some(d.with_timezone(&Utc)),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    &format!("cancelDate must be an ISO-8601 date-time, got {d:?}."),
                    &uri,
                );
            }
        },
    };
    let mut subscriptions = state.subscriptions();
    let Some(s) = subscriptions
        .iter_mut()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
    else {
        return not_found("Subscription", &id, &uri);
    };
    let now = Utc::now();
    let end = when.unwrap_or(now);
    s.status = if end > now {
        "PendingCancel"
    } else {
        "Cancelled"
    };
    s.end = Some(end);
    s.updated = now;
    StatusCode::NO_CONTENT.into_response()
}

async fn inspect_companies(State(state): State<Shared>) -> Json<Value> {
    Json(json!(
        state
            .companies
            .iter()
            .map(|c| json!({
                "companyId": c.id,
                "customerIndex": c.customer_index,
                "name": c.name,
                "internal": c.customer_index.is_none(),
            }))
            .collect::<Vec<_>>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_renders_exact_two_decimal_numbers() {
        assert_eq!(money(1539).to_string(), "15.39");
        assert_eq!(money(400).to_string(), "4");
        assert_eq!(money(7).to_string(), "0.07");
    }

    #[test]
    fn cents_accepts_two_decimals_only() {
        assert_eq!(cents(&json!(15.39)), Some(1539));
        assert_eq!(cents(&json!(4)), Some(400));
        assert_eq!(cents(&json!(1.005)), None);
        assert_eq!(cents(&json!(-1)), None);
        assert_eq!(cents(&json!(true)), None);
    }
}
