//! Bulk inserts on SQLite through SQLite's C API, for the writes that
//! append hundreds of thousands of rows (a reconcile run's cards, a PSA
//! sync's lines and ledger).
//!
//! Going through sqlx costs more than SQLite's own work for such writes:
//! every value becomes an owned `String` in an argument vector, crosses to
//! sqlx's worker thread and is copied again when bound. Here one prepared
//! single-row `INSERT` is bound straight from a reused row buffer and
//! stepped once per row, on the connection that sqlx has handed over
//! ([`sqlx::sqlite::LockedSqliteHandle`]: its worker thread waits while we
//! hold the handle), inside the caller's open transaction. Measured by
//! `cargo bench -p trueup-store --bench store_write`.
//!
//! This is the store's only `unsafe` code; every call is a plain C API call
//! on a handle sqlx owns and keeps open for the borrow's lifetime.
#![allow(
    unsafe_code,
    reason = "SQLite's C API, for bulk inserts sqlx cannot make fast enough"
)]

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

/// One value of a [`RawRow`]: a `NULL`, an integer, or text or bytes held
/// in the row's buffer (`start..end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text { start: usize, end: usize },
    Blob { start: usize, end: usize },
}

/// Rows to insert: their cells, row after row in column order, with text
/// and bytes in one buffer (both reused from batch to batch, so encoding
/// allocates nothing once they have grown).
#[derive(Debug, Default)]
pub(crate) struct RawRows {
    pub(crate) bytes: Vec<u8>,
    pub(crate) cells: Vec<Cell>,
}

impl RawRows {
    /// Appends text written by `write` into the buffer as the next cell.
    pub(crate) fn push_text_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.cells.push(Cell::Text {
            start,
            end: self.bytes.len(),
        });
    }

    /// Appends text as the next cell.
    pub(crate) fn push_text(&mut self, text: &str) {
        self.push_text_with(|b| b.extend_from_slice(text.as_bytes()));
    }

    /// Appends bytes as the next cell.
    pub(crate) fn push_blob(&mut self, blob: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(blob);
        self.cells.push(Cell::Blob {
            start,
            end: self.bytes.len(),
        });
    }

    /// Empties the batch for the next one, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.cells.clear();
    }
}

/// A failed SQLite call: its extended result code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqliteFailure {
    /// The extended result code (`SQLITE_CONSTRAINT_UNIQUE`, ...).
    pub(crate) code: c_int,
    /// `sqlite3_errmsg`, or a description of what went wrong before SQLite
    /// was called.
    pub(crate) message: String,
}

impl SqliteFailure {
    /// A unique or primary key was violated.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(
            self.code,
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    }

    /// A foreign key was violated.
    pub(crate) fn is_foreign_key_violation(&self) -> bool {
        self.code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    }
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLite code {})", self.message, self.code)
    }
}

/// A prepared statement on a connection handed over by sqlx; finalized on
/// drop. It cannot outlive the handle it was prepared on.
pub(crate) struct Statement<'h> {
    db: NonNull<ffi::sqlite3>,
    statement: NonNull<ffi::sqlite3_stmt>,
    parameters: usize,
    _handle: PhantomData<&'h mut ()>,
}

/// The connection's last error.
fn failure(db: NonNull<ffi::sqlite3>) -> SqliteFailure {
    // SAFETY: `db` is an open connection (sqlx keeps it open while the
    // handle is locked); `sqlite3_errmsg` returns a NUL-terminated string
    // owned by SQLite, copied here before any other call.
    unsafe {
        let code = ffi::sqlite3_extended_errcode(db.as_ptr());
        let message = ffi::sqlite3_errmsg(db.as_ptr());
        let message = if message.is_null() {
            "unknown SQLite error".to_owned()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        };
        SqliteFailure { code, message }
    }
}

