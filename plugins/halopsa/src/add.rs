//! Adding a recurring invoice line: a `quantity-change` without a line
//! (approving "new revenue found"), shared by `plan-quantity-change` and
//! `apply-quantity-change` (see [`trueup_connector::plan`]). Paths are the
//! HaloPSA API's, under `base_url`:
//!
//! 1. `GET /api/RecurringInvoice?contract_id={id}&includelines=true`
//!    (paged): the contract's recurring invoices and their lines. The line
//!    is added to the invoice that bills the contract (the first one
//!    switched on, as `list-contracts` reads its cycle). A billed line of
//!    the item on a switched-on invoice that already has the new quantity
//!    from the effective date `e` (it starts on or before `e` and has no
//!    end date) is the change already made, by an earlier attempt or by
//!    hand: nothing is written and the result says `changed = false`. Any
//!    other billed line of the item still billing on or after `e` is
//!    refused (409, not retryable): adding would bill the item twice, so
//!    the approval has to change that line after a re-sync.
//! 2. The catalogue item, its `baseprice` and `costprice`: `GET
//!    /api/Item/{id}` when the identifier is an item id, else `GET
//!    /api/Item?search=…` (paged) for the one item whose `name` is the
//!    identifier (the code lines carry as `item_code`).
//! 3. `POST /api/RecurringInvoice/Lines` with `[{"ihid", "_itemid",
//!    "qty_order", "unit_price", "unit_cost", "startdate"}]` (a new line
//!    names its item as `_itemid`).
//! 4. `GET /api/RecurringInvoice/{ihid}` reads the new line back (by the id
//!    the POST answered); it must have the new quantity.

use rust_decimal::Decimal;
use serde_json::json;
use trueup_connector::paging::with_query;
use trueup_connector::plan::{Calls, Step, json_number, line_to_add, one_catalogue_entry, refusal};
use trueup_connector::prelude::*;
use trueup_connector::psa::{QuantityChange, WriteResult};
use trueup_connector::readback::ReadBack;
use trueup_connector::tolerant::opt_date;
use trueup_connector::values::{date_to_iso, days_from_civil};

use crate::api::{Client, ListPage, list};
use crate::invoices_of;
use crate::model::{HaloInvoice, HaloItem, HaloLine};

/// Items asked for per page when looking an item up by name.
const ITEMS_PAGE: u32 = 100;

/// The most pages of search results read for one item name.
const MAX_ITEM_PAGES: u32 = 20;

/// Whether `line` (on a switched-on invoice) bills the customer on some day
/// from `effective` on: a non-zero price and no end date before it.
fn bills_from(line: &HaloLine, effective: i64) -> Result<bool, ConnectorError> {
    Ok(!line.unit_price.unwrap_or_default().is_zero()
        && opt_date(line.enddate.as_deref())?.is_none_or(|e| days_from_civil(&e) >= effective))
}

/// Whether `line` already is the line asked for: billed, the new quantity,
/// started on or before `effective`, no end date.
fn holds(line: &HaloLine, new: Decimal, effective: i64) -> Result<bool, ConnectorError> {
    Ok(!line.unit_price.unwrap_or_default().is_zero()
        && line.qty_order == new
        && opt_date(line.enddate.as_deref())?.is_none()
        && opt_date(line.startdate.as_deref())?.is_none_or(|s| days_from_civil(&s) <= effective))
}

/// When `line` starts billing, for messages.
fn starts(line: &HaloLine) -> Result<String, ConnectorError> {
    Ok(opt_date(line.startdate.as_deref())?
        .map_or_else(|| "the invoice's start".to_owned(), |d| date_to_iso(&d)))
}

