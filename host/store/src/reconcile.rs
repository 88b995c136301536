//! Reconcile runs and their cards: writing a run's output (append-only),
//! and the queries the UI needs (filtered, grouped, paginated cards of a
//! run, totals, one card with its history).
//!
//! A card is stored as list columns (category, ids, quantities, money,
//! effective date, the numbers fingerprint) plus a `detail` JSON holding
//! the rest of the [`ServiceCard`]. The service policies, mappings, change
//! constraints, vendor lists and billing periods that many cards share are
//! stored once per run (the run's `shared` JSON) and referred to by index,
//! and money the reconcile computed from unit price, unit cost and the
//! card's quantities keeps only those (the amounts are computed again on
//! read), which makes a card's row about a quarter of its plain JSON.
//! [`Store::card`] reassembles the exact card that was written.
//!
//! Writing a run's ~200,000 cards is on the month-end path:
//! `cargo bench -p trueup-store --bench store_write` measures it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::card::{
    Amounts, CardCategory, CardKey, CardMoney, CardTotals, ChangeDetail, ContractProposal,
    MappingRefs, RowRefs, ServiceCard, UsageSource as CardSource, VendorQuantity,
};
use trueup_core::cycles::Period;
use trueup_core::effective::{ChangeConstraints, EffectiveDate};
use trueup_core::eligibility::Exclusion;
use trueup_core::fasthash::{FxBuildHasher, FxHashMap};
use trueup_core::mapping::{MappingFailure, MeasuredDays, ServicePolicy, UsageMapping};
use trueup_core::matching::Suggestion;
use trueup_core::model::{CompanyId, VendorId};
use trueup_core::proration::ProrationPreview;
use trueup_core::reconcile::{ReconcileOutput, ReconcileStats};

use crate::Store;
use crate::cards::{CardState, CardStatus, STATUS_SQL, state_from_row};
use crate::db::{Row, Value, enum_text, id_type, json_text, placeholders, sql};
use crate::error::{Result, StoreError};
use crate::sync::SyncRunId;

id_type!(
    /// A reconcile run's id.
    ReconcileRunId
);

/// Cards per page, at most.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// A reconcile run to record.
#[derive(Debug, Clone, Copy)]
pub struct NewReconcileRun<'a> {
    /// The reconcile's output: cards, exclusions, totals, stats.
    pub output: &'a ReconcileOutput,
    /// The rule version that produced the cards (`None` for the built-in
    /// SKU table mapper).
    pub rule_checksum: Option<&'a str>,
    /// The PSA sync whose data was reconciled.
    pub psa_sync: Option<SyncRunId>,
    /// When the reconcile started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// A recorded reconcile run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRun {
    /// Its id (ascending in recording order).
    pub id: ReconcileRunId,
    /// The reconcile date.
    pub as_of: NaiveDate,
    /// The mapper version that produced the cards.
    pub mapper_version: String,
    /// The rule version, when rules produced them.
    pub rule_checksum: Option<String>,
    /// The PSA sync reconciled.
    pub psa_sync: Option<SyncRunId>,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: DateTime<Utc>,
    /// Number of cards.
    pub card_count: u64,
    /// Money at stake over all cards.
    pub totals: CardTotals,
    /// Row counts.
    pub stats: ReconcileStats,
}

/// A card as listed: the columns, its effective state and tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardSummary {
    /// The run.
    pub run: ReconcileRunId,
    /// Position in the run's order (the pagination cursor).
    pub position: i64,
    /// Stable identity.
    pub key: CardKey,
    /// What it asks.
    pub category: CardCategory,
    /// Customer.
    pub company: Option<String>,
    /// Contract.
    pub contract: Option<String>,
    /// PSA line.
    pub line: Option<String>,
    /// Product.
    pub product: Option<String>,
    /// Vendors behind the vendor quantity.
    pub vendors: Vec<VendorId>,
    /// PSA quantity.
    pub psa_quantity: Option<Decimal>,
    /// Vendor (billable) quantity.
    pub vendor_quantity: Option<Decimal>,
    /// Proposed quantity.
    pub target_quantity: Option<Decimal>,
    /// `target − psa`.
    pub variance: Option<Decimal>,
    /// Money before and after.
    pub money: Option<CardMoney>,
    /// Proposed effective date.
    pub effective_date: Option<NaiveDate>,
    /// The card's status today (see [`CardFilter::today`]).
    pub status: CardStatus,
    /// The stored state, if a person ever acted on the card.
    pub state: Option<CardState>,
    /// Tags, sorted.
    pub tags: Vec<String>,
}

