//! The write-back outbox: approved changes waiting to be written to the
//! PSA, exactly once.
//!
//! Life of an entry: `pending` → [`Store::claim_next_write_back`] →
//! `in_flight` (leased to one worker until `lease_expires_at`) → one of
//! [`Store::complete_write_back`] (`applied`), [`Store::retry_write_back`]
//! (`pending` again, from `next_attempt_at`) or
//! [`Store::reject_write_back`] (`rejected`). A worker that crashes leaves
//! its entry `in_flight`; once the lease expires the next claim takes it
//! over (the connector's write SETS a quantity, so a repeat is harmless).
//!
//! The outbox is a leased queue (`crate::queue`, which explains why each
//! due entry goes to exactly one claimer on either backend).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::card::CardKey;
use trueup_core::model::ServiceLine;

use crate::Store;
use crate::audit::{NewAuditEntry, append_audit};
use crate::card_state::{
    CardState, WriteBackStatus, card_state_query, set_card_write_back, state_from_row,
};
use crate::db::{Row, Sql, Tx, Value, enum_text, json_text, sql};
use crate::error::{Result, StoreError};
use crate::queue::Queue;

pub use crate::ids::OutboxId;

/// Where an outbox entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for `next_attempt_at`.
    Pending,
    /// Leased to a worker.
    InFlight,
    /// Written to the PSA and read back.
    Applied,
    /// Refused by the PSA for good.
    Rejected,
    /// The PSA may hold something other than what was sent; waits for a
    /// person (see [`crate::write_review`]).
    NeedsReview,
    /// Withdrawn by a person before it ran.
    Cancelled,
}

/// An entry to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxEntry {
    /// Unique: the same decision always has the same key, so it can be
    /// enqueued only once.
    pub idempotency_key: String,
    /// The card it resolves.
    pub card_key: CardKey,
    /// The change: the plugin host's `QuantityChange`, as JSON.
    pub change: serde_json::Value,
    /// The first attempt may start at this instant.
    pub not_before: DateTime<Utc>,
}

/// What an apply did, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// PSA record ids created or changed.
    pub record_ids: Vec<String>,
    /// The line as read back from the PSA.
    pub line: ServiceLine,
}

/// An outbox entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Its id.
    pub id: OutboxId,
    /// Its unique idempotency key.
    pub idempotency_key: String,
    /// The card.
    pub card_key: CardKey,
    /// The decision that enqueued it.
    pub decision_id: Option<String>,
    /// The change (`QuantityChange` JSON).
    pub change: serde_json::Value,
    /// Status.
    pub status: OutboxStatus,
    /// Claims so far.
    pub attempts: u32,
    /// When it may be (re)tried.
    pub next_attempt_at: DateTime<Utc>,
    /// The worker holding it, when in flight.
    pub lease_owner: Option<String>,
    /// When that lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The apply's result, when applied.
    pub result: Option<ApplyResult>,
    /// The last error.
    pub error: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Applied or rejected at.
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, idempotency_key, card_key, decision_id, change, status, attempts, \
     next_attempt_at, lease_owner, lease_expires_at, result_record_ids, result_line, error, \
     created_at, updated_at, finished_at";

/// The outbox's table, for the leased-queue mechanism.
const OUTBOX: Queue = Queue {
    table: "outbox",
    what: "outbox entry",
    id: "id",
    status: "status",
    waiting: "pending",
    leased: "in_flight",
    failed: "rejected",
    owner: "lease_owner",
    until: "lease_expires_at",
    attempts: "attempts",
    // An entry is retried until it is applied or rejected.
    attempts_left: "1 = 1",
    due: "next_attempt_at",
    error: "error",
    finished: "finished_at",
    touched: Some("updated_at"),
    on_claim: "",
    columns: COLUMNS,
};

