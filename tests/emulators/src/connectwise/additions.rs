//! Writes to agreement additions (create, replace, JSON-Patch) and the
//! invoice preview behind `/_emulator/connectwise/agreements/{id}/invoice`.
//!
//! Every write validates a copy of the addition first and stores it only
//! when valid, so a refused write changes nothing. JSON property names are
//! matched case-insensitively, as ConnectWise's .NET binder does.
//!
//! The `alter_written` fault ([`crate::faults`]) applies to a create or
//! replace, and to a JSON-Patch that sets the altered field: the addition
//! is stored with that field changed and returned as stored.

use std::borrow::Cow;

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::CwError;
use super::data::{
    API_MEMBER, Addition, Agreement, AgreementStatus, BillCustomer, CwData, CycleLength,
    billed_quantity, billing_cycle, product_by_id, product_id, prorate,
};
use crate::catalog::{PRODUCTS, Product};
use crate::common::{
    cents, date_z, days_inclusive, decimal_from_json, money, parse_date, round_money,
};
use crate::faults::{AlteredField, Faults, altered_date, altered_price, altered_quantity};

fn field_error(code: &str, field: &str, message: String) -> Value {
    json!({"code": code, "message": message, "resource": "addition", "field": field})
}

fn get<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, CwError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(CwError::bad_request(
            "The request body must be a JSON addition object",
        )),
        Err(error) => Err(CwError::bad_request(format!(
            "The request body is not valid JSON: {error}"
        ))),
    }
}

fn resolve_product(value: &Value) -> Result<&'static Product, String> {
    let Value::Object(reference) = value else {
        return Err(
            "product must be an object like {\"id\": 1} or {\"identifier\": \"M365-BP\"}"
                .to_owned(),
        );
    };
    if let Some(id) = get(reference, "id") {
        let id = id
            .as_i64()
            .ok_or_else(|| format!("product id {id} is not a whole number"))?;
        return product_by_id(id)
            .ok_or_else(|| format!("product with id {id} not found in the catalog"));
    }
    if let Some(identifier) = get(reference, "identifier").and_then(Value::as_str) {
        return PRODUCTS
            .iter()
            .find(|p| p.identifier.eq_ignore_ascii_case(identifier))
            .ok_or_else(|| {
                format!("product with identifier '{identifier}' not found in the catalog")
            });
    }
    Err("product needs an id or an identifier".to_owned())
}

/// Sets one writable field of `addition` from JSON; `Err` is a field error.
fn set_field(addition: &mut Addition, field: &str, value: &Value) -> Result<(), Value> {
    let lower = field.to_ascii_lowercase();
    let decimal = |name: &str| {
        decimal_from_json(value)
            .filter(|_| value.is_number())
            .ok_or_else(|| {
                field_error(
                    "InvalidField",
                    name,
                    format!("{name} must be a number, not {value}"),
                )
            })
    };
    let boolean = |name: &str| {
        value.as_bool().ok_or_else(|| {
            field_error(
                "InvalidField",
                name,
                format!("{name} must be true or false, not {value}"),
            )
        })
    };
    let date = |name: &str| -> Result<Option<NaiveDate>, Value> {
        match value {
            Value::Null => Ok(None),
            Value::String(text) => parse_date(text).map(Some).ok_or_else(|| {
                field_error(
                    "InvalidField",
                    name,
                    format!("{name} '{text}' is not a date like 2025-01-01T00:00:00Z"),
                )
            }),
            other => Err(field_error(
                "InvalidField",
                name,
                format!("{name} must be a date string, not {other}"),
            )),
        }
    };
    let text = |name: &str| -> Result<Option<String>, Value> {
        match value {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text.clone())),
            other => Err(field_error(
                "InvalidField",
                name,
                format!("{name} must be text, not {other}"),
            )),
        }
    };
    match lower.as_str() {
        "product" => {
            addition.product =
                resolve_product(value).map_err(|m| field_error("InvalidField", "product", m))?;
        }
        "product/id" => {
            addition.product = resolve_product(&json!({ "id": value }))
                .map_err(|m| field_error("InvalidField", "product", m))?;
        }
        "product/identifier" => {
            addition.product = resolve_product(&json!({ "identifier": value }))
                .map_err(|m| field_error("InvalidField", "product", m))?;
        }
        "quantity" => addition.quantity = decimal("quantity")?,
        "lessincluded" => addition.less_included = decimal("lessIncluded")?,
        "unitprice" => addition.unit_price = decimal("unitPrice")?,
        "unitcost" => addition.unit_cost = decimal("unitCost")?,
        "billcustomer" => {
            addition.bill_customer =
                value
                    .as_str()
                    .and_then(BillCustomer::parse)
                    .ok_or_else(|| {
                        field_error(
                            "InvalidField",
                            "billCustomer",
                            format!(
                                "billCustomer must be Billable, DoNotBill or NoCharge, not {value}"
                            ),
                        )
                    })?;
        }
        "effectivedate" => addition.effective = date("effectiveDate")?,
        "cancelleddate" => addition.cancelled = date("cancelledDate")?,
        "taxableflag" => addition.taxable = boolean("taxableFlag")?,
        "purchaseitemflag" => addition.purchase_item = boolean("purchaseItemFlag")?,
        "specialorderflag" => addition.special_order = boolean("specialOrderFlag")?,
        "description" => {
            addition.description = Cow::Owned(text("description")?.unwrap_or_default());
        }
        "invoicedescription" => addition.invoice_description = text("invoiceDescription")?,
        "serialnumber" => {
            let serial = text("serialNumber")?;
            if serial.as_ref().is_some_and(|s| s.chars().count() > 50) {
                return Err(field_error(
                    "InvalidField",
                    "serialNumber",
                    "serialNumber is limited to 50 characters".to_owned(),
                ));
            }
            addition.serial_number = serial;
        }
        "sequencenumber" => {
            addition.sequence = decimal("sequenceNumber")?
                .trunc()
                .try_into()
                .unwrap_or(addition.sequence);
        }
        "id"
        | "agreementid"
        | "extprice"
        | "extcost"
        | "margin"
        | "billedquantity"
        | "uom"
        | "prorateprice"
        | "proratecost"
        | "extendedprorateprice"
        | "extendedproratecost"
        | "proratecurrentperiodflag"
        | "agreementstatus"
        | "_info" => {
            return Err(field_error(
                "ReadOnlyField",
                field,
                format!("{field} is read-only"),
            ));
        }
        _ => {
            return Err(field_error(
                "InvalidField",
                field,
                format!("{field} is not a field of addition"),
            ));
        }
    }
    Ok(())
}