/// Which cards of a run to list. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardFilter {
    /// Any of these categories.
    pub categories: Vec<CardCategory>,
    /// Cards with this vendor among their vendors.
    pub vendor: Option<VendorId>,
    /// Cards of this company.
    pub company: Option<CompanyId>,
    /// Cards carrying this tag.
    pub tag: Option<String>,
    /// Cards whose status today is this.
    pub status: Option<CardStatus>,
    /// "Today" for statuses: dismissals and dated snoozes end by date.
    /// `None` uses the run's as-of date.
    pub today: Option<NaiveDate>,
}

/// A page of cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardPage {
    /// The cards, in run order.
    pub cards: Vec<CardSummary>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<i64>,
    /// Cards matching the filter in the whole run.
    pub total: u64,
}

/// What to group cards by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// Company id.
    Company,
    /// Contract id.
    Contract,
    /// Category.
    Category,
    /// Product.
    Product,
    /// Each vendor (a card with two vendors counts in both groups).
    Vendor,
    /// Status today.
    Status,
}

/// One group of cards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardGroup {
    /// The group's key (`None` for cards without one, e.g. no company).
    pub key: Option<String>,
    /// Money and counts of its cards.
    pub totals: CardTotals,
}

/// One run's version of a card, for its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardHistoryEntry {
    /// The run.
    pub run: ReconcileRunId,
    /// Its as-of date.
    pub as_of: NaiveDate,
    /// What the card asked then.
    pub category: CardCategory,
    /// PSA quantity then.
    pub psa_quantity: Option<Decimal>,
    /// Vendor quantity then.
    pub vendor_quantity: Option<Decimal>,
    /// Proposed quantity then.
    pub target_quantity: Option<Decimal>,
    /// Money delta then.
    pub money_delta: Option<Decimal>,
}

/// Parts shared between a run's cards, stored once per run.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Shared {
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

const CARD_COLUMNS: &[&str] = &[
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

const SUMMARY_COLUMNS: &str = "c.run_id, c.position, c.key, c.category, c.company_id, c.contract_id, \
     c.line_id, c.product_id, c.vendors, c.psa_quantity, c.vendor_quantity, c.target_quantity, \
     c.variance, c.unit_price, c.unit_cost, c.price_before, c.cost_before, c.margin_before, \
     c.price_after, c.cost_after, c.margin_after, c.money_delta, c.effective_date, c.fingerprint";

const RUN_COLUMNS: &str = "id, as_of, mapper_version, rule_checksum, psa_sync_run_id, started_at, \
     finished_at, card_count, totals, stats";

fn run_from_row(r: &Row) -> Result<ReconcileRun> {
    Ok(ReconcileRun {
        id: ReconcileRunId(r.int("id")?),
        as_of: r.date("as_of")?,
        mapper_version: r.text("mapper_version")?,
        rule_checksum: r.opt_text("rule_checksum")?,
        psa_sync: r.opt_int("psa_sync_run_id")?.map(SyncRunId),
        started_at: r.instant("started_at")?,
        finished_at: r.instant("finished_at")?,
        card_count: u64::try_from(r.int("card_count")?).unwrap_or(0),
        totals: r.json("totals")?,
        stats: r.json("stats")?,
    })
}

fn card_key(r: &Row, col: &str) -> Result<CardKey> {
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

fn money_from_row(r: &Row) -> Result<Option<CardMoney>> {
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

/// Adds a card's counts and money to `totals`, as `card::totals` does.
fn add_to_totals(totals: &mut CardTotals, category: CardCategory, delta: Option<Decimal>) {
    *totals.cards.entry(category).or_default() += 1;
    if category.proposes_change()
        && let Some(delta) = delta
    {
        if delta > Decimal::ZERO {
            totals.under_billed += delta;
        } else {
            totals.over_billed -= delta;
        }
        totals.at_stake = totals.under_billed + totals.over_billed;
    }
}

/// The `WHERE` of a filtered card query, starting at placeholder `$next`,
/// with its values.
fn filter_sql(filter: &CardFilter, today: NaiveDate, mut next: usize) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if !filter.categories.is_empty() {
        clauses.push(format!(
            "c.category IN ({})",
            placeholders(next, filter.categories.len())
        ));
        next += filter.categories.len();
        values.extend(filter.categories.iter().map(|c| Value::from(c.as_str())));
    }
    if let Some(vendor) = &filter.vendor {
        // `vendors` is a JSON array of strings: match the element with its
        // quotes, escaping LIKE's wildcards.
        let element = serde_json::to_string(vendor.as_str()).unwrap_or_default();
        let escaped = element
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        clauses.push(format!("c.vendors LIKE ${next} ESCAPE '\\'"));
        next += 1;
        values.push(Value::from(format!("%{escaped}%")));
    }
    if let Some(company) = &filter.company {
        clauses.push(format!("c.company_id = ${next}"));
        next += 1;
        values.push(Value::from(company.as_str()));
    }
    if let Some(tag) = &filter.tag {
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM card_tags t WHERE t.key = c.key AND t.tag = ${next})"
        ));
        next += 1;
        values.push(Value::from(tag.trim().to_lowercase()));
    }
    if let Some(status) = filter.status {
        clauses.push(format!(
            "{} = ${}",
            STATUS_SQL.replace("$TODAY", &format!("${next}")),
            next + 1
        ));
        values.push(Value::from(today));
        values.push(Value::from(enum_text(&status)));
    }
    let text = if clauses.is_empty() {
        String::new()
    } else {
        format!(" AND {}", clauses.join(" AND "))
    };
    (text, values)
}

