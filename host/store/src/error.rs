//! What can go wrong in the store, said in terms of what was being done and
//! where (operation and table), never as bare SQL.

use thiserror::Error;

/// The result of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// Every variant names the operation (e.g. "record PSA sync") and, where it
/// applies, the table. Driver messages are kept as text in `problem` so an
/// operator can diagnose, but no SQL text or bound value (which could be a
/// secret) is included.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be opened (bad URL, unreachable server,
    /// unwritable directory).
    #[error("cannot open the store at {url}: {problem}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What failed.
        problem: String,
    },
    /// Applying the schema migrations failed.
    #[error(
        "cannot bring the store schema up to date: {problem} (was the database written by a newer Trueup?)"
    )]
    Migrate {
        /// What failed.
        problem: String,
    },
    /// The database refused or failed an operation.
    #[error("{operation} failed on table {table}: {problem}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The table it was done to.
        table: &'static str,
        /// The driver's message.
        problem: String,
    },
    /// A value that must be unique is already taken.
    #[error("{operation}: {what} {value:?} already exists (table {table}); use another {what}")]
    Duplicate {
        /// What was being done.
        operation: &'static str,
        /// The table.
        table: &'static str,
        /// What must be unique, e.g. "username".
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// A row another refers to does not exist (a foreign key).
    #[error("{operation}: {problem} (table {table})")]
    MissingReference {
        /// What was being done.
        operation: &'static str,
        /// The table written.
        table: &'static str,
        /// Which reference, in words.
        problem: String,
    },
    /// The thing asked for does not exist.
    #[error("{operation}: no {what} {key:?}")]
    NotFound {
        /// What was being done.
        operation: &'static str,
        /// What was looked for, e.g. "reconcile run".
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// A stored value cannot be read back: the row was edited outside
    /// Trueup or written by a newer version.
    #[error(
        "{table}.{column} holds a value that is not {expected} ({problem}); the row was edited outside Trueup or written by a newer version"
    )]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: String,
        /// What was expected, e.g. "a decimal number".
        expected: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The request does not make sense for the stored state (e.g. finishing
    /// a sync that already finished) or breaks the API's contract.
    #[error("{operation}: {problem}")]
    Invalid {
        /// What was being done.
        operation: &'static str,
        /// Why it cannot be done.
        problem: String,
    },
    /// A worker no longer holds the lease it acts under: it expired and
    /// another worker may have taken the entry over.
    #[error(
        "{operation}: {what} {id} is not leased to worker {worker:?} any more (the lease expired or the entry finished); its result was not recorded"
    )]
    LeaseLost {
        /// What was being done.
        operation: &'static str,
        /// "outbox entry" or "job".
        what: &'static str,
        /// Its id.
        id: i64,
        /// The worker that tried.
        worker: String,
    },
}

impl StoreError {
    /// Whether the error is a uniqueness conflict.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate { .. })
    }

    /// Whether the error says a thing was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    pub(crate) fn invalid(operation: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            operation,
            problem: problem.into(),
        }
    }

    pub(crate) fn not_found(
        operation: &'static str,
        what: &'static str,
        key: impl ToString,
    ) -> Self {
        Self::NotFound {
            operation,
            what,
            key: key.to_string(),
        }
    }

    /// Turns a generic unique violation into one naming what must be
    /// unique; other errors pass through.
    pub(crate) fn duplicate_as(self, what: &'static str, value: impl ToString) -> Self {
        match self {
            Self::Duplicate {
                operation, table, ..
            } => Self::Duplicate {
                operation,
                table,
                what,
                value: value.to_string(),
            },
            other => other,
        }
    }

    /// Maps a driver error met while doing `operation` on `table`.
    pub(crate) fn from_sqlx(
        operation: &'static str,
        table: &'static str,
        error: sqlx::Error,
    ) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Duplicate {
                operation,
                table,
                what: "a row with the same unique key",
                value: db.constraint().unwrap_or_default().to_owned(),
            },
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::MissingReference {
                operation,
                table,
                problem: format!(
                    "a referenced row does not exist ({})",
                    db.constraint().unwrap_or("foreign key")
                ),
            },
            sqlx::Error::PoolTimedOut => Self::Database {
                operation,
                table,
                problem: "timed out waiting for a database connection; the database is overloaded or unreachable".to_owned(),
            },
            _ => Self::Database {
                operation,
                table,
                problem: error.to_string(),
            },
        }
    }
}

impl StoreError {
    /// The error of a bulk insert made through SQLite's C API, classified
    /// like [`StoreError::from_sqlx`] classifies sqlx's.
    pub(crate) fn from_sqlite(
        operation: &'static str,
        table: &'static str,
        failure: &crate::sqlite_bulk::SqliteFailure,
    ) -> Self {
        if failure.is_unique_violation() {
            Self::Duplicate {
                operation,
                table,
                what: "a row with the same unique key",
                value: failure.message.clone(),
            }
        } else if failure.is_foreign_key_violation() {
            Self::MissingReference {
                operation,
                table,
                problem: format!("a referenced row does not exist ({})", failure.message),
            }
        } else {
            Self::Database {
                operation,
                table,
                problem: failure.to_string(),
            }
        }
    }
}

/// `url` with the password (if any) replaced by `***`, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://trueup:s3cret@db.example:5432/trueup"),
            "postgres://trueup:***@db.example:5432/trueup"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact_url("sqlite://data/t.db"), "sqlite://data/t.db");
    }
}
