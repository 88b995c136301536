//! A card's state, kept by card key across runs: open, approved (with the
//! write-back's progress), dismissed, snoozed or excluded. Set by decisions
//! and by the outbox as a write-back finishes; joined by every card
//! listing to give a card its status today.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::actions::Resolution;
use trueup_core::card::CardKey;

use crate::Store;
use crate::db::{Row, Sql, Tx, enum_text, parse_enum, sql};
use crate::error::{Result, StoreError};
use crate::ids::OutboxId;

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
    /// The PSA holds something other than what was sent, or a write may
    /// have landed: nothing is re-sent until a person decides.
    NeedsReview,
    /// Withdrawn by a person before it ran; the card is open again.
    Cancelled,
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

/// The query reading `key`'s stored state (one row or none), for
/// [`state_from_row`].
pub(crate) fn card_state_query(operation: &'static str, key: &CardKey) -> Sql {
    sql(
        operation,
        "card_states",
        format!("SELECT {STATE_COLUMNS} FROM card_states WHERE key = $1"),
    )
    .bind(key.as_str())
}

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
                parse_enum(&w).ok_or_else(|| StoreError::Corrupt {
                    table: "card_states",
                    column: "write_back".to_owned(),
                    expected: "pending, applied, rejected, needs_review or cancelled",
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

/// Sets the write-back status of the card whose state points at outbox
/// entry `id` (a rejected write-back opens the card again), inside `tx`.
pub(crate) async fn set_card_write_back(
    tx: &mut Tx,
    operation: &'static str,
    card_key: &str,
    id: OutboxId,
    status: WriteBackStatus,
    now: DateTime<Utc>,
) -> Result<()> {
    let reopen = if matches!(
        status,
        WriteBackStatus::Rejected | WriteBackStatus::Cancelled
    ) {
        ", status = 'open'"
    } else {
        ""
    };
    tx.execute(
        sql(
            operation,
            "card_states",
            format!(
                "UPDATE card_states SET write_back = $3, updated_at = $4{reopen} \
                 WHERE key = $1 AND outbox_id = $2"
            ),
        )
        .bind(card_key)
        .bind(id)
        .bind(enum_text(&status))
        .bind(now),
    )
    .await?;
    Ok(())
}

impl Store {
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
            .fetch_optional(card_state_query("read card state", key))
            .await?;
        row.as_ref().map(state_from_row).transpose()
    }
}
