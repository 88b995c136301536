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
        let psa = self.store().psa_state().await?;
        let accounts = self.store().vendor_accounts(None).await?;
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
        self.store()
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
        let output = tokio::task::spawn_blocking(move || {
            let mapper = active.mapper(as_of);
            let mappings: Vec<AccountMapping> =
                outcomes.iter().map(|o| o.mapping.clone()).collect();
            reconcile(&ReconcileInput {
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
            })
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
    fn history_covers_thirteen_calendar_months() {
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
        assert_eq!(
            history_start(as_of),
            NaiveDate::from_ymd_opt(2025, 11, 1).expect("date")
        );
    }
}
