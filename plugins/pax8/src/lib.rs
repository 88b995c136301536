//! Trueup vendor connector for the Pax8 Partner API (`https://api.pax8.com/v1`).
//!
//! - Accounts are companies: `GET /companies?page=&size=`.
//! - Usage is one record per subscription: `GET /subscriptions?companyId=`
//!   for one company, or `GET /subscriptions` for every company at once
//!   (`usage-all-accounts`), paged the same way.
//! - Auth: `POST /token` with the JSON body `{client_id, client_secret,
//!   audience, grant_type: "client_credentials"}`, the secret written into
//!   the body by the host ([`SecretEncoding::JsonString`]); the bearer token
//!   (one day) is cached for the life of the instance.
//!
//! Paging is 0-based: `{"content": [...], "page": {"size", "totalElements",
//! "totalPages", "number"}}`. The connector asks for page `n`, checks that
//! the answer is page `n` (a service that keeps answering another page
//! would otherwise be followed forever) and stops after `totalPages`.
//!
//! Amounts (`price`, `partnerCost`) and quantities are read exactly from the
//! JSON number text, never through a float.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_connector::http::{Part, Secret, SecretEncoding, TokenCache};
use trueup_connector::paging::{Cursor, not_advancing, with_query};
use trueup_connector::prelude::*;
use trueup_connector::usage::{self, UsageRecord};
use trueup_connector::vendor::{self, Account, AccountPage, UsagePage, UsageRequest};
use trueup_connector::{config, oauth, progress, values};

/// The id in `plugin.toml`.
const PLUGIN_ID: &str = "trueup.pax8";

/// Pax8's largest page.
pub const MAX_PAGE_SIZE: u32 = 200;

/// The unit of a subscription's quantity.
const UNIT: &str = "licence";

thread_local! {
    /// The bearer token, for the life of the instance (one sync).
    static TOKEN: TokenCache = const { TokenCache::new() };
}

struct Settings {
    base: String,
    audience: String,
    client_id: String,
    page_size: u32,
}

fn settings() -> Result<Settings, ConnectorError> {
    let page_size = config::parse_in("page_size", MAX_PAGE_SIZE, 1..=MAX_PAGE_SIZE)?;
    Ok(Settings {
        base: config::base_url("base_url")?,
        audience: config::get_or("audience", "https://api.pax8.com"),
        client_id: config::require("client_id")?,
        page_size,
    })
}

/// A JSON string literal (quoted and escaped) of `text`.
fn json_string(text: &str) -> Result<String, ConnectorError> {
    serde_json::to_string(text)
        .map_err(|e| ConnectorError::Internal(format!("encoding {text:?} as JSON: {e}")))
}

