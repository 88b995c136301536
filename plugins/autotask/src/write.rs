//! Quantity write-back, shared by `plan-quantity-change` and
//! `apply-quantity-change` (see [`trueup_connector::plan`]).
//!
//! Autotask changes a recurring service's units only through
//! `ContractServiceAdjustments` (create-only; `POST
//! /ContractServiceAdjustments` with an integer `unitChange` effective on a
//! date), and an adjustment can never be undone. So the SET the host asks
//! for becomes a delta computed against what Autotask holds right now:
//!
//! 1. `GET /ContractServices/{id}` and `GET /Services/{serviceID}`: the line
//!    and its catalogue identifier;
//! 2. `GET /ContractServiceUnits/query?search=…` (the service's unit records
//!    starting on or before the effective date): the units in effect on
//!    that date;
//! 3. `unitChange = new − current`; when it is 0 the change is already in
//!    Autotask (an earlier attempt landed) and nothing is written;
//!    otherwise `POST /ContractServiceAdjustments`;
//! 4. the unit records and the contract service are read back: the new
//!    units must be in effect from the effective date and the unit price
//!    must be the one held before. Anything else — units rounded, the
//!    adjustment moved to another date, the service repriced from the
//!    catalogue — fails the call naming what Autotask stored and what
//!    Trueup sent ([`ReadBack`]); no second adjustment is ever posted in
//!    the same call, since adjustments cannot be deleted.
//!
//! Applying the same change twice therefore posts one adjustment. A
//! decimal quantity is refused before any request (units are whole
//! numbers): `upstream` 422, not retryable. Autotask's own refusals (a date
//! in an approved-and-posted period, …) come back as `upstream` with its
//! text, not retryable either (see [`crate::api::retryable`]).
//!
//! A change without a line adds the service to the contract: see
//! [`crate::add`].

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use trueup_connector::plan::{Calls, Step, line_to_add, refusal};
use trueup_connector::prelude::*;
use trueup_connector::psa::{ChangePolicy, QuantityChange, WriteResult};
use trueup_connector::readback::ReadBack;
use trueup_connector::values::{self, civil_from_days, date_to_iso, days_from_civil};

use crate::api::{Client, MAX_LOOKUP_PAGES, record_id, search};
use crate::model::{
    AtContractService, AtService, AtUnit, UNIT_FIELDS, service_line, span, units_on,
};

/// A write refused by the connector before anything is sent: `upstream`
/// 422, not retryable.
fn refused(message: String) -> ConnectorError {
    refusal(422, message)
}

/// The new quantity as whole units for `target` (e.g. "contract service
/// 5").
///
/// # Errors
/// `upstream` 422 (not retryable) for a fraction or a negative number.
pub fn whole_units(quantity: Decimal, target: &str) -> Result<i64, ConnectorError> {
    if !quantity.fract().is_zero() {
        return Err(refused(format!(
            "Autotask contract service units are whole numbers, so {} cannot be written to {target}; round the quantity (with a rounding rule) and approve again",
            quantity.normalize()
        )));
    }
    let units: i64 = quantity
        .trunc()
        .try_into()
        .map_err(|_| refused(format!("{quantity} units is out of range")))?;
    if units < 0 {
        return Err(refused(format!(
            "{units} units for {target}: units cannot be negative"
        )));
    }
    Ok(units)
}

/// The id of the record a create made, from Autotask's answer
/// `{"itemId": n}`.
///
/// # Errors
/// `internal` naming the request when the body is not such an answer.
pub(crate) fn created_id(response: &Response) -> Result<i64, ConnectorError> {
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "itemId")]
        item_id: i64,
    }
    Ok(response.json::<Created>()?.item_id)
}

/// GETs `url` for `purpose` through `calls`: as a read (sent in both
/// modes), or as a read-back after the write (`read_back`: listed in a
/// plan, sent only when applying, `None` when planning).
///
/// # Errors
/// What the request returns.
pub(crate) fn get_step(
    client: &Client,
    calls: &mut Calls,
    url: &str,
    purpose: String,
    read_back: bool,
) -> Result<Option<Response>, ConnectorError> {
    let step = Step::get(url, purpose);
    if read_back {
        calls.read_back(step, |r| client.send(r))
    } else {
        calls.read(step, |r| client.send(r)).map(Some)
    }
}

