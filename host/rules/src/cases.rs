//! Test cases beside rule files (`default.rhai` → `default.tests.toml`):
//! usage rows for one company, optionally PSA lines, and what the rules
//! must make of them (products, quantities, effective dates). Run by
//! `trueup rules test`, by the crate's own tests, and by [`validate`]
//! before a version becomes active.
//!
//! ```toml
//! as_of = "2025-03-31"        # the reconcile date
//! psa = "connectwise"         # generic (default), connectwise, autotask, halopsa
//!
//! [[case]]
//! name = "approved workstation seen this month is billed"
//! company = { id = "C1" }     # optional; also name, identifier
//! contract = { cycle = "monthly", timing = "advance", prorate = false }  # optional
//! [[case.usage]]
//! vendor = "ninjaone"
//! sku = "WINDOWS_WORKSTATION"
//! attributes = { "device-role" = "workstation", "approval-status" = "APPROVED", "last-contact" = "2025-03-30" }
//! maps_to = ["RMM-WS"]        # or [{ product = "X", multiplier = "0.5" }], or
//!                             # ignored = true / unmapped = true / error = "text"
//! decided_by = "ninja workstations"   # optional: the deciding rule's name
//! [[case.line]]
//! product = "RMM-WS"
//! quantity = 3
//! [[case.service]]
//! product = "RMM-WS"
//! billable = 1                # the vendor quantity after the policy
//! target = 1                  # the proposed PSA quantity
//! category = "reconcile"
//! effective = "2025-04-01"
//! auto_approve = false
//! ```
//!
//! Decimals are integers or quoted strings ("0.5"), never TOML floats.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use toml::Spanned;
use trueup_core::cycles::CycleAnchor;
use trueup_core::effective::PsaProfile;
use trueup_core::model::{
    Attributes, BillingCycle, BillingTiming, Contract, ContractStatus, UsageObservation, amount,
};

use crate::compile::RuleError;

// The text helpers were defined here first; their paths stay.
pub use crate::text::{attributes_text, mapping_text};
pub use run::{Validated, run_tests, validate};

mod run;

/// A tests file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    as_of: NaiveDate,
    #[serde(default)]
    psa: Option<String>,
    #[serde(default, rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Spanned<String>,
    #[serde(default)]
    company: CaseCompany,
    #[serde(default)]
    contract: CaseContract,
    #[serde(default)]
    usage: Vec<CaseUsage>,
    #[serde(default, rename = "line")]
    lines: Vec<CaseLine>,
    #[serde(default, rename = "service")]
    services: Vec<ExpectService>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseCompany {
    #[serde(default = "default_company_id")]
    id: String,
    #[serde(default = "default_company_name")]
    name: String,
    #[serde(default)]
    identifier: Option<String>,
}

impl Default for CaseCompany {
    fn default() -> Self {
        Self {
            id: default_company_id(),
            name: default_company_name(),
            identifier: None,
        }
    }
}

fn default_company_id() -> String {
    "C1".to_owned()
}

