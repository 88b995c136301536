//! Quantity write-back, shared by `plan-quantity-change` (which lists the
//! calls) and `apply-quantity-change` (which makes them), see
//! [`trueup_connector::plan`].
//!
//! - **dated**: ConnectWise keeps a line's history as effective/cancelled
//!   date pairs, so a change from date `e` cancels the addition on `e − 1`
//!   (`PATCH …/additions/{id}` with `cancelledDate`, the last day billed)
//!   and adds a new addition of the same product, prices and
//!   `billCustomer` effective on `e` (`POST …/additions`). An addition that
//!   itself starts on or after `e` is patched in place instead.
//! - **immediate**: `PATCH …/additions/{id}` with a JSON Patch replacing
//!   `quantity`.
//!
//! Idempotency (the host may retry after a crash without knowing whether
//! the first attempt landed): before writing, the agreement's additions of
//! the product are read; a step already done is skipped (the old addition
//! already cancelled on `e − 1`, an addition with the new quantity already
//! effective on `e`), and when both are done nothing is written and the
//! result says `changed = false`.
//!
//! After the write the addition is read back and its quantity, unit price
//! and effective date compared with what was sent ([`stored_as_sent`]): a
//! ConnectWise that stored something else (a date normalised, a price
//! recalculated from the catalogue, a quantity rounded) fails the call
//! with both values named, and nothing is written again.
//!
//! A change without a line adds an addition: see [`crate::add`].

use rust_decimal::Decimal;
use serde_json::json;
use trueup_connector::plan::{Calls, Step, json_number, refusal};
use trueup_connector::prelude::*;
use trueup_connector::psa::{ChangePolicy, QuantityChange, WriteResult};
use trueup_connector::readback::ReadBack;
use trueup_connector::tolerant::opt_date;
use trueup_connector::values::{self, civil_from_days, date_to_iso, days_from_civil};

use crate::api::{Client, cw_date, record_id};
use crate::model::{ADDITION_FIELDS, CwAddition};

/// The most pages of one agreement's additions read while looking for an
/// earlier attempt: 10,000 additions of one product on one agreement is
/// far beyond any real agreement.
const MAX_ADDITION_PAGES: usize = 10;

/// A write refused before it is sent, because the PSA does not hold what
/// the change expects: `upstream` 409, not retryable.
pub(crate) fn conflict(message: String) -> ConnectorError {
    refusal(409, message)
}

pub(crate) fn day(date: &Date) -> i64 {
    days_from_civil(date)
}

/// Runs the change: lists its calls when `calls` plans (returning `None`),
/// makes them when it applies. A change without a line adds one
/// ([`crate::add::run`]).
///
/// # Errors
/// `not-found` for an unknown agreement, addition or catalogue product,
/// `upstream` when ConnectWise refuses a write (or a non-retryable 409 /
/// 422 when the connector refuses it first: the line is not the product
/// the change names, the product is already billed), and what the
/// requests return.
pub fn run(
    change: &QuantityChange,
    calls: &mut Calls,
) -> Result<Option<WriteResult>, ConnectorError> {
    let client = Client::new()?;
    let agreement = record_id("agreement", &change.contract_id)?;
    let Some(line_id) = change.line_id.as_deref() else {
        return crate::add::run(&client, calls, agreement, change);
    };
    let new = values::to_decimal(&change.new_quantity);
    let line = record_id("addition", line_id)?;
    let expected = values::to_decimal(&change.expected_quantity);
    let line_url = client.url(&format!("/finance/agreements/{agreement}/additions/{line}"));
    let current: CwAddition = calls
        .read(
            Step::get(
                &line_url,
                format!("read addition {line} of agreement {agreement}"),
            ),
            |r| client.send(r),
        )?
        .json()?;
    let identifier = current.product.identifier.clone().unwrap_or_default();
    if !change.product_identifier.trim().is_empty()
        && !identifier.eq_ignore_ascii_case(change.product_identifier.trim())
    {
        return Err(conflict(format!(
            "addition {line} of agreement {agreement} is product {identifier:?}, not {:?}; re-sync and approve again",
            change.product_identifier
        )));
    }
    let mut notes = Vec::new();
    if current.quantity != expected && current.quantity != new {
        notes.push(format!(
            "ConnectWise held quantity {} on addition {line}, not the {} Trueup last read",
            current.quantity.normalize(),
            expected.normalize()
        ));
    }
    let agreement_id = change.contract_id.as_str();
    match change.policy {
        ChangePolicy::Immediate => {
            immediate(&client, calls, agreement_id, &line_url, current, new, notes)
        }
        ChangePolicy::Dated => {
            let starts = opt_date(current.effective_date.as_deref())?;
            if starts.is_some_and(|s| day(&s) >= day(&change.effective_date)) {
                notes.push(format!(
                    "addition {line} itself starts on {}, not before {}: its quantity was changed in place",
                    starts.map(|s| date_to_iso(&s)).unwrap_or_default(),
                    date_to_iso(&change.effective_date)
                ));
                return immediate(&client, calls, agreement_id, &line_url, current, new, notes);
            }
            dated(&client, calls, agreement, change, current, new, notes)
        }
    }
}

