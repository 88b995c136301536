//! When scheduled syncs run: a small spec language, in the MSP's time zone.
//!
//! ```text
//! daily at 06:00
//! weekly on mon at 06:00            (days: mon tue wed thu fri sat sun)
//! weekly on mon,thu at 18:30
//! monthly on day 28 at 18:00        (a day past the month's end runs on its last day)
//! monthly on last day at 17:00
//! ```
//!
//! Times are wall-clock times in the MSP's zone ([`chrono_tz::Tz`]). On the
//! night clocks go forward, a time that does not exist runs at the first
//! instant after the gap; when clocks go back, an ambiguous time runs once,
//! at its first occurrence.

use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

/// How far ahead [`Schedule::next_after`] looks (covers "monthly on day 31"
/// and any weekday set).
const SEARCH_DAYS: i64 = 400;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every day at a time.
    Daily {
        /// Local time.
        at: NaiveTime,
    },
    /// On some weekdays at a time.
    Weekly {
        /// The days, in week order.
        days: Vec<Weekday>,
        /// Local time.
        at: NaiveTime,
    },
    /// On a day of the month at a time.
    Monthly {
        /// 1..=31, or `None` for the last day.
        day: Option<u32>,
        /// Local time.
        at: NaiveTime,
    },
}

/// A spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{spec:?} is not a schedule: {problem} (examples: \"daily at 06:00\", \"weekly on mon at 06:00\", \"monthly on day 28 at 18:00\", \"monthly on last day at 17:00\")"
)]
pub struct ScheduleError {
    /// The spec as written.
    pub spec: String,
    /// What is wrong.
    pub problem: String,
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

fn short(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

impl Schedule {
    /// Parses a spec (case-insensitive).
    ///
    /// # Errors
    /// [`ScheduleError`] with examples.
    pub fn parse(spec: &str) -> Result<Self, ScheduleError> {
        let fail = |problem: &str| ScheduleError {
            spec: spec.to_owned(),
            problem: problem.to_owned(),
        };
        let lower = spec.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let (head, time) = match words.as_slice() {
            [head @ .., "at", time] => (head, *time),
            _ => return Err(fail("it must end with \"at HH:MM\"")),
        };
        let at = NaiveTime::parse_from_str(time, "%H:%M")
            .map_err(|_| fail("the time must be HH:MM on a 24-hour clock"))?;
        match head {
            ["daily"] => Ok(Schedule::Daily { at }),
            ["weekly", "on", days] => {
                let mut parsed: Vec<Weekday> = days
                    .split(',')
                    .map(|d| {
                        weekday(d.trim())
                            .ok_or_else(|| fail(&format!("{d:?} is not a day (mon … sun)")))
                    })
                    .collect::<Result<_, _>>()?;
                parsed.sort_by_key(Weekday::num_days_from_monday);
                parsed.dedup();
                Ok(Schedule::Weekly { days: parsed, at })
            }
            ["monthly", "on", "last", "day"] => Ok(Schedule::Monthly { day: None, at }),
            ["monthly", "on", "day", day] => {
                let day: u32 = day
                    .parse()
                    .ok()
                    .filter(|d| (1..=31).contains(d))
                    .ok_or_else(|| fail("the day of the month must be 1..31"))?;
                Ok(Schedule::Monthly { day: Some(day), at })
            }
            _ => Err(fail("start with daily, weekly on DAYS or monthly on day N")),
        }
    }

    fn runs_on(&self, date: NaiveDate) -> bool {
        match self {
            Schedule::Daily { .. } => true,
            Schedule::Weekly { days, .. } => days.contains(&date.weekday()),
            Schedule::Monthly { day, .. } => {
                let last = last_day_of_month(date);
                match day {
                    None => date.day() == last,
                    Some(d) => date.day() == (*d).min(last),
                }
            }
        }
    }

    fn time(&self) -> NaiveTime {
        match self {
            Schedule::Daily { at } | Schedule::Weekly { at, .. } | Schedule::Monthly { at, .. } => {
                *at
            }
        }
    }

    /// The first run strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local_start = after.with_timezone(&zone).date_naive();
        (0..SEARCH_DAYS)
            .map(|offset| local_start + Duration::days(offset))
            .filter(|date| self.runs_on(*date))
            .filter_map(|date| local_instant(zone, date, self.time()))
            .find(|instant| *instant > after)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.time().format("%H:%M");
        match self {
            Schedule::Daily { .. } => write!(f, "daily at {at}"),
            Schedule::Weekly { days, .. } => {
                let days: Vec<&str> = days.iter().copied().map(short).collect();
                write!(f, "weekly on {} at {at}", days.join(","))
            }
            Schedule::Monthly { day: None, .. } => write!(f, "monthly on last day at {at}"),
            Schedule::Monthly { day: Some(d), .. } => write!(f, "monthly on day {d} at {at}"),
        }
    }
}

fn last_day_of_month(date: NaiveDate) -> u32 {
    let (y, m) = (date.year(), date.month());
    let first_next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    first_next
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// The UTC instant of a local date and time, resolving DST gaps forward and
/// overlaps to the first occurrence.
fn local_instant(zone: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let naive = date.and_time(time);
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => (1..=180)
            .map(|minutes| naive + Duration::minutes(minutes))
            .find_map(|later| zone.from_local_datetime(&later).earliest())
            .map(|t| t.with_timezone(&Utc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn next_runs_table() {
        let chicago: Tz = "America/Chicago".parse().expect("zone");
        let cases = [
            // (spec, after, zone, expected next) — hand-computed.
            (
                "daily at 06:00",
                "2026-11-25T10:00:00Z",
                chrono_tz::UTC,
                "2026-11-26T06:00:00Z",
            ),
            (
                "daily at 06:00",
                "2026-11-25T05:59:00Z",
                chrono_tz::UTC,
                "2026-11-25T06:00:00Z",
            ),
            // 06:00 CST is 12:00 UTC.
            (
                "daily at 06:00",
                "2026-11-25T11:00:00Z",
                chicago,
                "2026-11-25T12:00:00Z",
            ),
            // 2026-11-25 is a Wednesday; next Monday is Nov 30.
            (
                "weekly on mon at 06:00",
                "2026-11-25T00:00:00Z",
                chrono_tz::UTC,
                "2026-11-30T06:00:00Z",
            ),
            (
                "weekly on mon,thu at 18:30",
                "2026-11-25T00:00:00Z",
                chrono_tz::UTC,
                "2026-11-26T18:30:00Z",
            ),
            (
                "monthly on day 28 at 18:00",
                "2026-11-25T00:00:00Z",
                chrono_tz::UTC,
                "2026-11-28T18:00:00Z",
            ),
            (
                "monthly on day 28 at 18:00",
                "2026-11-28T18:00:00Z",
                chrono_tz::UTC,
                "2026-12-28T18:00:00Z",
            ),
            // Day 31 in a 30-day month runs on the 30th; in February on the 28th.
            (
                "monthly on day 31 at 09:00",
                "2026-11-01T00:00:00Z",
                chrono_tz::UTC,
                "2026-11-30T09:00:00Z",
            ),
            (
                "monthly on day 31 at 09:00",
                "2027-02-01T00:00:00Z",
                chrono_tz::UTC,
                "2027-02-28T09:00:00Z",
            ),
            (
                "monthly on last day at 17:00",
                "2028-02-01T00:00:00Z",
                chrono_tz::UTC,
                "2028-02-29T17:00:00Z",
            ),
            // DST starts 2027-03-14 in Chicago: 02:30 does not exist, runs at 03:00 CDT = 08:00 UTC.
            (
                "daily at 02:30",
                "2027-03-14T00:00:00Z",
                chicago,
                "2027-03-14T08:00:00Z",
            ),
            // DST ends 2026-11-01: 01:30 happens twice; the first is CDT = 06:30 UTC.
            (
                "daily at 01:30",
                "2026-11-01T00:00:00Z",
                chicago,
                "2026-11-01T06:30:00Z",
            ),
        ];
        for (spec, after, zone, expected) in cases {
            let schedule = Schedule::parse(spec).expect(spec);
            assert_eq!(
                schedule.next_after(utc(after), zone),
                Some(utc(expected)),
                "{spec} after {after} in {zone}"
            );
        }
    }

    #[test]
    fn specs_round_trip_through_display() {
        for spec in [
            "daily at 06:00",
            "weekly on mon,thu at 18:30",
            "monthly on day 28 at 18:00",
            "monthly on last day at 17:00",
        ] {
            assert_eq!(Schedule::parse(spec).expect(spec).to_string(), spec);
        }
        assert_eq!(
            Schedule::parse("Weekly on THU,mon,thu at 07:05")
                .expect("mixed case")
                .to_string(),
            "weekly on mon,thu at 07:05"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            ("daily", "it must end with \"at HH:MM\""),
            (
                "daily at 25:00",
                "the time must be HH:MM on a 24-hour clock",
            ),
            (
                "weekly on funday at 06:00",
                "\"funday\" is not a day (mon … sun)",
            ),
            (
                "monthly on day 32 at 06:00",
                "the day of the month must be 1..31",
            ),
            (
                "hourly at 06:00",
                "start with daily, weekly on DAYS or monthly on day N",
            ),
        ];
        for (spec, problem) in cases {
            let error = Schedule::parse(spec).expect_err(spec);
            assert_eq!(error.problem, problem, "{spec}");
        }
    }
}
