//! Reconciliation: PSA recurring services against vendor usage, into
//! service cards.
//!
//! One pass over the usage rows routes each row to a bucket, a
//! (company, product) pair or an unmapped/failing (account, SKU) source,
//! and adds its quantity to the bucket's daily totals. Rows are never
//! copied: routes are cached per (account, mapping `Arc`) by pointer, so a
//! row costs two small hash lookups, one mapper call and one decimal add.
//! Buckets are then joined to the eligible PSA lines, measured over each
//! contract's current period, and turned into cards; a last pass records
//! which rows stand behind each card's quantity, as indices.
//!
//! The output is sorted and depends only on the input, so the same snapshot
//! always yields the same cards.

mod cards;
mod evidence;
pub mod exclusions;
mod routing;
mod unbilled;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::card::{CardTotals, MappingRefs, ServiceCard, totals};
use crate::effective::PsaProfile;
use crate::eligibility::{
    EligibleContract, EligibleLine, Exclusion, ExclusionCode, Severity, Subject, assess,
};
use crate::fasthash::FxHashMap;
use crate::mapping::{MappingFailure, ServicePolicy, UsageMapper, UsageMapping};
use crate::matching::MatchOutcome;
use crate::model::amount::{MAX_QUANTITY, MAX_UNIT_PRICE};
use crate::model::{
    AccountMapping, CatalogItem, Company, Contract, ProductId, ServiceLine, UsageObservation,
    VendorAccount, VendorId,
};

/// Everything a reconcile reads. All slices are borrowed; nothing is copied.
#[derive(Clone, Copy)]
pub struct ReconcileInput<'a> {
    /// The reconcile date: usage after it is ignored, periods contain it.
    pub as_of: NaiveDate,
    /// What the PSA can do.
    pub psa: &'a PsaProfile,
    /// PSA companies.
    pub companies: &'a [Company],
    /// PSA contracts.
    pub contracts: &'a [Contract],
    /// PSA recurring service lines.
    pub lines: &'a [ServiceLine],
    /// PSA catalogue, for the price of new revenue.
    pub catalog: &'a [CatalogItem],
    /// Vendor accounts, for names on unmapped cards.
    pub accounts: &'a [VendorAccount],
    /// Usage rows; cards refer to them by index.
    pub usage: &'a [UsageObservation],
    /// Account → company mappings (accounts without one are unmapped).
    pub mappings: &'a [AccountMapping],
    /// Matching suggestions, shown on unmapped-account cards (may be empty).
    pub suggestions: &'a [MatchOutcome],
    /// SKU → product mapping and service policies.
    pub mapper: &'a dyn UsageMapper,
}

/// Counts from one run, for health checks and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileStats {
    /// Usage rows given.
    pub usage_rows: usize,
    /// Rows routed to a product of a mapped company.
    pub rows_mapped: usize,
    /// Rows of unmapped accounts or SKUs.
    pub rows_unmapped: usize,
    /// Rows whose mapping rule failed.
    pub rows_rule_error: usize,
    /// Rows of excluded accounts.
    pub rows_excluded: usize,
    /// Rows a rule deliberately does not bill.
    #[serde(default)]
    pub rows_ignored: usize,
    /// Rows observed after the as-of date.
    pub rows_after_as_of: usize,
    /// Distinct vendor accounts seen in usage.
    pub accounts: usize,
}

/// The result of [`reconcile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileOutput {
    /// The reconcile date.
    pub as_of: NaiveDate,
    /// The mapper version used.
    pub mapper_version: Arc<str>,
    /// Cards, sorted by company, contract, product, line, category, key
    /// (cards without a company last).
    pub cards: Vec<ServiceCard>,
    /// Contracts, lines and accounts left out or noted, sorted.
    pub exclusions: Vec<Exclusion>,
    /// Money at stake.
    pub totals: CardTotals,
    /// Row counts.
    pub stats: ReconcileStats,
}