impl<'h> Statement<'h> {
    /// Prepares one statement (`sql` must hold exactly one).
    pub(crate) fn prepare(
        handle: &'h mut LockedSqliteHandle<'_>,
        sql: &str,
    ) -> Result<Self, SqliteFailure> {
        let db = handle.as_raw_handle();
        let length = c_int::try_from(sql.len()).map_err(|_| SqliteFailure {
            code: ffi::SQLITE_TOOBIG,
            message: "statement text too long".to_owned(),
        })?;
        let mut statement = std::ptr::null_mut();
        // SAFETY: `db` is open; `sql` is valid for `length` bytes (SQLite
        // reads no further, no NUL needed); `statement` is written by
        // SQLite and owned by the returned value, which finalizes it.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(
                db.as_ptr(),
                sql.as_ptr().cast(),
                length,
                &mut statement,
                std::ptr::null_mut(),
            )
        };
        if code != ffi::SQLITE_OK {
            return Err(failure(db));
        }
        let statement = NonNull::new(statement).ok_or_else(|| SqliteFailure {
            code: ffi::SQLITE_MISUSE,
            message: "the statement text holds no statement".to_owned(),
        })?;
        // SAFETY: `statement` was just prepared.
        let parameters = unsafe { ffi::sqlite3_bind_parameter_count(statement.as_ptr()) };
        Ok(Self {
            db,
            statement,
            parameters: usize::try_from(parameters).unwrap_or(0),
            _handle: PhantomData,
        })
    }

    /// Inserts every row of `rows`: binds each row's cells to the
    /// parameters in order, runs the statement once and resets it. `rows`
    /// must hold a whole number of rows of one cell per parameter.
    pub(crate) fn insert_rows(&mut self, rows: &RawRows) -> Result<(), SqliteFailure> {
        if self.parameters == 0 || !rows.cells.len().is_multiple_of(self.parameters) {
            return Err(SqliteFailure {
                code: ffi::SQLITE_RANGE,
                message: format!(
                    "{} values do not make whole rows of {} parameters",
                    rows.cells.len(),
                    self.parameters
                ),
            });
        }
        for row in rows.cells.chunks_exact(self.parameters) {
            self.insert(row, &rows.bytes)?;
        }
        Ok(())
    }

    /// Binds one row's cells (their text in `bytes`), steps, resets.
    fn insert(&mut self, row: &[Cell], bytes: &[u8]) -> Result<(), SqliteFailure> {
        let statement = self.statement.as_ptr();
        for (index, cell) in row.iter().enumerate() {
            // Parameters are numbered from 1; the count fits in c_int.
            let parameter = index as c_int + 1;
            // SAFETY: `statement` is prepared; `parameter` is in range
            // (one cell per parameter, checked by the caller); text and
            // blob ranges are in bounds of `bytes` (pushed by RawRows; a
            // slice out of bounds panics before SQLite is called) and
            // SQLITE_TRANSIENT makes SQLite copy them before the call
            // returns, so nothing it keeps points into the buffer.
            let code = unsafe {
                match *cell {
                    Cell::Null => ffi::sqlite3_bind_null(statement, parameter),
                    Cell::Int(value) => ffi::sqlite3_bind_int64(statement, parameter, value),
                    Cell::Text { start, end } => {
                        let text = &bytes[start..end];
                        ffi::sqlite3_bind_text64(
                            statement,
                            parameter,
                            text.as_ptr().cast(),
                            text.len() as u64,
                            ffi::SQLITE_TRANSIENT(),
                            ffi::SQLITE_UTF8 as u8,
                        )
                    }
                    Cell::Blob { start, end } => {
                        let blob = &bytes[start..end];
                        ffi::sqlite3_bind_blob64(
                            statement,
                            parameter,
                            blob.as_ptr().cast(),
                            blob.len() as u64,
                            ffi::SQLITE_TRANSIENT(),
                        )
                    }
                }
            };
            if code != ffi::SQLITE_OK {
                return Err(failure(self.db));
            }
        }
        // SAFETY: `statement` is prepared and fully bound.
        let stepped = unsafe { ffi::sqlite3_step(statement) };
        let result = if stepped == ffi::SQLITE_DONE {
            Ok(())
        } else {
            Err(failure(self.db))
        };
        // SAFETY: `statement` is prepared. Its result repeats the step's,
        // already read above.
        unsafe { ffi::sqlite3_reset(statement) };
        result
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: prepared by `prepare`, finalized exactly once, here.
        unsafe { ffi::sqlite3_finalize(self.statement.as_ptr()) };
    }
}
