//! Trueup vendor connector for Microsoft 365 sold through CSP.
//!
//! - Accounts are the partner's customers from Partner Center
//!   (`GET https://api.partnercenter.microsoft.com/v1/customers`,
//!   continuation-token paging): see [`partner_center`].
//! - Usage of one customer is its tenant's Microsoft Graph licences
//!   (`GET https://graph.microsoft.com/v1.0/subscribedSkus`, read with a
//!   token issued in the customer's tenant, which GDAP allows): one record
//!   per SKU with quantity = `consumedUnits`. See [`graph`].
//! - Each SKU is joined with the customer's Partner Center subscriptions
//!   (`GET /v1/customers/{tenant}/subscriptions`) for the term, the
//!   commitment end and the refundable seats: see [`join`] for how an offer
//!   is matched to a SKU.
//! - Auth: the Microsoft identity platform's client-credentials grant
//!   (`POST https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`,
//!   form body, the client secret placed by the host), one token for
//!   Partner Center (issued in the partner's tenant) and one per customer
//!   tenant for Graph, all cached for the life of the instance.
//!
//! Usage is listed one account at a time: Graph has no cross-tenant call.

mod graph;
mod join;
mod partner_center;

use std::cell::Cell;

use trueup_connector::http::{Part, Secret, TokenCache, TokenCaches};
use trueup_connector::paging::percent_encode;
use trueup_connector::prelude::*;
use trueup_connector::vendor::{self, AccountPage, UsagePage, UsageRequest};
use trueup_connector::{clock, config, oauth, progress};

/// The id in `plugin.toml`.
const PLUGIN_ID: &str = "trueup.microsoft365";

/// The scope of a Microsoft Graph token (the resource, whatever host Graph
/// is reached at).
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The scope of a Partner Center token.
const PARTNER_CENTER_SCOPE: &str = "https://api.partnercenter.microsoft.com/.default";

/// The largest customers page Partner Center serves.
pub const MAX_CUSTOMERS_PAGE_SIZE: u32 = 500;

thread_local! {
    /// The Partner Center token (partner tenant), for the life of the
    /// instance (one sync).
    static PARTNER_TOKEN: TokenCache = const { TokenCache::new() };
    /// Graph tokens, one per customer tenant.
    static GRAPH_TOKENS: TokenCaches = const { TokenCaches::new() };
    /// Requests sent by this instance, for `MS-RequestId`.
    static REQUEST_SERIAL: Cell<u64> = const { Cell::new(0) };
    /// This instance's `MS-CorrelationId`, made at its first request.
    static CORRELATION_ID: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// The settings of `plugin.toml`, read and checked.
pub(crate) struct Settings {
    login: String,
    pub(crate) graph: String,
    pub(crate) partner_center: String,
    client_id: String,
    partner_tenant: String,
    pub(crate) customers_page_size: u32,
}

fn settings() -> Result<Settings, ConnectorError> {
    let customers_page_size = config::parse_in(
        "customers_page_size",
        MAX_CUSTOMERS_PAGE_SIZE,
        1..=MAX_CUSTOMERS_PAGE_SIZE,
    )?;
    Ok(Settings {
        login: config::base_url("login_base_url")?,
        graph: config::base_url("graph_base_url")?,
        partner_center: config::base_url("partner_center_base_url")?,
        client_id: config::require("client_id")?,
        partner_tenant: config::require("partner_tenant_id")?,
        customers_page_size,
    })
}

/// A GUID-shaped identifier from two 64-bit values.
fn guid(hi: u64, lo: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (hi >> 32) as u32,
        (hi >> 16) as u16,
        hi & 0x0fff,
        ((lo >> 48) & 0x3fff) | 0x8000,
        lo & 0xffff_ffff_ffff
    )
}

