//! Connection pools and transactions of either backend: statements run on
//! a pool or inside a transaction, and SQLite's write-ahead log is
//! checkpointed in the background after writes.

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, Sqlite, Transaction};

use super::row::{Row, Wrap as _};
use super::sql::{Sql, pg_query, sqlite_query};
use crate::error::{Result, StoreError};

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
    /// The query plan of `q`, one line per step: `EXPLAIN QUERY PLAN` on
    /// SQLite; on PostgreSQL `EXPLAIN` with sequential scans and sorts
    /// priced out (`enable_seqscan`, `enable_sort` off), so on a test's
    /// small tables the plan shows whether an index can serve the query
    /// at all — at volume the planner may still rightly choose otherwise.
    #[cfg(test)]
    pub(crate) async fn explain(&self, q: Sql) -> Result<String> {
        let (operation, table) = (q.operation, q.table);
        let mut lines = Vec::new();
        match self {
            Db::Sqlite(..) => {
                let text = format!("EXPLAIN QUERY PLAN {}", q.text);
                let rows = self
                    .fetch_all(Sql {
                        text: text.into(),
                        ..q
                    })
                    .await?;
                for row in rows {
                    lines.push(row.text("detail")?);
                }
            }
            Db::Pg(_) => {
                let mut tx = self.begin_read(operation).await?;
                for setting in [
                    "SET LOCAL enable_seqscan = off",
                    "SET LOCAL enable_sort = off",
                ] {
                    tx.execute(super::sql(operation, table, setting)).await?;
                }
                let text = format!("EXPLAIN {}", q.text);
                for row in tx
                    .fetch_all(Sql {
                        text: text.into(),
                        ..q
                    })
                    .await?
                {
                    lines.push(row.text("QUERY PLAN")?);
                }
                tx.commit(operation).await?;
            }
        }
        Ok(lines.join("\n"))
    }

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

    /// Hands each row of a query to `each` as it arrives, without holding
    /// the result set: what reads a month of usage (millions of rows) in
    /// the memory of one row at a time. `each` failing stops the query.
    pub(crate) async fn fetch_each(
        &mut self,
        q: Sql,
        mut each: impl FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        use futures::TryStreamExt as _;
        let (operation, table) = (q.operation, q.table);
        let error = |e| StoreError::from_sqlx(operation, table, e);
        match self {
            Tx::Sqlite(t, _) => {
                let mut rows = sqlite_query(&q.text, q.args).fetch(&mut **t);
                while let Some(row) = rows.try_next().await.map_err(error)? {
                    each(row.wrap(table))?;
                }
            }
            Tx::Pg(t) => {
                let mut rows = pg_query(&q.text, q.args).fetch(&mut **t);
                while let Some(row) = rows.try_next().await.map_err(error)? {
                    each(row.wrap(table))?;
                }
            }
        }
        Ok(())
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
}
