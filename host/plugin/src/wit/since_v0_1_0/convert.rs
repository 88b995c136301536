//! Conversions between the 0.1 WIT types and the host's model, validating
//! everything a guest returns: a malformed record is an error that names
//! the item and the field, never a silently wrong figure.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use trueup_core::model::{
    AccountId, Attributes, BillingCycle, BillingTiming, Company, CompanyStatus, Contract,
    ContractStatus, ServiceLine, SkuId, UsageObservation, VendorAccount, VendorId,
};

use super::psa::exports::trueup::connector::psa as wit_psa;
use super::types;
use super::vendor::exports::trueup::connector::vendor as wit_vendor;
use crate::limits::{MAX_PAGE_ITEMS, MAX_PAGE_TEXT_BYTES};
use crate::types::{
    ChangePolicy, ConnectorDescription, Page, PlannedCall, QuantityChange, WriteOutcome,
};

/// Attribute pairs one usage page may hold (a few per row).
pub const MAX_PAGE_ATTRIBUTES: usize = 500_000;

/// The largest decimal scale the encoding allows.
pub const MAX_SCALE: u8 = 18;

/// A guest result the host refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Over a page limit.
    TooLarge(String),
    /// Malformed: what and where.
    Malformed(String),
}

fn malformed(what: String) -> Invalid {
    Invalid::Malformed(what)
}

/// Checks a page's size before converting it.
///
/// # Errors
/// [`Invalid::TooLarge`] over a limit.
pub fn check_page(items: usize, text_bytes: usize) -> Result<(), Invalid> {
    if items > MAX_PAGE_ITEMS {
        return Err(Invalid::TooLarge(format!(
            "a page of {items} items; the limit is {MAX_PAGE_ITEMS} (return smaller pages)"
        )));
    }
    if text_bytes > MAX_PAGE_TEXT_BYTES {
        return Err(Invalid::TooLarge(format!(
            "a page holding {text_bytes} bytes of text; the limit is {MAX_PAGE_TEXT_BYTES}"
        )));
    }
    Ok(())
}

fn attributes_len(attributes: &[(String, String)]) -> usize {
    attributes.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// A WIT decimal as a [`Decimal`].
pub fn decimal(value: &types::Decimal, item: usize, field: &str) -> Result<Decimal, Invalid> {
    if value.scale > MAX_SCALE {
        return Err(malformed(format!(
            "item {item}: {field} has scale {}, more than the {MAX_SCALE} the encoding allows",
            value.scale
        )));
    }
    Ok(Decimal::new(value.digits, u32::from(value.scale)))
}

/// A [`Decimal`] as a WIT decimal.
pub fn to_wit_decimal(value: Decimal, field: &str) -> Result<types::Decimal, Invalid> {
    let normalized = value.normalize();
    match (
        i64::try_from(normalized.mantissa()),
        u8::try_from(normalized.scale()),
    ) {
        (Ok(digits), Ok(scale)) if scale <= MAX_SCALE => Ok(types::Decimal { digits, scale }),
        _ => Err(malformed(format!(
            "{field} {value} does not fit the WIT decimal encoding"
        ))),
    }
}

/// A WIT date as a [`NaiveDate`].
pub fn date(value: &types::Date, item: usize, field: &str) -> Result<NaiveDate, Invalid> {
    NaiveDate::from_ymd_opt(value.year, u32::from(value.month), u32::from(value.day)).ok_or_else(
        || {
            malformed(format!(
                "item {item}: {field} {:04}-{:02}-{:02} is not a calendar date",
                value.year, value.month, value.day
            ))
        },
    )
}

fn opt_date(
    value: &Option<types::Date>,
    item: usize,
    field: &str,
) -> Result<Option<NaiveDate>, Invalid> {
    value.as_ref().map(|d| date(d, item, field)).transpose()
}

/// A [`NaiveDate`] as a WIT date.
pub fn to_wit_date(value: NaiveDate) -> types::Date {
    types::Date {
        year: value.year(),
        month: value.month() as u8,
        day: value.day() as u8,
    }
}

fn required(value: &str, item: usize, field: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(malformed(format!("item {item}: {field} is empty")));
    }
    Ok(())
}

