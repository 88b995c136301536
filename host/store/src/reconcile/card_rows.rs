//! How a card is stored, and read back exactly as written.
//!
//! A card is stored as list columns (category, ids, quantities, money,
//! effective date, the numbers fingerprint) plus a `detail` JSON holding
//! the rest of the [`ServiceCard`]. The service policies, mappings, change
//! constraints, vendor lists and billing periods that many cards share are
//! stored once per run (the run's `shared` JSON) and referred to by index,
//! and money the reconcile computed from unit price, unit cost and the
//! card's quantities keeps only those (the amounts are computed again on
//! read), which makes a card's row about a quarter of its plain JSON.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::card::{
    Amounts, CardKey, CardMoney, ChangeDetail, ContractProposal, MappingRefs, RowRefs, ServiceCard,
    UsageSource as CardSource, VendorQuantity,
};
use trueup_core::cycles::Period;
use trueup_core::effective::{ChangeConstraints, EffectiveDate};
use trueup_core::fasthash::FxHashMap;
use trueup_core::mapping::{MappingFailure, MeasuredDays, ServicePolicy, UsageMapping};
use trueup_core::matching::Suggestion;
use trueup_core::model::VendorId;
use trueup_core::proration::ProrationPreview;

use crate::Store;
use crate::db::{Row, RowWriter, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::ReconcileRunId;

/// Parts shared between a run's cards, stored once per run.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Shared {
    policies: Vec<Arc<ServicePolicy>>,
    mappings: Vec<Arc<UsageMapping>>,
    constraints: Vec<ChangeConstraints>,
    vendors: Vec<Arc<[VendorId]>>,
    /// Billing periods (a run's cards share a handful). Runs recorded
    /// before periods were shared hold them in each card's detail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    periods: Vec<Period>,
    /// Proposed effective dates (the cards of one period and policy share
    /// one, reason included), at most [`MAX_SHARED_EFFECTIVE_DATES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    effective_dates: Vec<EffectiveDate>,
}

/// The most distinct effective dates a run shares; cards whose date is not
/// among them hold it in their detail. A run has a few (one per billing
/// period end and policy), so the list stays short enough to search.
const MAX_SHARED_EFFECTIVE_DATES: usize = 64;

/// A card's [`ChangeDetail`] as stored: the effective date either inline
/// (runs recorded before dates were shared, or not among the shared ones)
/// or as an index into the run's shared dates.
#[derive(Debug, Serialize, Deserialize)]
struct StoredChange {
    #[serde(default)]
    effective: Option<EffectiveDate>,
    #[serde(default)]
    effective_at: Option<u32>,
    #[serde(default)]
    proration: Option<ProrationPreview>,
    #[serde(default)]
    contract_proposal: Option<ContractProposal>,
}

/// [`StoredChange`] borrowed from a card, for writing.
#[derive(Serialize)]
struct StoredChangeRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    effective: Option<&'a EffectiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_at: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proration: &'a Option<ProrationPreview>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contract_proposal: &'a Option<ContractProposal>,
}

/// The parts of a card not held in columns.
#[derive(Debug, Serialize, Deserialize)]
struct Detail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<Box<CardSource>>,
    /// The period itself, in runs recorded before periods were shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    period: Option<Period>,
    /// The period, as an index into the run's shared periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    period_at: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    measured: Option<MeasuredDays>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vendor_unit_cost: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    change: Option<Box<StoredChange>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    constraints: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<u32>,
    vendors: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    auto_approvable: bool,
    #[serde(default, skip_serializing_if = "<[u32]>::is_empty")]
    usage_rows: RowRefs,
    /// The usage rows as [`usage_runs`] wrote them, when that is shorter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    usage_runs: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mappings: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    suggestions: Vec<Suggestion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Box<MappingFailure>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

/// [`Detail`] borrowed from a card, for writing without copying.
#[derive(Serialize)]
struct DetailRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: &'a Option<Box<CardSource>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period_at: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measured: Option<MeasuredDays>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_unit_cost: &'a Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<StoredChangeRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    constraints: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<u32>,
    vendors: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    auto_approvable: bool,
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    usage_rows: &'a [u32],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    usage_runs: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mappings: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    suggestions: &'a Vec<Suggestion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: &'a Option<Box<MappingFailure>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: &'a Vec<String>,
}

