//! The snapshot file: a complete PSA + vendor picture in one JSON document
//! (`{"format":"trueup-snapshot","version":1,...}`), for rehearsing a
//! month-end run, for bug reports and for tests. The format is documented
//! in `docs/snapshot-format.md`.
//!
//! Parsing is strict about structure and says where a problem is (the JSON
//! path, line and column); it is lenient about references: a line pointing
//! at an unknown contract is an eligibility exclusion in the reconcile, not
//! a parse error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::effective::PsaProfile;
use crate::fasthash::StableHash;
use crate::mapping::{ProductPolicy, SkuMapEntry, SkuTableMapper, UsageMapper};
use crate::matching::{MatchConfig, MatchOutcome, match_accounts};
use crate::model::{
    AccountMapping, CatalogItem, Company, Contract, ServiceLine, UsageObservation, VendorAccount,
    VendorIntegration,
};
use crate::reconcile::ReconcileInput;

/// The `format` value of every snapshot.
pub const SNAPSHOT_FORMAT: &str = "trueup-snapshot";

/// The snapshot version this build reads and writes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A full PSA + vendor snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// Always [`SNAPSHOT_VERSION`] for this build.
    pub version: u32,
    /// When the data was taken.
    #[serde(default)]
    pub taken_at: Option<DateTime<Utc>>,
    /// The PSA's constraints.
    pub psa: PsaProfile,
    /// PSA companies.
    #[serde(default)]
    pub companies: Vec<Company>,
    /// PSA contracts.
    #[serde(default)]
    pub contracts: Vec<Contract>,
    /// PSA recurring service lines.
    #[serde(default)]
    pub service_lines: Vec<ServiceLine>,
    /// PSA catalogue prices.
    #[serde(default)]
    pub catalog: Vec<CatalogItem>,
    /// Vendor integrations.
    #[serde(default)]
    pub vendors: Vec<VendorIntegration>,
    /// Vendor accounts.
    #[serde(default)]
    pub accounts: Vec<VendorAccount>,
    /// Account → company mappings on record.
    #[serde(default)]
    pub account_mappings: Vec<AccountMapping>,
    /// The SKU table for the built-in mapper.
    #[serde(default)]
    pub sku_map: Vec<SkuMapEntry>,
    /// Per-product service policies for the built-in mapper.
    #[serde(default)]
    pub service_policies: Vec<ProductPolicy>,
    /// Usage rows.
    #[serde(default)]
    pub usage: Vec<UsageObservation>,
}

/// Why a snapshot could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// The JSON is malformed or does not have the snapshot's shape.
    #[error("snapshot is invalid at `{path}` (line {line}, column {column}): {message}")]
    Json {
        /// JSON path of the offending value, e.g. `usage[3].quantity`.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The document is not a Trueup snapshot.
    #[error("not a Trueup snapshot: `format` is {found}, expected \"{SNAPSHOT_FORMAT}\"")]
    Format {
        /// What `format` held.
        found: String,
    },
    /// A version this build cannot read.
    #[error(
        "snapshot version {found} is not supported; this build reads version {SNAPSHOT_VERSION}"
    )]
    Version {
        /// What `version` held.
        found: String,
    },
    /// Two records share an id.
    #[error("duplicate id `{id}` at `{path}` (already used at `{first}`); ids must be unique")]
    Duplicate {
        /// Path of the second record's id.
        path: String,
        /// The id.
        id: String,
        /// Path of the first record's id.
        first: String,
    },
    /// Serialising failed.
    #[error("could not write the snapshot: {0}")]
    Write(String),
}

#[derive(Deserialize)]
struct Header {
    format: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

impl Snapshot {
    /// An empty snapshot for `psa`.
    pub fn new(psa: PsaProfile) -> Self {
        Self {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: SNAPSHOT_VERSION,
            taken_at: None,
            psa,
            companies: Vec::new(),
            contracts: Vec::new(),
            service_lines: Vec::new(),
            catalog: Vec::new(),
            vendors: Vec::new(),
            accounts: Vec::new(),
            account_mappings: Vec::new(),
            sku_map: Vec::new(),
            service_policies: Vec::new(),
            usage: Vec::new(),
        }
    }

