//! An example Trueup vendor connector.
//!
//! It reads a simple JSON feed:
//!
//! - `GET {base_url}/accounts?page=N&page_size=M` →
//!   `{"accounts":[{"id","name","domains":[...]}], "next_page": N|null}`
//! - `GET {base_url}/accounts/{id}/usage` →
//!   `{"usage":[{"sku","name","quantity","unit","unit_cost"?,"attributes"?}]}`
//!
//! with `Authorization: Bearer <api_key>`, where the key is a secret the
//! host places into the header: this code never sees it.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_connector::http::{Part, Secret};
use trueup_connector::paging::{Cursor, with_query};
use trueup_connector::prelude::*;
use trueup_connector::usage::{self, UsageRecord};
use trueup_connector::vendor::{self, Account, AccountPage, UsagePage, UsageRequest};
use trueup_connector::{config, log, values};

struct JsonFeed;

#[derive(Deserialize)]
struct AccountsResponse {
    accounts: Vec<FeedAccount>,
    next_page: Option<u32>,
}

#[derive(Deserialize)]
struct FeedAccount {
    id: String,
    name: String,
    #[serde(default)]
    domains: Vec<String>,
}

#[derive(Deserialize)]
struct UsageResponse {
    usage: Vec<FeedUsage>,
}

#[derive(Deserialize)]
struct FeedUsage {
    sku: String,
    name: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    quantity: Decimal,
    unit: String,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    unit_cost: Option<Decimal>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct AccountsCursor {
    page: u32,
}

fn get(url: String) -> Result<Response, ConnectorError> {
    let key = Secret::get("api_key")?;
    Request::get(url)
        .header_parts(
            "authorization",
            &[Part::Text("Bearer "), Part::Secret(&key)],
        )
        .header("accept", "application/json")
        .send()?
        .ok()
}

impl vendor::Guest for JsonFeed {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: "example.json-feed".into(),
            name: "JSON usage feed (example)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![],
        }
    }

    fn list_accounts(cursor: Option<String>) -> Result<AccountPage, ConnectorError> {
        let base = config::base_url("base_url")?;
        let page_size: u32 = config::parse_or("page_size", 100)?;
        let page = Cursor::decode::<AccountsCursor>(cursor.as_deref())?.map_or(1, |c| c.page);
        let url = with_query(
            &format!("{base}/accounts"),
            &[
                ("page", &page.to_string()),
                ("page_size", &page_size.to_string()),
            ],
        );
        let body: AccountsResponse = get(url)?.json()?;
        log::debug(&format!(
            "accounts page {page}: {} accounts",
            body.accounts.len()
        ));
        let next_cursor = match body.next_page {
            Some(next) if next > page => Some(Cursor::encode(&AccountsCursor { page: next })?),
            Some(next) => {
                return Err(ConnectorError::Internal(format!(
                    "the feed's next_page {next} does not advance past page {page}"
                )));
            }
            None => None,
        };
        Ok(AccountPage {
            items: body
                .accounts
                .into_iter()
                .map(|a| Account {
                    id: a.id,
                    name: a.name,
                    domains: a.domains.into_iter().map(|d| d.to_lowercase()).collect(),
                    attributes: vec![],
                })
                .collect(),
            next_cursor,
        })
    }

    fn list_usage(request: UsageRequest) -> Result<UsagePage, ConnectorError> {
        let account = request.account_id.ok_or_else(|| {
            ConnectorError::InvalidConfig("this connector lists usage one account at a time".into())
        })?;
        let base = config::base_url("base_url")?;
        let url = format!(
            "{base}/accounts/{}/usage",
            trueup_connector::paging::percent_encode(&account)
        );
        let body: UsageResponse = get(url)?.json()?;
        let items = body
            .usage
            .into_iter()
            .map(|u| {
                Ok(UsageRecord {
                    account_id: account.clone(),
                    sku_id: u.sku,
                    sku_name: u.name,
                    quantity: values::decimal(u.quantity)?,
                    unit: u.unit,
                    unit_cost: u.unit_cost.map(values::decimal).transpose()?,
                    billing_term: None,
                    commitment_end: None,
                    attributes: u.attributes.into_iter().collect(),
                })
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        Ok(usage::page(&items, None))
    }
}

trueup_connector::export_vendor!(JsonFeed);
