//! The REST API over a reconciled demo environment (the bundled
//! emulators, the shipped connectors, the default rules, SQLite): card
//! lists with filters, groups, totals and pagination; a card in full;
//! the dry-run plan; bulk decisions and "set effective date"; tags and
//! notes; write-back progress on the card after the worker runs; CSV
//! export; live events. One environment, one test: building it is the
//! slow part.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use trueup::app::App;
use trueup::auth::Role;
use trueup::demo;
use trueup::server::Workers;
use trueup_core::card::{CardCategory, ServiceCard, totals};

use crate::support::repo_root;
use crate::web_auth::{Client, add_token, serve};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
}

async fn emulator_writes(base: &str) -> usize {
    let url = format!("{base}/_emulator/connectwise/writes");
    let body = reqwest::get(&url)
        .await
        .expect("writes")
        .text()
        .await
        .expect("body");
    serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .expect("a JSON list")
        .len()
}

fn dec(value: &serde_json::Value) -> Decimal {
    value
        .as_str()
        .expect("a decimal string")
        .parse()
        .expect("decimal")
}

fn keys(page: &serde_json::Value) -> Vec<String> {
    page["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| c["key"].as_str().expect("key").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_a_reconciled_month_end() {
    let emulators = demo::start_emulators(7, 40, today(), IpAddr::V4(Ipv4Addr::LOCALHOST))
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
    let viewer_token = add_token(&app, "viewer", Role::Viewer).await;
    let approver_token = add_token(&app, "approver", Role::Approver).await;
    let server = serve(
        app.clone(),
        Workers {
            jobs: false,
            scheduler: false,
            write_back: true,
        },
        Some(dir),
    )
    .await;
    let viewer = Client::with_token(&server.base, &viewer_token);
    let approver = Client::with_token(&server.base, &approver_token);

    // Pages walk every card once, in run order.
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/api/v1/cards?limit=37&after={a}"),
            None => "/api/v1/cards?limit=37".to_owned(),
        };
        let page = viewer.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        assert_eq!(page["total"], cards.len());
        assert_eq!(page["run"]["id"], run.id.0);
        seen.extend(keys(&page));
        match page["next"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = cards.iter().map(|c| c.key.as_str().to_owned()).collect();
    assert_eq!(
        seen, expected,
        "pagination covers every card once, in order"
    );

    // Filters.
    let reconcile: Vec<&ServiceCard> = cards
        .iter()
        .filter(|c| c.category == CardCategory::Reconcile)
        .collect();
    assert!(reconcile.len() >= 8, "enough cards to decide on");
    let page = viewer
        .get("/api/v1/cards?category=reconcile&limit=1000")
        .await
        .json();
    assert_eq!(page["total"], reconcile.len());
    assert!(
        page["cards"]
            .as_array()
            .expect("cards")
            .iter()
            .all(|c| c["category"] == "reconcile")
    );
    let both = viewer
        .get("/api/v1/cards?category=reconcile,new_revenue&limit=1")
        .await
        .json();
    assert_eq!(
        both["total"],
        cards
            .iter()
            .filter(|c| matches!(
                c.category,
                CardCategory::Reconcile | CardCategory::NewRevenue
            ))
            .count()
    );
    let company = reconcile[0].company.clone().expect("company");
    let page = viewer
        .get(&format!("/api/v1/cards?company={company}&limit=1000"))
        .await
        .json();
    assert_eq!(
        page["total"],
        cards
            .iter()
            .filter(|c| c.company.as_ref() == Some(&company))
            .count()
    );
    let page = viewer
        .get("/api/v1/cards?vendor=ninjaone&limit=1000")
        .await
        .json();
    let ninja = cards
        .iter()
        .filter(|c| c.vendors.iter().any(|v| v.as_str() == "ninjaone"))
        .count();
    assert!(ninja > 0);
    assert_eq!(page["total"], ninja);
    let bad = viewer.get("/api/v1/cards?category=lost").await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "bad_request"));

    // Totals and groups agree with the core's arithmetic.
    let expected_totals = totals(&cards);
    let answer = viewer.get("/api/v1/cards/totals").await.json();
    assert_eq!(dec(&answer["totals"]["at_stake"]), expected_totals.at_stake);
    assert_eq!(
        dec(&answer["totals"]["under_billed"]),
        expected_totals.under_billed
    );
    assert_eq!(
        dec(&answer["totals"]["over_billed"]),
        expected_totals.over_billed
    );
    assert!(expected_totals.at_stake > Decimal::ZERO);
    for by in ["company", "contract", "product", "category", "status"] {
        let groups = viewer.get(&format!("/api/v1/cards/groups?by={by}")).await;
        assert_eq!(groups.status, 200, "{by}: {}", groups.text);
        let groups = groups.json();
        let count: u64 = groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["totals"]["cards"].as_object().expect("counts").values())
            .map(|n| n.as_u64().expect("count"))
            .sum();
        assert_eq!(count as usize, cards.len(), "groups by {by} add up");
    }

    // One card in full.
    let card = reconcile
        .iter()
        .find(|c| c.line.is_some() && !c.usage_rows.is_empty())
        .expect("a reconcile card on a line with usage");
    let detail = viewer.get(&format!("/api/v1/cards/{}", card.key)).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    let detail = detail.json();
    assert_eq!(detail["status"], "open");
    assert_eq!(detail["card"]["key"], card.key.as_str());
    assert!(detail["card"]["money"]["delta"].is_string());
    assert!(detail["card"]["change"]["effective"]["date"].is_string());
    assert!(
        !detail["trace"][0]["steps"]
            .as_array()
            .expect("steps")
            .is_empty()
    );
    assert_eq!(detail["usage"]["available"], true);
    assert_eq!(detail["usage"]["total"], card.usage_rows.len());
    assert_eq!(
        detail["usage"]["rows"].as_array().expect("rows").len(),
        card.usage_rows.len().min(500)
    );
    assert!(detail["policy"].is_string());
    assert_eq!(viewer.get("/api/v1/cards/not-a-key").await.status, 400);
    assert_eq!(
        viewer
            .get("/api/v1/cards/0123456789abcdef0123456789abcdef")
            .await
            .status,
        404
    );

    // Dry run: the exact calls, nothing written.
    let cw = emulators.connectwise.base_url.clone();
    let writes_before = emulator_writes(&cw).await;
    let plan = approver
        .post(
            &format!("/api/v1/cards/{}/plan", card.key),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    let plan = plan.json();
    assert_eq!(plan["pending"], false);
    assert_eq!(
        plan["change"]["new_quantity"],
        detail["card"]["target_quantity"]
    );
    let calls = plan["calls"].as_array().expect("calls");
    assert!(calls.iter().any(|c| c["method"] != "GET"), "{calls:?}");
    assert_eq!(
        emulator_writes(&cw).await,
        writes_before,
        "a dry run writes nothing"
    );
    assert_eq!(
        viewer
            .post(
                &format!("/api/v1/cards/{}/plan", card.key),
                serde_json::json!({})
            )
            .await
            .status,
        403,
        "viewers do not dry-run write-backs"
    );

    // Bulk approval: the valid cards are decided, the others refused with why.
    let approve: Vec<&ServiceCard> = reconcile
        .iter()
        .filter(|c| c.line.is_some())
        .take(3)
        .copied()
        .collect();
    let no_change = cards
        .iter()
        .find(|c| c.category == CardCategory::NoChange)
        .expect("a no-change card");
    let mut selection: Vec<&str> = approve.iter().map(|c| c.key.as_str()).collect();
    selection.push(no_change.key.as_str());
    let outcome = approver
        .post(
            "/api/v1/decisions",
            serde_json::json!({ "cards": selection, "action": { "action": "approve" } }),
        )
        .await;
    assert_eq!(outcome.status, 200, "{}", outcome.text);
    let outcome = outcome.json();
    assert_eq!(outcome["decided"].as_array().expect("decided").len(), 3);
    assert_eq!(outcome["write_backs"], 3);
    let refused = outcome["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0][0], no_change.key.as_str());
    assert!(
        refused[0][1].as_str().expect("why").contains("no change"),
        "{refused:?}"
    );
    // The list shows them approved at once (the cache follows decisions).
    let approved = viewer
        .get("/api/v1/cards?status=approved&limit=1000")
        .await
        .json();
    let approved: BTreeSet<String> = keys(&approved).into_iter().collect();
    for c in &approve {
        assert!(approved.contains(c.key.as_str()));
    }

    // An adjustment of a selection with only a date (staging a date first
    // is card_staging's).
    let dated: Vec<&ServiceCard> = reconcile
        .iter()
        .filter(|c| c.line.is_some())
        .skip(3)
        .take(2)
        .copied()
        .collect();
    let date = "2026-12-15";
    let outcome = approver
        .post(
            "/api/v1/decisions",
            serde_json::json!({
                "cards": dated.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
                "action": { "action": "adjust", "effective_date": date }
            }),
        )
        .await
        .json();
    assert_eq!(
        outcome["decided"].as_array().expect("decided").len(),
        2,
        "{outcome}"
    );
    for c in &dated {
        let detail = viewer.get(&format!("/api/v1/cards/{}", c.key)).await.json();
        assert_eq!(detail["status"], "approved");
        assert_eq!(detail["write_backs"][0]["change"]["effective_date"], date);
    }

    // Dismiss, snooze and exclude.
    let rest: Vec<&ServiceCard> = cards
        .iter()
        .filter(|c| c.category == CardCategory::NoVendorData)
        .take(3)
        .collect();
    assert_eq!(rest.len(), 3, "three no-vendor-data cards");
    for (card, action, status) in [
        (
            rest[0],
            serde_json::json!({ "action": "dismiss" }),
            "dismissed",
        ),
        (
            rest[1],
            serde_json::json!({ "action": "snooze", "until": { "date": "2027-01-10" } }),
            "snoozed",
        ),
        (
            rest[2],
            serde_json::json!({ "action": "exclude", "reason": "billed elsewhere" }),
            "excluded",
        ),
    ] {
        let answer = approver
            .post(
                "/api/v1/decisions",
                serde_json::json!({ "cards": [card.key.as_str()], "action": action }),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let listed = viewer
            .get(&format!("/api/v1/cards?status={status}&limit=1000"))
            .await
            .json();
        assert!(
            keys(&listed).contains(&card.key.as_str().to_owned()),
            "{status}"
        );
    }

    // Tags and notes.
    let tagged = [rest[0].key.as_str(), no_change.key.as_str()];
    assert_eq!(
        approver
            .post(
                "/api/v1/tags",
                serde_json::json!({ "cards": tagged, "tag": "Review" })
            )
            .await
            .status,
        204
    );
    let page = viewer.get("/api/v1/cards?tag=review").await.json();
    assert_eq!(page["total"], 2);
    let note = approver
        .post(
            &format!("/api/v1/cards/{}/notes", no_change.key),
            serde_json::json!({ "text": "customer asked to keep 20 seats" }),
        )
        .await;
    assert_eq!(note.status, 201, "{}", note.text);
    let detail = viewer
        .get(&format!("/api/v1/cards/{}", no_change.key))
        .await
        .json();
    assert_eq!(
        detail["notes"][0]["text"],
        "customer asked to keep 20 seats"
    );
    assert_eq!(detail["notes"][0]["written_by"], "token:approver");
    assert_eq!(detail["tags"], serde_json::json!(["review"]));

    // The write-back worker applies the approvals; each card shows the
    // PSA's record ids.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for c in approve.iter().chain(dated.iter()) {
        loop {
            let detail = viewer.get(&format!("/api/v1/cards/{}", c.key)).await.json();
            let entry = &detail["write_backs"][0];
            if entry["status"] == "applied" {
                assert!(
                    !entry["result"]["record_ids"]
                        .as_array()
                        .expect("ids")
                        .is_empty()
                );
                assert_eq!(detail["state"]["write_back"], "applied");
                break;
            }
            assert_ne!(entry["status"], "rejected", "{entry}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "write-back not applied: {entry}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // The list shows what was decided and what the PSA did, per card:
    // approved for N from D, applied as record R on T.
    let listed = viewer
        .get("/api/v1/cards?status=approved&limit=1000")
        .await
        .json();
    for c in approve.iter().chain(dated.iter()) {
        let detail = viewer.get(&format!("/api/v1/cards/{}", c.key)).await.json();
        let entry = &detail["write_backs"][0];
        let card = listed["cards"]
            .as_array()
            .expect("cards")
            .iter()
            .find(|l| l["key"] == c.key.as_str())
            .unwrap_or_else(|| panic!("approved card {} is listed", c.key));
        let wb = &card["write_back"];
        assert_eq!(wb["status"], "applied", "{card}");
        assert_eq!(
            dec(&wb["quantity"]),
            dec(&entry["change"]["new_quantity"]),
            "{card}"
        );
        assert_eq!(
            wb["effective_date"], entry["change"]["effective_date"],
            "{card}"
        );
        assert_eq!(wb["record_ids"], entry["result"]["record_ids"], "{card}");
        assert_eq!(wb["finished_at"], entry["finished_at"], "{card}");
    }
    assert!(
        emulator_writes(&cw).await > writes_before,
        "the PSA received the changes"
    );
    let outbox = viewer.get("/api/v1/outbox?status=applied").await.json();
    assert_eq!(outbox.as_array().expect("entries").len(), 5);

    // CSV export of the filtered cards.
    let csv = viewer
        .get("/api/v1/cards/export.csv?category=reconcile")
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(
        lines[0].starts_with("key,category,status,company"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), reconcile.len() + 1);
    let row = lines
        .iter()
        .find(|l| l.starts_with(approve[0].key.as_str()))
        .expect("the card's row");
    assert!(row.contains(",reconcile,approved,"), "{row}");
    assert!(row.ends_with(",applied,"), "{row}");

    // History and audit.
    let history = viewer
        .get(&format!("/api/v1/cards/{}/history", card.key))
        .await
        .json();
    assert_eq!(history.as_array().expect("entries").len(), 1);
    let audit = viewer
        .get("/api/v1/audit?actor=token:approver")
        .await
        .json();
    assert!(
        audit
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "cards.decide")
    );
    let company_history = viewer
        .get(&format!("/api/v1/history/companies/{company}"))
        .await;
    assert_eq!(company_history.status, 200, "{}", company_history.text);
    assert!(
        !company_history
            .json()
            .as_array()
            .expect("months")
            .is_empty()
    );

    // Live events: a reconcile shows up on the stream.
    let stream = reqwest::Client::new()
        .get(format!("{}/api/v1/events", server.base))
        .header("authorization", format!("Bearer {viewer_token}"))
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), 200);
    let app2 = server.app.clone();
    let reconciled = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app2.reconcile().await.expect("reconcile")
    });
    let mut stream = stream;
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = stream.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("event: reconciled") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "no reconciled event in {text:?}");
    let summary = reconciled.await.expect("task");
    assert!(text.contains(&format!("\"run\":{}", summary.run)), "{text}");
    // A new run: the lists follow it at once.
    let page = viewer.get("/api/v1/cards?limit=1").await.json();
    assert_eq!(page["run"]["id"], summary.run);
}
