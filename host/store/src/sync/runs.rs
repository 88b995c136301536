//! Sync runs: recorded `running` when a sync starts and finished exactly
//! once (succeeded with its data, or failed), and each source's health.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::db::{Row, Tx, enum_text, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::SyncRunId;

/// What a sync reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// The PSA (companies, contracts, lines).
    Psa,
    /// A vendor integration (accounts, usage).
    Vendor,
}

/// Where a sync run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Started, not finished.
    Running,
    /// Finished; its data is the current state.
    Succeeded,
    /// Finished with an error; it changed no data.
    Failed,
}

/// What a sync cost, kept as JSON on the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncStats {
    /// Export calls made (retries included).
    pub calls: u64,
    /// Pages received.
    pub pages: u64,
    /// HTTP requests the connector sent.
    pub requests: u64,
    /// Calls retried.
    pub retries: u64,
    /// Records received.
    pub records: u64,
    /// Milliseconds waited on rate limits.
    pub rate_limit_wait_ms: u64,
    /// Milliseconds of back-off after transient failures.
    pub backoff_wait_ms: u64,
    /// Milliseconds inside WebAssembly.
    pub wasm_time_ms: u64,
    /// Milliseconds in host calls (HTTP).
    pub host_time_ms: u64,
    /// Wall milliseconds of the whole sync.
    pub wall_ms: u64,
}

/// One sync run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// Its id (ascending in start order).
    pub id: SyncRunId,
    /// PSA or vendor.
    pub kind: SyncKind,
    /// The PSA plugin id, or the vendor integration id.
    pub source: String,
    /// The business date the data is taken at.
    pub as_of: NaiveDate,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Running, succeeded or failed.
    pub status: SyncStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// What it cost.
    pub stats: SyncStats,
}

/// A source's sync health for the UI's badges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHealth {
    /// PSA or vendor.
    pub kind: SyncKind,
    /// The source.
    pub source: String,
    /// The latest run, whatever its status.
    pub last_run: SyncRun,
    /// The latest successful run: the age of the data shown.
    pub last_success: Option<SyncRun>,
}

pub(super) const RUN_COLUMNS: &str =
    "id, kind, source, as_of, started_at, finished_at, status, error, stats";

pub(super) fn run_from_row(row: &Row) -> Result<SyncRun> {
    Ok(SyncRun {
        id: SyncRunId(row.int("id")?),
        kind: row.enum_value("kind", "psa or vendor")?,
        source: row.text("source")?,
        as_of: row.date("as_of")?,
        started_at: row.instant("started_at")?,
        finished_at: row.opt_instant("finished_at")?,
        status: row.enum_value("status", "running, succeeded or failed")?,
        error: row.opt_text("error")?,
        stats: row.json("stats")?,
    })
}