/// SplitMix64: spreads a seed over 64 bits, for request ids that differ
/// between instances and calls (the guest has no random source).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `(MS-RequestId, MS-CorrelationId)` for the next Partner Center request:
/// a new request id each time, one correlation id per instance (one sync),
/// so Microsoft support can follow a sync through their logs.
fn request_ids() -> (String, String) {
    let now = clock::now_ms() as u64;
    let serial = REQUEST_SERIAL.with(|s| {
        s.set(s.get() + 1);
        s.get()
    });
    let correlation = CORRELATION_ID.with(|c| match c.get() {
        Some(ids) => ids,
        None => {
            let ids = (mix(now), mix(now ^ 0x5151));
            c.set(Some(ids));
            ids
        }
    });
    (
        guid(mix(now ^ serial), mix(serial ^ correlation.0)),
        guid(correlation.0, correlation.1),
    )
}

/// The client-credentials grant at `{login}/{tenant}/oauth2/v2.0/token`.
fn fetch_token(
    settings: &Settings,
    tenant: &str,
    scope: &str,
) -> Result<(String, i64), ConnectorError> {
    let secret = Secret::get("client_secret")?;
    let response = Request::post(format!(
        "{}/{}/oauth2/v2.0/token",
        settings.login,
        percent_encode(tenant)
    ))
    .header("accept", "application/json")
    .form(&[
        ("client_id", Part::Text(&settings.client_id)),
        ("scope", Part::Text(scope)),
        ("client_secret", Part::Secret(&secret)),
        ("grant_type", Part::Text("client_credentials")),
    ])
    .send()?;
    oauth::token_from_response(response)
}

/// A Partner Center GET with the partner's token and the `MS-*` headers;
/// `continuation` is sent as `MS-ContinuationToken`. The status is mapped
/// to a [`ConnectorError`].
pub(crate) fn partner_center_get(
    settings: &Settings,
    url: &str,
    continuation: Option<&str>,
) -> Result<Response, ConnectorError> {
    PARTNER_TOKEN
        .with(|cache| {
            cache.send(
                || fetch_token(settings, &settings.partner_tenant, PARTNER_CENTER_SCOPE),
                |token| {
                    let (request_id, correlation_id) = request_ids();
                    let request = Request::get(url)
                        .bearer(token)
                        .header("accept", "application/json")
                        .header("ms-requestid", request_id)
                        .header("ms-correlationid", correlation_id);
                    match continuation {
                        Some(c) => request.header("ms-continuationtoken", c),
                        None => request,
                    }
                },
            )
        })?
        .ok()
}

/// A Graph GET with a token issued in `tenant`. The status is mapped to a
/// [`ConnectorError`].
pub(crate) fn graph_get(
    settings: &Settings,
    tenant: &str,
    url: &str,
) -> Result<Response, ConnectorError> {
    GRAPH_TOKENS.with(|caches| {
        caches
            .cache(tenant)
            .get(|| fetch_token(settings, tenant, GRAPH_SCOPE), url)
    })
}

struct Microsoft365;

impl vendor::Guest for Microsoft365 {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: PLUGIN_ID.into(),
            name: "Microsoft 365 (Partner Center + Graph)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![],
        }
    }

    fn list_accounts(cursor: Option<String>) -> Result<AccountPage, ConnectorError> {
        let settings = settings()?;
        let page = partner_center::customers(&settings, cursor.as_deref())?;
        progress::report(page.done, None, &format!("customers: {}", page.done));
        Ok(AccountPage {
            items: page.items,
            next_cursor: page.next_cursor,
        })
    }

    fn list_usage(request: UsageRequest) -> Result<UsagePage, ConnectorError> {
        let tenant = request.account_id.ok_or_else(|| {
            ConnectorError::InvalidConfig(
                "Microsoft 365 usage is read one customer tenant at a time (Graph has no cross-tenant call); pass an account id".into(),
            )
        })?;
        let settings = settings()?;
        let skus = graph::subscribed_skus(&settings, &tenant)?;
        let subscriptions = partner_center::subscriptions(&settings, &tenant)?;
        let items = skus
            .into_iter()
            .map(|sku| join::usage_record(&tenant, sku, &subscriptions))
            .collect::<Result<Vec<_>, _>>()?;
        progress::report(
            items.len() as u64,
            Some(items.len() as u64),
            &format!("tenant {tenant}: {} SKUs", items.len()),
        );
        Ok(trueup_connector::usage::page(&items, None))
    }
}

trueup_connector::export_vendor!(Microsoft365);
