//! Which PSA contracts and service lines are reconciled, and why the others
//! are not.
//!
//! The rules (from the reconcile prerequisites MSPs already know):
//! - only active contracts with a recurring billing cycle (monthly,
//!   quarterly, semi-annual, annual) that cover the as-of date;
//! - only billable service lines that are linked to such a contract, not
//!   cancelled before the as-of date, and billed in the contract's current
//!   period;
//! - inactive companies are reconciled but noted.
//!
//! Nothing is dropped silently: every contract or line left out becomes an
//! [`Exclusion`] with a machine [`ExclusionCode`] and a sentence for people.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::cycles::{BillingSchedule, CycleAnchor, Period};
use crate::model::{
    AccountRef, Company, CompanyId, CompanyStatus, Contract, ContractId, ContractStatus,
    ServiceLine, ServiceLineId,
};

/// Why something was left out of (or noted in) a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionCode {
    /// The contract's status is Inactive.
    ContractInactive,
    /// The contract's status is Cancelled.
    ContractCancelled,
    /// The contract's status is Expired.
    ContractExpired,
    /// The contract's end date is before the as-of date.
    ContractEnded,
    /// The contract starts after the as-of date.
    ContractNotStarted,
    /// The contract bills none, one-time, or a cycle Trueup does not model.
    NonRecurringCycle,
    /// The contract's company is not in the PSA data.
    UnknownCompany,
    /// The line's contract is not in the PSA data.
    UnknownContract,
    /// The line's contract is itself excluded.
    ContractNotEligible,
    /// The line is not billed to the customer.
    LineNotBillable,
    /// The line was cancelled before the as-of date.
    LineCancelled,
    /// The line is not billed in the contract's current period.
    LineOutsidePeriod,
    /// The company is inactive in the PSA (noted; its contracts still count).
    CompanyInactive,
    /// A vendor account deliberately excluded from billing; its usage is
    /// counted here instead of on cards.
    AccountExcluded,
    /// Usage observed after the as-of date, ignored for this run.
    UsageAfterAsOf,
    /// Usage a rule deliberately does not bill (a free SKU, a stale device).
    UsageIgnoredByRule,
    /// A second record with an id already seen; the first one is used.
    DuplicateRecord,
    /// A quantity, price or cost beyond the limits of
    /// [`crate::model::amount`] (stored before the limits were enforced, or
    /// from a source that does not check them): left out rather than let
    /// the arithmetic overflow.
    ValueOutOfRange,
}

impl ExclusionCode {
    /// Every code, in order (for listings that show zero counts too).
    pub const ALL: [ExclusionCode; 18] = [
        ExclusionCode::ContractInactive,
        ExclusionCode::ContractCancelled,
        ExclusionCode::ContractExpired,
        ExclusionCode::ContractEnded,
        ExclusionCode::ContractNotStarted,
        ExclusionCode::NonRecurringCycle,
        ExclusionCode::UnknownCompany,
        ExclusionCode::UnknownContract,
        ExclusionCode::ContractNotEligible,
        ExclusionCode::LineNotBillable,
        ExclusionCode::LineCancelled,
        ExclusionCode::LineOutsidePeriod,
        ExclusionCode::CompanyInactive,
        ExclusionCode::AccountExcluded,
        ExclusionCode::UsageAfterAsOf,
        ExclusionCode::UsageIgnoredByRule,
        ExclusionCode::DuplicateRecord,
        ExclusionCode::ValueOutOfRange,
    ];

    /// The code as stored and served (`contract_inactive`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionCode::ContractInactive => "contract_inactive",
            ExclusionCode::ContractCancelled => "contract_cancelled",
            ExclusionCode::ContractExpired => "contract_expired",
            ExclusionCode::ContractEnded => "contract_ended",
            ExclusionCode::ContractNotStarted => "contract_not_started",
            ExclusionCode::NonRecurringCycle => "non_recurring_cycle",
            ExclusionCode::UnknownCompany => "unknown_company",
            ExclusionCode::UnknownContract => "unknown_contract",
            ExclusionCode::ContractNotEligible => "contract_not_eligible",
            ExclusionCode::LineNotBillable => "line_not_billable",
            ExclusionCode::LineCancelled => "line_cancelled",
            ExclusionCode::LineOutsidePeriod => "line_outside_period",
            ExclusionCode::CompanyInactive => "company_inactive",
            ExclusionCode::AccountExcluded => "account_excluded",
            ExclusionCode::UsageAfterAsOf => "usage_after_as_of",
            ExclusionCode::UsageIgnoredByRule => "usage_ignored_by_rule",
            ExclusionCode::DuplicateRecord => "duplicate_record",
            ExclusionCode::ValueOutOfRange => "value_out_of_range",
        }
    }

    /// The code named by `text` ([`ExclusionCode::as_str`]'s form).
    pub fn parse(text: &str) -> Option<ExclusionCode> {
        ExclusionCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Whether an [`Exclusion`] removed something or only notes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Left out of the reconcile.
    Excluded,
    /// Reconciled, but worth a look.
    Noted,
}

