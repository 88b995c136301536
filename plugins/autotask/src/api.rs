//! The Autotask REST client: zone lookup, header authentication, the
//! shared hourly request budget, and `query` paging.
//!
//! - **Zone**: `GET {zone_lookup_url}/atservicesrest/v1.0/zoneInformation?user={UserName}`
//!   (no credentials) answers the zone's REST URL; every other request goes
//!   to `{url}/v1.0/…`. The URL is cached for the life of the instance, and
//!   the `api_url` setting skips the lookup.
//! - **Auth**: the `ApiIntegrationCode`, `UserName` and `Secret` headers; the
//!   code and the secret are placed by the host.
//! - **Budget**: every database has one rolling hourly allowance
//!   (`GET /ThresholdInformation`), shared by all its integrations, and
//!   Autotask blocks them all when it is used up. Each call checks it once
//!   and answers `rate-limited` when usage has reached `budget_share` of it.
//!   Requests are sent one at a time, well inside the limit of 3 concurrent
//!   requests per endpoint.
//! - **Queries**: `POST /{Entity}/query` with `{"filter": [...],
//!   "IncludeFields": [...], "MaxRecords": 500}` (GET `…/query?search=` in
//!   write paths, where the host allows only GET while planning); records
//!   come in id order, 500 a page, and `pageDetails.nextPageUrl` is followed
//!   with GET.
//! - **Errors**: Autotask answers refusals, business-rule violations and
//!   some authentication failures with status 500 and `{"errors": [...]}`;
//!   the texts are passed on as they are. Such a refusal is `upstream`
//!   with `retryable = false` (sending it again gets the same answer); a
//!   500 without an `errors` list, other 5xx and dropped connections are
//!   server faults, `retryable = true` (see [`retryable`]).

use std::cell::RefCell;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use trueup_connector::http::{Part, Secret, is_retryable_status};
use trueup_connector::paging::{not_advancing, with_query};
use trueup_connector::prelude::*;
use trueup_connector::{UpstreamFailure, config, log};

/// Records per query page, the most Autotask serves.
pub const MAX_RECORDS: u64 = 500;
/// The most pages a lookup that must be complete in one call (units of a
/// page of services, a catalogue lookup) may span.
pub const MAX_LOOKUP_PAGES: usize = 40;
/// The shortest wait suggested when the budget share is used: the hourly
/// window only frees requests as they age out of it.
pub const MIN_BUDGET_WAIT_MS: u64 = 60_000;
/// The wait suggested when Autotask itself refuses with 429 without a
/// `Retry-After`: its hourly threshold is exhausted (or, for a moment, the
/// thread limit is).
pub const THRESHOLD_WAIT_MS: u64 = 60_000;
/// The zone lookup host.
pub const DEFAULT_ZONE_LOOKUP: &str = "https://webservices.autotask.net";

thread_local! {
    /// The zone's REST URL (ending in `/v1.0`), for the life of the instance.
    static ZONE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The settings of `plugin.toml`, read and checked.
pub struct Settings {
    /// The API user name.
    pub username: String,
    /// Where the zone is looked up.
    pub zone_lookup: String,
    /// A configured zone URL.
    pub api_url: Option<String>,
    /// The share of the hourly budget this connector may use.
    pub budget_share: Decimal,
}

fn settings() -> Result<Settings, ConnectorError> {
    let share_text = config::get_or("budget_share", "0.5");
    let budget_share: Decimal = share_text.trim().parse().map_err(|_| {
        ConnectorError::InvalidConfig(format!(
            "config key `budget_share` is {share_text:?}; write a number above 0 and at most 1, e.g. 0.5"
        ))
    })?;
    if budget_share <= Decimal::ZERO || budget_share > Decimal::ONE {
        return Err(ConnectorError::InvalidConfig(format!(
            "config key `budget_share` is {budget_share}; it must be above 0 and at most 1"
        )));
    }
    let zone_lookup = match config::get("zone_lookup_url") {
        Some(_) => config::base_url("zone_lookup_url")?,
        None => DEFAULT_ZONE_LOOKUP.to_owned(),
    };
    let api_url = match config::get("api_url") {
        Some(_) => Some(config::base_url("api_url")?),
        None => None,
    };
    Ok(Settings {
        username: config::require("username")?,
        zone_lookup,
        api_url,
        budget_share,
    })
}

/// `…/atservicesrest` or `…/atservicesrest/v1.0`, with or without a
/// trailing slash, as the `…/v1.0` root requests go to.
fn version_root(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    if trimmed.to_ascii_lowercase().ends_with("/v1.0") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1.0")
    }
}

