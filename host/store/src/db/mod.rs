//! The one place that speaks to sqlx: values, statements, rows and
//! transactions that run unchanged on SQLite and PostgreSQL.
//!
//! Every statement is written once with `$1, $2, ...` placeholders (both
//! drivers accept them) and bound with [`Value`]s, which are encoded per
//! backend as the schema declares:
//!
//! | Rust | SQLite column | PostgreSQL column |
//! |---|---|---|
//! | text, decimal (canonical text) | `TEXT` | `TEXT` |
//! | `i64` | `INTEGER` | `BIGINT` |
//! | `bool` | `INTEGER` 0/1 | `BOOLEAN` |
//! | bytes | `BLOB` | `BYTEA` |
//! | instant (UTC, microseconds) | `TEXT` `YYYY-MM-DDTHH:MM:SS.ffffffZ` | `TIMESTAMPTZ` |
//! | date | `TEXT` `YYYY-MM-DD` | `DATE` |
//!
//! The SQLite instant text is fixed-width, so comparing it as text orders
//! it as time. Instants are truncated to microseconds on the way in (what
//! PostgreSQL keeps), so both backends read back the same value.
//!
//! Rooms, bottom up: [`value`] (what is bound and how each backend stores
//! it), [`sql`] (statements), [`row`] (typed reads), [`pool`] (pools,
//! transactions, the backend), [`bulk`] (bulk inserts).

mod bulk;
mod pool;
mod row;
mod sql;
mod value;

pub(crate) use bulk::RowWriter;
pub use pool::Backend;
pub(crate) use pool::{Checkpointer, Db, Tx};
pub(crate) use row::Row;
pub(crate) use sql::{Sql, placeholders, sql};
pub(crate) use value::{Value, enum_text, id_type, instant, json_text, parse_enum};
