//! NinjaOne sync benchmark: the `trueup.ninjaone` component against the
//! NinjaOne emulator with 1,000 organisations of 100 devices each.
//!
//! Prints:
//! - the full sync (every organisation, every device through
//!   `usage-all-accounts`): wall time, requests, calls, and the peak of the
//!   host heap (a counting global allocator; the guest's linear memory is
//!   mapped by wasmtime, not allocated through it);
//! - the cost of one 10,000-device page: the component's WebAssembly time
//!   for a `list-usage` call that fetches exactly one such page (wall time
//!   minus the time in host calls, i.e. minus the HTTP round trip).
//!
//! Run with `cargo bench -p trueup-tests --bench ninjaone_sync` after
//! `scripts/setup ninjaone`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use trueup_core::model::VendorId;
use trueup_emulators::world::World;
use trueup_emulators::{Kind, Settings, ninjaone as emulator, start};
use trueup_plugin_host::{
    EngineSettings, Grants, LoadedPlugin, PluginEngine, PluginSecrets, PluginSettings, SecretValue,
    SessionOptions, VendorSession,
};

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

/// Organisations in the scale world (the MSP's own included).
const ORGANIZATIONS: usize = 1_000;
/// Devices per customer organisation.
const DEVICES_PER_ORG: u32 = 100;
/// Repetitions of each page measurement; the minimum and median are shown.
const RUNS: usize = 31;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

/// The smallest world whose vendor customers plus the MSP's own
/// organisation make `ORGANIZATIONS` organisations.
fn world(seed: u64) -> World {
    let mut customers = ORGANIZATIONS;
    loop {
        let world = World::new(seed, customers);
        match world.vendor_customers().count() + 1 {
            n if n == ORGANIZATIONS => return world,
            n if n > ORGANIZATIONS => panic!("no world of exactly {ORGANIZATIONS} organisations"),
            _ => customers += 1,
        }
    }
}

fn plugin(engine: &PluginEngine, base: &str, records_per_call: &str) -> Arc<LoadedPlugin> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .join("target/plugins/trueup.ninjaone");
    assert!(
        dir.join("plugin.wasm").is_file(),
        "{} is missing: run scripts/setup ninjaone",
        dir.display()
    );
    let settings = PluginSettings {
        config: BTreeMap::from([
            ("base_url".to_owned(), base.to_owned()),
            ("client_id".to_owned(), emulator::CLIENT_ID.to_owned()),
            ("records_per_call".to_owned(), records_per_call.to_owned()),
        ]),
        grants: Grants {
            http: vec![base.to_owned()],
            private_networks: vec!["127.0.0.1/32".to_owned()],
            secrets: vec!["client_secret".to_owned()],
        },
        ..PluginSettings::default()
    };
    LoadedPlugin::load(engine, &dir, &settings).expect("load trueup.ninjaone")
}

fn session(plugin: &Arc<LoadedPlugin>) -> VendorSession {
    let secrets = PluginSecrets::new([(
        "client_secret".to_owned(),
        SecretValue::new(emulator::CLIENT_SECRET),
    )]);
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
    plugin
        .vendor_session(
            VendorId::from("ninjaone"),
            SessionOptions::new(as_of, secrets),
        )
        .expect("session")
}

/// The WebAssembly time of one `list-usage` call from the first page: it
/// fetches the first 10,000-device page afresh (the cursor is `None`).
async fn wasm_page_time(session: &mut VendorSession) -> (Duration, usize) {
    let page = session.list_usage(None, None).await.expect("list-usage");
    let call = session.last_call().expect("call stats");
    assert_eq!(call.requests, 1, "exactly one page fetched");
    (call.wasm_time, page.items.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let world = Arc::new(world(20_261_125));
    let mut settings = Settings::default();
    settings.ninjaone.devices_per_org = Some(DEVICES_PER_ORG);
    settings.ninjaone.as_of = Some(
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("instant"),
    );
    let running = start(
        Kind::NinjaOne,
        world.clone(),
        settings,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("emulator");
    let base = running.base_url.clone();
    let engine = PluginEngine::new(&EngineSettings::default()).expect("engine");

    // --- Full sync -------------------------------------------------------
    let sync_plugin = plugin(&engine, &base, "5000");
    let mut sync = session(&sync_plugin);
    sync.instantiate().await.expect("instantiate");
    running.faults.reset_stats();
    let heap_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(heap_before, Ordering::Relaxed);
    let started = Instant::now();
    let (mut accounts, mut devices, mut calls, mut requests) = (0usize, 0usize, 0usize, 0u32);
    let mut max_page = 0usize;
    let mut cursor: Option<String> = None;
    loop {
        let page = sync
            .list_accounts(cursor.as_deref())
            .await
            .expect("list-accounts");
        calls += 1;
        requests += sync.last_call().map_or(0, |c| c.requests);
        accounts += page.items.len();
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    loop {
        let page = sync
            .list_usage(None, cursor.as_deref())
            .await
            .expect("list-usage");
        calls += 1;
        requests += sync.last_call().map_or(0, |c| c.requests);
        devices += page.items.len();
        max_page = max_page.max(page.items.len());
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let wall = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(heap_before);
    let served = running.faults.stats();
    println!("NinjaOne sync: {accounts} organisations, {devices} devices");
    println!("  wall time            {wall:>10.1?}");
    println!(
        "  requests             {:>10} (connector count {requests}; by route {:?})",
        served.total, served.by_route
    );
    println!("  calls                {calls:>10} (largest page {max_page} records)");
    println!(
        "  peak host heap       {:>10.1} MiB above the {:.1} MiB before the sync",
        mib(peak),
        mib(heap_before)
    );
    assert_eq!(accounts, ORGANIZATIONS);
    assert_eq!(devices, (ORGANIZATIONS - 1) * DEVICES_PER_ORG as usize + 10);

    // --- One 10,000-device page -------------------------------------------
    // Three component configurations: `records_per_call = 1` returns one
    // record (the call is the parse and the building of 10,000 rows, and
    // freeing the previous call's rows); 5,000 is the default (half the page
    // is lifted into the host); 10,000 lifts the whole page. Runs are
    // interleaved so that noise from other processes hits every series.
    let mut sessions = Vec::new();
    for records in ["1", "5000", "10000"] {
        let mut session = session(&plugin(&engine, &base, records));
        // Instantiate and fetch the token outside the measured calls.
        session.list_usage(None, None).await.expect("warm-up call");
        sessions.push(session);
    }
    let mut wasm: [Vec<Duration>; 3] = Default::default();
    let mut returned = [0; 3];
    for _ in 0..RUNS {
        for (i, session) in sessions.iter_mut().enumerate() {
            let (time, records) = wasm_page_time(session).await;
            wasm[i].push(time);
            returned[i] = records;
        }
    }
    println!("One 10,000-device page, min / median of {RUNS}:");
    for (times, records) in wasm.into_iter().zip(returned) {
        let (min, median) = stats(times);
        println!("  WASM list-usage, {records:>5} records returned  {min:>9.2?} / {median:>9.2?}");
    }
    println!(
        "  (WASM time = call wall time minus host-call time: the guest's parse and build, freeing rows, and lifting the returned records into the host)"
    );
}
