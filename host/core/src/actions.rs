//! What a person can do with a card, as pure decisions.
//!
//! Approving never edits PSA data: it yields a [`PendingWriteBack`], a value
//! the write-back outbox executes later, keyed by an idempotency key that is
//! the same however often the same decision is replayed. Invalid actions
//! (approving a card with nothing to change, a fractional quantity where
//! the PSA needs whole units, a date in a posted period) are errors that
//! say what to do instead.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::card::{CardCategory, CardKey, ServiceCard};
use crate::effective::ChangePolicy;
use crate::fasthash::StableHash;
use crate::model::{CompanyId, ContractId, ProductId, ServiceLineId, amount};

/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 40;

/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// What a person decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Apply the card's proposal at its proposed effective date.
    Approve,
    /// Apply a different quantity and/or date (unset parts keep the
    /// card's proposal).
    Adjust {
        /// The quantity to bill.
        #[serde(default, with = "amount::option")]
        quantity: Option<Decimal>,
        /// The effective date.
        #[serde(default)]
        effective_date: Option<NaiveDate>,
    },
    /// Hide the card for the rest of its billing period.
    Dismiss,
    /// Hide the card for a while.
    Snooze {
        /// Until when.
        until: SnoozeUntil,
    },
    /// Stop reconciling this service.
    Exclude {
        /// Why, for the audit trail.
        reason: String,
    },
}

/// How long a snooze lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnoozeUntil {
    /// Until this day (the card shows again on it).
    Date(NaiveDate),
    /// Until the card's PSA, vendor or proposed quantity changes.
    NumbersChange,
}

/// A change for the write-back outbox to make in the PSA.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PendingWriteBack {
    /// The same for the same card, quantity, date and decision: the outbox
    /// uses it to never apply one decision twice.
    pub idempotency_key: String,
    /// The decision that produced it.
    pub decision_id: String,
    /// The card it resolves.
    pub card_key: CardKey,
    /// The customer.
    pub company: CompanyId,
    /// The contract to change.
    pub contract: ContractId,
    /// The line to change; `None` adds a new line for `product`.
    pub line: Option<ServiceLineId>,
    /// The product.
    pub product: ProductId,
    /// The quantity billed now.
    #[serde(with = "amount")]
    pub from_quantity: Decimal,
    /// The quantity to bill.
    #[serde(with = "amount")]
    pub to_quantity: Decimal,
    /// The first day billed at `to_quantity`.
    pub effective_date: NaiveDate,
    /// Dated (carries the date) or immediate (applies when written, because
    /// the date is not after the decision day).
    pub change_policy: ChangePolicy,
}

/// The result of a valid action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "resolution")]
pub enum Resolution {
    /// A PSA change to make.
    WriteBack(PendingWriteBack),
    /// Hidden through the end of the card's period.
    Dismissed {
        /// Last hidden day.
        through: NaiveDate,
    },
    /// Hidden until a date or until the numbers change.
    Snoozed {
        /// The day the card shows again.
        until: Option<NaiveDate>,
        /// [`ServiceCard::numbers_fingerprint`] when snoozed, for
        /// "until the numbers change".
        fingerprint: Option<String>,
    },
    /// Not reconciled any more.
    Excluded {
        /// Why.
        reason: String,
    },
}

impl Resolution {
    /// Whether `card` (as reconciled on `today`) stays out of the to-do
    /// list under this resolution. A write-back keeps the card visible: it
    /// goes away when the PSA reflects the change.
    pub fn hides(&self, card: &ServiceCard, today: NaiveDate) -> bool {
        match self {
            Self::WriteBack(_) => false,
            Self::Dismissed { through } => today <= *through,
            Self::Snoozed {
                until: Some(until), ..
            } => today < *until,
            Self::Snoozed {
                fingerprint: Some(fp),
                ..
            } => *fp == card.numbers_fingerprint(),
            Self::Snoozed { .. } => false,
            Self::Excluded { .. } => true,
        }
    }
}

