//! What people do with cards, kept by card key across runs: the current
//! state (open, approved, dismissed, snoozed, excluded), tags, notes, and
//! the append-only log of decisions.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::actions::{Action, Resolution, normalize_tag};
use trueup_core::card::CardKey;

use crate::Store;
use crate::db::{Row, Tx, Value, enum_text, json_text, placeholders, sql};
use crate::error::{Result, StoreError};
use crate::outbox::{NewOutboxEntry, OutboxId, insert_entry};
use crate::reconcile::ReconcileRunId;

/// A card's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    /// Needs a person (the default).
    Open,
    /// A change was approved; see the write-back status.
    Approved,
    /// Hidden through a date (the end of the card's period).
    Dismissed,
    /// Hidden until a date or until the card's numbers change.
    Snoozed,
    /// Not reconciled any more.
    Excluded,
}

/// Where an approved change stands in the PSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteBackStatus {
    /// Queued in the outbox (or being written).
    Pending,
    /// Written and read back.
    Applied,
    /// The PSA refused it; the card is open again.
    Rejected,
}

/// A card's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardState {
    /// The card.
    pub key: CardKey,
    /// The status as stored (see [`CardState::status_on`] for today's).
    pub status: CardStatus,
    /// Dismissed: last hidden day (inclusive).
    pub dismissed_through: Option<NaiveDate>,
    /// Snoozed: the day the card shows again.
    pub snooze_until: Option<NaiveDate>,
    /// Snoozed until the numbers change: the numbers fingerprint then.
    pub snooze_fingerprint: Option<String>,
    /// Excluded: why.
    pub exclude_reason: Option<String>,
    /// Approved: the write-back's progress.
    pub write_back: Option<WriteBackStatus>,
    /// Approved: the outbox entry.
    pub outbox: Option<OutboxId>,
    /// The decision that set this state.
    pub decision_id: Option<String>,
    /// Who set it.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

impl CardState {
    /// The status on `today` for a card whose numbers fingerprint is
    /// `fingerprint`: a dismissal ends after its day, a dated snooze on its
    /// day, a "numbers change" snooze when the fingerprint differs — the
    /// card is open again. (The same rule as `Resolution::hides` and as
    /// the store's status filter.)
    pub fn status_on(&self, today: NaiveDate, fingerprint: &str) -> CardStatus {
        match self.status {
            CardStatus::Snoozed
                if self.snooze_until.is_some_and(|until| until <= today)
                    || self
                        .snooze_fingerprint
                        .as_deref()
                        .is_some_and(|fp| fp != fingerprint) =>
            {
                CardStatus::Open
            }
            CardStatus::Dismissed if self.dismissed_through.is_some_and(|d| d < today) => {
                CardStatus::Open
            }
            status => status,
        }
    }
}

/// The card status on a date, in SQL over `cards c LEFT JOIN card_states
/// s`, with `$TODAY` standing for the date's placeholder. Mirrors
/// [`CardState::status_on`].
pub(crate) const STATUS_SQL: &str = "(CASE \
     WHEN s.status IS NULL THEN 'open' \
     WHEN s.status = 'snoozed' AND s.snooze_until IS NOT NULL AND s.snooze_until <= $TODAY THEN 'open' \
     WHEN s.status = 'snoozed' AND s.snooze_fingerprint IS NOT NULL AND s.snooze_fingerprint <> c.fingerprint THEN 'open' \
     WHEN s.status = 'dismissed' AND s.dismissed_through < $TODAY THEN 'open' \
     ELSE s.status END)";

const STATE_COLUMNS: &str = "key AS state_key, status, dismissed_through, snooze_until, snooze_fingerprint, \
     exclude_reason, write_back, outbox_id, decision_id, updated_by, updated_at";

