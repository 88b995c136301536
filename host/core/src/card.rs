//! Service cards: one per (company, contract line), or per unbilled product,
//! or per unmapped source of usage, saying what the PSA bills, what vendors
//! report, and what change is proposed.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::cycles::Period;
use crate::effective::{ChangeConstraints, EffectiveDate};
use crate::fasthash::StableHash;
use crate::mapping::{MappingFailure, MeasuredDays, ServicePolicy, UsageMapping};
use crate::matching::Suggestion;
use crate::model::{
    AccountId, CompanyId, ContractId, ProductId, ServiceLineId, SkuId, VendorId, amount,
};
use crate::proration::{ProrationPreview, round_money};

/// What a card asks of a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardCategory {
    /// Vendors report a product the company has no PSA line for.
    NewRevenue,
    /// The PSA quantity differs from usage beyond the tolerance.
    Reconcile,
    /// The PSA quantity matches usage (within tolerance).
    NoChange,
    /// A PSA line no vendor reports in this period.
    NoVendorData,
    /// Usage whose account or SKU is not mapped.
    Unmapped,
    /// A rule failed for this card's usage or policy.
    RuleError,
}

impl CardCategory {
    /// Every category, in display order.
    pub const ALL: [CardCategory; 6] = [
        Self::NewRevenue,
        Self::Reconcile,
        Self::NoChange,
        Self::NoVendorData,
        Self::Unmapped,
        Self::RuleError,
    ];

    /// The snake_case name used in JSON and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NewRevenue => "new_revenue",
            Self::Reconcile => "reconcile",
            Self::NoChange => "no_change",
            Self::NoVendorData => "no_vendor_data",
            Self::Unmapped => "unmapped",
            Self::RuleError => "rule_error",
        }
    }

    /// Whether the card proposes a change that can be approved.
    pub fn proposes_change(&self) -> bool {
        matches!(self, Self::NewRevenue | Self::Reconcile)
    }
}

impl std::fmt::Display for CardCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A card's stable identity: 32 lower-case hex digits of a 128-bit
/// [`StableHash`] over what the card is about, so the same service gets the
/// same key in every run (decisions, snoozes and notes attach to it). Held
/// inline: a key costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardKey([u8; 32]);

impl CardKey {
    /// The key of a hash value.
    pub fn from_value(value: u128) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let nibble = (value >> (124 - 4 * i)) & 0xf;
            *byte = HEX[nibble as usize];
        }
        Self(out)
    }

    /// The card of a PSA line.
    pub fn for_line(company: &CompanyId, contract: &ContractId, line: &ServiceLineId) -> Self {
        Self::from_value(
            StableHash::new()
                .field("line")
                .field(company.as_str())
                .field(contract.as_str())
                .field(line.as_str())
                .value(),
        )
    }

    /// The card of a product a company uses but is not billed for. Keyed
    /// by company and product, not by the proposed contract, so a decision
    /// survives a change of proposal.
    pub fn for_new_revenue(company: &CompanyId, product: &ProductId) -> Self {
        Self::from_value(
            StableHash::new()
                .field("new")
                .field(company.as_str())
                .field(product.as_str())
                .value(),
        )
    }

    /// The card of unmapped usage of one SKU in one vendor account.
    pub fn for_unmapped(vendor: &VendorId, account: &AccountId, sku: &SkuId) -> Self {
        Self::from_value(
            StableHash::new()
                .field("unmapped")
                .field(vendor.as_str())
                .field(account.as_str())
                .field(sku.as_str())
                .value(),
        )
    }

    /// The card of usage of one SKU in one account whose mapping rule failed.
    pub fn for_rule_error(vendor: &VendorId, account: &AccountId, sku: &SkuId) -> Self {
        Self::from_value(
            StableHash::new()
                .field("rule-error")
                .field(vendor.as_str())
                .field(account.as_str())
                .field(sku.as_str())
                .value(),
        )
    }

    /// Reads the 32-hex-digit form (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(Self::from_value)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for CardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for CardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardKey({})", self.as_str())
    }
}

impl Serialize for CardKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CardKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a card key (32 hex digits)"))
        })
    }
}

/// The distinct mappings behind a card, shared by the cards of one bucket
/// of usage. Iterates and derefs like a slice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MappingRefs(pub Arc<[Arc<UsageMapping>]>);

