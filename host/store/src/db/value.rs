//! Values bound to statements, and how each backend stores them (the
//! table in [`crate::db`]): canonical decimal text, fixed-width instants,
//! dates, JSON and enum names.

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StoreError};

/// The format of instants in SQLite `TEXT` columns.
const SQLITE_INSTANT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// An instant as the store keeps it: UTC, truncated to microseconds.
pub(crate) fn instant(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// A value bound to a statement. `None` binds a typed `NULL`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Instant(Option<DateTime<Utc>>),
    Date(Option<NaiveDate>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(Some(v.clone()))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::Text(v.map(str::to_owned))
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(Some(v))
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(Some(v))
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Instant(Some(instant(v)))
    }
}
impl From<Option<DateTime<Utc>>> for Value {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Value::Instant(v.map(instant))
    }
}
impl From<NaiveDate> for Value {
    fn from(v: NaiveDate) -> Self {
        Value::Date(Some(v))
    }
}
impl From<Option<NaiveDate>> for Value {
    fn from(v: Option<NaiveDate>) -> Self {
        Value::Date(v)
    }
}
impl From<Decimal> for Value {
    fn from(v: Decimal) -> Self {
        Value::Text(Some(decimal_text(v)))
    }
}
impl From<Option<Decimal>> for Value {
    fn from(v: Option<Decimal>) -> Self {
        Value::Text(v.map(decimal_text))
    }
}

/// The canonical text of a decimal, as stored: exactly what `Decimal`'s
/// `Display` writes (sign, digits, and as many fraction digits as its
/// scale, so `12.50` stays `"12.50"`). Written by hand because it is on the
/// path of every amount of a bulk write and `Display` is several times
/// slower.
pub(crate) fn decimal_text(value: Decimal) -> String {
    let mut out = Vec::with_capacity(24);
    push_decimal(&mut out, value);
    // push_decimal writes ASCII only.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`decimal_text`] of `value` to `out` without allocating.
pub(crate) fn push_decimal(out: &mut Vec<u8>, value: Decimal) {
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut m = value.mantissa().unsigned_abs();
    // u128 division is slow; most amounts fit in u64.
    if let Ok(mut small) = u64::try_from(m) {
        loop {
            at -= 1;
            digits[at] = b'0' + (small % 10) as u8;
            small /= 10;
            if small == 0 {
                break;
            }
        }
    } else {
        loop {
            at -= 1;
            digits[at] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
    }
    let digits = &digits[at..];
    let scale = value.scale() as usize;
    if value.is_sign_negative() {
        out.push(b'-');
    }
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (scale - digits.len()), b'0');
        out.extend_from_slice(digits);
    }
}

/// JSON text of `value`, for a JSON column.
pub(crate) fn json_text<T: Serialize + ?Sized>(
    operation: &'static str,
    value: &T,
) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        StoreError::invalid(
            operation,
            format!("the value cannot be written as JSON: {e}"),
        )
    })
}

/// An instant as SQLite's fixed-width `TEXT`.
pub(super) fn sqlite_instant(at: DateTime<Utc>) -> String {
    at.format(SQLITE_INSTANT_FORMAT).to_string()
}

/// Appends `date` as `YYYY-MM-DD` (what chrono's `%Y-%m-%d` writes) without
/// the formatting machinery, which costs more than the rest of a date
/// column's encoding.
pub(super) fn push_date(out: &mut Vec<u8>, date: NaiveDate) {
    use chrono::Datelike as _;
    let year = date.year();
    if !(0..=9999).contains(&year) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", date.format("%Y-%m-%d"));
        return;
    }
    let digits = |out: &mut Vec<u8>, value: u32, width: u32| {
        for place in (0..width).rev() {
            out.push(b'0' + (value / 10u32.pow(place) % 10) as u8);
        }
    };
    digits(out, year as u32, 4);
    out.push(b'-');
    digits(out, date.month(), 2);
    out.push(b'-');
    digits(out, date.day(), 2);
}

/// The serde name of a unit-like enum value (`"snake_case"`), for `TEXT`
/// columns holding enums.
pub(crate) fn enum_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The enum value named `text` (see [`enum_text`]).
pub(crate) fn parse_enum<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

/// Declares an id newtype over `i64`.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<$name> for $crate::db::Value {
            fn from(id: $name) -> Self {
                $crate::db::Value::Int(Some(id.0))
            }
        }

        impl From<Option<$name>> for $crate::db::Value {
            fn from(id: Option<$name>) -> Self {
                $crate::db::Value::Int(id.map(|id| id.0))
            }
        }
    };
}
pub(crate) use id_type;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_is_display() {
        use std::str::FromStr;
        let samples = [
            "0",
            "0.00",
            "-0.5",
            "12.50",
            "0.1",
            "0.3",
            "-123456789.123456789",
            "100",
            "0.000000001",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "7.9228162514264337593543950335",
            "18446744073709551616.5",
            "1e-28",
        ];
        for text in samples {
            let d = Decimal::from_str(text)
                .or_else(|_| Decimal::from_scientific(text))
                .unwrap();
            assert_eq!(decimal_text(d), d.to_string(), "{text}");
            let back = Decimal::from_str(&decimal_text(d)).unwrap();
            assert_eq!((back, back.scale()), (d, d.scale()), "{text}");
        }
        let sum = Decimal::from_str("0.1").unwrap() + Decimal::from_str("0.2").unwrap();
        assert_eq!(decimal_text(sum), "0.3");
    }

    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        for (y, m, d) in [
            (2025, 3, 1),
            (1, 1, 1),
            (999, 12, 31),
            (9999, 2, 28),
            (-1, 6, 15),
            (12345, 1, 1),
        ] {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let mut out = Vec::new();
            push_date(&mut out, date);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                date.format("%Y-%m-%d").to_string()
            );
        }
    }

    #[test]
    fn sqlite_instants_are_fixed_width_so_text_order_is_time_order() {
        let a = DateTime::parse_from_rfc3339("2025-03-28T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::microseconds(5);
        assert_eq!(sqlite_instant(a), "2025-03-28T18:00:00.000000Z");
        assert!(sqlite_instant(a) < sqlite_instant(b));
    }
}