/// Why an action cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActionError {
    /// Approving a card that proposes nothing.
    #[error(
        "card {key} is {category}: it proposes no change to approve; use adjust to set a quantity"
    )]
    NothingToApprove {
        /// The card.
        key: CardKey,
        /// Its category.
        category: CardCategory,
    },
    /// Changing a card whose usage is not mapped or whose rule failed.
    #[error("card {key} is {category}: fix the mapping or the rule first, then reconcile again")]
    NotChangeable {
        /// The card.
        key: CardKey,
        /// Its category.
        category: CardCategory,
    },
    /// New revenue with no contract to add it to.
    #[error(
        "card {key} has no contract to add the product to; create an active recurring contract for the company first"
    )]
    NoContract {
        /// The card.
        key: CardKey,
    },
    /// The card has no proposed date and none was given.
    #[error("card {key} has no proposed effective date; adjust it with an explicit date")]
    NoEffectiveDate {
        /// The card.
        key: CardKey,
    },
    /// A fractional quantity where the PSA needs whole units.
    #[error("quantity {quantity} is not a whole number, and this PSA bills whole units; use {} or {}", quantity.floor(), quantity.ceil())]
    FractionalQuantity {
        /// The quantity given.
        quantity: Decimal,
    },
    /// A negative quantity.
    #[error("quantity {0} is negative; the lowest quantity is 0")]
    NegativeQuantity(Decimal),
    /// A date in a posted period.
    #[error(
        "effective date {date} is inside a posted period (posted through {posted_through}); the first date allowed is the day after"
    )]
    PostedPeriod {
        /// The date given.
        date: NaiveDate,
        /// The last posted day.
        posted_through: NaiveDate,
    },
    /// An adjustment that changes nothing.
    #[error("card {key}: the PSA already bills {quantity}; nothing would change")]
    NoChange {
        /// The card.
        key: CardKey,
        /// The quantity.
        quantity: Decimal,
    },
    /// Snoozing into the past.
    #[error("snooze date {date} is not after {today}")]
    SnoozeInPast {
        /// The date given.
        date: NaiveDate,
        /// The decision day.
        today: NaiveDate,
    },
    /// An exclusion without a reason.
    #[error("an exclusion needs a reason for the audit trail")]
    EmptyReason,
    /// A bulk selection named a card that is not in the run.
    #[error("card {0} is not in this reconcile run")]
    UnknownCard(CardKey),
    /// A tag that is empty, too long or has spaces.
    #[error("tag \"{0}\" must be 1 to {MAX_TAG_CHARS} characters without spaces")]
    BadTag(String),
    /// A note that is empty or too long.
    #[error("a note must be 1 to {MAX_NOTE_CHARS} characters")]
    BadNote,
}

/// Who decides, when, and the decision's id (for idempotency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionContext<'a> {
    /// Unique per decision (the store's id). Bulk decisions derive one per
    /// card from it.
    pub decision_id: &'a str,
    /// The decision day.
    pub today: NaiveDate,
}

/// Applies `action` to `card`.
pub fn decide(
    card: &ServiceCard,
    action: &Action,
    ctx: &DecisionContext<'_>,
) -> Result<Resolution, ActionError> {
    match action {
        Action::Approve => {
            if !card.category.proposes_change() {
                return Err(ActionError::NothingToApprove {
                    key: card.key,
                    category: card.category,
                });
            }
            let to = card.target_quantity.ok_or(ActionError::NothingToApprove {
                key: card.key,
                category: card.category,
            })?;
            let date = card
                .effective()
                .map(|e| e.date)
                .ok_or(ActionError::NoEffectiveDate { key: card.key })?;
            write_back(card, to, date, ctx)
        }
        Action::Adjust {
            quantity,
            effective_date,
        } => {
            if matches!(
                card.category,
                CardCategory::Unmapped | CardCategory::RuleError
            ) {
                return Err(ActionError::NotChangeable {
                    key: card.key,
                    category: card.category,
                });
            }
            let to = quantity
                .or(card.target_quantity)
                .or(card.psa_quantity)
                .unwrap_or(Decimal::ZERO);
            let date = effective_date
                .or_else(|| card.effective().map(|e| e.date))
                .ok_or(ActionError::NoEffectiveDate { key: card.key })?;
            if card.psa_quantity == Some(to) {
                return Err(ActionError::NoChange {
                    key: card.key,
                    quantity: to,
                });
            }
            write_back(card, to, date, ctx)
        }
        Action::Dismiss => Ok(Resolution::Dismissed {
            through: card.period.map(|p| p.end).unwrap_or(ctx.today),
        }),
        Action::Snooze { until } => match until {
            SnoozeUntil::Date(date) if *date <= ctx.today => Err(ActionError::SnoozeInPast {
                date: *date,
                today: ctx.today,
            }),
            SnoozeUntil::Date(date) => Ok(Resolution::Snoozed {
                until: Some(*date),
                fingerprint: None,
            }),
            SnoozeUntil::NumbersChange => Ok(Resolution::Snoozed {
                until: None,
                fingerprint: Some(card.numbers_fingerprint()),
            }),
        },
        Action::Exclude { reason } => {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(ActionError::EmptyReason);
            }
            Ok(Resolution::Excluded {
                reason: reason.to_owned(),
            })
        }
    }
}

