//! Conversions between the 0.2 WIT types and the host's model.
//!
//! Everything 0.2 shares with 0.1 is lowered onto the 0.1 WIT shapes and
//! converted by [`v1::convert`], so both versions are validated by one code
//! path (required ids, real dates, decimal scales, page limits). What 0.2
//! adds (catalogue, anchors, billing kinds, commitments, skipped records) is
//! converted here and carried beside the 0.1 records.

use trueup_core::catalog::{
    BillingKind, CatalogProduct, ContractTerms, LineTerms, RecordExclusion,
};
use trueup_core::model::{BillingCycle, Contract, ProductId, ServiceLine};

use super::psa::exports::trueup::connector::psa as wit_psa;
use super::types;
use super::vendor::exports::trueup::connector::vendor as wit_vendor;
use crate::types::{ChangePolicy, CostChange, Page, PsaContract, PsaLine, QuantityChange};
use crate::wit::since_v0_1_0 as v1;

pub use v1::convert::Invalid;

type V1Psa = v1::psa::exports::trueup::connector::psa::ContractPage;
use v1::psa::exports::trueup::connector::psa as v1_psa;
use v1::vendor::exports::trueup::connector::vendor as v1_vendor;

fn lower_decimal(value: &types::Decimal) -> v1::types::Decimal {
    v1::types::Decimal {
        digits: value.digits,
        scale: value.scale,
    }
}

fn lower_date(value: &types::Date) -> v1::types::Date {
    v1::types::Date {
        year: value.year,
        month: value.month,
        day: value.day,
    }
}

fn opt_date(
    value: &Option<types::Date>,
    item: usize,
    field: &str,
) -> Result<Option<chrono::NaiveDate>, Invalid> {
    value
        .as_ref()
        .map(|d| v1::convert::date(&lower_date(d), item, field))
        .transpose()
}

/// A 0.2 connector error as 0.1's, for the session's one classifier.
pub fn lower_error(error: types::ConnectorError) -> v1::types::ConnectorError {
    use types::ConnectorError as E;
    match error {
        E::AuthFailed(m) => v1::types::ConnectorError::AuthFailed(m),
        E::RateLimited(ms) => v1::types::ConnectorError::RateLimited(ms),
        E::NotFound(m) => v1::types::ConnectorError::NotFound(m),
        E::InvalidConfig(m) => v1::types::ConnectorError::InvalidConfig(m),
        E::Upstream(u) => v1::types::ConnectorError::Upstream(v1::types::UpstreamFailure {
            status: u.status,
            body: u.body,
            retryable: u.retryable,
        }),
        E::Internal(m) => v1::types::ConnectorError::Internal(m),
    }
}

/// `describe`'s answer, as 0.1's.
pub fn lower_info(info: types::ConnectorInfo) -> v1::types::ConnectorInfo {
    v1::types::ConnectorInfo {
        id: info.id,
        name: info.name,
        version: info.version,
        capabilities: info.capabilities,
    }
}

/// Records a page skipped, as exclusions. The texts are capped like any
/// other page text (the page check counts them).
pub fn skipped(records: Vec<types::SkippedRecord>) -> Vec<RecordExclusion> {
    records
        .into_iter()
        .map(|r| RecordExclusion {
            kind: r.kind,
            id: r.id,
            field: r.field,
            seen: r.seen,
            reason: r.reason,
        })
        .collect()
}

fn skipped_len(records: &[types::SkippedRecord]) -> usize {
    records
        .iter()
        .map(|r| r.kind.len() + r.id.len() + r.field.len() + r.seen.len() + r.reason.len())
        .sum()
}

/// A page of companies.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn companies(page: wit_psa::CompanyPage) -> Result<Page<trueup_core::model::Company>, Invalid> {
    let excluded_text = skipped_len(&page.skipped);
    let lowered = v1_psa::CompanyPage {
        items: page
            .items
            .into_iter()
            .map(|c| v1_psa::Company {
                id: c.id,
                name: c.name,
                identifier: c.identifier,
                domains: c.domains,
                active: c.active,
                attributes: c.attributes,
            })
            .collect(),
        next_cursor: page.next_cursor,
    };
    check_skipped(excluded_text)?;
    let mut converted = v1::convert::companies(lowered)?;
    converted.skipped = skipped(page.skipped);
    Ok(converted)
}

