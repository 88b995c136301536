//! Tolerant field parsing: what real services send is looser than their
//! documents. Field types vary by version and configuration (an id or an
//! enum as a number in one instance and a string in another), unset dates
//! come back as a sentinel (`1900-01-01T00:00:00`, SQL Server's zero date)
//! instead of null, and dates come as a date or a date-time.
//!
//! Use the `serde` helpers with `#[serde(default, deserialize_with = ...)]`:
//!
//! ```text
//! #[derive(Deserialize)]
//! struct Line {
//!     #[serde(deserialize_with = "tolerant::id")]
//!     id: i64,
//!     #[serde(default, deserialize_with = "tolerant::opt_id")]
//!     item_id: Option<i64>,
//!     #[serde(default, deserialize_with = "tolerant::opt_text")]
//!     period: Option<String>,        // 2 or "2" or "Monthly"
//!     #[serde(default)]
//!     startdate: Option<String>,     // read with tolerant::opt_date
//! }
//! ```
//!
//! Unknown fields are ignored by serde's default; keep it that way (no
//! `deny_unknown_fields` on records read from a service).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::values::date_from_iso;
use crate::{ConnectorError, Date};

/// Whether `date` stands for "no date": a year before 1902 (SQL Server's
/// zero date 1900-01-01, the OLE zero 1899-12-30, .NET's 0001-01-01,
/// SQL `datetime`'s minimum 1753-01-01) or the year 9999 ("never ends",
/// .NET's `DateTime.MaxValue`). No billing record of a living service
/// starts before 1902 or ends in 9999.
pub fn is_sentinel(date: &Date) -> bool {
    date.year < 1902 || date.year >= 9999
}

/// An optional date from a date or date-time string (`2025-01-31`,
/// `2025-01-31T00:00:00`, `2025-01-31T00:00:00Z`); `None` for a missing or
/// empty value and for a sentinel ([`is_sentinel`]).
///
/// # Errors
/// [`ConnectorError::Internal`] quoting text that is no date at all.
pub fn opt_date(text: Option<&str>) -> Result<Option<Date>, ConnectorError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Ok(Some(date_from_iso(text)?).filter(|d| !is_sentinel(d))),
    }
}

/// A whole number from a JSON number or a string holding one.
fn whole(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.to_string().parse::<f64>().ok().and_then(exact_whole)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `x` when it is a whole number that fits an `i64` (`2.0` is 2).
fn exact_whole(x: f64) -> Option<i64> {
    (x.fract() == 0.0 && x.abs() < 9.0e15).then_some(x as i64)
}

/// An id sent as a number (`42`) or a string (`"42"`).
///
/// # Errors
/// A serde error naming what was seen.
pub fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    whole(&value).ok_or_else(|| {
        serde::de::Error::custom(format!("expected an id (a whole number), found {value}"))
    })
}

/// An optional id: a number, a string holding one, or null / `""` / `0`
/// (services write 0 for "no record") as `None`.
///
/// # Errors
/// A serde error naming what was seen.
pub fn opt_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match &value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        other => whole(other).map(|n| (n != 0).then_some(n)).ok_or_else(|| {
            serde::de::Error::custom(format!("expected an id (a whole number), found {value}"))
        }),
    }
}

/// An optional enum or code sent as a number (`2`) or a string (`"2"`,
/// `"Monthly"`), kept as its text; null and `""` are `None`. Match the text
/// against both forms.
///
/// # Errors
/// A serde error for an array or object.
pub fn opt_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected a number or text, found {other}"
        ))),
    }
}

/// A flag sent as `true`/`false`, `1`/`0` or their strings; null is
/// `false`.
///
/// # Errors
/// A serde error naming what was seen.
pub fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match &value {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        Value::Number(_) => whole(&value).map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| serde::de::Error::custom(format!("expected true or false, found {value}")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Record {
        #[serde(deserialize_with = "id")]
        id: i64,
        #[serde(default, deserialize_with = "opt_id")]
        other: Option<i64>,
        #[serde(default, deserialize_with = "opt_text")]
        kind: Option<String>,
        #[serde(default, deserialize_with = "flag")]
        on: bool,
    }

    fn read(value: serde_json::Value) -> Result<Record, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn ids_and_enums_read_as_number_or_string_and_unknown_fields_are_ignored() {
        let a = read(json!({"id": 7, "other": "12", "kind": 2, "on": 1, "new": {"x": 1}}))
            .expect("numbers");
        let b = read(json!({"id": "7", "other": 12, "kind": "2", "on": "true"})).expect("strings");
        for r in [a, b] {
            assert_eq!(
                (r.id, r.other, r.kind.as_deref(), r.on),
                (7, Some(12), Some("2"), true)
            );
        }
        let empty = read(json!({"id": 1, "other": 0, "kind": null})).expect("absent");
        assert_eq!((empty.other, empty.kind, empty.on), (None, None, false));
        let wrong = read(json!({"id": "seven"})).err().expect("not an id");
        assert!(wrong.to_string().contains("\"seven\""), "{wrong}");
    }

    #[test]
    fn sentinel_dates_are_absent_and_date_times_are_dates() {
        for sentinel in [
            "1900-01-01T00:00:00",
            "1899-12-30T00:00:00",
            "0001-01-01T00:00:00",
            "1753-01-01",
            "9999-12-31T23:59:59",
            "",
        ] {
            assert!(
                opt_date(Some(sentinel)).expect(sentinel).is_none(),
                "{sentinel}"
            );
        }
        let day = Date {
            year: 2025,
            month: 3,
            day: 1,
        };
        for text in ["2025-03-01", "2025-03-01T00:00:00", "2025-03-01T10:00:00Z"] {
            let read = opt_date(Some(text)).expect(text).expect("a date");
            assert_eq!(
                (read.year, read.month, read.day),
                (day.year, day.month, day.day)
            );
        }
        assert!(opt_date(Some("soon")).is_err());
    }
}