fn default_company_name() -> String {
    "Test Company".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseContract {
    #[serde(default = "default_contract_id")]
    id: String,
    #[serde(default = "default_contract_name")]
    name: String,
    #[serde(default = "default_contract_name", rename = "type")]
    contract_type: String,
    #[serde(default = "default_cycle")]
    cycle: String,
    #[serde(default = "default_timing")]
    timing: String,
    #[serde(default)]
    prorate: bool,
    #[serde(default = "default_start")]
    start: NaiveDate,
    #[serde(default)]
    anchor: Option<CycleAnchor>,
}

impl Default for CaseContract {
    fn default() -> Self {
        Self {
            id: default_contract_id(),
            name: default_contract_name(),
            contract_type: default_contract_name(),
            cycle: default_cycle(),
            timing: default_timing(),
            prorate: false,
            start: default_start(),
            anchor: None,
        }
    }
}

fn default_contract_id() -> String {
    "K1".to_owned()
}

fn default_contract_name() -> String {
    "Managed Services".to_owned()
}

fn default_cycle() -> String {
    "monthly".to_owned()
}

fn default_timing() -> String {
    "advance".to_owned()
}

fn default_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or(NaiveDate::MIN)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseUsage {
    vendor: String,
    sku: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_account")]
    account: String,
    #[serde(default = "one", with = "amount")]
    quantity: Decimal,
    #[serde(default)]
    observed: Option<NaiveDate>,
    #[serde(default)]
    term: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    maps_to: Option<Vec<TargetSpec>>,
    #[serde(default)]
    ignored: bool,
    #[serde(default)]
    unmapped: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    decided_by: Option<String>,
}

fn default_account() -> String {
    "account-1".to_owned()
}

fn one() -> Decimal {
    Decimal::ONE
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TargetSpec {
    Product(String),
    Weighted {
        product: String,
        #[serde(with = "amount")]
        multiplier: Decimal,
    },
}

impl TargetSpec {
    fn pair(&self) -> (String, Decimal) {
        match self {
            Self::Product(p) => (p.clone(), Decimal::ONE),
            Self::Weighted {
                product,
                multiplier,
            } => (product.clone(), multiplier.normalize()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseLine {
    product: String,
    #[serde(with = "amount")]
    quantity: Decimal,
    #[serde(default, with = "amount::option")]
    price: Option<Decimal>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectService {
    product: String,
    #[serde(default, with = "amount::option")]
    billable: Option<Decimal>,
    #[serde(default, with = "amount::option")]
    target: Option<Decimal>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    effective: Option<NaiveDate>,
    #[serde(default)]
    auto_approve: Option<bool>,
    #[serde(default)]
    error: Option<String>,
}

/// Price of a test product when a case does not give one.
const DEFAULT_PRICE: Decimal = Decimal::TEN;

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// What was checked, e.g. `usage[0] ninjaone WINDOWS_WORKSTATION: maps_to`.
    pub what: String,
    /// What the case expects.
    pub expected: String,
    /// What the rules did.
    pub actual: String,
    /// The trace of the decision, one line per rule.
    pub trace: Vec<String>,
}

/// One case's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// Its line in the tests file.
    pub line: usize,
    /// Expectations that did not hold (empty: passed).
    pub mismatches: Vec<Mismatch>,
}

impl CaseResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// All cases of one tests file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// The tests file.
    pub file: String,
    /// Case outcomes, in file order.
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    /// Number of failing cases.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed()).count()
    }

    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            if case.passed() {
                writeln!(f, "ok    {}:{}  {}", self.file, case.line, case.name)?;
                continue;
            }
            writeln!(f, "FAIL  {}:{}  {}", self.file, case.line, case.name)?;
            for m in &case.mismatches {
                writeln!(f, "      {}", m.what)?;
                writeln!(f, "        - expected: {}", m.expected)?;
                writeln!(f, "        + actual:   {}", m.actual)?;
                if !m.trace.is_empty() {
                    writeln!(f, "        trace:")?;
                    for line in &m.trace {
                        writeln!(f, "          {line}")?;
                    }
                }
            }
        }
        write!(
            f,
            "{}: {} case(s), {} passed, {} failed",
            self.file,
            self.cases.len(),
            self.cases.len() - self.failed(),
            self.failed()
        )
    }
}

fn line_of(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

fn psa_profile(name: Option<&str>, file: &str) -> Result<PsaProfile, RuleError> {
    Ok(match name.unwrap_or("generic") {
        "generic" => PsaProfile::generic("generic"),
        "connectwise" => PsaProfile::connectwise(),
        "autotask" => PsaProfile::autotask(),
        "halopsa" => PsaProfile::halopsa(),
        other => {
            return Err(RuleError::TestFile {
                file: file.to_owned(),
                line: 1,
                column: 1,
                message: format!("unknown psa {other:?}; use one of {}", PSA_NAMES.join(", ")),
            });
        }
    })
}

fn case_error(file: &str, text: &str, case: &Case, message: String) -> RuleError {
    let (line, column) = line_of(text, case.name.span().start);
    RuleError::TestFile {
        file: file.to_owned(),
        line,
        column,
        message: format!("case {:?}: {message}", case.name.get_ref()),
    }
}

fn contract_of(case: &Case, file: &str, text: &str) -> Result<Contract, RuleError> {
    let c = &case.contract;
    let cycle = match c.cycle.as_str() {
        "monthly" => BillingCycle::Monthly,
        "quarterly" => BillingCycle::Quarterly,
        "semi_annual" => BillingCycle::SemiAnnual,
        "annual" => BillingCycle::Annual,
        other => {
            return Err(case_error(
                file,
                text,
                case,
                format!("unknown contract cycle {other:?}"),
            ));
        }
    };
    let timing = match c.timing.as_str() {
        "advance" => BillingTiming::Advance,
        "arrears" => BillingTiming::Arrears,
        other => {
            return Err(case_error(
                file,
                text,
                case,
                format!("unknown contract timing {other:?}"),
            ));
        }
    };
    Ok(Contract {
        id: c.id.as_str().into(),
        company_id: case.company.id.as_str().into(),
        name: c.name.clone(),
        contract_type: c.contract_type.clone(),
        status: ContractStatus::Active,
        billing_cycle: cycle,
        start_date: Some(c.start),
        end_date: None,
        timing,
        prorate: c.prorate,
        posted_through: None,
        cycle_anchor: c.anchor,
    })
}

fn usage_row(u: &CaseUsage, as_of: NaiveDate) -> UsageObservation {
    let observed = u.observed.unwrap_or(as_of);
    UsageObservation {
        vendor: u.vendor.as_str().into(),
        account: u.account.as_str().into(),
        sku_id: u.sku.as_str().into(),
        sku_name: Arc::from(u.name.as_deref().unwrap_or(&u.sku)),
        quantity: u.quantity,
        unit: Arc::from("unit"),
        unit_cost: None,
        billing_term: u.term.as_deref().map(Arc::from),
        commitment_end: None,
        attributes: Attributes::new(
            u.attributes
                .iter()
                .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str()))),
        ),
        observed_at: observed.and_time(NaiveTime::MIN).and_utc(),
    }
}

