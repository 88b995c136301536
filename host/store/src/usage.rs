//! The vendor usage ledger: usage batches (one per vendor sync, CSV
//! import or push) and their observations, appended and never changed, and
//! the pushed unit counts (the latest push per account, SKU and day); what
//! the reconcile reads for a period.
//!
//! Below the rooms that write usage (vendor syncs, CSV imports, the push
//! API): they open a batch and append to it inside their own transaction.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use trueup_core::model::{Attributes, UsageObservation, VendorId};

use crate::Store;
use crate::db::{Row, Tx, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::{ImportId, PushIntegrationId, SyncRunId};

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The unit count was set (new, or different from before).
    Set,
    /// The same value was already set: nothing changed.
    Unchanged,
}

impl Store {
    /// Sets the pushed unit count of (vendor, account, SKU) for the UTC day
    /// of `usage.observed_at`: the latest push for that day wins.
    /// Idempotent: pushing the same values again changes nothing and
    /// returns [`PushOutcome::Unchanged`]. A change is also appended to the
    /// usage ledger (one transaction).
    ///
    /// # Errors
    /// [`StoreError::MissingReference`] for an unregistered vendor or push
    /// integration; database errors.
    pub async fn push_usage(
        &self,
        push_integration: Option<PushIntegrationId>,
        usage: &UsageObservation,
        at: DateTime<Utc>,
    ) -> Result<PushOutcome> {
        const OP: &str = "record pushed usage";
        let mut tx = self.db.begin(OP).await?;
        let outcome = set_pushed(&mut tx, OP, push_integration, usage, at).await?;
        if outcome == PushOutcome::Unchanged {
            return Ok(outcome);
        }
        let batch = new_batch(
            &mut tx,
            OP,
            &usage.vendor,
            "push",
            None,
            None,
            push_integration,
            at,
        )
        .await?;
        append_observations(&mut tx, OP, batch, std::slice::from_ref(usage)).await?;
        tx.commit(OP).await?;
        Ok(PushOutcome::Set)
    }

    /// The usage observations that count for the UTC days `from..=to`, as
    /// the reconcile reads them: for each (vendor, account, day), the rows
    /// of the latest batch (sync or CSV import) that reported that day —
    /// a re-sync replaces a day, it does not double it — plus the pushed
    /// unit counts of those days. Strings are shared (`Arc`) between rows.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn usage_for_period(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageObservation>> {
        const OP: &str = "read usage for period";
        let mut tx = self.db.begin_read(OP).await?;
        let observed = tx
            .fetch_all(
                sql(
                    OP,
                    "usage_observations",
                    format!(
                        "WITH latest AS ( \
                           SELECT o.vendor_id, o.account_id, o.observed_on, MAX(o.batch_id) AS batch_id \
                           FROM usage_observations o JOIN usage_batches b ON b.id = o.batch_id \
                           WHERE o.observed_on >= $1 AND o.observed_on <= $2 AND b.source <> 'push' \
                           GROUP BY o.vendor_id, o.account_id, o.observed_on) \
                         SELECT {OBSERVATION_COLUMNS} FROM usage_observations o JOIN latest l \
                           ON o.vendor_id = l.vendor_id AND o.account_id = l.account_id \
                           AND o.observed_on = l.observed_on AND o.batch_id = l.batch_id \
                         ORDER BY o.id"
                    ),
                )
                .bind(from)
                .bind(to),
            )
            .await?;
        let pushed = tx
            .fetch_all(
                sql(
                    OP,
                    "pushed_usage",
                    format!(
                        "SELECT {OBSERVATION_COLUMNS} FROM pushed_usage o \
                         WHERE o.observed_on >= $1 AND o.observed_on <= $2 \
                         ORDER BY o.vendor_id, o.account_id, o.sku_id, o.observed_on"
                    ),
                )
                .bind(from)
                .bind(to),
            )
            .await?;
        tx.commit(OP).await?;
        let mut interner = Interner::default();
        observed
            .iter()
            .chain(pushed.iter())
            .map(|r| observation_from_row(r, &mut interner))
            .collect()
    }

    /// The current pushed unit counts of `vendor`: for each (account, SKU)
    /// ever pushed, the row of its latest day, sorted by account and SKU.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn latest_pushed_usage(&self, vendor: &VendorId) -> Result<Vec<UsageObservation>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read latest pushed usage",
                    "pushed_usage",
                    format!(
                        "SELECT {OBSERVATION_COLUMNS} FROM pushed_usage o WHERE o.vendor_id = $1 \
                         AND o.observed_on = (SELECT MAX(p.observed_on) FROM pushed_usage p \
                           WHERE p.vendor_id = o.vendor_id AND p.account_id = o.account_id AND p.sku_id = o.sku_id) \
                         ORDER BY o.account_id, o.sku_id"
                    ),
                )
                .bind(vendor.as_str()),
            )
            .await?;
        let mut interner = Interner::default();
        rows.iter()
            .map(|r| observation_from_row(r, &mut interner))
            .collect()
    }
}

