//! The conformance kit (`trueup plugin test`): every shipped PSA connector
//! passes the standard scenario against its bundled emulator, and the kit
//! fails a connector that misbehaves. Also the requests-per-sync figures of
//! a 2,000-company PSA (issue 14).

use std::net::SocketAddr;
use std::sync::Arc;

use trueup_conformance::psa::{self, Against, SCENARIO_SEED, Scenario, full_sync};
use trueup_emulators::world::World;
use trueup_plugin_host::{ContractFilter, PluginSettings};

use crate::connector_harness::as_of;
use crate::support::{engine, plugin_dir};

async fn run(id: &str, against: Against, settings: PluginSettings) -> psa::Report {
    psa::run(
        &engine(),
        &plugin_dir(id),
        &settings,
        against,
        &Scenario::standard(as_of()),
    )
    .await
    .unwrap_or_else(|e| panic!("{id} against {against}: {e}"))
}

/// Rows of a complete scenario: 17 before issue 14, plus stable product
/// ids, tokens per lifetime, a 429 mid-listing, capped pages and one
/// malformed record.
const CHECKS: usize = 22;

/// The scenario's add-a-line rows ran and passed.
fn assert_added_a_line(report: &psa::Report) {
    let rows: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.name.starts_with("add:") && c.passed)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        rows,
        [
            "add: plan lists the calls, sends no write",
            "add: a new line as planned, at the catalogue price",
            "add: read-back shows the added line",
            "add: repeated add changes nothing",
        ],
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectwise_passes_the_scenario() {
    let report = run(
        "trueup.connectwise",
        Against::ConnectWise,
        PluginSettings::default(),
    )
    .await;
    assert!(report.passed(), "{report}");
    assert_eq!(report.checks.len(), CHECKS, "{report}");
    assert_added_a_line(&report);
    assert_real_server_rows(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autotask_passes_the_scenario() {
    let report = run(
        "trueup.autotask",
        Against::Autotask,
        PluginSettings::default(),
    )
    .await;
    assert!(report.passed(), "{report}");
    assert_eq!(report.checks.len(), CHECKS, "{report}");
    assert_added_a_line(&report);
    assert_real_server_rows(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halopsa_passes_the_scenario() {
    let report = run(
        "trueup.halopsa",
        Against::HaloPsa,
        PluginSettings::default(),
    )
    .await;
    assert!(report.passed(), "{report}");
    assert_eq!(report.checks.len(), CHECKS, "{report}");
    assert_added_a_line(&report);
    assert_real_server_rows(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_pointed_at_the_wrong_emulator_fails_loudly() {
    // The Halo connector cannot talk to the ConnectWise emulator: the kit
    // must report failures, not pass.
    let report = run(
        "trueup.halopsa",
        Against::ConnectWise,
        PluginSettings::default(),
    )
    .await;
    assert!(!report.passed(), "{report}");
    assert!(report.to_string().contains("FAIL"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_call_still_reads_everything() {
    // One addition per call: the cursor moves agreement by agreement and
    // the kit's truth check still finds every customer's lines.
    let settings = PluginSettings {
        config: [("lines_per_call".to_owned(), "1".to_owned())].into(),
        ..PluginSettings::default()
    };
    let report = run("trueup.connectwise", Against::ConnectWise, settings).await;
    let sync = report
        .checks
        .iter()
        .find(|c| c.name == "services match the billing truth")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(sync.passed, "{report}");
}

#[test]
fn emulator_names_parse() {
    for against in Against::ALL {
        assert_eq!(against.name().parse::<Against>(), Ok(against));
    }
    assert_eq!("halo-psa".parse::<Against>(), Ok(Against::HaloPsa));
    let error = "syncro".parse::<Against>().expect_err("not bundled");
    assert!(error.contains("connectwise, autotask, halopsa"), "{error}");
}

/// The issue-14 rows ran and passed: product keys are ids, no token storm,
/// a 429 waited out, and paging to the end under a page cap.
fn assert_real_server_rows(report: &psa::Report) {
    for name in [
        "stable ids as product keys",
        "at most one token per token lifetime",
        "429 with Retry-After honoured, the listing finishes",
        "paging to the end when the server caps pages",
        "one malformed record is reported by name (WIT 0.1: the sync fails)",
    ] {
        let row = report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no row {name:?}: {report}"));
        assert!(row.passed, "{name}: {report}");
    }
}

/// Companies in the requests-per-sync world.
const SYNC_COMPANIES: usize = 2_000;

/// Requests per sync of a 2,000-company PSA through ConnectWise and
/// Autotask (issue 14): a full sync (every company, every contract of every
/// type, every contract's services) against an emulator over a world of
/// 2,000 customers, counting what the emulator answered. Prints requests
/// per company and the share of token requests (and Autotask's zone
/// lookups); asserts neither PSA requests a token, and bounds the requests
/// per company so a connector that starts reading line by line is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_sync_of_2000_companies() {
    let engine = engine();
    for (id, against, bound) in [
        // Measured on 7 December 2026: ConnectWise 1.34 requests a
        // company; the bounds leave room, not a connector reading line by
        // line (a request per agreement alone would be ~2.3).
        ("trueup.connectwise", Against::ConnectWise, 2.0),
        ("trueup.autotask", Against::Autotask, 2.0),
    ] {
        let world = Arc::new(World::new(SCENARIO_SEED, SYNC_COMPANIES));
        let running = trueup_emulators::start(
            against.kind(),
            world.clone(),
            against.emulator_settings(as_of()),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("emulator");
        let connection = psa::connect(
            &engine,
            &plugin_dir(id),
            &PluginSettings::default(),
            against,
            &running.base_url,
            as_of(),
        )
        .expect("loads");
        let mut session = connection.session().expect("session");
        let filter = ContractFilter {
            types: Vec::new(),
            active_only: false,
        };
        let synced = full_sync(&mut session, &filter).await.expect("full sync");
        let stats = running.faults.stats();
        let count = |suffix: &str| -> u64 {
            stats
                .by_route
                .iter()
                .filter(|(route, _)| route.to_ascii_lowercase().ends_with(suffix))
                .map(|(_, n)| n)
                .sum()
        };
        let (tokens, zones) = (count("/token"), count("/zoneinformation"));
        let companies = synced.companies.len();
        // Floats only for the printed ratios.
        let per_company = stats.total as f64 / companies as f64;
        println!(
            "{against}: {} requests for {companies} companies, {} contracts, {} lines in {:.1?}: \
             {per_company:.3} requests a company; token requests {tokens} ({:.1}%), zone lookups {zones}",
            stats.total,
            synced.contracts.len(),
            synced.lines.len(),
            synced.elapsed,
            100.0 * tokens as f64 / stats.total.max(1) as f64,
        );
        let customers = world.psa_customers().count();
        assert!(
            companies >= customers,
            "{against}: {companies} companies for {customers} PSA customers"
        );
        assert_eq!(tokens, 0, "{against} has no tokens to request");
        assert!(zones <= 1, "{against}: {zones} zone lookups");
        assert!(
            per_company <= bound,
            "{against}: {per_company:.3} requests a company, more than {bound}"
        );
    }
}
