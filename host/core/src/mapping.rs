//! The mapping interface: how vendor usage becomes PSA products, and how
//! each service is counted and changed.
//!
//! [`UsageMapper`] is implemented by the Rhai rules crate (`trueup-rules`)
//! and by the built-in [`SkuTableMapper`], so the core runs on its own.
//!
//! Performance contract: a reconcile calls [`UsageMapper::map_usage`] once
//! per usage row (millions). Implementations memoise and hand back shared
//! `Arc<UsageMapping>`s, so a row costs a lookup, not an allocation; the
//! engine caches per distinct `Arc` (by pointer), so returning the *same*
//! `Arc` for the same decision is what makes the rest of the pipeline cheap.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::effective::{EffectiveDatePolicy, PsaProfile};
use crate::model::{
    Company, Contract, ProductId, ServiceLine, SkuId, UsageObservation, VendorId, amount,
};

/// Decimal places kept for a computed vendor quantity (daily averages,
/// multiplied counts) before the service's rounding.
pub const QUANTITY_DP: u32 = 4;

/// One product a usage row counts towards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MappingTarget {
    /// The PSA product identifier.
    pub product: ProductId,
    /// Units of the product per unit of usage (1 for a plain mapping; 0.5
    /// for "two devices per seat"; a bundle repeats the row per target).
    #[serde(with = "amount")]
    pub multiplier: Decimal,
}

/// A place in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The rule file, as the rules engine names it.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, when known.
    pub column: Option<u32>,
}

impl std::fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(column) => write!(f, "{}:{}:{column}", self.file, self.line),
            None => write!(f, "{}:{}", self.file, self.line),
        }
    }
}

/// One rule considered while mapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceStep {
    /// The rule's name.
    pub rule: Arc<str>,
    /// Where the rule is defined, when it comes from a file.
    pub position: Option<SourcePosition>,
    /// Whether this rule decided the mapping.
    pub matched: bool,
    /// What happened: the decision, or why the rule did not match.
    pub outcome: String,
}

/// How a mapping was reached, for the card's "explain".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Trace {
    /// Rules in the order considered.
    pub steps: Vec<TraceStep>,
}

/// What one usage row maps to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageMapping {
    /// Products it counts towards: none means the SKU is not mapped (unless
    /// `ignored` says it is deliberately not billed), several mean a bundle.
    pub targets: Vec<MappingTarget>,
    /// Set when a rule decided on purpose that the row is not billed (a free
    /// SKU, a suspended licence, a stale device), with the reason. Such rows
    /// make no card, unmapped or otherwise: they are counted per account as
    /// a noted exclusion, so the unmapped count stays the list of work to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<Arc<str>>,
    /// How the decision was reached.
    pub trace: Trace,
}

impl UsageMapping {
    /// Whether the row maps to no product and was not deliberately ignored.
    pub fn is_unmapped(&self) -> bool {
        self.targets.is_empty() && self.ignored.is_none()
    }

    /// Whether a rule decided the row is not billed.
    pub fn is_ignored(&self) -> bool {
        self.ignored.is_some()
    }
}

/// A rule failed. The cards it affects get category `RuleError` with this
/// message; the rest of the run continues.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
#[error("{message}{}", position.as_ref().map(|p| format!(" (at {p})")).unwrap_or_default())]
pub struct MappingFailure {
    /// What went wrong, for the MSP.
    pub message: String,
    /// Where, when a rule file is to blame.
    pub position: Option<SourcePosition>,
}

/// How a service's vendor quantity is measured from the period's daily
/// totals (usage rows are summed per UTC day first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageMeasure {
    /// The total of the latest observed day up to the as-of date: at month
    /// end, the month-end count (the default).
    #[default]
    MonthEndSnapshot,
    /// The highest daily total (the earliest such day on ties).
    Peak,
    /// The mean of the daily totals over the days with observations,
    /// to [`QUANTITY_DP`] decimals.
    DailyAverage,
}