/// `describe`'s answer.
pub fn description(info: types::ConnectorInfo) -> ConnectorDescription {
    ConnectorDescription {
        id: info.id,
        name: info.name,
        version: info.version,
        capabilities: info.capabilities,
    }
}

/// A page of companies.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn companies(page: wit_psa::CompanyPage) -> Result<Page<Company>, Invalid> {
    let text: usize = page
        .items
        .iter()
        .map(|c| c.id.len() + c.name.len() + c.domains.iter().map(String::len).sum::<usize>())
        .sum();
    check_page(page.items.len(), text)?;
    let items = page
        .items
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            required(&c.id, i, "id")?;
            Ok(Company {
                id: c.id.into(),
                name: c.name,
                identifier: c.identifier,
                domains: c
                    .domains
                    .into_iter()
                    .map(|d| d.trim().to_lowercase())
                    .collect(),
                status: if c.active {
                    CompanyStatus::Active
                } else {
                    CompanyStatus::Inactive
                },
                account_links: Vec::new(),
            })
        })
        .collect::<Result<_, Invalid>>()?;
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
        skipped: Vec::new(),
    })
}

/// A page of contracts.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn contracts(page: wit_psa::ContractPage) -> Result<Page<Contract>, Invalid> {
    let text: usize = page
        .items
        .iter()
        .map(|c| c.id.len() + c.name.len() + c.contract_type.len() + attributes_len(&c.attributes))
        .sum();
    check_page(page.items.len(), text)?;
    let items = page
        .items
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            required(&c.id, i, "id")?;
            required(&c.company_id, i, "company-id")?;
            let start_date = opt_date(&c.start_date, i, "start-date")?;
            let end_date = opt_date(&c.end_date, i, "end-date")?;
            if let (Some(start), Some(end)) = (start_date, end_date)
                && end < start
            {
                return Err(malformed(format!(
                    "item {i}: contract {} ends ({end}) before it starts ({start})",
                    c.id
                )));
            }
            Ok(Contract {
                id: c.id.into(),
                company_id: c.company_id.into(),
                name: c.name,
                contract_type: c.contract_type,
                status: match c.status {
                    wit_psa::ContractStatus::Active => ContractStatus::Active,
                    wit_psa::ContractStatus::Inactive => ContractStatus::Inactive,
                    wit_psa::ContractStatus::Cancelled => ContractStatus::Cancelled,
                    wit_psa::ContractStatus::Expired => ContractStatus::Expired,
                },
                billing_cycle: match c.billing_cycle {
                    wit_psa::BillingCycle::None => BillingCycle::None,
                    wit_psa::BillingCycle::OneTime => BillingCycle::OneTime,
                    wit_psa::BillingCycle::Monthly => BillingCycle::Monthly,
                    wit_psa::BillingCycle::Quarterly => BillingCycle::Quarterly,
                    wit_psa::BillingCycle::SemiAnnual => BillingCycle::SemiAnnual,
                    wit_psa::BillingCycle::Annual => BillingCycle::Annual,
                    wit_psa::BillingCycle::Other(name) => BillingCycle::Other(name),
                },
                start_date,
                end_date,
                timing: match c.timing {
                    wit_psa::BillingTiming::Advance => BillingTiming::Advance,
                    wit_psa::BillingTiming::Arrears => BillingTiming::Arrears,
                },
                prorate: c.prorate,
                posted_through: opt_date(&c.posted_through, i, "posted-through")?,
                cycle_anchor: None,
            })
        })
        .collect::<Result<_, Invalid>>()?;
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
        skipped: Vec::new(),
    })
}