impl Store {
    /// Records a reconcile run and all its cards in ONE transaction
    /// (multi-row `INSERT`s on SQLite, `COPY` on PostgreSQL). Runs and cards
    /// are append-only: every run's cards are kept, which is the ledger of
    /// what each reconcile proposed. Not idempotent: each call is a new run.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a card key repeated in the output;
    /// [`StoreError::MissingReference`] for an unknown rule checksum or
    /// PSA sync; database errors. On error nothing is written.
    pub async fn record_reconcile_run(&self, run: NewReconcileRun<'_>) -> Result<ReconcileRunId> {
        const OP: &str = "record reconcile run";
        let output = run.output;
        let mut seen =
            HashSet::with_capacity_and_hasher(output.cards.len(), FxBuildHasher::default());
        if let Some(card) = output.cards.iter().find(|c| !seen.insert(c.key)) {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "card key {} appears twice in the reconcile output",
                    card.key
                ),
            ));
        }
        drop(seen);
        let mut shared = SharedBuilder::default();
        let mut details = Vec::with_capacity(output.cards.len());
        for card in &output.cards {
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
            .map(|v| json_text(OP, &**v))
            .collect::<Result<_>>()?;
        let mut tx = self.db.begin(OP).await?;
        let row = tx
            .fetch_one(
                sql(
                    OP,
                    "reconcile_runs",
                    "INSERT INTO reconcile_runs (as_of, mapper_version, rule_checksum, psa_sync_run_id, \
                     started_at, finished_at, card_count, totals, stats, exclusions, shared) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .bind(output.as_of)
                .bind(&*output.mapper_version)
                .bind(run.rule_checksum)
                .bind(run.psa_sync)
                .bind(run.started_at)
                .bind(run.finished_at)
                .bind(output.cards.len() as i64)
                .bind(json_text(OP, &output.totals)?)
                .bind(json_text(OP, &output.stats)?)
                .bind(json_text(OP, &output.exclusions)?)
                .bind(json_text(OP, &shared.shared)?),
            )
            .await?;
        let id = ReconcileRunId(row.int("id")?);
        let mut detail_text = Vec::with_capacity(1024);
        let cards = &output.cards;
        tx.insert_all(OP, "cards", CARD_COLUMNS, cards.len(), |position, w| {
            let (card, detail) = (&cards[position], &details[position]);
            detail_text.clear();
            serde_json::to_writer(&mut detail_text, detail).map_err(|e| {
                StoreError::invalid(
                    OP,
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
            w.text(&vendor_texts[detail.vendors as usize]);
            w.opt_decimal(card.psa_quantity);
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
            w.text(std::str::from_utf8(&detail_text).unwrap_or_default());
            Ok(())
        })
        .await?;
        tx.commit(OP).await?;
        Ok(id)
    }

    /// One reconcile run.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn reconcile_run(&self, id: ReconcileRunId) -> Result<ReconcileRun> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read reconcile run",
                    "reconcile_runs",
                    format!("SELECT {RUN_COLUMNS} FROM reconcile_runs WHERE id = $1"),
                )
                .bind(id),
            )
            .await?
            .ok_or_else(|| StoreError::not_found("read reconcile run", "reconcile run", id))?;
        run_from_row(&row)
    }

    /// The latest recorded reconcile run.
    ///
    /// # Errors
    /// A database error.
    pub async fn latest_reconcile_run(&self) -> Result<Option<ReconcileRun>> {
        let row = self
            .db
            .fetch_optional(sql(
                "read latest reconcile run",
                "reconcile_runs",
                format!("SELECT {RUN_COLUMNS} FROM reconcile_runs ORDER BY id DESC LIMIT 1"),
            ))
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// The latest `limit` runs, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn reconcile_runs(&self, limit: u32) -> Result<Vec<ReconcileRun>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list reconcile runs",
                    "reconcile_runs",
                    format!("SELECT {RUN_COLUMNS} FROM reconcile_runs ORDER BY id DESC LIMIT $1"),
                )
                .bind(i64::from(limit)),
            )
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// What a run left out or noted.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn run_exclusions(&self, id: ReconcileRunId) -> Result<Vec<Exclusion>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read run exclusions",
                    "reconcile_runs",
                    "SELECT exclusions FROM reconcile_runs WHERE id = $1",
                )
                .bind(id),
            )
            .await?
            .ok_or_else(|| StoreError::not_found("read run exclusions", "reconcile run", id))?;
        row.json("exclusions")
    }

    async fn run_today(&self, run: ReconcileRunId, filter: &CardFilter) -> Result<NaiveDate> {
        match filter.today {
            Some(today) => Ok(today),
            None => Ok(self.reconcile_run(run).await?.as_of),
        }
    }

    /// A page of `run`'s cards matching `filter`, in run order, after
    /// position `after` (exclusive; `None` from the start), at most `limit`
    /// (capped at [`MAX_PAGE_SIZE`]), with the total matching.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn cards_page(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<CardPage> {
        const OP: &str = "list cards";
        let today = self.run_today(run, filter).await?;
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let (where_sql, values) = filter_sql(filter, today, 3);
        let total = self
            .db
            .fetch_one(
                sql(
                    OP,
                    "cards",
                    format!(
                        "SELECT COUNT(*) AS n FROM cards c LEFT JOIN card_states s ON s.key = c.key \
                         WHERE c.run_id = $1 AND c.position > $2{where_sql}"
                    ),
                )
                .bind(run)
                .bind(-1i64)
                .bind_all(values.clone()),
            )
            .await?
            .int("n")?;
        let (where_sql, values) = filter_sql(filter, today, 5);
        let rows = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "cards",
                    format!(
                        "SELECT {SUMMARY_COLUMNS}, {status} AS effective_status, s.key AS state_key, \
                         s.status, s.dismissed_through, s.snooze_until, s.snooze_fingerprint, \
                         s.exclude_reason, s.write_back, s.outbox_id, s.decision_id, s.updated_by, s.updated_at \
                         FROM cards c LEFT JOIN card_states s ON s.key = c.key \
                         WHERE c.run_id = $1 AND c.position > $2{where_sql} \
                         ORDER BY c.position LIMIT $3",
                        status = STATUS_SQL.replace("$TODAY", "$4"),
                    ),
                )
                .bind(run)
                .bind(after.unwrap_or(-1))
                .bind(i64::from(limit) + 1)
                .bind(today)
                .bind_all(values),
            )
            .await?;
        let more = rows.len() > limit as usize;
        let mut cards = rows
            .iter()
            .take(limit as usize)
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()?;
        if !cards.is_empty() {
            let keys: Vec<&str> = cards.iter().map(|c| c.key.as_str()).collect();
            let tags = self.tags_of(&keys).await?;
            for card in &mut cards {
                if let Some(t) = tags.get(card.key.as_str()) {
                    card.tags = t.clone();
                }
            }
        }
        Ok(CardPage {
            next: if more {
                cards.last().map(|c| c.position)
            } else {
                None
            },
            cards,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// Tags of `keys`, sorted per key.
    pub(crate) async fn tags_of(&self, keys: &[&str]) -> Result<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in keys.chunks(500) {
            let rows = self
                .db
                .fetch_all(
                    sql(
                        "read card tags",
                        "card_tags",
                        format!(
                            "SELECT key, tag FROM card_tags WHERE key IN ({}) ORDER BY key, tag",
                            placeholders(1, chunk.len())
                        ),
                    )
                    .bind_all(chunk.iter().map(|k| Value::from(*k))),
                )
                .await?;
            for row in rows {
                out.entry(row.text("key")?)
                    .or_default()
                    .push(row.text("tag")?);
            }
        }
        Ok(out)
    }

    /// Counts and money of `run`'s cards matching `filter` (summed in Rust,
    /// exactly, as `trueup_core::card::totals` does).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_totals(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
    ) -> Result<CardTotals> {
        let groups = self.group_rows(run, filter, None).await?;
        Ok(groups
            .into_iter()
            .next()
            .map(|g| g.totals)
            .unwrap_or_default())
    }

    /// `run`'s cards matching `filter`, grouped by `by`, with each group's
    /// counts and money, sorted by key (no key first).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_groups(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
        by: GroupBy,
    ) -> Result<Vec<CardGroup>> {
        self.group_rows(run, filter, Some(by)).await
    }

    async fn group_rows(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
        by: Option<GroupBy>,
    ) -> Result<Vec<CardGroup>> {
        let today = self.run_today(run, filter).await?;
        let (where_sql, values) = filter_sql(filter, today, 3);
        let key_sql = match by {
            None => "NULL".to_owned(),
            Some(GroupBy::Company) => "c.company_id".to_owned(),
            Some(GroupBy::Contract) => "c.contract_id".to_owned(),
            Some(GroupBy::Category) => "c.category".to_owned(),
            Some(GroupBy::Product) => "c.product_id".to_owned(),
            Some(GroupBy::Vendor) => "c.vendors".to_owned(),
            Some(GroupBy::Status) => STATUS_SQL.replace("$TODAY", "$2"),
        };
        let rows = self
            .db
            .fetch_all(
                sql(
                    "group cards",
                    "cards",
                    format!(
                        "SELECT {key_sql} AS group_key, c.category, c.money_delta \
                         FROM cards c LEFT JOIN card_states s ON s.key = c.key \
                         WHERE c.run_id = $1 AND $2 = $2{where_sql}"
                    ),
                )
                .bind(run)
                .bind(today)
                .bind_all(values),
            )
            .await?;
        let mut groups: BTreeMap<Option<String>, CardTotals> = BTreeMap::new();
        if by.is_none() {
            groups.insert(None, CardTotals::default());
        }
        for row in &rows {
            let category: CardCategory = row.enum_value("category", "a card category")?;
            let delta = row.opt_decimal("money_delta")?;
            let keys: Vec<Option<String>> = match by {
                Some(GroupBy::Vendor) => {
                    let vendors: Vec<String> = row.json("group_key")?;
                    if vendors.is_empty() {
                        vec![None]
                    } else {
                        vendors.into_iter().map(Some).collect()
                    }
                }
                _ => vec![row.opt_text("group_key")?],
            };
            for key in keys {
                add_to_totals(groups.entry(key).or_default(), category, delta);
            }
        }
        Ok(groups
            .into_iter()
            .map(|(key, totals)| CardGroup { key, totals })
            .collect())
    }

    async fn shared_of(&self, run: ReconcileRunId) -> Result<Shared> {
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

    /// The full card `key` of `run`, exactly as it was recorded.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card(&self, run: ReconcileRunId, key: &CardKey) -> Result<Option<ServiceCard>> {
        let Some(row) = self
            .db
            .fetch_optional(
                sql(
                    "read card",
                    "cards",
                    format!(
                        "SELECT {SUMMARY_COLUMNS}, c.detail, r.mapper_version FROM cards c \
                         JOIN reconcile_runs r ON r.id = c.run_id WHERE c.run_id = $1 AND c.key = $2"
                    ),
                )
                .bind(run)
                .bind(key.as_str()),
            )
            .await?
        else {
            return Ok(None);
        };
        let shared = self.shared_of(run).await?;
        card_from_row(&row, &shared, &Arc::from(row.text("mapper_version")?)).map(Some)
    }

    /// Every card of `run`, in run order, exactly as recorded (e.g. to feed
    /// `trueup_core::actions::decide_bulk`).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn run_cards(&self, run: ReconcileRunId) -> Result<Vec<ServiceCard>> {
        let shared = self.shared_of(run).await?;
        let version: Arc<str> = Arc::from(self.reconcile_run(run).await?.mapper_version);
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read run cards",
                    "cards",
                    format!(
                        "SELECT {SUMMARY_COLUMNS}, c.detail FROM cards c WHERE c.run_id = $1 ORDER BY c.position"
                    ),
                )
                .bind(run),
            )
            .await?;
        rows.iter()
            .map(|r| card_from_row(r, &shared, &version))
            .collect()
    }

    /// The card `key` of `company` (the card's company; `None` for cards
    /// without one) in every run that had it, oldest first: how its
    /// numbers moved. (A card's key and company never change together, so
    /// each run is probed through the (run, company, key) index; `CROSS
    /// JOIN` keeps SQLite's planner from scanning the cards instead.)
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_history(
        &self,
        key: &CardKey,
        company: Option<&CompanyId>,
    ) -> Result<Vec<CardHistoryEntry>> {
        let company_sql = if company.is_some() {
            "c.company_id = $2"
        } else {
            "c.company_id IS NULL AND $2 IS NULL"
        };
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read card history",
                    "cards",
                    format!(
                        "SELECT c.run_id, r.as_of, c.category, c.psa_quantity, c.vendor_quantity, \
                         c.target_quantity, c.money_delta FROM reconcile_runs r CROSS JOIN cards c \
                         WHERE c.run_id = r.id AND {company_sql} AND c.key = $1 ORDER BY c.run_id"
                    ),
                )
                .bind(key.as_str())
                .bind(company.map(|c| c.as_str())),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CardHistoryEntry {
                    run: ReconcileRunId(r.int("run_id")?),
                    as_of: r.date("as_of")?,
                    category: r.enum_value("category", "a card category")?,
                    psa_quantity: r.opt_decimal("psa_quantity")?,
                    vendor_quantity: r.opt_decimal("vendor_quantity")?,
                    target_quantity: r.opt_decimal("target_quantity")?,
                    money_delta: r.opt_decimal("money_delta")?,
                })
            })
            .collect()
    }
}

fn summary_from_row(r: &Row) -> Result<CardSummary> {
    let state = match r.opt_text("state_key")? {
        Some(_) => Some(state_from_row(r)?),
        None => None,
    };
    Ok(CardSummary {
        run: ReconcileRunId(r.int("run_id")?),
        position: r.int("position")?,
        key: card_key(r, "key")?,
        category: r.enum_value("category", "a card category")?,
        company: r.opt_text("company_id")?,
        contract: r.opt_text("contract_id")?,
        line: r.opt_text("line_id")?,
        product: r.opt_text("product_id")?,
        vendors: r.json("vendors")?,
        psa_quantity: r.opt_decimal("psa_quantity")?,
        vendor_quantity: r.opt_decimal("vendor_quantity")?,
        target_quantity: r.opt_decimal("target_quantity")?,
        variance: r.opt_decimal("variance")?,
        money: money_from_row(r)?,
        effective_date: r.opt_date("effective_date")?,
        status: r.enum_value("effective_status", "a card status")?,
        state,
        tags: Vec::new(),
    })
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

fn card_from_row(r: &Row, shared: &Shared, mapper_version: &Arc<str>) -> Result<ServiceCard> {
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
