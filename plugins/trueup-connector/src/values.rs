//! Exact decimals and calendar dates in the WIT encoding.
//!
//! WIT has no decimal type: `trueup:connector` encodes one as
//! `{digits: s64, scale: u8}` meaning `digits × 10^-scale`. Dates are
//! `{year, month, day}` business dates without a time zone.

use rust_decimal::Decimal;

use crate::{ConnectorError, Date, WitDecimal};

/// The largest scale the host accepts.
pub const MAX_SCALE: u8 = 18;

/// Encodes a [`Decimal`] for WIT, trimming trailing zeros.
///
/// # Errors
/// [`ConnectorError::Internal`] when the value needs more than 18 digits
/// of mantissa (no money or quantity does).
pub fn decimal(value: Decimal) -> Result<WitDecimal, ConnectorError> {
    let normalized = value.normalize();
    let mantissa = normalized.mantissa();
    let scale = normalized.scale();
    match (i64::try_from(mantissa), u8::try_from(scale)) {
        (Ok(digits), Ok(scale)) if scale <= MAX_SCALE => Ok(WitDecimal { digits, scale }),
        _ => Err(ConnectorError::Internal(format!(
            "the number {value} does not fit the WIT decimal encoding (at most 18 significant digits)"
        ))),
    }
}

/// Decodes a WIT decimal.
pub fn to_decimal(value: &WitDecimal) -> Decimal {
    Decimal::new(value.digits, u32::from(value.scale.min(MAX_SCALE)))
}

/// Parses a decimal from text such as `"26.40"` or `"-3"`.
///
/// # Errors
/// [`ConnectorError::Internal`] quoting the text.
pub fn decimal_from_str(text: &str) -> Result<WitDecimal, ConnectorError> {
    let parsed: Decimal = text
        .trim()
        .parse()
        .map_err(|e| ConnectorError::Internal(format!("{text:?} is not a decimal number: {e}")))?;
    decimal(parsed)
}

/// A whole number as a WIT decimal.
pub fn integer(value: i64) -> WitDecimal {
    WitDecimal {
        digits: value,
        scale: 0,
    }
}

/// Days in `month` of `year` (proleptic Gregorian).
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// A checked date.
///
/// # Errors
/// [`ConnectorError::Internal`] for an impossible date.
pub fn date(year: i32, month: u8, day: u8) -> Result<Date, ConnectorError> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(ConnectorError::Internal(format!(
            "{year:04}-{month:02}-{day:02} is not a calendar date"
        )));
    }
    Ok(Date { year, month, day })
}

/// The calendar date of an ISO-8601 date or date-time, as the source wrote
/// it (no time-zone conversion): `2025-01-31`, `2025-01-31T00:00:00Z`,
/// `2025-01-31T23:00:00-05:00` all give 2025-01-31.
///
/// # Errors
/// [`ConnectorError::Internal`] quoting the text.
pub fn date_from_iso(text: &str) -> Result<Date, ConnectorError> {
    let bad = || ConnectorError::Internal(format!("{text:?} is not an ISO-8601 date"));
    let day_part = text.trim().get(..10).ok_or_else(bad)?;
    let mut fields = day_part.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad());
    };
    let year = y.parse::<i32>().map_err(|_| bad())?;
    let month = m.parse::<u8>().map_err(|_| bad())?;
    let day = d.parse::<u8>().map_err(|_| bad())?;
    date(year, month, day).map_err(|_| bad())
}

/// An optional ISO date: empty strings and JSON nulls are `None`.
///
/// # Errors
/// As [`date_from_iso`].
pub fn opt_date(text: Option<&str>) -> Result<Option<Date>, ConnectorError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => date_from_iso(t).map(Some),
    }
}

/// `YYYY-MM-DD`.
pub fn date_to_iso(date: &Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(date: &Date) -> i64 {
    let y = i64::from(date.year) - i64::from(date.month <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(date.month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(date.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    Date { year, month, day }
}

/// The UTC calendar date of a Unix time in milliseconds.
pub fn date_from_unix_ms(ms: i64) -> Date {
    civil_from_days(ms.div_euclid(86_400_000))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix ms.
pub fn http_date_to_unix_ms(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace().skip(1);
    let day: u8 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i32 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let days = days_from_civil(&date(year, month, day).ok()?);
    Some(((days * 86_400) + h * 3600 + m * 60 + s) * 1000)
}

/// Attributes from `(key, value)` pairs.
pub fn attrs<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip_exactly() {
        for text in ["26.40", "-3", "0", "0.000001", "123456789012.345678"] {
            let value: Decimal = text.parse().expect("test literal");
            let wit = decimal(value).expect("fits");
            assert_eq!(to_decimal(&wit), value, "{text}");
        }
        let wit = decimal_from_str("26.40").expect("fits");
        assert_eq!((wit.digits, wit.scale), (264, 1));
    }

    #[test]
    fn decimals_too_wide_are_refused() {
        let value: Decimal = "12345678901234567890.5".parse().expect("test literal");
        assert!(decimal(value).is_err());
    }

    #[test]
    fn iso_dates_keep_the_written_day() {
        let d = date_from_iso("2024-02-29T23:30:00-05:00").expect("valid");
        assert_eq!((d.year, d.month, d.day), (2024, 2, 29));
        assert!(date_from_iso("2025-02-29").is_err());
        assert!(date_from_iso("2025-13-01").is_err());
        assert!(date_from_iso("yesterday").is_err());
        assert!(opt_date(Some("")).expect("empty is none").is_none());
    }

    #[test]
    fn civil_day_arithmetic_round_trips() {
        for (y, m, d, days) in [(1970, 1, 1, 0), (2000, 3, 1, 11_017), (2024, 2, 29, 19_782)] {
            let date = Date {
                year: y,
                month: m,
                day: d,
            };
            assert_eq!(days_from_civil(&date), days);
            let back = civil_from_days(days);
            assert_eq!((back.year, back.month, back.day), (y, m, d));
        }
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            http_date_to_unix_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(http_date_to_unix_ms("soon"), None);
    }
}
