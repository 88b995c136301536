//! One mapping path: the SKU table an MSP edits in the UI
//! (`PUT /api/v1/mappings/skus`) is read by the live reconcile, the rules
//! dry run and explain, before the active rules; an entry is checked when
//! it is saved. (Seen: the table was stored and shown, but the server
//! mapped by the rules alone, so an MSP's entry changed nothing.)

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::http::Method;
use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use trueup::app::App;
use trueup::auth::Role;
use trueup::demo;
use trueup::server::Workers;
use trueup_core::card::ServiceCard;
use trueup_core::mapping::SKU_TABLE_RULE;

use crate::support::repo_root;
use crate::web_auth::{Client, add_token, serve};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
}

/// The cards of the latest run.
async fn latest_cards(app: &App) -> Vec<ServiceCard> {
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("run")
        .expect("a run");
    app.store().run_cards(run.id).await.expect("cards")
}

/// Billable vendor quantity on the cards of `product`, and whether any of
/// them was decided by the SKU table.
fn product_usage(cards: &[ServiceCard], product: &str) -> (Decimal, bool) {
    let mut total = Decimal::ZERO;
    let mut by_table = false;
    for card in cards
        .iter()
        .filter(|c| c.product.as_ref().map(|p| p.as_str()) == Some(product))
    {
        if let Some(v) = card.vendor_quantity {
            total += v.billable;
        }
        by_table |= card
            .mappings
            .iter()
            .any(|m| m.trace.steps.iter().any(|s| &*s.rule == SKU_TABLE_RULE));
    }
    (total, by_table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sku_table_decides_before_the_rules_everywhere() {
    let emulators = demo::start_emulators(7, 12, today(), IpAddr::V4(Ipv4Addr::LOCALHOST))
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
        .expect("app");
    for (plugin, name, value) in demo::secrets() {
        app.set_secret(plugin, name, value, "test")
            .await
            .expect("secret");
    }
    let admin_token = add_token(&app, "admin", Role::Admin).await;
    let server = serve(
        app.clone(),
        Workers {
            jobs: false,
            scheduler: false,
            write_back: false,
        },
        Some(dir),
    )
    .await;
    let admin = Client::with_token(&server.base, &admin_token);
    let put = |body: serde_json::Value| {
        let admin = &admin;
        async move {
            admin
                .send(Method::PUT, "/api/v1/mappings/skus", Some(body))
                .await
        }
    };

    // Before any PSA sync nothing can be checked: refused, saying why.
    let early =
        put(serde_json::json!({"vendor": "microsoft-365", "sku": "SPB", "product": "M365-BS"}))
            .await;
    assert_eq!(early.status, 409, "{}", early.text);
    assert!(early.text.contains("sync the PSA first"), "{}", early.text);

    for (source, outcome) in app.sync_all().await {
        outcome.unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    app.reconcile().await.expect("reconcile");
    let before = latest_cards(&app).await;
    let (bp_before, by_table) = product_usage(&before, "M365-BP");
    assert!(bp_before > Decimal::ZERO, "the demo bills Business Premium");
    assert!(!by_table, "no table yet: the rules decide");
    let (bs_before, _) = product_usage(&before, "M365-BS");

    // Checked on save: bad multipliers and products the PSA does not know.
    for (body, expected) in [
        (
            serde_json::json!({"vendor": "microsoft-365", "sku": "SPB", "product": "M365-BS", "multiplier": "0"}),
            "must be more than 0",
        ),
        (
            serde_json::json!({"vendor": "microsoft-365", "sku": "SPB", "product": "M365-BS", "multiplier": "1000000"}),
            "largest allowed",
        ),
        (
            serde_json::json!({"vendor": "microsoft-365", "sku": "SPB", "product": "NO-SUCH-PRODUCT"}),
            "not in the PSA's catalogue",
        ),
        (
            serde_json::json!({"vendor": "", "sku": "SPB", "product": "M365-BS"}),
            "`vendor` is empty",
        ),
    ] {
        let answer = put(body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert!(answer.text.contains(expected), "{body}: {}", answer.text);
    }
    let table = admin.get("/api/v1/mappings/skus").await.json();
    assert_eq!(
        table.as_array().map(Vec::len),
        Some(0),
        "nothing refused was stored"
    );

    // The rules map SPB to M365-BP; the MSP's table says M365-BS × 1.
    let saved =
        put(serde_json::json!({"vendor": "microsoft-365", "sku": "SPB", "product": "M365-BS"}))
            .await;
    assert_eq!(saved.status, 204, "{}", saved.text);

    // The live reconcile reads it.
    app.reconcile().await.expect("reconcile");
    let after = latest_cards(&app).await;
    let (bs_after, bs_by_table) = product_usage(&after, "M365-BS");
    assert!(bs_by_table, "M365-BS cards say the SKU table decided");
    assert!(
        bs_after > bs_before,
        "SPB usage now counts as Business Standard: {bs_before} → {bs_after}"
    );
    assert!(
        after
            .iter()
            .all(|c| c.mapper_version.contains("sku-table-")),
        "every card names the table in its mapper version"
    );

    // Explain names the table for the SKU it decides.
    let snapshot = app.current_snapshot(today()).await.expect("snapshot").0;
    let account = snapshot
        .usage
        .iter()
        .find(|u| u.vendor.as_str() == "microsoft-365" && u.sku_id.as_str() == "SPB")
        .map(|u| u.account.as_str().to_owned())
        .expect("an account with SPB");
    let explained = admin
        .post(
            "/api/v1/rules/explain",
            serde_json::json!({"vendor": "microsoft-365", "account": account, "sku": "SPB"}),
        )
        .await;
    assert_eq!(explained.status, 200, "{}", explained.text);
    let text = explained.json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("M365-BS ×1"), "{text}");
    assert!(text.contains(SKU_TABLE_RULE), "{text}");

    // The rules dry run reads it on both sides: the active rules as a draft
    // change nothing, so no card differs.
    let rules = admin.get("/api/v1/rules").await.json();
    let source = rules["active"]["source"].as_str().map(str::to_owned);
    if let Some(source) = source {
        let dry = admin
            .post(
                "/api/v1/rules/dry-run",
                serde_json::json!({"source": source}),
            )
            .await;
        assert_eq!(dry.status, 200, "{}", dry.text);
        let diff = &dry.json()["diff"];
        for side in ["added", "removed", "changed"] {
            assert_eq!(
                diff[side].as_array().map(Vec::len),
                Some(0),
                "{side}: {diff}"
            );
        }
        for side in ["before_version", "after_version"] {
            let version = diff[side].as_str().unwrap_or_default();
            assert!(version.contains("sku-table-"), "{side} {version:?}");
        }
    } else {
        panic!("the demo activates its rules: {rules}");
    }
}
