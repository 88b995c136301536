//! Decisions on cards: approve, adjust, dismiss, snooze, exclude — singly
//! or in bulk — through the core's pure decision rules. An approval becomes
//! an outbox entry (the PSA is never edited here), recorded in the same
//! transaction as the decision. A change can be staged first (bulk "set
//! effective date"): staging writes nothing anywhere but the card's state,
//! and an approval then uses the staged values. What a decision would
//! write is previewed by the same code path without recording anything.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use trueup_core::actions::{
    Action, BulkOutcome, DecisionContext, PendingWriteBack, Resolution, Staged, WritePreview,
    check_stage, decide_bulk_staged, preview, with_stage,
};
use trueup_core::card::{CardKey, ServiceCard};
use trueup_plugin_host::{ChangePolicy, QuantityChange};
use trueup_store::cards::{NewDecision, NewStage};
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

/// What a decision would write to the PSA, for a person to confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DecisionPreview {
    /// The run the cards are decided from.
    pub run: i64,
    /// Per card, what would be written, in selection order.
    #[schema(value_type = Vec<Object>)]
    pub writes: Vec<WritePreview>,
    /// Cards decided without a PSA write (dismiss, snooze, exclude).
    pub without_write: Vec<String>,
    /// Cards the decision would refuse, with why.
    pub refused: Vec<(String, String)>,
    /// Totals of `writes`.
    pub totals: PreviewTotals,
}

/// Totals of a preview's writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PreviewTotals {
    /// Writes.
    pub writes: usize,
    /// Sum of the quantity changes (`to − from`).
    #[serde(with = "trueup_core::model::amount")]
    #[schema(value_type = String)]
    pub quantity_change: Decimal,
    /// Sum of the monthly effects (cards without a known price are left
    /// out and counted in `unpriced`).
    #[serde(with = "trueup_core::model::amount")]
    #[schema(value_type = String)]
    pub monthly_effect: Decimal,
    /// Writes whose price is unknown.
    pub unpriced: usize,
}

/// What staging did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StageOutcome {
    /// Cards staged.
    pub staged: Vec<String>,
    /// Cards refused (the stage could not be approved), with why.
    pub refused: Vec<(String, String)>,
}

/// A bulk decision resolved against the store, before anything is recorded.
struct Resolved {
    run: ReconcileRunId,
    cards: Vec<ServiceCard>,
    staged: BTreeMap<CardKey, Staged>,
    outcome: BulkOutcome,
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

