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

use std::borrow::Cow;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{Postgres, Row as _, Sqlite, Transaction};

use crate::error::{Result, StoreError};
use crate::sqlite_bulk::{Cell, RawRows, Statement};

/// Rows encoded per batch for a SQLite bulk insert.
const SQLITE_BATCH_ROWS: usize = 512;

/// Encoded batches that may wait for SQLite (bounds the memory a bulk
/// insert holds beyond its input).
const SQLITE_BATCHES_AHEAD: usize = 4;

/// Bytes of `COPY` text buffered before it is sent to PostgreSQL.
pub(crate) const COPY_CHUNK_BYTES: usize = 256 << 10;

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

/// A statement with its bound values and what it is for (for errors).
#[derive(Debug)]
pub(crate) struct Sql {
    text: Cow<'static, str>,
    args: Vec<Value>,
    operation: &'static str,
    table: &'static str,
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

fn sqlite_instant(at: DateTime<Utc>) -> String {
    at.format(SQLITE_INSTANT_FORMAT).to_string()
}

fn sqlite_query(text: &str, args: Vec<Value>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
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

fn pg_query(text: &str, args: Vec<Value>) -> Query<'_, Postgres, PgArguments> {
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

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite: a file (or memory), the embedded default.
    Sqlite,
    /// PostgreSQL: the shared production store.
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A connection pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool, Checkpointer),
    Pg(PgPool),
}

/// Checkpoints a SQLite file's write-ahead log in the background.
///
/// Automatic checkpoints are off (`wal_autocheckpoint = 0`): SQLite would
/// run them inside the `COMMIT` of whichever write crosses the threshold,
/// so a 200,000-card reconcile would wait for its pages to be copied into
/// the database file and synced. Instead, after each committed write the
/// store starts a `PASSIVE` checkpoint on another connection, at most one
/// at a time; the committed data is durable in the log meanwhile. An
/// in-memory database has no log and no checkpointer.
#[derive(Debug, Clone)]
pub(crate) struct Checkpointer {
    running: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Checkpointer {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            running: enabled.then(Default::default),
        }
    }

    /// Whether the database has a log to checkpoint.
    pub(crate) fn enabled(&self) -> bool {
        self.running.is_some()
    }

    /// Starts a background checkpoint unless one is running (or there is
    /// no runtime to run it on: then the next commit will).
    fn start(&self, pool: &SqlitePool) {
        use std::sync::atomic::Ordering;
        let Some(running) = &self.running else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (running, pool) = (std::sync::Arc::clone(running), pool.clone());
        runtime.spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "background WAL checkpoint did not run");
            }
            running.store(false, Ordering::Release);
        });
    }

    /// Checkpoints now and truncates the log (on close).
    pub(crate) async fn finish(&self, pool: &SqlitePool) {
        if self.running.is_some()
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
        {
            tracing::debug!(error = %e, "final WAL checkpoint did not run");
        }
    }
}

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

