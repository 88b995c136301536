//! The native rule table a script declares: mapping rules, service-policy
//! declarations and the closures they use. Built once per rule version by
//! the declaration phase ([`crate::script`]); matching against it is plain
//! Rust, and only [`Condition::Predicate`]-style conditions call back into
//! Rhai.

use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;
use rhai::FnPtr;
use rust_decimal::Decimal;
use trueup_core::effective::EffectiveDatePolicy;
use trueup_core::mapping::{MappingTarget, Rounding, ServicePolicy, SourcePosition, UsageMeasure};
use trueup_core::model::{Attributes, BillingCycle, BillingTiming, Company, Contract};

use crate::glob::Glob;

/// Index of a closure in [`RuleTable::closures`].
pub type ClosureId = usize;

/// What a closure decides, and so what it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosureKind {
    /// `.when([attrs], |row| bool)`.
    RowPredicate,
    /// `.choose([attrs], |row| product(s))`.
    RowChooser,
    /// `.when_company(|company| bool)`.
    CompanyPredicate,
    /// `.when_contract(|contract| bool)` on a service declaration.
    ContractPredicate,
}

/// A Rhai closure a rule calls, with what it may read.
#[derive(Debug, Clone)]
pub struct Closure {
    /// The function pointer (with its captured values).
    pub fn_ptr: FnPtr,
    /// Attributes the closure declared it reads; it is given these and no
    /// others, so its result is memoised per distinct value of these.
    pub attrs: Vec<Arc<str>>,
    /// Where the closure was handed to the rule.
    pub position: SourcePosition,
    /// What it decides.
    pub kind: ClosureKind,
}

/// How a rule takes part in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// The first matching `Map` or `Ignore` rule decides; a `Map` rule
    /// gives the products.
    Map,
    /// Decides that the usage is not billed.
    Ignore,
    /// A dependent line: when a `Map` rule has decided, every matching
    /// `Also` rule adds its products.
    Also,
}

impl RuleKind {
    /// Whether the rule can decide on its own (`Map` or `Ignore`).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Also)
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Map => "map",
            Self::Ignore => "ignore",
            Self::Also => "also",
        })
    }
}

/// A condition on a usage row (or its company).
#[derive(Debug, Clone)]
pub enum Condition {
    /// The attribute equals one of `values` (`negate`: is missing or equals
    /// none of them).
    AttrIn {
        /// Attribute key.
        key: Arc<str>,
        /// Accepted values, exact.
        values: Vec<Arc<str>>,
        /// `unless_attr`.
        negate: bool,
    },
    /// The attribute matches a pattern (`negate`: is missing or does not).
    AttrLike {
        /// Attribute key.
        key: Arc<str>,
        /// The pattern.
        pattern: Glob,
        /// `unless_attr_like`.
        negate: bool,
    },
    /// The attribute is present (`negate`: absent).
    AttrPresent {
        /// Attribute key.
        key: Arc<str>,
        /// `lacks_attr`.
        negate: bool,
    },
    /// The attribute is a number within a bound.
    AttrBound {
        /// Attribute key.
        key: Arc<str>,
        /// The bound.
        bound: Decimal,
        /// `true`: at least `bound`; `false`: at most.
        at_least: bool,
    },
    /// The attribute is a date (`YYYY-MM-DD`, or a timestamp starting
    /// with one) at most `days` days before the as-of date (`negate`:
    /// missing, not a date, or older).
    SeenWithin {
        /// Attribute key.
        key: Arc<str>,
        /// Days.
        days: i64,
        /// `not_seen_within_days`.
        negate: bool,
    },
    /// The row's billing term is one of `values` (`negate`: is not).
    TermIn {
        /// Terms, exact.
        values: Vec<Arc<str>>,
        /// `unless_term`.
        negate: bool,
    },
    /// The company's id or identifier is one of `ids` (`negate`: is not,
    /// or there is no company).
    CompanyIn {
        /// Ids or identifiers.
        ids: Vec<Arc<str>>,
        /// `except_company`.
        negate: bool,
    },
    /// A Rhai predicate over the row's declared attributes.
    Predicate(ClosureId),
    /// A Rhai predicate over the company.
    CompanyPredicate(ClosureId),
}

impl Condition {
    /// Whether this condition runs Rhai.
    pub fn is_closure(&self) -> bool {
        matches!(self, Self::Predicate(_) | Self::CompanyPredicate(_))
    }
}

