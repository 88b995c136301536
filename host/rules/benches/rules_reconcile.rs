//! Rules benchmark: the core's 10,000-company / 2,000,000-row synthetic
//! reconcile (`trueup_core::synth`), mapped by Rhai rules instead of the
//! built-in SKU table.
//!
//! Prints, as medians of several runs:
//! - the reconcile's wall time with the rules (a fresh `RulesMapper` per
//!   run, so every run pays for its memo from cold);
//! - the time inside rule evaluation: every `map_usage` and
//!   `service_policy` call the reconcile makes, replayed in the same order
//!   on a fresh mapper and timed in bulk (timing each call would cost more
//!   than the calls);
//! - the share (target ≤ 20 %), the built-in SKU table's reconcile for
//!   comparison, and how many Rhai closure calls and distinct decisions
//!   the run needed.
//!
//! Two rule files: `benches/synth.rhai` (the synthetic MSP's products,
//! with the features `rules/default.rhai` uses: ignores, attribute filters,
//! a closure, a dependent line, policies) and `rules/default.rhai` itself
//! (which maps only part of the synthetic SKUs; the rest become unmapped
//! cards). The synthetic rules must reproduce the SKU table's cards.
//!
//! Run: `cargo bench -p trueup-rules --bench rules_reconcile`.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use trueup_core::mapping::{PolicyContext, RowDependence, UsageMapper};
use trueup_core::model::{AccountMappingStatus, ProductId};
use trueup_core::reconcile::{ReconcileOutput, reconcile};
use trueup_core::snapshot::Snapshot;
use trueup_core::synth::{SynthConfig, generate};
use trueup_rules::{CompiledRules, RuleVersion};

/// Timed runs of each measurement; the median is reported.
const RUNS: usize = 5;

/// The share of the reconcile spent in rules that the design allows.
const TARGET_SHARE: f64 = 0.20;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Every mapper call a reconcile of `snapshot` makes, in its order, on a
/// fresh mapper; returns the time spent in them.
fn replay(
    rules: &Arc<CompiledRules>,
    snapshot: &Snapshot,
    out: &ReconcileOutput,
) -> (Duration, trueup_rules::EvalStats) {
    let as_of = out.as_of;
    let companies: HashMap<&str, usize> = snapshot
        .companies
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let company_of: HashMap<(&str, &str), usize> = snapshot
        .account_mappings
        .iter()
        .filter_map(|m| match &m.status {
            AccountMappingStatus::Mapped(c) => companies
                .get(c.as_str())
                .map(|&i| ((m.vendor.as_str(), m.account.as_str()), i)),
            _ => None,
        })
        .collect();
    // The rows the reconcile maps: of mapped accounts, up to the as-of date.
    let rows: Vec<(usize, usize)> = snapshot
        .usage
        .iter()
        .enumerate()
        .filter(|(_, u)| u.observed_at.date_naive() <= as_of)
        .filter_map(|(i, u)| {
            company_of
                .get(&(u.vendor.as_str(), u.account.as_str()))
                .map(|&c| (i, c))
        })
        .collect();
    let contracts: HashMap<&str, usize> = snapshot
        .contracts
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let lines: HashMap<&str, usize> = snapshot
        .service_lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id.as_str(), i))
        .collect();
    let policies: Vec<(usize, usize, ProductId, Option<usize>)> = out
        .cards
        .iter()
        .filter_map(|card| {
            let company = *companies.get(card.company.as_ref()?.as_str())?;
            let contract = *contracts.get(card.contract.as_ref()?.as_str())?;
            let line = card
                .line
                .as_ref()
                .and_then(|l| lines.get(l.as_str()).copied());
            Some((company, contract, card.product.clone()?, line))
        })
        .collect();
    let mapper = rules.mapper(as_of);
    let sku_only = mapper.row_dependence() == RowDependence::SkuOnly;
    let start = Instant::now();
    let mut last_sku = (usize::MAX, usize::MAX);
    for &(i, c) in &rows {
        let row = &snapshot.usage[i];
        if sku_only {
            let key = (
                Arc::as_ptr(&row.account.0).cast::<u8>().addr(),
                Arc::as_ptr(&row.sku_id.0).cast::<u8>().addr(),
            );
            if key == last_sku {
                continue;
            }
            last_sku = key;
        }
        let _ = black_box(mapper.map_usage(row, Some(&snapshot.companies[c])));
    }
    for (company, contract, product, line) in &policies {
        let ctx = PolicyContext {
            company: &snapshot.companies[*company],
            contract: &snapshot.contracts[*contract],
            product,
            line: line.map(|l| &snapshot.service_lines[l]),
            psa: &snapshot.psa,
            as_of,
        };
        let _ = black_box(mapper.service_policy(&ctx));
    }
    (start.elapsed(), mapper.stats())
}

