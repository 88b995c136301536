//! Trueup's persistence: every table behind a typed API, on SQLite (the
//! embedded default, a file) or PostgreSQL (the production store several
//! `trueup` processes share). The same code and the same tests run on both.
//!
//! Open a store with [`Store::connect`]; the schema migrations embedded in
//! this crate are applied on connect. Callers never write SQL: each area
//! has its module ([`sync`], [`ledger`], [`mappings`], [`reconcile`],
//! [`cards`], [`outbox`], [`rules`], [`secrets`], [`auth`], [`jobs`],
//! [`audit`], [`imports`]) adding methods to [`Store`]. Below them, private
//! rooms that several share: the database layer (`db`, `sqlite_bulk`), the
//! ids rooms refer to each other by (`ids`), the leased queue (`queue`), a
//! card's state and tags (`card_state`, `tags`) and the vendor usage
//! ledger (`usage`).
//!
//! Storage conventions (both backends):
//! - **Amounts and quantities** are `TEXT` holding the decimal's canonical
//!   text (`Decimal`'s `Display`, which keeps the scale: `"12.50"`), read
//!   back with `Decimal::from_str`: exact, with the same scale, on both
//!   backends. Sums are done in Rust, never in SQL, so no value ever
//!   passes through a float.
//! - **Dates** (business dates, no zone) are `DATE` on PostgreSQL and
//!   `TEXT 'YYYY-MM-DD'` on SQLite; ranges are inclusive at both ends
//!   unless a doc comment says otherwise.
//! - **Instants** are UTC, truncated to microseconds on write:
//!   `TIMESTAMPTZ` on PostgreSQL, fixed-width `TEXT
//!   'YYYY-MM-DDTHH:MM:SS.ffffffZ'` on SQLite (so text order is time order).
//! - **JSON documents** (stats, card details, changes) are `TEXT`: the store
//!   never looks inside them, and the bytes read back are the bytes written.
//!
//! Atomicity: every method that writes more than one row does so in one
//! transaction (`BEGIN IMMEDIATE` on SQLite); if it fails, nothing it wrote
//! is kept and the previous state is intact. Each method's doc says what
//! is atomic and what is idempotent.

// Bottom up: the database layer and the types every room shares, then the
// rooms (each adds methods to `Store`; a room imports only rooms listed
// above it here), then the entry points that tie several together.
mod db;
mod error;
mod ids;
mod queue;
mod sqlite_bulk;
pub mod testing;

pub mod audit;
pub mod auth;
mod card_state;
pub mod cards;
pub mod imports;
pub mod jobs;
pub mod ledger;
pub mod mappings;
pub mod outbox;
pub mod reconcile;
pub mod rules;
pub mod secrets;
pub mod sync;
mod tags;
mod usage;
pub mod write_review;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use db::Backend;
use db::Db;
pub use error::{Result, StoreError};

/// How long a SQLite connection waits for another writer before failing
/// with "database is locked".
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections in a SQLite file store's pool (SQLite runs one writer at a
/// time; the others read).
pub const SQLITE_MAX_CONNECTIONS: u32 = 8;

/// Connections in a PostgreSQL store's pool, per process, by default.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// How long taking a connection from the pool may wait.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite page cache per connection, in KiB (the pragma takes a negative
/// number for KiB).
pub const SQLITE_CACHE_KIB: i64 = 64 * 1024;

/// Page size of a new SQLite database file, in bytes. Larger than SQLite's
/// 4,096 because the store's big writes append hundreds of thousands of
/// ~400-byte rows: fewer pages, B-tree splits and log frame headers per row
/// (about 7 % faster on the store_write bench). An existing file keeps
/// the page size it was created with.
pub const SQLITE_PAGE_SIZE: u32 = 8192;

/// The embedded migrations of each backend.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Pool settings; [`StoreOptions::default`] is what [`Store::connect`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Pool size; `None` uses [`SQLITE_MAX_CONNECTIONS`] or
    /// [`POSTGRES_MAX_CONNECTIONS`]. An in-memory SQLite store always has
    /// one connection (each connection would otherwise see its own empty
    /// database).
    pub max_connections: Option<u32>,
    /// Whether to apply the migrations on connect.
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            migrate: true,
        }
    }
}

