//! The `vendor` export: what each call sends to NinjaOne (see the crate
//! docs for the API it mirrors).

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use trueup_connector::http::{Part, Secret, TokenCache};
use trueup_connector::paging::{Cursor, require_increase, with_query};
use trueup_connector::prelude::*;
use trueup_connector::usage::{UsagePageBuilder, UsageRef};
use trueup_connector::vendor::{self, Account, AccountPage, UsagePage, UsageRequest};
use trueup_connector::{config, log, oauth, progress, values};

use crate::devices::{self, DeviceRow};

/// The id in `plugin.toml`.
const PLUGIN_ID: &str = "trueup.ninjaone";

/// The largest `pageSize` asked for. NinjaOne publishes no maximum and may
/// serve fewer than asked (a server capping pages at 300 is answered with
/// 300-device pages), so a listing ends only at the documented end, an
/// empty page, never at a page shorter than `pageSize`: that read 300 of
/// 1,571 devices and reported success.
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// The most usage records one call returns. The host refuses pages of more
/// than 25,000 items; smaller pages keep each call's memory and the host's
/// lifting cost bounded.
pub const MAX_RECORDS_PER_CALL: u32 = 20_000;

thread_local! {
    /// The bearer token, for the life of the instance (one sync).
    static TOKEN: TokenCache = const { TokenCache::new() };
    /// The rest of a device page fetched by the previous call, when that
    /// page held more rows than one call returns. Only an optimisation: the
    /// cursor alone is enough to continue (a fresh instance refetches).
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// The settings of `plugin.toml`, read and checked.
struct Settings {
    base: String,
    client_id: String,
    scope: String,
    organizations_page_size: u32,
    devices_page_size: u32,
    records_per_call: u32,
    os_details: bool,
}

fn settings() -> Result<Settings, ConnectorError> {
    Ok(Settings {
        base: config::base_url("base_url")?,
        client_id: config::require("client_id")?,
        scope: config::get_or("scope", "monitoring"),
        organizations_page_size: config::parse_in(
            "organizations_page_size",
            1_000,
            1..=MAX_PAGE_SIZE,
        )?,
        devices_page_size: config::parse_in("devices_page_size", MAX_PAGE_SIZE, 1..=MAX_PAGE_SIZE)?,
        records_per_call: config::parse_in("records_per_call", 5_000, 1..=MAX_RECORDS_PER_CALL)?,
        os_details: config::parse_or("os_details", false)?,
    })
}

/// `POST /ws/oauth/token` with the client-credentials grant.
fn fetch_token(settings: &Settings) -> Result<(String, i64), ConnectorError> {
    let secret = Secret::get("client_secret")?;
    let response = Request::post(format!("{}/ws/oauth/token", settings.base))
        .header("accept", "application/json")
        .form(&[
            ("grant_type", Part::Text("client_credentials")),
            ("client_id", Part::Text(&settings.client_id)),
            ("client_secret", Part::Secret(&secret)),
            ("scope", Part::Text(&settings.scope)),
        ])
        .send()?;
    oauth::token_from_response(response)
}

/// An authorised GET, its status mapped to a [`ConnectorError`].
fn get(settings: &Settings, url: &str) -> Result<Response, ConnectorError> {
    TOKEN.with(|cache| cache.get(|| fetch_token(settings), url))
}

/// An organisation of `GET /api/v2/organizations`. Unknown fields are
/// ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Organization {
    id: u64,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    node_approval_mode: Option<String>,
}

/// Where the organisation listing stands: the last id served.
#[derive(Default, Serialize, Deserialize)]
struct AccountsCursor {
    after: u64,
    done: u64,
}

/// Where a device listing stands: the API page is the one after device id
/// `after`; `skip` rows of it were already returned.
#[derive(Default, Serialize, Deserialize)]
struct UsageCursor {
    after: u64,
    skip: usize,
    done: u64,
}

/// What identifies one API page of devices.
#[derive(Clone, PartialEq, Eq)]
struct PageKey {
    base: String,
    organization: Option<u64>,
    after: u64,
    page_size: u32,
    os_details: bool,
}

/// An API page with rows not returned yet.
struct Pending {
    key: PageKey,
    /// How many rows of the page were returned, counting from the
    /// cursor's page (what the next cursor's `skip` is).
    skip: usize,
    page: Loaded,
}

/// The rows of one API page; those from `start` on are still to be
/// returned. The rows stay where they are while a page is served over
/// several calls (no copy of the rest per call).
struct Loaded {
    rows: Vec<DeviceRow>,
    start: usize,
    /// The page's last device id (the next `after`).
    last_id: Option<u64>,
    /// Whether the page had rows, so another may follow (only an empty
    /// page ends a listing).
    more: bool,
}

fn take_pending(key: &PageKey, skip: usize) -> Option<Loaded> {
    PENDING.with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.take() {
            Some(p) if p.key == *key && p.skip == skip => Some(p.page),
            _ => None,
        }
    })
}

