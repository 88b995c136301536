//! The UI's view of a run's cards: filtered pages with each card's status
//! today and tags, totals and groups (money summed exactly, in Rust), and
//! whole cards as recorded.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::card::{CardCategory, CardKey, CardMoney, CardTotals, ServiceCard};
use trueup_core::model::{CompanyId, VendorId};

use super::card_rows::{SUMMARY_COLUMNS, card_from_row, card_key, money_from_row};
use crate::Store;
use crate::card_state::{
    CardState, CardStatus, STATE_COLUMNS_S, STATUS_SQL, WriteBackStatus, state_from_row,
};
use crate::db::{Row, Value, enum_text, placeholders, sql};
use crate::error::Result;
use crate::ids::{OutboxId, ReconcileRunId};

/// Cards per page, at most.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// A card as listed: the columns, its effective state and tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardSummary {
    /// The run.
    pub run: ReconcileRunId,
    /// Position in the run's order (the pagination cursor).
    pub position: i64,
    /// Stable identity.
    pub key: CardKey,
    /// What it asks.
    pub category: CardCategory,
    /// Customer.
    pub company: Option<String>,
    /// Contract.
    pub contract: Option<String>,
    /// PSA line.
    pub line: Option<String>,
    /// Product.
    pub product: Option<String>,
    /// Vendors behind the vendor quantity.
    pub vendors: Vec<VendorId>,
    /// PSA quantity on the card's line.
    pub psa_quantity: Option<Decimal>,
    /// PSA quantity of the product on the company's other lines, when the
    /// variance counts them (see `ServiceCard::psa_quantity_elsewhere`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psa_quantity_elsewhere: Option<Decimal>,
    /// Vendor (billable) quantity.
    pub vendor_quantity: Option<Decimal>,
    /// Proposed quantity.
    pub target_quantity: Option<Decimal>,
    /// `target − psa`.
    pub variance: Option<Decimal>,
    /// Money before and after.
    pub money: Option<CardMoney>,
    /// Proposed effective date.
    pub effective_date: Option<NaiveDate>,
    /// The card's status today (see [`CardFilter::today`]).
    pub status: CardStatus,
    /// The stored state, if a person ever acted on the card.
    pub state: Option<CardState>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Whether the card's numbers changed since the change staged on it
    /// (see `state.staged`): the stage is kept, and shown as needing a
    /// second look before it is approved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stage_numbers_changed: bool,
    /// The write-back of an approved card: what was approved and what
    /// became of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<crate::outbox::WriteBackSummary>,
}

/// Which cards of a run to list. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardFilter {
    /// Any of these categories.
    pub categories: Vec<CardCategory>,
    /// Cards with this vendor among their vendors.
    pub vendor: Option<VendorId>,
    /// Cards of this company.
    pub company: Option<CompanyId>,
    /// Cards carrying this tag.
    pub tag: Option<String>,
    /// Cards whose status today is this.
    pub status: Option<CardStatus>,
    /// Cards whose (latest) write-back stands here.
    pub write_back: Option<WriteBackStatus>,
    /// "Today" for statuses: dismissals and dated snoozes end by date.
    /// `None` uses the run's as-of date.
    pub today: Option<NaiveDate>,
}

/// A page of cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardPage {
    /// The cards, in run order.
    pub cards: Vec<CardSummary>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<i64>,
    /// Cards matching the filter in the whole run.
    pub total: u64,
}

/// What to group cards by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// Company id.
    Company,
    /// Contract id.
    Contract,
    /// Category.
    Category,
    /// Product.
    Product,
    /// Each vendor (a card with two vendors counts in both groups).
    Vendor,
    /// Status today.
    Status,
}

/// One group of cards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardGroup {
    /// The group's key (`None` for cards without one, e.g. no company).
    pub key: Option<String>,
    /// Money and counts of its cards.
    pub totals: CardTotals,
}

/// Adds a card's counts and money to `totals`, as `card::totals` does.
fn add_to_totals(totals: &mut CardTotals, category: CardCategory, delta: Option<Decimal>) {
    *totals.cards.entry(category).or_default() += 1;
    if category.proposes_change()
        && let Some(delta) = delta
    {
        if delta > Decimal::ZERO {
            totals.under_billed += delta;
        } else {
            totals.over_billed -= delta;
        }
        totals.at_stake = totals.under_billed + totals.over_billed;
    }
}

