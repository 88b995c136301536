//! One card across runs: how its numbers moved.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::card::{CardCategory, CardKey};
use trueup_core::model::CompanyId;

use crate::Store;
use crate::db::sql;
use crate::error::Result;
use crate::ids::ReconcileRunId;

/// One run's version of a card, for its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardHistoryEntry {
    /// The run.
    pub run: ReconcileRunId,
    /// Its as-of date.
    pub as_of: NaiveDate,
    /// What the card asked then.
    pub category: CardCategory,
    /// PSA quantity then.
    pub psa_quantity: Option<Decimal>,
    /// Vendor quantity then.
    pub vendor_quantity: Option<Decimal>,
    /// Proposed quantity then.
    pub target_quantity: Option<Decimal>,
    /// Money delta then.
    pub money_delta: Option<Decimal>,
}

impl Store {
    /// The card `key` of `company` (the card's company; `None` for cards
    /// without one) in every run that had it, oldest first: how its
    /// numbers moved. (A card's key and company never change together, so
    /// each run is probed through the (run, company, key) index; `CROSS
    /// JOIN` keeps SQLite's planner from scanning the cards instead.)
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_history(
        &self,
        key: &CardKey,
        company: Option<&CompanyId>,
    ) -> Result<Vec<CardHistoryEntry>> {
        let company_sql = if company.is_some() {
            "c.company_id = $2"
        } else {
            "c.company_id IS NULL AND $2 IS NULL"
        };
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read card history",
                    "cards",
                    format!(
                        "SELECT c.run_id, r.as_of, c.category, c.psa_quantity, c.vendor_quantity, \
                         c.target_quantity, c.money_delta FROM reconcile_runs r CROSS JOIN cards c \
                         WHERE c.run_id = r.id AND {company_sql} AND c.key = $1 ORDER BY c.run_id"
                    ),
                )
                .bind(key.as_str())
                .bind(company.map(|c| c.as_str())),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CardHistoryEntry {
                    run: ReconcileRunId(r.int("run_id")?),
                    as_of: r.date("as_of")?,
                    category: r.enum_value("category", "a card category")?,
                    psa_quantity: r.opt_decimal("psa_quantity")?,
                    vendor_quantity: r.opt_decimal("vendor_quantity")?,
                    target_quantity: r.opt_decimal("target_quantity")?,
                    money_delta: r.opt_decimal("money_delta")?,
                })
            })
            .collect()
    }
}