    /// Reads a snapshot from JSON text, checks its format and version and
    /// that ids are unique, and shares repeated strings
    /// ([`Self::intern_strings`]).
    pub fn from_json(text: &str) -> Result<Self, SnapshotError> {
        // The header is checked first so a wrong file says "not a snapshot"
        // rather than listing the first of many missing fields.
        if let Ok(header) = serde_json::from_str::<Header>(text) {
            match header.format {
                Some(serde_json::Value::String(f)) if f == SNAPSHOT_FORMAT => {}
                other => {
                    return Err(SnapshotError::Format {
                        found: other
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "missing".to_owned()),
                    });
                }
            }
            match header.version {
                Some(serde_json::Value::Number(n))
                    if n.as_u64() == Some(u64::from(SNAPSHOT_VERSION)) => {}
                other => {
                    return Err(SnapshotError::Version {
                        found: other
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "missing".to_owned()),
                    });
                }
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let mut snapshot: Snapshot = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            SnapshotError::Json {
                path,
                line: inner.line(),
                column: inner.column(),
                message: strip_position(&inner.to_string()),
            }
        })?;
        de.end().map_err(|e| SnapshotError::Json {
            path: ".".to_owned(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
        snapshot.check_unique_ids()?;
        snapshot.intern_strings();
        Ok(snapshot)
    }

    /// The snapshot as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, SnapshotError> {
        serde_json::to_string_pretty(self).map_err(|e| SnapshotError::Write(e.to_string()))
    }

    fn check_unique_ids(&self) -> Result<(), SnapshotError> {
        fn unique<'a>(
            section: &str,
            ids: impl Iterator<Item = String> + 'a,
        ) -> Result<(), SnapshotError> {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (i, id) in ids.enumerate() {
                if let Some(first) = seen.get(&id) {
                    return Err(SnapshotError::Duplicate {
                        path: format!("{section}[{i}].id"),
                        first: format!("{section}[{first}].id"),
                        id,
                    });
                }
                seen.insert(id, i);
            }
            Ok(())
        }
        unique("companies", self.companies.iter().map(|c| c.id.to_string()))?;
        unique("contracts", self.contracts.iter().map(|c| c.id.to_string()))?;
        unique(
            "service_lines",
            self.service_lines.iter().map(|l| l.id.to_string()),
        )?;
        unique("vendors", self.vendors.iter().map(|v| v.id.to_string()))?;
        unique(
            "accounts",
            self.accounts
                .iter()
                .map(|a| format!("{}/{}", a.vendor, a.id)),
        )?;
        Ok(())
    }

    /// Makes equal strings in usage rows share one `Arc`, so millions of
    /// rows hold a few thousand strings and the reconcile's pointer caches
    /// hit.
    pub fn intern_strings(&mut self) {
        let mut pool: HashSet<Arc<str>> = HashSet::new();
        let mut intern = |s: &Arc<str>| -> Arc<str> {
            match pool.get(s) {
                Some(shared) => Arc::clone(shared),
                None => {
                    pool.insert(Arc::clone(s));
                    Arc::clone(s)
                }
            }
        };
        for row in &mut self.usage {
            row.vendor.0 = intern(&row.vendor.0);
            row.account.0 = intern(&row.account.0);
            row.sku_id.0 = intern(&row.sku_id.0);
            row.sku_name = intern(&row.sku_name);
            row.unit = intern(&row.unit);
            if let Some(term) = &row.billing_term {
                row.billing_term = Some(intern(term));
            }
            row.attributes.replace_strings(&mut intern);
        }
    }

    /// The built-in mapper over [`Self::sku_map`] and
    /// [`Self::service_policies`]. Its version is `sku-table/` and a hash of
    /// both, so a card records exactly which table produced it.
    pub fn sku_mapper(&self) -> SkuTableMapper {
        let mut hash = StableHash::new();
        for e in &self.sku_map {
            hash = hash
                .field(e.vendor.as_str())
                .field(e.sku.as_str())
                .field(e.product.as_str())
                .field(&e.multiplier.normalize().to_string());
        }
        for p in &self.service_policies {
            hash = hash
                .field(p.product.as_str())
                .field(&format!("{:?}", p.policy));
        }
        let hex = hash.hex();
        SkuTableMapper::new(
            format!("sku-table/{}", &hex[..16]),
            self.sku_map.iter().cloned(),
            self.service_policies.iter().cloned(),
        )
    }