fn write_back(
    card: &ServiceCard,
    to: Decimal,
    date: NaiveDate,
    ctx: &DecisionContext<'_>,
) -> Result<Resolution, ActionError> {
    let (Some(company), Some(contract), Some(product)) =
        (&card.company, &card.contract, &card.product)
    else {
        return Err(ActionError::NoContract { key: card.key });
    };
    if to < Decimal::ZERO {
        return Err(ActionError::NegativeQuantity(to));
    }
    if let Some(constraints) = &card.constraints {
        if constraints.integer_units && !to.is_integer() {
            return Err(ActionError::FractionalQuantity { quantity: to });
        }
        if let Some(posted_through) = constraints.posted_through
            && date <= posted_through
        {
            return Err(ActionError::PostedPeriod {
                date,
                posted_through,
            });
        }
    }
    let to = to.normalize();
    let idempotency_key = StableHash::new()
        .field("write-back")
        .field(card.key.as_str())
        .field(&to.to_string())
        .field(&date.to_string())
        .field(ctx.decision_id)
        .hex();
    Ok(Resolution::WriteBack(PendingWriteBack {
        idempotency_key,
        decision_id: ctx.decision_id.to_owned(),
        card_key: card.key,
        company: company.clone(),
        contract: contract.clone(),
        line: card.line.clone(),
        product: product.clone(),
        from_quantity: card.psa_quantity.unwrap_or(Decimal::ZERO),
        to_quantity: to,
        effective_date: date,
        change_policy: if date <= ctx.today {
            ChangePolicy::Immediate
        } else {
            ChangePolicy::Dated
        },
    }))
}

/// A quantity and/or effective date staged on a card (bulk "set effective
/// date"): nothing is written when it is staged; approving or adjusting the
/// card later uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// The quantity to bill, if staged.
    #[serde(default, with = "amount::option")]
    pub quantity: Option<Decimal>,
    /// The effective date, if staged.
    #[serde(default)]
    pub effective_date: Option<NaiveDate>,
}

/// The action `action` becomes on a card with `staged` values: an approval
/// is an adjustment to the staged quantity and date (unset parts keep the
/// card's proposal), an adjustment takes the staged values for the parts
/// it leaves unset, and every other action is unchanged.
pub fn with_stage(action: &Action, staged: Option<&Staged>) -> Action {
    let Some(staged) = staged.filter(|s| s.quantity.is_some() || s.effective_date.is_some()) else {
        return action.clone();
    };
    match action {
        Action::Approve => Action::Adjust {
            quantity: staged.quantity,
            effective_date: staged.effective_date,
        },
        Action::Adjust {
            quantity,
            effective_date,
        } => Action::Adjust {
            quantity: quantity.or(staged.quantity),
            effective_date: effective_date.or(staged.effective_date),
        },
        other => other.clone(),
    }
}

