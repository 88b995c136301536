//! Steps 3 to 7 of the scenario: change a line (plan, write, read back,
//! write again) and add one, and how the scenario picks what it changes.

use std::collections::HashSet;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use trueup_core::model::{BillingCycle, Contract, ServiceLine};
use trueup_emulators::{Running, catalog};
use trueup_plugin_host::{ChangePolicy, PsaSession, QuantityChange};

use super::against::Against;
use super::sync::Synced;
use super::writes::{apply_counted, plan_judged};
use crate::report::{Report, describe_failure};

/// Units the scenario's write adds to the line it changes.
pub const WRITE_INCREMENT: u32 = 3;

/// The quantity of the line the scenario adds.
pub const ADD_QUANTITY: u32 = 4;

/// Steps 3 to 6 of the scenario: plan a change of `line` of `contract` by
/// [`WRITE_INCREMENT`] units, effective the first of the as-of month;
/// apply it, read it back and apply it again.
pub(super) async fn change_line(
    report: &mut Report<Against>,
    main: &mut PsaSession,
    running: &Running,
    against: Against,
    (contract, line): (Contract, ServiceLine),
    as_of: NaiveDate,
) {
    let effective = as_of.with_day(1).unwrap_or(as_of);
    let new_quantity = line.quantity + Decimal::from(WRITE_INCREMENT);
    let change = QuantityChange {
        contract_id: contract.id.to_string(),
        line_id: Some(line.id.to_string()),
        product_identifier: line.product_identifier.to_string(),
        expected_quantity: line.quantity,
        new_quantity,
        effective_date: effective,
        policy: ChangePolicy::Dated,
        idempotency_key: format!("conformance-{}-{}", contract.id, line.id),
    };
    let target = format!(
        "line {} of contract {} from {} to {new_quantity} effective {effective}",
        line.id, contract.id, line.quantity
    );
    let (verdict, plan_writes) = plan_judged(main, running, against, &change, &target).await;
    report.record("plan lists the calls, sends no write", verdict);
    let (applied, sent) = apply_counted(main, running, &change).await;
    let written = report.record(
        "write applies the change as planned",
        match &applied {
            Err(e) => Err(describe_failure(e)),
            Ok(outcome) if !outcome.changed => Err("the write reports changed = false".to_owned()),
            Ok(outcome) if outcome.line.quantity != new_quantity => Err(format!(
                "the line read back after the write has quantity {}, not {new_quantity}",
                outcome.line.quantity
            )),
            Ok(_) if sent != plan_writes => Err(format!(
                "the emulator received {sent:?}, the plan listed {plan_writes:?}"
            )),
            Ok(outcome) => Ok(format!(
                "records {}; writes {}",
                outcome.record_ids.join(", "),
                sent.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        },
    );
    if written && let Ok(outcome) = &applied {
        let read = main
            .read_line(&change.contract_id, outcome.line.id.as_str())
            .await;
        report.record(
            "read-back shows the new quantity",
            match read {
                Err(e) => Err(describe_failure(&e)),
                Ok(line) if line.quantity == new_quantity => {
                    Ok(format!("line {} has quantity {}", line.id, line.quantity))
                }
                Ok(line) => Err(format!(
                    "line {} has quantity {}, not {new_quantity}",
                    line.id, line.quantity
                )),
            },
        );
        let (repeated, sent_again) = apply_counted(main, running, &change).await;
        report.record(
            "repeated write changes nothing",
            match repeated {
                Err(e) => Err(describe_failure(&e)),
                Ok(outcome) if outcome.changed => {
                    Err("the second write reports changed = true".to_owned())
                }
                Ok(_) if !sent_again.is_empty() => {
                    Err(format!("the second write sent {sent_again:?}"))
                }
                Ok(outcome) if outcome.line.quantity != new_quantity => Err(format!(
                    "the second write reads quantity {}, not {new_quantity}",
                    outcome.line.quantity
                )),
                Ok(_) => Ok("changed = false, no write sent".to_owned()),
            },
        );
    }
}

/// The first catalogue product `contract` has no line of in `synced`,
/// billed or not: one a change without a line can add.
pub fn product_missing_from(synced: &Synced, contract: &str) -> Option<&'static catalog::Product> {
    let held: HashSet<&str> = synced
        .lines
        .iter()
        .filter(|l| l.contract_id.as_str() == contract)
        .map(|l| l.product_identifier.as_str())
        .collect();
    catalog::PRODUCTS
        .iter()
        .find(|p| !held.contains(p.identifier))
}

/// A change without a line ("new revenue found") that adds `quantity` of
/// `product` to `contract` from `effective`.
pub fn add_line_change(
    contract: &str,
    product: &catalog::Product,
    quantity: Decimal,
    effective: NaiveDate,
) -> QuantityChange {
    QuantityChange {
        contract_id: contract.to_owned(),
        line_id: None,
        product_identifier: product.identifier.to_owned(),
        expected_quantity: Decimal::ZERO,
        new_quantity: quantity,
        effective_date: effective,
        policy: ChangePolicy::Dated,
        idempotency_key: format!("add-{contract}-{}-{effective}", product.identifier),
    }
}

/// The first eligible monthly contract of the sync with a catalogue
/// product it has no line of: the scenario's add.
pub(super) fn add_target(
    synced: &Synced,
    as_of: NaiveDate,
) -> Option<(Contract, &'static catalog::Product)> {
    let assessed = synced.eligibility(as_of);
    let mut tried = HashSet::new();
    assessed.lines.iter().find_map(|eligible| {
        let contract = &synced.contracts[assessed.contracts[eligible.contract].contract];
        if contract.billing_cycle != BillingCycle::Monthly || !tried.insert(contract.id.clone()) {
            return None;
        }
        product_missing_from(synced, contract.id.as_str())
            .map(|product| (contract.clone(), product))
    })
}

/// The first line of the sync that the scenario's write changes: an
/// eligible, billable line of a monthly contract with a whole quantity.
pub(super) fn write_target(synced: &Synced, as_of: NaiveDate) -> Option<(Contract, ServiceLine)> {
    let assessed = synced.eligibility(as_of);
    assessed.lines.iter().find_map(|eligible| {
        let contract = &synced.contracts[assessed.contracts[eligible.contract].contract];
        let line = &synced.lines[eligible.line];
        (contract.billing_cycle == BillingCycle::Monthly
            && line.billable
            && line.quantity.fract().is_zero()
            && line.quantity >= Decimal::ONE)
            .then(|| (contract.clone(), line.clone()))
    })
}

/// Step 7 of the scenario: plan, apply, read back and apply again a change
/// without a line, which adds [`ADD_QUANTITY`] of a catalogue product the
/// [`add_target`] contract lacks, effective the first of the as-of month.
pub(super) async fn add_line(
    report: &mut Report<Against>,
    main: &mut PsaSession,
    running: &Running,
    against: Against,
    synced: &Synced,
    as_of: NaiveDate,
) {
    let Some((contract, product)) = add_target(synced, as_of) else {
        report.record(
            "add a line",
            Err("no eligible monthly contract lacks a catalogue product".to_owned()),
        );
        return;
    };
    let effective = as_of.with_day(1).unwrap_or(as_of);
    let quantity = Decimal::from(ADD_QUANTITY);
    let price = Decimal::new(product.unit_price_cents, 2);
    let change = add_line_change(contract.id.as_str(), product, quantity, effective);
    let target = format!(
        "adding {quantity} of {} to contract {} effective {effective}",
        product.identifier, contract.id
    );
    let (verdict, plan_writes) = plan_judged(main, running, against, &change, &target).await;
    report.record("add: plan lists the calls, sends no write", verdict);
    let existing: HashSet<&str> = synced.lines.iter().map(|l| l.id.as_str()).collect();
    let (added, sent) = apply_counted(main, running, &change).await;
    let added_ok = report.record(
        "add: a new line as planned, at the catalogue price",
        match &added {
            Err(e) => Err(describe_failure(e)),
            Ok(outcome) if !outcome.changed => Err("the add reports changed = false".to_owned()),
            Ok(outcome) if existing.contains(outcome.line.id.as_str()) => Err(format!(
                "the add answers line {}, which the sync had already listed",
                outcome.line.id
            )),
            Ok(outcome)
                if outcome.line.product_identifier.as_str() != product.identifier
                    || outcome.line.quantity != quantity
                    || outcome.line.unit_price != price =>
            {
                Err(format!(
                    "the line read back after the add is {} × {} at {}, not {quantity} × {} at {price}",
                    outcome.line.quantity,
                    outcome.line.product_identifier,
                    outcome.line.unit_price,
                    product.identifier
                ))
            }
            Ok(outcome) if outcome.line.effective_date.is_some_and(|d| d != effective) => {
                Err(format!(
                    "the added line starts {:?}, not {effective}",
                    outcome.line.effective_date
                ))
            }
            Ok(_) if sent != plan_writes => Err(format!(
                "the emulator received {sent:?}, the plan listed {plan_writes:?}"
            )),
            Ok(outcome) => Ok(format!(
                "line {} ({quantity} × {} at {price}); writes {}",
                outcome.line.id,
                product.identifier,
                sent.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        },
    );
    let Ok(outcome) = added else {
        return;
    };
    if !added_ok {
        return;
    }
    let read = main
        .read_line(&change.contract_id, outcome.line.id.as_str())
        .await;
    report.record(
        "add: read-back shows the added line",
        match read {
            Err(e) => Err(describe_failure(&e)),
            Ok(line)
                if line.quantity == quantity
                    && line.product_identifier.as_str() == product.identifier =>
            {
                Ok(format!(
                    "line {} has {} × {}",
                    line.id, line.quantity, line.product_identifier
                ))
            }
            Ok(line) => Err(format!(
                "line {} has {} × {}, not {quantity} × {}",
                line.id, line.quantity, line.product_identifier, product.identifier
            )),
        },
    );
    let (repeated, sent_again) = apply_counted(main, running, &change).await;
    report.record(
        "add: repeated add changes nothing",
        match repeated {
            Err(e) => Err(describe_failure(&e)),
            Ok(again) if again.changed => Err("the second add reports changed = true".to_owned()),
            Ok(_) if !sent_again.is_empty() => Err(format!("the second add sent {sent_again:?}")),
            Ok(again) if again.line.id != outcome.line.id => Err(format!(
                "the second add answers line {}, not the added line {}",
                again.line.id, outcome.line.id
            )),
            Ok(again) if again.line.quantity != quantity => Err(format!(
                "the second add reads quantity {}, not {quantity}",
                again.line.quantity
            )),
            Ok(_) => Ok("changed = false, no write sent, the same line".to_owned()),
        },
    );
}