/// Builds the per-run shared table, deduplicating by `Arc` pointer (the
/// reconcile shares them) and constraints by value.
#[derive(Default)]
struct SharedBuilder {
    shared: Shared,
    policy_at: FxHashMap<usize, u32>,
    mapping_at: FxHashMap<usize, u32>,
    constraints_at: FxHashMap<ChangeConstraints, u32>,
    vendors_at: FxHashMap<usize, u32>,
    periods_at: FxHashMap<Period, u32>,
}

fn ptr<T: ?Sized>(arc: &Arc<T>) -> usize {
    Arc::as_ptr(arc).cast::<u8>().addr()
}

impl SharedBuilder {
    fn policy(&mut self, policy: &Arc<ServicePolicy>) -> u32 {
        let next = self.shared.policies.len() as u32;
        *self.policy_at.entry(ptr(policy)).or_insert_with(|| {
            self.shared.policies.push(Arc::clone(policy));
            next
        })
    }

    fn mapping(&mut self, mapping: &Arc<UsageMapping>) -> u32 {
        let next = self.shared.mappings.len() as u32;
        *self.mapping_at.entry(ptr(mapping)).or_insert_with(|| {
            self.shared.mappings.push(Arc::clone(mapping));
            next
        })
    }

    fn constraints(&mut self, constraints: ChangeConstraints) -> u32 {
        let next = self.shared.constraints.len() as u32;
        *self.constraints_at.entry(constraints).or_insert_with(|| {
            self.shared.constraints.push(constraints);
            next
        })
    }

    /// The index of `effective` among the shared dates, `None` when there
    /// are already [`MAX_SHARED_EFFECTIVE_DATES`] others.
    fn effective_date(&mut self, effective: &EffectiveDate) -> Option<u32> {
        let dates = &mut self.shared.effective_dates;
        if let Some(i) = dates.iter().position(|d| d == effective) {
            return Some(i as u32);
        }
        if dates.len() >= MAX_SHARED_EFFECTIVE_DATES {
            return None;
        }
        dates.push(effective.clone());
        Some(dates.len() as u32 - 1)
    }

    fn period(&mut self, period: Period) -> u32 {
        let next = self.shared.periods.len() as u32;
        *self.periods_at.entry(period).or_insert_with(|| {
            self.shared.periods.push(period);
            next
        })
    }

    fn vendors(&mut self, vendors: &Arc<[VendorId]>) -> u32 {
        let next = self.shared.vendors.len() as u32;
        *self.vendors_at.entry(ptr(vendors)).or_insert_with(|| {
            self.shared.vendors.push(Arc::clone(vendors));
            next
        })
    }
}

/// A run's cards ready to be written: the parts they share (stored once,
/// on the run) and each card's detail, which refers to them by index.
pub(super) struct EncodedCards<'a> {
    /// The run's shared parts.
    pub(super) shared: Shared,
    details: Vec<DetailRef<'a>>,
    /// The JSON text of each shared vendor list (the `vendors` column).
    vendor_texts: Vec<String>,
}

impl<'a> EncodedCards<'a> {
    /// Encodes `cards` (their keys already known to be unique).
    pub(super) fn new(operation: &'static str, cards: &'a [ServiceCard]) -> Result<Self> {
        let mut shared = SharedBuilder::default();
        let mut details = Vec::with_capacity(cards.len());
        for card in cards {
            let usage_runs = usage_runs(&card.usage_rows);
            let detail = DetailRef {
                source: &card.source,
                period_at: card.period.map(|p| shared.period(p)),
                measured: card.vendor_quantity.map(|v| v.measured),
                vendor_unit_cost: &card.vendor_unit_cost,
                change: card.change.as_deref().map(|change| {
                    let effective_at = change
                        .effective
                        .as_ref()
                        .and_then(|e| shared.effective_date(e));
                    StoredChangeRef {
                        effective: change.effective.as_ref().filter(|_| effective_at.is_none()),
                        effective_at,
                        proration: &change.proration,
                        contract_proposal: &change.contract_proposal,
                    }
                }),
                constraints: card.constraints.map(|c| shared.constraints(c)),
                policy: card.policy.as_ref().map(|p| shared.policy(p)),
                vendors: shared.vendors(&card.vendors),
                auto_approvable: card.auto_approvable,
                usage_rows: if usage_runs.is_empty() {
                    &card.usage_rows
                } else {
                    &[]
                },
                usage_runs,
                mappings: card.mappings.iter().map(|m| shared.mapping(m)).collect(),
                suggestions: &card.suggestions,
                error: &card.error,
                notes: &card.notes,
            };
            details.push(detail);
        }
        let vendor_texts: Vec<String> = shared
            .shared
            .vendors
            .iter()
            .map(|v| json_text(operation, &**v))
            .collect::<Result<_>>()?;
        Ok(Self {
            shared: shared.shared,
            details,
            vendor_texts,
        })
    }