/// The days behind a measured quantity (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredDays {
    /// First day used.
    pub from: NaiveDate,
    /// Last day used.
    pub to: NaiveDate,
    /// The measured quantity.
    pub quantity: Decimal,
}

impl UsageMeasure {
    /// Measures `days`, daily totals sorted by date with no repeats. `None`
    /// when there are no days.
    pub fn measure(&self, days: &[(NaiveDate, Decimal)]) -> Option<MeasuredDays> {
        let (first, last) = (days.first()?, days.last()?);
        Some(match self {
            Self::MonthEndSnapshot => MeasuredDays {
                from: last.0,
                to: last.0,
                quantity: last.1,
            },
            Self::Peak => {
                let mut best = first;
                for day in days {
                    if day.1 > best.1 {
                        best = day;
                    }
                }
                MeasuredDays {
                    from: best.0,
                    to: best.0,
                    quantity: best.1,
                }
            }
            Self::DailyAverage => {
                // Daily totals are bounded (each row adds at most 10¹⁴,
                // see `reconcile`); saturating all the same, never a panic.
                let sum = days
                    .iter()
                    .fold(Decimal::ZERO, |sum, (_, q)| sum.saturating_add(*q));
                MeasuredDays {
                    from: first.0,
                    to: last.0,
                    quantity: (sum / Decimal::from(days.len())).round_dp(QUANTITY_DP),
                }
            }
        })
    }
}

/// How far the vendor quantity may differ from the PSA before a card asks
/// for a change: within `units` OR within `percent` % of the PSA quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tolerance {
    /// Absolute difference allowed (0 = none).
    #[serde(default, with = "amount")]
    pub units: Decimal,
    /// Difference allowed as a percentage of the PSA quantity (0 = none).
    #[serde(default, with = "amount")]
    pub percent: Decimal,
}

impl Tolerance {
    /// Whether `vendor` is close enough to `psa` to leave alone.
    pub fn accepts(&self, psa: Decimal, vendor: Decimal) -> bool {
        // Checked: the tolerance comes from rules and is not bounded; a
        // difference or product past `Decimal` is not within any tolerance.
        let Some(diff) = vendor.checked_sub(psa).map(|d| d.abs()) else {
            return false;
        };
        diff <= self.units
            || (self.percent > Decimal::ZERO
                && match (
                    diff.checked_mul(Decimal::ONE_HUNDRED),
                    self.percent.checked_mul(psa.abs()),
                ) {
                    (Some(scaled), Some(allowed)) => scaled <= allowed,
                    (None, _) => false,
                    (Some(_), None) => true,
                })
    }
}

/// How a vendor quantity is made whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Left as measured.
    #[default]
    None,
    /// Up to the next whole unit.
    Up,
    /// Down to the whole unit.
    Down,
    /// To the nearest whole unit, halves up.
    Nearest,
}

impl Rounding {
    /// `quantity` rounded this way (to whole units).
    pub fn apply(&self, quantity: Decimal) -> Decimal {
        match self {
            Self::None => quantity,
            Self::Up => quantity.round_dp_with_strategy(0, RoundingStrategy::AwayFromZero),
            Self::Down => quantity.round_dp_with_strategy(0, RoundingStrategy::ToZero),
            Self::Nearest => {
                quantity.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            }
        }
    }
}

/// When a change may be approved without a person: increases of at most
/// `max_increase` units. Decreases always need a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AutoApprove {
    /// Largest increase approved automatically; `None` = never.
    #[serde(default, with = "amount::option")]
    pub max_increase: Option<Decimal>,
}

impl AutoApprove {
    /// Whether moving from `psa` to `target` may be auto-approved.
    pub fn allows(&self, psa: Decimal, target: Decimal) -> bool {
        self.max_increase
            .is_some_and(|max| target > psa && target.checked_sub(psa).is_some_and(|up| up <= max))
    }
}