/// The texts of an Autotask error body: `{"errors": [...]}` or ASP.NET's
/// `{"Message": ...}`; the raw excerpt otherwise.
pub fn error_text(response: &Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
        #[serde(default, rename = "Message")]
        message: Option<String>,
    }
    match serde_json::from_slice::<Errors>(&response.body) {
        Ok(body) if !body.errors.is_empty() => body.errors.join("; "),
        Ok(Errors {
            message: Some(message),
            ..
        }) => message,
        _ => response.body_excerpt(),
    }
}

/// Whether `body` is Autotask's refusal: `{"errors": [...]}` with at least
/// one text.
fn is_refusal(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")
                .and_then(Value::as_array)
                .map(|e| !e.is_empty())
        })
        .unwrap_or(false)
}

/// Whether an Autotask error answer with `status` and `body` may succeed
/// when the same request is sent again. Autotask answers what it will
/// always refuse — a business rule ("Unable to make changes as it would
/// result in the deletion/modification of an already approved and posted
/// contract period"), a value it cannot read ("Input string '2.5' is not a
/// valid integer") — with status 500 and an `errors` list, so those are
/// not retryable; a 500 without one (an unhandled server fault), other 5xx
/// (a gateway, maintenance), 408 and 429 are. Other 4xx are refusals.
pub fn retryable(status: u16, body: &[u8]) -> bool {
    is_retryable_status(status) && !(status == 500 && is_refusal(body))
}

/// A response's status as a [`ConnectorError`], Autotask's way: 401 and
/// 500s that say "Unable to authenticate" are `auth-failed`; a 429 without
/// `Retry-After` (the hourly threshold or the thread limit) waits
/// [`THRESHOLD_WAIT_MS`]; other errors are `upstream` with Autotask's own
/// text, retryable as [`retryable`] decides.
fn checked(response: Response) -> Result<Response, ConnectorError> {
    match response.status {
        200..=299 => Ok(response),
        401 | 403 => Err(ConnectorError::AuthFailed(format!(
            "{} {} answered {}: {}; check the username, integration_code and secret",
            response.method(),
            response.url(),
            response.status,
            error_text(&response)
        ))),
        429 => Err(ConnectorError::RateLimited(
            if response.header("retry-after").is_some() {
                response.retry_after_ms()
            } else {
                THRESHOLD_WAIT_MS
            },
        )),
        404 => response.ok(),
        status => {
            let text = error_text(&response);
            if text.starts_with("Unable to authenticate") {
                return Err(ConnectorError::AuthFailed(format!(
                    "{} {}: {text}; check the username and integration_code",
                    response.method(),
                    response.url()
                )));
            }
            Err(ConnectorError::Upstream(UpstreamFailure {
                status,
                body: text,
                retryable: retryable(status, &response.body),
            }))
        }
    }
}

/// `GET /ThresholdInformation`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Threshold {
    external_request_threshold: u64,
    request_threshold_timeframe: u64,
    current_timeframe_request_count: u64,
}

/// A query answer: `{"items": [...], "pageDetails": {...}}`.
#[derive(Deserialize)]
struct QueryPage<T> {
    items: Vec<T>,
    #[serde(rename = "pageDetails")]
    page_details: PageDetails,
}

#[derive(Deserialize)]
struct PageDetails {
    #[serde(default, rename = "nextPageUrl")]
    next_page_url: Option<String>,
}

/// An entity with an id (query results come in id order).
pub trait HasId {
    /// The record id.
    fn id(&self) -> i64;
}

/// One page of a query and the URL of the next.
pub struct Page<T> {
    /// The records.
    pub items: Vec<T>,
    /// `nextPageUrl`, when there are more.
    pub next: Option<String>,
}

