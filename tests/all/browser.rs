//! The UI end to end in a real browser: headless Chromium (Debian's
//! `chromium` + `chromium-driver`) driven over WebDriver (fantoccini,
//! through [`crate::support_webdriver`]) against a served demo month-end
//! (the bundled emulators, the shipped connectors, the default rules,
//! SQLite) with the write-back worker running.
//!
//! Logs in through the login form, sees cards of every category, opens a
//! quantity-differs card, checks its dry-run plan writes nothing, approves
//! it, watches the write-back reach the ConnectWise emulator (asserted on
//! the emulator's write log, not only on the page) and the card's new
//! state in the UI; then stages an effective date on two cards in bulk,
//! opens the confirmation (both cards, the staged date), confirms and sees
//! the decision. Screenshots go to `target/test-artifacts/browser-*.png`.
//! Without chromedriver the test fails with how to install it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use trueup::app::App;
use trueup::auth::Role;
use trueup::demo;
use trueup::server::Workers;
use trueup_core::card::CardKey;

use crate::support::repo_root;
use crate::support_webdriver::{Driver, Session};
use crate::web_auth::{add_user, serve};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
}

fn artifact(name: &str) -> PathBuf {
    repo_root()
        .join("target/test-artifacts")
        .join(format!("browser-{name}.png"))
}

/// The ConnectWise emulator's write log.
async fn writes(base: &str) -> Vec<serde_json::Value> {
    let body = reqwest::get(format!("{base}/_emulator/connectwise/writes"))
        .await
        .expect("GET writes")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&body).expect("a JSON list of writes")
}