impl std::ops::Deref for MappingRefs {
    type Target = [Arc<UsageMapping>];

    fn deref(&self) -> &[Arc<UsageMapping>] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a MappingRefs {
    type Item = &'a Arc<UsageMapping>;
    type IntoIter = std::slice::Iter<'a, Arc<UsageMapping>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<Arc<UsageMapping>>> for MappingRefs {
    fn from(mappings: Vec<Arc<UsageMapping>>) -> Self {
        Self(Arc::from(mappings))
    }
}

/// Indices of usage rows: a window into one buffer shared by every card of
/// a run, so a card's evidence costs no allocation of its own.
#[derive(Clone, Default)]
pub struct RowRefs {
    rows: Arc<[u32]>,
    start: usize,
    end: usize,
}

impl RowRefs {
    /// The rows `range` of `rows`; `None` when the range is out of bounds.
    pub fn new(rows: Arc<[u32]>, range: std::ops::Range<usize>) -> Option<Self> {
        (range.start <= range.end && range.end <= rows.len()).then_some(Self {
            rows,
            start: range.start,
            end: range.end,
        })
    }

    /// The row indices, ascending.
    pub fn as_slice(&self) -> &[u32] {
        self.rows.get(self.start..self.end).unwrap_or_default()
    }
}

impl std::ops::Deref for RowRefs {
    type Target = [u32];

    fn deref(&self) -> &[u32] {
        self.as_slice()
    }
}

impl From<Vec<u32>> for RowRefs {
    fn from(rows: Vec<u32>) -> Self {
        let end = rows.len();
        Self {
            rows: Arc::from(rows),
            start: 0,
            end,
        }
    }
}

impl PartialEq for RowRefs {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for RowRefs {}

impl std::fmt::Debug for RowRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Serialize for RowRefs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RowRefs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<u32>::deserialize(deserializer).map(Self::from)
    }
}

/// Where unmapped or failing usage comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSource {
    /// The vendor integration.
    pub vendor: VendorId,
    /// The vendor account.
    pub account: AccountId,
    /// The account's name, when the account is known.
    pub account_name: Option<String>,
    /// The SKU.
    pub sku: SkuId,
    /// The SKU's display name.
    pub sku_name: Arc<str>,
}

/// The vendor side of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorQuantity {
    /// What the measure gave (after multipliers), and over which days.
    pub measured: MeasuredDays,
    /// After the service's minimum, maximum and rounding: what should be
    /// billed.
    #[serde(with = "amount")]
    pub billable: Decimal,
}

/// Money for one period at one quantity (minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    /// Quantity × unit price.
    #[serde(with = "amount")]
    pub price: Decimal,
    /// Quantity × unit cost.
    #[serde(with = "amount")]
    pub cost: Decimal,
    /// Price − cost.
    #[serde(with = "amount")]
    pub margin: Decimal,
}

impl Amounts {
    /// The amounts for `quantity` at the unit prices.
    ///
    /// Saturating: inputs within [`crate::model::amount`]'s limits stay far
    /// inside `Decimal`'s range, so only data past them (a rule's minimum
    /// of 10²⁸ units, say) can reach the bound, and that must not panic a
    /// month-end.
    pub fn at(quantity: Decimal, unit_price: Decimal, unit_cost: Decimal) -> Self {
        let price = round_money(quantity.saturating_mul(unit_price));
        let cost = round_money(quantity.saturating_mul(unit_cost));
        Self {
            price,
            cost,
            margin: price.saturating_sub(cost),
        }
    }
}

/// A card's money, per billing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardMoney {
    /// Price per unit per period.
    #[serde(with = "amount")]
    pub unit_price: Decimal,
    /// Cost per unit per period.
    #[serde(with = "amount")]
    pub unit_cost: Decimal,
    /// At the PSA quantity.
    pub before: Amounts,
    /// At the proposed quantity (equal to `before` when nothing is proposed).
    pub after: Amounts,
    /// `after.price − before.price`: positive is revenue found.
    #[serde(with = "amount")]
    pub delta: Decimal,
}