fn entry_from_row(r: &Row) -> Result<OutboxEntry> {
    let key = r.text("card_key")?;
    let result = match (
        r.opt_json::<Vec<String>>("result_record_ids")?,
        r.opt_json::<ServiceLine>("result_line")?,
    ) {
        (Some(record_ids), Some(line)) => Some(ApplyResult { record_ids, line }),
        _ => None,
    };
    Ok(OutboxEntry {
        id: OutboxId(r.int("id")?),
        idempotency_key: r.text("idempotency_key")?,
        card_key: CardKey::from_hex(&key).ok_or_else(|| StoreError::Corrupt {
            table: "outbox",
            column: "card_key".to_owned(),
            expected: "a card key (32 hex digits)",
            problem: format!("found {key:?}"),
        })?,
        decision_id: r.opt_text("decision_id")?,
        change: r.json("change")?,
        status: r.enum_value("status", "an outbox status")?,
        attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: r.instant("next_attempt_at")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_expires_at: r.opt_instant("lease_expires_at")?,
        result,
        error: r.opt_text("error")?,
        created_at: r.instant("created_at")?,
        updated_at: r.instant("updated_at")?,
        finished_at: r.opt_instant("finished_at")?,
    })
}

/// Inserts an entry inside `tx`.
pub(crate) async fn insert_entry(
    tx: &mut Tx,
    operation: &'static str,
    entry: &NewOutboxEntry,
    decision_id: Option<&str>,
    at: DateTime<Utc>,
) -> Result<OutboxId> {
    let row = tx
        .fetch_one(
            sql(
                operation,
                "outbox",
                "INSERT INTO outbox (idempotency_key, card_key, decision_id, change, status, attempts, \
                 next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $6) \
                 RETURNING id",
            )
            .bind(entry.idempotency_key.as_str())
            .bind(entry.card_key.as_str())
            .bind(decision_id)
            .bind(json_text(operation, &entry.change)?)
            .bind(entry.not_before)
            .bind(at),
        )
        .await
        .map_err(|e| e.duplicate_as("write-back idempotency key", &entry.idempotency_key))?;
    Ok(OutboxId(row.int("id")?))
}

impl Store {
    /// Enqueues a write-back (outside a decision; decisions enqueue through
    /// [`Store::record_decisions`]).
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when the idempotency key was enqueued
    /// before: a change is never queued twice.
    pub async fn enqueue_write_back(
        &self,
        entry: &NewOutboxEntry,
        at: DateTime<Utc>,
    ) -> Result<OutboxId> {
        const OP: &str = "enqueue write-back";
        let mut tx = self.db.begin(OP).await?;
        let id = insert_entry(&mut tx, OP, entry, None, at).await?;
        tx.commit(OP).await?;
        Ok(id)
    }

