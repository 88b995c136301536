//! The HaloPSA connector (`plugins/halopsa`) against the HaloPSA emulator:
//! the client-credentials token, full sync checked against the seeded data
//! (client contracts merged with their recurring invoices), statuses,
//! `updatelines` write-back with idempotency, dry runs, and faults.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;
use trueup::conformance::{self, Against, Connection, full_sync, truth_mismatches};
use trueup_core::model::{BillingCycle, BillingTiming, ContractStatus, ServiceLine};
use trueup_emulators::common::{CustomerPlan, Extra, plans};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings, halopsa as halo};
use trueup_plugin_host::limits::LimitSettings;
use trueup_plugin_host::{
    CallErrorKind, ChangePolicy, ConnectorFailure, ContractFilter, PluginSettings, QuantityChange,
};

use crate::connector_harness::{Emulator, as_of};
use crate::support::{engine, plugin_dir};

const ID: &str = "trueup.halopsa";
const SEED: u64 = 7;

async fn emulator(customers: usize, settings: Settings) -> Emulator {
    Emulator::start(Kind::HaloPsa, SEED, customers, settings).await
}

fn pinned() -> Settings {
    Against::HaloPsa.emulator_settings(as_of())
}

fn connect(emulator: &Emulator, config: &[(&str, &str)], limits: LimitSettings) -> Connection {
    let base = PluginSettings {
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        limits,
        ..PluginSettings::default()
    };
    conformance::connect(
        &engine(),
        &plugin_dir(ID),
        &base,
        Against::HaloPsa,
        emulator.base(),
        as_of(),
    )
    .expect("load the HaloPSA connector")
}

fn all_contracts() -> ContractFilter {
    ContractFilter {
        types: Vec::new(),
        active_only: false,
    }
}

/// (identifier, quantity, start, end, billable, unit price) of a line.
type Row = (
    String,
    Decimal,
    Option<NaiveDate>,
    Option<NaiveDate>,
    bool,
    Decimal,
);

