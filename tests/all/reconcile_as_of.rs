//! Reconciling as of a date: a month reconciled after it ends gets that
//! month's periods and the next month's first day as effective date,
//! through the API (a job whose payload carries the date) and through
//! `trueup reconcile --as-of` against the configured store; bad dates are
//! a clear 422.
//!
//! The world is written straight into the store (a PSA sync and a vendor
//! sync, as the connectors would record them): Coho Winery bills 10
//! Microsoft 365 Business Premium seats and used 12 in October and 15 in
//! November; Contoso's contract ended on 31 October; a test tenant is
//! excluded from billing.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use trueup::app::App;
use trueup::auth::Role;
use trueup::config::{Config, RulesConfig, StoreConfig};
use trueup::jobs;
use trueup_core::model::{
    Attributes, BillingCycle, BillingTiming, Company, CompanyStatus, Contract, ContractStatus,
    ServiceLine, UsageObservation, UsageSource, VendorAccount, VendorIntegration,
};
use trueup_store::mappings::MappingOverride;
use trueup_store::sync::{PsaData, SyncKind, SyncStats, VendorData};

use crate::support::{repo_root, trueup_binary};
use crate::web_auth::{Client, NO_WORKERS, add_token, serve};

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

/// 25 November 2026, 18:00 UTC: "today" of the served app.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 18, 0, 0)
        .single()
        .expect("now")
}

fn company(id: &str, name: &str) -> Company {
    Company {
        id: id.into(),
        name: name.into(),
        identifier: None,
        domains: vec![],
        status: CompanyStatus::Active,
        account_links: vec![],
    }
}

fn contract(id: &str, company: &str, name: &str, end: Option<NaiveDate>) -> Contract {
    Contract {
        id: id.into(),
        company_id: company.into(),
        name: name.into(),
        contract_type: "Managed".into(),
        status: ContractStatus::Active,
        billing_cycle: BillingCycle::Monthly,
        start_date: Some(day(2026, 1, 1)),
        end_date: end,
        timing: BillingTiming::Advance,
        prorate: true,
        posted_through: None,
        cycle_anchor: None,
    }
}

fn line(id: &str, contract: &str, quantity: i64) -> ServiceLine {
    ServiceLine {
        id: id.into(),
        contract_id: contract.into(),
        product_id: "101".into(),
        product_identifier: "M365-BP".into(),
        description: "Microsoft 365 Business Premium".into(),
        quantity: Decimal::from(quantity),
        unit_price: Decimal::from(22),
        unit_cost: Decimal::from(18),
        effective_date: None,
        cancelled_date: None,
        billable: true,
    }
}

fn usage(account: &str, quantity: i64, on: NaiveDate) -> UsageObservation {
    UsageObservation {
        vendor: "microsoft-365".into(),
        account: account.into(),
        sku_id: "SPB".into(),
        sku_name: Arc::from("Microsoft 365 Business Premium"),
        quantity: Decimal::from(quantity),
        unit: Arc::from("licence"),
        unit_cost: None,
        billing_term: None,
        commitment_end: None,
        attributes: Attributes::default(),
        observed_at: Utc
            .from_utc_datetime(&on.and_hms_opt(6, 0, 0).expect("time"))
            .to_owned(),
    }
}

/// The app's configuration over a SQLite store in `dir`.
pub fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        store: StoreConfig {
            url: Some(format!("sqlite://{}", dir.join("trueup.db").display())),
        },
        rules: RulesConfig {
            path: repo_root().join("rules/default.rhai"),
        },
        ..Config::default()
    }
}