fn check_skipped(text: usize) -> Result<(), Invalid> {
    if text > crate::limits::MAX_PAGE_TEXT_BYTES {
        return Err(Invalid::TooLarge(format!(
            "a page whose skipped records hold {text} bytes of text; the limit is {} (truncate `seen`)",
            crate::limits::MAX_PAGE_TEXT_BYTES
        )));
    }
    Ok(())
}

fn lower_cycle(cycle: wit_psa::BillingCycle) -> v1_psa::BillingCycle {
    match cycle {
        wit_psa::BillingCycle::None => v1_psa::BillingCycle::None,
        wit_psa::BillingCycle::OneTime => v1_psa::BillingCycle::OneTime,
        wit_psa::BillingCycle::Monthly => v1_psa::BillingCycle::Monthly,
        wit_psa::BillingCycle::Quarterly => v1_psa::BillingCycle::Quarterly,
        wit_psa::BillingCycle::SemiAnnual => v1_psa::BillingCycle::SemiAnnual,
        wit_psa::BillingCycle::Annual => v1_psa::BillingCycle::Annual,
        wit_psa::BillingCycle::Other(name) => v1_psa::BillingCycle::Other(name),
    }
}

fn cycle(cycle: wit_psa::BillingCycle) -> BillingCycle {
    match cycle {
        wit_psa::BillingCycle::None => BillingCycle::None,
        wit_psa::BillingCycle::OneTime => BillingCycle::OneTime,
        wit_psa::BillingCycle::Monthly => BillingCycle::Monthly,
        wit_psa::BillingCycle::Quarterly => BillingCycle::Quarterly,
        wit_psa::BillingCycle::SemiAnnual => BillingCycle::SemiAnnual,
        wit_psa::BillingCycle::Annual => BillingCycle::Annual,
        wit_psa::BillingCycle::Other(name) => BillingCycle::Other(name),
    }
}

/// A page of contracts with their billing anchors.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn contracts(page: wit_psa::ContractPage) -> Result<Page<PsaContract>, Invalid> {
    check_skipped(skipped_len(&page.skipped))?;
    let anchors = page
        .items
        .iter()
        .enumerate()
        .map(|(i, c)| opt_date(&c.billing_anchor, i, "billing-anchor"))
        .collect::<Result<Vec<_>, Invalid>>()?;
    let lowered = V1Psa {
        items: page
            .items
            .into_iter()
            .map(|c| v1_psa::Contract {
                id: c.id,
                company_id: c.company_id,
                name: c.name,
                contract_type: c.contract_type,
                status: match c.status {
                    wit_psa::ContractStatus::Active => v1_psa::ContractStatus::Active,
                    wit_psa::ContractStatus::Inactive => v1_psa::ContractStatus::Inactive,
                    wit_psa::ContractStatus::Cancelled => v1_psa::ContractStatus::Cancelled,
                    wit_psa::ContractStatus::Expired => v1_psa::ContractStatus::Expired,
                },
                billing_cycle: lower_cycle(c.billing_cycle),
                start_date: c.start_date.as_ref().map(lower_date),
                end_date: c.end_date.as_ref().map(lower_date),
                timing: match c.timing {
                    wit_psa::BillingTiming::Advance => v1_psa::BillingTiming::Advance,
                    wit_psa::BillingTiming::Arrears => v1_psa::BillingTiming::Arrears,
                },
                prorate: c.prorate,
                posted_through: c.posted_through.as_ref().map(lower_date),
                attributes: c.attributes,
            })
            .collect(),
        next_cursor: page.next_cursor,
    };
    let converted = v1::convert::contracts(lowered)?;
    Ok(Page {
        items: converted
            .items
            .into_iter()
            .zip(anchors)
            .map(|(contract, billing_anchor)| with_anchor(contract, billing_anchor))
            .collect(),
        next_cursor: converted.next_cursor,
        skipped: skipped(page.skipped),
    })
}

/// A contract and its terms; `billing_anchor` `None` for a 0.1 connector.
pub fn with_anchor(contract: Contract, billing_anchor: Option<chrono::NaiveDate>) -> PsaContract {
    PsaContract {
        terms: ContractTerms {
            contract_id: contract.id.clone(),
            billing_anchor,
        },
        contract,
    }
}

