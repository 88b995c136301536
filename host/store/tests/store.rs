//! The store's behaviour, run against both backends: every test below is
//! generated twice by `both!` (module `sqlite` and module `postgres`).
//! PostgreSQL tests fail, never skip, when the server is unreachable.
//!
//! The whole file is test code (`cfg(test)`), where clippy.toml lets a
//! panic be the failure report.
#![cfg(test)]

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use trueup_core::actions::{Action, PendingWriteBack, Resolution, SnoozeUntil};
use trueup_core::card::{CardCategory, CardKey, ServiceCard};
use trueup_core::cycles::CycleAnchor;
use trueup_core::effective::ChangePolicy;
use trueup_core::mapping::SkuMapEntry;
use trueup_core::matching::{MatchOutcome, Suggestion};
use trueup_core::model::{
    AccountMapping, AccountMappingStatus, AccountRef, Attributes, BillingCycle, BillingTiming,
    CatalogItem, Company, CompanyStatus, Contract, ContractStatus, MappingMethod, ServiceLine,
    UsageObservation, UsageSource, VendorAccount, VendorId, VendorIntegration,
};
use trueup_core::reconcile::reconcile;
use trueup_core::synth::{SynthConfig, generate};
use trueup_store::audit::{AuditFilter, NewAuditEntry};
use trueup_store::auth::Role;
use trueup_store::cards::{CardStatus, NewDecision, WriteBackStatus};
use trueup_store::imports::{ImportStatus, NewCsvImport};
use trueup_store::jobs::{JobStatus, NewJob, Schedule};
use trueup_store::ledger::FigureSource;
use trueup_store::mappings::MappingOverride;
use trueup_store::outbox::{ApplyResult, NewOutboxEntry, OutboxStatus};
use trueup_store::reconcile::{CardFilter, GroupBy, NewReconcileRun};
use trueup_store::rules::SavedRule;
use trueup_store::sync::{PsaData, PushOutcome, SyncKind, SyncStats, SyncStatus, VendorData};
use trueup_store::testing::TestStore;
use trueup_store::{Backend, Store, StoreError};

// ------------------------------------------------------------------ helpers

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 28, 18, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn at_day(day: NaiveDate, hour: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(hour, 0, 0).unwrap())
}

fn company(id: &str) -> Company {
    Company {
        id: id.into(),
        name: format!("Company {id}"),
        identifier: Some(format!("C-{id}")),
        domains: vec![format!("{}.example", id.to_lowercase())],
        status: CompanyStatus::Active,
        account_links: vec![AccountRef {
            vendor: "m365".into(),
            account: format!("tenant-{id}").into(),
        }],
    }
}

fn contract(id: &str, company: &str) -> Contract {
    Contract {
        id: id.into(),
        company_id: company.into(),
        name: format!("Managed {id}"),
        contract_type: "Managed Services".into(),
        status: ContractStatus::Active,
        billing_cycle: BillingCycle::Monthly,
        start_date: Some(d(2024, 1, 1)),
        end_date: None,
        timing: BillingTiming::Advance,
        prorate: true,
        posted_through: Some(d(2025, 2, 28)),
        cycle_anchor: None,
    }
}

fn line(id: &str, contract: &str, quantity: Decimal) -> ServiceLine {
    ServiceLine {
        id: id.into(),
        contract_id: contract.into(),
        product_id: "101".into(),
        product_identifier: "M365-BP".into(),
        description: "Microsoft 365 Business Premium".into(),
        quantity,
        unit_price: dec!(22.00),
        unit_cost: dec!(18.70),
        effective_date: Some(d(2024, 1, 1)),
        cancelled_date: None,
        billable: true,
    }
}

/// Companies A and B, contracts KA and KB, and `lines` on KA.
fn psa(lines: Vec<ServiceLine>) -> PsaData {
    let mut other = contract("KB", "B");
    other.billing_cycle = BillingCycle::Other("Bi-Weekly".into());
    other.cycle_anchor = Some(CycleAnchor::ContractStart);
    other.timing = BillingTiming::Arrears;
    other.end_date = Some(d(2026, 12, 31));
    other.posted_through = None;
    PsaData {
        companies: vec![company("A"), company("B")],
        contracts: vec![contract("KA", "A"), other],
        lines,
        catalog: vec![CatalogItem {
            product_identifier: "EXO-ARCHIVE".into(),
            description: "Exchange Online Archiving".into(),
            unit_price: dec!(3.00),
            unit_cost: dec!(2.40),
        }],
    }
}

fn usage(
    vendor: &str,
    account: &str,
    sku: &str,
    quantity: Decimal,
    at: DateTime<Utc>,
) -> UsageObservation {
    UsageObservation {
        vendor: vendor.into(),
        account: account.into(),
        sku_id: sku.into(),
        sku_name: Arc::from(format!("SKU {sku}")),
        quantity,
        unit: Arc::from("licence"),
        unit_cost: Some(dec!(18.70)),
        billing_term: Some(Arc::from("Monthly")),
        commitment_end: Some(d(2025, 12, 31)),
        attributes: Attributes::new([(Arc::from("status"), Arc::from("ok"))]),
        observed_at: at,
    }
}

async fn register_vendor(store: &Store, id: &str) {
    store
        .upsert_vendor_integration(
            &VendorIntegration {
                id: id.into(),
                name: format!("Vendor {id}"),
                source: UsageSource::Plugin(format!("trueup.{id}")),
            },
            t(0),
        )
        .await
        .unwrap();
}

async fn psa_sync(
    store: &Store,
    as_of: NaiveDate,
    data: &PsaData,
    at: DateTime<Utc>,
) -> trueup_store::sync::SyncRunId {
    let run = store
        .begin_sync(SyncKind::Psa, "trueup.connectwise", as_of, at)
        .await
        .unwrap();
    store
        .complete_psa_sync(
            run,
            data,
            &SyncStats {
                pages: 3,
                requests: 7,
                ..SyncStats::default()
            },
            at + chrono::Duration::seconds(5),
        )
        .await
        .unwrap();
    run
}

async fn vendor_sync(
    store: &Store,
    vendor: &str,
    data: &VendorData,
    as_of: NaiveDate,
    at: DateTime<Utc>,
) {
    let run = store
        .begin_sync(SyncKind::Vendor, vendor, as_of, at)
        .await
        .unwrap();
    store
        .complete_vendor_sync(run, data, &SyncStats::default(), at)
        .await
        .unwrap();
}

/// Makes inserts of `value` into `table.column` fail inside the database
/// (a trigger), so a write fails half way through.
async fn fail_inserts(store: &TestStore, table: &str, column: &str, value: &str) {
    match store.backend() {
        Backend::Sqlite => {
            store
                .execute_raw(&format!(
                    "CREATE TRIGGER test_fail_{table} BEFORE INSERT ON {table} WHEN NEW.{column} = '{value}' \
                     BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                ))
                .await
                .unwrap();
        }
        Backend::Postgres => {
            store
                .execute_raw(&format!(
                    "CREATE FUNCTION test_fail_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN IF NEW.{column} = '{value}' THEN RAISE EXCEPTION 'injected failure'; END IF; \
                     RETURN NEW; END $$"
                ))
                .await
                .unwrap();
            store
                .execute_raw(&format!(
                    "CREATE TRIGGER test_fail_{table} BEFORE INSERT ON {table} FOR EACH ROW \
                     EXECUTE FUNCTION test_fail_{table}()"
                ))
                .await
                .unwrap();
        }
    }
}

fn small_reconcile(seed: u64) -> trueup_core::reconcile::ReconcileOutput {
    let config = SynthConfig {
        seed,
        companies: 12,
        usage_rows: 12 * 64 + 300,
        as_of: d(2025, 3, 31),
    };
    let snapshot = generate(&config);
    let mapper = snapshot.sku_mapper();
    let mappings = snapshot.account_mappings.clone();
    reconcile(&snapshot.reconcile_input(config.as_of, &mappings, &[], &mapper))
}

fn write_back(card: &ServiceCard, decision: &str) -> (Resolution, NewOutboxEntry) {
    let wb = PendingWriteBack {
        idempotency_key: format!("idem-{decision}"),
        decision_id: decision.into(),
        card_key: card.key,
        company: card.company.clone().unwrap_or_else(|| "A".into()),
        contract: card.contract.clone().unwrap_or_else(|| "KA".into()),
        line: card.line.clone(),
        product: card.product.clone().unwrap_or_else(|| "M365-BP".into()),
        from_quantity: card.psa_quantity.unwrap_or_default(),
        to_quantity: dec!(12),
        effective_date: d(2025, 4, 1),
        change_policy: ChangePolicy::Dated,
    };
    let entry = NewOutboxEntry {
        idempotency_key: wb.idempotency_key.clone(),
        card_key: card.key,
        change: serde_json::to_value(&wb).unwrap(),
        not_before: t(0),
    };
    (Resolution::WriteBack(wb), entry)
}

fn outbox_entry(i: u128) -> NewOutboxEntry {
    NewOutboxEntry {
        idempotency_key: format!("key-{i}"),
        card_key: CardKey::from_value(i),
        change: serde_json::json!({ "line_id": format!("L{i}"), "new_quantity": "12" }),
        not_before: t(0),
    }
}

// -------------------------------------------------------------------- tests

async fn decimals_round_trip_exactly(store: TestStore) {
    let awkward = [
        dec!(0.1) + dec!(0.2),
        dec!(123456789.123456789),
        dec!(12.50),
        dec!(-0.000000001),
        dec!(79228162514264337593543950335),
        dec!(0),
    ];
    let lines: Vec<ServiceLine> = awkward
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut l = line(&format!("L{i}"), "KA", *q);
            l.unit_price = *q;
            l.unit_cost = dec!(0.30);
            l
        })
        .collect();
    psa_sync(&store, d(2025, 3, 28), &psa(lines), t(0)).await;
    let state = store.psa_state().await.unwrap();
    for (i, expected) in awkward.iter().enumerate() {
        let got = &state.data.lines[i];
        assert_eq!(got.quantity, *expected);
        assert_eq!(
            got.quantity.scale(),
            expected.scale(),
            "scale of {expected}"
        );
        assert_eq!(got.quantity.to_string(), expected.to_string());
        assert_eq!(got.unit_price.to_string(), expected.to_string());
        assert_eq!(got.unit_cost.to_string(), "0.30");
    }
    assert_eq!(state.data.lines[0].quantity.to_string(), "0.3");
    // The same values in the usage ledger and the pushed usage.
    register_vendor(&store, "m365").await;
    let rows: Vec<UsageObservation> = awkward
        .iter()
        .enumerate()
        .map(|(i, q)| {
            usage(
                "m365",
                &format!("acct-{i}"),
                "SPB",
                *q,
                at_day(d(2025, 3, 20), 12),
            )
        })
        .collect();
    vendor_sync(
        &store,
        "m365",
        &VendorData {
            accounts: vec![],
            usage: rows.clone(),
        },
        d(2025, 3, 20),
        t(10),
    )
    .await;
    let back = store
        .usage_for_period(d(2025, 3, 1), d(2025, 3, 31))
        .await
        .unwrap();
    assert_eq!(back, rows);
    for (a, b) in back.iter().zip(&rows) {
        assert_eq!(a.quantity.scale(), b.quantity.scale());
    }
}