/// Checks the addition read back after a write against what was sent
/// (`quantity`, `unit_price`, `effective`; `None` = not part of the write
/// and held before it, so checked as unchanged where known).
///
/// # Errors
/// `internal` naming each field ConnectWise stored differently, with both
/// values (see [`ReadBack`]).
pub(crate) fn stored_as_sent(
    stored: &CwAddition,
    quantity: Decimal,
    unit_price: Option<Decimal>,
    effective: Option<Date>,
) -> Result<(), ConnectorError> {
    let mut check = ReadBack::new("ConnectWise", format!("addition {}", stored.id));
    check.quantity(stored.quantity, quantity);
    check.unit_price(stored.unit_price, unit_price);
    check.date(
        "effective date",
        opt_date(stored.effective_date.as_deref())?,
        effective,
    );
    check.finish()
}

/// The result when ConnectWise already holds the change.
pub(crate) fn unchanged(
    addition: &CwAddition,
    agreement: &str,
    mut notes: Vec<String>,
    what: String,
) -> Result<Option<WriteResult>, ConnectorError> {
    notes.push(format!("{what}; nothing was written"));
    Ok(Some(WriteResult {
        record_ids: vec![addition.id.to_string()],
        changed: false,
        line: addition.to_wit(agreement)?,
        notes,
    }))
}

fn immediate(
    client: &Client,
    calls: &mut Calls,
    agreement: &str,
    line_url: &str,
    current: CwAddition,
    new: Decimal,
    mut notes: Vec<String>,
) -> Result<Option<WriteResult>, ConnectorError> {
    if current.quantity == new {
        let what = format!(
            "addition {} already has quantity {}",
            current.id,
            new.normalize()
        );
        return if calls.planning() {
            Ok(None)
        } else {
            unchanged(&current, agreement, notes, what)
        };
    }
    let patch = json!([{"op": "replace", "path": "quantity", "value": json_number(new)?}]);
    calls.write(
        Step::patch(
            line_url,
            patch,
            format!(
                "set the quantity of addition {} from {} to {} now",
                current.id,
                current.quantity.normalize(),
                new.normalize()
            ),
        ),
        |r| client.send(r),
    )?;
    let Some(response) = calls.read_back(
        Step::get(line_url, format!("read addition {} back", current.id)),
        |r| client.send(r),
    )?
    else {
        return Ok(None);
    };
    let written: CwAddition = response.json()?;
    stored_as_sent(
        &written,
        new,
        current.unit_price,
        opt_date(current.effective_date.as_deref())?,
    )?;
    notes.push(format!(
        "quantity of addition {} changed in place from {} to {}",
        current.id,
        current.quantity.normalize(),
        new.normalize()
    ));
    Ok(Some(WriteResult {
        record_ids: vec![written.id.to_string()],
        changed: true,
        line: written.to_wit(agreement)?,
        notes,
    }))
}

