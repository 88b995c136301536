//! The conformance kit (`trueup plugin test`): every shipped PSA connector
//! passes the standard scenario against its bundled emulator, and the kit
//! fails a connector that misbehaves.

use trueup_conformance::psa::{self, Against, Scenario};
use trueup_plugin_host::PluginSettings;

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
    assert_eq!(report.checks.len(), 17, "{report}");
    assert_added_a_line(&report);
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
    assert_eq!(report.checks.len(), 17, "{report}");
    assert_added_a_line(&report);
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
    assert_eq!(report.checks.len(), 17, "{report}");
    assert_added_a_line(&report);
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
