//! Sync runs, the PSA's current state, and vendor data (integrations,
//! accounts, usage observations, pushed usage).
//!
//! A sync is recorded in two steps: [`Store::begin_sync`] writes a
//! `running` row (so the UI shows it), then exactly one of
//! [`Store::complete_psa_sync`], [`Store::complete_vendor_sync`] or
//! [`Store::fail_sync`] finishes it. Completing replaces the current state
//! and appends to the ledger in ONE transaction with marking the run
//! succeeded; a failure keeps the previous state, which keeps the time of
//! the sync that wrote it (stale data is never shown as fresh).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::model::{
    AccountRef, Attributes, BillingCycle, CatalogItem, Company, CompanyId, Contract, ContractId,
    ServiceLine, UsageObservation, UsageSource, VendorAccount, VendorId, VendorIntegration,
};

use crate::Store;
use crate::db::{Row, Tx, enum_text, id_type, json_text, sql};
use crate::error::{Result, StoreError};

id_type!(
    /// A sync run's id.
    SyncRunId
);

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

/// Everything a PSA sync read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaData {
    /// Companies.
    pub companies: Vec<Company>,
    /// Contracts.
    pub contracts: Vec<Contract>,
    /// Recurring service lines.
    pub lines: Vec<ServiceLine>,
    /// Catalogue prices (may be empty).
    pub catalog: Vec<CatalogItem>,
}

/// The PSA's current state and the sync that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaState {
    /// The successful sync the data comes from; `None` before the first.
    pub sync: Option<SyncRun>,
    /// The data, sorted by id.
    pub data: PsaData,
}

/// Everything a vendor sync read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorData {
    /// The vendor's accounts.
    pub accounts: Vec<VendorAccount>,
    /// Usage of every account.
    pub usage: Vec<UsageObservation>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The unit count was set (new, or different from before).
    Set,
    /// The same value was already set: nothing changed.
    Unchanged,
}

const RUN_COLUMNS: &str = "id, kind, source, as_of, started_at, finished_at, status, error, stats";

