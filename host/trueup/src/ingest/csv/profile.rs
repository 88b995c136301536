//! CSV import profiles: how a vendor's file is read (docs/csv-import.md).
//!
//! ```toml
//! vendor = "acme-backup"
//! vendor_name = "Acme Backup"
//! header = true
//! delimiter = ";"
//! decimal_separator = ","
//! date_format = "%d.%m.%Y"
//! sum_duplicates = true
//!
//! [columns]
//! account_id = "Customer ID"     # a header name, or a 1-based position
//! account_name = "Customer"
//! sku_id = "Plan"
//! quantity = "Seats"
//! observed_on = 7
//! ```

use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ingest::{MAX_VALUE_LEN, check_name};

/// A profile's definition, as saved (`csv_profiles.definition`) and as
/// written in a profile file (TOML or JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDefinition {
    /// The vendor integration the rows belong to (created, with
    /// `UsageSource::Csv`, when the profile is saved).
    pub vendor: String,
    /// The vendor integration's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_name: Option<String>,
    /// Whether the first line names the columns (default true).
    #[serde(default = "yes")]
    pub header: bool,
    /// The field delimiter: one ASCII character, or `"tab"` (default `,`).
    #[serde(default = "comma")]
    pub delimiter: String,
    /// `.` or `,` (default `.`).
    #[serde(default = "dot")]
    pub decimal_separator: String,
    /// A digit-grouping character to ignore in numbers (`,` `.` `'` `_`
    /// or a space); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thousands_separator: Option<String>,
    /// A chrono `strftime` date format (default `%Y-%m-%d`).
    #[serde(default = "iso_date")]
    pub date_format: String,
    /// Whether lines with the same account, SKU and date are added up
    /// (true) or refused as duplicates (false, the default).
    #[serde(default)]
    pub sum_duplicates: bool,
    /// The unit when the file has no unit column or the cell is empty
    /// (default `unit`).
    #[serde(default = "unit")]
    pub default_unit: String,
    /// Which column holds what.
    pub columns: ColumnMapping,
}

/// Which column holds each value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    /// The vendor's account (customer) id. Required.
    pub account_id: Column,
    /// The account's name (lets matching map the account by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<Column>,
    /// The SKU id. Required.
    pub sku_id: Column,
    /// The SKU's display name (default: the SKU id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku_name: Option<Column>,
    /// Units. Required.
    pub quantity: Column,
    /// The unit of measure (default: `default_unit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Column>,
    /// The vendor's cost per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_cost: Option<Column>,
    /// The day counted (default: the day of the import, in the MSP's time
    /// zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_on: Option<Column>,
}

/// A column: its 1-based position, or its name in the header row
/// (compared without surrounding spaces, ignoring case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    /// 1-based.
    Position(u32),
    /// A header name.
    Name(String),
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Position(n) => write!(f, "column {n}"),
            Column::Name(name) => write!(f, "column {name:?}"),
        }
    }
}

fn yes() -> bool {
    true
}
fn comma() -> String {
    ",".into()
}
fn dot() -> String {
    ".".into()
}
fn iso_date() -> String {
    "%Y-%m-%d".into()
}
fn unit() -> String {
    "unit".into()
}

/// A validated profile's parsing options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub delimiter: u8,
    pub decimal: char,
    pub thousands: Option<char>,
    pub date_format: String,
    pub header: bool,
    pub sum: bool,
    pub default_unit: String,
}