/// Reads every addition `url` (an additions list with `conditions`)
/// answers, following forward-only pages, listing each request in a plan.
pub(crate) fn product_additions(
    client: &Client,
    calls: &mut Calls,
    url: &str,
    purpose: &str,
) -> Result<Vec<CwAddition>, ConnectorError> {
    let mut all = Vec::new();
    let mut after = 0;
    for _ in 0..MAX_ADDITION_PAGES {
        let page_url = if after == 0 {
            url.to_owned()
        } else {
            trueup_connector::paging::with_query(url, &[("pageId", &after.to_string())])
        };
        let response = calls.read(Step::get(&page_url, purpose), |r| {
            client.send(r.header("pagination-type", "forward-only"))
        })?;
        let next = response
            .header("link")
            .and_then(|l| trueup_connector::paging::link_rel(l, "next"));
        let page: Vec<CwAddition> = response.json()?;
        let last = page.last().map_or(after, |a| a.id);
        all.extend(page);
        match next {
            Some(_) if last > after => after = last,
            Some(link) => {
                return Err(trueup_connector::paging::not_advancing(
                    &format!("GET {page_url}"),
                    &format!("link {link:?}"),
                ));
            }
            None => return Ok(all),
        }
    }
    Err(ConnectorError::Internal(format!(
        "GET {url}: more than {MAX_ADDITION_PAGES} pages of additions for one product on one agreement"
    )))
}

