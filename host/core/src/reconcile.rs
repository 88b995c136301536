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

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::card::{
    CardCategory, CardKey, CardMoney, CardTotals, ChangeDetail, ContractProposal, MappingRefs,
    RowRefs, ServiceCard, UsageSource, VendorQuantity, totals,
};
use crate::cycles::{Period, calendar_month};
use crate::effective::{ChangeConstraints, PsaProfile, propose_effective_date};
use crate::eligibility::{EligibleContract, Exclusion, ExclusionCode, Severity, Subject, assess};
use crate::fasthash::FxHashMap;
use crate::mapping::{
    MappingFailure, PolicyContext, Rounding, RowDependence, ServicePolicy, UsageMapper,
    UsageMapping, UsageMeasure,
};
use crate::matching::{MatchOutcome, Suggestion};
use crate::model::{
    AccountMapping, AccountMappingStatus, AccountRef, CatalogItem, Company, CompanyStatus,
    Contract, ProductId, ServiceLine, UsageObservation, VendorAccount, VendorId,
};
use crate::proration::preview_change;

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
    eligible_lines: Vec<crate::eligibility::EligibleLine>,
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
            catalog_index: input
                .catalog
                .iter()
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

    // ------------------------------------------------------------ phase 1

    fn route_rows(&mut self) {
        let usage = self.input.usage;
        let as_of = self.input.as_of;
        let mapper = self.input.mapper;
        self.row_route = vec![NO_ROUTE; usage.len()];
        // Consecutive rows usually share an account and a mapping; the last
        // decision is reused without hashing.
        let mut last_slot_key = (0usize, 0usize, 0u32);
        let sku_only = mapper.row_dependence() == RowDependence::SkuOnly;
        let mut last_sku_key = (u32::MAX, 0usize, 0u32, RowKind::Mapped);
        for (i, row) in usage.iter().enumerate() {
            let slot_key = (ptr_of(&row.vendor.0), ptr_of(&row.account.0));
            let slot = if i > 0 && (last_slot_key.0, last_slot_key.1) == slot_key {
                last_slot_key.2
            } else {
                let s = self.slot_of(row, slot_key);
                last_slot_key = (slot_key.0, slot_key.1, s);
                s
            };
            let day = row.observed_at.naive_utc().date();
            if day > as_of {
                self.slots[slot as usize].future_rows += 1;
                self.stats.rows_after_as_of += 1;
                continue;
            }
            let route = match self.slots[slot as usize].status {
                SlotStatus::Excluded => {
                    self.slots[slot as usize].excluded_rows += 1;
                    self.stats.rows_excluded += 1;
                    continue;
                }
                SlotStatus::Unmapped(_) => {
                    if self.ignored_without_company(slot, row, sku_only) {
                        self.stats.rows_ignored += 1;
                        self.slots[slot as usize].ignored_rows += 1;
                        continue;
                    }
                    self.stats.rows_unmapped += 1;
                    self.orphan_route(slot, row, i, None)
                }
                SlotStatus::Mapped(company) => {
                    let (route, kind) = if sku_only {
                        let key = (slot, ptr_of(&row.sku_id.0));
                        if (last_sku_key.0, last_sku_key.1) == key {
                            (last_sku_key.2, last_sku_key.3)
                        } else {
                            let decided = match self.sku_memo.get(&key) {
                                Some(&decided) => decided,
                                None => {
                                    let decided = self.map_row(slot, company, row, i);
                                    self.sku_memo.insert(key, decided);
                                    decided
                                }
                            };
                            last_sku_key = (key.0, key.1, decided.0, decided.1);
                            decided
                        }
                    } else {
                        self.map_row(slot, company, row, i)
                    };
                    match kind {
                        RowKind::Mapped => self.stats.rows_mapped += 1,
                        RowKind::Unmapped => self.stats.rows_unmapped += 1,
                        RowKind::Ignored => {
                            self.stats.rows_ignored += 1;
                            self.slots[slot as usize].ignored_rows += 1;
                            continue;
                        }
                        RowKind::Failed => self.stats.rows_rule_error += 1,
                    }
                    route
                }
            };
            self.row_route[i] = route;
            let r = &self.routes[route as usize];
            for &(bucket, multiplier, unit) in r.targets.iter() {
                let quantity = if unit {
                    row.quantity
                } else {
                    row.quantity * multiplier
                };
                let b = &mut self.buckets[bucket as usize];
                b.add(day, quantity);
                if let Some(cost) = row.unit_cost {
                    b.note_cost(day, cost);
                }
            }
        }
        self.stats.accounts = self.slots.len();
    }

    /// Keeps a rule's reason for ignoring rows of `slot`.
    fn note_ignored(&mut self, slot: u32, mapping: &UsageMapping) {
        let Some(reason) = &mapping.ignored else {
            return;
        };
        let reasons = &mut self.slots[slot as usize].ignore_reasons;
        if reasons.len() < MAX_IGNORE_REASONS && !reasons.iter().any(|r| r == reason) {
            reasons.push(Arc::clone(reason));
        }
    }

    /// Whether the rules deliberately ignore a row of an unmapped account
    /// (asked without a company): a free SKU of an unknown tenant is not
    /// work for the MSP, so it must not inflate the unmapped list.
    fn ignored_without_company(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        sku_only: bool,
    ) -> bool {
        let key = (slot, ptr_of(&row.sku_id.0));
        if sku_only && let Some(&(_, kind)) = self.sku_memo.get(&key) {
            return kind == RowKind::Ignored;
        }
        let ignored = match self.input.mapper.map_usage(row, None) {
            Ok(mapping) if mapping.is_ignored() => {
                self.note_ignored(slot, &mapping);
                true
            }
            _ => false,
        };
        if sku_only {
            let kind = if ignored {
                RowKind::Ignored
            } else {
                RowKind::Unmapped
            };
            self.sku_memo.insert(key, (NO_ROUTE, kind));
        }
        ignored
    }

    /// Calls the mapper for one row and routes it.
    fn map_row(
        &mut self,
        slot: u32,
        company: u32,
        row: &'a UsageObservation,
        index: usize,
    ) -> (u32, RowKind) {
        match self
            .input
            .mapper
            .map_usage(row, Some(&self.input.companies[company as usize]))
        {
            Ok(mapping) if mapping.is_ignored() => {
                self.note_ignored(slot, &mapping);
                (NO_ROUTE, RowKind::Ignored)
            }
            Ok(mapping) if mapping.is_unmapped() => (
                self.orphan_route(slot, row, index, Some(&mapping)),
                RowKind::Unmapped,
            ),
            Ok(mapping) => {
                let key = (slot, ptr_of(&mapping));
                if (self.last_route.0, self.last_route.1) == key {
                    return (self.last_route.2, RowKind::Mapped);
                }
                let route = self.product_route(slot, company, mapping);
                self.last_route = (key.0, key.1, route);
                (route, RowKind::Mapped)
            }
            Err(failure) => (
                self.failed_route(slot, row, index, failure),
                RowKind::Failed,
            ),
        }
    }

    fn slot_of(&mut self, row: &'a UsageObservation, ptr_key: (usize, usize)) -> u32 {
        if let Some(&slot) = self.slot_by_ptr.get(&ptr_key) {
            return slot;
        }
        let text_key = (row.vendor.as_str(), row.account.as_str());
        let slot = match self.slot_by_text.get(&text_key) {
            Some(&slot) => slot,
            None => {
                let status = match self.mapping_index.get(&text_key).map(|m| &m.status) {
                    Some(AccountMappingStatus::Mapped(company)) => {
                        match self.company_index.get(company.as_str()) {
                            Some(&c) => SlotStatus::Mapped(c),
                            None => SlotStatus::Unmapped(Some(format!(
                                "the account is mapped to company {company}, which is not in the PSA data; map it again"
                            ))),
                        }
                    }
                    Some(AccountMappingStatus::Excluded) => SlotStatus::Excluded,
                    Some(AccountMappingStatus::Unmapped) | None => SlotStatus::Unmapped(None),
                };
                self.slots.push(Slot {
                    vendor: &row.vendor,
                    account: &row.account,
                    status,
                    excluded_rows: 0,
                    future_rows: 0,
                    ignored_rows: 0,
                    ignore_reasons: Vec::new(),
                });
                let slot = (self.slots.len() - 1) as u32;
                self.slot_by_text.insert(text_key, slot);
                slot
            }
        };
        self.slot_by_ptr.insert(ptr_key, slot);
        slot
    }

    fn product_route(&mut self, slot: u32, company: u32, mapping: Arc<UsageMapping>) -> u32 {
        let key = (slot, ptr_of(&mapping));
        if let Some(&route) = self.route_by_mapping.get(&key) {
            return route;
        }
        let vendor = self.slots[slot as usize].vendor;
        let mut targets = Vec::with_capacity(mapping.targets.len());
        for target in &mapping.targets {
            let next = self.product_ids.len() as u32;
            let product = *self
                .product_ids
                .entry(target.product.0.clone())
                .or_insert(next);
            let bucket_key = (company, product);
            let bucket = match self.product_bucket.get(&bucket_key) {
                Some(&b) => b,
                None => {
                    self.buckets.push(Bucket::new(BucketKind::Product {
                        company,
                        product: target.product.clone(),
                    }));
                    let b = (self.buckets.len() - 1) as u32;
                    self.product_bucket.insert(bucket_key, b);
                    b
                }
            };
            let b = &mut self.buckets[bucket as usize];
            b.add_vendor(vendor);
            b.add_mapping(&mapping);
            targets.push((bucket, target.multiplier, target.multiplier == Decimal::ONE));
        }
        self.routes.push(Route {
            targets: targets.into_boxed_slice(),
            _mapping: Some(mapping),
        });
        let route = (self.routes.len() - 1) as u32;
        self.route_by_mapping.insert(key, route);
        route
    }

    /// The route of an unmapped account's or unmapped SKU's row: one bucket
    /// per (account, SKU), so its count is a count of one thing.
    fn orphan_route(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        index: usize,
        mapping: Option<&Arc<UsageMapping>>,
    ) -> u32 {
        let key = (slot, ptr_of(&row.sku_id.0));
        if let Some(&route) = self.route_by_sku.get(&key) {
            return route;
        }
        let bucket = self.orphan_bucket(slot, row, index, None);
        if let Some(mapping) = mapping {
            self.buckets[bucket as usize].add_mapping(mapping);
        }
        let vendor = self.slots[slot as usize].vendor;
        self.buckets[bucket as usize].add_vendor(vendor);
        self.routes.push(Route {
            targets: Box::new([(bucket, Decimal::ONE, true)]),
            _mapping: None,
        });
        let route = (self.routes.len() - 1) as u32;
        self.route_by_sku.insert(key, route);
        route
    }

    fn failed_route(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        index: usize,
        failure: MappingFailure,
    ) -> u32 {
        let key = (slot, ptr_of(&row.sku_id.0));
        if let Some(&route) = self.failed_route_by_sku.get(&key) {
            return route;
        }
        let bucket = self.orphan_bucket(slot, row, index, Some(failure));
        let vendor = self.slots[slot as usize].vendor;
        self.buckets[bucket as usize].add_vendor(vendor);
        self.routes.push(Route {
            targets: Box::new([(bucket, Decimal::ONE, true)]),
            _mapping: None,
        });
        let route = (self.routes.len() - 1) as u32;
        self.failed_route_by_sku.insert(key, route);
        route
    }

    fn orphan_bucket(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        index: usize,
        failure: Option<MappingFailure>,
    ) -> u32 {
        let key = (slot, row.sku_id.as_str(), failure.is_some());
        if let Some(&b) = self.orphan_bucket.get(&key) {
            return b;
        }
        let row = index as u32;
        let kind = match failure {
            Some(failure) => BucketKind::Failed {
                slot,
                row,
                failure: Box::new(failure),
            },
            None => BucketKind::Unmapped { slot, row },
        };
        self.buckets.push(Bucket::new(kind));
        let b = (self.buckets.len() - 1) as u32;
        self.orphan_bucket.insert(key, b);
        b
    }

    // ------------------------------------------------------------ phase 2

    /// The bucket of `company`'s usage of `product`, if any.
    fn bucket_of(&self, company: u32, product: &str) -> Option<u32> {
        let product = self.product_ids.get(product)?;
        self.product_bucket.get(&(company, *product)).copied()
    }

    fn build_cards(&mut self) -> Vec<ServiceCard> {
        let input = self.input;
        self.shared = self
            .buckets
            .iter()
            .map(|b| {
                (
                    Arc::from(sorted(&b.vendors)),
                    MappingRefs(Arc::from(b.mappings.as_slice())),
                )
            })
            .collect();
        let mut joined = vec![false; self.buckets.len()];

        // Lines grouped by (company, product) in first-seen order, as
        // linked lists through `next` (most groups have one line, so no
        // vector per group).
        const END: u32 = u32::MAX;
        let mut group_of: FxHashMap<(u32, &str), usize> = FxHashMap::default();
        group_of.reserve(self.eligible_lines.len());
        let mut groups: Vec<(u32, u32, u32)> = Vec::new(); // (company, first, last)
        let mut next = vec![END; self.eligible_lines.len()];
        for (i, el) in self.eligible_lines.iter().enumerate() {
            let company = self.eligible_contracts[el.contract].company as u32;
            let product = input.lines[el.line].product_identifier.as_str();
            match group_of.get(&(company, product)) {
                Some(&g) => {
                    next[groups[g].2 as usize] = i as u32;
                    groups[g].2 = i as u32;
                }
                None => {
                    group_of.insert((company, product), groups.len());
                    groups.push((company, i as u32, i as u32));
                }
            }
        }
        drop(group_of);
        // Which buckets the lines take, first, so the card vector (cards are
        // large) is allocated once at its exact size.
        let group_bucket: Vec<Option<u32>> = groups
            .iter()
            .map(|&(company, first, _)| {
                let line = &input.lines[self.eligible_lines[first as usize].line];
                self.bucket_of(company, line.product_identifier.as_str())
            })
            .collect();
        for b in group_bucket.iter().flatten() {
            joined[*b as usize] = true;
        }
        let unjoined = joined.iter().filter(|j| !**j).count();
        let mut cards = Vec::with_capacity(self.eligible_lines.len() + unjoined);
        let mut members: Vec<usize> = Vec::new();
        for ((_, first, _), bucket) in groups.into_iter().zip(group_bucket) {
            members.clear();
            let mut at = first;
            while at != END {
                members.push(at as usize);
                at = next[at as usize];
            }
            if members.len() > 1 {
                members.sort_by(|&a, &b| {
                    let (la, lb) = (
                        &input.lines[self.eligible_lines[a].line],
                        &input.lines[self.eligible_lines[b].line],
                    );
                    (&la.contract_id, &la.id).cmp(&(&lb.contract_id, &lb.id))
                });
            }
            let primary = members[0];
            let product = &input.lines[self.eligible_lines[primary].line].product_identifier;
            let others: Decimal = members[1..]
                .iter()
                .map(|&m| input.lines[self.eligible_lines[m].line].quantity)
                .sum();
            let primary_line = &input.lines[self.eligible_lines[primary].line];
            cards.push(self.line_card(
                primary,
                bucket,
                others,
                members.len() - 1,
                cards.len() as u32,
            ));
            for &m in &members[1..] {
                let mut card = self.bare_line_card(m);
                card.category = CardCategory::NoChange;
                card.notes.push(format!(
                    "{product} is also billed on line {} of contract {}; usage is compared against all the company's {product} lines together and any change is proposed on that line",
                    primary_line.id, primary_line.contract_id
                ));
                cards.push(card);
            }
        }

        let contracts_by_company = self.contracts_by_company();
        let mut lines_by_contract = vec![Vec::new(); self.eligible_contracts.len()];
        for el in &self.eligible_lines {
            lines_by_contract[el.contract].push(el.line);
        }
        for (b, joined) in joined.into_iter().enumerate() {
            if joined {
                continue;
            }
            let card = match &self.buckets[b].kind {
                BucketKind::Product { company, product } => {
                    let (company, product) = (*company, product.clone());
                    let candidates = &contracts_by_company[company as usize];
                    self.new_revenue_card(
                        b as u32,
                        company,
                        &product,
                        candidates,
                        &lines_by_contract,
                        cards.len() as u32,
                    )
                }
                BucketKind::Unmapped { slot, row } => {
                    let (slot, row) = (*slot, *row);
                    self.orphan_card(b as u32, cards.len() as u32, slot, row, None)
                }
                BucketKind::Failed { slot, row, failure } => {
                    let (slot, row, failure) = (*slot, *row, (**failure).clone());
                    self.orphan_card(b as u32, cards.len() as u32, slot, row, Some(failure))
                }
            };
            cards.push(card);
        }
        cards
    }

    fn contracts_by_company(&self) -> Vec<Vec<usize>> {
        let mut by_company = vec![Vec::new(); self.input.companies.len()];
        for (i, ec) in self.eligible_contracts.iter().enumerate() {
            by_company[ec.company].push(i);
        }
        by_company
    }

    /// A line card with the PSA side filled in and no vendor side.
    fn bare_line_card(&self, eligible_line: usize) -> ServiceCard {
        let input = self.input;
        let el = self.eligible_lines[eligible_line];
        let ec = &self.eligible_contracts[el.contract];
        let line = &input.lines[el.line];
        let contract = &input.contracts[ec.contract];
        let company = &input.companies[ec.company];
        let mut card = self.empty_card(
            CardKey::for_line(&company.id, &contract.id, &line.id),
            CardCategory::NoVendorData,
        );
        card.company = Some(company.id.clone());
        card.contract = Some(contract.id.clone());
        card.line = Some(line.id.clone());
        card.product = Some(line.product_identifier.clone());
        card.period = Some(ec.period);
        card.psa_quantity = Some(line.quantity);
        card.constraints = Some(ChangeConstraints::new(input.psa, contract));
        card.money = Some(CardMoney::new(
            line.unit_price,
            line.unit_cost,
            line.quantity,
            line.quantity,
        ));
        if let Some(note) = ec.schedule.note() {
            card.notes.push(note.to_owned());
        }
        if company.status == CompanyStatus::Inactive {
            card.notes
                .push(format!("company {} is inactive in the PSA", company.name));
        }
        card
    }

    fn empty_card(&self, key: CardKey, category: CardCategory) -> ServiceCard {
        ServiceCard {
            key,
            category,
            company: None,
            contract: None,
            line: None,
            product: None,
            source: None,
            vendors: self.no_vendors.clone(),
            period: None,
            psa_quantity: None,
            vendor_quantity: None,
            target_quantity: None,
            variance: None,
            money: None,
            vendor_unit_cost: None,
            change: None,
            constraints: None,
            policy: None,
            auto_approvable: false,
            usage_rows: RowRefs::default(),
            mappings: self.no_mappings.clone(),
            mapper_version: self.version.clone(),
            suggestions: Vec::new(),
            error: None,
            notes: Vec::new(),
        }
    }

    fn line_card(
        &mut self,
        eligible_line: usize,
        bucket: Option<u32>,
        others: Decimal,
        other_lines: usize,
        index: u32,
    ) -> ServiceCard {
        let input = self.input;
        let mut card = self.bare_line_card(eligible_line);
        let el = self.eligible_lines[eligible_line];
        let ec = &self.eligible_contracts[el.contract];
        let line = &input.lines[el.line];
        let contract = &input.contracts[ec.contract];
        let company = &input.companies[ec.company];
        let ctx = PolicyContext {
            company,
            contract,
            product: &line.product_identifier,
            line: Some(line),
            psa: input.psa,
            as_of: input.as_of,
        };
        if let Some(b) = bucket {
            let bucket = &self.buckets[b as usize];
            card.vendors = self.shared[b as usize].0.clone();
            card.mappings = self.shared[b as usize].1.clone();
            card.vendor_unit_cost = bucket.latest_cost.map(|(_, c)| c);
        }
        let policy = match input.mapper.service_policy(&ctx) {
            Ok(policy) => policy,
            Err(failure) => {
                card.category = CardCategory::RuleError;
                card.money = None;
                card.error = Some(Box::new(failure));
                return card;
            }
        };
        let period = ec.period;
        let measured = bucket.and_then(|b| {
            let bucket = &self.buckets[b as usize];
            policy
                .measure
                .measure(bucket.window(period.start, input.as_of))
                .map(|m| (b, m))
        });
        let Some((b, measured)) = measured else {
            if let Some(last) = bucket.and_then(|b| self.buckets[b as usize].days.last()) {
                card.notes.push(format!(
                    "vendors last reported this product on {}, before the current period {period}",
                    last.0
                ));
            }
            card.policy = Some(self.intern_policy(policy));
            return card;
        };
        self.buckets[b as usize].card = Some((index, measured.from, measured.to));
        let billable = self.billable(&policy, measured.quantity, &mut card.notes);
        card.vendor_quantity = Some(VendorQuantity { measured, billable });
        let psa_total = line.quantity + others;
        let mut target = billable - others;
        if target < Decimal::ZERO {
            card.notes.push(format!(
                "vendors report {billable}, less than the {others} billed on the other {other_lines} line(s) of this product; this line can go no lower than 0"
            ));
            target = Decimal::ZERO;
        }
        card.variance = Some((billable - psa_total).normalize());
        if policy.tolerance.accepts(psa_total, billable) {
            card.category = CardCategory::NoChange;
            if billable != psa_total {
                card.notes.push(format!(
                    "vendor quantity {billable} differs from the billed {psa_total} within the tolerance"
                ));
            }
            card.policy = Some(self.intern_policy(policy));
            return card;
        }
        card.category = CardCategory::Reconcile;
        self.propose(
            &mut card,
            ec,
            contract,
            &policy,
            line.quantity,
            target,
            line.unit_price,
            line.unit_cost,
            None,
        );
        card.policy = Some(self.intern_policy(policy));
        card
    }

    /// Applies the policy's limits and rounding, and the PSA's integer rule.
    fn billable(
        &self,
        policy: &ServicePolicy,
        measured: Decimal,
        notes: &mut Vec<String>,
    ) -> Decimal {
        let mut billable = policy.billable_quantity(measured);
        if self.input.psa.integer_units && !billable.is_integer() {
            let rounded = Rounding::Nearest.apply(billable).normalize();
            notes.push(format!(
                "{} needs whole units: {billable} rounded to {rounded} (set a rounding in the service policy to choose)",
                self.input.psa.name
            ));
            billable = rounded;
        }
        billable
    }

    /// Fills target, money, effective date and proration of a change.
    #[allow(clippy::too_many_arguments)]
    fn propose(
        &self,
        card: &mut ServiceCard,
        ec: &EligibleContract,
        contract: &Contract,
        policy: &ServicePolicy,
        from: Decimal,
        to: Decimal,
        unit_price: Decimal,
        unit_cost: Decimal,
        contract_proposal: Option<ContractProposal>,
    ) {
        let input = self.input;
        let constraints = ChangeConstraints::new(input.psa, contract);
        let mut change = ChangeDetail {
            effective: None,
            proration: None,
            contract_proposal,
        };
        card.target_quantity = Some(to);
        card.money = Some(CardMoney::new(unit_price, unit_cost, from, to));
        card.auto_approvable = policy.auto_approve.allows(from, to);
        match propose_effective_date(
            &policy.effective_date,
            input.as_of,
            &ec.schedule,
            &constraints,
        ) {
            Ok(effective) => {
                let prorate = constraints.prorate && policy.prorate != Some(false);
                if policy.prorate == Some(true) && !constraints.prorate {
                    card.notes.push(format!(
                        "the service policy asks for proration but contract {} does not prorate",
                        contract.id
                    ));
                }
                match preview_change(&ec.schedule, effective.date, from, to, unit_price, prorate) {
                    Ok(preview) => change.proration = Some(preview),
                    Err(e) => card.notes.push(format!("no proration preview: {e}")),
                }
                change.effective = Some(effective);
            }
            Err(e) => card
                .notes
                .push(format!("no effective date can be proposed: {e}")),
        }
        card.change = Some(Box::new(change));
    }

    fn new_revenue_card(
        &mut self,
        bucket: u32,
        company: u32,
        product: &ProductId,
        candidates: &[usize],
        lines_by_contract: &[Vec<usize>],
        index: u32,
    ) -> ServiceCard {
        let input = self.input;
        let company_rec = &input.companies[company as usize];
        let mut card = self.empty_card(
            CardKey::for_new_revenue(&company_rec.id, product),
            CardCategory::NewRevenue,
        );
        card.company = Some(company_rec.id.clone());
        card.product = Some(product.clone());
        card.psa_quantity = Some(Decimal::ZERO);
        {
            let b = &self.buckets[bucket as usize];
            card.vendors = self.shared[bucket as usize].0.clone();
            card.mappings = self.shared[bucket as usize].1.clone();
            card.vendor_unit_cost = b.latest_cost.map(|(_, c)| c);
        }
        if company_rec.status == CompanyStatus::Inactive {
            card.notes.push(format!(
                "company {} is inactive in the PSA",
                company_rec.name
            ));
        }
        let chosen = self.choose_contract(bucket, candidates, lines_by_contract);
        let mut proposal = None;
        let (policy, period) = match &chosen {
            Some((ec_index, reason)) => {
                let ec = &self.eligible_contracts[*ec_index];
                let contract = &input.contracts[ec.contract];
                card.contract = Some(contract.id.clone());
                proposal = Some(ContractProposal {
                    contract: contract.id.clone(),
                    reason: reason.clone(),
                });
                card.constraints = Some(ChangeConstraints::new(input.psa, contract));
                let ctx = PolicyContext {
                    company: company_rec,
                    contract,
                    product,
                    line: None,
                    psa: input.psa,
                    as_of: input.as_of,
                };
                match input.mapper.service_policy(&ctx) {
                    Ok(policy) => (policy, ec.period),
                    Err(failure) => {
                        card.category = CardCategory::RuleError;
                        card.period = Some(ec.period);
                        card.error = Some(Box::new(failure));
                        return card;
                    }
                }
            }
            None => {
                card.notes.push(format!(
                    "company {} has no active recurring contract to add {product} to; create one, then approve",
                    company_rec.name
                ));
                let period = calendar_month(input.as_of).unwrap_or(Period {
                    start: input.as_of,
                    end: input.as_of,
                });
                (ServicePolicy::default_for(input.psa), period)
            }
        };
        card.period = Some(period);
        let measured = policy
            .measure
            .measure(self.buckets[bucket as usize].window(period.start, input.as_of));
        let Some(measured) = measured else {
            card.category = CardCategory::NoChange;
            card.notes.push(format!(
                "vendors reported {product} only before the current period {period}"
            ));
            card.policy = Some(self.intern_policy(policy));
            return card;
        };
        self.buckets[bucket as usize].card = Some((index, measured.from, measured.to));
        let billable = self.billable(&policy, measured.quantity, &mut card.notes);
        card.vendor_quantity = Some(VendorQuantity { measured, billable });
        card.variance = Some(billable.normalize());
        if billable <= Decimal::ZERO {
            card.category = CardCategory::NoChange;
            card.notes
                .push(format!("vendors report zero {product}: nothing to bill"));
            card.policy = Some(self.intern_policy(policy));
            return card;
        }
        let catalog = self.catalog_index.get(product.as_str());
        let (unit_price, unit_cost) = match catalog {
            Some(item) => (item.unit_price, item.unit_cost),
            None => {
                card.notes.push(format!(
                    "{product} has no catalogue price; the money shown uses a price of 0 until one is set"
                ));
                (
                    Decimal::ZERO,
                    card.vendor_unit_cost.unwrap_or(Decimal::ZERO),
                )
            }
        };
        if let Some((ec_index, _)) = chosen {
            let ec = &self.eligible_contracts[ec_index];
            let contract = &input.contracts[ec.contract];
            self.propose(
                &mut card,
                ec,
                contract,
                &policy,
                Decimal::ZERO,
                billable,
                unit_price,
                unit_cost,
                proposal,
            );
        } else {
            card.target_quantity = Some(billable);
            card.money = Some(CardMoney::new(
                unit_price,
                unit_cost,
                Decimal::ZERO,
                billable,
            ));
        }
        card.policy = Some(self.intern_policy(policy));
        card
    }

    /// The contract a new product goes on: the one carrying most lines fed
    /// by the same vendors, then the one with most lines, then the lowest
    /// contract id.
    fn choose_contract(
        &self,
        bucket: u32,
        candidates: &[usize],
        lines_by_contract: &[Vec<usize>],
    ) -> Option<(usize, String)> {
        let input = self.input;
        let vendors = &self.buckets[bucket as usize].vendors;
        let company = match &self.buckets[bucket as usize].kind {
            BucketKind::Product { company, .. } => *company,
            _ => return None,
        };
        let mut best: Option<(usize, usize, usize)> = None; // (same-vendor lines, lines, ec)
        for &ec in candidates {
            let mut same_vendor = 0;
            let mut lines = 0;
            for &line in &lines_by_contract[ec] {
                lines += 1;
                let product = &input.lines[line].product_identifier;
                if let Some(b) = self.bucket_of(company, product.as_str())
                    && self.buckets[b as usize]
                        .vendors
                        .iter()
                        .any(|v| vendors.contains(v))
                {
                    same_vendor += 1;
                }
            }
            let better = match best {
                None => true,
                Some((s, l, other)) => {
                    (same_vendor, lines) > (s, l)
                        || ((same_vendor, lines) == (s, l)
                            && input.contracts[self.eligible_contracts[ec].contract].id
                                < input.contracts[self.eligible_contracts[other].contract].id)
                }
            };
            if better {
                best = Some((same_vendor, lines, ec));
            }
        }
        let (same_vendor, lines, ec) = best?;
        let contract = &input.contracts[self.eligible_contracts[ec].contract];
        let vendor_names: Vec<String> = sorted(vendors).iter().map(|v| v.to_string()).collect();
        let reason = if candidates.len() == 1 {
            format!(
                "{} is the company's only active recurring contract",
                contract.id
            )
        } else if same_vendor > 0 {
            format!(
                "{} already carries {same_vendor} service(s) reported by {} (most of the company's {} contracts)",
                contract.id,
                vendor_names.join(", "),
                candidates.len()
            )
        } else {
            format!(
                "no contract carries services from {}; {} has the most services ({lines}) of the company's {} contracts (ties go to the lowest id)",
                vendor_names.join(", "),
                contract.id,
                candidates.len()
            )
        };
        Some((ec, reason))
    }

    fn orphan_card(
        &mut self,
        bucket: u32,
        index: u32,
        slot: u32,
        row: u32,
        failure: Option<MappingFailure>,
    ) -> ServiceCard {
        let input = self.input;
        let usage = &input.usage[row as usize];
        let slot_rec = &self.slots[slot as usize];
        let account_name = self
            .account_index
            .get(&(slot_rec.vendor.as_str(), slot_rec.account.as_str()))
            .map(|a| a.name.clone());
        let source = UsageSource {
            vendor: slot_rec.vendor.clone(),
            account: slot_rec.account.clone(),
            account_name,
            sku: usage.sku_id.clone(),
            sku_name: usage.sku_name.clone(),
        };
        let (key, category) = match failure {
            Some(_) => (
                CardKey::for_rule_error(&source.vendor, &source.account, &source.sku),
                CardCategory::RuleError,
            ),
            None => (
                CardKey::for_unmapped(&source.vendor, &source.account, &source.sku),
                CardCategory::Unmapped,
            ),
        };
        let mut card = self.empty_card(key, category);
        let company = match slot_rec.status {
            SlotStatus::Mapped(c) => Some(c),
            _ => None,
        };
        card.company = company.map(|c| input.companies[c as usize].id.clone());
        let mut extra_mapping = None;
        match (&slot_rec.status, &failure) {
            (_, Some(_)) => card.notes.push(format!(
                "the mapping rules failed for {} SKU {}; fix the rule and run again",
                source.vendor, source.sku
            )),
            (SlotStatus::Mapped(_), None) => card.notes.push(format!(
                "{} SKU {} ({}) is not mapped to a PSA product",
                source.vendor, source.sku, source.sku_name
            )),
            (SlotStatus::Unmapped(note), None) => {
                card.notes.push(format!(
                    "{} account {} is not mapped to a PSA company",
                    source.vendor, source.account
                ));
                card.notes.extend(note.clone());
                card.suggestions = self.suggestions_for(&source.vendor, &source.account);
                // What the usage would map to once the account is mapped.
                if let Ok(mapping) = input.mapper.map_usage(usage, None) {
                    extra_mapping = Some(mapping);
                }
            }
            (SlotStatus::Excluded, None) => {}
        }
        card.error = failure.map(Box::new);
        let b = &self.buckets[bucket as usize];
        card.vendors = self.shared[bucket as usize].0.clone();
        card.mappings = match extra_mapping {
            Some(extra) => {
                let mut all: Vec<Arc<UsageMapping>> = vec![extra];
                for m in &b.mappings {
                    if !all.iter().any(|c| Arc::ptr_eq(c, m)) {
                        all.push(Arc::clone(m));
                    }
                }
                MappingRefs::from(all)
            }
            None => self.shared[bucket as usize].1.clone(),
        };
        card.vendor_unit_cost = b.latest_cost.map(|(_, c)| c);
        card.source = Some(Box::new(source));
        let period = calendar_month(input.as_of).unwrap_or(Period {
            start: input.as_of,
            end: input.as_of,
        });
        card.period = Some(period);
        if let Some(measured) =
            UsageMeasure::MonthEndSnapshot.measure(b.window(period.start, input.as_of))
        {
            card.vendor_quantity = Some(VendorQuantity {
                measured,
                billable: measured.quantity.normalize(),
            });
            self.buckets[bucket as usize].card = Some((index, measured.from, measured.to));
        } else if let Some(last) = b.days.last() {
            card.notes
                .push(format!("last reported on {}, before {period}", last.0));
        }
        card
    }

    fn suggestions_for(
        &self,
        vendor: &VendorId,
        account: &crate::model::AccountId,
    ) -> Vec<Suggestion> {
        self.suggestion_index
            .get(&(vendor.as_str(), account.as_str()))
            .map(|o| o.suggestions.clone())
            .unwrap_or_default()
    }

    // ------------------------------------------------------------ phase 3

    /// Records, on each card, the rows of the days its quantity was
    /// measured on: counted first, then written into one shared buffer that
    /// every card holds a window of.
    fn attach_rows(&self, cards: &mut [ServiceCard]) {
        let visit = |f: &mut dyn FnMut(usize, u32)| {
            for (i, row) in self.input.usage.iter().enumerate() {
                let route = self.row_route[i];
                if route == NO_ROUTE {
                    continue;
                }
                let day = row.observed_at.naive_utc().date();
                for &(bucket, _, _) in self.routes[route as usize].targets.iter() {
                    if let Some((card, from, to)) = self.buckets[bucket as usize].card
                        && from <= day
                        && day <= to
                    {
                        f(card as usize, i as u32);
                    }
                }
            }
        };
        let mut starts = vec![0usize; cards.len() + 1];
        visit(&mut |card, _| starts[card + 1] += 1);
        for c in 0..cards.len() {
            starts[c + 1] += starts[c];
        }
        let mut buffer = vec![0u32; starts[cards.len()]];
        let mut cursor = starts.clone();
        visit(&mut |card, row| {
            buffer[cursor[card]] = row;
            cursor[card] += 1;
        });
        let shared: Arc<[u32]> = Arc::from(buffer);
        for (c, card) in cards.iter_mut().enumerate() {
            if let Some(rows) = RowRefs::new(Arc::clone(&shared), starts[c]..starts[c + 1]) {
                card.usage_rows = rows;
            }
        }
    }

    fn account_exclusions(&self) -> Vec<Exclusion> {
        let mut out = Vec::new();
        for slot in &self.slots {
            let subject = || {
                Subject::Account(AccountRef {
                    vendor: slot.vendor.clone(),
                    account: slot.account.clone(),
                })
            };
            if slot.excluded_rows > 0 {
                out.push(Exclusion {
                    subject: subject(),
                    code: ExclusionCode::AccountExcluded,
                    severity: Severity::Excluded,
                    reason: format!(
                        "{} account {} is excluded from billing; its {} usage row(s) were not reconciled",
                        slot.vendor, slot.account, slot.excluded_rows
                    ),
                });
            }
            if slot.ignored_rows > 0 {
                out.push(Exclusion {
                    subject: subject(),
                    code: ExclusionCode::UsageIgnoredByRule,
                    severity: Severity::Noted,
                    reason: format!(
                        "{} usage row(s) of {} account {} are not billed by rule ({})",
                        slot.ignored_rows,
                        slot.vendor,
                        slot.account,
                        slot.ignore_reasons
                            .iter()
                            .map(|r| r.as_ref())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                });
            }
            if slot.future_rows > 0 {
                out.push(Exclusion {
                    subject: subject(),
                    code: ExclusionCode::UsageAfterAsOf,
                    severity: Severity::Noted,
                    reason: format!(
                        "{} usage row(s) of {} account {} were observed after {} and ignored",
                        slot.future_rows, slot.vendor, slot.account, self.input.as_of
                    ),
                });
            }
        }
        out
    }
}

fn sorted(vendors: &[VendorId]) -> Vec<VendorId> {
    let mut v = vendors.to_vec();
    v.sort();
    v
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