impl ProfileDefinition {
    /// Reads a profile file: TOML (`.toml`) or JSON (`.json`).
    ///
    /// # Errors
    /// The file cannot be read, has another extension, or does not parse
    /// (the message names the line or path); the profile is invalid.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let definition = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml(&text),
            Some("json") => Self::from_json(&text),
            _ => Err("a profile file ends in .toml or .json".to_owned()),
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
        definition.check()?;
        Ok(definition)
    }

    /// Parses TOML.
    ///
    /// # Errors
    /// Where and why it does not parse.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Parses JSON.
    ///
    /// # Errors
    /// Where (JSON path) and why it does not parse.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            format!("at {path}: {}", e.inner())
        })
    }

    /// Reads a saved definition back.
    ///
    /// # Errors
    /// The stored JSON is not a valid profile.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        let definition: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            format!("at {path}: {}", e.inner())
        })?;
        definition.check()?;
        Ok(definition)
    }

    /// Checks everything that can be checked without a file.
    ///
    /// # Errors
    /// What is wrong and how to fix it.
    pub fn check(&self) -> Result<(), String> {
        self.options().map(|_| ())
    }

    pub(crate) fn columns(&self) -> [(&'static str, Option<&Column>); 8] {
        let c = &self.columns;
        [
            ("account_id", Some(&c.account_id)),
            ("account_name", c.account_name.as_ref()),
            ("sku_id", Some(&c.sku_id)),
            ("sku_name", c.sku_name.as_ref()),
            ("quantity", Some(&c.quantity)),
            ("unit", c.unit.as_ref()),
            ("unit_cost", c.unit_cost.as_ref()),
            ("observed_on", c.observed_on.as_ref()),
        ]
    }

    pub(crate) fn options(&self) -> Result<Options, String> {
        check_name("vendor integration id", &self.vendor)?;
        let delimiter = match self.delimiter.as_str() {
            "tab" | "\t" | "\\t" => b'\t',
            d if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
            d => {
                return Err(format!(
                    "delimiter {d:?} must be one ASCII character (or \"tab\")"
                ));
            }
        };
        if matches!(delimiter, b'"' | b'\n' | b'\r') || delimiter.is_ascii_alphanumeric() {
            return Err(format!(
                "delimiter {:?} cannot separate fields; use , ; | or tab",
                self.delimiter
            ));
        }
        let decimal = match self.decimal_separator.as_str() {
            "." => '.',
            "," => ',',
            other => {
                return Err(format!(
                    "decimal_separator {other:?} must be \".\" or \",\""
                ));
            }
        };
        let thousands = match self.thousands_separator.as_deref() {
            None => None,
            Some(s @ ("," | "." | "'" | "_" | " ")) => s.chars().next(),
            Some(other) => {
                return Err(format!(
                    "thousands_separator {other:?} must be one of , . ' _ or a space"
                ));
            }
        };
        if thousands == Some(decimal) {
            return Err(format!(
                "thousands_separator and decimal_separator are both {decimal:?}"
            ));
        }
        if char::from(delimiter) == decimal || Some(char::from(delimiter)) == thousands {
            return Err(format!(
                "the delimiter {:?} is also a separator in numbers; files with decimal commas use \"; \" as delimiter",
                char::from(delimiter)
            ));
        }
        check_date_format(&self.date_format)?;
        let default_unit = self.default_unit.trim();
        if default_unit.is_empty() || default_unit.len() > MAX_VALUE_LEN {
            return Err(format!("default_unit must have 1 to {MAX_VALUE_LEN} bytes"));
        }
        for (field, column) in self.columns() {
            match column {
                Some(Column::Position(0)) => {
                    return Err(format!("columns.{field}: positions start at 1"));
                }
                Some(Column::Name(name)) if !self.header => {
                    return Err(format!(
                        "columns.{field} = {name:?} names a column, but the profile says the file has no header row (header = false): use its 1-based position"
                    ));
                }
                Some(Column::Name(name)) if name.trim().is_empty() => {
                    return Err(format!("columns.{field} is an empty name"));
                }
                _ => {}
            }
        }
        Ok(Options {
            delimiter,
            decimal,
            thousands,
            date_format: self.date_format.clone(),
            header: self.header,
            sum: self.sum_duplicates,
            default_unit: default_unit.to_owned(),
        })
    }
}

