//! The contract's vocabulary, independent of the WIT version a plugin was
//! built for: the package and its two worlds, and what a connector returns
//! (records are the core model's types; these are the envelopes).

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::catalog::{ContractTerms, LineTerms, RecordExclusion};
use trueup_core::model::{Contract, ServiceLine};

/// The WIT package every connector implements.
pub const PACKAGE: &str = "trueup:connector";

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// `psa-connector`: companies, contracts, recurring services, write-back.
    Psa,
    /// `vendor-connector`: accounts and usage.
    Vendor,
}

impl PluginKind {
    /// The WIT world's name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Psa => "psa-connector",
            PluginKind::Vendor => "vendor-connector",
        }
    }

    /// The exported interface's name.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Psa => "psa",
            PluginKind::Vendor => "vendor",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Psa => "psa",
            PluginKind::Vendor => "vendor",
        })
    }
}

/// A page of a listing and the cursor to the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The records.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Records of this page the connector could not read, each a named
    /// exclusion (contract 0.2; always empty for a 0.1 connector).
    pub skipped: Vec<RecordExclusion>,
}

/// A contract with what contract 0.2 says about it (its billing anchor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaContract {
    /// The contract, as every version reads it.
    pub contract: Contract,
    /// Its terms; no anchor for a 0.1 connector.
    pub terms: ContractTerms,
}

/// A recurring line with what contract 0.2 says about it (billing kind,
/// commitment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaLine {
    /// The line, as every version reads it.
    pub line: ServiceLine,
    /// Its terms; derived for a 0.1 connector (billing kind from `billable`
    /// and the price, no commitment).
    pub terms: LineTerms,
}

/// An approved change of a line's unit cost (contract 0.2): SET it from a
/// date, idempotently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostChange {
    /// The contract.
    pub contract_id: String,
    /// The line.
    pub line_id: String,
    /// The line's product identifier.
    pub product_identifier: String,
    /// The unit cost Trueup last read.
    pub expected_unit_cost: Decimal,
    /// The unit cost to set.
    pub new_unit_cost: Decimal,
    /// First day of the new cost (inclusive).
    pub effective_date: NaiveDate,
    /// Stable across retries.
    pub idempotency_key: String,
}

/// What a connector says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorDescription {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it can do (`write-quantity`, `usage-all-accounts`, ...).
    pub capabilities: Vec<String>,
}

/// Which contracts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractFilter {
    /// Contract type names; empty means all.
    pub types: Vec<String>,
    /// Only active contracts.
    pub active_only: bool,
}

/// How a PSA should record a quantity change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangePolicy {
    /// Effective on a date, keeping history the PSA's way.
    Dated,
    /// In place, now.
    Immediate,
}

/// An approved change to write: SET the quantity from a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantityChange {
    /// The contract.
    pub contract_id: String,
    /// The line; `None` adds a new line for `product_identifier` to the
    /// contract (new revenue).
    pub line_id: Option<String>,
    /// The product identifier of the line.
    pub product_identifier: String,
    /// The quantity Trueup last read.
    pub expected_quantity: Decimal,
    /// The quantity to set.
    pub new_quantity: Decimal,
    /// First day of the new quantity (inclusive).
    pub effective_date: NaiveDate,
    /// Dated or immediate.
    pub policy: ChangePolicy,
    /// Stable across retries.
    pub idempotency_key: String,
}

/// One HTTP call a write would make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCall {
    /// HTTP method.
    pub method: String,
    /// URL.
    pub url: String,
    /// JSON body, without secrets.
    pub body: Option<String>,
    /// Why.
    pub purpose: String,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// PSA record ids created or changed.
    pub record_ids: Vec<String>,
    /// False when the PSA already held the state (nothing written).
    pub changed: bool,
    /// The line as read back.
    pub line: ServiceLine,
    /// The read-back line's terms (derived for a 0.1 connector).
    pub line_terms: LineTerms,
    /// Notes for the user.
    pub notes: Vec<String>,
}
