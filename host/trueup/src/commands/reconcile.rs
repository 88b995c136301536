//! `trueup reconcile`: reconcile a snapshot file and print the service
//! cards, without touching a store or a PSA; or, without `--snapshot`,
//! reconcile the configured store's data as the server does (the same
//! [`App::reconcile_as_of`]) and record the run and its cards.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use rust_decimal::Decimal;
use trueup_core::card::{CardCategory, ServiceCard};
use trueup_core::matching::MatchConfig;
use trueup_core::model::AccountMapping;
use trueup_core::reconcile::{ReconcileOutput, reconcile};
use trueup_core::snapshot::Snapshot;
use trueup_store::reconcile::ReconcileRunId;

use trueup::app::App;
use trueup::app::reconcile::as_of_date;
use trueup::config::Config;

/// Arguments of `trueup reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The snapshot file (format: docs/snapshot-format.md). Without it,
    /// the configured store (`--config`) is reconciled and the run recorded.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// The reconcile date, YYYY-MM-DD: periods containing it are
    /// reconciled, usage after it is ignored.
    #[arg(long, value_parser = parse_date)]
    pub as_of: NaiveDate,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// How the cards are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// The full reconcile output as JSON (cards, exclusions, totals).
    Json,
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("`{text}` is not a date in the form YYYY-MM-DD: {e}"))
}

/// With `--snapshot`: reads the snapshot, matches accounts (mappings on
/// record win), reconciles with the snapshot's SKU table, and prints the
/// result. Without: reconciles the configured store as of the date and
/// records the run (see [`run_store`]).
///
/// # Errors
/// The snapshot or store cannot be read, or the date is after today.
pub fn run(config: Arc<Config>, args: ReconcileArgs) -> anyhow::Result<()> {
    let Some(snapshot) = args.snapshot.clone() else {
        return run_store(config, &args);
    };
    let path = snapshot.display().to_string();
    let text = std::fs::read_to_string(&snapshot)
        .with_context(|| format!("cannot read snapshot {path}"))?;
    let snapshot = Snapshot::from_json(&text).with_context(|| format!("snapshot {path}"))?;
    let outcomes = snapshot.resolve_mappings(MatchConfig::default());
    let mappings: Vec<AccountMapping> = outcomes.iter().map(|o| o.mapping.clone()).collect();
    let mapper = snapshot.sku_mapper();
    let output = reconcile(&snapshot.reconcile_input(args.as_of, &mappings, &outcomes, &mapper));
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &output)
                .context("cannot write the JSON output")?;
            writeln!(stdout)?;
        }
        OutputFormat::Table => stdout.write_all(render_table(&snapshot, &output).as_bytes())?,
    }
    Ok(())
}

/// Reconciles the configured store as of `args.as_of` through the app's
/// own path (the one `POST /api/v1/reconcile` runs), which records the run,
/// its cards and its exclusions; prints the run and what was left out.
fn run_store(config: Arc<Config>, args: &ReconcileArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let app = App::open(config).await.context("opening Trueup")?;
        let result = async {
            let as_of = as_of_date(&args.as_of.format("%Y-%m-%d").to_string(), app.today())
                .map_err(anyhow::Error::msg)?;
            let summary = app
                .reconcile_as_of(as_of)
                .await
                .with_context(|| format!("reconciling the store as of {as_of}"))?;
            let exclusions = app
                .store()
                .run_exclusions(ReconcileRunId(summary.run))
                .await
                .context("reading the run's exclusions")?;
            let mut stdout = std::io::stdout().lock();
            match args.format {
                OutputFormat::Json => {
                    let value = serde_json::json!({
                        "summary": summary,
                        "exclusions": exclusions,
                    });
                    serde_json::to_writer_pretty(&mut stdout, &value)
                        .context("cannot write the JSON output")?;
                    writeln!(stdout)?;
                }
                OutputFormat::Table => {
                    writeln!(
                        stdout,
                        "reconcile run {} as of {}: {} card(s) from {} usage row(s), {}",
                        summary.run,
                        summary.as_of,
                        summary.cards,
                        summary.usage_rows,
                        summary.rules
                    )?;
                    let mut counts: Vec<(&str, usize)> = Vec::new();
                    for e in &exclusions {
                        match counts.iter_mut().find(|(code, _)| *code == e.code.as_str()) {
                            Some((_, n)) => *n += 1,
                            None => counts.push((e.code.as_str(), 1)),
                        }
                    }
                    if !counts.is_empty() {
                        writeln!(stdout, "left out or noted ({}):", exclusions.len())?;
                        for (code, n) in counts {
                            writeln!(stdout, "  {code}: {n}")?;
                        }
                    }
                }
            }
            anyhow::Ok(())
        }
        .await;
        app.store().close().await;
        result
    })
}

