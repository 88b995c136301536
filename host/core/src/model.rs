//! The normalized model: what Trueup knows of a PSA and of vendors, whatever
//! product the data came from.
//!
//! Conventions, for every type here:
//! - Money and quantities are [`Decimal`]; never floating point.
//! - Calendar dates are [`NaiveDate`] business dates with no time zone.
//!   Ranges are inclusive at both ends unless a field says otherwise.
//! - Instants are [`DateTime<Utc>`].
//! - Identifiers are the source system's own ids, as text, wrapped in a type
//!   per kind so a contract id cannot be passed where a company id belongs.
//!
//! Strings that repeat across millions of usage rows (ids, SKU names,
//! attribute keys and values) are `Arc<str>` so a loader can intern them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Arc<str>);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(Arc::from(value))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(Arc::from(value))
            }
        }

        impl From<Arc<str>> for $name {
            fn from(value: Arc<str>) -> Self {
                Self(value)
            }
        }
    };
}

text_id!(
    /// A PSA company (customer) id.
    CompanyId
);
text_id!(
    /// A PSA contract (ConnectWise agreement, Autotask contract, Halo
    /// recurring invoice) id.
    ContractId
);
text_id!(
    /// A recurring service line id (ConnectWise addition, Autotask contract
    /// service, Halo recurring invoice line).
    ServiceLineId
);
text_id!(
    /// A vendor integration id: an installed vendor plugin, a push-API
    /// integration or a CSV import profile (e.g. `microsoft-365`).
    VendorId
);
text_id!(
    /// An account id inside one vendor (tenant, organisation, site).
    AccountId
);
text_id!(
    /// A vendor SKU id (e.g. an M365 `skuPartNumber`, a NinjaOne node class).
    SkuId
);
text_id!(
    /// A PSA product identifier, the key recurring services are mapped by
    /// (e.g. ConnectWise `product.identifier`).
    ProductId
);

// ------------------------------------------------------------ decimals

