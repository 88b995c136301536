//! Naming what a reconcile left out: each exclusion gets its subject's
//! name, the PSA company it concerns and its source, from the reconcile's
//! own input, so that a list of exclusions answers "why is this customer
//! missing?" without another lookup.

use std::collections::HashMap;

use super::ReconcileInput;
use crate::eligibility::{CompanyRef, Exclusion, Subject};
use crate::model::{AccountMappingStatus, Company};

/// Fills in `name`, `company` and `source` of every exclusion from
/// `input`. Ids the input does not have leave the name (or company)
/// unset: an exclusion for an unknown reference is still shown, by id.
pub fn describe(input: &ReconcileInput<'_>, exclusions: &mut [Exclusion]) {
    let names = Names::new(input);
    for e in exclusions.iter_mut() {
        let (name, company, source) = match &e.subject {
            Subject::Company(id) => (
                names.company(id.as_str()).map(|c| c.name.clone()),
                names.company_ref(id.as_str()),
                input.psa.name.clone(),
            ),
            Subject::Contract(id) => {
                let contract = names.contracts.get(id.as_str());
                (
                    contract.map(|(name, _)| (*name).to_owned()),
                    contract.and_then(|(_, company)| names.company_ref(company)),
                    input.psa.name.clone(),
                )
            }
            Subject::Line(id) => {
                let line = names.lines.get(id.as_str());
                let company = line
                    .and_then(|(_, contract)| names.contracts.get(contract))
                    .and_then(|(_, company)| names.company_ref(company));
                (
                    line.map(|(description, _)| (*description).to_owned()),
                    company,
                    input.psa.name.clone(),
                )
            }
            Subject::Account(account) => {
                let key = (account.vendor.as_str(), account.account.as_str());
                (
                    names.accounts.get(&key).map(|n| (*n).to_owned()),
                    names
                        .mapped
                        .get(&key)
                        .and_then(|company| names.company_ref(company)),
                    account.vendor.as_str().to_owned(),
                )
            }
        };
        e.name = name;
        e.company = company;
        e.source = source;
    }
}

/// The input's records by id (the first record of an id, as eligibility
/// uses it).
struct Names<'a> {
    companies: HashMap<&'a str, &'a Company>,
    /// Contract id → (name, company id).
    contracts: HashMap<&'a str, (&'a str, &'a str)>,
    /// Line id → (description, contract id).
    lines: HashMap<&'a str, (&'a str, &'a str)>,
    /// (vendor, account) → account name.
    accounts: HashMap<(&'a str, &'a str), &'a str>,
    /// (vendor, account) → the company it is mapped to.
    mapped: HashMap<(&'a str, &'a str), &'a str>,
}

impl<'a> Names<'a> {
    fn new(input: &ReconcileInput<'a>) -> Self {
        let mut names = Names {
            companies: HashMap::with_capacity(input.companies.len()),
            contracts: HashMap::with_capacity(input.contracts.len()),
            lines: HashMap::with_capacity(input.lines.len()),
            accounts: HashMap::with_capacity(input.accounts.len()),
            mapped: HashMap::with_capacity(input.mappings.len()),
        };
        for c in input.companies {
            names.companies.entry(c.id.as_str()).or_insert(c);
        }
        for c in input.contracts {
            names
                .contracts
                .entry(c.id.as_str())
                .or_insert((c.name.as_str(), c.company_id.as_str()));
        }
        for l in input.lines {
            names
                .lines
                .entry(l.id.as_str())
                .or_insert((l.description.as_str(), l.contract_id.as_str()));
        }
        for a in input.accounts {
            names
                .accounts
                .entry((a.vendor.as_str(), a.id.as_str()))
                .or_insert(a.name.as_str());
        }
        for m in input.mappings {
            if let AccountMappingStatus::Mapped(company) = &m.status {
                names
                    .mapped
                    .entry((m.vendor.as_str(), m.account.as_str()))
                    .or_insert(company.as_str());
            }
        }
        names
    }

