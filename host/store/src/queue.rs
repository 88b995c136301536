//! The one leased-queue mechanism behind the store's two queues (the job
//! queue in `jobs`, the write-back outbox in `outbox`): each describes its
//! table with a [`Queue`] and keeps its typed API as thin wrappers over
//! the operations here.
//!
//! A row is *waiting* until its due instant, then *leased* to one worker
//! until its lease ends. The worker extends the lease while it works and
//! finally finishes the row (a final status), retries it (waiting again
//! from a later instant) or fails it; each of those checks that the worker
//! still holds the row and is [`StoreError::LeaseLost`] otherwise. A
//! worker that dies leaves its row leased; once the lease expires, the
//! next claim takes it over.
//!
//! Claiming is safe with any number of workers and processes:
//! - PostgreSQL: `UPDATE t ... WHERE id = (SELECT id ... FOR UPDATE SKIP
//!   LOCKED LIMIT 1) RETURNING ...` — concurrent claimers skip a row
//!   another has locked, and a row another has just claimed no longer
//!   matches when re-checked.
//! - SQLite: the same single `UPDATE ... RETURNING` statement; SQLite takes
//!   the database's write lock before the statement reads, so claims are
//!   serialized and each row is claimed by exactly one.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::{Backend, Db, Row, Sql, Value, sql};
use crate::error::{Result, StoreError};

/// A leased queue's table: which columns hold its status, lease, attempts
/// and due instant, and what its states are called.
#[derive(Debug)]
pub(crate) struct Queue {
    /// The table.
    pub(crate) table: &'static str,
    /// A row of it, for errors ("job", "outbox entry").
    pub(crate) what: &'static str,
    /// Its id column.
    pub(crate) id: &'static str,
    /// Its status column.
    pub(crate) status: &'static str,
    /// The status of a row waiting for its due instant.
    pub(crate) waiting: &'static str,
    /// The status of a row leased to a worker.
    pub(crate) leased: &'static str,
    /// The status of a row that failed for good.
    pub(crate) failed: &'static str,
    /// The column naming the worker holding the lease.
    pub(crate) owner: &'static str,
    /// The column holding the lease's end.
    pub(crate) until: &'static str,
    /// The claim counter.
    pub(crate) attempts: &'static str,
    /// The condition under which a row may be claimed again (jobs: while
    /// attempts are left; `1 = 1` for no limit).
    pub(crate) attempts_left: &'static str,
    /// The due instant of a waiting row.
    pub(crate) due: &'static str,
    /// The last error.
    pub(crate) error: &'static str,
    /// When the row finished or failed.
    pub(crate) finished: &'static str,
    /// A column set to the instant of every change, if any.
    pub(crate) touched: Option<&'static str>,
    /// Extra assignments of a claim, where `$3` is now (jobs keep their
    /// first start).
    pub(crate) on_claim: &'static str,
    /// The columns a claim returns.
    pub(crate) columns: &'static str,
}

/// An `UPDATE` built one assignment at a time, numbering placeholders as
/// values are bound.
struct Update {
    sets: Vec<String>,
    args: Vec<Value>,
}

impl Update {
    fn new() -> Self {
        Self {
            sets: Vec::new(),
            args: Vec::new(),
        }
    }

    /// The placeholder of `value`, bound next.
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    fn set(&mut self, column: &str, expression: impl AsRef<str>) {
        self.sets
            .push(format!("{column} = {}", expression.as_ref()));
    }
}

