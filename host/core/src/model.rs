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
pub mod amount {
    use std::fmt;
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

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
            Decimal::from_str(v.trim())
                .map_err(|e| E::custom(format!("`{v}` is not a decimal number: {e}")))
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
}
