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
use trueup_core::model::{AccountId, Attributes, UsageObservation, VendorId};

use crate::Store;
use crate::db::{Row, Sql, Tx, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::{ImportId, PushIntegrationId, ReconcileRunId, SyncRunId};

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
    /// Ordered by vendor and account (an account's rows are adjacent), the
    /// ledger's rows before the pushed ones; the order is the same on
    /// every read of the same data, so a card's row positions name rows.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn usage_for_period(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageObservation>> {
        self.read_usage(from, to, None).await
    }

    /// [`Store::usage_for_period`] for one vendor account: its rows, in
    /// the same order as they appear in the whole period's read. An index
    /// seek, for one card's detail or one account's re-reconcile.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn account_usage_for_period(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        vendor: &VendorId,
        account: &AccountId,
    ) -> Result<Vec<UsageObservation>> {
        self.read_usage(from, to, Some((vendor, account))).await
    }

    /// Records where each vendor account's rows sit in `usage`, the
    /// period's read that run `run` reconciled (see
    /// [`Store::card_usage_rows`]).
    ///
    /// # Errors
    /// A database error; [`StoreError::MissingReference`] for an unknown run.
    pub async fn record_run_usage_accounts(
        &self,
        run: ReconcileRunId,
        usage: &[UsageObservation],
    ) -> Result<()> {
        const OP: &str = "record where a run's usage rows are";
        let ranges = account_ranges(usage);
        let mut tx = self.db.begin(OP).await?;
        tx.insert_all(
            OP,
            "run_usage_accounts",
            &[
                "run_id",
                "first_row",
                "row_count",
                "vendor_id",
                "account_id",
            ],
            ranges.len(),
            |i, w| {
                let (first, count, u) = ranges[i];
                w.value(run.0);
                w.value(first as i64);
                w.value(count as i64);
                w.text(u.vendor.as_str());
                w.text(u.account.as_str());
                Ok(())
            },
        )
        .await?;
        tx.commit(OP).await
    }

    /// The usage rows at `positions` (at most `limit` of them, in order) of
    /// the period `from..=to` as run `run` read it: only the accounts those
    /// positions fall in are read, each by an index seek. `None` when the
    /// run has no recorded account ranges (recorded before they were) or
    /// when an account's rows in the period are no longer what the run
    /// read (usage stored since) — then only a read of the whole period can
    /// say what changed.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_usage_rows(
        &self,
        run: ReconcileRunId,
        from: NaiveDate,
        to: NaiveDate,
        positions: &[u32],
        limit: usize,
    ) -> Result<Option<Vec<UsageObservation>>> {
        const OP: &str = "read a card's usage rows";
        let mut out = Vec::new();
        let mut account: Option<(u64, Vec<UsageObservation>)> = None;
        for &position in positions.iter().take(limit) {
            let position = u64::from(position);
            let inside = account.as_ref().is_some_and(|(first, rows)| {
                position >= *first && position < first + rows.len() as u64
            });
            if !inside {
                let Some(range) = self
                    .db
                    .fetch_optional(
                        sql(
                            OP,
                            "run_usage_accounts",
                            "SELECT first_row, row_count, vendor_id, account_id FROM run_usage_accounts \
                             WHERE run_id = $1 AND first_row <= $2 ORDER BY first_row DESC LIMIT 1",
                        )
                        .bind(run.0)
                        .bind(position as i64),
                    )
                    .await?
                else {
                    return Ok(None);
                };
                let first = u64::try_from(range.int("first_row")?).unwrap_or(u64::MAX);
                let count = u64::try_from(range.int("row_count")?).unwrap_or(0);
                let (vendor, id) = (range.text("vendor_id")?, range.text("account_id")?);
                let rows = self
                    .account_usage_for_period(from, to, &vendor.into(), &id.into())
                    .await?;
                if rows.len() as u64 != count || position >= first + count {
                    return Ok(None);
                }
                account = Some((first, rows));
            }
            if let Some((first, rows)) = &account
                && let Some(row) = usize::try_from(position - first)
                    .ok()
                    .and_then(|i| rows.get(i))
            {
                out.push(row.clone());
            }
        }
        Ok(Some(out))
    }

    /// One streaming pass per source over the period (one account's when
    /// `only` is given): the ledger in `usage_observations_by_account`
    /// order, where each (vendor, account, day)'s rows are adjacent and
    /// its latest batch comes last, so superseded batches are dropped as
    /// the rows go by; then the pushed counts in primary-key order.
    async fn read_usage(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        only: Option<(&VendorId, &AccountId)>,
    ) -> Result<Vec<UsageObservation>> {
        const OP: &str = "read usage for period";
        let bind = |q: Sql| match only {
            Some((vendor, account)) => q
                .bind(from)
                .bind(to)
                .bind(vendor.as_str())
                .bind(account.as_str()),
            None => q.bind(from).bind(to),
        };
        let mut tx = self.db.begin_read(OP).await?;
        let mut interner = Interner::default();
        let mut out = Vec::new();
        let mut latest = LatestBatch::default();
        tx.fetch_each(
            bind(sql(OP, "usage_observations", observed_sql(only.is_some()))),
            |row| {
                let day = row.date("observed_on")?;
                let batch = row.int("batch_id")?;
                let usage = observation_from_row(&row, &mut interner)?;
                latest.push(&mut out, usage, day, batch);
                Ok(())
            },
        )
        .await?;
        latest.finish(&mut out);
        tx.fetch_each(
            bind(sql(OP, "pushed_usage", pushed_sql(only.is_some()))),
            |row| {
                out.push(observation_from_row(&row, &mut interner)?);
                Ok(())
            },
        )
        .await?;
        tx.commit(OP).await?;
        Ok(out)
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

/// The ledger's rows of a period (`$1..=$2`; of one account `$3`, `$4`
/// when `one_account`), in `usage_observations_by_account` order.
fn observed_sql(one_account: bool) -> String {
    let account = account_filter(one_account);
    format!(
        "SELECT {OBSERVATION_COLUMNS}, o.observed_on, o.batch_id FROM usage_observations o \
         WHERE o.observed_on >= $1 AND o.observed_on <= $2{account} \
         AND o.batch_id NOT IN (SELECT b.id FROM usage_batches b WHERE b.source = 'push') \
         ORDER BY o.vendor_id, o.account_id, o.observed_on, o.batch_id, o.id"
    )
}

/// The pushed counts of a period, as [`observed_sql`], in primary-key
/// order.
fn pushed_sql(one_account: bool) -> String {
    let account = account_filter(one_account);
    format!(
        "SELECT {OBSERVATION_COLUMNS} FROM pushed_usage o \
         WHERE o.observed_on >= $1 AND o.observed_on <= $2{account} \
         ORDER BY o.vendor_id, o.account_id, o.sku_id, o.observed_on"
    )
}

fn account_filter(one_account: bool) -> &'static str {
    if one_account {
        " AND o.vendor_id = $3 AND o.account_id = $4"
    } else {
        ""
    }
}