impl Queue {
    /// `now + lease`, saturating to an error naming the lease.
    fn lease_end(
        &self,
        operation: &'static str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<DateTime<Utc>> {
        chrono::Duration::from_std(lease)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| StoreError::invalid(operation, format!("lease {lease:?} is too long")))
    }

    /// Claims the next row due at `now` — waiting with its due instant
    /// passed, or leased with an expired lease and attempts left — for
    /// `worker` until `now + lease`, counting an attempt; its
    /// [`Queue::columns`]. Only rows whose `filter` column is one of the
    /// values are considered, when given. Each due row goes to exactly one
    /// concurrent claimer (see the module docs).
    pub(crate) async fn claim(
        &self,
        db: &Db,
        operation: &'static str,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
        filter: Option<(&'static str, &[&str])>,
    ) -> Result<Option<Row>> {
        let Queue {
            table,
            id,
            status,
            waiting,
            leased,
            owner,
            until,
            attempts,
            attempts_left,
            due,
            on_claim,
            columns,
            ..
        } = self;
        let lock = match db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // $1 worker, $2 lease end, $3 now; then the filter's values.
        let mut args = vec![
            Value::from(worker),
            Value::from(self.lease_end(operation, now, lease)?),
            Value::from(now),
        ];
        let only = match filter {
            Some((column, values)) => {
                let first = args.len() + 1;
                args.extend(values.iter().map(|v| Value::from(*v)));
                format!(
                    "{column} IN ({}) AND ",
                    crate::db::placeholders(first, values.len())
                )
            }
            None => String::new(),
        };
        let touched = self
            .touched
            .map(|c| format!(", {c} = $3"))
            .unwrap_or_default();
        let on_claim = if on_claim.is_empty() {
            String::new()
        } else {
            format!(", {on_claim}")
        };
        let text = format!(
            "UPDATE {table} SET {status} = '{leased}', {owner} = $1, {until} = $2, \
             {attempts} = {attempts} + 1{touched}{on_claim} \
             WHERE {id} = (SELECT {id} FROM {table} \
               WHERE {only}(({status} = '{waiting}' AND {due} <= $3) \
                  OR ({status} = '{leased}' AND {until} <= $3 AND {attempts_left})) \
               ORDER BY {due}, {id} LIMIT 1{lock}) \
             RETURNING {columns}"
        );
        db.fetch_optional(sql(operation, table, text).bind_all(args))
            .await
    }

    /// Row `id` as held by `worker`, for an `operation` that needs the
    /// lease.
    pub(crate) fn held<'a>(
        &'a self,
        operation: &'static str,
        id: i64,
        worker: &'a str,
    ) -> Held<'a> {
        Held {
            queue: self,
            operation,
            id,
            worker,
        }
    }

    /// Fails leased rows whose lease expired at `now` with no attempts
    /// left (their worker died on the last attempt), keeping their error
    /// or else `reason`; how many.
    pub(crate) async fn recover_expired(
        &self,
        db: &Db,
        operation: &'static str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut update = Update::new();
        update.set(self.status, format!("'{}'", self.failed));
        let at = update.bind(now);
        update.set(self.finished, &at);
        let r = update.bind(reason);
        update.set(self.error, format!("COALESCE({}, {r})", self.error));
        self.release(&mut update);
        self.touch(&mut update, now);
        let text = format!(
            "UPDATE {table} SET {sets} WHERE {status} = '{leased}' AND {until} <= {at} \
             AND NOT ({attempts_left})",
            table = self.table,
            sets = update.sets.join(", "),
            status = self.status,
            leased = self.leased,
            until = self.until,
            attempts_left = self.attempts_left,
        );
        db.execute(sql(operation, self.table, text).bind_all(update.args))
            .await
    }

    /// Clears the lease.
    fn release(&self, update: &mut Update) {
        update.set(self.owner, "NULL");
        update.set(self.until, "NULL");
    }

    /// Stamps the change's instant, when the table keeps one.
    fn touch(&self, update: &mut Update, now: DateTime<Utc>) {
        if let Some(column) = self.touched {
            let p = update.bind(now);
            update.set(column, p);
        }
    }
}

/// One row of a [`Queue`] that a worker believes it holds: every change
/// through it applies only while the worker still holds the lease.
pub(crate) struct Held<'a> {
    queue: &'a Queue,
    operation: &'static str,
    id: i64,
    worker: &'a str,
}