impl CardMoney {
    /// Money moving from `before_qty` to `after_qty`.
    pub fn new(
        unit_price: Decimal,
        unit_cost: Decimal,
        before_qty: Decimal,
        after_qty: Decimal,
    ) -> Self {
        let before = Amounts::at(before_qty, unit_price, unit_cost);
        let after = Amounts::at(after_qty, unit_price, unit_cost);
        Self {
            unit_price,
            unit_cost,
            before,
            after,
            delta: after.price.saturating_sub(before.price),
        }
    }
}

/// Where a new-revenue card proposes to add the product, and why there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractProposal {
    /// The contract.
    pub contract: ContractId,
    /// How it was chosen.
    pub reason: String,
}

/// When and how a proposed change lands: present on cards that propose
/// one (boxed, so the many cards that do not stay small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeDetail {
    /// When the change would take effect, and why.
    pub effective: Option<EffectiveDate>,
    /// What the change costs on the next invoice.
    pub proration: Option<ProrationPreview>,
    /// For new revenue: the contract proposed.
    pub contract_proposal: Option<ContractProposal>,
}

/// One service card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceCard {
    /// Stable identity.
    pub key: CardKey,
    /// What it asks.
    pub category: CardCategory,
    /// The customer, when known.
    pub company: Option<CompanyId>,
    /// The contract: the line's, or the one proposed for new revenue.
    pub contract: Option<ContractId>,
    /// The PSA line, for line cards.
    pub line: Option<ServiceLineId>,
    /// The product, when known.
    pub product: Option<ProductId>,
    /// The unmapped or failing usage, for those cards.
    pub source: Option<Box<UsageSource>>,
    /// Vendors whose usage is behind the vendor quantity, sorted (shared
    /// between the cards of one bucket of usage).
    pub vendors: Arc<[VendorId]>,
    /// The billing period reconciled (the contract's current period; the
    /// as-of calendar month when there is no contract).
    pub period: Option<Period>,
    /// The quantity the PSA bills now on this card's line.
    #[serde(with = "amount::option")]
    pub psa_quantity: Option<Decimal>,
    /// What the PSA bills of the same product on the company's other lines,
    /// when usage is compared against all of them together (a product billed
    /// on two agreements): the variance is `vendor − (psa + elsewhere)`, so a
    /// card must show this to add up. `None` when the line is the only one.
    #[serde(
        default,
        with = "amount::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub psa_quantity_elsewhere: Option<Decimal>,
    /// What vendors report.
    pub vendor_quantity: Option<VendorQuantity>,
    /// The quantity proposed for the PSA line.
    #[serde(with = "amount::option")]
    pub target_quantity: Option<Decimal>,
    /// What vendors report less what the PSA bills (`vendor − psa`, and
    /// `− psa_quantity_elsewhere` when the company's other lines of the
    /// product count): positive means under-billed.
    #[serde(with = "amount::option")]
    pub variance: Option<Decimal>,
    /// Price, cost and margin before and after.
    pub money: Option<CardMoney>,
    /// The latest unit cost vendors reported, when they report one.
    #[serde(with = "amount::option")]
    pub vendor_unit_cost: Option<Decimal>,
    /// Effective date, proration preview and proposed contract of the
    /// change, on cards that propose one.
    pub change: Option<Box<ChangeDetail>>,
    /// The contract's change constraints (integer units, posted periods).
    pub constraints: Option<ChangeConstraints>,
    /// The service policy applied (shared between cards with equal
    /// policies).
    pub policy: Option<Arc<ServicePolicy>>,
    /// Whether the policy's guard allows approving without a person.
    pub auto_approvable: bool,
    /// Indices into the run's usage rows behind the vendor quantity (the
    /// measured days' rows), ascending.
    pub usage_rows: RowRefs,
    /// The distinct mappings of the usage (their traces explain them).
    pub mappings: MappingRefs,
    /// The mapper version that produced the card.
    pub mapper_version: Arc<str>,
    /// For unmapped accounts: companies the account might belong to.
    pub suggestions: Vec<Suggestion>,
    /// The rule failure, for rule-error cards.
    pub error: Option<Box<MappingFailure>>,
    /// Anything else a reviewer should know.
    pub notes: Vec<String>,
}

impl ServiceCard {
    /// The proposed effective date, if the card proposes a change.
    pub fn effective(&self) -> Option<&EffectiveDate> {
        self.change.as_ref().and_then(|c| c.effective.as_ref())
    }

