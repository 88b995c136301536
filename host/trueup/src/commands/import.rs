//! `trueup import ...`: usage that arrives without a connector.
//!
//! - `trueup import csv --profile NAME FILE` imports a CSV file, all or
//!   nothing, and prints every bad row with its line and reason. A
//!   successful import enqueues a reconcile job in the store (one already
//!   queued is reused), which the job worker of any `trueup serve` on that
//!   store runs: this process ends at once and has no debouncer of its own.
//! - `trueup import profile set NAME --file PROFILE.toml | list | show NAME`
//!   manages the saved CSV import profiles (docs/csv-import.md).
//! - `trueup import push create | list | revoke | limits` manages push API
//!   integrations (docs/push-api.md). A key is printed once; the store
//!   keeps only its SHA-256.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use trueup::app::App;
use trueup::config::Config;
use trueup::ingest::csv::{self as csv_import, ImportError, ImportReport, ProfileDefinition};
use trueup::ingest::push::{self, NewPushIntegration};
use trueup::jobs::{self, JobSpec};
use trueup_store::imports::PushIntegrationId;

/// `trueup import ...`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    command: ImportCommand,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import a CSV file with a saved profile (all or nothing).
    Csv {
        /// The saved profile to read the file with.
        #[arg(long)]
        profile: String,
        /// The CSV file.
        file: PathBuf,
    },
    /// Manage saved CSV import profiles.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Manage push API integrations and their keys.
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Create or replace a profile from a TOML or JSON file.
    Set {
        /// The profile's name (letters, digits, '-', '_', '.').
        name: String,
        /// The profile file (`.toml` or `.json`; see docs/csv-import.md).
        #[arg(long)]
        file: PathBuf,
    },
    /// List the saved profiles.
    List,
    /// Print a saved profile as JSON.
    Show {
        /// The profile's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PushCommand {
    /// Create a push integration and print its API key once.
    Create {
        /// The vendor integration the key pushes for (created when missing).
        #[arg(long)]
        vendor: String,
        /// The vendor's display name.
        #[arg(long)]
        vendor_name: Option<String>,
        /// A name for people ("Acme Backup production").
        #[arg(long)]
        name: String,
        /// Requests allowed per minute.
        #[arg(long)]
        requests_per_minute: Option<u32>,
        /// Requests allowed at once.
        #[arg(long)]
        burst: Option<u32>,
    },
    /// List push integrations (never their keys).
    List,
    /// Revoke a push integration's key.
    Revoke {
        /// The integration's id (from `list`).
        id: i64,
    },
    /// Set a push integration's rate limits.
    Limits {
        /// The integration's id (from `list`).
        id: i64,
        /// Requests allowed per minute.
        #[arg(long)]
        requests_per_minute: u32,
        /// Requests allowed at once.
        #[arg(long)]
        burst: u32,
    },
}

/// Runs `trueup import ...`.
///
/// # Errors
/// The application cannot open, or the import or change is refused (the
/// message says why and how to fix it).
pub fn run(config: Arc<Config>, args: ImportArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let app = App::open(config).await.context("opening Trueup")?;
        let by = format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        );
        let result = match args.command {
            ImportCommand::Csv { profile, file } => import_file(&app, &profile, &file, &by).await,
            ImportCommand::Profile { command } => profile_command(&app, command, &by).await,
            ImportCommand::Push { command } => push_command(&app, command, &by).await,
        };
        app.store().close().await;
        result
    })
}

async fn import_file(
    app: &App,
    profile: &str,
    file: &std::path::Path,
    by: &str,
) -> anyhow::Result<()> {
    let input = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    match csv_import::import_csv(app, profile, input, &name, by).await {
        Ok(report) => {
            println!(
                "imported {}: {} rows read, {} usage rows stored for {} accounts and {} SKUs{} (import {})",
                report.file_name,
                report.rows_read,
                report.usage_rows,
                report.accounts,
                report.skus,
                days(&report),
                report.import_id
            );
            let job = jobs::enqueue(app, &JobSpec::Reconcile { as_of: None }, by)
                .await
                .context("the usage is imported, but no reconcile could be queued; run one from the UI or the API")?;
            println!(
                "reconcile queued as job {} (the job worker of `trueup serve` on this store runs it)",
                job.0
            );
            Ok(())
        }
        Err(ImportError::Rejected(report)) => {
            for error in &report.errors {
                eprintln!("{}: {}", report.file_name, error.message);
            }
            if report.errors_omitted() > 0 {
                eprintln!(
                    "... and {} more problem(s) not listed",
                    report.errors_omitted()
                );
            }
            bail!("{}", ImportError::Rejected(report))
        }
        Err(error) => Err(error.into()),
    }
}

fn days(report: &ImportReport) -> String {
    match (report.first_day, report.last_day) {
        (Some(first), Some(last)) if first == last => format!(" on {first}"),
        (Some(first), Some(last)) => format!(" from {first} to {last}"),
        _ => String::new(),
    }
}

async fn profile_command(app: &App, command: ProfileCommand, by: &str) -> anyhow::Result<()> {
    match command {
        ProfileCommand::Set { name, file } => {
            let definition = ProfileDefinition::from_file(&file).map_err(anyhow::Error::msg)?;
            let saved = csv_import::save_profile(app, &name, &definition, by).await?;
            println!(
                "profile {} saved (vendor integration {})",
                saved.name, saved.vendor
            );
        }
        ProfileCommand::List => {
            for p in csv_import::profiles(app).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    p.name,
                    p.vendor,
                    p.updated_by,
                    p.updated_at.to_rfc3339()
                );
            }
        }
        ProfileCommand::Show { name } => {
            let Some(p) = app.store().csv_profile(&name).await? else {
                bail!(
                    "no CSV import profile is named {name:?}; `trueup import profile list` lists them"
                );
            };
            println!("{}", serde_json::to_string_pretty(&p.definition)?);
        }
    }
    Ok(())
}

async fn push_command(app: &App, command: PushCommand, by: &str) -> anyhow::Result<()> {
    match command {
        PushCommand::Create {
            vendor,
            vendor_name,
            name,
            requests_per_minute,
            burst,
        } => {
            let created = push::create_push_integration(
                app,
                &NewPushIntegration {
                    vendor,
                    vendor_name,
                    name,
                    requests_per_minute,
                    burst,
                },
                by,
            )
            .await?;
            let i = &created.integration;
            println!(
                "push integration {} ({}, vendor {}, {} requests a minute, burst {}); its API key, shown this once:",
                i.id, i.name, i.vendor, i.requests_per_minute, i.burst
            );
            println!("{}", created.api_key);
        }
        PushCommand::List => {
            for i in push::push_integrations(app).await? {
                println!(
                    "{}\t{}\t{}\t{}/min\tburst {}\t{}",
                    i.id,
                    i.vendor,
                    i.name,
                    i.requests_per_minute,
                    i.burst,
                    if i.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        PushCommand::Revoke { id } => {
            let i = push::revoke_push_integration(app, PushIntegrationId(id), by).await?;
            println!("push integration {} ({}) revoked", i.id, i.name);
        }
        PushCommand::Limits {
            id,
            requests_per_minute,
            burst,
        } => {
            let i = push::set_push_rate_limits(
                app,
                PushIntegrationId(id),
                requests_per_minute,
                burst,
                by,
            )
            .await?;
            println!(
                "push integration {}: {} requests a minute, burst {}",
                i.id, i.requests_per_minute, i.burst
            );
        }
    }
    Ok(())
}