impl Held<'_> {
    /// Extends the lease to `now + lease`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds the row.
    pub(crate) async fn extend(&self, db: &Db, lease: Duration, now: DateTime<Utc>) -> Result<()> {
        let q = self.queue;
        let mut update = Update::new();
        let end = update.bind(q.lease_end(self.operation, now, lease)?);
        update.set(q.until, end);
        q.touch(&mut update, now);
        let n = db.execute(self.update(update, None)).await?;
        self.check(n)
    }

    /// The statement finishing the row with the final `status` and the
    /// extra `sets` (column, value), keeping `error` (clearing it for
    /// `None`) and releasing the lease; returning `returning` when given.
    /// Run it alone or inside a transaction: no row changed (or returned)
    /// means the lease was lost ([`Held::check`], [`Held::lost`]).
    pub(crate) fn finish(
        &self,
        status: &'static str,
        sets: Vec<(&'static str, Value)>,
        error: Option<&str>,
        now: DateTime<Utc>,
        returning: Option<&str>,
    ) -> Sql {
        let q = self.queue;
        let mut update = Update::new();
        update.set(q.status, format!("'{status}'"));
        for (column, value) in sets {
            let p = update.bind(value);
            update.set(column, p);
        }
        let e = update.bind(error);
        update.set(q.error, e);
        let at = update.bind(now);
        update.set(q.finished, at);
        q.release(&mut update);
        q.touch(&mut update, now);
        self.update(update, returning)
    }

    /// Records a failed attempt: with `retry_at` and attempts left, the
    /// row waits again until then; otherwise it fails for good. The error
    /// is kept; the row's new status column is returned.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds the row.
    pub(crate) async fn retry(
        &self,
        db: &Db,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Row> {
        let q = self.queue;
        let mut update = Update::new();
        let e = update.bind(error);
        update.set(q.error, e);
        let at = update.bind(Value::Instant(retry_at.map(crate::db::instant)));
        let again = format!("{at} IS NOT NULL AND {}", q.attempts_left);
        let (waiting, failed, due) = (q.waiting, q.failed, q.due);
        update.set(
            q.status,
            format!("CASE WHEN {again} THEN '{waiting}' ELSE '{failed}' END"),
        );
        update.set(due, format!("CASE WHEN {again} THEN {at} ELSE {due} END"));
        let now_p = update.bind(now);
        update.set(
            q.finished,
            format!("CASE WHEN {again} THEN NULL ELSE {now_p} END"),
        );
        q.release(&mut update);
        q.touch(&mut update, now);
        db.fetch_optional(self.update(update, Some(q.status)))
            .await?
            .ok_or_else(|| self.lost())
    }

    /// `Ok` when a statement changed the one row the worker held,
    /// [`StoreError::LeaseLost`] otherwise.
    pub(crate) fn check(&self, rows: u64) -> Result<()> {
        if rows == 1 { Ok(()) } else { Err(self.lost()) }
    }

    /// The error of a worker that no longer holds the row.
    pub(crate) fn lost(&self) -> StoreError {
        StoreError::LeaseLost {
            operation: self.operation,
            what: self.queue.what,
            id: self.id,
            worker: self.worker.to_owned(),
        }
    }

    /// `update` applied to the row only while the worker holds its lease.
    fn update(&self, mut update: Update, returning: Option<&str>) -> Sql {
        let q = self.queue;
        let id = update.bind(self.id);
        let worker = update.bind(self.worker);
        let returning = returning
            .map(|r| format!(" RETURNING {r}"))
            .unwrap_or_default();
        let text = format!(
            "UPDATE {table} SET {sets} WHERE {id_column} = {id} AND {status} = '{leased}' \
             AND {owner} = {worker}{returning}",
            table = q.table,
            sets = update.sets.join(", "),
            id_column = q.id,
            status = q.status,
            leased = q.leased,
            owner = q.owner,
        );
        sql(self.operation, q.table, text).bind_all(update.args)
    }
}