    /// Claims the next entry due at `now` — pending with `next_attempt_at
    /// <= now`, or in flight with an expired lease — for `worker` until
    /// `now + lease`, counting an attempt. `None` when nothing is due.
    /// Each due entry is handed to exactly one concurrent claimer (see the
    /// module docs for how, per backend).
    ///
    /// # Errors
    /// A database error.
    pub async fn claim_next_write_back(
        &self,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxEntry>> {
        let row = OUTBOX
            .claim(&self.db, "claim write-back", worker, lease, now, None)
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// Extends `worker`'s lease on an in-flight entry to `now + lease`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds it.
    pub async fn extend_write_back_lease(
        &self,
        id: OutboxId,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        OUTBOX
            .held("extend write-back lease", id.0, worker)
            .extend(&self.db, lease, now)
            .await
    }

    /// Records a successful apply in ONE transaction: the entry becomes
    /// `applied` with its result, the card's write-back status becomes
    /// `applied` (if the card's state still points at this entry), and an
    /// audit entry is appended. The worker must still hold the entry (its
    /// lease may have run out, as long as nobody took it over).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another worker took the entry over
    /// or it already finished; nothing is written then.
    pub async fn complete_write_back(
        &self,
        id: OutboxId,
        worker: &str,
        result: &ApplyResult,
        now: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record applied write-back";
        let held = OUTBOX.held(OP, id.0, worker);
        let mut tx = self.db.begin(OP).await?;
        let row = tx
            .fetch_optional(held.finish(
                "applied",
                vec![
                    (
                        "result_record_ids",
                        Value::from(json_text(OP, &result.record_ids)?),
                    ),
                    ("result_line", Value::from(json_text(OP, &result.line)?)),
                ],
                None,
                now,
                Some("card_key, idempotency_key"),
            ))
            .await?;
        let Some(row) = row else {
            return Err(held.lost());
        };
        let card_key = row.text("card_key")?;
        set_card_write_back(&mut tx, OP, &card_key, id, WriteBackStatus::Applied, now).await?;
        append_audit(
            &mut tx,
            OP,
            &NewAuditEntry {
                at: now,
                actor: format!("worker:{worker}"),
                action: "write_back.applied".to_owned(),
                subject: format!("card:{card_key}"),
                details: serde_json::json!({
                    "outbox_id": id.0,
                    "idempotency_key": row.text("idempotency_key")?,
                    "record_ids": result.record_ids,
                }),
            },
        )
        .await?;
        tx.commit(OP).await
    }

    /// Records a transient failure: the entry is `pending` again from
    /// `next_attempt_at`, with the error kept.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds it.
    pub async fn retry_write_back(
        &self,
        id: OutboxId,
        worker: &str,
        error: &str,
        next_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        OUTBOX
            .held("record write-back retry", id.0, worker)
            .retry(&self.db, error, Some(next_attempt_at), now)
            .await
            .map(drop)
    }

    /// Records a permanent failure in ONE transaction: the entry becomes
    /// `rejected`, its card is open again with write-back status
    /// `rejected` (if its state still points at this entry), and an audit
    /// entry is appended.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the worker no longer holds it.
    pub async fn reject_write_back(
        &self,
        id: OutboxId,
        worker: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record rejected write-back";
        let held = OUTBOX.held(OP, id.0, worker);
        let mut tx = self.db.begin(OP).await?;
        let row = tx
            .fetch_optional(held.finish("rejected", Vec::new(), Some(error), now, Some("card_key")))
            .await?;
        let Some(row) = row else {
            return Err(held.lost());
        };
        let card_key = row.text("card_key")?;
        set_card_write_back(&mut tx, OP, &card_key, id, WriteBackStatus::Rejected, now).await?;
        append_audit(
            &mut tx,
            OP,
            &NewAuditEntry {
                at: now,
                actor: format!("worker:{worker}"),
                action: "write_back.rejected".to_owned(),
                subject: format!("card:{card_key}"),
                details: serde_json::json!({ "outbox_id": id.0, "error": error }),
            },
        )
        .await?;
        tx.commit(OP).await
    }

    /// One entry.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn outbox_entry(&self, id: OutboxId) -> Result<OutboxEntry> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read outbox entry",
                    "outbox",
                    format!("SELECT {COLUMNS} FROM outbox WHERE id = $1"),
                )
                .bind(id),
            )
            .await?
            .ok_or_else(|| StoreError::not_found("read outbox entry", "outbox entry", id))?;
        entry_from_row(&row)
    }

    /// Entries, newest first, optionally of one status, at most `limit`.
    ///
    /// # Errors
    /// A database error.
    pub async fn outbox_entries(
        &self,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list outbox entries",
                    "outbox",
                    format!(
                        "SELECT {COLUMNS} FROM outbox WHERE ($1 IS NULL OR status = $1) ORDER BY id DESC LIMIT $2"
                    ),
                )
                .bind(status.map(|s| enum_text(&s)))
                .bind(i64::from(limit)),
            )
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// A card's stored state and its outbox entries (oldest first), read in
    /// one snapshot: a write-back that completes meanwhile shows in both or
    /// in neither, so a card never reads "pending" beside an applied entry.
    ///
    /// # Errors
    /// A database error.
    pub async fn card_state_and_write_backs(
        &self,
        key: &CardKey,
    ) -> Result<(Option<CardState>, Vec<OutboxEntry>)> {
        const OP: &str = "read card state and write-backs";
        let mut tx = self.db.begin_read(OP).await?;
        let state = tx.fetch_optional(card_state_query(OP, key)).await?;
        let entries = tx.fetch_all(card_outbox_query(OP, key)).await?;
        tx.commit(OP).await?;
        let state = state.as_ref().map(state_from_row).transpose()?;
        let entries = entries.iter().map(entry_from_row).collect::<Result<_>>()?;
        Ok((state, entries))
    }

    /// The entries of a card, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn outbox_for_card(&self, key: &CardKey) -> Result<Vec<OutboxEntry>> {
        let rows = self
            .db
            .fetch_all(card_outbox_query("list card outbox entries", key))
            .await?;
        rows.iter().map(entry_from_row).collect()
    }
}

