//! Trueup vendor connector for the Huntress API (`https://api.huntress.io/v1`).
//!
//! - Accounts are organisations: `GET /organizations?limit=&page=` or
//!   `?limit=&page_token=`.
//! - Usage is one record per organisation (SKU [`SKU_ID`], unit `agent`),
//!   quantity = the organisation's **billable** EDR agents,
//!   `actual_usages.edr.billable_agents_count` of `GET /organizations/{id}`
//!   (Huntress's published OpenAPI), not `agents_count`, which counts
//!   unresponsive agents too. The other counts (`agents_count`,
//!   `unresponsive_agents_count`, `isolated_agents_count`,
//!   `outdated_agents_count`) become attributes. The older shape, a
//!   top-level `edr` block without a billable count, is read too: then the
//!   quantity is its `agents_count` and the record says so
//!   (`quantity-source`). For every organisation at once
//!   (`usage-all-accounts`) the list gives the organisations,
//!   [`USAGE_ORGS_PER_CALL`] a call, and each with agents is read alone for
//!   its billable count (the list carries no usage block); an organisation
//!   with `agents_count` 0 bills 0 without a request. Huntress allows 60
//!   requests a minute, so a large account's usage takes minutes; 429s
//!   carry `Retry-After`.
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

/// Organisations per `list-usage` call over every account: each may need a
/// request of its own, and a call should stay short.
pub const USAGE_ORGS_PER_CALL: u32 = 50;

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
    /// The older shape: EDR counts in a top-level block.
    #[serde(default)]
    edr: Option<Edr>,
    /// The documented shape: `actual_usages.edr`.
    #[serde(default)]
    actual_usages: Option<ActualUsages>,
}

/// `actual_usages` of `GET /organizations/{id}`; its other products
/// (`sat`, `itdr`, `siem`) are not read.
#[derive(Deserialize)]
struct ActualUsages {
    #[serde(default)]
    edr: Option<Edr>,
}

/// EDR agent counts, in either shape.
#[derive(Deserialize)]
struct Edr {
    #[serde(default, deserialize_with = "opt_count")]
    billable_agents_count: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    agents_count: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    unresponsive_agents_count: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    isolated_agents_count: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    outdated_agents_count: Option<u64>,
}

/// A count sent as a number or a string; null as `None`.
fn opt_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    trueup_connector::tolerant::opt_text(d)?
        .map(|text| {
            text.parse::<u64>()
                .map_err(|_| serde::de::Error::custom(format!("expected a count, found {text:?}")))
        })
        .transpose()
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
    limit: u32,
) -> Result<(Vec<Organization>, Option<String>, u64), ConnectorError> {
    let state = Cursor::decode::<ListCursor>(cursor)?.unwrap_or(ListCursor {
        token: None,
        page: Some(1),
        done: 0,
    });
    let limit = limit.to_string();
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
    let documented = org.actual_usages.as_ref().and_then(|u| u.edr.as_ref());
    let edr = documented.or(org.edr.as_ref());
    let all_agents = org
        .agents_count
        .or_else(|| edr.and_then(|e| e.agents_count));
    let (agents, source) = match edr.and_then(|e| e.billable_agents_count) {
        Some(billable) => (billable, "actual_usages.edr.billable_agents_count"),
        None => (
            all_agents.ok_or_else(|| {
                ConnectorError::Internal(format!(
                    "Huntress organization {} ({}) has neither actual_usages.edr.billable_agents_count nor agents_count",
                    org.id, org.name
                ))
            })?,
            "agents_count (the answer has no billable count)",
        ),
    };
    let mut attributes = vec![("quantity-source".to_owned(), source.to_owned())];
    if let Some(key) = org.key.filter(|k| !k.is_empty()) {
        attributes.push(("organization-key".to_owned(), key));
    }
    if let Some(all) = all_agents {
        attributes.push(("agents-count".to_owned(), all.to_string()));
    }
    if let Some(edr) = edr {
        let counts = [
            ("edr-agents-count", edr.agents_count),
            ("unresponsive-agents-count", edr.unresponsive_agents_count),
            ("isolated-agents-count", edr.isolated_agents_count),
            ("outdated-agents-count", edr.outdated_agents_count),
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

/// `GET /organizations/{id}`.
fn read_organization(settings: &Settings, id: &str) -> Result<Organization, ConnectorError> {
    let url = format!("{}/organizations/{}", settings.base, percent_encode(id));
    let body: OneOrganization = get(settings, &url)?.json()?;
    Ok(body.organization)
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
        let (organizations, next_cursor, done) =
            list_organizations(&settings, cursor.as_deref(), settings.page_size)?;
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
                let organization = read_organization(&settings, id)?;
                progress::report(1, Some(1), &format!("organization {id}"));
                Ok(usage::page(&[usage_record(organization)?], None))
            }
            None => {
                let (organizations, next_cursor, done) = list_organizations(
                    &settings,
                    request.cursor.as_deref(),
                    settings.page_size.min(USAGE_ORGS_PER_CALL),
                )?;
                progress::report(done, None, &format!("organizations: {done}"));
                let detailed = organizations.into_iter().map(|org| {
                    // The list carries no usage block: read each
                    // organisation with agents alone for its billable count.
                    if org.actual_usages.is_some()
                        || org.edr.is_some()
                        || org.agents_count == Some(0)
                    {
                        Ok(org)
                    } else {
                        read_organization(&settings, &org.id.to_string())
                    }
                });
                usage::try_page(detailed.map(|org| org.and_then(usage_record)), next_cursor)
            }
        }
    }
}

trueup_connector::export_vendor!(Huntress);

#[cfg(test)]
mod tests {
    use super::*;

    fn quantity(org: serde_json::Value) -> (String, Vec<(String, String)>) {
        let org: Organization = serde_json::from_value(org).expect("organization JSON");
        let record = usage_record(org).expect("a record");
        (
            values::to_decimal(&record.quantity).to_string(),
            record.attributes,
        )
    }

    #[test]
    fn the_documented_billable_count_is_billed_and_the_others_are_attributes() {
        let (billed, attributes) = quantity(serde_json::json!({
            "id": 1, "name": "A", "agents_count": 12,
            "actual_usages": {"edr": {"billable_agents_count": 10, "unresponsive_agents_count": 2,
                                       "isolated_agents_count": "1", "outdated_agents_count": 0},
                              "sat": {"learners_count": 4}}
        }));
        assert_eq!(billed, "10");
        for (key, value) in [
            ("agents-count", "12"),
            ("unresponsive-agents-count", "2"),
            ("isolated-agents-count", "1"),
        ] {
            assert!(
                attributes.contains(&(key.to_owned(), value.to_owned())),
                "{key}: {attributes:?}"
            );
        }
        // The older shape has no billable count: its agents_count, said so.
        let (billed, attributes) = quantity(serde_json::json!({
            "id": 2, "name": "B", "edr": {"agents_count": 7, "unresponsive_agents_count": 1}
        }));
        assert_eq!(billed, "7");
        assert!(
            attributes
                .iter()
                .any(|(k, v)| k == "quantity-source" && v.starts_with("agents_count"))
        );
    }
}
