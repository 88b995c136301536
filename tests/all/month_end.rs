//! The MSP's month-end, end to end on the embedded default (SQLite): the
//! bundled emulators, the shipped WASM connectors, the default rules —
//! sync, reconcile into cards of every category, dry-run an approval,
//! approve, write back to the PSA exactly once.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use trueup::app::App;
use trueup::app::decide::quantity_change;
use trueup::app::writeback::WriteBackResult;
use trueup::demo;
use trueup_core::actions::{Action, DecisionContext, Resolution, decide};
use trueup_core::card::{CardCategory, ServiceCard};

use crate::support::repo_root;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
}

/// The ConnectWise emulator's write log (successful and refused writes).
async fn writes(base: &str) -> Vec<serde_json::Value> {
    let url = format!("{base}/_emulator/connectwise/writes");
    let body = reqwest::get(&url)
        .await
        .expect("GET writes")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&body).expect("a JSON list of writes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_end_from_sync_to_write_back() {
    let emulators = demo::start_emulators(42, 60, today(), IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .expect("emulators");
    let dir = tempfile::tempdir().expect("tempdir");
    let (plugins, rules) = demo::repo_paths(&repo_root());
    let config = demo::config(dir.path(), &plugins, &rules, &emulators);
    let now = Utc
        .with_ymd_and_hms(2026, 11, 25, 18, 0, 0)
        .single()
        .expect("now");
    let app = App::open_with_clock(Arc::new(config), Arc::new(move || now))
        .await
        .expect("app opens");
    for (plugin, name, value) in demo::secrets() {
        app.set_secret(plugin, name, value, "test")
            .await
            .expect("secret");
    }

    // Sync every source.
    for (source, outcome) in app.sync_all().await {
        let summary = outcome.unwrap_or_else(|e| panic!("{source} failed to sync: {e}"));
        assert!(summary.records > 0, "{source} read nothing");
    }
    let health = app.store().sync_health().await.expect("health");
    assert_eq!(health.len(), 5, "the PSA and four vendors");

    // Reconcile: every category shows.
    let summary = app.reconcile().await.expect("reconcile");
    assert!(
        summary.rules.starts_with("rules/"),
        "cards record the rule version"
    );
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("run")
        .expect("a run");
    let cards = app.store().run_cards(run.id).await.expect("cards");
    let categories: BTreeSet<CardCategory> = cards.iter().map(|c| c.category).collect();
    for wanted in [
        CardCategory::NewRevenue,
        CardCategory::Reconcile,
        CardCategory::NoChange,
        CardCategory::NoVendorData,
        CardCategory::Unmapped,
    ] {
        assert!(
            categories.contains(&wanted),
            "no {wanted:?} card among {categories:?}"
        );
    }
    assert!(
        !categories.contains(&CardCategory::RuleError),
        "the default rules must not fail on the emulators' data"
    );

    // Dry run of an approval: the exact calls, no write.
    let card: &ServiceCard = cards
        .iter()
        .find(|c| c.category == CardCategory::Reconcile && c.line.is_some())
        .expect("a quantity-differs card on a line");
    let resolution = decide(
        card,
        &Action::Approve,
        &DecisionContext {
            decision_id: "dry-run",
            today: today(),
        },
    )
    .expect("approvable");
    let Resolution::WriteBack(pending) = resolution else {
        panic!("an approval writes back");
    };
    let cw = emulators.connectwise.base_url.clone();
    let before = writes(&cw).await.len();
    let plan = app
        .plan_change(&quantity_change(&pending))
        .await
        .expect("plan");
    assert!(!plan.is_empty(), "the plan lists the calls");
    assert!(
        plan.iter().any(|c| c.method != "GET"),
        "it writes something: {plan:?}"
    );
    assert_eq!(writes(&cw).await.len(), before, "a dry run writes nothing");

    // Approve → outbox → write-back, exactly once.
    let outcome = app
        .decide(Some(run.id), &[card.key], &Action::Approve, "approver@test")
        .await
        .expect("decided");
    assert_eq!(outcome.write_backs, 1);
    let results = app.write_back_due().await.expect("write back");
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        matches!(&results[0], WriteBackResult::Applied { changed: true, .. }),
        "{results:?}"
    );
    let after = writes(&cw).await.len();
    assert!(after > before, "the PSA received the change");
    // Nothing more is due, and approving the same card again is refused by
    // the outbox's idempotency key (the same decision cannot write twice).
    assert!(app.write_back_due().await.expect("idle").is_empty());
    assert_eq!(writes(&cw).await.len(), after, "applied exactly once");
    let state = app
        .store()
        .card_state(&card.key)
        .await
        .expect("state")
        .expect("the card has a state");
    assert!(format!("{state:?}").contains("Applied"), "{state:?}");
}