/// A query search: `{"filter": [...]}` plus the fields wanted.
pub fn search(filter: Value, fields: &[&str]) -> Value {
    let mut search = serde_json::json!({ "filter": filter, "MaxRecords": MAX_RECORDS });
    if !fields.is_empty() {
        search["IncludeFields"] = fields.to_vec().into();
    }
    search
}

/// The settings, the two secrets and the zone root, for one export call.
pub struct Client {
    /// The settings.
    pub settings: Settings,
    integration_code: Secret,
    secret: Secret,
    root: String,
}

impl Client {
    /// Reads the settings and secrets and finds the zone (cached per
    /// instance; skipped when `api_url` is set).
    ///
    /// # Errors
    /// `invalid-config` for a bad setting, a missing secret or a user the
    /// zone lookup does not know; what the lookup request returns.
    pub fn new() -> Result<Self, ConnectorError> {
        let settings = settings()?;
        let root = match &settings.api_url {
            Some(url) => version_root(url),
            None => match ZONE.with(|z| z.borrow().clone()) {
                Some(root) => root,
                None => {
                    let root = zone(&settings)?;
                    ZONE.with(|z| *z.borrow_mut() = Some(root.clone()));
                    root
                }
            },
        };
        Ok(Self {
            settings,
            integration_code: Secret::get("integration_code")?,
            secret: Secret::get("secret")?,
            root,
        })
    }