    /// Writes card `position` of `cards` (those given to
    /// [`EncodedCards::new`]) as a `cards` row of run `id`, in
    /// [`CARD_COLUMNS`] order; `detail_text` is a buffer reused between
    /// rows.
    pub(super) fn write_row(
        &self,
        operation: &'static str,
        id: ReconcileRunId,
        cards: &[ServiceCard],
        position: usize,
        detail_text: &mut Vec<u8>,
        w: &mut RowWriter,
    ) -> Result<()> {
        let (card, detail) = (&cards[position], &self.details[position]);
        detail_text.clear();
        serde_json::to_writer(&mut *detail_text, detail).map_err(|e| {
            StoreError::invalid(
                operation,
                format!("card {} cannot be written as JSON: {e}", card.key),
            )
        })?;
        let money = card.money;
        w.value(id);
        w.value(position as i64);
        w.text(card.key.as_str());
        w.text(card.category.as_str());
        w.opt_text(card.company.as_ref().map(|c| c.as_str()));
        w.opt_text(card.contract.as_ref().map(|c| c.as_str()));
        w.opt_text(card.line.as_ref().map(|c| c.as_str()));
        w.opt_text(card.product.as_ref().map(|c| c.as_str()));
        w.text(&self.vendor_texts[detail.vendors as usize]);
        w.opt_decimal(card.psa_quantity);
        w.opt_decimal(card.psa_quantity_elsewhere);
        w.opt_decimal(card.vendor_quantity.map(|v| v.billable));
        w.opt_decimal(card.target_quantity);
        w.opt_decimal(card.variance);
        w.opt_decimal(money.map(|m| m.unit_price));
        w.opt_decimal(money.map(|m| m.unit_cost));
        let amounts =
            money.filter(|m| !money_is_derived(m, card.psa_quantity, card.target_quantity));
        w.opt_decimal(amounts.map(|m| m.before.price));
        w.opt_decimal(amounts.map(|m| m.before.cost));
        w.opt_decimal(amounts.map(|m| m.before.margin));
        w.opt_decimal(amounts.map(|m| m.after.price));
        w.opt_decimal(amounts.map(|m| m.after.cost));
        w.opt_decimal(amounts.map(|m| m.after.margin));
        w.opt_decimal(money.map(|m| m.delta));
        w.value(card.effective().map(|e| e.date));
        w.text(&card.numbers_fingerprint());
        // serde_json writes UTF-8.
        w.text(std::str::from_utf8(detail_text).unwrap_or_default());
        Ok(())
    }
}

/// The columns of a `cards` row, in the order [`EncodedCards::write_row`]
/// writes them.
pub(super) const CARD_COLUMNS: &[&str] = &[
    "run_id",
    "position",
    "key",
    "category",
    "company_id",
    "contract_id",
    "line_id",
    "product_id",
    "vendors",
    "psa_quantity",
    "psa_quantity_elsewhere",
    "vendor_quantity",
    "target_quantity",
    "variance",
    "unit_price",
    "unit_cost",
    "price_before",
    "cost_before",
    "margin_before",
    "price_after",
    "cost_after",
    "margin_after",
    "money_delta",
    "effective_date",
    "fingerprint",
    "detail",
];

/// The list columns of a card (all but `detail`), as `c.`.
pub(super) const SUMMARY_COLUMNS: &str = "c.run_id, c.position, c.key, c.category, c.company_id, c.contract_id, \
     c.line_id, c.product_id, c.vendors, c.psa_quantity, c.psa_quantity_elsewhere, c.vendor_quantity, c.target_quantity, \
     c.variance, c.unit_price, c.unit_cost, c.price_before, c.cost_before, c.margin_before, \
     c.price_after, c.cost_after, c.margin_after, c.money_delta, c.effective_date, c.fingerprint";

/// The card key in column `col` of a `cards` row.
pub(crate) fn card_key(r: &Row, col: &str) -> Result<CardKey> {
    let text = r.text(col)?;
    CardKey::from_hex(&text).ok_or_else(|| StoreError::Corrupt {
        table: "cards",
        column: col.to_owned(),
        expected: "a card key (32 hex digits)",
        problem: format!("found {text:?}"),
    })
}

