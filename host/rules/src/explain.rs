//! "Why does this usage map like that?": traces as text, and the
//! explanation of one vendor account's SKU in a snapshot (`trueup rules
//! explain`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use trueup_core::mapping::{
    MappingFailure, PolicyContext, ServicePolicy, SkuTableFirst, TraceStep, UsageMapper,
    UsageMapping,
};
use trueup_core::model::{
    AccountMapping, AccountMappingStatus, Company, ContractStatus, ProductId,
};
use trueup_core::snapshot::Snapshot;

use crate::mapper::RulesMapper;
use crate::text::{attributes_text, mapping_text};

// The text helpers were defined here first; their paths stay.
pub use crate::text::{policy_text, step_line, trace_lines};

/// Most distinct decisions listed for one SKU.
pub const MAX_EXPLAINED_DECISIONS: usize = 20;

/// Rows that got one decision.
#[derive(Debug, Clone)]
pub struct DecisionGroup {
    /// How many rows.
    pub rows: usize,
    /// The first such row's attributes, as `key=value` text.
    pub example: String,
    /// The decision.
    pub decision: Result<Arc<UsageMapping>, MappingFailure>,
}

/// How one product's policy was reached for the company.
#[derive(Debug, Clone)]
pub struct PolicyExplanation {
    /// The product.
    pub product: ProductId,
    /// The contract the policy was evaluated on.
    pub contract: String,
    /// The policy, or the failure.
    pub policy: Result<(ServicePolicy, Vec<TraceStep>), MappingFailure>,
}

/// The explanation of one SKU of one vendor account.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The rules version.
    pub version: String,
    /// `vendor account SKU`.
    pub subject: String,
    /// Where the account stands (mapped to a company, unmapped, excluded).
    pub account: String,
    /// Distinct decisions, most rows first.
    pub decisions: Vec<DecisionGroup>,
    /// Decisions not listed past [`MAX_EXPLAINED_DECISIONS`].
    pub more_decisions: usize,
    /// Policies of the products the rows map to.
    pub policies: Vec<PolicyExplanation>,
    /// Notes (rows after the as-of date, no contract, ...).
    pub notes: Vec<String>,
}

/// Why there is nothing to explain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExplainError(pub String);

