//! Autotask (Datto/Kaseya) REST API emulator.
//!
//! # Pointing a client at it
//!
//! 1. Zone lookup (no credentials, exempt from limits):
//!    `GET <origin>/atservicesrest/v1.0/zoneInformation?user=<UserName>` →
//!    `{"zoneName": ..., "url": "<origin>/ATServicesRest/", "webUrl": ..., "ci": ...}`
//!    (the casing differs from the lookup's, as real answers do: [`ZONE_ROOT`]).
//! 2. Every other call goes to `<url>v1.0/...` with the headers
//!    `ApiIntegrationCode: TRUEUPEMULATOR7Q4ZC2K3XW9`,
//!    `UserName: trueup-api@cobaltridgeit.com`, `Secret: Tu$ecret-4f8a2c`
//!    ([`INTEGRATION_CODE`], [`USERNAME`], [`SECRET`]; configurable in
//!    [`Settings`]).
//!
//! Paths match case-insensitively (`/ATServicesRest/V1.0/Contracts` works).
//! Authentication mirrors the real service's quirks (reported by the
//! apigrate/autotask-restapi maintainers): a wrong `Secret` for the right
//! user is a `401`, but an unknown `UserName` or a wrong
//! `ApiIntegrationCode` is a `500`; missing headers are a `401`. Errors are
//! `{"errors": ["..."]}`; unknown routes and unsupported methods answer
//! ASP.NET's `{"Message": "..."}` with `404`/`405`.
//!
//! # Entities and queries
//!
//! `Companies`, `Contracts`, `ContractServices`, `ContractServiceUnits`,
//! `Services` (the catalogue; `name` = catalogue identifier) support
//!
//! - `GET /{Entity}/{id}` → `{"item": {...}}` (`{"item": null}` when absent);
//! - `GET /{Entity}/query?search={json}` and `POST /{Entity}/query` with
//!   `{"filter": [...], "IncludeFields": [...], "MaxRecords": n}` (see
//!   [`query`]) → `{"items": [...], "pageDetails": {"count", "requestCount",
//!   "prevPageUrl", "nextPageUrl"}}`;
//! - `GET|POST /{Entity}/query/count` → `{"queryCount": n}`.
//!
//! Results are ordered by `id`, at most [`query::MAX_RECORDS`] (500) per
//! page (fewer with [`Settings::max_records`]); `MaxRecords` outside 1–500 is refused. `nextPageUrl` /
//! `prevPageUrl` are absolute `…/{Entity}/query/next?paging=…&search=…` URLs
//! to follow with `GET` (or `POST` with the same body). A query that spans
//! more than one page and uses `IncludeFields` must include `id`. The
//! `paging_loop` fault makes `nextPageUrl` repeat the page just served.
//!
//! Enums: contract `status` 1 active / 0 inactive; `contractType` 1 Time &
//! Materials, 3 Fixed Price, 4 Block Hours, 7 Recurring Service;
//! `contractPeriodType` 1 monthly, 2 quarterly, 3 semi-annual, 4 yearly
//! (the period-type numbers are \[I\]). `ContractService` has no quantity:
//! units live in `ContractServiceUnits`, one record per service per period
//! (`startDate`, `endDate`, `units`, `price`, `cost`, `approveAndPostDate`)
//! plus proration records for partial periods. Units are seeded for two
//! posted months before today's month, today's month and the next.
//!
//! # Data
//!
//! Per PSA customer ([`crate::common::CustomerPlan`]): a company, a default
//! monthly Recurring Service contract whose services carry the world's
//! billed lines (a replaced line changes units at the start of last month,
//! with its adjustment on record), and for every third customer an extra
//! contract: inactive after replacement (status 0, ended), annual
//! (yearly periods, bills a real line), inactive (status 0 but still
//! generating units — Autotask keeps billing inactive contracts), expired
//! (status 1, end date past), Block Hours, Time & Materials or a Fixed
//! Price onboarding contract (the last three without services). Some
//! former customers appear again as inactive "Dead" companies.
//!
//! # Writes
//!
//! `POST /ContractServiceAdjustments` or `POST
//! /Contracts/{id}/ServiceAdjustments` with `{"contractID", "serviceID" or
//! "contractServiceID", "effectiveDate", "unitChange", "adjustedUnitPrice",
//! "adjustedUnitCost"}` → `{"itemId": n}`; see [`adjustments`] for the
//! effect and refusals (including [`POSTED_PERIOD_ERROR`]). Adjustments are
//! create-only: any other method on them is a `405`, and so is every other
//! write. The `alter_written` fault ([`crate::faults`]) stores an
//! adjustment with its date, price or unit change altered (see
//! [`adjustments`]).
//!
//! # Limits
//!
//! - [`Settings::hourly_request_limit`] (default 10,000) authenticated
//!   requests per rolling hour, shared by every integration: at ≥ 50% usage
//!   responses are delayed 0.5 s, at ≥ 75% 1 s (when
//!   [`Settings::usage_latency`]); at 100% requests are refused with `429`
//!   and [`THRESHOLD_ERROR`] (no `Retry-After`, as on the real service).
//! - [`Settings::thread_limit`] (default 3) requests in flight per endpoint
//!   (entity) per integration code; one more is refused with `429` and
//!   [`THREAD_ERROR`]. `zoneInformation` is exempt.
//!   [`Settings::processing_delay`] makes every request hold its slot that
//!   long, so tests can provoke the limit.
//! - `GET /ThresholdInformation` → `{"externalRequestThreshold",
//!   "requestThresholdTimeframe" (minutes), "currentTimeframeRequestCount"}`;
//!   it is neither counted nor refused by the hourly budget \[I\].
//!
//! # Inspection
//!
//! - `GET|DELETE /_emulator/autotask/writes`: every write after
//!   authentication (method, path, status, body, time; `POST …/query`
//!   reads are not writes);
//! - `GET /_emulator/autotask/adjustments`: adjustments made (seeded and
//!   posted), since the API cannot list them;
//! - `POST /_emulator/autotask/reset`: back to the seeded data.

