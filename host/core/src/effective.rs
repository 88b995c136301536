//! Effective dates: the day an approved quantity change starts to bill.
//!
//! A policy ([`EffectiveDatePolicy`]) proposes a date from the as-of date
//! and the contract's [`BillingSchedule`]; the PSA's constraints
//! ([`ChangeConstraints`], built from a [`PsaProfile`] and the contract) then
//! move it out of posted periods. What a PSA can and cannot do is data in the
//! profile, never a branch on the PSA's name.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cycles::{
    BillingSchedule, CycleAnchor, CycleError, add_months_clamped, first_of_next_month,
};
use crate::model::Contract;

/// How the effective date of a change is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum EffectiveDatePolicy {
    /// The first day of the month after the as-of date: reconcile at month
    /// end, invoice on the 1st (the default).
    #[default]
    FirstOfNextMonth,
    /// The start of the next billing period (billing in advance on
    /// quarterly or contract-anchored cycles).
    NextPeriodStart,
    /// The start of the current billing period: in arrears, the period
    /// being reconciled is invoiced after it ends, so the change applies to
    /// all of it.
    Arrears,
    /// The next day after the as-of date whose day of month is `day`
    /// (mid-month billing); in months shorter than `day`, their last day.
    AnchorDay {
        /// Day of month, 1 to 31.
        day: u32,
    },
    /// The as-of date itself.
    Immediate,
    /// A date chosen by a person or a rule.
    Explicit {
        /// The date.
        date: NaiveDate,
    },
}

impl std::fmt::Display for EffectiveDatePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FirstOfNextMonth => f.write_str("first day of next month"),
            Self::NextPeriodStart => f.write_str("start of the next billing period"),
            Self::Arrears => f.write_str("start of the current billing period (arrears)"),
            Self::AnchorDay { day } => write!(f, "next day {day} of a month"),
            Self::Immediate => f.write_str("immediately (as-of date)"),
            Self::Explicit { date } => write!(f, "explicit date {date}"),
        }
    }
}

/// How the PSA applies a written change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangePolicy {
    /// The change carries its effective date (an Autotask adjustment, a
    /// ConnectWise addition cut-over).
    Dated,
    /// The change applies as soon as it is written.
    Immediate,
}

/// What one PSA product can do, as data: the reconcile and the write-back
/// read these flags instead of asking which PSA they talk to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaProfile {
    /// Display name ("ConnectWise", "Autotask", ...).
    pub name: String,
    /// Quantities must be whole numbers (Autotask units).
    #[serde(default)]
    pub integer_units: bool,
    /// Period layout for contracts that do not say.
    #[serde(default)]
    pub cycle_anchor: CycleAnchor,
    /// The policy used when a service's rules do not choose one.
    #[serde(default)]
    pub default_effective: EffectiveDatePolicy,
    /// Whether written changes can carry a future effective date.
    #[serde(default = "default_true")]
    pub dated_changes: bool,
}

fn default_true() -> bool {
    true
}

impl PsaProfile {
    /// A PSA with no special constraints: decimal quantities, calendar
    /// periods, first-of-next-month changes.
    pub fn generic(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            integer_units: false,
            cycle_anchor: CycleAnchor::Calendar,
            default_effective: EffectiveDatePolicy::FirstOfNextMonth,
            dated_changes: true,
        }
    }

    /// ConnectWise Manage: decimal addition quantities, dated additions.
    pub fn connectwise() -> Self {
        Self::generic("ConnectWise")
    }

    /// Autotask: integer units, dated adjustments, posted periods locked.
    pub fn autotask() -> Self {
        Self {
            integer_units: true,
            ..Self::generic("Autotask")
        }
    }

    /// HaloPSA: decimal quantities on recurring invoice lines.
    pub fn halopsa() -> Self {
        Self::generic("HaloPSA")
    }
}

/// The limits a change to one contract must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangeConstraints {
    /// Quantities must be whole numbers.
    pub integer_units: bool,
    /// Days up to and including this one are posted and cannot change.
    pub posted_through: Option<NaiveDate>,
    /// Mid-period changes are prorated.
    pub prorate: bool,
    /// The contract's last covered day, if it ends.
    pub contract_end: Option<NaiveDate>,
    /// Whether the PSA accepts a future effective date.
    pub dated_changes: bool,
}