/// Whether `staged` could be approved on `card` today: the write-back an
/// approval with it would make, or why not. Staging is refused for the same
/// reasons an approval would be, so a stage never waits for an approval
/// that cannot happen.
pub fn check_stage(
    card: &ServiceCard,
    staged: &Staged,
    ctx: &DecisionContext<'_>,
) -> Result<PendingWriteBack, ActionError> {
    match decide(card, &with_stage(&Action::Approve, Some(staged)), ctx)? {
        Resolution::WriteBack(pending) => Ok(pending),
        // An approval or adjustment yields a write-back or an error.
        _ => Err(ActionError::NothingToApprove {
            key: card.key,
            category: card.category,
        }),
    }
}

/// What one write-back would do, as a person confirms it before anything
/// is sent: the line, the quantities, the price and the money it moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritePreview {
    /// The card.
    pub card_key: CardKey,
    /// The customer (account).
    pub company: CompanyId,
    /// The contract changed.
    pub contract: ContractId,
    /// The line changed; `None` adds one.
    pub line: Option<ServiceLineId>,
    /// The product (service).
    pub product: ProductId,
    /// The quantity billed now.
    #[serde(with = "amount")]
    pub from_quantity: Decimal,
    /// The quantity to bill.
    #[serde(with = "amount")]
    pub to_quantity: Decimal,
    /// The unit price per billing period, when the card knows it.
    #[serde(default, with = "amount::option")]
    pub unit_price: Option<Decimal>,
    /// `(to − from) × unit price` per month (the period's amount spread
    /// over its months), rounded to cents; positive bills more.
    #[serde(default, with = "amount::option")]
    pub monthly_effect: Option<Decimal>,
    /// The first day billed at `to_quantity`.
    pub effective_date: NaiveDate,
    /// Dated or immediate.
    pub change_policy: ChangePolicy,
}

/// The months a billing period spans (1 for a month, 3 for a quarter, 12
/// for a year; at least 1).
fn period_months(period: Option<crate::cycles::Period>) -> Decimal {
    use chrono::Datelike;
    let Some(p) = period else {
        return Decimal::ONE;
    };
    let next = p.end.succ_opt().unwrap_or(p.end);
    let months = (next.year() - p.start.year()) * 12 + next.month() as i32 - p.start.month() as i32;
    Decimal::from(months.max(1))
}

/// What `pending` (decided on `card`) would write, with its money.
pub fn preview(card: &ServiceCard, pending: &PendingWriteBack) -> WritePreview {
    let unit_price = card.money.as_ref().map(|m| m.unit_price);
    let monthly_effect = unit_price.map(|price| {
        ((pending.to_quantity - pending.from_quantity) * price / period_months(card.period))
            .round_dp(2)
    });
    WritePreview {
        card_key: pending.card_key,
        company: pending.company.clone(),
        contract: pending.contract.clone(),
        line: pending.line.clone(),
        product: pending.product.clone(),
        from_quantity: pending.from_quantity,
        to_quantity: pending.to_quantity,
        unit_price,
        monthly_effect,
        effective_date: pending.effective_date,
        change_policy: pending.change_policy,
    }
}

/// The outcome of a bulk action: every selected card lands in exactly one
/// list, in selection order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Cards the action applied to.
    pub decided: Vec<(CardKey, Resolution)>,
    /// Cards it did not, and why.
    pub failed: Vec<(CardKey, ActionError)>,
}

/// Applies `action` to every card in `selection`. Each card gets the
/// decision id `"{ctx.decision_id}/{card key}"`, so write-backs stay
/// distinct and replaying the bulk decision yields the same keys.
pub fn decide_bulk(
    cards: &[ServiceCard],
    selection: &[CardKey],
    action: &Action,
    ctx: &DecisionContext<'_>,
) -> BulkOutcome {
    decide_bulk_staged(cards, selection, action, &BTreeMap::new(), ctx)
}