/// The quantities the reconcile computes a card's money at
/// ([`CardMoney::new`]): from the PSA quantity (none, for a service not
/// billed yet: zero) to the proposed one (none: unchanged).
fn money_quantities(psa: Option<Decimal>, target: Option<Decimal>) -> (Decimal, Decimal) {
    let before = psa.unwrap_or(Decimal::ZERO);
    (before, target.unwrap_or(before))
}

/// Equal in value, scale and sign: the same canonical text.
fn same_decimal(a: Decimal, b: Decimal) -> bool {
    a == b && a.scale() == b.scale() && a.is_sign_negative() == b.is_sign_negative()
}

/// Whether `money` is exactly what [`CardMoney::new`] computes from the
/// card's unit price and cost at [`money_quantities`]. Such cards store only
/// the unit price, unit cost and delta; their before and after amounts are
/// computed again when read (six columns fewer to write for nearly every
/// card). Any other money is stored whole, so a card always reads back
/// exactly as written.
fn money_is_derived(money: &CardMoney, psa: Option<Decimal>, target: Option<Decimal>) -> bool {
    let (from, to) = money_quantities(psa, target);
    let derived = CardMoney::new(money.unit_price, money.unit_cost, from, to);
    let same_amounts = |a: &Amounts, b: &Amounts| {
        same_decimal(a.price, b.price)
            && same_decimal(a.cost, b.cost)
            && same_decimal(a.margin, b.margin)
    };
    same_amounts(&derived.before, &money.before)
        && same_amounts(&derived.after, &money.after)
        && same_decimal(derived.delta, money.delta)
}

/// A card's money from its columns (see [`money_is_derived`]).
pub(super) fn money_from_row(r: &Row) -> Result<Option<CardMoney>> {
    let Some(unit_price) = r.opt_decimal("unit_price")? else {
        return Ok(None);
    };
    let unit_cost = r.decimal("unit_cost")?;
    let Some(price_before) = r.opt_decimal("price_before")? else {
        let (from, to) = money_quantities(
            r.opt_decimal("psa_quantity")?,
            r.opt_decimal("target_quantity")?,
        );
        return Ok(Some(CardMoney::new(unit_price, unit_cost, from, to)));
    };
    Ok(Some(CardMoney {
        unit_price,
        unit_cost,
        before: Amounts {
            price: price_before,
            cost: r.decimal("cost_before")?,
            margin: r.decimal("margin_before")?,
        },
        after: Amounts {
            price: r.decimal("price_after")?,
            cost: r.decimal("cost_after")?,
            margin: r.decimal("margin_after")?,
        },
        delta: r.decimal("money_delta")?,
    }))
}

/// Most usage rows one card's runs may expand to when read: a bound on what
/// a corrupt detail can make the store allocate (a run has fewer usage rows
/// than `u32` indices anyway).
const MAX_EXPANDED_USAGE_ROWS: usize = 1 << 24;

/// `rows` (ascending indices) as runs of equal steps, flattened to
/// `[first, step, count, ...]`, when that is shorter than the list itself;
/// otherwise empty. A card's rows are the days and devices of one account's
/// SKU, which the usage keeps together, so a long list is a few runs.
fn usage_runs(rows: &[u32]) -> Vec<u32> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let first = rows[i];
        // Only rising steps make runs (rows are ascending; anything else is
        // written as runs of one, which always expand back).
        let step = match rows.get(i + 1) {
            Some(&next) if next > first => next - first,
            _ => 0,
        };
        let mut count = 1;
        while step > 0
            && rows
                .get(i + count)
                .is_some_and(|&next| next.checked_sub(rows[i + count - 1]) == Some(step))
        {
            count += 1;
        }
        runs.extend([first, step, count as u32]);
        if runs.len() >= rows.len() {
            return Vec::new();
        }
        i += count;
    }
    runs
}

/// The rows of [`usage_runs`] output.
fn expand_usage_runs(runs: &[u32]) -> Result<Vec<u32>> {
    let corrupt = |problem: String| StoreError::Corrupt {
        table: "cards",
        column: "detail".to_owned(),
        expected: "usage row runs: [first, step, count] triples within u32",
        problem,
    };
    if !runs.len().is_multiple_of(3) {
        return Err(corrupt(format!("{} numbers", runs.len())));
    }
    let mut rows = Vec::new();
    for run in runs.chunks_exact(3) {
        let (first, step, count) = (run[0], run[1], run[2] as usize);
        if count == 0 || rows.len() + count > MAX_EXPANDED_USAGE_ROWS {
            return Err(corrupt(format!("a run of {count} rows")));
        }
        for k in 0..count as u32 {
            let row = step
                .checked_mul(k)
                .and_then(|offset| first.checked_add(offset))
                .ok_or_else(|| corrupt(format!("row {first} + {k} × {step} overflows")))?;
            rows.push(row);
        }
    }
    Ok(rows)
}