impl ChangeConstraints {
    /// The constraints of `contract` in a PSA described by `profile`.
    pub fn new(profile: &PsaProfile, contract: &Contract) -> Self {
        Self {
            integer_units: profile.integer_units,
            posted_through: contract.posted_through,
            prorate: contract.prorate,
            contract_end: contract.end_date,
            dated_changes: profile.dated_changes,
        }
    }

    /// The first day a change may take effect on: the day after the posted
    /// periods, if any.
    pub fn first_unposted_day(&self) -> Option<NaiveDate> {
        self.posted_through.and_then(|p| p.succ_opt())
    }

    /// Whether `date` falls in a posted period.
    pub fn is_posted(&self, date: NaiveDate) -> bool {
        self.posted_through.is_some_and(|p| date <= p)
    }
}

/// A proposed effective date and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveDate {
    /// The day the change starts to bill.
    pub date: NaiveDate,
    /// The policy that proposed it.
    pub policy: EffectiveDatePolicy,
    /// One sentence: how the date was reached.
    pub reason: String,
    /// What the policy alone would have chosen, when a constraint moved it.
    pub shifted_from: Option<NaiveDate>,
    /// Other facts a reviewer should see (contract ending, no proration).
    pub notes: Vec<String>,
}

/// Why no effective date could be proposed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EffectiveDateError {
    /// The billing periods around the date could not be computed.
    #[error(transparent)]
    Cycle(#[from] CycleError),
    /// An anchor day outside 1..=31.
    #[error("anchor day {0} is not a day of month (1 to 31)")]
    InvalidAnchorDay(u32),
    /// Date arithmetic left the supported range.
    #[error("no effective date can be computed after {0}")]
    OutOfRange(NaiveDate),
}

/// The date `policy` proposes for a change decided on `as_of`, moved out of
/// posted periods. A date inside a posted period moves to the first unposted
/// day, and [`EffectiveDate::shifted_from`] and the reason say so.
pub fn propose_effective_date(
    policy: &EffectiveDatePolicy,
    as_of: NaiveDate,
    schedule: &BillingSchedule,
    constraints: &ChangeConstraints,
) -> Result<EffectiveDate, EffectiveDateError> {
    let out_of_range = || EffectiveDateError::OutOfRange(as_of);
    let (raw, how) = match *policy {
        EffectiveDatePolicy::FirstOfNextMonth => (
            first_of_next_month(as_of).ok_or_else(out_of_range)?,
            format!("first day of the month after {as_of}"),
        ),
        EffectiveDatePolicy::NextPeriodStart => {
            let period = schedule.period_containing(as_of)?;
            (
                period.next_start().ok_or_else(out_of_range)?,
                format!("start of the billing period after {period}"),
            )
        }
        EffectiveDatePolicy::Arrears => {
            let period = schedule.period_containing(as_of)?;
            (
                period.start,
                format!("start of the current billing period {period}, invoiced in arrears"),
            )
        }
        EffectiveDatePolicy::AnchorDay { day } => (
            next_anchor_day(as_of, day)?,
            format!("next day {day} of a month after {as_of}"),
        ),
        EffectiveDatePolicy::Immediate => {
            (as_of, format!("immediately, on the as-of date {as_of}"))
        }
        EffectiveDatePolicy::Explicit { date } => (date, format!("explicit date {date}")),
    };
    let mut notes = Vec::new();
    let (date, shifted_from, reason) = match constraints.first_unposted_day() {
        Some(first_open) if raw < first_open => (
            first_open,
            Some(raw),
            format!(
                "{how} would be {raw}, inside a posted period (posted through {}); moved to the first unposted day {first_open}",
                constraints.posted_through.unwrap_or(raw)
            ),
        ),
        _ => (raw, None, format!("{how}: {raw}")),
    };
    if let Some(end) = constraints.contract_end
        && date > end
    {
        notes.push(format!(
            "the contract ends on {end}, before the effective date {date}; the change bills only if the contract is renewed"
        ));
    }
    if !constraints.prorate && !schedule.is_period_start(date)? {
        let next = schedule.next_period_start(date)?;
        notes.push(format!(
            "the contract does not prorate: a change on {date} bills in full from the next period on {next}"
        ));
    }
    if !constraints.dated_changes && date != as_of {
        notes.push(format!(
            "this PSA applies changes when written; the write-back must wait until {date}"
        ));
    }
    Ok(EffectiveDate {
        date,
        policy: *policy,
        reason,
        shifted_from,
        notes,
    })
}