fn expected_main(plan: &CustomerPlan) -> Vec<Row> {
    let price = |p: &trueup_emulators::catalog::Product| Decimal::new(p.unit_price_cents, 2);
    let mut rows = Vec::new();
    for (index, line) in plan.lines.iter().enumerate() {
        let id = line.product.identifier.to_owned();
        match plan.replaced.filter(|r| r.line == index) {
            Some(replaced) => {
                rows.push((
                    id.clone(),
                    Decimal::from(replaced.old_quantity),
                    Some(line.effective),
                    Some(replaced.ended),
                    true,
                    price(line.product),
                ));
                rows.push((
                    id,
                    Decimal::from(line.quantity),
                    replaced.ended.succ_opt(),
                    None,
                    true,
                    price(line.product),
                ));
            }
            None => rows.push((
                id,
                Decimal::from(line.quantity),
                Some(line.effective),
                None,
                true,
                price(line.product),
            )),
        }
    }
    if let Some((product, quantity)) = plan.no_charge {
        rows.push((
            product.identifier.to_owned(),
            Decimal::from(quantity),
            Some(plan.start),
            None,
            false,
            Decimal::ZERO,
        ));
    }
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

fn row(line: &ServiceLine) -> Row {
    (
        line.product_identifier.to_string(),
        line.quantity,
        line.effective_date,
        line.cancelled_date,
        line.billable,
        line.unit_price,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_reads_clients_contracts_and_invoice_lines() {
    let emulator = emulator(3_600, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("full sync");
    let plans = plans(&emulator.world, as_of());

    let copies = plans.iter().filter(|p| p.position % 17 == 8).count();
    assert_eq!(synced.companies.len(), plans.len() + copies);
    assert!(synced.companies.len() >= 2_000);
    assert_eq!(
        synced.contracts.len(),
        plans.len() + plans.iter().filter(|p| p.extra.is_some()).count()
    );
    let lines: usize = plans
        .iter()
        .map(|p| {
            p.lines.len()
                + usize::from(p.replaced.is_some())
                + usize::from(p.no_charge.is_some())
                + match p.extra {
                    Some(
                        Extra::Cancelled
                        | Extra::Inactive
                        | Extra::Expired
                        | Extra::Annual
                        | Extra::Arrears,
                    ) => p.moved.iter().count() + p.stale.len(),
                    _ => 0,
                }
        })
        .sum();
    assert_eq!(synced.lines.len(), lines);
    assert!(synced.lines.len() >= 20_000, "{} lines", synced.lines.len());
    assert!(
        synced.pages.0 >= 8 && synced.pages.1 >= 9,
        "pages {:?}",
        synced.pages
    );
    assert_eq!(
        emulator.count("POST /auth/token"),
        1,
        "one token for the whole sync"
    );

    let by_name: BTreeMap<&str, &str> = synced
        .companies
        .iter()
        .filter(|c| c.status == trueup_core::model::CompanyStatus::Active)
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    for plan in plans.iter().step_by(83) {
        let customer = &emulator.world.customers[plan.customer];
        let company = by_name[customer.name.as_str()];
        let main = synced
            .contracts
            .iter()
            .find(|c| {
                c.company_id.as_str() == company
                    && c.contract_type == "Managed Services"
                    && c.status == ContractStatus::Active
            })
            .expect("main contract");
        assert_eq!(main.billing_cycle, BillingCycle::Monthly);
        assert_eq!(main.timing, BillingTiming::Advance);
        assert_eq!(main.start_date, Some(plan.start));
        let mut got: Vec<Row> = synced
            .lines
            .iter()
            .filter(|l| l.contract_id == main.id)
            .map(row)
            .collect();
        got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(got, expected_main(plan), "{}", customer.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_cycles_and_filters_follow_contracts_and_invoices() {
    let emulator = emulator(80, pinned()).await;
    // Small pages: the contract/invoice merge crosses page boundaries.
    let connection = connect(&emulator, &[("page_size", "7")], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    assert!(synced.pages.1 > 10);
    let plans = plans(&emulator.world, as_of());
    let id_of: BTreeMap<&str, &str> = synced
        .companies
        .iter()
        .filter(|c| c.status == trueup_core::model::CompanyStatus::Active)
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    let mut seen = 0;
    for plan in plans.iter().filter(|p| p.extra.is_some()) {
        let company = id_of[emulator.world.customers[plan.customer].name.as_str()];
        let mut theirs: Vec<_> = synced
            .contracts
            .iter()
            .filter(|c| c.company_id.as_str() == company)
            .collect();
        theirs.sort_by_key(|c| c.id.as_str().parse::<i64>().unwrap_or(0));
        assert_eq!(theirs.len(), 2);
        let extra = theirs[1];
        let (status, cycle, kind) = (
            extra.status,
            extra.billing_cycle.clone(),
            extra.contract_type.as_str(),
        );
        match plan.extra {
            Some(Extra::Cancelled) => assert_eq!(status, ContractStatus::Cancelled),
            Some(Extra::Inactive) => assert_eq!(status, ContractStatus::Inactive),
            Some(Extra::Expired) => assert_eq!(status, ContractStatus::Expired),
            Some(Extra::Annual) => assert_eq!(
                (status, cycle),
                (ContractStatus::Active, BillingCycle::Annual)
            ),
            Some(Extra::Arrears) => assert_eq!(
                (status, extra.timing),
                (ContractStatus::Active, BillingTiming::Arrears)
            ),
            // No recurring invoice: nothing recurring is billed.
            Some(Extra::OtherType) => {
                assert_eq!((kind, cycle), ("Block Hours", BillingCycle::None))
            }
            Some(Extra::NoCycle) => assert_eq!((kind, cycle), ("Ad hoc", BillingCycle::None)),
            Some(Extra::OneTime) => assert_eq!((kind, cycle), ("Project", BillingCycle::None)),
            None => unreachable!(),
        }
        seen += 1;
    }
    assert!(seen >= 8, "{seen}");
    // Every line's invoice belongs to its contract (the merge attached the
    // right invoices): lines of stale copies sit on non-active contracts.
    let contract_status: BTreeMap<&str, ContractStatus> = synced
        .contracts
        .iter()
        .map(|c| (c.id.as_str(), c.status))
        .collect();
    assert!(
        synced
            .lines
            .iter()
            .all(|l| contract_status.contains_key(l.contract_id.as_str()))
    );

    let mut other = connection.session().expect("session");
    let types = Against::HaloPsa.contract_types();
    let selected = full_sync(
        &mut other,
        &ContractFilter {
            types: types.clone(),
            active_only: false,
        },
    )
    .await
    .expect("filtered");
    assert!(
        selected
            .contracts
            .iter()
            .all(|c| types.contains(&c.contract_type))
    );
    assert!(truth_mismatches(&emulator.world, as_of(), &selected).is_empty());
    let active = full_sync(
        &mut other,
        &ContractFilter {
            types: Vec::new(),
            active_only: true,
        },
    )
    .await
    .expect("active only");
    assert_eq!(
        active.contracts.len(),
        synced
            .contracts
            .iter()
            .filter(|c| c.status == ContractStatus::Active)
            .count()
    );
}

async fn target(connection: &Connection) -> (String, ServiceLine) {
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    let main = synced
        .contracts
        .iter()
        .find(|c| c.contract_type == "Managed Services" && c.status == ContractStatus::Active)
        .expect("main contract");
    let line = synced
        .lines
        .iter()
        .find(|l| l.contract_id == main.id && l.billable && l.cancelled_date.is_none())
        .expect("a current line")
        .clone();
    (main.id.to_string(), line)
}

fn change(
    contract: &str,
    line: &ServiceLine,
    new: Decimal,
    policy: ChangePolicy,
) -> QuantityChange {
    QuantityChange {
        contract_id: contract.to_owned(),
        line_id: line.id.to_string(),
        product_identifier: line.product_identifier.to_string(),
        expected_quantity: line.quantity,
        new_quantity: new,
        effective_date: NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
        policy,
        idempotency_key: format!("test-{}", line.id),
    }
}

async fn writes(emulator: &Emulator) -> Vec<Value> {
    emulator
        .inspect("/_emulator/halopsa/writes")
        .await
        .as_array()
        .expect("writes")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updatelines_sets_the_quantity_once() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let new = line.quantity + Decimal::from(6);
    let mut session = connection.session().expect("session");
    for policy in [ChangePolicy::Immediate, ChangePolicy::Dated] {
        let request = change(&contract, &line, new, policy);
        let result = session
            .apply_quantity_change(&request)
            .await
            .expect("apply");
        let log = writes(&emulator).await;
        assert_eq!(log.len(), 1, "applied exactly once: {log:#?}");
        if policy == ChangePolicy::Immediate {
            assert!(result.changed);
        } else {
            assert!(!result.changed, "the dated retry finds it done");
            assert!(
                result.notes.iter().any(|n| n.contains("in place")),
                "{:?}",
                result.notes
            );
        }
        assert_eq!(result.line.id, line.id);
        assert_eq!(result.line.quantity, new);
        assert_eq!(log[0]["method"], "POST");
        assert_eq!(log[0]["path"], "/api/RecurringInvoice/updatelines");
        let body = &log[0]["body"][0];
        assert_eq!(body["id"].to_string(), line.id.as_str());
        assert!(body["ihid"].as_i64().is_some_and(|i| i > 0));
        assert_eq!(body["qty_order"].to_string(), new.to_string());
    }
    let read = session
        .read_line(&contract, line.id.as_str())
        .await
        .expect("read-line");
    assert_eq!(read.quantity, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_updatelines_and_writes_nothing() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let request = change(&contract, &line, Decimal::from(41), ChangePolicy::Dated);
    // A fresh instance holds no token, and a dry run cannot POST for one.
    let mut session = connection.session().expect("session");
    let tokens = emulator.count("POST /auth/token");
    let error = session
        .plan_quantity_change(&request)
        .await
        .expect_err("no token");
    assert!(
        matches!(error.kind, CallErrorKind::Connector(ConnectorFailure::AuthFailed(ref m)) if m.contains("dry run")),
        "{error}"
    );
    assert_eq!(emulator.count("POST /auth/token"), tokens);
    // Once the session has read from Halo, it plans with its token.
    session
        .read_line(&contract, line.id.as_str())
        .await
        .expect("read-line");
    let plan = session.plan_quantity_change(&request).await.expect("plan");
    let methods: Vec<&str> = plan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "POST", "GET"], "{plan:#?}");
    assert!(plan[0].url.contains(&format!("contract_id={contract}")));
    assert_eq!(
        plan[1].url,
        format!("{}/api/RecurringInvoice/updatelines", emulator.base())
    );
    let body: Value = serde_json::from_str(plan[1].body.as_deref().expect("body")).expect("JSON");
    assert_eq!(body[0]["qty_order"], 41);
    assert!(plan.iter().all(|c| {
        !c.body
            .as_deref()
            .unwrap_or("")
            .contains(halo::CLIENT_SECRET)
    }));
    assert!(writes(&emulator).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_map_to_the_right_errors() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    emulator.faults(FaultPlan {
        rate_limited: 2,
        retry_after_secs: 9,
        ..FaultPlan::default()
    });
    let error = connection
        .session()
        .expect("session")
        .list_companies(None)
        .await
        .expect_err("429");
    assert_eq!(
        error.kind,
        CallErrorKind::Connector(ConnectorFailure::RateLimited {
            retry_after: Duration::from_secs(9)
        })
    );
    emulator.faults(FaultPlan {
        server_errors: 1,
        path_contains: Some("/api/Client".into()),
        ..FaultPlan::default()
    });
    let error = connection
        .session()
        .expect("session")
        .list_companies(None)
        .await
        .expect_err("500");
    assert!(
        matches!(
            error.kind,
            CallErrorKind::Connector(ConnectorFailure::Upstream { status: 500, .. })
        ),
        "{error}"
    );
    assert!(error.is_transient());
    emulator.faults(FaultPlan {
        truncated: 1,
        path_contains: Some("/api/Client".into()),
        ..FaultPlan::default()
    });
    let error = connection
        .session()
        .expect("session")
        .list_companies(None)
        .await
        .expect_err("truncated");
    assert!(
        matches!(error.kind, CallErrorKind::Connector(ConnectorFailure::Internal(ref m)) if m.contains(&format!("GET {}/api/Client", emulator.base()))),
        "{error}"
    );
    let slow = connect(
        &emulator,
        &[],
        LimitSettings {
            call_timeout_ms: Some(1_000),
            ..LimitSettings::default()
        },
    );
    emulator.faults(FaultPlan {
        slow: 1,
        slow_ms: 4_000,
        ..FaultPlan::default()
    });
    let error = slow
        .session()
        .expect("session")
        .list_companies(None)
        .await
        .expect_err("slow");
    assert!(
        matches!(error.kind, CallErrorKind::Timeout { .. }),
        "{error}"
    );
    emulator.faults(FaultPlan::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_loops_are_reported_not_followed() {
    let emulator = emulator(60, pinned()).await;
    let connection = connect(&emulator, &[("page_size", "10")], LimitSettings::default());
    for (path, contracts) in [("/api/Client", false), ("/api/RecurringInvoice", true)] {
        emulator.faults(FaultPlan {
            paging_loop: true,
            path_contains: Some(path.into()),
            ..FaultPlan::default()
        });
        let mut session = connection.session().expect("session");
        let mut cursor: Option<String> = None;
        let mut error = None;
        for _ in 0..5 {
            let result = if contracts {
                session
                    .list_contracts(&all_contracts(), cursor.as_deref())
                    .await
                    .map(|p| p.next_cursor)
            } else {
                session
                    .list_companies(cursor.as_deref())
                    .await
                    .map(|p| p.next_cursor)
            };
            match result {
                Ok(next) => cursor = Some(next.expect("the loop never ends the listing")),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let error = error.unwrap_or_else(|| panic!("{path}: the loop was followed"));
        assert!(
            matches!(error.kind, CallErrorKind::Connector(ConnectorFailure::Internal(ref m)) if m.contains("does not advance")),
            "{path}: {error}"
        );
    }
    emulator.faults(FaultPlan::default());
}
