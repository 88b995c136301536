//! Adding a service to a contract: a `quantity-change` without a line
//! (approving "new revenue found"), shared by `plan-quantity-change` and
//! `apply-quantity-change` (see [`trueup_connector::plan`]). Paths are the
//! Autotask REST API v1.0's, under the zone's `…/atservicesrest/v1.0`;
//! every query is a GET `…/query?search=` (only GET may be sent while
//! planning).
//!
//! Autotask has no "add a line" call: posting a `ContractServiceAdjustment`
//! for a service that is not yet on the contract creates the
//! `ContractService` and its units from the effective date (Autotask's
//! documentation of the entity), so an add is one adjustment:
//!
//! 1. `GET /Services/query` with `name eq "…"`: the catalogue service, its
//!    `unitPrice` and `unitCost`;
//! 2. `GET /ContractServices/query` with `contractID` and `serviceID`: the
//!    service on the contract, if it is there already;
//! 3. when it is, `GET /ContractServiceUnits/query` (its unit records up to
//!    the effective date `e`): holding the new units on `e` is the change
//!    already made (an earlier attempt, or by hand), so nothing is written
//!    and the result says `changed = false`; holding other units is refused
//!    (409, not retryable: adding would bill it twice, the approval has to
//!    change that line after a re-sync); holding none (0) is topped up;
//! 4. `POST /ContractServiceAdjustments` with `unitChange` = the new units
//!    effective `e` (a new service also gets the catalogue price and cost
//!    as `adjustedUnitPrice` / `adjustedUnitCost`; an existing one keeps
//!    its own);
//! 5. the contract service and its unit records are read back (the queries
//!    of steps 2 and 3) and must hold the new units on `e`.
//!
//! Units are whole numbers: a decimal quantity is refused before any
//! request (see [`crate::write::whole_units`]).

use serde_json::json;
use trueup_connector::plan::{Calls, Step, json_number, one_catalogue_entry, refusal};
use trueup_connector::prelude::*;
use trueup_connector::psa::{QuantityChange, WriteResult};
use trueup_connector::values::{date_to_iso, days_from_civil};

use crate::api::{Client, HasId, search};
use crate::model::{
    AtContractService, AtService, AtUnit, SERVICE_FIELDS, SERVICE_PRICE_FIELDS, UNIT_FIELDS,
    service_line, units_on,
};
use crate::write::{created_id, get_step, read_units};

/// The records of a GET query `url`, sent for `purpose` as a read or as a
/// read-back (`None` when planning), from its first page: lookups here
/// match a handful of records, so a second page means the data is not
/// what the write expects.
///
/// # Errors
/// What the request returns; `internal` when the answer has more pages.
fn first_page<T: serde::de::DeserializeOwned + HasId>(
    client: &Client,
    calls: &mut Calls,
    url: &str,
    purpose: String,
    read_back: bool,
) -> Result<Option<Vec<T>>, ConnectorError> {
    let Some(response) = get_step(client, calls, url, purpose, read_back)? else {
        return Ok(None);
    };
    let page = client.page::<T>(response, &format!("GET {url}"), None, -1)?;
    if page.next.is_some() {
        return Err(ConnectorError::Internal(format!(
            "GET {url}: more than one page of records where a few were expected"
        )));
    }
    Ok(Some(page.items))
}

/// The one active catalogue service named `name`.
///
/// # Errors
/// `not-found` when there is none; `upstream` 409 (not retryable) when
/// several share the name; what the request returns.
fn catalogue_service(
    client: &Client,
    calls: &mut Calls,
    name: &str,
) -> Result<AtService, ConnectorError> {
    let url = client.query_get_url(
        "Services",
        &search(
            json!([{"op": "eq", "field": "name", "value": name}]),
            SERVICE_PRICE_FIELDS,
        ),
    );
    let found: Vec<AtService> = first_page(
        client,
        calls,
        &url,
        format!("read catalogue service {name} for its id, price and cost"),
        false,
    )?
    .unwrap_or_default();
    one_catalogue_entry(
        found
            .into_iter()
            .filter(|s| s.is_active != Some(false) && s.name.trim().eq_ignore_ascii_case(name)),
        |s| format!("service {}", s.id),
        name,
        || {
            format!(
                "GET {url}: no active Autotask service (Admin → Products & Services → Services) is named {name:?}; add it, or map the vendor SKU to a service name Autotask has"
            )
        },
    )
}

