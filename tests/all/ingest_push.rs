//! The push API over real HTTP (`trueup::server::serve_with_debounce`, what
//! `trueup serve` runs, on 127.0.0.1:0 over SQLite in a temporary
//! directory): key authentication (missing, wrong, revoked), unmapped
//! accounts refused with a message and nothing stored, the per-key rate
//! limit with Retry-After, idempotent sets that the reconcile reads, one
//! reconcile per burst, the accounts and services listings, and the
//! endpoints in the served OpenAPI document. Also the shared helpers of the
//! ingest tests (an app with no PSA or vendors).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use trueup::app::App;
use trueup::app::debounce::DebounceSettings;
use trueup::auth::Role;
use trueup::config::{Config, RulesConfig, StoreConfig};
use trueup::ingest::push::{self, NewPushIntegration};
use trueup_core::model::VendorId;
use trueup_store::mappings::MappingOverride;

use crate::support::repo_root;
use crate::web_auth::{Client, NO_WORKERS, add_token};

/// The date the ingest tests run on.
pub fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 18, 0, 0)
        .single()
        .expect("now")
}

/// An app with no PSA, no connectors and the shipped rules, on SQLite in
/// a temporary directory, at a fixed time (2026-11-25 18:00 UTC).
pub async fn ingest_app() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        store: StoreConfig {
            url: Some(format!(
                "sqlite://{}",
                dir.path().join("trueup.db").display()
            )),
        },
        rules: RulesConfig {
            path: repo_root().join("rules/default.rhai"),
        },
        ..Config::default()
    };
    let app = App::open_with_clock(Arc::new(config), Arc::new(now))
        .await
        .expect("app opens");
    (app, dir)
}

/// Serves `app` with the ingest mounts and a debouncer of `debounce`;
/// the base URL.
async fn serve(app: &App, debounce: DebounceSettings) -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let served = app.clone();
    tokio::spawn(async move {
        trueup::server::serve_with_debounce(
            served,
            listener,
            NO_WORKERS,
            debounce,
            std::future::pending(),
        )
        .await
        .expect("serve");
    });
    base
}

/// Long enough that no test here sees a reconcile it did not wait for.
const NEVER: DebounceSettings = DebounceSettings {
    quiet: Duration::from_secs(3_600),
    max_delay: Duration::from_secs(3_600),
};

const VENDOR: &str = "acme-backup";

async fn create_key(app: &App, requests_per_minute: Option<u32>, burst: Option<u32>) -> String {
    let created = push::create_push_integration(
        app,
        &NewPushIntegration {
            vendor: VENDOR.to_owned(),
            vendor_name: Some("Acme Backup".to_owned()),
            name: "Acme production".to_owned(),
            requests_per_minute,
            burst,
        },
        "test",
    )
    .await
    .expect("push integration");
    assert!(created.api_key.starts_with(push::PUSH_KEY_PREFIX));
    assert!(
        !format!("{created:?}").contains(&created.api_key),
        "Debug never shows the key"
    );
    created.api_key
}

async fn map(app: &App, account: &str, company: Option<&str>) {
    app.store()
        .set_mapping_override(&MappingOverride {
            vendor: VENDOR.into(),
            account: account.into(),
            company: company.map(Into::into),
            reason: "test".to_owned(),
            set_by: "test".to_owned(),
            set_at: now(),
        })
        .await
        .expect("mapping");
}

/// A push API answer, its body read as JSON.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: serde_json::Value,
}

/// Sends through the web tests' client, authenticated by `key` when given.
async fn send(
    base: &str,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<serde_json::Value>,
) -> Answer {
    let client = match key {
        Some(key) => Client::with_token(base, key),
        None => Client::anonymous(base),
    };
    let answer = client.send(method, path, body).await;
    Answer {
        status: answer.status,
        body: answer.json(),
        headers: answer.headers,
    }
}

async fn push_usage(base: &str, key: &str, body: serde_json::Value) -> Answer {
    send(
        base,
        reqwest::Method::POST,
        "/api/v1/usage",
        Some(key),
        Some(body),
    )
    .await
}