/// The first day after `as_of` whose day of month is `day`, or the last day
/// of a month shorter than `day`.
fn next_anchor_day(as_of: NaiveDate, day: u32) -> Result<NaiveDate, EffectiveDateError> {
    if !(1..=31).contains(&day) {
        return Err(EffectiveDateError::InvalidAnchorDay(day));
    }
    let out_of_range = || EffectiveDateError::OutOfRange(as_of);
    // Day 31 of a month, clamped back by chrono in shorter months, is the
    // anchor clamped to month end; start from the as-of month and step one
    // month at a time (at most twice).
    let month_start = as_of.with_day(1).ok_or_else(out_of_range)?;
    for offset in 0..=2 {
        let month = add_months_clamped(month_start, offset).ok_or_else(out_of_range)?;
        let last = first_of_next_month(month)
            .and_then(|n| n.pred_opt())
            .ok_or_else(out_of_range)?;
        let candidate = month
            .with_day(day.min(last.day()))
            .ok_or_else(out_of_range)?;
        if candidate > as_of {
            return Ok(candidate);
        }
    }
    Err(out_of_range())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::d;

    fn open(prorate: bool) -> ChangeConstraints {
        ChangeConstraints {
            integer_units: false,
            posted_through: None,
            prorate,
            contract_end: None,
            dated_changes: true,
        }
    }

    #[test]
    fn each_policy_proposes_its_date() {
        let monthly = BillingSchedule::calendar(1).unwrap();
        let quarterly = BillingSchedule::calendar(3).unwrap();
        let from_15th = BillingSchedule::new(1, d(2024, 1, 15)).unwrap();
        use EffectiveDatePolicy as P;
        // (policy, schedule, as-of, expected)
        let table = [
            (P::FirstOfNextMonth, &monthly, d(2024, 1, 28), d(2024, 2, 1)),
            (
                P::FirstOfNextMonth,
                &monthly,
                d(2024, 12, 31),
                d(2025, 1, 1),
            ),
            // Quarterly: next period after Q1 2024 is 1 Apr.
            (
                P::NextPeriodStart,
                &quarterly,
                d(2024, 2, 20),
                d(2024, 4, 1),
            ),
            // Contract-anchored on the 15th: 15 Feb..14 Mar contains 1 Mar.
            (
                P::NextPeriodStart,
                &from_15th,
                d(2024, 3, 1),
                d(2024, 3, 15),
            ),
            (P::Arrears, &quarterly, d(2024, 3, 28), d(2024, 1, 1)),
            (P::Arrears, &from_15th, d(2024, 3, 1), d(2024, 2, 15)),
            (
                P::AnchorDay { day: 15 },
                &monthly,
                d(2024, 3, 10),
                d(2024, 3, 15),
            ),
            (
                P::AnchorDay { day: 15 },
                &monthly,
                d(2024, 3, 15),
                d(2024, 4, 15),
            ),
            // Day 31 in February 2024 is its last day, 29 Feb.
            (
                P::AnchorDay { day: 31 },
                &monthly,
                d(2024, 2, 5),
                d(2024, 2, 29),
            ),
            (
                P::AnchorDay { day: 31 },
                &monthly,
                d(2024, 1, 31),
                d(2024, 2, 29),
            ),
            (P::Immediate, &monthly, d(2024, 3, 18), d(2024, 3, 18)),
            (
                P::Explicit {
                    date: d(2024, 6, 3),
                },
                &monthly,
                d(2024, 3, 18),
                d(2024, 6, 3),
            ),
        ];
        for (policy, schedule, as_of, expected) in table {
            let proposed = propose_effective_date(&policy, as_of, schedule, &open(true)).unwrap();
            assert_eq!(proposed.date, expected, "{policy} on {as_of}");
            assert_eq!(proposed.shifted_from, None);
            assert!(
                proposed.reason.contains(&expected.to_string()),
                "{}",
                proposed.reason
            );
        }
    }

    #[test]
    fn a_date_in_a_posted_period_moves_to_the_first_unposted_day() {
        let monthly = BillingSchedule::calendar(1).unwrap();
        let posted = |through| ChangeConstraints {
            posted_through: Some(through),
            ..open(true)
        };
        use EffectiveDatePolicy as P;
        // (policy, as-of, posted through, expected date, shifted from)
        let table = [
            // Arrears on 28 Mar proposes 1 Mar; March is posted → 1 Apr.
            (
                P::Arrears,
                d(2024, 3, 28),
                d(2024, 3, 31),
                d(2024, 4, 1),
                Some(d(2024, 3, 1)),
            ),
            (
                P::Immediate,
                d(2024, 3, 28),
                d(2024, 3, 31),
                d(2024, 4, 1),
                Some(d(2024, 3, 28)),
            ),
            // Posted through Feb does not touch a 1 Apr date.
            (
                P::FirstOfNextMonth,
                d(2024, 3, 28),
                d(2024, 2, 29),
                d(2024, 4, 1),
                None,
            ),
            // Posted through 1 Apr itself (inclusive) → 2 Apr.
            (
                P::FirstOfNextMonth,
                d(2024, 3, 28),
                d(2024, 4, 1),
                d(2024, 4, 2),
                Some(d(2024, 4, 1)),
            ),
        ];
        for (policy, as_of, through, expected, shifted) in table {
            let proposed =
                propose_effective_date(&policy, as_of, &monthly, &posted(through)).unwrap();
            assert_eq!(
                (proposed.date, proposed.shifted_from),
                (expected, shifted),
                "{policy}"
            );
            if shifted.is_some() {
                assert!(proposed.reason.contains("posted"), "{}", proposed.reason);
            }
        }
    }

    #[test]
    fn notes_flag_no_proration_mid_period_and_contract_end() {
        let from_15th = BillingSchedule::new(1, d(2024, 1, 15)).unwrap();
        let constraints = ChangeConstraints {
            contract_end: Some(d(2024, 3, 31)),
            ..open(false)
        };
        let proposed = propose_effective_date(
            &EffectiveDatePolicy::FirstOfNextMonth,
            d(2024, 3, 20),
            &from_15th,
            &constraints,
        )
        .unwrap();
        assert_eq!(proposed.date, d(2024, 4, 1));
        // 1 Apr is inside 15 Mar..14 Apr; no proration → next period 15 Apr.
        assert!(
            proposed.notes.iter().any(|n| n.contains("2024-04-15")),
            "{:?}",
            proposed.notes
        );
        assert!(
            proposed
                .notes
                .iter()
                .any(|n| n.contains("ends on 2024-03-31"))
        );
    }

    #[test]
    fn bad_anchor_days_are_rejected() {
        let monthly = BillingSchedule::calendar(1).unwrap();
        for day in [0, 32] {
            let err = propose_effective_date(
                &EffectiveDatePolicy::AnchorDay { day },
                d(2024, 1, 1),
                &monthly,
                &open(true),
            )
            .unwrap_err();
            assert_eq!(err, EffectiveDateError::InvalidAnchorDay(day));
        }
    }

    #[test]
    fn profiles_are_data() {
        assert!(PsaProfile::autotask().integer_units);
        assert!(!PsaProfile::connectwise().integer_units);
        let json = r#"{"name":"Custom PSA","integer_units":true}"#;
        let profile: PsaProfile = serde_json::from_str(json).unwrap();
        assert_eq!(
            profile.default_effective,
            EffectiveDatePolicy::FirstOfNextMonth
        );
        assert!(profile.dated_changes && profile.integer_units);
    }
}