/// One recurring service line; `item` names it in errors.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn service(s: wit_psa::RecurringService, item: usize) -> Result<ServiceLine, Invalid> {
    required(&s.id, item, "id")?;
    required(&s.contract_id, item, "contract-id")?;
    Ok(ServiceLine {
        quantity: decimal(&s.quantity, item, "quantity")?,
        unit_price: decimal(&s.unit_price, item, "unit-price")?,
        unit_cost: decimal(&s.unit_cost, item, "unit-cost")?,
        effective_date: opt_date(&s.effective_date, item, "effective-date")?,
        cancelled_date: opt_date(&s.cancelled_date, item, "cancelled-date")?,
        id: s.id.into(),
        contract_id: s.contract_id.into(),
        product_id: s.product_id,
        product_identifier: s.product_identifier.into(),
        description: s.description,
        billable: s.billable,
    })
}

/// A page of recurring services.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn services(page: wit_psa::ServicePage) -> Result<Page<ServiceLine>, Invalid> {
    let text: usize = page
        .items
        .iter()
        .map(|s| {
            s.id.len()
                + s.contract_id.len()
                + s.product_id.len()
                + s.product_identifier.len()
                + s.description.len()
                + attributes_len(&s.attributes)
        })
        .sum();
    check_page(page.items.len(), text)?;
    let items = page
        .items
        .into_iter()
        .enumerate()
        .map(|(i, s)| service(s, i))
        .collect::<Result<_, Invalid>>()?;
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
        skipped: Vec::new(),
    })
}

/// A change to send.
///
/// # Errors
/// [`Invalid`] when a quantity does not fit the encoding.
pub fn quantity_change(change: &QuantityChange) -> Result<wit_psa::QuantityChange, Invalid> {
    Ok(wit_psa::QuantityChange {
        contract_id: change.contract_id.clone(),
        line_id: change.line_id.clone(),
        product_identifier: change.product_identifier.clone(),
        expected_quantity: to_wit_decimal(change.expected_quantity, "expected-quantity")?,
        new_quantity: to_wit_decimal(change.new_quantity, "new-quantity")?,
        effective_date: to_wit_date(change.effective_date),
        policy: match change.policy {
            ChangePolicy::Dated => wit_psa::ChangePolicy::Dated,
            ChangePolicy::Immediate => wit_psa::ChangePolicy::Immediate,
        },
        idempotency_key: change.idempotency_key.clone(),
    })
}

/// The planned calls of a dry run.
pub fn planned_calls(calls: Vec<wit_psa::PlannedCall>) -> Vec<PlannedCall> {
    calls
        .into_iter()
        .map(|c| PlannedCall {
            method: c.method,
            url: c.url,
            body: c.body,
            purpose: c.purpose,
        })
        .collect()
}

/// A write's result.
///
/// # Errors
/// [`Invalid`] when the read-back line is malformed.
pub fn write_outcome(result: wit_psa::WriteResult) -> Result<WriteOutcome, Invalid> {
    let line = service(result.line, 0)?;
    let terms = crate::wit::since_v0_2_0::convert::derived_terms(line);
    Ok(WriteOutcome {
        record_ids: result.record_ids,
        changed: result.changed,
        line: terms.line,
        line_terms: terms.terms,
        notes: result.notes,
    })
}

/// A page of vendor accounts.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn accounts(
    vendor: &VendorId,
    page: wit_vendor::AccountPage,
) -> Result<Page<VendorAccount>, Invalid> {
    let text: usize = page
        .items
        .iter()
        .map(|a| a.id.len() + a.name.len() + attributes_len(&a.attributes))
        .sum();
    check_page(page.items.len(), text)?;
    let items = page
        .items
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            required(&a.id, i, "id")?;
            Ok(VendorAccount {
                vendor: vendor.clone(),
                id: a.id.into(),
                name: a.name,
                domains: a
                    .domains
                    .into_iter()
                    .map(|d| d.trim().to_lowercase())
                    .collect(),
            })
        })
        .collect::<Result<_, Invalid>>()?;
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
        skipped: Vec::new(),
    })
}