/// An executor of either backend: a pool (each statement on its own) or
/// a transaction's connection.
pub(crate) enum Exec<'a> {
    SqlitePool(&'a SqlitePool),
    PgPool(&'a PgPool),
    Sqlite(&'a mut sqlx::SqliteConnection),
    Pg(&'a mut sqlx::PgConnection),
}

/// `$body` with `$e` bound to the executor and `$query` to the statement
/// built for its backend, for each of the four executors.
macro_rules! on_exec {
    ($exec:expr, $q:expr, |$query:ident, $e:ident| $body:expr) => {{
        let q: Sql = $q;
        let (operation, table) = (q.operation, q.table);
        let text = q.text;
        let args = q.args;
        match $exec {
            Exec::SqlitePool($e) => {
                let $query = sqlite_query(&text, args);
                $body
                    .map_err(|e| StoreError::from_sqlx(operation, table, e))
                    .map(|r| r.wrap(table))
            }
            Exec::Sqlite($e) => {
                let $query = sqlite_query(&text, args);
                $body
                    .map_err(|e| StoreError::from_sqlx(operation, table, e))
                    .map(|r| r.wrap(table))
            }
            Exec::PgPool($e) => {
                let $query = pg_query(&text, args);
                $body
                    .map_err(|e| StoreError::from_sqlx(operation, table, e))
                    .map(|r| r.wrap(table))
            }
            Exec::Pg($e) => {
                let $query = pg_query(&text, args);
                $body
                    .map_err(|e| StoreError::from_sqlx(operation, table, e))
                    .map(|r| r.wrap(table))
            }
        }
    }};
}

/// Driver results turned into the store's.
trait Wrap {
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

impl Exec<'_> {
    /// Runs a statement; the number of rows it changed.
    pub(crate) async fn execute(self, q: Sql) -> Result<u64> {
        on_exec!(self, q, |query, e| query.execute(e).await)
    }

    /// Every row of a query.
    pub(crate) async fn fetch_all(self, q: Sql) -> Result<Vec<Row>> {
        on_exec!(self, q, |query, e| query.fetch_all(e).await)
    }

    /// The first row of a query, if any.
    pub(crate) async fn fetch_optional(self, q: Sql) -> Result<Option<Row>> {
        on_exec!(self, q, |query, e| query.fetch_optional(e).await)
    }

    /// The first row of a query, which must exist.
    pub(crate) async fn fetch_one(self, q: Sql) -> Result<Row> {
        let (operation, table) = (q.operation, q.table);
        self.fetch_optional(q)
            .await?
            .ok_or_else(|| StoreError::Database {
                operation,
                table,
                problem: "the statement returned no row".to_owned(),
            })
    }
}

impl Db {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(..) => Backend::Sqlite,
            Db::Pg(_) => Backend::Postgres,
        }
    }

    fn exec(&self) -> Exec<'_> {
        match self {
            Db::Sqlite(p, _) => Exec::SqlitePool(p),
            Db::Pg(p) => Exec::PgPool(p),
        }
    }

    /// Runs one statement outside any transaction (it is atomic by itself).
    pub(crate) async fn execute(&self, q: Sql) -> Result<u64> {
        let n = self.exec().execute(q).await?;
        if let Db::Sqlite(pool, checkpointer) = self
            && n > 0
        {
            checkpointer.start(pool);
        }
        Ok(n)
    }

    pub(crate) async fn fetch_all(&self, q: Sql) -> Result<Vec<Row>> {
        self.exec().fetch_all(q).await
    }

    pub(crate) async fn fetch_optional(&self, q: Sql) -> Result<Option<Row>> {
        self.exec().fetch_optional(q).await
    }

    pub(crate) async fn fetch_one(&self, q: Sql) -> Result<Row> {
        self.exec().fetch_one(q).await
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the
    /// write lock is taken at once (waiting up to the busy timeout), so a
    /// transaction that reads before it writes never fails to upgrade.
    /// On PostgreSQL it is `READ COMMITTED`; statements that must not
    /// race lock their rows.
    pub(crate) async fn begin(&self, operation: &'static str) -> Result<Tx> {
        let error = |e| StoreError::from_sqlx(operation, "(transaction)", e);
        Ok(match self {
            Db::Sqlite(p, c) => Tx::Sqlite(
                p.begin_with("BEGIN IMMEDIATE").await.map_err(error)?,
                Some((p.clone(), c.clone())),
            ),
            Db::Pg(p) => Tx::Pg(p.begin().await.map_err(error)?),
        })
    }
}

impl Db {
    /// Starts a read-only transaction: one consistent snapshot for several
    /// statements, without taking SQLite's write lock.
    pub(crate) async fn begin_read(&self, operation: &'static str) -> Result<Tx> {
        let error = |e| StoreError::from_sqlx(operation, "(transaction)", e);
        Ok(match self {
            Db::Sqlite(p, _) => {
                Tx::Sqlite(p.begin_with("BEGIN DEFERRED").await.map_err(error)?, None)
            }
            Db::Pg(p) => Tx::Pg(
                p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await
                    .map_err(error)?,
            ),
        })
    }
}

/// A transaction of either backend. Dropped without [`Tx::commit`], it
/// rolls back: nothing it wrote is kept.
pub(crate) enum Tx {
    /// With the pool and checkpointer for a write transaction.
    Sqlite(
        Transaction<'static, Sqlite>,
        Option<(SqlitePool, Checkpointer)>,
    ),
    Pg(Transaction<'static, Postgres>),
}

impl Tx {
    fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t, _) => Exec::Sqlite(&mut *t),
            Tx::Pg(t) => Exec::Pg(&mut *t),
        }
    }

    pub(crate) async fn execute(&mut self, q: Sql) -> Result<u64> {
        self.exec().execute(q).await
    }

    pub(crate) async fn fetch_all(&mut self, q: Sql) -> Result<Vec<Row>> {
        self.exec().fetch_all(q).await
    }

    pub(crate) async fn fetch_optional(&mut self, q: Sql) -> Result<Option<Row>> {
        self.exec().fetch_optional(q).await
    }

    pub(crate) async fn fetch_one(&mut self, q: Sql) -> Result<Row> {
        self.exec().fetch_one(q).await
    }

    /// Makes everything written in the transaction visible at once.
    pub(crate) async fn commit(self, operation: &'static str) -> Result<()> {
        let error = |e| StoreError::from_sqlx(operation, "(transaction)", e);
        match self {
            Tx::Sqlite(t, checkpoint) => {
                t.commit().await.map_err(error)?;
                if let Some((pool, checkpointer)) = checkpoint {
                    checkpointer.start(&pool);
                }
                Ok(())
            }
            Tx::Pg(t) => t.commit().await.map_err(error),
        }
    }

    /// Inserts `count` rows into `table`, row `i` written by `encode(i,
    /// writer)` in `columns` order: one prepared `INSERT` per row through
    /// SQLite's C API ([`crate::sqlite_bulk`]), one streaming `COPY ...
    /// FROM STDIN` on PostgreSQL. Encoding overlaps with the database's
    /// work: while SQLite inserts one batch (a second thread encodes the
    /// next), or PostgreSQL's server consumes the stream, the next rows are
    /// encoded. Returns the rows written.
    pub(crate) async fn insert_all<F>(
        &mut self,
        operation: &'static str,
        table: &'static str,
        columns: &'static [&'static str],
        count: usize,
        mut encode: F,
    ) -> Result<u64>
    where
        F: FnMut(usize, &mut RowWriter) -> Result<()> + Send,
    {
        if count == 0 {
            return Ok(0);
        }
        let error = |e| StoreError::from_sqlx(operation, table, e);
        match self {
            Tx::Sqlite(t, _) => {
                let text = format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    columns.join(", "),
                    vec!["?"; columns.len()].join(", ")
                );
                let conn: &mut sqlx::SqliteConnection = t;
                let mut handle = conn.lock_handle().await.map_err(error)?;
                let columns = columns.len();
                run_blocking(move || {
                    let mut statement = Statement::prepare(&mut handle, &text)
                        .map_err(|e| StoreError::from_sqlite(operation, table, &e))?;
                    // Rows are encoded on a second thread while this one
                    // inserts the previous batch: encoding (JSON, decimals,
                    // dates) costs about half of what SQLite does.
                    std::thread::scope(|scope| {
                        let (full_tx, full_rx) =
                            std::sync::mpsc::sync_channel::<Result<RawRows>>(SQLITE_BATCHES_AHEAD);
                        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<RawRows>();
                        let encode = &mut encode;
                        scope.spawn(move || {
                            let mut writer = RowWriter::new(false, columns, operation, table);
                            let mut start = 0;
                            while start < count {
                                let end = (start + SQLITE_BATCH_ROWS).min(count);
                                writer.rows = empty_rx.try_recv().unwrap_or_default();
                                let encoded = (start..end).try_for_each(|i| {
                                    encode(i, &mut writer)?;
                                    writer.end_row()
                                });
                                let batch = encoded.map(|()| std::mem::take(&mut writer.rows));
                                let failed = batch.is_err();
                                // A closed channel means the inserts failed.
                                if full_tx.send(batch).is_err() || failed {
                                    return;
                                }
                                start = end;
                            }
                        });
                        for batch in full_rx {
                            let mut batch = batch?;
                            statement
                                .insert_rows(&batch)
                                .map_err(|e| StoreError::from_sqlite(operation, table, &e))?;
                            batch.clear();
                            // The encoder may have finished; then the batch
                            // is simply dropped.
                            let _ = empty_tx.send(batch);
                        }
                        Ok(count as u64)
                    })
                })
            }
            Tx::Pg(t) => {
                let statement = format!(
                    "COPY {table} ({}) FROM STDIN WITH (FORMAT text)",
                    columns.join(", ")
                );
                let conn: &mut sqlx::PgConnection = t;
                let mut copy = conn.copy_in_raw(&statement).await.map_err(error)?;
                let mut writer = RowWriter::new(true, columns.len(), operation, table);
                for i in 0..count {
                    let written = encode(i, &mut writer).and_then(|()| writer.end_row());
                    if let Err(e) = written {
                        let _ = copy.abort(e.to_string()).await;
                        return Err(e);
                    }
                    if writer.copy.len() >= COPY_CHUNK_BYTES {
                        copy.send(std::mem::take(&mut writer.copy))
                            .await
                            .map_err(error)?;
                    }
                }
                if !writer.copy.is_empty() {
                    copy.send(std::mem::take(&mut writer.copy))
                        .await
                        .map_err(error)?;
                }
                copy.finish().await.map_err(error)
            }
        }
    }
}

