//! The ConnectWise REST client: settings, authentication and forward-only
//! paging.
//!
//! Every request carries
//! - `Authorization: Basic base64("{companyId}+{publicKey}:{privateKey}")`,
//!   computed by the host from the two secrets (the guest never sees them);
//! - `clientId: <GUID>`, the integration's id from developer.connectwise.com
//!   (ConnectWise answers 400 without it);
//! - `Accept: application/vnd.connectwise.com+json; version=<api_version>`.
//!
//! Lists use forward-only paging (`pagination-type: forward-only`): records
//! come in id order and the `Link: <…pageId=N>; rel="next"` header names the
//! last id served; the next page is asked for with that `pageId`.

use trueup_connector::config;
use trueup_connector::http::{Part, Secret};
use trueup_connector::paging::{link_rel, require_increase, with_query};
use trueup_connector::prelude::*;

/// The largest `pageSize` ConnectWise serves.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The most additions one `list-services` call may be configured to return.
pub const MAX_LINES_PER_CALL: u32 = 5000;
/// The most requests one `list-services` call may be configured to make;
/// below the host's per-call cap of 500.
pub const MAX_REQUESTS_PER_CALL: u32 = 400;

/// The settings of `plugin.toml`, read and checked.
pub struct Settings {
    /// The API root, without a trailing slash.
    pub base: String,
    /// The login company id.
    pub company_id: String,
    /// The integration's clientId.
    pub client_id: String,
    /// The `Accept` header.
    pub accept: String,
    /// `pageSize` of list requests.
    pub page_size: u32,
    /// Additions per `list-services` call.
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
    let version = config::get_or("api_version", "2025.1");
    Ok(Settings {
        base: config::base_url("base_url")?,
        company_id: config::require("company_id")?,
        client_id: config::require("client_id")?,
        accept: format!(
            "application/vnd.connectwise.com+json; version={}",
            version.trim()
        ),
        page_size: bounded(
            "page_size",
            config::parse_or("page_size", MAX_PAGE_SIZE)?,
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

/// Settings and the two key secrets, for one export call.
pub struct Client {
    /// The settings.
    pub settings: Settings,
    public_key: Secret,
    private_key: Secret,
}

impl Client {
    /// Reads the settings and looks up the secrets.
    ///
    /// # Errors
    /// [`ConnectorError::InvalidConfig`] naming a missing or bad setting or
    /// secret.
    pub fn new() -> Result<Self, ConnectorError> {
        Ok(Self {
            settings: settings()?,
            public_key: Secret::get("public_key")?,
            private_key: Secret::get("private_key")?,
        })
    }

    /// `base` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base)
    }

    /// `url` with `pageSize` and the other query `params`.
    pub fn list_url(&self, path: &str, params: &[(&str, &str)]) -> String {
        let size = self.settings.page_size.to_string();
        let mut all: Vec<(&str, &str)> = params.to_vec();
        all.push(("pageSize", &size));
        with_query(&self.url(path), &all)
    }

    /// Adds the credentials and ConnectWise's required headers, sends, and
    /// maps the status (401/403 auth, 404 not found, 429 rate limited with
    /// `Retry-After`, other errors upstream).
    ///
    /// # Errors
    /// As [`Request::send`] and [`Response::ok`].
    pub fn send<'a>(&'a self, request: Request<'a>) -> Result<Response, ConnectorError> {
        request
            .basic_auth(
                &[
                    Part::Text(&self.settings.company_id),
                    Part::Text("+"),
                    Part::Secret(&self.public_key),
                ],
                &[Part::Secret(&self.private_key)],
            )
            .header("clientId", self.settings.client_id.clone())
            .header("accept", self.settings.accept.clone())
            .send()?
            .ok()
    }

    /// A GET of `url`.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub fn get(&self, url: &str) -> Result<Response, ConnectorError> {
        self.send(Request::get(url))
    }

    /// One forward-only page of `url` (a list URL without `pageId`) after
    /// record id `after` (0 for the first page), and the `pageId` of the
    /// next page when the `Link` header names one.
    ///
    /// # Errors
    /// As [`Client::send`]; [`ConnectorError::Internal`] when the next
    /// page's `pageId` does not move past `after` (a paging loop) or the
    /// `next` link has no `pageId`.
    pub fn forward_page(
        &self,
        url: &str,
        after: u64,
    ) -> Result<(Response, Option<u64>), ConnectorError> {
        let url = if after == 0 {
            url.to_owned()
        } else {
            with_query(url, &[("pageId", &after.to_string())])
        };
        let response =
            self.send(Request::get(url.as_str()).header("pagination-type", "forward-only"))?;
        let next = match response.header("link").and_then(|l| link_rel(l, "next")) {
            None => None,
            Some(link) => {
                let next = page_id(&link).ok_or_else(|| {
                    ConnectorError::Internal(format!(
                        "GET {url}: the Link header's next page {link:?} has no pageId"
                    ))
                })?;
                require_increase(&format!("GET {url}"), "pageId", after, next)?;
                Some(next)
            }
        };
        Ok((response, next))
    }
}

/// The `pageId` query parameter of a `next` link.
fn page_id(link: &str) -> Option<u64> {
    let (_, query) = link.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.eq_ignore_ascii_case("pageId")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// A ConnectWise `conditions` string literal: double-quoted, with `"` and
/// `\` escaped.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A date as ConnectWise writes and filters them: `2025-01-01T00:00:00Z`.
pub fn cw_date(date: &Date) -> String {
    format!("{}T00:00:00Z", trueup_connector::values::date_to_iso(date))
}

/// A record id the host passed back (agreement or addition), as a number.
///
/// # Errors
/// [`ConnectorError::NotFound`] when it is not a ConnectWise id.
pub fn record_id(what: &str, id: &str) -> Result<u64, ConnectorError> {
    id.trim().parse().map_err(|_| {
        ConnectorError::NotFound(format!(
            "{id:?} is not a ConnectWise {what} id (a whole number)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_id_is_read_from_the_next_link() {
        assert_eq!(
            page_id("https://x/v4_6_release/apis/3.0/company/companies?pageSize=1000&pageId=1250"),
            Some(1250)
        );
        assert_eq!(page_id("https://x/a?page=2"), None);
    }

    #[test]
    fn condition_strings_are_escaped() {
        assert_eq!(quoted(r#"Say "hi" \ bye"#), r#""Say \"hi\" \\ bye""#);
    }
}