fn shared_index<T: Clone>(items: &[T], index: u32, what: &str) -> Result<T> {
    items
        .get(index as usize)
        .cloned()
        .ok_or_else(|| StoreError::Corrupt {
            table: "cards",
            column: "detail".to_owned(),
            expected: "indices into the run's shared parts",
            problem: format!("{what} {index} does not exist"),
        })
}

/// The card of a row holding [`SUMMARY_COLUMNS`] and `detail`, its
/// shared parts in `shared`.
pub(super) fn card_from_row(
    r: &Row,
    shared: &Shared,
    mapper_version: &Arc<str>,
) -> Result<ServiceCard> {
    let detail: Detail = r.json("detail")?;
    let vendor_quantity = match (r.opt_decimal("vendor_quantity")?, detail.measured) {
        (Some(billable), Some(measured)) => Some(VendorQuantity { measured, billable }),
        _ => None,
    };
    Ok(ServiceCard {
        key: card_key(r, "key")?,
        category: r.enum_value("category", "a card category")?,
        company: r.opt_text("company_id")?.map(Into::into),
        contract: r.opt_text("contract_id")?.map(Into::into),
        line: r.opt_text("line_id")?.map(Into::into),
        product: r.opt_text("product_id")?.map(Into::into),
        source: detail.source,
        vendors: shared_index(&shared.vendors, detail.vendors, "vendor list")?,
        period: match (detail.period, detail.period_at) {
            (Some(period), _) => Some(period),
            (None, Some(i)) => Some(shared_index(&shared.periods, i, "period")?),
            (None, None) => None,
        },
        psa_quantity: r.opt_decimal("psa_quantity")?,
        psa_quantity_elsewhere: r.opt_decimal("psa_quantity_elsewhere")?,
        vendor_quantity,
        target_quantity: r.opt_decimal("target_quantity")?,
        variance: r.opt_decimal("variance")?,
        money: money_from_row(r)?,
        vendor_unit_cost: detail.vendor_unit_cost,
        change: detail
            .change
            .map(|stored| -> Result<Box<ChangeDetail>> {
                let StoredChange {
                    effective,
                    effective_at,
                    proration,
                    contract_proposal,
                } = *stored;
                let effective = match (effective, effective_at) {
                    (Some(effective), _) => Some(effective),
                    (None, Some(i)) => {
                        Some(shared_index(&shared.effective_dates, i, "effective date")?)
                    }
                    (None, None) => None,
                };
                Ok(Box::new(ChangeDetail {
                    effective,
                    proration,
                    contract_proposal,
                }))
            })
            .transpose()?,
        constraints: detail
            .constraints
            .map(|i| shared_index(&shared.constraints, i, "constraints"))
            .transpose()?,
        policy: detail
            .policy
            .map(|i| shared_index(&shared.policies, i, "policy"))
            .transpose()?,
        auto_approvable: detail.auto_approvable,
        usage_rows: if detail.usage_runs.is_empty() {
            detail.usage_rows
        } else {
            RowRefs::from(expand_usage_runs(&detail.usage_runs)?)
        },
        mappings: MappingRefs::from(
            detail
                .mappings
                .iter()
                .map(|&i| shared_index(&shared.mappings, i, "mapping"))
                .collect::<Result<Vec<_>>>()?,
        ),
        mapper_version: Arc::clone(mapper_version),
        suggestions: detail.suggestions,
        error: detail.error,
        notes: detail.notes,
    })
}