pub mod adjustments;
pub mod entities;
pub mod query;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde_json::{Value, json};

use self::entities::{AtData, Entity, find};
use self::query::{Cursor, Search};
use crate::EmulatorContext;
use crate::common::{
    Query, WriteLog, encode_query, json_response, plans, segments_after, today, write_log_routes,
};
use crate::faults::{ConcurrencyLimit, Faults, RateWindow};
use crate::world::World;

/// Default API user name.
pub const USERNAME: &str = "trueup-api@cobaltridgeit.com";
/// Default API secret.
pub const SECRET: &str = "Tu$ecret-4f8a2c";
/// Default API integration (tracking) code.
pub const INTEGRATION_CODE: &str = "TRUEUPEMULATOR7Q4ZC2K3XW9";
/// The REST root; the zone URL is `<origin>` + this + `/`.
pub const ROOT: &str = "/atservicesrest";
/// The REST root as the zone lookup spells it: real answers mix the case
/// (`https://webservices5.autotask.net/ATServicesRest/`, seen in clients'
/// logs) while documentation and lookups use `atservicesrest`; paths match
/// case-insensitively, so a client must use the URL as given, never match
/// it against a lower-case constant.
pub const ZONE_ROOT: &str = "/ATServicesRest";
/// The API version segment.
pub const VERSION: &str = "v1.0";
/// Default requests per rolling hour for the whole database.
pub const DEFAULT_HOURLY_REQUEST_LIMIT: usize = 10_000;
/// Default concurrent requests per endpoint per integration code.
pub const DEFAULT_THREAD_LIMIT: usize = 3;
/// Latency added from 50% of the hourly budget.
pub const LATENCY_FROM_HALF: Duration = Duration::from_millis(500);
/// Latency added from 75% of the hourly budget.
pub const LATENCY_FROM_THREE_QUARTERS: Duration = Duration::from_millis(1000);
/// The refusal for a change in an approved-and-posted period (Autotask's
/// exact text).
pub const POSTED_PERIOD_ERROR: &str = "Unable to make changes as it would result in the deletion/modification of an already approved and posted contract period";
/// The refusal once the hourly budget is used up.
pub const THRESHOLD_ERROR: &str = "API request threshold exceeded: this database has used its allowance of requests for the rolling 60-minute window. Requests are blocked until usage drops below the threshold; check /ThresholdInformation.";
/// The refusal beyond the per-endpoint thread limit.
pub const THREAD_ERROR: &str = "The Autotask API thread threshold of 3 threads has been exceeded for this endpoint and integration code. Reduce the number of concurrent requests.";