fn seats(account: &str, quantity: &str) -> serde_json::Value {
    serde_json::json!({
        "account_id": account,
        "service": "backup-seats",
        "sku_name": "Backup seats",
        "quantity": quantity,
        "observed_on": "2026-11-25",
    })
}

fn dec(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

/// The pushed quantities of `account` that a reconcile as of today reads.
async fn reconciled_quantities(app: &App, account: &str) -> Vec<Decimal> {
    let (snapshot, _) = app.current_snapshot(today()).await.expect("snapshot");
    snapshot
        .usage
        .iter()
        .filter(|u| u.vendor == VendorId::from(VENDOR) && u.account.as_str() == account)
        .map(|u| u.quantity)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_authenticate_and_unmapped_accounts_are_refused() {
    let (app, _dir) = ingest_app().await;
    let key = create_key(&app, None, None).await;
    map(&app, "cust-1", Some("company-1")).await;
    let base = serve(&app, NEVER).await;

    // No key, a malformed header, a wrong key: 401, with how to fix it.
    let missing = send(
        &base,
        reqwest::Method::POST,
        "/api/v1/usage",
        None,
        Some(seats("cust-1", "5")),
    )
    .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"], "unauthorized");
    assert!(
        missing.headers.contains_key("www-authenticate"),
        "{:?}",
        missing.headers
    );
    assert!(
        missing.body["message"]
            .as_str()
            .expect("message")
            .contains("Authorization: Bearer")
    );
    let wrong = push_usage(&base, "tu_push_not-a-key", seats("cust-1", "5")).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong.body["message"]
            .as_str()
            .expect("message")
            .contains("not valid")
    );
    let listing = send(
        &base,
        reqwest::Method::GET,
        "/api/v1/usage/accounts",
        Some("nope"),
        None,
    )
    .await;
    assert_eq!(listing.status, 401);

    // An account nobody mapped: 404 naming it, nothing stored.
    let unmapped = push_usage(&base, &key, seats("stranger-9", "5")).await;
    assert_eq!(unmapped.status, 404, "{}", unmapped.body);
    assert_eq!(unmapped.body["error"], "account_not_mapped");
    let message = unmapped.body["message"].as_str().expect("message");
    assert!(message.contains("\"stranger-9\""), "{message}");
    assert!(message.contains("not mapped to a PSA company"), "{message}");
    assert!(message.contains("/api/v1/usage/accounts"), "{message}");
    // In a batch, one unmapped account refuses the whole batch.
    let batch = push_usage(
        &base,
        &key,
        serde_json::json!({ "items": [seats("cust-1", "5"), seats("stranger-9", "2")] }),
    )
    .await;
    assert_eq!(batch.status, 404, "{}", batch.body);
    assert_eq!(batch.body["problems"][0]["path"], "$.items[1].account_id");
    let stored = app
        .store()
        .latest_pushed_usage(&VENDOR.into())
        .await
        .expect("pushed");
    assert!(stored.is_empty(), "nothing was set: {stored:?}");

    // The right key and a mapped account: set.
    let ok = push_usage(&base, &key, seats("cust-1", "5")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["status"], "set");

    // A revoked key no longer authenticates.
    let integrations = push::push_integrations(&app).await.expect("list");
    assert_eq!(integrations.len(), 1);
    push::revoke_push_integration(&app, integrations[0].id, "test")
        .await
        .expect("revoke");
    let revoked = push_usage(&base, &key, seats("cust-1", "6")).await;
    assert_eq!(revoked.status, 401, "{}", revoked.body);
    assert_eq!(reconciled_quantities(&app, "cust-1").await, [dec("5")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let (app, _dir) = ingest_app().await;
    // One request a minute, three at once.
    let key = create_key(&app, Some(1), Some(3)).await;
    let other = create_key(&app, None, None).await;
    map(&app, "cust-1", Some("company-1")).await;
    let base = serve(&app, NEVER).await;
    for n in 0..3 {
        let answer = push_usage(&base, &key, seats("cust-1", &n.to_string())).await;
        assert_eq!(answer.status, 200, "request {n}: {}", answer.body);
    }
    let limited = push_usage(&base, &key, seats("cust-1", "9")).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.body["error"], "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    // The next token comes a minute after the burst was spent.
    assert!(
        (59..=60).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert!(
        limited.body["message"]
            .as_str()
            .expect("message")
            .contains("1 requests a minute")
    );
    // The refused request set nothing; the listings are limited too.
    assert_eq!(reconciled_quantities(&app, "cust-1").await, [dec("2")]);
    let listing = send(
        &base,
        reqwest::Method::GET,
        "/api/v1/usage/accounts",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(listing.status, 429);
    // Another key has its own bucket.
    let answer = push_usage(&base, &other, seats("cust-1", "4")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_sets_the_count_idempotently_and_the_reconcile_reads_it() {
    let (app, _dir) = ingest_app().await;
    let key = create_key(&app, None, None).await;
    map(&app, "cust-1", Some("company-1")).await;
    let base = serve(&app, NEVER).await;

    let first = push_usage(&base, &key, seats("cust-1", "5")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], "set");
    // The same count again is a no-op, not 10.
    let again = push_usage(&base, &key, seats("cust-1", "5")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["status"], "unchanged");
    assert_eq!(reconciled_quantities(&app, "cust-1").await, [dec("5")]);
    // A lower count replaces it: a set, not a delta.
    let lower = push_usage(&base, &key, seats("cust-1", "3")).await;
    assert_eq!(lower.status, 200, "{}", lower.body);
    assert_eq!(lower.body["status"], "set");
    assert_eq!(reconciled_quantities(&app, "cust-1").await, [dec("3")]);

    // The reconcile reads exactly that one row.
    let summary = app.reconcile().await.expect("reconcile");
    assert_eq!(summary.usage_rows, 1);
    let (snapshot, _) = app.current_snapshot(today()).await.expect("snapshot");
    let row = snapshot
        .usage
        .iter()
        .find(|u| u.account.as_str() == "cust-1")
        .expect("the pushed row");
    assert_eq!(row.quantity, dec("3"));
    assert_eq!(row.sku_id.as_str(), "backup-seats");
    assert_eq!(row.observed_at.date_naive(), today());

    // A batch: one set, one unchanged, reported per item.
    let batch = push_usage(
        &base,
        &key,
        serde_json::json!({ "items": [seats("cust-1", "3"), {
            "account_id": "cust-1", "service": "backup-tb", "quantity": "1.25"
        }] }),
    )
    .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(batch.body["set"], 1);
    assert_eq!(batch.body["unchanged"], 1);
    assert_eq!(batch.body["items"][0]["status"], "unchanged");
    assert_eq!(batch.body["items"][1]["status"], "set");
    let mut quantities = reconciled_quantities(&app, "cust-1").await;
    quantities.sort();
    assert_eq!(quantities, [dec("1.25"), dec("3")]);

    // Bad values: 422 with the path of each, nothing set.
    let invalid = push_usage(
        &base,
        &key,
        serde_json::json!({ "items": [seats("cust-1", "7"), seats("cust-1", "-1")] }),
    )
    .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert_eq!(invalid.body["problems"][0]["path"], "$.items[1].quantity");
    let mut quantities = reconciled_quantities(&app, "cust-1").await;
    quantities.sort();
    assert_eq!(quantities, [dec("1.25"), dec("3")], "the batch set nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pushes_makes_one_reconcile() {
    let (app, _dir) = ingest_app().await;
    let key = create_key(&app, None, None).await;
    map(&app, "cust-1", Some("company-1")).await;
    let quiet = Duration::from_millis(500);
    let base = serve(
        &app,
        DebounceSettings {
            quiet,
            max_delay: Duration::from_secs(30),
        },
    )
    .await;
    let runs = || async { app.store().reconcile_runs(100).await.expect("runs").len() };
    assert_eq!(runs().await, 0);

    // 25 pushes, each changing the count, within the quiet time of each
    // other.
    for n in 1..=25 {
        let answer = push_usage(&base, &key, seats("cust-1", &n.to_string())).await;
        assert_eq!(answer.status, 200, "push {n}: {}", answer.body);
        assert_eq!(answer.body["status"], "set");
    }
    // Wait for the reconcile (quiet time + its own duration).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while runs().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconcile after the burst"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Well past another quiet time: still one.
    tokio::time::sleep(quiet * 4).await;
    assert_eq!(runs().await, 1, "one burst, one reconcile");
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("run")
        .expect("a run");
    assert_eq!(run.as_of, today());

    // An unchanged push asks for nothing; a change later makes a second.
    let same = push_usage(&base, &key, seats("cust-1", "25")).await;
    assert_eq!(same.body["status"], "unchanged");
    tokio::time::sleep(quiet * 3).await;
    assert_eq!(runs().await, 1, "an unchanged push does not reconcile");
    let changed = push_usage(&base, &key, seats("cust-1", "26")).await;
    assert_eq!(changed.body["status"], "set");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while runs().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconcile after the second change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(quiet * 3).await;
    assert_eq!(runs().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendors_list_their_accounts_and_services_and_the_api_is_documented() {
    let (app, _dir) = ingest_app().await;
    let key = create_key(&app, None, None).await;
    map(&app, "cust-1", Some("company-1")).await;
    map(&app, "cust-2", None).await;
    // Another vendor's mapping is not listed.
    app.store()
        .set_mapping_override(&MappingOverride {
            vendor: "someone-else".into(),
            account: "theirs".into(),
            company: Some("company-1".into()),
            reason: "test".to_owned(),
            set_by: "test".to_owned(),
            set_at: now(),
        })
        .await
        .expect("mapping");
    let base = serve(&app, NEVER).await;
    assert_eq!(
        push_usage(&base, &key, seats("cust-1", "4")).await.status,
        200
    );
    assert_eq!(
        push_usage(&base, &key, seats("cust-2", "2")).await.status,
        200,
        "excluded accounts are accepted"
    );

    let accounts = send(
        &base,
        reqwest::Method::GET,
        "/api/v1/usage/accounts",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(accounts.status, 200, "{}", accounts.body);
    assert_eq!(accounts.body["vendor"]["id"], VENDOR);
    assert_eq!(accounts.body["vendor"]["name"], "Acme Backup");
    let list = accounts.body["accounts"].as_array().expect("accounts");
    let ids: Vec<&str> = list
        .iter()
        .map(|a| a["account_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["cust-1", "cust-2"]);
    assert_eq!(list[0]["status"], "mapped");
    assert_eq!(list[0]["accepts_usage"], true);
    assert_eq!(list[0]["decided_by"], "manual");
    assert_eq!(list[0]["company"]["id"], "company-1");
    assert_eq!(list[0]["last_reported_on"], "2026-11-25");
    assert_eq!(list[1]["status"], "excluded");
    assert_eq!(list[1]["accepts_usage"], true);

    let services = send(
        &base,
        reqwest::Method::GET,
        "/api/v1/usage/services",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(services.status, 200, "{}", services.body);
    let list = services.body["services"].as_array().expect("services");
    assert_eq!(list.len(), 1, "{}", services.body);
    assert_eq!(list[0]["service"], "backup-seats");
    assert_eq!(list[0]["sku_name"], "Backup seats");
    assert_eq!(list[0]["accounts"], 2);
    assert_eq!(list[0]["last_reported_on"], "2026-11-25");
    let status = list[0]["mapping"]["status"].as_str().expect("status");
    assert!(
        ["mapped", "unmapped", "ignored", "rule_error"].contains(&status),
        "{status}"
    );
    assert!(
        services.body["rules"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    // The served OpenAPI document has the push endpoints beside the API's.
    let viewer = Client::with_token(&base, &add_token(&app, "viewer", Role::Viewer).await);
    let doc = viewer.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let doc = doc.json();
    for (path, method) in [
        ("/api/v1/usage", "post"),
        ("/api/v1/usage/accounts", "get"),
        ("/api/v1/usage/services", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in the served OpenAPI document"
        );
    }
    assert!(
        doc["paths"]["/api/v1/cards"].is_object(),
        "the API's own paths are kept"
    );
    assert!(doc["paths"]["/api/v1/usage"]["post"]["responses"]["429"].is_object());
}

/// Issue 17 (1, 2): a quantity past the documented limit, or finer than a
/// decimal holds, is refused with a 422 naming the field and the limit
/// (it used to be stored, and every reconcile after it panicked with
/// "Addition overflowed"); a row stored before the limits (old data) is
/// left out of the reconcile as a `value_out_of_range` exclusion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_past_the_limits_are_refused_and_old_ones_excluded() {
    use trueup_core::eligibility::ExclusionCode;
    use trueup_core::model::amount::MAX_QUANTITY;

    let (app, _dir) = ingest_app().await;
    let key = create_key(&app, None, None).await;
    map(&app, "cust-1", Some("company-1")).await;
    let base = serve(&app, NEVER).await;

    let max = Decimal::MAX.to_string();
    let huge = push_usage(&base, &key, seats("cust-1", &max)).await;
    assert_eq!(huge.status, 422, "{}", huge.body);
    assert_eq!(huge.body["problems"][0]["path"], "$.quantity");
    let message = huge.body["problems"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(&MAX_QUANTITY.to_string()) && message.contains("limit"),
        "{message}"
    );
    // A JSON integer past the limit (but inside u64) too, naming the field.
    let mut integer = seats("cust-1", "1");
    integer["quantity"] = serde_json::json!(18_446_744_073_709_551_615_u64);
    let integer = push_usage(&base, &key, integer).await;
    assert_eq!(integer.status, 422, "{}", integer.body);
    let message = integer.body["problems"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with("quantity") && message.contains("limit"),
        "{message}"
    );
    // 29 decimal places: refused, not rounded to 28.
    let fine = push_usage(
        &base,
        &key,
        seats("cust-1", "0.00000000000000000000000000001"),
    )
    .await;
    assert_eq!(fine.status, 422, "{}", fine.body);
    let message = fine.body["problems"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("29 decimal places"), "{message}");
    assert!(
        reconciled_quantities(&app, "cust-1").await.is_empty(),
        "nothing stored"
    );

    // Old data: stored past the door, next to a sane row.
    let old = |account: &str, quantity: Decimal| trueup_core::model::UsageObservation {
        vendor: VENDOR.into(),
        account: account.into(),
        sku_id: "backup-seats".into(),
        sku_name: Arc::from("Backup seats"),
        quantity,
        unit: Arc::from("unit"),
        unit_cost: None,
        billing_term: None,
        commitment_end: None,
        attributes: Default::default(),
        observed_at: trueup::ingest::day_start(today()),
    };
    map(&app, "cust-2", Some("company-1")).await;
    for (account, quantity) in [("cust-1", Decimal::MAX), ("cust-2", dec("4"))] {
        app.store()
            .push_usage(None, &old(account, quantity), now())
            .await
            .expect("stored directly");
    }
    let summary = app.reconcile().await.expect("the reconcile runs, no panic");
    assert_eq!(summary.usage_rows, 2);
    let exclusions = app
        .store()
        .run_exclusions(trueup_store::reconcile::ReconcileRunId(summary.run))
        .await
        .expect("exclusions");
    let out_of_range: Vec<_> = exclusions
        .iter()
        .filter(|e| e.code == ExclusionCode::ValueOutOfRange)
        .collect();
    assert_eq!(out_of_range.len(), 1, "{exclusions:#?}");
    assert!(
        out_of_range[0].reason.contains("cust-1") && out_of_range[0].reason.contains("limit"),
        "{}",
        out_of_range[0].reason
    );
}

/// Issue 17 (3): control characters and bidi overrides in an account id,
/// a SKU or a name are refused with 422 at their JSON path; nothing is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_pushed_text_are_refused() {
    let (app, _dir) = ingest_app().await;
    let key = create_key(&app, None, None).await;
    map(&app, "cust-1", Some("company-1")).await;
    let base = serve(&app, NEVER).await;
    for (field, value) in [
        ("sku_name", "Backup\u{7} seats"),
        ("service", "backup\u{1b}[31m"),
        ("unit", "seat\u{202E}"),
        ("sku_name", "two\nlines"),
    ] {
        let mut item = seats("cust-1", "5");
        item[field] = serde_json::json!(value);
        let answer = push_usage(&base, &key, item).await;
        assert_eq!(answer.status, 422, "{field}: {}", answer.body);
        assert_eq!(answer.body["problems"][0]["path"], format!("$.{field}"));
        let message = answer.body["problems"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains("control character U+"), "{message}");
    }
    assert!(reconciled_quantities(&app, "cust-1").await.is_empty());
}