/// One mapping rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name in traces.
    pub name: Arc<str>,
    /// Where it is declared.
    pub position: SourcePosition,
    /// Map, ignore or also.
    pub kind: RuleKind,
    /// The vendor integration id it applies to.
    pub vendor: Arc<str>,
    /// SKU ids it applies to; empty = every SKU of the vendor.
    pub skus: Vec<Arc<str>>,
    /// A SKU id pattern.
    pub sku_like: Option<Glob>,
    /// A SKU display-name pattern.
    pub name_like: Option<Glob>,
    /// Conditions, all of which must hold.
    pub conditions: Vec<Condition>,
    /// Products (bundles repeat).
    pub targets: Vec<MappingTarget>,
    /// A closure choosing the products instead.
    pub chooser: Option<ClosureId>,
    /// Why (shown in traces), e.g. "free SKU".
    pub reason: Option<String>,
}

impl Rule {
    /// Whether the rule can apply to this SKU id and name (vendor aside).
    pub fn applies_to_sku(&self, sku: &str, sku_name: &str) -> bool {
        (self.skus.is_empty() || self.skus.iter().any(|s| s.as_ref() == sku))
            && self.sku_like.as_ref().is_none_or(|g| g.matches(sku))
            && self.name_like.as_ref().is_none_or(|g| g.matches(sku_name))
    }

    /// Whether the rule decides every row it applies to: a terminal rule
    /// with no conditions and no chooser. Later terminal rules for the
    /// same SKUs can never be reached.
    pub fn is_unconditional(&self) -> bool {
        self.kind.is_terminal() && self.conditions.is_empty() && self.chooser.is_none()
    }

    /// What the rule gives, for traces: "M365-BP ×1 + BACKUP ×1".
    pub fn describe_targets(targets: &[MappingTarget]) -> String {
        if targets.is_empty() {
            return "nothing".to_owned();
        }
        targets
            .iter()
            .map(|t| format!("{} ×{}", t.product, t.multiplier.normalize()))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// The row fields conditions read.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a> {
    /// Vendor integration id.
    pub vendor: &'a str,
    /// SKU id.
    pub sku: &'a str,
    /// SKU display name.
    pub sku_name: &'a str,
    /// Billing term.
    pub term: Option<&'a str>,
    /// Attributes.
    pub attributes: &'a Attributes,
    /// The company, when the account is mapped.
    pub company: Option<&'a Company>,
    /// The reconcile date.
    pub as_of: NaiveDate,
}

/// Whether a condition held, and the fact that decided it (for traces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Held.
    pub pass: bool,
    /// The fact, e.g. "approval-status is PENDING, not APPROVED".
    pub why: String,
}

impl Check {
    fn new(pass: bool, why: String) -> Self {
        Self { pass, why }
    }
}

