//! `ContractServiceAdjustments`: the only way to change a recurring
//! service's units. Create-only; each adjustment changes the
//! [`ContractServiceUnit`]s of the period containing its `effectiveDate`
//! and every later period, never an approved-and-posted one.
//!
//! Effect of `unitChange` = Δ effective on date `e` in period `P`:
//!
//! - `e` is `P`'s first day: `P` and every later period get `units += Δ`;
//! - otherwise `P` keeps its units and gains a proration record
//!   `[e, P.end]` with `units = Δ` and `price`/`cost` scaled by
//!   `days(e..=P.end) / days(P)` (rounded to cents); later periods get
//!   `units += Δ`;
//! - periods later than the seeded window are created on demand, carrying
//!   the last known units, so an adjustment dated next year works;
//! - posting for a service not on the contract creates the
//!   [`ContractService`] (price and cost from `adjustedUnitPrice` /
//!   `adjustedUnitCost` or the catalogue) and its units;
//! - `adjustedUnitPrice` / `adjustedUnitCost` reprice the service and the
//!   full periods from the first one changed.
//!
//! The `alter_written` fault ([`crate::faults`]) applies to every
//! adjustment: `date` stores it effective on the first of the following
//! month, `price` reprices the service at the sent (or held) price ÷ 12,
//! `quantity` rounds `unitChange` down to a pack of 5. The create still
//! answers `{"itemId": n}`; what was stored shows in later reads.
//!
//! Refusals use Autotask's `{"errors": ["..."]}` with status 500: a
//! non-integer `unitChange` (the .NET binder's "Input string '2.5' is not a
//! valid integer" text), a date in a posted period (the exact text of
//! [`super::POSTED_PERIOD_ERROR`]), a non-recurring contract, a date outside
//! the contract, an unknown service, or a change that would leave a period
//! with negative units.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::entities::{
    AtData, CONTRACT_TYPE_RECURRING, Contract, ContractService, ContractServiceUnit,
};
use super::{AtError, POSTED_PERIOD_ERROR};
use crate::common::{Period, days_inclusive, decimal_from_json, parse_date, round_money};
use crate::faults::{AlteredField, Faults, altered_date, altered_price, altered_quantity};

fn get<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn error(message: impl Into<String>) -> AtError {
    AtError::server(message)
}

fn integer(value: &Value, field: &str) -> Result<i64, AtError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        other => {
            return Err(error(format!(
                "Error converting value {other} to type 'System.Int32'. Path '{field}'."
            )));
        }
    };
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    // Json.NET accepts a float with no fraction (3.0) for an int.
    match decimal_from_json(value) {
        Some(d) if d.fract().is_zero() && value.is_number() => d
            .trunc()
            .try_into()
            .map_err(|_| error(format!("Value {text} is too large for '{field}'."))),
        _ => Err(error(format!(
            "Input string '{text}' is not a valid integer. Path '{field}'."
        ))),
    }
}

fn optional_id(object: &Map<String, Value>, field: &str) -> Result<Option<i64>, AtError> {
    get(object, field).map(|v| integer(v, field)).transpose()
}

fn optional_money(object: &Map<String, Value>, field: &str) -> Result<Option<Decimal>, AtError> {
    get(object, field)
        .map(|v| {
            decimal_from_json(v)
                .filter(|_| v.is_number())
                .ok_or_else(|| error(format!("The value {v} is not valid for '{field}'.")))
        })
        .transpose()
}