/// Knobs for the Autotask emulator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Expected `UserName`.
    pub username: String,
    /// Expected `Secret`.
    pub secret: String,
    /// Expected `ApiIntegrationCode`.
    pub integration_code: String,
    /// Requests per rolling hour before `429`.
    pub hourly_request_limit: usize,
    /// Concurrent requests per endpoint per integration code.
    pub thread_limit: usize,
    /// Whether to add Autotask's latency at 50% / 75% of the budget.
    pub usage_latency: bool,
    /// How long every request holds its thread slot (simulated work).
    pub processing_delay: Duration,
    /// "Today" for seeding and posted periods; `None` = UTC date at start.
    pub today: Option<NaiveDate>,
    /// The most records a query page holds: `MaxRecords` above it is served
    /// this many (default [`query::MAX_RECORDS`], Autotask's 500). Tests
    /// lower it to play a server that caps pages below what a client asks
    /// for; a client must follow `nextPageUrl` until it is null.
    pub max_records: usize,
    /// Serve the contract with the lowest id with an unreadable
    /// `startDate` ([`MALFORMED_DATE`]) in query results: one bad record
    /// among good ones. A connector must report it by name (WIT 0.1 has no
    /// per-record exclusion).
    pub malformed_date: bool,
}

/// The `startDate` served for the malformed contract
/// ([`Settings::malformed_date`]).
pub const MALFORMED_DATE: &str = "31/12/2026";

impl Default for Settings {
    fn default() -> Self {
        Self {
            username: USERNAME.to_owned(),
            secret: SECRET.to_owned(),
            integration_code: INTEGRATION_CODE.to_owned(),
            hourly_request_limit: DEFAULT_HOURLY_REQUEST_LIMIT,
            thread_limit: DEFAULT_THREAD_LIMIT,
            usage_latency: true,
            processing_delay: Duration::ZERO,
            today: None,
            max_records: query::MAX_RECORDS,
            malformed_date: false,
        }
    }
}

/// An Autotask error answer.
#[derive(Debug)]
pub struct AtError {
    status: StatusCode,
    body: Value,
}

impl AtError {
    /// `{"errors": [message]}` with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "errors": [message.into()] }),
        }
    }

    /// A `500` with `{"errors": [message]}` (Autotask's answer to invalid
    /// requests and business-rule refusals).
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// ASP.NET's `{"Message": ...}` answer (unknown routes, methods).
    fn framework(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "Message": message.into() }),
        }
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for AtError {
    fn into_response(self) -> Response {
        json_response(self.status, self.body)
    }
}