    /// `{zone}/v1.0` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    /// Adds the authentication headers, sends and maps the status (see
    /// [`checked`]).
    ///
    /// # Errors
    /// As [`Request::send`]; the mapped status.
    pub fn send<'a>(&'a self, request: Request<'a>) -> Result<Response, ConnectorError> {
        checked(
            request
                .header_parts(
                    "ApiIntegrationCode",
                    &[Part::Secret(&self.integration_code)],
                )
                .header("UserName", self.settings.username.clone())
                .header_parts("Secret", &[Part::Secret(&self.secret)])
                .header("accept", "application/json")
                .send()?,
        )
    }

    /// A GET of `url`.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub fn get(&self, url: &str) -> Result<Response, ConnectorError> {
        self.send(Request::get(url))
    }

    /// `GET /{entity}/{id}` → the `item`, or `not-found` when Autotask
    /// answers `{"item": null}`.
    ///
    /// # Errors
    /// As [`Client::send`]; `not-found`; `internal` for an unexpected body.
    pub fn item<T: DeserializeOwned>(
        &self,
        response: &Response,
        what: &str,
    ) -> Result<T, ConnectorError> {
        #[derive(Deserialize)]
        struct Item<T> {
            item: Option<T>,
        }
        let body: Item<T> = response.json()?;
        body.item.ok_or_else(|| {
            ConnectorError::NotFound(format!(
                "{} {}: no such {what}",
                response.method(),
                response.url()
            ))
        })
    }

    /// `GET /{entity}/query?search=…` (for write paths, where only GET is
    /// allowed while planning).
    pub fn query_get_url(&self, entity: &str, search: &Value) -> String {
        with_query(
            &self.url(&format!("/{entity}/query")),
            &[("search", &search.to_string())],
        )
    }

    /// Checks the shared hourly budget once: `rate-limited` when this
    /// database's usage in the current window has reached `budget_share`
    /// of its threshold. The wait assumes the window's requests were spread
    /// evenly, so they age out at `count / timeframe` a minute.
    ///
    /// # Errors
    /// `rate-limited` with the wait; what the request returns.
    pub fn check_budget(&self) -> Result<(), ConnectorError> {
        let threshold: Threshold = self.get(&self.url("/ThresholdInformation"))?.json()?;
        let Some(wait) = budget_wait(
            threshold.external_request_threshold,
            threshold.current_timeframe_request_count,
            threshold.request_threshold_timeframe,
            self.settings.budget_share,
        ) else {
            return Ok(());
        };
        log::info(&format!(
            "Autotask hourly budget: {} of {} requests used in the last {} minutes, at or above this connector's share ({}); waiting {} s",
            threshold.current_timeframe_request_count,
            threshold.external_request_threshold,
            threshold.request_threshold_timeframe,
            self.settings.budget_share,
            wait / 1000
        ));
        Err(ConnectorError::RateLimited(wait))
    }

    /// One page of a query: `POST /{entity}/query` with `search` for the
    /// first page, `GET next` for the others. `after` is the last id of
    /// the previous page (-1 for none): a page that does not move past it,
    /// or a next URL that repeats the one just read, is a paging loop.
    ///
    /// # Errors
    /// As [`Client::send`]; `internal` for a paging loop or a body that is
    /// not a query answer.
    pub fn query<T: DeserializeOwned + HasId>(
        &self,
        entity: &str,
        search: &Value,
        next: Option<&str>,
        after: i64,
    ) -> Result<Page<T>, ConnectorError> {
        let (label, response) = match next {
            None => {
                let url = self.url(&format!("/{entity}/query"));
                let request = Request::post(url.as_str()).json(search)?;
                (format!("POST {url}"), self.send(request)?)
            }
            Some(url) => (format!("GET {url}"), self.get(url)?),
        };
        self.page(response, &label, next, after)
    }

    /// Like [`Client::query`] for a `next` URL or a GET query URL already
    /// sent, given its response.
    ///
    /// # Errors
    /// As [`Client::query`].
    pub fn page<T: DeserializeOwned + HasId>(
        &self,
        response: Response,
        label: &str,
        presented: Option<&str>,
        after: i64,
    ) -> Result<Page<T>, ConnectorError> {
        let page: QueryPage<T> = response.json()?;
        if let Some(first) = page.items.first()
            && first.id() <= after
        {
            return Err(not_advancing(
                label,
                &format!(
                    "page (it starts at id {} again, after id {after})",
                    first.id()
                ),
            ));
        }
        let next = page
            .page_details
            .next_page_url
            .filter(|n| !n.trim().is_empty());
        if let (Some(next), Some(presented)) = (&next, presented)
            && next == presented
        {
            return Err(not_advancing(label, &format!("URL {next:?}")));
        }
        if next.is_some() && page.items.is_empty() {
            return Err(not_advancing(label, "URL (the page was empty)"));
        }
        Ok(Page {
            items: page.items,
            next,
        })
    }

    /// Every record of a query that must be complete in one call (at most
    /// [`MAX_LOOKUP_PAGES`] pages).
    ///
    /// # Errors
    /// As [`Client::query`]; `internal` past the page limit.
    pub fn query_all<T: DeserializeOwned + HasId>(
        &self,
        entity: &str,
        search: &Value,
    ) -> Result<Vec<T>, ConnectorError> {
        let mut all: Vec<T> = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_LOOKUP_PAGES {
            let after = all.last().map_or(-1, HasId::id);
            let page = self.query::<T>(entity, search, next.as_deref(), after)?;
            all.extend(page.items);
            match page.next {
                Some(url) => next = Some(url),
                None => return Ok(all),
            }
        }
        Err(ConnectorError::Internal(format!(
            "an Autotask {entity} query spans more than {MAX_LOOKUP_PAGES} pages of {MAX_RECORDS}; ask for fewer contracts a call"
        )))
    }
}

/// The zone lookup.
fn zone(settings: &Settings) -> Result<String, ConnectorError> {
    #[derive(Deserialize)]
    struct Zone {
        url: String,
    }
    let url = with_query(
        &format!(
            "{}/atservicesrest/v1.0/zoneInformation",
            settings.zone_lookup
        ),
        &[("user", &settings.username)],
    );
    let response = Request::get(url.as_str())
        .header("accept", "application/json")
        .send()?;
    // An unknown user is a 4xx, or a 500 with Autotask's `errors` list; a
    // bare 500 is a server failure and stays transient.
    let refused = match response.status {
        429 => false,
        status @ 400..=500 => !retryable(status, &response.body),
        _ => false,
    };
    if refused {
        return Err(ConnectorError::InvalidConfig(format!(
            "GET {url}: Autotask's zone lookup answered {} ({}); check the `username` setting (the API user's e-mail), or set `api_url` to your zone's REST URL",
            response.status,
            error_text(&response)
        )));
    }
    let zone: Zone = checked(response)?.json()?;
    if !(zone.url.starts_with("https://") || zone.url.starts_with("http://")) {
        return Err(ConnectorError::Internal(format!(
            "GET {url}: the zone URL {:?} is not an http(s) URL",
            zone.url
        )));
    }
    log::debug(&format!(
        "Autotask zone of {}: {}",
        settings.username, zone.url
    ));
    Ok(version_root(&zone.url))
}

