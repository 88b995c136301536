//! Usage that arrives without a connector: pushed by a vendor through the
//! push API ([`push`]: `POST /api/v1/usage`, docs/push-api.md) or imported
//! from CSV files with a saved profile ([`csv`], docs/csv-import.md).
//!
//! Each source belongs to a vendor integration of its own
//! ([`UsageSource::Push`] or [`UsageSource::Csv`]): the usage of a vendor
//! never comes from two kinds of source, so a push can never double a
//! synced count. Stored usage asks the app's
//! [`Debouncer`](crate::app::debounce::Debouncer) for a reconcile; a burst
//! of pushes makes one reconcile, not one per request. The server
//! (`crate::server`) mounts the push API and runs the debouncer.

pub mod csv;
pub mod push;

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use trueup_core::model::{UsageSource, VendorId, VendorIntegration};

use crate::app::{App, AppError};

/// Longest vendor integration id or CSV profile name.
pub const MAX_NAME_LEN: usize = 64;

/// Longest account id, SKU id, SKU name or unit accepted from a vendor.
pub const MAX_VALUE_LEN: usize = 256;

/// Checks a vendor integration id or profile name: 1 to [`MAX_NAME_LEN`]
/// characters, ASCII letters, digits, `-`, `_` or `.`, starting with a
/// letter or digit (ids appear in rules, URLs and file names).
///
/// # Errors
/// What is wrong, naming `what` (e.g. "vendor integration id").
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the {what} {name:?} must have 1 to {MAX_NAME_LEN} characters"
        ));
    }
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !starts_well || !allowed {
        return Err(format!(
            "the {what} {name:?} may use only ASCII letters, digits, '-', '_' and '.', and must start with a letter or digit"
        ));
    }
    Ok(())
}

/// Reads a plain decimal: an optional sign, digits, at most one `.`
/// (no exponent, no grouping, no spaces). Exact: never through a float.
///
/// # Errors
/// Why `text` is not one, for a message.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut dots = 0;
    let mut any = false;
    for c in digits.chars() {
        match c {
            '0'..='9' => any = true,
            '.' => dots += 1,
            _ => {
                return Err(format!(
                    "{text:?} is not a decimal number (digits with an optional '.' and sign)"
                ));
            }
        }
    }
    if !any || dots > 1 {
        return Err(format!(
            "{text:?} is not a decimal number (digits with an optional '.' and sign)"
        ));
    }
    let value = Decimal::from_str(text).map_err(|_| {
        format!("{text:?} has too many digits (a decimal holds at most 28 significant digits)")
    })?;
    // The documented limits (magnitude, exact places), one rule for every door.
    trueup_core::model::amount::parse(text).map_err(|e| e.to_string())?;
    Ok(value)
}

/// The instant a date-only observation is stamped with: 00:00 UTC of
/// `day`, so its UTC calendar date (what usage is counted by) is `day`.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
}

/// Makes sure vendor integration `id` exists and takes its usage from a
/// source of the same kind as `source` (created with `name`, or `id` as
/// its name, when missing). An existing integration keeps its source;
/// `name`, when given, renames it.
///
/// # Errors
/// [`AppError::Invalid`] for a bad id, or when `id` is a connector's
/// vendor integration (in the store or in `[[vendors]]`) or a source of the
/// other kind: one vendor's usage never comes from two kinds of source.
pub(crate) async fn ensure_vendor(
    app: &App,
    id: &str,
    name: Option<&str>,
    source: UsageSource,
) -> Result<VendorIntegration, AppError> {
    check_name("vendor integration id", id).map_err(AppError::Invalid)?;
    let kind = source_kind(&source);
    if let Some(configured) = app.config().vendors.iter().find(|v| v.id == id) {
        return Err(AppError::Invalid(format!(
            "vendor integration {id:?} gets its usage from plugin {} ([[vendors]] in trueup.toml); \
             {kind} usage needs a vendor integration of its own: pick another id",
            configured.plugin
        )));
    }
    let existing = app
        .store()
        .vendor_integrations()
        .await?
        .into_iter()
        .find(|v| v.id.as_str() == id);
    let integration = match existing {
        Some(existing) if source_kind(&existing.source) == kind => VendorIntegration {
            name: name.map_or(existing.name.clone(), str::to_owned),
            ..existing
        },
        Some(existing) => {
            return Err(AppError::Invalid(format!(
                "vendor integration {id:?} gets its usage from {}; {kind} usage needs a vendor integration of its own: pick another id",
                describe_source(&existing.source)
            )));
        }
        None => VendorIntegration {
            id: VendorId::from(id),
            name: name.unwrap_or(id).to_owned(),
            source,
        },
    };
    app.store()
        .upsert_vendor_integration(&integration, app.now())
        .await?;
    Ok(integration)
}

fn source_kind(source: &UsageSource) -> &'static str {
    match source {
        UsageSource::Plugin(_) => "connector",
        UsageSource::Push => "pushed",
        UsageSource::Csv(_) => "CSV",
    }
}

fn describe_source(source: &UsageSource) -> String {
    match source {
        UsageSource::Plugin(plugin) => format!("plugin {plugin}"),
        UsageSource::Push => "the push API".to_owned(),
        UsageSource::Csv(profile) => format!("CSV imports (profile {profile})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_identifiers() {
        for good in ["acme", "acme-backup", "m365.v2", "a_b", "9lives"] {
            assert_eq!(check_name("id", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-acme",
            ".x",
            "acme backup",
            "acmé",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(check_name("id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals_are_read_exactly_or_refused() {
        let good = [
            ("12", "12"),
            ("12.50", "12.50"),
            ("-0.5", "-0.5"),
            ("+3", "3"),
            (".5", "0.5"),
            ("7.", "7"),
            (
                "0.1000000000000000000000000001",
                "0.1000000000000000000000000001",
            ),
        ];
        for (text, expected) in good {
            let value = parse_decimal(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                value,
                Decimal::from_str(expected).expect("decimal"),
                "{text}"
            );
            assert_eq!(value.to_string(), expected, "{text} keeps its scale");
        }
        for bad in [
            "", "-", ".", "1.2.3", "1e5", "1_000", "1,5", " 1", "12 ", "abc", "0x10", "NaN", "--1",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_decimal("123456789012345678901234567890")
                .expect_err("too long")
                .contains("too many digits")
        );
    }

    #[test]
    fn a_day_starts_at_utc_midnight() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
        assert_eq!(day_start(day).date_naive(), day);
        assert_eq!(day_start(day).to_rfc3339(), "2026-11-25T00:00:00+00:00");
    }
}
