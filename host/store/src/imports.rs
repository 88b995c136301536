//! Push integrations (vendor usage pushed through the API) and CSV import
//! profiles with their import records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::model::{UsageObservation, VendorId};

use crate::db::{Row, id_type, json_text, sql};
use crate::error::{Result, StoreError};
use crate::sync::{append_observations, new_batch};
use crate::{Store, sha256_hex};

id_type!(
    /// A push integration's id.
    PushIntegrationId
);
id_type!(
    /// A CSV import's id.
    ImportId
);

/// A push integration: an API key allowed to push one vendor's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushIntegration {
    /// Its id.
    pub id: PushIntegrationId,
    /// The vendor integration it pushes for.
    pub vendor: VendorId,
    /// A name for people.
    pub name: String,
    /// Requests allowed per minute.
    pub requests_per_minute: u32,
    /// Requests allowed in a burst.
    pub burst: u32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked keys do not authenticate.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A saved CSV import profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvProfile {
    /// Unique name.
    pub name: String,
    /// The vendor integration its rows belong to.
    pub vendor: VendorId,
    /// The column mapping and parsing options (the application's format).
    pub definition: serde_json::Value,
    /// Last changed by.
    pub updated_by: String,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Whether an import was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Its rows were appended to the usage ledger.
    Succeeded,
    /// It had errors; no row was stored.
    Failed,
}

/// A CSV import to record.
#[derive(Debug, Clone, Copy)]
pub struct NewCsvImport<'a> {
    /// The profile used.
    pub profile: &'a str,
    /// The uploaded file's name.
    pub file_name: &'a str,
    /// Rows read from the file.
    pub row_count: u64,
    /// The usage rows parsed (stored only when there are no errors).
    pub rows: &'a [UsageObservation],
    /// Per-row errors: JSON `null` or an empty array when there are none.
    pub errors: &'a serde_json::Value,
    /// Who imported.
    pub by: &'a str,
    /// When.
    pub at: DateTime<Utc>,
}

/// A CSV import's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvImport {
    /// Its id.
    pub id: ImportId,
    /// The profile used.
    pub profile: String,
    /// The vendor.
    pub vendor: VendorId,
    /// The uploaded file's name.
    pub file_name: String,
    /// Rows read.
    pub row_count: u64,
    /// Stored or not.
    pub status: ImportStatus,
    /// Per-row errors (the application's format).
    pub errors: serde_json::Value,
    /// Who imported.
    pub imported_by: String,
    /// When.
    pub imported_at: DateTime<Utc>,
}

fn push_from_row(r: &Row) -> Result<PushIntegration> {
    Ok(PushIntegration {
        id: PushIntegrationId(r.int("id")?),
        vendor: r.text("vendor_id")?.into(),
        name: r.text("name")?,
        requests_per_minute: u32::try_from(r.int("requests_per_minute")?).unwrap_or(u32::MAX),
        burst: u32::try_from(r.int("burst")?).unwrap_or(u32::MAX),
        created_at: r.instant("created_at")?,
        revoked_at: r.opt_instant("revoked_at")?,
    })
}

const PUSH_COLUMNS: &str =
    "id, vendor_id, name, requests_per_minute, burst, created_at, revoked_at";