fn dated(
    client: &Client,
    calls: &mut Calls,
    agreement: u64,
    change: &QuantityChange,
    current: CwAddition,
    new: Decimal,
    mut notes: Vec<String>,
) -> Result<Option<WriteResult>, ConnectorError> {
    let agreement_id = change.contract_id.as_str();
    let effective = change.effective_date;
    let last_day = civil_from_days(day(&effective) - 1);
    let product = current.product.id.ok_or_else(|| {
        ConnectorError::Internal(format!(
            "addition {} of agreement {agreement} has no product id",
            current.id
        ))
    })?;
    let conditions = format!(
        "product/id = {product} and effectiveDate = [{}]",
        cw_date(&effective)
    );
    let list_url = client.list_url(
        &format!("/finance/agreements/{agreement}/additions"),
        &[("conditions", &conditions), ("fields", ADDITION_FIELDS)],
    );
    let from_e = product_additions(
        client,
        calls,
        &list_url,
        &format!(
            "look for an addition of product {product} effective {} left by an earlier attempt",
            date_to_iso(&effective)
        ),
    )?;
    let holds_new = |a: &CwAddition| -> Result<bool, ConnectorError> {
        Ok(a.id != current.id
            && a.quantity == new
            && opt_date(a.cancelled_date.as_deref())?.is_none_or(|c| day(&c) >= day(&effective)))
    };
    let mut existing = None;
    for addition in &from_e {
        if holds_new(addition)? {
            existing = Some(addition.clone());
            break;
        }
    }
    let current_end = opt_date(current.cancelled_date.as_deref())?;
    let old_done = current_end.is_some_and(|c| day(&c) <= day(&last_day));
    if current.quantity == new && !old_done {
        let what = format!(
            "addition {} already bills quantity {} on {}",
            current.id,
            new.normalize(),
            date_to_iso(&effective)
        );
        return if calls.planning() {
            Ok(None)
        } else {
            unchanged(&current, agreement_id, notes, what)
        };
    }
    if let (Some(found), true) = (&existing, old_done) {
        let what = format!(
            "addition {} ends on {} and addition {} already bills quantity {} from {}",
            current.id,
            current_end.map(|c| date_to_iso(&c)).unwrap_or_default(),
            found.id,
            new.normalize(),
            date_to_iso(&effective)
        );
        return if calls.planning() {
            Ok(None)
        } else {
            unchanged(found, agreement_id, notes, what)
        };
    }
    let mut record_ids = Vec::new();
    let line_url = client.url(&format!(
        "/finance/agreements/{agreement}/additions/{}",
        current.id
    ));
    if !old_done {
        let patch =
            json!([{"op": "replace", "path": "cancelledDate", "value": cw_date(&last_day)}]);
        calls.write(
            Step::patch(
                &line_url,
                patch,
                format!(
                    "end addition {} (quantity {}) on {}, the day before the change",
                    current.id,
                    current.quantity.normalize(),
                    date_to_iso(&last_day)
                ),
            ),
            |r| client.send(r),
        )?;
        record_ids.push(current.id.to_string());
        notes.push(format!(
            "addition {} (quantity {}) now ends on {}",
            current.id,
            current.quantity.normalize(),
            date_to_iso(&last_day)
        ));
    } else {
        notes.push(format!(
            "addition {} already ended on {}",
            current.id,
            current_end.map(|c| date_to_iso(&c)).unwrap_or_default()
        ));
    }
    let billing: Option<u64> = match &existing {
        Some(found) => {
            record_ids.push(found.id.to_string());
            notes.push(format!(
                "addition {} already billed quantity {} from {} (an earlier attempt)",
                found.id,
                new.normalize(),
                date_to_iso(&effective)
            ));
            Some(found.id)
        }
        None => {
            let mut body = json!({
                "product": {"id": product},
                "quantity": json_number(new)?,
                "billCustomer": current.bill_customer.clone().unwrap_or_else(|| "Billable".to_owned()),
                "effectiveDate": cw_date(&effective),
            });
            if let Some(price) = current.unit_price {
                body["unitPrice"] = json_number(price)?;
            }
            if let Some(cost) = current.unit_cost {
                body["unitCost"] = json_number(cost)?;
            }
            if let Some(included) = current.less_included {
                body["lessIncluded"] = json_number(included)?;
            }
            if let Some(taxable) = current.taxable_flag {
                body["taxableFlag"] = taxable.into();
            }
            if let Some(description) = &current.description {
                body["description"] = description.clone().into();
            }
            if let Some(invoice) = &current.invoice_description {
                body["invoiceDescription"] = invoice.clone().into();
            }
            let created = calls.write(
                Step::post(
                    client.url(&format!("/finance/agreements/{agreement}/additions")),
                    body,
                    format!(
                        "add an addition of product {} with quantity {} from {}, at the same prices",
                        current.product.identifier.clone().unwrap_or_default(),
                        new.normalize(),
                        date_to_iso(&effective)
                    ),
                ),
                |r| client.send(r),
            )?;
            match created {
                Some(created) => {
                    let created: CwAddition = created.json()?;
                    record_ids.push(created.id.to_string());
                    notes.push(format!(
                        "addition {} bills quantity {} from {}",
                        created.id,
                        new.normalize(),
                        date_to_iso(&effective)
                    ));
                    Some(created.id)
                }
                None => None,
            }
        }
    };
    // Read back the addition that bills the new quantity — the one created
    // now, or the one an earlier attempt left — by id: a date ConnectWise
    // moved would hide it from a list by effective date. While planning the
    // id is known only once the POST answers.
    let read_url = client.url(&format!(
        "/finance/agreements/{agreement}/additions/{}",
        billing.map_or_else(|| "{new addition}".to_owned(), |id| id.to_string())
    ));
    let Some(response) = calls.read_back(
        Step::get(
            &read_url,
            format!(
                "read back the addition of product {product} that bills quantity {} from {}",
                new.normalize(),
                date_to_iso(&effective)
            ),
        ),
        |r| client.send(r),
    )?
    else {
        return Ok(None);
    };
    let written: CwAddition = response.json()?;
    stored_as_sent(&written, new, current.unit_price, Some(effective))?;
    Ok(Some(WriteResult {
        record_ids,
        changed: true,
        line: written.to_wit(agreement_id)?,
        notes,
    }))
}