/// [`decide_bulk`] where cards in `staged` have a staged change: each
/// such card is decided with [`with_stage`] of `action`.
pub fn decide_bulk_staged(
    cards: &[ServiceCard],
    selection: &[CardKey],
    action: &Action,
    staged: &BTreeMap<CardKey, Staged>,
    ctx: &DecisionContext<'_>,
) -> BulkOutcome {
    let by_key: BTreeMap<CardKey, &ServiceCard> = cards.iter().map(|c| (c.key, c)).collect();
    let mut out = BulkOutcome::default();
    for key in selection {
        let Some(card) = by_key.get(key) else {
            out.failed.push((*key, ActionError::UnknownCard(*key)));
            continue;
        };
        let id = format!("{}/{}", ctx.decision_id, key);
        let per_card = DecisionContext {
            decision_id: &id,
            today: ctx.today,
        };
        match decide(card, &with_stage(action, staged.get(key)), &per_card) {
            Ok(resolution) => out.decided.push((*key, resolution)),
            Err(e) => out.failed.push((*key, e)),
        }
    }
    out
}

/// A note on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// When.
    pub at: NaiveDate,
    /// Who.
    pub by: String,
    /// What.
    pub text: String,
}

/// Tags and notes a person keeps on a card (by key, across runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    /// Lower-case tags.
    pub tags: BTreeSet<String>,
    /// Notes, oldest first.
    pub notes: Vec<Note>,
}

impl Annotations {
    /// Adds `tag` (trimmed, lower-cased); `Ok(false)` when already there.
    pub fn tag(&mut self, tag: &str) -> Result<bool, ActionError> {
        Ok(self.tags.insert(normalize_tag(tag)?))
    }

    /// Removes `tag`; `Ok(false)` when it was not there.
    pub fn untag(&mut self, tag: &str) -> Result<bool, ActionError> {
        Ok(self.tags.remove(&normalize_tag(tag)?))
    }

    /// Appends a note.
    pub fn add_note(&mut self, note: Note) -> Result<(), ActionError> {
        let chars = note.text.trim().chars().count();
        if chars == 0 || chars > MAX_NOTE_CHARS {
            return Err(ActionError::BadNote);
        }
        self.notes.push(note);
        Ok(())
    }
}

/// `tag` trimmed and lower-cased, or why it is not a tag.
pub fn normalize_tag(tag: &str) -> Result<String, ActionError> {
    let tag = tag.trim().to_lowercase();
    let chars = tag.chars().count();
    if chars == 0 || chars > MAX_TAG_CHARS || tag.chars().any(char::is_whitespace) {
        return Err(ActionError::BadTag(tag));
    }
    Ok(tag)
}