async fn psa_state_round_trips_with_its_sync(store: TestStore) {
    assert_eq!(
        store.psa_state().await.unwrap().sync,
        None,
        "nothing before the first sync"
    );
    let data = psa(vec![line("L2", "KA", dec!(10)), line("L1", "KA", dec!(3))]);
    let run = psa_sync(&store, d(2025, 3, 28), &data, t(0)).await;
    let state = store.psa_state().await.unwrap();
    let mut expected = data.clone();
    expected.lines.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(state.data, expected);
    let sync = state.sync.unwrap();
    assert_eq!(
        (sync.id, sync.status, sync.as_of),
        (run, SyncStatus::Succeeded, d(2025, 3, 28))
    );
    assert_eq!(sync.stats.pages, 3);
    assert_eq!(sync.started_at, t(0));
    assert_eq!(sync.finished_at, Some(t(5)));
    // A second sync replaces: L1 vanished, L2 changed, L3 is new.
    let second = psa(vec![line("L2", "KA", dec!(11)), line("L3", "KA", dec!(1))]);
    let run2 = psa_sync(&store, d(2025, 3, 29), &second, t(100)).await;
    let state = store.psa_state().await.unwrap();
    let ids: Vec<&str> = state.data.lines.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["L2", "L3"]);
    assert_eq!(state.data.lines[0].quantity, dec!(11));
    assert_eq!(state.sync.unwrap().id, run2);
    let health = store.sync_health().await.unwrap();
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].last_run.id, run2);
    assert_eq!(health[0].last_success.as_ref().unwrap().id, run2);
}

async fn failed_psa_sync_keeps_previous_state_and_its_time(store: TestStore) {
    let first = psa(vec![line("L1", "KA", dec!(10)), line("L2", "KA", dec!(5))]);
    let good = psa_sync(&store, d(2025, 3, 27), &first, t(0)).await;
    let before = store.psa_state().await.unwrap();
    // The ledger is written after the new state replaced the old: failing
    // there fails the sync half way through.
    fail_inserts(&store, "ledger_psa_lines", "line_id", "boom").await;
    let mut lines: Vec<ServiceLine> = (0..2500)
        .map(|i| line(&format!("N{i:04}"), "KA", dec!(1)))
        .collect();
    lines.push(line("boom", "KA", dec!(1)));
    let run = store
        .begin_sync(SyncKind::Psa, "trueup.connectwise", d(2025, 3, 28), t(100))
        .await
        .unwrap();
    let error = store
        .complete_psa_sync(run, &psa(lines), &SyncStats::default(), t(105))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    assert!(error.to_string().contains("record PSA sync"), "{error}");
    let after = store.psa_state().await.unwrap();
    assert_eq!(after, before, "the previous state and its sync stay");
    assert_eq!(after.sync.unwrap().id, good);
    let failed = store.sync_run(run).await.unwrap();
    assert_eq!(failed.status, SyncStatus::Failed);
    assert!(failed.error.unwrap().contains("injected failure"));
    assert_eq!(
        store
            .last_successful_sync(SyncKind::Psa, "trueup.connectwise")
            .await
            .unwrap()
            .unwrap()
            .id,
        good
    );
    let health = store.sync_health().await.unwrap();
    assert_eq!(health[0].last_run.id, run);
    assert_eq!(health[0].last_success.as_ref().unwrap().id, good);
    // Nothing of the failed sync reached the ledger.
    assert_eq!(
        store.state_as_of(d(2025, 3, 31)).await.unwrap().psa_sync,
        Some(good)
    );
    // Bad data fails before writing, with a clear error, and also leaves
    // the state alone.
    let run = store
        .begin_sync(SyncKind::Psa, "trueup.connectwise", d(2025, 3, 29), t(200))
        .await
        .unwrap();
    let dup = psa(vec![line("L1", "KA", dec!(1)), line("L1", "KA", dec!(2))]);
    let error = store
        .complete_psa_sync(run, &dup, &SyncStats::default(), t(201))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("service line id \"L1\" appears twice"),
        "{error}"
    );
    assert_eq!(store.psa_state().await.unwrap(), before);
    // A finished run cannot be finished again.
    let error = store
        .fail_sync(run, "again", &SyncStats::default(), t(300))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("already finished"), "{error}");
}

async fn an_older_sync_never_overwrites_a_newer_one(store: TestStore) {
    let old = store
        .begin_sync(SyncKind::Psa, "p", d(2025, 3, 1), t(0))
        .await
        .unwrap();
    let new = store
        .begin_sync(SyncKind::Psa, "p", d(2025, 3, 2), t(1))
        .await
        .unwrap();
    store
        .complete_psa_sync(
            new,
            &psa(vec![line("NEW", "KA", dec!(2))]),
            &SyncStats::default(),
            t(2),
        )
        .await
        .unwrap();
    let error = store
        .complete_psa_sync(
            old,
            &psa(vec![line("OLD", "KA", dec!(1))]),
            &SyncStats::default(),
            t(3),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("must not overwrite"), "{error}");
    assert_eq!(
        store.psa_state().await.unwrap().data.lines[0].id.as_str(),
        "NEW"
    );
    assert_eq!(
        store.sync_run(old).await.unwrap().status,
        SyncStatus::Failed
    );
}

async fn vendor_usage_is_appended_and_a_resync_replaces_its_day(store: TestStore) {
    register_vendor(&store, "m365").await;
    let accounts = vec![
        VendorAccount {
            vendor: "m365".into(),
            id: "t1".into(),
            name: "Tenant 1".into(),
            domains: vec!["a.example".into()],
        },
        VendorAccount {
            vendor: "m365".into(),
            id: "t2".into(),
            name: "Tenant 2".into(),
            domains: vec![],
        },
    ];
    let day1 = at_day(d(2025, 3, 10), 6);
    let first = VendorData {
        accounts: accounts.clone(),
        usage: vec![
            usage("m365", "t1", "SPB", dec!(10), day1),
            usage("m365", "t2", "SPB", dec!(4), day1),
        ],
    };
    vendor_sync(&store, "m365", &first, d(2025, 3, 10), t(0)).await;
    // Same day again, t1 now 11: replaces the day's figures, not added.
    let second = VendorData {
        accounts: accounts[..1].to_vec(),
        usage: vec![usage(
            "m365",
            "t1",
            "SPB",
            dec!(11),
            day1 + chrono::Duration::hours(6),
        )],
    };
    vendor_sync(&store, "m365", &second, d(2025, 3, 10), t(10)).await;
    let rows = store
        .usage_for_period(d(2025, 3, 1), d(2025, 3, 31))
        .await
        .unwrap();
    let mut seen: Vec<(String, Decimal)> = rows
        .iter()
        .map(|r| (r.account.to_string(), r.quantity))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("t1".to_owned(), dec!(11)), ("t2".to_owned(), dec!(4))]
    );
    // Accounts are replaced per sync.
    let now: Vec<String> = store
        .vendor_accounts(None)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(now, ["t1"]);
    // Outside the period: nothing.
    assert!(
        store
            .usage_for_period(d(2025, 4, 1), d(2025, 4, 30))
            .await
            .unwrap()
            .is_empty()
    );
    // Both syncs are in the ledger: as of the 10th, the latest report wins.
    let state = store.state_as_of(d(2025, 3, 10)).await.unwrap();
    let t1 = state
        .vendor
        .iter()
        .find(|f| f.account.as_str() == "t1")
        .unwrap();
    assert_eq!(
        (t1.quantity, t1.day, t1.source),
        (dec!(11), d(2025, 3, 10), FigureSource::Reported)
    );
    // A sync for an unregistered vendor is refused and recorded as failed.
    let run = store
        .begin_sync(SyncKind::Vendor, "nobody", d(2025, 3, 10), t(20))
        .await
        .unwrap();
    let error = store
        .complete_vendor_sync(
            run,
            &VendorData {
                accounts: vec![],
                usage: vec![usage("nobody", "x", "s", dec!(1), day1)],
            },
            &SyncStats::default(),
            t(21),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not registered"), "{error}");
    assert_eq!(
        store.sync_run(run).await.unwrap().status,
        SyncStatus::Failed
    );
    // Rows of another vendor are refused.
    let run = store
        .begin_sync(SyncKind::Vendor, "m365", d(2025, 3, 10), t(30))
        .await
        .unwrap();
    let error = store
        .complete_vendor_sync(
            run,
            &VendorData {
                accounts: vec![],
                usage: vec![usage("pax8", "x", "s", dec!(1), day1)],
            },
            &SyncStats::default(),
            t(31),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("pax8"), "{error}");
}

