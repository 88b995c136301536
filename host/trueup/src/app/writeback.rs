//! The write-back worker: takes approved changes from the outbox and makes
//! them in the PSA through its connector, exactly once.
//!
//! Exactly once rests on two things. The outbox hands each entry to one
//! worker at a time under a lease (a crashed worker's lease expires and
//! another takes over). And every write is a SET: the connector reads the
//! PSA first and writes nothing when the PSA already holds the state, so
//! retrying an attempt whose outcome was lost (a crash, a timeout after
//! the PSA answered) cannot apply the change twice.

use std::time::Duration;

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
        match session.apply_quantity_change(&change).await {
            Ok(outcome) => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
