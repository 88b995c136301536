//! The append-only log of decisions on cards. Recording a decision sets
//! its card's state and, for a write-back, enqueues the change in the
//! outbox, all in one transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::actions::{Action, Resolution};
use trueup_core::card::CardKey;

use crate::Store;
use crate::card_state::{CardStatus, put_state};
use crate::db::{Row, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::{OutboxId, ReconcileRunId};
use crate::outbox::{NewOutboxEntry, insert_entry};

/// A decision to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    /// Unique (e.g. [`crate::new_id`], or `"{bulk id}/{card key}"`).
    pub id: String,
    /// The card.
    pub card_key: CardKey,
    /// The run the card was shown from.
    pub run: Option<ReconcileRunId>,
    /// What the person did.
    pub action: Action,
    /// What `trueup_core::actions::decide` made of it.
    pub resolution: Resolution,
    /// For a write-back resolution: the outbox entry (the change as the
    /// plugin host's `QuantityChange` JSON, under the write-back's
    /// idempotency key). Must be given exactly for write-backs.
    pub outbox: Option<NewOutboxEntry>,
    /// Who.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Its id.
    pub id: String,
    /// The card.
    pub card_key: CardKey,
    /// The run the card was shown from.
    pub run: Option<ReconcileRunId>,
    /// What the person did.
    pub action: Action,
    /// What it resolved to.
    pub resolution: Resolution,
    /// Who.
    pub actor: String,
    /// When.
    pub decided_at: DateTime<Utc>,
}

/// Reads a decision from columns named as in [`DECISION_COLUMNS`].
pub(crate) fn decision_from_row(r: &Row) -> Result<DecisionRecord> {
    let key = r.text("card_key")?;
    Ok(DecisionRecord {
        id: r.text("id")?,
        card_key: CardKey::from_hex(&key).ok_or_else(|| StoreError::Corrupt {
            table: "decisions",
            column: "card_key".to_owned(),
            expected: "a card key (32 hex digits)",
            problem: format!("found {key:?}"),
        })?,
        run: r.opt_int("run_id")?.map(ReconcileRunId),
        action: r.json("action")?,
        resolution: r.json("resolution")?,
        actor: r.text("actor")?,
        decided_at: r.instant("decided_at")?,
    })
}

/// The columns [`decision_from_row`] reads.
pub(crate) const DECISION_COLUMNS: &str =
    "id, card_key, run_id, action, resolution, actor, decided_at";

impl Store {
    /// Records decisions in ONE transaction: each is appended to the
    /// decision log, sets its card's state, and — for a write-back —
    /// enqueues its outbox entry. Either all are recorded or none. Returns
    /// the outbox entry of each decision (`None` for non-write-backs), in
    /// order.
    ///
    /// Not idempotent by design, but safe to replay: a repeated decision
    /// id or write-back idempotency key is refused as
    /// [`StoreError::Duplicate`], so a replay never applies a change twice.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] (decision id, idempotency key);
    /// [`StoreError::Invalid`] when a write-back lacks its outbox entry (or
    /// another decision has one); database errors.
    pub async fn record_decisions(
        &self,
        decisions: &[NewDecision],
    ) -> Result<Vec<Option<OutboxId>>> {
        const OP: &str = "record decisions";
        for d in decisions {
            let write_back = matches!(d.resolution, Resolution::WriteBack(_));
            if write_back != d.outbox.is_some() {
                return Err(StoreError::invalid(
                    OP,
                    format!(
                        "decision {}: a write-back needs exactly one outbox entry, and only a write-back may have one",
                        d.id
                    ),
                ));
            }
            if let Some(entry) = &d.outbox
                && entry.card_key != d.card_key
            {
                return Err(StoreError::invalid(
                    OP,
                    format!("decision {}: its outbox entry is for another card", d.id),
                ));
            }
        }
        let mut tx = self.db.begin(OP).await?;
        let mut out = Vec::with_capacity(decisions.len());
        for d in decisions {
            tx.execute(
                sql(
                    OP,
                    "decisions",
                    "INSERT INTO decisions (id, card_key, run_id, action, resolution, actor, decided_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(d.id.as_str())
                .bind(d.card_key.as_str())
                .bind(d.run)
                .bind(json_text(OP, &d.action)?)
                .bind(json_text(OP, &d.resolution)?)
                .bind(d.actor.as_str())
                .bind(d.at),
            )
            .await
            .map_err(|e| e.duplicate_as("decision id", &d.id))?;
            let outbox = match &d.outbox {
                Some(entry) => Some(insert_entry(&mut tx, OP, entry, Some(&d.id), d.at).await?),
                None => None,
            };
            let status = match &d.resolution {
                Resolution::WriteBack(_) => CardStatus::Approved,
                Resolution::Dismissed { .. } => CardStatus::Dismissed,
                Resolution::Snoozed { .. } => CardStatus::Snoozed,
                Resolution::Excluded { .. } => CardStatus::Excluded,
            };
            put_state(
                &mut tx,
                OP,
                &d.card_key,
                status,
                Some(&d.resolution),
                outbox,
                Some(&d.id),
                &d.actor,
                d.at,
            )
            .await?;
            out.push(outbox);
        }
        tx.commit(OP).await?;
        Ok(out)
    }

    /// The decisions on a card, oldest first.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_decisions(&self, key: &CardKey) -> Result<Vec<DecisionRecord>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read card decisions",
                    "decisions",
                    format!(
                        "SELECT {DECISION_COLUMNS} FROM decisions WHERE card_key = $1 ORDER BY decided_at, id"
                    ),
                )
                .bind(key.as_str()),
            )
            .await?;
        rows.iter().map(decision_from_row).collect()
    }
}