async fn pushed_usage_is_an_idempotent_set_and_csv_imports_count(store: TestStore) {
    let vendor = VendorIntegration {
        id: "backup".into(),
        name: "Backup".into(),
        source: UsageSource::Push,
    };
    store
        .upsert_vendor_integration(&vendor, t(0))
        .await
        .unwrap();
    assert_eq!(store.vendor_integrations().await.unwrap(), [vendor]);
    let push = store
        .create_push_integration(&"backup".into(), "backup push", "push-key-1", 60, 10, t(0))
        .await
        .unwrap();
    assert_eq!(
        store
            .push_integration_by_key("push-key-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        push
    );
    assert!(
        store
            .push_integration_by_key("wrong")
            .await
            .unwrap()
            .is_none()
    );
    let day = at_day(d(2025, 3, 15), 9);
    let row = usage("backup", "site-1", "SERVER", dec!(3), day);
    assert_eq!(
        store.push_usage(Some(push), &row, t(1)).await.unwrap(),
        PushOutcome::Set
    );
    assert_eq!(
        store.push_usage(Some(push), &row, t(2)).await.unwrap(),
        PushOutcome::Unchanged
    );
    let mut later = row.clone();
    later.quantity = dec!(5);
    later.observed_at = day + chrono::Duration::hours(3);
    assert_eq!(
        store.push_usage(Some(push), &later, t(3)).await.unwrap(),
        PushOutcome::Set
    );
    let rows = store
        .usage_for_period(d(2025, 3, 1), d(2025, 3, 31))
        .await
        .unwrap();
    assert_eq!(
        rows,
        [later.clone()],
        "one unit count per day: the latest push"
    );
    let state = store.state_as_of(d(2025, 3, 31)).await.unwrap();
    assert_eq!(state.vendor.len(), 1);
    assert_eq!(
        (state.vendor[0].quantity, state.vendor[0].source),
        (dec!(5), FigureSource::Pushed)
    );
    // CSV imports: a good one lands, a failed one stores no row.
    store
        .upsert_vendor_integration(
            &VendorIntegration {
                id: "av".into(),
                name: "AV".into(),
                source: UsageSource::Csv("av-monthly".into()),
            },
            t(0),
        )
        .await
        .unwrap();
    store
        .put_csv_profile(&trueup_store::imports::CsvProfile {
            name: "av-monthly".into(),
            vendor: "av".into(),
            definition: serde_json::json!({"account": "Customer", "quantity": "Seats"}),
            updated_by: "pat".into(),
            updated_at: t(0),
        })
        .await
        .unwrap();
    let csv_rows = vec![usage(
        "av",
        "cust-1",
        "AV",
        dec!(7.5),
        at_day(d(2025, 3, 20), 0),
    )];
    let ok = store
        .record_csv_import(&NewCsvImport {
            profile: "av-monthly",
            file_name: "march.csv",
            row_count: 1,
            rows: &csv_rows,
            errors: &serde_json::json!([]),
            by: "pat",
            at: t(5),
        })
        .await
        .unwrap();
    assert_eq!(ok.status, ImportStatus::Succeeded);
    let bad = store
        .record_csv_import(&NewCsvImport {
            profile: "av-monthly",
            file_name: "broken.csv",
            row_count: 2,
            rows: &[usage(
                "av",
                "cust-2",
                "AV",
                dec!(1),
                at_day(d(2025, 3, 21), 0),
            )],
            errors: &serde_json::json!([{"row": 2, "error": "Seats is not a number"}]),
            by: "pat",
            at: t(6),
        })
        .await
        .unwrap();
    assert_eq!(bad.status, ImportStatus::Failed);
    let imports = store.csv_imports(10).await.unwrap();
    assert_eq!(
        imports.iter().map(|i| i.id).collect::<Vec<_>>(),
        [bad.id, ok.id]
    );
    assert_eq!(imports[0].errors[0]["row"], 2);
    let rows = store
        .usage_for_period(d(2025, 3, 1), d(2025, 3, 31))
        .await
        .unwrap();
    let accounts: BTreeSet<String> = rows.iter().map(|r| r.account.to_string()).collect();
    assert_eq!(
        accounts,
        BTreeSet::from(["cust-1".to_owned(), "site-1".to_owned()])
    );
    assert!(
        store
            .record_csv_import(&NewCsvImport {
                profile: "nope",
                file_name: "x",
                row_count: 0,
                rows: &[],
                errors: &serde_json::Value::Null,
                by: "pat",
                at: t(7)
            })
            .await
            .unwrap_err()
            .is_not_found()
    );
    store.set_push_rate_limits(push, 120, 20).await.unwrap();
    store.revoke_push_integration(push, t(8)).await.unwrap();
    assert!(
        store
            .push_integration_by_key("push-key-1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.push_integrations().await.unwrap()[0].requests_per_minute,
        120
    );
}

async fn ledger_tables_are_append_only(store: TestStore) {
    psa_sync(
        &store,
        d(2025, 3, 28),
        &psa(vec![line("L1", "KA", dec!(1))]),
        t(0),
    )
    .await;
    store
        .audit(&NewAuditEntry {
            at: t(1),
            actor: "pat".into(),
            action: "card.approve".into(),
            subject: "card:x".into(),
            details: serde_json::json!({}),
        })
        .await
        .unwrap();
    let out = small_reconcile(3);
    store
        .record_reconcile_run(NewReconcileRun {
            output: &out,
            rule_checksum: None,
            psa_sync: None,
            started_at: t(2),
            finished_at: t(3),
        })
        .await
        .unwrap();
    for statement in [
        "UPDATE ledger_psa_lines SET quantity = '2'",
        "DELETE FROM ledger_psa_lines",
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "UPDATE cards SET category = 'no_change'",
        "DELETE FROM cards",
        "DELETE FROM reconcile_runs",
    ] {
        let error = store.execute_raw(statement).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    let audit = store
        .audit_entries(&AuditFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(audit[0].entry.actor, "pat");
    // A card must belong to a recorded run (a foreign key on SQLite, a
    // per-statement check on PostgreSQL), whatever else the statement holds.
    let run = store.latest_reconcile_run().await.unwrap().unwrap().id;
    let card = |run: i64, position: i64| {
        format!(
            "({run}, {position}, '{:032x}', 'no_change', '[]', 'f', '{{\"vendors\":0}}')",
            run * 1_000_000 + position
        )
    };
    let insert =
        "INSERT INTO cards (run_id, position, key, category, vendors, fingerprint, detail) VALUES ";
    for values in [
        card(run.0 + 1000, 0),
        format!("{}, {}", card(run.0, 100_000), card(run.0 + 1000, 1)),
    ] {
        let error = store
            .execute_raw(&format!("{insert}{values}"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::MissingReference { .. }),
            "{values}: {error}"
        );
    }
    store
        .execute_raw(&format!("{insert}{}", card(run.0, 100_000)))
        .await
        .unwrap();
    let total = store
        .cards_page(run, &CardFilter::default(), None, 1)
        .await
        .unwrap()
        .total;
    assert_eq!(
        total,
        out.cards.len() as u64 + 1,
        "the refused statements left nothing behind"
    );
}

async fn reconcile_runs_round_trip_every_card_exactly(store: TestStore) {
    let out = small_reconcile(7);
    assert!(out.cards.len() > 100, "{} cards", out.cards.len());
    let (checksum, _) = store
        .save_rule_version("rule x {}", "pat", &serde_json::json!({"ok": true}), t(0))
        .await
        .unwrap();
    let psa_run = psa_sync(&store, d(2025, 3, 31), &psa(vec![]), t(0)).await;
    let run = store
        .record_reconcile_run(NewReconcileRun {
            output: &out,
            rule_checksum: Some(&checksum),
            psa_sync: Some(psa_run),
            started_at: t(10),
            finished_at: t(12),
        })
        .await
        .unwrap();
    let stored = store.reconcile_run(run).await.unwrap();
    assert_eq!(stored.card_count, out.cards.len() as u64);
    assert_eq!(stored.totals, out.totals);
    assert_eq!(stored.stats, out.stats);
    assert_eq!(stored.rule_checksum.as_deref(), Some(checksum.as_str()));
    assert_eq!(stored.psa_sync, Some(psa_run));
    assert_eq!(store.latest_reconcile_run().await.unwrap().unwrap().id, run);
    assert_eq!(store.run_exclusions(run).await.unwrap(), out.exclusions);
    let cards = store.run_cards(run).await.unwrap();
    assert_eq!(cards.len(), out.cards.len());
    for (a, b) in cards.iter().zip(&out.cards) {
        assert_eq!(a, b, "card {}", b.key);
    }
    let some = &out.cards[out.cards.len() / 2];
    assert_eq!(
        store.card(run, &some.key).await.unwrap().as_ref(),
        Some(some)
    );
    assert_eq!(
        store.card(run, &CardKey::from_value(1)).await.unwrap(),
        None
    );
    // Totals with no filter are the reconcile's.
    assert_eq!(
        store
            .card_totals(run, &CardFilter::default())
            .await
            .unwrap(),
        out.totals
    );
    // Pages cover every card once, in order.
    let mut after = None;
    let mut keys = Vec::new();
    loop {
        let page = store
            .cards_page(run, &CardFilter::default(), after, 37)
            .await
            .unwrap();
        assert_eq!(page.total, out.cards.len() as u64);
        keys.extend(page.cards.iter().map(|c| c.key));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(keys, out.cards.iter().map(|c| c.key).collect::<Vec<_>>());
    // Filters agree with the cards themselves.
    let company = out.cards[0].company.clone().unwrap();
    let filter = CardFilter {
        categories: vec![CardCategory::Reconcile, CardCategory::NewRevenue],
        company: Some(company.clone()),
        ..CardFilter::default()
    };
    let expected: Vec<CardKey> = out
        .cards
        .iter()
        .filter(|c| {
            c.company.as_ref() == Some(&company)
                && matches!(
                    c.category,
                    CardCategory::Reconcile | CardCategory::NewRevenue
                )
        })
        .map(|c| c.key)
        .collect();
    let page = store.cards_page(run, &filter, None, 1000).await.unwrap();
    assert_eq!(
        page.cards.iter().map(|c| c.key).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(page.total, expected.len() as u64);
    let selected: Vec<ServiceCard> = out
        .cards
        .iter()
        .filter(|c| expected.contains(&c.key))
        .cloned()
        .collect();
    assert_eq!(
        store.card_totals(run, &filter).await.unwrap(),
        trueup_core::card::totals(&selected)
    );
    let vendor: VendorId = "ninjaone".into();
    let by_vendor = store
        .cards_page(
            run,
            &CardFilter {
                vendor: Some(vendor.clone()),
                ..CardFilter::default()
            },
            None,
            1000,
        )
        .await
        .unwrap();
    let expected = out
        .cards
        .iter()
        .filter(|c| c.vendors.contains(&vendor))
        .count();
    assert!(expected > 0);
    assert_eq!(by_vendor.total, expected as u64);
    assert!(by_vendor.cards.iter().all(|c| c.vendors.contains(&vendor)));
    // Groups add up to the totals.
    let groups = store
        .card_groups(run, &CardFilter::default(), GroupBy::Company)
        .await
        .unwrap();
    let count: usize = groups.iter().flat_map(|g| g.totals.cards.values()).sum();
    assert_eq!(count, out.cards.len());
    let under: Decimal = groups.iter().map(|g| g.totals.under_billed).sum();
    assert_eq!(under, out.totals.under_billed);
    let by_contract = store
        .card_groups(run, &CardFilter::default(), GroupBy::Contract)
        .await
        .unwrap();
    for g in &by_contract {
        let expected = out
            .cards
            .iter()
            .filter(|c| c.contract.as_ref().map(|c| c.as_str()) == g.key.as_deref())
            .count();
        assert_eq!(
            g.totals.cards.values().sum::<usize>(),
            expected,
            "{:?}",
            g.key
        );
    }
    assert_eq!(
        by_contract
            .iter()
            .flat_map(|g| g.totals.cards.values())
            .sum::<usize>(),
        out.cards.len()
    );
    let by_category = store
        .card_groups(run, &CardFilter::default(), GroupBy::Category)
        .await
        .unwrap();
    for g in &by_category {
        let category: CardCategory =
            serde_json::from_value(serde_json::json!(g.key.clone().unwrap())).unwrap();
        assert_eq!(g.totals.cards[&category], out.totals.cards[&category]);
    }
    let by_vendor = store
        .card_groups(run, &CardFilter::default(), GroupBy::Vendor)
        .await
        .unwrap();
    let ninja = by_vendor
        .iter()
        .find(|g| g.key.as_deref() == Some("ninjaone"))
        .unwrap();
    assert_eq!(ninja.totals.cards.values().sum::<usize>(), expected);
    // A second run of the same data: the card's history has both.
    let run2 = store
        .record_reconcile_run(NewReconcileRun {
            output: &out,
            rule_checksum: None,
            psa_sync: None,
            started_at: t(20),
            finished_at: t(21),
        })
        .await
        .unwrap();
    let history = store
        .card_history(&some.key, some.company.as_ref())
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|h| h.run).collect::<Vec<_>>(),
        [run, run2]
    );
    assert_eq!(history[1].psa_quantity, some.psa_quantity);
    assert_eq!(store.reconcile_runs(10).await.unwrap().len(), 2);
    // Money the store cannot compute again from unit price and quantities
    // (amounts edited, or the same value at another scale) is kept whole:
    // cards still read back exactly.
    let mut edited = out.clone();
    let mut edits = 0;
    for (i, card) in edited.cards.iter_mut().enumerate() {
        if let Some(money) = card.money.as_mut() {
            match i % 3 {
                0 => money.before.margin += dec!(0.01),
                1 => money.after.price = money.after.price.round_dp(0) * dec!(1.000),
                _ => continue,
            }
            edits += 1;
        }
    }
    assert!(edits > 10, "{edits} cards edited");
    let run3 = store
        .record_reconcile_run(NewReconcileRun {
            output: &edited,
            rule_checksum: None,
            psa_sync: None,
            started_at: t(22),
            finished_at: t(23),
        })
        .await
        .unwrap();
    let cards = store.run_cards(run3).await.unwrap();
    for (a, b) in cards.iter().zip(&edited.cards) {
        assert_eq!(a, b, "card {}", b.key);
        if let (Some(a), Some(b)) = (a.money, b.money) {
            assert_eq!(
                (a.after.price.to_string(), a.before.margin.to_string()),
                (b.after.price.to_string(), b.before.margin.to_string()),
                "same text"
            );
        }
    }
    // A card key twice in one output is refused and nothing is written.
    let mut twice = out.clone();
    twice.cards.push(twice.cards[0].clone());
    let error = store
        .record_reconcile_run(NewReconcileRun {
            output: &twice,
            rule_checksum: None,
            psa_sync: None,
            started_at: t(30),
            finished_at: t(31),
        })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("appears twice"), "{error}");
    assert_eq!(store.reconcile_runs(10).await.unwrap().len(), 3);
}

async fn decisions_set_card_state_in_one_transaction(store: TestStore) {
    let out = small_reconcile(11);
    let run = store
        .record_reconcile_run(NewReconcileRun {
            output: &out,
            rule_checksum: None,
            psa_sync: None,
            started_at: t(0),
            finished_at: t(1),
        })
        .await
        .unwrap();
    let proposals: Vec<&ServiceCard> = out
        .cards
        .iter()
        .filter(|c| c.category.proposes_change())
        .take(3)
        .collect();
    assert_eq!(proposals.len(), 3);
    let (resolution, entry) = write_back(proposals[0], "d-1");
    let decisions = vec![
        NewDecision {
            id: "d-1".into(),
            card_key: proposals[0].key,
            run: Some(run),
            action: Action::Approve,
            resolution,
            outbox: Some(entry),
            actor: "pat".into(),
            at: t(10),
        },
        NewDecision {
            id: "d-2".into(),
            card_key: proposals[1].key,
            run: Some(run),
            action: Action::Dismiss,
            resolution: Resolution::Dismissed {
                through: d(2025, 3, 31),
            },
            outbox: None,
            actor: "pat".into(),
            at: t(10),
        },
        NewDecision {
            id: "d-3".into(),
            card_key: proposals[2].key,
            run: Some(run),
            action: Action::Snooze {
                until: SnoozeUntil::NumbersChange,
            },
            resolution: Resolution::Snoozed {
                until: None,
                fingerprint: Some(proposals[2].numbers_fingerprint()),
            },
            outbox: None,
            actor: "sam".into(),
            at: t(11),
        },
    ];
    let outbox = store.record_decisions(&decisions).await.unwrap();
    assert!(outbox[0].is_some() && outbox[1].is_none() && outbox[2].is_none());
    let approved = store.card_state(&proposals[0].key).await.unwrap().unwrap();
    assert_eq!(
        (approved.status, approved.write_back, approved.outbox),
        (
            CardStatus::Approved,
            Some(WriteBackStatus::Pending),
            outbox[0]
        )
    );
    assert_eq!(
        store.card_decisions(&proposals[0].key).await.unwrap()[0].resolution,
        decisions[0].resolution
    );
    let entry = store.outbox_entry(outbox[0].unwrap()).await.unwrap();
    assert_eq!(
        (entry.status, entry.decision_id.as_deref()),
        (OutboxStatus::Pending, Some("d-1"))
    );
    // Status filters, on the run's as-of date and after the dismissal.
    let on = |status, today| CardFilter {
        status: Some(status),
        today: Some(today),
        ..CardFilter::default()
    };
    let dismissed = store
        .cards_page(run, &on(CardStatus::Dismissed, d(2025, 3, 31)), None, 100)
        .await
        .unwrap();
    assert_eq!(
        dismissed.cards.iter().map(|c| c.key).collect::<Vec<_>>(),
        [proposals[1].key]
    );
    assert_eq!(
        dismissed.cards[0].state.as_ref().unwrap().dismissed_through,
        Some(d(2025, 3, 31))
    );
    assert_eq!(
        store
            .cards_page(run, &on(CardStatus::Dismissed, d(2025, 4, 1)), None, 100)
            .await
            .unwrap()
            .total,
        0
    );
    let snoozed = store
        .cards_page(run, &on(CardStatus::Snoozed, d(2026, 1, 1)), None, 100)
        .await
        .unwrap();
    assert_eq!(snoozed.total, 1, "numbers unchanged: still snoozed");
    let open = store
        .cards_page(run, &on(CardStatus::Open, d(2025, 3, 31)), None, 1000)
        .await
        .unwrap();
    assert_eq!(open.total, out.cards.len() as u64 - 3);
    // The state's own rule agrees.
    let state = store.card_state(&proposals[2].key).await.unwrap().unwrap();
    assert_eq!(
        state.status_on(d(2026, 1, 1), &proposals[2].numbers_fingerprint()),
        CardStatus::Snoozed
    );
    assert_eq!(
        state.status_on(d(2026, 1, 1), "other numbers"),
        CardStatus::Open
    );
    // A batch with one bad decision (a repeated idempotency key) writes
    // nothing at all.
    let (resolution, mut entry) = write_back(proposals[1], "d-4");
    entry.idempotency_key = "idem-d-1".into();
    let batch = vec![
        NewDecision {
            id: "d-5".into(),
            card_key: proposals[2].key,
            run: Some(run),
            action: Action::Exclude {
                reason: "internal".into(),
            },
            resolution: Resolution::Excluded {
                reason: "internal".into(),
            },
            outbox: None,
            actor: "pat".into(),
            at: t(20),
        },
        NewDecision {
            id: "d-4".into(),
            card_key: proposals[1].key,
            run: Some(run),
            action: Action::Approve,
            resolution,
            outbox: Some(entry),
            actor: "pat".into(),
            at: t(20),
        },
    ];
    let error = store.record_decisions(&batch).await.unwrap_err();
    assert!(error.is_duplicate(), "{error}");
    assert!(
        error
            .to_string()
            .contains("write-back idempotency key \"idem-d-1\""),
        "{error}"
    );
    assert_eq!(
        store
            .card_state(&proposals[2].key)
            .await
            .unwrap()
            .unwrap()
            .status,
        CardStatus::Snoozed
    );
    assert!(
        store
            .card_decisions(&proposals[2].key)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != "d-5")
    );
    // A repeated decision id is refused the same way.
    let error = store.record_decisions(&decisions[1..2]).await.unwrap_err();
    assert!(error.to_string().contains("decision id \"d-2\""), "{error}");
    // A write-back without its outbox entry is refused.
    let (resolution, _) = write_back(proposals[2], "d-6");
    let error = store
        .record_decisions(&[NewDecision {
            id: "d-6".into(),
            card_key: proposals[2].key,
            run: None,
            action: Action::Approve,
            resolution,
            outbox: None,
            actor: "pat".into(),
            at: t(30),
        }])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid { .. }), "{error}");
    // Tags and notes, in bulk.
    let keys: Vec<CardKey> = proposals.iter().map(|c| c.key).collect();
    store
        .tag_cards(&keys, " Review-Q2 ", "pat", t(40))
        .await
        .unwrap();
    store
        .tag_cards(&keys[..1], "review-q2", "sam", t(41))
        .await
        .unwrap();
    assert_eq!(store.card_tags(&keys[0]).await.unwrap(), ["review-q2"]);
    let tagged = store
        .cards_page(
            run,
            &CardFilter {
                tag: Some("REVIEW-Q2".into()),
                ..CardFilter::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(tagged.total, 3);
    assert_eq!(tagged.cards[0].tags, ["review-q2"]);
    store.untag_cards(&keys[1..], "review-q2").await.unwrap();
    assert_eq!(
        store.all_tags().await.unwrap(),
        [("review-q2".to_owned(), 1)]
    );
    assert!(
        store
            .tag_cards(&keys, "two words", "pat", t(42))
            .await
            .is_err()
    );
    store
        .add_card_note(&keys[0], "pat", "customer confirmed 12 seats", t(43))
        .await
        .unwrap();
    assert!(
        store
            .add_card_note(&keys[0], "pat", "   ", t(44))
            .await
            .is_err()
    );
    let notes = store.card_notes(&keys[0]).await.unwrap();
    assert_eq!(
        (notes.len(), notes[0].text.as_str()),
        (1, "customer confirmed 12 seats")
    );
    store.reopen_cards(&keys[1..2], "pat", t(50)).await.unwrap();
    assert_eq!(
        store.card_state(&keys[1]).await.unwrap().unwrap().status,
        CardStatus::Open
    );
}

async fn outbox_claims_each_entry_exactly_once_under_concurrency(store: TestStore) {
    const ENTRIES: u128 = 60;
    for i in 0..ENTRIES {
        store
            .enqueue_write_back(&outbox_entry(i), t(0))
            .await
            .unwrap();
    }
    let other = store.another_pool().await.unwrap();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let pool = if worker % 2 == 0 {
            store.store().clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let name = format!("worker-{worker}");
            let mut claimed = Vec::new();
            while let Some(entry) = pool
                .claim_next_write_back(&name, Duration::from_secs(60), t(1))
                .await
                .unwrap()
            {
                assert_eq!(entry.lease_owner.as_deref(), Some(name.as_str()));
                claimed.push(entry.id);
            }
            claimed
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), ENTRIES as usize, "every entry claimed");
    assert_eq!(distinct.len(), all.len(), "no entry claimed twice");
    assert!(
        store
            .claim_next_write_back("late", Duration::from_secs(60), t(2))
            .await
            .unwrap()
            .is_none()
    );
}

async fn an_expired_outbox_lease_is_taken_over(store: TestStore) {
    let out = small_reconcile(5);
    let run = store
        .record_reconcile_run(NewReconcileRun {
            output: &out,
            rule_checksum: None,
            psa_sync: None,
            started_at: t(0),
            finished_at: t(0),
        })
        .await
        .unwrap();
    let card = out
        .cards
        .iter()
        .find(|c| c.category.proposes_change())
        .unwrap();
    let (resolution, entry) = write_back(card, "d-1");
    let ids = store
        .record_decisions(&[NewDecision {
            id: "d-1".into(),
            card_key: card.key,
            run: Some(run),
            action: Action::Approve,
            resolution,
            outbox: Some(entry),
            actor: "pat".into(),
            at: t(0),
        }])
        .await
        .unwrap();
    let id = ids[0].unwrap();
    let lease = Duration::from_secs(30);
    let first = store
        .claim_next_write_back("a", lease, t(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.id, first.attempts, first.lease_expires_at),
        (id, 1, Some(t(31)))
    );
    assert!(
        store
            .claim_next_write_back("b", lease, t(20))
            .await
            .unwrap()
            .is_none(),
        "leased"
    );
    store
        .extend_write_back_lease(id, "a", lease, t(20))
        .await
        .unwrap();
    assert!(
        store
            .claim_next_write_back("b", lease, t(40))
            .await
            .unwrap()
            .is_none(),
        "extended to 50"
    );
    // Worker a dies; b takes over after the lease.
    let second = store
        .claim_next_write_back("b", lease, t(51))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.id, second.attempts, second.lease_owner.as_deref()),
        (id, 2, Some("b"))
    );
    let result = ApplyResult {
        record_ids: vec!["addition-77".into()],
        line: {
            let mut l = line("L1", "KA", dec!(12));
            l.effective_date = Some(d(2025, 4, 1));
            l
        },
    };
    let lost = store
        .complete_write_back(id, "a", &result, t(52))
        .await
        .unwrap_err();
    assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost}");
    assert!(lost.to_string().contains("worker \"a\""), "{lost}");
    // Recording the result fails half way (the audit insert): nothing of
    // it is kept, the entry stays in flight and the card pending.
    fail_inserts(&store, "audit_log", "action", "write_back.applied").await;
    let error = store
        .complete_write_back(id, "b", &result, t(53))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    assert_eq!(
        store.outbox_entry(id).await.unwrap().status,
        OutboxStatus::InFlight
    );
    assert_eq!(
        store
            .card_state(&card.key)
            .await
            .unwrap()
            .unwrap()
            .write_back,
        Some(WriteBackStatus::Pending)
    );
    store
        .execute_raw("DROP TRIGGER test_fail_audit_log ON audit_log")
        .await
        .or(store.execute_raw("DROP TRIGGER test_fail_audit_log").await)
        .unwrap();
    store
        .complete_write_back(id, "b", &result, t(54))
        .await
        .unwrap();
    let done = store.outbox_entry(id).await.unwrap();
    assert_eq!(
        (done.status, done.result.as_ref(), done.finished_at),
        (OutboxStatus::Applied, Some(&result), Some(t(54)))
    );
    assert_eq!(
        store
            .card_state(&card.key)
            .await
            .unwrap()
            .unwrap()
            .write_back,
        Some(WriteBackStatus::Applied)
    );
    let audit = store
        .audit_entries(
            &AuditFilter {
                subject: Some(format!("card:{}", card.key)),
                ..AuditFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(audit[0].entry.action, "write_back.applied");
    assert!(
        store
            .claim_next_write_back("c", lease, t(1000))
            .await
            .unwrap()
            .is_none(),
        "applied is final"
    );
    assert_eq!(store.outbox_for_card(&card.key).await.unwrap().len(), 1);
    // The card detail's read: the state and the entries from one snapshot.
    let (state, entries) = store.card_state_and_write_backs(&card.key).await.unwrap();
    assert_eq!(
        (
            state.unwrap().write_back,
            entries.iter().map(|e| e.status).collect::<Vec<_>>()
        ),
        (Some(WriteBackStatus::Applied), vec![OutboxStatus::Applied])
    );
    let untouched = out.cards.iter().find(|c| c.key != card.key).unwrap();
    let (state, entries) = store
        .card_state_and_write_backs(&untouched.key)
        .await
        .unwrap();
    assert!(state.is_none() && entries.is_empty());
}

async fn write_backs_retry_and_reject(store: TestStore) {
    let out = small_reconcile(9);
    let card = out
        .cards
        .iter()
        .find(|c| c.category.proposes_change())
        .unwrap();
    let (resolution, entry) = write_back(card, "d-1");
    let id = store
        .record_decisions(&[NewDecision {
            id: "d-1".into(),
            card_key: card.key,
            run: None,
            action: Action::Approve,
            resolution,
            outbox: Some(entry),
            actor: "pat".into(),
            at: t(0),
        }])
        .await
        .unwrap()[0]
        .unwrap();
    let lease = Duration::from_secs(30);
    store
        .claim_next_write_back("a", lease, t(1))
        .await
        .unwrap()
        .unwrap();
    store
        .retry_write_back(id, "a", "PSA answered 503", t(100), t(2))
        .await
        .unwrap();
    let pending = store.outbox_entry(id).await.unwrap();
    assert_eq!(
        (
            pending.status,
            pending.error.as_deref(),
            pending.next_attempt_at
        ),
        (OutboxStatus::Pending, Some("PSA answered 503"), t(100))
    );
    assert!(
        store
            .claim_next_write_back("a", lease, t(99))
            .await
            .unwrap()
            .is_none(),
        "not before next_attempt_at"
    );
    store
        .claim_next_write_back("a", lease, t(100))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .retry_write_back(id, "z", "x", t(200), t(101))
            .await
            .is_err(),
        "not z's"
    );
    store
        .reject_write_back(id, "a", "the line was deleted in the PSA", t(102))
        .await
        .unwrap();
    let rejected = store.outbox_entry(id).await.unwrap();
    assert_eq!(
        (rejected.status, rejected.attempts),
        (OutboxStatus::Rejected, 2)
    );
    let state = store.card_state(&card.key).await.unwrap().unwrap();
    assert_eq!(
        (state.status, state.write_back),
        (CardStatus::Open, Some(WriteBackStatus::Rejected))
    );
    assert_eq!(
        store
            .outbox_entries(Some(OutboxStatus::Rejected), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn jobs_are_claimed_once_across_two_pools(store: TestStore) {
    const JOBS: usize = 40;
    for i in 0..JOBS {
        let job = NewJob {
            kind: if i % 2 == 0 {
                "sync".into()
            } else {
                "reconcile".into()
            },
            payload: serde_json::json!({"n": i}),
            run_at: t(0),
            max_attempts: 2,
            dedupe_key: None,
        };
        store.enqueue_job(&job, t(0)).await.unwrap();
    }
    let dedupe = NewJob {
        kind: "sync".into(),
        payload: serde_json::json!({}),
        run_at: t(1000),
        max_attempts: 1,
        dedupe_key: Some("once".into()),
    };
    assert!(store.enqueue_job(&dedupe, t(0)).await.unwrap().is_some());
    assert!(
        store.enqueue_job(&dedupe, t(0)).await.unwrap().is_none(),
        "deduplicated"
    );
    let other = store.another_pool().await.unwrap();
    let mut tasks = Vec::new();
    for worker in 0..12 {
        let pool = if worker % 2 == 0 {
            store.store().clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let name = format!("proc-{}-w{worker}", worker % 2);
            let mut got = Vec::new();
            while let Some(job) = pool
                .claim_job(&name, &["sync", "reconcile"], Duration::from_secs(60), t(1))
                .await
                .unwrap()
            {
                got.push(job.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), JOBS);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        JOBS,
        "no job ran twice"
    );
    // Only the named kinds are claimed.
    let other_kind = store
        .enqueue_job(
            &NewJob {
                kind: "report".into(),
                payload: serde_json::json!(null),
                run_at: t(0),
                max_attempts: 1,
                dedupe_key: None,
            },
            t(0),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .claim_job("w", &["sync"], Duration::from_secs(60), t(2))
            .await
            .unwrap()
            .is_none()
    );
    // Heartbeats extend the lease; an expired lease is claimed again; a
    // job out of attempts is failed by recovery.
    let job = store
        .claim_job("w1", &["report"], Duration::from_secs(10), t(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.id, other_kind);
    store
        .heartbeat_job(job.id, "w1", Duration::from_secs(10), t(10))
        .await
        .unwrap();
    assert!(
        store
            .claim_job("w2", &["report"], Duration::from_secs(10), t(15))
            .await
            .unwrap()
            .is_none(),
        "extended to 20"
    );
    assert!(
        store
            .claim_job("w2", &["report"], Duration::from_secs(10), t(21))
            .await
            .unwrap()
            .is_none(),
        "expired but out of attempts"
    );
    assert_eq!(store.recover_expired_jobs(t(21)).await.unwrap(), 1);
    assert_eq!(store.job(job.id).await.unwrap().status, JobStatus::Failed);
    assert!(matches!(
        store
            .heartbeat_job(job.id, "w1", Duration::from_secs(10), t(22))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    // A job with attempts left is claimed again after its lease expires.
    let first = all[0];
    let running = store.job(first).await.unwrap();
    assert_eq!(running.status, JobStatus::Running);
    let again = store
        .claim_job(
            "rescuer",
            &["sync", "reconcile"],
            Duration::from_secs(60),
            t(62),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.attempts, 2);
    assert!(matches!(
        store
            .complete_job(again.id, &running.locked_by.unwrap_or_default(), t(63))
            .await,
        Err(StoreError::LeaseLost { .. }) | Ok(())
    ));
    let status = store
        .fail_job(again.id, "rescuer", "boom", Some(t(100)), t(64))
        .await;
    // Out of attempts (2 of 2): failed for good, whatever the retry time.
    assert_eq!(status.unwrap(), JobStatus::Failed);
    let retried = store
        .enqueue_job(
            &NewJob {
                kind: "retry".into(),
                payload: serde_json::json!(1),
                run_at: t(0),
                max_attempts: 3,
                dedupe_key: None,
            },
            t(0),
        )
        .await
        .unwrap()
        .unwrap();
    store
        .claim_job("w", &["retry"], Duration::from_secs(5), t(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .fail_job(retried, "w", "flaky", Some(t(50)), t(2))
            .await
            .unwrap(),
        JobStatus::Queued
    );
    assert!(
        store
            .claim_job("w", &["retry"], Duration::from_secs(5), t(49))
            .await
            .unwrap()
            .is_none()
    );
    let job = store
        .claim_job("w", &["retry"], Duration::from_secs(5), t(50))
        .await
        .unwrap()
        .unwrap();
    store.complete_job(job.id, "w", t(51)).await.unwrap();
    assert_eq!(store.job(retried).await.unwrap().status, JobStatus::Done);
    assert!(
        store
            .jobs(Some(JobStatus::Done), 10)
            .await
            .unwrap()
            .iter()
            .any(|j| j.id == retried)
    );
}

async fn schedules_enqueue_exactly_once_across_pools(store: TestStore) {
    for (i, name) in ["weekly-psa", "monthly-close", "nightly-vendors"]
        .iter()
        .enumerate()
    {
        store
            .put_schedule(
                &Schedule {
                    name: (*name).into(),
                    kind: "sync".into(),
                    payload: serde_json::json!({"schedule": name}),
                    spec: "weekly on MON at 06:00".into(),
                    enabled: true,
                    next_run_at: t(i as i64),
                    last_enqueued_at: None,
                    last_job: None,
                },
                t(0),
            )
            .await
            .unwrap();
    }
    store
        .put_schedule(
            &Schedule {
                name: "disabled".into(),
                kind: "sync".into(),
                payload: serde_json::json!(null),
                spec: "monthly on day 28 at 18:00".into(),
                enabled: false,
                next_run_at: t(0),
                last_enqueued_at: None,
                last_job: None,
            },
            t(0),
        )
        .await
        .unwrap();
    let other = store.another_pool().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let pool = if i % 2 == 0 {
            store.store().clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            pool.enqueue_due_schedules(t(10), |_| Ok(t(10) + chrono::Duration::days(7)))
                .await
                .unwrap()
        }));
    }
    let mut enqueued = Vec::new();
    for task in tasks {
        enqueued.extend(task.await.unwrap());
    }
    assert_eq!(enqueued.len(), 3, "each due schedule once: {enqueued:?}");
    let jobs = store.jobs(None, 100).await.unwrap();
    assert_eq!(jobs.len(), 3);
    for schedule in store.schedules().await.unwrap() {
        if schedule.enabled {
            assert_eq!(schedule.next_run_at, t(10) + chrono::Duration::days(7));
            assert!(schedule.last_job.is_some());
        } else {
            assert_eq!(schedule.next_run_at, t(0));
        }
    }
    assert!(
        store
            .enqueue_due_schedules(t(11), |_| Ok(t(20)))
            .await
            .unwrap()
            .is_empty(),
        "not due again"
    );
    // A next time that is not in the future is refused.
    let later = t(10) + chrono::Duration::days(7);
    let error = store
        .enqueue_due_schedules(later, |_| Ok(later))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not after now"), "{error}");
    assert!(store.delete_schedule("disabled").await.unwrap());
}

async fn unique_constraints_give_clear_errors(store: TestStore) {
    store
        .create_user("pat", "$argon2id$v=19$hash", Role::Admin, t(0))
        .await
        .unwrap();
    let error = store
        .create_user("pat", "$argon2id$v=19$other", Role::Viewer, t(1))
        .await
        .unwrap_err();
    assert!(error.is_duplicate());
    assert_eq!(
        error.to_string(),
        "create user: username \"pat\" already exists (table users); use another username"
    );
    store
        .enqueue_write_back(&outbox_entry(1), t(0))
        .await
        .unwrap();
    let error = store
        .enqueue_write_back(&outbox_entry(1), t(1))
        .await
        .unwrap_err();
    assert!(error.is_duplicate());
    assert!(
        error
            .to_string()
            .contains("write-back idempotency key \"key-1\" already exists"),
        "{error}"
    );
    assert_eq!(store.outbox_entries(None, 10).await.unwrap().len(), 1);
}

/// A constraint broken inside a bulk insert (SQLite's C API path, or
/// PostgreSQL's COPY) is classified like any other statement's, and the
/// write leaves nothing behind.
async fn a_constraint_broken_in_a_bulk_insert_is_a_clear_error(store: TestStore) {
    let first = psa(vec![line("L1", "KA", dec!(10)), line("L2", "KA", dec!(5))]);
    let good = psa_sync(&store, d(2025, 3, 27), &first, t(0)).await;
    let before = store.psa_state().await.unwrap();
    store
        .execute_raw("CREATE UNIQUE INDEX test_one_line_per_quantity ON psa_lines (quantity)")
        .await
        .unwrap();
    let lines = (0..1500)
        .map(|i| line(&format!("N{i:04}"), "KA", Decimal::from(i % 1000)))
        .collect();
    let run = store
        .begin_sync(SyncKind::Psa, "trueup.connectwise", d(2025, 3, 28), t(100))
        .await
        .unwrap();
    let error = store
        .complete_psa_sync(run, &psa(lines), &SyncStats::default(), t(105))
        .await
        .unwrap_err();
    assert!(error.is_duplicate(), "{error}");
    assert!(error.to_string().contains("psa_lines"), "{error}");
    let after = store.psa_state().await.unwrap();
    assert_eq!(after, before, "the previous state stays");
    assert_eq!(after.sync.unwrap().id, good);
}

async fn users_sessions_and_tokens(store: TestStore) {
    let pat = store
        .create_user("pat", "$argon2id$hash-1", Role::Approver, t(0))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_name("pat").await.unwrap().unwrap().role,
        Role::Approver
    );
    store
        .create_session("raw-session-id", pat, "csrf-1", t(3600), t(0))
        .await
        .unwrap();
    let session = store
        .session("raw-session-id", t(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (session.user.id, session.csrf_token.as_str()),
        (pat, "csrf-1")
    );
    assert!(
        store
            .session("raw-session-id", t(3600))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(store.session("wrong", t(60)).await.unwrap().is_none());
    // Stored hashed: the raw id is nowhere in the table.
    let raw = store
        .execute_raw("DELETE FROM sessions WHERE id_hash = 'raw-session-id'")
        .await
        .unwrap();
    assert_eq!(raw, 0);
    assert!(
        store
            .session("raw-session-id", t(61))
            .await
            .unwrap()
            .is_some()
    );
    store
        .update_user(pat, None, Some(Role::Admin), Some(true), t(70))
        .await
        .unwrap();
    assert!(
        store
            .session("raw-session-id", t(71))
            .await
            .unwrap()
            .is_none(),
        "disabled users' sessions end"
    );
    store
        .update_user(pat, None, None, Some(false), t(72))
        .await
        .unwrap();
    assert_eq!(store.users().await.unwrap()[0].role, Role::Admin);
    assert!(
        store
            .update_user(trueup_store::auth::UserId(999), None, None, None, t(73))
            .await
            .unwrap_err()
            .is_not_found()
    );
    store
        .create_session("s2", pat, "csrf-2", t(100), t(0))
        .await
        .unwrap();
    assert_eq!(store.delete_expired_sessions(t(100)).await.unwrap(), 1);
    store
        .create_session("s3", pat, "csrf-3", t(1000), t(0))
        .await
        .unwrap();
    assert!(store.delete_session("s3").await.unwrap());
    let token = store
        .create_api_token("ci", "tok-secret", Role::Viewer, "pat", t(0))
        .await
        .unwrap();
    let found = store
        .authenticate_api_token("tok-secret", t(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id, found.last_used_at), (token, Some(t(5))));
    store.revoke_api_token(token, t(6)).await.unwrap();
    store.revoke_api_token(token, t(7)).await.unwrap();
    assert!(
        store
            .authenticate_api_token("tok-secret", t(8))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.api_tokens().await.unwrap()[0].revoked_at, Some(t(6)));
}

async fn secrets_rules_mappings_and_audit(store: TestStore) {
    let nonce = vec![7u8; 24];
    let ciphertext = vec![0u8, 255, 10, 13, 92, 9, 1];
    store
        .put_secret(
            "trueup.m365",
            "client_secret",
            &nonce,
            &ciphertext,
            "pat",
            t(0),
        )
        .await
        .unwrap();
    let secret = store
        .secret("trueup.m365", "client_secret")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((secret.nonce, secret.ciphertext), (nonce, ciphertext));
    assert!(
        store
            .put_secret("trueup.m365", "x", &[], b"c", "pat", t(0))
            .await
            .is_err()
    );
    assert_eq!(
        store.secret_names(Some("trueup.m365")).await.unwrap().len(),
        1
    );
    assert!(
        store
            .delete_secret("trueup.m365", "client_secret")
            .await
            .unwrap()
    );
    assert!(
        store
            .secret("trueup.m365", "client_secret")
            .await
            .unwrap()
            .is_none()
    );
    // Rule versions: immutable, at most one active.
    let (a, saved) = store
        .save_rule_version("rule a", "pat", &serde_json::json!({"errors": []}), t(0))
        .await
        .unwrap();
    assert_eq!(saved, SavedRule::Created);
    assert_eq!(a, trueup_store::sha256_hex("rule a"));
    assert_eq!(
        store
            .save_rule_version("rule a", "sam", &serde_json::json!({}), t(1))
            .await
            .unwrap()
            .1,
        SavedRule::Existing
    );
    assert_eq!(store.rule_version(&a).await.unwrap().unwrap().author, "pat");
    let (b, _) = store
        .save_rule_version("rule b", "sam", &serde_json::json!({}), t(2))
        .await
        .unwrap();
    assert!(store.active_rule_version().await.unwrap().is_none());
    store.activate_rule_version(&a, "pat", t(3)).await.unwrap();
    store.activate_rule_version(&b, "sam", t(4)).await.unwrap();
    let active = store.active_rule_version().await.unwrap().unwrap();
    assert_eq!(
        (active.version.checksum, active.activated_by.as_str()),
        (b, "sam")
    );
    assert!(
        store
            .activate_rule_version("nope", "pat", t(5))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(store.rule_versions().await.unwrap().len(), 2);
    // Mappings: overrides win over the match.
    let outcome = |account: &str, status: AccountMappingStatus| MatchOutcome {
        mapping: AccountMapping {
            vendor: "m365".into(),
            account: account.into(),
            status,
            method: MappingMethod::FuzzyName { score: dec!(0.93) },
            reason: "names alike".into(),
        },
        suggestions: vec![Suggestion {
            company: "A".into(),
            company_name: "Company A".into(),
            method: MappingMethod::ExactName,
            score: dec!(0.5714),
            reason: "close".into(),
        }],
    };
    let outcomes = vec![
        outcome("t1", AccountMappingStatus::Mapped("A".into())),
        outcome("t2", AccountMappingStatus::Unmapped),
    ];
    store.replace_match_results(&outcomes, t(0)).await.unwrap();
    assert_eq!(store.match_results().await.unwrap(), outcomes);
    let manual = MappingOverride {
        vendor: "m365".into(),
        account: "t2".into(),
        company: None,
        reason: "internal tenant".into(),
        set_by: "pat".into(),
        set_at: t(1),
    };
    store.set_mapping_override(&manual).await.unwrap();
    let effective = store.effective_mappings().await.unwrap();
    assert_eq!(effective.len(), 2);
    assert_eq!(effective[1].status, AccountMappingStatus::Excluded);
    assert_eq!(
        effective[1].method,
        MappingMethod::Manual { by: "pat".into() }
    );
    assert_eq!(
        store.mapping_overrides().await.unwrap(),
        std::slice::from_ref(&manual)
    );
    assert!(
        store
            .clear_mapping_override(&manual.vendor, &manual.account)
            .await
            .unwrap()
    );
    assert_eq!(
        store.effective_mappings().await.unwrap()[1].status,
        AccountMappingStatus::Unmapped
    );
    let entry = SkuMapEntry {
        vendor: "m365".into(),
        sku: "SPB".into(),
        product: "M365-BP".into(),
        multiplier: dec!(0.5),
    };
    store.put_sku_entry(&entry, "pat", t(0)).await.unwrap();
    assert_eq!(store.sku_entries().await.unwrap()[0].entry, entry);
    assert!(
        store
            .put_sku_entry(
                &SkuMapEntry {
                    multiplier: dec!(0),
                    ..entry.clone()
                },
                "pat",
                t(0)
            )
            .await
            .is_err()
    );
    assert!(
        store
            .delete_sku_entry(&entry.vendor, "SPB", "M365-BP")
            .await
            .unwrap()
    );
    // Audit: filtered, newest first.
    for (i, actor) in ["pat", "sam", "pat"].iter().enumerate() {
        store
            .audit(&NewAuditEntry {
                at: t(i as i64),
                actor: (*actor).into(),
                action: "x".into(),
                subject: "s".into(),
                details: serde_json::json!({"i": i}),
            })
            .await
            .unwrap();
    }
    let pats = store
        .audit_entries(
            &AuditFilter {
                actor: Some("pat".into()),
                ..AuditFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        pats.iter()
            .map(|e| e.entry.details["i"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 0]
    );
}

async fn history_month_over_month_and_state_as_of(store: TestStore) {
    register_vendor(&store, "m365").await;
    // January: 10 billed, 10 used. February: 10 billed, 12 used → approved.
    // March: 12 billed; the line L2 is gone.
    let jan = psa(vec![line("L1", "KA", dec!(10)), line("L2", "KA", dec!(1))]);
    let feb = jan.clone();
    let mar = psa(vec![line("L1", "KA", dec!(12))]);
    let s_jan = psa_sync(&store, d(2025, 1, 31), &jan, at_day(d(2025, 1, 31), 12)).await;
    vendor_sync(
        &store,
        "m365",
        &VendorData {
            accounts: vec![],
            usage: vec![usage(
                "m365",
                "t1",
                "SPB",
                dec!(10),
                at_day(d(2025, 1, 31), 1),
            )],
        },
        d(2025, 1, 31),
        at_day(d(2025, 1, 31), 12),
    )
    .await;
    let s_feb = psa_sync(&store, d(2025, 2, 28), &feb, at_day(d(2025, 2, 28), 12)).await;
    vendor_sync(
        &store,
        "m365",
        &VendorData {
            accounts: vec![],
            usage: vec![usage(
                "m365",
                "t1",
                "SPB",
                dec!(12),
                at_day(d(2025, 2, 28), 1),
            )],
        },
        d(2025, 2, 28),
        at_day(d(2025, 2, 28), 12),
    )
    .await;
    psa_sync(&store, d(2025, 3, 31), &mar, at_day(d(2025, 3, 31), 12)).await;
    // A reconcile run per month, each with the line's card.
    let key = CardKey::for_line(&"A".into(), &"KA".into(), &"L1".into());
    let base = small_reconcile(1);
    let template = base
        .cards
        .iter()
        .find(|c| c.category == CardCategory::Reconcile)
        .unwrap()
        .clone();
    let month_card = |psa_q: Decimal, vendor_q: Decimal, category| {
        let mut card = template.clone();
        card.key = key;
        card.company = Some("A".into());
        card.contract = Some("KA".into());
        card.line = Some("L1".into());
        card.category = category;
        card.psa_quantity = Some(psa_q);
        card.vendor_quantity = card.vendor_quantity.map(|mut v| {
            v.billable = vendor_q;
            v
        });
        card.target_quantity = Some(vendor_q);
        card.variance = Some(vendor_q - psa_q);
        card
    };
    let mut runs = Vec::new();
    for (as_of, psa_q, vendor_q, category) in [
        (d(2025, 1, 31), dec!(10), dec!(10), CardCategory::NoChange),
        (d(2025, 2, 28), dec!(10), dec!(12), CardCategory::Reconcile),
        (d(2025, 3, 31), dec!(12), dec!(12), CardCategory::NoChange),
    ] {
        let mut out = base.clone();
        out.as_of = as_of;
        out.cards = vec![month_card(psa_q, vendor_q, category)];
        let run = store
            .record_reconcile_run(NewReconcileRun {
                output: &out,
                rule_checksum: None,
                psa_sync: None,
                started_at: at_day(as_of, 13),
                finished_at: at_day(as_of, 13),
            })
            .await
            .unwrap();
        runs.push(run);
    }
    let (resolution, entry) = write_back(
        &month_card(dec!(10), dec!(12), CardCategory::Reconcile),
        "feb-approve",
    );
    store
        .record_decisions(&[NewDecision {
            id: "feb-approve".into(),
            card_key: key,
            run: Some(runs[1]),
            action: Action::Approve,
            resolution,
            outbox: Some(entry),
            actor: "pat".into(),
            at: at_day(d(2025, 2, 28), 15),
        }])
        .await
        .unwrap();
    let history = store.line_history(&"L1".into()).await.unwrap();
    let months: Vec<(NaiveDate, Option<Decimal>, Option<Decimal>, usize)> = history
        .iter()
        .map(|m| {
            (
                m.month,
                m.psa_quantity,
                m.vendor_quantity,
                m.decisions.len(),
            )
        })
        .collect();
    assert_eq!(
        months,
        [
            (d(2025, 1, 1), Some(dec!(10)), Some(dec!(10)), 0),
            (d(2025, 2, 1), Some(dec!(10)), Some(dec!(12)), 1),
            (d(2025, 3, 1), Some(dec!(12)), Some(dec!(12)), 0),
        ]
    );
    assert!(history.iter().all(|m| m.card_key == key));
    assert_eq!(history[1].run, Some(runs[1]));
    assert_eq!(history[1].category, Some(CardCategory::Reconcile));
    assert_eq!(history[1].decisions[0].id, "feb-approve");
    // The customer's view over February and March: L1 both months, L2
    // only in February (it vanished in March).
    let account = store
        .account_history(&"A".into(), d(2025, 2, 1), d(2025, 3, 31))
        .await
        .unwrap();
    let rows: Vec<(NaiveDate, Option<String>, Option<Decimal>)> = account
        .iter()
        .map(|m| {
            (
                m.month,
                m.line.as_ref().map(|l| l.to_string()),
                m.psa_quantity,
            )
        })
        .collect();
    let mut expected = vec![
        (d(2025, 2, 1), Some("L1".to_owned()), Some(dec!(10))),
        (d(2025, 2, 1), Some("L2".to_owned()), Some(dec!(1))),
        (d(2025, 3, 1), Some("L1".to_owned()), Some(dec!(12))),
    ];
    let mut got = rows.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    // As of mid-February, January's figures were current; as of the end
    // of February, February's; L2 is gone at the end of March.
    let mid_feb = store.state_as_of(d(2025, 2, 15)).await.unwrap();
    assert_eq!(mid_feb.psa_sync, Some(s_jan));
    assert_eq!(
        mid_feb
            .vendor
            .iter()
            .map(|v| (v.day, v.quantity))
            .collect::<Vec<_>>(),
        [(d(2025, 1, 31), dec!(10))]
    );
    let end_feb = store.state_as_of(d(2025, 2, 28)).await.unwrap();
    assert_eq!(end_feb.psa_sync, Some(s_feb));
    assert_eq!(end_feb.vendor[0].quantity, dec!(12));
    let end_mar = store.state_as_of(d(2025, 3, 31)).await.unwrap();
    assert_eq!(
        end_mar
            .lines
            .iter()
            .map(|l| (l.line.to_string(), l.quantity))
            .collect::<Vec<_>>(),
        [("L1".to_owned(), dec!(12))]
    );
    assert_eq!(
        end_mar.lines[0].company.as_ref().map(|c| c.as_str()),
        Some("A")
    );
    let before_all = store.state_as_of(d(2024, 12, 31)).await.unwrap();
    assert!(
        before_all.psa_sync.is_none()
            && before_all.lines.is_empty()
            && before_all.vendor.is_empty()
    );
}

async fn sync_runs_can_be_listed_and_abandoned(store: TestStore) {
    let a = store
        .begin_sync(SyncKind::Vendor, "pax8", d(2025, 3, 28), t(0))
        .await
        .unwrap();
    let b = store
        .begin_sync(SyncKind::Psa, "p", d(2025, 3, 28), t(10))
        .await
        .unwrap();
    assert_eq!(store.sync_run(a).await.unwrap().status, SyncStatus::Running);
    assert_eq!(store.abandon_running_syncs(t(5), t(20)).await.unwrap(), 1);
    let abandoned = store.sync_run(a).await.unwrap();
    assert_eq!(abandoned.status, SyncStatus::Failed);
    assert!(abandoned.error.unwrap().contains("stopped"));
    assert_eq!(
        store
            .sync_runs(None, None, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [b, a]
    );
    assert_eq!(
        store
            .sync_runs(Some(SyncKind::Vendor), Some("pax8"), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let health = store.sync_health().await.unwrap();
    assert_eq!(health.len(), 2);
    assert!(health.iter().all(|h| h.last_success.is_none()));
    assert!(
        store
            .sync_run(trueup_store::sync::SyncRunId(999))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = super::TestStore::sqlite().await.expect("a SQLite test store");
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = super::TestStore::postgres().await.expect("a PostgreSQL test store");
                    super::$name(store).await;
                }
            )*
        }
    };
}

/// The SKU table refuses products the PSA does not know: the store says
/// whether the last PSA sync has one (catalogue or line), and that it
/// cannot tell before any sync.
async fn psa_products_are_known_from_the_catalogue_and_the_lines(store: TestStore) {
    assert_eq!(store.psa_product_known("M365-BP").await.unwrap(), None);
    psa_sync(
        &store,
        d(2025, 3, 31),
        &psa(vec![line("L1", "KA", dec!(10))]),
        t(0),
    )
    .await;
    // (product, known)
    for (product, known) in [
        ("M365-BP", true),     // on a line
        ("EXO-ARCHIVE", true), // in the catalogue only
        ("NO-SUCH", false),
        ("m365-bp", false), // identifiers are exact
    ] {
        assert_eq!(
            store.psa_product_known(product).await.unwrap(),
            Some(known),
            "{product}"
        );
    }
}

both!(
    psa_products_are_known_from_the_catalogue_and_the_lines,
    decimals_round_trip_exactly,
    psa_state_round_trips_with_its_sync,
    failed_psa_sync_keeps_previous_state_and_its_time,
    an_older_sync_never_overwrites_a_newer_one,
    vendor_usage_is_appended_and_a_resync_replaces_its_day,
    pushed_usage_is_an_idempotent_set_and_csv_imports_count,
    ledger_tables_are_append_only,
    reconcile_runs_round_trip_every_card_exactly,
    decisions_set_card_state_in_one_transaction,
    outbox_claims_each_entry_exactly_once_under_concurrency,
    an_expired_outbox_lease_is_taken_over,
    write_backs_retry_and_reject,
    jobs_are_claimed_once_across_two_pools,
    schedules_enqueue_exactly_once_across_pools,
    unique_constraints_give_clear_errors,
    a_constraint_broken_in_a_bulk_insert_is_a_clear_error,
    users_sessions_and_tokens,
    secrets_rules_mappings_and_audit,
    history_month_over_month_and_state_as_of,
    sync_runs_can_be_listed_and_abandoned,
);

#[tokio::test]
async fn connect_creates_the_sqlite_file_and_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/trueup.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    assert_eq!(store.backend(), Backend::Sqlite);
    store
        .create_user("pat", "h", Role::Viewer, t(0))
        .await
        .unwrap();
    store.close().await;
    // Reopening finds the data (and migrating again is a no-op).
    let again = Store::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert!(again.user_by_name("pat").await.unwrap().is_some());
    let memory = Store::connect("sqlite::memory:").await.unwrap();
    assert!(memory.users().await.unwrap().is_empty());
}

#[tokio::test]
async fn connect_errors_name_the_store_and_hide_passwords() {
    let error = Store::connect("mysql://x").await.unwrap_err();
    assert!(error.to_string().contains("unsupported URL"), "{error}");
    let error = Store::connect("postgres://trueup:hunter2@127.0.0.1:1/trueup")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("postgres://trueup:***@127.0.0.1:1/trueup"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn an_unreachable_postgres_fails_with_how_to_start_it() {
    let error = TestStore::postgres_on("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("start one with trust auth at 127.0.0.1:5432"),
        "{text}"
    );
    assert!(text.contains("TRUEUP_TEST_POSTGRES_URL"), "{text}");
}

// ----------------------------------------------------------- Send futures

/// Requires what `tokio::spawn` requires of a future.
fn assert_spawnable<F: std::future::Future + Send + 'static>(_: &F) {}

/// The store's main methods awaited one after another by an `async fn`
/// that borrows the store and the data, as the application's jobs do.
async fn month_end(
    store: &Store,
    output: &trueup_core::reconcile::ReconcileOutput,
    psa: &PsaData,
    vendor: &VendorData,
    outcomes: &[MatchOutcome],
    rows: &[UsageObservation],
) -> Result<(), StoreError> {
    let stats = SyncStats::default();
    let run = store
        .begin_sync(SyncKind::Psa, "p", d(2025, 3, 1), t(0))
        .await?;
    store.complete_psa_sync(run, psa, &stats, t(1)).await?;
    let run = store
        .begin_sync(SyncKind::Vendor, "v", d(2025, 3, 1), t(0))
        .await?;
    store
        .complete_vendor_sync(run, vendor, &stats, t(1))
        .await?;
    store.replace_match_results(outcomes, t(2)).await?;
    let run = store
        .record_reconcile_run(NewReconcileRun {
            output,
            rule_checksum: None,
            psa_sync: Some(run),
            started_at: t(3),
            finished_at: t(4),
        })
        .await?;
    store
        .cards_page(run, &CardFilter::default(), None, 10)
        .await?;
    store.record_decisions(&[]).await?;
    store
        .record_csv_import(&NewCsvImport {
            profile: "p",
            file_name: "f.csv",
            row_count: rows.len() as u64,
            rows,
            errors: &serde_json::Value::Null,
            by: "admin",
            at: t(5),
        })
        .await?;
    let mut writer = store
        .begin_csv_import(&trueup_store::imports::NewStreamedImport {
            profile: "p",
            file_name: "f.csv",
            row_count: rows.len() as u64,
            by: "admin",
            at: t(6),
        })
        .await?;
    writer.append(rows).await?;
    writer.finish().await?;
    store.psa_state().await?;
    store
        .usage_for_period(d(2025, 3, 1), d(2025, 3, 31))
        .await?;
    store
        .claim_next_write_back("w", Duration::from_secs(1), t(7))
        .await?;
    store
        .claim_job("w", &["sync"], Duration::from_secs(1), t(7))
        .await?;
    Ok(())
}

/// The futures of the store's methods are `Send`, bulk writes included, so
/// a caller can spawn them as tasks. Checked when this file compiles; the
/// body never needs to run.
#[allow(dead_code)]
fn store_futures_are_send(store: Store, output: trueup_core::reconcile::ReconcileOutput) {
    assert_spawnable(&async move {
        month_end(
            &store,
            &output,
            &PsaData::default(),
            &VendorData::default(),
            &[],
            &[],
        )
        .await
    });
}

/// A store future boxed as `Send` for the caller's lifetimes (what
/// `async_trait` and spawn helpers do): `Send` must hold for any borrow,
/// not only for the concrete ones of one call site.
type SendFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The bulk writes' futures are `Send` for any borrow of their inputs.
#[allow(dead_code)]
fn psa_sync_send<'a>(
    store: &'a Store,
    data: &'a PsaData,
    stats: &'a SyncStats,
) -> SendFuture<'a, ()> {
    Box::pin(store.complete_psa_sync(trueup_store::sync::SyncRunId(1), data, stats, t(0)))
}

#[allow(dead_code)]
fn vendor_sync_send<'a>(
    store: &'a Store,
    data: &'a VendorData,
    stats: &'a SyncStats,
) -> SendFuture<'a, ()> {
    Box::pin(store.complete_vendor_sync(trueup_store::sync::SyncRunId(1), data, stats, t(0)))
}

#[allow(dead_code)]
fn match_send<'a>(store: &'a Store, outcomes: &'a [MatchOutcome]) -> SendFuture<'a, ()> {
    Box::pin(store.replace_match_results(outcomes, t(0)))
}

#[allow(dead_code)]
fn record_send<'a>(
    store: &'a Store,
    output: &'a trueup_core::reconcile::ReconcileOutput,
) -> SendFuture<'a, trueup_store::reconcile::ReconcileRunId> {
    Box::pin(store.record_reconcile_run(NewReconcileRun {
        output,
        rule_checksum: None,
        psa_sync: None,
        started_at: t(3),
        finished_at: t(4),
    }))
}