/// Reads a state from columns named as in [`STATE_COLUMNS`].
pub(crate) fn state_from_row(r: &Row) -> Result<CardState> {
    let key = r.text("state_key")?;
    Ok(CardState {
        key: CardKey::from_hex(&key).ok_or_else(|| StoreError::Corrupt {
            table: "card_states",
            column: "key".to_owned(),
            expected: "a card key (32 hex digits)",
            problem: format!("found {key:?}"),
        })?,
        status: r.enum_value("status", "a card status")?,
        dismissed_through: r.opt_date("dismissed_through")?,
        snooze_until: r.opt_date("snooze_until")?,
        snooze_fingerprint: r.opt_text("snooze_fingerprint")?,
        exclude_reason: r.opt_text("exclude_reason")?,
        write_back: r
            .opt_text("write_back")?
            .map(|w| {
                crate::db::parse_enum(&w).ok_or_else(|| StoreError::Corrupt {
                    table: "card_states",
                    column: "write_back".to_owned(),
                    expected: "pending, applied or rejected",
                    problem: format!("found {w:?}"),
                })
            })
            .transpose()?,
        outbox: r.opt_int("outbox_id")?.map(OutboxId),
        decision_id: r.opt_text("decision_id")?,
        updated_by: r.text("updated_by")?,
        updated_at: r.instant("updated_at")?,
    })
}

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

/// A note on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardNote {
    /// Its id.
    pub id: i64,
    /// The card.
    pub card_key: CardKey,
    /// Who wrote it.
    pub written_by: String,
    /// When.
    pub written_at: DateTime<Utc>,
    /// What.
    pub text: String,
}

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

pub(crate) const DECISION_COLUMNS: &str =
    "id, card_key, run_id, action, resolution, actor, decided_at";