fn list(values: &[Arc<str>]) -> String {
    match values {
        [one] => one.to_string(),
        many => format!(
            "one of {}",
            many.iter()
                .map(|v| v.as_ref())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The date at the start of an attribute value (`2025-03-30` or
/// `2025-03-30T10:00:00Z`).
pub fn leading_date(value: &str) -> Option<NaiveDate> {
    let head = value.get(..10)?;
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

/// Company matching: by PSA id or by the PSA's short identifier.
pub fn company_matches(company: &Company, ids: &[Arc<str>]) -> bool {
    ids.iter().any(|id| {
        id.as_ref() == company.id.as_str() || company.identifier.as_deref() == Some(id.as_ref())
    })
}

impl Condition {
    /// Evaluates a native condition. `None` for closure conditions, which
    /// the caller evaluates (memoised).
    pub fn check(&self, row: &RowView<'_>) -> Option<Check> {
        Some(match self {
            Self::AttrIn {
                key,
                values,
                negate,
            } => {
                let value = row.attributes.get(key);
                let hit = value.is_some_and(|v| values.iter().any(|x| x.as_ref() == v));
                let why = match (value, hit) {
                    (None, _) => format!("{key} is missing"),
                    (Some(v), true) => format!("{key} is {v}"),
                    (Some(v), false) => format!("{key} is {v}, not {}", list(values)),
                };
                Check::new(hit != *negate, why)
            }
            Self::AttrLike {
                key,
                pattern,
                negate,
            } => {
                let value = row.attributes.get(key);
                let hit = value.is_some_and(|v| pattern.matches(v));
                let why = match (value, hit) {
                    (None, _) => format!("{key} is missing"),
                    (Some(v), true) => format!("{key} {v:?} matches {:?}", pattern.as_str()),
                    (Some(v), false) => {
                        format!("{key} {v:?} does not match {:?}", pattern.as_str())
                    }
                };
                Check::new(hit != *negate, why)
            }
            Self::AttrPresent { key, negate } => {
                let present = row.attributes.get(key).is_some();
                let why = if present {
                    format!("has {key}")
                } else {
                    format!("has no {key}")
                };
                Check::new(present != *negate, why)
            }
            Self::AttrBound {
                key,
                bound,
                at_least,
            } => {
                let word = if *at_least { "at least" } else { "at most" };
                match row.attributes.get(key) {
                    None => Check::new(false, format!("{key} is missing (wanted {word} {bound})")),
                    Some(v) => match v.trim().parse::<Decimal>() {
                        Ok(n) => {
                            let pass = if *at_least { n >= *bound } else { n <= *bound };
                            let verdict = if pass { "" } else { "not " };
                            Check::new(pass, format!("{key} {v} is {verdict}{word} {bound}"))
                        }
                        Err(_) => Check::new(false, format!("{key} {v:?} is not a number")),
                    },
                }
            }
            Self::SeenWithin { key, days, negate } => {
                let (within, why) = match row.attributes.get(key) {
                    None => (false, format!("has no {key}")),
                    Some(v) => match leading_date(v) {
                        None => (false, format!("{key} {v:?} is not a date (YYYY-MM-DD)")),
                        Some(date) => {
                            let age = (row.as_of - date).num_days();
                            if age <= *days {
                                // No date in the text: equal decisions share
                                // one trace whatever the day.
                                (
                                    true,
                                    format!("{key} is within {days} days of {}", row.as_of),
                                )
                            } else {
                                (
                                    false,
                                    format!(
                                        "{key} {date} is {age} days before {} (more than {days})",
                                        row.as_of
                                    ),
                                )
                            }
                        }
                    },
                };
                Check::new(within != *negate, why)
            }
            Self::TermIn { values, negate } => {
                let hit = row
                    .term
                    .is_some_and(|t| values.iter().any(|x| x.as_ref() == t));
                let why = match row.term {
                    None => "the billing term is missing".to_owned(),
                    Some(t) if hit => format!("the billing term is {t}"),
                    Some(t) => format!("the billing term is {t}, not {}", list(values)),
                };
                Check::new(hit != *negate, why)
            }
            Self::CompanyIn { ids, negate } => match row.company {
                None => Check::new(*negate, "the account is not mapped to a company".to_owned()),
                Some(company) => {
                    let hit = company_matches(company, ids);
                    let why = if hit {
                        format!("company is {}", company.id)
                    } else {
                        format!("company is {}, not {}", company.id, list(ids))
                    };
                    Check::new(hit != *negate, why)
                }
            },
            Self::Predicate(_) | Self::CompanyPredicate(_) => return None,
        })
    }

    /// The attribute this condition reads, if any.
    pub fn attribute(&self) -> Option<&Arc<str>> {
        match self {
            Self::AttrIn { key, .. }
            | Self::AttrLike { key, .. }
            | Self::AttrPresent { key, .. }
            | Self::AttrBound { key, .. }
            | Self::SeenWithin { key, .. } => Some(key),
            Self::TermIn { .. }
            | Self::CompanyIn { .. }
            | Self::Predicate(_)
            | Self::CompanyPredicate(_) => None,
        }
    }
}

/// A condition on the contract and company of a service.
#[derive(Debug, Clone)]
pub enum PolicyCondition {
    /// The company's id or identifier is (`negate`: is not) one of these.
    CompanyIn {
        /// Ids or identifiers.
        ids: Vec<Arc<str>>,
        /// `except_company`.
        negate: bool,
    },
    /// The contract id is one of these.
    ContractIn(Vec<Arc<str>>),
    /// The contract type is one of these (exact).
    ContractTypeIn(Vec<Arc<str>>),
    /// The contract name matches.
    ContractNameLike(Glob),
    /// The contract bills in advance or in arrears.
    Timing(BillingTiming),
    /// The contract's billing cycle.
    Cycle(BillingCycle),
    /// A Rhai predicate over the contract.
    ContractPredicate(ClosureId),
}

impl PolicyCondition {
    /// Evaluates a native condition; `None` for the closure.
    pub fn check(&self, company: &Company, contract: &Contract) -> Option<Check> {
        Some(match self {
            Self::CompanyIn { ids, negate } => {
                let hit = company_matches(company, ids);
                let why = if hit {
                    format!("company is {}", company.id)
                } else {
                    format!("company is {}, not {}", company.id, list(ids))
                };
                Check::new(hit != *negate, why)
            }
            Self::ContractIn(ids) => {
                let hit = ids.iter().any(|id| id.as_ref() == contract.id.as_str());
                Check::new(hit, format!("contract is {}", contract.id))
            }
            Self::ContractTypeIn(types) => {
                let hit = types.iter().any(|t| t.as_ref() == contract.contract_type);
                let why = if hit {
                    format!("contract type is {}", contract.contract_type)
                } else {
                    format!(
                        "contract type is {}, not {}",
                        contract.contract_type,
                        list(types)
                    )
                };
                Check::new(hit, why)
            }
            Self::ContractNameLike(pattern) => {
                let hit = pattern.matches(&contract.name);
                let verdict = if hit { "matches" } else { "does not match" };
                Check::new(
                    hit,
                    format!(
                        "contract name {:?} {verdict} {:?}",
                        contract.name,
                        pattern.as_str()
                    ),
                )
            }
            Self::Timing(timing) => {
                let hit = contract.timing == *timing;
                Check::new(
                    hit,
                    format!("contract bills in {}", timing_name(contract.timing)),
                )
            }
            Self::Cycle(cycle) => {
                let hit = contract.billing_cycle == *cycle;
                Check::new(
                    hit,
                    format!("contract cycle is {}", cycle_name(&contract.billing_cycle)),
                )
            }
            Self::ContractPredicate(_) => return None,
        })
    }
}

/// `advance` or `arrears`.
pub fn timing_name(timing: BillingTiming) -> &'static str {
    match timing {
        BillingTiming::Advance => "advance",
        BillingTiming::Arrears => "arrears",
    }
}

/// A billing cycle's name as scripts write it.
pub fn cycle_name(cycle: &BillingCycle) -> String {
    match cycle {
        BillingCycle::None => "none".to_owned(),
        BillingCycle::OneTime => "one_time".to_owned(),
        BillingCycle::Monthly => "monthly".to_owned(),
        BillingCycle::Quarterly => "quarterly".to_owned(),
        BillingCycle::SemiAnnual => "semi_annual".to_owned(),
        BillingCycle::Annual => "annual".to_owned(),
        BillingCycle::Other(name) => name.clone(),
    }
}

/// Fields a service declaration sets; unset fields keep what earlier
/// declarations (or the PSA default) gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySettings {
    /// Effective-date policy.
    pub effective: Option<EffectiveDatePolicy>,
    /// Proration on (`Some(true)`: follow the contract) or off.
    pub prorate: Option<bool>,
    /// Usage measure.
    pub measure: Option<UsageMeasure>,
    /// Tolerance in units.
    pub tolerance_units: Option<Decimal>,
    /// Tolerance in percent.
    pub tolerance_percent: Option<Decimal>,
    /// Minimum (`Some(None)` removes one set earlier).
    pub min_quantity: Option<Option<Decimal>>,
    /// Maximum (`Some(None)` removes one set earlier).
    pub max_quantity: Option<Option<Decimal>>,
    /// Rounding.
    pub rounding: Option<Rounding>,
    /// Auto-approval guard (`Some(None)`: never).
    pub auto_approve: Option<Option<Decimal>>,
}

impl PolicySettings {
    /// Writes the fields this declaration sets onto `policy`.
    pub fn apply(&self, policy: &mut ServicePolicy) {
        if let Some(effective) = self.effective {
            policy.effective_date = effective;
        }
        if let Some(prorate) = self.prorate {
            policy.prorate = Some(prorate);
        }
        if let Some(measure) = self.measure {
            policy.measure = measure;
        }
        if let Some(units) = self.tolerance_units {
            policy.tolerance.units = units;
        }
        if let Some(percent) = self.tolerance_percent {
            policy.tolerance.percent = percent;
        }
        if let Some(min) = self.min_quantity {
            policy.min_quantity = min;
        }
        if let Some(max) = self.max_quantity {
            policy.max_quantity = max;
        }
        if let Some(rounding) = self.rounding {
            policy.rounding = rounding;
        }
        if let Some(guard) = self.auto_approve {
            policy.auto_approve.max_increase = guard;
        }
    }

    /// The fields set, for traces: "effective first day of next month,
    /// tolerance 1 unit".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = self.effective {
            parts.push(format!("effective {e}"));
        }
        if let Some(p) = self.prorate {
            parts.push(if p { "prorate" } else { "no proration" }.to_owned());
        }
        if let Some(m) = self.measure {
            parts.push(format!("measure {}", measure_name(m)));
        }
        if let Some(u) = self.tolerance_units {
            parts.push(format!("tolerance {u} unit(s)"));
        }
        if let Some(p) = self.tolerance_percent {
            parts.push(format!("tolerance {p}%"));
        }
        match self.min_quantity {
            Some(Some(m)) => parts.push(format!("minimum {m}")),
            Some(None) => parts.push("no minimum".to_owned()),
            None => {}
        }
        match self.max_quantity {
            Some(Some(m)) => parts.push(format!("maximum {m}")),
            Some(None) => parts.push("no maximum".to_owned()),
            None => {}
        }
        if let Some(r) = self.rounding {
            parts.push(format!("round {}", rounding_name(r)));
        }
        match self.auto_approve {
            Some(Some(n)) => parts.push(format!("auto-approve increases up to {n}")),
            Some(None) => parts.push("never auto-approve".to_owned()),
            None => {}
        }
        if parts.is_empty() {
            "sets nothing".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A measure's name as scripts write it.
pub fn measure_name(measure: UsageMeasure) -> &'static str {
    match measure {
        UsageMeasure::MonthEndSnapshot => "month_end",
        UsageMeasure::Peak => "peak",
        UsageMeasure::DailyAverage => "daily_average",
    }
}

/// A rounding's name as scripts write it.
pub fn rounding_name(rounding: Rounding) -> &'static str {
    match rounding {
        Rounding::None => "none",
        Rounding::Up => "up",
        Rounding::Down => "down",
        Rounding::Nearest => "nearest",
    }
}

/// One `service(...)` declaration.
#[derive(Debug, Clone)]
pub struct ServiceDecl {
    /// Its name in traces.
    pub name: Arc<str>,
    /// Where it is declared.
    pub position: SourcePosition,
    /// Products it applies to; empty with no pattern = every service.
    pub products: Vec<Arc<str>>,
    /// A product-id pattern.
    pub product_like: Option<Glob>,
    /// Conditions, all of which must hold.
    pub conditions: Vec<PolicyCondition>,
    /// What it sets.
    pub settings: PolicySettings,
}

impl ServiceDecl {
    /// Whether it can apply to `product`.
    pub fn applies_to_product(&self, product: &str) -> bool {
        (self.products.is_empty() || self.products.iter().any(|p| p.as_ref() == product))
            && self
                .product_like
                .as_ref()
                .is_none_or(|g| g.matches(product))
    }
}

/// Everything a script declared.
#[derive(Debug, Clone, Default)]
pub struct RuleTable {
    /// Mapping rules, in declaration order.
    pub rules: Vec<Rule>,
    /// Service declarations, in declaration order.
    pub services: Vec<ServiceDecl>,
    /// Closures the rules and declarations call.
    pub closures: Vec<Closure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        Attributes::new(pairs.iter().map(|(k, v)| (Arc::from(*k), Arc::from(*v))))
    }

    fn view<'a>(attributes: &'a Attributes, company: Option<&'a Company>) -> RowView<'a> {
        RowView {
            vendor: "ninjaone",
            sku: "WINDOWS_WORKSTATION",
            sku_name: "Windows Workstation",
            term: Some("Monthly"),
            attributes,
            company,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap(),
        }
    }

    #[test]
    fn native_conditions_say_why() {
        let a = attrs(&[
            ("approval-status", "PENDING"),
            ("last-contact", "2025-02-01"),
            ("recent", "2025-03-30T08:00:00Z"),
            ("consumed-units", "12"),
            ("groups", "Lab;_NotBillable_"),
        ]);
        let key = |k: &str| Arc::<str>::from(k);
        let company = Company {
            id: "C7".into(),
            name: "Contoso".into(),
            identifier: Some("CONTOSO".into()),
            domains: vec![],
            status: trueup_core::model::CompanyStatus::Active,
            account_links: vec![],
        };
        // (condition, passes, why)
        let table: Vec<(Condition, bool, &str)> = vec![
            (
                Condition::AttrIn {
                    key: key("approval-status"),
                    values: vec![key("APPROVED")],
                    negate: false,
                },
                false,
                "approval-status is PENDING, not APPROVED",
            ),
            (
                Condition::AttrIn {
                    key: key("approval-status"),
                    values: vec![key("APPROVED")],
                    negate: true,
                },
                true,
                "approval-status is PENDING, not APPROVED",
            ),
            (
                Condition::AttrIn {
                    key: key("missing"),
                    values: vec![key("x")],
                    negate: true,
                },
                true,
                "missing is missing",
            ),
            (
                Condition::AttrLike {
                    key: key("groups"),
                    pattern: Glob::new("*_notbillable_*"),
                    negate: false,
                },
                true,
                "groups \"Lab;_NotBillable_\" matches \"*_notbillable_*\"",
            ),
            (
                Condition::AttrPresent {
                    key: key("groups"),
                    negate: true,
                },
                false,
                "has groups",
            ),
            (
                Condition::AttrBound {
                    key: key("consumed-units"),
                    bound: Decimal::from(10),
                    at_least: true,
                },
                true,
                "consumed-units 12 is at least 10",
            ),
            (
                Condition::AttrBound {
                    key: key("consumed-units"),
                    bound: Decimal::from(10),
                    at_least: false,
                },
                false,
                "consumed-units 12 is not at most 10",
            ),
            (
                Condition::AttrBound {
                    key: key("groups"),
                    bound: Decimal::ONE,
                    at_least: true,
                },
                false,
                "groups \"Lab;_NotBillable_\" is not a number",
            ),
            // 31 March − 1 February = 58 days.
            (
                Condition::SeenWithin {
                    key: key("last-contact"),
                    days: 30,
                    negate: false,
                },
                false,
                "last-contact 2025-02-01 is 58 days before 2025-03-31 (more than 30)",
            ),
            (
                Condition::SeenWithin {
                    key: key("recent"),
                    days: 30,
                    negate: false,
                },
                true,
                "recent is within 30 days of 2025-03-31",
            ),
            (
                Condition::SeenWithin {
                    key: key("nothing"),
                    days: 30,
                    negate: true,
                },
                true,
                "has no nothing",
            ),
            (
                Condition::TermIn {
                    values: vec![key("Annual")],
                    negate: false,
                },
                false,
                "the billing term is Monthly, not Annual",
            ),
            (
                Condition::CompanyIn {
                    ids: vec![key("CONTOSO")],
                    negate: false,
                },
                true,
                "company is C7",
            ),
        ];
        for (condition, pass, why) in table {
            let check = condition.check(&view(&a, Some(&company))).unwrap();
            assert_eq!(
                (check.pass, check.why.as_str()),
                (pass, why),
                "{condition:?}"
            );
        }
        let no_company = Condition::CompanyIn {
            ids: vec![key("C7")],
            negate: false,
        };
        assert!(!no_company.check(&view(&a, None)).unwrap().pass);
        assert!(Condition::Predicate(0).check(&view(&a, None)).is_none());
    }

    #[test]
    fn later_settings_override_earlier_ones_field_by_field() {
        let mut policy = ServicePolicy::default();
        let base = PolicySettings {
            tolerance_units: Some(Decimal::ONE),
            min_quantity: Some(Some(Decimal::from(5))),
            ..PolicySettings::default()
        };
        let company = PolicySettings {
            min_quantity: Some(None),
            auto_approve: Some(Some(Decimal::from(3))),
            ..PolicySettings::default()
        };
        base.apply(&mut policy);
        company.apply(&mut policy);
        assert_eq!(policy.tolerance.units, Decimal::ONE);
        assert_eq!(policy.min_quantity, None);
        assert_eq!(policy.auto_approve.max_increase, Some(Decimal::from(3)));
        assert_eq!(
            company.describe(),
            "no minimum, auto-approve increases up to 3"
        );
    }
}