/// Serde for money and quantities: written as JSON strings (`"12.50"`) and
/// read from strings or JSON integers, never from JSON fractions.
///
/// serde_json reads `12.5` as an `f64` before `Decimal` sees it, so a
/// fractional JSON number would pass through binary floating point; rejecting
/// it with a message that says to quote the value keeps floats out of money.
///
/// # Limits
///
/// Every amount that enters Trueup (push API, CSV import, JSON requests) is
/// held to [`MAX_QUANTITY`], [`MAX_UNIT_PRICE`] and [`MAX_SCALE`]. The bounds
/// are what keeps the reconcile's arithmetic inside `Decimal`'s range
/// (about 7.9 × 10²⁸) without a check at every step: a routed quantity is at
/// most `MAX_QUANTITY × MAX_SKU_MULTIPLIER` (10¹⁴), its money at most
/// 10¹⁴ × `MAX_UNIT_PRICE` = 10²⁴, so even 10⁴ such cards sum far below the
/// limit. Values beyond them are refused at the door ([`parse`], [`check`]);
/// older stored data beyond them is left out of a reconcile as an exclusion
/// (`value_out_of_range`), never a panic. The serde functions below read
/// any value `Decimal` holds exactly (stored cards' money may pass the input
/// limits) and refuse, rather than round, one it cannot.
pub mod amount {
    use std::fmt;

    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// The largest quantity accepted (ten billion units; in either sign).
    pub const MAX_QUANTITY: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0);

    /// The largest price or cost per unit accepted (ten billion; in either
    /// sign).
    pub const MAX_UNIT_PRICE: Decimal = MAX_QUANTITY;

    /// The largest of the limits above: what a parser that does not know
    /// which field it reads holds a value to.
    pub const MAX_AMOUNT: Decimal = MAX_QUANTITY;

    /// Most decimal places accepted: what `Decimal` holds. Its parser
    /// rounds anything finer silently; [`parse`] refuses it instead, and
    /// refuses a value whose digits in all (whole and fraction) `Decimal`
    /// cannot hold exactly.
    pub const MAX_SCALE: u32 = 28;

    /// Why an amount is refused.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum AmountError {
        /// Not a plain decimal.
        #[error("{0:?} is not a decimal number (digits with an optional '.' and sign)")]
        Syntax(String),
        /// More decimal places than [`MAX_SCALE`].
        #[error(
            "{text:?} has {places} decimal places: more digits than are kept exactly (at most {MAX_SCALE} places and 28 significant digits); round it before sending"
        )]
        TooPrecise {
            /// The value as given.
            text: String,
            /// Its decimal places.
            places: usize,
        },
        /// Larger in magnitude than the field's limit.
        #[error("{what} {value} is beyond the limit: at most {limit} (in either sign) is accepted")]
        TooLarge {
            /// The field (`quantity`, `unit_price`, ...).
            what: String,
            /// The value.
            value: String,
            /// The limit it passes.
            limit: Decimal,
        },
    }

    /// Reads a plain decimal (an optional sign, digits, at most one `.`; no
    /// exponent, grouping or spaces) exactly, refusing more than
    /// [`MAX_SCALE`] places and magnitudes beyond [`MAX_AMOUNT`].
    ///
    /// # Errors
    /// [`AmountError`], saying what is wrong.
    pub fn parse(text: &str) -> Result<Decimal, AmountError> {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.len() + fraction.len() == 0 || !plain(whole) || !plain(fraction) {
            return Err(AmountError::Syntax(text.to_owned()));
        }
        // Trailing zeros add no precision ("1.50000000000" is 1.5).
        let places = fraction.trim_end_matches('0').len();
        if places > MAX_SCALE as usize {
            return Err(AmountError::TooPrecise {
                text: text.to_owned(),
                places,
            });
        }
        // Leading zeros carry no magnitude; more whole digits than the
        // limit has cannot be within it (and may not fit a Decimal).
        let significant = whole.trim_start_matches('0').len();
        let too_large = || AmountError::TooLarge {
            what: "the amount".into(),
            value: text.to_owned(),
            limit: MAX_AMOUNT,
        };
        if significant > 11 {
            return Err(too_large());
        }
        let value = Decimal::from_str_exact(text).map_err(|_| AmountError::TooPrecise {
            text: text.to_owned(),
            places,
        })?;
        check("the amount", value, MAX_AMOUNT).map_err(|_| too_large())?;
        Ok(value)
    }

    /// `value` if its magnitude is at most `limit` and it has at most
    /// [`MAX_SCALE`] places; `what` names the field in the error.
    ///
    /// # Errors
    /// [`AmountError::TooLarge`] or [`AmountError::TooPrecise`].
    pub fn check(what: &str, value: Decimal, limit: Decimal) -> Result<Decimal, AmountError> {
        if value.abs() > limit {
            return Err(AmountError::TooLarge {
                what: what.to_owned(),
                value: value.to_string(),
                limit,
            });
        }
        if value.normalize().scale() > MAX_SCALE {
            return Err(AmountError::TooPrecise {
                text: value.to_string(),
                places: value.normalize().scale() as usize,
            });
        }
        Ok(value)
    }

    /// Writes the decimal as a string, keeping its scale (`"12.50"`).
    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Reads a decimal from a string (`"12.50"`) or a JSON integer (`12`).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        deserializer.deserialize_any(AmountVisitor)
    }

    struct AmountVisitor;

    impl Visitor<'_> for AmountVisitor {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal number as a string (e.g. \"12.50\") or an integer")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            // Exact: a value `Decimal` cannot hold (more than 28 places, or
            // more digits than it has) is refused, not silently rounded.
            // No magnitude limit here: this also reads stored cards, whose
            // money may be past the input limits.
            Decimal::from_str_exact(v.trim()).map_err(|e| {
                E::custom(format!(
                    "`{v}` is not a decimal number Trueup can hold exactly ({e}); at most 28 significant digits"
                ))
            })
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            Err(E::custom(format!(
                "the fractional number {v} must be written as a string (e.g. \"{v}\") so it is not read as binary floating point"
            )))
        }
    }

    /// The same rules for an optional amount; `null` or a missing field is
    /// `None` (pair with `#[serde(default)]`).
    pub mod option {
        use rust_decimal::Decimal;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `Some` as a string, `None` as `null`.
        pub fn serialize<S: Serializer>(
            value: &Option<Decimal>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => serializer.collect_str(v),
                None => serializer.serialize_none(),
            }
        }

        /// Reads `null`, a string or a JSON integer.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Decimal>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Decimal);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(v)| v))
        }
    }
}