struct At {
    data: Mutex<AtData>,
    world: Arc<World>,
    today: NaiveDate,
    base_url: String,
    settings: Settings,
    budget: RateWindow,
    threads: Mutex<HashMap<(String, String), Arc<ConcurrencyLimit>>>,
    faults: Arc<Faults>,
    writes: Arc<WriteLog>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Adjustments commit only after every check, so a panic cannot leave
    // the data half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The emulator's API router and its `/_emulator/autotask` inspection
/// router.
pub fn routers(ctx: &EmulatorContext) -> (Router, Router) {
    let settings = ctx.settings.autotask.clone();
    let today = today(settings.today);
    let data = AtData::seed(&ctx.world, &plans(&ctx.world, today), today);
    let at = Arc::new(At {
        data: Mutex::new(data),
        world: ctx.world.clone(),
        today,
        base_url: ctx.base_url.clone(),
        budget: RateWindow::new(settings.hourly_request_limit, Duration::from_secs(3600)),
        settings,
        threads: Mutex::new(HashMap::new()),
        faults: ctx.faults.clone(),
        writes: Arc::new(WriteLog::default()),
    });
    let api = Router::new().fallback(handle).with_state(at.clone());
    let inspection = Router::new()
        .route("/_emulator/autotask/adjustments", get(list_adjustments))
        .route("/_emulator/autotask/reset", post(reset))
        .with_state(at.clone())
        .merge(write_log_routes(
            "/_emulator/autotask/writes",
            at.writes.clone(),
        ));
    (api, inspection)
}

async fn list_adjustments(State(at): State<Arc<At>>) -> Json<Vec<Value>> {
    Json(
        lock(&at.data)
            .adjustments
            .iter()
            .map(|a| a.json(None))
            .collect(),
    )
}

async fn reset(State(at): State<Arc<At>>) -> StatusCode {
    let fresh = AtData::seed(&at.world, &plans(&at.world, at.today), at.today);
    *lock(&at.data) = fresh;
    StatusCode::NO_CONTENT
}

async fn handle(
    State(at): State<Arc<At>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let no_route = || {
        AtError::framework(
            StatusCode::NOT_FOUND,
            format!("No HTTP resource was found that matches the request URI '{path}'."),
        )
        .into_response()
    };
    let Some(segments) = segments_after(&path, ROOT) else {
        return no_route();
    };
    let Some((version, rest)) = segments.split_first() else {
        return no_route();
    };
    if version != VERSION {
        return no_route();
    }
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let query = Query::parse(uri.query());
    if rest == ["zoneinformation"] {
        return if method == Method::GET {
            at.zone(&query).unwrap_or_else(IntoResponse::into_response)
        } else {
            method_not_allowed(&method).into_response()
        };
    }
    let code = match at.authenticate(&headers) {
        Ok(code) => code,
        Err(error) => return error.into_response(),
    };
    let response = at
        .limited(&method, &rest, &query, &code, &body, &path)
        .await;
    // Queries sent as POST are reads, not writes.
    let is_query = rest.contains(&"query");
    if method != Method::GET && !is_query {
        at.writes
            .record(method.as_str(), &path, response.status(), &body);
    }
    response
}

fn method_not_allowed(method: &Method) -> AtError {
    AtError::framework(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("The requested resource does not support http method '{method}'."),
    )
}

impl At {
    fn zone(&self, query: &Query) -> Result<Response, AtError> {
        let user = query.get("user").unwrap_or_default();
        if !user.eq_ignore_ascii_case(&self.settings.username) {
            return Err(AtError::server(format!(
                "Zone information could not be found for user '{user}'. Pass the API user's UserName as ?user=."
            )));
        }
        Ok(json_response(
            StatusCode::OK,
            json!({
                "zoneName": "Emulator Zone",
                "url": format!("{}{ZONE_ROOT}/", self.base_url),
                "webUrl": format!("{}/", self.base_url),
                "ci": 1,
            }),
        ))
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<String, AtError> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let (Some(code), Some(user), Some(secret)) = (
            header("ApiIntegrationCode"),
            header("UserName"),
            header("Secret"),
        ) else {
            return Err(AtError::new(
                StatusCode::UNAUTHORIZED,
                "Authentication failed: send the ApiIntegrationCode, UserName and Secret headers.",
            ));
        };
        if !user.eq_ignore_ascii_case(&self.settings.username) {
            return Err(AtError::server(format!(
                "Unable to authenticate: no API user named '{user}'."
            )));
        }
        if code != self.settings.integration_code {
            return Err(AtError::server(
                "Unable to authenticate: the ApiIntegrationCode is not valid for this API user.",
            ));
        }
        if secret != self.settings.secret {
            return Err(AtError::new(
                StatusCode::UNAUTHORIZED,
                "Authentication failed: the UserName and Secret do not match.",
            ));
        }
        Ok(code.to_owned())
    }

