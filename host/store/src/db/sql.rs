//! Statements: the text with `$n` placeholders, the values bound to it,
//! and what it does to which table (for errors), bound per backend.

use std::borrow::Cow;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Postgres, Sqlite};

use super::value::{Value, sqlite_instant};

/// A statement with its bound values and what it is for (for errors).
#[derive(Debug)]
pub(crate) struct Sql {
    pub(super) text: Cow<'static, str>,
    pub(super) args: Vec<Value>,
    pub(super) operation: &'static str,
    pub(super) table: &'static str,
}

/// A statement doing `operation` on `table`.
pub(crate) fn sql(
    operation: &'static str,
    table: &'static str,
    text: impl Into<Cow<'static, str>>,
) -> Sql {
    Sql {
        text: text.into(),
        args: Vec::new(),
        operation,
        table,
    }
}

impl Sql {
    /// Binds the next `$n`.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Binds several values in order.
    pub(crate) fn bind_all(mut self, values: impl IntoIterator<Item = Value>) -> Self {
        self.args.extend(values);
        self
    }
}

/// `text` bound with `args` for SQLite.
pub(super) fn sqlite_query(text: &str, args: Vec<Value>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    let mut query = sqlx::query(text);
    for value in args {
        query = match value {
            Value::Text(v) => query.bind(v),
            Value::Int(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
            Value::Instant(v) => query.bind(v.map(sqlite_instant)),
            Value::Date(v) => query.bind(v.map(|d| d.format("%Y-%m-%d").to_string())),
        };
    }
    query
}

/// `text` bound with `args` for PostgreSQL.
pub(super) fn pg_query(text: &str, args: Vec<Value>) -> Query<'_, Postgres, PgArguments> {
    let mut query = sqlx::query(text);
    for value in args {
        query = match value {
            Value::Text(v) => query.bind(v),
            Value::Int(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
            Value::Instant(v) => query.bind(v),
            Value::Date(v) => query.bind(v),
        };
    }
    query
}

/// `$from, $from+1, ...` for `n` values: the placeholders of an `IN` list.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(placeholders(3, 2), "$3, $4");
    }
}
