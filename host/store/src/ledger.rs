//! Reading the append-only ledger: what the PSA billed, what vendors
//! reported, what each reconcile proposed and what people decided, by
//! month, and the state of everything "as of" a date.
//!
//! Months are calendar months of business dates: a PSA sync counts for the
//! month of its as-of date, a reconcile run for the month of its as-of
//! date, a decision for the month of its UTC decision day. Within a month
//! the latest sync and the latest run stand for it.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::card::{CardCategory, CardKey};
use trueup_core::model::{
    AccountId, CompanyId, ContractId, ProductId, ServiceLineId, SkuId, VendorId,
};

use crate::Store;
use crate::cards::{DECISION_COLUMNS, DecisionRecord, decision_from_row};
use crate::db::{Value, placeholders, sql};
use crate::error::Result;
use crate::reconcile::{ReconcileRunId, card_key};
use crate::sync::SyncRunId;

/// One card's figures in one month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthFigures {
    /// The month's first day.
    pub month: NaiveDate,
    /// The card (for a PSA line: the line's card key).
    pub card_key: CardKey,
    /// The PSA line, for line cards.
    pub line: Option<ServiceLineId>,
    /// The product.
    pub product: Option<ProductId>,
    /// What the PSA billed: the month's latest successful PSA sync.
    pub psa_quantity: Option<Decimal>,
    /// That sync's as-of date.
    pub psa_as_of: Option<NaiveDate>,
    /// What vendors reported (billable), as the month's latest reconcile
    /// run measured it.
    pub vendor_quantity: Option<Decimal>,
    /// What that run proposed.
    pub target_quantity: Option<Decimal>,
    /// Its category then.
    pub category: Option<CardCategory>,
    /// That run.
    pub run: Option<ReconcileRunId>,
    /// Decisions on the card made in the month, oldest first.
    pub decisions: Vec<DecisionRecord>,
}

/// A PSA line's figures as recorded by a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineFigures {
    /// The line.
    pub line: ServiceLineId,
    /// Its contract.
    pub contract: ContractId,
    /// The contract's company (when the contract was in the sync).
    pub company: Option<CompanyId>,
    /// The product identifier.
    pub product: ProductId,
    /// Quantity billed.
    pub quantity: Decimal,
    /// Price per unit.
    pub unit_price: Decimal,
    /// Cost per unit.
    pub unit_cost: Decimal,
}

/// Where a vendor figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureSource {
    /// A vendor sync or CSV import.
    Reported,
    /// The push API.
    Pushed,
}

/// A vendor's latest figure for one SKU of one account up to a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorFigure {
    /// The vendor.
    pub vendor: VendorId,
    /// The account.
    pub account: AccountId,
    /// The SKU.
    pub sku: SkuId,
    /// The UTC day the figure is for (the latest day on or before the
    /// date asked).
    pub day: NaiveDate,
    /// The units of that day (rows of the day summed).
    pub quantity: Decimal,
    /// Reported or pushed.
    pub source: FigureSource,
}

/// Everything current at a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateAsOf {
    /// The date asked.
    pub date: NaiveDate,
    /// The PSA sync whose figures were current (the latest successful one
    /// with an as-of date on or before `date`).
    pub psa_sync: Option<SyncRunId>,
    /// Its as-of date.
    pub psa_as_of: Option<NaiveDate>,
    /// Its lines, by id.
    pub lines: Vec<LineFigures>,
    /// Vendor figures, by vendor, account, SKU and source.
    pub vendor: Vec<VendorFigure>,
}