// ---------------------------------------------------------------- text

/// Checks for text that enters Trueup from outside (names, SKUs, notes
/// through the push API, CSV imports and JSON requests).
pub mod text {
    /// Whether `c` may not appear in stored text: control characters (C0,
    /// DEL, C1) — they corrupt logs, CSV exports and terminals — and the
    /// bidirectional overrides and isolates, which make a name read
    /// differently from what it is. `multiline` allows `\n`, `\r` and
    /// `\t` (notes).
    pub fn is_refused(c: char, multiline: bool) -> bool {
        if multiline && matches!(c, '\n' | '\r' | '\t') {
            return false;
        }
        c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }

    /// `Ok` if `value` has no refused character ([`is_refused`]); else
    /// what is wrong, naming `what` and the first such character and where.
    ///
    /// # Errors
    /// The message, e.g. `sku_name contains the control character U+0007
    /// at character 4; send plain text`.
    pub fn check(what: &str, value: &str, multiline: bool) -> Result<(), String> {
        match value
            .chars()
            .enumerate()
            .find(|&(_, c)| is_refused(c, multiline))
        {
            None => Ok(()),
            Some((at, c)) => Err(format!(
                "{what} contains the control character U+{:04X} at character {}; send plain text",
                u32::from(c),
                at + 1
            )),
        }
    }
}

// ---------------------------------------------------------------- PSA side

/// A vendor account, named by vendor and account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountRef {
    /// The vendor integration.
    pub vendor: VendorId,
    /// The account inside that vendor.
    pub account: AccountId,
}

/// Whether a PSA company is a current customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompanyStatus {
    /// A current customer.
    Active,
    /// Marked inactive in the PSA.
    Inactive,
}

/// A PSA company (customer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// The PSA's id.
    pub id: CompanyId,
    /// Display name.
    pub name: String,
    /// The PSA's short identifier, if it has one.
    #[serde(default)]
    pub identifier: Option<String>,
    /// E-mail/web domains, lower-case.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Active or not.
    pub status: CompanyStatus,
    /// Vendor accounts the PSA itself links to this company (e.g. a tenant
    /// id stored in a custom field); matching treats them as exact id links.
    #[serde(default)]
    pub account_links: Vec<AccountRef>,
}

/// A contract's state in the PSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    /// Billing.
    Active,
    /// Set inactive by the MSP.
    Inactive,
    /// Cancelled.
    Cancelled,
    /// Past its end date.
    Expired,
}

/// How often a contract bills.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingCycle {
    /// Not recurring.
    None,
    /// Billed once.
    OneTime,
    /// Every month.
    Monthly,
    /// Every three months.
    Quarterly,
    /// Every six months.
    SemiAnnual,
    /// Every twelve months.
    Annual,
    /// A cycle Trueup does not model, by the PSA's name (e.g. "Bi-Weekly").
    Other(String),
}

impl BillingCycle {
    /// Months in one period, for the cycles Trueup reconciles.
    pub fn months(&self) -> Option<u32> {
        match self {
            BillingCycle::Monthly => Some(1),
            BillingCycle::Quarterly => Some(3),
            BillingCycle::SemiAnnual => Some(6),
            BillingCycle::Annual => Some(12),
            BillingCycle::None | BillingCycle::OneTime | BillingCycle::Other(_) => None,
        }
    }
}

/// What a contract's periods are aligned to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleAnchor {
    /// Periods follow the calendar: monthly periods are calendar months,
    /// quarterly ones start in January, April, July and October,
    /// semi-annual ones in January and July, annual ones on 1 January.
    /// A contract starting mid-period simply starts inside its first period.
    #[default]
    Calendar,
    /// Periods start on the contract's start date and every cycle length
    /// after it (see [`crate::cycles`] for month-end starts).
    ContractStart,
}

/// When a period is invoiced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingTiming {
    /// At the start of the period (the recommended practice).
    Advance,
    /// After the period ends.
    Arrears,
}