/// How one service (company × contract × product) is counted and changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePolicy {
    /// When approved changes take effect.
    pub effective_date: EffectiveDatePolicy,
    /// `Some(false)` turns the proration preview off for this service;
    /// `None` follows the contract. (Proration cannot be turned on for a
    /// contract the PSA does not prorate.)
    #[serde(default)]
    pub prorate: Option<bool>,
    /// How usage is measured over the period.
    #[serde(default)]
    pub measure: UsageMeasure,
    /// Differences left alone.
    #[serde(default)]
    pub tolerance: Tolerance,
    /// The least quantity billed (a minimum commitment).
    #[serde(default, with = "amount::option")]
    pub min_quantity: Option<Decimal>,
    /// The most quantity billed (a cap).
    #[serde(default, with = "amount::option")]
    pub max_quantity: Option<Decimal>,
    /// How the measured quantity is made whole.
    #[serde(default)]
    pub rounding: Rounding,
    /// Guarded auto-approval.
    #[serde(default)]
    pub auto_approve: AutoApprove,
}

impl ServicePolicy {
    /// The defaults in a PSA: its default effective-date policy (first day
    /// of next month unless the profile says otherwise), month-end snapshot,
    /// no tolerance, no limits, no rounding unless the PSA needs whole units
    /// (then nearest), no auto-approval.
    pub fn default_for(psa: &PsaProfile) -> Self {
        Self {
            effective_date: psa.default_effective,
            prorate: None,
            measure: UsageMeasure::MonthEndSnapshot,
            tolerance: Tolerance::default(),
            min_quantity: None,
            max_quantity: None,
            rounding: if psa.integer_units {
                Rounding::Nearest
            } else {
                Rounding::None
            },
            auto_approve: AutoApprove::default(),
        }
    }

    /// `measured` clamped to the minimum and maximum, then rounded.
    pub fn billable_quantity(&self, measured: Decimal) -> Decimal {
        let mut quantity = measured;
        if let Some(min) = self.min_quantity {
            quantity = quantity.max(min);
        }
        if let Some(max) = self.max_quantity {
            quantity = quantity.min(max);
        }
        self.rounding.apply(quantity).normalize()
    }
}

impl Default for ServicePolicy {
    fn default() -> Self {
        Self::default_for(&PsaProfile::generic("generic"))
    }
}

/// What a policy decision may look at.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The customer.
    pub company: &'a Company,
    /// The contract the service is (or would be) on.
    pub contract: &'a Contract,
    /// The product.
    pub product: &'a ProductId,
    /// The PSA line, when the service is already billed.
    pub line: Option<&'a ServiceLine>,
    /// The PSA's constraints.
    pub psa: &'a PsaProfile,
    /// The reconcile date.
    pub as_of: NaiveDate,
}

/// What [`UsageMapper::map_usage`] reads of a usage row, so the engine
/// knows when it may reuse a decision instead of calling again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowDependence {
    /// Only the vendor, account, SKU and company: the engine calls
    /// `map_usage` once per (account, SKU) and reuses the result for every
    /// other row with the same account and SKU.
    SkuOnly,
    /// Anything in the row identity (attributes, unit, term, names): the
    /// engine calls `map_usage` for every row.
    #[default]
    WholeRow,
}

/// Maps usage to products and decides each service's policy.
pub trait UsageMapper: Send + Sync {
    /// The version of the rules (e.g. a content hash); recorded on every
    /// card so a decision can be traced to the rules that made it.
    fn version(&self) -> &str;

    /// What `map_usage` reads. The default, [`RowDependence::WholeRow`], is
    /// always correct; [`RowDependence::SkuOnly`] lets the engine skip the
    /// call for repeated (account, SKU) pairs and must only be returned by
    /// mappers that never look at attributes or other row fields.
    fn row_dependence(&self) -> RowDependence {
        RowDependence::WholeRow
    }

    /// The products `usage` counts towards, for `company` (`None` when the
    /// account is not mapped to a company). Must depend only on the row's
    /// identity (vendor, account, SKU, name, unit, term, attributes) and the
    /// company, not on its quantity or time, and should return the same
    /// `Arc` for the same decision (memoise; no allocation per row).
    fn map_usage(
        &self,
        usage: &UsageObservation,
        company: Option<&Company>,
    ) -> Result<Arc<UsageMapping>, MappingFailure>;