pub(crate) const OBSERVATION_COLUMNS: &str = "o.vendor_id, o.account_id, o.sku_id, o.sku_name, o.quantity, \
     o.unit, o.unit_cost, o.billing_term, o.commitment_end, o.attributes, o.observed_at";

/// Shares equal strings between rows.
#[derive(Default)]
pub(crate) struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub(crate) fn get(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.0.get(text.as_str()) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

pub(crate) fn observation_from_row(r: &Row, interner: &mut Interner) -> Result<UsageObservation> {
    let mut attributes: Attributes = r.json("attributes")?;
    attributes.replace_strings(|s| interner.get(s.to_string()));
    Ok(UsageObservation {
        vendor: VendorId(interner.get(r.text("vendor_id")?)),
        account: interner.get(r.text("account_id")?).into(),
        sku_id: interner.get(r.text("sku_id")?).into(),
        sku_name: interner.get(r.text("sku_name")?),
        quantity: r.decimal("quantity")?,
        unit: interner.get(r.text("unit")?),
        unit_cost: r.opt_decimal("unit_cost")?,
        billing_term: r.opt_text("billing_term")?.map(|t| interner.get(t)),
        commitment_end: r.opt_date("commitment_end")?,
        attributes,
        observed_at: r.instant("observed_at")?,
    })
}

/// Inserts a usage batch; its id.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn new_batch(
    tx: &mut Tx,
    operation: &'static str,
    vendor: &VendorId,
    source: &str,
    sync_run: Option<SyncRunId>,
    import: Option<ImportId>,
    push: Option<PushIntegrationId>,
    at: DateTime<Utc>,
) -> Result<i64> {
    let row = tx
        .fetch_one(
            sql(
                operation,
                "usage_batches",
                "INSERT INTO usage_batches (vendor_id, source, sync_run_id, import_id, push_integration_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(vendor.as_str())
            .bind(source)
            .bind(sync_run)
            .bind(import)
            .bind(push)
            .bind(at),
        )
        .await
        .map_err(|e| match e {
            StoreError::MissingReference { operation, table, .. } => StoreError::MissingReference {
                operation,
                table,
                problem: format!("vendor integration {vendor:?} is not registered; register it before storing its usage"),
            },
            other => other,
        })?;
    row.int("id")
}

/// Appends `usage` to the ledger under `batch`.
pub(crate) async fn append_observations(
    tx: &mut Tx,
    operation: &'static str,
    batch: i64,
    usage: &[UsageObservation],
) -> Result<()> {
    let items: Vec<_> = usage.iter().collect();
    tx.insert_all(
        operation,
        "usage_observations",
        &[
            "batch_id",
            "vendor_id",
            "account_id",
            "sku_id",
            "sku_name",
            "quantity",
            "unit",
            "unit_cost",
            "billing_term",
            "commitment_end",
            "attributes",
            "observed_at",
            "observed_on",
        ],
        items.len(),
        |i, w| {
            let u = items[i];

            w.value(batch);
            w.text(u.vendor.as_str());
            w.text(u.account.as_str());
            w.text(u.sku_id.as_str());
            w.text(&u.sku_name);
            w.decimal(u.quantity);
            w.text(&u.unit);
            w.opt_decimal(u.unit_cost);
            w.value(u.billing_term.as_deref());
            w.value(u.commitment_end);
            w.value(json_text(operation, &u.attributes)?);
            w.value(u.observed_at);
            w.value(u.observed_at.date_naive());
            Ok(())
        },
    )
    .await?;
    Ok(())
}

/// Sets one pushed unit count inside `tx` (the latest push for the UTC
/// day of `usage.observed_at` wins); whether it changed anything. The
/// caller appends changes to the usage ledger in the same transaction.
pub(crate) async fn set_pushed(
    tx: &mut Tx,
    operation: &'static str,
    push_integration: Option<PushIntegrationId>,
    usage: &UsageObservation,
    at: DateTime<Utc>,
) -> Result<PushOutcome> {
    let day: NaiveDate = usage.observed_at.date_naive();
    let attributes = json_text(operation, &usage.attributes)?;
    let current = tx
        .fetch_optional(
            sql(
                operation,
                "pushed_usage",
                "SELECT sku_name, quantity, unit, unit_cost, billing_term, commitment_end, attributes \
                 FROM pushed_usage WHERE vendor_id = $1 AND account_id = $2 AND sku_id = $3 AND observed_on = $4",
            )
            .bind(usage.vendor.as_str())
            .bind(usage.account.as_str())
            .bind(usage.sku_id.as_str())
            .bind(day),
        )
        .await?;
    if let Some(row) = &current {
        let same = row.text("sku_name")? == *usage.sku_name
            && row.decimal("quantity")? == usage.quantity
            && row.text("unit")? == *usage.unit
            && row.opt_decimal("unit_cost")? == usage.unit_cost
            && row.opt_text("billing_term")?.as_deref() == usage.billing_term.as_deref()
            && row.opt_date("commitment_end")? == usage.commitment_end
            && row.text("attributes")? == attributes;
        if same {
            return Ok(PushOutcome::Unchanged);
        }
    }
    tx.execute(
        sql(
            operation,
            "pushed_usage",
            "INSERT INTO pushed_usage (vendor_id, account_id, sku_id, observed_on, sku_name, quantity, unit, \
             unit_cost, billing_term, commitment_end, attributes, observed_at, push_integration_id, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (vendor_id, account_id, sku_id, observed_on) DO UPDATE SET \
             sku_name = excluded.sku_name, quantity = excluded.quantity, unit = excluded.unit, \
             unit_cost = excluded.unit_cost, billing_term = excluded.billing_term, \
             commitment_end = excluded.commitment_end, attributes = excluded.attributes, \
             observed_at = excluded.observed_at, push_integration_id = excluded.push_integration_id, \
             updated_at = excluded.updated_at",
        )
        .bind(usage.vendor.as_str())
        .bind(usage.account.as_str())
        .bind(usage.sku_id.as_str())
        .bind(day)
        .bind(&*usage.sku_name)
        .bind(usage.quantity)
        .bind(&*usage.unit)
        .bind(usage.unit_cost)
        .bind(usage.billing_term.as_deref())
        .bind(usage.commitment_end)
        .bind(attributes)
        .bind(usage.observed_at)
        .bind(push_integration)
        .bind(at),
    )
    .await?;
    Ok(PushOutcome::Set)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;
    use trueup_core::model::UsageSource;

    use super::*;
    use crate::testing::fixtures::{at, both, row, vendor};

    async fn latest_pushed_usage_is_the_last_day_of_each_account_and_sku(store: &Store) {
        vendor(store, "acme", UsageSource::Push).await;
        let key = store
            .create_push_integration(&"acme".into(), "acme key", "k-acme", 60, 10, at(1, 0))
            .await
            .unwrap();
        let rows = [
            row("acme", "a1", "backup", dec!(1), 18),
            row("acme", "a1", "backup", dec!(2), 20),
            row("acme", "a1", "mail", dec!(5), 19),
            row("acme", "a2", "backup", dec!(7), 17),
        ];
        store.push_usage_all(key, &rows, at(20, 9)).await.unwrap();
        let latest = store.latest_pushed_usage(&"acme".into()).await.unwrap();
        let seen: Vec<_> = latest
            .iter()
            .map(|u| (u.account.to_string(), u.sku_id.to_string(), u.quantity))
            .collect();
        assert_eq!(
            seen,
            [
                ("a1".to_owned(), "backup".to_owned(), dec!(2)),
                ("a1".to_owned(), "mail".to_owned(), dec!(5)),
                ("a2".to_owned(), "backup".to_owned(), dec!(7)),
            ]
        );
        assert!(
            store
                .latest_pushed_usage(&"other".into())
                .await
                .unwrap()
                .is_empty()
        );
    }

    both!(latest_pushed_usage_is_the_last_day_of_each_account_and_sku,);
}
