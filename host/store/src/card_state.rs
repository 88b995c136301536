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
    /// A change staged on the card and not yet approved (nothing is
    /// written to the PSA until an approval, which uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<StagedChange>,
}

/// A quantity and/or effective date staged on a card (bulk "set effective
/// date"): approving the card uses it; nothing reaches the PSA before.
/// Kept by card key, so it survives a re-reconcile of the same card; when
/// the card's numbers have changed since, the stage is kept but flagged
/// ([`StagedChange::numbers_changed`]) for a person to look at again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedChange {
    /// The quantity to bill, when one was staged.
    #[serde(default, with = "trueup_core::model::amount::option")]
    pub quantity: Option<rust_decimal::Decimal>,
    /// The effective date, when one was staged.
    pub effective_date: Option<NaiveDate>,
    /// The card's numbers fingerprint when staged.
    pub fingerprint: String,
    /// Who staged it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl StagedChange {
    /// Whether the card's numbers (fingerprint now: `fingerprint`) differ
    /// from when the change was staged.
    pub fn numbers_changed(&self, fingerprint: &str) -> bool {
        self.fingerprint != fingerprint
    }
}

/// What to stage on one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStage {
    /// The card.
    pub key: CardKey,
    /// The quantity, if staged.
    pub quantity: Option<rust_decimal::Decimal>,
    /// The effective date, if staged.
    pub effective_date: Option<NaiveDate>,
    /// The card's numbers fingerprint now.
    pub fingerprint: String,
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
     exclude_reason, write_back, outbox_id, decision_id, updated_by, updated_at, staged_quantity, \
     staged_effective_date, staged_fingerprint, staged_by, staged_at";