/// Runs `work`, which blocks on SQLite, without stalling the other tasks
/// of a multi-threaded runtime (their worker hands them to another thread
/// meanwhile). On a current-thread runtime (tests, the CLI) it just runs.
fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Writes one row's values in column order, as [`RawRows`] bound through
/// SQLite's C API or as `COPY` text (PostgreSQL), so encoders are written
/// once for both.
pub(crate) struct RowWriter {
    copy_mode: bool,
    columns: usize,
    /// Values written in the current row.
    written: usize,
    rows: RawRows,
    copy: Vec<u8>,
    operation: &'static str,
    table: &'static str,
}

impl RowWriter {
    fn new(copy_mode: bool, columns: usize, operation: &'static str, table: &'static str) -> Self {
        Self {
            copy_mode,
            columns,
            written: 0,
            rows: RawRows::default(),
            copy: Vec::new(),
            operation,
            table,
        }
    }

    fn separator(&mut self) {
        if self.written > 0 {
            self.copy.push(b'\t');
        }
        self.written += 1;
    }

    fn end_row(&mut self) -> Result<()> {
        if self.written != self.columns {
            return Err(StoreError::invalid(
                self.operation,
                format!(
                    "a row for {} has {} values for {} columns",
                    self.table, self.written, self.columns
                ),
            ));
        }
        if self.copy_mode {
            self.copy.push(b'\n');
        }
        self.written = 0;
        Ok(())
    }