    /// Account matching over the snapshot: every listed account decided by
    /// [`match_accounts`] (manual mappings and exclusions on record win),
    /// plus the mappings on record for accounts not listed, kept as they are.
    pub fn resolve_mappings(&self, config: MatchConfig) -> Vec<MatchOutcome> {
        let mut outcomes = match_accounts(
            &self.companies,
            &self.accounts,
            &self.account_mappings,
            config,
        );
        let listed: HashSet<(&str, &str)> = self
            .accounts
            .iter()
            .map(|a| (a.vendor.as_str(), a.id.as_str()))
            .collect();
        for m in &self.account_mappings {
            if !listed.contains(&(m.vendor.as_str(), m.account.as_str())) {
                outcomes.push(MatchOutcome {
                    mapping: m.clone(),
                    suggestions: Vec::new(),
                });
            }
        }
        outcomes
    }

    /// A reconcile input over this snapshot.
    pub fn reconcile_input<'a>(
        &'a self,
        as_of: NaiveDate,
        mappings: &'a [AccountMapping],
        suggestions: &'a [MatchOutcome],
        mapper: &'a dyn UsageMapper,
    ) -> ReconcileInput<'a> {
        ReconcileInput {
            as_of,
            psa: &self.psa,
            companies: &self.companies,
            contracts: &self.contracts,
            lines: &self.service_lines,
            catalog: &self.catalog,
            accounts: &self.accounts,
            usage: &self.usage,
            mappings,
            suggestions,
            mapper,
        }
    }
}