    fn latency(&self) -> Duration {
        if !self.settings.usage_latency {
            return Duration::ZERO;
        }
        let limit = self.budget.limit().max(1);
        let used = self.budget.used();
        if used * 4 >= limit * 3 {
            LATENCY_FROM_THREE_QUARTERS
        } else if used * 2 >= limit {
            LATENCY_FROM_HALF
        } else {
            Duration::ZERO
        }
    }

    async fn limited(
        &self,
        method: &Method,
        rest: &[&str],
        query: &Query,
        code: &str,
        body: &[u8],
        path: &str,
    ) -> Response {
        let threshold_route = rest == ["thresholdinformation"];
        let delay = self.latency();
        if !threshold_route && self.budget.admit().is_err() {
            return AtError::new(StatusCode::TOO_MANY_REQUESTS, THRESHOLD_ERROR).into_response();
        }
        let endpoint = rest.first().copied().unwrap_or_default().to_owned();
        let limit = lock(&self.threads)
            .entry((code.to_owned(), endpoint))
            .or_insert_with(|| Arc::new(ConcurrencyLimit::new(self.settings.thread_limit)))
            .clone();
        let Some(permit) = limit.try_acquire() else {
            return AtError::new(StatusCode::TOO_MANY_REQUESTS, THREAD_ERROR).into_response();
        };
        let hold = delay + self.settings.processing_delay;
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        let response = self
            .dispatch(method, rest, query, body, path)
            .unwrap_or_else(IntoResponse::into_response);
        drop(permit);
        response
    }

    fn dispatch(
        &self,
        method: &Method,
        rest: &[&str],
        query: &Query,
        body: &[u8],
        path: &str,
    ) -> Result<Response, AtError> {
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        match rest {
            ["thresholdinformation"] if get => Ok(json_response(
                StatusCode::OK,
                json!({
                    "externalRequestThreshold": self.budget.limit(),
                    "requestThresholdTimeframe": 60,
                    "currentTimeframeRequestCount": self.budget.used(),
                }),
            )),
            ["contractserviceadjustments"] if post => {
                let id = adjustments::create(
                    &mut lock(&self.data),
                    None,
                    body,
                    self.today,
                    (&self.faults, path),
                )?;
                Ok(json_response(StatusCode::OK, json!({ "itemId": id })))
            }
            ["contracts", id, "serviceadjustments"] if post => {
                let contract = id.parse().map_err(|_| {
                    AtError::server(format!("The value '{id}' is not a valid contract id."))
                })?;
                let id = adjustments::create(
                    &mut lock(&self.data),
                    Some(contract),
                    body,
                    self.today,
                    (&self.faults, path),
                )?;
                Ok(json_response(StatusCode::OK, json!({ "itemId": id })))
            }
            ["contractserviceadjustments", ..] | ["contracts", _, "serviceadjustments", ..] => {
                Err(method_not_allowed(method))
            }
            [entity, tail @ ..] => {
                let data = lock(&self.data);
                let request = EntityRequest {
                    method,
                    tail,
                    query,
                    body,
                    path,
                    at: self,
                };
                match *entity {
                    "companies" => request.serve(&data.companies),
                    "contracts" => request.serve(&data.contracts),
                    "contractservices" => request.serve(&data.contract_services),
                    "contractserviceunits" => request.serve(&data.units),
                    "services" => request.serve(&data.services),
                    _ => Err(AtError::framework(
                        StatusCode::NOT_FOUND,
                        format!(
                            "No HTTP resource was found that matches the request URI '{path}'."
                        ),
                    )),
                }
            }
            [] => Err(AtError::framework(
                StatusCode::NOT_FOUND,
                format!("No HTTP resource was found that matches the request URI '{path}'."),
            )),
        }
    }
}

struct EntityRequest<'a> {
    method: &'a Method,
    tail: &'a [&'a str],
    query: &'a Query,
    body: &'a [u8],
    path: &'a str,
    at: &'a At,
}