    /// Any value.
    pub(crate) fn value(&mut self, value: impl Into<Value>) {
        let value = value.into();
        if self.copy_mode {
            self.separator();
            copy_text(&mut self.copy, &value);
        } else {
            self.written += 1;
            raw_cell(&mut self.rows, &value);
        }
    }

    /// Text.
    pub(crate) fn text(&mut self, text: &str) {
        if self.copy_mode {
            self.separator();
            copy_escaped(&mut self.copy, text);
        } else {
            self.written += 1;
            self.rows.push_text(text);
        }
    }

    /// Text or `NULL`.
    pub(crate) fn opt_text(&mut self, text: Option<&str>) {
        match text {
            Some(t) => self.text(t),
            None => self.value(Value::Text(None)),
        }
    }

    /// An amount (canonical text).
    pub(crate) fn decimal(&mut self, value: Decimal) {
        if self.copy_mode {
            self.separator();
            push_decimal(&mut self.copy, value);
        } else {
            self.written += 1;
            self.rows.push_text_with(|out| push_decimal(out, value));
        }
    }

    /// An amount or `NULL`.
    pub(crate) fn opt_decimal(&mut self, value: Option<Decimal>) {
        match value {
            Some(v) => self.decimal(v),
            None => self.value(Value::Text(None)),
        }
    }
}