    /// The proration preview, if the card proposes a change.
    pub fn proration(&self) -> Option<&ProrationPreview> {
        self.change.as_ref().and_then(|c| c.proration.as_ref())
    }

    /// A digest of the numbers a person decided on (PSA, vendor and
    /// proposed quantities, category). "Snooze until the numbers change"
    /// compares it.
    pub fn numbers_fingerprint(&self) -> String {
        let text = |q: Option<Decimal>| q.map(|q| q.normalize().to_string()).unwrap_or_default();
        StableHash::new()
            .field(self.category.as_str())
            .field(&text(self.psa_quantity))
            .field(&text(self.vendor_quantity.map(|v| v.billable)))
            .field(&text(self.target_quantity))
            .hex()
    }
}

/// Money at stake over a set of cards, per billing period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardTotals {
    /// `under_billed + over_billed`.
    #[serde(with = "amount")]
    pub at_stake: Decimal,
    /// Sum of positive money deltas on new-revenue and reconcile cards.
    #[serde(with = "amount")]
    pub under_billed: Decimal,
    /// Sum of the magnitudes of negative deltas on reconcile cards.
    #[serde(with = "amount")]
    pub over_billed: Decimal,
    /// Cards per category.
    pub cards: BTreeMap<CardCategory, usize>,
}

/// Totals over `cards`: what proposed changes would move on one period's
/// invoice (full-period deltas, before proration).
pub fn totals(cards: &[ServiceCard]) -> CardTotals {
    let mut out = CardTotals::default();
    for card in cards {
        *out.cards.entry(card.category).or_default() += 1;
        if !card.category.proposes_change() {
            continue;
        }
        if let Some(money) = card.money {
            // Saturating, as in `Amounts::at`.
            if money.delta > Decimal::ZERO {
                out.under_billed = out.under_billed.saturating_add(money.delta);
            } else {
                out.over_billed = out.over_billed.saturating_sub(money.delta);
            }
        }
    }
    out.at_stake = out.under_billed.saturating_add(out.over_billed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn money_before_and_after() {
        // 10 → 12 at 15.50 price, 9.25 cost: before 155.00 / 92.50 / 62.50;
        // after 186.00 / 111.00 / 75.00; delta 31.00.
        let money = CardMoney::new(dec!(15.50), dec!(9.25), dec!(10), dec!(12));
        assert_eq!(
            money.before,
            Amounts {
                price: dec!(155.00),
                cost: dec!(92.50),
                margin: dec!(62.50)
            }
        );
        assert_eq!(
            money.after,
            Amounts {
                price: dec!(186.00),
                cost: dec!(111.00),
                margin: dec!(75.00)
            }
        );
        assert_eq!(money.delta, dec!(31.00));
    }

    #[test]
    fn row_refs_are_windows_of_a_shared_buffer() {
        let shared: Arc<[u32]> = Arc::from(vec![1, 4, 9, 16]);
        let refs = RowRefs::new(shared.clone(), 1..3).unwrap();
        assert_eq!(refs.as_slice(), [4, 9]);
        assert_eq!(refs, RowRefs::from(vec![4, 9]));
        assert_eq!(serde_json::to_string(&refs).unwrap(), "[4,9]");
        assert!(RowRefs::new(shared, 3..5).is_none());
    }

    #[test]
    fn keys_are_stable_and_distinct_per_kind() {
        let (company, product) = (CompanyId::from("c1"), ProductId::from("p"));
        let line = CardKey::for_line(&company, &"k".into(), &"l".into());
        assert_eq!(line, CardKey::for_line(&company, &"k".into(), &"l".into()));
        assert_eq!(line.as_str().len(), 32);
        assert_eq!(CardKey::from_hex(line.as_str()), Some(line));
        assert_eq!(serde_json::to_string(&line).unwrap(), format!("\"{line}\""));
        assert_eq!(CardKey::from_hex("xyz"), None);
        // The hex form is the hash, most significant digit first.
        assert_eq!(
            CardKey::from_value(0xab).as_str(),
            "000000000000000000000000000000ab"
        );
        assert_ne!(CardKey::for_new_revenue(&company, &product), line);
        let (v, a, s) = (VendorId::from("v"), AccountId::from("a"), SkuId::from("s"));
        assert_ne!(
            CardKey::for_unmapped(&v, &a, &s),
            CardKey::for_rule_error(&v, &a, &s)
        );
    }
}
