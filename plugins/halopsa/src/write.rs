//! Quantity write-back, shared by `plan-quantity-change` and
//! `apply-quantity-change` (see [`trueup_connector::plan`]).
//!
//! 1. `GET /api/RecurringInvoice?contract_id={contract}&includelines=true`
//!    finds the line and its recurring invoice (`ihid`);
//! 2. when the line already has the new quantity nothing is written
//!    (`changed = false`): applying twice writes once;
//! 3. otherwise `POST /api/RecurringInvoice/updatelines` with
//!    `[{"id": line, "ihid": invoice, "qty_order": new}]`;
//! 4. `GET /api/RecurringInvoice/{ihid}` reads the line back: it must
//!    have the quantity sent and keep its unit price and start date. A
//!    Halo that stored anything else (a quantity rounded, the price
//!    recalculated from the item, the start moved) fails the call naming
//!    both values ([`ReadBack`]); nothing is written again.
//!
//! Halo keeps no dated history on recurring invoice lines, so a `dated`
//! change is made in place too; it bills from the next invoice the
//! schedule creates, which the result's notes name.
//!
//! A change without a line adds one: see [`crate::add`]. Both fetch the
//! access token when the instance has none, also while planning (the host
//! allows a dry run the token exchange).

use serde_json::json;
use trueup_connector::plan::{Calls, Step, json_number, refusal};
use trueup_connector::prelude::*;
use trueup_connector::psa::{ChangePolicy, QuantityChange, WriteResult};
use trueup_connector::readback::ReadBack;
use trueup_connector::tolerant::opt_date;
use trueup_connector::values::{self, date_to_iso};

use crate::api::{Client, record_id};
use crate::invoices_of;
use crate::model::HaloInvoice;

/// Runs the change: lists its calls when `calls` plans (returning `None`),
/// makes them when it applies.
///
/// A change without a line adds one ([`crate::add::run`]).
///
/// # Errors
/// `not-found` for a line that is not on the contract, `upstream` when Halo
/// refuses the update (or a non-retryable 409 when the line is not the
/// product the change names), and what the requests return.
pub fn run(
    change: &QuantityChange,
    calls: &mut Calls,
) -> Result<Option<WriteResult>, ConnectorError> {
    let contract = record_id("contract", &change.contract_id)?;
    let client = Client::new()?;
    let Some(line_id) = change.line_id.as_deref() else {
        return crate::add::run(&client, calls, contract, change);
    };
    let new = values::to_decimal(&change.new_quantity);
    let line_id = record_id("recurring invoice line", line_id)?;
    let send = |r| client.send(r);
    let invoices: Vec<HaloInvoice> = invoices_of(&client, contract, |url| {
        calls.read(
            Step::get(
                url,
                format!("find line {line_id} among the recurring invoices of contract {contract}"),
            ),
            send,
        )
    })?;
    let (invoice, line) = invoices
        .iter()
        .find_map(|i| {
            i.lines()
                .iter()
                .find(|l| l.id == line_id)
                .map(|l| (i, l.clone()))
        })
        .ok_or_else(|| {
            ConnectorError::NotFound(format!(
                "no recurring invoice of contract {contract} has line {line_id}"
            ))
        })?;
    let identifier = line.identifier();
    if !change.product_identifier.trim().is_empty() && !line.is_item(&change.product_identifier) {
        return Err(refusal(
            409,
            format!(
                "line {line_id} is item {identifier:?}, not {:?}; re-sync and approve again",
                change.product_identifier
            ),
        ));
    }
    let mut notes = Vec::new();
    if change.policy == ChangePolicy::Dated {
        notes.push(format!(
            "HaloPSA keeps no dated history on recurring invoice lines: the quantity is changed in place and bills from the next invoice recurring invoice {} creates, not exactly from {}",
            invoice.id,
            date_to_iso(&change.effective_date)
        ));
    }
    if line.qty_order == new {
        if calls.planning() {
            return Ok(None);
        }
        notes.push(format!(
            "line {line_id} already has quantity {}; nothing was written",
            new.normalize()
        ));
        return Ok(Some(WriteResult {
            record_ids: vec![line_id.to_string()],
            changed: false,
            line: line.to_wit(&change.contract_id, invoice.disabled)?,
            notes,
        }));
    }
    let body = json!([{"id": line_id, "ihid": invoice.id, "qty_order": json_number(new)?}]);
    calls.write(
        Step::post(
            client.api("/RecurringInvoice/updatelines"),
            body,
            format!(
                "set the quantity of line {line_id} ({identifier}) on recurring invoice {} from {} to {}",
                invoice.id,
                line.qty_order.normalize(),
                new.normalize()
            ),
        ),
        send,
    )?;
    let invoice_url = client.api(&format!("/RecurringInvoice/{}", invoice.id));
    let Some(response) = calls.read_back(
        Step::get(
            &invoice_url,
            format!("read recurring invoice {} back", invoice.id),
        ),
        send,
    )?
    else {
        return Ok(None);
    };
    let written: HaloInvoice = response.json()?;
    let after = written
        .lines()
        .iter()
        .find(|l| l.id == line_id)
        .ok_or_else(|| {
            ConnectorError::Internal(format!(
                "GET {invoice_url}: line {line_id} is missing after the update"
            ))
        })?;
    let mut check = ReadBack::new("HaloPSA", format!("line {line_id}"));
    check.quantity(after.qty_order, new);
    check.unit_price_kept(after.unit_price, line.unit_price);
    // The update sends no date: the line's start must stay as it was.
    check.date_kept(
        "start date",
        opt_date(after.startdate.as_deref())?,
        opt_date(line.startdate.as_deref())?,
    );
    check.finish()?;
    notes.push(format!(
        "line {line_id} changed from {} to {}",
        line.qty_order.normalize(),
        new.normalize()
    ));
    Ok(Some(WriteResult {
        record_ids: vec![line_id.to_string()],
        changed: true,
        line: after.to_wit(&change.contract_id, written.disabled)?,
        notes,
    }))
}
