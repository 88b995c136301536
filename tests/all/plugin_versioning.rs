//! API versions: checked before anything is compiled or linked, and every
//! supported line loaded side by side. `test.psa-v01` is a PSA guest pinned
//! to contract 0.1 (what connectors built before 0.2 speak), `test.psa-v02`
//! one built for 0.2; both serve canned data (tests/guests/psa-v0_*), so
//! every expected value below is read off those sources.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use trueup_core::catalog::BillingKind;
use trueup_core::model::BillingCycle;
use trueup_plugin_host::{
    ApiVersion, CallErrorKind, ChangePolicy, ContractFilter, CostChange, LoadError, LoadedPlugin,
    PluginEngine, PluginSecrets, PluginSettings, PsaSession, QuantityChange, SessionOptions,
};

use crate::support::{engine, hostile_settings, plugin_dir, trueup_binary};

const V01: &str = "test.psa-v01";
const V02: &str = "test.psa-v02";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a real date")
}

fn load(engine: &PluginEngine, id: &str) -> Arc<LoadedPlugin> {
    LoadedPlugin::load(engine, &plugin_dir(id), &PluginSettings::default())
        .unwrap_or_else(|e| panic!("load {id}: {e}"))
}

fn session(plugin: &Arc<LoadedPlugin>) -> PsaSession {
    plugin
        .psa_session(SessionOptions::new(
            date(2026, 12, 7),
            PluginSecrets::new([]),
        ))
        .expect("a PSA session")
}

fn quantity_change(line: &str, from: i64, to: i64, key: &str) -> QuantityChange {
    QuantityChange {
        contract_id: "K1".into(),
        line_id: Some(line.into()),
        product_identifier: "M365-BP".into(),
        expected_quantity: Decimal::from(from),
        new_quantity: Decimal::from(to),
        effective_date: date(2027, 1, 1),
        policy: ChangePolicy::Dated,
        idempotency_key: key.into(),
    }
}

fn cost_change(to: Decimal) -> CostChange {
    CostChange {
        contract_id: "K1".into(),
        line_id: "L1".into(),
        product_identifier: "M365-BP".into(),
        expected_unit_cost: Decimal::new(1800, 2),
        new_unit_cost: to,
        effective_date: date(2027, 1, 1),
        idempotency_key: "cost-1".into(),
    }
}

#[tokio::test]
async fn a_0_1_and_a_0_2_guest_load_side_by_side_in_one_engine() {
    let engine = engine();
    let v01 = load(&engine, V01);
    let v02 = load(&engine, V02);
    assert_eq!((v01.api(), v01.api_version()), ("0.1.0", ApiVersion::V0_1));
    assert_eq!((v02.api(), v02.api_version()), ("0.2.0", ApiVersion::V0_2));
    assert!(
        v01.interface()
            .exports
            .contains(&"trueup:connector/psa@0.1.0".to_owned())
    );
    assert!(
        v02.interface()
            .exports
            .contains(&"trueup:connector/psa@0.2.0".to_owned())
    );
    // Each imports its own version of the host interfaces.
    assert!(
        v01.interface()
            .imports
            .iter()
            .all(|i| i.ends_with("@0.1.0")),
        "{:?}",
        v01.interface().imports
    );
    assert!(
        v02.interface()
            .imports
            .iter()
            .all(|i| i.ends_with("@0.2.0")),
        "{:?}",
        v02.interface().imports
    );
    // Both run, interleaved, in the same engine.
    let (mut a, mut b) = (session(&v01), session(&v02));
    assert_eq!(a.describe().await.expect("describe 0.1").id, V01);
    assert_eq!(b.describe().await.expect("describe 0.2").id, V02);
    let companies_a = a.list_companies(None).await.expect("0.1 companies");
    let companies_b = b.list_companies(None).await.expect("0.2 companies");
    assert_eq!(companies_a.items[0].name, "Contoso");
    assert_eq!(companies_b.items[0].name, "Contoso");
}