    /// The cards `keys` of `run` (those it has), in selection order.
    async fn cards_of(
        &self,
        run: ReconcileRunId,
        keys: &[CardKey],
    ) -> Result<Vec<ServiceCard>, AppError> {
        let mut cards: Vec<ServiceCard> = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(card) = self.store().card(run, key).await? {
                cards.push(card);
            }
        }
        Ok(cards)
    }

    /// Decides `action` on `keys` with their staged changes, recording
    /// nothing: the one path both [`App::decide`] and
    /// [`App::preview_decision`] take.
    async fn resolve(
        &self,
        run: Option<ReconcileRunId>,
        keys: &[CardKey],
        action: &Action,
        decision: &str,
    ) -> Result<Resolved, AppError> {
        let run = self.run_or_latest(run).await?;
        let cards = self.cards_of(run, keys).await?;
        let staged: BTreeMap<CardKey, Staged> = self
            .store()
            .staged_changes(keys)
            .await?
            .into_iter()
            .map(|(key, s)| {
                (
                    key,
                    Staged {
                        quantity: s.quantity,
                        effective_date: s.effective_date,
                    },
                )
            })
            .collect();
        let outcome = decide_bulk_staged(
            &cards,
            keys,
            action,
            &staged,
            &DecisionContext {
                decision_id: decision,
                today: self.today(),
            },
        );
        Ok(Resolved {
            run,
            cards,
            staged,
            outcome,
        })
    }

    /// What applying `action` to `keys` of `run` would write to the PSA,
    /// card by card with totals, without recording or sending anything.
    ///
    /// # Errors
    /// A store error, or no run.
    pub async fn preview_decision(
        &self,
        run: Option<ReconcileRunId>,
        keys: &[CardKey],
        action: &Action,
    ) -> Result<DecisionPreview, AppError> {
        let resolved = self.resolve(run, keys, action, "preview").await?;
        let by_key: BTreeMap<CardKey, &ServiceCard> =
            resolved.cards.iter().map(|c| (c.key, c)).collect();
        let mut writes = Vec::new();
        let mut without_write = Vec::new();
        for (key, resolution) in &resolved.outcome.decided {
            match (resolution, by_key.get(key)) {
                (Resolution::WriteBack(pending), Some(card)) => writes.push(preview(card, pending)),
                _ => without_write.push(key.as_str().to_owned()),
            }
        }
        let mut totals = PreviewTotals {
            writes: writes.len(),
            ..PreviewTotals::default()
        };
        for w in &writes {
            totals.quantity_change += w.to_quantity - w.from_quantity;
            match w.monthly_effect {
                Some(m) => totals.monthly_effect += m,
                None => totals.unpriced += 1,
            }
        }
        Ok(DecisionPreview {
            run: resolved.run.0,
            writes,
            without_write,
            refused: resolved
                .outcome
                .failed
                .iter()
                .map(|(k, e)| (k.as_str().to_owned(), e.to_string()))
                .collect(),
            totals,
        })
    }

    /// Stages `staged` on `keys` of `run` (the latest when `None`) for
    /// `actor`: each card's stage is checked as an approval would be, and
    /// kept on the card's state; nothing is written to the PSA or the
    /// outbox. Cards the stage could not be approved on are refused.
    ///
    /// # Errors
    /// A store error (nothing is staged then), or no run.
    pub async fn stage(
        &self,
        run: Option<ReconcileRunId>,
        keys: &[CardKey],
        staged: Staged,
        actor: &str,
    ) -> Result<StageOutcome, AppError> {
        let run = self.run_or_latest(run).await?;
        let cards = self.cards_of(run, keys).await?;
        let by_key: BTreeMap<CardKey, &ServiceCard> = cards.iter().map(|c| (c.key, c)).collect();
        let ctx = DecisionContext {
            decision_id: "stage",
            today: self.today(),
        };
        let mut stages = Vec::new();
        let mut refused = Vec::new();
        for key in keys {
            let Some(card) = by_key.get(key) else {
                refused.push((
                    key.as_str().to_owned(),
                    format!("card {key} is not in run {}", run.0),
                ));
                continue;
            };
            match check_stage(card, &staged, &ctx) {
                Ok(_) => stages.push(NewStage {
                    key: *key,
                    quantity: staged.quantity,
                    effective_date: staged.effective_date,
                    fingerprint: card.numbers_fingerprint(),
                }),
                Err(e) => refused.push((key.as_str().to_owned(), e.to_string())),
            }
        }
        self.store()
            .stage_changes(&stages, actor, self.now())
            .await?;
        let outcome = StageOutcome {
            staged: stages.iter().map(|s| s.key.as_str().to_owned()).collect(),
            refused,
        };
        self.audit(
            actor,
            "cards.stage",
            &format!("run {}", run.0),
            serde_json::json!({ "staged": staged, "cards": outcome.staged, "refused": outcome.refused }),
        )
        .await;
        Ok(outcome)
    }

    /// Applies `action` to `keys` of `run` (the latest when `None`) for
    /// `actor`. Cards the action is not valid for are refused with the
    /// reason; the others are decided in one transaction. A card with a
    /// staged change is approved (or adjusted) with it, and the stage is
    /// consumed by the write-back.
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
        let decision = trueup_store::new_id()?;
        let Resolved {
            run,
            staged,
            outcome,
            ..
        } = self.resolve(run, keys, action, &decision).await?;
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
                // What was decided on this card: with its stage, if any.
                action: with_stage(action, staged.get(key)),
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