/// A PSA contract (agreement) that recurring services hang on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    /// The PSA's id.
    pub id: ContractId,
    /// The customer.
    pub company_id: CompanyId,
    /// Display name.
    pub name: String,
    /// The PSA's contract/agreement type name.
    pub contract_type: String,
    /// State in the PSA.
    pub status: ContractStatus,
    /// Billing cycle.
    pub billing_cycle: BillingCycle,
    /// First covered day (inclusive).
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
    /// Last covered day (inclusive); `None` for open-ended.
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    /// Advance or arrears.
    pub timing: BillingTiming,
    /// Whether the PSA prorates mid-period changes.
    pub prorate: bool,
    /// Periods ending on or before this day are posted and locked (inclusive).
    #[serde(default)]
    pub posted_through: Option<NaiveDate>,
    /// How this contract's periods are laid out; `None` uses the PSA
    /// profile's anchor.
    #[serde(default)]
    pub cycle_anchor: Option<CycleAnchor>,
}

/// A recurring service line on a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLine {
    /// The PSA's id.
    pub id: ServiceLineId,
    /// The contract it belongs to.
    pub contract_id: ContractId,
    /// The PSA's product (catalogue item) id.
    pub product_id: String,
    /// The product identifier usage is mapped to.
    pub product_identifier: ProductId,
    /// Description as billed.
    pub description: String,
    /// Quantity billed now.
    #[serde(with = "amount")]
    pub quantity: Decimal,
    /// Price per unit, per billing period.
    #[serde(with = "amount")]
    pub unit_price: Decimal,
    /// Cost per unit, per billing period.
    #[serde(with = "amount")]
    pub unit_cost: Decimal,
    /// First billed day (inclusive).
    #[serde(default)]
    pub effective_date: Option<NaiveDate>,
    /// Billing ends at the end of this day (inclusive).
    #[serde(default)]
    pub cancelled_date: Option<NaiveDate>,
    /// Whether the line is billed to the customer.
    pub billable: bool,
}

/// A PSA catalogue item: the price a product is sold at when a new line is
/// added for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// The product identifier usage is mapped to.
    pub product_identifier: ProductId,
    /// Description.
    pub description: String,
    /// List price per unit, per billing period of the contract a new line
    /// is added to.
    #[serde(with = "amount")]
    pub unit_price: Decimal,
    /// Cost per unit, per billing period.
    #[serde(with = "amount")]
    pub unit_cost: Decimal,
}

// ------------------------------------------------------------- vendor side

/// A source of usage: an installed vendor connector, a push-API integration
/// or a CSV import profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorIntegration {
    /// Stable id, e.g. `microsoft-365`.
    pub id: VendorId,
    /// Display name.
    pub name: String,
    /// Where its data comes from.
    pub source: UsageSource,
}

/// How a vendor integration delivers usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// A WebAssembly connector, by plugin id.
    Plugin(String),
    /// Pushed through `POST /api/v1/usage`.
    Push,
    /// Imported from CSV with a saved profile, by profile name.
    Csv(String),
}

/// An account inside a vendor (tenant, organisation, site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorAccount {
    /// The vendor integration.
    pub vendor: VendorId,
    /// The vendor's id for the account.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// E-mail/web domains, lower-case.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// Attributes a rule can filter on, sorted by key, keys unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<Arc<str>, Arc<str>>",
    into = "BTreeMap<Arc<str>, Arc<str>>"
)]
pub struct Attributes(Vec<(Arc<str>, Arc<str>)>);

impl Attributes {
    /// Attributes from pairs in any order; a key given twice keeps its last
    /// value.
    pub fn new(pairs: impl IntoIterator<Item = (Arc<str>, Arc<str>)>) -> Self {
        // A sort of a small vector beats building a map: rows carry a
        // handful of attributes and there are millions of rows.
        let mut pairs: Vec<(Arc<str>, Arc<str>)> = pairs.into_iter().collect();
        if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            // Already sorted with unique keys, as connectors usually send.
            return Self(pairs);
        }
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        // After the reverse, the stable sort keeps the LAST value given for
        // a key first among its equals; dedup keeps that one.
        pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        Self(pairs)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    /// All pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every key and value by `f` of it (keys stay sorted: `f`
    /// must return equal text), e.g. to share one `Arc` per distinct string.
    pub fn replace_strings(&mut self, mut f: impl FnMut(&Arc<str>) -> Arc<str>) {
        for (k, v) in &mut self.0 {
            *k = f(k);
            *v = f(v);
        }
    }
}