/// The PSA profile names the tests file accepts.
pub const PSA_NAMES: [&str; 4] = ["generic", "connectwise", "autotask", "halopsa"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{CompiledRules, RuleCache, RuleVersion};
    use chrono::{TimeZone, Utc};

    const RULES: &str = "map_sku(\"h\", \"agent\").to(\"EDR\").named(\"edr\");\nignore_sku(\"m\", \"FLOW_FREE\").named(\"free\");\nservice(\"EDR\").tolerance_units(1);\n";

    fn rules() -> Arc<CompiledRules> {
        let version = RuleVersion::new(
            "rules/r.rhai",
            RULES,
            None,
            "t",
            Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(),
        );
        Arc::new(CompiledRules::compile(&version).unwrap())
    }

    #[test]
    fn passing_and_failing_expectations_are_reported_with_a_diff() {
        let text = r#"as_of = "2025-03-31"

[[case]]
name = "passes"
[[case.usage]]
vendor = "h"
sku = "agent"
maps_to = ["EDR"]
decided_by = "edr"

[[case]]
name = "fails"
[[case.usage]]
vendor = "m"
sku = "FLOW_FREE"
maps_to = ["FLOW"]
[[case.usage]]
vendor = "h"
sku = "agent"
quantity = 12
unmapped = true
[[case.line]]
product = "EDR"
quantity = 10
[[case.service]]
product = "EDR"
billable = 11
category = "no_change"
effective = "2025-05-01"
[[case.service]]
product = "NOPE"
"#;
        let report = run_tests(&rules(), "rules/r.tests.toml", text).unwrap();
        assert_eq!((report.cases.len(), report.failed()), (2, 1));
        assert!(report.cases[0].passed());
        let fails = &report.cases[1];
        assert_eq!(fails.line, 12);
        let whats: Vec<(&str, &str, &str)> = fails
            .mismatches
            .iter()
            .map(|m| (m.what.as_str(), m.expected.as_str(), m.actual.as_str()))
            .collect();
        assert_eq!(
            whats,
            [
                (
                    "usage[0] m FLOW_FREE: maps_to",
                    "FLOW ×1",
                    "ignored (by free)"
                ),
                (
                    "usage[1] h agent: unmapped",
                    "unmapped (no rule decides)",
                    "EDR ×1"
                ),
                ("service EDR: billable", "11", "12"),
                ("service EDR: category", "no_change", "reconcile"),
                ("service EDR: effective", "2025-05-01", "2025-04-01"),
                ("service NOPE", "a card for NOPE", "cards: reconcile EDR"),
            ]
        );
        let text = report.to_string();
        assert!(
            text.contains("FAIL  rules/r.tests.toml:12  fails"),
            "{text}"
        );
        assert!(
            text.contains("        - expected: FLOW ×1\n        + actual:   ignored (by free)"),
            "{text}"
        );
        assert!(
            text.contains("✓ free (rules/r.rhai:2:1): not billed"),
            "{text}"
        );
        assert!(
            text.ends_with("rules/r.tests.toml: 2 case(s), 1 passed, 1 failed"),
            "{text}"
        );
    }

    #[test]
    fn malformed_test_files_say_where() {
        // (text, line, message contains)
        let table = [
            (
                "as_of = \"2025-03-31\"\n[[case]]\nnme = \"x\"\n",
                3,
                "unknown field `nme`",
            ),
            (
                "as_of = \"2025-03-31\"\n[[case]]\nname = \"x\"\n[[case.usage]]\nvendor = \"h\"\nsku = \"a\"\nquantity = 1.5\n",
                7,
                "written as a string",
            ),
            (
                "as_of = \"31/03/2025\"\n",
                1,
                "input contains invalid characters",
            ),
            (
                "as_of = \"2025-03-31\"\npsa = \"sage\"\n",
                1,
                "unknown psa \"sage\"",
            ),
            (
                "as_of = \"2025-03-31\"\n\n[[case]]\nname = \"both\"\n[[case.usage]]\nvendor = \"h\"\nsku = \"a\"\nignored = true\nunmapped = true\n",
                4,
                "more than one of",
            ),
        ];
        for (text, line, message) in table {
            match run_tests(&rules(), "t.toml", text) {
                Err(RuleError::TestFile {
                    line: l,
                    message: m,
                    ..
                }) => {
                    assert_eq!(l, line, "{m}");
                    assert!(m.contains(message), "{m}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn validation_runs_the_tests_beside_the_rules() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
        let good = "as_of = \"2025-03-31\"\n[[case]]\nname = \"edr\"\n[[case.usage]]\nvendor = \"h\"\nsku = \"agent\"\nmaps_to = [\"EDR\"]\n";
        let cache = RuleCache::new();
        let ok = validate(
            &RuleVersion::new("rules/r.rhai", RULES, Some(good.into()), "t", at),
            &cache,
        )
        .unwrap();
        assert_eq!(ok.tests.unwrap().cases.len(), 1);
        let bad = good.replace("[\"EDR\"]", "[\"XDR\"]");
        match validate(
            &RuleVersion::new("rules/r.rhai", RULES, Some(bad), "t", at),
            &cache,
        ) {
            Err(RuleError::TestsFailed {
                failed,
                total,
                report,
            }) => {
                assert_eq!((failed, total), (1, 1));
                assert!(
                    report.contains("FAIL  rules/r.tests.toml:3  edr"),
                    "{report}"
                );
            }
            other => panic!("{other:?}"),
        }
        let broken = RuleVersion::new("rules/r.rhai", "map_sku(\"h\")", None, "t", at);
        assert!(matches!(
            validate(&broken, &cache),
            Err(RuleError::Script { .. })
        ));
        // Issue 17 (5): nothing to map is not activated, with the reason.
        for (source, says) in [
            ("", "the rule file is empty"),
            ("  \n// only a comment\n", "declares no mapping rule"),
            ("let x = 1;", "declares no mapping rule"),
            (
                "ignore_sku(\"microsoft-365\", \"FLOW_FREE\").because(\"free\");",
                "declares no mapping rule",
            ),
        ] {
            let empty = RuleVersion::new("rules/r.rhai", source, None, "t", at);
            match validate(&empty, &cache) {
                Err(e @ RuleError::Script { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(says) && text.contains("not activated"),
                        "{source:?}: {text}"
                    );
                }
                other => panic!("{source:?}: {other:?}"),
            }
        }
    }
}
