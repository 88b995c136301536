//! Rows read back: typed getters that turn a bad stored value into a
//! [`StoreError::Corrupt`] naming the table and column.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::value::parse_enum;
use crate::error::{Result, StoreError};

/// A row of either backend, with the table it came from (for errors).
pub(crate) struct Row {
    inner: RowInner,
    table: &'static str,
}

enum RowInner {
    Sqlite(SqliteRow),
    Pg(PgRow),
}

macro_rules! get {
    ($row:expr, $ty:ty, $col:expr, $expected:expr) => {
        match &$row.inner {
            RowInner::Sqlite(r) => r.try_get::<$ty, _>($col),
            RowInner::Pg(r) => r.try_get::<$ty, _>($col),
        }
        .map_err(|e| $row.corrupt($col, $expected, e.to_string()))
    };
}

impl Row {
    fn corrupt(&self, column: &str, expected: &'static str, problem: String) -> StoreError {
        StoreError::Corrupt {
            table: self.table,
            column: column.to_owned(),
            expected,
            problem,
        }
    }

    pub(crate) fn text(&self, col: &str) -> Result<String> {
        get!(self, String, col, "text")
    }

    pub(crate) fn opt_text(&self, col: &str) -> Result<Option<String>> {
        get!(self, Option<String>, col, "text or NULL")
    }

    pub(crate) fn int(&self, col: &str) -> Result<i64> {
        get!(self, i64, col, "an integer")
    }

    pub(crate) fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        get!(self, Option<i64>, col, "an integer or NULL")
    }

    pub(crate) fn bool(&self, col: &str) -> Result<bool> {
        get!(self, bool, col, "a boolean")
    }

    pub(crate) fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        get!(self, Vec<u8>, col, "bytes")
    }

    pub(crate) fn opt_instant(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        match &self.inner {
            RowInner::Pg(_) => get!(self, Option<DateTime<Utc>>, col, "an instant"),
            RowInner::Sqlite(_) => match self.opt_text(col)? {
                None => Ok(None),
                Some(text) => DateTime::parse_from_rfc3339(&text)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(|e| self.corrupt(col, "an RFC 3339 instant", e.to_string())),
            },
        }
    }

    pub(crate) fn instant(&self, col: &str) -> Result<DateTime<Utc>> {
        self.opt_instant(col)?
            .ok_or_else(|| self.corrupt(col, "an instant", "NULL".to_owned()))
    }

    pub(crate) fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>> {
        match &self.inner {
            RowInner::Pg(_) => get!(self, Option<NaiveDate>, col, "a date"),
            RowInner::Sqlite(_) => match self.opt_text(col)? {
                None => Ok(None),
                Some(text) => NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|e| self.corrupt(col, "a YYYY-MM-DD date", e.to_string())),
            },
        }
    }

    pub(crate) fn date(&self, col: &str) -> Result<NaiveDate> {
        self.opt_date(col)?
            .ok_or_else(|| self.corrupt(col, "a date", "NULL".to_owned()))
    }

    pub(crate) fn opt_decimal(&self, col: &str) -> Result<Option<Decimal>> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(text) => Decimal::from_str(&text)
                .map(Some)
                .map_err(|e| self.corrupt(col, "a decimal number", format!("{text:?}: {e}"))),
        }
    }

    pub(crate) fn decimal(&self, col: &str) -> Result<Decimal> {
        self.opt_decimal(col)?
            .ok_or_else(|| self.corrupt(col, "a decimal number", "NULL".to_owned()))
    }

    pub(crate) fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T> {
        let text = self.text(col)?;
        serde_json::from_str(&text)
            .map_err(|e| self.corrupt(col, "the expected JSON", e.to_string()))
    }

    pub(crate) fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| self.corrupt(col, "the expected JSON", e.to_string())),
        }
    }

    /// A text column holding an enum's serde name (see [`enum_text`]).
    pub(crate) fn enum_value<T: DeserializeOwned>(
        &self,
        col: &str,
        expected: &'static str,
    ) -> Result<T> {
        let text = self.text(col)?;
        parse_enum(&text).ok_or_else(|| self.corrupt(col, expected, format!("found {text:?}")))
    }
}

/// Driver results turned into the store's.
pub(super) trait Wrap {
    type Out;
    fn wrap(self, table: &'static str) -> Self::Out;
}

impl Wrap for SqliteRow {
    type Out = Row;
    fn wrap(self, table: &'static str) -> Row {
        Row {
            inner: RowInner::Sqlite(self),
            table,
        }
    }
}

impl Wrap for PgRow {
    type Out = Row;
    fn wrap(self, table: &'static str) -> Row {
        Row {
            inner: RowInner::Pg(self),
            table,
        }
    }
}

impl<R: Wrap<Out = Row>> Wrap for Vec<R> {
    type Out = Vec<Row>;
    fn wrap(self, table: &'static str) -> Vec<Row> {
        self.into_iter().map(|r| r.wrap(table)).collect()
    }
}

impl<R: Wrap<Out = Row>> Wrap for Option<R> {
    type Out = Option<Row>;
    fn wrap(self, table: &'static str) -> Option<Row> {
        self.map(|r| r.wrap(table))
    }
}

impl Wrap for sqlx::sqlite::SqliteQueryResult {
    type Out = u64;
    fn wrap(self, _: &'static str) -> u64 {
        self.rows_affected()
    }
}

impl Wrap for sqlx::postgres::PgQueryResult {
    type Out = u64;
    fn wrap(self, _: &'static str) -> u64 {
        self.rows_affected()
    }
}