/// Adds `tag` to every card in `selection`.
pub fn tag_bulk(
    annotations: &mut BTreeMap<CardKey, Annotations>,
    selection: &[CardKey],
    tag: &str,
) -> Result<(), ActionError> {
    let tag = normalize_tag(tag)?;
    for key in selection {
        annotations
            .entry(*key)
            .or_default()
            .tags
            .insert(tag.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccountMapping;
    use crate::reconcile::{ReconcileOutput, reconcile};
    use crate::testkit::*;
    use rust_decimal_macros::dec;

    fn cards(world: &crate::snapshot::Snapshot) -> ReconcileOutput {
        let outcomes = world.resolve_mappings(Default::default());
        let mappings: Vec<AccountMapping> = outcomes.iter().map(|o| o.mapping.clone()).collect();
        let mapper = FailingMapper::new(world);
        reconcile(&world.reconcile_input(as_of(), &mappings, &outcomes, &mapper))
    }

    fn by_line<'a>(out: &'a ReconcileOutput, line: &str) -> &'a ServiceCard {
        out.cards
            .iter()
            .find(|c| c.line.as_ref().is_some_and(|l| l.as_str() == line))
            .unwrap()
    }

    fn ctx(id: &str) -> DecisionContext<'_> {
        DecisionContext {
            decision_id: id,
            today: as_of(),
        }
    }

    #[test]
    fn approve_yields_a_write_back_with_a_deterministic_key() {
        let out = cards(&world());
        let la1 = by_line(&out, "LA1");
        let Resolution::WriteBack(wb) = decide(la1, &Action::Approve, &ctx("d-1")).unwrap() else {
            panic!("approve must yield a write-back");
        };
        assert_eq!(
            (wb.from_quantity, wb.to_quantity, wb.effective_date),
            (dec!(10), dec!(12), d(2025, 4, 1))
        );
        assert_eq!(
            (wb.contract.as_str(), wb.line.as_ref().map(|l| l.as_str())),
            ("KA1", Some("LA1"))
        );
        assert_eq!(wb.change_policy, ChangePolicy::Dated);
        // Same decision replayed → same key; another decision id → another.
        let again = decide(la1, &Action::Approve, &ctx("d-1")).unwrap();
        assert_eq!(again, Resolution::WriteBack(wb.clone()));
        let Resolution::WriteBack(other) = decide(la1, &Action::Approve, &ctx("d-2")).unwrap()
        else {
            panic!()
        };
        assert_ne!(other.idempotency_key, wb.idempotency_key);
        // New revenue adds a line (no line id) on the proposed contract.
        let archive = out
            .cards
            .iter()
            .find(|c| c.category == CardCategory::NewRevenue)
            .unwrap();
        let Resolution::WriteBack(add) = decide(archive, &Action::Approve, &ctx("d-3")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (add.line, add.contract.as_str(), add.to_quantity),
            (None, "KA1", dec!(3))
        );
    }

    #[test]
    fn adjust_changes_quantity_and_date_and_today_is_immediate() {
        let out = cards(&world());
        let la1 = by_line(&out, "LA1");
        let adjust = Action::Adjust {
            quantity: Some(dec!(11)),
            effective_date: Some(as_of()),
        };
        let Resolution::WriteBack(wb) = decide(la1, &adjust, &ctx("d")).unwrap() else {
            panic!()
        };
        assert_eq!(
            (wb.to_quantity, wb.effective_date, wb.change_policy),
            (dec!(11), as_of(), ChangePolicy::Immediate)
        );
        // A NoVendorData line can be adjusted (e.g. to cancel it to 0).
        let la3 = by_line(&out, "LA3");
        let zero = Action::Adjust {
            quantity: Some(dec!(0)),
            effective_date: Some(d(2025, 4, 1)),
        };
        assert!(matches!(
            decide(la3, &zero, &ctx("d")).unwrap(),
            Resolution::WriteBack(_)
        ));
    }

    #[test]
    fn invalid_actions_are_refused_with_a_reason() {
        let mut world = world();
        world.psa = crate::effective::PsaProfile::autotask();
        world.contracts[0].posted_through = Some(d(2025, 4, 30));
        let out = cards(&world);
        let la1 = by_line(&out, "LA1");
        let la2 = by_line(&out, "LA2");
        let la3 = by_line(&out, "LA3");
        let unmapped = out
            .cards
            .iter()
            .find(|c| c.category == CardCategory::Unmapped)
            .unwrap();
        // (card, action, check)
        type Check = fn(&ActionError) -> bool;
        let table: Vec<(&ServiceCard, Action, Check)> = vec![
            (la2, Action::Approve, |e| {
                matches!(
                    e,
                    ActionError::NothingToApprove {
                        category: CardCategory::NoChange,
                        ..
                    }
                )
            }),
            (la3, Action::Approve, |e| {
                matches!(e, ActionError::NothingToApprove { .. })
            }),
            (
                la1,
                Action::Adjust {
                    quantity: Some(dec!(11.5)),
                    effective_date: None,
                },
                |e| matches!(e, ActionError::FractionalQuantity { .. }),
            ),
            (
                la1,
                Action::Adjust {
                    quantity: None,
                    effective_date: Some(d(2025, 4, 15)),
                },
                |e| matches!(e, ActionError::PostedPeriod { posted_through, .. } if *posted_through == d(2025, 4, 30)),
            ),
            (
                la1,
                Action::Adjust {
                    quantity: Some(dec!(-1)),
                    effective_date: None,
                },
                |e| matches!(e, ActionError::NegativeQuantity(_)),
            ),
            (
                la2,
                Action::Adjust {
                    quantity: Some(dec!(5)),
                    effective_date: Some(d(2025, 5, 1)),
                },
                |e| matches!(e, ActionError::NoChange { .. }),
            ),
            (
                unmapped,
                Action::Adjust {
                    quantity: Some(dec!(1)),
                    effective_date: None,
                },
                |e| matches!(e, ActionError::NotChangeable { .. }),
            ),
            (
                la1,
                Action::Snooze {
                    until: SnoozeUntil::Date(as_of()),
                },
                |e| matches!(e, ActionError::SnoozeInPast { .. }),
            ),
            (
                la1,
                Action::Exclude {
                    reason: "  ".into(),
                },
                |e| *e == ActionError::EmptyReason,
            ),
        ];
        for (card, action, check) in table {
            let err = decide(card, &action, &ctx("d")).unwrap_err();
            assert!(check(&err), "{action:?}: {err}");
            assert!(!err.to_string().is_empty());
        }
        // The proposal itself respects the posted period (1 May), so it is
        // approvable; 11.5 suggests 11 or 12.
        assert!(matches!(
            decide(la1, &Action::Approve, &ctx("d")).unwrap(),
            Resolution::WriteBack(_)
        ));
        let fractional = decide(
            la1,
            &Action::Adjust {
                quantity: Some(dec!(11.5)),
                effective_date: None,
            },
            &ctx("d"),
        );
        assert!(fractional.unwrap_err().to_string().contains("use 11 or 12"));
    }

    #[test]
    fn dismiss_snooze_and_exclude_hide_cards_for_as_long_as_they_should() {
        let out = cards(&world());
        let la1 = by_line(&out, "LA1");
        let dismissed = decide(la1, &Action::Dismiss, &ctx("d")).unwrap();
        // Through the end of the March period.
        assert_eq!(
            dismissed,
            Resolution::Dismissed {
                through: d(2025, 3, 31)
            }
        );
        assert!(dismissed.hides(la1, d(2025, 3, 31)) && !dismissed.hides(la1, d(2025, 4, 1)));
        let until = decide(
            la1,
            &Action::Snooze {
                until: SnoozeUntil::Date(d(2025, 4, 10)),
            },
            &ctx("d"),
        )
        .unwrap();
        assert!(until.hides(la1, d(2025, 4, 9)) && !until.hides(la1, d(2025, 4, 10)));
        let change = decide(
            la1,
            &Action::Snooze {
                until: SnoozeUntil::NumbersChange,
            },
            &ctx("d"),
        )
        .unwrap();
        assert!(change.hides(la1, d(2026, 1, 1)), "same numbers stay hidden");
        let mut moved = la1.clone();
        moved.vendor_quantity = moved.vendor_quantity.map(|mut v| {
            v.billable = dec!(13);
            v
        });
        assert!(
            !change.hides(&moved, as_of()),
            "new numbers show the card again"
        );
        let excluded = decide(
            la1,
            &Action::Exclude {
                reason: "internal use".into(),
            },
            &ctx("d"),
        )
        .unwrap();
        assert!(excluded.hides(la1, d(2030, 1, 1)));
    }

    #[test]
    fn bulk_decisions_report_each_card() {
        let out = cards(&world());
        let selection: Vec<CardKey> = vec![
            by_line(&out, "LA1").key,
            by_line(&out, "LA2").key,
            by_line(&out, "LB1").key,
            CardKey::from_value(7),
        ];
        let bulk = decide_bulk(&out.cards, &selection, &Action::Approve, &ctx("bulk-7"));
        let decided: Vec<&CardKey> = bulk.decided.iter().map(|(k, _)| k).collect();
        assert_eq!(decided, [&selection[0], &selection[2]]);
        assert_eq!(bulk.failed.len(), 2);
        assert!(matches!(
            bulk.failed[0].1,
            ActionError::NothingToApprove { .. }
        ));
        assert_eq!(bulk.failed[1].1, ActionError::UnknownCard(selection[3]));
        let ids: Vec<String> = bulk
            .decided
            .iter()
            .filter_map(|(_, r)| match r {
                Resolution::WriteBack(wb) => Some(wb.decision_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            ids,
            [
                format!("bulk-7/{}", selection[0]),
                format!("bulk-7/{}", selection[2])
            ]
        );
    }

    #[test]
    fn a_staged_change_is_what_approval_writes() {
        let out = cards(&world());
        let la1 = by_line(&out, "LA1");
        let la2 = by_line(&out, "LA2");
        let date = d(2025, 4, 15);
        let staged = Staged {
            quantity: None,
            effective_date: Some(date),
        };
        // Staging checks what an approval would write: LA1's proposal at
        // the staged date; LA2 (no change) is refused.
        let pending = check_stage(la1, &staged, &ctx("stage")).unwrap();
        assert_eq!(
            (pending.to_quantity, pending.effective_date),
            (dec!(12), date)
        );
        assert!(matches!(
            check_stage(la2, &staged, &ctx("stage")),
            Err(ActionError::NoChange { .. })
        ));
        // Bulk approval uses the stage of the cards that have one.
        let selection = [la1.key, by_line(&out, "LB1").key];
        let stages = BTreeMap::from([(la1.key, staged)]);
        let bulk = decide_bulk_staged(&out.cards, &selection, &Action::Approve, &stages, &ctx("b"));
        let dates: Vec<NaiveDate> = bulk
            .decided
            .iter()
            .filter_map(|(_, r)| match r {
                Resolution::WriteBack(wb) => Some(wb.effective_date),
                _ => None,
            })
            .collect();
        let proposed = by_line(&out, "LB1").effective().unwrap().date;
        assert_eq!(dates, [date, proposed]);
        // An explicit adjustment wins over the stage for the parts it sets.
        let adjust = Action::Adjust {
            quantity: Some(dec!(11)),
            effective_date: None,
        };
        assert_eq!(
            with_stage(&adjust, Some(&staged)),
            Action::Adjust {
                quantity: Some(dec!(11)),
                effective_date: Some(date)
            }
        );
        assert_eq!(with_stage(&Action::Dismiss, Some(&staged)), Action::Dismiss);
        assert_eq!(with_stage(&Action::Approve, None), Action::Approve);
        // The confirmation shows the money: LA1 10 → 12 at its unit price,
        // per month of its monthly period.
        let p = preview(la1, &pending);
        let price = la1.money.as_ref().unwrap().unit_price;
        assert_eq!(
            (
                p.from_quantity,
                p.to_quantity,
                p.unit_price,
                p.monthly_effect
            ),
            (
                dec!(10),
                dec!(12),
                Some(price),
                Some((dec!(2) * price).round_dp(2))
            )
        );
        let quarter = crate::cycles::Period::new(d(2025, 1, 1), d(2025, 3, 31));
        assert_eq!(period_months(quarter), dec!(3));
        let year = crate::cycles::Period::new(d(2025, 3, 15), d(2026, 3, 14));
        assert_eq!(period_months(year), dec!(12));
        assert_eq!(period_months(None), dec!(1));
    }

    #[test]
    fn tags_and_notes() {
        let mut annotations = BTreeMap::new();
        let keys = [CardKey::from_value(1), CardKey::from_value(2)];
        tag_bulk(&mut annotations, &keys, " Review-Q2 ").unwrap();
        assert!(annotations.values().all(|a| a.tags.contains("review-q2")));
        let a = annotations.get_mut(&keys[0]).unwrap();
        assert!(!a.tag("REVIEW-Q2").unwrap(), "already tagged");
        assert!(a.untag("review-q2").unwrap());
        assert_eq!(
            a.tag("two words"),
            Err(ActionError::BadTag("two words".into()))
        );
        assert_eq!(
            a.tag(&"x".repeat(MAX_TAG_CHARS + 1)).unwrap_err(),
            ActionError::BadTag("x".repeat(MAX_TAG_CHARS + 1))
        );
        let note = |text: &str| Note {
            at: as_of(),
            by: "pat".into(),
            text: text.into(),
        };
        a.add_note(note("customer confirmed 12 seats")).unwrap();
        assert_eq!(a.add_note(note("   ")), Err(ActionError::BadNote));
        assert_eq!(a.notes.len(), 1);
    }
}
