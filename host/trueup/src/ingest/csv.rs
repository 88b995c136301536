//! CSV import with saved profiles (docs/csv-import.md).
//!
//! An import is ALL OR NOTHING per file and STREAMS:
//! 1. Pass 1 reads the input as it arrives — the `csv` crate on a blocking
//!    thread, fed [`READ_CHUNK_BYTES`] at a time through a bounded channel
//!    — and checks every row. Rows are kept compactly: summed per
//!    (account, SKU, date) when the profile says so, otherwise spooled to
//!    an anonymous temporary file. Every bad row is reported with its line
//!    and reason (up to [`MAX_REPORTED_ERRORS`], with counts of all).
//! 2. A file with any bad row is recorded as a failed import and changes
//!    no usage. A good file is written from the spool (or the sums) in
//!    chunks into ONE store transaction: one import record, one usage
//!    batch, the accounts it names; it becomes visible at once at commit.
//!
//! Reading never waits on the database and the database transaction never
//! waits on the client: a slow upload cannot hold SQLite's write lock.

mod parse;
pub mod profile;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use trueup_core::model::{Attributes, UsageObservation, UsageSource, VendorAccount, VendorId};
use trueup_store::StoreError;
use trueup_store::imports::{CsvProfile, ImportStatus, NewCsvImport, NewStreamedImport};

pub use parse::{
    MAX_RECORD_BYTES, MAX_REPORTED_ERRORS, READ_AHEAD_CHUNKS, READ_CHUNK_BYTES, RowError,
    RowErrorReason,
};
use parse::{Pass1, Pass1Error, Rows, SpoolReader};
pub use profile::{Column, ColumnMapping, ProfileDefinition};

use crate::app::debounce::mark_usage_changed;
use crate::app::{App, AppError};
use crate::ingest::{check_name, day_start, ensure_vendor};

/// Usage rows handed to the store at a time.
pub const WRITE_CHUNK_ROWS: usize = 5_000;

/// What an import did, or why it stored nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The import's record (`csv_imports`), kept for failed imports too.
    pub import_id: i64,
    /// The profile used.
    pub profile: String,
    /// Its vendor integration.
    pub vendor: String,
    /// The file's name as given.
    pub file_name: String,
    /// Succeeded (usage stored) or failed (nothing stored).
    pub status: ImportStatus,
    /// Data rows read (the header excluded).
    pub rows_read: u64,
    /// Rows with at least one problem.
    pub bad_rows: u64,
    /// Usage rows stored (after summing); 0 when the import failed.
    pub usage_rows: u64,
    /// Distinct accounts in the good rows.
    pub accounts: usize,
    /// Distinct SKUs in the good rows.
    pub skus: usize,
    /// Earliest date of the good rows.
    pub first_day: Option<NaiveDate>,
    /// Latest date of the good rows.
    pub last_day: Option<NaiveDate>,
    /// The problems, in file order, at most [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<RowError>,
    /// Every problem, counted.
    pub error_count: u64,
    /// Problems per reason.
    pub error_counts: BTreeMap<RowErrorReason, u64>,
}

impl ImportReport {
    /// Problems found but not listed (over [`MAX_REPORTED_ERRORS`]).
    pub fn errors_omitted(&self) -> u64 {
        self.error_count.saturating_sub(self.errors.len() as u64)
    }
}

