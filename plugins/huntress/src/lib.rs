//! Trueup vendor connector for the Huntress API (`https://api.huntress.io/v1`).
//!
//! - Accounts are organisations: `GET /organizations?limit=&page=` or
//!   `?limit=&page_token=`.
//! - Usage is one record per organisation, quantity = `agents_count`
//!   (SKU [`SKU_ID`], unit `agent`). For one organisation it comes from
//!   `GET /organizations/{id}`, whose `edr` block adds the unresponsive and
//!   isolated agent counts as attributes; for every organisation at once
//!   (`usage-all-accounts`) from the organisation list, one request per
//!   500 organisations (Huntress allows 60 requests a minute).
//! - Auth: `Authorization: Basic base64(API_KEY:API_SECRET)`, computed by the
//!   host so the secret never enters the guest.
//!
//! Paging: Huntress has answered in two styles. Page numbers (`page`,
//! 1-based, `pagination.next_page`) and page tokens (`page_token`,
//! `pagination.next_page_token`); a page-number answer may carry a token
//! too. The connector starts with `page=1` and follows a token whenever the
//! answer has one, else the next page number. A token that comes back
//! unchanged, or a page number that does not grow, is reported, never
//! followed.

use serde::{Deserialize, Serialize};
use trueup_connector::http::{Part, Secret};
use trueup_connector::paging::{
    Cursor, percent_encode, require_increase, require_new_token, with_query,
};
use trueup_connector::prelude::*;
use trueup_connector::usage::{self, UsageRecord};
use trueup_connector::vendor::{self, Account, AccountPage, UsagePage, UsageRequest};
use trueup_connector::{config, progress, values};

/// The id in `plugin.toml`.
const PLUGIN_ID: &str = "trueup.huntress";

/// The SKU of every usage record: managed EDR agents.
pub const SKU_ID: &str = "huntress-edr-agent";
/// Its display name.
const SKU_NAME: &str = "Huntress Managed EDR";
/// The unit of `agents_count`.
const UNIT: &str = "agent";

/// Huntress's largest `limit`.
pub const MAX_PAGE_SIZE: u32 = 500;

struct Settings {
    base: String,
    api_key: String,
    page_size: u32,
}

fn settings() -> Result<Settings, ConnectorError> {
    let page_size = config::parse_in("page_size", MAX_PAGE_SIZE, 1..=MAX_PAGE_SIZE)?;
    Ok(Settings {
        base: config::base_url("base_url")?,
        api_key: config::require("api_key")?,
        page_size,
    })
}

/// A GET with the key pair, its status mapped to a [`ConnectorError`].
fn get(settings: &Settings, url: &str) -> Result<Response, ConnectorError> {
    let secret = Secret::get("api_secret")?;
    Request::get(url)
        .basic_auth(&[Part::Text(&settings.api_key)], &[Part::Secret(&secret)])
        .header("accept", "application/json")
        .send()?
        .ok()
}

/// An organisation, as listed and as read alone. Unknown fields are
/// ignored.
#[derive(Deserialize)]
struct Organization {
    id: u64,
    name: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    agents_count: Option<u64>,
    #[serde(default)]
    microsoft_365_tenant_id: Option<String>,
    #[serde(default)]
    edr: Option<Edr>,
}

/// The `edr` block of `GET /organizations/{id}`.
#[derive(Deserialize)]
struct Edr {
    #[serde(default)]
    agents_count: Option<u64>,
    #[serde(default)]
    unresponsive_agents_count: Option<u64>,
    #[serde(default)]
    isolated_agents_count: Option<u64>,
}