    fn company(&self, id: &str) -> Option<&'a Company> {
        self.companies.get(id).copied()
    }

    /// The company by id, with its name when the input has it.
    fn company_ref(&self, id: &str) -> Option<CompanyRef> {
        Some(CompanyRef {
            id: id.into(),
            name: self.company(id)?.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::effective::PsaProfile;
    use crate::eligibility::{ExclusionCode, Severity};
    use crate::mapping::SkuTableMapper;
    use crate::model::{
        AccountMapping, AccountRef, BillingCycle, BillingTiming, CompanyStatus, Contract,
        ContractStatus, MappingMethod, ServiceLine, VendorAccount,
    };
    use crate::testkit::d;

    fn company(id: &str, name: &str) -> Company {
        Company {
            id: id.into(),
            name: name.into(),
            identifier: None,
            domains: vec![],
            status: CompanyStatus::Active,
            account_links: vec![],
        }
    }

    fn contract(id: &str, company: &str, name: &str) -> Contract {
        Contract {
            id: id.into(),
            company_id: company.into(),
            name: name.into(),
            contract_type: "Managed".into(),
            status: ContractStatus::Inactive,
            billing_cycle: BillingCycle::Monthly,
            start_date: Some(d(2024, 1, 1)),
            end_date: None,
            timing: BillingTiming::Advance,
            prorate: true,
            posted_through: None,
            cycle_anchor: None,
        }
    }

    fn line(id: &str, contract: &str, description: &str) -> ServiceLine {
        ServiceLine {
            id: id.into(),
            contract_id: contract.into(),
            product_id: "1".into(),
            product_identifier: "P".into(),
            description: description.into(),
            quantity: Decimal::ONE,
            unit_price: Decimal::TEN,
            unit_cost: Decimal::ONE,
            effective_date: None,
            cancelled_date: None,
            billable: true,
        }
    }

    fn account(vendor: &str, id: &str) -> Subject {
        Subject::Account(AccountRef {
            vendor: vendor.into(),
            account: id.into(),
        })
    }

    #[test]
    fn every_subject_gets_its_name_company_and_source() {
        let companies = [company("C1", "Coho Winery"), company("C2", "Contoso")];
        let contracts = [
            contract("K1", "C1", "Coho managed services"),
            contract("K9", "nobody", "Orphan contract"),
        ];
        let lines = [
            line("L1", "K1", "Microsoft 365 Business Premium"),
            line("L9", "missing", "Line on no contract"),
        ];
        let accounts = [
            VendorAccount {
                vendor: "pax8".into(),
                id: "T1".into(),
                name: "Contoso Ltd (Pax8)".into(),
                domains: vec![],
            },
            VendorAccount {
                vendor: "pax8".into(),
                id: "T2".into(),
                name: "Test tenant".into(),
                domains: vec![],
            },
        ];
        let mapping = |account: &str, status| AccountMapping {
            vendor: "pax8".into(),
            account: account.into(),
            status,
            method: MappingMethod::ExactIdLink,
            reason: String::new(),
        };
        let mappings = [
            mapping("T1", AccountMappingStatus::Mapped("C2".into())),
            mapping("T2", AccountMappingStatus::Excluded),
        ];
        let psa = PsaProfile::connectwise();
        let mapper = SkuTableMapper::new("test", [], []);
        let input = ReconcileInput {
            as_of: d(2026, 10, 31),
            psa: &psa,
            companies: &companies,
            contracts: &contracts,
            lines: &lines,
            catalog: &[],
            accounts: &accounts,
            usage: &[],
            mappings: &mappings,
            suggestions: &[],
            mapper: &mapper,
        };
        let subjects = [
            Subject::Company("C1".into()),
            Subject::Company("C404".into()),
            Subject::Contract("K1".into()),
            Subject::Contract("K9".into()),
            Subject::Line("L1".into()),
            Subject::Line("L9".into()),
            account("pax8", "T1"),
            account("pax8", "T2"),
            account("pax8", "T404"),
        ];
        let mut exclusions: Vec<Exclusion> = subjects
            .iter()
            .map(|s| {
                Exclusion::new(
                    s.clone(),
                    ExclusionCode::ContractInactive,
                    Severity::Excluded,
                    "why".into(),
                )
            })
            .collect();
        describe(&input, &mut exclusions);
        /// (name, company (id, name), source) of one exclusion.
        type Described<'e> = (Option<&'e str>, Option<(&'e str, &'e str)>, &'e str);
        let got: Vec<Described<'_>> = exclusions
            .iter()
            .map(|e| {
                (
                    e.name.as_deref(),
                    e.company.as_ref().map(|c| (c.id.as_str(), c.name.as_str())),
                    e.source.as_str(),
                )
            })
            .collect();
        let cw = psa.name.as_str();
        let coho = Some(("C1", "Coho Winery"));
        let expected = [
            (Some("Coho Winery"), coho, cw),
            (None, None, cw),
            (Some("Coho managed services"), coho, cw),
            (Some("Orphan contract"), None, cw),
            (Some("Microsoft 365 Business Premium"), coho, cw),
            (Some("Line on no contract"), None, cw),
            (Some("Contoso Ltd (Pax8)"), Some(("C2", "Contoso")), "pax8"),
            (Some("Test tenant"), None, "pax8"),
            (None, None, "pax8"),
        ];
        assert_eq!(got, expected);
    }
}