pub(crate) fn run_from_row(row: &Row) -> Result<SyncRun> {
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

fn check_unique<'a>(
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
    async fn claim_run_for_completion(
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

    /// Completes a running PSA sync: in ONE transaction, replaces the
    /// current companies, contracts, lines and catalogue with `data`
    /// (what vanished is deleted), appends every line's figures to the
    /// ledger, and marks the run succeeded.
    ///
    /// If anything fails (bad data, a database error), nothing of it is
    /// kept: the previous state and its sync time stay current, and the run
    /// is marked failed with the error (best effort) before the error is
    /// returned.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for duplicate ids or a run that is not a
    /// running PSA sync (or is older than a sync that already succeeded);
    /// database errors.
    pub async fn complete_psa_sync(
        &self,
        run: SyncRunId,
        data: &PsaData,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record PSA sync";
        let result = self.write_psa_sync(OP, run, data, stats, finished_at).await;
        if let Err(error) = &result {
            self.fail_after_error(run, error, stats, finished_at).await;
        }
        result
    }

    async fn fail_after_error(
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

    async fn write_psa_sync(
        &self,
        operation: &'static str,
        run: SyncRunId,
        data: &PsaData,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        check_unique(
            operation,
            "company",
            data.companies.iter().map(|c| c.id.as_str()),
        )?;
        check_unique(
            operation,
            "contract",
            data.contracts.iter().map(|c| c.id.as_str()),
        )?;
        check_unique(
            operation,
            "service line",
            data.lines.iter().map(|l| l.id.as_str()),
        )?;
        check_unique(
            operation,
            "catalogue product",
            data.catalog.iter().map(|c| c.product_identifier.as_str()),
        )?;
        let mut tx = self.db.begin(operation).await?;
        let (_, as_of) =
            Self::claim_run_for_completion(&mut tx, operation, run, SyncKind::Psa).await?;
        for table in ["psa_lines", "psa_contracts", "psa_companies", "psa_catalog"] {
            tx.execute(sql(operation, table, format!("DELETE FROM {table}")))
                .await?;
        }
        let items: Vec<_> = data.companies.iter().collect();
        tx.insert_all(
            operation,
            "psa_companies",
            &[
                "id",
                "name",
                "identifier",
                "domains",
                "status",
                "account_links",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let c = items[i];

                w.text(c.id.as_str());
                w.text(c.name.as_str());
                w.value(c.identifier.clone());
                w.value(json_text(operation, &c.domains)?);
                w.value(enum_text(&c.status));
                w.value(json_text(operation, &c.account_links)?);
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let items: Vec<_> = data.contracts.iter().collect();
        tx.insert_all(
            operation,
            "psa_contracts",
            &[
                "id",
                "company_id",
                "name",
                "contract_type",
                "status",
                "billing_cycle",
                "start_date",
                "end_date",
                "timing",
                "prorate",
                "posted_through",
                "cycle_anchor",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let c = items[i];

                w.text(c.id.as_str());
                w.text(c.company_id.as_str());
                w.text(c.name.as_str());
                w.text(c.contract_type.as_str());
                w.value(enum_text(&c.status));
                w.value(json_text(operation, &c.billing_cycle)?);
                w.value(c.start_date);
                w.value(c.end_date);
                w.value(enum_text(&c.timing));
                w.value(c.prorate);
                w.value(c.posted_through);
                w.value(
                    c.cycle_anchor
                        .as_ref()
                        .map(|a| json_text(operation, a))
                        .transpose()?,
                );
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let items: Vec<_> = data.lines.iter().collect();
        tx.insert_all(
            operation,
            "psa_lines",
            &[
                "id",
                "contract_id",
                "product_id",
                "product_identifier",
                "description",
                "quantity",
                "unit_price",
                "unit_cost",
                "effective_date",
                "cancelled_date",
                "billable",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let l = items[i];

                w.text(l.id.as_str());
                w.text(l.contract_id.as_str());
                w.text(l.product_id.as_str());
                w.text(l.product_identifier.as_str());
                w.text(l.description.as_str());
                w.decimal(l.quantity);
                w.decimal(l.unit_price);
                w.decimal(l.unit_cost);
                w.value(l.effective_date);
                w.value(l.cancelled_date);
                w.value(l.billable);
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let items: Vec<_> = data.catalog.iter().collect();
        tx.insert_all(
            operation,
            "psa_catalog",
            &[
                "product_identifier",
                "description",
                "unit_price",
                "unit_cost",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let c = items[i];

                w.text(c.product_identifier.as_str());
                w.text(c.description.as_str());
                w.decimal(c.unit_price);
                w.decimal(c.unit_cost);
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let company_of: HashMap<&str, &CompanyId> = data
            .contracts
            .iter()
            .map(|c| (c.id.as_str(), &c.company_id))
            .collect();
        let items: Vec<_> = data.lines.iter().collect();
        tx.insert_all(
            operation,
            "ledger_psa_lines",
            &[
                "sync_run_id",
                "as_of",
                "line_id",
                "contract_id",
                "company_id",
                "product_identifier",
                "quantity",
                "unit_price",
                "unit_cost",
            ],
            items.len(),
            |i, w| {
                let l = items[i];

                w.value(run);
                w.value(as_of);
                w.text(l.id.as_str());
                w.text(l.contract_id.as_str());
                w.value(company_of.get(l.contract_id.as_str()).map(|c| c.as_str()));
                w.text(l.product_identifier.as_str());
                w.decimal(l.quantity);
                w.decimal(l.unit_price);
                w.decimal(l.unit_cost);
                Ok(())
            },
        )
        .await?;
        Self::mark_succeeded(&mut tx, operation, run, stats, finished_at).await?;
        tx.commit(operation).await
    }

    async fn mark_succeeded(
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

    /// The PSA's current state (sorted by id) and the successful sync that
    /// wrote it. Read in one transaction, so it is never half of one sync
    /// and half of another.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn psa_state(&self) -> Result<PsaState> {
        const OP: &str = "read PSA state";
        let mut tx = self.db.begin_read(OP).await?;
        let sync = tx
            .fetch_optional(sql(
                OP,
                "sync_runs",
                format!(
                    "SELECT {RUN_COLUMNS} FROM sync_runs WHERE kind = 'psa' AND status = 'succeeded' \
                     ORDER BY id DESC LIMIT 1"
                ),
            ))
            .await?
            .as_ref()
            .map(run_from_row)
            .transpose()?;
        let companies = tx
            .fetch_all(sql(
                OP,
                "psa_companies",
                "SELECT id, name, identifier, domains, status, account_links FROM psa_companies ORDER BY id",
            ))
            .await?
            .iter()
            .map(|r| {
                Ok(Company {
                    id: r.text("id")?.into(),
                    name: r.text("name")?,
                    identifier: r.opt_text("identifier")?,
                    domains: r.json("domains")?,
                    status: r.enum_value("status", "active or inactive")?,
                    account_links: r.json::<Vec<AccountRef>>("account_links")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let contracts = tx
            .fetch_all(sql(
                OP,
                "psa_contracts",
                "SELECT id, company_id, name, contract_type, status, billing_cycle, start_date, end_date, \
                 timing, prorate, posted_through, cycle_anchor FROM psa_contracts ORDER BY id",
            ))
            .await?
            .iter()
            .map(|r| {
                Ok(Contract {
                    id: ContractId::from(r.text("id")?),
                    company_id: r.text("company_id")?.into(),
                    name: r.text("name")?,
                    contract_type: r.text("contract_type")?,
                    status: r.enum_value("status", "a contract status")?,
                    billing_cycle: r.json::<BillingCycle>("billing_cycle")?,
                    start_date: r.opt_date("start_date")?,
                    end_date: r.opt_date("end_date")?,
                    timing: r.enum_value("timing", "advance or arrears")?,
                    prorate: r.bool("prorate")?,
                    posted_through: r.opt_date("posted_through")?,
                    cycle_anchor: r.opt_json("cycle_anchor")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lines = tx
            .fetch_all(sql(
                OP,
                "psa_lines",
                "SELECT id, contract_id, product_id, product_identifier, description, quantity, unit_price, \
                 unit_cost, effective_date, cancelled_date, billable FROM psa_lines ORDER BY id",
            ))
            .await?
            .iter()
            .map(line_from_row)
            .collect::<Result<Vec<_>>>()?;
        let catalog = tx
            .fetch_all(sql(
                OP,
                "psa_catalog",
                "SELECT product_identifier, description, unit_price, unit_cost FROM psa_catalog \
                 ORDER BY product_identifier",
            ))
            .await?
            .iter()
            .map(|r| {
                Ok(CatalogItem {
                    product_identifier: r.text("product_identifier")?.into(),
                    description: r.text("description")?,
                    unit_price: r.decimal("unit_price")?,
                    unit_cost: r.decimal("unit_cost")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit(OP).await?;
        Ok(PsaState {
            sync,
            data: PsaData {
                companies,
                contracts,
                lines,
                catalog,
            },
        })
    }

    // ------------------------------------------------------------ vendors

    /// Creates or updates a vendor integration (name and source).
    /// Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn upsert_vendor_integration(
        &self,
        vendor: &VendorIntegration,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (kind, reference) = match &vendor.source {
            UsageSource::Plugin(id) => ("plugin", Some(id.as_str())),
            UsageSource::Push => ("push", None),
            UsageSource::Csv(profile) => ("csv", Some(profile.as_str())),
        };
        self.db
            .execute(
                sql(
                    "save vendor integration",
                    "vendor_integrations",
                    "INSERT INTO vendor_integrations (id, name, source_kind, source_ref, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                     name = excluded.name, source_kind = excluded.source_kind, \
                     source_ref = excluded.source_ref, updated_at = excluded.updated_at",
                )
                .bind(vendor.id.as_str())
                .bind(vendor.name.as_str())
                .bind(kind)
                .bind(reference)
                .bind(at),
            )
            .await?;
        Ok(())
    }

    /// Every vendor integration, by id.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn vendor_integrations(&self) -> Result<Vec<VendorIntegration>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list vendor integrations",
                "vendor_integrations",
                "SELECT id, name, source_kind, source_ref FROM vendor_integrations ORDER BY id",
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let reference = r.opt_text("source_ref")?.unwrap_or_default();
                let source = match r.text("source_kind")?.as_str() {
                    "plugin" => UsageSource::Plugin(reference),
                    "push" => UsageSource::Push,
                    _ => UsageSource::Csv(reference),
                };
                Ok(VendorIntegration {
                    id: r.text("id")?.into(),
                    name: r.text("name")?,
                    source,
                })
            })
            .collect()
    }

    /// The accounts of `vendor` (or of every vendor), sorted by vendor and
    /// id.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn vendor_accounts(&self, vendor: Option<&VendorId>) -> Result<Vec<VendorAccount>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list vendor accounts",
                    "vendor_accounts",
                    "SELECT vendor_id, id, name, domains FROM vendor_accounts \
                     WHERE ($1 IS NULL OR vendor_id = $1) ORDER BY vendor_id, id",
                )
                .bind(vendor.map(|v| v.as_str())),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(VendorAccount {
                    vendor: r.text("vendor_id")?.into(),
                    id: r.text("id")?.into(),
                    name: r.text("name")?,
                    domains: r.json("domains")?,
                })
            })
            .collect()
    }

    /// Completes a running vendor sync (its source is the vendor
    /// integration id): in ONE transaction, replaces the vendor's accounts,
    /// APPENDS its usage observations to the ledger as a new batch, and
    /// marks the run succeeded. On failure nothing is kept, the run is
    /// marked failed (best effort), and the error is returned.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for rows of another vendor, duplicate account
    /// ids or a run that is not a running vendor sync;
    /// [`StoreError::MissingReference`] when the vendor integration is not
    /// registered; database errors.
    pub async fn complete_vendor_sync(
        &self,
        run: SyncRunId,
        data: &VendorData,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record vendor sync";
        let result = async {
            let mut tx = self.db.begin(OP).await?;
            let (source, _) =
                Self::claim_run_for_completion(&mut tx, OP, run, SyncKind::Vendor).await?;
            let vendor = VendorId::from(source.as_str());
            check_vendor(OP, &vendor, data)?;
            tx.execute(
                sql(
                    OP,
                    "vendor_accounts",
                    "DELETE FROM vendor_accounts WHERE vendor_id = $1",
                )
                .bind(vendor.as_str()),
            )
            .await?;
            let items: Vec<_> = data.accounts.iter().collect();
            tx.insert_all(
                OP,
                "vendor_accounts",
                &["vendor_id", "id", "name", "domains", "sync_run_id"],
                items.len(),
                |i, w| {
                    let a = items[i];

                    w.text(a.vendor.as_str());
                    w.text(a.id.as_str());
                    w.text(a.name.as_str());
                    w.value(json_text(OP, &a.domains)?);
                    w.value(run);
                    Ok(())
                },
            )
            .await?;
            let batch = new_batch(
                &mut tx,
                OP,
                &vendor,
                "sync",
                Some(run),
                None,
                None,
                finished_at,
            )
            .await?;
            append_observations(&mut tx, OP, batch, &data.usage).await?;
            Self::mark_succeeded(&mut tx, OP, run, stats, finished_at).await?;
            tx.commit(OP).await
        }
        .await;
        if let Err(error) = &result {
            self.fail_after_error(run, error, stats, finished_at).await;
        }
        result
    }

    /// Sets the pushed unit count of (vendor, account, SKU) for the UTC day
    /// of `usage.observed_at`: the latest push for that day wins.
    /// Idempotent: pushing the same values again changes nothing and
    /// returns [`PushOutcome::Unchanged`]. A change is also appended to the
    /// usage ledger (one transaction).
    ///
    /// # Errors
    /// [`StoreError::MissingReference`] for an unregistered vendor or push
    /// integration; database errors.
    pub async fn push_usage(
        &self,
        push_integration: Option<crate::imports::PushIntegrationId>,
        usage: &UsageObservation,
        at: DateTime<Utc>,
    ) -> Result<PushOutcome> {
        const OP: &str = "record pushed usage";
        let mut tx = self.db.begin(OP).await?;
        let outcome = crate::imports::set_pushed(&mut tx, OP, push_integration, usage, at).await?;
        if outcome == PushOutcome::Unchanged {
            return Ok(outcome);
        }
        let batch = new_batch(
            &mut tx,
            OP,
            &usage.vendor,
            "push",
            None,
            None,
            push_integration,
            at,
        )
        .await?;
        append_observations(&mut tx, OP, batch, std::slice::from_ref(usage)).await?;
        tx.commit(OP).await?;
        Ok(PushOutcome::Set)
    }

    /// The usage observations that count for the UTC days `from..=to`, as
    /// the reconcile reads them: for each (vendor, account, day), the rows
    /// of the latest batch (sync or CSV import) that reported that day —
    /// a re-sync replaces a day, it does not double it — plus the pushed
    /// unit counts of those days. Strings are shared (`Arc`) between rows.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn usage_for_period(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageObservation>> {
        const OP: &str = "read usage for period";
        let mut tx = self.db.begin_read(OP).await?;
        let observed = tx
            .fetch_all(
                sql(
                    OP,
                    "usage_observations",
                    format!(
                        "WITH latest AS ( \
                           SELECT o.vendor_id, o.account_id, o.observed_on, MAX(o.batch_id) AS batch_id \
                           FROM usage_observations o JOIN usage_batches b ON b.id = o.batch_id \
                           WHERE o.observed_on >= $1 AND o.observed_on <= $2 AND b.source <> 'push' \
                           GROUP BY o.vendor_id, o.account_id, o.observed_on) \
                         SELECT {OBSERVATION_COLUMNS} FROM usage_observations o JOIN latest l \
                           ON o.vendor_id = l.vendor_id AND o.account_id = l.account_id \
                           AND o.observed_on = l.observed_on AND o.batch_id = l.batch_id \
                         ORDER BY o.id"
                    ),
                )
                .bind(from)
                .bind(to),
            )
            .await?;
        let pushed = tx
            .fetch_all(
                sql(
                    OP,
                    "pushed_usage",
                    format!(
                        "SELECT {OBSERVATION_COLUMNS} FROM pushed_usage o \
                         WHERE o.observed_on >= $1 AND o.observed_on <= $2 \
                         ORDER BY o.vendor_id, o.account_id, o.sku_id, o.observed_on"
                    ),
                )
                .bind(from)
                .bind(to),
            )
            .await?;
        tx.commit(OP).await?;
        let mut interner = Interner::default();
        observed
            .iter()
            .chain(pushed.iter())
            .map(|r| observation_from_row(r, &mut interner))
            .collect()
    }
}

pub(crate) const OBSERVATION_COLUMNS: &str = "o.vendor_id, o.account_id, o.sku_id, o.sku_name, o.quantity, \
     o.unit, o.unit_cost, o.billing_term, o.commitment_end, o.attributes, o.observed_at";

/// Shares equal strings between rows.
#[derive(Default)]
pub(crate) struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub(crate) fn get(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.0.get(text.as_str()) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

pub(crate) fn observation_from_row(r: &Row, interner: &mut Interner) -> Result<UsageObservation> {
    let mut attributes: Attributes = r.json("attributes")?;
    attributes.replace_strings(|s| interner.get(s.to_string()));
    Ok(UsageObservation {
        vendor: VendorId(interner.get(r.text("vendor_id")?)),
        account: interner.get(r.text("account_id")?).into(),
        sku_id: interner.get(r.text("sku_id")?).into(),
        sku_name: interner.get(r.text("sku_name")?),
        quantity: r.decimal("quantity")?,
        unit: interner.get(r.text("unit")?),
        unit_cost: r.opt_decimal("unit_cost")?,
        billing_term: r.opt_text("billing_term")?.map(|t| interner.get(t)),
        commitment_end: r.opt_date("commitment_end")?,
        attributes,
        observed_at: r.instant("observed_at")?,
    })
}

pub(crate) fn line_from_row(r: &Row) -> Result<ServiceLine> {
    Ok(ServiceLine {
        id: r.text("id")?.into(),
        contract_id: r.text("contract_id")?.into(),
        product_id: r.text("product_id")?,
        product_identifier: r.text("product_identifier")?.into(),
        description: r.text("description")?,
        quantity: r.decimal("quantity")?,
        unit_price: r.decimal("unit_price")?,
        unit_cost: r.decimal("unit_cost")?,
        effective_date: r.opt_date("effective_date")?,
        cancelled_date: r.opt_date("cancelled_date")?,
        billable: r.bool("billable")?,
    })
}

fn check_vendor(operation: &'static str, vendor: &VendorId, data: &VendorData) -> Result<()> {
    if let Some(a) = data.accounts.iter().find(|a| a.vendor != *vendor) {
        return Err(StoreError::invalid(
            operation,
            format!(
                "account {} belongs to vendor {}, not to {vendor}, whose sync this is",
                a.id, a.vendor
            ),
        ));
    }
    if let Some(u) = data.usage.iter().find(|u| u.vendor != *vendor) {
        return Err(StoreError::invalid(
            operation,
            format!(
                "a usage row of vendor {} is in the sync of {vendor}",
                u.vendor
            ),
        ));
    }
    check_unique(
        operation,
        "account",
        data.accounts.iter().map(|a| a.id.as_str()),
    )
}

/// Inserts a usage batch; its id.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn new_batch(
    tx: &mut Tx,
    operation: &'static str,
    vendor: &VendorId,
    source: &str,
    sync_run: Option<SyncRunId>,
    import: Option<crate::imports::ImportId>,
    push: Option<crate::imports::PushIntegrationId>,
    at: DateTime<Utc>,
) -> Result<i64> {
    let row = tx
        .fetch_one(
            sql(
                operation,
                "usage_batches",
                "INSERT INTO usage_batches (vendor_id, source, sync_run_id, import_id, push_integration_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(vendor.as_str())
            .bind(source)
            .bind(sync_run)
            .bind(import)
            .bind(push)
            .bind(at),
        )
        .await
        .map_err(|e| match e {
            StoreError::MissingReference { operation, table, .. } => StoreError::MissingReference {
                operation,
                table,
                problem: format!("vendor integration {vendor:?} is not registered; register it before storing its usage"),
            },
            other => other,
        })?;
    row.int("id")
}

/// Appends `usage` to the ledger under `batch`.
pub(crate) async fn append_observations(
    tx: &mut Tx,
    operation: &'static str,
    batch: i64,
    usage: &[UsageObservation],
) -> Result<()> {
    let items: Vec<_> = usage.iter().collect();
    tx.insert_all(
        operation,
        "usage_observations",
        &[
            "batch_id",
            "vendor_id",
            "account_id",
            "sku_id",
            "sku_name",
            "quantity",
            "unit",
            "unit_cost",
            "billing_term",
            "commitment_end",
            "attributes",
            "observed_at",
            "observed_on",
        ],
        items.len(),
        |i, w| {
            let u = items[i];

            w.value(batch);
            w.text(u.vendor.as_str());
            w.text(u.account.as_str());
            w.text(u.sku_id.as_str());
            w.text(&u.sku_name);
            w.decimal(u.quantity);
            w.text(&u.unit);
            w.opt_decimal(u.unit_cost);
            w.value(u.billing_term.as_deref());
            w.value(u.commitment_end);
            w.value(json_text(operation, &u.attributes)?);
            w.value(u.observed_at);
            w.value(u.observed_at.date_naive());
            Ok(())
        },
    )
    .await?;
    Ok(())
}
