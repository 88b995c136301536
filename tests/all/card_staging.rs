//! Staged changes and the confirmation before a PSA write (issue 13),
//! through the REST API over a reconciled demo month-end (the bundled
//! emulators, the shipped connectors, SQLite):
//!
//! - `POST /api/v1/cards/stage` stages an effective date on a selection,
//!   refusing a card an approval could not change, and writes nothing: no
//!   outbox entry, no PSA request (the ConnectWise emulator's write log);
//! - the card list shows the staged date, and it survives a re-reconcile;
//! - `POST /api/v1/decisions/preview` lists what approving would write —
//!   account, service, from → to, unit price, monthly effect, the staged
//!   date — with totals, still writing nothing;
//! - approving uses the staged date and consumes the stage;
//! - `GET /api/v1/cards?write_back=` filters by where the write-back stands.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use trueup::app::App;
use trueup::auth::Role;
use trueup::demo;
use trueup::server::Workers;
use trueup_core::card::{CardCategory, ServiceCard};

use crate::support::repo_root;
use crate::web_auth::{Client, add_token, serve};

fn dec(value: &serde_json::Value) -> Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a decimal string: {value}"))
        .parse()
        .expect("decimal")
}

async fn emulator_writes(base: &str) -> usize {
    let body = reqwest::get(format!("{base}/_emulator/connectwise/writes"))
        .await
        .expect("writes")
        .text()
        .await
        .expect("body");
    serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .expect("a JSON list")
        .len()
}