/// (category, billable, target) per card key, to compare two runs.
fn outcomes(out: &ReconcileOutput) -> HashMap<String, String> {
    out.cards
        .iter()
        .map(|c| {
            (
                c.key.to_string(),
                format!(
                    "{} {:?} {:?}",
                    c.category,
                    c.vendor_quantity.map(|v| v.billable.normalize()),
                    c.target_quantity.map(|t| t.normalize())
                ),
            )
        })
        .collect()
}

fn measure(name: &str, path: &Path, snapshot: &Snapshot, baseline: Option<&ReconcileOutput>) {
    let at = Utc
        .with_ymd_and_hms(2025, 3, 31, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let version = match RuleVersion::from_file(path, "bench", at) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let t = Instant::now();
    let rules = match CompiledRules::compile(&version) {
        Ok(r) => Arc::new(r),
        Err(e) => panic!("{e}"),
    };
    let compiled_in = t.elapsed();
    let config = SynthConfig::benchmark();
    let mappings = snapshot.account_mappings.clone();
    let mut totals = Vec::with_capacity(RUNS);
    let mut last: Option<ReconcileOutput> = None;
    for _ in 0..RUNS {
        drop(last.take());
        let mapper = rules.mapper(config.as_of);
        let input = snapshot.reconcile_input(config.as_of, &mappings, &[], &mapper);
        let t = Instant::now();
        let out = black_box(reconcile(black_box(&input)));
        totals.push(t.elapsed());
        last = Some(out);
    }
    let Some(out) = last else { return };
    let mut evals = Vec::with_capacity(RUNS);
    let mut stats = None;
    for _ in 0..RUNS {
        let (elapsed, s) = replay(&rules, snapshot, &out);
        evals.push(elapsed);
        stats = Some(s);
    }
    let total = median(totals.clone());
    let eval = median(evals.clone());
    let share = eval.as_secs_f64() / total.as_secs_f64();
    println!();
    println!(
        "== {name}: {} ({} rules, {} service declarations, {} closures; compiled and declared in {compiled_in:.2?})",
        path.display(),
        rules.rule_count(),
        rules.service_count(),
        rules.closure_count()
    );
    println!(
        "cards: {} ({:?}); rows mapped {}, unmapped {}, rule errors {}",
        out.cards.len(),
        out.totals.cards,
        out.stats.rows_mapped,
        out.stats.rows_unmapped,
        out.stats.rows_rule_error
    );
    if let Some(s) = stats {
        println!(
            "evaluation: {} map_usage calls, {} answered from memo, {} distinct decisions, {} Rhai closure calls ({} from the closure memo), {} service_policy calls, {} plans",
            s.map_calls,
            s.memo_hits,
            s.decisions,
            s.closure_calls,
            s.closure_memo_hits,
            s.policy_calls,
            s.plans
        );
    }
    println!("reconcile runs:  {totals:.2?}");
    println!("rule eval runs:  {evals:.2?}");
    println!("reconcile wall time with rules (median of {RUNS}): {total:.3?}");
    println!("time inside rule evaluation (median of {RUNS}):  {eval:.3?}");
    println!(
        "share of reconcile spent in rules: {:.1} %  [target ≤ {:.0} %]{}",
        share * 100.0,
        TARGET_SHARE * 100.0,
        if share <= TARGET_SHARE {
            ""
        } else {
            "  ** OVER TARGET **"
        }
    );
    if let Some(base) = baseline {
        let (a, b) = (outcomes(base), outcomes(&out));
        let differ = a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).count()
            + b.keys().filter(|k| !a.contains_key(*k)).count();
        println!(
            "cards that differ from the built-in SKU table's: {differ} of {}",
            a.len()
        );
    }
}

fn main() {
    let config = SynthConfig::benchmark();
    let t = Instant::now();
    let snapshot = generate(&config);
    println!(
        "data: {} companies, {} contracts, {} service lines, {} usage rows; generated in {:.2?}",
        snapshot.companies.len(),
        snapshot.contracts.len(),
        snapshot.service_lines.len(),
        snapshot.usage.len(),
        t.elapsed()
    );

    // The built-in SKU table, for comparison.
    let table = snapshot.sku_mapper();
    let mappings = snapshot.account_mappings.clone();
    let input = snapshot.reconcile_input(config.as_of, &mappings, &[], &table);
    let mut times = Vec::with_capacity(RUNS);
    let mut baseline = None;
    for _ in 0..RUNS {
        drop(baseline.take());
        let t = Instant::now();
        let out = black_box(reconcile(black_box(&input)));
        times.push(t.elapsed());
        baseline = Some(out);
    }
    println!(
        "built-in SKU table reconcile (median of {RUNS}): {:.3?}  runs {times:.2?}",
        median(times.clone())
    );

    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    measure(
        "synthetic-MSP rules",
        &here.join("benches/synth.rhai"),
        &snapshot,
        baseline.as_ref(),
    );
    measure(
        "default rules",
        &here.join("../../rules/default.rhai"),
        &snapshot,
        None,
    );
}
