//! The write-back worker: takes approved changes from the outbox and makes
//! them in the PSA through its connector, exactly once.
//!
//! Exactly once rests on two things. The outbox hands each entry to one
//! worker at a time under a lease (a crashed worker's lease expires and
//! another takes over). And every write is a SET: the connector reads the
//! PSA first and writes nothing when the PSA already holds the state, so
//! retrying an attempt whose outcome was lost (a crash, a timeout after
//! the PSA answered) cannot apply the change twice.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use trueup_core::model::ServiceLine;
use trueup_plugin_host::journal::{JournalFuture, JournalOutcome as HostOutcome};
use trueup_plugin_host::{ChangePolicy, JournalledWrite, WriteJournal};
use trueup_store::write_review::{JournalOutcome, JournalRow, Mismatch, SentValues, WriteReview};

use serde::Serialize;
use trueup_plugin_host::{
    CallErrorKind, ConnectorFailure, PlannedCall, PsaSession, QuantityChange,
};
use trueup_store::outbox::{ApplyResult, OutboxEntry};

use super::{App, AppError, AppEvent};
use crate::backoff::Backoff;
use crate::queue_worker::{self, QueueWorker};

/// How long a claimed entry stays with its worker before another may take
/// it over, by default (`[write_back] lease_secs`; the configuration owns
/// the default).
pub const WRITE_BACK_LEASE: Duration = crate::config::DEFAULT_WRITE_BACK_LEASE;

/// Attempts before a write-back that keeps failing transiently is given up
/// (and shown on its card).
pub const MAX_WRITE_BACK_ATTEMPTS: u32 = 8;

/// First retry delay; doubles per attempt up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Longest retry delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// How often an idle worker looks for due entries.
pub const IDLE_POLL: Duration = Duration::from_secs(2);

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum WriteBackResult {
    /// The PSA holds the change.
    Applied {
        /// The card.
        card: String,
        /// PSA record ids.
        record_ids: Vec<String>,
        /// False when the PSA already held it (an earlier attempt landed).
        changed: bool,
    },
    /// The PSA refused it for good; the card shows why.
    Rejected {
        /// The card.
        card: String,
        /// The PSA's reason.
        reason: String,
    },
    /// The PSA may hold something other than what was sent: nothing is
    /// sent again until a person accepts or retries it.
    NeedsReview {
        /// The card.
        card: String,
        /// Why, in one sentence.
        reason: String,
    },
    /// It will be tried again.
    Retrying {
        /// The card.
        card: String,
        /// Why this attempt failed.
        error: String,
        /// Seconds until the next attempt.
        in_secs: u64,
    },
}

fn retry_delay(attempts: u32, failure: &CallErrorKind) -> Duration {
    if let CallErrorKind::Connector(ConnectorFailure::RateLimited { retry_after }) = failure {
        return (*retry_after).max(Duration::from_secs(1));
    }
    Backoff::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY).delay(attempts)
}

impl App {
    async fn psa_session(&self) -> Result<PsaSession, AppError> {
        let psa = self.config().psa.clone().ok_or_else(|| {
            AppError::NotConfigured("no [psa] is configured in trueup.toml".into())
        })?;
        let plugin = self.runtime().load(&psa.plugin)?;
        let options = self.session_options(&psa.plugin, self.today()).await?;
        Ok(plugin.psa_session(options)?)
    }

