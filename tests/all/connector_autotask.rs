//! The Autotask connector (`plugins/autotask`) against the Autotask
//! emulator: zone lookup, full sync checked against the seeded data,
//! statuses, posted-through, adjustments with idempotency, adding a
//! catalogue service, Autotask's refusals (never retried) and server
//! faults (retried), dry runs, the shared hourly budget and a configured
//! zone URL. The faults every PSA shares: `connector_faults`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;
use trueup_conformance::psa::{
    self as conformance, Against, Connection, full_sync, truth_mismatches,
};
use trueup_core::model::{BillingCycle, ContractStatus, ServiceLine};
use trueup_emulators::catalog::Product;
use trueup_emulators::common::{Extra, plans};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings, autotask as at};
use trueup_plugin_host::limits::LimitSettings;
use trueup_plugin_host::{
    CallError, CallErrorKind, ChangePolicy, ConnectorFailure, ContractFilter, QuantityChange,
};

use crate::connector_harness::{Emulator, all_contracts, as_of, connect_psa};

const ID: &str = "trueup.autotask";
const SEED: u64 = 7;

async fn emulator(customers: usize, settings: Settings) -> Emulator {
    Emulator::start(Kind::Autotask, SEED, customers, settings).await
}

fn pinned() -> Settings {
    Against::Autotask.emulator_settings(as_of())
}

