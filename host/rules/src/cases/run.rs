//! Running the cases of a tests file against compiled rules: each case's
//! usage is mapped and reconciled like a real run, and every expectation is
//! compared with what the rules did.

use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use trueup_core::card::{CardCategory, ServiceCard};
use trueup_core::effective::PsaProfile;
use trueup_core::mapping::UsageMapper;
use trueup_core::model::{
    AccountMapping, AccountMappingStatus, CatalogItem, Company, CompanyStatus, MappingMethod,
    ServiceLine, UsageObservation,
};
use trueup_core::reconcile::{ReconcileInput, reconcile};

use super::{
    Case, CaseFile, CaseResult, DEFAULT_PRICE, ExpectService, Mismatch, TargetSpec, TestReport,
    case_error, contract_of, line_of, psa_profile, usage_row,
};
use crate::compile::{CompiledRules, RuleCache, RuleError, RuleVersion};
use crate::text::{decider, mapping_text, pairs, targets_text, trace_lines};

/// Runs the cases in `text` (the tests file `file`) against `rules`.
///
/// # Errors
/// [`RuleError::TestFile`] when the file is malformed.
pub fn run_tests(
    rules: &Arc<CompiledRules>,
    file: &str,
    text: &str,
) -> Result<TestReport, RuleError> {
    let parsed: CaseFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_of(text, s.start));
        RuleError::TestFile {
            file: file.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })?;
    let psa = psa_profile(parsed.psa.as_deref(), file)?;
    let mut report = TestReport {
        file: file.to_owned(),
        cases: Vec::with_capacity(parsed.cases.len()),
    };
    for case in &parsed.cases {
        let (line, _) = line_of(text, case.name.span().start);
        let mismatches = run_case(rules, &psa, parsed.as_of, case, file, text)?;
        report.cases.push(CaseResult {
            name: case.name.get_ref().clone(),
            line,
            mismatches,
        });
    }
    Ok(report)
}