/// The query listing `key`'s outbox entries, oldest first.
fn card_outbox_query(operation: &'static str, key: &CardKey) -> Sql {
    sql(
        operation,
        "outbox",
        format!("SELECT {COLUMNS} FROM outbox WHERE card_key = $1 ORDER BY id"),
    )
    .bind(key.as_str())
}

/// What a card in a list shows of its write-back: what was approved (the
/// quantity and the first day it holds) and what became of it (written as
/// records on an instant, waiting, needing review, or refused in the PSA's
/// words). Read for a page of cards at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteBackSummary {
    /// The outbox entry.
    pub outbox: OutboxId,
    /// Where it stands.
    pub status: OutboxStatus,
    /// The quantity approved.
    pub quantity: Option<rust_decimal::Decimal>,
    /// Its first day (inclusive, the PSA's calendar day).
    pub effective_date: Option<chrono::NaiveDate>,
    /// The PSA records written, once applied.
    pub record_ids: Vec<String>,
    /// Applied, refused, cancelled or sent to review at (UTC).
    pub finished_at: Option<DateTime<Utc>>,
    /// The PSA's or the connector's last words, when it failed or waits.
    pub error: Option<String>,
}

impl WriteBackSummary {
    fn of(entry: &OutboxEntry) -> Self {
        // The change is the plugin host's `QuantityChange` as JSON; a
        // summary shows what it can read of it and never fails the list.
        let change = &entry.change;
        Self {
            outbox: entry.id,
            status: entry.status,
            quantity: change.get("new_quantity").and_then(|q| match q {
                serde_json::Value::String(s) => s.parse().ok(),
                other => other.to_string().parse().ok(),
            }),
            effective_date: change
                .get("effective_date")
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse().ok()),
            record_ids: entry
                .result
                .as_ref()
                .map(|r| r.record_ids.clone())
                .unwrap_or_default(),
            finished_at: entry.finished_at,
            error: entry.error.clone(),
        }
    }
}

impl Store {
    /// The write-back summaries of `ids`, by id (ids with no entry are left
    /// out).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn write_back_summaries(
        &self,
        ids: &[OutboxId],
    ) -> Result<std::collections::HashMap<OutboxId, WriteBackSummary>> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = self
                .db
                .fetch_all(
                    sql(
                        "read write-back summaries",
                        "outbox",
                        format!(
                            "SELECT {COLUMNS} FROM outbox WHERE id IN ({})",
                            crate::db::placeholders(1, chunk.len())
                        ),
                    )
                    .bind_all(chunk.iter().map(|id| Value::from(id.0))),
                )
                .await?;
            for row in &rows {
                let entry = entry_from_row(row)?;
                out.insert(entry.id, WriteBackSummary::of(&entry));
            }
        }
        Ok(out)
    }
}
