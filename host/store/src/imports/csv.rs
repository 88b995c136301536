//! CSV import profiles (how a vendor's file is read) and the record of
//! each import, with its rows appended to the usage ledger when it has no
//! errors.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::model::{UsageObservation, VendorId};

use crate::Store;
use crate::db::{Row, Tx, enum_text, instant, json_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::ImportId;
use crate::usage::{append_observations, new_batch};

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

fn profile_from_row(r: &Row) -> Result<CsvProfile> {
    Ok(CsvProfile {
        name: r.text("name")?,
        vendor: r.text("vendor_id")?.into(),
        definition: r.json("definition")?,
        updated_by: r.text("updated_by")?,
        updated_at: r.instant("updated_at")?,
    })
}

impl Store {
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
        row.as_ref().map(profile_from_row).transpose()
    }

    /// Every saved CSV profile, by name.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn csv_profiles(&self) -> Result<Vec<CsvProfile>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list CSV profiles",
                "csv_profiles",
                "SELECT name, vendor_id, definition, updated_by, updated_at FROM csv_profiles ORDER BY name",
            ))
            .await?;
        rows.iter().map(profile_from_row).collect()
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
        let id = insert_import_record(
            &mut tx,
            OP,
            &ImportRecord {
                profile,
                vendor: &p.vendor,
                file_name,
                row_count,
                status,
                errors,
                by,
                at,
            },
        )
        .await?;
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
            imported_at: instant(at),
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

/// A CSV import record to insert (both the in-memory and the streamed
/// paths write it the same way).
pub(super) struct ImportRecord<'a> {
    pub(super) profile: &'a str,
    pub(super) vendor: &'a VendorId,
    pub(super) file_name: &'a str,
    pub(super) row_count: u64,
    pub(super) status: ImportStatus,
    pub(super) errors: &'a serde_json::Value,
    pub(super) by: &'a str,
    pub(super) at: DateTime<Utc>,
}

/// Inserts an import's record inside `tx`; its id.
pub(super) async fn insert_import_record(
    tx: &mut Tx,
    operation: &'static str,
    record: &ImportRecord<'_>,
) -> Result<ImportId> {
    let row = tx
        .fetch_one(
            sql(
                operation,
                "csv_imports",
                "INSERT INTO csv_imports (profile_name, vendor_id, file_name, row_count, status, errors, \
                 imported_by, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(record.profile)
            .bind(record.vendor.as_str())
            .bind(record.file_name)
            .bind(i64::try_from(record.row_count).unwrap_or(i64::MAX))
            .bind(enum_text(&record.status))
            .bind(json_text(operation, record.errors)?)
            .bind(record.by)
            .bind(record.at),
        )
        .await?;
    Ok(ImportId(row.int("id")?))
}