/// What an exclusion is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Subject {
    /// A PSA company.
    Company(CompanyId),
    /// A PSA contract.
    Contract(ContractId),
    /// A service line.
    Line(ServiceLineId),
    /// A vendor account.
    Account(AccountRef),
}

/// One thing left out of (or noted in) a reconcile, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Exclusion {
    /// What it is about.
    pub subject: Subject,
    /// Machine-readable reason.
    pub code: ExclusionCode,
    /// Excluded or only noted.
    pub severity: Severity,
    /// The reason in a sentence.
    pub reason: String,
    /// The subject's name for people (company or contract name, line
    /// description, account name), when the input has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The PSA company it concerns, when known: what answers "why is this
    /// customer missing?".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<CompanyRef>,
    /// Where the subject comes from: the PSA's name for companies,
    /// contracts and lines, the vendor integration id for accounts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// A PSA company, by id and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CompanyRef {
    /// The PSA's id.
    pub id: CompanyId,
    /// Its name.
    pub name: String,
}

impl Exclusion {
    /// An exclusion without name, company or source (the reconcile fills
    /// them in from its input, see `reconcile::exclusions`).
    pub fn new(subject: Subject, code: ExclusionCode, severity: Severity, reason: String) -> Self {
        Self {
            subject,
            code,
            severity,
            reason,
            name: None,
            company: None,
            source: String::new(),
        }
    }
}

/// A contract that is reconciled, with its schedule and current period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibleContract {
    /// Index into the contracts given to [`assess`].
    pub contract: usize,
    /// Index into the companies given to [`assess`].
    pub company: usize,
    /// How its periods are laid out.
    pub schedule: BillingSchedule,
    /// The period containing the as-of date.
    pub period: Period,
}

/// A service line that is reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EligibleLine {
    /// Index into the lines given to [`assess`].
    pub line: usize,
    /// Index into [`Eligibility::contracts`].
    pub contract: usize,
}

/// The outcome of [`assess`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eligibility {
    /// Reconciled contracts, in input order.
    pub contracts: Vec<EligibleContract>,
    /// Reconciled lines, in input order.
    pub lines: Vec<EligibleLine>,
    /// Everything left out or noted, sorted.
    pub exclusions: Vec<Exclusion>,
}