/// The fields a create or replace always sets.
const ALL_FIELDS: [AlteredField; 3] = [
    AlteredField::Date,
    AlteredField::Price,
    AlteredField::Quantity,
];

/// Fields a create or replace body may carry that are ignored (read-only
/// values echoed back from a previous GET).
const IGNORED_ON_WRITE: &[&str] = &[
    "id",
    "agreementid",
    "extprice",
    "extcost",
    "margin",
    "billedquantity",
    "uom",
    "prorateprice",
    "proratecost",
    "extendedprorateprice",
    "extendedproratecost",
    "proratecurrentperiodflag",
    "agreementstatus",
    "_info",
];

fn check_dates(addition: &Addition) -> Result<(), Value> {
    match (addition.effective, addition.cancelled) {
        (Some(effective), Some(cancelled)) if cancelled < effective => Err(field_error(
            "InvalidField",
            "cancelledDate",
            format!(
                "cancelledDate {} is before effectiveDate {}",
                date_z(cancelled),
                date_z(effective)
            ),
        )),
        _ => Ok(()),
    }
}

/// Stores `field` of `addition` differently than sent (the
/// `alter_written` fault).
fn alter(addition: &mut Addition, field: AlteredField) {
    match field {
        AlteredField::Date => addition.effective = addition.effective.map(altered_date),
        AlteredField::Price => addition.unit_price = altered_price(addition.unit_price),
        AlteredField::Quantity => addition.quantity = altered_quantity(addition.quantity),
    }
}

/// The altered field for a write to `path` that sets `touched`, if the
/// fault plan alters one of them (consuming one alteration).
fn alteration(faults: &Faults, path: &str, touched: &[AlteredField]) -> Option<AlteredField> {
    let planned = faults.planned_alteration(path)?;
    if touched.contains(&planned) {
        faults.take_alteration(path)
    } else {
        None
    }
}

/// Builds an addition of `agreement` from a create/replace body.
fn from_body(
    object: &Map<String, Value>,
    agreement: &Agreement,
    template: Addition,
) -> Result<Addition, CwError> {
    let mut errors = Vec::new();
    for required in ["product", "billCustomer", "quantity"] {
        if get(object, required).is_none() {
            errors.push(field_error(
                "MissingRequiredField",
                required,
                format!("The {required} field is required."),
            ));
        }
    }
    if let Some(parent) = get(object, "agreementId").and_then(Value::as_i64)
        && parent != agreement.id
    {
        errors.push(field_error(
            "InvalidField",
            "agreementId",
            format!(
                "agreementId {parent} does not match the agreement in the URL ({})",
                agreement.id
            ),
        ));
    }
    let mut addition = template;
    let price_given = get(object, "unitPrice").is_some();
    let cost_given = get(object, "unitCost").is_some();
    for (key, value) in object {
        let lower = key.to_ascii_lowercase();
        let required = matches!(lower.as_str(), "product" | "billcustomer" | "quantity");
        if IGNORED_ON_WRITE.contains(&lower.as_str()) || (required && value.is_null()) {
            continue;
        }
        if let Err(error) = set_field(&mut addition, key, value) {
            errors.push(error);
        }
    }
    if !price_given {
        addition.unit_price = cents(addition.product.unit_price_cents);
    }
    if !cost_given {
        addition.unit_cost = cents(addition.product.unit_cost_cents);
    }
    if get(object, "description").is_none() {
        addition.description = Cow::Borrowed(addition.product.description);
    }
    if let Err(error) = check_dates(&addition) {
        errors.push(error);
    }
    if errors.is_empty() {
        Ok(addition)
    } else {
        Err(CwError::invalid("addition", errors))
    }
}

