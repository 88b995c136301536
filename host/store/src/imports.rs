//! Push integrations (vendor usage pushed through the API) and CSV import
//! profiles with their import records.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::model::{
    AccountId, AccountMapping, AccountMappingStatus, AccountRef, Company, MappingMethod,
    UsageObservation, VendorAccount, VendorId,
};

use crate::db::{Row, Tx, id_type, json_text, sql};
use crate::error::{Result, StoreError};
use crate::sync::{
    Interner, OBSERVATION_COLUMNS, PushOutcome, append_observations, new_batch,
    observation_from_row,
};
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

/// A CSV import record to insert (both the in-memory and the streamed
/// paths write it the same way).
struct ImportRecord<'a> {
    profile: &'a str,
    vendor: &'a VendorId,
    file_name: &'a str,
    row_count: u64,
    status: ImportStatus,
    errors: &'a serde_json::Value,
    by: &'a str,
    at: DateTime<Utc>,
}

async fn insert_import_record(
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
            .bind(crate::db::enum_text(&record.status))
            .bind(json_text(operation, record.errors)?)
            .bind(record.by)
            .bind(record.at),
        )
        .await?;
    Ok(ImportId(row.int("id")?))
}

/// A successful CSV import whose rows are written in chunks (see
/// [`Store::begin_csv_import`]).
#[derive(Debug, Clone, Copy)]
pub struct NewStreamedImport<'a> {
    /// The profile used.
    pub profile: &'a str,
    /// The uploaded file's name.
    pub file_name: &'a str,
    /// Rows read from the file.
    pub row_count: u64,
    /// Who imported.
    pub by: &'a str,
    /// When.
    pub at: DateTime<Utc>,
}

/// An open, streamed CSV import: one write transaction holding the import
/// record and its usage batch. Rows and accounts are added in chunks, so
/// an import of any size never has to be held in memory; nothing is
/// visible to anyone else until [`CsvImportWriter::finish`]. Dropped
/// without finishing (an error, a cancelled request), it rolls back and
/// nothing of the import is kept.
///
/// On SQLite the transaction holds the database's write lock until it
/// ends: feed it from data that is already validated and local (a spooled
/// file), never from a slow client.
pub struct CsvImportWriter {
    tx: Tx,
    batch: i64,
    record: CsvImport,
    rows: u64,
}

impl CsvImportWriter {
    /// The vendor integration the rows must belong to.
    pub fn vendor(&self) -> &VendorId {
        &self.record.vendor
    }

    /// Usage rows appended so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Appends `rows` to the import's usage batch.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a row of another vendor than the
    /// profile's; database errors. Either way the writer should be dropped:
    /// nothing of the import is kept.
    pub async fn append(&mut self, rows: &[UsageObservation]) -> Result<()> {
        const OP: &str = "record CSV import";
        if let Some(row) = rows.iter().find(|r| r.vendor != self.record.vendor) {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "a row of vendor {} is in an import of profile {} (vendor {})",
                    row.vendor, self.record.profile, self.record.vendor
                ),
            ));
        }
        append_observations(&mut self.tx, OP, self.batch, rows).await?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Adds the vendor's accounts named in the file, or renames them; the
    /// domains of an account already known are kept. Account names let
    /// matching map a CSV vendor's accounts to PSA companies.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an account of another vendor; database
    /// errors.
    pub async fn upsert_accounts(&mut self, accounts: &[VendorAccount]) -> Result<()> {
        const OP: &str = "record CSV import accounts";
        for account in accounts {
            if account.vendor != self.record.vendor {
                return Err(StoreError::invalid(
                    OP,
                    format!(
                        "account {} of vendor {} is in an import of vendor {}",
                        account.id, account.vendor, self.record.vendor
                    ),
                ));
            }
            self.tx
                .execute(
                    sql(
                        OP,
                        "vendor_accounts",
                        "INSERT INTO vendor_accounts (vendor_id, id, name, domains, sync_run_id) \
                         VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (vendor_id, id) DO UPDATE SET name = excluded.name",
                    )
                    .bind(account.vendor.as_str())
                    .bind(account.id.as_str())
                    .bind(account.name.as_str())
                    .bind(json_text(OP, &account.domains)?),
                )
                .await?;
        }
        Ok(())
    }

    /// Commits the import: the record (`succeeded`), every appended row
    /// and account become visible together.
    ///
    /// # Errors
    /// A database error; nothing of the import is kept then.
    pub async fn finish(self) -> Result<CsvImport> {
        self.tx.commit("record CSV import").await?;
        Ok(self.record)
    }
}

