//! Decisions on cards: approve, adjust, dismiss, snooze, exclude — singly
//! or in bulk — through the core's pure decision rules. An approval becomes
//! an outbox entry (the PSA is never edited here), recorded in the same
//! transaction as the decision.

use serde::Serialize;
use trueup_core::actions::{Action, DecisionContext, PendingWriteBack, Resolution, decide_bulk};
use trueup_core::card::{CardKey, ServiceCard};
use trueup_plugin_host::{ChangePolicy, QuantityChange};
use trueup_store::cards::NewDecision;
use trueup_store::outbox::NewOutboxEntry;
use trueup_store::reconcile::ReconcileRunId;

use super::{App, AppError};

/// What a (bulk) decision did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecideOutcome {
    /// The decision's id.
    pub decision: String,
    /// Cards decided.
    pub decided: Vec<String>,
    /// Cards refused, with why.
    pub refused: Vec<(String, String)>,
    /// Write-backs enqueued.
    pub write_backs: usize,
}

/// The change a write-back makes, as the plugin host takes it.
pub fn quantity_change(pending: &PendingWriteBack) -> QuantityChange {
    QuantityChange {
        contract_id: pending.contract.to_string(),
        line_id: pending.line.as_ref().map(|l| l.to_string()),
        product_identifier: pending.product.to_string(),
        expected_quantity: pending.from_quantity,
        new_quantity: pending.to_quantity,
        effective_date: pending.effective_date,
        policy: match pending.change_policy {
            trueup_core::effective::ChangePolicy::Dated => ChangePolicy::Dated,
            trueup_core::effective::ChangePolicy::Immediate => ChangePolicy::Immediate,
        },
        idempotency_key: pending.idempotency_key.clone(),
    }
}

impl App {
    /// The run cards are decided from: `run`, or the latest.
    ///
    /// # Errors
    /// No reconcile run yet.
    pub async fn run_or_latest(
        &self,
        run: Option<ReconcileRunId>,
    ) -> Result<ReconcileRunId, AppError> {
        match run {
            Some(run) => Ok(run),
            None => Ok(self
                .store()
                .latest_reconcile_run()
                .await?
                .ok_or_else(|| AppError::NotFound("no reconcile has run yet".into()))?
                .id),
        }
    }

    /// Applies `action` to `keys` of `run` (the latest when `None`) for
    /// `actor`. Cards the action is not valid for are refused with the
    /// reason; the others are decided in one transaction.
    ///
    /// # Errors
    /// A store error (nothing is recorded then), or no run.
    pub async fn decide(
        &self,
        run: Option<ReconcileRunId>,
        keys: &[CardKey],
        action: &Action,
        actor: &str,
    ) -> Result<DecideOutcome, AppError> {
        let run = self.run_or_latest(run).await?;
        let mut cards: Vec<ServiceCard> = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(card) = self.store().card(run, key).await? {
                cards.push(card);
            }
        }
        let decision = trueup_store::new_id()?;
        let today = self.today();
        let outcome = decide_bulk(
            &cards,
            keys,
            action,
            &DecisionContext {
                decision_id: &decision,
                today,
            },
        );
        let now = self.now();
        let mut records = Vec::with_capacity(outcome.decided.len());
        let mut write_backs = 0;
        for (key, resolution) in &outcome.decided {
            let outbox = match resolution {
                Resolution::WriteBack(pending) => {
                    write_backs += 1;
                    let change = serde_json::to_value(quantity_change(pending))
                        .map_err(|e| AppError::Invalid(format!("encoding the change: {e}")))?;
                    Some(NewOutboxEntry {
                        idempotency_key: pending.idempotency_key.clone(),
                        card_key: *key,
                        change,
                        not_before: now,
                    })
                }
                _ => None,
            };
            records.push(NewDecision {
                id: format!("{decision}/{}", key.as_str()),
                card_key: *key,
                run: Some(run),
                action: action.clone(),
                resolution: resolution.clone(),
                outbox,
                actor: actor.to_owned(),
                at: now,
            });
        }
        self.store().record_decisions(&records).await?;
        let outcome = DecideOutcome {
            decision,
            decided: outcome
                .decided
                .iter()
                .map(|(k, _)| k.as_str().to_owned())
                .collect(),
            refused: outcome
                .failed
                .iter()
                .map(|(k, e)| (k.as_str().to_owned(), e.to_string()))
                .collect(),
            write_backs,
        };
        self.audit(
            actor,
            "cards.decide",
            &format!("run {}", run.0),
            serde_json::json!({ "action": action, "decided": outcome.decided, "refused": outcome.refused }),
        )
        .await;
        Ok(outcome)
    }
}