/// `POST /finance/agreements/{parentId}/additions`. `effectiveDate`
/// defaults to today; `unitPrice`, `unitCost` and `description` default to
/// the catalogue's.
pub fn create(
    data: &mut CwData,
    agreement: &Agreement,
    body: &[u8],
    today: NaiveDate,
    (faults, path): (&Faults, &str),
) -> Result<Addition, CwError> {
    let object = parse_object(body)?;
    let now = Utc::now();
    let sequence = data
        .additions
        .iter()
        .filter(|a| a.agreement_id == agreement.id)
        .map(|a| a.sequence)
        .max()
        .unwrap_or(0)
        + 1;
    let template = Addition {
        id: data.next_addition_id,
        agreement_id: agreement.id,
        product: &PRODUCTS[0],
        quantity: Decimal::ZERO,
        less_included: Decimal::ZERO,
        unit_price: Decimal::ZERO,
        unit_cost: Decimal::ZERO,
        bill_customer: BillCustomer::Billable,
        effective: Some(today),
        cancelled: None,
        taxable: true,
        description: Cow::Borrowed(""),
        invoice_description: None,
        serial_number: None,
        purchase_item: false,
        special_order: false,
        sequence,
        entered: now,
        updated: now,
        entered_by: API_MEMBER,
        updated_by: API_MEMBER,
    };
    let mut addition = from_body(&object, agreement, template)?;
    if let Some(field) = alteration(faults, path, &ALL_FIELDS) {
        alter(&mut addition, field);
    }
    data.next_addition_id += 1;
    data.additions.push(addition.clone());
    Ok(addition)
}

/// `PUT /finance/agreements/{parentId}/additions/{id}`: replaces every
/// writable field (absent optional fields become empty).
pub fn replace(
    data: &mut CwData,
    index: usize,
    agreement: &Agreement,
    body: &[u8],
    (faults, path): (&Faults, &str),
) -> Result<Addition, CwError> {
    let object = parse_object(body)?;
    let current = &data.additions[index];
    let template = Addition {
        effective: None,
        cancelled: None,
        invoice_description: None,
        serial_number: None,
        less_included: Decimal::ZERO,
        taxable: true,
        purchase_item: false,
        special_order: false,
        ..current.clone()
    };
    let mut addition = from_body(&object, agreement, template)?;
    if let Some(field) = alteration(faults, path, &ALL_FIELDS) {
        alter(&mut addition, field);
    }
    addition.updated = Utc::now();
    addition.updated_by = API_MEMBER;
    data.additions[index] = addition.clone();
    Ok(addition)
}