/// A date format must read back the date it writes (so it has a year,
/// month and day, and nothing that is not a date).
fn check_date_format(format: &str) -> Result<(), String> {
    use std::fmt::Write as _;
    let sample = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap_or_default();
    let mut text = String::new();
    if write!(text, "{}", sample.format(format)).is_err() {
        return Err(format!(
            "date_format {format:?} is not a valid chrono format (e.g. \"%Y-%m-%d\", \"%d/%m/%Y\")"
        ));
    }
    match NaiveDate::parse_from_str(&text, format) {
        Ok(back) if back == sample => Ok(()),
        _ => Err(format!(
            "date_format {format:?} does not describe a whole date (it writes {text:?} for 2026-11-25 and cannot read it back); use e.g. \"%Y-%m-%d\" or \"%m/%d/%Y\""
        )),
    }
}

/// Where each field is in a record (0-based), once the header is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub account_id: usize,
    pub account_name: Option<usize>,
    pub sku_id: usize,
    pub sku_name: Option<usize>,
    pub quantity: usize,
    pub unit: Option<usize>,
    pub unit_cost: Option<usize>,
    pub observed_on: Option<usize>,
}

impl Resolved {
    /// Every mapped field with its index and its label for messages.
    pub fn mapped(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        [
            ("account_id", Some(self.account_id)),
            ("account_name", self.account_name),
            ("sku_id", Some(self.sku_id)),
            ("sku_name", self.sku_name),
            ("quantity", Some(self.quantity)),
            ("unit", self.unit),
            ("unit_cost", self.unit_cost),
            ("observed_on", self.observed_on),
        ]
        .into_iter()
        .filter_map(|(field, index)| index.map(|i| (field, i)))
    }
}