impl Store {
    /// Starts a streamed, successful CSV import of `import.profile`: in one
    /// write transaction, records the import (`succeeded`, no errors) and
    /// opens its usage batch. Rows are added with
    /// [`CsvImportWriter::append`]; [`CsvImportWriter::finish`] commits
    /// everything at once. Failed imports are recorded with
    /// [`Store::record_csv_import`].
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown profile; database errors.
    pub async fn begin_csv_import(
        &self,
        import: &NewStreamedImport<'_>,
    ) -> Result<CsvImportWriter> {
        const OP: &str = "record CSV import";
        let Some(profile) = self.csv_profile(import.profile).await? else {
            return Err(StoreError::not_found(OP, "CSV profile", import.profile));
        };
        let errors = serde_json::Value::Array(Vec::new());
        let mut tx = self.db.begin(OP).await?;
        let id = insert_import_record(
            &mut tx,
            OP,
            &ImportRecord {
                profile: import.profile,
                vendor: &profile.vendor,
                file_name: import.file_name,
                row_count: import.row_count,
                status: ImportStatus::Succeeded,
                errors: &errors,
                by: import.by,
                at: import.at,
            },
        )
        .await?;
        let batch = new_batch(
            &mut tx,
            OP,
            &profile.vendor,
            "csv",
            None,
            Some(id),
            None,
            import.at,
        )
        .await?;
        Ok(CsvImportWriter {
            tx,
            batch,
            rows: 0,
            record: CsvImport {
                id,
                profile: import.profile.to_owned(),
                vendor: profile.vendor,
                file_name: import.file_name.to_owned(),
                row_count: import.row_count,
                status: ImportStatus::Succeeded,
                errors,
                imported_by: import.by.to_owned(),
                imported_at: crate::db::instant(import.at),
            },
        })
    }