/// Reconciles `input` into cards. Never fails: bad references become
/// exclusions, failing rules become rule-error cards.
pub fn reconcile(input: &ReconcileInput<'_>) -> ReconcileOutput {
    let mut engine = Engine::new(input);
    engine.route_rows();
    let mut cards = engine.build_cards();
    engine.attach_rows(&mut cards);
    let cards = sorted_cards(cards);
    let mut exclusions = std::mem::take(&mut engine.exclusions);
    exclusions.extend(engine.account_exclusions());
    exclusions::describe(input, &mut exclusions);
    exclusions.sort();
    ReconcileOutput {
        as_of: input.as_of,
        mapper_version: engine.version.clone(),
        totals: totals(&cards),
        cards,
        exclusions,
        stats: engine.stats.clone(),
    }
}

/// `cards` in output order: by company id, contract id, product, line id,
/// category and key, cards without a company last. Ids are ranked once so
/// most comparisons are integer comparisons; cards are large, so indices
/// are sorted and the permutation is applied in place, one swap per card.
fn sorted_cards(mut cards: Vec<ServiceCard>) -> Vec<ServiceCard> {
    fn ranks<'c>(ids: impl Iterator<Item = &'c str>) -> FxHashMap<&'c str, u32> {
        let mut distinct: Vec<&str> = ids.collect();
        distinct.sort_unstable();
        distinct.dedup();
        distinct
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i as u32 + 1))
            .collect()
    }
    let company_rank = ranks(
        cards
            .iter()
            .filter_map(|c| c.company.as_ref().map(|x| x.as_str())),
    );
    let contract_rank = ranks(
        cards
            .iter()
            .filter_map(|c| c.contract.as_ref().map(|x| x.as_str())),
    );
    let product_rank = ranks(
        cards
            .iter()
            .filter_map(|c| c.product.as_ref().map(|x| x.as_str())),
    );
    // 0 stands for "none", which sorts first, as `Option` does.
    let rank = |map: &FxHashMap<&str, u32>, id: Option<&str>| {
        id.and_then(|id| map.get(id).copied()).unwrap_or(0)
    };
    let keys: Vec<(bool, u32, u32, u32)> = cards
        .iter()
        .map(|c| {
            (
                c.company.is_none(),
                rank(&company_rank, c.company.as_ref().map(|x| x.as_str())),
                rank(&contract_rank, c.contract.as_ref().map(|x| x.as_str())),
                rank(&product_rank, c.product.as_ref().map(|x| x.as_str())),
            )
        })
        .collect();
    drop((company_rank, contract_rank, product_rank));
    let mut order: Vec<u32> = (0..cards.len() as u32).collect();
    // Keys are unique per card, so an unstable sort is deterministic.
    order.sort_unstable_by(|&a, &b| {
        keys[a as usize].cmp(&keys[b as usize]).then_with(|| {
            let (a, b) = (&cards[a as usize], &cards[b as usize]);
            (&a.line, a.category, &a.key).cmp(&(&b.line, b.category, &b.key))
        })
    });
    drop(keys);
    // order[j] is the card that belongs at j. Follow each cycle, carrying
    // the displaced card along; DONE marks finished positions.
    const DONE: u32 = u32::MAX;
    for start in 0..order.len() {
        let mut at = start;
        while order[at] != DONE {
            let from = order[at] as usize;
            order[at] = DONE;
            if from == start {
                break;
            }
            cards.swap(at, from);
            at = from;
        }
    }
    cards
}

/// A row with no route (excluded account, after the as-of date).
const NO_ROUTE: u32 = u32::MAX;

fn ptr_of<T: ?Sized>(arc: &Arc<T>) -> usize {
    Arc::as_ptr(arc).cast::<u8>().addr()
}

enum SlotStatus {
    Mapped(u32),
    Unmapped(Option<String>),
    Excluded,
}