/// Creates an adjustment from a JSON body; `url_contract` is the id in
/// `/Contracts/{id}/ServiceAdjustments`. Returns the new adjustment's id.
pub fn create(
    data: &mut AtData,
    url_contract: Option<i64>,
    body: &[u8],
    today: NaiveDate,
    (faults, path): (&Faults, &str),
) -> Result<i64, AtError> {
    let alteration = faults.planned_alteration(path);
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(error(
                "The request body must be a ContractServiceAdjustment object.",
            ));
        }
        Err(e) => return Err(error(format!("The request body is not valid JSON: {e}"))),
    };
    let mut unit_change = match get(&object, "unitChange") {
        Some(value) => integer(value, "unitChange")?,
        None => return Err(error("unitChange is required.")),
    };
    if alteration == Some(AlteredField::Quantity) {
        unit_change = altered_quantity(Decimal::from(unit_change))
            .trunc()
            .try_into()
            .unwrap_or(unit_change);
    }
    let mut effective = match get(&object, "effectiveDate") {
        Some(Value::String(text)) => parse_date(text).ok_or_else(|| {
            error(format!(
                "The value '{text}' is not a valid date for 'effectiveDate'."
            ))
        })?,
        Some(other) => {
            return Err(error(format!(
                "The value {other} is not a valid date for 'effectiveDate'."
            )));
        }
        None => return Err(error("effectiveDate is required.")),
    };
    if alteration == Some(AlteredField::Date) {
        effective = altered_date(effective);
    }
    let body_contract = optional_id(&object, "contractID")?;
    let contract_id = match (url_contract, body_contract) {
        (Some(url), Some(body)) if url != body => {
            return Err(error(format!(
                "contractID {body} in the body does not match contract {url} in the URL."
            )));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => return Err(error("contractID is required.")),
    };
    let contract = data
        .contract(contract_id)
        .cloned()
        .ok_or_else(|| error(format!("Contract {contract_id} does not exist.")))?;
    if contract.contract_type != CONTRACT_TYPE_RECURRING {
        return Err(error(format!(
            "Contract {contract_id} is not a Recurring Service contract; service adjustments apply only to Recurring Service contracts."
        )));
    }
    let contract_service_id = optional_id(&object, "contractServiceID")?;
    let service_id = optional_id(&object, "serviceID")?;
    let existing = match contract_service_id {
        Some(id) => {
            let service = data
                .contract_services
                .iter()
                .find(|s| s.id == id && s.contract_id == contract_id)
                .cloned()
                .ok_or_else(|| {
                    error(format!(
                        "ContractService {id} is not on contract {contract_id}."
                    ))
                })?;
            if service_id.is_some_and(|s| s != service.service_id) {
                return Err(error(format!(
                    "serviceID does not match ContractService {id} (service {}).",
                    service.service_id
                )));
            }
            Some(service)
        }
        None => {
            let service_id =
                service_id.ok_or_else(|| error("serviceID or contractServiceID is required."))?;
            if !data.services.iter().any(|s| s.id == service_id) {
                return Err(error(format!("Service {service_id} does not exist.")));
            }
            data.contract_services
                .iter()
                .find(|s| s.contract_id == contract_id && s.service_id == service_id)
                .cloned()
        }
    };
    if effective < contract.start || effective > contract.end {
        return Err(error(format!(
            "The effectiveDate {effective} must fall within the contract's dates ({} to {}).",
            contract.start, contract.end
        )));
    }
    let period = contract.period(effective);
    if super::entities::is_posted(period.end.min(contract.end), today) {
        return Err(error(POSTED_PERIOD_ERROR));
    }
    let mut price = optional_money(&object, "adjustedUnitPrice")?;
    let cost = optional_money(&object, "adjustedUnitCost")?;

    // Work on copies; store only when every check passed.
    let mut service = match existing {
        Some(service) => service,
        None => {
            let service_id = service_id.unwrap_or_default();
            let catalogue = data
                .services
                .iter()
                .find(|s| s.id == service_id)
                .map(|s| s.product)
                .ok_or_else(|| error(format!("Service {service_id} does not exist.")))?;
            ContractService {
                id: data.next_contract_service_id,
                contract_id,
                service_id,
                unit_price: crate::common::cents(catalogue.unit_price_cents),
                unit_cost: crate::common::cents(catalogue.unit_cost_cents),
                invoice_description: None,
            }
        }
    };
    if alteration == Some(AlteredField::Price) {
        price = Some(altered_price(price.unwrap_or(service.unit_price)));
    }
    let is_new = !data.contract_services.iter().any(|s| s.id == service.id);
    if let Some(price) = price {
        service.unit_price = price;
    }
    if let Some(cost) = cost {
        service.unit_cost = cost;
    }
    let mut scratch = data.clone_units_of(service.id);
    let mut next_unit_id = data.next_unit_id;
    // Full-period records from the first changed period to the later of
    // the seeded window's end and the effective period.
    let first_full = if effective == period.start {
        period
    } else {
        match period.end.succ_opt() {
            Some(next) => contract.period(next),
            None => period,
        }
    };
    let horizon = super::entities::window(today).end.max(period.end);
    let mut current = first_full;
    let mut carried = scratch
        .iter()
        .filter(|u| !u.proration && u.start < first_full.start)
        .max_by_key(|u| u.start)
        .map_or(0, |u| u.units);
    while current.start <= horizon && current.start <= contract.end {
        match scratch
            .iter_mut()
            .find(|u| !u.proration && u.start == current.start)
        {
            Some(unit) => {
                carried = unit.units;
                unit.units += unit_change;
                if price.is_some() || cost.is_some() {
                    unit.price = service.unit_price;
                    unit.cost = service.unit_cost;
                }
            }
            None => {
                scratch.push(unit_record(
                    &mut next_unit_id,
                    &contract,
                    &service,
                    current,
                    carried + unit_change,
                ));
            }
        }
        let Some(next) = current.end.succ_opt() else {
            break;
        };
        current = contract.period(next);
    }
    if let Some(negative) = scratch.iter().find(|u| !u.proration && u.units < 0) {
        return Err(error(format!(
            "The adjustment would leave {} units for the period {} to {}; units cannot be negative.",
            negative.units, negative.start, negative.end
        )));
    }
    if effective != period.start {
        let end = period.end.min(contract.end);
        let share = Decimal::from(days_inclusive(effective, end))
            / Decimal::from(
                Period {
                    start: period.start,
                    end: period.end,
                }
                .days()
                .max(1),
            );
        let mut proration = unit_record(
            &mut next_unit_id,
            &contract,
            &service,
            Period {
                start: effective,
                end,
            },
            unit_change,
        );
        proration.price = round_money(service.unit_price * share);
        proration.cost = round_money(service.unit_cost * share);
        proration.proration = true;
        scratch.push(proration);
    }

    // Commit.
    if alteration.is_some() {
        faults.take_alteration(path);
    }
    if is_new {
        data.next_contract_service_id += 1;
        data.contract_services.push(service.clone());
    } else if let Some(stored) = data
        .contract_services
        .iter_mut()
        .find(|s| s.id == service.id)
    {
        *stored = service.clone();
    }
    for unit in scratch {
        match data.units.binary_search_by_key(&unit.id, |u| u.id) {
            Ok(index) => data.units[index] = unit,
            Err(_) => data.units.push(unit),
        }
    }
    data.units.sort_by_key(|u| u.id);
    data.next_unit_id = next_unit_id;
    let id = data.next_adjustment_id;
    data.next_adjustment_id += 1;
    data.adjustments.push(super::entities::Adjustment {
        id,
        contract_id,
        service_id: service.service_id,
        contract_service_id: service.id,
        effective,
        unit_change,
        adjusted_unit_price: price,
        adjusted_unit_cost: cost,
    });
    Ok(id)
}

fn unit_record(
    next_id: &mut i64,
    contract: &Contract,
    service: &ContractService,
    period: Period,
    units: i64,
) -> ContractServiceUnit {
    let id = *next_id;
    *next_id += 1;
    ContractServiceUnit {
        id,
        contract_id: contract.id,
        contract_service_id: service.id,
        service_id: service.service_id,
        start: period.start,
        end: period.end.min(contract.end),
        units,
        price: service.unit_price,
        cost: service.unit_cost,
        posted: None,
        proration: false,
    }
}

impl AtData {
    /// Copies of the unit records of one contract service.
    fn clone_units_of(&self, contract_service_id: i64) -> Vec<ContractServiceUnit> {
        self.units
            .iter()
            .filter(|u| u.contract_service_id == contract_service_id)
            .cloned()
            .collect()
    }
}