    /// Sets the pushed unit counts of several (account, SKU, UTC day)s of
    /// one push integration's vendor, ALL OR NOTHING: one transaction, and
    /// the rows that changed are appended to the usage ledger as one batch
    /// of the integration. Each row is an idempotent set with the
    /// semantics of [`Store::push_usage`]; the outcome of each row is
    /// returned in order.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown push integration;
    /// [`StoreError::Invalid`] when it is revoked, when a row belongs to
    /// another vendor than the integration's, or when two rows set the
    /// same account, SKU and day; database errors. Nothing is written then.
    pub async fn push_usage_all(
        &self,
        push_integration: PushIntegrationId,
        usage: &[UsageObservation],
        at: DateTime<Utc>,
    ) -> Result<Vec<PushOutcome>> {
        const OP: &str = "record pushed usage";
        let mut seen = HashSet::with_capacity(usage.len());
        for u in usage {
            let day = u.observed_at.date_naive();
            if !seen.insert((u.account.as_str(), u.sku_id.as_str(), day)) {
                return Err(StoreError::invalid(
                    OP,
                    format!(
                        "account {} and SKU {} on {day} are set twice in one push; send each once",
                        u.account, u.sku_id
                    ),
                ));
            }
        }
        let mut tx = self.db.begin(OP).await?;
        let integration = tx
            .fetch_optional(
                sql(
                    OP,
                    "push_integrations",
                    "SELECT vendor_id, revoked_at FROM push_integrations WHERE id = $1",
                )
                .bind(push_integration),
            )
            .await?
            .ok_or_else(|| StoreError::not_found(OP, "push integration", push_integration))?;
        if integration.opt_instant("revoked_at")?.is_some() {
            return Err(StoreError::invalid(
                OP,
                format!("push integration {push_integration} is revoked; its key cannot push"),
            ));
        }
        let vendor = VendorId::from(integration.text("vendor_id")?);
        if let Some(u) = usage.iter().find(|u| u.vendor != vendor) {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "push integration {push_integration} pushes for vendor {vendor}, not for vendor {}",
                    u.vendor
                ),
            ));
        }
        let mut outcomes = Vec::with_capacity(usage.len());
        let mut changed = Vec::new();
        for u in usage {
            let outcome = set_pushed(&mut tx, OP, Some(push_integration), u, at).await?;
            if outcome == PushOutcome::Set {
                changed.push(u.clone());
            }
            outcomes.push(outcome);
        }
        if !changed.is_empty() {
            let batch = new_batch(
                &mut tx,
                OP,
                &vendor,
                "push",
                None,
                None,
                Some(push_integration),
                at,
            )
            .await?;
            append_observations(&mut tx, OP, batch, &changed).await?;
        }
        tx.commit(OP).await?;
        Ok(outcomes)
    }

    /// How `account` of `vendor` is mapped now: the manual mapping or
    /// exclusion if a person set one, else the last automatic match's
    /// decision, else `None` (never decided).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn account_mapping(
        &self,
        vendor: &VendorId,
        account: &AccountId,
    ) -> Result<Option<AccountMapping>> {
        const OP: &str = "read account mapping";
        let manual = self
            .db
            .fetch_optional(
                sql(
                    OP,
                    "account_mapping_overrides",
                    "SELECT company_id, reason, set_by FROM account_mapping_overrides \
                     WHERE vendor_id = $1 AND account_id = $2",
                )
                .bind(vendor.as_str())
                .bind(account.as_str()),
            )
            .await?;
        if let Some(r) = manual {
            return Ok(Some(AccountMapping {
                vendor: vendor.clone(),
                account: account.clone(),
                status: match r.opt_text("company_id")? {
                    Some(c) => AccountMappingStatus::Mapped(c.into()),
                    None => AccountMappingStatus::Excluded,
                },
                method: MappingMethod::Manual {
                    by: r.text("set_by")?,
                },
                reason: r.text("reason")?,
            }));
        }
        let matched = self
            .db
            .fetch_optional(
                sql(
                    OP,
                    "account_mappings",
                    "SELECT status, company_id, method, reason FROM account_mappings \
                     WHERE vendor_id = $1 AND account_id = $2",
                )
                .bind(vendor.as_str())
                .bind(account.as_str()),
            )
            .await?;
        matched
            .map(|r| {
                let status = match (r.text("status")?.as_str(), r.opt_text("company_id")?) {
                    ("mapped", Some(c)) => AccountMappingStatus::Mapped(c.into()),
                    ("excluded", _) => AccountMappingStatus::Excluded,
                    _ => AccountMappingStatus::Unmapped,
                };
                Ok(AccountMapping {
                    vendor: vendor.clone(),
                    account: account.clone(),
                    status,
                    method: r.json("method")?,
                    reason: r.text("reason")?,
                })
            })
            .transpose()
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

impl Store {
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
        rows.iter()
            .map(|r| {
                Ok(CsvProfile {
                    name: r.text("name")?,
                    vendor: r.text("vendor_id")?.into(),
                    definition: r.json("definition")?,
                    updated_by: r.text("updated_by")?,
                    updated_at: r.instant("updated_at")?,
                })
            })
            .collect()
    }

    /// The PSA's current companies, by id, without its contracts and lines
    /// (what the push API's listings need to name and map accounts; a
    /// fraction of [`Store::psa_state`]'s cost).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn psa_companies(&self) -> Result<Vec<Company>> {
        let rows = self
            .db
            .fetch_all(sql(
                "read PSA companies",
                "psa_companies",
                "SELECT id, name, identifier, domains, status, account_links FROM psa_companies ORDER BY id",
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Company {
                    id: r.text("id")?.into(),
                    name: r.text("name")?,
                    identifier: r.opt_text("identifier")?,
                    domains: r.json("domains")?,
                    status: r.enum_value("status", "active or inactive")?,
                    account_links: r.json::<Vec<AccountRef>>("account_links")?,
                })
            })
            .collect()
    }
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
    use std::sync::Arc;

    use chrono::TimeZone;
    use rust_decimal_macros::dec;
    use trueup_core::model::{Attributes, UsageSource, VendorIntegration};

    use super::*;
    use crate::mappings::MappingOverride;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn row(
        vendor: &str,
        account: &str,
        sku: &str,
        quantity: rust_decimal::Decimal,
        day: u32,
    ) -> UsageObservation {
        UsageObservation {
            vendor: vendor.into(),
            account: account.into(),
            sku_id: sku.into(),
            sku_name: Arc::from(format!("{sku} name")),
            quantity,
            unit: Arc::from("seat"),
            unit_cost: None,
            billing_term: None,
            commitment_end: None,
            attributes: Attributes::default(),
            observed_at: at(day, 0),
        }
    }

    async fn vendor(store: &Store, id: &str, source: UsageSource) {
        store
            .upsert_vendor_integration(
                &VendorIntegration {
                    id: id.into(),
                    name: id.to_owned(),
                    source,
                },
                at(1, 0),
            )
            .await
            .unwrap();
    }

    async fn stored_usage(store: &Store) -> Vec<UsageObservation> {
        store
            .usage_for_period(
                NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            )
            .await
            .unwrap()
    }

    async fn pushes_are_all_or_nothing_sets(store: &Store) {
        vendor(store, "acme", UsageSource::Push).await;
        vendor(store, "other", UsageSource::Push).await;
        let key = store
            .create_push_integration(&"acme".into(), "acme key", "k-acme", 60, 10, at(1, 0))
            .await
            .unwrap();
        let rows = [
            row("acme", "a1", "backup", dec!(12), 20),
            row("acme", "a2", "backup", dec!(3.5), 20),
        ];
        let outcomes = store.push_usage_all(key, &rows, at(20, 9)).await.unwrap();
        assert_eq!(outcomes, [PushOutcome::Set, PushOutcome::Set]);
        // The same set again changes nothing; one changed row of two is set.
        let again = store.push_usage_all(key, &rows, at(20, 10)).await.unwrap();
        assert_eq!(again, [PushOutcome::Unchanged, PushOutcome::Unchanged]);
        let changed = [
            row("acme", "a1", "backup", dec!(12.0), 20),
            row("acme", "a2", "backup", dec!(4), 20),
        ];
        let outcomes = store
            .push_usage_all(key, &changed, at(20, 11))
            .await
            .unwrap();
        assert_eq!(outcomes, [PushOutcome::Unchanged, PushOutcome::Set]);
        let usage = stored_usage(store).await;
        let mut counts: Vec<_> = usage
            .iter()
            .map(|u| (u.account.to_string(), u.quantity))
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [("a1".to_owned(), dec!(12)), ("a2".to_owned(), dec!(4))]
        );

        // A bad row refuses the whole request: nothing of it is written.
        let mixed = [
            row("acme", "a1", "backup", dec!(99), 20),
            row("other", "a9", "backup", dec!(1), 20),
        ];
        let error = store
            .push_usage_all(key, &mixed, at(20, 12))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("not for vendor other"),
            "{error}"
        );
        let twice = [
            row("acme", "a1", "backup", dec!(99), 20),
            row("acme", "a1", "backup", dec!(98), 20),
        ];
        let error = store
            .push_usage_all(key, &twice, at(20, 12))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("set twice"), "{error}");
        assert_eq!(stored_usage(store).await, usage);

        // A revoked key pushes nothing, even if it authenticated earlier.
        store.revoke_push_integration(key, at(21, 0)).await.unwrap();
        let error = store
            .push_usage_all(key, &[row("acme", "a1", "backup", dec!(1), 21)], at(21, 1))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("revoked"), "{error}");
        assert_eq!(stored_usage(store).await, usage);
    }

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

    async fn a_manual_mapping_wins_over_the_last_match(store: &Store) {
        let (vendor_id, account): (VendorId, AccountId) = ("acme".into(), "a1".into());
        assert_eq!(
            store.account_mapping(&vendor_id, &account).await.unwrap(),
            None
        );
        let matched = AccountMapping {
            vendor: vendor_id.clone(),
            account: account.clone(),
            status: AccountMappingStatus::Mapped("c1".into()),
            method: MappingMethod::ExactName,
            reason: "same name".into(),
        };
        store
            .replace_match_results(
                &[trueup_core::matching::MatchOutcome {
                    mapping: matched.clone(),
                    suggestions: Vec::new(),
                }],
                at(2, 0),
            )
            .await
            .unwrap();
        assert_eq!(
            store.account_mapping(&vendor_id, &account).await.unwrap(),
            Some(matched)
        );
        store
            .set_mapping_override(&MappingOverride {
                vendor: vendor_id.clone(),
                account: account.clone(),
                company: None,
                reason: "internal tenant".into(),
                set_by: "admin".into(),
                set_at: at(3, 0),
            })
            .await
            .unwrap();
        let manual = store
            .account_mapping(&vendor_id, &account)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(manual.status, AccountMappingStatus::Excluded);
        assert_eq!(manual.method, MappingMethod::Manual { by: "admin".into() });
    }

    async fn streamed_imports_commit_at_once_or_not_at_all(store: &Store) {
        vendor(store, "acme", UsageSource::Csv("acme-csv".into())).await;
        store
            .put_csv_profile(&CsvProfile {
                name: "acme-csv".into(),
                vendor: "acme".into(),
                definition: serde_json::json!({}),
                updated_by: "admin".into(),
                updated_at: at(1, 0),
            })
            .await
            .unwrap();
        let import = NewStreamedImport {
            profile: "acme-csv",
            file_name: "november.csv",
            row_count: 3,
            by: "admin",
            at: at(25, 9),
        };
        // Dropped before finishing: nothing is kept, not even the record.
        let mut writer = store.begin_csv_import(&import).await.unwrap();
        writer
            .append(&[row("acme", "a1", "backup", dec!(1), 25)])
            .await
            .unwrap();
        drop(writer);
        assert!(stored_usage(store).await.is_empty());
        assert!(store.csv_imports(10).await.unwrap().is_empty());

        let mut writer = store.begin_csv_import(&import).await.unwrap();
        writer
            .append(&[row("acme", "a1", "backup", dec!(1), 25)])
            .await
            .unwrap();
        writer
            .append(&[
                row("acme", "a2", "backup", dec!(2.50), 25),
                row("acme", "a3", "backup", dec!(3), 25),
            ])
            .await
            .unwrap();
        let error = writer
            .append(&[row("other", "a1", "backup", dec!(1), 25)])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("vendor other"), "{error}");
        writer
            .upsert_accounts(&[VendorAccount {
                vendor: "acme".into(),
                id: "a1".into(),
                name: "Contoso".into(),
                domains: vec![],
            }])
            .await
            .unwrap();
        assert_eq!(writer.rows_written(), 3);
        // Not visible before the commit.
        assert!(stored_usage(store).await.is_empty());
        let record = writer.finish().await.unwrap();
        assert_eq!(record.status, ImportStatus::Succeeded);
        assert_eq!(record.row_count, 3);
        let usage = stored_usage(store).await;
        assert_eq!(usage.len(), 3);
        assert!(
            usage
                .iter()
                .any(|u| u.quantity == dec!(2.50) && u.quantity.scale() == 2)
        );
        assert_eq!(store.csv_imports(10).await.unwrap(), [record]);
        let profiles = store.csv_profiles().await.unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].name, "acme-csv");
        let accounts = store.vendor_accounts(Some(&"acme".into())).await.unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].name, "Contoso");
    }

    async fn psa_companies_are_those_of_the_psa_state(store: &Store) {
        use crate::sync::{PsaData, SyncKind, SyncStats};
        use trueup_core::model::CompanyStatus;
        assert!(store.psa_companies().await.unwrap().is_empty());
        let company = Company {
            id: "c1".into(),
            name: "Contoso".into(),
            identifier: Some("CONTOSO".into()),
            domains: vec!["contoso.com".into()],
            status: CompanyStatus::Active,
            account_links: vec![AccountRef {
                vendor: "acme".into(),
                account: "a1".into(),
            }],
        };
        let run = store
            .begin_sync(SyncKind::Psa, "test.psa", at(2, 0).date_naive(), at(2, 0))
            .await
            .unwrap();
        let data = PsaData {
            companies: vec![company.clone()],
            ..PsaData::default()
        };
        store
            .complete_psa_sync(run, &data, &SyncStats::default(), at(2, 1))
            .await
            .unwrap();
        assert_eq!(
            store.psa_companies().await.unwrap(),
            std::slice::from_ref(&company)
        );
        assert_eq!(store.psa_state().await.unwrap().data.companies, [company]);
    }

    macro_rules! both {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = TestStore::sqlite().await.expect("a SQLite test store");
                        super::$name(&store).await;
                    }
                )*
                use crate::testing::TestStore;
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = TestStore::postgres().await.expect("a PostgreSQL test store");
                        super::$name(&store).await;
                    }
                )*
                use crate::testing::TestStore;
            }
        };
    }

    both!(
        pushes_are_all_or_nothing_sets,
        latest_pushed_usage_is_the_last_day_of_each_account_and_sku,
        a_manual_mapping_wins_over_the_last_match,
        streamed_imports_commit_at_once_or_not_at_all,
        psa_companies_are_those_of_the_psa_state,
    );
}