/// The one active catalogue item named `name`, searching page by page.
///
/// # Errors
/// `not-found` when there is none; `upstream` 409 (not retryable) when
/// several share the name; what the requests return.
fn catalogue_item(
    client: &Client,
    calls: &mut Calls,
    name: &str,
) -> Result<HaloItem, ConnectorError> {
    // An identifier that is an item id (a line of no item code is
    // identified by its `_itemid`) is looked up by id.
    if let Ok(id) = name.trim().parse::<i64>() {
        let url = client.api(&format!("/Item/{id}"));
        let item: HaloItem = calls
            .read(
                Step::get(
                    &url,
                    format!("look up catalogue item {id} for its price and cost"),
                ),
                |r| client.send(r),
            )?
            .json()?;
        if item.inactive {
            return Err(ConnectorError::NotFound(format!(
                "GET {url}: HaloPSA item {id} ({}) is inactive; reactivate it or map the vendor SKU to an active item",
                item.name
            )));
        }
        return Ok(item);
    }
    let base = with_query(&client.api("/Item"), &[("search", name), ("order", "id")]);
    let mut found: Vec<HaloItem> = Vec::new();
    for page in 1..=MAX_ITEM_PAGES {
        let url = Client::paged(&base, page, ITEMS_PAGE);
        let answer: ListPage<HaloItem> = list(&calls.read(
            Step::get(
                &url,
                format!("look up catalogue item {name} for its id, price and cost"),
            ),
            |r| client.send(r),
        )?)?;
        let served = answer.items.len();
        found.extend(
            answer
                .items
                .into_iter()
                .filter(|i| !i.inactive && i.name.trim().eq_ignore_ascii_case(name)),
        );
        if served < ITEMS_PAGE as usize
            || u64::from(page) * u64::from(ITEMS_PAGE) >= answer.record_count
        {
            return one_catalogue_entry(
                found,
                |i| format!("item {}", i.id),
                name,
                || {
                    format!(
                        "GET {base}: no active HaloPSA item is named {name:?}; add it to the item catalogue, or map the vendor SKU to an item name Halo has"
                    )
                },
            );
        }
    }
    Err(ConnectorError::Internal(format!(
        "GET {base}: more than {} items match {name:?}; the search does not narrow the catalogue",
        MAX_ITEM_PAGES * ITEMS_PAGE
    )))
}