    /// The policy of one service.
    fn service_policy(&self, ctx: &PolicyContext<'_>) -> Result<ServicePolicy, MappingFailure>;
}

/// One row of a SKU table: usage of `sku` from `vendor` counts as
/// `multiplier` units of `product`. Several rows for one SKU form a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuMapEntry {
    /// The vendor integration.
    pub vendor: VendorId,
    /// The vendor's SKU id.
    pub sku: SkuId,
    /// The PSA product.
    pub product: ProductId,
    /// Units of product per unit of usage (default 1).
    #[serde(default = "one", with = "amount")]
    pub multiplier: Decimal,
}

fn one() -> Decimal {
    Decimal::ONE
}

/// The largest multiplier a SKU table entry may have: one unit of usage
/// counting as more than 10,000 units of a product is a typo, not a bundle.
pub const MAX_SKU_MULTIPLIER: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

/// The most decimal places of a multiplier (a half seat is 0.5; 0.0001 is
/// as fine as any real bundle goes).
pub const MAX_SKU_MULTIPLIER_PLACES: u32 = 4;

impl SkuMapEntry {
    /// Why this entry cannot be saved, if it cannot: an empty vendor, SKU
    /// or product, or a multiplier that is not in (0, [`MAX_SKU_MULTIPLIER`]]
    /// with at most [`MAX_SKU_MULTIPLIER_PLACES`] places.
    ///
    /// # Errors
    /// A sentence naming the field and what to fix.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [
            ("vendor", self.vendor.as_str()),
            ("sku", self.sku.as_str()),
            ("product", self.product.as_str()),
        ] {
            if value.trim().is_empty() {
                return Err(format!("`{field}` is empty; name the {field}"));
            }
        }
        let m = self.multiplier;
        if m <= Decimal::ZERO {
            return Err(format!(
                "`multiplier` {m} must be more than 0 (use the exclusions to ignore a SKU)"
            ));
        }
        if m > MAX_SKU_MULTIPLIER {
            return Err(format!(
                "`multiplier` {m} is more than the largest allowed, {MAX_SKU_MULTIPLIER}"
            ));
        }
        if m.normalize().scale() > MAX_SKU_MULTIPLIER_PLACES {
            return Err(format!(
                "`multiplier` {m} has more than {MAX_SKU_MULTIPLIER_PLACES} decimal places"
            ));
        }
        Ok(())
    }
}

/// A policy for every service of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPolicy {
    /// The product.
    pub product: ProductId,
    /// Its policy.
    pub policy: ServicePolicy,
}

/// The name the SKU table puts in traces.
pub const SKU_TABLE_RULE: &str = "sku-table";

/// A mapper from a plain SKU → product table, with optional per-product
/// policies. Every mapping is built once, up front; a lookup allocates
/// nothing.
#[derive(Debug, Clone)]
pub struct SkuTableMapper {
    version: String,
    table: HashMap<Arc<str>, HashMap<Arc<str>, Arc<UsageMapping>>>,
    not_mapped: Arc<UsageMapping>,
    policies: HashMap<ProductId, ServicePolicy>,
}

