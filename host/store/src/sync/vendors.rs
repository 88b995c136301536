//! Vendor integrations, their accounts, and vendor syncs (which replace a
//! vendor's accounts and append its usage to the usage ledger).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::model::{
    UsageObservation, UsageSource, VendorAccount, VendorId, VendorIntegration,
};

use super::runs::{SyncKind, SyncStats, check_unique};
use crate::Store;
use crate::db::{json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::SyncRunId;
use crate::usage::{append_observations, new_batch};

/// Everything a vendor sync read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorData {
    /// The vendor's accounts.
    pub accounts: Vec<VendorAccount>,
    /// Usage of every account.
    pub usage: Vec<UsageObservation>,
}

impl Store {
    /// Creates or updates a vendor integration (name and source).
    /// Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn upsert_vendor_integration(
        &self,
        vendor: &VendorIntegration,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (kind, reference) = match &vendor.source {
            UsageSource::Plugin(id) => ("plugin", Some(id.as_str())),
            UsageSource::Push => ("push", None),
            UsageSource::Csv(profile) => ("csv", Some(profile.as_str())),
        };
        self.db
            .execute(
                sql(
                    "save vendor integration",
                    "vendor_integrations",
                    "INSERT INTO vendor_integrations (id, name, source_kind, source_ref, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                     name = excluded.name, source_kind = excluded.source_kind, \
                     source_ref = excluded.source_ref, updated_at = excluded.updated_at",
                )
                .bind(vendor.id.as_str())
                .bind(vendor.name.as_str())
                .bind(kind)
                .bind(reference)
                .bind(at),
            )
            .await?;
        Ok(())
    }

    /// Every vendor integration, by id.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn vendor_integrations(&self) -> Result<Vec<VendorIntegration>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list vendor integrations",
                "vendor_integrations",
                "SELECT id, name, source_kind, source_ref FROM vendor_integrations ORDER BY id",
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let reference = r.opt_text("source_ref")?.unwrap_or_default();
                let source = match r.text("source_kind")?.as_str() {
                    "plugin" => UsageSource::Plugin(reference),
                    "push" => UsageSource::Push,
                    _ => UsageSource::Csv(reference),
                };
                Ok(VendorIntegration {
                    id: r.text("id")?.into(),
                    name: r.text("name")?,
                    source,
                })
            })
            .collect()
    }

    /// The accounts of `vendor` (or of every vendor), sorted by vendor and
    /// id.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn vendor_accounts(&self, vendor: Option<&VendorId>) -> Result<Vec<VendorAccount>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list vendor accounts",
                    "vendor_accounts",
                    "SELECT vendor_id, id, name, domains FROM vendor_accounts \
                     WHERE ($1 IS NULL OR vendor_id = $1) ORDER BY vendor_id, id",
                )
                .bind(vendor.map(|v| v.as_str())),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(VendorAccount {
                    vendor: r.text("vendor_id")?.into(),
                    id: r.text("id")?.into(),
                    name: r.text("name")?,
                    domains: r.json("domains")?,
                })
            })
            .collect()
    }

    /// Completes a running vendor sync (its source is the vendor
    /// integration id): in ONE transaction, replaces the vendor's accounts,
    /// APPENDS its usage observations to the ledger as a new batch, and
    /// marks the run succeeded. On failure nothing is kept, the run is
    /// marked failed (best effort), and the error is returned.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for rows of another vendor, duplicate account
    /// ids or a run that is not a running vendor sync;
    /// [`StoreError::MissingReference`] when the vendor integration is not
    /// registered; database errors.
    pub async fn complete_vendor_sync(
        &self,
        run: SyncRunId,
        data: &VendorData,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record vendor sync";
        let result = async {
            let mut tx = self.db.begin(OP).await?;
            let (source, _) =
                Self::claim_run_for_completion(&mut tx, OP, run, SyncKind::Vendor).await?;
            let vendor = VendorId::from(source.as_str());
            check_vendor(OP, &vendor, data)?;
            tx.execute(
                sql(
                    OP,
                    "vendor_accounts",
                    "DELETE FROM vendor_accounts WHERE vendor_id = $1",
                )
                .bind(vendor.as_str()),
            )
            .await?;
            let items: Vec<_> = data.accounts.iter().collect();
            tx.insert_all(
                OP,
                "vendor_accounts",
                &["vendor_id", "id", "name", "domains", "sync_run_id"],
                items.len(),
                |i, w| {
                    let a = items[i];

                    w.text(a.vendor.as_str());
                    w.text(a.id.as_str());
                    w.text(a.name.as_str());
                    w.value(json_text(OP, &a.domains)?);
                    w.value(run);
                    Ok(())
                },
            )
            .await?;
            let batch = new_batch(
                &mut tx,
                OP,
                &vendor,
                "sync",
                Some(run),
                None,
                None,
                finished_at,
            )
            .await?;
            append_observations(&mut tx, OP, batch, &data.usage).await?;
            Self::mark_succeeded(&mut tx, OP, run, stats, finished_at).await?;
            tx.commit(OP).await
        }
        .await;
        if let Err(error) = &result {
            self.fail_after_error(run, error, stats, finished_at).await;
        }
        result
    }
}

fn check_vendor(operation: &'static str, vendor: &VendorId, data: &VendorData) -> Result<()> {
    if let Some(a) = data.accounts.iter().find(|a| a.vendor != *vendor) {
        return Err(StoreError::invalid(
            operation,
            format!(
                "account {} belongs to vendor {}, not to {vendor}, whose sync this is",
                a.id, a.vendor
            ),
        ));
    }
    if let Some(u) = data.usage.iter().find(|u| u.vendor != *vendor) {
        return Err(StoreError::invalid(
            operation,
            format!(
                "a usage row of vendor {} is in the sync of {vendor}",
                u.vendor
            ),
        ));
    }
    check_unique(
        operation,
        "account",
        data.accounts.iter().map(|a| a.id.as_str()),
    )
}
