//! Reconcile: the stored PSA state and vendor usage, the account matching,
//! the active rules → service cards, recorded as one run.

use std::collections::HashSet;

use chrono::{Datelike, Months, NaiveDate};
use serde::Serialize;
use trueup_core::matching::{MatchConfig, MatchOutcome, match_accounts};
use trueup_core::model::AccountMapping;
use trueup_core::reconcile::{ReconcileInput, reconcile};
use trueup_store::reconcile::NewReconcileRun;

use super::{App, AppError, AppEvent};

/// Months of usage history a reconcile reads: enough for an annual
/// contract's current period plus the month before it.
pub const USAGE_HISTORY_MONTHS: u32 = 13;

/// What a reconcile produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileSummary {
    /// The recorded run.
    pub run: i64,
    /// The as-of date.
    pub as_of: NaiveDate,
    /// Cards.
    pub cards: usize,
    /// Usage rows read.
    pub usage_rows: usize,
    /// The rule version (`rules/<checksum>`).
    pub rules: String,
}

/// The first day of usage a reconcile as of `as_of` reads: the first of
/// the month [`USAGE_HISTORY_MONTHS`] − 1 months before `as_of`'s.
pub fn history_start(as_of: NaiveDate) -> NaiveDate {
    let first = as_of.with_day(1).unwrap_or(as_of);
    first
        .checked_sub_months(Months::new(USAGE_HISTORY_MONTHS - 1))
        .unwrap_or(first)
}

/// The reconcile date `text` names, checked against `today`: a real
/// calendar date written `YYYY-MM-DD`, not after today (usage after today
/// does not exist yet, so a later date would propose changes from
/// incomplete data).
///
/// # Errors
/// A sentence saying what is wrong and what to send instead.
pub fn as_of_date(text: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        // `%Y` also reads "+2026" or "26"; the form is exactly YYYY-MM-DD.
        .filter(|d| d.format("%Y-%m-%d").to_string() == text.trim())
        .ok_or_else(|| {
            format!(
                "as_of {text:?} is not a real date in the form YYYY-MM-DD (e.g. {})",
                today.format("%Y-%m-%d")
            )
        })?;
    if day > today {
        return Err(format!(
            "as_of {day} is after today ({today}); reconcile as of today or an earlier date"
        ));
    }
    Ok(day)
}

impl App {
    /// Reconciles as of today (the MSP's time zone).
    ///
    /// # Errors
    /// A store or rules error.
    pub async fn reconcile(&self) -> Result<ReconcileSummary, AppError> {
        self.reconcile_as_of(self.today()).await
    }

