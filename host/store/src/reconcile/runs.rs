//! Reconcile runs: recording one with all its cards (append-only, in one
//! transaction), and reading runs back.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::card::CardTotals;
use trueup_core::fasthash::FxBuildHasher;
use trueup_core::reconcile::{ReconcileOutput, ReconcileStats};

use super::card_rows::{CARD_COLUMNS, EncodedCards};
use crate::Store;
use crate::db::{Row, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::{ReconcileRunId, SyncRunId};

/// A reconcile run to record.
#[derive(Debug, Clone, Copy)]
pub struct NewReconcileRun<'a> {
    /// The reconcile's output: cards, exclusions, totals, stats.
    pub output: &'a ReconcileOutput,
    /// The rule version that produced the cards (`None` for the built-in
    /// SKU table mapper).
    pub rule_checksum: Option<&'a str>,
    /// The PSA sync whose data was reconciled.
    pub psa_sync: Option<SyncRunId>,
    /// When the reconcile started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// A recorded reconcile run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRun {
    /// Its id (ascending in recording order).
    pub id: ReconcileRunId,
    /// The reconcile date.
    pub as_of: NaiveDate,
    /// The mapper version that produced the cards.
    pub mapper_version: String,
    /// The rule version, when rules produced them.
    pub rule_checksum: Option<String>,
    /// The PSA sync reconciled.
    pub psa_sync: Option<SyncRunId>,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: DateTime<Utc>,
    /// Number of cards.
    pub card_count: u64,
    /// Money at stake over all cards.
    pub totals: CardTotals,
    /// Row counts.
    pub stats: ReconcileStats,
}

const RUN_COLUMNS: &str = "id, as_of, mapper_version, rule_checksum, psa_sync_run_id, started_at, \
     finished_at, card_count, totals, stats";

fn run_from_row(r: &Row) -> Result<ReconcileRun> {
    Ok(ReconcileRun {
        id: ReconcileRunId(r.int("id")?),
        as_of: r.date("as_of")?,
        mapper_version: r.text("mapper_version")?,
        rule_checksum: r.opt_text("rule_checksum")?,
        psa_sync: r.opt_int("psa_sync_run_id")?.map(SyncRunId),
        started_at: r.instant("started_at")?,
        finished_at: r.instant("finished_at")?,
        card_count: u64::try_from(r.int("card_count")?).unwrap_or(0),
        totals: r.json("totals")?,
        stats: r.json("stats")?,
    })
}

impl Store {
    /// Records a reconcile run and all its cards in ONE transaction
    /// (multi-row `INSERT`s on SQLite, `COPY` on PostgreSQL). Runs and cards
    /// are append-only: every run's cards are kept, which is the ledger of
    /// what each reconcile proposed. Not idempotent: each call is a new run.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a card key repeated in the output;
    /// [`StoreError::MissingReference`] for an unknown rule checksum or
    /// PSA sync; database errors. On error nothing is written.
    pub async fn record_reconcile_run(&self, run: NewReconcileRun<'_>) -> Result<ReconcileRunId> {
        const OP: &str = "record reconcile run";
        let output = run.output;
        let mut seen = HashSet::with_capacity_and_hasher(output.cards.len(), FxBuildHasher);
        if let Some(card) = output.cards.iter().find(|c| !seen.insert(c.key)) {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "card key {} appears twice in the reconcile output",
                    card.key
                ),
            ));
        }
        drop(seen);
        let encoded = EncodedCards::new(OP, &output.cards)?;
        let mut tx = self.db.begin(OP).await?;
        let row = tx
            .fetch_one(
                sql(
                    OP,
                    "reconcile_runs",
                    "INSERT INTO reconcile_runs (as_of, mapper_version, rule_checksum, psa_sync_run_id, \
                     started_at, finished_at, card_count, totals, stats, exclusions, shared) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .bind(output.as_of)
                .bind(&*output.mapper_version)
                .bind(run.rule_checksum)
                .bind(run.psa_sync)
                .bind(run.started_at)
                .bind(run.finished_at)
                .bind(output.cards.len() as i64)
                .bind(json_text(OP, &output.totals)?)
                .bind(json_text(OP, &output.stats)?)
                // The exclusions have their own table (below); the column
                // stays for runs recorded before it.
                .bind("[]")
                .bind(json_text(OP, &encoded.shared)?),
            )
            .await?;
        let id = ReconcileRunId(row.int("id")?);
        let mut detail_text = Vec::with_capacity(1024);
        let cards = &output.cards;
        tx.insert_all(OP, "cards", CARD_COLUMNS, cards.len(), |position, w| {
            encoded.write_row(OP, id, cards, position, &mut detail_text, w)
        })
        .await?;
        super::exclusions::write(&mut tx, OP, id, &output.exclusions).await?;
        tx.commit(OP).await?;
        Ok(id)
    }

    /// One reconcile run.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn reconcile_run(&self, id: ReconcileRunId) -> Result<ReconcileRun> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read reconcile run",
                    "reconcile_runs",
                    format!("SELECT {RUN_COLUMNS} FROM reconcile_runs WHERE id = $1"),
                )
                .bind(id),
            )
            .await?
            .ok_or_else(|| StoreError::not_found("read reconcile run", "reconcile run", id))?;
        run_from_row(&row)
    }

    /// The latest recorded reconcile run.
    ///
    /// # Errors
    /// A database error.
    pub async fn latest_reconcile_run(&self) -> Result<Option<ReconcileRun>> {
        let row = self
            .db
            .fetch_optional(sql(
                "read latest reconcile run",
                "reconcile_runs",
                format!("SELECT {RUN_COLUMNS} FROM reconcile_runs ORDER BY id DESC LIMIT 1"),
            ))
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// The latest `limit` runs, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn reconcile_runs(&self, limit: u32) -> Result<Vec<ReconcileRun>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list reconcile runs",
                    "reconcile_runs",
                    format!("SELECT {RUN_COLUMNS} FROM reconcile_runs ORDER BY id DESC LIMIT $1"),
                )
                .bind(i64::from(limit)),
            )
            .await?;
        rows.iter().map(run_from_row).collect()
    }
}