/// Appends `date` as `YYYY-MM-DD` (what chrono's `%Y-%m-%d` writes) without
/// the formatting machinery, which costs more than the rest of a date
/// column's encoding.
fn push_date(out: &mut Vec<u8>, date: NaiveDate) {
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

/// Appends `value` to `row` as SQLite stores it (see the module's table).
fn raw_cell(row: &mut RawRows, value: &Value) {
    match value {
        Value::Text(Some(v)) => row.push_text(v),
        Value::Int(Some(v)) => row.cells.push(Cell::Int(*v)),
        Value::Bool(Some(v)) => row.cells.push(Cell::Int(i64::from(*v))),
        Value::Bytes(Some(v)) => row.push_blob(v),
        Value::Instant(Some(v)) => row.push_text(&sqlite_instant(*v)),
        Value::Date(Some(v)) => row.push_text_with(|out| push_date(out, *v)),
        Value::Text(None)
        | Value::Int(None)
        | Value::Bool(None)
        | Value::Bytes(None)
        | Value::Instant(None)
        | Value::Date(None) => row.cells.push(Cell::Null),
    }
}

/// Appends `text` escaped for PostgreSQL's `COPY` text format.
fn copy_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// Appends `value` in PostgreSQL's `COPY` text format.
fn copy_text(out: &mut Vec<u8>, value: &Value) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    match value {
        Value::Text(Some(v)) => copy_escaped(out, v),
        Value::Int(Some(v)) => {
            let _ = write!(out, "{v}");
        }
        Value::Bool(Some(v)) => out.push(if *v { b't' } else { b'f' }),
        Value::Bytes(Some(v)) => {
            out.extend_from_slice(b"\\\\x");
            out.extend_from_slice(hex::encode(v).as_bytes());
        }
        Value::Instant(Some(v)) => {
            let _ = write!(out, "{}", v.format("%Y-%m-%d %H:%M:%S%.6f+00"));
        }
        Value::Date(Some(v)) => push_date(out, *v),
        Value::Text(None)
        | Value::Int(None)
        | Value::Bool(None)
        | Value::Bytes(None)
        | Value::Instant(None)
        | Value::Date(None) => out.extend_from_slice(b"\\N"),
    }
}

/// `$from, $from+1, ...` for `n` values: the placeholders of an `IN` list.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    fn copy_text_escapes_what_copy_would_misread() {
        let mut out = Vec::new();
        copy_text(&mut out, &Value::from("a\tb\\c\nd\re"));
        assert_eq!(out, b"a\\tb\\\\c\\nd\\re");
        out.clear();
        copy_text(&mut out, &Value::Text(None));
        assert_eq!(out, b"\\N");
        out.clear();
        copy_text(&mut out, &Value::from(vec![0xde, 0xad]));
        assert_eq!(out, b"\\\\xdead");
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
    fn placeholders_number_every_value() {
        assert_eq!(placeholders(3, 2), "$3, $4");
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