/// Applies the eligibility rules as of `as_of`. Contracts whose own anchor
/// is unset use `default_anchor`. Unknown references become exclusions, not
/// errors. When ids repeat, the first record wins and the others become
/// [`ExclusionCode::DuplicateRecord`] exclusions.
pub fn assess(
    companies: &[Company],
    contracts: &[Contract],
    lines: &[ServiceLine],
    as_of: NaiveDate,
    default_anchor: CycleAnchor,
) -> Eligibility {
    let mut out = Eligibility::default();
    let mut company_index: HashMap<&str, usize> = HashMap::with_capacity(companies.len());
    for (i, company) in companies.iter().enumerate() {
        if company_index.contains_key(company.id.as_str()) {
            out.exclusions.push(duplicate(
                Subject::Company(company.id.clone()),
                format!("company {} ({})", company.id, company.name),
            ));
            continue;
        }
        company_index.insert(company.id.as_str(), i);
    }
    // For each contract id: Ok(index into out.contracts) or the reason it
    // is out, which its lines repeat.
    let mut contract_state: HashMap<&str, Result<usize, String>> =
        HashMap::with_capacity(contracts.len());
    let mut noted_companies = vec![false; companies.len()];
    for (i, contract) in contracts.iter().enumerate() {
        if contract_state.contains_key(contract.id.as_str()) {
            out.exclusions.push(duplicate(
                Subject::Contract(contract.id.clone()),
                format!("contract {} ({})", contract.id, contract.name),
            ));
            continue;
        }
        let verdict = assess_contract(contract, &company_index, as_of, default_anchor);
        let state = match verdict {
            Ok((company, schedule, period)) => {
                if companies[company].status == CompanyStatus::Inactive && !noted_companies[company]
                {
                    noted_companies[company] = true;
                    out.exclusions.push(Exclusion::new(
                        Subject::Company(companies[company].id.clone()),
                        ExclusionCode::CompanyInactive,
                        Severity::Noted,
                        format!(
                            "company {} is inactive in the PSA but has active contract {}; its cards are still produced",
                            companies[company].name, contract.id
                        ),
                    ));
                }
                out.contracts.push(EligibleContract {
                    contract: i,
                    company,
                    schedule,
                    period,
                });
                Ok(out.contracts.len() - 1)
            }
            Err((code, reason)) => {
                out.exclusions.push(Exclusion::new(
                    Subject::Contract(contract.id.clone()),
                    code,
                    Severity::Excluded,
                    reason.clone(),
                ));
                Err(reason)
            }
        };
        contract_state.insert(contract.id.as_str(), state);
    }
    let mut seen_lines: HashSet<&str> = HashSet::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if !seen_lines.insert(line.id.as_str()) {
            out.exclusions.push(duplicate(
                Subject::Line(line.id.clone()),
                format!("line {} ({})", line.id, line.description),
            ));
            continue;
        }
        let verdict = match contract_state.get(line.contract_id.as_str()) {
            None => Err((
                ExclusionCode::UnknownContract,
                format!(
                    "line {} ({}) points at contract {}, which is not in the PSA data; link the service to a contract",
                    line.id, line.description, line.contract_id
                ),
            )),
            Some(Err(why)) => Err((
                ExclusionCode::ContractNotEligible,
                format!(
                    "line {} is on contract {}, which is not reconciled: {why}",
                    line.id, line.contract_id
                ),
            )),
            Some(Ok(c)) => assess_line(line, &out.contracts[*c], as_of).map(|()| *c),
        };
        match verdict {
            Ok(contract) => out.lines.push(EligibleLine { line: i, contract }),
            Err((code, reason)) => out.exclusions.push(Exclusion::new(
                Subject::Line(line.id.clone()),
                code,
                Severity::Excluded,
                reason,
            )),
        }
    }
    out.exclusions.sort();
    out
}

type Verdict<T> = Result<T, (ExclusionCode, String)>;

/// A record whose id was already seen (`what` names it).
fn duplicate(subject: Subject, what: String) -> Exclusion {
    Exclusion::new(
        subject,
        ExclusionCode::DuplicateRecord,
        Severity::Excluded,
        format!(
            "{what} repeats an id the PSA data already had; only the first record with that id is reconciled"
        ),
    )
}

fn assess_contract(
    contract: &Contract,
    company_index: &HashMap<&str, usize>,
    as_of: NaiveDate,
    default_anchor: CycleAnchor,
) -> Verdict<(usize, BillingSchedule, Period)> {
    let name = || format!("contract {} ({})", contract.id, contract.name);
    let status = match contract.status {
        ContractStatus::Active => None,
        ContractStatus::Inactive => Some(ExclusionCode::ContractInactive),
        ContractStatus::Cancelled => Some(ExclusionCode::ContractCancelled),
        ContractStatus::Expired => Some(ExclusionCode::ContractExpired),
    };
    if let Some(code) = status {
        return Err((
            code,
            format!(
                "{} is {:?} in the PSA; only active contracts are reconciled",
                name(),
                contract.status
            ),
        ));
    }
    let Some(&company) = company_index.get(contract.company_id.as_str()) else {
        return Err((
            ExclusionCode::UnknownCompany,
            format!(
                "{} belongs to company {}, which is not in the PSA data",
                name(),
                contract.company_id
            ),
        ));
    };
    let schedule = BillingSchedule::for_contract(contract, default_anchor)
        .map_err(|e| (ExclusionCode::NonRecurringCycle, format!("{}: {e}", name())))?;
    if let Some(end) = contract.end_date
        && end < as_of
    {
        return Err((
            ExclusionCode::ContractEnded,
            format!("{} ended on {end}, before {as_of}", name()),
        ));
    }
    if let Some(start) = contract.start_date
        && start > as_of
    {
        return Err((
            ExclusionCode::ContractNotStarted,
            format!("{} starts on {start}, after {as_of}", name()),
        ));
    }
    let period = schedule
        .period_containing(as_of)
        .map_err(|e| (ExclusionCode::NonRecurringCycle, format!("{}: {e}", name())))?;
    Ok((company, schedule, period))
}