impl From<BTreeMap<Arc<str>, Arc<str>>> for Attributes {
    fn from(map: BTreeMap<Arc<str>, Arc<str>>) -> Self {
        Self(map.into_iter().collect())
    }
}

impl From<Attributes> for BTreeMap<Arc<str>, Arc<str>> {
    fn from(attributes: Attributes) -> Self {
        attributes.0.into_iter().collect()
    }
}

/// One observation of usage from a vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageObservation {
    /// The vendor integration.
    pub vendor: VendorId,
    /// The vendor account.
    pub account: AccountId,
    /// SKU id.
    pub sku_id: SkuId,
    /// SKU display name.
    pub sku_name: Arc<str>,
    /// Units used (not rounded: rounding is a rule decision).
    #[serde(with = "amount")]
    pub quantity: Decimal,
    /// Unit of measure ("licence", "device", ...).
    pub unit: Arc<str>,
    /// Vendor cost per unit, when the vendor reports it.
    #[serde(default, with = "amount::option")]
    pub unit_cost: Option<Decimal>,
    /// The vendor's billing term, e.g. "Monthly", "Annual".
    #[serde(default)]
    pub billing_term: Option<Arc<str>>,
    /// Last day of the commitment (inclusive).
    #[serde(default)]
    pub commitment_end: Option<NaiveDate>,
    /// Attributes for rules.
    #[serde(default)]
    pub attributes: Attributes,
    /// When the observation was taken. Its UTC calendar date is the
    /// business day the observation counts for in usage measures.
    pub observed_at: DateTime<Utc>,
}

// ----------------------------------------------------------------- mapping

/// Where a vendor account stands against PSA companies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "company")]
pub enum AccountMappingStatus {
    /// Usage of the account is billed to this company.
    Mapped(CompanyId),
    /// Not linked to a company yet: its usage produces "unmapped" cards.
    Unmapped,
    /// Deliberately ignored (internal tenant, a test org, ...).
    Excluded,
}

/// How a mapping was decided, strongest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum MappingMethod {
    /// Set by a person; always wins.
    Manual {
        /// Who set it.
        by: String,
    },
    /// The vendor account id equals a link stored on the company.
    ExactIdLink,
    /// The names are equal once normalized.
    ExactName,
    /// A domain of the account equals a domain of the company.
    Domain {
        /// The shared domain.
        domain: String,
    },
    /// The names are similar; applied only at or above the confidence
    /// threshold, otherwise kept as a suggestion.
    FuzzyName {
        /// Similarity in 0..=1.
        #[serde(with = "amount")]
        score: Decimal,
    },
    /// No candidate was good enough.
    NoMatch,
}