/// Opens the app in `dir` at [`now`] and records the PSA and vendor data.
pub async fn seeded_app(dir: &std::path::Path) -> App {
    let at = now();
    let app = App::open_with_clock(Arc::new(config(dir)), Arc::new(move || at))
        .await
        .expect("app");
    let store = app.store();
    let run = store
        .begin_sync(SyncKind::Psa, "trueup.connectwise", day(2026, 11, 25), at)
        .await
        .expect("PSA sync");
    store
        .complete_psa_sync(
            run,
            &PsaData {
                companies: vec![company("C1", "Coho Winery"), company("C2", "Contoso")],
                contracts: vec![
                    contract("K1", "C1", "Coho managed services", None),
                    contract("K2", "C2", "Contoso 2026", Some(day(2026, 10, 31))),
                ],
                lines: vec![line("L1", "K1", 10), line("L2", "K2", 5)],
                catalog: vec![],
            },
            &SyncStats::default(),
            at,
        )
        .await
        .expect("PSA data");
    store
        .upsert_vendor_integration(
            &VendorIntegration {
                id: "microsoft-365".into(),
                name: "Microsoft 365".into(),
                source: UsageSource::Plugin("trueup.microsoft365".into()),
            },
            at,
        )
        .await
        .expect("vendor");
    let run = store
        .begin_sync(SyncKind::Vendor, "microsoft-365", day(2026, 11, 25), at)
        .await
        .expect("vendor sync");
    let account = |id: &str, name: &str| VendorAccount {
        vendor: "microsoft-365".into(),
        id: id.into(),
        name: name.into(),
        domains: vec![],
    };
    store
        .complete_vendor_sync(
            run,
            &VendorData {
                accounts: vec![
                    account("T1", "Coho Winery (tenant)"),
                    account("T2", "Contoso Ltd (tenant)"),
                    account("T3", "Test tenant"),
                ],
                usage: vec![
                    usage("T1", 12, day(2026, 10, 15)),
                    usage("T1", 15, day(2026, 11, 20)),
                    usage("T2", 5, day(2026, 10, 15)),
                    usage("T3", 3, day(2026, 10, 15)),
                ],
            },
            &SyncStats::default(),
            at,
        )
        .await
        .expect("vendor data");
    for (account, company) in [("T1", Some("C1")), ("T2", Some("C2")), ("T3", None)] {
        store
            .set_mapping_override(&MappingOverride {
                vendor: "microsoft-365".into(),
                account: account.into(),
                company: company.map(Into::into),
                reason: "test".into(),
                set_by: "test".into(),
                set_at: at,
            })
            .await
            .expect("mapping");
    }
    app
}