/// A vendor account seen in usage.
struct Slot<'a> {
    vendor: &'a VendorId,
    account: &'a crate::model::AccountId,
    status: SlotStatus,
    excluded_rows: usize,
    future_rows: usize,
    ignored_rows: usize,
    /// Rows left out because a value is beyond the input limits, and the
    /// first of them, described.
    out_of_range_rows: usize,
    out_of_range_first: Option<String>,
    /// Distinct reasons rules gave for ignoring rows (a few, for the note).
    ignore_reasons: Vec<Arc<str>>,
}

/// Reasons kept per account for the "ignored by rule" note.
const MAX_IGNORE_REASONS: usize = 5;

enum BucketKind {
    Product {
        company: u32,
        product: ProductId,
    },
    Unmapped {
        slot: u32,
        row: u32,
    },
    Failed {
        slot: u32,
        row: u32,
        failure: Box<MappingFailure>,
    },
}

/// Usage summed per day for one card-to-be.
struct Bucket {
    kind: BucketKind,
    days: Vec<(NaiveDate, Decimal)>,
    vendors: Vec<VendorId>,
    mappings: Vec<Arc<UsageMapping>>,
    latest_cost: Option<(NaiveDate, Decimal)>,
    /// The card it feeds and the days its rows must fall in, once known.
    card: Option<(u32, NaiveDate, NaiveDate)>,
}

impl Bucket {
    fn new(kind: BucketKind) -> Self {
        Self {
            kind,
            days: Vec::new(),
            vendors: Vec::new(),
            mappings: Vec::new(),
            latest_cost: None,
            card: None,
        }
    }

    fn add(&mut self, day: NaiveDate, quantity: Decimal) {
        match self.days.last_mut() {
            Some(last) if last.0 == day => last.1 += quantity,
            Some(last) if last.0 < day => self.days.push((day, quantity)),
            None => self.days.push((day, quantity)),
            Some(_) => match self.days.binary_search_by(|(d, _)| d.cmp(&day)) {
                Ok(i) => self.days[i].1 += quantity,
                Err(i) => self.days.insert(i, (day, quantity)),
            },
        }
    }

    fn note_cost(&mut self, day: NaiveDate, cost: Decimal) {
        if self.latest_cost.is_none_or(|(d, _)| day >= d) {
            self.latest_cost = Some((day, cost));
        }
    }

    fn add_mapping(&mut self, mapping: &Arc<UsageMapping>) {
        if !self.mappings.iter().any(|m| Arc::ptr_eq(m, mapping)) {
            self.mappings.push(Arc::clone(mapping));
        }
    }

    fn add_vendor(&mut self, vendor: &VendorId) {
        if !self.vendors.contains(vendor) {
            self.vendors.push(vendor.clone());
        }
    }

    /// The daily totals from `from` to `to`, inclusive.
    fn window(&self, from: NaiveDate, to: NaiveDate) -> &[(NaiveDate, Decimal)] {
        let lo = self.days.partition_point(|(d, _)| *d < from);
        let hi = self.days.partition_point(|(d, _)| *d <= to);
        self.days.get(lo..hi).unwrap_or_default()
    }
}

/// Where a row's quantity goes: buckets with multipliers.
struct Route {
    targets: Box<[(u32, Decimal, bool)]>,
    /// Holds the mapping alive so its pointer, the cache key, is not reused.
    _mapping: Option<Arc<UsageMapping>>,
}