impl EntityRequest<'_> {
    fn search_json(&self) -> Result<Value, AtError> {
        if *self.method == Method::POST && !self.body.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(self.body)
                .map_err(|e| AtError::server(format!("The query body is not valid JSON: {e}")));
        }
        let text = self.query.get("search").ok_or_else(|| {
            AtError::server("A query needs a search: GET …/query?search={json} or POST …/query with a JSON body.")
        })?;
        serde_json::from_str(text)
            .map_err(|e| AtError::server(format!("The search parameter is not valid JSON: {e}")))
    }

    fn serve<E: Entity>(&self, records: &[E]) -> Result<Response, AtError> {
        let get = *self.method == Method::GET;
        let read = get || *self.method == Method::POST;
        match self.tail {
            ["query"] if read => self.page(records, Cursor::Start, None),
            ["query", "count"] if read => {
                let search = Search::parse::<E>(&self.search_json()?)?;
                Ok(json_response(
                    StatusCode::OK,
                    json!({ "queryCount": query::count(records, &search) }),
                ))
            }
            ["query", "next"] if read => {
                let paging = self.query.get("paging").ok_or_else(|| {
                    AtError::server("query/next needs the paging parameter from nextPageUrl.")
                })?;
                let (cursor, size) = Cursor::parse(paging)?;
                self.page(records, cursor, size)
            }
            [id] if get => {
                let id: i64 = id
                    .parse()
                    .map_err(|_| AtError::server(format!("The value '{id}' is not a valid id.")))?;
                let item = find(records, id).map_or(Value::Null, |r| r.json(None));
                Ok(json_response(StatusCode::OK, json!({ "item": item })))
            }
            _ => Err(method_not_allowed(self.method)),
        }
    }

    fn page<E: Entity>(
        &self,
        records: &[E],
        cursor: Cursor,
        size: Option<usize>,
    ) -> Result<Response, AtError> {
        let search_json = self.search_json()?;
        let mut search = Search::parse::<E>(&search_json)?;
        if let Some(size) = size {
            search.max_records = size.clamp(1, query::MAX_RECORDS);
        }
        search.max_records = search
            .max_records
            .min(self.at.settings.max_records.clamp(1, query::MAX_RECORDS));
        let mut page = query::run(records, &search, cursor)?;
        if self.at.settings.malformed_date
            && E::NAME == "Contracts"
            && let Some(first) = records.first().map(Entity::id)
        {
            for item in &mut page.items {
                if item.get("id").and_then(Value::as_i64) == Some(first)
                    && item.get("startDate").is_some()
                {
                    item["startDate"] = MALFORMED_DATE.into();
                }
            }
        }
        let search_text = search_json.to_string();
        let url = |cursor: Cursor| {
            format!(
                "{}{ZONE_ROOT}/{VERSION}/{}/query/next?{}",
                self.at.base_url,
                E::NAME,
                encode_query([
                    ("paging", cursor.encode(search.max_records).as_str()),
                    ("search", search_text.as_str()),
                ])
            )
        };
        let next = page.next.map(|next| {
            if self.at.faults.paging_loop(self.path) {
                url(cursor)
            } else {
                url(next)
            }
        });
        let prev = page.prev.map(url);
        let count = page.items.len();
        Ok(json_response(
            StatusCode::OK,
            json!({
                "items": page.items,
                "pageDetails": {
                    "count": count,
                    "requestCount": search.max_records,
                    "prevPageUrl": prev,
                    "nextPageUrl": next,
                }
            }),
        ))
    }
}
