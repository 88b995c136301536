//! PSA sync benchmark: a full sync of a 2,000-company PSA through each
//! shipped PSA connector (`trueup.connectwise`, `trueup.autotask`,
//! `trueup.halopsa`) against its emulator, started in-process.
//!
//! The sync drives the session as the host's sync does: every page of
//! companies, every page of contracts (all types and statuses), then the
//! services of every contract in batches of 200 ids, following each cursor.
//! Per PSA it prints:
//! - wall time of the sync, and the number of calls and pages;
//! - HTTP requests the connector sent (the sum of the calls' `CallStats`)
//!   and the requests the emulator answered;
//! - the split of the calls' time between WebAssembly (`wasm_time`) and
//!   host calls, i.e. waiting on HTTP (`host_time`);
//! - the peak of the process heap during the sync above its level before
//!   it (a counting global allocator). It includes the in-process
//!   emulator's allocations (it renders every page the connector reads);
//!   the guest's linear memory is mapped by wasmtime, not allocated through
//!   the global allocator, and is capped by the plugin's `memory_mib`.
//!
//! Run with `cargo bench -p trueup-tests --bench psa_sync` after
//! `scripts/setup connectwise autotask halopsa`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use trueup_conformance::psa::{self as conformance, Against, full_sync};
use trueup_emulators::world::World;
use trueup_plugin_host::{ContractFilter, EngineSettings, PluginEngine, PluginSettings};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are only arithmetic on the sizes it was asked for.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Customers in the world: about 96% are in the PSA, so every PSA holds
/// at least 2,000 companies.
const CUSTOMERS: usize = 2_100;
const SEED: u64 = 7;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn share(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        100.0 * part.as_secs_f64() / whole.as_secs_f64()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let engine = PluginEngine::new(&EngineSettings::default()).expect("engine");
    let filter = ContractFilter {
        types: Vec::new(),
        active_only: false,
    };
    println!("PSA full sync benchmark: {CUSTOMERS} customers (seed {SEED}), as of {as_of}");
    for against in Against::ALL {
        let id = format!("trueup.{}", against.name());
        let dir = plugins.join(&id);
        assert!(
            dir.join("plugin.wasm").is_file(),
            "{} missing: run scripts/setup first",
            dir.display()
        );
        let world = Arc::new(World::new(SEED, CUSTOMERS));
        let running = trueup_emulators::start(
            against.kind(),
            world,
            against.emulator_settings(as_of),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("start the emulator");
        let connection = conformance::connect(
            &engine,
            &dir,
            &PluginSettings::default(),
            against,
            &running.base_url,
            as_of,
        )
        .expect("load the connector");
        let mut session = connection.session().expect("session");
        session.instantiate().await.expect("instantiate");
        let baseline = LIVE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let synced = full_sync(&mut session, &filter).await.expect("full sync");
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
        let cost = synced.cost;
        let answered = running.faults.stats().total;
        println!();
        println!("{id} against the {against} emulator");
        println!(
            "  data:      {} companies, {} contracts, {} lines",
            synced.companies.len(),
            synced.contracts.len(),
            synced.lines.len()
        );
        println!(
            "  wall:      {:.2} s ({} calls; pages: {} companies, {} contracts, {} services)",
            synced.elapsed.as_secs_f64(),
            cost.calls,
            synced.pages.0,
            synced.pages.1,
            synced.pages.2
        );
        println!(
            "  requests:  {} sent by the connector, {answered} answered by the emulator ({:.1} lines a request)",
            cost.requests,
            synced.lines.len() as f64 / cost.requests.max(1) as f64
        );
        println!(
            "  time:      WebAssembly {:.3} s ({:.1}% of call time), host calls / HTTP {:.3} s ({:.1}%)",
            cost.wasm.as_secs_f64(),
            share(cost.wasm, cost.wall),
            cost.host.as_secs_f64(),
            share(cost.host, cost.wall)
        );
        println!(
            "  heap peak: {:.1} MiB above the {:.1} MiB before the sync (host + in-process emulator)",
            mib(peak),
            mib(baseline)
        );
    }
}