/// `POST /token` with the client-credentials JSON body.
fn fetch_token(settings: &Settings) -> Result<(String, i64), ConnectorError> {
    let secret = Secret::get("client_secret")?;
    let head = format!(
        r#"{{"client_id":{},"audience":{},"grant_type":"client_credentials","client_secret":""#,
        json_string(&settings.client_id)?,
        json_string(&settings.audience)?
    );
    let response = Request::post(format!("{}/token", settings.base))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body_parts(&[
            Part::Text(&head),
            Part::Encoded(&secret, SecretEncoding::JsonString),
            Part::Text(r#""}"#),
        ])
        .send()?;
    oauth::token_from_response(response)
}

/// An authorised GET, its status mapped to a [`ConnectorError`].
fn get(settings: &Settings, url: &str) -> Result<Response, ConnectorError> {
    TOKEN.with(|cache| cache.get(|| fetch_token(settings), url))
}

/// Pax8's list envelope.
#[derive(Deserialize)]
struct Paged<T> {
    content: Vec<T>,
    page: PageInfo,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    number: u32,
    total_pages: u32,
    #[serde(default)]
    total_elements: Option<u64>,
}

/// Where a listing stands: the next 0-based page and the records so far.
#[derive(Default, Serialize, Deserialize)]
struct PageCursor {
    page: u32,
    done: u64,
}

/// One page of a listing, read and checked.
struct Fetched<T> {
    items: Vec<T>,
    /// The cursor of the next page; `None` after the last.
    next_cursor: Option<String>,
    /// Records listed so far, this page included.
    done: u64,
    /// Records in the whole listing, when Pax8 says.
    total: Option<u64>,
}

/// Fetches the page of `path` (with `filters`) that `cursor` names, checks
/// it is the page asked for, and returns it with the cursor of the next.
fn fetch_page<T: for<'de> Deserialize<'de>>(
    settings: &Settings,
    path: &str,
    filters: &[(&str, &str)],
    cursor: Option<&str>,
) -> Result<Fetched<T>, ConnectorError> {
    let state = Cursor::decode::<PageCursor>(cursor)?.unwrap_or_default();
    let page = state.page.to_string();
    let size = settings.page_size.to_string();
    let mut params = filters.to_vec();
    params.push(("page", page.as_str()));
    params.push(("size", size.as_str()));
    let url = with_query(&format!("{}/{path}", settings.base), &params);
    let body: Paged<T> = get(settings, &url)?.json()?;
    if body.page.number != state.page {
        return Err(not_advancing(
            &format!("GET {url}"),
            &format!(
                "page number {} (page {} was asked for)",
                body.page.number, state.page
            ),
        ));
    }
    let done = state.done + body.content.len() as u64;
    let next = if !body.content.is_empty() && state.page + 1 < body.page.total_pages {
        Some(Cursor::encode(&PageCursor {
            page: state.page + 1,
            done,
        })?)
    } else {
        None
    };
    Ok(Fetched {
        items: body.content,
        next_cursor: next,
        done,
        total: body.page.total_elements,
    })
}

/// A company. Unknown fields are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Company {
    id: String,
    name: String,
    #[serde(default)]
    website: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    address: Option<Address>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    state_or_province: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

/// The bare lower-case host of a web address as companies write it
/// (`contoso.com`, `https://www.Contoso.com/about`), or `None` when there
/// is none.
fn domain_of(website: &str) -> Option<String> {
    let text = website.trim();
    let text = text.split_once("://").map_or(text, |(_, rest)| rest);
    let host = text
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let host = host
        .strip_prefix("www.")
        .unwrap_or(&host)
        .trim_end_matches('.');
    (host.contains('.') && !host.contains(char::is_whitespace)).then(|| host.to_owned())
}

fn account(company: Company) -> Account {
    let mut attributes = Vec::new();
    let mut push = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            attributes.push((key.to_owned(), value));
        }
    };
    push("status", company.status);
    push("external-id", company.external_id);
    if let Some(address) = company.address {
        push("city", address.city);
        push("state-or-province", address.state_or_province);
        push("country", address.country);
    }
    Account {
        id: company.id,
        name: company.name,
        domains: company
            .website
            .as_deref()
            .and_then(domain_of)
            .into_iter()
            .collect(),
        attributes,
    }
}

/// A subscription. Unknown fields are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    id: String,
    company_id: String,
    product_id: String,
    #[serde(default)]
    product_name: Option<String>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    quantity: Decimal,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    billing_term: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    partner_cost: Option<Decimal>,
    #[serde(default)]
    currency_code: Option<String>,
    #[serde(default)]
    vendor_subscription_id: Option<String>,
    #[serde(default)]
    commitment_term: Option<CommitmentTerm>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitmentTerm {
    #[serde(default)]
    term: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
}

/// `YYYY-MM-DD` of an ISO date or date-time as Pax8 wrote it.
fn iso_day(text: &str) -> Result<String, ConnectorError> {
    values::date_from_iso(text).map(|d| values::date_to_iso(&d))
}