/// Reads a service's unit records from a GET query URL, every page,
/// listing the first request in a plan (`read_back`: only when applying).
pub(crate) fn read_units(
    client: &Client,
    calls: &mut Calls,
    url: &str,
    purpose: String,
    read_back: bool,
) -> Result<Option<Vec<AtUnit>>, ConnectorError> {
    let Some(response) = get_step(client, calls, url, purpose, read_back)? else {
        return Ok(None);
    };
    let mut page = client.page::<AtUnit>(response, &format!("GET {url}"), None, -1)?;
    let mut all = Vec::new();
    for _ in 0..MAX_LOOKUP_PAGES {
        all.extend(page.items);
        let Some(next) = page.next else {
            return Ok(Some(all));
        };
        let after = all.last().map_or(-1, |u: &AtUnit| u.id);
        page = client.page(
            client.get(&next)?,
            &format!("GET {next}"),
            Some(&next),
            after,
        )?;
    }
    Err(ConnectorError::Internal(format!(
        "GET {url}: more than {MAX_LOOKUP_PAGES} pages of unit records for one service"
    )))
}

/// Runs the change: lists its calls when `calls` plans (returning `None`),
/// makes them when it applies.
///
/// A change without a line adds the service ([`crate::add::run`]).
///
/// # Errors
/// `upstream` 422 for a decimal or negative quantity (before any request),
/// `not-found` for an unknown contract service, `upstream` with Autotask's
/// text when it refuses the adjustment, `rate-limited` when the budget
/// share is used, and what the requests return.
pub fn run(
    change: &QuantityChange,
    calls: &mut Calls,
) -> Result<Option<WriteResult>, ConnectorError> {
    let Some(line_id) = change.line_id.as_deref() else {
        // Checked before any request, like a change of a line.
        let label = format!("contract {}", change.contract_id);
        let (name, quantity) = line_to_add(change, &label)?;
        let new = whole_units(quantity, &format!("a new {name} service on {label}"))?;
        let contract = record_id("contract", &change.contract_id)?;
        let client = Client::new()?;
        client.check_budget()?;
        return crate::add::run(&client, calls, contract, change, name, new);
    };
    let new = whole_units(
        values::to_decimal(&change.new_quantity),
        &format!("contract service {line_id}"),
    )?;
    let contract = record_id("contract", &change.contract_id)?;
    let line = record_id("contract service", line_id)?;
    let client = Client::new()?;
    client.check_budget()?;
    let response = calls.read(
        Step::get(
            client.url(&format!("/ContractServices/{line}")),
            format!("read contract service {line}"),
        ),
        |r| client.send(r),
    )?;
    let service: AtContractService = client.item(&response, "contract service")?;
    if service.contract_id != contract {
        return Err(ConnectorError::NotFound(format!(
            "contract service {line} is on contract {}, not {contract}",
            service.contract_id
        )));
    }
    let response = calls.read(
        Step::get(
            client.url(&format!("/Services/{}", service.service_id)),
            format!("read catalogue service {} for its name", service.service_id),
        ),
        |r| client.send(r),
    )?;
    let catalog: AtService = client.item(&response, "service")?;
    if !change.product_identifier.trim().is_empty()
        && !catalog
            .name
            .eq_ignore_ascii_case(change.product_identifier.trim())
    {
        return Err(refusal(
            409,
            format!(
                "contract service {line} is service {:?}, not {:?}; re-sync and approve again",
                catalog.name, change.product_identifier
            ),
        ));
    }
    let effective = change.effective_date;
    let day = days_from_civil(&effective);
    let units_url = client.query_get_url(
        "ContractServiceUnits",
        &search(
            json!([
                {"op": "eq", "field": "contractServiceID", "value": line},
                {"op": "lte", "field": "startDate", "value": date_to_iso(&effective)},
            ]),
            UNIT_FIELDS,
        ),
    );
    let units = read_units(
        &client,
        calls,
        &units_url,
        format!(
            "read the unit records of contract service {line} up to {} to compute the unit change",
            date_to_iso(&effective)
        ),
        false,
    )?
    .unwrap_or_default();
    let refs: Vec<&AtUnit> = units.iter().collect();
    let current = units_on(&refs, day)?.unwrap_or(0);
    let unit_change = new - current;
    let mut notes = Vec::new();
    if change.policy == ChangePolicy::Immediate {
        notes.push(format!(
            "Autotask changes units only through dated adjustments: the change is effective {}",
            date_to_iso(&effective)
        ));
    }
    if unit_change == 0 {
        if calls.planning() {
            return Ok(None);
        }
        notes.push(format!(
            "Autotask already holds {new} units for contract service {line} on {}; no adjustment was posted",
            date_to_iso(&effective)
        ));
        // The units asked for are in effect on the effective date.
        let mut held = service_line(&service, Some(&catalog), &refs, &effective)?;
        held.effective_date = Some(effective);
        return Ok(Some(WriteResult {
            record_ids: vec![line.to_string()],
            changed: false,
            line: held,
            notes,
        }));
    }
    let body = json!({
        "contractID": contract,
        "contractServiceID": line,
        "serviceID": service.service_id,
        "effectiveDate": format!("{}T00:00:00", date_to_iso(&effective)),
        "unitChange": unit_change,
    });
    let posted = calls.write(
        Step::post(
            client.url("/ContractServiceAdjustments"),
            body,
            format!(
                "adjust contract service {line} ({}) by {unit_change:+} units, from {current} to {new}, effective {} (cannot be undone)",
                catalog.name,
                date_to_iso(&effective)
            ),
        ),
        |r| client.send(r),
    )?;
    let mut record_ids = Vec::new();
    if let Some(posted) = posted {
        record_ids.push(created_id(&posted)?.to_string());
    }
    // Every unit record of the service, not only those up to the
    // effective date: an adjustment Autotask moved to a later date shows
    // only there.
    let all_units_url = client.query_get_url(
        "ContractServiceUnits",
        &search(
            json!([{"op": "eq", "field": "contractServiceID", "value": line}]),
            UNIT_FIELDS,
        ),
    );
    let Some(after) = read_units(
        &client,
        calls,
        &all_units_url,
        format!("read the unit records of contract service {line} back"),
        true,
    )?
    else {
        return Ok(None);
    };
    let Some(response) = get_step(
        &client,
        calls,
        &client.url(&format!("/ContractServices/{line}")),
        format!("read contract service {line} back for its unit price"),
        true,
    )?
    else {
        return Ok(None);
    };
    let service_after: AtContractService = client.item(&response, "contract service")?;
    let refs: Vec<&AtUnit> = after.iter().collect();
    let now = units_on(&refs, day)?.unwrap_or(0);
    let mut check = ReadBack::new(
        "Autotask",
        format!(
            "adjustment {} of contract service {line}",
            record_ids.join(", ")
        ),
    );
    if now != new {
        match moved_to(&refs, day, new)? {
            Some(moved) => check.date(
                "effective date",
                Some(civil_from_days(moved)),
                Some(effective),
            ),
            None => check.quantity(Decimal::from(now), Decimal::from(new)),
        }
    }
    check.unit_price_kept(service_after.unit_price, service.unit_price);
    check.finish()?;
    // The period's own record is the covering record that starts first;
    // starting after the effective date's period start means a mid-period
    // change, which Autotask prorates.
    let mut period_start = None;
    for unit in &after {
        let (start, end) = span(unit)?;
        if start <= day && day <= end && period_start.is_none_or(|s| start < s) {
            period_start = Some(start);
        }
    }
    if period_start.is_some_and(|start| start < day) {
        notes.push(format!(
            "Autotask created proration records for {unit_change:+} units from {} to the end of the period",
            date_to_iso(&effective)
        ));
    }
    notes.push(format!(
        "adjustment {} posted: {unit_change:+} units from {} ({current} → {new}); Autotask adjustments cannot be deleted, so a correction is another adjustment",
        record_ids.join(", "),
        date_to_iso(&effective)
    ));
    // The read-back showed the new units in effect from the effective
    // date: the line as changed starts there.
    let mut line = service_line(&service, Some(&catalog), &refs, &effective)?;
    line.effective_date = Some(effective);
    Ok(Some(WriteResult {
        record_ids,
        changed: true,
        line,
        notes,
    }))
}

