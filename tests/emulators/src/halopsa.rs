//! HaloPSA API emulator.
//!
//! # Pointing a client at it
//!
//! Authorisation server `<origin>/auth`, resource server `<origin>/api`:
//!
//! ```text
//! POST <origin>/auth/token?tenant=cobaltridge
//! Content-Type: application/x-www-form-urlencoded
//!
//! grant_type=client_credentials&client_id=trueup-emulator-client&client_secret=halo-secret-8c41f0d2a7&scope=all
//! ```
//!
//! → `{"access_token": "...", "token_type": "Bearer", "expires_in": 3600,
//! "scope": "all"}`; then `Authorization: Bearer <token>` on `/api/...`.
//! ([`CLIENT_ID`], [`CLIENT_SECRET`], [`TENANT`]; configurable in
//! [`Settings`], as is the token lifetime.) Wrong client credentials → `401
//! {"error": "invalid_client"}`; a missing or unknown `tenant` → `400
//! {"error": "invalid_request", ...}`; another grant type → `400
//! {"error": "unsupported_grant_type"}`. A missing, unknown or expired
//! bearer token → `401 {"message": "Authorization has been denied for this
//! request."}`. Paths match case-insensitively (`/api/RecurringInvoice/UpdateLines`
//! works).
//!
//! # Routes
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/api/Client`, `/api/Client/{id}` | `{"record_count", "clients": [...]}`; inactive clients only with `includeinactive=true`; `search` matches names |
//! | GET | `/api/ClientContract`, `/api/ClientContract/{id}` | `{"record_count", "contracts": [...]}`; `client_id` filter |
//! | GET | `/api/RecurringInvoice`, `/api/RecurringInvoice/{id}` | `{"record_count", "invoices": [...]}` (lines only with `includelines=true`, and never when [`Settings::lines_in_lists`] is off; always on the single GET); `client_id`, `contract_id` filters |
//! | POST | `/api/RecurringInvoice` | create (no `id`; needs `client_id`) or update (with `id`) invoices, object or array; `lines` inside are updated (with `id`) or added |
//! | POST | `/api/RecurringInvoice/Lines` | add lines (array; each needs `ihid` and `_itemid` or `item_shortdescription`; `item_id` is not Halo's name and is refused) |
//! | POST | `/api/RecurringInvoice/updatelines` | update lines (array; each needs `id` and `ihid`) |
//! | GET | `/api/Item`, `/api/Item/{id}` | the catalogue (`{"record_count", "items": [...]}`); `search` matches names and descriptions |
//!
//! Lists page with `pageinate=true&page_size=n&page_no=k` (1-based,
//! default page size [`DEFAULT_PAGE_SIZE`]); paged answers also carry
//! `page_no` and `page_size`. Without `pageinate` every record comes back.
//! `order=<field>` and `orderdesc=true` sort. The `paging_loop` fault makes
//! every page number serve the first page again, while `record_count`
//! still promises more. Field names (Halo's own, from its API
//! description) are listed in [`data`] and, with their sources, in
//! `docs/connectors/halopsa.md`. An unset date is served as
//! `1900-01-01T00:00:00` ([`data::SENTINEL_DATE`]), and a date written as
//! that sentinel clears the date.
//!
//! # Data
//!
//! Per PSA customer ([`crate::common::CustomerPlan`]): a client, a
//! "Managed Services" contract and a monthly recurring invoice
//! whose current lines (no `enddate`) are the world's billed lines (a
//! replaced line has an ended predecessor; a courtesy line has
//! `unit_price` 0). Every third customer gets an extra contract: disabled
//! invoices with stale lines (cancelled, on hold), an ended invoice
//! (expired), a yearly or an in-arrears invoice that bills a real line, or
//! a contract of another type without an invoice. Some clients appear twice,
//! the copy inactive.
//!
//! # Writes
//!
//! Writes validate everything before changing anything; a refusal is a
//! `400` with a plain-text message naming the line and the problem (Halo's
//! ASP.NET Core `BadRequest(string)`, \[I\]). Successful writes answer the
//! records as stored.
//!
//! The `alter_written` fault ([`crate::faults`]) applies to
//! `updatelines` and `Lines`: every line of the request is stored with the
//! field altered (`date` moves `startdate` to the first of the following
//! month, a line without one counting from today; `price` divides
//! `unit_price` by 12; `quantity` rounds `qty_order` down to a pack of 5),
//! as Halo recalculating a line from its item on save would.
//!
//! # Limits
//!
//! [`Settings::requests_per_minute`] (default
//! [`DEFAULT_REQUESTS_PER_MINUTE`]) on a sliding minute, token requests
//! included; beyond it `429` with `Retry-After`. Halo's real limit is not
//! in our sources \[I\].
//!
//! # Inspection
//!
//! - `GET|DELETE /_emulator/halopsa/writes`: every write after
//!   authentication;
//! - `POST /_emulator/halopsa/reset`: back to the seeded data;
//! - `POST /_emulator/halopsa/expire-tokens`: every token issued so far
//!   expires now (a `401` on its next use), as a token revoked or expired
//!   mid-sync would.
//!
//! Token requests and every other request are counted by route in the
//! emulator's request statistics ([`crate::faults::Faults::count`],
//! `POST /auth/token`).

pub mod data;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use self::data::{HaloData, Invoice, Line, product_by_item};
use crate::EmulatorContext;
use crate::catalog::PRODUCTS;
use crate::common::{
    Query, WriteLog, decimal_from_json, json_response, parse_date, plans, segments_after, today,
    write_log_routes,
};
use crate::faults::{
    AlteredField, Faults, RateWindow, altered_date, altered_price, altered_quantity,
};
use crate::vendor_common::{TokenStore, bearer_token, retry_after_secs};
use crate::world::World;

/// Default OAuth client id.
pub const CLIENT_ID: &str = "trueup-emulator-client";
/// Default OAuth client secret.
pub const CLIENT_SECRET: &str = "halo-secret-8c41f0d2a7";
/// Default tenant (the `tenant` query parameter of `/auth/token`).
pub const TENANT: &str = "cobaltridge";
/// Default access-token lifetime (`expires_in` 3600, api-facts §3.3).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Records per page when `page_size` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Default request budget per sliding minute.
pub const DEFAULT_REQUESTS_PER_MINUTE: usize = 6000;

/// Knobs for the HaloPSA emulator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Expected `client_id`.
    pub client_id: String,
    /// Expected `client_secret`.
    pub client_secret: String,
    /// Expected `tenant`.
    pub tenant: String,
    /// Lifetime of issued tokens (`expires_in`).
    pub token_lifetime: Duration,
    /// Requests per sliding minute before `429`.
    pub requests_per_minute: usize,
    /// "Today" for seeding; `None` = the UTC date at start.
    pub today: Option<NaiveDate>,
    /// Whether list answers carry lines when asked (`includelines=true`).
    /// Off, they never do, as a Halo version that ignores the parameter:
    /// only the single GET has lines.
    pub lines_in_lists: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            tenant: TENANT.to_owned(),
            token_lifetime: TOKEN_LIFETIME,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            today: None,
            lines_in_lists: true,
        }
    }
}

struct Halo {
    data: Mutex<HaloData>,
    world: Arc<World>,
    today: NaiveDate,
    settings: Settings,
    tokens: TokenStore<()>,
    /// Tokens not expired by `expire-tokens`.
    live: Mutex<std::collections::HashSet<String>>,
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

/// The emulator's API router and its `/_emulator/halopsa` inspection router.
pub fn routers(ctx: &EmulatorContext) -> (Router, Router) {
    let settings = ctx.settings.halopsa.clone();
    let today = today(settings.today);
    let data = HaloData::seed(&ctx.world, &plans(&ctx.world, today), today);
    let halo = Arc::new(Halo {
        data: Mutex::new(data),
        world: ctx.world.clone(),
        today,
        rate: RateWindow::new(settings.requests_per_minute, Duration::from_secs(60)),
        tokens: TokenStore::new("halo-", ctx.world.seed),
        live: Mutex::new(std::collections::HashSet::new()),
        settings,
        faults: ctx.faults.clone(),
        writes: Arc::new(WriteLog::default()),
    });
    let api = Router::new().fallback(handle).with_state(halo.clone());
    let inspection = Router::new()
        .route("/_emulator/halopsa/reset", post(reset))
        .route("/_emulator/halopsa/expire-tokens", post(expire_tokens))
        .with_state(halo.clone())
        .merge(write_log_routes(
            "/_emulator/halopsa/writes",
            halo.writes.clone(),
        ));
    (api, inspection)
}

async fn reset(State(halo): State<Arc<Halo>>) -> StatusCode {
    let fresh = HaloData::seed(&halo.world, &plans(&halo.world, halo.today), halo.today);
    *lock(&halo.data) = fresh;
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(halo): State<Arc<Halo>>) -> StatusCode {
    lock(&halo.live).clear();
    StatusCode::NO_CONTENT
}

/// A refusal, rendered when answered.
#[derive(Debug)]
enum Refusal {
    /// A plain-text message (ASP.NET Core's `BadRequest(string)`).
    Text(StatusCode, String),
    /// `{"message": ...}`.
    Message(StatusCode, String),
    /// A missing, unknown or expired bearer token.
    Denied,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Text(status, message) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response(),
            Refusal::Message(status, message) => {
                json_response(status, json!({ "message": message }))
            }
            Refusal::Denied => {
                let mut response = json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"message": "Authorization has been denied for this request."}),
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
        }
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal::Text(status, message.into())
}

fn bad_request(message: impl Into<String>) -> Refusal {
    text(StatusCode::BAD_REQUEST, message)
}

fn not_found(path: &str) -> Refusal {
    Refusal::Message(StatusCode::NOT_FOUND, format!("No resource matches {path}"))
}

async fn handle(
    State(halo): State<Arc<Halo>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if let Err(wait) = halo.rate.admit() {
        let mut response = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": format!(
                "Rate limit of {} requests per minute exceeded; retry after the Retry-After interval.",
                halo.settings.requests_per_minute
            )}),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(wait)),
        );
        return response;
    }
    let query = Query::parse(uri.query());
    if let Some(segments) = segments_after(&path, "/auth") {
        return if segments == ["token"] && method == Method::POST {
            halo.token(&query, &body)
        } else if segments == ["token"] {
            json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "invalid_request",
                "error_description": "Use POST for the token endpoint."}),
            )
        } else {
            not_found(&path).into_response()
        };
    }
    let Some(segments) = segments_after(&path, "/api") else {
        return not_found(&path).into_response();
    };
    if let Err(refusal) = halo.authorize(&headers) {
        return refusal.into_response();
    }
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = halo
        .route(&method, &segments, &query, &body, &path)
        .unwrap_or_else(IntoResponse::into_response);
    if method != Method::GET {
        halo.writes
            .record(method.as_str(), &path, response.status(), &body);
    }
    response
}

fn flag(query: &Query, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn get<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn positive_id(object: &Map<String, Value>, name: &str) -> Option<i64> {
    get(object, name).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|id| *id > 0)
    })
}

impl Halo {
    fn token(&self, query: &Query, body: &[u8]) -> Response {
        let error = |status: StatusCode, code: &str, description: &str| {
            json_response(
                status,
                json!({"error": code, "error_description": description}),
            )
        };
        match query.get("tenant").map(str::trim) {
            None | Some("") => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The tenant query parameter is required: POST /auth/token?tenant=<your tenant>.",
                );
            }
            Some(tenant) if !tenant.eq_ignore_ascii_case(&self.settings.tenant) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Unknown tenant.",
                );
            }
            Some(_) => {}
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Use grant_type=client_credentials.",
            );
        }
        let id = form
            .get("client_id")
            .map(String::as_str)
            .unwrap_or_default();
        let secret = form
            .get("client_secret")
            .map(String::as_str)
            .unwrap_or_default();
        if id != self.settings.client_id || secret != self.settings.client_secret {
            return json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
        }
        let scope = form
            .get("scope")
            .cloned()
            .unwrap_or_else(|| "all".to_owned());
        let (token, _) = self.tokens.issue((), self.settings.token_lifetime);
        lock(&self.live).insert(token.clone());
        json_response(
            StatusCode::OK,
            json!({
                "scope": scope,
                "token_type": "Bearer",
                "access_token": token,
                "expires_in": self.settings.token_lifetime.as_secs(),
            }),
        )
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = bearer_token(headers).ok_or(Refusal::Denied)?;
        self.tokens.check(token).map_err(|_| Refusal::Denied)?;
        if !lock(&self.live).contains(token) {
            return Err(Refusal::Denied);
        }
        Ok(())
    }

    fn route(
        &self,
        method: &Method,
        segments: &[&str],
        query: &Query,
        body: &[u8],
        path: &str,
    ) -> Result<Response, Refusal> {
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        let one = |found: Option<Value>, what: &str, id: &str| {
            found
                .map(|v| json_response(StatusCode::OK, v))
                .ok_or_else(|| text(StatusCode::NOT_FOUND, format!("{what} {id} not found")))
        };
        let id_of = |text: &str| {
            text.parse::<i64>()
                .map_err(|_| bad_request(format!("'{text}' is not a valid id")))
        };
        let data = || lock(&self.data);
        match segments {
            ["client"] if get => {
                let data = data();
                let search = query.get("search").map(str::to_lowercase);
                let all = flag(query, "includeinactive");
                let records = data
                    .clients
                    .iter()
                    .filter(|c| all || !c.inactive)
                    .filter(|c| {
                        search
                            .as_ref()
                            .is_none_or(|s| c.name.to_lowercase().contains(s))
                    })
                    .map(|c| data.client_json(c))
                    .collect();
                self.list("clients", records, query, path)
            }
            ["client", id] if get => {
                let id = id_of(id)?;
                let data = data();
                one(
                    data.client(id).map(|c| data.client_json(c)),
                    "Client",
                    &id.to_string(),
                )
            }
            ["clientcontract"] if get => {
                let data = data();
                let client = self.id_filter(query, "client_id")?;
                let records = data
                    .contracts
                    .iter()
                    .filter(|c| client.is_none_or(|id| c.client_id == id))
                    .map(|c| data.contract_json(c))
                    .collect();
                self.list("contracts", records, query, path)
            }
            ["clientcontract", id] if get => {
                let id = id_of(id)?;
                let data = data();
                one(
                    data.contracts
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| data.contract_json(c)),
                    "ClientContract",
                    &id.to_string(),
                )
            }
            ["recurringinvoice"] if get => {
                let data = data();
                let client = self.id_filter(query, "client_id")?;
                let contract = self.id_filter(query, "contract_id")?;
                let with_lines = flag(query, "includelines") && self.settings.lines_in_lists;
                let index = data.lines_by_invoice();
                let lines_of = |id: i64| index.get(&id).map_or(&[][..], Vec::as_slice);
                let records = data
                    .invoices
                    .iter()
                    .filter(|i| client.is_none_or(|id| i.client_id == id))
                    .filter(|i| contract.is_none_or(|id| i.contract_id == Some(id)))
                    .map(|i| data.invoice_json_with(i, lines_of(i.id), false))
                    .collect();
                // Lines are rendered for the page served only.
                let attach = |record: &mut Value| {
                    if with_lines && let Some(id) = record["id"].as_i64() {
                        record["lines"] =
                            Value::Array(lines_of(id).iter().map(|l| data.line_json(l)).collect());
                    }
                };
                self.list_with("invoices", records, query, path, &attach)
            }
            ["recurringinvoice", "updatelines"] if post => {
                let lines = update_lines(&mut data(), body, (&self.faults, path, self.today))?;
                Ok(json_response(StatusCode::OK, lines))
            }
            ["recurringinvoice", "lines"] if post => {
                let lines = add_lines(&mut data(), body, (&self.faults, path, self.today))?;
                Ok(json_response(StatusCode::CREATED, lines))
            }
            ["recurringinvoice"] if post => {
                let saved = save_invoices(&mut data(), body, self.today)?;
                Ok(json_response(StatusCode::CREATED, saved))
            }
            ["recurringinvoice", id] if get => {
                let id = id_of(id)?;
                let data = data();
                one(
                    data.invoice(id).map(|i| data.invoice_json(i, true)),
                    "RecurringInvoice",
                    &id.to_string(),
                )
            }
            ["item"] if get => {
                let data = data();
                let search = query.get("search").map(str::to_lowercase);
                let records = PRODUCTS
                    .iter()
                    .filter(|p| {
                        search.as_ref().is_none_or(|s| {
                            p.identifier.to_lowercase().contains(s)
                                || p.description.to_lowercase().contains(s)
                        })
                    })
                    .map(|p| data.item_json(p))
                    .collect();
                self.list("items", records, query, path)
            }
            ["item", id] if get => {
                let id = id_of(id)?;
                let data = data();
                one(
                    product_by_item(id).map(|p| data.item_json(p)),
                    "Item",
                    &id.to_string(),
                )
            }
            ["client", ..] | ["clientcontract", ..] | ["recurringinvoice", ..] | ["item", ..] => {
                Err(text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not supported on {path}"),
                ))
            }
            _ => Err(not_found(path)),
        }
    }

    fn id_filter(&self, query: &Query, name: &str) -> Result<Option<i64>, Refusal> {
        query
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| bad_request(format!("{name} '{v}' is not a valid id")))
            })
            .transpose()
    }

    fn list(
        &self,
        key: &str,
        records: Vec<Value>,
        query: &Query,
        path: &str,
    ) -> Result<Response, Refusal> {
        self.list_with(key, records, query, path, &|_| {})
    }

    /// Sorts and pages `records`, then passes each record served to
    /// `finish` (to add what is costly to render for every record).
    fn list_with(
        &self,
        key: &str,
        mut records: Vec<Value>,
        query: &Query,
        path: &str,
        finish: &dyn Fn(&mut Value),
    ) -> Result<Response, Refusal> {
        if let Some(field) = query.get("order").filter(|f| !f.trim().is_empty()) {
            let field = field.trim().to_ascii_lowercase();
            let value_of = |r: &Value| {
                r.as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.to_ascii_lowercase() == field))
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Value::Null)
            };
            records.sort_by(|a, b| compare_json(&value_of(a), &value_of(b)));
            if flag(query, "orderdesc") {
                records.reverse();
            }
        }
        let total = records.len();
        let mut body = Map::new();
        if flag(query, "pageinate") {
            let number = |name: &str, default: usize| -> Result<usize, Refusal> {
                match query.get(name).filter(|v| !v.trim().is_empty()) {
                    None => Ok(default),
                    Some(v) => v
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            bad_request(format!(
                                "{name} '{v}' must be a whole number of at least 1"
                            ))
                        }),
                }
            };
            let size = number("page_size", DEFAULT_PAGE_SIZE)?;
            let requested = number("page_no", 1)?;
            let served = if self.faults.paging_loop(path) {
                1
            } else {
                requested
            };
            let start = (served - 1).saturating_mul(size).min(total);
            let end = start.saturating_add(size).min(total);
            records = records.drain(start..end).collect();
            body.insert("page_no".to_owned(), requested.into());
            body.insert("page_size".to_owned(), size.into());
        }
        records.iter_mut().for_each(finish);
        body.insert("record_count".to_owned(), total.into());
        body.insert(key.to_owned(), Value::Array(records));
        Ok(json_response(StatusCode::OK, Value::Object(body)))
    }
}

/// Whether a written date is Halo's "no date" (the SQL Server zero date
/// or earlier).
fn is_sentinel(date: NaiveDate) -> bool {
    date <= NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN)
}

fn compare_json(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// The array (or single object) a Halo POST carries.
fn objects(body: &[u8], what: &str) -> Result<Vec<Map<String, Value>>, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("The {what} body is not valid JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(bad_request(format!(
                "The {what} body must be an array of objects"
            )));
        }
    };
    if items.is_empty() {
        return Err(bad_request(format!("The {what} array is empty")));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(n, item)| match item {
            Value::Object(object) => Ok(object),
            other => Err(bad_request(format!(
                "{what} item {} is not an object: {other}",
                n + 1
            ))),
        })
        .collect()
}

/// Applies the writable fields of `object` to `line`; `Err` names the
/// problem.
fn apply_line_fields(line: &mut Line, object: &Map<String, Value>) -> Result<(), String> {
    let number = |name: &str| -> Result<Option<Decimal>, String> {
        get(object, name)
            .map(|v| {
                decimal_from_json(v).ok_or_else(|| format!("{name} must be a number, not {v}"))
            })
            .transpose()
    };
    let date = |name: &str| -> Result<Option<Option<NaiveDate>>, String> {
        match object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
        {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
            Some(Value::String(s)) => parse_date(s)
                .map(|d| Some(Some(d).filter(|d| !is_sentinel(*d))))
                .ok_or_else(|| format!("{name} '{s}' is not a date like 2025-01-01T00:00:00")),
            Some(other) => Err(format!("{name} must be a date string, not {other}")),
        }
    };
    let string = |name: &str| -> Result<Option<String>, String> {
        get(object, name)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{name} must be text, not {v}"))
            })
            .transpose()
    };
    if get(object, "item_id").is_some() {
        return Err(
            "item_id is not a field of a recurring invoice line; name the item as _itemid"
                .to_owned(),
        );
    }
    if let Some(item) = get(object, "_itemid") {
        let id = item
            .as_i64()
            .ok_or_else(|| format!("_itemid must be a whole number, not {item}"))?;
        let product =
            product_by_item(id).ok_or_else(|| format!("_itemid {id} is not a catalogue item"))?;
        line.product = product;
        line.short_description = Cow::Borrowed(product.identifier);
        line.long_description = Cow::Borrowed(product.description);
    }
    if let Some(qty) = number("qty_order")? {
        line.qty = qty;
    }
    if let Some(price) = number("unit_price")? {
        line.unit_price = price;
    }
    if let Some(cost) = number("unit_cost")? {
        line.unit_cost = cost;
    }
    if let Some(short) = string("item_shortdescription")? {
        line.short_description = Cow::Owned(short);
    }
    if let Some(long) = string("item_longdescription")? {
        line.long_description = Cow::Owned(long);
    }
    if let Some(code) = string("nominal_code")? {
        line.nominal_code = Cow::Owned(code);
    }
    if let Some(tax) = number("tax_code")? {
        line.tax_code = tax.trunc().try_into().unwrap_or(line.tax_code);
    }
    if let Some(seq) = number("sequenceid")? {
        line.seq = seq.trunc().try_into().unwrap_or(line.seq);
    }
    for old in ["start_date", "end_date"] {
        if get(object, old).is_some() {
            return Err(format!(
                "{old} is not a field of a recurring invoice line; the line dates are startdate and enddate"
            ));
        }
    }
    if let Some(start) = date("startdate")? {
        line.start = start;
    }
    if let Some(end) = date("enddate")? {
        line.end = end;
    }
    if let (Some(start), Some(end)) = (line.start, line.end)
        && end < start
    {
        return Err(format!("enddate {end} is before startdate {start}"));
    }
    Ok(())
}

/// Who asks a line write to be altered (the `alter_written` fault): the
/// faults, the request path and "today" (a line without a start date is
/// treated as starting today).
type Alter<'a> = (&'a Faults, &'a str, NaiveDate);

/// Stores every line of one write with the planned field altered, when the
/// `alter_written` fault asks (one alteration per request).
fn alter_lines(lines: &mut [Line], (faults, path, today): Alter<'_>) {
    let Some(field) = faults.take_alteration(path) else {
        return;
    };
    for line in lines {
        match field {
            AlteredField::Date => line.start = Some(altered_date(line.start.unwrap_or(today))),
            AlteredField::Price => line.unit_price = altered_price(line.unit_price),
            AlteredField::Quantity => line.qty = altered_quantity(line.qty),
        }
    }
}

/// `POST /api/RecurringInvoice/updatelines`.
fn update_lines(data: &mut HaloData, body: &[u8], alter: Alter<'_>) -> Result<Value, Refusal> {
    let items = objects(body, "updatelines")?;
    let mut updated = Vec::with_capacity(items.len());
    for (n, object) in items.iter().enumerate() {
        let n = n + 1;
        let id = positive_id(object, "id").ok_or_else(|| {
            bad_request(format!(
                "updatelines: line {n} has no id. Every line needs id (the recurring invoice line id) and ihid (the recurring invoice id)."
            ))
        })?;
        let ihid = positive_id(object, "ihid").ok_or_else(|| {
            bad_request(format!(
                "updatelines: line {n} (id {id}) has no ihid. Every line needs id (the recurring invoice line id) and ihid (the recurring invoice id)."
            ))
        })?;
        // A line listed twice takes both updates, in order.
        let earlier = updated.iter().position(|l: &Line| l.id == id);
        let mut line = match earlier {
            Some(index) => updated.remove(index),
            None => data
                .lines
                .iter()
                .find(|l| l.id == id)
                .cloned()
                .ok_or_else(|| {
                    bad_request(format!(
                        "updatelines: line {n}: there is no recurring invoice line {id}"
                    ))
                })?,
        };
        if line.ihid != ihid {
            return Err(bad_request(format!(
                "updatelines: line {n}: line {id} belongs to recurring invoice {}, not {ihid}",
                line.ihid
            )));
        }
        apply_line_fields(&mut line, object).map_err(|problem| {
            bad_request(format!("updatelines: line {n} (id {id}): {problem}"))
        })?;
        updated.push(line);
    }
    alter_lines(&mut updated, alter);
    let mut answer = Vec::with_capacity(updated.len());
    for line in updated {
        answer.push(data.line_json(&line));
        if let Some(stored) = data.lines.iter_mut().find(|l| l.id == line.id) {
            *stored = line;
        }
    }
    Ok(Value::Array(answer))
}

fn new_line(
    data: &HaloData,
    object: &Map<String, Value>,
    ihid: i64,
    id: i64,
    context: &str,
) -> Result<Line, Refusal> {
    let product = match (get(object, "_itemid"), get(object, "item_shortdescription")) {
        (Some(_), _) => None,
        (None, Some(Value::String(short))) => Some(
            PRODUCTS
                .iter()
                .find(|p| p.identifier.eq_ignore_ascii_case(short))
                .ok_or_else(|| {
                    bad_request(format!(
                        "{context}: no catalogue item is called '{short}'; send _itemid"
                    ))
                })?,
        ),
        _ => {
            return Err(bad_request(format!(
                "{context}: send _itemid or item_shortdescription"
            )));
        }
    };
    let seq = data.lines.iter().filter(|l| l.ihid == ihid).count() as i64 + 1;
    let product = product.unwrap_or(&PRODUCTS[0]);
    let mut line = Line {
        id,
        ihid,
        product,
        short_description: Cow::Borrowed(product.identifier),
        long_description: Cow::Borrowed(product.description),
        qty: Decimal::ONE,
        unit_price: crate::common::cents(product.unit_price_cents),
        unit_cost: crate::common::cents(product.unit_cost_cents),
        nominal_code: Cow::Borrowed(data::NOMINAL_CODE),
        tax_code: 1,
        seq,
        start: None,
        end: None,
    };
    let price_given = get(object, "unit_price").is_some();
    let cost_given = get(object, "unit_cost").is_some();
    apply_line_fields(&mut line, object)
        .map_err(|problem| bad_request(format!("{context}: {problem}")))?;
    if !price_given {
        line.unit_price = crate::common::cents(line.product.unit_price_cents);
    }
    if !cost_given {
        line.unit_cost = crate::common::cents(line.product.unit_cost_cents);
    }
    Ok(line)
}

/// `POST /api/RecurringInvoice/Lines`.
fn add_lines(data: &mut HaloData, body: &[u8], alter: Alter<'_>) -> Result<Value, Refusal> {
    let items = objects(body, "Lines")?;
    let mut created = Vec::with_capacity(items.len());
    for (n, object) in items.iter().enumerate() {
        let context = format!("Lines: line {}", n + 1);
        let ihid = positive_id(object, "ihid").ok_or_else(|| {
            bad_request(format!("{context} has no ihid (the recurring invoice id)"))
        })?;
        if data.invoice(ihid).is_none() {
            return Err(bad_request(format!(
                "{context}: there is no recurring invoice {ihid}"
            )));
        }
        created.push(new_line(
            data,
            object,
            ihid,
            data.next_line_id + n as i64,
            &context,
        )?);
    }
    alter_lines(&mut created, alter);
    data.next_line_id += created.len() as i64;
    let answer = created.iter().map(|l| data.line_json(l)).collect();
    data.lines.extend(created);
    Ok(Value::Array(answer))
}

/// `POST /api/RecurringInvoice`: creates invoices without `id`, updates
/// those with one; `lines` inside are updated (with `id`) or added.
fn save_invoices(data: &mut HaloData, body: &[u8], today: NaiveDate) -> Result<Value, Refusal> {
    let items = objects(body, "RecurringInvoice")?;
    let mut scratch = data.clone();
    let mut saved = Vec::with_capacity(items.len());
    for (n, object) in items.iter().enumerate() {
        let context = format!("RecurringInvoice {}", n + 1);
        let id = match positive_id(object, "id") {
            Some(id) => {
                if scratch.invoice(id).is_none() {
                    return Err(bad_request(format!(
                        "{context}: there is no recurring invoice {id}"
                    )));
                }
                id
            }
            None => {
                let client_id = positive_id(object, "client_id").ok_or_else(|| {
                    bad_request(format!(
                        "{context}: a new recurring invoice needs client_id"
                    ))
                })?;
                if scratch.client(client_id).is_none() {
                    return Err(bad_request(format!(
                        "{context}: there is no client {client_id}"
                    )));
                }
                scratch.push_invoice(Invoice {
                    id: 0,
                    client_id,
                    contract_id: None,
                    reference: String::new(),
                    period: data::PERIOD_MONTHLY,
                    start: today,
                    end: None,
                    next_creation: Some(crate::common::add_months(
                        crate::common::month_start(today),
                        1,
                    )),
                    disabled: false,
                })
            }
        };
        let mut invoice = scratch
            .invoice(id)
            .cloned()
            .ok_or_else(|| bad_request(format!("{context}: there is no recurring invoice {id}")))?;
        apply_invoice_fields(&mut invoice, object, &scratch)
            .map_err(|problem| bad_request(format!("{context} (id {id}): {problem}")))?;
        if let Some(stored) = scratch.invoices.iter_mut().find(|i| i.id == id) {
            *stored = invoice;
        }
        if let Some(lines) = get(object, "lines") {
            let Value::Array(lines) = lines else {
                return Err(bad_request(format!("{context}: lines must be an array")));
            };
            for (m, line) in lines.iter().enumerate() {
                let line_context = format!("{context} line {}", m + 1);
                let Value::Object(line) = line else {
                    return Err(bad_request(format!("{line_context} is not an object")));
                };
                match positive_id(line, "id") {
                    Some(line_id) => {
                        let stored = scratch
                            .lines
                            .iter_mut()
                            .find(|l| l.id == line_id && l.ihid == id)
                            .ok_or_else(|| {
                                bad_request(format!(
                                    "{line_context}: invoice {id} has no line {line_id}"
                                ))
                            })?;
                        apply_line_fields(stored, line)
                            .map_err(|problem| bad_request(format!("{line_context}: {problem}")))?;
                    }
                    None => {
                        let line =
                            new_line(&scratch, line, id, scratch.next_line_id, &line_context)?;
                        scratch.next_line_id += 1;
                        scratch.lines.push(line);
                    }
                }
            }
        }
        saved.push(id);
    }
    *data = scratch;
    let mut answers: Vec<Value> = saved
        .iter()
        .filter_map(|id| data.invoice(*id).map(|i| data.invoice_json(i, true)))
        .collect();
    Ok(if answers.len() == 1 {
        answers.remove(0)
    } else {
        Value::Array(answers)
    })
}

fn apply_invoice_fields(
    invoice: &mut Invoice,
    object: &Map<String, Value>,
    data: &HaloData,
) -> Result<(), String> {
    if let Some(reference) = get(object, "reference") {
        invoice.reference = reference
            .as_str()
            .ok_or_else(|| format!("reference must be text, not {reference}"))?
            .to_owned();
    }
    if let Some(disabled) = get(object, "disabled") {
        invoice.disabled = disabled
            .as_bool()
            .ok_or_else(|| format!("disabled must be true or false, not {disabled}"))?;
    }
    if let Some(period) = get(object, "period") {
        invoice.period = match period.as_i64() {
            Some(code @ (data::PERIOD_MONTHLY | data::PERIOD_YEARLY)) => code,
            _ => {
                return Err(format!(
                    "period must be {} (monthly) or {} (yearly), not {period}",
                    data::PERIOD_MONTHLY,
                    data::PERIOD_YEARLY
                ));
            }
        };
    }
    if let Some(contract) = get(object, "contract_id") {
        let id = contract
            .as_i64()
            .ok_or_else(|| format!("contract_id must be a whole number, not {contract}"))?;
        if !data
            .contracts
            .iter()
            .any(|c| c.id == id && c.client_id == invoice.client_id)
        {
            return Err(format!("client {} has no contract {id}", invoice.client_id));
        }
        invoice.contract_id = Some(id);
    }
    for (name, slot) in [
        ("enddate", &mut invoice.end),
        ("nextcreationdate", &mut invoice.next_creation),
    ] {
        match object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
        {
            None => {}
            Some(Value::Null) => *slot = None,
            Some(Value::String(s)) => {
                *slot = Some(parse_date(s).ok_or_else(|| format!("{name} '{s}' is not a date"))?)
                    .filter(|d| !is_sentinel(*d));
            }
            Some(other) => return Err(format!("{name} must be a date string, not {other}")),
        }
    }
    if let Some(start) = get(object, "startdate") {
        invoice.start = start
            .as_str()
            .and_then(parse_date)
            .filter(|d| !is_sentinel(*d))
            .ok_or_else(|| format!("startdate {start} is not a date"))?;
    }
    Ok(())
}
