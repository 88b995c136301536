//! The HaloPSA client: settings, the client-credentials token and paged
//! lists.
//!
//! - **Token**: `POST {base_url}/auth/token?tenant={tenant}` with the form
//!   `grant_type=client_credentials&client_id=…&client_secret=…&scope=…`
//!   (the secret is written into the body by the host), cached for the life
//!   of the instance and renewed before it expires; a token refused with 401
//!   is fetched again once. The host lets a dry run send this POST too (its
//!   body carries a secret: a token exchange), so a plan works in a fresh
//!   session.
//! - **Lists**: `GET {base_url}/api/{Resource}?pageinate=true&page_size=N&page_no=K`
//!   (1-based) answer `{"record_count": n, "<key>": [...]}`; `order=id`
//!   keeps pages stable.

use serde::de::DeserializeOwned;
use trueup_connector::http::{Part, Secret, TokenCache};
use trueup_connector::paging::with_query;
use trueup_connector::prelude::*;
use trueup_connector::{config, oauth};

/// The largest page this connector asks for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The most lines one `list-services` call may be configured to return.
pub const MAX_LINES_PER_CALL: u32 = 5000;
/// The most requests one `list-services` call may be configured to make.
pub const MAX_REQUESTS_PER_CALL: u32 = 400;

thread_local! {
    /// The bearer token, for the life of the instance (one sync).
    static TOKEN: TokenCache = const { TokenCache::new() };
}

/// The settings of `plugin.toml`, read and checked.
pub struct Settings {
    /// The instance address, without a trailing slash.
    pub base: String,
    /// The tenant, for hosted instances.
    pub tenant: Option<String>,
    /// The OAuth client id.
    pub client_id: String,
    /// The scope asked for.
    pub scope: String,
    /// `page_size` of list requests.
    pub page_size: u32,
    /// Lines per `list-services` call.
    pub lines_per_call: u32,
    /// Requests per `list-services` call.
    pub requests_per_call: u32,
}

fn bounded(key: &str, value: u32, max: u32) -> Result<u32, ConnectorError> {
    if value == 0 || value > max {
        return Err(ConnectorError::InvalidConfig(format!(
            "config key `{key}` is {value}; it must be between 1 and {max}"
        )));
    }
    Ok(value)
}

fn settings() -> Result<Settings, ConnectorError> {
    Ok(Settings {
        base: config::base_url("base_url")?,
        tenant: config::get("tenant").map(|t| t.trim().to_owned()),
        client_id: config::require("client_id")?,
        scope: config::get_or("scope", "all"),
        page_size: bounded(
            "page_size",
            config::parse_or("page_size", 500)?,
            MAX_PAGE_SIZE,
        )?,
        lines_per_call: bounded(
            "lines_per_call",
            config::parse_or("lines_per_call", 1000)?,
            MAX_LINES_PER_CALL,
        )?,
        requests_per_call: bounded(
            "requests_per_call",
            config::parse_or("requests_per_call", 100)?,
            MAX_REQUESTS_PER_CALL,
        )?,
    })
}

/// One list page: `record_count` and the records under the resource's key.
pub struct ListPage<T> {
    /// Records matching the query, on every page.
    pub record_count: u64,
    /// This page's records.
    pub items: Vec<T>,
}

/// Settings and the client secret, for one export call.
pub struct Client {
    /// The settings.
    pub settings: Settings,
    secret: Secret,
}

impl Client {
    /// Reads the settings and looks up the secret.
    ///
    /// # Errors
    /// `invalid-config` naming a missing or bad setting or secret.
    pub fn new() -> Result<Self, ConnectorError> {
        Ok(Self {
            settings: settings()?,
            secret: Secret::get("client_secret")?,
        })
    }

    /// `{base_url}/api` + `path` (which starts with `/`).
    pub fn api(&self, path: &str) -> String {
        format!("{}/api{path}", self.settings.base)
    }

    fn fetch_token(&self) -> Result<(String, i64), ConnectorError> {
        let mut url = format!("{}/auth/token", self.settings.base);
        if let Some(tenant) = &self.settings.tenant {
            url = with_query(&url, &[("tenant", tenant)]);
        }
        let response = Request::post(url)
            .header("accept", "application/json")
            .form(&[
                ("grant_type", Part::Text("client_credentials")),
                ("client_id", Part::Text(&self.settings.client_id)),
                ("client_secret", Part::Secret(&self.secret)),
                ("scope", Part::Text(&self.settings.scope)),
            ])
            .send()?;
        oauth::token_from_response(response)
    }

    /// A GET of `url` with the bearer token (fetched again once if refused),
    /// its status mapped.
    ///
    /// # Errors
    /// What the token request or the GET return.
    pub fn get(&self, url: &str) -> Result<Response, ConnectorError> {
        TOKEN
            .with(|cache| {
                cache.send(
                    || self.fetch_token(),
                    |token| {
                        Request::get(url)
                            .bearer(token)
                            .header("accept", "application/json")
                    },
                )
            })?
            .ok()
    }

    /// Sends a prepared request (a step of a write or its plan) with the
    /// bearer token, fetched first when this instance holds none (also
    /// while planning). A 401 forgets the token, so the next call fetches
    /// a new one.
    ///
    /// # Errors
    /// What the token request or the request return.
    pub fn send<'a>(&'a self, request: Request<'a>) -> Result<Response, ConnectorError> {
        let token = TOKEN.with(|cache| cache.get_or_fetch(|| self.fetch_token()))?;
        let response = request
            .bearer(&token)
            .header("accept", "application/json")
            .send()?;
        if response.status == 401 {
            TOKEN.with(TokenCache::clear);
        }
        response.ok()
    }

    /// `url` with Halo's paging parameters for page `page` (1-based) of
    /// `size` records.
    pub fn paged(url: &str, page: u32, size: u32) -> String {
        with_query(
            url,
            &[
                ("pageinate", "true"),
                ("page_size", &size.to_string()),
                ("page_no", &page.to_string()),
            ],
        )
    }
}

/// A list answer: `record_count` and the records under the resource's key
/// (`clients`, `contracts`, `invoices` or `items`).
#[derive(serde::Deserialize)]
struct Envelope<T> {
    record_count: u64,
    #[serde(
        alias = "clients",
        alias = "contracts",
        alias = "invoices",
        alias = "items"
    )]
    records: Vec<T>,
}

/// Decodes a list answer.
///
/// # Errors
/// `internal` naming the request when the body is not such a list.
pub fn list<T: DeserializeOwned>(response: &Response) -> Result<ListPage<T>, ConnectorError> {
    let body: Envelope<T> = response.json()?;
    Ok(ListPage {
        record_count: body.record_count,
        items: body.records,
    })
}

/// A record id the host passed back, as a number.
///
/// # Errors
/// `not-found` when it is not a Halo id.
pub fn record_id(what: &str, id: &str) -> Result<i64, ConnectorError> {
    id.trim()
        .parse()
        .map_err(|_| ConnectorError::NotFound(format!("{id:?} is not a HaloPSA {what} id")))
}
