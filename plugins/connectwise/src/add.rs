//! Adding an addition: a `quantity-change` without a line (approving "new
//! revenue found"), shared by `plan-quantity-change` and
//! `apply-quantity-change` (see [`trueup_connector::plan`]). Paths are
//! ConnectWise REST API 3.0's, under `base_url`:
//!
//! 1. `GET /finance/agreements/{id}/additions?conditions=product/identifier
//!    = "…"` (forward-only pages): the agreement's additions of the
//!    product. A billable one that bills the new quantity from the
//!    effective date `e` (it starts on or before `e` and has no
//!    `cancelledDate`) is the change already made, by an earlier attempt or
//!    by hand: nothing is written and the result says `changed = false`.
//!    Any other billable addition of the product still billing on or after
//!    `e` is refused (409, not retryable): adding would bill the product
//!    twice, so the approval has to change that line after a re-sync.
//!    `DoNotBill` and `NoCharge` additions bill nothing and are left alone.
//! 2. `GET /procurement/catalog?conditions=identifier = "…" and
//!    inactiveFlag = false`: the product catalogue (Procurement → Product
//!    Catalog), for the product's id, `price`, `cost`, customer description
//!    and `taxableFlag`.
//! 3. `POST /finance/agreements/{id}/additions` with the product by id, the
//!    quantity, the catalogue price and cost as `unitPrice` / `unitCost`,
//!    `billCustomer: Billable` and `effectiveDate` `e`.
//! 4. `GET …/additions/{id}` reads the new addition back (by the id the
//!    POST answered); it must bill the new quantity, at the unit price and
//!    from the effective date sent, or the call fails naming what
//!    ConnectWise stored instead (and nothing is written again).

use rust_decimal::Decimal;
use serde_json::json;
use trueup_connector::plan::{Calls, Step, json_number, line_to_add, one_catalogue_entry};
use trueup_connector::prelude::*;
use trueup_connector::psa::{QuantityChange, WriteResult};
use trueup_connector::tolerant::opt_date;
use trueup_connector::values::date_to_iso;

use crate::api::{Client, cw_date, quoted};
use crate::model::{ADDITION_FIELDS, CATALOG_FIELDS, CwAddition, CwCatalogItem};
use crate::write::{conflict, day, product_additions, stored_as_sent, unchanged};

/// When `addition` starts billing, for messages.
fn starts(addition: &CwAddition) -> Result<String, ConnectorError> {
    Ok(opt_date(addition.effective_date.as_deref())?
        .map_or_else(|| "the agreement's start".to_owned(), |d| date_to_iso(&d)))
}

/// Whether `addition` bills the customer on some day from `effective` on:
/// billable, and not cancelled before `effective`.
fn bills_from(addition: &CwAddition, effective: i64) -> Result<bool, ConnectorError> {
    Ok(addition.billable()
        && opt_date(addition.cancelled_date.as_deref())?.is_none_or(|c| day(&c) >= effective))
}

/// Whether `addition` already is the addition asked for: billable, the new
/// quantity, started on or before `effective` and not cancelled.
fn holds(addition: &CwAddition, new: Decimal, effective: i64) -> Result<bool, ConnectorError> {
    Ok(addition.billable()
        && addition.quantity == new
        && addition.cancelled_date.is_none()
        && opt_date(addition.effective_date.as_deref())?.is_none_or(|s| day(&s) <= effective))
}