fn listed<'a>(page: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    page["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("card {key} is listed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_date_is_confirmed_then_approved_and_nothing_is_written_before() {
    let today = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
    let emulators = demo::start_emulators(7, 40, today, IpAddr::V4(Ipv4Addr::LOCALHOST))
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
    for (source, outcome) in app.sync_all().await {
        outcome.unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    app.reconcile().await.expect("reconcile");
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("run")
        .expect("a run");
    let cards: Vec<ServiceCard> = app.store().run_cards(run.id).await.expect("cards");
    let token = add_token(&app, "approver", Role::Approver).await;
    // No workers: a write-back enqueued stays in the outbox, so "nothing
    // was written" is read from the outbox and the emulator alike.
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
    let http = Client::with_token(&server.base, &token);
    let cw = emulators.connectwise.base_url.clone();
    let writes_before = emulator_writes(&cw).await;

    let chosen: Vec<&ServiceCard> = cards
        .iter()
        .filter(|c| c.category == CardCategory::Reconcile && c.line.is_some())
        .filter(|c| c.money.is_some() && c.target_quantity.is_some())
        .take(2)
        .collect();
    assert_eq!(chosen.len(), 2, "two quantity-differs cards on lines");
    let no_change = cards
        .iter()
        .find(|c| c.category == CardCategory::NoChange)
        .expect("a no-change card");
    let keys: Vec<&str> = chosen.iter().map(|c| c.key.as_str()).collect();
    let date = "2026-12-15";

    // Stage: two staged, the no-change card refused with the reason.
    let mut selection = keys.clone();
    selection.push(no_change.key.as_str());
    let staged = http
        .post(
            "/api/v1/cards/stage",
            serde_json::json!({ "cards": selection, "effective_date": date }),
        )
        .await;
    assert_eq!(staged.status, 200, "{}", staged.text);
    let staged = staged.json();
    assert_eq!(staged["staged"], serde_json::json!(keys), "{staged}");
    assert_eq!(staged["refused"][0][0], no_change.key.as_str(), "{staged}");
    assert!(
        staged["refused"][0][1]
            .as_str()
            .is_some_and(|why| why.contains("nothing would change")),
        "{staged}"
    );
    let empty = http
        .post("/api/v1/cards/stage", serde_json::json!({ "cards": keys }))
        .await;
    assert_eq!(
        empty.status, 400,
        "staging nothing is refused: {}",
        empty.text
    );

    // Nothing written anywhere but the card's state.
    for c in &chosen {
        assert!(
            app.store()
                .outbox_for_card(&c.key)
                .await
                .expect("outbox")
                .is_empty(),
            "staging enqueued a write-back for {}",
            c.key
        );
    }
    assert_eq!(emulator_writes(&cw).await, writes_before);

    // The list shows the stage (open, staged date); so does a re-reconcile
    // of the same cards (same numbers: not flagged).
    let page = http.get("/api/v1/cards?limit=1000").await.json();
    for key in &keys {
        let card = listed(&page, key);
        assert_eq!(card["status"], "open", "{card}");
        assert_eq!(card["state"]["staged"]["effective_date"], date, "{card}");
    }
    app.reconcile().await.expect("reconcile again");
    let page = http.get("/api/v1/cards?limit=1000").await.json();
    assert_ne!(page["run"]["id"], run.id.0, "a new run is listed");
    for key in &keys {
        let card = listed(&page, key);
        assert_eq!(card["state"]["staged"]["effective_date"], date, "{card}");
        assert!(card.get("stage_numbers_changed").is_none(), "{card}");
    }

    // The confirmation: what approving would write, with the staged date.
    let body = serde_json::json!({ "cards": keys, "action": { "action": "approve" } });
    let preview = http.post("/api/v1/decisions/preview", body.clone()).await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    let preview = preview.json();
    let writes = preview["writes"].as_array().expect("writes");
    assert_eq!(writes.len(), 2, "{preview}");
    let (mut quantity, mut monthly) = (Decimal::ZERO, Decimal::ZERO);
    for (write, card) in writes.iter().zip(&chosen) {
        assert_eq!(write["card_key"], card.key.as_str());
        assert_eq!(write["effective_date"], date, "the staged date: {write}");
        assert_eq!(
            write["company"],
            card.company.as_ref().expect("company").as_str()
        );
        assert_eq!(
            write["product"],
            card.product.as_ref().expect("product").as_str()
        );
        let (from, to) = (dec(&write["from_quantity"]), dec(&write["to_quantity"]));
        assert_eq!(Some(from), card.psa_quantity);
        assert_eq!(Some(to), card.target_quantity);
        let price = card.money.as_ref().expect("money").unit_price;
        assert_eq!(dec(&write["unit_price"]), price);
        // The demo's contracts bill monthly.
        let effect = dec(&write["monthly_effect"]);
        assert_eq!(effect, ((to - from) * price).round_dp(2), "{write}");
        quantity += to - from;
        monthly += effect;
    }
    assert_eq!(preview["totals"]["writes"], 2);
    assert_eq!(dec(&preview["totals"]["quantity_change"]), quantity);
    assert_eq!(dec(&preview["totals"]["monthly_effect"]), monthly);
    assert_eq!(preview["refused"], serde_json::json!([]));
    // Previewing wrote nothing either.
    for c in &chosen {
        assert!(
            app.store()
                .outbox_for_card(&c.key)
                .await
                .expect("outbox")
                .is_empty()
        );
    }
    assert_eq!(emulator_writes(&cw).await, writes_before);

    // Approve: the write-backs carry the staged date; the stage is used up.
    let decided = http.post("/api/v1/decisions", body).await;
    assert_eq!(decided.status, 200, "{}", decided.text);
    let decided = decided.json();
    assert_eq!(decided["write_backs"], 2, "{decided}");
    for c in &chosen {
        let entries = app.store().outbox_for_card(&c.key).await.expect("outbox");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].change["effective_date"], date);
        let state = app
            .store()
            .card_state(&c.key)
            .await
            .expect("state")
            .expect("a state");
        assert_eq!(state.staged, None, "the approval consumed the stage");
    }

    // The write-back filter.
    let pending = http
        .get("/api/v1/cards?write_back=pending&limit=1000")
        .await;
    assert_eq!(pending.status, 200, "{}", pending.text);
    let pending: BTreeSet<String> = pending.json()["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| c["key"].as_str().expect("key").to_owned())
        .collect();
    let expected: BTreeSet<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(pending, expected);
    for state in ["needs_review", "failed", "applied"] {
        let page = http
            .get(&format!("/api/v1/cards?write_back={state}"))
            .await
            .json();
        assert_eq!(page["total"], 0, "{state}: {page}");
    }
    let bad = http.get("/api/v1/cards?write_back=sideways").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("needs_review"), "{}", bad.text);
    assert_eq!(emulator_writes(&cw).await, writes_before);
}
