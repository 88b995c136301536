//! Write-backs a person must look at, and the journal that decides it.
//!
//! The plugin host journals every write a connector sends for an outbox
//! entry ([`Store::record_journal_write`]): "sending" before it leaves and
//! its outcome after. A write the PSA acknowledged — or may have applied —
//! is never sent again by the worker: the entry goes to `needs_review`
//! ([`Store::review_write_back`]) with what was sent and what the PSA
//! stored, and waits for a person: [`Store::accept_write_back`] (the PSA's
//! version is the truth), [`Store::retry_reviewed_write_back`] (send
//! again, explicitly) or, for an entry that never ran,
//! [`Store::cancel_write_back`].

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::model::ServiceLine;

use crate::Store;
use crate::audit::{NewAuditEntry, append_audit};
use crate::card_state::{WriteBackStatus, set_card_write_back};
use crate::db::{Row, Tx, enum_text, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::OutboxId;

/// What became of one journalled write (the plugin host's outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalOutcome {
    /// About to be sent, no outcome recorded: the process stopped
    /// mid-write. May have been applied.
    Sending,
    /// The PSA answered 2xx.
    Acknowledged,
    /// The PSA definitely did not apply it.
    NotApplied,
    /// It may have been applied.
    Unknown,
}

impl JournalOutcome {
    /// Anything but a definite "not applied".
    pub fn may_have_applied(self) -> bool {
        self != JournalOutcome::NotApplied
    }
}

/// One journalled write of an outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRow {
    /// The attempt (the entry's `attempts` when it was claimed).
    pub attempt: u32,
    /// The request's number within the attempt.
    pub seq: u32,
    /// HTTP method.
    pub method: String,
    /// URL (secrets redacted by the host).
    pub url: String,
    /// The outcome.
    pub outcome: JournalOutcome,
    /// HTTP status, when one came back.
    pub status: Option<u16>,
    /// The record id in the answer.
    pub record_id: Option<String>,
    /// Why, for a person.
    pub detail: Option<String>,
    /// When recorded.
    pub recorded_at: DateTime<Utc>,
    /// When a person's decision took it into account.
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// One value that differs between what was sent and what the PSA stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// `quantity`, `effective_date` or `unit_price`.
    pub field: String,
    /// What was sent (or expected).
    pub sent: String,
    /// What the PSA stored.
    pub stored: String,
}

/// What was sent for a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentValues {
    /// Quantity set.
    pub quantity: Decimal,
    /// First day of it.
    pub effective_date: NaiveDate,
    /// Unit price expected, when known.
    pub unit_price: Option<Decimal>,
}

/// Why a write-back waits for a person, as recorded on its entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReview {
    /// One sentence for the card.
    pub reason: String,
    /// What was sent.
    pub sent: SentValues,
    /// The line the PSA holds, when it was read back.
    pub stored: Option<ServiceLine>,
    /// The values that differ.
    pub mismatches: Vec<Mismatch>,
    /// The connector's own words (its error or notes).
    pub connector_said: Option<String>,
    /// PSA record ids the connector or the journal named.
    pub record_ids: Vec<String>,
}

/// An entry waiting for review with its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewedEntry {
    /// The review.
    pub review: WriteReview,
    /// Every journalled write of the entry, oldest first.
    pub writes: Vec<JournalRow>,
}

/// What a person's decision on a write-back did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReviewDecision {
    /// Done.
    Done {
        /// The entry's status now.
        status: String,
    },
    /// Not possible in the entry's state; says why (409).
    Refused {
        /// Why, for a person.
        reason: String,
    },
}

fn journal_from_row(r: &Row) -> Result<JournalRow> {
    Ok(JournalRow {
        attempt: u32::try_from(r.int("attempt")?).unwrap_or(u32::MAX),
        seq: u32::try_from(r.int("seq")?).unwrap_or(u32::MAX),
        method: r.text("method")?,
        url: r.text("url")?,
        outcome: r.enum_value("outcome", "a journal outcome")?,
        status: r.opt_int("status")?.and_then(|s| u16::try_from(s).ok()),
        record_id: r.opt_text("record_id")?,
        detail: r.opt_text("detail")?,
        recorded_at: r.instant("recorded_at")?,
        reviewed_at: r.opt_instant("reviewed_at")?,
    })
}