fn assess_line(line: &ServiceLine, contract: &EligibleContract, as_of: NaiveDate) -> Verdict<()> {
    let name = || format!("line {} ({})", line.id, line.description);
    if !line.billable {
        return Err((
            ExclusionCode::LineNotBillable,
            format!("{} is not billable to the customer", name()),
        ));
    }
    if let Some(cancelled) = line.cancelled_date
        && cancelled < as_of
    {
        return Err((
            ExclusionCode::LineCancelled,
            format!("{} was cancelled on {cancelled}, before {as_of}", name()),
        ));
    }
    if !contract
        .period
        .overlaps(line.effective_date, line.cancelled_date)
    {
        return Err((
            ExclusionCode::LineOutsidePeriod,
            format!(
                "{} is not billed in the current period {}",
                name(),
                contract.period
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BillingCycle, BillingTiming};
    use crate::testkit::d;
    use rust_decimal::Decimal;

    fn company(id: &str, status: CompanyStatus) -> Company {
        Company {
            id: id.into(),
            name: format!("Company {id}"),
            identifier: None,
            domains: vec![],
            status,
            account_links: vec![],
        }
    }

    fn contract(id: &str, company: &str, status: ContractStatus, cycle: BillingCycle) -> Contract {
        Contract {
            id: id.into(),
            company_id: company.into(),
            name: format!("Contract {id}"),
            contract_type: "Managed".into(),
            status,
            billing_cycle: cycle,
            start_date: Some(d(2024, 1, 1)),
            end_date: None,
            timing: BillingTiming::Advance,
            prorate: true,
            posted_through: None,
            cycle_anchor: None,
        }
    }

    fn line(id: &str, contract: &str) -> ServiceLine {
        ServiceLine {
            id: id.into(),
            contract_id: contract.into(),
            product_id: "1".into(),
            product_identifier: "P".into(),
            description: format!("Line {id}"),
            quantity: Decimal::ONE,
            unit_price: Decimal::TEN,
            unit_cost: Decimal::ONE,
            effective_date: None,
            cancelled_date: None,
            billable: true,
        }
    }

    #[test]
    fn every_rule_excludes_with_its_code() {
        let as_of = d(2025, 3, 28);
        let companies = [
            company("A", CompanyStatus::Active),
            company("Z", CompanyStatus::Inactive),
        ];
        let mut ended = contract("ended", "A", ContractStatus::Active, BillingCycle::Monthly);
        ended.end_date = Some(d(2025, 2, 28));
        let mut future = contract("future", "A", ContractStatus::Active, BillingCycle::Monthly);
        future.start_date = Some(d(2025, 4, 1));
        let contracts = [
            contract("ok", "A", ContractStatus::Active, BillingCycle::Monthly),
            contract(
                "inactive",
                "A",
                ContractStatus::Inactive,
                BillingCycle::Monthly,
            ),
            contract(
                "cancelled",
                "A",
                ContractStatus::Cancelled,
                BillingCycle::Monthly,
            ),
            contract(
                "expired",
                "A",
                ContractStatus::Expired,
                BillingCycle::Monthly,
            ),
            contract("none", "A", ContractStatus::Active, BillingCycle::None),
            contract("once", "A", ContractStatus::Active, BillingCycle::OneTime),
            contract(
                "weekly",
                "A",
                ContractStatus::Active,
                BillingCycle::Other("Weekly".into()),
            ),
            contract(
                "orphan",
                "nobody",
                ContractStatus::Active,
                BillingCycle::Monthly,
            ),
            ended,
            future,
            contract("dormant", "Z", ContractStatus::Active, BillingCycle::Annual),
        ];
        let mut not_billable = line("not-billable", "ok");
        not_billable.billable = false;
        let mut cancelled = line("cancelled-line", "ok");
        cancelled.cancelled_date = Some(d(2025, 3, 27));
        let mut cancelled_today = line("cancelled-today", "ok");
        cancelled_today.cancelled_date = Some(as_of);
        let mut starts_next_month = line("next-month", "ok");
        starts_next_month.effective_date = Some(d(2025, 4, 1));
        let mut starts_later_this_month = line("later-this-month", "ok");
        starts_later_this_month.effective_date = Some(d(2025, 3, 30));
        let lines = [
            line("good", "ok"),
            line("lost", "missing"),
            line("on-inactive", "inactive"),
            not_billable,
            cancelled,
            cancelled_today,
            starts_next_month,
            starts_later_this_month,
            line("dormant-line", "dormant"),
        ];
        let result = assess(&companies, &contracts, &lines, as_of, CycleAnchor::Calendar);
        let kept: Vec<&str> = result
            .lines
            .iter()
            .map(|l| lines[l.line].id.as_str())
            .collect();
        assert_eq!(
            kept,
            [
                "good",
                "cancelled-today",
                "later-this-month",
                "dormant-line"
            ]
        );
        let codes: Vec<(String, ExclusionCode, Severity)> = result
            .exclusions
            .iter()
            .map(|e| {
                let id = match &e.subject {
                    Subject::Company(c) => c.to_string(),
                    Subject::Contract(c) => c.to_string(),
                    Subject::Line(l) => l.to_string(),
                    Subject::Account(a) => a.account.to_string(),
                };
                (id, e.code, e.severity)
            })
            .collect();
        use ExclusionCode as C;
        use Severity::{Excluded as X, Noted as N};
        let expected = [
            ("Z".to_owned(), C::CompanyInactive, N),
            ("cancelled".to_owned(), C::ContractCancelled, X),
            ("ended".to_owned(), C::ContractEnded, X),
            ("expired".to_owned(), C::ContractExpired, X),
            ("future".to_owned(), C::ContractNotStarted, X),
            ("inactive".to_owned(), C::ContractInactive, X),
            ("none".to_owned(), C::NonRecurringCycle, X),
            ("once".to_owned(), C::NonRecurringCycle, X),
            ("orphan".to_owned(), C::UnknownCompany, X),
            ("weekly".to_owned(), C::NonRecurringCycle, X),
            ("cancelled-line".to_owned(), C::LineCancelled, X),
            ("lost".to_owned(), C::UnknownContract, X),
            ("next-month".to_owned(), C::LineOutsidePeriod, X),
            ("not-billable".to_owned(), C::LineNotBillable, X),
            ("on-inactive".to_owned(), C::ContractNotEligible, X),
        ];
        assert_eq!(codes, expected);
        assert!(result.exclusions.iter().all(|e| !e.reason.is_empty()));
        // The annual contract's current period is calendar 2025.
        let dormant = result
            .contracts
            .iter()
            .find(|c| contracts[c.contract].id.as_str() == "dormant")
            .unwrap();
        assert_eq!(
            dormant.period,
            Period::new(d(2025, 1, 1), d(2025, 12, 31)).unwrap()
        );
    }

    #[test]
    fn repeated_ids_are_excluded_as_duplicates_and_the_first_record_counts() {
        let as_of = d(2025, 3, 28);
        let mut second_a = company("A", CompanyStatus::Active);
        second_a.name = "Second A".into();
        let companies = [company("A", CompanyStatus::Active), second_a];
        let mut second_ok = contract("ok", "A", ContractStatus::Inactive, BillingCycle::Monthly);
        second_ok.name = "Second ok".into();
        let contracts = [
            contract("ok", "A", ContractStatus::Active, BillingCycle::Monthly),
            second_ok,
        ];
        let lines = [line("L", "ok"), line("L", "ok")];
        let result = assess(&companies, &contracts, &lines, as_of, CycleAnchor::Calendar);
        assert_eq!(
            result.contracts.len(),
            1,
            "the first (active) contract counts"
        );
        assert_eq!(result.lines.len(), 1);
        let got: Vec<(&Subject, ExclusionCode)> = result
            .exclusions
            .iter()
            .map(|e| (&e.subject, e.code))
            .collect();
        assert_eq!(
            got,
            [
                (
                    &Subject::Company("A".into()),
                    ExclusionCode::DuplicateRecord
                ),
                (
                    &Subject::Contract("ok".into()),
                    ExclusionCode::DuplicateRecord
                ),
                (&Subject::Line("L".into()), ExclusionCode::DuplicateRecord),
            ]
        );
    }

    #[test]
    fn codes_read_back_from_their_stored_form() {
        for code in ExclusionCode::ALL {
            let serialized = serde_json::to_value(code).unwrap();
            assert_eq!(serialized, serde_json::json!(code.as_str()));
            assert_eq!(ExclusionCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ExclusionCode::parse("contract_gone"), None);
    }
}