/// Coho's card of the latest run: (period start, end, vendor quantity,
/// effective date).
async fn coho_card(app: &App) -> (NaiveDate, NaiveDate, Decimal, Option<NaiveDate>) {
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("runs")
        .expect("a run");
    let cards = app.store().run_cards(run.id).await.expect("cards");
    let card = cards
        .iter()
        .find(|c| c.line.as_ref().is_some_and(|l| l.as_str() == "L1"))
        .expect("a card for Coho's line");
    let period = card.period.expect("a period");
    (
        period.start,
        period.end,
        card.vendor_quantity.expect("vendor quantity").billable,
        card.effective().map(|e| e.date),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_reconciled_after_it_ends_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = seeded_app(dir.path()).await;
    let token = add_token(&app, "admin", Role::Admin).await;
    let server = serve(app.clone(), NO_WORKERS, Some(dir)).await;
    let admin = Client::with_token(&server.base, &token);

    // October, reconciled on 25 November.
    let answer = admin
        .post(
            "/api/v1/reconcile",
            serde_json::json!({ "as_of": "2026-10-31" }),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let job = answer.json()["job"].clone();
    assert_eq!(job["payload"]["as_of"], "2026-10-31", "{job}");
    let outcome = jobs::run_next(&app).await.expect("job").expect("a due job");
    assert!(
        outcome.message.contains("reconcile run"),
        "{}",
        outcome.message
    );
    let (start, end, vendor, effective) = coho_card(&app).await;
    assert_eq!((start, end), (day(2026, 10, 1), day(2026, 10, 31)));
    assert_eq!(
        vendor,
        Decimal::from(12),
        "November's usage is after the date"
    );
    assert_eq!(effective, Some(day(2026, 11, 1)));
    let runs = admin.get("/api/v1/runs").await.json();
    assert_eq!(runs[0]["as_of"], "2026-10-31", "the run records its date");
    // Contoso's contract ended on 31 October: still reconciled as of then.
    let october = runs[0]["id"].as_i64().expect("run id");
    let ended = admin
        .get(&format!(
            "/api/v1/runs/{october}/exclusions?reason=contract_ended"
        ))
        .await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(ended.json()["total"], 0);

    // No body: today, November.
    let answer = admin
        .send(axum::http::Method::POST, "/api/v1/reconcile", None)
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    jobs::run_next(&app).await.expect("job").expect("a due job");
    let (start, end, vendor, effective) = coho_card(&app).await;
    assert_eq!((start, end), (day(2026, 11, 1), day(2026, 11, 30)));
    assert_eq!(vendor, Decimal::from(15));
    assert_eq!(effective, Some(day(2026, 12, 1)));
    let runs = admin.get("/api/v1/runs").await.json();
    assert_eq!(runs[0]["as_of"], "2026-11-25");

    // Bad dates: 422 saying what is wrong; nothing is enqueued.
    let jobs_before = app.store().jobs(None, 100).await.expect("jobs").len();
    for (body, status, says) in [
        (
            serde_json::json!({ "as_of": "2026-02-30" }),
            422,
            "not a real date",
        ),
        (
            serde_json::json!({ "as_of": "31/10/2026" }),
            422,
            "YYYY-MM-DD",
        ),
        (
            serde_json::json!({ "as_of": "2026-11-26" }),
            422,
            "after today",
        ),
        (serde_json::json!({ "as_of": 20261031 }), 400, "as_of"),
        (serde_json::json!({ "asof": "2026-10-31" }), 400, "asof"),
    ] {
        let answer = admin.post("/api/v1/reconcile", body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        assert!(answer.text.contains(says), "{body}: {}", answer.text);
    }
    assert_eq!(
        app.store().jobs(None, 100).await.expect("jobs").len(),
        jobs_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reconciles_the_configured_store_as_of_a_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = seeded_app(dir.path()).await;
    app.store().close().await;
    drop(app);
    let config = dir.path().join("trueup.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[store]\nurl = {:?}\n[rules]\npath = {:?}\n",
            dir.path().display().to_string(),
            format!("sqlite://{}", dir.path().join("trueup.db").display()),
            repo_root().join("rules/default.rhai").display().to_string()
        ),
    )
    .expect("config");
    let output = std::process::Command::new(trueup_binary())
        .arg("--config")
        .arg(&config)
        .args(["reconcile", "--as-of", "2026-10-31"])
        .output()
        .expect("trueup runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("as of 2026-10-31"), "{stdout}");
    assert!(stdout.contains("account_excluded: 1"), "{stdout}");

    // The run and its cards are in the store, as the server would record them.
    let at = now();
    let app = App::open_with_clock(Arc::new(self::config(dir.path())), Arc::new(move || at))
        .await
        .expect("app");
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("runs")
        .expect("the CLI's run");
    assert_eq!(run.as_of, day(2026, 10, 31));
    let (start, end, vendor, effective) = coho_card(&app).await;
    assert_eq!((start, end), (day(2026, 10, 1), day(2026, 10, 31)));
    assert_eq!(vendor, Decimal::from(12));
    assert_eq!(effective, Some(day(2026, 11, 1)));
    app.store().close().await;

    // A date that has not happened is refused, saying so.
    let output = std::process::Command::new(trueup_binary())
        .arg("--config")
        .arg(&config)
        .args(["reconcile", "--as-of", "2999-01-31"])
        .output()
        .expect("trueup runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("after today"), "{stderr}");
}