struct Engine<'a> {
    input: &'a ReconcileInput<'a>,
    version: Arc<str>,
    eligible_contracts: Vec<EligibleContract>,
    eligible_lines: Vec<EligibleLine>,
    exclusions: Vec<Exclusion>,
    company_index: HashMap<&'a str, u32>,
    mapping_index: HashMap<(&'a str, &'a str), &'a AccountMapping>,
    slots: Vec<Slot<'a>>,
    slot_by_ptr: FxHashMap<(usize, usize), u32>,
    slot_by_text: HashMap<(&'a str, &'a str), u32>,
    routes: Vec<Route>,
    route_by_mapping: FxHashMap<(u32, usize), u32>,
    route_by_sku: FxHashMap<(u32, usize), u32>,
    failed_route_by_sku: FxHashMap<(u32, usize), u32>,
    buckets: Vec<Bucket>,
    /// Product identifiers seen in usage, numbered.
    product_ids: FxHashMap<Arc<str>, u32>,
    /// (company, product number) → bucket.
    product_bucket: FxHashMap<(u32, u32), u32>,
    orphan_bucket: HashMap<(u32, &'a str, bool), u32>,
    row_route: Vec<u32>,
    stats: ReconcileStats,
    account_index: HashMap<(&'a str, &'a str), &'a VendorAccount>,
    suggestion_index: HashMap<(&'a str, &'a str), &'a MatchOutcome>,
    catalog_index: FxHashMap<&'a str, &'a CatalogItem>,
    policies: FxHashMap<ServicePolicy, Arc<ServicePolicy>>,
    /// For `SkuOnly` mappers: (account slot, SKU pointer) → decision.
    sku_memo: FxHashMap<(u32, usize), (u32, RowKind)>,
    /// The last (slot, mapping pointer) → route, reused without hashing.
    last_route: (u32, usize, u32),
    /// Per bucket: its sorted vendors and its mappings, shared by its cards.
    shared: Vec<SharedParts>,
    no_vendors: Arc<[VendorId]>,
    no_mappings: MappingRefs,
}

/// A bucket's sorted vendors and its mappings, shared by its cards.
type SharedParts = (Arc<[VendorId]>, MappingRefs);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Mapped,
    Unmapped,
    Ignored,
    Failed,
}

impl<'a> Engine<'a> {
    fn new(input: &'a ReconcileInput<'a>) -> Self {
        let eligibility = assess(
            input.companies,
            input.contracts,
            input.lines,
            input.as_of,
            input.psa.cycle_anchor,
        );
        let mut eligibility = eligibility;
        let (lines, out_of_range) = in_range_lines(input.lines, eligibility.lines);
        eligibility.lines = lines;
        eligibility.exclusions.extend(out_of_range);
        let mut company_index = HashMap::with_capacity(input.companies.len());
        for (i, c) in input.companies.iter().enumerate() {
            company_index.entry(c.id.as_str()).or_insert(i as u32);
        }
        let mut mapping_index = HashMap::with_capacity(input.mappings.len());
        for m in input.mappings {
            mapping_index
                .entry((m.vendor.as_str(), m.account.as_str()))
                .or_insert(m);
        }
        Self {
            input,
            version: Arc::from(input.mapper.version()),
            eligible_contracts: eligibility.contracts,
            eligible_lines: eligibility.lines,
            exclusions: eligibility.exclusions,
            company_index,
            mapping_index,
            slots: Vec::new(),
            slot_by_ptr: FxHashMap::default(),
            slot_by_text: HashMap::new(),
            routes: Vec::new(),
            route_by_mapping: FxHashMap::default(),
            route_by_sku: FxHashMap::default(),
            failed_route_by_sku: FxHashMap::default(),
            buckets: Vec::new(),
            product_ids: FxHashMap::default(),
            product_bucket: FxHashMap::default(),
            orphan_bucket: HashMap::new(),
            row_route: Vec::new(),
            stats: ReconcileStats {
                usage_rows: input.usage.len(),
                ..ReconcileStats::default()
            },
            account_index: input
                .accounts
                .iter()
                .map(|a| ((a.vendor.as_str(), a.id.as_str()), a))
                .collect(),
            suggestion_index: input
                .suggestions
                .iter()
                .map(|o| ((o.mapping.vendor.as_str(), o.mapping.account.as_str()), o))
                .collect(),
            // A catalogue price beyond the limits is not offered as the
            // price of new revenue (the card then has no catalogue price).
            catalog_index: input
                .catalog
                .iter()
                .filter(|c| {
                    within(c.unit_price, MAX_UNIT_PRICE) && within(c.unit_cost, MAX_UNIT_PRICE)
                })
                .map(|c| (c.product_identifier.as_str(), c))
                .collect(),
            policies: FxHashMap::default(),
            sku_memo: FxHashMap::default(),
            last_route: (u32::MAX, 0, 0),
            shared: Vec::new(),
            no_vendors: Arc::from(Vec::new()),
            no_mappings: MappingRefs::default(),
        }
    }