/// The store: a connection pool to SQLite or PostgreSQL. Cheap to clone;
/// clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens the store at `url` and brings its schema up to date.
    ///
    /// - `sqlite://PATH` (or `sqlite:PATH`): a SQLite file, created with its
    ///   parent directory when missing; WAL journal, foreign keys on, busy
    ///   timeout [`SQLITE_BUSY_TIMEOUT`].
    /// - `sqlite::memory:`: a private in-memory database (tests).
    /// - `postgres://...` or `postgresql://...`: a PostgreSQL database.
    ///
    /// # Errors
    /// [`StoreError::Connect`] naming the URL (password redacted) and the
    /// problem; [`StoreError::Migrate`] when the schema cannot be applied.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with pool settings.
    ///
    /// # Errors
    /// As [`Store::connect`].
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self> {
        let connect_error = |problem: String| StoreError::Connect {
            url: error::redact_url(url),
            problem,
        };
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect =
                PgConnectOptions::from_str(url).map_err(|e| connect_error(e.to_string()))?;
            // One direct connection first: a wrong host or database fails
            // at once instead of after the pool's acquire timeout.
            let probe = <PgConnection as sqlx::Connection>::connect_with(&connect)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            let _ = sqlx::Connection::close(probe).await;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.unwrap_or(POSTGRES_MAX_CONNECTIONS))
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(connect)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            Db::Pg(pool)
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let memory = rest == ":memory:" || rest.is_empty();
            let base = SqliteConnectOptions::new()
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
            let (connect, pool_options) = if memory {
                (
                    base.in_memory(true),
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None),
                )
            } else {
                let path = PathBuf::from(rest);
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        connect_error(format!("cannot create directory {}: {e}", parent.display()))
                    })?;
                }
                (
                    base.filename(&path)
                        .page_size(SQLITE_PAGE_SIZE)
                        .pragma("wal_autocheckpoint", "0")
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal),
                    SqlitePoolOptions::new()
                        .max_connections(options.max_connections.unwrap_or(SQLITE_MAX_CONNECTIONS)),
                )
            };
            let pool = pool_options
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(connect)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            Db::Sqlite(pool, db::Checkpointer::new(!memory))
        } else {
            return Err(connect_error(
                "unsupported URL: use sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DATABASE"
                    .to_owned(),
            ));
        };
        let store = Self { db };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies the embedded migrations that are not applied yet. Safe to
    /// run from several processes at once on PostgreSQL (sqlx holds an
    /// advisory lock); idempotent.
    ///
    /// # Errors
    /// [`StoreError::Migrate`].
    pub async fn migrate(&self) -> Result<()> {
        let result = match &self.db {
            Db::Sqlite(pool, _) => SQLITE_MIGRATIONS.run(pool).await,
            Db::Pg(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        result.map_err(|e| StoreError::Migrate {
            problem: e.to_string(),
        })
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// On SQLite, copies everything committed in the write-ahead log into
    /// the database file and truncates the log, waiting for it (the store
    /// otherwise does this in the background after writes). A no-op on
    /// PostgreSQL and in-memory SQLite.
    ///
    /// # Errors
    /// A database error.
    pub async fn checkpoint(&self) -> Result<()> {
        if let Db::Sqlite(pool, checkpointer) = &self.db
            && checkpointer.enabled()
        {
            // A checkpoint already running (the background one after a
            // write) makes this one return at once with `busy` set, having
            // done nothing: wait for it and try again.
            let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
            loop {
                let busy: i64 = sqlx::query_scalar("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(pool)
                    .await
                    .map_err(|e| StoreError::from_sqlx("checkpoint", "(write-ahead log)", e))?;
                if busy == 0 {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::Database {
                        operation: "checkpoint",
                        table: "(write-ahead log)",
                        problem: "another connection kept the log busy".to_owned(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    /// Checkpoints a SQLite file's log into the database, then closes every
    /// connection; later calls fail.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(pool, checkpointer) => {
                checkpointer.finish(pool).await;
                pool.close().await;
            }
            Db::Pg(pool) => pool.close().await,
        }
    }
}

/// A fresh random id: 32 lower-case hex digits (128 random bits), e.g. for
/// a decision id.
///
/// # Errors
/// [`StoreError::Invalid`] when the operating system has no randomness to
/// give (practically never).
pub fn new_id() -> Result<String> {
    random_hex::<16>()
}

/// `N` random bytes as hex.
pub(crate) fn random_hex<const N: usize>() -> Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::invalid(
            "generate an id",
            format!("the operating system gave no random bytes: {e}"),
        )
    })?;
    Ok(hex::encode(bytes))
}

/// The SHA-256 of `text`, hex: how session ids, API tokens and push keys
/// are stored (they are long random strings, so a fast hash suffices), and
/// a rule version's checksum.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