/// `PATCH /finance/agreements/{parentId}/additions/{id}` with a JSON-Patch
/// array, e.g. `[{"op": "replace", "path": "quantity", "value": 12}]`.
/// `path` may start with `/`; ops are `replace`, `add` (same as replace)
/// and `remove` (clears an optional field). All operations apply or none.
pub fn patch(
    data: &mut CwData,
    index: usize,
    body: &[u8],
    (faults, url_path): (&Faults, &str),
) -> Result<Addition, CwError> {
    let operations = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(operations)) => operations,
        Ok(_) => {
            return Err(CwError::bad_request(
                "PATCH expects a JSON Patch array, e.g. [{\"op\":\"replace\",\"path\":\"quantity\",\"value\":12}]",
            ));
        }
        Err(error) => {
            return Err(CwError::bad_request(format!(
                "The request body is not valid JSON: {error}"
            )));
        }
    };
    if operations.is_empty() {
        return Err(CwError::bad_request("The JSON Patch array is empty"));
    }
    let mut addition = data.additions[index].clone();
    let mut errors = Vec::new();
    let mut touched = Vec::new();
    for (n, operation) in operations.iter().enumerate() {
        let Some(operation) = operation.as_object() else {
            errors.push(field_error(
                "InvalidField",
                "op",
                format!("operation {} is not an object", n + 1),
            ));
            continue;
        };
        let op = get(operation, "op")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(path) = get(operation, "path").and_then(Value::as_str) else {
            errors.push(field_error(
                "MissingRequiredField",
                "path",
                format!("operation {} has no path", n + 1),
            ));
            continue;
        };
        let path = path.trim_start_matches('/');
        let value = match op.to_ascii_lowercase().as_str() {
            "replace" | "add" => match get(operation, "value") {
                Some(value) => value.clone(),
                None if operation.keys().any(|k| k.eq_ignore_ascii_case("value")) => Value::Null,
                None => {
                    errors.push(field_error(
                        "MissingRequiredField",
                        "value",
                        format!("operation {} ({op} {path}) has no value", n + 1),
                    ));
                    continue;
                }
            },
            "remove" => Value::Null,
            other => {
                errors.push(field_error(
                    "InvalidField",
                    "op",
                    format!(
                        "operation {} uses op '{other}'; use replace, add or remove",
                        n + 1
                    ),
                ));
                continue;
            }
        };
        let required = [
            "product",
            "quantity",
            "billcustomer",
            "unitprice",
            "unitcost",
        ];
        if value.is_null() && required.contains(&path.to_ascii_lowercase().as_str()) {
            errors.push(field_error(
                "MissingRequiredField",
                path,
                format!("{path} cannot be removed or set to null"),
            ));
            continue;
        }
        if let Err(error) = set_field(&mut addition, path, &value) {
            errors.push(error);
        }
        match path.to_ascii_lowercase().as_str() {
            "effectivedate" => touched.push(AlteredField::Date),
            "unitprice" => touched.push(AlteredField::Price),
            "quantity" => touched.push(AlteredField::Quantity),
            _ => {}
        }
    }
    if let Err(error) = check_dates(&addition) {
        errors.push(error);
    }
    if !errors.is_empty() {
        return Err(CwError::invalid("addition", errors));
    }
    if let Some(field) = alteration(faults, url_path, &touched) {
        alter(&mut addition, field);
    }
    addition.updated = Utc::now();
    addition.updated_by = API_MEMBER;
    data.additions[index] = addition.clone();
    Ok(addition)
}

/// What agreement `id` bills for its billing period containing `date`;
/// `None` when the agreement does not exist. Rules: see the module docs of
/// [`crate::connectwise`].
pub fn invoice(data: &CwData, id: i64, date: NaiveDate) -> Option<Value> {
    let agreement = data.agreement(id)?;
    let not_billed = |reason: &str| {
        json!({"agreementId": id, "date": date_z(date), "billed": false, "reason": reason,
               "lines": [], "total": 0.0})
    };
    if agreement.status != AgreementStatus::Active {
        return Some(not_billed(&format!(
            "agreement status is {:?}",
            agreement.status
        )));
    }
    let Some(cycle) = agreement.cycle.and_then(billing_cycle) else {
        return Some(not_billed("agreement has no billing cycle"));
    };
    if cycle.length == CycleLength::Once {
        return Some(not_billed("agreement is not recurring"));
    }
    let Some(period) = agreement.period(date) else {
        return Some(not_billed("no billing period"));
    };
    if agreement.start > period.end || agreement.end.is_some_and(|end| end < period.start) {
        return Some(not_billed("agreement is not in effect in this period"));
    }
    let mut total = Decimal::ZERO;
    let lines: Vec<Value> = data
        .additions
        .iter()
        .filter(|a| a.agreement_id == id && a.bill_customer != BillCustomer::DoNotBill)
        .filter_map(|addition| {
            let effective = addition.effective.unwrap_or(agreement.start);
            if effective > period.end || addition.cancelled.is_some_and(|c| c < period.start) {
                return None;
            }
            let from = effective.max(period.start);
            let to = addition.cancelled.map_or(period.end, |c| c.min(period.end));
            let (days, unit) = if agreement.prorate {
                let days = days_inclusive(from, to);
                if days < period.days() {
                    (days, prorate(addition, period, days).price)
                } else {
                    (days, addition.unit_price)
                }
            } else if effective > period.start {
                // Without proration a mid-period start bills from the next
                // invoice.
                return None;
            } else {
                (period.days(), addition.unit_price)
            };
            let amount = if addition.bill_customer == BillCustomer::NoCharge {
                Decimal::ZERO
            } else {
                round_money(unit * billed_quantity(addition))
            };
            total += amount;
            Some(json!({
                "additionId": addition.id,
                "product": {"id": product_id(addition.product), "identifier": addition.product.identifier},
                "billCustomer": addition.bill_customer.name(),
                "quantity": money(addition.quantity),
                "unitPrice": money(unit),
                "days": days,
                "prorated": days < period.days(),
                "amount": money(amount),
            }))
        })
        .collect();
    Some(json!({
        "agreementId": id,
        "date": date_z(date),
        "billed": true,
        "periodStart": date_z(period.start),
        "periodEnd": date_z(period.end),
        "lines": lines,
        "total": money(total),
    }))
}
