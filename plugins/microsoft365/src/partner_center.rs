//! Partner Center REST API (`https://api.partnercenter.microsoft.com/v1`).
//!
//! - `GET /v1/customers?size=N` lists the partner's customers; a further
//!   page is `GET /v1/customers?size=N&seekOperation=Next` with the
//!   `MS-ContinuationToken` header given in `links.next.headers` of the
//!   previous page (also in its `continuationToken`). The last page has no
//!   `links.next`.
//! - `GET /v1/customers/{tenant}/subscriptions` lists one customer's
//!   subscriptions in one collection (no paging).
//!
//! Unknown fields are ignored everywhere.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_connector::ConnectorError;
use trueup_connector::paging::{Cursor, percent_encode, require_new_token, with_query};
use trueup_connector::vendor::Account;

use crate::{Settings, partner_center_get};

/// The continuation header of the customers list.
const CONTINUATION_HEADER: &str = "MS-ContinuationToken";

#[derive(Deserialize)]
struct Collection<T> {
    items: Vec<T>,
    #[serde(default)]
    links: Option<Links>,
    #[serde(default, rename = "continuationToken")]
    continuation_token: Option<String>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<Link>,
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    headers: Vec<LinkHeader>,
}

#[derive(Deserialize)]
struct LinkHeader {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Customer {
    id: String,
    #[serde(default)]
    company_profile: Option<CompanyProfile>,
    #[serde(default)]
    relationship_to_partner: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompanyProfile {
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    company_name: Option<String>,
}

/// Where the customer listing stands.
#[derive(Serialize, Deserialize)]
struct CustomersCursor {
    /// The `MS-ContinuationToken` of the next page.
    token: String,
    done: u64,
}

/// A page of accounts and where the listing stands.
pub(crate) struct CustomersPage {
    pub items: Vec<Account>,
    pub next_cursor: Option<String>,
    /// Customers listed so far, this page included.
    pub done: u64,
}

/// One page of customers as accounts (id = the customer's tenant id).
pub(crate) fn customers(
    settings: &Settings,
    cursor: Option<&str>,
) -> Result<CustomersPage, ConnectorError> {
    let state = Cursor::decode::<CustomersCursor>(cursor)?;
    let size = settings.customers_page_size.to_string();
    let mut params = vec![("size", size.as_str())];
    if state.is_some() {
        params.push(("seekOperation", "Next"));
    }
    let url = with_query(
        &format!("{}/v1/customers", settings.partner_center),
        &params,
    );
    let presented = state.as_ref().map(|s| s.token.as_str());
    let page: Collection<Customer> = partner_center_get(settings, &url, presented)?.json()?;
    let done = state.as_ref().map_or(0, |s| s.done) + page.items.len() as u64;
    let next_token = page.links.and_then(|l| l.next).map(|next| {
        next.headers
            .into_iter()
            .find(|h| h.key.eq_ignore_ascii_case(CONTINUATION_HEADER))
            .map(|h| h.value)
            .or(page.continuation_token)
    });
    let next_cursor = match next_token {
        None => None,
        Some(None) => {
            return Err(ConnectorError::Internal(format!(
                "GET {url}: the page has a links.next but no {CONTINUATION_HEADER} to follow it with"
            )));
        }
        Some(Some(token)) => {
            require_new_token(&format!("GET {url}"), presented, &token)?;
            Some(Cursor::encode(&CustomersCursor { token, done })?)
        }
    };
    let items = page
        .items
        .into_iter()
        .map(|customer| {
            let profile = customer.company_profile;
            let name = profile
                .as_ref()
                .and_then(|p| p.company_name.clone())
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| customer.id.clone());
            let domains = profile
                .and_then(|p| p.domain)
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .into_iter()
                .collect();
            let attributes = customer
                .relationship_to_partner
                .map(|r| ("relationship-to-partner".to_owned(), r))
                .into_iter()
                .collect();
            Account {
                id: customer.id,
                name,
                domains,
                attributes,
            }
        })
        .collect();
    Ok(CustomersPage {
        items,
        next_cursor,
        done,
    })
}

/// A Partner Center subscription.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Subscription {
    pub id: String,
    /// New commerce: `productId:skuId[:availabilityId]`; legacy: a GUID.
    #[serde(default)]
    pub offer_id: Option<String>,
    #[serde(default)]
    pub offer_name: Option<String>,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub quantity: Option<Decimal>,
    /// `none`, `active`, `pending`, `suspended`, `expired`, `disabled`,
    /// `deleted`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub billing_cycle: Option<String>,
    /// ISO-8601 duration of the term: `P1M`, `P1Y`, `P3Y`.
    #[serde(default)]
    pub term_duration: Option<String>,
    /// Inclusive for new commerce, exclusive for legacy offers.
    #[serde(default)]
    pub commitment_end_date: Option<String>,
    #[serde(default)]
    pub auto_renew_enabled: Option<bool>,
    #[serde(default)]
    pub refundable_quantity: Option<RefundableQuantity>,
    #[serde(default)]
    pub product_type: Option<ProductType>,
}

/// Seats that can still be reduced for a refund.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundableQuantity {
    #[serde(default)]
    pub total_quantity: Option<u64>,
    #[serde(default)]
    pub details: Vec<RefundDetail>,
}

/// One increase and the end of its refund window.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundDetail {
    #[serde(default)]
    pub quantity: u64,
    #[serde(default)]
    pub allowed_until_date_time: Option<String>,
}

/// `productType`, e.g. `{"id": "OnlineServicesNCE"}`.
#[derive(Deserialize)]
pub(crate) struct ProductType {
    #[serde(default)]
    pub id: Option<String>,
}

/// Every subscription of the customer `tenant`.
pub(crate) fn subscriptions(
    settings: &Settings,
    tenant: &str,
) -> Result<Vec<Subscription>, ConnectorError> {
    let url = format!(
        "{}/v1/customers/{}/subscriptions",
        settings.partner_center,
        percent_encode(tenant)
    );
    let collection: Collection<Subscription> = partner_center_get(settings, &url, None)?.json()?;
    Ok(collection.items)
}