fn run_case(
    rules: &Arc<CompiledRules>,
    psa: &PsaProfile,
    as_of: NaiveDate,
    case: &Case,
    file: &str,
    text: &str,
) -> Result<Vec<Mismatch>, RuleError> {
    for u in &case.usage {
        let expectations = usize::from(u.maps_to.is_some())
            + usize::from(u.ignored)
            + usize::from(u.unmapped)
            + usize::from(u.error.is_some());
        if expectations > 1 {
            return Err(case_error(
                file,
                text,
                case,
                format!(
                    "usage {} {} expects more than one of maps_to, ignored, unmapped, error",
                    u.vendor, u.sku
                ),
            ));
        }
    }
    let company = Company {
        id: case.company.id.as_str().into(),
        name: case.company.name.clone(),
        identifier: case.company.identifier.clone(),
        domains: Vec::new(),
        status: CompanyStatus::Active,
        account_links: Vec::new(),
    };
    let contract = contract_of(case, file, text)?;
    let usage: Vec<UsageObservation> = case.usage.iter().map(|u| usage_row(u, as_of)).collect();
    let mapper = rules.mapper(as_of);
    let mut mismatches = Vec::new();

    for (i, (u, row)) in case.usage.iter().zip(&usage).enumerate() {
        let what = format!("usage[{i}] {} {}", u.vendor, u.sku);
        let decided = mapper.map_usage(row, Some(&company));
        let actual = match &decided {
            Ok(mapping) => mapping_text(mapping),
            Err(failure) => format!("rule error: {failure}"),
        };
        let trace = match &decided {
            Ok(mapping) => trace_lines(&mapping.trace),
            Err(_) => Vec::new(),
        };
        let mut check = |field: &str, expected: String, ok: bool| {
            if !ok {
                mismatches.push(Mismatch {
                    what: format!("{what}: {field}"),
                    expected,
                    actual: actual.clone(),
                    trace: trace.clone(),
                });
            }
        };
        if let Some(expected) = &u.maps_to {
            let mut want: Vec<(String, Decimal)> = expected.iter().map(TargetSpec::pair).collect();
            want.sort();
            let ok = matches!(&decided, Ok(m) if pairs(&m.targets) == want && (!want.is_empty() || decider(m).is_some()));
            check("maps_to", targets_text(&want), ok);
        }
        if u.ignored {
            let ok = matches!(&decided, Ok(m) if m.targets.is_empty() && decider(m).is_some());
            check("ignored", "ignored by a rule".to_owned(), ok);
        }
        if u.unmapped {
            let ok = matches!(&decided, Ok(m) if m.targets.is_empty() && decider(m).is_none());
            check("unmapped", "unmapped (no rule decides)".to_owned(), ok);
        }
        if let Some(text) = &u.error {
            let ok = matches!(&decided, Err(f) if f.to_string().contains(text.as_str()));
            check("error", format!("a rule error containing {text:?}"), ok);
        }
        if let Some(rule) = &u.decided_by {
            let ok = matches!(&decided, Ok(m) if decider(m) == Some(rule.as_str()));
            let actual_rule = match &decided {
                Ok(m) => decider(m).unwrap_or("no rule").to_owned(),
                Err(_) => "a rule error".to_owned(),
            };
            if !ok {
                mismatches.push(Mismatch {
                    what: format!("{what}: decided_by"),
                    expected: rule.clone(),
                    actual: actual_rule,
                    trace: trace.clone(),
                });
            }
        }
    }

    if case.services.is_empty() {
        return Ok(mismatches);
    }
    let lines: Vec<ServiceLine> = case
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| ServiceLine {
            id: format!("L{}", i + 1).into(),
            contract_id: contract.id.clone(),
            product_id: format!("{}", 1000 + i),
            product_identifier: l.product.as_str().into(),
            description: l.product.clone(),
            quantity: l.quantity,
            unit_price: l.price.unwrap_or(DEFAULT_PRICE),
            unit_cost: Decimal::ZERO,
            effective_date: Some(contract.start_date.unwrap_or(as_of)),
            cancelled_date: None,
            billable: true,
        })
        .collect();
    let mut products: Vec<&str> = case.lines.iter().map(|l| l.product.as_str()).collect();
    products.extend(case.services.iter().map(|s| s.product.as_str()));
    products.sort_unstable();
    products.dedup();
    let catalog: Vec<CatalogItem> = products
        .iter()
        .map(|p| CatalogItem {
            product_identifier: (*p).into(),
            description: (*p).to_owned(),
            unit_price: case
                .lines
                .iter()
                .find(|l| l.product == *p)
                .and_then(|l| l.price)
                .unwrap_or(DEFAULT_PRICE),
            unit_cost: Decimal::ZERO,
        })
        .collect();
    let mut accounts: Vec<(&str, &str)> = case
        .usage
        .iter()
        .map(|u| (u.vendor.as_str(), u.account.as_str()))
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mappings: Vec<AccountMapping> = accounts
        .iter()
        .map(|(vendor, account)| AccountMapping {
            vendor: (*vendor).into(),
            account: (*account).into(),
            status: AccountMappingStatus::Mapped(company.id.clone()),
            method: MappingMethod::Manual { by: "test".into() },
            reason: "test case".into(),
        })
        .collect();
    let companies = [company.clone()];
    let contracts = [contract];
    let input = ReconcileInput {
        as_of,
        psa,
        companies: &companies,
        contracts: &contracts,
        lines: &lines,
        catalog: &catalog,
        accounts: &[],
        usage: &usage,
        mappings: &mappings,
        suggestions: &[],
        mapper: &mapper,
    };
    let output = reconcile(&input);
    for expect in &case.services {
        let what = format!("service {}", expect.product);
        let card = output.cards.iter().find(|c| {
            c.company.as_ref() == Some(&company.id)
                && c.product
                    .as_ref()
                    .is_some_and(|p| p.as_str() == expect.product)
                && c.vendor_quantity.is_some()
        });
        let card = card.or_else(|| {
            output.cards.iter().find(|c| {
                c.company.as_ref() == Some(&company.id)
                    && c.product
                        .as_ref()
                        .is_some_and(|p| p.as_str() == expect.product)
            })
        });
        let Some(card) = card else {
            let present: Vec<String> = output
                .cards
                .iter()
                .map(|c| match (&c.product, &c.source) {
                    (Some(p), _) => format!("{} {p}", c.category),
                    (None, Some(s)) => format!("{} {} SKU {}", c.category, s.vendor, s.sku),
                    (None, None) => c.category.to_string(),
                })
                .collect();
            mismatches.push(Mismatch {
                what,
                expected: format!("a card for {}", expect.product),
                actual: format!(
                    "cards: {}",
                    if present.is_empty() {
                        "none".to_owned()
                    } else {
                        present.join(", ")
                    }
                ),
                trace: Vec::new(),
            });
            continue;
        };
        compare_card(card, expect, &what, &mut mismatches);
    }
    Ok(mismatches)
}

