//! Microsoft Graph `GET /v1.0/subscribedSkus`: the licences of the tenant
//! the token was issued in (Graph URLs name no tenant). The answer is
//! `{"value": [...]}`; `@odata.nextLink`, should Graph ever page it, is
//! followed. The resource supports no `$filter`, so none is sent.
//!
//! Unknown fields are ignored; counts are read exactly as decimals.

use rust_decimal::Decimal;
use serde::Deserialize;
use trueup_connector::ConnectorError;
use trueup_connector::paging::require_new_token;

use crate::{Settings, graph_get};

/// Pages of `subscribedSkus` followed in one call; a tenant has tens of
/// SKUs, which Graph returns at once.
pub const MAX_SKU_PAGES: usize = 20;

#[derive(Deserialize)]
struct SkusPage {
    value: Vec<SubscribedSku>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// One `subscribedSku`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscribedSku {
    /// The SKU's GUID.
    #[serde(default)]
    pub sku_id: Option<String>,
    /// E.g. `SPB`, `O365_BUSINESS_PREMIUM`.
    pub sku_part_number: String,
    /// `User` or `Company`.
    #[serde(default)]
    pub applies_to: Option<String>,
    /// `Enabled`, `Warning`, `Suspended`, `Deleted`, `LockedOut`.
    #[serde(default)]
    pub capability_status: Option<String>,
    /// Licences assigned.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub consumed_units: Decimal,
    #[serde(default)]
    pub prepaid_units: Option<PrepaidUnits>,
    /// The commerce subscriptions behind the SKU.
    #[serde(default)]
    pub subscription_ids: Vec<String>,
}

/// `prepaidUnits`: licences bought, by state.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PrepaidUnits {
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub enabled: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub suspended: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub warning: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub locked_out: Option<Decimal>,
}

/// Every `subscribedSku` of `tenant`.
pub(crate) fn subscribed_skus(
    settings: &Settings,
    tenant: &str,
) -> Result<Vec<SubscribedSku>, ConnectorError> {
    let mut url = format!("{}/v1.0/subscribedSkus", settings.graph);
    let mut skus = Vec::new();
    for _ in 0..MAX_SKU_PAGES {
        let page: SkusPage = graph_get(settings, tenant, &url)?.json()?;
        skus.extend(page.value);
        match page.next_link {
            Some(next) => {
                require_new_token(&format!("GET {url}"), Some(&url), &next)?;
                url = next;
            }
            None => return Ok(skus),
        }
    }
    Err(ConnectorError::Internal(format!(
        "GET {url}: Graph is still paging subscribedSkus of tenant {tenant} after {MAX_SKU_PAGES} pages; stopped"
    )))
}