/// Refuses data in which an id appears twice.
pub(super) fn check_unique<'a>(
    operation: &'static str,
    what: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<()> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(StoreError::invalid(
                operation,
                format!("{what} id {id:?} appears twice in the data; ids must be unique"),
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Records the start of a sync: a `running` run. Not idempotent: each
    /// call is a new run.
    ///
    /// # Errors
    /// A database error.
    pub async fn begin_sync(
        &self,
        kind: SyncKind,
        source: &str,
        as_of: NaiveDate,
        started_at: DateTime<Utc>,
    ) -> Result<SyncRunId> {
        let row = self
            .db
            .fetch_one(
                sql(
                    "begin sync",
                    "sync_runs",
                    "INSERT INTO sync_runs (kind, source, as_of, started_at, status, stats) \
                     VALUES ($1, $2, $3, $4, 'running', '{}') RETURNING id",
                )
                .bind(enum_text(&kind))
                .bind(source)
                .bind(as_of)
                .bind(started_at),
            )
            .await?;
        Ok(SyncRunId(row.int("id")?))
    }

    /// Marks a running sync failed with `error`. Writes only the run row:
    /// the data of the previous successful sync stays current.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] if the run is not running (already
    /// finished); [`StoreError::NotFound`] for an unknown run.
    pub async fn fail_sync(
        &self,
        run: SyncRunId,
        error: &str,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record failed sync";
        let n = self
            .db
            .execute(
                sql(
                    OP,
                    "sync_runs",
                    "UPDATE sync_runs SET status = 'failed', error = $2, stats = $3, finished_at = $4 \
                     WHERE id = $1 AND status = 'running'",
                )
                .bind(run)
                .bind(error)
                .bind(json_text(OP, stats)?)
                .bind(finished_at),
            )
            .await?;
        if n == 0 {
            let existing = self.sync_run(run).await?;
            return Err(StoreError::invalid(
                OP,
                format!(
                    "sync run {run} already finished ({:?}); a run is finished once",
                    existing.status
                ),
            ));
        }
        Ok(())
    }

    /// Marks every run still `running` that started before `started_before`
    /// failed (its process stopped); returns how many.
    ///
    /// # Errors
    /// A database error.
    pub async fn abandon_running_syncs(
        &self,
        started_before: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    ) -> Result<u64> {
        self.db
            .execute(
                sql(
                    "abandon running syncs",
                    "sync_runs",
                    "UPDATE sync_runs SET status = 'failed', finished_at = $2, \
                     error = 'the process running this sync stopped before it finished' \
                     WHERE status = 'running' AND started_at < $1",
                )
                .bind(started_before)
                .bind(finished_at),
            )
            .await
    }

    /// One sync run.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn sync_run(&self, run: SyncRunId) -> Result<SyncRun> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read sync run",
                    "sync_runs",
                    format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = $1"),
                )
                .bind(run),
            )
            .await?
            .ok_or_else(|| StoreError::not_found("read sync run", "sync run", run))?;
        run_from_row(&row)
    }

    /// The latest `limit` runs, newest first, optionally of one kind and
    /// source.
    ///
    /// # Errors
    /// A database error.
    pub async fn sync_runs(
        &self,
        kind: Option<SyncKind>,
        source: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SyncRun>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list sync runs",
                    "sync_runs",
                    format!(
                        "SELECT {RUN_COLUMNS} FROM sync_runs \
                         WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR source = $2) \
                         ORDER BY id DESC LIMIT $3"
                    ),
                )
                .bind(kind.map(|k| enum_text(&k)))
                .bind(source)
                .bind(i64::from(limit)),
            )
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The latest successful run of `kind` from `source`.
    ///
    /// # Errors
    /// A database error.
    pub async fn last_successful_sync(
        &self,
        kind: SyncKind,
        source: &str,
    ) -> Result<Option<SyncRun>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read last successful sync",
                    "sync_runs",
                    format!(
                        "SELECT {RUN_COLUMNS} FROM sync_runs \
                         WHERE kind = $1 AND source = $2 AND status = 'succeeded' \
                         ORDER BY id DESC LIMIT 1"
                    ),
                )
                .bind(enum_text(&kind))
                .bind(source),
            )
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Per source that ever synced: its latest run and latest successful
    /// run, sorted by kind and source.
    ///
    /// # Errors
    /// A database error.
    pub async fn sync_health(&self) -> Result<Vec<SourceHealth>> {
        let rows = self
            .db
            .fetch_all(sql(
                "read sync health",
                "sync_runs",
                format!(
                    "SELECT {RUN_COLUMNS} FROM sync_runs r WHERE id IN ( \
                       SELECT MAX(id) FROM sync_runs GROUP BY kind, source \
                       UNION SELECT MAX(id) FROM sync_runs WHERE status = 'succeeded' GROUP BY kind, source) \
                     ORDER BY kind, source, id"
                ),
            ))
            .await?;
        let mut out: Vec<SourceHealth> = Vec::new();
        for row in &rows {
            let run = run_from_row(row)?;
            match out.last_mut() {
                Some(h) if h.kind == run.kind && h.source == run.source => {
                    // Rows come in id order: the later one is the latest run.
                    let earlier = std::mem::replace(&mut h.last_run, run.clone());
                    if earlier.status == SyncStatus::Succeeded {
                        h.last_success = Some(earlier);
                    }
                    if run.status == SyncStatus::Succeeded {
                        h.last_success = Some(run);
                    }
                }
                _ => out.push(SourceHealth {
                    kind: run.kind,
                    source: run.source.clone(),
                    last_success: (run.status == SyncStatus::Succeeded).then(|| run.clone()),
                    last_run: run,
                }),
            }
        }
        Ok(out)
    }

    /// Checks that `run` is a running sync of `kind` and that no later sync
    /// of the same data has succeeded (an older pull must not overwrite a
    /// newer one). Returns the run's source and as-of date.
    pub(super) async fn claim_run_for_completion(
        tx: &mut Tx,
        operation: &'static str,
        run: SyncRunId,
        kind: SyncKind,
    ) -> Result<(String, NaiveDate)> {
        let row = tx
            .fetch_optional(
                sql(
                    operation,
                    "sync_runs",
                    "SELECT kind, source, status, as_of FROM sync_runs WHERE id = $1",
                )
                .bind(run),
            )
            .await?
            .ok_or_else(|| StoreError::not_found(operation, "sync run", run))?;
        let run_kind: SyncKind = row.enum_value("kind", "psa or vendor")?;
        let status: SyncStatus = row.enum_value("status", "running, succeeded or failed")?;
        let source = row.text("source")?;
        if run_kind != kind {
            return Err(StoreError::invalid(
                operation,
                format!("sync run {run} is a {run_kind:?} sync, not a {kind:?} sync"),
            ));
        }
        if status != SyncStatus::Running {
            return Err(StoreError::invalid(
                operation,
                format!("sync run {run} already finished ({status:?}); a run is finished once"),
            ));
        }
        // The PSA state is one for the installation; vendor data is per
        // vendor integration.
        let newer = tx
            .fetch_optional(
                sql(
                    operation,
                    "sync_runs",
                    "SELECT id FROM sync_runs WHERE kind = $1 AND status = 'succeeded' AND id > $2 \
                     AND ($1 = 'psa' OR source = $3) ORDER BY id DESC LIMIT 1",
                )
                .bind(enum_text(&kind))
                .bind(run)
                .bind(source.as_str()),
            )
            .await?;
        if let Some(newer) = newer {
            return Err(StoreError::invalid(
                operation,
                format!(
                    "sync run {} started later and already succeeded; the older run {run} must not overwrite its data",
                    newer.int("id")?
                ),
            ));
        }
        Ok((source, row.date("as_of")?))
    }

    /// Marks `run` failed after `error` (best effort: a failure to do so
    /// is logged, the original error is what the caller returns).
    pub(super) async fn fail_after_error(
        &self,
        run: SyncRunId,
        error: &StoreError,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) {
        if let Err(also) = self
            .fail_sync(run, &error.to_string(), stats, finished_at)
            .await
        {
            tracing::warn!(%run, error = %also, "could not mark the sync run failed");
        }
    }

    /// Marks a running `run` succeeded with its stats, inside `tx`.
    pub(super) async fn mark_succeeded(
        tx: &mut Tx,
        operation: &'static str,
        run: SyncRunId,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        tx.execute(
            sql(
                operation,
                "sync_runs",
                "UPDATE sync_runs SET status = 'succeeded', error = NULL, stats = $2, finished_at = $3 \
                 WHERE id = $1 AND status = 'running'",
            )
            .bind(run)
            .bind(json_text(operation, stats)?)
            .bind(finished_at),
        )
        .await?;
        Ok(())
    }
}