    /// Reconciles as of `as_of` and records the run.
    ///
    /// # Errors
    /// A store or rules error.
    pub async fn reconcile_as_of(&self, as_of: NaiveDate) -> Result<ReconcileSummary, AppError> {
        let started = self.now();
        let psa = self.background_store().psa_state().await?;
        let accounts = self.background_store().vendor_accounts(None).await?;
        let usage = self
            .store()
            .usage_for_period(history_start(as_of), as_of)
            .await?;
        let overrides: Vec<AccountMapping> = self
            .store()
            .mapping_overrides()
            .await?
            .iter()
            .map(|o| o.to_mapping())
            .collect();
        let mut outcomes = match_accounts(
            &psa.data.companies,
            &accounts,
            &overrides,
            MatchConfig::default(),
        );
        // Overrides of accounts no sync listed this time stay in force.
        let listed: HashSet<(&str, &str)> = accounts
            .iter()
            .map(|a| (a.vendor.as_str(), a.id.as_str()))
            .collect();
        for o in &overrides {
            if !listed.contains(&(o.vendor.as_str(), o.account.as_str())) {
                outcomes.push(MatchOutcome {
                    mapping: o.clone(),
                    suggestions: Vec::new(),
                });
            }
        }
        self.background_store()
            .replace_match_results(&outcomes, self.now())
            .await?;
        let rules = self.active_rules().await?;
        let label = rules.version.label();
        let checksum = rules.version.checksum.clone();
        let profile = self.psa_profile();
        let usage_rows = usage.len();
        let psa_sync = psa.sync.as_ref().map(|s| s.id);
        let active = rules.clone();
        // Reconciling is CPU-bound (seconds for a large MSP): keep it off
        // the async workers.
        let (output, usage) = tokio::task::spawn_blocking(move || {
            let mapper = active.mapper(as_of);
            let mappings: Vec<AccountMapping> =
                outcomes.iter().map(|o| o.mapping.clone()).collect();
            let output = reconcile(&ReconcileInput {
                as_of,
                psa: &profile,
                companies: &psa.data.companies,
                contracts: &psa.data.contracts,
                lines: &psa.data.lines,
                catalog: &psa.data.catalog,
                accounts: &accounts,
                usage: &usage,
                mappings: &mappings,
                suggestions: &outcomes,
                mapper: &mapper,
            });
            (output, usage)
        })
        .await
        .map_err(|e| AppError::Invalid(format!("the reconcile task failed: {e}")))?;
        let run = self
            .store()
            .record_reconcile_run(NewReconcileRun {
                output: &output,
                rule_checksum: Some(&checksum),
                psa_sync,
                started_at: started,
                finished_at: self.now(),
            })
            .await?;
        // Where each account's rows sit in what this run read, so a card's
        // detail reads only its accounts' rows. Without it the detail
        // reads the whole period instead: slower, never wrong, so a
        // failure here does not fail the reconcile.
        if let Err(error) = self
            .background_store()
            .record_run_usage_accounts(run, &usage)
            .await
        {
            tracing::warn!(run = run.0, %error, "recording the run's usage ranges failed; card details will read the whole period");
        }
        drop(usage);
        self.emit(AppEvent::Reconciled {
            run: run.0,
            cards: output.cards.len(),
        });
        Ok(ReconcileSummary {
            run: run.0,
            as_of,
            cards: output.cards.len(),
            usage_rows,
            rules: label,
        })
    }
}

impl App {
    /// The stored PSA state, vendor integrations, accounts and usage (as a
    /// reconcile as of `as_of` reads them) and the manual mappings, as a
    /// snapshot; with the account matching a reconcile would do. For
    /// dry-running and explaining draft rules against current data.
    ///
    /// # Errors
    /// A store error.
    pub async fn current_snapshot(
        &self,
        as_of: NaiveDate,
    ) -> Result<(trueup_core::snapshot::Snapshot, Vec<MatchOutcome>), AppError> {
        let psa = self.store().psa_state().await?;
        let mut snapshot = trueup_core::snapshot::Snapshot::new(self.psa_profile());
        snapshot.taken_at = Some(self.now());
        snapshot.companies = psa.data.companies;
        snapshot.contracts = psa.data.contracts;
        snapshot.service_lines = psa.data.lines;
        snapshot.catalog = psa.data.catalog;
        snapshot.vendors = self.store().vendor_integrations().await?;
        snapshot.accounts = self.store().vendor_accounts(None).await?;
        snapshot.account_mappings = self
            .store()
            .mapping_overrides()
            .await?
            .iter()
            .map(|o| o.to_mapping())
            .collect();
        snapshot.usage = self
            .store()
            .usage_for_period(history_start(as_of), as_of)
            .await?;
        let outcomes = snapshot.resolve_mappings(MatchConfig::default());
        Ok((snapshot, outcomes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_dates_are_real_days_up_to_today() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        let cases: [(&str, Result<NaiveDate, &str>); 10] = [
            ("2026-10-31", Ok(day(2026, 10, 31))),
            ("2026-11-25", Ok(today)),
            (" 2025-02-28 ", Ok(day(2025, 2, 28))),
            ("2024-02-29", Ok(day(2024, 2, 29))),
            ("2026-11-26", Err("after today")),
            ("2026-02-30", Err("not a real date")),
            ("2025-02-29", Err("not a real date")),
            ("31/10/2026", Err("not a real date")),
            ("2026-10-31T00:00:00Z", Err("not a real date")),
            ("", Err("not a real date")),
        ];
        for (text, expected) in cases {
            match (as_of_date(text, today), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text:?}"),
                (Err(message), Err(fragment)) => {
                    assert!(message.contains(fragment), "{text:?}: {message}")
                }
                (got, want) => panic!("{text:?}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn history_covers_thirteen_calendar_months() {
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
        assert_eq!(
            history_start(as_of),
            NaiveDate::from_ymd_opt(2025, 11, 1).expect("date")
        );
    }
}
