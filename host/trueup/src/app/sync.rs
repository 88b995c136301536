//! Syncs: pull a PSA or a vendor through its connector and record the
//! result in one transaction. A failed pull records only a failed run: the
//! previous data stays current, with its own (older) sync time.

use std::time::Duration;

use serde::Serialize;
use trueup_core::model::{UsageSource, VendorId, VendorIntegration};
use trueup_plugin_host::ContractFilter;
use trueup_store::sync::{PsaData, SyncKind, SyncStats, VendorData};

use super::{App, AppError, AppEvent};
use crate::pull::{PullError, PullProgress, PullStats, RetryPolicy, pull_psa, pull_vendor};

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    /// The PSA plugin id or vendor integration id.
    pub source: String,
    /// Records read (companies + contracts + lines, or accounts + usage).
    pub records: u64,
    /// HTTP requests sent.
    pub requests: u64,
    /// Wall time.
    pub wall_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn store_stats(stats: &PullStats, records: u64) -> SyncStats {
    SyncStats {
        calls: u64::from(stats.calls),
        pages: u64::from(stats.pages),
        requests: stats.requests,
        retries: u64::from(stats.retries),
        records,
        rate_limit_wait_ms: millis(stats.rate_limit_wait),
        backoff_wait_ms: millis(stats.backoff_wait),
        wasm_time_ms: millis(stats.wasm_time),
        host_time_ms: millis(stats.host_time),
        wall_ms: millis(stats.wall),
    }
}

impl App {
    fn progress_sink(&self, source: &str) -> impl Fn(PullProgress) + Send + Sync + use<> {
        let app = self.clone();
        let source = source.to_owned();
        move |p: PullProgress| {
            app.emit(AppEvent::SyncProgress {
                source: source.clone(),
                phase: p.phase.to_owned(),
                records: p.records,
                pages: p.pages,
            });
        }
    }

    async fn finish(&self, source: &str, result: &Result<SyncSummary, AppError>) {
        let (ok, message) = match result {
            Ok(s) => (
                true,
                format!(
                    "{} records, {} requests, {} ms",
                    s.records, s.requests, s.wall_ms
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        self.emit(AppEvent::SyncFinished {
            source: source.to_owned(),
            ok,
            message,
        });
    }

    /// Syncs the configured PSA.
    ///
    /// # Errors
    /// No PSA configured, the plugin does not load, or the pull failed (a
    /// failed run is recorded; the previous data stays).
    pub async fn sync_psa(&self) -> Result<SyncSummary, AppError> {
        let psa = self.config().psa.clone().ok_or_else(|| {
            AppError::NotConfigured("no [psa] is configured in trueup.toml".into())
        })?;
        let result = self.sync_psa_inner(&psa.plugin, &psa.contract_types).await;
        self.finish(&psa.plugin, &result).await;
        result
    }

    async fn sync_psa_inner(
        &self,
        plugin_id: &str,
        types: &[String],
    ) -> Result<SyncSummary, AppError> {
        let as_of = self.today();
        let plugin = self.runtime().load(plugin_id)?;
        let mut session = plugin.psa_session(self.session_options(plugin_id, as_of).await?)?;
        let run = self
            .store()
            .begin_sync(SyncKind::Psa, plugin_id, as_of, self.now())
            .await?;
        let filter = ContractFilter {
            types: types.to_vec(),
            active_only: false,
        };
        let progress = self.progress_sink(plugin_id);
        let pulled = pull_psa(
            &mut session,
            &filter,
            as_of,
            self.psa_profile().cycle_anchor,
            &RetryPolicy::default(),
            &progress,
        )
        .await;
        match pulled {
            Ok(pull) => {
                let records =
                    (pull.companies.len() + pull.contracts.len() + pull.lines.len()) as u64;
                let stats = store_stats(&pull.stats, records);
                let data = PsaData {
                    companies: pull.companies,
                    contracts: pull.contracts,
                    lines: pull.lines,
                    catalog: Vec::new(),
                };
                self.store()
                    .complete_psa_sync(run, &data, &stats, self.now())
                    .await?;
                Ok(SyncSummary {
                    source: plugin_id.to_owned(),
                    records,
                    requests: stats.requests,
                    wall_ms: stats.wall_ms,
                })
            }
            Err(error) => self.record_failure(run, error).await,
        }
    }

    async fn record_failure(
        &self,
        run: trueup_store::sync::SyncRunId,
        error: PullError,
    ) -> Result<SyncSummary, AppError> {
        let stats = store_stats(&error.stats(), 0);
        self.store()
            .fail_sync(run, &error.to_string(), &stats, self.now())
            .await?;
        Err(AppError::Pull(error))
    }

    /// Syncs one vendor integration (a `[[vendors]]` entry).
    ///
    /// # Errors
    /// An unknown vendor, the plugin does not load, or the pull failed.
    pub async fn sync_vendor(&self, vendor_id: &str) -> Result<SyncSummary, AppError> {
        let result = self.sync_vendor_inner(vendor_id).await;
        self.finish(vendor_id, &result).await;
        result
    }

    async fn sync_vendor_inner(&self, vendor_id: &str) -> Result<SyncSummary, AppError> {
        let vendor = self
            .config()
            .vendors
            .iter()
            .find(|v| v.id == vendor_id)
            .cloned()
            .ok_or_else(|| {
                AppError::NotFound(format!("no [[vendors]] entry has id {vendor_id:?}"))
            })?;
        let as_of = self.today();
        self.store()
            .upsert_vendor_integration(
                &VendorIntegration {
                    id: VendorId::from(vendor.id.as_str()),
                    name: vendor.name.clone(),
                    source: UsageSource::Plugin(vendor.plugin.clone()),
                },
                self.now(),
            )
            .await?;
        let plugin = self.runtime().load(&vendor.plugin)?;
        let options = self.session_options(&vendor.plugin, as_of).await?;
        let mut session = plugin.vendor_session(VendorId::from(vendor.id.as_str()), options)?;
        let run = self
            .store()
            .begin_sync(SyncKind::Vendor, &vendor.id, as_of, self.now())
            .await?;
        let progress = self.progress_sink(&vendor.id);
        match pull_vendor(&mut session, &RetryPolicy::default(), &progress).await {
            Ok(pull) => {
                let records = (pull.accounts.len() + pull.usage.len()) as u64;
                let stats = store_stats(&pull.stats, records);
                let data = VendorData {
                    accounts: pull.accounts,
                    usage: pull.usage,
                };
                self.store()
                    .complete_vendor_sync(run, &data, &stats, self.now())
                    .await?;
                Ok(SyncSummary {
                    source: vendor.id.clone(),
                    records,
                    requests: stats.requests,
                    wall_ms: stats.wall_ms,
                })
            }
            Err(error) => self.record_failure(run, error).await,
        }
    }

    /// Syncs the PSA and every vendor, one after another; a failing source
    /// does not stop the others. Returns each source's outcome.
    pub async fn sync_all(&self) -> Vec<(String, Result<SyncSummary, AppError>)> {
        let mut outcomes = Vec::new();
        if let Some(psa) = &self.config().psa {
            outcomes.push((psa.plugin.clone(), self.sync_psa().await));
        }
        for vendor in self.config().vendors.clone() {
            outcomes.push((vendor.id.clone(), self.sync_vendor(&vendor.id).await));
        }
        outcomes
    }
}
