//! Reconcile benchmark: 10,000 companies × 20 services, 2,000,000 usage
//! rows (see `trueup_core::synth`).
//!
//! Prints the full reconcile's wall time (median of several runs), the peak
//! heap (a counting global allocator), and, measured in the same process
//! over the same data, a bare hash-join/aggregate as the floor: what any
//! implementation must at least do (look up each row's account and SKU,
//! sum per company and product, join to the PSA lines). Targets: ≤ 2 s,
//! ≤ 1 GiB peak, ≤ 3× the floor.
//!
//! Run: `cargo bench -p trueup-core --bench reconcile`.

// A global allocator is unsafe to implement; this one only forwards to the
// system allocator and counts bytes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use trueup_core::model::AccountMappingStatus;
use trueup_core::reconcile::{ReconcileOutput, reconcile};
use trueup_core::synth::{SynthConfig, generate};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's layout and
// pointer unchanged; the counters do not affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Timed runs of each contender; the median is reported.
const RUNS: usize = 5;

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The floor: a plain hash join and aggregate over the same rows. Month-end
/// snapshot per (company, product): the latest day's sum, as the reconcile's
/// default measure does; then each PSA line is compared with it.
fn floor(snapshot: &trueup_core::snapshot::Snapshot, as_of: NaiveDate) -> (usize, usize) {
    let company_index: HashMap<&str, usize> = snapshot
        .companies
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let company_of: HashMap<(&str, &str), usize> = snapshot
        .account_mappings
        .iter()
        .filter_map(|m| match &m.status {
            AccountMappingStatus::Mapped(c) => company_index
                .get(c.as_str())
                .map(|&i| ((m.vendor.as_str(), m.account.as_str()), i)),
            _ => None,
        })
        .collect();
    let mut products: HashMap<(&str, &str), Vec<(&str, Decimal)>> = HashMap::new();
    for e in &snapshot.sku_map {
        products
            .entry((e.vendor.as_str(), e.sku.as_str()))
            .or_default()
            .push((e.product.as_str(), e.multiplier));
    }
    let mut sums: HashMap<(usize, &str), (NaiveDate, Decimal)> = HashMap::new();
    for row in &snapshot.usage {
        let day = row.observed_at.date_naive();
        if day > as_of {
            continue;
        }
        let Some(&company) = company_of.get(&(row.vendor.as_str(), row.account.as_str())) else {
            continue;
        };
        let Some(targets) = products.get(&(row.vendor.as_str(), row.sku_id.as_str())) else {
            continue;
        };
        for &(product, multiplier) in targets {
            let q = row.quantity * multiplier;
            let slot = sums
                .entry((company, product))
                .or_insert((day, Decimal::ZERO));
            if day > slot.0 {
                *slot = (day, q);
            } else if day == slot.0 {
                slot.1 += q;
            }
        }
    }
    let contract_company: HashMap<&str, usize> = snapshot
        .contracts
        .iter()
        .filter_map(|c| {
            company_index
                .get(c.company_id.as_str())
                .map(|&i| (c.id.as_str(), i))
        })
        .collect();
    let mut differ = 0;
    let mut joined = 0;
    for line in &snapshot.service_lines {
        let Some(&company) = contract_company.get(line.contract_id.as_str()) else {
            continue;
        };
        if let Some((_, q)) = sums.get(&(company, line.product_identifier.as_str())) {
            joined += 1;
            if *q != line.quantity {
                differ += 1;
            }
        }
    }
    (joined, differ)
}

fn main() {
    let config = SynthConfig::benchmark();
    let t = Instant::now();
    let snapshot = generate(&config);
    let generated_in = t.elapsed();
    let data_bytes = CURRENT.load(Ordering::Relaxed);
    println!(
        "data: {} companies, {} contracts, {} service lines, {} accounts, {} usage rows; generated in {:.2?}, {:.0} MiB on the heap",
        snapshot.companies.len(),
        snapshot.contracts.len(),
        snapshot.service_lines.len(),
        snapshot.accounts.len(),
        snapshot.usage.len(),
        generated_in,
        mib(data_bytes)
    );

    let mapper = snapshot.sku_mapper();
    let mappings: Vec<_> = snapshot.account_mappings.clone();
    let input = snapshot.reconcile_input(config.as_of, &mappings, &[], &mapper);

    let mut reconcile_times = Vec::with_capacity(RUNS);
    let mut reconcile_peak_extra = 0usize;
    let mut last: Option<ReconcileOutput> = None;
    for _ in 0..RUNS {
        drop(last.take());
        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let out = black_box(reconcile(black_box(&input)));
        reconcile_times.push(t.elapsed());
        reconcile_peak_extra = reconcile_peak_extra.max(PEAK.load(Ordering::Relaxed) - before);
        last = Some(out);
    }
    let peak_total = data_bytes + reconcile_peak_extra;

    let mut floor_times = Vec::with_capacity(RUNS);
    let mut floor_result = (0, 0);
    for _ in 0..RUNS {
        let t = Instant::now();
        floor_result = black_box(floor(black_box(&snapshot), config.as_of));
        floor_times.push(t.elapsed());
    }

    let reconcile_median = median(reconcile_times.clone());
    let floor_median = median(floor_times.clone());
    if let Some(out) = &last {
        println!(
            "reconcile: {} cards ({:?}); money at stake {} (under {} / over {}); rows mapped {}, unmapped {}, excluded {}",
            out.cards.len(),
            out.totals.cards,
            out.totals.at_stake,
            out.totals.under_billed,
            out.totals.over_billed,
            out.stats.rows_mapped,
            out.stats.rows_unmapped,
            out.stats.rows_excluded
        );
    }
    println!(
        "floor: {} lines joined to usage, {} differ",
        floor_result.0, floor_result.1
    );
    println!("reconcile runs: {reconcile_times:.2?}");
    println!("floor runs:     {floor_times:.2?}");
    println!("reconcile wall time (median of {RUNS}): {reconcile_median:.3?}  [target ≤ 2 s]");
    println!(
        "peak heap: {:.0} MiB total = {:.0} MiB data + {:.0} MiB reconcile working set and output  [target ≤ 1024 MiB]",
        mib(peak_total),
        mib(data_bytes),
        mib(reconcile_peak_extra)
    );
    println!("floor (bare hash join/aggregate, median of {RUNS}): {floor_median:.3?}");
    println!(
        "ratio reconcile / floor: {:.2}×  [target ≤ 3×]",
        reconcile_median.as_secs_f64() / floor_median.as_secs_f64()
    );
}