impl Store {
    /// Creates a push integration for a registered vendor; `api_key` is
    /// stored hashed.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the key is in use;
    /// [`StoreError::MissingReference`] for an unregistered vendor;
    /// [`StoreError::Invalid`] for zero rate limits.
    pub async fn create_push_integration(
        &self,
        vendor: &VendorId,
        name: &str,
        api_key: &str,
        requests_per_minute: u32,
        burst: u32,
        at: DateTime<Utc>,
    ) -> Result<PushIntegrationId> {
        const OP: &str = "create push integration";
        if requests_per_minute == 0 || burst == 0 {
            return Err(StoreError::invalid(
                OP,
                "rate limits must allow at least one request",
            ));
        }
        let row = self
            .db
            .fetch_one(
                sql(
                    OP,
                    "push_integrations",
                    "INSERT INTO push_integrations (vendor_id, name, key_hash, requests_per_minute, burst, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(vendor.as_str())
                .bind(name)
                .bind(sha256_hex(api_key))
                .bind(i64::from(requests_per_minute))
                .bind(i64::from(burst))
                .bind(at),
            )
            .await
            .map_err(|e| e.duplicate_as("push API key", "(redacted)"))?;
        Ok(PushIntegrationId(row.int("id")?))
    }

    /// The unrevoked push integration whose key is `api_key`.
    ///
    /// # Errors
    /// A database error.
    pub async fn push_integration_by_key(&self, api_key: &str) -> Result<Option<PushIntegration>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "authenticate push key",
                    "push_integrations",
                    format!(
                        "SELECT {PUSH_COLUMNS} FROM push_integrations WHERE key_hash = $1 AND revoked_at IS NULL"
                    ),
                )
                .bind(sha256_hex(api_key)),
            )
            .await?;
        row.as_ref().map(push_from_row).transpose()
    }

    /// Every push integration, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn push_integrations(&self) -> Result<Vec<PushIntegration>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list push integrations",
                "push_integrations",
                format!("SELECT {PUSH_COLUMNS} FROM push_integrations ORDER BY id"),
            ))
            .await?;
        rows.iter().map(push_from_row).collect()
    }

    /// Changes a push integration's rate limits.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Invalid`] for zero limits.
    pub async fn set_push_rate_limits(
        &self,
        id: PushIntegrationId,
        requests_per_minute: u32,
        burst: u32,
    ) -> Result<()> {
        const OP: &str = "set push rate limits";
        if requests_per_minute == 0 || burst == 0 {
            return Err(StoreError::invalid(
                OP,
                "rate limits must allow at least one request",
            ));
        }
        let n = self
            .db
            .execute(
                sql(
                    OP,
                    "push_integrations",
                    "UPDATE push_integrations SET requests_per_minute = $2, burst = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(i64::from(requests_per_minute))
                .bind(i64::from(burst)),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::not_found(OP, "push integration", id));
        }
        Ok(())
    }

    /// Revokes a push integration's key. Idempotent.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn revoke_push_integration(
        &self,
        id: PushIntegrationId,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "revoke push integration";
        let n = self
            .db
            .execute(
                sql(
                    OP,
                    "push_integrations",
                    "UPDATE push_integrations SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(at),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::not_found(OP, "push integration", id));
        }
        Ok(())
    }

    /// Creates or replaces a CSV profile. Idempotent.
    ///
    /// # Errors
    /// [`StoreError::MissingReference`] for an unregistered vendor.
    pub async fn put_csv_profile(&self, profile: &CsvProfile) -> Result<()> {
        const OP: &str = "save CSV profile";
        self.db
            .execute(
                sql(
                    OP,
                    "csv_profiles",
                    "INSERT INTO csv_profiles (name, vendor_id, definition, updated_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET vendor_id = excluded.vendor_id, \
                     definition = excluded.definition, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                )
                .bind(profile.name.as_str())
                .bind(profile.vendor.as_str())
                .bind(json_text(OP, &profile.definition)?)
                .bind(profile.updated_by.as_str())
                .bind(profile.updated_at),
            )
            .await?;
        Ok(())
    }

    /// A CSV profile.
    ///
    /// # Errors
    /// A database error.
    pub async fn csv_profile(&self, name: &str) -> Result<Option<CsvProfile>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read CSV profile",
                    "csv_profiles",
                    "SELECT name, vendor_id, definition, updated_by, updated_at FROM csv_profiles WHERE name = $1",
                )
                .bind(name),
            )
            .await?;
        row.map(|r| {
            Ok(CsvProfile {
                name: r.text("name")?,
                vendor: r.text("vendor_id")?.into(),
                definition: r.json("definition")?,
                updated_by: r.text("updated_by")?,
                updated_at: r.instant("updated_at")?,
            })
        })
        .transpose()
    }

    /// Records a CSV import. With no errors (`errors` is JSON `null` or an
    /// empty array) it is `succeeded` and its rows are appended to the
    /// usage ledger as one batch — record and rows in ONE transaction;
    /// with errors it is `failed` and no row is stored. Returns the import
    /// record.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown profile;
    /// [`StoreError::Invalid`] for rows of another vendor than the
    /// profile's; database errors (nothing is written then).
    pub async fn record_csv_import(&self, import: &NewCsvImport<'_>) -> Result<CsvImport> {
        const OP: &str = "record CSV import";
        let NewCsvImport {
            profile,
            file_name,
            row_count,
            rows,
            errors,
            by,
            at,
        } = *import;
        let Some(p) = self.csv_profile(profile).await? else {
            return Err(StoreError::not_found(OP, "CSV profile", profile));
        };
        if let Some(row) = rows.iter().find(|r| r.vendor != p.vendor) {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "a row of vendor {} is in an import of profile {profile} (vendor {})",
                    row.vendor, p.vendor
                ),
            ));
        }
        let failed = match errors {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            _ => true,
        };
        let status = if failed {
            ImportStatus::Failed
        } else {
            ImportStatus::Succeeded
        };
        let mut tx = self.db.begin(OP).await?;
        let row = tx
            .fetch_one(
                sql(
                    OP,
                    "csv_imports",
                    "INSERT INTO csv_imports (profile_name, vendor_id, file_name, row_count, status, errors, \
                     imported_by, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(profile)
                .bind(p.vendor.as_str())
                .bind(file_name)
                .bind(i64::try_from(row_count).unwrap_or(i64::MAX))
                .bind(crate::db::enum_text(&status))
                .bind(json_text(OP, errors)?)
                .bind(by)
                .bind(at),
            )
            .await?;
        let id = ImportId(row.int("id")?);
        if !failed {
            let batch = new_batch(&mut tx, OP, &p.vendor, "csv", None, Some(id), None, at).await?;
            append_observations(&mut tx, OP, batch, rows).await?;
        }
        tx.commit(OP).await?;
        Ok(CsvImport {
            id,
            profile: profile.to_owned(),
            vendor: p.vendor,
            file_name: file_name.to_owned(),
            row_count,
            status,
            errors: errors.clone(),
            imported_by: by.to_owned(),
            imported_at: crate::db::instant(at),
        })
    }

    /// The latest `limit` imports, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn csv_imports(&self, limit: u32) -> Result<Vec<CsvImport>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list CSV imports",
                    "csv_imports",
                    "SELECT id, profile_name, vendor_id, file_name, row_count, status, errors, imported_by, imported_at \
                     FROM csv_imports ORDER BY id DESC LIMIT $1",
                )
                .bind(i64::from(limit)),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CsvImport {
                    id: ImportId(r.int("id")?),
                    profile: r.text("profile_name")?,
                    vendor: r.text("vendor_id")?.into(),
                    file_name: r.text("file_name")?,
                    row_count: u64::try_from(r.int("row_count")?).unwrap_or(0),
                    status: r.enum_value("status", "succeeded or failed")?,
                    errors: r.json("errors")?,
                    imported_by: r.text("imported_by")?,
                    imported_at: r.instant("imported_at")?,
                })
            })
            .collect()
    }
}