fn usage_record(s: Subscription) -> Result<UsageRecord, ConnectorError> {
    let context = |e: ConnectorError| match e {
        ConnectorError::Internal(message) => {
            ConnectorError::Internal(format!("Pax8 subscription {}: {message}", s.id))
        }
        other => other,
    };
    let mut attributes = vec![("subscription-id".to_owned(), s.id.clone())];
    if let Some(status) = &s.status {
        attributes.push(("status".to_owned(), status.clone()));
    }
    if let Some(id) = s.vendor_subscription_id.as_ref().filter(|v| !v.is_empty()) {
        attributes.push(("vendor-subscription-id".to_owned(), id.clone()));
    }
    if let Some(price) = s.price {
        attributes.push(("price".to_owned(), price.to_string()));
    }
    if let Some(currency) = &s.currency_code {
        attributes.push(("currency".to_owned(), currency.clone()));
    }
    if let Some(start) = s.start_date.as_deref().filter(|d| !d.is_empty()) {
        attributes.push(("start-date".to_owned(), iso_day(start).map_err(context)?));
    }
    if let Some(end) = s.end_date.as_deref().filter(|d| !d.is_empty()) {
        attributes.push(("end-date".to_owned(), iso_day(end).map_err(context)?));
    }
    let commitment_end = match &s.commitment_term {
        Some(term) => {
            if let Some(name) = &term.term {
                attributes.push(("commitment-term".to_owned(), name.clone()));
            }
            values::opt_date(term.end_date.as_deref()).map_err(context)?
        }
        None => None,
    };
    Ok(UsageRecord {
        sku_name: s
            .product_name
            .clone()
            .unwrap_or_else(|| s.product_id.clone()),
        quantity: values::decimal(s.quantity).map_err(context)?,
        unit_cost: s
            .partner_cost
            .map(values::decimal)
            .transpose()
            .map_err(context)?,
        account_id: s.company_id,
        sku_id: s.product_id,
        unit: UNIT.to_owned(),
        billing_term: s.billing_term,
        commitment_end,
        attributes,
    })
}

struct Pax8;

impl vendor::Guest for Pax8 {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: PLUGIN_ID.into(),
            name: "Pax8".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["usage-all-accounts".into()],
        }
    }

    fn list_accounts(cursor: Option<String>) -> Result<AccountPage, ConnectorError> {
        let settings = settings()?;
        let page = fetch_page::<Company>(&settings, "companies", &[], cursor.as_deref())?;
        progress::report(page.done, page.total, &format!("companies: {}", page.done));
        Ok(AccountPage {
            items: page.items.into_iter().map(account).collect(),
            next_cursor: page.next_cursor,
        })
    }

    fn list_usage(request: UsageRequest) -> Result<UsagePage, ConnectorError> {
        let settings = settings()?;
        let filters: Vec<(&str, &str)> = request
            .account_id
            .as_deref()
            .map(|id| ("companyId", id))
            .into_iter()
            .collect();
        let page = fetch_page::<Subscription>(
            &settings,
            "subscriptions",
            &filters,
            request.cursor.as_deref(),
        )?;
        progress::report(
            page.done,
            page.total,
            &format!("subscriptions: {}", page.done),
        );
        let items = page
            .items
            .into_iter()
            // The filter asked for one company; never attribute another's
            // subscription to it should the service ignore the filter.
            .filter(|s| {
                request
                    .account_id
                    .as_deref()
                    .is_none_or(|id| s.company_id.eq_ignore_ascii_case(id))
            })
            .map(usage_record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(usage::page(&items, page.next_cursor))
    }
}

trueup_connector::export_vendor!(Pax8);

#[cfg(test)]
mod tests {
    use super::domain_of;

    #[test]
    fn websites_become_bare_domains() {
        assert_eq!(domain_of("contoso.com").as_deref(), Some("contoso.com"));
        assert_eq!(
            domain_of("https://www.Contoso.com/about?x=1").as_deref(),
            Some("contoso.com")
        );
        assert_eq!(
            domain_of("http://shop.contoso.co.uk:8080/").as_deref(),
            Some("shop.contoso.co.uk")
        );
        assert_eq!(domain_of(""), None);
        assert_eq!(domain_of("n/a"), None);
    }
}