impl Store {
    /// The parts `run`'s cards share.
    pub(super) async fn shared_of(&self, run: ReconcileRunId) -> Result<Shared> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read run shared parts",
                    "reconcile_runs",
                    "SELECT shared FROM reconcile_runs WHERE id = $1",
                )
                .bind(run),
            )
            .await?
            .ok_or_else(|| StoreError::not_found("read card", "reconcile run", run))?;
        row.json("shared")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reconcile card's detail as runs recorded before periods and
    /// effective dates were shared wrote it: both inline.
    const INLINE_DETAIL: &str = r#"{"period":{"start":"2025-03-01","end":"2025-03-31"},"measured":{"from":"2025-03-30","to":"2025-03-30","quantity":"5"},"vendor_unit_cost":"25.00","change":{"effective":{"date":"2025-04-01","policy":{"policy":"first_of_next_month"},"reason":"first day of the month after 2025-03-31: 2025-04-01","shifted_from":null,"notes":[]},"proration":{"period":{"start":"2025-04-01","end":"2025-04-30"},"effective_date":"2025-04-01","days_in_period":30,"days_charged":30,"full_period_delta":"300.00","next_invoice_delta":"300.00","prorated":false,"explanation":"4 × 75.00 = 300.00 for the whole period 2025-04-01..=2025-04-30"},"contract_proposal":null},"constraints":0,"policy":0,"vendors":1,"usage_rows":[211,212,213,214,215],"mappings":[0]}"#;

    #[test]
    fn details_recorded_with_inline_periods_and_dates_still_read() {
        let detail: Detail = serde_json::from_str(INLINE_DETAIL).expect("an older detail");
        let period = detail.period.expect("the inline period");
        assert_eq!(period.start.to_string(), "2025-03-01");
        assert_eq!(detail.period_at, None);
        let change = detail.change.expect("the change");
        let effective = change.effective.expect("the inline effective date");
        assert_eq!(effective.date.to_string(), "2025-04-01");
        assert_eq!(change.effective_at, None);
        assert!(change.proration.is_some());
        assert!(change.contract_proposal.is_none());
    }

    #[test]
    fn usage_rows_are_stored_as_runs_when_that_is_shorter() {
        let cases: [(&[u32], &[u32]); 6] = [
            (&[], &[]),
            (&[7], &[]),
            (&[1, 2, 3], &[]),
            (&[1, 2, 3, 4], &[1, 1, 4]),
            (&[55, 58, 61, 64, 67, 70, 100], &[55, 3, 6, 100, 0, 1]),
            (&[1, 5, 6, 20, 21, 40], &[]),
        ];
        for (rows, runs) in cases {
            assert_eq!(usage_runs(rows), runs, "{rows:?}");
            if !runs.is_empty() {
                assert_eq!(expand_usage_runs(runs).expect("runs"), rows);
            }
        }
        // Any list round-trips, ascending or not.
        let lists: [Vec<u32>; 3] = [
            (0..500u32).map(|i| i / 3 * 3 + i).collect(),
            (0..500u32).rev().collect(),
            [0, 0, 0, 0, 9, 9, u32::MAX, 1, 2, 3, 4, 5].to_vec(),
        ];
        let strided: Vec<u32> = (0..500u32).map(|i| i * 2 + i / 100 * 7).collect();
        assert_eq!(usage_runs(&strided).len(), 15, "five runs of 100");
        assert_eq!(
            expand_usage_runs(&usage_runs(&strided)).expect("runs"),
            strided
        );
        for rows in lists {
            let runs = usage_runs(&rows);
            if !runs.is_empty() {
                assert_eq!(expand_usage_runs(&runs).expect("runs"), rows);
            }
        }
        for corrupt in [
            &[1u32, 2][..],
            &[1, 1, 0],
            &[u32::MAX, 1, 2],
            &[0, 1, u32::MAX],
        ] {
            assert!(expand_usage_runs(corrupt).is_err(), "{corrupt:?}");
        }
    }

    #[test]
    fn shared_effective_dates_stop_at_their_limit() {
        let mut shared = SharedBuilder::default();
        let detail: Detail = serde_json::from_str(INLINE_DETAIL).expect("an older detail");
        let base = detail
            .change
            .and_then(|c| c.effective)
            .expect("an effective date");
        let dates: Vec<EffectiveDate> = (0..=MAX_SHARED_EFFECTIVE_DATES)
            .map(|i| EffectiveDate {
                reason: format!("reason {i}"),
                ..base.clone()
            })
            .collect();
        for (i, date) in dates.iter().enumerate().take(MAX_SHARED_EFFECTIVE_DATES) {
            assert_eq!(shared.effective_date(date), Some(i as u32));
            // The same date again finds the same index.
            assert_eq!(shared.effective_date(date), Some(i as u32));
        }
        assert_eq!(
            shared.effective_date(&dates[MAX_SHARED_EFFECTIVE_DATES]),
            None,
            "one more is kept inline"
        );
    }
}