/// [`STATE_COLUMNS`] read from `card_states s` beside other tables.
pub(crate) const STATE_COLUMNS_S: &str = "s.key AS state_key, s.status, s.dismissed_through, \
     s.snooze_until, s.snooze_fingerprint, s.exclude_reason, s.write_back, s.outbox_id, \
     s.decision_id, s.updated_by, s.updated_at, s.staged_quantity, s.staged_effective_date, \
     s.staged_fingerprint, s.staged_by, s.staged_at";

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
        staged: match (
            r.opt_text("staged_fingerprint")?,
            r.opt_text("staged_by")?,
            r.opt_instant("staged_at")?,
        ) {
            (Some(fingerprint), Some(by), Some(at)) => Some(StagedChange {
                quantity: r.opt_decimal("staged_quantity")?,
                effective_date: r.opt_date("staged_effective_date")?,
                fingerprint,
                by,
                at,
            }),
            _ => None,
        },
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
    // An approval consumes the stage it used; other decisions (dismiss,
    // snooze, reopen…) leave a staged change where it is.
    let clear_stage = if matches!(resolution, Some(Resolution::WriteBack(_))) {
        ", staged_quantity = NULL, staged_effective_date = NULL, staged_fingerprint = NULL, \
         staged_by = NULL, staged_at = NULL"
    } else {
        ""
    };
    tx.execute(
        sql(
            operation,
            "card_states",
            format!(
                "INSERT INTO card_states (key, status, dismissed_through, snooze_until, snooze_fingerprint, \
                 exclude_reason, write_back, outbox_id, decision_id, updated_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (key) DO UPDATE SET status = excluded.status, \
                 dismissed_through = excluded.dismissed_through, snooze_until = excluded.snooze_until, \
                 snooze_fingerprint = excluded.snooze_fingerprint, exclude_reason = excluded.exclude_reason, \
                 write_back = excluded.write_back, outbox_id = excluded.outbox_id, \
                 decision_id = excluded.decision_id, updated_by = excluded.updated_by, \
                 updated_at = excluded.updated_at{clear_stage}"
            ),
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

    /// Stages `stages` (replacing any earlier stage of the same cards),
    /// in one transaction. Nothing else of a card's state changes: an open
    /// card stays open. Nothing is written to the PSA.
    ///
    /// # Errors
    /// A database error (nothing is staged then).
    pub async fn stage_changes(
        &self,
        stages: &[NewStage],
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "stage card changes";
        let mut tx = self.db.begin(OP).await?;
        for stage in stages {
            tx.execute(
                sql(
                    OP,
                    "card_states",
                    "INSERT INTO card_states (key, status, updated_by, updated_at, staged_quantity, \
                     staged_effective_date, staged_fingerprint, staged_by, staged_at) \
                     VALUES ($1, 'open', $2, $3, $4, $5, $6, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET staged_quantity = excluded.staged_quantity, \
                     staged_effective_date = excluded.staged_effective_date, \
                     staged_fingerprint = excluded.staged_fingerprint, \
                     staged_by = excluded.staged_by, staged_at = excluded.staged_at",
                )
                .bind(stage.key.as_str())
                .bind(by)
                .bind(at)
                .bind(stage.quantity)
                .bind(stage.effective_date)
                .bind(stage.fingerprint.as_str()),
            )
            .await?;
        }
        tx.commit(OP).await
    }

    /// Drops the staged change of the cards in `keys` (idempotent).
    ///
    /// # Errors
    /// A database error.
    pub async fn unstage_changes(&self, keys: &[CardKey]) -> Result<()> {
        const OP: &str = "unstage card changes";
        let mut tx = self.db.begin(OP).await?;
        for key in keys {
            tx.execute(
                sql(
                    OP,
                    "card_states",
                    "UPDATE card_states SET staged_quantity = NULL, staged_effective_date = NULL, \
                     staged_fingerprint = NULL, staged_by = NULL, staged_at = NULL WHERE key = $1",
                )
                .bind(key.as_str()),
            )
            .await?;
        }
        tx.commit(OP).await
    }

    /// The staged changes of the cards in `keys` that have one.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn staged_changes(
        &self,
        keys: &[CardKey],
    ) -> Result<std::collections::BTreeMap<CardKey, StagedChange>> {
        let mut out = std::collections::BTreeMap::new();
        for key in keys {
            if let Some(staged) = self.card_state(key).await?.and_then(|s| s.staged) {
                out.insert(*key, staged);
            }
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use rust_decimal::Decimal;
    use trueup_core::actions::{Action, PendingWriteBack, Resolution};
    use trueup_core::effective::ChangePolicy;
    use trueup_core::reconcile::{ReconcileOutput, reconcile};
    use trueup_core::synth::{SynthConfig, generate};

    use super::*;
    use crate::cards::NewDecision;
    use crate::outbox::NewOutboxEntry;
    use crate::reconcile::{CardFilter, NewReconcileRun};
    use crate::testing::fixtures::{at, both};

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a date")
    }

    fn output() -> ReconcileOutput {
        let config = SynthConfig {
            seed: 7,
            companies: 4,
            usage_rows: 4 * 64,
            as_of: day(2025, 3, 31),
        };
        let snapshot = generate(&config);
        let mapper = snapshot.sku_mapper();
        let mappings = snapshot.account_mappings.clone();
        reconcile(&snapshot.reconcile_input(config.as_of, &mappings, &[], &mapper))
    }

    async fn record(store: &Store, output: &ReconcileOutput) -> crate::ids::ReconcileRunId {
        store
            .record_reconcile_run(NewReconcileRun {
                output,
                rule_checksum: None,
                psa_sync: None,
                started_at: at(2, 0),
                finished_at: at(2, 1),
            })
            .await
            .expect("a recorded run")
    }

    async fn approve(store: &Store, key: CardKey, decision: &str) {
        let pending = PendingWriteBack {
            idempotency_key: format!("idem-{decision}"),
            decision_id: decision.into(),
            card_key: key,
            company: "A".into(),
            contract: "KA".into(),
            line: None,
            product: "M365-BP".into(),
            from_quantity: Decimal::ONE,
            to_quantity: Decimal::TWO,
            effective_date: day(2025, 4, 15),
            change_policy: ChangePolicy::Dated,
        };
        store
            .record_decisions(&[NewDecision {
                id: decision.into(),
                card_key: key,
                run: None,
                action: Action::Approve,
                resolution: Resolution::WriteBack(pending.clone()),
                outbox: Some(NewOutboxEntry {
                    idempotency_key: pending.idempotency_key.clone(),
                    card_key: key,
                    change: serde_json::to_value(&pending).expect("json"),
                    not_before: at(2, 2),
                }),
                actor: "alice".into(),
                at: at(2, 2),
            }])
            .await
            .expect("recorded");
    }

    /// A stage is kept on the card's state (status untouched), replaced by
    /// a later stage, survives a re-reconcile (flagged when the numbers
    /// moved), is kept by a dismissal, consumed by an approval and dropped
    /// by unstage; the list filters by write-back state.
    async fn a_staged_change_lives_on_the_card_until_approved(store: &Store) {
        let out = output();
        assert!(out.cards.len() >= 3, "the synthetic run has cards");
        let run = record(store, &out).await;
        let (a, b, c) = (out.cards[0].key, out.cards[1].key, out.cards[2].key);
        let stage = |key: CardKey, date| NewStage {
            key,
            quantity: None,
            effective_date: Some(date),
            fingerprint: out
                .cards
                .iter()
                .find(|card| card.key == key)
                .expect("a card")
                .numbers_fingerprint(),
        };
        store
            .stage_changes(
                &[stage(a, day(2025, 4, 10)), stage(b, day(2025, 4, 10))],
                "pat",
                at(3, 0),
            )
            .await
            .expect("staged");
        store
            .stage_changes(&[stage(b, day(2025, 4, 20))], "sam", at(3, 1))
            .await
            .expect("restaged");
        let state_a = store.card_state(&a).await.expect("read").expect("a state");
        assert_eq!(state_a.status, CardStatus::Open, "staging decides nothing");
        let staged_a = state_a.staged.expect("a stage");
        assert_eq!(
            (
                staged_a.effective_date,
                staged_a.quantity,
                staged_a.by.as_str()
            ),
            (Some(day(2025, 4, 10)), None, "pat")
        );
        let staged = store.staged_changes(&[a, b, c]).await.expect("read");
        assert_eq!(staged.len(), 2);
        assert_eq!(
            staged[&b].effective_date,
            Some(day(2025, 4, 20)),
            "the later stage wins"
        );
        assert_eq!(staged[&b].by, "sam");

        // A re-reconcile of the same cards: the stage is still there; the
        // card whose numbers moved is flagged.
        let mut moved = out.clone();
        moved.cards[1].psa_quantity =
            Some(moved.cards[1].psa_quantity.unwrap_or_default() + Decimal::ONE);
        let run2 = record(store, &moved).await;
        assert_ne!(run, run2);
        let page = store
            .cards_page(run2, &CardFilter::default(), None, 1000)
            .await
            .expect("a page");
        let listed = |key: CardKey| page.cards.iter().find(|s| s.key == key).expect("listed");
        assert!(
            listed(a)
                .state
                .as_ref()
                .and_then(|s| s.staged.as_ref())
                .is_some()
        );
        assert!(!listed(a).stage_numbers_changed);
        assert!(
            listed(b).stage_numbers_changed,
            "b's numbers moved since its stage"
        );
        assert!(listed(c).state.is_none());

        // A dismissal keeps the stage; an approval consumes it.
        const OP: &str = "dismiss a card";
        let mut tx = store.db.begin(OP).await.expect("a transaction");
        put_state(
            &mut tx,
            OP,
            &b,
            CardStatus::Dismissed,
            Some(&Resolution::Dismissed {
                through: day(2025, 3, 31),
            }),
            None,
            None,
            "pat",
            at(3, 2),
        )
        .await
        .expect("dismissed");
        tx.commit(OP).await.expect("committed");
        assert!(
            store
                .card_state(&b)
                .await
                .expect("read")
                .expect("state")
                .staged
                .is_some()
        );
        approve(store, a, "d-a").await;
        let state_a = store.card_state(&a).await.expect("read").expect("state");
        assert_eq!(
            (state_a.status, state_a.write_back, state_a.staged),
            (CardStatus::Approved, Some(WriteBackStatus::Pending), None)
        );
        store.unstage_changes(&[b, c]).await.expect("unstaged");
        assert!(
            store
                .staged_changes(&[a, b, c])
                .await
                .expect("read")
                .is_empty()
        );

        // The write-back filter: a pending card, then the same card once
        // its write-back needs review.
        let on = |write_back| CardFilter {
            write_back: Some(write_back),
            ..CardFilter::default()
        };
        let keys = |page: crate::reconcile::CardPage| -> Vec<CardKey> {
            page.cards.iter().map(|s| s.key).collect()
        };
        let pending = store
            .cards_page(run2, &on(WriteBackStatus::Pending), None, 100)
            .await
            .expect("a page");
        assert_eq!(keys(pending), [a]);
        let outbox = state_a.outbox.expect("an outbox entry");
        const OP2: &str = "mark needs review";
        let mut tx = store.db.begin(OP2).await.expect("a transaction");
        set_card_write_back(
            &mut tx,
            OP2,
            a.as_str(),
            outbox,
            WriteBackStatus::NeedsReview,
            at(3, 3),
        )
        .await
        .expect("set");
        tx.commit(OP2).await.expect("committed");
        for (filter, expected) in [
            (WriteBackStatus::NeedsReview, vec![a]),
            (WriteBackStatus::Pending, vec![]),
            (WriteBackStatus::Applied, vec![]),
        ] {
            let page = store
                .cards_page(run2, &on(filter), None, 100)
                .await
                .expect("a page");
            assert_eq!(page.total, expected.len() as u64, "{filter:?}");
            assert_eq!(keys(page), expected, "{filter:?}");
        }
    }

    both!(a_staged_change_lives_on_the_card_until_approved,);
}