/// A vendor account's mapping to a PSA company.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountMapping {
    /// The vendor.
    pub vendor: VendorId,
    /// The vendor account.
    pub account: AccountId,
    /// Mapped, unmapped or excluded.
    pub status: AccountMappingStatus,
    /// How it was decided.
    pub method: MappingMethod,
    /// Human explanation, e.g. "domain contoso.com matches Contoso Ltd".
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_sort_and_keep_the_last_value_of_a_repeated_key() {
        let attributes = Attributes::new([
            (Arc::from("os"), Arc::from("windows")),
            (Arc::from("class"), Arc::from("workstation")),
            (Arc::from("os"), Arc::from("linux")),
        ]);
        assert_eq!(attributes.get("os"), Some("linux"));
        assert_eq!(attributes.get("class"), Some("workstation"));
        assert_eq!(attributes.get("missing"), None);
        let keys: Vec<_> = attributes.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["class", "os"]);
    }

    #[test]
    fn attributes_round_trip_through_json_as_an_object() -> Result<(), serde_json::Error> {
        let attributes = Attributes::new([(Arc::from("status"), Arc::from("APPROVED"))]);
        let json = serde_json::to_string(&attributes)?;
        assert_eq!(json, r#"{"status":"APPROVED"}"#);
        assert_eq!(serde_json::from_str::<Attributes>(&json)?, attributes);
        Ok(())
    }

    #[test]
    fn only_recurring_cycles_have_months() {
        assert_eq!(BillingCycle::Quarterly.months(), Some(3));
        assert_eq!(BillingCycle::OneTime.months(), None);
        assert_eq!(BillingCycle::Other("Bi-Weekly".into()).months(), None);
    }

    /// Issue 17 (1, 2): the door parser holds amounts to the limits and
    /// refuses, rather than rounds, precision past `MAX_SCALE`.
    #[test]
    fn amounts_past_the_limits_or_the_precision_are_refused() {
        use std::str::FromStr;

        use super::amount::{AmountError, MAX_AMOUNT, MAX_SCALE, parse};

        for (text, expected) in [
            ("12.50", "12.50"),
            ("-3", "-3"),
            ("+7.25", "7.25"),
            ("10000000000", "10000000000"),
            ("0.0000000001", "0.0000000001"),
            ("1.50000000000000000", "1.50000000000000000"),
            ("00000000000000012", "12"),
        ] {
            let value = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                value,
                Decimal::from_str(expected).expect("decimal"),
                "{text}"
            );
        }
        let too_large = parse("79228162514264337593543950335").expect_err("Decimal::MAX");
        assert!(matches!(too_large, AmountError::TooLarge { limit, .. } if limit == MAX_AMOUNT));
        assert!(
            too_large.to_string().contains("at most 10000000000"),
            "{too_large}"
        );
        assert!(matches!(
            parse("10000000000.01"),
            Err(AmountError::TooLarge { .. })
        ));
        assert!(matches!(
            parse("-10000000001"),
            Err(AmountError::TooLarge { .. })
        ));
        // 29 places: `Decimal::from_str` rounded this to 28 silently.
        let precise = parse("0.00000000000000000000000000001").expect_err("29 places");
        assert!(
            matches!(precise, AmountError::TooPrecise { places: 29, .. }),
            "{precise:?}"
        );
        assert!(
            precise
                .to_string()
                .contains(&format!("at most {MAX_SCALE}"))
        );
        assert_eq!(
            parse("0.0000000000000000000000000001").map(|v| v.scale()),
            Ok(28)
        );
        // 11 + 20 digits: more than a Decimal holds exactly.
        assert!(matches!(
            parse("12345678901.12345678901234567891"),
            Err(AmountError::TooLarge { .. }) | Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse("1234567890.123456789012345678901"),
            Err(AmountError::TooPrecise { places: 21, .. })
        ));
        for bad in [
            "", "-", ".", "1.2.3", "1e5", "1_000", "1,5", " 1", "abc", "NaN", "--1",
        ] {
            assert!(
                matches!(parse(bad), Err(AmountError::Syntax(_))),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
    }

    /// Issue 17 (2): JSON amounts `Decimal` cannot hold exactly are refused,
    /// not rounded at 28 places.
    #[test]
    fn serde_amounts_are_exact_or_refused() {
        #[derive(Debug, Deserialize)]
        struct Holder {
            #[serde(with = "amount")]
            value: Decimal,
        }
        let held: Holder = serde_json::from_str(r#"{"value": "12.50"}"#).expect("exact");
        assert_eq!(held.value.to_string(), "12.50");
        // Stored money may pass the input limits: still read.
        let big: Holder =
            serde_json::from_str(r#"{"value": "79228162514264337593543950335"}"#).expect("MAX");
        assert_eq!(big.value, Decimal::MAX);
        let error =
            serde_json::from_str::<Holder>(r#"{"value": "0.00000000000000000000000000001"}"#)
                .expect_err("29 places");
        assert!(error.to_string().contains("exactly"), "{error}");
    }

    /// Issue 17 (3): control characters and bidi overrides are refused,
    /// naming the field and the character; notes may have line breaks.
    #[test]
    fn control_characters_in_text_are_refused() {
        use super::text::check;

        assert!(check("name", "Contoso Ltd — Zürich 東京", false).is_ok());
        assert!(check("note", "line one\nline two\ttab", true).is_ok());
        let bell = check("sku_name", "abc\u{7}d", false).expect_err("BEL");
        assert_eq!(
            bell,
            "sku_name contains the control character U+0007 at character 4; send plain text"
        );
        for bad in [
            "a\nb",
            "\u{1b}[31m",
            "x\u{7f}",
            "\u{85}",
            "evil\u{202E}gpj.exe",
            "\u{2066}",
        ] {
            assert!(check("name", bad, false).is_err(), "{bad:?}");
        }
        assert!(check("note", "\u{0}", true).is_err());
        assert!(check("note", "\u{202E}", true).is_err());
    }
}