/// Adds a line of item `change.product_identifier` with quantity
/// `change.new_quantity` from `change.effective_date` to the recurring invoice that bills
/// `contract`; see the module docs. Returns `None` when planning.
///
/// # Errors
/// `upstream` 422 (not retryable) for a quantity that is not above 0 or no
/// identifier; `upstream` 409 (not retryable) when the contract has no
/// switched-on recurring invoice, already bills the item at another
/// quantity, or the catalogue has the name twice; `not-found` for an item
/// the catalogue lacks; `upstream` with Halo's text when it refuses the
/// line; what the requests return.
pub fn run(
    client: &Client,
    calls: &mut Calls,
    contract: i64,
    change: &QuantityChange,
) -> Result<Option<WriteResult>, ConnectorError> {
    let (name, new) = line_to_add(change, &format!("contract {contract}"))?;
    let effective = change.effective_date;
    let from = days_from_civil(&effective);
    let invoices: Vec<HaloInvoice> = invoices_of(client, contract, |url| {
        calls.read(
            Step::get(
                url,
                format!(
                    "read the recurring invoices of contract {contract} and their lines of item {name}"
                ),
            ),
            |r| client.send(r),
        )
    })?;
    let switched_on: Vec<&HaloInvoice> = invoices.iter().filter(|i| !i.disabled).collect();
    let mut notes = Vec::new();
    for invoice in &switched_on {
        for line in invoice.lines().iter().filter(|l| l.is_item(name)) {
            if holds(line, new, from)? {
                if calls.planning() {
                    return Ok(None);
                }
                notes.push(format!(
                    "line {} of recurring invoice {} already bills {} of item {name} from {}; nothing was written",
                    line.id,
                    invoice.id,
                    new.normalize(),
                    starts(line)?
                ));
                return Ok(Some(WriteResult {
                    record_ids: vec![line.id.to_string()],
                    changed: false,
                    line: line.to_wit(&change.contract_id, invoice.disabled)?,
                    notes,
                }));
            }
        }
    }
    for invoice in &switched_on {
        for line in invoice.lines().iter().filter(|l| l.is_item(name)) {
            if bills_from(line, from)? {
                return Err(refusal(
                    409,
                    format!(
                        "contract {contract} already bills item {name} on line {} of recurring invoice {} (quantity {} from {}); re-sync and approve a change of that line instead of adding another",
                        line.id,
                        invoice.id,
                        line.qty_order.normalize(),
                        starts(line)?
                    ),
                ));
            }
        }
    }
    let Some(invoice) = switched_on.first() else {
        return Err(refusal(
            409,
            format!(
                "contract {contract} has no recurring invoice switched on to add item {name} to ({} switched off); create or switch one on in HaloPSA and approve again",
                invoices.len()
            ),
        ));
    };
    if switched_on.len() > 1 {
        notes.push(format!(
            "contract {contract} has {} recurring invoices switched on; the line was added to invoice {}, the one whose cycle Trueup shows",
            switched_on.len(),
            invoice.id
        ));
    }
    let item = catalogue_item(client, calls, name)?;
    let price = item.baseprice.unwrap_or_default();
    let cost = item.costprice.unwrap_or_default();
    let body = json!([{
        "ihid": invoice.id,
        "_itemid": item.id,
        "qty_order": json_number(new)?,
        "unit_price": json_number(price)?,
        "unit_cost": json_number(cost)?,
        "startdate": format!("{}T00:00:00", date_to_iso(&effective)),
    }]);
    let created = calls.write(
        Step::post(
            client.api("/RecurringInvoice/Lines"),
            body,
            format!(
                "add item {name} (item {}) to recurring invoice {} of contract {contract}: quantity {} from {} at the catalogue price {} (cost {})",
                item.id,
                invoice.id,
                new.normalize(),
                date_to_iso(&effective),
                price.normalize(),
                cost.normalize()
            ),
        ),
        |r| client.send(r),
    )?;
    let created_id = match created {
        Some(response) => {
            let lines: Vec<HaloLine> = response.json()?;
            match lines.as_slice() {
                [line] => Some(line.id),
                other => {
                    return Err(ConnectorError::Internal(format!(
                        "POST {}: HaloPSA answered {} lines for the one added",
                        client.api("/RecurringInvoice/Lines"),
                        other.len()
                    )));
                }
            }
        }
        None => None,
    };
    let invoice_url = client.api(&format!("/RecurringInvoice/{}", invoice.id));
    let Some(response) = calls.read_back(
        Step::get(
            &invoice_url,
            format!("read recurring invoice {} back", invoice.id),
        ),
        |r| client.send(r),
    )?
    else {
        return Ok(None);
    };
    let created_id = created_id.ok_or_else(|| {
        ConnectorError::Internal(format!(
            "POST {}: no line came back from the write",
            client.api("/RecurringInvoice/Lines")
        ))
    })?;
    let written: HaloInvoice = response.json()?;
    let line = written
        .lines()
        .iter()
        .find(|l| l.id == created_id)
        .ok_or_else(|| {
            ConnectorError::Internal(format!(
                "GET {invoice_url}: line {created_id} is missing after it was added"
            ))
        })?;
    let mut check = ReadBack::new("HaloPSA", format!("line {created_id}"));
    check.quantity(line.qty_order, new);
    check.unit_price(line.unit_price, Some(price));
    check.date(
        "start date",
        opt_date(line.startdate.as_deref())?,
        Some(effective),
    );
    check.finish()?;
    if opt_date(line.enddate.as_deref())?.is_some() {
        return Err(ConnectorError::Internal(format!(
            "GET {invoice_url}: line {created_id} has quantity {} ending {}, not quantity {} with no end",
            line.qty_order.normalize(),
            line.enddate.as_deref().unwrap_or("never"),
            new.normalize()
        )));
    }
    notes.push(format!(
        "line {created_id} added to recurring invoice {}: {} of item {name} from {} at {} a unit (the catalogue price); Halo bills it on the invoices the schedule creates from then on",
        invoice.id,
        new.normalize(),
        date_to_iso(&effective),
        price.normalize()
    ));
    Ok(Some(WriteResult {
        record_ids: vec![created_id.to_string()],
        changed: true,
        line: line.to_wit(&change.contract_id, written.disabled)?,
        notes,
    }))
}
