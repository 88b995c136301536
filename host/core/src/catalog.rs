//! What connector contract 0.2 adds to the PSA side of the model: the
//! product catalogue, a contract's billing anchor, a line's billing kind and
//! commitment, and records a connector could not read.
//!
//! These live beside [`crate::model`] rather than inside its structs so that
//! a 0.1 connector, which says none of this, maps to explicit absence
//! (no products, no anchor, a derived billing kind, no commitment, no
//! exclusions) without every `Contract` and `ServiceLine` in the code base
//! changing shape. Records are tied to their contract or line by id.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::{BillingCycle, ContractId, ProductId, ServiceLineId, amount};

/// A product the PSA can sell: what a new line for it is priced and costed
/// at (ConnectWise procurement catalogue, Autotask services, HaloPSA items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogProduct {
    /// The PSA's id of the product.
    pub id: String,
    /// The identifier lines carry (what vendor SKUs are mapped to).
    pub product_identifier: ProductId,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price per unit per billing period; `None` when the PSA has none (shown
    /// as "price unknown", never as 0).
    #[serde(default, with = "amount::option")]
    pub unit_price: Option<Decimal>,
    /// Cost per unit per billing period; `None` when unknown.
    #[serde(default, with = "amount::option")]
    pub unit_cost: Option<Decimal>,
    /// The cycle the price is for.
    pub billing_cycle: BillingCycle,
    /// Whether sales of it are taxed.
    pub taxable: bool,
    /// False for a product retired in the PSA.
    pub active: bool,
}

/// How a recurring line is billed. Free lines are carried and reconciled
/// beside billed ones, never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingKind {
    /// Billed at its unit price.
    Billed,
    /// Deliberately free: included in the contract, or no-charge.
    Included,
    /// Billable, but priced at zero.
    ZeroPriced,
}

impl BillingKind {
    /// The kind of a line whose connector does not say (contract 0.1): a
    /// line that is not billable is included, a billable one at price zero
    /// is zero-priced, any other is billed.
    pub fn derive(billable: bool, unit_price: Decimal) -> Self {
        if !billable {
            BillingKind::Included
        } else if unit_price.is_zero() {
            BillingKind::ZeroPriced
        } else {
            BillingKind::Billed
        }
    }
}

/// What contract 0.2 says about a contract beyond [`crate::model::Contract`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractTerms {
    /// The contract.
    pub contract_id: ContractId,
    /// The first day of one of its billing cycles, when the PSA gives one;
    /// `None` (always, for a 0.1 connector) keeps the calendar or profile
    /// layout, and the explain trace says so.
    #[serde(default)]
    pub billing_anchor: Option<NaiveDate>,
}

/// What contract 0.2 says about a line beyond [`crate::model::ServiceLine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTerms {
    /// The line.
    pub line_id: ServiceLineId,
    /// How it is billed (derived with [`BillingKind::derive`] for a 0.1
    /// connector).
    pub billing_kind: BillingKind,
    /// The last day (inclusive) of the customer's commitment on it.
    #[serde(default)]
    pub commitment_end: Option<NaiveDate>,
}

/// One record a connector could not read, reported while the rest of the
/// sync went on: shown to the MSP as a named exclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordExclusion {
    /// What the record is in the source's words ("agreement", "addition").
    pub kind: String,
    /// The source's id of the record ("" when unreadable).
    pub id: String,
    /// The field that could not be read, by its API name.
    pub field: String,
    /// The value as seen (truncated by the connector).
    pub seen: String,
    /// Why it could not be read.
    pub reason: String,
}

impl std::fmt::Display for RecordExclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = if self.id.is_empty() {
            "(no id)"
        } else {
            &self.id
        };
        write!(
            f,
            "{} {id}: {} {:?}: {}",
            self.kind, self.field, self.seen, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_kind_is_derived_from_billable_and_price() {
        assert_eq!(
            BillingKind::derive(true, Decimal::new(1250, 2)),
            BillingKind::Billed
        );
        assert_eq!(
            BillingKind::derive(true, Decimal::ZERO),
            BillingKind::ZeroPriced
        );
        assert_eq!(
            BillingKind::derive(false, Decimal::new(1250, 2)),
            BillingKind::Included
        );
        assert_eq!(
            BillingKind::derive(false, Decimal::ZERO),
            BillingKind::Included
        );
    }

    #[test]
    fn unknown_prices_stay_unknown_through_json() {
        let product = CatalogProduct {
            id: "7".into(),
            product_identifier: ProductId::from("M365-BP"),
            name: "Business Premium".into(),
            description: String::new(),
            unit_price: None,
            unit_cost: Some(Decimal::new(1800, 2)),
            billing_cycle: BillingCycle::Monthly,
            taxable: true,
            active: true,
        };
        let json = serde_json::to_value(&product).expect("serialises");
        assert_eq!(json["unit_price"], serde_json::Value::Null);
        assert_eq!(json["unit_cost"], "18.00");
        let back: CatalogProduct = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, product);
    }

    #[test]
    fn exclusions_name_record_field_and_value() {
        let skipped = RecordExclusion {
            kind: "agreement".into(),
            id: "42".into(),
            field: "billStartDate".into(),
            seen: "31/02/2026".into(),
            reason: "not a date".into(),
        };
        assert_eq!(
            skipped.to_string(),
            "agreement 42: billStartDate \"31/02/2026\": not a date"
        );
    }
}