#[test]
fn trueup_plugin_inspect_shows_each_guests_api_version() {
    for (id, api) in [(V01, "0.1.0"), (V02, "0.2.0")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("trueup.toml");
        std::fs::write(&config, "data_dir = \"data\"\n").expect("write trueup.toml");
        let output = Command::new(trueup_binary())
            .arg("--config")
            .arg(&config)
            .args(["plugin", "inspect"])
            .arg(plugin_dir(id))
            .env_remove("TRUEUP_CONFIG")
            .output()
            .expect("run trueup plugin inspect");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.contains(&format!("api:         trueup:connector@{api}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("trueup:connector/psa@{api}")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_0_1_guest_still_syncs_and_writes_back_through_the_host() {
    let engine = engine();
    let plugin = load(&engine, V01);
    let mut psa = session(&plugin);
    let contracts = psa
        .list_contracts_with_terms(&ContractFilter::default(), None)
        .await
        .expect("contracts");
    assert_eq!(contracts.items.len(), 1);
    assert_eq!(
        contracts.items[0].contract.billing_cycle,
        BillingCycle::Annual
    );
    // 0.1 says nothing of anchors: explicitly absent, never invented.
    assert_eq!(contracts.items[0].terms.billing_anchor, None);
    assert!(contracts.skipped.is_empty());
    let lines = psa
        .list_services_with_terms(&["K1".to_owned()], None)
        .await
        .expect("lines");
    let kinds: Vec<_> = lines
        .items
        .iter()
        .map(|l| {
            (
                l.line.id.to_string(),
                l.terms.billing_kind,
                l.terms.commitment_end,
            )
        })
        .collect();
    // Derived as before 0.2: L1 billable at 26.40, L2 not billable.
    assert_eq!(
        kinds,
        vec![
            ("L1".to_owned(), BillingKind::Billed, None),
            ("L2".to_owned(), BillingKind::Included, None),
        ]
    );
    assert_eq!(lines.items[0].line.quantity, Decimal::from(10));
    // No catalogue: one empty last page.
    let catalog = psa.list_catalog(None).await.expect("catalogue");
    assert!(catalog.items.is_empty() && catalog.next_cursor.is_none());

    let change = quantity_change("L1", 10, 12, "q-1");
    let plan = psa.plan_quantity_change(&change).await.expect("plan");
    assert_eq!(plan[0].method, "PATCH");
    assert_eq!(plan[0].body.as_deref(), Some("{\"quantity\":\"12\"}"));
    let written = psa.apply_quantity_change(&change).await.expect("write");
    assert!(written.changed);
    assert_eq!(written.line.quantity, Decimal::from(12));
    assert_eq!(written.line_terms.billing_kind, BillingKind::Billed);
    // The same approval again writes nothing (idempotent), and a read-back
    // sees the new quantity.
    let again = psa.apply_quantity_change(&change).await.expect("retry");
    assert!(!again.changed);
    let read = psa.read_line("K1", "L1").await.expect("read back");
    assert_eq!(read.quantity, Decimal::from(12));
}

#[tokio::test]
async fn a_0_1_guest_asked_for_a_cost_change_gets_a_clear_error() {
    let engine = engine();
    let plugin = load(&engine, V01);
    let mut psa = session(&plugin);
    for error in [
        psa.plan_cost_change(&cost_change(Decimal::new(1950, 2)))
            .await
            .expect_err("0.1 has no cost change"),
        psa.apply_cost_change(&cost_change(Decimal::new(1950, 2)))
            .await
            .expect_err("0.1 has no cost change"),
    ] {
        assert!(
            matches!(error.kind, CallErrorKind::Unsupported { .. }),
            "{error:?}"
        );
        assert!(!error.is_trap() && !error.is_transient());
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("plugin {V01} 0.1.0, {}: {} needs trueup:connector@0.2.0 or later, but the plugin was built for 0.1.0", error.export, error.export)),
            "{text}"
        );
    }
    // Nothing was called: no instance was ever started.
    assert!(!psa.is_instantiated());
}

#[tokio::test]
async fn the_0_2_guests_new_terms_reach_the_host_types() {
    let engine = engine();
    let plugin = load(&engine, V02);
    let mut psa = session(&plugin);

    let contracts = psa
        .list_contracts_with_terms(&ContractFilter::default(), None)
        .await
        .expect("contracts");
    let anchors: Vec<_> = contracts
        .items
        .iter()
        .map(|c| (c.contract.id.to_string(), c.terms.billing_anchor))
        .collect();
    assert_eq!(
        anchors,
        vec![
            ("K1".to_owned(), Some(date(2026, 3, 1))),
            ("K2".to_owned(), None),
        ]
    );
    // One unreadable agreement is a named exclusion; the rest arrived.
    assert_eq!(contracts.skipped.len(), 1);
    assert_eq!(
        contracts.skipped[0].to_string(),
        "agreement K9: billStartDate \"31/02/2026\": not a date"
    );
    // The version-independent call carries the exclusion too.
    let plain = psa
        .list_contracts(&ContractFilter::default(), None)
        .await
        .expect("contracts");
    assert_eq!((plain.items.len(), plain.skipped.len()), (2, 1));

    let lines = psa
        .list_services_with_terms(&["K1".to_owned()], None)
        .await
        .expect("lines");
    let terms: Vec<_> = lines
        .items
        .iter()
        .map(|l| {
            (
                l.line.id.to_string(),
                l.terms.billing_kind,
                l.terms.commitment_end,
            )
        })
        .collect();
    assert_eq!(
        terms,
        vec![
            (
                "L1".to_owned(),
                BillingKind::Billed,
                Some(date(2027, 2, 28))
            ),
            ("L2".to_owned(), BillingKind::Included, None),
        ]
    );

    // The catalogue, followed page by page as a sync does.
    let mut products = Vec::new();
    let mut skipped = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = psa
            .list_catalog(cursor.as_deref())
            .await
            .expect("catalogue page");
        pages += 1;
        products.extend(page.items);
        skipped.extend(page.skipped);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let summary: Vec<_> = products
        .iter()
        .map(|p| (p.product_identifier.to_string(), p.unit_price, p.active))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("M365-BP".to_owned(), Some(Decimal::new(2640, 2)), true),
            // No price in the PSA: unknown, not zero.
            ("HUNTRESS-EDR".to_owned(), None, true),
            ("LEGACY-AV".to_owned(), Some(Decimal::new(500, 2)), false),
        ]
    );
    assert_eq!(products[0].unit_cost, Some(Decimal::new(1800, 2)));
    assert_eq!(products[0].billing_cycle, BillingCycle::Monthly);
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (skipped[0].id.as_str(), skipped[0].field.as_str()),
        ("P-BAD", "price")
    );

    // Cost write-back: planned, applied, idempotent, read back.
    let change = cost_change(Decimal::new(1950, 2));
    let plan = psa.plan_cost_change(&change).await.expect("plan");
    assert_eq!(plan[0].body.as_deref(), Some("{\"unitCost\":\"19.5\"}"));
    let written = psa.apply_cost_change(&change).await.expect("cost write");
    assert!(written.changed);
    assert_eq!(written.line.unit_cost, Decimal::new(1950, 2));
    assert_eq!(written.line_terms.commitment_end, Some(date(2027, 2, 28)));
    assert!(!psa.apply_cost_change(&change).await.expect("again").changed);
    let read = psa
        .read_line_with_terms("K1", "L1")
        .await
        .expect("read back");
    assert_eq!(read.line.unit_cost, Decimal::new(1950, 2));
    assert_eq!(read.terms.billing_kind, BillingKind::Billed);

    // Quantities write back through 0.2 as through 0.1.
    let written = psa
        .apply_quantity_change(&quantity_change("L1", 10, 11, "q-2"))
        .await
        .expect("quantity write");
    assert_eq!(written.line.quantity, Decimal::from(11));
}