fn show(value: Option<Decimal>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.normalize().to_string())
}

fn compare_card(card: &ServiceCard, expect: &ExpectService, what: &str, out: &mut Vec<Mismatch>) {
    let trace: Vec<String> = card
        .mappings
        .iter()
        .flat_map(|m| trace_lines(&m.trace))
        .collect();
    let mut push = |field: &str, expected: String, actual: String| {
        out.push(Mismatch {
            what: format!("{what}: {field}"),
            expected,
            actual,
            trace: trace.clone(),
        });
    };
    let billable = card.vendor_quantity.map(|v| v.billable.normalize());
    if let Some(want) = expect.billable
        && billable != Some(want.normalize())
    {
        push("billable", want.normalize().to_string(), show(billable));
    }
    let target = card.target_quantity.map(|t| t.normalize());
    if let Some(want) = expect.target
        && target != Some(want.normalize())
    {
        push("target", want.normalize().to_string(), show(target));
    }
    if let Some(want) = &expect.category
        && card.category.as_str() != want
    {
        let known = CardCategory::ALL.iter().any(|c| c.as_str() == want);
        let expected = if known {
            want.clone()
        } else {
            format!("{want} (not a category)")
        };
        push("category", expected, card.category.to_string());
    }
    let effective = card.effective().map(|e| e.date);
    if let Some(want) = expect.effective
        && effective != Some(want)
    {
        push(
            "effective",
            want.to_string(),
            effective.map_or_else(|| "none (no change proposed)".to_owned(), |d| d.to_string()),
        );
    }
    if let Some(want) = expect.auto_approve
        && card.auto_approvable != want
    {
        push(
            "auto_approve",
            want.to_string(),
            card.auto_approvable.to_string(),
        );
    }
    if let Some(want) = &expect.error {
        let actual = card.error.as_ref().map(|e| e.to_string());
        if !actual.as_deref().is_some_and(|a| a.contains(want.as_str())) {
            push(
                "error",
                format!("a rule error containing {want:?}"),
                actual.unwrap_or_else(|| "no error".to_owned()),
            );
        }
    }
}

/// A version that passed validation, compiled.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The compiled rules.
    pub rules: Arc<CompiledRules>,
    /// The tests run, when the version has tests.
    pub tests: Option<TestReport>,
}

/// Validates `version` before it becomes active: it compiles, its
/// declaration phase runs within the limits, it declares at least one
/// mapping rule, and every test case beside it passes.
///
/// # Errors
/// The compile or declaration error, [`RuleError::Script`] for a version
/// that maps nothing (an empty file, or only comments or services), a
/// malformed tests file, or [`RuleError::TestsFailed`] with the readable
/// report.
pub fn validate(version: &RuleVersion, cache: &RuleCache) -> Result<Validated, RuleError> {
    let rules = cache.get(version)?;
    // Activating a version that maps nothing would turn every usage row of
    // the next reconcile into an unmapped card: a month-end lost to a
    // blank editor, so it is refused, not activated.
    if rules.mapping_rule_count() == 0 {
        let what = if version.source.trim().is_empty() {
            "the rule file is empty"
        } else {
            "the rule file declares no mapping rule"
        };
        return Err(RuleError::Script {
            file: version.file.clone(),
            position: None,
            phase: crate::error::Phase::Validate,
            message: format!(
                "{what}: activating it would leave every vendor SKU unmapped, so it was not activated"
            ),
            hint: Some(
                "declare at least one mapping, e.g. map_sku(\"microsoft-365\", \"SPE_E3\").to(\"M365-E3\"); the rules in effect stay active".into(),
            ),
        });
    }
    let tests = match &version.tests {
        Some(text) => {
            let name = crate::compile::tests_path(std::path::Path::new(&version.file))
                .display()
                .to_string();
            let report = run_tests(&rules, &name, text)?;
            if !report.passed() {
                return Err(RuleError::TestsFailed {
                    failed: report.failed(),
                    total: report.cases.len(),
                    report: report.to_string(),
                });
            }
            Some(report)
        }
        None => None,
    };
    Ok(Validated { rules, tests })
}