fn month_of(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// A run's view of a card: (as-of, run id, category, vendor quantity,
/// target quantity).
type CardFigures = (
    NaiveDate,
    i64,
    CardCategory,
    Option<Decimal>,
    Option<Decimal>,
);

#[derive(Default)]
struct Month {
    line: Option<ServiceLineId>,
    product: Option<ProductId>,
    psa: Option<(NaiveDate, i64, Decimal)>,
    card: Option<CardFigures>,
    decisions: Vec<DecisionRecord>,
}

impl Store {
    /// Month by month, the PSA quantity, vendor quantity, proposal and
    /// decisions of one PSA line (every month with any of them).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn line_history(&self, line: &ServiceLineId) -> Result<Vec<MonthFigures>> {
        self.history(HistoryScope::Line(line), None, None).await
    }

    /// Month by month from `from` to `to` (inclusive), every card of
    /// `company`: PSA quantity, vendor quantity, proposal and decisions —
    /// the month-over-month drift of one customer.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn account_history(
        &self,
        company: &CompanyId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<MonthFigures>> {
        self.history(HistoryScope::Company(company), Some(from), Some(to))
            .await
    }

    async fn history(
        &self,
        scope: HistoryScope<'_>,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<MonthFigures>> {
        const OP: &str = "read history";
        let (column, id) = match scope {
            HistoryScope::Line(l) => ("line_id", l.as_str()),
            HistoryScope::Company(c) => ("company_id", c.as_str()),
        };
        // Bounds both backends compare correctly (SQLite compares dates as
        // text, so they must be four-digit years).
        let from = from.unwrap_or(NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default());
        let to = to.unwrap_or(NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or_default());
        let mut months: BTreeMap<(NaiveDate, CardKey), Month> = BTreeMap::new();
        let psa = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "ledger_psa_lines",
                    format!(
                        "SELECT l.sync_run_id, l.as_of, l.line_id, l.contract_id, l.company_id, l.product_identifier, \
                         l.quantity FROM ledger_psa_lines l WHERE l.{column} = $1 AND l.as_of >= $2 AND l.as_of <= $3 \
                         ORDER BY l.as_of, l.sync_run_id"
                    ),
                )
                .bind(id)
                .bind(from)
                .bind(to),
            )
            .await?;
        for r in &psa {
            let Some(company) = r.opt_text("company_id")? else {
                continue;
            };
            let line = ServiceLineId::from(r.text("line_id")?);
            let key = CardKey::for_line(&company.into(), &r.text("contract_id")?.into(), &line);
            let as_of = r.date("as_of")?;
            let m = months.entry((month_of(as_of), key)).or_default();
            m.line = Some(line);
            m.product = Some(r.text("product_identifier")?.into());
            m.psa = Some((as_of, r.int("sync_run_id")?, r.decimal("quantity")?));
        }
        // Cards are indexed by company only: a line's cards are looked up
        // within the companies its PSA records name.
        let mut companies: Vec<String> = Vec::new();
        if let HistoryScope::Line(_) = scope {
            for r in &psa {
                if let Some(c) = r.opt_text("company_id")?
                    && !companies.contains(&c)
                {
                    companies.push(c);
                }
            }
        }
        let company_sql = if companies.is_empty() {
            String::new()
        } else {
            format!(
                "c.company_id IN ({}) AND ",
                placeholders(4, companies.len())
            )
        };
        let cards = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "cards",
                    format!(
                        "SELECT c.run_id, r.as_of, c.key, c.line_id, c.product_id, c.category, c.vendor_quantity, \
                         c.target_quantity FROM reconcile_runs r CROSS JOIN cards c \
                         WHERE c.run_id = r.id AND {company_sql}c.{column} = $1 AND r.as_of >= $2 AND r.as_of <= $3 ORDER BY r.as_of, c.run_id"
                    ),
                )
                .bind(id)
                .bind(from)
                .bind(to)
                .bind_all(companies.into_iter().map(Value::from)),
            )
            .await?;
        for r in &cards {
            let as_of = r.date("as_of")?;
            let key = card_key(r, "key")?;
            let m = months.entry((month_of(as_of), key)).or_default();
            if m.line.is_none() {
                m.line = r.opt_text("line_id")?.map(Into::into);
            }
            if m.product.is_none() {
                m.product = r.opt_text("product_id")?.map(Into::into);
            }
            m.card = Some((
                as_of,
                r.int("run_id")?,
                r.enum_value("category", "a card category")?,
                r.opt_decimal("vendor_quantity")?,
                r.opt_decimal("target_quantity")?,
            ));
        }
        let keys: Vec<CardKey> = {
            let mut k: Vec<CardKey> = months.keys().map(|(_, k)| *k).collect();
            k.sort();
            k.dedup();
            k
        };
        let mut known: HashMap<CardKey, (Option<ServiceLineId>, Option<ProductId>)> =
            HashMap::new();
        for ((_, key), m) in &months {
            known
                .entry(*key)
                .or_insert_with(|| (m.line.clone(), m.product.clone()));
        }
        for chunk in keys.chunks(500) {
            let rows = self
                .db
                .fetch_all(
                    sql(
                        OP,
                        "decisions",
                        format!(
                            "SELECT {DECISION_COLUMNS} FROM decisions WHERE card_key IN ({}) ORDER BY decided_at, id",
                            placeholders(1, chunk.len())
                        ),
                    )
                    .bind_all(chunk.iter().map(|k| Value::from(k.as_str()))),
                )
                .await?;
            for r in &rows {
                let d = decision_from_row(r)?;
                let day = d.decided_at.date_naive();
                if day < from || day > to {
                    continue;
                }
                let (line, product) = known.get(&d.card_key).cloned().unwrap_or_default();
                let m = months.entry((month_of(day), d.card_key)).or_default();
                if m.line.is_none() {
                    m.line = line;
                }
                if m.product.is_none() {
                    m.product = product;
                }
                m.decisions.push(d);
            }
        }
        Ok(months
            .into_iter()
            .map(|((month, card_key), m)| MonthFigures {
                month,
                card_key,
                line: m.line,
                product: m.product,
                psa_quantity: m.psa.map(|p| p.2),
                psa_as_of: m.psa.map(|p| p.0),
                vendor_quantity: m.card.and_then(|c| c.3),
                target_quantity: m.card.and_then(|c| c.4),
                category: m.card.map(|c| c.2),
                run: m.card.map(|c| ReconcileRunId(c.1)),
                decisions: m.decisions,
            })
            .collect())
    }

    /// The PSA lines and vendor figures current at `date`: the lines of the
    /// latest successful PSA sync with an as-of date on or before `date`,
    /// and per (vendor, account, SKU) the units of the latest UTC day on or
    /// before `date`, as the latest report (or push) for that day said.
    /// Reconstructed from the append-only ledger, so later syncs do not
    /// change the answer for an earlier date.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn state_as_of(&self, date: NaiveDate) -> Result<StateAsOf> {
        const OP: &str = "reconstruct state as of a date";
        let mut tx = self.db.begin_read(OP).await?;
        let sync = tx
            .fetch_optional(
                sql(
                    OP,
                    "sync_runs",
                    "SELECT id, as_of FROM sync_runs WHERE kind = 'psa' AND status = 'succeeded' AND as_of <= $1 \
                     ORDER BY as_of DESC, id DESC LIMIT 1",
                )
                .bind(date),
            )
            .await?;
        let (psa_sync, psa_as_of) = match &sync {
            Some(r) => (Some(SyncRunId(r.int("id")?)), Some(r.date("as_of")?)),
            None => (None, None),
        };
        let lines = match psa_sync {
            None => Vec::new(),
            Some(run) => tx
                .fetch_all(
                    sql(
                        OP,
                        "ledger_psa_lines",
                        "SELECT line_id, contract_id, company_id, product_identifier, quantity, unit_price, unit_cost \
                         FROM ledger_psa_lines WHERE sync_run_id = $1 ORDER BY line_id",
                    )
                    .bind(run),
                )
                .await?
                .iter()
                .map(|r| {
                    Ok(LineFigures {
                        line: r.text("line_id")?.into(),
                        contract: r.text("contract_id")?.into(),
                        company: r.opt_text("company_id")?.map(Into::into),
                        product: r.text("product_identifier")?.into(),
                        quantity: r.decimal("quantity")?,
                        unit_price: r.decimal("unit_price")?,
                        unit_cost: r.decimal("unit_cost")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let reported = tx
            .fetch_all(
                sql(
                    OP,
                    "usage_observations",
                    "WITH latest AS ( \
                       SELECT o.vendor_id, o.account_id, o.observed_on, MAX(o.batch_id) AS batch_id \
                       FROM usage_observations o JOIN usage_batches b ON b.id = o.batch_id \
                       WHERE o.observed_on <= $1 AND b.source <> 'push' \
                       GROUP BY o.vendor_id, o.account_id, o.observed_on), \
                     counted AS ( \
                       SELECT o.vendor_id, o.account_id, o.sku_id, o.observed_on, o.quantity \
                       FROM usage_observations o JOIN latest l ON o.vendor_id = l.vendor_id \
                       AND o.account_id = l.account_id AND o.observed_on = l.observed_on AND o.batch_id = l.batch_id), \
                     last_day AS ( \
                       SELECT vendor_id, account_id, sku_id, MAX(observed_on) AS day FROM counted \
                       GROUP BY vendor_id, account_id, sku_id) \
                     SELECT c.vendor_id, c.account_id, c.sku_id, c.observed_on, c.quantity FROM counted c \
                     JOIN last_day d ON c.vendor_id = d.vendor_id AND c.account_id = d.account_id \
                       AND c.sku_id = d.sku_id AND c.observed_on = d.day",
                )
                .bind(date),
            )
            .await?;
        let pushed = tx
            .fetch_all(
                sql(
                    OP,
                    "pushed_usage",
                    "SELECT p.vendor_id, p.account_id, p.sku_id, p.observed_on, p.quantity FROM pushed_usage p \
                     WHERE p.observed_on = (SELECT MAX(q.observed_on) FROM pushed_usage q \
                       WHERE q.vendor_id = p.vendor_id AND q.account_id = p.account_id AND q.sku_id = p.sku_id \
                       AND q.observed_on <= $1)",
                )
                .bind(date),
            )
            .await?;
        tx.commit(OP).await?;
        let mut figures: BTreeMap<(String, String, String, bool), (NaiveDate, Decimal)> =
            BTreeMap::new();
        for (rows, pushed) in [(&reported, false), (&pushed, true)] {
            for r in rows {
                let key = (
                    r.text("vendor_id")?,
                    r.text("account_id")?,
                    r.text("sku_id")?,
                    pushed,
                );
                let day = r.date("observed_on")?;
                let quantity = r.decimal("quantity")?;
                figures
                    .entry(key)
                    .and_modify(|f| f.1 += quantity)
                    .or_insert((day, quantity));
            }
        }
        Ok(StateAsOf {
            date,
            psa_sync,
            psa_as_of,
            lines,
            vendor: figures
                .into_iter()
                .map(
                    |((vendor, account, sku, pushed), (day, quantity))| VendorFigure {
                        vendor: vendor.into(),
                        account: account.into(),
                        sku: sku.into(),
                        day,
                        quantity,
                        source: if pushed {
                            FigureSource::Pushed
                        } else {
                            FigureSource::Reported
                        },
                    },
                )
                .collect(),
        })
    }
}

enum HistoryScope<'a> {
    Line(&'a ServiceLineId),
    Company(&'a CompanyId),
}