/// Saves a screenshot named `name`, then panics with `message` (so a
/// failure leaves a picture of the page behind).
async fn fail(browser: &Session, name: &str, message: String) -> ! {
    browser.screenshot_to(&artifact(name)).await;
    panic!("{message} (screenshot {})", artifact(name).display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_in_see_cards_approve_and_watch_the_write_back() {
    // Chromedriver first: without it there is nothing to test (fail loudly).
    let driver = Driver::start().await;

    // A reconciled month-end, served with the write-back worker.
    let emulators = demo::start_emulators(42, 40, today(), IpAddr::V4(Ipv4Addr::LOCALHOST))
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
    for (source, outcome) in app.sync_all().await {
        outcome.unwrap_or_else(|e| panic!("{source} failed to sync: {e}"));
    }
    app.reconcile().await.expect("reconcile");
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("run")
        .expect("a run");
    let password = add_user(&app, "approver", Role::Approver).await;
    let served = serve(
        app.clone(),
        Workers {
            jobs: false,
            scheduler: false,
            write_back: true,
        },
        Some(dir),
    )
    .await;
    let base = served.base.clone();
    let cw = emulators.connectwise.base_url.clone();

    let browser = driver.session().await;

    // A page without a session goes to the login form.
    browser
        .goto(&format!("{base}/app/cards"))
        .await
        .expect("open the cards page");
    let username = browser.wait_for("#username").await;
    let url = browser.current_url().await.expect("the page's URL");
    assert!(
        url.as_str().contains("/login"),
        "not sent to the login page: {url}"
    );
    username.send_keys("approver").await.expect("type");
    let field = browser.wait_for("#password").await;
    field.send_keys("wrong password").await.expect("type");
    browser
        .wait_for("#login-submit")
        .await
        .click()
        .await
        .expect("click");
    browser
        .wait_text("#login-error", "a login error", |t| !t.is_empty())
        .await;
    let field = browser.wait_for("#password").await;
    field.clear().await.expect("clear");
    field.send_keys(&password).await.expect("type");
    browser
        .wait_for("#login-submit")
        .await
        .click()
        .await
        .expect("click");

    // The cards page: who is logged in, totals, cards.
    browser.wait_for("[data-testid=card]").await;
    browser
        .wait_text("#who", "the user", |t| t.contains("approver"))
        .await;
    let at_stake = browser
        .wait_text("#total-at-stake", "money at stake", |t| t.starts_with('$'))
        .await;
    assert_ne!(at_stake, "$0.00", "a demo month-end has money at stake");
    let unmapped = browser
        .wait_text("#nav-unmapped", "the unmapped count", |t| {
            t.ends_with("unmapped")
        })
        .await;
    assert!(
        !unmapped.starts_with("0 "),
        "the demo has unmapped accounts"
    );
    let categories = [
        "new_revenue",
        "reconcile",
        "no_change",
        "no_vendor_data",
        "unmapped",
    ];
    for category in categories {
        let count = browser.wait_for(&format!("#count-{category}")).await;
        let n: u64 = count
            .attr("data-count")
            .await
            .expect("read data-count")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if n == 0 {
            fail(&browser, "failure", format!("no {category} cards counted")).await;
        }
    }
    browser.screenshot_to(&artifact("cards")).await;
    // Filtering by a category shows cards of it, and only of it.
    for category in categories {
        browser
            .goto(&format!("{base}/app/cards?category={category}&view=list"))
            .await
            .expect("open the filtered list");
        browser
            .wait_for(&format!("tr[data-testid=card][data-category={category}]"))
            .await;
        let other = browser
            .select_all(&format!(
                "[data-testid=card]:not([data-category={category}])"
            ))
            .await;
        assert!(other.is_empty(), "the {category} filter shows other cards");
    }

    // Pick an open quantity-differs card on a PSA line.
    browser
        .goto(&format!("{base}/app/cards?category=reconcile&status=open"))
        .await
        .expect("open the open reconcile cards");
    browser.wait_for("article[data-testid=card]").await;
    let mut chosen = None;
    for element in browser
        .select_all("article[data-testid=card][data-status=open]")
        .await
    {
        let key = element
            .attr("data-key")
            .await
            .expect("read data-key")
            .expect("data-key");
        let card = app
            .store()
            .card(run.id, &CardKey::from_hex(&key).expect("a card key"))
            .await
            .expect("card")
            .expect("the card is in the run");
        if card.line.is_some() && card.target_quantity.is_some() {
            chosen = Some((key, card));
            break;
        }
    }
    let Some((key, card)) = chosen else {
        fail(
            &browser,
            "failure",
            "no open quantity-differs card on a line".into(),
        )
        .await
    };
    let contract = card.contract.clone().expect("a contract").to_string();
    let line = card.line.clone().expect("a line").to_string();
    let target = card.target_quantity.expect("a target quantity");
    let link = browser
        .wait_for(&format!(
            "article[data-key='{key}'] a[data-testid=card-open]"
        ))
        .await;
    link.click().await.expect("click");

    // The card in full: quantities, the dry-run plan (which writes nothing).
    browser
        .wait_for(&format!("#card-detail[data-key='{key}']"))
        .await;
    assert!(
        browser
            .current_url()
            .await
            .expect("the page's URL")
            .as_str()
            .ends_with(&format!("/app/cards/{key}"))
    );
    let status = browser.wait_for("#detail-status").await;
    assert_eq!(
        status
            .attr("data-status")
            .await
            .expect("read data-status")
            .as_deref(),
        Some("open")
    );
    browser
        .wait_text("#detail-target-qty", "the proposed quantity", |t| {
            t == target.to_string()
        })
        .await;
    browser.wait_for("#effective-date").await;
    let before = writes(&cw).await.len();
    browser.wait_for("[data-testid=plan-call]").await;
    let calls = browser.select_all("[data-testid=plan-call]").await;
    let mut methods = Vec::new();
    for call in &calls {
        methods.push(
            call.attr("data-method")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
        );
    }
    assert!(
        methods.iter().any(|m| m != "GET"),
        "the plan shows the writes: {methods:?}"
    );
    assert_eq!(writes(&cw).await.len(), before, "the dry run wrote nothing");
    browser.screenshot_to(&artifact("card")).await;

    // Approve: a confirmation lists what will be written (nothing is sent
    // before it is confirmed); confirm, and watch the write-back arrive on
    // the page.
    browser
        .wait_for("#action-approve")
        .await
        .click()
        .await
        .expect("click");
    browser
        .wait_for(&format!(
            "#confirm-writes [data-testid=confirm-row][data-key='{key}']"
        ))
        .await;
    assert_eq!(
        writes(&cw).await.len(),
        before,
        "the confirmation wrote nothing"
    );
    browser.screenshot_to(&artifact("confirm")).await;
    browser
        .wait_for("#confirm-send")
        .await
        .click()
        .await
        .expect("click");
    browser
        .wait_text("#detail-status", "approved", |t| t == "approved")
        .await;
    let started = Instant::now();
    loop {
        let text = browser
            .select_all("#write-back-status")
            .await
            .first()
            .cloned();
        let text = match text {
            Some(e) => e.text().await.unwrap_or_default(),
            None => String::new(),
        };
        if text == "write-back applied" {
            break;
        }
        if text == "write-back rejected" || started.elapsed() > Duration::from_secs(30) {
            fail(
                &browser,
                "failure",
                format!("the write-back did not apply: {text:?}"),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The PSA emulator received it: the old addition ended, a new one at
    // the approved quantity.
    let log = writes(&cw).await;
    let new: Vec<&serde_json::Value> = log[before..].iter().collect();
    let additions = format!("/finance/agreements/{contract}/additions");
    let posted = new.iter().find(|w| {
        w["method"] == "POST"
            && w["path"].as_str().is_some_and(|p| {
                p.to_ascii_lowercase()
                    .ends_with(&additions.to_ascii_lowercase())
            })
    });
    let Some(posted) = posted else {
        fail(
            &browser,
            "failure",
            format!("no new addition on agreement {contract}: {new:?}"),
        )
        .await
    };
    assert!(
        posted["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s)),
        "the PSA accepted the addition: {posted}"
    );
    assert_eq!(
        posted["body"]["quantity"].to_string(),
        target.normalize().to_string(),
        "the addition has the approved quantity: {posted}"
    );
    assert!(
        new.iter().any(|w| w["method"] == "PATCH"
            && w["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("/additions/{line}")))),
        "the old addition {line} was ended: {new:?}"
    );

    // The card's new state on the page: the write-back row with the PSA's
    // record ids, and the card approved in the list.
    let row = browser
        .wait_for("tr[data-testid=write-back][data-status=applied]")
        .await;
    let ids = row.text().await.expect("the row's text");
    assert!(
        ids.contains(&line),
        "the record ids show on the card: {ids}"
    );
    let shown_alert = browser
        .execute(
            "const a = document.getElementById('alert'); return a.hidden ? '' : a.textContent;",
            Vec::new(),
        )
        .await
        .expect("read the alert");
    assert_eq!(shown_alert, serde_json::json!(""), "no error was shown");
    browser.screenshot_to(&artifact("approved")).await;

    browser
        .wait_for("#back-to-cards")
        .await
        .click()
        .await
        .expect("click");
    browser
        .goto(&format!("{base}/app/cards?status=approved&view=list"))
        .await
        .expect("open the approved cards");
    let item = browser
        .wait_for(&format!("tr[data-testid=card][data-key='{key}']"))
        .await;
    assert_eq!(
        item.attr("data-status")
            .await
            .expect("read data-status")
            .as_deref(),
        Some("approved")
    );
    browser
        .wait_text(
            &format!("tr[data-key='{key}'] [data-testid=card-status]"),
            "the applied write-back",
            |t| t.contains("applied"),
        )
        .await;
    browser.screenshot_to(&artifact("after")).await;

    // Bulk "set effective date" stages the date on two cards (nothing is
    // written), the confirmation lists both with it, and confirming
    // approves them.
    browser
        .goto(&format!(
            "{base}/app/cards?category=reconcile&status=open&view=list"
        ))
        .await
        .expect("open the open reconcile cards");
    browser.wait_for("tr[data-testid=card]").await;
    let mut two = Vec::new();
    for element in browser.select_all("tr[data-testid=card]").await {
        let k = element
            .attr("data-key")
            .await
            .expect("read data-key")
            .expect("data-key");
        let card = app
            .store()
            .card(run.id, &CardKey::from_hex(&k).expect("a card key"))
            .await
            .expect("card")
            .expect("the card is in the run");
        if k != key && card.line.is_some() && card.target_quantity.is_some() {
            two.push(k);
        }
        if two.len() == 2 {
            break;
        }
    }
    if two.len() < 2 {
        fail(
            &browser,
            "failure",
            format!("two open reconcile cards on lines: {two:?}"),
        )
        .await;
    }
    for k in &two {
        browser
            .wait_for(&format!("tr[data-key='{k}'] input.card-select"))
            .await
            .click()
            .await
            .expect("select");
    }
    browser
        .wait_text("#selection-count", "two selected", |t| t == "2 selected")
        .await;
    let date = "2026-12-15";
    browser
        .execute(
            "document.getElementById('bulk-effective-date').value = arguments[0]; return true;",
            vec![serde_json::json!(date)],
        )
        .await
        .expect("set the date");
    let before_stage = writes(&cw).await.len();
    browser
        .wait_for("#bulk-effective")
        .await
        .click()
        .await
        .expect("click");
    for k in &two {
        browser
            .wait_for(&format!(
                "tr[data-key='{k}'] [data-testid=staged][data-date='{date}']"
            ))
            .await;
        let item = browser
            .wait_for(&format!("tr[data-testid=card][data-key='{k}']"))
            .await;
        assert_eq!(
            item.attr("data-status")
                .await
                .expect("read data-status")
                .as_deref(),
            Some("open"),
            "staging decides nothing"
        );
    }
    assert_eq!(
        writes(&cw).await.len(),
        before_stage,
        "staging wrote nothing"
    );
    for k in &two {
        browser
            .wait_for(&format!("tr[data-key='{k}'] input.card-select"))
            .await
            .click()
            .await
            .expect("select");
    }
    browser
        .wait_for("#bulk-approve")
        .await
        .click()
        .await
        .expect("click");
    browser.wait_for("#confirm-writes").await;
    let rows = browser.select_all("[data-testid=confirm-row]").await;
    let mut listed = Vec::new();
    for row in &rows {
        listed.push(
            row.attr("data-key")
                .await
                .expect("read data-key")
                .unwrap_or_default(),
        );
    }
    listed.sort();
    let mut expected = two.clone();
    expected.sort();
    assert_eq!(listed, expected, "the confirmation lists both cards");
    for date_cell in browser.select_all("[data-testid=confirm-date]").await {
        assert_eq!(
            date_cell.text().await.expect("text"),
            date,
            "with the staged date"
        );
    }
    browser
        .wait_text("#confirm-totals", "the totals", |t| {
            t.starts_with("2 write(s)")
        })
        .await;
    assert_eq!(
        writes(&cw).await.len(),
        before_stage,
        "the confirmation wrote nothing"
    );
    browser.screenshot_to(&artifact("bulk-confirm")).await;
    browser
        .wait_for("#confirm-send")
        .await
        .click()
        .await
        .expect("click");
    browser
        .wait_text("#bulk-result-counts", "the decision", |t| {
            t.contains("2 decided")
        })
        .await;
    browser
        .goto(&format!("{base}/app/cards?status=approved&view=list"))
        .await
        .expect("open the approved cards");
    for k in &two {
        let item = browser
            .wait_for(&format!("tr[data-testid=card][data-key='{k}']"))
            .await;
        assert_eq!(
            item.attr("data-status")
                .await
                .expect("read data-status")
                .as_deref(),
            Some("approved")
        );
        browser
            .wait_text(
                &format!("tr[data-key='{k}'] [data-testid=card-status]"),
                "the decision with its date",
                |t| t.contains(date),
            )
            .await;
    }
    browser.screenshot_to(&artifact("bulk-approved")).await;
    browser.close().await;
    drop(served);
}