/// The ranges of adjacent rows of one (vendor, account) in `usage`: first
/// position, count and a row of it.
fn account_ranges(usage: &[UsageObservation]) -> Vec<(usize, usize, &UsageObservation)> {
    let mut ranges: Vec<(usize, usize, &UsageObservation)> = Vec::new();
    for (i, u) in usage.iter().enumerate() {
        match ranges.last_mut() {
            Some((_, count, first)) if first.vendor == u.vendor && first.account == u.account => {
                *count += 1;
            }
            _ => ranges.push((i, 1, u)),
        }
    }
    ranges
}

/// Keeps, of rows arriving grouped by (vendor, account, day) with batches
/// ascending, only each group's latest batch: a later batch that reports a
/// day replaces what earlier ones said of it.
#[derive(Default)]
struct LatestBatch {
    /// The current group's key and batch, and its rows so far.
    key: Option<(VendorId, AccountId, NaiveDate, i64)>,
    rows: Vec<UsageObservation>,
}

impl LatestBatch {
    fn push(
        &mut self,
        out: &mut Vec<UsageObservation>,
        usage: UsageObservation,
        day: NaiveDate,
        batch: i64,
    ) {
        match &self.key {
            Some((vendor, account, d, b))
                if *d == day && *vendor == usage.vendor && *account == usage.account =>
            {
                if batch != *b {
                    // A later batch of the same day: it replaces the rows
                    // of the earlier one.
                    self.rows.clear();
                }
            }
            _ => out.append(&mut self.rows),
        }
        self.key = Some((usage.vendor.clone(), usage.account.clone(), day, batch));
        self.rows.push(usage);
    }

