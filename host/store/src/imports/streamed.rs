//! Streamed CSV imports: one write transaction holding the import record
//! and its usage batch, fed in chunks, committed at once.

use chrono::{DateTime, Utc};
use trueup_core::model::{UsageObservation, VendorAccount, VendorId};

use super::csv::{CsvImport, ImportRecord, ImportStatus, insert_import_record};
use crate::Store;
use crate::db::{Tx, instant, json_text, sql};
use crate::error::{Result, StoreError};
use crate::usage::{append_observations, new_batch};

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
                imported_at: instant(import.at),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;
    use trueup_core::model::UsageSource;

    use super::*;
    use crate::imports::CsvProfile;
    use crate::testing::fixtures::{at, both, row, stored_usage, vendor};

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

    both!(streamed_imports_commit_at_once_or_not_at_all,);
}