fn connect(emulator: &Emulator, config: &[(&str, &str)], limits: LimitSettings) -> Connection {
    connect_psa(ID, Against::Autotask, emulator, config, limits)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_reads_companies_contracts_and_current_units() {
    let emulator = emulator(3_600, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("full sync");
    let plans = plans(&emulator.world, as_of());

    let dead = plans.iter().filter(|p| p.position % 13 == 6).count();
    assert_eq!(synced.companies.len(), plans.len() + dead);
    assert_eq!(
        synced
            .companies
            .iter()
            .filter(|c| c.status == trueup_core::model::CompanyStatus::Inactive)
            .count(),
        dead
    );
    assert!(synced.companies.len() >= 2_000);
    let extras = plans
        .iter()
        .filter(|p| p.extra.is_some_and(|e| e != Extra::Arrears))
        .count();
    assert_eq!(synced.contracts.len(), plans.len() + extras);
    let services: usize = plans
        .iter()
        .map(|p| {
            let moved = p.moved.iter().count();
            p.lines.len()
                + match p.extra {
                    Some(Extra::Arrears) => moved,
                    Some(Extra::Cancelled | Extra::Annual | Extra::Inactive | Extra::Expired) => {
                        moved + p.stale.len()
                    }
                    _ => 0,
                }
        })
        .sum();
    assert_eq!(synced.lines.len(), services);
    assert!(synced.lines.len() >= 20_000, "{} lines", synced.lines.len());
    assert!(
        synced.pages.0 >= 8 && synced.pages.1 >= 9,
        "500 a page: {:?}",
        synced.pages
    );
    // One token-free zone lookup for the whole sync.
    assert_eq!(
        emulator.count("GET /atservicesrest/v1.0/zoneInformation"),
        1
    );

    // A sample of main contracts: the units of the current period, the
    // catalogue name, the price, and the end of the last posted period.
    let by_name: BTreeMap<&str, &str> = synced
        .companies
        .iter()
        .filter(|c| c.status == trueup_core::model::CompanyStatus::Active)
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    for plan in plans.iter().step_by(89) {
        let customer = &emulator.world.customers[plan.customer];
        let company = by_name[customer.name.as_str()];
        let main = synced
            .contracts
            .iter()
            .find(|c| c.company_id.as_str() == company && c.name.starts_with("Managed Services - "))
            .expect("main contract");
        assert_eq!(main.billing_cycle, BillingCycle::Monthly);
        assert_eq!(main.contract_type, "Recurring Service");
        assert!(main.prorate);
        assert_eq!(
            main.posted_through,
            Some(date(2026, 10, 31)),
            "{}",
            customer.name
        );
        let mut expected: Vec<(String, Decimal, Decimal)> = plan
            .lines
            .iter()
            .chain(if plan.extra == Some(Extra::Arrears) {
                plan.moved.iter()
            } else {
                None.iter()
            })
            .map(|l| {
                (
                    l.product.identifier.to_owned(),
                    Decimal::from(l.quantity),
                    Decimal::new(l.product.unit_price_cents, 2),
                )
            })
            .collect();
        expected.sort();
        let mut got: Vec<(String, Decimal, Decimal)> = synced
            .lines
            .iter()
            .filter(|l| l.contract_id == main.id)
            .map(|l| (l.product_identifier.to_string(), l.quantity, l.unit_price))
            .collect();
        got.sort();
        assert_eq!(got, expected, "{}", customer.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_cycles_and_filters_follow_the_contracts() {
    let emulator = emulator(80, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    let plans = plans(&emulator.world, as_of());
    let id_of: BTreeMap<&str, &str> = synced
        .companies
        .iter()
        .filter(|c| c.status == trueup_core::model::CompanyStatus::Active)
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    let mut seen = 0;
    for plan in plans
        .iter()
        .filter(|p| p.extra.is_some_and(|e| e != Extra::Arrears))
    {
        let company = id_of[emulator.world.customers[plan.customer].name.as_str()];
        let extra = synced
            .contracts
            .iter()
            .find(|c| {
                c.company_id.as_str() == company && !c.name.starts_with("Managed Services - ")
            })
            .expect("extra contract");
        let (status, cycle, kind) = (
            extra.status,
            extra.billing_cycle.clone(),
            extra.contract_type.as_str(),
        );
        match plan.extra {
            // Autotask has no "cancelled": a replaced contract is inactive
            // and ended.
            Some(Extra::Cancelled) => {
                assert_eq!(status, ContractStatus::Inactive);
                assert!(extra.end_date.is_some_and(|e| e < as_of()));
            }
            Some(Extra::Inactive) => assert_eq!(status, ContractStatus::Inactive),
            Some(Extra::Expired) => assert_eq!(status, ContractStatus::Expired),
            Some(Extra::Annual) => assert_eq!(
                (status, cycle),
                (ContractStatus::Active, BillingCycle::Annual)
            ),
            Some(Extra::OtherType) => {
                assert_eq!((kind, cycle), ("Block Hours", BillingCycle::None))
            }
            Some(Extra::NoCycle) => {
                assert_eq!((kind, cycle), ("Time & Materials", BillingCycle::None))
            }
            Some(Extra::OneTime) => {
                assert_eq!((kind, cycle), ("Fixed Price", BillingCycle::OneTime))
            }
            _ => unreachable!(),
        }
        seen += 1;
    }
    assert!(seen >= 7, "{seen} extra contracts");

    let mut other = connection.session().expect("session");
    let recurring = full_sync(
        &mut other,
        &ContractFilter {
            types: vec!["Recurring Service".into()],
            active_only: false,
        },
    )
    .await
    .expect("filtered");
    assert!(
        recurring
            .contracts
            .iter()
            .all(|c| c.contract_type == "Recurring Service")
    );
    assert_eq!(
        recurring.contracts.len(),
        synced
            .contracts
            .iter()
            .filter(|c| c.contract_type == "Recurring Service")
            .count()
    );
    assert!(truth_mismatches(&emulator.world, as_of(), &recurring).is_empty());
    let by_number = full_sync(
        &mut other,
        &ContractFilter {
            types: vec!["4".into(), "category:9".into()],
            active_only: false,
        },
    )
    .await
    .expect("type number");
    assert!(!by_number.contracts.is_empty());
    assert!(
        by_number
            .contracts
            .iter()
            .all(|c| c.contract_type == "Block Hours")
    );
    let active = full_sync(
        &mut other,
        &ContractFilter {
            types: Vec::new(),
            active_only: true,
        },
    )
    .await
    .expect("active only");
    assert!(
        active
            .contracts
            .iter()
            .all(|c| c.status == ContractStatus::Active)
    );
    assert_eq!(
        active.contracts.len(),
        synced
            .contracts
            .iter()
            .filter(|c| c.status == ContractStatus::Active)
            .count()
    );
    let error = other
        .list_contracts(
            &ContractFilter {
                types: vec!["Managed Services".into()],
                active_only: false,
            },
            None,
        )
        .await
        .expect_err("unknown type");
    assert!(
        matches!(error.kind, CallErrorKind::Connector(ConnectorFailure::InvalidConfig(ref m)) if m.contains("Recurring Service")),
        "{error}"
    );
}

/// The first service of the first customer's main contract.
async fn target(connection: &Connection) -> (String, ServiceLine) {
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    let main = synced
        .contracts
        .iter()
        .find(|c| c.name.starts_with("Managed Services - "))
        .expect("main contract");
    let line = synced
        .lines
        .iter()
        .find(|l| l.contract_id == main.id && l.quantity > Decimal::ZERO)
        .expect("a service with units")
        .clone();
    (main.id.to_string(), line)
}

fn change(
    contract: &str,
    line: &ServiceLine,
    new: Decimal,
    effective: NaiveDate,
) -> QuantityChange {
    QuantityChange {
        contract_id: contract.to_owned(),
        line_id: Some(line.id.to_string()),
        product_identifier: line.product_identifier.to_string(),
        expected_quantity: line.quantity,
        new_quantity: new,
        effective_date: effective,
        policy: ChangePolicy::Dated,
        idempotency_key: format!("test-{}", line.id),
    }
}

/// The status, body and `retryable` of an `upstream` failure, checking
/// that the host's retry decision follows `retryable`.
fn upstream(error: CallError) -> (u16, String, bool) {
    let transient = error.is_transient();
    match error.kind {
        CallErrorKind::Connector(ConnectorFailure::Upstream {
            status,
            body,
            retryable,
        }) => {
            assert_eq!(transient, retryable, "{status} {body}");
            (status, body, retryable)
        }
        other => panic!("expected upstream, got {other:?}"),
    }
}

async fn inspect_list(emulator: &Emulator, path: &str) -> Vec<Value> {
    emulator
        .inspect(path)
        .await
        .as_array()
        .expect("a list")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adjustment_is_posted_once_for_the_unit_difference() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let seeded = inspect_list(&emulator, "/_emulator/autotask/adjustments")
        .await
        .len();
    let new = line.quantity + Decimal::from(5);
    let request = change(&contract, &line, new, date(2026, 12, 1));
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed, "{:?}", result.notes);
    assert_eq!(result.line.id, line.id);
    assert_eq!(result.line.quantity, new, "units from the effective date");
    let adjustments = inspect_list(&emulator, "/_emulator/autotask/adjustments").await;
    assert_eq!(adjustments.len(), seeded + 1);
    let posted = adjustments.last().expect("the adjustment");
    assert_eq!(
        posted["contractServiceID"].as_i64(),
        line.id.as_str().parse().ok()
    );
    assert_eq!(posted["unitChange"], 5);
    assert_eq!(posted["effectiveDate"], "2026-12-01T00:00:00Z");
    assert_eq!(result.record_ids, vec![posted["id"].to_string()]);
    // The current month still bills the old units.
    let now = session
        .read_line(&contract, line.id.as_str())
        .await
        .expect("read-line");
    assert_eq!(now.quantity, line.quantity);

    let again = session
        .apply_quantity_change(&request)
        .await
        .expect("again");
    assert!(!again.changed, "{:?}", again.notes);
    assert_eq!(again.line.quantity, new);
    assert_eq!(
        inspect_list(&emulator, "/_emulator/autotask/adjustments")
            .await
            .len(),
        seeded + 1,
        "applied exactly once"
    );
    assert_eq!(
        inspect_list(&emulator, "/_emulator/autotask/writes")
            .await
            .len(),
        1
    );

    // A later SET back to the original: −5, once.
    let back = change(&contract, &line, line.quantity, date(2026, 12, 1));
    let reverted = session
        .apply_quantity_change(&back)
        .await
        .expect("set back");
    assert!(reverted.changed);
    let adjustments = inspect_list(&emulator, "/_emulator/autotask/adjustments").await;
    assert_eq!(adjustments.last().expect("adjustment")["unitChange"], -5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_period_change_is_prorated_and_still_applied_once() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let new = line.quantity + Decimal::from(2);
    let request = change(&contract, &line, new, date(2026, 11, 16));
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed);
    assert_eq!(result.line.quantity, new);
    assert!(
        result.notes.iter().any(|n| n.contains("proration")),
        "{:?}",
        result.notes
    );
    // As of the 25th the prorated units are in effect.
    let read = session
        .read_line(&contract, line.id.as_str())
        .await
        .expect("read-line");
    assert_eq!(read.quantity, new);
    let again = session
        .apply_quantity_change(&request)
        .await
        .expect("again");
    assert!(!again.changed);
    assert_eq!(
        inspect_list(&emulator, "/_emulator/autotask/writes")
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimal_units_are_refused_before_any_request() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let before = emulator.running.faults.stats().total;
    let mut session = connection.session().expect("session");
    let error = session
        .apply_quantity_change(&change(
            &contract,
            &line,
            Decimal::new(25, 1),
            date(2026, 12, 1),
        ))
        .await
        .expect_err("decimal");
    let (status, body, retryable) = upstream(error);
    assert_eq!((status, retryable), (422, false));
    assert!(
        body.contains("whole numbers") && body.contains("2.5"),
        "{body}"
    );
    assert_eq!(
        emulator.running.faults.stats().total,
        before,
        "no request at all"
    );
    assert!(
        inspect_list(&emulator, "/_emulator/autotask/writes")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_period_is_refused_with_autotasks_text() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let seeded = inspect_list(&emulator, "/_emulator/autotask/adjustments")
        .await
        .len();
    let mut session = connection.session().expect("session");
    let error = session
        .apply_quantity_change(&change(
            &contract,
            &line,
            line.quantity + Decimal::ONE,
            date(2026, 10, 1),
        ))
        .await
        .expect_err("posted");
    // Autotask answers with a 500, but retrying cannot change a posted
    // period: the host must not retry it.
    assert_eq!(
        upstream(error),
        (500, at::POSTED_PERIOD_ERROR.to_owned(), false)
    );
    assert_eq!(
        inspect_list(&emulator, "/_emulator/autotask/adjustments")
            .await
            .len(),
        seeded
    );
    let log = inspect_list(&emulator, "/_emulator/autotask/writes").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_server_error_on_the_adjustment_is_retryable() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let seeded = inspect_list(&emulator, "/_emulator/autotask/adjustments")
        .await
        .len();
    let request = change(
        &contract,
        &line,
        line.quantity + Decimal::ONE,
        date(2026, 12, 1),
    );
    emulator.faults(FaultPlan {
        server_errors: 1,
        path_contains: Some("/ContractServiceAdjustments".into()),
        ..FaultPlan::default()
    });
    let mut session = connection.session().expect("session");
    let error = session
        .apply_quantity_change(&request)
        .await
        .expect_err("500");
    let (status, _, retryable) = upstream(error);
    assert_eq!((status, retryable), (500, true));
    assert_eq!(
        inspect_list(&emulator, "/_emulator/autotask/adjustments")
            .await
            .len(),
        seeded,
        "the fault answered before Autotask changed anything"
    );
    // The retry the host makes posts the adjustment, once.
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("retry");
    assert!(result.changed);
    assert_eq!(
        inspect_list(&emulator, "/_emulator/autotask/adjustments")
            .await
            .len(),
        seeded + 1
    );
}

/// GETs `path` (under `…/atservicesrest/v1.0`) with `query` straight
/// from the emulator, with the API user's headers.
async fn api_get(emulator: &Emulator, path: &str, query: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .get(format!("{}/atservicesrest/v1.0{path}", emulator.base()))
        .query(query)
        .header("ApiIntegrationCode", at::INTEGRATION_CODE)
        .header("UserName", at::USERNAME)
        .header("Secret", at::SECRET)
        .send()
        .await
        .expect("request")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("JSON"))
        .expect("body")
}

/// A GET query of `entity` with `filter`, straight to the emulator.
async fn query(emulator: &Emulator, entity: &str, filter: Value) -> Vec<Value> {
    let search = serde_json::json!({ "filter": filter }).to_string();
    let body = api_get(
        emulator,
        &format!("/{entity}/query"),
        &[("search", search.as_str())],
    )
    .await;
    body["items"].as_array().expect("items").clone()
}

/// The first customer's main contract and a catalogue service it has no
/// contract service of.
async fn add_target(connection: &Connection) -> (String, &'static Product) {
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    let main = synced
        .contracts
        .iter()
        .find(|c| c.name.starts_with("Managed Services - "))
        .expect("main contract");
    let product = conformance::product_missing_from(&synced, main.id.as_str())
        .expect("a service the contract lacks");
    (main.id.to_string(), product)
}

fn add(contract: &str, product: &Product, units: Decimal, effective: NaiveDate) -> QuantityChange {
    conformance::add_line_change(contract, product, units, effective)
}

fn number(value: &Value) -> Decimal {
    value.to_string().parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_service_creates_one_contract_service_at_the_catalogue_price_once() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, product) = add_target(&connection).await;
    let contract_id: i64 = contract.parse().expect("contract id");
    let price = Decimal::new(product.unit_price_cents, 2);
    let services = query(
        &emulator,
        "Services",
        serde_json::json!([{"op": "eq", "field": "name", "value": product.identifier}]),
    )
    .await;
    let service_id = services[0]["id"].as_i64().expect("service id");
    let on_contract =
        serde_json::json!([{"op": "eq", "field": "contractID", "value": contract_id}]);
    let before = query(&emulator, "ContractServices", on_contract.clone()).await;
    let seeded = inspect_list(&emulator, "/_emulator/autotask/adjustments")
        .await
        .len();

    let request = add(&contract, product, Decimal::from(6), date(2026, 12, 1));
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed, "{:?}", result.notes);
    assert_eq!(result.line.product_identifier.as_str(), product.identifier);
    assert_eq!(result.line.quantity, Decimal::from(6), "units on the 1st");
    assert_eq!(result.line.unit_price, price, "catalogue price");

    // Exactly one new contract service, of that service, at the catalogue
    // price, with 6 units from December and none before.
    let after = query(&emulator, "ContractServices", on_contract.clone()).await;
    assert_eq!(after.len(), before.len() + 1);
    let created: Vec<&Value> = after
        .iter()
        .filter(|s| !before.iter().any(|b| b["id"] == s["id"]))
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["serviceID"], service_id);
    assert_eq!(created[0]["id"].to_string(), result.line.id.as_str());
    assert_eq!(number(&created[0]["unitPrice"]), price);
    let units = query(
        &emulator,
        "ContractServiceUnits",
        serde_json::json!([{"op": "eq", "field": "contractServiceID", "value": created[0]["id"]}]),
    )
    .await;
    assert!(!units.is_empty());
    for unit in &units {
        let start = unit["startDate"].as_str().expect("start");
        assert!(start >= "2026-12-01", "{unit}");
        assert_eq!(unit["units"], 6, "{unit}");
    }
    assert!(
        units
            .iter()
            .any(|u| u["startDate"] == "2026-12-01T00:00:00Z"),
        "{units:#?}"
    );
    let adjustments = inspect_list(&emulator, "/_emulator/autotask/adjustments").await;
    assert_eq!(adjustments.len(), seeded + 1);
    let posted = adjustments.last().expect("the adjustment");
    assert_eq!(posted["contractID"], contract_id);
    assert_eq!(posted["serviceID"], service_id);
    assert_eq!(posted["unitChange"], 6);
    assert_eq!(posted["effectiveDate"], "2026-12-01T00:00:00Z");
    assert_eq!(
        result.record_ids,
        vec![posted["id"].to_string(), result.line.id.to_string()]
    );
    // The current month (as of the 25th) has none of it yet.
    let now = session
        .read_line(&contract, result.line.id.as_str())
        .await
        .expect("read-line");
    assert_eq!(now.quantity, Decimal::ZERO);

    // The same add again: nothing is posted.
    let again = session
        .apply_quantity_change(&request)
        .await
        .expect("again");
    assert!(!again.changed, "{:?}", again.notes);
    assert_eq!(again.line.id, result.line.id);
    assert_eq!(again.line.quantity, Decimal::from(6));
    assert_eq!(
        inspect_list(&emulator, "/_emulator/autotask/writes")
            .await
            .len(),
        1,
        "added exactly once"
    );
    assert_eq!(
        query(&emulator, "ContractServices", on_contract)
            .await
            .len(),
        before.len() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_of_an_add_lists_the_adjustment_and_posts_nothing() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, product) = add_target(&connection).await;
    let request = add(&contract, product, Decimal::from(2), date(2026, 12, 1));
    let mut session = connection.session().expect("session");
    let plan = session.plan_quantity_change(&request).await.expect("plan");
    let methods: Vec<&str> = plan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "POST", "GET", "GET"], "{plan:#?}");
    // The zone answers `…/ATServicesRest/` (its own casing): the connector
    // uses the URL as given.
    let root = format!("{}{}/v1.0", emulator.base(), at::ZONE_ROOT);
    for (call, entity) in [
        (0, "Services"),
        (1, "ContractServices"),
        (3, "ContractServices"),
        (4, "ContractServiceUnits"),
    ] {
        assert!(
            plan[call]
                .url
                .starts_with(&format!("{root}/{entity}/query?search=")),
            "{}",
            plan[call].url
        );
    }
    assert_eq!(plan[2].url, format!("{root}/ContractServiceAdjustments"));
    let body: Value = serde_json::from_str(plan[2].body.as_deref().expect("body")).expect("JSON");
    assert_eq!(body["contractID"].to_string(), contract);
    assert_eq!(body["unitChange"], 2);
    assert_eq!(body["effectiveDate"], "2026-12-01T00:00:00");
    assert_eq!(
        number(&body["adjustedUnitPrice"]),
        Decimal::new(product.unit_price_cents, 2)
    );
    assert!(body.get("contractServiceID").is_none(), "{body}");
    assert!(
        inspect_list(&emulator, "/_emulator/autotask/writes")
            .await
            .is_empty()
    );

    session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    let log = inspect_list(&emulator, "/_emulator/autotask/writes").await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0]["method"].as_str(), log[0]["path"].as_str()),
        (Some("POST"), plan[2].url.strip_prefix(emulator.base()))
    );
    let replan = session
        .plan_quantity_change(&request)
        .await
        .expect("plan again");
    let methods: Vec<&str> = replan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "GET"], "{replan:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_adds_are_not_retryable() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, product) = add_target(&connection).await;
    let mut session = connection.session().expect("session");

    // Into a posted period: Autotask's own text, answered with a 500.
    let error = session
        .apply_quantity_change(&add(
            &contract,
            product,
            Decimal::from(2),
            date(2026, 10, 1),
        ))
        .await
        .expect_err("posted");
    assert_eq!(
        upstream(error),
        (500, at::POSTED_PERIOD_ERROR.to_owned(), false)
    );

    // A decimal quantity: Autotask's units are whole numbers, so it is
    // refused before any request.
    let before = emulator.running.faults.stats().total;
    let error = session
        .apply_quantity_change(&add(
            &contract,
            product,
            Decimal::new(25, 1),
            date(2026, 12, 1),
        ))
        .await
        .expect_err("decimal");
    let (status, body, retryable) = upstream(error);
    assert_eq!((status, retryable), (422, false));
    assert!(
        body.contains("whole numbers") && body.contains("2.5"),
        "{body}"
    );
    assert_eq!(emulator.running.faults.stats().total, before);

    // A service Autotask's catalogue does not have.
    let error = session
        .apply_quantity_change(&QuantityChange {
            product_identifier: "NO-SUCH-SERVICE".into(),
            ..add(&contract, product, Decimal::from(2), date(2026, 12, 1))
        })
        .await
        .expect_err("unknown service");
    assert!(
        matches!(error.kind, CallErrorKind::Connector(ConnectorFailure::NotFound(ref m)) if m.contains("NO-SUCH-SERVICE")),
        "{error}"
    );

    // Only the posted-period attempt reached Autotask as a write.
    let log = inspect_list(&emulator, "/_emulator/autotask/writes").await;
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["status"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_the_adjustment_and_posts_nothing() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let mut session = connection.session().expect("session");
    let request = change(
        &contract,
        &line,
        line.quantity + Decimal::from(3),
        date(2026, 12, 1),
    );
    let plan = session.plan_quantity_change(&request).await.expect("plan");
    let methods: Vec<&str> = plan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "GET", "POST", "GET"], "{plan:#?}");
    assert!(plan[0].url.ends_with(&format!(
        "{}/v1.0/ContractServices/{}",
        at::ZONE_ROOT,
        line.id
    )));
    assert!(plan[3].url.ends_with(&format!(
        "{}/v1.0/ContractServiceAdjustments",
        at::ZONE_ROOT
    )));
    let body: Value = serde_json::from_str(plan[3].body.as_deref().expect("body")).expect("JSON");
    assert_eq!(body["unitChange"], 3);
    assert_eq!(body["contractID"].to_string(), contract);
    for secret in [at::SECRET, at::INTEGRATION_CODE] {
        assert!(
            plan.iter()
                .all(|c| !c.url.contains(secret)
                    && !c.body.as_deref().unwrap_or("").contains(secret))
        );
    }
    assert!(
        inspect_list(&emulator, "/_emulator/autotask/writes")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_share_is_respected_before_autotasks_hard_limit() {
    let mut settings = pinned();
    settings.autotask.hourly_request_limit = 40;
    settings.autotask.usage_latency = false;
    let emulator = emulator(30, settings).await;
    let connection = connect(
        &emulator,
        &[("budget_share", "0.5")],
        LimitSettings::default(),
    );
    let mut session = connection.session().expect("session");
    let mut calls = 0;
    let error = loop {
        match session.list_companies(None).await {
            Ok(_) => calls += 1,
            Err(error) => break error,
        }
        assert!(calls <= 40, "never backed off");
    };
    assert_eq!(calls, 20, "half of the hourly 40 requests");
    match error.kind {
        CallErrorKind::Connector(ConnectorFailure::RateLimited { retry_after }) => {
            assert!(
                retry_after >= Duration::from_secs(60) && retry_after <= Duration::from_secs(3600),
                "{retry_after:?}"
            );
        }
        other => panic!("expected rate-limited, got {other:?}"),
    }
    // Autotask itself never refused: its counter is at the share, below
    // the limit.
    let threshold = api_get(&emulator, "/ThresholdInformation", &[]).await;
    assert_eq!(threshold["currentTimeframeRequestCount"], 20);
    assert_eq!(threshold["externalRequestThreshold"], 40);

    // With the whole budget allowed, the emulator's own 429 comes back as
    // rate-limited too.
    let greedy = connect(
        &emulator,
        &[("budget_share", "1")],
        LimitSettings::default(),
    );
    let mut session = greedy.session().expect("session");
    let error = loop {
        if let Err(error) = session.list_companies(None).await {
            break error;
        }
    };
    assert!(
        matches!(
            error.kind,
            CallErrorKind::Connector(ConnectorFailure::RateLimited { .. })
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_zone_url_skips_the_lookup() {
    let emulator = emulator(10, pinned()).await;
    let api_url = format!("{}/atservicesrest", emulator.base());
    let connection = connect(
        &emulator,
        &[("api_url", &api_url)],
        LimitSettings::default(),
    );
    let mut session = connection.session().expect("session");
    let page = session.list_companies(None).await.expect("companies");
    assert!(!page.items.is_empty());
    assert_eq!(
        emulator.count("GET /atservicesrest/v1.0/zoneInformation"),
        0
    );
}