    /// One shared `Arc` per distinct policy: most services share a few.
    fn intern_policy(&mut self, policy: ServicePolicy) -> Arc<ServicePolicy> {
        if let Some(shared) = self.policies.get(&policy) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(policy.clone());
        self.policies.insert(policy, Arc::clone(&shared));
        shared
    }
}

/// Most units one usage row may add to a card after its SKU multiplier:
/// [`MAX_QUANTITY`] × [`crate::mapping::MAX_SKU_MULTIPLIER`] (10¹⁴). With it
/// a card's daily total cannot overflow (it would take 10¹⁴ rows), nor its
/// money (10¹⁴ × [`MAX_UNIT_PRICE`] = 10²⁴).
const MAX_ROUTED_QUANTITY: Decimal = Decimal::from_parts(276_447_232, 23_283, 0, false, 0);

/// Whether `value` is inside ±`limit` (and so safe in the reconcile's
/// arithmetic, see [`crate::model::amount`]).
fn within(value: Decimal, limit: Decimal) -> bool {
    value.abs() <= limit
}

/// Why a usage row cannot be reconciled, if a value of it is beyond the
/// input limits.
fn row_out_of_range(row: &UsageObservation) -> Option<String> {
    if !within(row.quantity, MAX_QUANTITY) {
        return Some(format!(
            "quantity {} of {} on {} is beyond the limit of {MAX_QUANTITY}",
            row.quantity,
            row.sku_id,
            row.observed_at.date_naive()
        ));
    }
    match row.unit_cost {
        Some(cost) if !within(cost, MAX_UNIT_PRICE) => Some(format!(
            "unit cost {cost} of {} on {} is beyond the limit of {MAX_UNIT_PRICE}",
            row.sku_id,
            row.observed_at.date_naive()
        )),
        _ => None,
    }
}

/// `lines` without those whose quantity, price or cost is beyond the
/// input limits, and an exclusion for each of those.
fn in_range_lines(
    all: &[ServiceLine],
    lines: Vec<EligibleLine>,
) -> (Vec<EligibleLine>, Vec<Exclusion>) {
    let mut kept = Vec::with_capacity(lines.len());
    let mut excluded = Vec::new();
    for el in lines {
        let line = &all[el.line];
        let bad = [
            ("quantity", line.quantity, MAX_QUANTITY),
            ("unit price", line.unit_price, MAX_UNIT_PRICE),
            ("unit cost", line.unit_cost, MAX_UNIT_PRICE),
        ]
        .into_iter()
        .find(|(_, value, limit)| !within(*value, *limit));
        match bad {
            None => kept.push(el),
            Some((what, value, limit)) => excluded.push(Exclusion::new(
                Subject::Line(line.id.clone()),
                ExclusionCode::ValueOutOfRange,
                Severity::Excluded,
                format!(
                    "line {} has {what} {value}, beyond the limit of {limit}; it is left out of the reconcile (correct it in the PSA)",
                    line.id
                ),
            )),
        }
    }
    (kept, excluded)
}

fn sorted(vendors: &[VendorId]) -> Vec<VendorId> {
    let mut v = vendors.to_vec();
    v.sort();
    v
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