/// Resolves the columns against `header` (the header row's fields, or
/// `None` when the file has none).
pub(crate) fn resolve(
    definition: &ProfileDefinition,
    header: Option<&[String]>,
) -> Result<Resolved, String> {
    let find = |field: &str, column: &Column| -> Result<usize, String> {
        match column {
            Column::Position(n) => Ok(*n as usize - 1),
            Column::Name(name) => {
                let header = header.unwrap_or(&[]);
                let wanted = name.trim();
                let matches: Vec<usize> = header
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.trim().eq_ignore_ascii_case(wanted))
                    .map(|(i, _)| i)
                    .collect();
                match matches.as_slice() {
                    [one] => Ok(*one),
                    [] => Err(format!(
                        "the header row has no column {name:?} (for {field}); it has: {}",
                        header
                            .iter()
                            .map(|h| format!("{:?}", h.trim()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    many => Err(format!(
                        "the header row has {} columns named {name:?} (for {field}, at positions {}); use the position instead",
                        many.len(),
                        many.iter()
                            .map(|i| (i + 1).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
        }
    };
    let c = &definition.columns;
    let optional = |field: &str, column: &Option<Column>| -> Result<Option<usize>, String> {
        column.as_ref().map(|col| find(field, col)).transpose()
    };
    Ok(Resolved {
        account_id: find("account_id", &c.account_id)?,
        account_name: optional("account_name", &c.account_name)?,
        sku_id: find("sku_id", &c.sku_id)?,
        sku_name: optional("sku_name", &c.sku_name)?,
        quantity: find("quantity", &c.quantity)?,
        unit: optional("unit", &c.unit)?,
        unit_cost: optional("unit_cost", &c.unit_cost)?,
        observed_on: optional("observed_on", &c.observed_on)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        vendor = "acme-backup"
        vendor_name = "Acme Backup"
        delimiter = ";"
        decimal_separator = ","
        thousands_separator = "."
        date_format = "%d.%m.%Y"
        sum_duplicates = true

        [columns]
        account_id = "Customer ID"
        account_name = "Customer"
        sku_id = "Plan"
        quantity = "Seats"
        observed_on = 5
    "#;

    #[test]
    fn a_toml_profile_reads_and_round_trips_through_json() {
        let definition = ProfileDefinition::from_toml(EXAMPLE).expect("parses");
        let options = definition.options().expect("valid");
        assert_eq!(options.delimiter, b';');
        assert_eq!(options.decimal, ',');
        assert_eq!(options.thousands, Some('.'));
        assert!(options.header && options.sum);
        assert_eq!(options.default_unit, "unit");
        assert_eq!(definition.columns.observed_on, Some(Column::Position(5)));
        let value = serde_json::to_value(&definition).expect("json");
        assert_eq!(
            ProfileDefinition::from_value(&value).expect("back"),
            definition
        );
    }

    #[test]
    fn bad_profiles_say_what_to_fix() {
        let table = [
            (
                "vendor = \"a b\"\n[columns]\naccount_id = 1\nsku_id = 2\nquantity = 3",
                "vendor integration id",
            ),
            (
                "vendor = \"v\"\ndelimiter = \";;\"\n[columns]\naccount_id = 1\nsku_id = 2\nquantity = 3",
                "one ASCII character",
            ),
            (
                "vendor = \"v\"\ndecimal_separator = \",\"\n[columns]\naccount_id = 1\nsku_id = 2\nquantity = 3",
                "also a separator",
            ),
            (
                "vendor = \"v\"\ndecimal_separator = \";\"\n[columns]\naccount_id = 1\nsku_id = 2\nquantity = 3",
                "must be \".\" or \",\"",
            ),
            (
                "vendor = \"v\"\nthousands_separator = \".\"\n[columns]\naccount_id = 1\nsku_id = 2\nquantity = 3",
                "both",
            ),
            (
                "vendor = \"v\"\ndate_format = \"%Y-%m\"\n[columns]\naccount_id = 1\nsku_id = 2\nquantity = 3",
                "whole date",
            ),
            (
                "vendor = \"v\"\n[columns]\naccount_id = 0\nsku_id = 2\nquantity = 3",
                "start at 1",
            ),
            (
                "vendor = \"v\"\nheader = false\n[columns]\naccount_id = \"Id\"\nsku_id = 2\nquantity = 3",
                "no header row",
            ),
        ];
        for (text, message) in table {
            let definition = ProfileDefinition::from_toml(text).expect(text);
            let error = definition.check().expect_err(text);
            assert!(error.contains(message), "{text}: {error}");
        }
        let error =
            ProfileDefinition::from_toml("vendor = \"v\"\n[columns]\naccount_id = 1\nsku_id = 2")
                .expect_err("quantity is required");
        assert!(error.contains("quantity"), "{error}");
        let error = ProfileDefinition::from_json(r#"{"vendor": "v", "columns": {"account_id": 1, "sku_id": 2, "quantity": 3, "qty": 4}}"#)
            .expect_err("unknown field");
        assert!(
            error.contains("columns") && error.contains("qty"),
            "{error}"
        );
    }

    #[test]
    fn columns_resolve_by_name_or_position() {
        let definition = ProfileDefinition::from_toml(EXAMPLE).expect("parses");
        let header: Vec<String> = ["customer id ", "Customer", "Plan", "Seats", "Date"]
            .map(str::to_owned)
            .to_vec();
        let resolved = resolve(&definition, Some(&header)).expect("resolves");
        assert_eq!(
            (resolved.account_id, resolved.quantity, resolved.observed_on),
            (0, 3, Some(4))
        );
        let missing: Vec<String> = ["Customer ID", "Plan", "Seats"].map(str::to_owned).to_vec();
        let error = resolve(&definition, Some(&missing)).expect_err("no Customer column");
        assert!(error.contains("no column \"Customer\""), "{error}");
        let twice: Vec<String> = ["Customer ID", "Customer", "Plan", "Seats", "Seats"]
            .map(str::to_owned)
            .to_vec();
        let error = resolve(&definition, Some(&twice)).expect_err("ambiguous");
        assert!(error.contains("positions 4, 5"), "{error}");
    }
}