/// The `WHERE` of a filtered card query, starting at placeholder `$next`,
/// with its values.
fn filter_sql(filter: &CardFilter, today: NaiveDate, mut next: usize) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if !filter.categories.is_empty() {
        clauses.push(format!(
            "c.category IN ({})",
            placeholders(next, filter.categories.len())
        ));
        next += filter.categories.len();
        values.extend(filter.categories.iter().map(|c| Value::from(c.as_str())));
    }
    if let Some(vendor) = &filter.vendor {
        // `vendors` is a JSON array of strings: match the element with its
        // quotes, escaping LIKE's wildcards.
        let element = serde_json::to_string(vendor.as_str()).unwrap_or_default();
        let escaped = element
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        clauses.push(format!("c.vendors LIKE ${next} ESCAPE '\\'"));
        next += 1;
        values.push(Value::from(format!("%{escaped}%")));
    }
    if let Some(company) = &filter.company {
        clauses.push(format!("c.company_id = ${next}"));
        next += 1;
        values.push(Value::from(company.as_str()));
    }
    if let Some(tag) = &filter.tag {
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM card_tags t WHERE t.key = c.key AND t.tag = ${next})"
        ));
        next += 1;
        values.push(Value::from(tag.trim().to_lowercase()));
    }
    if let Some(status) = filter.status {
        clauses.push(format!(
            "{} = ${}",
            STATUS_SQL.replace("$TODAY", &format!("${next}")),
            next + 1
        ));
        values.push(Value::from(today));
        values.push(Value::from(enum_text(&status)));
        next += 2;
    }
    if let Some(write_back) = filter.write_back {
        clauses.push(format!("s.write_back = ${next}"));
        values.push(Value::from(enum_text(&write_back)));
    }
    let text = if clauses.is_empty() {
        String::new()
    } else {
        format!(" AND {}", clauses.join(" AND "))
    };
    (text, values)
}

impl Store {
    /// "Today" for `filter`'s statuses: its own, or the run's as-of date.
    async fn run_today(&self, run: ReconcileRunId, filter: &CardFilter) -> Result<NaiveDate> {
        match filter.today {
            Some(today) => Ok(today),
            None => Ok(self.reconcile_run(run).await?.as_of),
        }
    }