/// The wait (ms) before this connector may send again, or `None` while
/// `used` requests of the window's `limit` are below `share` of it. The
/// window is `timeframe_minutes` long and rolling; assuming its requests
/// were spread evenly, they age out at `used / timeframe` a minute, so
/// getting back under the share takes `(used − allowed + 1)` of those,
/// at least [`MIN_BUDGET_WAIT_MS`] and at most the window.
pub fn budget_wait(limit: u64, used: u64, timeframe_minutes: u64, share: Decimal) -> Option<u64> {
    let allowed: u64 = (Decimal::from(limit) * share)
        .floor()
        .try_into()
        .unwrap_or(0);
    if used < allowed {
        return None;
    }
    let window_ms = timeframe_minutes.max(1).saturating_mul(60_000);
    let over = used - allowed + 1;
    Some(
        (window_ms.saturating_mul(over) / used.max(1))
            .clamp(MIN_BUDGET_WAIT_MS, window_ms.max(MIN_BUDGET_WAIT_MS)),
    )
}

/// A record id the host passed back, as a number.
///
/// # Errors
/// `not-found` when it is not an Autotask id.
pub fn record_id(what: &str, id: &str) -> Result<i64, ConnectorError> {
    id.trim()
        .parse()
        .map_err(|_| ConnectorError::NotFound(format!("{id:?} is not an Autotask {what} id")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_share_is_kept_with_a_proportional_wait() {
        let half = Decimal::new(5, 1);
        // Below the share: go on.
        assert_eq!(budget_wait(10_000, 4_999, 60, half), None);
        // At the share: the first request ages out after about a minute.
        assert_eq!(budget_wait(10_000, 5_000, 60, half), Some(60_000));
        // Far over (other integrations used it): a proportional wait,
        // never longer than the window.
        assert_eq!(budget_wait(10_000, 7_500, 60, half), Some(1_200_480));
        assert_eq!(budget_wait(100, 100, 60, half), Some(1_836_000));
        assert_eq!(budget_wait(40, 20, 60, Decimal::ONE), None);
        assert_eq!(budget_wait(40, 40, 60, Decimal::ONE), Some(90_000));
    }

    #[test]
    fn only_server_faults_are_retryable() {
        let refusal = |text: &str| serde_json::json!({ "errors": [text] }).to_string();
        for (status, body, expected) in [
            (
                500,
                refusal(
                    "Unable to make changes as it would result in the deletion/modification of an already approved and posted contract period",
                ),
                false,
            ),
            (
                500,
                refusal("Input string '2.5' is not a valid integer. Path 'unitChange'."),
                false,
            ),
            (
                500,
                r#"{"message": "An unexpected error occurred."}"#.to_owned(),
                true,
            ),
            (500, r#"{"errors": []}"#.to_owned(), true),
            (500, "<html>Server Error</html>".to_owned(), true),
            (503, refusal("Service unavailable"), true),
            (400, refusal("contractID is required."), false),
            (404, String::new(), false),
            (408, String::new(), true),
        ] {
            assert_eq!(
                retryable(status, body.as_bytes()),
                expected,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn zone_urls_get_the_version_root() {
        for url in [
            "https://webservices5.autotask.net/atservicesrest",
            "https://webservices5.autotask.net/atservicesrest/",
            "https://webservices5.autotask.net/ATServicesRest/v1.0/",
        ] {
            assert!(
                version_root(url)
                    .to_ascii_lowercase()
                    .ends_with("/atservicesrest/v1.0"),
                "{url}"
            );
        }
    }
}
