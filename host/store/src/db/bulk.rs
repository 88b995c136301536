//! Bulk inserts: rows encoded once for both backends by a [`RowWriter`],
//! inserted through SQLite's C API ([`crate::sqlite_bulk`]) or streamed
//! with PostgreSQL's `COPY`.

use rust_decimal::Decimal;

use super::pool::Tx;
use super::value::{Value, push_date, push_decimal, sqlite_instant};
use crate::error::{Result, StoreError};
use crate::sqlite_bulk::{Cell, RawRows, Statement};

/// Rows encoded per batch for a SQLite bulk insert.
const SQLITE_BATCH_ROWS: usize = 512;

/// Encoded batches that may wait for SQLite (bounds the memory a bulk
/// insert holds beyond its input).
const SQLITE_BATCHES_AHEAD: usize = 4;

/// Bytes of `COPY` text buffered before it is sent to PostgreSQL.
pub(crate) const COPY_CHUNK_BYTES: usize = 256 << 10;

impl Tx {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