/// A 0.1 line with the terms the host derives for it: billing kind from
/// `billable` and the price, no commitment.
pub fn derived_terms(line: ServiceLine) -> PsaLine {
    PsaLine {
        terms: LineTerms {
            line_id: line.id.clone(),
            billing_kind: BillingKind::derive(line.billable, line.unit_price),
            commitment_end: None,
        },
        line,
    }
}

fn lower_service(s: wit_psa::RecurringService) -> v1_psa::RecurringService {
    v1_psa::RecurringService {
        id: s.id,
        contract_id: s.contract_id,
        product_id: s.product_id,
        product_identifier: s.product_identifier,
        description: s.description,
        quantity: lower_decimal(&s.quantity),
        unit_price: lower_decimal(&s.unit_price),
        unit_cost: lower_decimal(&s.unit_cost),
        effective_date: s.effective_date.as_ref().map(lower_date),
        cancelled_date: s.cancelled_date.as_ref().map(lower_date),
        billable: s.billable,
        attributes: s.attributes,
    }
}

fn billing_kind(kind: wit_psa::BillingKind) -> BillingKind {
    match kind {
        wit_psa::BillingKind::Billed => BillingKind::Billed,
        wit_psa::BillingKind::Included => BillingKind::Included,
        wit_psa::BillingKind::ZeroPriced => BillingKind::ZeroPriced,
    }
}

/// One line and its terms; `item` names it in errors.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn service(s: wit_psa::RecurringService, item: usize) -> Result<PsaLine, Invalid> {
    let commitment_end = opt_date(&s.commitment_end, item, "commitment-end")?;
    let kind = billing_kind(s.billing_kind);
    let line = v1::convert::service(lower_service(s), item)?;
    Ok(PsaLine {
        terms: LineTerms {
            line_id: line.id.clone(),
            billing_kind: kind,
            commitment_end,
        },
        line,
    })
}

/// A page of recurring services with their terms.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn services(page: wit_psa::ServicePage) -> Result<Page<PsaLine>, Invalid> {
    check_skipped(skipped_len(&page.skipped))?;
    let terms = page
        .items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok((
                billing_kind(s.billing_kind),
                opt_date(&s.commitment_end, i, "commitment-end")?,
            ))
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    let lowered = v1_psa::ServicePage {
        items: page.items.into_iter().map(lower_service).collect(),
        next_cursor: page.next_cursor,
    };
    let converted = v1::convert::services(lowered)?;
    Ok(Page {
        items: converted
            .items
            .into_iter()
            .zip(terms)
            .map(|(line, (billing_kind, commitment_end))| PsaLine {
                terms: LineTerms {
                    line_id: line.id.clone(),
                    billing_kind,
                    commitment_end,
                },
                line,
            })
            .collect(),
        next_cursor: converted.next_cursor,
        skipped: skipped(page.skipped),
    })
}

/// A page of catalogue products.
///
/// # Errors
/// [`Invalid`] naming the item and field.
pub fn catalog(page: wit_psa::CatalogPage) -> Result<Page<CatalogProduct>, Invalid> {
    let text: usize = page
        .items
        .iter()
        .map(|p| {
            p.id.len()
                + p.product_identifier.len()
                + p.name.len()
                + p.description.len()
                + p.attributes
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum::<usize>()
        + skipped_len(&page.skipped);
    v1::convert::check_page(page.items.len(), text)?;
    let items = page
        .items
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if p.id.trim().is_empty() {
                return Err(Invalid::Malformed(format!("item {i}: id is empty")));
            }
            if p.product_identifier.trim().is_empty() {
                return Err(Invalid::Malformed(format!(
                    "item {i}: product {} has an empty product-identifier",
                    p.id
                )));
            }
            Ok(CatalogProduct {
                unit_price: p
                    .unit_price
                    .as_ref()
                    .map(|d| v1::convert::decimal(&lower_decimal(d), i, "unit-price"))
                    .transpose()?,
                unit_cost: p
                    .unit_cost
                    .as_ref()
                    .map(|d| v1::convert::decimal(&lower_decimal(d), i, "unit-cost"))
                    .transpose()?,
                id: p.id,
                product_identifier: ProductId::from(p.product_identifier),
                name: p.name,
                description: p.description,
                billing_cycle: cycle(p.billing_cycle),
                taxable: p.taxable,
                active: p.active,
            })
        })
        .collect::<Result<_, Invalid>>()?;
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
        skipped: skipped(page.skipped),
    })
}

