//! ConnectWise Manage (PSA) REST API emulator.
//!
//! # Pointing a client at it
//!
//! Base URL `<origin>/v4_6_release/apis/3.0` (paths match case-insensitively,
//! as on the real IIS front end). Send
//!
//! ```text
//! Authorization: Basic base64("cobaltridge+TUpub7c1d2e3f4a5b6c7:TUpriv9f8e7d6c5b4a39")
//! clientId: <any GUID, e.g. 5f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f>
//! ```
//!
//! ([`COMPANY_ID`], [`PUBLIC_KEY`], [`PRIVATE_KEY`], [`CLIENT_ID`]; the keys
//! are configurable in [`Settings`]). A missing or malformed `clientId` is a
//! `400` that names `clientId`; wrong keys are a `401`. Errors use
//! ConnectWise's body `{"code": "...", "message": "...", "errors": [...]}`.
//!
//! # Routes
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/system/info` | version info (connection test) |
//! | GET | `/company/companies`, `/count`, `/{id}` | customers, plus deleted (recycle-bin) duplicates with `deletedFlag: true` |
//! | GET | `/finance/agreements`, `/count`, `/{id}` | agreements |
//! | GET | `/finance/agreements/types`, `/count`, `/{id}` | agreement types |
//! | GET, POST | `/finance/agreements/{parentId}/additions` | list, create |
//! | GET | `/finance/agreements/{parentId}/additions/count` | `{"count": n}` |
//! | GET, PUT, PATCH, DELETE | `/finance/agreements/{parentId}/additions/{id}` | read, replace, JSON-Patch, delete |
//! | GET | `/finance/billingCycles`, `/{id}` | billing cycles |
//! | GET | `/procurement/catalog`, `/count`, `/{id}` | products ([`crate::catalog`]) |
//!
//! List endpoints take `conditions` (see [`conditions`]), `orderBy`
//! (`field [asc|desc]`, comma-separated, any filterable field), `fields`
//! (comma-separated paths to keep), `page` (1-based) and `pageSize`
//! (default 25; values above 1,000 are clamped to 1,000, as ConnectWise
//! does; [`Settings::max_page_size`] lowers the cap). Navigable paging answers a `Link` header with absolute
//! `rel="first"`/`"prev"`/`"next"`/`"last"` URLs. Forward-only paging
//! (request header `pagination-type: forward-only`) orders by `id`, returns
//! records with `id > pageId` and links `rel="next"` with the last id as
//! `pageId`. `childConditions` and `customFieldConditions` are refused with
//! a `400` (not emulated). The `paging_loop` fault makes every `next` link
//! point at the page just served.
//!
//! # Data
//!
//! Per PSA customer ([`crate::common::CustomerPlan`]): a company, a
//! "Managed Services" agreement (monthly, prorated for 70% of customers)
//! whose billable additions are the world's billed lines, a replaced line
//! for some (old addition with a past `cancelledDate`, new addition from the
//! next day), `DoNotBill` and `NoCharge` additions for some, and for every
//! third customer one extra agreement: cancelled, annual (`Yearly`, bills a
//! real line), inactive, bill-in-arrears (`periodType: "Current"`, bills a
//! real line), expired, block time (type not selected by default), no
//! billing cycle (`billingCycle` absent, the UI's "None") or one-time
//! (`Not Recurring`). Non-billing extras carry stale copies of real lines.
//!
//! # Writes and billing
//!
//! Additions are created (`POST`, needs `product` by id or identifier,
//! `billCustomer` and `quantity`), replaced (`PUT`, same rules), patched
//! (`PATCH` with a JSON-Patch array; `path` may be `quantity` or
//! `/quantity`; ops `replace`, `add`, `remove`) and deleted. Changes are
//! visible to later reads. Prorated prices follow [`data::Proration`].
//! The `alter_written` fault ([`crate::faults`]) changes the altered
//! field of the next create, replace, or JSON-Patch that sets it
//! (`effectiveDate`, `unitPrice`, `quantity`), answering the addition as
//! stored ([`additions`]).
//! `GET /_emulator/connectwise/agreements/{id}/invoice?date=YYYY-MM-DD`
//! shows what the agreement bills for the period containing `date`: only
//! `Active` agreements with a recurring cycle bill; an addition bills when
//! `Billable` (`NoCharge` lines show at 0, `DoNotBill` lines are left out),
//! effective by the period's end and not cancelled before its start
//! (`cancelledDate` is the last day billed). On prorated agreements partial
//! periods are billed by days; otherwise an addition starting mid-period
//! bills from the next period and one cancelled mid-period bills the whole
//! period.
//!
//! # Limits
//!
//! [`Settings::requests_per_minute`] (default
//! [`DEFAULT_REQUESTS_PER_MINUTE`]) on a sliding minute: beyond it, `429`
//! with `Retry-After` (seconds). ConnectWise publishes no number; tests set
//! it low.
//!
//! # Inspection
//!
//! - `GET|DELETE /_emulator/connectwise/writes`: every write (method, path,
//!   status, body, time) since start or the last clear;
//! - `GET /_emulator/connectwise/agreements/{id}/invoice?date=`: see above;
//! - `POST /_emulator/connectwise/reset`: back to the seeded data.

pub mod additions;
pub mod conditions;
pub mod data;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use self::conditions::{Condition, Schema};
use self::data::{CwData, Render};
use crate::EmulatorContext;
use crate::common::{
    FieldType, Query, Val, WriteLog, compare, encode_query, json_response, plans, segments_after,
    today, write_log_routes,
};
use crate::faults::{Faults, RateWindow};
use crate::vendor_common::{basic_credentials, retry_after_secs};
use crate::world::World;

/// The API's base path.
pub const BASE_PATH: &str = "/v4_6_release/apis/3.0";
/// Default company id (the part before `+` in the Basic user name).
pub const COMPANY_ID: &str = "cobaltridge";
/// Default public key.
pub const PUBLIC_KEY: &str = "TUpub7c1d2e3f4a5b6c7";
/// Default private key.
pub const PRIVATE_KEY: &str = "TUpriv9f8e7d6c5b4a39";
/// A client id to send; any GUID is accepted.
pub const CLIENT_ID: &str = "5f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f";
/// Records per page when `pageSize` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// Largest page ConnectWise serves; larger `pageSize` values are clamped.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Default request budget per sliding minute (generous; tests lower it).
pub const DEFAULT_REQUESTS_PER_MINUTE: usize = 6000;

/// Knobs for the ConnectWise emulator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Company id expected in the Basic user name.
    pub company_id: String,
    /// Public key expected in the Basic user name.
    pub public_key: String,
    /// Private key expected as the Basic password.
    pub private_key: String,
    /// Requests allowed per sliding minute before `429`.
    pub requests_per_minute: usize,
    /// "Today" for seeding and statuses; `None` = the UTC date at start.
    pub today: Option<NaiveDate>,
    /// The largest page served: a larger `pageSize` is clamped to it,
    /// silently, as ConnectWise clamps to [`MAX_PAGE_SIZE`]. Tests lower it
    /// to play a server that caps pages below what a client asks for (a
    /// client must page by the `Link` header, never by comparing a page's
    /// length with the size it asked for).
    pub max_page_size: usize,
    /// Serve the agreement with the lowest id with an unreadable
    /// `startDate` ([`MALFORMED_DATE`]) in lists: one bad record among
    /// good ones, as a hand-edited or migrated database holds. A connector
    /// must report it by name (WIT 0.1 has no per-record exclusion).
    pub malformed_date: bool,
}

/// The `startDate` served for the malformed agreement
/// ([`Settings::malformed_date`]): day-first, as a misconfigured export
/// writes it.
pub const MALFORMED_DATE: &str = "31/12/2026";

impl Default for Settings {
    fn default() -> Self {
        Self {
            company_id: COMPANY_ID.to_owned(),
            public_key: PUBLIC_KEY.to_owned(),
            private_key: PRIVATE_KEY.to_owned(),
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            today: None,
            max_page_size: MAX_PAGE_SIZE,
            malformed_date: false,
        }
    }
}

/// A ConnectWise error answer.
#[derive(Debug)]
pub struct CwError {
    status: StatusCode,
    code: &'static str,
    message: String,
    errors: Vec<Value>,
}

impl CwError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidObject", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// An invalid-object answer listing field errors
    /// (`{"code": "...", "message": "...", "resource": "addition", "field": "..."}`).
    fn invalid(resource: &str, errors: Vec<Value>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidObject",
            message: format!("{resource} object is invalid"),
            errors,
        }
    }
}

impl IntoResponse for CwError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors);
        }
        json_response(self.status, body)
    }
}

type Reply = Result<Response, CwError>;

struct Cw {
    data: Mutex<CwData>,
    world: Arc<World>,
    today: NaiveDate,
    base_url: String,
    api: String,
    settings: Settings,
    rate: RateWindow,
    faults: Arc<Faults>,
    writes: Arc<WriteLog>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Writes validate before they change anything, so a panic cannot leave
    // the data half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The emulator's API router and its `/_emulator/connectwise` inspection
/// router (kept apart so fault injection never touches inspection).
pub fn routers(ctx: &EmulatorContext) -> (Router, Router) {
    let settings = ctx.settings.connectwise.clone();
    let today = today(settings.today);
    let data = CwData::seed(&ctx.world, &plans(&ctx.world, today));
    let cw = Arc::new(Cw {
        data: Mutex::new(data),
        world: ctx.world.clone(),
        today,
        base_url: ctx.base_url.clone(),
        api: format!("{}{BASE_PATH}", ctx.base_url),
        rate: RateWindow::new(settings.requests_per_minute, Duration::from_secs(60)),
        settings,
        faults: ctx.faults.clone(),
        writes: Arc::new(WriteLog::default()),
    });
    let api = Router::new().fallback(handle).with_state(cw.clone());
    let inspection = Router::new()
        .route(
            "/_emulator/connectwise/agreements/{id}/invoice",
            get(invoice_preview),
        )
        .route("/_emulator/connectwise/reset", post(reset))
        .with_state(cw.clone())
        .merge(write_log_routes(
            "/_emulator/connectwise/writes",
            cw.writes.clone(),
        ));
    (api, inspection)
}

async fn handle(
    State(cw): State<Arc<Cw>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    cw.respond(&method, &uri, &headers, &body)
}

async fn invoice_preview(State(cw): State<Arc<Cw>>, Path(id): Path<i64>, uri: Uri) -> Response {
    let query = Query::parse(uri.query());
    let date = match query.get("date") {
        None => cw.today,
        Some(text) => match crate::common::parse_date(text) {
            Some(date) => date,
            None => {
                return CwError::bad_request(format!("date {text:?} is not YYYY-MM-DD"))
                    .into_response();
            }
        },
    };
    let data = lock(&cw.data);
    match additions::invoice(&data, id, date) {
        Some(invoice) => json_response(StatusCode::OK, invoice),
        None => CwError::not_found(format!("Agreement with id {id} not found")).into_response(),
    }
}

async fn reset(State(cw): State<Arc<Cw>>) -> StatusCode {
    let fresh = CwData::seed(&cw.world, &plans(&cw.world, cw.today));
    *lock(&cw.data) = fresh;
    StatusCode::NO_CONTENT
}

fn parse_id(text: &str, what: &str) -> Result<i64, CwError> {
    text.parse()
        .map_err(|_| CwError::bad_request(format!("{what} id '{text}' is not a whole number")))
}

impl Cw {
    fn respond(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        let path = uri.path();
        let Some(segments) = segments_after(path, BASE_PATH) else {
            return CwError::not_found(format!(
                "No resource at {path}; the API lives under {BASE_PATH}"
            ))
            .into_response();
        };
        if let Err(wait) = self.rate.admit() {
            let mut response = CwError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!(
                    "Request rate limit of {} requests per minute exceeded; retry after the Retry-After interval",
                    self.settings.requests_per_minute
                ),
            )
            .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
            return response;
        }
        if let Err(error) = self.authenticate(headers) {
            return error.into_response();
        }
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = Query::parse(uri.query());
        let response = self
            .route(method, &segments, &query, headers, path, body)
            .unwrap_or_else(IntoResponse::into_response);
        if *method != Method::GET {
            self.writes
                .record(method.as_str(), path, response.status(), body);
        }
        response
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), CwError> {
        let client_id = headers
            .get("clientId")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default();
        if client_id.is_empty() {
            return Err(CwError::new(
                StatusCode::BAD_REQUEST,
                "InvalidClientId",
                "A clientId header is required. Register an integration at developer.connectwise.com and send its clientId GUID with every request.",
            ));
        }
        if !looks_like_guid(client_id) {
            return Err(CwError::new(
                StatusCode::BAD_REQUEST,
                "InvalidClientId",
                format!("The clientId header '{client_id}' is not a valid GUID."),
            ));
        }
        let unauthorized = || {
            CwError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Authentication failed: send Authorization: Basic base64(companyId+publicKey:privateKey) with a valid API member key pair.",
            )
        };
        let (user, password) = basic_credentials(headers).ok_or_else(unauthorized)?;
        let (company, public) = user.split_once('+').ok_or_else(unauthorized)?;
        let settings = &self.settings;
        if !company.eq_ignore_ascii_case(&settings.company_id)
            || public != settings.public_key
            || password != settings.private_key
        {
            return Err(unauthorized());
        }
        Ok(())
    }

    fn route(
        &self,
        method: &Method,
        segments: &[&str],
        query: &Query,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Reply {
        let render = Render {
            api: &self.api,
            today: self.today,
        };
        let get = *method == Method::GET;
        let lister = Lister {
            query,
            headers,
            path,
            base_url: &self.base_url,
            faults: &self.faults,
            max_page_size: self.settings.max_page_size.clamp(1, MAX_PAGE_SIZE),
        };
        match segments {
            ["system", "info"] if get => Ok(json_response(
                StatusCode::OK,
                json!({"version": "v2025.1.10431", "isCloud": true, "serverTimeZone": "Eastern Standard Time",
                       "licenseBits": [], "cloudRegion": "NA"}),
            )),
            ["company", "companies", rest @ ..] if get => {
                let data = lock(&self.data);
                let all = || data.companies.iter().map(|c| render.company(c)).collect();
                match rest {
                    [] => lister.list(all(), &data::COMPANY_SCHEMA),
                    ["count"] => lister.count(all(), &data::COMPANY_SCHEMA),
                    [id] => {
                        let id = parse_id(id, "company")?;
                        let company = data.company(id).ok_or_else(|| {
                            CwError::not_found(format!("Company with id {id} not found"))
                        })?;
                        Ok(json_response(StatusCode::OK, render.company(company)))
                    }
                    _ => Err(not_found(path)),
                }
            }
            ["finance", "agreements", "types", rest @ ..] if get => {
                let all = || {
                    data::AGREEMENT_TYPES
                        .iter()
                        .map(|t| render.agreement_type(t))
                        .collect()
                };
                match rest {
                    [] => lister.list(all(), &data::TYPE_SCHEMA),
                    ["count"] => lister.count(all(), &data::TYPE_SCHEMA),
                    [id] => {
                        let id = parse_id(id, "agreement type")?;
                        data::AGREEMENT_TYPES
                            .iter()
                            .find(|t| t.id == id)
                            .map(|t| json_response(StatusCode::OK, render.agreement_type(t)))
                            .ok_or_else(|| {
                                CwError::not_found(format!("Agreement type with id {id} not found"))
                            })
                    }
                    _ => Err(not_found(path)),
                }
            }
            ["finance", "agreements", rest @ ..] => {
                self.agreements(method, rest, &lister, &render, path, body)
            }
            ["finance", "billingcycles", rest @ ..] if get => {
                let all = || {
                    data::BILLING_CYCLES
                        .iter()
                        .map(|c| render.billing_cycle(c))
                        .collect()
                };
                match rest {
                    [] => lister.list(all(), &data::CYCLE_SCHEMA),
                    ["count"] => lister.count(all(), &data::CYCLE_SCHEMA),
                    [id] => {
                        let id = parse_id(id, "billing cycle")?;
                        data::billing_cycle(id)
                            .map(|c| json_response(StatusCode::OK, render.billing_cycle(c)))
                            .ok_or_else(|| {
                                CwError::not_found(format!("Billing cycle with id {id} not found"))
                            })
                    }
                    _ => Err(not_found(path)),
                }
            }
            ["procurement", "catalog", rest @ ..] if get => {
                let all = || {
                    crate::catalog::PRODUCTS
                        .iter()
                        .map(|p| render.catalog_item(p))
                        .collect()
                };
                match rest {
                    [] => lister.list(all(), &data::CATALOG_SCHEMA),
                    ["count"] => lister.count(all(), &data::CATALOG_SCHEMA),
                    [id] => {
                        let id = parse_id(id, "catalog item")?;
                        data::product_by_id(id)
                            .map(|p| json_response(StatusCode::OK, render.catalog_item(p)))
                            .ok_or_else(|| {
                                CwError::not_found(format!("Catalog item with id {id} not found"))
                            })
                    }
                    _ => Err(not_found(path)),
                }
            }
            ["system", "info"]
            | ["company", "companies", ..]
            | ["finance", "billingcycles", ..]
            | ["procurement", "catalog", ..] => Err(method_not_allowed(method, path)),
            _ => Err(not_found(path)),
        }
    }

    fn agreements(
        &self,
        method: &Method,
        rest: &[&str],
        lister: &Lister<'_>,
        render: &Render<'_>,
        path: &str,
        body: &[u8],
    ) -> Reply {
        let get = *method == Method::GET;
        match rest {
            [] | ["count"] if get => {
                let data = lock(&self.data);
                let malformed = self
                    .settings
                    .malformed_date
                    .then(|| data.agreements.iter().map(|a| a.id).min())
                    .flatten();
                let all: Vec<Value> = data
                    .agreements
                    .iter()
                    .map(|a| {
                        let mut json = render.agreement(a, data.company(a.company_id));
                        if Some(a.id) == malformed {
                            json["startDate"] = MALFORMED_DATE.into();
                        }
                        json
                    })
                    .collect();
                if rest.is_empty() {
                    lister.list(all, &data::AGREEMENT_SCHEMA)
                } else {
                    lister.count(all, &data::AGREEMENT_SCHEMA)
                }
            }
            [id] if get => {
                let id = parse_id(id, "agreement")?;
                let data = lock(&self.data);
                let agreement = data.agreement(id).ok_or_else(|| {
                    CwError::not_found(format!("Agreement with id {id} not found"))
                })?;
                Ok(json_response(
                    StatusCode::OK,
                    render.agreement(agreement, data.company(agreement.company_id)),
                ))
            }
            [parent, "additions", tail @ ..] => {
                let parent = parse_id(parent, "agreement")?;
                let mut data = lock(&self.data);
                let agreement = data.agreement(parent).cloned().ok_or_else(|| {
                    CwError::not_found(format!("Agreement with id {parent} not found"))
                })?;
                let own = |data: &CwData| -> Vec<Value> {
                    data.additions
                        .iter()
                        .filter(|a| a.agreement_id == parent)
                        .map(|a| render.addition(a, &agreement))
                        .collect()
                };
                match (method.as_str(), tail) {
                    ("GET", []) => lister.list(own(&data), &data::ADDITION_SCHEMA),
                    ("GET", ["count"]) => lister.count(own(&data), &data::ADDITION_SCHEMA),
                    ("POST", []) => {
                        let created = additions::create(
                            &mut data,
                            &agreement,
                            body,
                            self.today,
                            (&self.faults, path),
                        )?;
                        Ok(json_response(
                            StatusCode::CREATED,
                            render.addition(&created, &agreement),
                        ))
                    }
                    (_, [id]) if *id != "count" => {
                        let id = parse_id(id, "addition")?;
                        let index = data.addition_index(parent, id).ok_or_else(|| {
                            CwError::not_found(format!(
                                "Addition with id {id} not found on agreement {parent}"
                            ))
                        })?;
                        match method.as_str() {
                            "GET" => Ok(json_response(
                                StatusCode::OK,
                                render.addition(&data.additions[index], &agreement),
                            )),
                            "PUT" => {
                                let updated = additions::replace(
                                    &mut data,
                                    index,
                                    &agreement,
                                    body,
                                    (&self.faults, path),
                                )?;
                                Ok(json_response(
                                    StatusCode::OK,
                                    render.addition(&updated, &agreement),
                                ))
                            }
                            "PATCH" => {
                                let updated =
                                    additions::patch(&mut data, index, body, (&self.faults, path))?;
                                Ok(json_response(
                                    StatusCode::OK,
                                    render.addition(&updated, &agreement),
                                ))
                            }
                            "DELETE" => {
                                data.additions.remove(index);
                                Ok(StatusCode::NO_CONTENT.into_response())
                            }
                            _ => Err(method_not_allowed(method, path)),
                        }
                    }
                    _ => Err(method_not_allowed(method, path)),
                }
            }
            [] | ["count"] | [_] => Err(method_not_allowed(method, path)),
            _ => Err(not_found(path)),
        }
    }
}

fn not_found(path: &str) -> CwError {
    CwError::not_found(format!("No resource matches {path}"))
}

fn method_not_allowed(method: &Method, path: &str) -> CwError {
    CwError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("{method} is not supported on {path}"),
    )
}

fn looks_like_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Query handling shared by every list endpoint.
struct Lister<'a> {
    query: &'a Query,
    headers: &'a HeaderMap,
    path: &'a str,
    base_url: &'a str,
    faults: &'a Faults,
    max_page_size: usize,
}

struct OrderKey {
    path: &'static str,
    ty: FieldType,
    descending: bool,
}

impl Lister<'_> {
    fn filter(&self, records: Vec<Value>, schema: &Schema) -> Result<Vec<Value>, CwError> {
        for unsupported in ["childConditions", "customFieldConditions"] {
            if self
                .query
                .get(unsupported)
                .is_some_and(|v| !v.trim().is_empty())
            {
                return Err(CwError::bad_request(format!(
                    "{unsupported} is not supported by this emulator; filter with conditions"
                )));
            }
        }
        let Some(text) = self
            .query
            .get("conditions")
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(records);
        };
        let condition: Condition = conditions::parse(text, schema)
            .map_err(|problem| CwError::bad_request(format!("Invalid conditions: {problem}")))?;
        Ok(records
            .into_iter()
            .filter(|r| condition.matches(r))
            .collect())
    }

    fn count(&self, records: Vec<Value>, schema: &Schema) -> Reply {
        let count = self.filter(records, schema)?.len();
        Ok(json_response(StatusCode::OK, json!({ "count": count })))
    }

    fn order(&self, schema: &Schema) -> Result<Vec<OrderKey>, CwError> {
        let Some(text) = self.query.get("orderBy").filter(|t| !t.trim().is_empty()) else {
            return Ok(vec![OrderKey {
                path: "id",
                ty: FieldType::Int,
                descending: false,
            }]);
        };
        text.split(',')
            .map(|part| {
                let mut words = part.split_whitespace();
                let field = words.next().unwrap_or_default();
                let (path, ty) = schema.lookup(field).ok_or_else(|| {
                    CwError::bad_request(format!(
                        "Invalid orderBy: unknown field '{field}' for {}",
                        schema.entity
                    ))
                })?;
                let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(other) => {
                        return Err(CwError::bad_request(format!(
                            "Invalid orderBy: '{other}' after '{field}' must be asc or desc"
                        )));
                    }
                };
                Ok(OrderKey {
                    path,
                    ty,
                    descending,
                })
            })
            .collect()
    }

    fn number(&self, name: &str) -> Result<Option<i64>, CwError> {
        self.query
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    CwError::bad_request(format!("{name} '{v}' is not a whole number"))
                })
            })
            .transpose()
    }

    fn link(&self, params: &[(&str, String)]) -> String {
        let skip = ["page", "pageSize", "pageId"];
        let rest = self.query.without(&skip);
        let extra = params.iter().map(|(k, v)| (*k, v.as_str()));
        format!(
            "{}{}?{}",
            self.base_url,
            self.path,
            encode_query(rest.chain(extra))
        )
    }

    fn list(&self, records: Vec<Value>, schema: &Schema) -> Reply {
        let mut records = self.filter(records, schema)?;
        let page_size = match self.number("pageSize")? {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if n < 1 => DEFAULT_PAGE_SIZE,
            Some(n) => usize::try_from(n).unwrap_or(MAX_PAGE_SIZE),
        }
        .min(self.max_page_size);
        let forward_only = self
            .headers
            .get("pagination-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("forward-only"));
        let looping = self.faults.paging_loop(self.path);
        let mut links = Vec::new();
        let page: Vec<Value> = if forward_only {
            let order = self.order(schema)?;
            if order.len() != 1 || order[0].path != "id" || order[0].descending {
                return Err(CwError::bad_request(
                    "Forward-only pagination orders by id ascending; remove orderBy or use 'id asc'",
                ));
            }
            let after = self.number("pageId")?.unwrap_or(0);
            let id_of = |r: &Value| r.get("id").and_then(Value::as_i64).unwrap_or(0);
            records.sort_by_key(id_of);
            let remaining: Vec<Value> = records.into_iter().filter(|r| id_of(r) > after).collect();
            let more = remaining.len() > page_size;
            let page: Vec<Value> = remaining.into_iter().take(page_size).collect();
            if more {
                let next = if looping {
                    after
                } else {
                    page.last().map_or(after, id_of)
                };
                links.push((
                    "next",
                    self.link(&[
                        ("pageSize", page_size.to_string()),
                        ("pageId", next.to_string()),
                    ]),
                ));
            }
            page
        } else {
            let order = self.order(schema)?;
            records.sort_by(|a, b| {
                order
                    .iter()
                    .map(|key| {
                        let x = Val::from_json(conditions::lookup(a, key.path), key.ty);
                        let y = Val::from_json(conditions::lookup(b, key.path), key.ty);
                        let ordering = match (x.is_null(), y.is_null()) {
                            (true, true) => Ordering::Equal,
                            (true, false) => Ordering::Less,
                            (false, true) => Ordering::Greater,
                            _ => compare(&x, &y).unwrap_or(Ordering::Equal),
                        };
                        if key.descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    })
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            });
            let page_number = self.number("page")?.unwrap_or(1).max(1) as usize;
            let total = records.len();
            let last = total.div_ceil(page_size).max(1);
            let start = (page_number - 1).saturating_mul(page_size).min(total);
            let end = (start + page_size).min(total);
            let at = |n: usize| {
                self.link(&[("pageSize", page_size.to_string()), ("page", n.to_string())])
            };
            if page_number > 1 {
                links.push(("first", at(1)));
                links.push(("prev", at(page_number - 1)));
            }
            if page_number < last {
                let next = if looping {
                    page_number
                } else {
                    page_number + 1
                };
                links.push(("next", at(next)));
                links.push(("last", at(last)));
            }
            records.drain(start..end).collect()
        };
        let page = self.select_fields(page);
        let mut response = json_response(StatusCode::OK, Value::Array(page));
        if !links.is_empty() {
            let value = links
                .iter()
                .map(|(rel, url)| format!("<{url}>; rel=\"{rel}\""))
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
        Ok(response)
    }

    fn select_fields(&self, page: Vec<Value>) -> Vec<Value> {
        let Some(fields) = self.query.get("fields").filter(|f| !f.trim().is_empty()) else {
            return page;
        };
        let wanted: Vec<Vec<&str>> = fields
            .split(',')
            .map(|f| f.trim().split('/').filter(|s| !s.is_empty()).collect())
            .filter(|p: &Vec<&str>| !p.is_empty())
            .collect();
        page.into_iter()
            .map(|record| {
                let mut out = Map::new();
                for path in &wanted {
                    copy_path(&record, path, &mut out);
                }
                Value::Object(out)
            })
            .collect()
    }
}

fn copy_path(source: &Value, path: &[&str], out: &mut Map<String, Value>) {
    let Some(object) = source.as_object() else {
        return;
    };
    let Some((key, value)) = object.iter().find(|(k, _)| k.eq_ignore_ascii_case(path[0])) else {
        return;
    };
    if path.len() == 1 {
        out.insert(key.clone(), value.clone());
        return;
    }
    let child = out
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(child) = child {
        copy_path(value, &path[1..], child);
    }
}