/// serde_json appends " at line L column C" to its messages; the error
/// carries those separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardCategory as C;
    use crate::eligibility::ExclusionCode;
    use crate::reconcile::reconcile;
    use rust_decimal_macros::dec;

    const SMALL: &str = include_str!("../../../tests/fixtures/snapshots/small.json");

    fn err(text: &str) -> SnapshotError {
        Snapshot::from_json(text).unwrap_err()
    }

    /// The small example with one substitution applied.
    fn small_with(from: &str, to: &str) -> String {
        assert!(SMALL.contains(from), "fixture lacks {from}");
        SMALL.replacen(from, to, 1)
    }

    #[test]
    fn the_documented_example_parses_and_reconciles() {
        let snapshot = Snapshot::from_json(SMALL).unwrap();
        assert_eq!(
            (
                snapshot.companies.len(),
                snapshot.service_lines.len(),
                snapshot.usage.len()
            ),
            (2, 4, 8)
        );
        // Repeated strings share one allocation after loading.
        assert!(Arc::ptr_eq(
            &snapshot.usage[0].account.0,
            &snapshot.usage[1].account.0
        ));
        let outcomes = snapshot.resolve_mappings(MatchConfig::default());
        let mappings: Vec<AccountMapping> = outcomes.iter().map(|o| o.mapping.clone()).collect();
        let mapper = snapshot.sku_mapper();
        assert!(mapper.version().starts_with("sku-table/"));
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 28).unwrap();
        let out = reconcile(&snapshot.reconcile_input(as_of, &mappings, &outcomes, &mapper));
        // LA1 10 → 12 (+44.00), LA2 2 = 2, LA3 no vendor, LB1 8 → 6
        // (−12.00), EXO-ARCHIVE new (+9.00), FLOW_FREE and tenant-x
        // unmapped: see docs/snapshot-format.md.
        let by_category = |c| out.totals.cards.get(&c).copied().unwrap_or(0);
        assert_eq!(
            C::ALL.map(by_category),
            [1, 2, 1, 1, 2, 0],
            "new, reconcile, no change, no vendor, unmapped, rule error"
        );
        assert_eq!(
            (out.totals.under_billed, out.totals.over_billed),
            (dec!(53.00), dec!(12.00))
        );
    }

    #[test]
    fn export_then_import_gives_the_same_snapshot() {
        let snapshot = Snapshot::from_json(SMALL).unwrap();
        let again = Snapshot::from_json(&snapshot.to_json().unwrap()).unwrap();
        assert_eq!(again, snapshot);
        let world = crate::testkit::world();
        assert_eq!(
            Snapshot::from_json(&world.to_json().unwrap()).unwrap(),
            world
        );
    }

    #[test]
    fn bad_input_names_the_json_path() {
        // (input, expected path, words in the message)
        let table = [
            (
                small_with(r#""quantity": "10""#, r#""quantity": 10.5"#),
                "service_lines[0].quantity",
                "written as a string",
            ),
            (
                small_with(r#""quantity": "12""#, r#""quantity": "twelve""#),
                "usage[1].quantity",
                "not a decimal",
            ),
            (
                small_with(
                    r#""observed_at": "2025-03-27T06:00:00Z""#,
                    r#""observed_at": "yesterday""#,
                ),
                "usage[4].observed_at",
                "input",
            ),
            (
                small_with(
                    r#""billing_cycle": "monthly""#,
                    r#""billing_cycle": "fortnightly""#,
                ),
                "contracts[0].billing_cycle",
                "unknown variant",
            ),
            (
                small_with(r#""status": "active""#, r#""status": "dormant""#),
                "companies[0].status",
                "expected `active` or `inactive`",
            ),
            (
                small_with(r#""prorate": true"#, r#""prorate": "yes""#),
                "contracts[0].prorate",
                "invalid type: string",
            ),
            (
                small_with(r#""name": "Contoso Ltd","#, ""),
                "companies[0]",
                "missing field `name`",
            ),
            (
                small_with(r#""taken_at""#, r#""takenAt""#),
                "takenAt",
                "unknown field `takenAt`",
            ),
        ];
        for (input, path, words) in table {
            match err(&input) {
                SnapshotError::Json {
                    path: p,
                    message,
                    line,
                    ..
                } => {
                    assert_eq!(p, path, "{message}");
                    assert!(message.contains(words), "{path}: {message}");
                    assert!(line > 0);
                }
                other => panic!("{path}: expected a JSON error, got {other}"),
            }
        }
    }

    #[test]
    fn wrong_documents_are_named_as_such() {
        assert!(matches!(
            err(r#"{"format":"something-else","version":1}"#),
            SnapshotError::Format { .. }
        ));
        assert!(matches!(
            err(r#"{"version":1}"#),
            SnapshotError::Format { .. }
        ));
        let v2 = small_with(r#""version": 1"#, r#""version": 2"#);
        assert_eq!(err(&v2), SnapshotError::Version { found: "2".into() });
        assert!(err(&v2).to_string().contains("reads version 1"));
        // Truncated JSON: a syntax error with a position.
        match err(&SMALL[..SMALL.len() / 2]) {
            SnapshotError::Json { line, .. } => assert!(line > 1),
            other => panic!("{other}"),
        }
        let trailing = format!("{SMALL} {{}}");
        assert!(matches!(err(&trailing), SnapshotError::Json { .. }));
    }

    #[test]
    fn duplicate_ids_are_errors_but_unknown_references_are_exclusions() {
        let dup = small_with(r#""id": "LB1""#, r#""id": "LA1""#);
        assert_eq!(
            err(&dup),
            SnapshotError::Duplicate {
                path: "service_lines[3].id".into(),
                id: "LA1".into(),
                first: "service_lines[0].id".into()
            }
        );
        let dangling = small_with(r#""contract_id": "KB1""#, r#""contract_id": "K-GONE""#);
        let snapshot = Snapshot::from_json(&dangling).unwrap();
        let mapper = snapshot.sku_mapper();
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 28).unwrap();
        let out =
            reconcile(&snapshot.reconcile_input(as_of, &snapshot.account_mappings, &[], &mapper));
        assert!(
            out.exclusions
                .iter()
                .any(|e| e.code == ExclusionCode::UnknownContract && e.reason.contains("K-GONE"))
        );
    }
}