/// Sets a card's state (insert or replace).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn put_state(
    tx: &mut Tx,
    operation: &'static str,
    key: &CardKey,
    status: CardStatus,
    resolution: Option<&Resolution>,
    outbox: Option<OutboxId>,
    decision_id: Option<&str>,
    by: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let (mut dismissed, mut until, mut fingerprint, mut reason) = (None, None, None, None);
    match resolution {
        Some(Resolution::Dismissed { through }) => dismissed = Some(*through),
        Some(Resolution::Snoozed {
            until: u,
            fingerprint: f,
        }) => {
            until = *u;
            fingerprint.clone_from(f);
        }
        Some(Resolution::Excluded { reason: r }) => reason = Some(r.clone()),
        Some(Resolution::WriteBack(_)) | None => {}
    }
    let write_back = outbox.map(|_| enum_text(&WriteBackStatus::Pending));
    tx.execute(
        sql(
            operation,
            "card_states",
            "INSERT INTO card_states (key, status, dismissed_through, snooze_until, snooze_fingerprint, \
             exclude_reason, write_back, outbox_id, decision_id, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (key) DO UPDATE SET status = excluded.status, \
             dismissed_through = excluded.dismissed_through, snooze_until = excluded.snooze_until, \
             snooze_fingerprint = excluded.snooze_fingerprint, exclude_reason = excluded.exclude_reason, \
             write_back = excluded.write_back, outbox_id = excluded.outbox_id, \
             decision_id = excluded.decision_id, updated_by = excluded.updated_by, \
             updated_at = excluded.updated_at",
        )
        .bind(key.as_str())
        .bind(enum_text(&status))
        .bind(dismissed)
        .bind(until)
        .bind(fingerprint)
        .bind(reason)
        .bind(write_back)
        .bind(outbox)
        .bind(decision_id)
        .bind(by)
        .bind(at),
    )
    .await?;
    Ok(())
}

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

    /// Sets the cards in `keys` back to open (e.g. "undo"), in one
    /// transaction. Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn reopen_cards(&self, keys: &[CardKey], by: &str, at: DateTime<Utc>) -> Result<()> {
        const OP: &str = "reopen cards";
        let mut tx = self.db.begin(OP).await?;
        for key in keys {
            put_state(&mut tx, OP, key, CardStatus::Open, None, None, None, by, at).await?;
        }
        tx.commit(OP).await
    }

    /// The stored state of a card (`None`: never acted on, so open).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_state(&self, key: &CardKey) -> Result<Option<CardState>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read card state",
                    "card_states",
                    format!("SELECT {STATE_COLUMNS} FROM card_states WHERE key = $1"),
                )
                .bind(key.as_str()),
            )
            .await?;
        row.as_ref().map(state_from_row).transpose()
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

    /// Adds `tag` (trimmed, lower-cased, validated as the core does) to
    /// every card in `keys`, in one transaction. Idempotent: a card that has
    /// the tag keeps it (and its original author).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad tag; database errors.
    pub async fn tag_cards(
        &self,
        keys: &[CardKey],
        tag: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "tag cards";
        let tag = normalize_tag(tag).map_err(|e| StoreError::invalid(OP, e.to_string()))?;
        let mut tx = self.db.begin(OP).await?;
        for key in keys {
            tx.execute(
                sql(
                    OP,
                    "card_tags",
                    "INSERT INTO card_tags (key, tag, added_by, added_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key, tag) DO NOTHING",
                )
                .bind(key.as_str())
                .bind(tag.as_str())
                .bind(by)
                .bind(at),
            )
            .await?;
        }
        tx.commit(OP).await
    }

    /// Removes `tag` from every card in `keys`, in one transaction.
    /// Idempotent.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad tag; database errors.
    pub async fn untag_cards(&self, keys: &[CardKey], tag: &str) -> Result<()> {
        const OP: &str = "untag cards";
        let tag = normalize_tag(tag).map_err(|e| StoreError::invalid(OP, e.to_string()))?;
        let mut tx = self.db.begin(OP).await?;
        for chunk in keys.chunks(500) {
            tx.execute(
                sql(
                    OP,
                    "card_tags",
                    format!(
                        "DELETE FROM card_tags WHERE tag = $1 AND key IN ({})",
                        placeholders(2, chunk.len())
                    ),
                )
                .bind(tag.as_str())
                .bind_all(chunk.iter().map(|k| Value::from(k.as_str()))),
            )
            .await?;
        }
        tx.commit(OP).await
    }

    /// The tags of a card, sorted.
    ///
    /// # Errors
    /// A database error.
    pub async fn card_tags(&self, key: &CardKey) -> Result<Vec<String>> {
        Ok(self
            .tags_of(&[key.as_str()])
            .await?
            .remove(key.as_str())
            .unwrap_or_default())
    }

    /// Every tag in use, sorted, with how many cards carry it.
    ///
    /// # Errors
    /// A database error.
    pub async fn all_tags(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list tags",
                "card_tags",
                "SELECT tag, COUNT(*) AS n FROM card_tags GROUP BY tag ORDER BY tag",
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("tag")?, u64::try_from(r.int("n")?).unwrap_or(0))))
            .collect()
    }

    /// Appends a note to a card (1 to `MAX_NOTE_CHARS` characters, as the
    /// core requires); its id.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or too long note; database
    /// errors.
    pub async fn add_card_note(
        &self,
        key: &CardKey,
        by: &str,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        const OP: &str = "add card note";
        let chars = text.trim().chars().count();
        if chars == 0 || chars > trueup_core::actions::MAX_NOTE_CHARS {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "a note must be 1 to {} characters",
                    trueup_core::actions::MAX_NOTE_CHARS
                ),
            ));
        }
        let row = self
            .db
            .fetch_one(
                sql(
                    OP,
                    "card_notes",
                    "INSERT INTO card_notes (key, written_by, written_at, text) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(key.as_str())
                .bind(by)
                .bind(at)
                .bind(text),
            )
            .await?;
        row.int("id")
    }

    /// The notes of a card, oldest first.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_notes(&self, key: &CardKey) -> Result<Vec<CardNote>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read card notes",
                    "card_notes",
                    "SELECT id, key, written_by, written_at, text FROM card_notes WHERE key = $1 ORDER BY id",
                )
                .bind(key.as_str()),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CardNote {
                    id: r.int("id")?,
                    card_key: *key,
                    written_by: r.text("written_by")?,
                    written_at: r.instant("written_at")?,
                    text: r.text("text")?,
                })
            })
            .collect()
    }
}