fn raise_decimal(value: v1::types::Decimal) -> types::Decimal {
    types::Decimal {
        digits: value.digits,
        scale: value.scale,
    }
}

fn raise_date(value: v1::types::Date) -> types::Date {
    types::Date {
        year: value.year,
        month: value.month,
        day: value.day,
    }
}

/// A quantity change to send.
///
/// # Errors
/// [`Invalid`] when a quantity does not fit the encoding.
pub fn quantity_change(change: &QuantityChange) -> Result<wit_psa::QuantityChange, Invalid> {
    let c = v1::convert::quantity_change(change)?;
    Ok(wit_psa::QuantityChange {
        contract_id: c.contract_id,
        line_id: c.line_id,
        product_identifier: c.product_identifier,
        expected_quantity: raise_decimal(c.expected_quantity),
        new_quantity: raise_decimal(c.new_quantity),
        effective_date: raise_date(c.effective_date),
        policy: match change.policy {
            ChangePolicy::Dated => wit_psa::ChangePolicy::Dated,
            ChangePolicy::Immediate => wit_psa::ChangePolicy::Immediate,
        },
        idempotency_key: c.idempotency_key,
    })
}

/// A cost change to send.
///
/// # Errors
/// [`Invalid`] when a cost does not fit the encoding.
pub fn cost_change(change: &CostChange) -> Result<wit_psa::CostChange, Invalid> {
    Ok(wit_psa::CostChange {
        contract_id: change.contract_id.clone(),
        line_id: change.line_id.clone(),
        product_identifier: change.product_identifier.clone(),
        expected_unit_cost: raise_decimal(v1::convert::to_wit_decimal(
            change.expected_unit_cost,
            "expected-unit-cost",
        )?),
        new_unit_cost: raise_decimal(v1::convert::to_wit_decimal(
            change.new_unit_cost,
            "new-unit-cost",
        )?),
        effective_date: raise_date(v1::convert::to_wit_date(change.effective_date)),
        idempotency_key: change.idempotency_key.clone(),
    })
}

/// The planned calls of a dry run, as 0.1's.
pub fn lower_planned_calls(calls: Vec<wit_psa::PlannedCall>) -> Vec<v1_psa::PlannedCall> {
    calls
        .into_iter()
        .map(|c| v1_psa::PlannedCall {
            method: c.method,
            url: c.url,
            body: c.body,
            purpose: c.purpose,
        })
        .collect()
}

/// A write's result, with the read-back line's terms.
///
/// # Errors
/// [`Invalid`] when the read-back line is malformed.
pub fn write_outcome(result: wit_psa::WriteResult) -> Result<crate::types::WriteOutcome, Invalid> {
    let line = service(result.line, 0)?;
    Ok(crate::types::WriteOutcome {
        record_ids: result.record_ids,
        changed: result.changed,
        line: line.line,
        line_terms: line.terms,
        notes: result.notes,
    })
}

/// A page of vendor accounts, as 0.1's (plus what was skipped).
pub fn lower_accounts(
    page: wit_vendor::AccountPage,
) -> (v1_vendor::AccountPage, Vec<types::SkippedRecord>) {
    (
        v1_vendor::AccountPage {
            items: page
                .items
                .into_iter()
                .map(|a| v1_vendor::Account {
                    id: a.id,
                    name: a.name,
                    domains: a.domains,
                    attributes: a.attributes,
                })
                .collect(),
            next_cursor: page.next_cursor,
        },
        page.skipped,
    )
}