/// Explains how the rules treat usage of `sku` in vendor account `account`
/// (of `vendor`, or of any vendor when `None`) in `snapshot`, with the
/// account mappings `mappings`.
///
/// # Errors
/// When the snapshot has no such usage, or the account is found under
/// several vendors and none was named.
pub fn explain(
    mapper: &SkuTableFirst<RulesMapper>,
    snapshot: &Snapshot,
    mappings: &[AccountMapping],
    vendor: Option<&str>,
    account: &str,
    sku: &str,
) -> Result<Explanation, ExplainError> {
    let rows: Vec<usize> = snapshot
        .usage
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            u.account.as_str() == account
                && u.sku_id.as_str() == sku
                && vendor.is_none_or(|v| u.vendor.as_str() == v)
        })
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = rows.first() else {
        let skus: Vec<&str> = {
            let mut s: Vec<&str> = snapshot
                .usage
                .iter()
                .filter(|u| {
                    u.account.as_str() == account && vendor.is_none_or(|v| u.vendor.as_str() == v)
                })
                .map(|u| u.sku_id.as_str())
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        return Err(ExplainError(if skus.is_empty() {
            format!("the snapshot has no usage of account {account}")
        } else {
            format!(
                "account {account} has no usage of SKU {sku}; its SKUs are {}",
                skus.join(", ")
            )
        }));
    };
    let vendor_id = snapshot.usage[first].vendor.clone();
    if rows.iter().any(|&i| snapshot.usage[i].vendor != vendor_id) {
        return Err(ExplainError(format!(
            "account {account} has SKU {sku} under several vendors; name one with --vendor"
        )));
    }
    let status = mappings
        .iter()
        .find(|m| m.vendor == vendor_id && m.account.as_str() == account)
        .map(|m| m.status.clone())
        .unwrap_or(AccountMappingStatus::Unmapped);
    let company: Option<&Company> = match &status {
        AccountMappingStatus::Mapped(id) => snapshot.companies.iter().find(|c| &c.id == id),
        _ => None,
    };
    let mut notes = Vec::new();
    let account_text = match (&status, company) {
        (AccountMappingStatus::Mapped(_), Some(c)) => {
            format!("mapped to company {} ({})", c.id, c.name)
        }
        (AccountMappingStatus::Mapped(id), None) => {
            format!("mapped to company {id}, which is not in the snapshot (rules see no company)")
        }
        (AccountMappingStatus::Unmapped, _) => {
            "not mapped to a company (rules see no company)".to_owned()
        }
        (AccountMappingStatus::Excluded, _) => {
            notes.push("the account is excluded: a reconcile ignores its usage".to_owned());
            "excluded from billing".to_owned()
        }
    };
    let late = rows
        .iter()
        .filter(|&&i| snapshot.usage[i].observed_at.date_naive() > mapper.rules().as_of())
        .count();
    if late > 0 {
        notes.push(format!(
            "{late} row(s) were observed after {} and a reconcile ignores them",
            mapper.rules().as_of()
        ));
    }

    // Group rows by decision: the same Arc for the same mapping, else the
    // failure text.
    let mut groups: Vec<DecisionGroup> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for &i in &rows {
        let row = &snapshot.usage[i];
        let decision = mapper.map_usage(row, company);
        let key = match &decision {
            Ok(m) => format!("ok:{:p}", Arc::as_ptr(m)),
            Err(f) => format!("err:{f}"),
        };
        match by_key.get(&key) {
            Some(&g) => groups[g].rows += 1,
            None => {
                by_key.insert(key, groups.len());
                groups.push(DecisionGroup {
                    rows: 1,
                    example: attributes_text(&row.attributes),
                    decision,
                });
            }
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.rows));
    let more_decisions = groups.len().saturating_sub(MAX_EXPLAINED_DECISIONS);
    groups.truncate(MAX_EXPLAINED_DECISIONS);

    let mut products: Vec<ProductId> = groups
        .iter()
        .filter_map(|g| g.decision.as_ref().ok())
        .flat_map(|m| m.targets.iter().map(|t| t.product.clone()))
        .collect();
    products.sort();
    products.dedup();
    let mut policies = Vec::new();
    if let Some(company) = company {
        for product in products {
            let line = snapshot.service_lines.iter().find(|l| {
                l.product_identifier == product
                    && snapshot
                        .contracts
                        .iter()
                        .any(|c| c.id == l.contract_id && c.company_id == company.id)
            });
            let contract = match line {
                Some(l) => snapshot.contracts.iter().find(|c| c.id == l.contract_id),
                None => snapshot
                    .contracts
                    .iter()
                    .filter(|c| c.company_id == company.id && c.status == ContractStatus::Active)
                    .min_by(|a, b| a.id.cmp(&b.id)),
            };
            let Some(contract) = contract else {
                notes.push(format!(
                    "company {} has no contract for {product}; its policy needs one",
                    company.id
                ));
                continue;
            };
            let ctx = PolicyContext {
                company,
                contract,
                product: &product,
                line,
                psa: &snapshot.psa,
                as_of: mapper.rules().as_of(),
            };
            policies.push(PolicyExplanation {
                contract: contract.id.to_string(),
                policy: mapper.rules().explain_policy(&ctx),
                product,
            });
        }
    }
    let name = &snapshot.usage[first].sku_name;
    Ok(Explanation {
        version: mapper.version().to_owned(),
        subject: format!("{vendor_id} account {account} SKU {sku} ({name})"),
        account: account_text,
        decisions: groups,
        more_decisions,
        policies,
        notes,
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.subject)?;
        writeln!(f, "  account: {}", self.account)?;
        writeln!(f, "  rules:   {}", self.version)?;
        for group in &self.decisions {
            writeln!(f)?;
            match &group.decision {
                Ok(mapping) => writeln!(f, "{} row(s) → {}", group.rows, mapping_text(mapping))?,
                Err(failure) => writeln!(f, "{} row(s) → rule error: {failure}", group.rows)?,
            }
            if !group.example.is_empty() {
                writeln!(f, "  e.g. {}", group.example)?;
            }
            if let Ok(mapping) = &group.decision {
                for line in trace_lines(&mapping.trace) {
                    writeln!(f, "  {line}")?;
                }
            }
        }
        if self.more_decisions > 0 {
            writeln!(
                f,
                "\n... and {} more distinct decision(s)",
                self.more_decisions
            )?;
        }
        for p in &self.policies {
            writeln!(f)?;
            match &p.policy {
                Ok((policy, steps)) => {
                    writeln!(
                        f,
                        "policy of {} on contract {}: {}",
                        p.product,
                        p.contract,
                        policy_text(policy)
                    )?;
                    for step in steps {
                        writeln!(f, "  {}", step_line(step))?;
                    }
                }
                Err(failure) => writeln!(
                    f,
                    "policy of {} on contract {}: rule error: {failure}",
                    p.product, p.contract
                )?,
            }
        }
        for note in &self.notes {
            writeln!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};
    use rust_decimal::Decimal;
    use trueup_core::effective::PsaProfile;
    use trueup_core::model::*;

    use crate::compile::{CompiledRules, RuleVersion};
    use trueup_core::mapping::{SkuMapEntry, SkuTableMapper};

    /// Two companies; Contoso's NinjaOne org has approved and pending
    /// workstations and a server; Fabrikam's account is not mapped.
    pub(crate) fn snapshot() -> Snapshot {
        let mut s = Snapshot::new(PsaProfile::connectwise());
        for (id, name) in [("C1", "Contoso"), ("C2", "Fabrikam")] {
            s.companies.push(Company {
                id: id.into(),
                name: name.into(),
                identifier: None,
                domains: vec![],
                status: CompanyStatus::Active,
                account_links: vec![],
            });
            s.contracts.push(Contract {
                id: format!("K-{id}").into(),
                company_id: id.into(),
                name: "Managed".into(),
                contract_type: "Managed".into(),
                status: ContractStatus::Active,
                billing_cycle: BillingCycle::Monthly,
                start_date: NaiveDate::from_ymd_opt(2024, 1, 1),
                end_date: None,
                timing: BillingTiming::Advance,
                prorate: false,
                posted_through: None,
                cycle_anchor: None,
            });
        }
        s.service_lines.push(ServiceLine {
            id: "L1".into(),
            contract_id: "K-C1".into(),
            product_id: "1".into(),
            product_identifier: "RMM-WS".into(),
            description: "Workstations".into(),
            quantity: Decimal::from(3),
            unit_price: Decimal::from(40),
            unit_cost: Decimal::from(3),
            effective_date: NaiveDate::from_ymd_opt(2024, 1, 1),
            cancelled_date: None,
            billable: true,
        });
        s.account_mappings.push(AccountMapping {
            vendor: "ninjaone".into(),
            account: "org-1".into(),
            status: AccountMappingStatus::Mapped("C1".into()),
            method: MappingMethod::Manual { by: "t".into() },
            reason: "t".into(),
        });
        let at = Utc.with_ymd_and_hms(2025, 3, 31, 6, 0, 0).unwrap();
        let device = |account: &str, sku: &str, status: &str, id: u32| UsageObservation {
            vendor: "ninjaone".into(),
            account: account.into(),
            sku_id: sku.into(),
            sku_name: Arc::from(sku),
            quantity: Decimal::ONE,
            unit: Arc::from("device"),
            unit_cost: None,
            billing_term: None,
            commitment_end: None,
            attributes: Attributes::new([
                (Arc::from("approval-status"), Arc::from(status)),
                (Arc::from("device-id"), Arc::from(id.to_string())),
            ]),
            observed_at: at,
        };
        for id in 0..4 {
            s.usage
                .push(device("org-1", "WINDOWS_WORKSTATION", "APPROVED", id));
        }
        s.usage
            .push(device("org-1", "WINDOWS_WORKSTATION", "PENDING", 9));
        s.usage
            .push(device("org-1", "WINDOWS_SERVER", "APPROVED", 10));
        s.usage
            .push(device("org-2", "WINDOWS_WORKSTATION", "APPROVED", 11));
        s
    }

    pub(crate) const RULES: &str = "ignore_vendor(\"ninjaone\")\n    .unless_attr(\"approval-status\", \"APPROVED\")\n    .named(\"pending\");\nmap_sku(\"ninjaone\", \"WINDOWS_WORKSTATION\").to(\"RMM-WS\").named(\"workstations\");\nservice(\"RMM-WS\").tolerance_units(2).named(\"ws tolerance\");\n";

    pub(crate) fn compiled(source: &str) -> Arc<CompiledRules> {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
        Arc::new(
            CompiledRules::compile(&RuleVersion::new("rules/x.rhai", source, None, "t", at))
                .unwrap(),
        )
    }

    #[test]
    fn explains_each_distinct_decision_with_its_trace_and_policy() {
        let s = snapshot();
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 31).unwrap();
        let no_table = SkuTableMapper::new("sku-table", [], []);
        let mapper = SkuTableFirst::new(no_table, compiled(RULES).mapper(as_of));
        let e = explain(
            &mapper,
            &s,
            &s.account_mappings,
            None,
            "org-1",
            "WINDOWS_WORKSTATION",
        )
        .unwrap();
        assert_eq!(e.account, "mapped to company C1 (Contoso)");
        assert_eq!(
            e.decisions.iter().map(|d| d.rows).collect::<Vec<_>>(),
            [4, 1]
        );
        let text = e.to_string();
        for expected in [
            "ninjaone account org-1 SKU WINDOWS_WORKSTATION (WINDOWS_WORKSTATION)",
            "4 row(s) → RMM-WS ×1",
            "  ✗ pending (rules/x.rhai:1:1): approval-status is APPROVED",
            "  ✓ workstations (rules/x.rhai:4:1): → RMM-WS ×1",
            "1 row(s) → ignored (by pending)",
            "policy of RMM-WS on contract K-C1: effective first day of next month, measure month_end, round none, tolerance 2 unit(s), no auto-approval",
            "  ✓ ws tolerance (rules/x.rhai:5:1): tolerance 2 unit(s)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // An unmapped account: the rules see no company, so no policy.
        let e = explain(
            &mapper,
            &s,
            &s.account_mappings,
            Some("ninjaone"),
            "org-2",
            "WINDOWS_WORKSTATION",
        )
        .unwrap();
        assert!(e.account.starts_with("not mapped"));
        assert!(e.policies.is_empty());
        // Nothing to explain.
        let err = explain(&mapper, &s, &s.account_mappings, None, "org-1", "MAC").unwrap_err();
        assert_eq!(
            err.0,
            "account org-1 has no usage of SKU MAC; its SKUs are WINDOWS_SERVER, WINDOWS_WORKSTATION"
        );
        assert!(explain(&mapper, &s, &s.account_mappings, None, "org-9", "MAC").is_err());
    }

    #[test]
    fn explain_names_the_sku_table_when_it_decides() {
        let s = snapshot();
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 31).unwrap();
        let table = SkuTableMapper::new(
            "sku-table-1",
            [SkuMapEntry {
                vendor: "ninjaone".into(),
                sku: "WINDOWS_WORKSTATION".into(),
                product: "RMM-TABLE".into(),
                multiplier: Decimal::ONE,
            }],
            [],
        );
        let mapper = SkuTableFirst::new(table, compiled(RULES).mapper(as_of));
        let e = explain(
            &mapper,
            &s,
            &s.account_mappings,
            None,
            "org-1",
            "WINDOWS_WORKSTATION",
        )
        .unwrap();
        let text = e.to_string();
        // Every row goes by the table (the rules' "pending" never runs).
        assert!(
            text.contains("5 row(s) → RMM-TABLE ×1"),
            "the table decides:\n{text}"
        );
        assert!(text.contains("sku-table"), "the trace names it:\n{text}");
        assert!(
            text.contains("+ sku-table-1"),
            "the version names it:\n{text}"
        );
    }
}