/// A page of usage, stamped `observed_at`. Every text of the page is
/// allocated once (rows share it), which keeps a 100,000-device sync small.
///
/// # Errors
/// [`Invalid`] naming the row and field (including string indices past the
/// table's end).
pub fn usage(
    vendor: &VendorId,
    observed_at: DateTime<Utc>,
    page: wit_vendor::UsagePage,
) -> Result<Page<UsageObservation>, Invalid> {
    let text: usize = page.strings.iter().map(String::len).sum();
    check_page(page.rows.len(), text)?;
    if page.attributes.len() > MAX_PAGE_ATTRIBUTES {
        return Err(Invalid::TooLarge(format!(
            "a page with {} attributes; the limit is {MAX_PAGE_ATTRIBUTES}",
            page.attributes.len()
        )));
    }
    let table: Vec<Arc<str>> = page.strings.into_iter().map(Arc::from).collect();
    let pairs = page.attributes;
    let text_at = |index: u32, row: usize, field: &str| -> Result<Arc<str>, Invalid> {
        table.get(index as usize).cloned().ok_or_else(|| {
            malformed(format!(
                "row {row}: {field} refers to string {index}, but the page's table has {} entries",
                table.len()
            ))
        })
    };
    let mut items = Vec::with_capacity(page.rows.len());
    for (i, u) in page.rows.into_iter().enumerate() {
        let account = text_at(u.account_id, i, "account-id")?;
        let sku = text_at(u.sku_id, i, "sku-id")?;
        required(&account, i, "account-id")?;
        required(&sku, i, "sku-id")?;
        let first = u.first_attribute as usize;
        let slice = first
            .checked_add(u.attribute_count as usize)
            .and_then(|end| pairs.get(first..end))
            .ok_or_else(|| {
                malformed(format!(
                    "row {i}: attributes {first}..+{} are outside the page's {} attributes",
                    u.attribute_count,
                    pairs.len()
                ))
            })?;
        let mut attributes = Vec::with_capacity(slice.len());
        for &(k, v) in slice {
            attributes.push((
                text_at(k, i, "attribute key")?,
                text_at(v, i, "attribute value")?,
            ));
        }
        items.push(UsageObservation {
            vendor: vendor.clone(),
            account: AccountId::from(account),
            sku_id: SkuId::from(sku),
            sku_name: text_at(u.sku_name, i, "sku-name")?,
            quantity: decimal(&u.quantity, i, "quantity")?,
            unit: text_at(u.unit, i, "unit")?,
            unit_cost: u
                .unit_cost
                .as_ref()
                .map(|c| decimal(c, i, "unit-cost"))
                .transpose()?,
            billing_term: u
                .billing_term
                .map(|t| text_at(t, i, "billing-term"))
                .transpose()?,
            commitment_end: opt_date(&u.commitment_end, i, "commitment-end")?,
            attributes: Attributes::new(attributes),
            observed_at,
        });
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
        skipped: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_convert_exactly_and_refuse_bad_scales() {
        let wit = types::Decimal {
            digits: 2640,
            scale: 2,
        };
        assert_eq!(decimal(&wit, 0, "q"), Ok(Decimal::new(2640, 2)));
        let bad = types::Decimal {
            digits: 1,
            scale: 19,
        };
        assert!(
            matches!(decimal(&bad, 3, "quantity"), Err(Invalid::Malformed(m)) if m.contains("item 3: quantity"))
        );
        let back = to_wit_decimal(Decimal::new(26400, 3), "x").expect("fits");
        assert_eq!((back.digits, back.scale), (264, 1));
    }

    #[test]
    fn impossible_dates_name_item_and_field() {
        let bad = types::Date {
            year: 2025,
            month: 2,
            day: 30,
        };
        let error = date(&bad, 7, "commitment-end").expect_err("Feb 30");
        assert_eq!(
            error,
            Invalid::Malformed("item 7: commitment-end 2025-02-30 is not a calendar date".into())
        );
    }

    #[test]
    fn oversized_pages_are_refused() {
        assert!(matches!(
            check_page(MAX_PAGE_ITEMS + 1, 0),
            Err(Invalid::TooLarge(_))
        ));
        assert!(check_page(MAX_PAGE_ITEMS, 0).is_ok());
    }
}
