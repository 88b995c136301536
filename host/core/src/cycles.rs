//! Billing periods: where a contract's monthly, quarterly, semi-annual or
//! annual periods start and end, for any date.
//!
//! Every [`Period`] is a closed range of business dates: `start` and `end`
//! are both billed days. The day after `end` is the next period's `start`.
//!
//! Month-end anchors are handled by one deliberate rule: period `k` starts
//! on the anchor's day of month `k × months` after the anchor, or on the last
//! day of that month when the month is shorter. The start is always computed
//! from the original anchor, never from the previous period, so a contract
//! started on 31 January has periods starting 31 Jan, 28 Feb (29 in a leap
//! year), 31 Mar, 30 Apr, 31 May: short months do not drag later periods
//! back to the 28th.

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{BillingCycle, Contract};
// The anchor is part of a contract, so the type lives with the model; re-exported
// here, where the periods it aligns are computed.
pub use crate::model::CycleAnchor;

/// Why a billing period could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CycleError {
    /// The billing cycle has no periods (none, one-time, or a cycle Trueup
    /// does not model).
    #[error(
        "billing cycle {0} does not repeat in whole months; only monthly, quarterly, semi-annual and annual contracts have periods"
    )]
    NotRecurring(String),
    /// A period length outside `1..=MAX_CYCLE_MONTHS`.
    #[error("a billing period of {0} months is not supported (1 to {MAX_CYCLE_MONTHS} months)")]
    InvalidLength(u32),
    /// The date arithmetic left chrono's supported range.
    #[error("the billing period around {0} is outside the supported date range")]
    OutOfRange(NaiveDate),
}

/// The longest period Trueup lays out, in months (ten years): far beyond any
/// real cycle, small enough that period arithmetic cannot overflow.
pub const MAX_CYCLE_MONTHS: u32 = 120;

/// The anchor used for [`CycleAnchor::Calendar`]. Any 1 January works because
/// every supported cycle length that divides twelve lines up with the year.
const CALENDAR_ANCHOR: (i32, u32, u32) = (2000, 1, 1);

/// A billing period: `start` and `end` are both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    /// First billed day (inclusive).
    pub start: NaiveDate,
    /// Last billed day (inclusive).
    pub end: NaiveDate,
}

impl Period {
    /// A period from `start` to `end`, both included; `None` when `end` is
    /// before `start`.
    pub fn new(start: NaiveDate, end: NaiveDate) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// Number of days, counting both ends (a calendar month of January has
    /// 31).
    pub fn days(&self) -> u32 {
        // `end >= start` by construction, so the difference is not negative;
        // the widest representable range still fits in u32.
        u32::try_from((self.end - self.start).num_days() + 1).unwrap_or(u32::MAX)
    }