    /// A page of `run`'s cards matching `filter`, in run order, after
    /// position `after` (exclusive; `None` from the start), at most `limit`
    /// (capped at [`MAX_PAGE_SIZE`]), with the total matching.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn cards_page(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<CardPage> {
        const OP: &str = "list cards";
        let today = self.run_today(run, filter).await?;
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let (where_sql, values) = filter_sql(filter, today, 3);
        let total = self
            .db
            .fetch_one(
                sql(
                    OP,
                    "cards",
                    format!(
                        "SELECT COUNT(*) AS n FROM cards c LEFT JOIN card_states s ON s.key = c.key \
                         WHERE c.run_id = $1 AND c.position > $2{where_sql}"
                    ),
                )
                .bind(run)
                .bind(-1i64)
                .bind_all(values.clone()),
            )
            .await?
            .int("n")?;
        let (where_sql, values) = filter_sql(filter, today, 5);
        let rows = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "cards",
                    format!(
                        "SELECT {SUMMARY_COLUMNS}, {status} AS effective_status, {STATE_COLUMNS_S} \
                         FROM cards c LEFT JOIN card_states s ON s.key = c.key \
                         WHERE c.run_id = $1 AND c.position > $2{where_sql} \
                         ORDER BY c.position LIMIT $3",
                        status = STATUS_SQL.replace("$TODAY", "$4"),
                    ),
                )
                .bind(run)
                .bind(after.unwrap_or(-1))
                .bind(i64::from(limit) + 1)
                .bind(today)
                .bind_all(values),
            )
            .await?;
        let more = rows.len() > limit as usize;
        let mut cards = rows
            .iter()
            .take(limit as usize)
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()?;
        if !cards.is_empty() {
            let keys: Vec<&str> = cards.iter().map(|c| c.key.as_str()).collect();
            let tags = self.tags_of(&keys).await?;
            let outbox: Vec<OutboxId> = cards
                .iter()
                .filter_map(|c| c.state.as_ref().and_then(|s| s.outbox))
                .collect();
            let mut write_backs = self.write_back_summaries(&outbox).await?;
            for card in &mut cards {
                if let Some(t) = tags.get(card.key.as_str()) {
                    card.tags = t.clone();
                }
                card.write_back = card
                    .state
                    .as_ref()
                    .and_then(|s| s.outbox)
                    .and_then(|id| write_backs.remove(&id));
            }
        }
        Ok(CardPage {
            next: if more {
                cards.last().map(|c| c.position)
            } else {
                None
            },
            cards,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// Counts and money of `run`'s cards matching `filter` (summed in Rust,
    /// exactly, as `trueup_core::card::totals` does).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_totals(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
    ) -> Result<CardTotals> {
        let groups = self.group_rows(run, filter, None).await?;
        Ok(groups
            .into_iter()
            .next()
            .map(|g| g.totals)
            .unwrap_or_default())
    }

    /// `run`'s cards matching `filter`, grouped by `by`, with each group's
    /// counts and money, sorted by key (no key first).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_groups(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
        by: GroupBy,
    ) -> Result<Vec<CardGroup>> {
        self.group_rows(run, filter, Some(by)).await
    }

    async fn group_rows(
        &self,
        run: ReconcileRunId,
        filter: &CardFilter,
        by: Option<GroupBy>,
    ) -> Result<Vec<CardGroup>> {
        let today = self.run_today(run, filter).await?;
        let (where_sql, values) = filter_sql(filter, today, 3);
        let key_sql = match by {
            None => "NULL".to_owned(),
            Some(GroupBy::Company) => "c.company_id".to_owned(),
            Some(GroupBy::Contract) => "c.contract_id".to_owned(),
            Some(GroupBy::Category) => "c.category".to_owned(),
            Some(GroupBy::Product) => "c.product_id".to_owned(),
            Some(GroupBy::Vendor) => "c.vendors".to_owned(),
            Some(GroupBy::Status) => STATUS_SQL.replace("$TODAY", "$2"),
        };
        let rows = self
            .db
            .fetch_all(
                sql(
                    "group cards",
                    "cards",
                    format!(
                        "SELECT {key_sql} AS group_key, c.category, c.money_delta \
                         FROM cards c LEFT JOIN card_states s ON s.key = c.key \
                         WHERE c.run_id = $1 AND $2 = $2{where_sql}"
                    ),
                )
                .bind(run)
                .bind(today)
                .bind_all(values),
            )
            .await?;
        let mut groups: BTreeMap<Option<String>, CardTotals> = BTreeMap::new();
        if by.is_none() {
            groups.insert(None, CardTotals::default());
        }
        for row in &rows {
            let category: CardCategory = row.enum_value("category", "a card category")?;
            let delta = row.opt_decimal("money_delta")?;
            let keys: Vec<Option<String>> = match by {
                Some(GroupBy::Vendor) => {
                    let vendors: Vec<String> = row.json("group_key")?;
                    if vendors.is_empty() {
                        vec![None]
                    } else {
                        vendors.into_iter().map(Some).collect()
                    }
                }
                _ => vec![row.opt_text("group_key")?],
            };
            for key in keys {
                add_to_totals(groups.entry(key).or_default(), category, delta);
            }
        }
        Ok(groups
            .into_iter()
            .map(|(key, totals)| CardGroup { key, totals })
            .collect())
    }

    /// The full card `key` of `run`, exactly as it was recorded.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card(&self, run: ReconcileRunId, key: &CardKey) -> Result<Option<ServiceCard>> {
        let Some(row) = self
            .db
            .fetch_optional(
                sql(
                    "read card",
                    "cards",
                    format!(
                        "SELECT {SUMMARY_COLUMNS}, c.detail, r.mapper_version FROM cards c \
                         JOIN reconcile_runs r ON r.id = c.run_id WHERE c.run_id = $1 AND c.key = $2"
                    ),
                )
                .bind(run)
                .bind(key.as_str()),
            )
            .await?
        else {
            return Ok(None);
        };
        let shared = self.shared_of(run).await?;
        card_from_row(&row, &shared, &Arc::from(row.text("mapper_version")?)).map(Some)
    }

    /// Every card of `run`, in run order, exactly as recorded (e.g. to feed
    /// `trueup_core::actions::decide_bulk`).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn run_cards(&self, run: ReconcileRunId) -> Result<Vec<ServiceCard>> {
        let shared = self.shared_of(run).await?;
        let version: Arc<str> = Arc::from(self.reconcile_run(run).await?.mapper_version);
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read run cards",
                    "cards",
                    format!(
                        "SELECT {SUMMARY_COLUMNS}, c.detail FROM cards c WHERE c.run_id = $1 ORDER BY c.position"
                    ),
                )
                .bind(run),
            )
            .await?;
        rows.iter()
            .map(|r| card_from_row(r, &shared, &version))
            .collect()
    }
}

/// A card's summary from [`SUMMARY_COLUMNS`], its status and its state.
fn summary_from_row(r: &Row) -> Result<CardSummary> {
    let state = match r.opt_text("state_key")? {
        Some(_) => Some(state_from_row(r)?),
        None => None,
    };
    let stage_numbers_changed = match state.as_ref().and_then(|s| s.staged.as_ref()) {
        Some(staged) => staged.numbers_changed(&r.text("fingerprint")?),
        None => false,
    };
    Ok(CardSummary {
        stage_numbers_changed,
        run: ReconcileRunId(r.int("run_id")?),
        position: r.int("position")?,
        key: card_key(r, "key")?,
        category: r.enum_value("category", "a card category")?,
        company: r.opt_text("company_id")?,
        contract: r.opt_text("contract_id")?,
        line: r.opt_text("line_id")?,
        product: r.opt_text("product_id")?,
        vendors: r.json("vendors")?,
        psa_quantity: r.opt_decimal("psa_quantity")?,
        psa_quantity_elsewhere: r.opt_decimal("psa_quantity_elsewhere")?,
        vendor_quantity: r.opt_decimal("vendor_quantity")?,
        target_quantity: r.opt_decimal("target_quantity")?,
        variance: r.opt_decimal("variance")?,
        money: money_from_row(r)?,
        effective_date: r.opt_date("effective_date")?,
        status: r.enum_value("effective_status", "a card status")?,
        state,
        tags: Vec::new(),
        write_back: None,
    })
}