    /// Claims and applies the next due write-back, if any.
    ///
    /// # Errors
    /// A store error, or the PSA connector cannot be loaded.
    pub async fn write_back_next(
        &self,
        session: &mut Option<PsaSession>,
    ) -> Result<Option<WriteBackResult>, AppError> {
        let worker = self.worker_id().to_owned();
        let Some(entry) = self
            .store()
            .claim_next_write_back(&worker, self.config().write_back.lease(), self.now())
            .await?
        else {
            return Ok(None);
        };
        if session.is_none() {
            *session = Some(self.psa_session().await?);
        }
        let Some(session) = session.as_mut() else {
            return Err(AppError::NotConfigured("no PSA session".into()));
        };
        // The lease is renewed beside the apply, so a slow PSA cannot let
        // it expire and another worker take the entry over mid-write.
        let lease = self.config().write_back.lease();
        let result = queue_worker::holding_lease(
            "write-back",
            entry.id.0,
            queue_worker::renewal_interval(lease),
            self.apply_entry(session, &worker, &entry),
            || {
                self.store()
                    .extend_write_back_lease(entry.id, &worker, lease, self.now())
            },
        )
        .await?;
        let (status, message) = match &result {
            WriteBackResult::Applied {
                record_ids,
                changed,
                ..
            } => (
                "applied",
                format!(
                    "{}PSA records {}",
                    if *changed { "" } else { "already in place; " },
                    record_ids.join(", ")
                ),
            ),
            WriteBackResult::Rejected { reason, .. } => ("rejected", reason.clone()),
            WriteBackResult::NeedsReview { reason, .. } => ("needs_review", reason.clone()),
            WriteBackResult::Retrying { error, in_secs, .. } => {
                ("retrying", format!("{error}; next attempt in {in_secs} s"))
            }
        };
        self.emit(AppEvent::WriteBack {
            card: entry.card_key.as_str().to_owned(),
            status: status.to_owned(),
            message,
        });
        Ok(Some(result))
    }

    async fn apply_entry(
        &self,
        session: &mut PsaSession,
        worker: &str,
        entry: &OutboxEntry,
    ) -> Result<WriteBackResult, AppError> {
        let card = entry.card_key.as_str().to_owned();
        let change: QuantityChange = match serde_json::from_value(entry.change.clone()) {
            Ok(change) => change,
            Err(e) => {
                let reason =
                    format!("the stored change cannot be read ({e}); approve the card again");
                self.store()
                    .reject_write_back(entry.id, worker, &reason, self.now())
                    .await?;
                return Ok(WriteBackResult::Rejected { card, reason });
            }
        };
        // An earlier attempt that stopped mid-write (the process died) left
        // writes with no outcome, or with one nobody acted on: the PSA may
        // hold them, so nothing is sent until a person decides.
        let earlier: Vec<JournalRow> = self
            .store()
            .write_journal(entry.id)
            .await?
            .into_iter()
            .filter(|w| {
                w.attempt < entry.attempts
                    && w.reviewed_at.is_none()
                    && w.outcome.may_have_applied()
            })
            .collect();
        if !earlier.is_empty() {
            let review = review_of(
                &change,
                None,
                Vec::new(),
                format!(
                    "an earlier attempt stopped while writing to the PSA ({}); it may have been applied — check the PSA, then accept what it holds or retry",
                    describe_writes(&earlier)
                ),
                None,
                &earlier,
            );
            return self.needs_review(worker, entry, card, review).await;
        }
        // The price the line had before the change: a write must not change
        // it. Read through the connector; a line that cannot be read (yet)
        // is simply not price-checked.
        let price_before = match &change.line_id {
            Some(line) => session
                .read_line(&change.contract_id, line)
                .await
                .ok()
                .map(|l| l.unit_price),
            None => None,
        };
        let journal = Arc::new(OutboxJournal {
            store: self.store().clone(),
            id: entry.id,
            attempt: entry.attempts,
        });
        let applied = session
            .apply_quantity_change_journalled(&change, Some(journal))
            .await;
        let this_attempt = |writes: Vec<JournalRow>| -> Vec<JournalRow> {
            writes
                .into_iter()
                .filter(|w| w.attempt == entry.attempts)
                .collect()
        };
        match applied {
            Ok(outcome) => {
                let mismatches = compare_read_back(&change, &outcome.line, price_before);
                if !mismatches.is_empty() {
                    let writes = this_attempt(self.store().write_journal(entry.id).await?);
                    let review = review_of(
                        &change,
                        Some(outcome.line.clone()),
                        mismatches,
                        "the PSA stored something other than what was sent; nothing is sent again until a person accepts what it holds or retries".to_owned(),
                        Some(outcome.notes.join("; ")).filter(|n| !n.is_empty()),
                        &writes,
                    )
                    .with_record_ids(&outcome.record_ids);
                    return self.needs_review(worker, entry, card, review).await;
                }
                let result = ApplyResult {
                    record_ids: outcome.record_ids.clone(),
                    line: outcome.line,
                };
                self.store()
                    .complete_write_back(entry.id, worker, &result, self.now())
                    .await?;
                self.audit(
                    worker,
                    "writeback.applied",
                    &card,
                    serde_json::json!({ "records": outcome.record_ids, "changed": outcome.changed, "notes": outcome.notes }),
                )
                .await;
                Ok(WriteBackResult::Applied {
                    card,
                    record_ids: outcome.record_ids,
                    changed: outcome.changed,
                })
            }
            Err(error)
                if this_attempt(self.store().write_journal(entry.id).await?)
                    .iter()
                    .any(|w| w.outcome.may_have_applied()) =>
            {
                // A write landed (or may have) and the connector then
                // failed: retrying would write it again.
                let writes = this_attempt(self.store().write_journal(entry.id).await?);
                // Show what the PSA holds when the record the write created
                // (or, failing that, changed) can be read as a line.
                let record = writes
                    .iter()
                    .rev()
                    .filter(|w| w.outcome == JournalOutcome::Acknowledged)
                    .max_by_key(|w| w.method == "POST")
                    .and_then(|w| w.record_id.clone());
                let stored = match record {
                    Some(record) => session.read_line(&change.contract_id, &record).await.ok(),
                    None => None,
                };
                let mismatches = stored
                    .as_ref()
                    .map(|line| compare_read_back(&change, line, price_before))
                    .unwrap_or_default();
                let review = review_of(
                    &change,
                    stored,
                    mismatches,
                    format!(
                        "the connector failed after writing to the PSA ({}); nothing is sent again until a person checks the PSA and accepts or retries",
                        describe_writes(&writes)
                    ),
                    Some(error.to_string()),
                    &writes,
                );
                self.needs_review(worker, entry, card, review).await
            }
            Err(error) if error.is_transient() && entry.attempts < MAX_WRITE_BACK_ATTEMPTS => {
                let delay = retry_delay(entry.attempts, &error.kind);
                let next = self.now() + chrono::Duration::from_std(delay).unwrap_or_default();
                self.store()
                    .retry_write_back(entry.id, worker, &error.to_string(), next, self.now())
                    .await?;
                Ok(WriteBackResult::Retrying {
                    card,
                    error: error.to_string(),
                    in_secs: delay.as_secs(),
                })
            }
            Err(error) => {
                let reason = if error.is_transient() {
                    format!("gave up after {} attempts: {error}", entry.attempts)
                } else {
                    error.to_string()
                };
                self.store()
                    .reject_write_back(entry.id, worker, &reason, self.now())
                    .await?;
                self.audit(
                    worker,
                    "writeback.rejected",
                    &card,
                    serde_json::json!({ "reason": reason }),
                )
                .await;
                Ok(WriteBackResult::Rejected { card, reason })
            }
        }
    }