/// A page of usage, as 0.1's (plus what was skipped). The rows are the same
/// in both versions.
pub fn lower_usage(
    page: wit_vendor::UsagePage,
) -> (v1_vendor::UsagePage, Vec<types::SkippedRecord>) {
    (
        v1_vendor::UsagePage {
            strings: page.strings,
            attributes: page.attributes,
            rows: page
                .rows
                .into_iter()
                .map(|u| v1_vendor::UsageRow {
                    account_id: u.account_id,
                    sku_id: u.sku_id,
                    sku_name: u.sku_name,
                    quantity: lower_decimal(&u.quantity),
                    unit: u.unit,
                    unit_cost: u.unit_cost.as_ref().map(lower_decimal),
                    billing_term: u.billing_term,
                    commitment_end: u.commitment_end.as_ref().map(lower_date),
                    first_attribute: u.first_attribute,
                    attribute_count: u.attribute_count,
                })
                .collect(),
            next_cursor: page.next_cursor,
        },
        page.skipped,
    )
}

/// Checks the size of a vendor page's skipped records.
///
/// # Errors
/// [`Invalid::TooLarge`].
pub fn check_skipped_records(records: &[types::SkippedRecord]) -> Result<(), Invalid> {
    check_skipped(skipped_len(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u8, day: u8) -> types::Date {
        types::Date { year, month, day }
    }

    fn dec(digits: i64, scale: u8) -> types::Decimal {
        types::Decimal { digits, scale }
    }

    fn line(
        kind: wit_psa::BillingKind,
        commitment: Option<types::Date>,
    ) -> wit_psa::RecurringService {
        wit_psa::RecurringService {
            id: "L1".into(),
            contract_id: "C1".into(),
            product_id: "P1".into(),
            product_identifier: "M365-BP".into(),
            description: "Business Premium".into(),
            quantity: dec(12, 0),
            unit_price: dec(0, 0),
            unit_cost: dec(1800, 2),
            effective_date: Some(date(2026, 3, 1)),
            cancelled_date: None,
            billable: false,
            billing_kind: kind,
            commitment_end: commitment,
            attributes: vec![],
        }
    }

    #[test]
    fn line_terms_come_from_the_guest_not_from_derivation() {
        // Derivation would say `included` (not billable); the guest says
        // zero-priced, and the guest wins.
        let page = wit_psa::ServicePage {
            items: vec![line(
                wit_psa::BillingKind::ZeroPriced,
                Some(date(2027, 2, 28)),
            )],
            skipped: vec![],
            next_cursor: None,
        };
        let page = services(page).expect("valid");
        assert_eq!(page.items[0].terms.billing_kind, BillingKind::ZeroPriced);
        assert_eq!(
            page.items[0].terms.commitment_end,
            chrono::NaiveDate::from_ymd_opt(2027, 2, 28)
        );
        assert_eq!(
            page.items[0].line.quantity,
            rust_decimal::Decimal::new(12, 0)
        );
    }

    #[test]
    fn impossible_commitment_dates_name_item_and_field() {
        let page = wit_psa::ServicePage {
            items: vec![line(wit_psa::BillingKind::Billed, Some(date(2027, 2, 29)))],
            skipped: vec![],
            next_cursor: None,
        };
        assert_eq!(
            services(page).expect_err("2027-02-29"),
            Invalid::Malformed("item 0: commitment-end 2027-02-29 is not a calendar date".into())
        );
    }

    #[test]
    fn catalog_prices_may_be_unknown_but_never_malformed() {
        let product = |price: Option<types::Decimal>| wit_psa::CatalogProduct {
            id: "7".into(),
            product_identifier: "M365-BP".into(),
            name: "Business Premium".into(),
            description: String::new(),
            unit_price: price,
            unit_cost: None,
            billing_cycle: wit_psa::BillingCycle::Monthly,
            taxable: true,
            active: true,
            attributes: vec![],
        };
        let page = catalog(wit_psa::CatalogPage {
            items: vec![product(None), product(Some(dec(2640, 2)))],
            skipped: vec![],
            next_cursor: Some("2".into()),
        })
        .expect("valid");
        assert_eq!(page.items[0].unit_price, None);
        assert_eq!(
            page.items[1].unit_price,
            Some(rust_decimal::Decimal::new(2640, 2))
        );
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let bad = catalog(wit_psa::CatalogPage {
            items: vec![product(Some(dec(1, 19)))],
            skipped: vec![],
            next_cursor: None,
        });
        assert!(matches!(bad, Err(Invalid::Malformed(m)) if m.contains("item 0: unit-price")));
    }
}