/// Adds `new` units (checked to be whole and above 0, see
/// [`crate::write::run`]) of the catalogue service `name` (the change's
/// product identifier) to `contract` from `change.effective_date`; see the
/// module docs. Returns `None` when planning.
///
/// # Errors
/// `upstream` 409 (not retryable) when the contract already bills the
/// service at other units, or has it twice; `not-found` for a service Autotask's
/// catalogue lacks; `upstream` with Autotask's text when it refuses the
/// adjustment (a posted period, a date outside the contract, a contract
/// that is not Recurring Service: not retryable); what the requests
/// return.
pub fn run(
    client: &Client,
    calls: &mut Calls,
    contract: i64,
    change: &QuantityChange,
    name: &str,
    new: i64,
) -> Result<Option<WriteResult>, ConnectorError> {
    let effective = change.effective_date;
    let day = days_from_civil(&effective);
    let catalog = catalogue_service(client, calls, name)?;
    let on_contract = client.query_get_url(
        "ContractServices",
        &search(
            json!([
                {"op": "eq", "field": "contractID", "value": contract},
                {"op": "eq", "field": "serviceID", "value": catalog.id},
            ]),
            SERVICE_FIELDS,
        ),
    );
    let units_url = client.query_get_url(
        "ContractServiceUnits",
        &search(
            json!([
                {"op": "eq", "field": "contractID", "value": contract},
                {"op": "eq", "field": "serviceID", "value": catalog.id},
                {"op": "lte", "field": "startDate", "value": date_to_iso(&effective)},
            ]),
            UNIT_FIELDS,
        ),
    );
    let existing: Vec<AtContractService> = first_page(
        client,
        calls,
        &on_contract,
        format!(
            "look for service {name} on contract {contract} (an earlier attempt, or added since the sync)"
        ),
        false,
    )?
    .unwrap_or_default();
    if existing.len() > 1 {
        return Err(refusal(
            409,
            format!(
                "contract {contract} has service {name:?} {} times (contract services {}); approve a change of one of them after a re-sync",
                existing.len(),
                existing
                    .iter()
                    .map(|s| s.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut notes = Vec::new();
    let mut body = json!({
        "contractID": contract,
        "serviceID": catalog.id,
        "effectiveDate": format!("{}T00:00:00", date_to_iso(&effective)),
        "unitChange": new,
    });
    let purpose = match existing.first() {
        Some(service) => {
            let units = read_units(
                client,
                calls,
                &units_url,
                format!(
                    "read the unit records of service {name} on contract {contract} up to {}",
                    date_to_iso(&effective)
                ),
                false,
            )?
            .unwrap_or_default();
            let refs: Vec<&AtUnit> = units.iter().collect();
            let current = units_on(&refs, day)?.unwrap_or(0);
            if current == new {
                if calls.planning() {
                    return Ok(None);
                }
                notes.push(format!(
                    "contract service {} already bills {new} units of {name} on {}; no adjustment was posted",
                    service.id,
                    date_to_iso(&effective)
                ));
                return Ok(Some(WriteResult {
                    record_ids: vec![service.id.to_string()],
                    changed: false,
                    line: service_line(service, Some(&catalog), &refs, &effective)?,
                    notes,
                }));
            }
            if current != 0 {
                return Err(refusal(
                    409,
                    format!(
                        "contract {contract} already bills {current} units of {name} on {} (contract service {}); re-sync and approve a change of that line instead of adding the service",
                        date_to_iso(&effective),
                        service.id
                    ),
                ));
            }
            body["contractServiceID"] = service.id.into();
            notes.push(format!(
                "service {name} was on contract {contract} (contract service {}) with no units on {}: it now has {new}, at its own price",
                service.id,
                date_to_iso(&effective)
            ));
            format!(
                "give contract service {} ({name}) {new} units from {}, where it has none (cannot be undone)",
                service.id,
                date_to_iso(&effective)
            )
        }
        None => {
            let price = catalog.unit_price.unwrap_or_default();
            let cost = catalog.unit_cost.unwrap_or_default();
            body["adjustedUnitPrice"] = json_number(price)?;
            body["adjustedUnitCost"] = json_number(cost)?;
            format!(
                "add service {name} (catalogue service {}) to contract {contract} with {new} units from {} at the catalogue price {} (cost {}); Autotask creates the contract service (cannot be undone)",
                catalog.id,
                date_to_iso(&effective),
                price.normalize(),
                cost.normalize()
            )
        }
    };
    let posted = calls.write(
        Step::post(client.url("/ContractServiceAdjustments"), body, purpose),
        |r| client.send(r),
    )?;
    let adjustment = posted.map(|p| created_id(&p)).transpose()?;
    // Both read-backs are listed in a plan, so neither is skipped there.
    let services = first_page::<AtContractService>(
        client,
        calls,
        &on_contract,
        format!("read service {name} on contract {contract} back"),
        true,
    )?;
    let units = read_units(
        client,
        calls,
        &units_url,
        format!("read the unit records of service {name} on contract {contract} back"),
        true,
    )?;
    let (Some(services), Some(units)) = (services, units) else {
        return Ok(None);
    };
    let adjustment = adjustment.map_or_else(String::new, |id| id.to_string());
    let [service] = services.as_slice() else {
        return Err(ConnectorError::Internal(format!(
            "GET {on_contract}: after adjustment {adjustment} contract {contract} has service {name} {} times, not once",
            services.len()
        )));
    };
    let refs: Vec<&AtUnit> = units.iter().collect();
    let now = units_on(&refs, day)?.unwrap_or(0);
    if now != new {
        return Err(ConnectorError::Internal(format!(
            "GET {units_url}: after adjustment {adjustment} Autotask shows {now} units of {name} on {}, not {new}",
            date_to_iso(&effective)
        )));
    }
    notes.push(format!(
        "adjustment {adjustment} posted: contract service {} bills {new} units of {name} from {} at {} a unit; Autotask adjustments cannot be deleted, so a correction is another adjustment",
        service.id,
        date_to_iso(&effective),
        service.unit_price.unwrap_or_default().normalize()
    ));
    Ok(Some(WriteResult {
        record_ids: vec![adjustment, service.id.to_string()],
        changed: true,
        line: service_line(service, Some(&catalog), &refs, &effective)?,
        notes,
    }))
}