/// A copy of the hostile guest's directory, with edits.
fn copy_plugin(
    to: &Path,
    manifest_edit: impl Fn(String) -> String,
    wasm_edit: impl Fn(Vec<u8>) -> Vec<u8>,
) {
    let from = plugin_dir("test.hostile");
    let manifest = std::fs::read_to_string(from.join("plugin.toml")).expect("manifest");
    std::fs::write(to.join("plugin.toml"), manifest_edit(manifest)).expect("write manifest");
    let wasm = std::fs::read(from.join("plugin.wasm")).expect("component");
    std::fs::write(to.join("plugin.wasm"), wasm_edit(wasm)).expect("write component");
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(
        from.len(),
        to.len(),
        "same length keeps the binary's layout"
    );
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn a_manifest_for_an_unsupported_api_is_refused_before_the_component_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(
        dir.path(),
        |m| m.replace("api = \"0.1.0\"", "api = \"0.9.0\""),
        |w| w,
    );
    // Without the component, a later check would fail with an I/O error:
    // the refusal must come first.
    std::fs::remove_file(dir.path().join("plugin.wasm")).expect("remove");
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("unsupported API");
    assert!(
        matches!(error, LoadError::IncompatibleApi { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "plugin test.hostile 0.1.0 was built for trueup:connector@0.9.0; this host supports 0.1.0–0.2.x. Rebuild it against a supported trueup-connector SDK, or upgrade Trueup"
    );
}

#[test]
fn a_component_exporting_an_unsupported_api_is_refused_before_compiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(
        dir.path(),
        |m| m,
        |w| replace_all(&w, b"connector/vendor@0.1.0", b"connector/vendor@0.7.0"),
    );
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("unsupported API");
    assert_eq!(
        error.to_string(),
        "plugin test.hostile 0.1.0 was built for trueup:connector@0.7.0; this host supports 0.1.0–0.2.x. Rebuild it against a supported trueup-connector SDK, or upgrade Trueup"
    );
}

#[test]
fn a_manifest_that_lies_about_the_world_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(
        dir.path(),
        |m| m.replace("kind = \"vendor\"", "kind = \"psa\""),
        |w| w,
    );
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("mismatch");
    assert_eq!(
        error.to_string(),
        "plugin test.hostile: plugin.toml says kind = \"psa\" but the component implements the vendor-connector world"
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(dir.path(), |m| m, |_| b"\0asm\x01\0\0\0".to_vec());
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("core module");
    assert_eq!(
        error.to_string(),
        "plugin test.hostile: this is a core WebAssembly module, not a component; build it with scripts/setup (or `wasm-tools component new`)"
    );
}

#[test]
fn garbage_is_not_webassembly() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(dir.path(), |m| m, |_| b"MZ not wasm".to_vec());
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("garbage");
    assert!(
        error
            .to_string()
            .starts_with("plugin test.hostile: not a WebAssembly binary: "),
        "{error}"
    );
}

#[test]
fn a_0_1_component_claiming_0_2_in_its_manifest_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_plugin(
        dir.path(),
        |m| m.replace("api = \"0.1.0\"", "api = \"0.2.0\""),
        |w| w,
    );
    let error = LoadedPlugin::load(
        &engine(),
        dir.path(),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect_err("mismatch");
    assert_eq!(
        error.to_string(),
        "plugin test.hostile: plugin.toml says api = \"0.2.0\" but the component was built for trueup:connector@0.1.0"
    );
}

#[test]
fn the_supported_version_loads() {
    let plugin = LoadedPlugin::load(
        &engine(),
        &plugin_dir("test.hostile"),
        &hostile_settings("loop", "http://127.0.0.1:9"),
    )
    .expect("loads");
    assert_eq!(plugin.api(), "0.1.0");
    assert!(
        plugin
            .interface()
            .exports
            .contains(&"trueup:connector/vendor@0.1.0".to_owned())
    );
}