impl SkuTableMapper {
    /// A mapper over `entries` (input order sets a bundle's target order)
    /// and `policies` (a later policy for the same product wins). `version`
    /// names this table on cards.
    pub fn new(
        version: impl Into<String>,
        entries: impl IntoIterator<Item = SkuMapEntry>,
        policies: impl IntoIterator<Item = ProductPolicy>,
    ) -> Self {
        let mut grouped: HashMap<Arc<str>, HashMap<Arc<str>, Vec<MappingTarget>>> = HashMap::new();
        for entry in entries {
            grouped
                .entry(entry.vendor.0)
                .or_default()
                .entry(entry.sku.0)
                .or_default()
                .push(MappingTarget {
                    product: entry.product,
                    multiplier: entry.multiplier,
                });
        }
        let table = grouped
            .into_iter()
            .map(|(vendor, skus)| {
                let skus = skus
                    .into_iter()
                    .map(|(sku, targets)| {
                        let described: Vec<String> = targets
                            .iter()
                            .map(|t| format!("{} ×{}", t.product, t.multiplier))
                            .collect();
                        let step = TraceStep {
                            rule: Arc::from(SKU_TABLE_RULE),
                            position: None,
                            matched: true,
                            outcome: format!("{vendor} SKU {sku} → {}", described.join(" + ")),
                        };
                        let mapping = UsageMapping {
                            targets,
                            ignored: None,
                            trace: Trace { steps: vec![step] },
                        };
                        (sku, Arc::new(mapping))
                    })
                    .collect();
                (vendor, skus)
            })
            .collect();
        let not_mapped = Arc::new(UsageMapping {
            targets: Vec::new(),
            ignored: None,
            trace: Trace {
                steps: vec![TraceStep {
                    rule: Arc::from(SKU_TABLE_RULE),
                    position: None,
                    matched: false,
                    outcome: "the SKU table has no entry for this vendor and SKU".to_owned(),
                }],
            },
        });
        Self {
            version: version.into(),
            table,
            not_mapped,
            policies: policies
                .into_iter()
                .map(|p| (p.product, p.policy))
                .collect(),
        }
    }
}

impl SkuTableMapper {
    /// A table over `entries` named by its content (`sku-table-` and the
    /// first 12 hex digits of a stable hash of the entries, in any order),
    /// so cards show which table decided and an edit changes the version.
    pub fn from_entries(entries: impl IntoIterator<Item = SkuMapEntry>) -> Self {
        let mut entries: Vec<SkuMapEntry> = entries.into_iter().collect();
        // Bundles keep their order; the hash does not depend on it.
        let mut keys: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                    e.vendor,
                    e.sku,
                    e.product,
                    e.multiplier.normalize()
                )
            })
            .collect();
        keys.sort();
        let digest = keys
            .iter()
            .fold(crate::fasthash::StableHash::new(), |h, k| h.field(k))
            .hex();
        let version = format!("sku-table-{}", &digest[..12.min(digest.len())]);
        Self::new(version, entries.drain(..), [])
    }

    /// The table's mapping of `vendor`'s `sku`, if it has an entry.
    pub fn lookup(&self, vendor: &str, sku: &str) -> Option<&Arc<UsageMapping>> {
        self.table.get(vendor).and_then(|skus| skus.get(sku))
    }

    /// Whether the table has no entry at all.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The one mapping path: the MSP's SKU table first, then `rules` (the
/// active rule version). A usage row whose (vendor, SKU) has a table entry
/// maps by the entry, and its trace says `sku-table`; every other row, and
/// every service policy, is the rules'. The server's reconcile, the rules
/// dry run, explain and the CLI all build their mapper with this, so the
/// table an MSP edits in the UI is the table the reconcile reads.
#[derive(Debug, Clone)]
pub struct SkuTableFirst<M> {
    table: SkuTableMapper,
    rules: M,
    version: String,
}

impl<M: UsageMapper> SkuTableFirst<M> {
    /// `table` before `rules`. The version names both, so cards show which
    /// table and which rules decided (`rules` alone when the table is
    /// empty).
    pub fn new(table: SkuTableMapper, rules: M) -> Self {
        let version = if table.is_empty() {
            rules.version().to_owned()
        } else {
            format!("{} + {}", rules.version(), table.version())
        };
        Self {
            table,
            rules,
            version,
        }
    }

    /// The rules behind the table (for what only they know, e.g. their
    /// policy traces).
    pub fn rules(&self) -> &M {
        &self.rules
    }
}

impl<M: UsageMapper> UsageMapper for SkuTableFirst<M> {
    fn version(&self) -> &str {
        &self.version
    }

    fn row_dependence(&self) -> RowDependence {
        // The table reads only the SKU; the rules decide the rest.
        self.rules.row_dependence()
    }