const JOURNAL_COLUMNS: &str =
    "attempt, seq, method, url, outcome, status, record_id, detail, recorded_at, reviewed_at";

/// The status and card of entry `id`, inside `tx`.
async fn entry_status(tx: &mut Tx, op: &'static str, id: OutboxId) -> Result<(String, String)> {
    let row = tx
        .fetch_optional(
            sql(
                op,
                "outbox",
                "SELECT status, card_key FROM outbox WHERE id = $1",
            )
            .bind(id),
        )
        .await?
        .ok_or_else(|| StoreError::not_found(op, "outbox entry", id))?;
    Ok((row.text("status")?, row.text("card_key")?))
}

async fn mark_reviewed(
    tx: &mut Tx,
    op: &'static str,
    id: OutboxId,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        sql(
            op,
            "write_journal",
            "UPDATE write_journal SET reviewed_at = $2 WHERE outbox_id = $1 AND reviewed_at IS NULL",
        )
        .bind(id)
        .bind(now),
    )
    .await?;
    Ok(())
}

async fn audit(
    tx: &mut Tx,
    op: &'static str,
    by: &str,
    action: &str,
    card_key: &str,
    details: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<()> {
    append_audit(
        tx,
        op,
        &NewAuditEntry {
            at: now,
            actor: by.to_owned(),
            action: action.to_owned(),
            subject: format!("card:{card_key}"),
            details,
        },
    )
    .await
    .map(|_| ())
}

/// The writes that may have reached the PSA, in words: "record 42
/// (POST …, acknowledged at …)".
fn written_words(writes: &[JournalRow]) -> Option<String> {
    let landed: Vec<String> = writes
        .iter()
        .filter(|w| w.outcome.may_have_applied())
        .map(|w| {
            let record = w
                .record_id
                .as_deref()
                .map_or_else(String::new, |r| format!("record {r}, "));
            format!(
                "{record}{} {} {} at {}",
                w.method,
                w.url,
                enum_text(&w.outcome),
                w.recorded_at.to_rfc3339()
            )
        })
        .collect();
    (!landed.is_empty()).then(|| landed.join("; "))
}

impl Store {
    /// Records (or updates, by attempt and sequence number) one
    /// journalled write of entry `id`.
    ///
    /// # Errors
    /// A database error (the host then does not send the write).
    pub async fn record_journal_write(&self, id: OutboxId, write: &JournalRow) -> Result<()> {
        const OP: &str = "journal a write";
        self.db
            .execute(
                sql(
                    OP,
                    "write_journal",
                    "INSERT INTO write_journal (outbox_id, attempt, seq, method, url, outcome, status, \
                     record_id, detail, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (outbox_id, attempt, seq) DO UPDATE SET outcome = excluded.outcome, \
                     status = excluded.status, record_id = excluded.record_id, detail = excluded.detail, \
                     recorded_at = excluded.recorded_at",
                )
                .bind(id)
                .bind(i64::from(write.attempt))
                .bind(i64::from(write.seq))
                .bind(write.method.as_str())
                .bind(write.url.as_str())
                .bind(enum_text(&write.outcome))
                .bind(write.status.map(i64::from))
                .bind(write.record_id.as_deref())
                .bind(write.detail.as_deref())
                .bind(write.recorded_at),
            )
            .await?;
        Ok(())
    }

    /// Every journalled write of entry `id`, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn write_journal(&self, id: OutboxId) -> Result<Vec<JournalRow>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read write journal",
                    "write_journal",
                    format!(
                        "SELECT {JOURNAL_COLUMNS} FROM write_journal WHERE outbox_id = $1 ORDER BY attempt, seq"
                    ),
                )
                .bind(id),
            )
            .await?;
        rows.iter().map(journal_from_row).collect()
    }

    /// Puts an in-flight entry in `needs_review` in ONE transaction: the
    /// review recorded, the card's write-back status `needs_review`, an
    /// audit entry. Nothing is sent again until a person decides.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when `worker` no longer holds the entry.
    pub async fn review_write_back(
        &self,
        id: OutboxId,
        worker: &str,
        review: &WriteReview,
        now: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record write-back needing review";
        let mut tx = self.db.begin(OP).await?;
        let row = tx
            .fetch_optional(
                sql(
                    OP,
                    "outbox",
                    "UPDATE outbox SET status = 'needs_review', review = $3, error = $4, \
                     lease_owner = NULL, lease_expires_at = NULL, updated_at = $5, finished_at = $5 \
                     WHERE id = $1 AND status = 'in_flight' AND lease_owner = $2 RETURNING card_key",
                )
                .bind(id)
                .bind(worker)
                .bind(json_text(OP, review)?)
                .bind(review.reason.as_str())
                .bind(now),
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::LeaseLost {
                operation: OP,
                what: "outbox entry",
                id: id.0,
                worker: worker.to_owned(),
            });
        };
        let card_key = row.text("card_key")?;
        set_card_write_back(
            &mut tx,
            OP,
            &card_key,
            id,
            WriteBackStatus::NeedsReview,
            now,
        )
        .await?;
        audit(
            &mut tx,
            OP,
            &format!("worker:{worker}"),
            "write_back.needs_review",
            &card_key,
            serde_json::json!({ "outbox_id": id.0, "review": review }),
            now,
        )
        .await?;
        tx.commit(OP).await
    }

    /// The review of entry `id` and its journal (`None`: it has no review).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or a database error.
    pub async fn write_review(&self, id: OutboxId) -> Result<Option<ReviewedEntry>> {
        const OP: &str = "read write-back review";
        let row = self
            .db
            .fetch_optional(sql(OP, "outbox", "SELECT review FROM outbox WHERE id = $1").bind(id))
            .await?
            .ok_or_else(|| StoreError::not_found(OP, "outbox entry", id))?;
        let Some(review) = row.opt_json::<WriteReview>("review")? else {
            return Ok(None);
        };
        let writes = self.write_journal(id).await?;
        Ok(Some(ReviewedEntry { review, writes }))
    }

    /// A person accepts what the PSA stored: the entry becomes `applied`
    /// with the stored line (and the journal's record ids), the card's
    /// write-back `applied`, audited as `by`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or a database error.
    pub async fn accept_write_back(
        &self,
        id: OutboxId,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ReviewDecision> {
        const OP: &str = "accept reviewed write-back";
        let review = self.write_review(id).await?;
        let mut tx = self.db.begin(OP).await?;
        let (status, card_key) = entry_status(&mut tx, OP, id).await?;
        let Some(reviewed) = review.filter(|_| status == "needs_review") else {
            return Ok(ReviewDecision::Refused {
                reason: format!(
                    "write-back {id} is {status}, not waiting for review: only a write-back that needs review can be accepted"
                ),
            });
        };
        let mut record_ids = reviewed.review.record_ids.clone();
        for write in &reviewed.writes {
            if let Some(record) = &write.record_id
                && write.outcome == JournalOutcome::Acknowledged
                && !record_ids.contains(record)
            {
                record_ids.push(record.clone());
            }
        }
        let line = match &reviewed.review.stored {
            Some(line) => Some(json_text(OP, line)?),
            None => None,
        };
        tx.execute(
            sql(
                OP,
                "outbox",
                "UPDATE outbox SET status = 'applied', result_record_ids = $2, result_line = $3, \
                 updated_at = $4, finished_at = $4 WHERE id = $1 AND status = 'needs_review'",
            )
            .bind(id)
            .bind(json_text(OP, &record_ids)?)
            .bind(line)
            .bind(now),
        )
        .await?;
        mark_reviewed(&mut tx, OP, id, now).await?;
        set_card_write_back(&mut tx, OP, &card_key, id, WriteBackStatus::Applied, now).await?;
        audit(
            &mut tx,
            OP,
            by,
            "write_back.accepted",
            &card_key,
            serde_json::json!({ "outbox_id": id.0, "record_ids": record_ids, "stored": reviewed.review.stored }),
            now,
        )
        .await?;
        tx.commit(OP).await?;
        Ok(ReviewDecision::Done {
            status: "applied".into(),
        })
    }

    /// A person asks for the write to be sent again: a `needs_review`
    /// entry is `pending` from `now`, its journalled writes marked reviewed
    /// (they no longer hold it back), audited as `by`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or a database error.
    pub async fn retry_reviewed_write_back(
        &self,
        id: OutboxId,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ReviewDecision> {
        const OP: &str = "retry reviewed write-back";
        let mut tx = self.db.begin(OP).await?;
        let (status, card_key) = entry_status(&mut tx, OP, id).await?;
        if status != "needs_review" {
            return Ok(ReviewDecision::Refused {
                reason: format!(
                    "write-back {id} is {status}, not waiting for review: only a write-back that needs review can be retried by hand"
                ),
            });
        }
        tx.execute(
            sql(
                OP,
                "outbox",
                "UPDATE outbox SET status = 'pending', next_attempt_at = $2, updated_at = $2, \
                 finished_at = NULL WHERE id = $1 AND status = 'needs_review'",
            )
            .bind(id)
            .bind(now),
        )
        .await?;
        mark_reviewed(&mut tx, OP, id, now).await?;
        set_card_write_back(&mut tx, OP, &card_key, id, WriteBackStatus::Pending, now).await?;
        audit(
            &mut tx,
            OP,
            by,
            "write_back.retried",
            &card_key,
            serde_json::json!({ "outbox_id": id.0 }),
            now,
        )
        .await?;
        tx.commit(OP).await?;
        Ok(ReviewDecision::Done {
            status: "pending".into(),
        })
    }

    /// A person withdraws a write-back that has not run: a `pending` entry
    /// none of whose writes may have reached the PSA becomes `cancelled`
    /// and its card open again. One that ran (or may have) is refused,
    /// saying what was written (record, when).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or a database error.
    pub async fn cancel_write_back(
        &self,
        id: OutboxId,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ReviewDecision> {
        const OP: &str = "cancel write-back";
        let writes = self.write_journal(id).await?;
        let mut tx = self.db.begin(OP).await?;
        let (status, card_key) = entry_status(&mut tx, OP, id).await?;
        let written = written_words(&writes);
        let refusal = match (status.as_str(), &written) {
            ("pending", None) => None,
            ("in_flight", _) => Some(format!(
                "write-back {id} is being written to the PSA now; look again in a minute"
            )),
            ("cancelled", _) => Some(format!("write-back {id} is already cancelled")),
            ("rejected", _) => Some(format!(
                "write-back {id} was refused by the PSA; there is nothing to cancel"
            )),
            (_, Some(words)) => Some(format!(
                "write-back {id} was already written to the PSA ({words}); accept or correct it in the PSA instead"
            )),
            (other, None) => {
                let row = tx
                    .fetch_one(
                        sql(
                            OP,
                            "outbox",
                            "SELECT result_record_ids, finished_at FROM outbox WHERE id = $1",
                        )
                        .bind(id),
                    )
                    .await?;
                let records = row
                    .opt_json::<Vec<String>>("result_record_ids")?
                    .unwrap_or_default()
                    .join(", ");
                let when = row
                    .opt_instant("finished_at")?
                    .map_or_else(String::new, |at| format!(" at {}", at.to_rfc3339()));
                Some(format!(
                    "write-back {id} is {other}: it was written to the PSA (records {records}{when})"
                ))
            }
        };
        if let Some(reason) = refusal {
            return Ok(ReviewDecision::Refused { reason });
        }
        tx.execute(
            sql(
                OP,
                "outbox",
                "UPDATE outbox SET status = 'cancelled', updated_at = $2, finished_at = $2 \
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(now),
        )
        .await?;
        set_card_write_back(&mut tx, OP, &card_key, id, WriteBackStatus::Cancelled, now).await?;
        audit(
            &mut tx,
            OP,
            by,
            "write_back.cancelled",
            &card_key,
            serde_json::json!({ "outbox_id": id.0 }),
            now,
        )
        .await?;
        tx.commit(OP).await?;
        Ok(ReviewDecision::Done {
            status: "cancelled".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rust_decimal::Decimal;
    use trueup_core::card::CardKey;

    use super::*;
    use crate::card_state::{CardStatus, put_state};
    use crate::outbox::{NewOutboxEntry, OutboxStatus};
    use crate::testing::TestStore;
    use crate::testing::fixtures::{at, both};

    fn line(quantity: Decimal, price: Decimal) -> ServiceLine {
        ServiceLine {
            id: "L1".into(),
            contract_id: "K1".into(),
            product_id: "101".into(),
            product_identifier: "M365-BP".into(),
            description: "Microsoft 365 Business Premium".into(),
            quantity,
            unit_price: price,
            unit_cost: Decimal::ONE,
            effective_date: NaiveDate::from_ymd_opt(2026, 11, 1),
            cancelled_date: None,
            billable: true,
        }
    }

    fn write(attempt: u32, seq: u32, outcome: JournalOutcome, record: Option<&str>) -> JournalRow {
        JournalRow {
            attempt,
            seq,
            method: "POST".into(),
            url: "https://psa.example/v4_6_release/apis/3.0/finance/agreements/1/additions".into(),
            outcome,
            status: (outcome == JournalOutcome::Acknowledged).then_some(201),
            record_id: record.map(str::to_owned),
            detail: None,
            recorded_at: at(2, 10),
            reviewed_at: None,
        }
    }

    /// An approved card with entry `i` in the outbox.
    async fn enqueue(store: &TestStore, i: u128) -> (OutboxId, CardKey) {
        let key = CardKey::from_hex(&format!("{i:032x}")).expect("a card key");
        let id = store
            .store()
            .enqueue_write_back(
                &NewOutboxEntry {
                    idempotency_key: format!("review-{i}"),
                    card_key: key,
                    change: serde_json::json!({ "new_quantity": "5" }),
                    not_before: at(1, 0),
                },
                at(1, 0),
            )
            .await
            .expect("enqueued");
        const OP: &str = "test card state";
        let mut tx = store.store().db.begin(OP).await.expect("a transaction");
        put_state(
            &mut tx,
            OP,
            &key,
            CardStatus::Approved,
            None,
            Some(id),
            None,
            "alice",
            at(1, 0),
        )
        .await
        .expect("card state");
        tx.commit(OP).await.expect("committed");
        (id, key)
    }

    fn review(stored: Option<ServiceLine>) -> WriteReview {
        WriteReview {
            reason: "the PSA stored another price".into(),
            sent: SentValues {
                quantity: Decimal::from(5),
                effective_date: NaiveDate::from_ymd_opt(2026, 11, 1).expect("a date"),
                unit_price: Some(Decimal::from(72)),
            },
            stored,
            mismatches: vec![Mismatch {
                field: "unit_price".into(),
                sent: "72".into(),
                stored: "6".into(),
            }],
            connector_said: None,
            record_ids: Vec::new(),
        }
    }

    async fn status(store: &TestStore, id: OutboxId) -> OutboxStatus {
        store
            .store()
            .outbox_entry(id)
            .await
            .expect("the entry")
            .status
    }

    async fn card_write_back(store: &TestStore, key: &CardKey) -> Option<WriteBackStatus> {
        store
            .store()
            .card_state(key)
            .await
            .expect("card state")
            .and_then(|s| s.write_back)
    }

    async fn a_reviewed_write_back_waits_for_a_person(store: &TestStore) {
        let s = store.store();
        let (id, key) = enqueue(store, 1).await;
        let lease = Duration::from_secs(60);
        let claimed = s
            .claim_next_write_back("w1", lease, at(2, 10))
            .await
            .expect("claim")
            .expect("an entry");
        assert_eq!(claimed.id, id);
        // Sending, then acknowledged: the second record replaces the first.
        s.record_journal_write(id, &write(1, 1, JournalOutcome::Sending, None))
            .await
            .expect("journalled");
        s.record_journal_write(id, &write(1, 1, JournalOutcome::Acknowledged, Some("77")))
            .await
            .expect("journalled");
        let journal = s.write_journal(id).await.expect("journal");
        assert_eq!(journal.len(), 1);
        assert_eq!(journal[0].outcome, JournalOutcome::Acknowledged);
        assert_eq!(journal[0].record_id.as_deref(), Some("77"));

        let stored = line(Decimal::from(5), Decimal::from(6));
        s.review_write_back(id, "w1", &review(Some(stored.clone())), at(2, 10))
            .await
            .expect("needs review");
        assert_eq!(status(store, id).await, OutboxStatus::NeedsReview);
        assert_eq!(
            card_write_back(store, &key).await,
            Some(WriteBackStatus::NeedsReview)
        );
        // Never claimed again by a worker.
        assert!(
            s.claim_next_write_back("w2", lease, at(9, 0))
                .await
                .expect("claim")
                .is_none()
        );
        let reviewed = s.write_review(id).await.expect("read").expect("a review");
        assert_eq!(reviewed.review.stored.as_ref(), Some(&stored));
        assert_eq!(reviewed.writes.len(), 1);

        // It ran: cancelling says what was written.
        let ReviewDecision::Refused { reason } = s
            .cancel_write_back(id, "alice", at(2, 11))
            .await
            .expect("cancel")
        else {
            panic!("a written entry was cancelled");
        };
        assert!(reason.contains("record 77"), "{reason}");

        // Retry by hand: pending now, the earlier writes marked reviewed.
        assert_eq!(
            s.retry_reviewed_write_back(id, "alice", at(2, 12))
                .await
                .expect("retry"),
            ReviewDecision::Done {
                status: "pending".into()
            }
        );
        assert_eq!(
            card_write_back(store, &key).await,
            Some(WriteBackStatus::Pending)
        );
        assert!(
            s.write_journal(id).await.expect("journal")[0]
                .reviewed_at
                .is_some()
        );
        let again = s
            .claim_next_write_back("w2", lease, at(2, 12))
            .await
            .expect("claim")
            .expect("claimed again");
        assert_eq!(again.attempts, 2);
        s.review_write_back(id, "w2", &review(Some(stored.clone())), at(2, 13))
            .await
            .expect("needs review again");

        // Accept: applied with the stored line and the journal's record.
        assert_eq!(
            s.accept_write_back(id, "alice", at(2, 14))
                .await
                .expect("accept"),
            ReviewDecision::Done {
                status: "applied".into()
            }
        );
        let entry = s.outbox_entry(id).await.expect("the entry");
        assert_eq!(entry.status, OutboxStatus::Applied);
        let result = entry.result.expect("a result");
        assert_eq!(result.line, stored);
        assert_eq!(result.record_ids, vec!["77".to_owned()]);
        assert_eq!(
            card_write_back(store, &key).await,
            Some(WriteBackStatus::Applied)
        );
        // Accepting twice is refused.
        assert!(matches!(
            s.accept_write_back(id, "alice", at(2, 15))
                .await
                .expect("accept"),
            ReviewDecision::Refused { .. }
        ));
        let audit = s
            .audit_entries(&crate::audit::AuditFilter::default(), 100)
            .await
            .expect("audit");
        for action in [
            "write_back.needs_review",
            "write_back.retried",
            "write_back.accepted",
        ] {
            assert!(
                audit.iter().any(|a| a.entry.action == action),
                "no {action} in the audit"
            );
        }
    }

    async fn a_pending_write_back_can_be_cancelled_once(store: &TestStore) {
        let s = store.store();
        let (id, key) = enqueue(store, 2).await;
        assert_eq!(
            s.cancel_write_back(id, "alice", at(1, 1))
                .await
                .expect("cancel"),
            ReviewDecision::Done {
                status: "cancelled".into()
            }
        );
        assert_eq!(status(store, id).await, OutboxStatus::Cancelled);
        let state = s.card_state(&key).await.expect("state").expect("a state");
        assert_eq!(state.write_back, Some(WriteBackStatus::Cancelled));
        assert_eq!(state.status, CardStatus::Open);
        assert!(
            s.claim_next_write_back("w1", Duration::from_secs(60), at(9, 0))
                .await
                .expect("claim")
                .is_none(),
            "a cancelled entry was claimed"
        );
        assert!(matches!(
            s.cancel_write_back(id, "alice", at(1, 2))
                .await
                .expect("cancel"),
            ReviewDecision::Refused { .. }
        ));

        // A retried entry whose earlier write may have landed is not
        // cancellable.
        let (other, _) = enqueue(store, 3).await;
        s.record_journal_write(other, &write(1, 1, JournalOutcome::Unknown, None))
            .await
            .expect("journalled");
        let ReviewDecision::Refused { reason } = s
            .cancel_write_back(other, "alice", at(1, 3))
            .await
            .expect("cancel")
        else {
            panic!("a possibly written entry was cancelled");
        };
        assert!(reason.contains("already written"), "{reason}");
    }

    both!(
        a_reviewed_write_back_waits_for_a_person,
        a_pending_write_back_can_be_cancelled_once,
    );
}