/// Why an import stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No such profile.
    #[error(
        "no CSV import profile is named {profile:?}; create it with `trueup import profile set {profile} --file PROFILE.toml` (docs/csv-import.md)"
    )]
    UnknownProfile {
        /// The name asked for.
        profile: String,
    },
    /// The saved profile is not valid.
    #[error(
        "CSV import profile {profile:?} is not valid: {problem}; save it again with `trueup import profile set`"
    )]
    BadProfile {
        /// The profile.
        profile: String,
        /// What is wrong.
        problem: String,
    },
    /// The file has bad rows (or is not a readable CSV file): nothing was
    /// imported; the report lists every problem with its line.
    #[error("{}", rejected_message(.0))]
    Rejected(Box<ImportReport>),
    /// The input could not be read to its end (nothing was imported).
    #[error("reading {file}: {source}; nothing was imported")]
    Read {
        /// The file's name.
        file: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The import's temporary file failed (nothing was imported).
    #[error(
        "the import's temporary file failed: {0}; check the space in the temporary directory; nothing was imported"
    )]
    Spool(#[source] io::Error),
    /// The store failed (nothing was imported).
    #[error("{0}; nothing was imported")]
    Store(#[from] StoreError),
    /// A worker thread of the import failed.
    #[error("the import failed: {0}; nothing was imported")]
    Task(String),
}

fn rejected_message(report: &ImportReport) -> String {
    let first = report
        .errors
        .first()
        .map(|e| format!(" First: {}", e.message))
        .unwrap_or_default();
    format!(
        "{}: {} problem(s) in {} bad row(s) of {} read; nothing was imported (the file must be fixed as a whole).{first}",
        report.file_name, report.error_count, report.bad_rows, report.rows_read
    )
}

/// Imports `input` (a CSV file, read as it arrives) with profile
/// `profile`, all or nothing, as `actor`. On success the usage is stored
/// as one batch and a reconcile is asked for.
///
/// # Errors
/// [`ImportError::Rejected`] with the full report when any row is bad;
/// the other variants when nothing could be decided about the file. In
/// every case no usage was stored.
pub async fn import_csv(
    app: &App,
    profile: &str,
    input: impl AsyncRead + Unpin + Send,
    file_name: &str,
    actor: &str,
) -> Result<ImportReport, ImportError> {
    let stored =
        app.store()
            .csv_profile(profile)
            .await?
            .ok_or_else(|| ImportError::UnknownProfile {
                profile: profile.to_owned(),
            })?;
    let bad_profile = |problem: String| ImportError::BadProfile {
        profile: profile.to_owned(),
        problem,
    };
    let definition = ProfileDefinition::from_value(&stored.definition).map_err(bad_profile)?;
    let options = definition.options().map_err(bad_profile)?;
    let default_day = app.today();
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    let parser =
        tokio::task::spawn_blocking(move || parse::pass1(rx, &definition, &options, default_day));
    feed(input, tx).await;
    let pass = parser
        .await
        .map_err(|e| ImportError::Task(format!("the CSV reader stopped: {e}")))?
        .map_err(|e| match e {
            Pass1Error::Read(source) => ImportError::Read {
                file: file_name.to_owned(),
                source,
            },
            Pass1Error::Spool(error) => ImportError::Spool(error),
        })?;
    let report = |import_id: i64, status, usage_rows, pass: &Pass1| ImportReport {
        import_id,
        profile: profile.to_owned(),
        vendor: stored.vendor.to_string(),
        file_name: file_name.to_owned(),
        status,
        rows_read: pass.rows_read,
        bad_rows: pass.bad_rows,
        usage_rows,
        accounts: pass.accounts,
        skus: pass.skus,
        first_day: pass.first_day,
        last_day: pass.last_day,
        errors: pass.errors.clone(),
        error_count: pass.errors_total(),
        error_counts: pass.error_counts.clone(),
    };
    if !pass.error_counts.is_empty() {
        let errors = serde_json::json!({
            "bad_rows": pass.bad_rows,
            "error_count": pass.errors_total(),
            "error_counts": pass.error_counts,
            "errors": pass.errors,
        });
        let record = app
            .store()
            .record_csv_import(&NewCsvImport {
                profile,
                file_name,
                row_count: pass.rows_read,
                rows: &[],
                errors: &errors,
                by: actor,
                at: app.now(),
            })
            .await?;
        let report = report(record.id.0, ImportStatus::Failed, 0, &pass);
        app.audit(
            actor,
            "csv.import.failed",
            &format!("csv-import:{}", record.id),
            serde_json::json!({
                "profile": profile,
                "file": file_name,
                "rows_read": report.rows_read,
                "bad_rows": report.bad_rows,
            }),
        )
        .await;
        return Err(ImportError::Rejected(Box::new(report)));
    }
    let (record, usage_rows) = store_rows(
        app,
        profile,
        file_name,
        actor,
        &stored.vendor,
        pass.rows_read,
        &pass,
    )
    .await?;
    let report = report(record, ImportStatus::Succeeded, usage_rows, &pass);
    app.audit(
        actor,
        "csv.import",
        &format!("csv-import:{record}"),
        serde_json::json!({
            "profile": profile,
            "file": file_name,
            "rows_read": report.rows_read,
            "usage_rows": usage_rows,
        }),
    )
    .await;
    mark_usage_changed(app);
    Ok(report)
}

/// Sends the input to the parser, [`READ_CHUNK_BYTES`] at a time; stops
/// when the parser stops listening.
async fn feed(mut input: impl AsyncRead + Unpin + Send, tx: mpsc::Sender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        match input.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // The parser reports it; if it already stopped, so be it.
                let _ = tx.send(Err(error)).await;
                return;
            }
        }
    }
}

/// Pass 2: writes the checked rows in one transaction; the import id and
/// the rows written.
async fn store_rows(
    app: &App,
    profile: &str,
    file_name: &str,
    actor: &str,
    vendor: &VendorId,
    rows_read: u64,
    pass: &Pass1,
) -> Result<(i64, u64), ImportError> {
    let mut writer = app
        .store()
        .begin_csv_import(&NewStreamedImport {
            profile,
            file_name,
            row_count: rows_read,
            by: actor,
            at: app.now(),
        })
        .await?;
    let strings = &pass.strings;
    let accounts: Vec<VendorAccount> = pass
        .account_names
        .iter()
        .map(|&(account, name)| VendorAccount {
            vendor: vendor.clone(),
            id: Arc::clone(&strings[account as usize]).into(),
            name: strings[name as usize].to_string(),
            domains: Vec::new(),
        })
        .collect();
    writer.upsert_accounts(&accounts).await?;
    let (expected, source) = match &pass.rows {
        Rows::Summed(sums) => (sums.len() as u64, Source::Summed(sums.clone())),
        Rows::Spooled { file, count } => (
            *count,
            Source::Spooled(file.try_clone().map_err(ImportError::Spool)?, *count),
        ),
    };
    let (tx, mut rx) = mpsc::channel(2);
    let vendor = vendor.clone();
    let strings = Arc::new(strings.clone());
    let producer = tokio::task::spawn_blocking(move || produce(source, &strings, &vendor, &tx));
    while let Some(chunk) = rx.recv().await {
        writer.append(&chunk.map_err(ImportError::Spool)?).await?;
    }
    producer
        .await
        .map_err(|e| ImportError::Task(format!("reading the checked rows back failed: {e}")))?;
    if writer.rows_written() != expected {
        // Dropping the writer rolls everything back.
        return Err(ImportError::Task(format!(
            "{} of {expected} checked rows were read back",
            writer.rows_written()
        )));
    }
    let record = writer.finish().await?;
    Ok((record.id.0, expected))
}