    async fn needs_review(
        &self,
        worker: &str,
        entry: &OutboxEntry,
        card: String,
        review: WriteReview,
    ) -> Result<WriteBackResult, AppError> {
        self.store()
            .review_write_back(entry.id, worker, &review, self.now())
            .await?;
        Ok(WriteBackResult::NeedsReview {
            card,
            reason: review.reason,
        })
    }

    /// Applies due write-backs until none is due. Returns what happened.
    ///
    /// # Errors
    /// A store error or the PSA connector cannot be loaded.
    pub async fn write_back_due(&self) -> Result<Vec<WriteBackResult>, AppError> {
        let mut session = None;
        let mut results = Vec::new();
        while let Some(result) = self.write_back_next(&mut session).await? {
            results.push(result);
        }
        Ok(results)
    }

    /// Runs the write-back worker until `shutdown` resolves (an entry in
    /// progress is finished first, so its outcome is recorded).
    pub async fn run_write_back_worker(&self, shutdown: impl std::future::Future<Output = ()>) {
        let worker = WriteBackWorker {
            app: self,
            session: None,
        };
        queue_worker::run(worker, IDLE_POLL, shutdown).await;
    }

    /// The exact calls approving `card` (or applying `change`) would make,
    /// without sending any write.
    ///
    /// # Errors
    /// The PSA connector fails to plan.
    pub async fn plan_change(&self, change: &QuantityChange) -> Result<Vec<PlannedCall>, AppError> {
        let mut session = self.psa_session().await?;
        Ok(session.plan_quantity_change(change).await?)
    }
}

