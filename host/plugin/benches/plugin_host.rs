//! Plugin host benchmark: prints figures, asserts nothing.
//!
//! `cargo bench -p trueup-plugin-host --bench plugin_host` (after
//! `scripts/setup`, which builds `test.bench`).
//!
//! - instantiate: a fresh store + instance from the plugin's `InstancePre`
//!   (pooling allocator when available), median of 2,000;
//! - round-trip typed call: `describe` on a live instance, median of 20,000;
//! - 10,000 usage records: one `list-usage` call returning 10,000 records,
//!   including lifting and conversion into the host model, median of 50 —
//!   once with the page prebuilt in the guest (the host's own cost, which
//!   the target is about) and once with the guest building it every call.
//!
//! Targets (issue #2): instantiate ≤ 50 µs, 10k-record call ≤ 5 ms.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use trueup_core::model::VendorId;
use trueup_plugin_host::{
    EngineSettings, LoadedPlugin, PluginEngine, PluginSecrets, PluginSettings, SessionOptions,
};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins/test.bench");
    assert!(
        dir.join("plugin.wasm").is_file(),
        "{} missing: run scripts/setup first",
        dir.display()
    );
    let engine = PluginEngine::new(&EngineSettings::default()).expect("engine");
    let started = Instant::now();
    let plugin = LoadedPlugin::load(&engine, &dir, &PluginSettings::default()).expect("load");
    let load_time = started.elapsed();
    let options = SessionOptions::new(
        NaiveDate::from_ymd_opt(2026, 11, 25).expect("date"),
        PluginSecrets::default(),
    );
    let vendor = VendorId::from("bench");

    // Instantiation.
    for _ in 0..200 {
        let mut session = plugin
            .vendor_session(vendor.clone(), options.clone())
            .expect("session");
        session.instantiate().await.expect("instantiate");
    }
    let mut instantiate = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let mut session = plugin
            .vendor_session(vendor.clone(), options.clone())
            .expect("session");
        let t = Instant::now();
        session.instantiate().await.expect("instantiate");
        instantiate.push(t.elapsed());
    }

    // Round trip.
    let mut session = plugin
        .vendor_session(vendor.clone(), options.clone())
        .expect("session");
    session.describe().await.expect("describe");
    let mut round_trip = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        session.describe().await.expect("describe");
        round_trip.push(t.elapsed());
    }

    // 10,000 records.
    let mut big = Vec::with_capacity(50);
    let mut records = 0;
    for _ in 0..55 {
        let t = Instant::now();
        let page = session.list_usage(None, None).await.expect("list-usage");
        let elapsed = t.elapsed();
        records = page.items.len();
        big.push(elapsed);
    }
    let big = big.split_off(5);

    // A plugin returning a page built once per instance: the host's own
    // cost (lowering, lifting, converting to the model) for 10,000 records.
    let prebuilt_plugin = LoadedPlugin::load(
        &engine,
        &dir,
        &PluginSettings {
            config: BTreeMap::from([("prebuilt".to_owned(), "true".to_owned())]),
            ..PluginSettings::default()
        },
    )
    .expect("load");
    let mut prebuilt_session = prebuilt_plugin
        .vendor_session(vendor.clone(), options.clone())
        .expect("session");
    prebuilt_session
        .list_usage(None, None)
        .await
        .expect("warm up");
    let mut prebuilt = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = Instant::now();
        let page = prebuilt_session
            .list_usage(None, None)
            .await
            .expect("list-usage");
        prebuilt.push(t.elapsed());
        assert_eq!(page.items.len(), records);
    }

    // The same 10,000 records through a plugin set to return 1 record, to
    // separate the fixed call cost from the per-record cost.
    let small_plugin = LoadedPlugin::load(
        &engine,
        &dir,
        &PluginSettings {
            config: BTreeMap::from([("records".to_owned(), "1".to_owned())]),
            ..PluginSettings::default()
        },
    )
    .expect("load");
    let mut small_session = small_plugin
        .vendor_session(vendor, options)
        .expect("session");
    let mut one = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        small_session
            .list_usage(None, None)
            .await
            .expect("list-usage");
        one.push(t.elapsed());
    }

    println!(
        "plugin host benchmark (pooling allocator: {})",
        engine.pooling()
    );
    println!("  load (compile + link, no cache):  {load_time:>10.2?}");
    println!(
        "  instantiate via InstancePre:      median {:>9.2?}  p99 {:>9.2?}  (n=2000, target <= 50us)",
        median(instantiate.clone()),
        percentile(&instantiate, 0.99)
    );
    println!(
        "  round-trip typed call (describe): median {:>9.2?}  p99 {:>9.2?}  (n=20000)",
        median(round_trip.clone()),
        percentile(&round_trip, 0.99)
    );
    println!(
        "  list-usage, 1 record:             median {:>9.2?}  (n=1000)",
        median(one)
    );
    println!(
        "  list-usage, {records} records, page prebuilt in the guest (the host's cost):\n                                    median {:>9.2?}  p99 {:>9.2?}  (n=50, target <= 5ms)",
        median(prebuilt.clone()),
        percentile(&prebuilt, 0.99)
    );
    println!(
        "  list-usage, {records} records, the guest building them every call:\n                                    median {:>9.2?}  p99 {:>9.2?}  (n=50)",
        median(big.clone()),
        percentile(&big, 0.99)
    );
}
