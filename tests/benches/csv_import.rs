//! CSV import benchmark: a ~50 MB usage export (one row per account, SKU
//! and day; no summing, so every row is spooled and written) generated in
//! a temporary directory, imported with a saved profile into SQLite in the
//! same directory, all or nothing, through `trueup::ingest::csv::import_csv`
//! (what `trueup import csv` runs).
//!
//! It prints the file's size and rows, the wall time of the import, rows
//! and megabytes a second, and the process's peak resident memory
//! (`VmHWM` of `/proc/self/status`) before and after the import: the
//! import streams, so its peak should not grow with the file.
//!
//! Run with `cargo bench -p trueup-tests --bench csv_import`
//! (`CSV_BENCH_MB` sets the file size in MB; default 50).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use rust_decimal::Decimal;
use trueup::app::App;
use trueup::config::{Config, RulesConfig, StoreConfig};
use trueup::ingest::csv::{ProfileDefinition, import_csv, save_profile};

/// The file's size unless `CSV_BENCH_MB` says otherwise.
const DEFAULT_MB: u64 = 50;

/// Distinct accounts in the file (SKUs and days vary for the rest).
const ACCOUNTS: u64 = 5_000;

/// SKUs per account and day.
const SKUS: u64 = 40;

const PROFILE: &str = r#"
vendor = "bench-vendor"
vendor_name = "Bench Vendor"
header = true
date_format = "%d.%m.%Y"
delimiter = ";"
decimal_separator = ","

[columns]
account_id = "Customer ID"
account_name = "Customer"
sku_id = "Plan"
sku_name = "Plan name"
quantity = "Units"
observed_on = "Day"
"#;

/// `VmHWM` (peak resident set) of this process, in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line in /proc/self/status")
}

/// Writes rows until the file reaches `bytes`; the row count.
fn generate(path: &Path, bytes: u64) -> anyhow::Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "Customer ID;Customer;Plan;Plan name;Units;Day")?;
    let mut written: u64 = 0;
    let mut rows: u64 = 0;
    let mut line = String::new();
    'days: for day in 1..=28u32 {
        for sku in 0..SKUS {
            for account in 0..ACCOUNTS {
                if written >= bytes {
                    break 'days;
                }
                let units = Decimal::new(i64::try_from((account * 7 + sku) % 5_000)? * 100 + 25, 2);
                line.clear();
                use std::fmt::Write as _;
                writeln!(
                    line,
                    "ACC-{account:06};Customer {account:06} GmbH;PLAN-{sku:04};Backup plan {sku:04};{};{day:02}.11.2026",
                    units.to_string().replace('.', ",")
                )?;
                out.write_all(line.as_bytes())?;
                written += line.len() as u64;
                rows += 1;
            }
        }
    }
    out.flush()?;
    Ok(rows)
}

async fn open(dir: &Path) -> anyhow::Result<App> {
    let config = Config {
        data_dir: dir.to_owned(),
        store: StoreConfig {
            url: Some(format!("sqlite://{}", dir.join("trueup.db").display())),
        },
        rules: RulesConfig {
            path: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules/default.rhai"),
        },
        ..Config::default()
    };
    Ok(App::open(Arc::new(config)).await?)
}

async fn bench() -> anyhow::Result<()> {
    let mb: u64 = match std::env::var("CSV_BENCH_MB") {
        Ok(v) => v.parse().context("CSV_BENCH_MB is a whole number of MB")?,
        Err(_) => DEFAULT_MB,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("usage.csv");
    let started = Instant::now();
    let rows = generate(&path, mb * 1_000_000)?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "generated {}: {:.1} MB, {rows} rows in {:.2?}",
        path.display(),
        size as f64 / 1e6,
        started.elapsed()
    );
    let app = open(dir.path()).await?;
    let definition = ProfileDefinition::from_toml(PROFILE).map_err(anyhow::Error::msg)?;
    save_profile(&app, "bench", &definition, "bench").await?;
    let before = peak_rss_kib()?;
    let input = tokio::fs::File::open(&path).await?;
    let started = Instant::now();
    let report = import_csv(&app, "bench", input, "usage.csv", "bench").await?;
    let wall = started.elapsed();
    let after = peak_rss_kib()?;
    anyhow::ensure!(
        report.rows_read == rows && report.usage_rows == rows,
        "read {} and stored {} of {rows} rows",
        report.rows_read,
        report.usage_rows
    );
    let secs = wall.as_secs_f64();
    println!(
        "imported {rows} rows ({} accounts, {} SKUs, {:?}..{:?}) on SQLite",
        report.accounts, report.skus, report.first_day, report.last_day
    );
    println!("wall time        {wall:.2?}");
    println!("rows/s           {:.0}", rows as f64 / secs);
    println!("MB/s             {:.1}", size as f64 / 1e6 / secs);
    println!(
        "peak RSS (VmHWM) {:.1} MiB before the import, {:.1} MiB after ({:+.1} MiB; the file is {:.1} MiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after as f64 - before as f64) / 1024.0,
        size as f64 / 1_048_576.0
    );
    app.store().close().await;
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