/// The outbox's worker; it keeps its PSA session between entries.
struct WriteBackWorker<'a> {
    app: &'a App,
    session: Option<PsaSession>,
}

impl QueueWorker for WriteBackWorker<'_> {
    type Error = AppError;

    fn name(&self) -> &'static str {
        "write-back worker"
    }

    async fn work_next(&mut self) -> Result<bool, AppError> {
        Ok(self.app.write_back_next(&mut self.session).await?.is_some())
    }

    fn after_error(&mut self) {
        // A broken session (e.g. a trap) is rebuilt next time.
        self.session = None;
    }
}

/// Journals an attempt's writes in the store, under its outbox entry.
struct OutboxJournal {
    store: trueup_store::Store,
    id: trueup_store::outbox::OutboxId,
    attempt: u32,
}

impl WriteJournal for OutboxJournal {
    fn record(&self, write: JournalledWrite) -> JournalFuture<'_> {
        Box::pin(async move {
            let row = JournalRow {
                attempt: self.attempt,
                seq: write.seq,
                method: write.method,
                url: write.url,
                outcome: match write.outcome {
                    HostOutcome::Sending => JournalOutcome::Sending,
                    HostOutcome::Acknowledged => JournalOutcome::Acknowledged,
                    HostOutcome::NotApplied => JournalOutcome::NotApplied,
                    HostOutcome::Unknown => JournalOutcome::Unknown,
                },
                status: write.status,
                record_id: write.record_id,
                detail: write.detail,
                recorded_at: write.at,
                reviewed_at: None,
            };
            self.store
                .record_journal_write(self.id, &row)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Where the line the PSA read back differs from the change: the
/// quantity; the first day, for a dated change or an addition; the unit
/// price, against the line's price before the change.
fn compare_read_back(
    change: &QuantityChange,
    line: &ServiceLine,
    price_before: Option<Decimal>,
) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    if line.quantity != change.new_quantity {
        mismatches.push(Mismatch {
            field: "quantity".into(),
            sent: change.new_quantity.to_string(),
            stored: line.quantity.to_string(),
        });
    }
    // A dated change that made a line of its own (an addition, or a new
    // addition replacing the old one) must start on the effective date. A
    // line changed in place (a PSA that keeps no dated history, e.g.
    // HaloPSA) keeps its own first day, which says nothing about the write.
    let new_line = change.line_id.as_deref() != Some(line.id.as_str());
    let dated = new_line && (change.policy == ChangePolicy::Dated || change.line_id.is_none());
    if dated && line.effective_date != Some(change.effective_date) {
        mismatches.push(Mismatch {
            field: "effective_date".into(),
            sent: change.effective_date.to_string(),
            stored: line
                .effective_date
                .map_or_else(|| "none".to_owned(), |d| d.to_string()),
        });
    }
    if let Some(before) = price_before
        && line.unit_price != before
    {
        mismatches.push(Mismatch {
            field: "unit_price".into(),
            sent: before.to_string(),
            stored: line.unit_price.to_string(),
        });
    }
    mismatches
}

fn review_of(
    change: &QuantityChange,
    stored: Option<ServiceLine>,
    mismatches: Vec<Mismatch>,
    reason: String,
    connector_said: Option<String>,
    writes: &[JournalRow],
) -> WriteReview {
    let record_ids = writes.iter().filter_map(|w| w.record_id.clone()).collect();
    let unit_price = mismatches
        .iter()
        .find(|m| m.field == "unit_price")
        .and_then(|m| m.sent.parse().ok());
    WriteReview {
        reason,
        sent: SentValues {
            quantity: change.new_quantity,
            effective_date: change.effective_date,
            unit_price,
        },
        stored,
        mismatches,
        connector_said,
        record_ids,
    }
}

trait WithRecordIds {
    fn with_record_ids(self, ids: &[String]) -> Self;
}

impl WithRecordIds for WriteReview {
    fn with_record_ids(mut self, ids: &[String]) -> Self {
        for id in ids {
            if !self.record_ids.contains(id) {
                self.record_ids.push(id.clone());
            }
        }
        self
    }
}

/// "POST https://… acknowledged (record 7)", joined.
fn describe_writes(writes: &[JournalRow]) -> String {
    writes
        .iter()
        .map(|w| {
            let status = w.status.map_or_else(String::new, |s| format!(" {s}"));
            let record = w
                .record_id
                .as_deref()
                .map_or_else(String::new, |r| format!(" (record {r})"));
            let outcome = match w.outcome {
                JournalOutcome::Sending => "sent, no answer recorded",
                JournalOutcome::Acknowledged => "acknowledged",
                JournalOutcome::NotApplied => "not applied",
                JournalOutcome::Unknown => "outcome unknown",
            };
            format!("{} {}: {outcome}{status}{record}", w.method, w.url)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(line: Option<&str>, policy: ChangePolicy) -> QuantityChange {
        QuantityChange {
            contract_id: "K1".into(),
            line_id: line.map(str::to_owned),
            product_identifier: "M365-BP".into(),
            expected_quantity: Decimal::from(3),
            new_quantity: Decimal::from(5),
            effective_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date"),
            policy,
            idempotency_key: "k".into(),
        }
    }

    fn stored(quantity: i64, price: i64, day: u32) -> ServiceLine {
        ServiceLine {
            id: "L2".into(),
            contract_id: "K1".into(),
            product_id: "101".into(),
            product_identifier: "M365-BP".into(),
            description: "Microsoft 365 Business Premium".into(),
            quantity: Decimal::from(quantity),
            unit_price: Decimal::from(price),
            unit_cost: Decimal::ONE,
            effective_date: chrono::NaiveDate::from_ymd_opt(2026, 12, day),
            cancelled_date: None,
            billable: true,
        }
    }

    fn fields(mismatches: &[Mismatch]) -> Vec<&str> {
        mismatches.iter().map(|m| m.field.as_str()).collect()
    }

    #[test]
    fn a_read_back_that_differs_is_named_field_by_field() {
        let dated = change(Some("L1"), ChangePolicy::Dated);
        let price = Some(Decimal::from(72));
        assert!(compare_read_back(&dated, &stored(5, 72, 1), price).is_empty());
        assert_eq!(
            fields(&compare_read_back(&dated, &stored(4, 72, 1), price)),
            ["quantity"]
        );
        assert_eq!(
            fields(&compare_read_back(&dated, &stored(5, 72, 2), price)),
            ["effective_date"]
        );
        let repriced = compare_read_back(&dated, &stored(5, 6, 1), price);
        assert_eq!(fields(&repriced), ["unit_price"]);
        assert_eq!(
            (repriced[0].sent.as_str(), repriced[0].stored.as_str()),
            ("72", "6")
        );
        // An immediate change to an existing line carries no date; nor does
        // a line changed in place.
        let immediate = change(Some("L1"), ChangePolicy::Immediate);
        assert!(compare_read_back(&immediate, &stored(5, 72, 9), price).is_empty());
        let in_place = change(Some("L1"), ChangePolicy::Dated);
        let mut same = stored(5, 72, 9);
        same.id = "L1".into();
        assert!(compare_read_back(&in_place, &same, price).is_empty());
        // An addition is dated, and unpriced when nothing was known before.
        let addition = change(None, ChangePolicy::Immediate);
        assert_eq!(
            fields(&compare_read_back(&addition, &stored(5, 9, 9), None)),
            ["effective_date"]
        );
    }

    #[test]
    fn retries_back_off_and_respect_rate_limits() {
        let other = CallErrorKind::Timeout {
            limit: Duration::from_secs(30),
        };
        assert_eq!(retry_delay(1, &other), Duration::from_secs(5));
        assert_eq!(retry_delay(3, &other), Duration::from_secs(20));
        assert_eq!(retry_delay(20, &other), MAX_RETRY_DELAY);
        let limited = CallErrorKind::Connector(ConnectorFailure::RateLimited {
            retry_after: Duration::from_secs(42),
        });
        assert_eq!(retry_delay(5, &limited), Duration::from_secs(42));
    }
}