enum Source {
    Summed(Vec<(parse::Key, parse::Sum)>),
    Spooled(std::fs::File, u64),
}

/// Builds usage rows from the checked rows and sends them in chunks of
/// [`WRITE_CHUNK_ROWS`]; a spool read error is sent as the last item.
fn produce(
    source: Source,
    strings: &[Arc<str>],
    vendor: &VendorId,
    tx: &mpsc::Sender<io::Result<Vec<UsageObservation>>>,
) {
    let row = |(account, sku, day): parse::Key, sku_name: u32, unit: u32, quantity, unit_cost| {
        let day = NaiveDate::from_num_days_from_ce_opt(day).unwrap_or_default();
        UsageObservation {
            vendor: vendor.clone(),
            account: Arc::clone(&strings[account as usize]).into(),
            sku_id: Arc::clone(&strings[sku as usize]).into(),
            sku_name: Arc::clone(&strings[sku_name as usize]),
            quantity,
            unit: Arc::clone(&strings[unit as usize]),
            unit_cost,
            billing_term: None,
            commitment_end: None,
            attributes: Attributes::default(),
            observed_at: day_start(day),
        }
    };
    let mut chunk = Vec::with_capacity(WRITE_CHUNK_ROWS);
    let push = |chunk: &mut Vec<UsageObservation>, usage: UsageObservation| -> bool {
        chunk.push(usage);
        if chunk.len() < WRITE_CHUNK_ROWS {
            return true;
        }
        let full = std::mem::replace(chunk, Vec::with_capacity(WRITE_CHUNK_ROWS));
        tx.blocking_send(Ok(full)).is_ok()
    };
    match source {
        Source::Summed(sums) => {
            for (key, sum) in sums {
                if !push(
                    &mut chunk,
                    row(key, sum.sku_name, sum.unit, sum.quantity, sum.unit_cost),
                ) {
                    return;
                }
            }
        }
        Source::Spooled(file, count) => {
            for spooled in SpoolReader::new(file, count) {
                match spooled {
                    Ok(s) => {
                        if !push(
                            &mut chunk,
                            row(s.key, s.sku_name, s.unit, s.quantity, s.unit_cost),
                        ) {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = tx.blocking_send(Err(error));
                        return;
                    }
                }
            }
        }
    }
    if !chunk.is_empty() {
        // A closed channel means the writer gave up; it reports why.
        let _ = tx.blocking_send(Ok(chunk));
    }
}

// ------------------------------------------------------------- profiles

/// Saves (creates or replaces) profile `name`, and registers its vendor
/// integration (`UsageSource::Csv(name)`) when it is new.
///
/// # Errors
/// [`AppError::Invalid`] for a bad name or definition, or a vendor
/// integration that gets its usage from a connector or the push API.
pub async fn save_profile(
    app: &App,
    name: &str,
    definition: &ProfileDefinition,
    actor: &str,
) -> Result<CsvProfile, AppError> {
    check_name("CSV profile name", name).map_err(AppError::Invalid)?;
    definition
        .check()
        .map_err(|e| AppError::Invalid(format!("CSV profile {name:?}: {e}")))?;
    let vendor = ensure_vendor(
        app,
        &definition.vendor,
        definition.vendor_name.as_deref(),
        UsageSource::Csv(name.to_owned()),
    )
    .await?;
    let profile = CsvProfile {
        name: name.to_owned(),
        vendor: vendor.id,
        definition: serde_json::to_value(definition)
            .map_err(|e| AppError::Invalid(format!("CSV profile {name:?}: {e}")))?,
        updated_by: actor.to_owned(),
        updated_at: app.now(),
    };
    app.store().put_csv_profile(&profile).await?;
    app.audit(
        actor,
        "csv.profile.set",
        &format!("csv-profile:{name}"),
        serde_json::json!({ "vendor": profile.vendor }),
    )
    .await;
    Ok(profile)
}

/// Every saved profile, by name.
///
/// # Errors
/// A store error.
pub async fn profiles(app: &App) -> Result<Vec<CsvProfile>, AppError> {
    Ok(app.store().csv_profiles().await?)
}