    fn finish(&mut self, out: &mut Vec<UsageObservation>) {
        out.append(&mut self.rows);
        self.key = None;
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
    use rust_decimal::Decimal;
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

    /// The reconcile's and a card detail's usage reads are served by an
    /// index in their order, never a scan of the period plus a sort (the
    /// 20-minute reconcile of issue 16): dropping or reordering
    /// `usage_observations_by_account` fails this.
    async fn usage_reads_are_served_by_their_indexes(store: &Store) {
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let postgres = store.backend() == crate::Backend::Postgres;
        for (name, text, one_account, index) in [
            (
                "period",
                observed_sql(false),
                false,
                "usage_observations_by_account",
            ),
            (
                "account",
                observed_sql(true),
                true,
                "usage_observations_by_account",
            ),
            // Pushed counts are a small table: a seek on the period's days
            // (and SQLite sorting them) is as good as the key order.
            (
                "pushed period",
                pushed_sql(false),
                false,
                if postgres {
                    "pushed_usage_pkey"
                } else {
                    "pushed_usage_by_day (observed_on>? AND observed_on<?)"
                },
            ),
            (
                "pushed account",
                pushed_sql(true),
                true,
                if postgres {
                    "pushed_usage_pkey"
                } else {
                    "sqlite_autoindex_pushed_usage_1"
                },
            ),
        ] {
            let mut q = sql("explain usage read", "usage_observations", text)
                .bind(day(1))
                .bind(day(30));
            if one_account {
                q = q.bind("acme").bind("a1");
            }
            let plan = store.db.explain(q).await.unwrap();
            assert!(
                plan.contains(index),
                "{name}: not served by {index}:\n{plan}"
            );
            for bad in [
                "TEMP B-TREE",
                "Sort",
                "Seq Scan on usage_observations",
                "Seq Scan on pushed_usage",
            ] {
                let sort = bad == "TEMP B-TREE" || bad == "Sort";
                if sort && name == "pushed period" {
                    continue;
                }
                assert!(!plan.contains(bad), "{name}: {bad} in the plan:\n{plan}");
            }
            if one_account {
                // A seek on the account, not a walk of every account.
                let seek = if postgres {
                    "account_id = "
                } else {
                    "account_id=?"
                };
                assert!(
                    plan.contains(seek),
                    "{name}: no seek on the account:\n{plan}"
                );
            }
        }
    }

    /// A later batch reporting a day replaces the earlier batches' rows of
    /// that account and day (not other days, not other accounts); one
    /// account's read is that account's part of the period's, in order.
    async fn a_later_batch_replaces_a_day_and_accounts_read_alone(store: &Store) {
        vendor(store, "acme", UsageSource::Csv("acme".into())).await;
        let first = [
            row("acme", "a1", "backup", dec!(1), 18),
            row("acme", "a1", "mail", dec!(2), 18),
            row("acme", "a1", "backup", dec!(3), 19),
            row("acme", "a2", "backup", dec!(4), 18),
        ];
        let second = [row("acme", "a1", "backup", dec!(9), 18)];
        for (rows, hour) in [(&first[..], 1), (&second[..], 2)] {
            let mut tx = store.db.begin("test").await.unwrap();
            let batch = new_batch(
                &mut tx,
                "test",
                &"acme".into(),
                "csv",
                None,
                None,
                None,
                at(20, hour),
            )
            .await
            .unwrap();
            append_observations(&mut tx, "test", batch, rows)
                .await
                .unwrap();
            tx.commit("test").await.unwrap();
        }
        let (from, to) = (
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        );
        let seen = |rows: Vec<UsageObservation>| -> Vec<(String, String, Decimal)> {
            rows.iter()
                .map(|u| (u.account.to_string(), u.sku_id.to_string(), u.quantity))
                .collect()
        };
        let all = store.usage_for_period(from, to).await.unwrap();
        let s = |a: &str, k: &str, q| (a.to_owned(), k.to_owned(), q);
        assert_eq!(
            seen(all.clone()),
            [
                s("a1", "backup", dec!(9)),
                s("a1", "backup", dec!(3)),
                s("a2", "backup", dec!(4))
            ]
        );
        let a1 = store
            .account_usage_for_period(from, to, &"acme".into(), &"a1".into())
            .await
            .unwrap();
        assert_eq!(a1, all[..2]);
    }

    both!(
        latest_pushed_usage_is_the_last_day_of_each_account_and_sku,
        usage_reads_are_served_by_their_indexes,
        a_later_batch_replaces_a_day_and_accounts_read_alone,
    );
}