const HEADERS: [&str; 9] = [
    "COMPANY",
    "CONTRACT",
    "PRODUCT",
    "CATEGORY",
    "PSA QTY",
    "VENDOR QTY",
    "VARIANCE",
    "MONEY DELTA",
    "EFFECTIVE",
];

/// Columns right-aligned (numbers).
const NUMERIC: [bool; 9] = [false, false, false, false, true, true, true, true, false];

/// The widest a text column gets before it is cut with "…".
const MAX_TEXT_WIDTH: usize = 32;

/// The cards as an aligned table, then totals and exclusions.
pub fn render_table(snapshot: &Snapshot, output: &ReconcileOutput) -> String {
    let names: HashMap<&str, &str> = snapshot
        .companies
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    let rows: Vec<[String; 9]> = output.cards.iter().map(|card| row(card, &names)).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String; 9]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if NUMERIC[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(str::to_owned));
    for row in &rows {
        line(row);
    }
    let totals = &output.totals;
    let counts: Vec<String> = CardCategory::ALL
        .iter()
        .map(|c| format!("{} {}", totals.cards.get(c).copied().unwrap_or(0), c))
        .collect();
    let _ = writeln!(
        out,
        "\n{} cards as of {}: {}",
        output.cards.len(),
        output.as_of,
        counts.join(", ")
    );
    let _ = writeln!(
        out,
        "money at stake per period: {} (under-billed {}, over-billed {})",
        totals.at_stake, totals.under_billed, totals.over_billed
    );
    let _ = writeln!(out, "rules: {}", output.mapper_version);
    if !output.exclusions.is_empty() {
        let _ = writeln!(out, "\nleft out or noted ({}):", output.exclusions.len());
        for e in &output.exclusions {
            let _ = writeln!(out, "  [{:?}] {}", e.code, e.reason);
        }
    }
    out
}

fn row(card: &ServiceCard, names: &HashMap<&str, &str>) -> [String; 9] {
    let company = match (&card.company, &card.source) {
        (Some(id), _) => names
            .get(id.as_str())
            .map(|n| (*n).to_owned())
            .unwrap_or_else(|| id.to_string()),
        (None, Some(source)) => format!(
            "(unmapped) {}",
            source
                .account_name
                .clone()
                .unwrap_or_else(|| format!("{}/{}", source.vendor, source.account))
        ),
        (None, None) => String::new(),
    };
    let product = match (&card.product, &card.source) {
        (Some(p), _) => p.to_string(),
        (None, Some(source)) => format!("{} {}", source.vendor, source.sku),
        (None, None) => String::new(),
    };
    let qty = |q: Option<Decimal>| {
        q.map(|q| q.normalize().to_string())
            .unwrap_or_else(|| "-".to_owned())
    };
    let variance = card
        .variance
        .map(|v| {
            if v > Decimal::ZERO {
                format!("+{v}")
            } else {
                v.to_string()
            }
        })
        .unwrap_or_else(|| "-".to_owned());
    let money = match card.money {
        Some(m) if card.category.proposes_change() => {
            if m.delta > Decimal::ZERO {
                format!("+{}", m.delta)
            } else {
                m.delta.to_string()
            }
        }
        _ => "-".to_owned(),
    };
    [
        cut(&company),
        cut(&card
            .contract
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".to_owned())),
        cut(&product),
        card.category.to_string(),
        qty(card.psa_quantity),
        qty(card.vendor_quantity.map(|v| v.billable)),
        variance,
        money,
        card.effective()
            .map(|e| e.date.to_string())
            .unwrap_or_else(|| "-".to_owned()),
    ]
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT_WIDTH {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_TEXT_WIDTH - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_snapshot_renders_a_readable_table() {
        let text = include_str!("../../../../tests/fixtures/snapshots/small.json");
        let snapshot = Snapshot::from_json(text).expect("the example snapshot parses");
        let outcomes = snapshot.resolve_mappings(MatchConfig::default());
        let mappings: Vec<AccountMapping> = outcomes.iter().map(|o| o.mapping.clone()).collect();
        let mapper = snapshot.sku_mapper();
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 28).expect("a date");
        let output = reconcile(&snapshot.reconcile_input(as_of, &mappings, &outcomes, &mapper));
        let table = render_table(&snapshot, &output);
        let header = table.lines().next().expect("a header line");
        assert!(header.starts_with("COMPANY"), "{table}");
        assert!(header.contains("MONEY DELTA") && header.contains("EFFECTIVE"));
        assert!(table.contains("Contoso Ltd"), "{table}");
        assert!(
            table.contains("reconcile") && table.contains("+44.00") && table.contains("2025-04-01"),
            "{table}"
        );
        assert!(table.contains("money at stake per period"), "{table}");
    }
}