/// The first day after `day` from which `units` are in effect, among the
/// starts of `records`: where an adjustment dated `day` was stored when
/// Autotask moved it.
///
/// # Errors
/// `internal` for a malformed date.
fn moved_to(records: &[&AtUnit], day: i64, units: i64) -> Result<Option<i64>, ConnectorError> {
    let mut starts = Vec::new();
    for record in records {
        let (start, _) = span(record)?;
        if start > day {
            starts.push(start);
        }
    }
    starts.sort_unstable();
    for start in starts {
        if units_on(records, start)? == Some(units) {
            return Ok(Some(start));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_non_negative_units_are_written() {
        let target = "contract service 5";
        assert_eq!(whole_units(Decimal::new(120, 1), target).ok(), Some(12));
        assert_eq!(whole_units(Decimal::ZERO, target).ok(), Some(0));
        for refused in [Decimal::new(25, 1), Decimal::from(-1)] {
            match whole_units(refused, target) {
                Err(ConnectorError::Upstream(failure)) => {
                    assert_eq!(failure.status, 422);
                    assert!(!failure.retryable, "{}", failure.body);
                    assert!(
                        failure.body.contains("contract service 5"),
                        "{}",
                        failure.body
                    );
                }
                other => panic!("{refused}: {other:?}"),
            }
        }
    }
}