#[derive(Deserialize)]
struct OrganizationsPage {
    organizations: Vec<Organization>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<u64>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct OneOrganization {
    organization: Organization,
}

/// Where the organisation listing stands: a page token when Huntress gave
/// one, else a page number.
#[derive(Serialize, Deserialize)]
struct ListCursor {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    page: Option<u64>,
    done: u64,
}

/// One page of organisations and the cursor of the next.
fn list_organizations(
    settings: &Settings,
    cursor: Option<&str>,
) -> Result<(Vec<Organization>, Option<String>, u64), ConnectorError> {
    let state = Cursor::decode::<ListCursor>(cursor)?.unwrap_or(ListCursor {
        token: None,
        page: Some(1),
        done: 0,
    });
    let limit = settings.page_size.to_string();
    let position = match (&state.token, state.page) {
        (Some(token), _) => ("page_token", token.clone()),
        (None, page) => ("page", page.unwrap_or(1).to_string()),
    };
    let url = with_query(
        &format!("{}/organizations", settings.base),
        &[("limit", &limit), (position.0, &position.1)],
    );
    let request = format!("GET {url}");
    let body: OrganizationsPage = get(settings, &url)?.json()?;
    let done = state.done + body.organizations.len() as u64;
    let pagination = body.pagination.unwrap_or(Pagination {
        next_page: None,
        next_page_token: None,
    });
    let next = match (
        pagination.next_page_token.filter(|t| !t.is_empty()),
        pagination.next_page,
    ) {
        (Some(token), _) => {
            require_new_token(&request, state.token.as_deref(), &token)?;
            Some(ListCursor {
                token: Some(token),
                page: None,
                done,
            })
        }
        (None, Some(next)) => {
            // After a token answer that switches to page numbers (no
            // current number), the number must at least be a real page.
            let current: u64 = state.page.unwrap_or_default();
            require_increase(&request, "page", current, next)?;
            Some(ListCursor {
                token: None,
                page: Some(next),
                done,
            })
        }
        (None, None) => None,
    };
    let next = if body.organizations.is_empty() {
        None
    } else {
        next
    };
    Ok((
        body.organizations,
        next.as_ref().map(Cursor::encode).transpose()?,
        done,
    ))
}

fn usage_record(org: Organization) -> Result<UsageRecord, ConnectorError> {
    let edr = org.edr.as_ref();
    let agents = org
        .agents_count
        .or_else(|| edr.and_then(|e| e.agents_count))
        .ok_or_else(|| {
            ConnectorError::Internal(format!(
                "Huntress organization {} ({}) has no agents_count",
                org.id, org.name
            ))
        })?;
    let mut attributes = Vec::new();
    if let Some(key) = org.key.filter(|k| !k.is_empty()) {
        attributes.push(("organization-key".to_owned(), key));
    }
    if let Some(edr) = edr {
        let counts = [
            ("edr-agents-count", edr.agents_count),
            ("unresponsive-agents-count", edr.unresponsive_agents_count),
            ("isolated-agents-count", edr.isolated_agents_count),
        ];
        for (key, value) in counts {
            if let Some(value) = value {
                attributes.push((key.to_owned(), value.to_string()));
            }
        }
    }
    Ok(UsageRecord {
        account_id: org.id.to_string(),
        sku_id: SKU_ID.to_owned(),
        sku_name: SKU_NAME.to_owned(),
        quantity: values::integer(i64::try_from(agents).map_err(|_| {
            ConnectorError::Internal(format!(
                "Huntress organization {}: agents_count {agents} is out of range",
                org.id
            ))
        })?),
        unit: UNIT.to_owned(),
        unit_cost: None,
        billing_term: None,
        commitment_end: None,
        attributes,
    })
}

struct Huntress;

impl vendor::Guest for Huntress {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: PLUGIN_ID.into(),
            name: "Huntress".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["usage-all-accounts".into()],
        }
    }

    fn list_accounts(cursor: Option<String>) -> Result<AccountPage, ConnectorError> {
        let settings = settings()?;
        let (organizations, next_cursor, done) = list_organizations(&settings, cursor.as_deref())?;
        progress::report(done, None, &format!("organizations: {done}"));
        let items = organizations
            .into_iter()
            .map(|org| {
                let mut attributes = Vec::new();
                if let Some(key) = org.key.filter(|k| !k.is_empty()) {
                    attributes.push(("organization-key".to_owned(), key));
                }
                if let Some(tenant) = org.microsoft_365_tenant_id.filter(|t| !t.is_empty()) {
                    attributes.push(("microsoft-365-tenant-id".to_owned(), tenant));
                }
                Account {
                    id: org.id.to_string(),
                    name: org.name,
                    domains: Vec::new(),
                    attributes,
                }
            })
            .collect();
        Ok(AccountPage { items, next_cursor })
    }

    fn list_usage(request: UsageRequest) -> Result<UsagePage, ConnectorError> {
        let settings = settings()?;
        match request.account_id.as_deref() {
            Some(id) => {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ConnectorError::NotFound(format!(
                        "{id:?} is not a Huntress organization id (they are numbers)"
                    )));
                }
                let url = format!("{}/organizations/{}", settings.base, percent_encode(id));
                let body: OneOrganization = get(&settings, &url)?.json()?;
                progress::report(1, Some(1), &format!("organization {id}"));
                Ok(usage::page(&[usage_record(body.organization)?], None))
            }
            None => {
                let (organizations, next_cursor, done) =
                    list_organizations(&settings, request.cursor.as_deref())?;
                progress::report(done, None, &format!("organizations: {done}"));
                usage::try_page(organizations.into_iter().map(usage_record), next_cursor)
            }
        }
    }
}

trueup_connector::export_vendor!(Huntress);