    fn map_usage(
        &self,
        usage: &UsageObservation,
        company: Option<&Company>,
    ) -> Result<Arc<UsageMapping>, MappingFailure> {
        match self
            .table
            .lookup(usage.vendor.as_str(), usage.sku_id.as_str())
        {
            Some(entry) => Ok(Arc::clone(entry)),
            None => self.rules.map_usage(usage, company),
        }
    }

    fn service_policy(&self, ctx: &PolicyContext<'_>) -> Result<ServicePolicy, MappingFailure> {
        self.rules.service_policy(ctx)
    }
}

impl UsageMapper for SkuTableMapper {
    fn version(&self) -> &str {
        &self.version
    }

    fn row_dependence(&self) -> RowDependence {
        RowDependence::SkuOnly
    }

    fn map_usage(
        &self,
        usage: &UsageObservation,
        _company: Option<&Company>,
    ) -> Result<Arc<UsageMapping>, MappingFailure> {
        let hit = self.lookup(usage.vendor.as_str(), usage.sku_id.as_str());
        Ok(Arc::clone(hit.unwrap_or(&self.not_mapped)))
    }

    fn service_policy(&self, ctx: &PolicyContext<'_>) -> Result<ServicePolicy, MappingFailure> {
        Ok(self
            .policies
            .get(ctx.product)
            .cloned()
            .unwrap_or_else(|| ServicePolicy::default_for(ctx.psa)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, day).unwrap()
    }

    #[test]
    fn measures_pick_their_days() {
        let days = [
            (d(1), dec!(10)),
            (d(8), dec!(14)),
            (d(15), dec!(14)),
            (d(31), dec!(11)),
        ];
        // Snapshot: last day, 11. Peak: 14, first reached on the 8th.
        // Average: (10 + 14 + 14 + 11) / 4 = 49 / 4 = 12.25.
        let table = [
            (UsageMeasure::MonthEndSnapshot, d(31), d(31), dec!(11)),
            (UsageMeasure::Peak, d(8), d(8), dec!(14)),
            (UsageMeasure::DailyAverage, d(1), d(31), dec!(12.25)),
        ];
        for (measure, from, to, quantity) in table {
            assert_eq!(
                measure.measure(&days),
                Some(MeasuredDays { from, to, quantity }),
                "{measure:?}"
            );
        }
        // 10 / 3 = 3.3333… kept to 4 places.
        let thirds = [(d(1), dec!(3)), (d(2), dec!(3)), (d(3), dec!(4))];
        assert_eq!(
            UsageMeasure::DailyAverage
                .measure(&thirds)
                .map(|m| m.quantity),
            Some(dec!(3.3333))
        );
        assert_eq!(UsageMeasure::Peak.measure(&[]), None);
    }

    #[test]
    fn rounding_to_whole_units() {
        // (rounding, input, expected)
        let table = [
            (Rounding::None, dec!(10.5), dec!(10.5)),
            (Rounding::Up, dec!(10.01), dec!(11)),
            (Rounding::Up, dec!(10), dec!(10)),
            (Rounding::Down, dec!(10.99), dec!(10)),
            (Rounding::Nearest, dec!(10.5), dec!(11)),
            (Rounding::Nearest, dec!(10.49), dec!(10)),
        ];
        for (rounding, input, expected) in table {
            assert_eq!(rounding.apply(input), expected, "{rounding:?} {input}");
        }
    }

    #[test]
    fn limits_apply_before_rounding() {
        let policy = ServicePolicy {
            min_quantity: Some(dec!(5)),
            max_quantity: Some(dec!(20.5)),
            rounding: Rounding::Up,
            ..ServicePolicy::default()
        };
        // (measured, billable): 3 → min 5; 25 → max 20.5 → up 21; 7.2 → 8.
        for (measured, billable) in [
            (dec!(3), dec!(5)),
            (dec!(25), dec!(21)),
            (dec!(7.2), dec!(8)),
        ] {
            assert_eq!(policy.billable_quantity(measured), billable);
        }
    }

    #[test]
    fn tolerance_and_auto_approve_guards() {
        let units = Tolerance {
            units: dec!(2),
            percent: Decimal::ZERO,
        };
        let percent = Tolerance {
            units: Decimal::ZERO,
            percent: dec!(10),
        };
        // (tolerance, psa, vendor, accepted): |12 − 10| = 2 ≤ 2; 10% of 50 = 5.
        let table = [
            (Tolerance::default(), dec!(10), dec!(10), true),
            (Tolerance::default(), dec!(10), dec!(10.01), false),
            (units, dec!(10), dec!(12), true),
            (units, dec!(10), dec!(7), false),
            (percent, dec!(50), dec!(55), true),
            (percent, dec!(50), dec!(44), false),
            (percent, dec!(0), dec!(1), false),
        ];
        for (tolerance, psa, vendor, accepted) in table {
            assert_eq!(
                tolerance.accepts(psa, vendor),
                accepted,
                "{tolerance:?} {psa} {vendor}"
            );
        }
        let guard = AutoApprove {
            max_increase: Some(dec!(3)),
        };
        assert!(guard.allows(dec!(10), dec!(13)));
        assert!(!guard.allows(dec!(10), dec!(14)));
        assert!(
            !guard.allows(dec!(10), dec!(9)),
            "decreases always need a person"
        );
        assert!(!AutoApprove::default().allows(dec!(10), dec!(11)));
    }

    #[test]
    fn defaults_follow_the_psa() {
        let generic = ServicePolicy::default();
        assert_eq!(
            generic.effective_date,
            EffectiveDatePolicy::FirstOfNextMonth
        );
        assert_eq!(generic.measure, UsageMeasure::MonthEndSnapshot);
        assert_eq!(generic.rounding, Rounding::None);
        assert_eq!(generic.tolerance, Tolerance::default());
        assert_eq!(generic.auto_approve.max_increase, None);
        assert_eq!(
            ServicePolicy::default_for(&PsaProfile::autotask()).rounding,
            Rounding::Nearest
        );
    }

    fn usage(vendor: &str, sku: &str) -> UsageObservation {
        UsageObservation {
            vendor: vendor.into(),
            account: "acct".into(),
            sku_id: sku.into(),
            sku_name: Arc::from(sku),
            quantity: Decimal::ONE,
            unit: Arc::from("licence"),
            unit_cost: None,
            billing_term: None,
            commitment_end: None,
            attributes: Default::default(),
            observed_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn sku_table_maps_bundles_and_shares_arcs() {
        let entry = |sku: &str, product: &str, multiplier| SkuMapEntry {
            vendor: "m365".into(),
            sku: sku.into(),
            product: product.into(),
            multiplier,
        };
        let mapper = SkuTableMapper::new(
            "table-1",
            [
                entry("BP", "M365-BP", dec!(1)),
                entry("BP", "BACKUP-SEAT", dec!(1)),
                entry("E3", "M365-E3", dec!(0.5)),
            ],
            [],
        );
        let bp = mapper.map_usage(&usage("m365", "BP"), None).unwrap();
        let products: Vec<&str> = bp.targets.iter().map(|t| t.product.as_str()).collect();
        assert_eq!(products, ["M365-BP", "BACKUP-SEAT"]);
        assert!(
            bp.trace.steps[0]
                .outcome
                .contains("M365-BP ×1 + BACKUP-SEAT ×1")
        );
        let again = mapper.map_usage(&usage("m365", "BP"), None).unwrap();
        assert!(Arc::ptr_eq(&bp, &again), "memoised mappings are shared");
        let e3 = mapper.map_usage(&usage("m365", "E3"), None).unwrap();
        assert_eq!(e3.targets[0].multiplier, dec!(0.5));
        let unknown = mapper.map_usage(&usage("m365", "FLOW_FREE"), None).unwrap();
        assert!(unknown.is_unmapped());
        assert!(
            mapper
                .map_usage(&usage("other", "BP"), None)
                .unwrap()
                .is_unmapped()
        );
        assert_eq!(mapper.version(), "table-1");
    }

    #[test]
    fn sku_entries_are_checked_before_they_are_saved() {
        let entry = |vendor: &str, sku: &str, product: &str, multiplier| SkuMapEntry {
            vendor: vendor.into(),
            sku: sku.into(),
            product: product.into(),
            multiplier,
        };
        // (entry, the error names this, or None when valid)
        let cases = [
            (entry("m365", "BP", "M365-BP", dec!(1)), None),
            (entry("m365", "E3", "M365-E3", dec!(0.5)), None),
            (entry("m365", "BP", "M365-BP", dec!(10000)), None),
            (entry("m365", "BP", "M365-BP", dec!(0.0001)), None),
            (
                entry("", "BP", "M365-BP", dec!(1)),
                Some("`vendor` is empty"),
            ),
            (
                entry("m365", " ", "M365-BP", dec!(1)),
                Some("`sku` is empty"),
            ),
            (entry("m365", "BP", "", dec!(1)), Some("`product` is empty")),
            (
                entry("m365", "BP", "X", dec!(0)),
                Some("must be more than 0"),
            ),
            (
                entry("m365", "BP", "X", dec!(-2)),
                Some("must be more than 0"),
            ),
            (
                entry("m365", "BP", "X", dec!(10000.5)),
                Some("largest allowed"),
            ),
            (
                entry("m365", "BP", "X", dec!(0.00001)),
                Some("decimal places"),
            ),
        ];
        for (entry, expected) in cases {
            match (entry.check(), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(part)) => assert!(e.contains(part), "{entry:?}: {e}"),
                (got, want) => panic!("{entry:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn the_sku_table_decides_before_the_rules() {
        let entry = |sku: &str, product: &str| SkuMapEntry {
            vendor: "m365".into(),
            sku: sku.into(),
            product: product.into(),
            multiplier: dec!(1),
        };
        // The "rules": map everything of m365 to M365-RULES.
        let rules = SkuTableMapper::new(
            "rules-7",
            [entry("BP", "M365-RULES"), entry("E3", "M365-RULES")],
            [],
        );
        let table = SkuTableMapper::new("sku-table-3", [entry("BP", "M365-TABLE")], []);
        let mapper = SkuTableFirst::new(table, rules.clone());
        // (SKU, product, the trace's rule)
        let cases = [
            ("BP", Some("M365-TABLE"), SKU_TABLE_RULE),
            ("E3", Some("M365-RULES"), SKU_TABLE_RULE),
            ("FLOW_FREE", None, SKU_TABLE_RULE),
        ];
        for (sku, product, rule) in cases {
            let mapping = mapper.map_usage(&usage("m365", sku), None).unwrap();
            assert_eq!(
                mapping.targets.first().map(|t| t.product.as_str()),
                product,
                "{sku}"
            );
            assert_eq!(&*mapping.trace.steps[0].rule, rule, "{sku}");
        }
        // Which one decided shows in the trace's outcome.
        let bp = mapper.map_usage(&usage("m365", "BP"), None).unwrap();
        assert!(bp.trace.steps[0].outcome.contains("M365-TABLE"));
        assert_eq!(mapper.version(), "rules-7 + sku-table-3");
        // An empty table is the rules alone, version and all.
        let alone = SkuTableFirst::new(SkuTableMapper::new("sku-table-0", [], []), rules);
        assert_eq!(alone.version(), "rules-7");
        let e3 = alone.map_usage(&usage("m365", "BP"), None).unwrap();
        assert_eq!(e3.targets[0].product.as_str(), "M365-RULES");
    }

    #[test]
    fn failures_name_their_position() {
        let failure = MappingFailure {
            message: "unknown attribute `nodeClas`".into(),
            position: Some(SourcePosition {
                file: Arc::from("rules/ninja.rhai"),
                line: 12,
                column: Some(7),
            }),
        };
        assert_eq!(
            failure.to_string(),
            "unknown attribute `nodeClas` (at rules/ninja.rhai:12:7)"
        );
    }
}