/// Adds an addition of `change.product_identifier` to agreement
/// `agreement` at `change.new_quantity` from `change.effective_date`; see
/// the module docs. Returns `None` when planning.
///
/// # Errors
/// `upstream` 422 (not retryable) for a quantity that is not above 0 or no
/// identifier;
/// `upstream` 409 (not retryable) when the agreement already bills the
/// product at another quantity or the catalogue has the identifier twice;
/// `not-found` when no active catalogue item has the identifier; what the
/// requests return.
pub fn run(
    client: &Client,
    calls: &mut Calls,
    agreement: u64,
    change: &QuantityChange,
) -> Result<Option<WriteResult>, ConnectorError> {
    let (identifier, new) = line_to_add(change, &format!("agreement {agreement}"))?;
    let effective = change.effective_date;
    let from = day(&effective);
    let additions_path = format!("/finance/agreements/{agreement}/additions");
    let by_product = format!("product/identifier = {}", quoted(identifier));
    let existing = product_additions(
        client,
        calls,
        &client.list_url(
            &additions_path,
            &[("conditions", &by_product), ("fields", ADDITION_FIELDS)],
        ),
        &format!(
            "look for additions of product {identifier} on agreement {agreement} (an earlier attempt, or one added since the sync)"
        ),
    )?;
    let mut notes = Vec::new();
    for addition in &existing {
        if holds(addition, new, from)? {
            let what = format!(
                "addition {} already bills {} of product {identifier} from {}",
                addition.id,
                new.normalize(),
                starts(addition)?
            );
            return if calls.planning() {
                Ok(None)
            } else {
                unchanged(addition, &change.contract_id, notes, what)
            };
        }
    }
    for addition in &existing {
        if bills_from(addition, from)? {
            return Err(conflict(format!(
                "agreement {agreement} already bills product {identifier} on addition {} (quantity {} from {}); re-sync and approve a change of that line instead of adding another",
                addition.id,
                addition.quantity.normalize(),
                starts(addition)?
            )));
        }
    }
    let unbilled = existing.iter().filter(|a| !a.billable()).count();
    if unbilled > 0 {
        notes.push(format!(
            "agreement {agreement} also has {unbilled} addition(s) of product {identifier} that are not billed (DoNotBill or NoCharge); they were left as they are"
        ));
    }
    let item = catalog_item(client, calls, identifier)?;
    let price = item.price.unwrap_or_default();
    let cost = item.cost.unwrap_or_default();
    let mut body = json!({
        "product": {"id": item.id},
        "quantity": json_number(new)?,
        "unitPrice": json_number(price)?,
        "unitCost": json_number(cost)?,
        "billCustomer": "Billable",
        "effectiveDate": cw_date(&effective),
    });
    if let Some(description) = item
        .customer_description
        .as_ref()
        .or(item.description.as_ref())
        .filter(|d| !d.trim().is_empty())
    {
        body["description"] = description.clone().into();
    }
    if let Some(taxable) = item.taxable_flag {
        body["taxableFlag"] = taxable.into();
    }
    let created = calls.write(
        Step::post(
            client.url(&additions_path),
            body,
            format!(
                "add product {identifier} (catalogue item {}) to agreement {agreement}: quantity {} from {} at the catalogue price {} (cost {})",
                item.id,
                new.normalize(),
                date_to_iso(&effective),
                price.normalize(),
                cost.normalize()
            ),
        ),
        |r| client.send(r),
    )?;
    let created_id = match created {
        Some(response) => Some(response.json::<CwAddition>()?.id),
        None => None,
    };
    // Read the new addition back by id: a date ConnectWise moved would
    // hide it from a list by effective date. While planning the id is
    // known only once the POST answers.
    let read_back = client.url(&format!(
        "{additions_path}/{}",
        created_id.map_or_else(|| "{new addition}".to_owned(), |id| id.to_string())
    ));
    let Some(response) = calls.read_back(
        Step::get(
            &read_back,
            format!(
                "read back the new addition of product {identifier} effective {}",
                date_to_iso(&effective)
            ),
        ),
        |r| client.send(r),
    )?
    else {
        return Ok(None);
    };
    let created_id = created_id.ok_or_else(|| {
        ConnectorError::Internal(format!(
            "POST {}: no addition came back from the write",
            client.url(&additions_path)
        ))
    })?;
    let written: CwAddition = response.json()?;
    stored_as_sent(&written, new, Some(price), Some(effective))?;
    if !holds(&written, new, from)? {
        return Err(ConnectorError::Internal(format!(
            "GET {read_back}: addition {created_id} bills quantity {} ({}), not {} from {}",
            written.quantity.normalize(),
            written
                .bill_customer
                .as_deref()
                .unwrap_or("billCustomer unset"),
            new.normalize(),
            date_to_iso(&effective)
        )));
    }
    notes.push(format!(
        "addition {created_id} added: {} of product {identifier} from {} at {} a unit (the catalogue price)",
        new.normalize(),
        date_to_iso(&effective),
        price.normalize()
    ));
    Ok(Some(WriteResult {
        record_ids: vec![created_id.to_string()],
        changed: true,
        line: written.to_wit(&change.contract_id)?,
        notes,
    }))
}

/// The active catalogue item with `identifier`, read through `calls`.
///
/// # Errors
/// `not-found` when there is none; `upstream` 409 (not retryable) when
/// there are several; what the request returns.
fn catalog_item(
    client: &Client,
    calls: &mut Calls,
    identifier: &str,
) -> Result<CwCatalogItem, ConnectorError> {
    let url = client.list_url(
        "/procurement/catalog",
        &[
            (
                "conditions",
                &format!(
                    "identifier = {} and inactiveFlag = false",
                    quoted(identifier)
                ),
            ),
            ("fields", CATALOG_FIELDS),
        ],
    );
    let items: Vec<CwCatalogItem> = calls
        .read(
            Step::get(
                &url,
                format!("read catalogue item {identifier} for its id, price and cost"),
            ),
            |r| client.send(r),
        )?
        .json()?;
    one_catalogue_entry(
        items
            .into_iter()
            .filter(|i| !i.inactive_flag && i.identifier.eq_ignore_ascii_case(identifier)),
        |i| format!("item {}", i.id),
        identifier,
        || {
            format!(
                "GET {url}: no active item of the ConnectWise product catalogue has identifier {identifier:?}; add it under Procurement → Product Catalog, or map the vendor SKU to an identifier the catalogue has"
            )
        },
    )
}