    /// Whether `date` is one of the period's days.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.start <= date && date <= self.end
    }

    /// The day after the period: the next period's start.
    pub fn next_start(&self) -> Option<NaiveDate> {
        self.end.succ_opt()
    }

    /// Whether something active from `from` through `to` (both inclusive;
    /// `None` means unbounded on that side) shares at least one day with the
    /// period.
    pub fn overlaps(&self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> bool {
        from.is_none_or(|f| f <= self.end) && to.is_none_or(|t| t >= self.start)
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

/// `date` moved by `months` (negative goes back), keeping the day of month
/// or, when the target month is shorter, using its last day.
pub fn add_months_clamped(date: NaiveDate, months: i64) -> Option<NaiveDate> {
    let magnitude = u32::try_from(months.unsigned_abs()).ok()?;
    if months >= 0 {
        date.checked_add_months(Months::new(magnitude))
    } else {
        date.checked_sub_months(Months::new(magnitude))
    }
}

/// The first day of the month after `date`'s month.
pub fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    let (year, month) = if date.month() == 12 {
        (date.year().checked_add(1)?, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
}

/// The calendar month containing `date`, as a period.
pub fn calendar_month(date: NaiveDate) -> Option<Period> {
    let start = date.with_day(1)?;
    let end = first_of_next_month(date)?.pred_opt()?;
    Period::new(start, end)
}

/// How a contract's periods are laid out: a length in months and the start
/// of one period (the anchor), from which every other period follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingSchedule {
    months: u32,
    anchor_date: NaiveDate,
    anchor: CycleAnchor,
    note: Option<String>,
}

impl BillingSchedule {
    /// Periods of `months` months, one of which starts on `anchor_date`.
    pub fn new(months: u32, anchor_date: NaiveDate) -> Result<Self, CycleError> {
        if months == 0 || months > MAX_CYCLE_MONTHS {
            return Err(CycleError::InvalidLength(months));
        }
        Ok(Self {
            months,
            anchor_date,
            anchor: CycleAnchor::ContractStart,
            note: None,
        })
    }

    /// Calendar-aligned periods of `months` months (see
    /// [`CycleAnchor::Calendar`]).
    pub fn calendar(months: u32) -> Result<Self, CycleError> {
        let (y, m, d) = CALENDAR_ANCHOR;
        let anchor_date =
            NaiveDate::from_ymd_opt(y, m, d).ok_or(CycleError::InvalidLength(months))?;
        let mut schedule = Self::new(months, anchor_date)?;
        schedule.anchor = CycleAnchor::Calendar;
        Ok(schedule)
    }

    /// The schedule of `contract`: its own anchor if it has one, otherwise
    /// `default_anchor`. A contract anchored on its start date but without a
    /// start date falls back to the calendar, and [`Self::note`] says so.
    ///
    /// Fails for cycles with no periods (none, one-time, other).
    pub fn for_contract(
        contract: &Contract,
        default_anchor: CycleAnchor,
    ) -> Result<Self, CycleError> {
        let months = months_of(&contract.billing_cycle)?;
        match (
            contract.cycle_anchor.unwrap_or(default_anchor),
            contract.start_date,
        ) {
            (CycleAnchor::Calendar, _) => Self::calendar(months),
            (CycleAnchor::ContractStart, Some(start)) => Self::new(months, start),
            (CycleAnchor::ContractStart, None) => {
                let mut schedule = Self::calendar(months)?;
                schedule.note = Some(format!(
                    "contract {} has no start date, so its periods follow the calendar",
                    contract.id
                ));
                Ok(schedule)
            }
        }
    }

    /// Months per period.
    pub fn months(&self) -> u32 {
        self.months
    }

    /// What the periods are aligned to (after any fallback).
    pub fn anchor(&self) -> CycleAnchor {
        self.anchor
    }

    /// The start of the period numbered 0.
    pub fn anchor_date(&self) -> NaiveDate {
        self.anchor_date
    }

    /// Why the schedule differs from what was asked for, if it does.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The start of period `index` (0 starts on the anchor; negative indices
    /// are before it).
    pub fn period_start(&self, index: i64) -> Option<NaiveDate> {
        add_months_clamped(self.anchor_date, index.checked_mul(i64::from(self.months))?)
    }

    /// The period containing `date`.
    pub fn period_containing(&self, date: NaiveDate) -> Result<Period, CycleError> {
        let out_of_range = || CycleError::OutOfRange(date);
        let months_apart = (i64::from(date.year()) - i64::from(self.anchor_date.year())) * 12
            + i64::from(date.month())
            - i64::from(self.anchor_date.month());
        let mut index = months_apart.div_euclid(i64::from(self.months));
        // The month arithmetic lands on the right period or the one after it
        // (when `date`'s day is before the anchor day); step back at most
        // once, and forward for safety.
        while self.period_start(index).ok_or_else(out_of_range)? > date {
            index -= 1;
        }
        while self.period_start(index + 1).ok_or_else(out_of_range)? <= date {
            index += 1;
        }
        let start = self.period_start(index).ok_or_else(out_of_range)?;
        let end = self
            .period_start(index + 1)
            .and_then(|next| next.pred_opt())
            .ok_or_else(out_of_range)?;
        Period::new(start, end).ok_or_else(out_of_range)
    }

    /// The first day of the period after the one containing `date`.
    pub fn next_period_start(&self, date: NaiveDate) -> Result<NaiveDate, CycleError> {
        self.period_containing(date)?
            .next_start()
            .ok_or(CycleError::OutOfRange(date))
    }

    /// Whether `date` is the first day of a period.
    pub fn is_period_start(&self, date: NaiveDate) -> Result<bool, CycleError> {
        Ok(self.period_containing(date)?.start == date)
    }
}

/// Months per period of `cycle`, or why it has none.
pub fn months_of(cycle: &BillingCycle) -> Result<u32, CycleError> {
    cycle.months().ok_or_else(|| {
        CycleError::NotRecurring(match cycle {
            BillingCycle::None => "none".to_owned(),
            BillingCycle::OneTime => "one-time".to_owned(),
            BillingCycle::Other(name) => format!("\"{name}\""),
            other => format!("{other:?}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::d;

    #[test]
    fn calendar_monthly_windows_follow_month_lengths() {
        let schedule = BillingSchedule::calendar(1).unwrap();
        // (date, start, end, days)
        let table = [
            (d(2025, 1, 15), d(2025, 1, 1), d(2025, 1, 31), 31),
            (d(2025, 4, 30), d(2025, 4, 1), d(2025, 4, 30), 30),
            (d(2025, 2, 1), d(2025, 2, 1), d(2025, 2, 28), 28),
            // 2024 is a leap year (divisible by 4, not a century).
            (d(2024, 2, 29), d(2024, 2, 1), d(2024, 2, 29), 29),
            // 2100 is not (century not divisible by 400); 2000 is.
            (d(2100, 2, 10), d(2100, 2, 1), d(2100, 2, 28), 28),
            (d(2000, 2, 10), d(2000, 2, 1), d(2000, 2, 29), 29),
            (d(2025, 12, 31), d(2025, 12, 1), d(2025, 12, 31), 31),
            // Before the calendar anchor year works the same way.
            (d(1999, 11, 5), d(1999, 11, 1), d(1999, 11, 30), 30),
        ];
        for (date, start, end, days) in table {
            let period = schedule.period_containing(date).unwrap();
            assert_eq!(
                (period.start, period.end, period.days()),
                (start, end, days),
                "{date}"
            );
            assert_eq!(
                schedule.next_period_start(date).unwrap(),
                end.succ_opt().unwrap()
            );
        }
    }

    #[test]
    fn month_end_anchor_clamps_to_short_months_without_drifting() {
        // Contract started 31 Jan 2024: starts are the 31st, or the month's
        // last day when shorter, always counted from the anchor.
        let schedule = BillingSchedule::new(1, d(2024, 1, 31)).unwrap();
        let table = [
            // 31 Jan..28 Feb: next start is 29 Feb (leap), so end = 28 Feb.
            (d(2024, 2, 10), d(2024, 1, 31), d(2024, 2, 28), 29),
            (d(2024, 2, 29), d(2024, 2, 29), d(2024, 3, 30), 31),
            // 31 Mar..29 Apr (30 Apr starts the next), 30 days.
            (d(2024, 4, 1), d(2024, 3, 31), d(2024, 4, 29), 30),
            (d(2024, 4, 30), d(2024, 4, 30), d(2024, 5, 30), 31),
            // Non-leap 2025: 31 Jan..27 Feb (28 Feb starts the next), 28 days.
            (d(2025, 2, 27), d(2025, 1, 31), d(2025, 2, 27), 28),
            (d(2025, 2, 28), d(2025, 2, 28), d(2025, 3, 30), 31),
            // Before the contract start the same layout extends backwards.
            (d(2023, 12, 31), d(2023, 12, 31), d(2024, 1, 30), 31),
            (d(2023, 12, 30), d(2023, 11, 30), d(2023, 12, 30), 31),
        ];
        for (date, start, end, days) in table {
            let period = schedule.period_containing(date).unwrap();
            assert_eq!(
                (period.start, period.end, period.days()),
                (start, end, days),
                "{date}"
            );
        }
    }

    #[test]
    fn quarterly_semi_annual_and_annual_windows() {
        let cal_q = BillingSchedule::calendar(3).unwrap();
        let cal_h = BillingSchedule::calendar(6).unwrap();
        let cal_y = BillingSchedule::calendar(12).unwrap();
        // Contract-start anchors: 15 Feb 2024 quarterly, 31 Aug 2023 annual.
        let start_q = BillingSchedule::new(3, d(2024, 2, 15)).unwrap();
        let start_y = BillingSchedule::new(12, d(2023, 8, 31)).unwrap();
        let start_y_leap = BillingSchedule::new(12, d(2024, 2, 29)).unwrap();
        let table = [
            // Q1 2024 = 31 + 29 + 31 = 91 days.
            (&cal_q, d(2024, 3, 31), d(2024, 1, 1), d(2024, 3, 31), 91),
            // Q2 = 30 + 31 + 30 = 91; Q3 = 31 + 31 + 30 = 92; Q4 = 92.
            (&cal_q, d(2024, 4, 1), d(2024, 4, 1), d(2024, 6, 30), 91),
            (&cal_q, d(2024, 8, 20), d(2024, 7, 1), d(2024, 9, 30), 92),
            (&cal_q, d(2025, 12, 31), d(2025, 10, 1), d(2025, 12, 31), 92),
            // Q1 2025 = 31 + 28 + 31 = 90.
            (&cal_q, d(2025, 2, 14), d(2025, 1, 1), d(2025, 3, 31), 90),
            // H2 2024 = 31+31+30+31+30+31 = 184.
            (&cal_h, d(2024, 9, 9), d(2024, 7, 1), d(2024, 12, 31), 184),
            (&cal_y, d(2024, 6, 1), d(2024, 1, 1), d(2024, 12, 31), 366),
            (&cal_y, d(2025, 6, 1), d(2025, 1, 1), d(2025, 12, 31), 365),
            // 15 Feb..14 May 2024: 15 (Feb 15..29) + 31 + 30 + 14 = 90.
            (&start_q, d(2024, 5, 14), d(2024, 2, 15), d(2024, 5, 14), 90),
            (&start_q, d(2024, 5, 15), d(2024, 5, 15), d(2024, 8, 14), 92),
            // 31 Aug 2024..30 Aug 2025: 365 days (no 29 Feb inside).
            (
                &start_y,
                d(2024, 12, 25),
                d(2024, 8, 31),
                d(2025, 8, 30),
                365,
            ),
            // Anchor on 29 Feb: 28 Feb in common years, 29 Feb again in 2028.
            (
                &start_y_leap,
                d(2025, 3, 1),
                d(2025, 2, 28),
                d(2026, 2, 27),
                365,
            ),
            (
                &start_y_leap,
                d(2028, 2, 29),
                d(2028, 2, 29),
                d(2029, 2, 27),
                365,
            ),
        ];
        for (schedule, date, start, end, days) in table {
            let period = schedule.period_containing(date).unwrap();
            assert_eq!(
                (period.start, period.end, period.days()),
                (start, end, days),
                "{date}"
            );
        }
    }

    fn contract(
        cycle: BillingCycle,
        start: Option<NaiveDate>,
        anchor: Option<CycleAnchor>,
    ) -> Contract {
        Contract {
            id: "C1".into(),
            company_id: "A".into(),
            name: "Managed".into(),
            contract_type: "Recurring".into(),
            status: crate::model::ContractStatus::Active,
            billing_cycle: cycle,
            start_date: start,
            end_date: None,
            timing: crate::model::BillingTiming::Advance,
            prorate: true,
            posted_through: None,
            cycle_anchor: anchor,
        }
    }

    #[test]
    fn contract_schedules_follow_their_anchor_or_the_default() {
        let start = Some(d(2024, 3, 10));
        // (contract, default anchor, date, expected period start)
        let table = [
            (
                contract(BillingCycle::Monthly, start, None),
                CycleAnchor::ContractStart,
                d(2024, 5, 1),
                d(2024, 4, 10),
            ),
            (
                contract(BillingCycle::Monthly, start, None),
                CycleAnchor::Calendar,
                d(2024, 5, 1),
                d(2024, 5, 1),
            ),
            // The contract's own anchor beats the profile default.
            (
                contract(BillingCycle::Quarterly, start, Some(CycleAnchor::Calendar)),
                CycleAnchor::ContractStart,
                d(2024, 5, 1),
                d(2024, 4, 1),
            ),
            (
                contract(
                    BillingCycle::SemiAnnual,
                    start,
                    Some(CycleAnchor::ContractStart),
                ),
                CycleAnchor::Calendar,
                d(2024, 9, 9),
                d(2024, 3, 10),
            ),
        ];
        for (contract, default, date, expected) in table {
            let schedule = BillingSchedule::for_contract(&contract, default).unwrap();
            assert_eq!(schedule.period_containing(date).unwrap().start, expected);
            assert_eq!(schedule.note(), None);
        }
    }

    #[test]
    fn a_contract_start_anchor_without_a_start_date_falls_back_visibly() {
        let c = contract(
            BillingCycle::Monthly,
            None,
            Some(CycleAnchor::ContractStart),
        );
        let schedule = BillingSchedule::for_contract(&c, CycleAnchor::Calendar).unwrap();
        assert_eq!(schedule.anchor(), CycleAnchor::Calendar);
        assert!(schedule.note().unwrap().contains("no start date"));
    }

    #[test]
    fn non_recurring_cycles_have_no_schedule() {
        for cycle in [
            BillingCycle::None,
            BillingCycle::OneTime,
            BillingCycle::Other("Bi-Weekly".into()),
        ] {
            let err =
                BillingSchedule::for_contract(&contract(cycle, None, None), CycleAnchor::Calendar)
                    .unwrap_err();
            assert!(matches!(err, CycleError::NotRecurring(_)), "{err}");
        }
        assert_eq!(
            BillingSchedule::new(0, d(2024, 1, 1)).unwrap_err(),
            CycleError::InvalidLength(0)
        );
    }

    #[test]
    fn overlap_uses_inclusive_ends() {
        let april = Period::new(d(2024, 4, 1), d(2024, 4, 30)).unwrap();
        let table = [
            (None, None, true),
            (Some(d(2024, 4, 30)), None, true),
            (Some(d(2024, 5, 1)), None, false),
            (None, Some(d(2024, 4, 1)), true),
            (None, Some(d(2024, 3, 31)), false),
            (Some(d(2024, 3, 1)), Some(d(2024, 5, 31)), true),
        ];
        for (from, to, expected) in table {
            assert_eq!(april.overlaps(from, to), expected, "{from:?}..{to:?}");
        }
        assert!(Period::new(d(2024, 4, 2), d(2024, 4, 1)).is_none());
    }

    #[test]
    fn month_helpers() {
        assert_eq!(first_of_next_month(d(2024, 12, 31)), Some(d(2025, 1, 1)));
        assert_eq!(first_of_next_month(d(2024, 1, 31)), Some(d(2024, 2, 1)));
        assert_eq!(add_months_clamped(d(2024, 3, 31), -1), Some(d(2024, 2, 29)));
        assert_eq!(calendar_month(d(2023, 2, 14)).map(|p| p.days()), Some(28));
    }
}