fn fetch_page(settings: &Settings, key: &PageKey, skip: usize) -> Result<Loaded, ConnectorError> {
    let path = if key.os_details {
        "devices-detailed"
    } else {
        "devices"
    };
    let page_size = key.page_size.to_string();
    let after = key.after.to_string();
    let filter = key.organization.map(|org| format!("org = {org}"));
    let mut params = vec![("pageSize", page_size.as_str())];
    if key.after > 0 {
        params.push(("after", after.as_str()));
    }
    if let Some(filter) = &filter {
        params.push(("df", filter.as_str()));
    }
    let url = with_query(&format!("{}/api/v2/{path}", settings.base), &params);
    let response = get(settings, &url)?;
    let mut rows = devices::parse_page(&response.body).map_err(|e| response.parse_error(&e))?;
    drop(response);
    let more = !rows.is_empty();
    let last_id = rows.last().map(|r| r.device_id);
    if let Some(last) = last_id {
        require_increase(&format!("GET {url}"), "last device id", key.after, last)?;
    }
    if let Some(org) = key.organization {
        // The filter asked for one organisation; never attribute another's
        // devices to it should the service ignore the filter.
        let account = org.to_string();
        let before = rows.len();
        rows.retain(|r| r.account_id == account);
        if rows.len() != before {
            log::warn(&format!(
                "GET {url}: {} devices of other organisations were ignored",
                before - rows.len()
            ));
        }
    }
    Ok(Loaded {
        start: skip.min(rows.len()),
        rows,
        last_id,
        more,
    })
}

/// The page of `rows`: one usage record per device, quantity 1. Texts go
/// into the page's string table once (the class names, account ids and
/// attribute keys repeat on every device).
fn usage_page(rows: &[DeviceRow], next_cursor: Option<String>) -> UsagePage {
    let mut page = UsagePageBuilder::with_capacity(rows.len());
    let one = values::integer(1);
    let mut attributes: Vec<(&str, &str)> = Vec::new();
    for row in rows {
        attributes.clear();
        attributes.extend(row.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        page.push_ref(UsageRef {
            account_id: &row.account_id,
            sku_id: &row.sku_id,
            sku_name: &row.sku_name,
            quantity: one,
            unit: devices::UNIT,
            unit_cost: None,
            billing_term: None,
            commitment_end: None,
            attributes: &attributes,
        });
    }
    page.finish(next_cursor)
}

struct NinjaOne;

impl vendor::Guest for NinjaOne {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: PLUGIN_ID.into(),
            name: "NinjaOne RMM".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["usage-all-accounts".into()],
        }
    }

    fn list_accounts(cursor: Option<String>) -> Result<AccountPage, ConnectorError> {
        let settings = settings()?;
        let state = Cursor::decode::<AccountsCursor>(cursor.as_deref())?.unwrap_or_default();
        let page_size = settings.organizations_page_size.to_string();
        let after = state.after.to_string();
        let mut params = vec![("pageSize", page_size.as_str())];
        if state.after > 0 {
            params.push(("after", after.as_str()));
        }
        let url = with_query(&format!("{}/api/v2/organizations", settings.base), &params);
        let organizations: Vec<Organization> = get(&settings, &url)?.json()?;
        let done = state.done + organizations.len() as u64;
        let next_cursor = match organizations.last() {
            Some(last) => {
                require_increase(
                    &format!("GET {url}"),
                    "last organization id",
                    state.after,
                    last.id,
                )?;
                // Only an empty page ends the listing: the service may
                // serve fewer than `pageSize` on any page.
                Some(Cursor::encode(&AccountsCursor {
                    after: last.id,
                    done,
                })?)
            }
            None => None,
        };
        progress::report(done, None, &format!("organizations: {done}"));
        let items = organizations
            .into_iter()
            .map(|o| {
                let mut attributes = Vec::new();
                if let Some(mode) = o.node_approval_mode {
                    attributes.push(("node-approval-mode".to_owned(), mode));
                }
                if let Some(description) = o.description.filter(|d| !d.trim().is_empty()) {
                    attributes.push(("description".to_owned(), description));
                }
                Account {
                    id: o.id.to_string(),
                    name: o.name,
                    domains: Vec::new(),
                    attributes,
                }
            })
            .collect();
        Ok(AccountPage { items, next_cursor })
    }

    fn list_usage(request: UsageRequest) -> Result<UsagePage, ConnectorError> {
        let settings = settings()?;
        let organization = request
            .account_id
            .as_deref()
            .map(|id| {
                id.trim().parse::<u64>().map_err(|_| {
                    ConnectorError::NotFound(format!(
                        "{id:?} is not a NinjaOne organization id (they are numbers)"
                    ))
                })
            })
            .transpose()?;
        let state = Cursor::decode::<UsageCursor>(request.cursor.as_deref())?.unwrap_or_default();
        let key = PageKey {
            base: settings.base.clone(),
            organization,
            after: state.after,
            page_size: settings.devices_page_size,
            os_details: settings.os_details,
        };
        let page = match take_pending(&key, state.skip) {
            Some(loaded) => loaded,
            None => fetch_page(&settings, &key, state.skip)?,
        };
        let served = (page.rows.len() - page.start).min(settings.records_per_call as usize);
        let end = page.start + served;
        let done = state.done + served as u64;
        let more_rows = end < page.rows.len();
        let next_cursor = if more_rows {
            Some(UsageCursor {
                after: state.after,
                skip: state.skip + served,
                done,
            })
        } else {
            match page.last_id {
                Some(after) if page.more => Some(UsageCursor {
                    after,
                    skip: 0,
                    done,
                }),
                _ => None,
            }
        };
        progress::report(done, None, &format!("devices: {done}"));
        let usage = usage_page(
            &page.rows[page.start..end],
            next_cursor.as_ref().map(Cursor::encode).transpose()?,
        );
        if more_rows {
            PENDING.with(|slot| {
                *slot.borrow_mut() = Some(Pending {
                    key,
                    skip: state.skip + served,
                    page: Loaded { start: end, ..page },
                });
            });
        }
        Ok(usage)
    }
}

trueup_connector::export_vendor!(NinjaOne);
