//! The ConnectWise PSA connector (`plugins/connectwise`) against the
//! ConnectWise emulator: full sync checked against the emulator's seeded
//! data, statuses and cycles, dated and immediate write-back with
//! idempotency, adding an addition from the product catalogue, dry runs,
//! ConnectWise's own rate limit and looping additions. The faults every PSA
//! shares: `connector_faults`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use trueup_conformance::psa::{
    self as conformance, Against, Connection, full_sync, truth_mismatches,
};
use trueup_core::model::{BillingCycle, BillingTiming, ContractStatus, ServiceLine};
use trueup_emulators::catalog::{PRODUCTS, Product};
use trueup_emulators::common::{CustomerPlan, Extra, plans};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings, connectwise as cw};
use trueup_plugin_host::limits::LimitSettings;
use trueup_plugin_host::{
    CallErrorKind, ChangePolicy, ConnectorFailure, ContractFilter, QuantityChange,
};

use crate::connector_harness::{Emulator, all_contracts, as_of, connect_psa};

const ID: &str = "trueup.connectwise";
const SEED: u64 = 7;

async fn emulator(customers: usize, settings: Settings) -> Emulator {
    Emulator::start(Kind::ConnectWise, SEED, customers, settings).await
}

fn pinned() -> Settings {
    Against::ConnectWise.emulator_settings(as_of())
}

fn connect(emulator: &Emulator, config: &[(&str, &str)], limits: LimitSettings) -> Connection {
    connect_psa(ID, Against::ConnectWise, emulator, config, limits)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

fn price(product: &Product) -> Decimal {
    Decimal::new(product.unit_price_cents, 2)
}

/// What the emulator seeds on a customer's main agreement, as
/// (identifier, quantity, effective, cancelled, billable, unit price).
type Row = (
    String,
    Decimal,
    Option<NaiveDate>,
    Option<NaiveDate>,
    bool,
    Decimal,
);

fn expected_main(plan: &CustomerPlan) -> Vec<Row> {
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
    for (product, quantity) in plan.do_not_bill.iter().chain(plan.no_charge.iter()) {
        rows.push((
            product.identifier.to_owned(),
            Decimal::from(*quantity),
            Some(plan.start),
            None,
            false,
            price(product),
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
async fn full_sync_reads_every_company_agreement_and_addition() {
    let emulator = emulator(3_600, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("full sync");
    let plans = plans(&emulator.world, as_of());

    // Counts: the recycle-bin duplicates are left out.
    assert_eq!(synced.companies.len(), plans.len());
    assert!(
        synced.companies.len() >= 2_000,
        "{} companies",
        synced.companies.len()
    );
    let agreements = plans.len() + plans.iter().filter(|p| p.extra.is_some()).count();
    assert_eq!(synced.contracts.len(), agreements);
    let additions: usize = plans
        .iter()
        .map(|p| {
            p.lines.len()
                + usize::from(p.replaced.is_some())
                + usize::from(p.do_not_bill.is_some())
                + usize::from(p.no_charge.is_some())
                + p.moved.iter().count()
                + p.stale.len()
        })
        .sum();
    assert_eq!(synced.lines.len(), additions);
    assert!(synced.lines.len() >= 20_000, "{} lines", synced.lines.len());
    assert!(
        synced.pages.0 >= 4 && synced.pages.1 >= 5,
        "pages {:?}",
        synced.pages
    );
    assert!(
        synced.pages.2 > synced.contracts.len() / 200,
        "pages {:?}",
        synced.pages
    );
    let mut ids: Vec<&str> = synced.lines.iter().map(|l| l.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), synced.lines.len(), "no addition is listed twice");

    // A sample of customers' main agreements, line by line.
    let by_name: BTreeMap<&str, &str> = synced
        .companies
        .iter()
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    for plan in plans.iter().step_by(97) {
        let customer = &emulator.world.customers[plan.customer];
        let company = by_name[customer.name.as_str()];
        let main = synced
            .contracts
            .iter()
            .find(|c| c.company_id.as_str() == company && c.name == "Managed Services")
            .expect("main agreement");
        assert_eq!(main.billing_cycle, BillingCycle::Monthly);
        assert_eq!(main.start_date, Some(plan.start));
        assert_eq!(main.prorate, plan.prorate, "{}", customer.name);
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
async fn statuses_cycles_and_filters_follow_the_agreements() {
    let emulator = emulator(80, pinned()).await;
    let connection = connect(&emulator, &[("page_size", "25")], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    assert!(synced.pages.1 > 1, "agreements over several pages");
    let plans = plans(&emulator.world, as_of());
    let id_of: BTreeMap<&str, &str> = synced
        .companies
        .iter()
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    let mut seen = 0;
    for plan in plans.iter().filter(|p| p.extra.is_some()) {
        let company = id_of[emulator.world.customers[plan.customer].name.as_str()];
        let extra = synced
            .contracts
            .iter()
            .find(|c| c.company_id.as_str() == company && c.name != "Managed Services")
            .expect("extra agreement");
        let (status, cycle) = (extra.status, extra.billing_cycle.clone());
        match plan.extra {
            Some(Extra::Cancelled) => {
                assert_eq!(status, ContractStatus::Cancelled);
                assert_eq!(extra.end_date, plan.extra_end, "ends when cancelled");
            }
            Some(Extra::Inactive) => assert_eq!(status, ContractStatus::Inactive),
            Some(Extra::Expired) => {
                assert_eq!(status, ContractStatus::Expired);
                assert!(extra.end_date.is_some_and(|end| end < as_of()));
            }
            Some(Extra::Annual) => {
                assert_eq!(
                    (status, cycle),
                    (ContractStatus::Active, BillingCycle::Annual)
                );
                assert_eq!(extra.contract_type, "Microsoft Licensing");
            }
            Some(Extra::Arrears) => {
                assert_eq!(status, ContractStatus::Active);
                assert_eq!(extra.timing, BillingTiming::Arrears);
                assert!(extra.prorate);
            }
            Some(Extra::OtherType) => assert_eq!(extra.contract_type, "Block Time"),
            Some(Extra::NoCycle) => assert_eq!(cycle, BillingCycle::None),
            Some(Extra::OneTime) => assert_eq!(cycle, BillingCycle::OneTime),
            None => unreachable!(),
        }
        seen += 1;
    }
    assert!(seen >= 8, "every kind of extra agreement appears ({seen})");

    // Type and status filters are ConnectWise conditions.
    let types = Against::ConnectWise.contract_types();
    let mut filtered = connection.session().expect("session");
    let only = full_sync(
        &mut filtered,
        &ContractFilter {
            types: types.clone(),
            active_only: false,
        },
    )
    .await
    .expect("filtered sync");
    assert!(
        only.contracts
            .iter()
            .all(|c| types.contains(&c.contract_type))
    );
    assert_eq!(
        only.contracts.len(),
        synced
            .contracts
            .iter()
            .filter(|c| types.contains(&c.contract_type))
            .count()
    );
    assert!(truth_mismatches(&emulator.world, as_of(), &only).is_empty());
    let active = full_sync(
        &mut filtered,
        &ContractFilter {
            types: Vec::new(),
            active_only: true,
        },
    )
    .await
    .expect("active-only sync");
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
}

/// A billable, current addition of the first customer's main agreement.
async fn target(connection: &Connection) -> (String, ServiceLine) {
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    let main = synced
        .contracts
        .iter()
        .find(|c| c.name == "Managed Services")
        .expect("main agreement");
    let line = synced
        .lines
        .iter()
        .find(|l| l.contract_id == main.id && l.billable && l.cancelled_date.is_none())
        .expect("a current billable addition")
        .clone();
    (main.id.to_string(), line)
}

fn change(
    agreement: &str,
    line: &ServiceLine,
    new: i64,
    effective: NaiveDate,
    policy: ChangePolicy,
) -> QuantityChange {
    QuantityChange {
        contract_id: agreement.to_owned(),
        line_id: Some(line.id.to_string()),
        product_identifier: line.product_identifier.to_string(),
        expected_quantity: line.quantity,
        new_quantity: Decimal::from(new),
        effective_date: effective,
        policy,
        idempotency_key: format!("test-{}", line.id),
    }
}

async fn writes(emulator: &Emulator) -> Vec<Value> {
    emulator
        .inspect("/_emulator/connectwise/writes")
        .await
        .as_array()
        .expect("write log")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dated_write_cancels_the_old_addition_and_adds_one_once() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (agreement, line) = target(&connection).await;
    let effective = date(2026, 12, 1);
    let new = line.quantity.trunc().try_into().unwrap_or(0i64) + 4;
    let request = change(&agreement, &line, new, effective, ChangePolicy::Dated);
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed);
    assert_ne!(result.line.id, line.id, "a new addition");
    assert_eq!(result.line.quantity, Decimal::from(new));
    assert_eq!(result.line.effective_date, Some(effective));
    assert_eq!(result.line.unit_price, line.unit_price, "same price");
    assert_eq!(result.line.product_identifier, line.product_identifier);
    assert!(result.line.billable);
    assert_eq!(
        result.record_ids,
        vec![line.id.to_string(), result.line.id.to_string()]
    );

    let log = writes(&emulator).await;
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(log[0]["method"], "PATCH");
    assert_eq!(
        log[0]["path"],
        format!(
            "{}/finance/agreements/{agreement}/additions/{}",
            cw::BASE_PATH,
            line.id
        )
    );
    assert_eq!(
        log[0]["body"],
        json!([{"op": "replace", "path": "cancelledDate", "value": "2026-11-30T00:00:00Z"}])
    );
    assert_eq!(log[1]["method"], "POST");
    assert_eq!(log[1]["body"]["quantity"], json!(new));
    assert_eq!(log[1]["body"]["effectiveDate"], "2026-12-01T00:00:00Z");
    assert!(
        log.iter()
            .all(|w| w["status"].as_u64().is_some_and(|s| s < 300))
    );

    let old = session
        .read_line(&agreement, line.id.as_str())
        .await
        .expect("old addition");
    assert_eq!(
        old.cancelled_date,
        Some(date(2026, 11, 30)),
        "billed through November"
    );
    assert_eq!(old.quantity, line.quantity);

    // The invoices: November bills the old quantity, December the new one.
    for (day, quantity) in [
        ("2026-11-15", line.quantity),
        ("2026-12-15", Decimal::from(new)),
    ] {
        let invoice = emulator
            .inspect(&format!(
                "/_emulator/connectwise/agreements/{agreement}/invoice?date={day}"
            ))
            .await;
        let billed: Vec<Decimal> = invoice["lines"]
            .as_array()
            .expect("invoice lines")
            .iter()
            .filter(|l| l["product"]["identifier"] == line.product_identifier.as_str())
            .map(|l| l["quantity"].to_string().parse().expect("quantity"))
            .collect();
        assert_eq!(billed, vec![quantity], "{day}: {invoice}");
    }

    // The same change again (a retry): nothing is written.
    let again = session
        .apply_quantity_change(&request)
        .await
        .expect("apply again");
    assert!(!again.changed, "{:?}", again.notes);
    assert_eq!(again.line.id, result.line.id);
    assert_eq!(again.record_ids, vec![result.line.id.to_string()]);
    assert_eq!(writes(&emulator).await.len(), 2, "applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_between_the_two_writes_only_adds() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (agreement, line) = target(&connection).await;
    // The first attempt cancelled the old addition and crashed before the
    // POST.
    let response = reqwest::Client::new()
        .patch(format!(
            "{}{}/finance/agreements/{agreement}/additions/{}",
            emulator.base(),
            cw::BASE_PATH,
            line.id
        ))
        .basic_auth(
            format!("{}+{}", cw::COMPANY_ID, cw::PUBLIC_KEY),
            Some(cw::PRIVATE_KEY),
        )
        .header("clientId", cw::CLIENT_ID)
        .header("content-type", "application/json")
        .body(
            json!([{"op": "replace", "path": "cancelledDate", "value": "2026-11-30T00:00:00Z"}])
                .to_string(),
        )
        .send()
        .await
        .expect("patch");
    assert!(response.status().is_success());
    let request = change(
        &agreement,
        &line,
        99,
        date(2026, 12, 1),
        ChangePolicy::Dated,
    );
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed);
    assert_eq!(result.line.quantity, Decimal::from(99));
    let log = writes(&emulator).await;
    let methods: Vec<&str> = log.iter().filter_map(|w| w["method"].as_str()).collect();
    assert_eq!(
        methods,
        ["PATCH", "POST"],
        "the retry adds without cancelling again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_write_patches_the_quantity_in_place_once() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (agreement, line) = target(&connection).await;
    let new = line.quantity.trunc().try_into().unwrap_or(0i64) + 2;
    let request = change(
        &agreement,
        &line,
        new,
        date(2026, 12, 1),
        ChangePolicy::Immediate,
    );
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed);
    assert_eq!(result.line.id, line.id, "same addition");
    assert_eq!(result.line.quantity, Decimal::from(new));
    let log = writes(&emulator).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["method"], "PATCH");
    assert_eq!(
        log[0]["body"],
        json!([{"op": "replace", "path": "quantity", "value": new}])
    );
    let again = session
        .apply_quantity_change(&request)
        .await
        .expect("again");
    assert!(!again.changed);
    assert_eq!(writes(&emulator).await.len(), 1, "applied exactly once");
    let read = session
        .read_line(&agreement, line.id.as_str())
        .await
        .expect("read-line");
    assert_eq!(read.quantity, Decimal::from(new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_the_exact_calls_and_writes_nothing() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (agreement, line) = target(&connection).await;
    let request = change(
        &agreement,
        &line,
        77,
        date(2026, 12, 1),
        ChangePolicy::Dated,
    );
    let mut session = connection.session().expect("session");
    let plan = session.plan_quantity_change(&request).await.expect("plan");
    let methods: Vec<&str> = plan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "PATCH", "POST", "GET"], "{plan:#?}");
    let addition = format!(
        "{}{}/finance/agreements/{agreement}/additions/{}",
        emulator.base(),
        cw::BASE_PATH,
        line.id
    );
    assert_eq!(plan[0].url, addition);
    assert_eq!(plan[2].url, addition);
    assert_eq!(
        plan[2].body.as_deref(),
        Some(r#"[{"op":"replace","path":"cancelledDate","value":"2026-11-30T00:00:00Z"}]"#)
    );
    let post: Value =
        serde_json::from_str(plan[3].body.as_deref().expect("POST body")).expect("JSON");
    assert_eq!(post["quantity"], json!(77));
    assert_eq!(post["effectiveDate"], "2026-12-01T00:00:00Z");
    assert!(plan.iter().all(|c| !c.purpose.is_empty()));
    for secret in [cw::PUBLIC_KEY, cw::PRIVATE_KEY] {
        assert!(
            plan.iter()
                .all(|c| !c.url.contains(secret)
                    && !c.body.as_deref().unwrap_or("").contains(secret))
        );
    }
    assert!(
        writes(&emulator).await.is_empty(),
        "planning sends no write"
    );

    // Applying makes exactly the planned writes.
    session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    let log = writes(&emulator).await;
    let sent: Vec<(String, String)> = log
        .iter()
        .map(|w| {
            (
                w["method"].as_str().unwrap_or("").to_owned(),
                w["path"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let planned: Vec<(String, String)> = plan
        .iter()
        .filter(|c| c.method != "GET")
        .map(|c| {
            (
                c.method.clone(),
                c.url
                    .trim_start_matches(emulator.base())
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(sent, planned);
    // Planned again after the write: only reads (nothing left to do).
    let replan = session
        .plan_quantity_change(&request)
        .await
        .expect("plan again");
    assert!(replan.iter().all(|c| c.method == "GET"), "{replan:#?}");
}

/// The first customer's main agreement, a catalogue product it has no
/// addition of (billed or not), and the ids of every addition synced.
async fn add_target(connection: &Connection) -> (String, &'static Product, Vec<String>) {
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    let main = synced
        .contracts
        .iter()
        .find(|c| c.name == "Managed Services")
        .expect("main agreement");
    let product = conformance::product_missing_from(&synced, main.id.as_str())
        .expect("a product the agreement lacks");
    let ids = synced.lines.iter().map(|l| l.id.to_string()).collect();
    (main.id.to_string(), product, ids)
}

fn add(agreement: &str, product: &Product, quantity: i64, effective: NaiveDate) -> QuantityChange {
    conformance::add_line_change(agreement, product, Decimal::from(quantity), effective)
}

/// The quantities of `identifier` the agreement's invoice for the period
/// containing `day` bills, and their unit prices.
async fn invoiced(
    emulator: &Emulator,
    agreement: &str,
    identifier: &str,
    day: &str,
) -> Vec<(Decimal, Decimal)> {
    let invoice = emulator
        .inspect(&format!(
            "/_emulator/connectwise/agreements/{agreement}/invoice?date={day}"
        ))
        .await;
    invoice["lines"]
        .as_array()
        .expect("invoice lines")
        .iter()
        .filter(|l| l["product"]["identifier"] == identifier)
        .map(|l| {
            (
                l["quantity"].to_string().parse().expect("quantity"),
                l["unitPrice"].to_string().parse().expect("unit price"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_product_adds_one_addition_at_the_catalogue_price_once() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (agreement, product, synced_ids) = add_target(&connection).await;
    let effective = date(2026, 12, 1);
    let request = add(&agreement, product, 5, effective);
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed, "{:?}", result.notes);
    assert!(
        !synced_ids.contains(&result.line.id.to_string()),
        "a new addition"
    );
    assert_eq!(result.line.product_identifier.as_str(), product.identifier);
    assert_eq!(result.line.quantity, Decimal::from(5));
    assert_eq!(result.line.effective_date, Some(effective));
    assert_eq!(result.line.cancelled_date, None);
    assert_eq!(result.line.unit_price, price(product), "catalogue price");
    assert_eq!(
        result.line.unit_cost,
        Decimal::new(product.unit_cost_cents, 2),
        "catalogue cost"
    );
    assert!(result.line.billable);
    assert_eq!(result.record_ids, vec![result.line.id.to_string()]);

    let log = writes(&emulator).await;
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(
        log[0]["path"],
        format!("{}/finance/agreements/{agreement}/additions", cw::BASE_PATH)
    );
    assert_eq!(log[0]["status"], 201);
    let body = &log[0]["body"];
    assert_eq!(
        body["product"]["id"],
        json!(cw::data::product_id(product)),
        "{body}"
    );
    assert_eq!(body["quantity"], json!(5));
    assert_eq!(body["billCustomer"], "Billable");
    assert_eq!(body["effectiveDate"], "2026-12-01T00:00:00Z");
    assert_eq!(
        body["unitPrice"].to_string().parse::<Decimal>().ok(),
        Some(price(product))
    );

    // The agreement bills the product from December, once, at the
    // catalogue price; November does not have it.
    assert_eq!(
        invoiced(&emulator, &agreement, product.identifier, "2026-12-15").await,
        vec![(Decimal::from(5), price(product))]
    );
    assert!(
        invoiced(&emulator, &agreement, product.identifier, "2026-11-15")
            .await
            .is_empty()
    );
    let read = session
        .read_line(&agreement, result.line.id.as_str())
        .await
        .expect("read-line");
    assert_eq!(read.quantity, Decimal::from(5));

    // The same add again (a retry): nothing is written.
    let again = session
        .apply_quantity_change(&request)
        .await
        .expect("apply again");
    assert!(!again.changed, "{:?}", again.notes);
    assert_eq!(again.line.id, result.line.id);
    assert_eq!(again.record_ids, vec![result.line.id.to_string()]);
    assert_eq!(writes(&emulator).await.len(), 1, "added exactly once");
    assert_eq!(
        invoiced(&emulator, &agreement, product.identifier, "2026-12-15").await,
        vec![(Decimal::from(5), price(product))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_of_an_add_lists_the_exact_calls_and_writes_nothing() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (agreement, product, _) = add_target(&connection).await;
    let request = add(&agreement, product, 3, date(2026, 12, 1));
    let mut session = connection.session().expect("session");
    let plan = session.plan_quantity_change(&request).await.expect("plan");
    let methods: Vec<&str> = plan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "POST", "GET"], "{plan:#?}");
    let additions = format!(
        "{}{}/finance/agreements/{agreement}/additions",
        emulator.base(),
        cw::BASE_PATH
    );
    let identifier = format!("%22{}%22", product.identifier);
    assert!(
        plan[0].url.starts_with(&format!("{additions}?")) && plan[0].url.contains(&identifier),
        "{}",
        plan[0].url
    );
    assert!(
        plan[1].url.starts_with(&format!(
            "{}{}/procurement/catalog?",
            emulator.base(),
            cw::BASE_PATH
        )) && plan[1].url.contains(&identifier),
        "{}",
        plan[1].url
    );
    assert_eq!(plan[2].url, additions);
    let body: Value =
        serde_json::from_str(plan[2].body.as_deref().expect("POST body")).expect("JSON");
    assert_eq!(body["product"]["id"], json!(cw::data::product_id(product)));
    assert_eq!(body["quantity"], json!(3));
    assert_eq!(body["effectiveDate"], "2026-12-01T00:00:00Z");
    assert_eq!(
        body["unitPrice"].to_string().parse::<Decimal>().ok(),
        Some(price(product))
    );
    // The read-back names the new addition by the id the POST answers (a
    // date ConnectWise normalised would hide it from a list by date); the
    // plan cannot know that id yet.
    assert!(
        plan[3].url.starts_with(&format!("{additions}/"))
            && plan[3].purpose.contains("read back the new addition"),
        "{:?}",
        plan[3]
    );
    assert!(plan.iter().all(|c| !c.purpose.is_empty()));
    assert!(
        writes(&emulator).await.is_empty(),
        "planning sends no write"
    );

    // Applying makes exactly the planned write; planned again, only the
    // lookup is left.
    session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    let log = writes(&emulator).await;
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
    assert_eq!(methods, ["GET"], "{replan:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_product_the_agreement_already_bills_is_refused_for_good() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (agreement, line) = target(&connection).await;
    let product = PRODUCTS
        .iter()
        .find(|p| p.identifier == line.product_identifier.as_str())
        .expect("a catalogue product");
    let quantity = line.quantity.trunc().try_into().unwrap_or(0i64) + 1;
    let mut session = connection.session().expect("session");
    let error = session
        .apply_quantity_change(&add(&agreement, product, quantity, date(2026, 12, 1)))
        .await
        .expect_err("already billed");
    assert!(!error.is_transient(), "{error}");
    match error.kind {
        CallErrorKind::Connector(ConnectorFailure::Upstream {
            status,
            body,
            retryable,
        }) => {
            assert_eq!((status, retryable), (409, false));
            assert!(
                body.starts_with("refused by the connector before writing")
                    && body.contains(&format!("addition {}", line.id)),
                "{body}"
            );
        }
        other => panic!("expected upstream, got {other:?}"),
    }
    assert!(writes(&emulator).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectwises_own_per_minute_limit_is_rate_limited_with_the_wait() {
    // The injected 429 of every PSA is in `connector_faults`; this is
    // ConnectWise's own per-minute limit, which answers the same way.
    let mut settings = pinned();
    settings.connectwise.requests_per_minute = 2;
    let limited = self::emulator(20, settings).await;
    let connection = connect(&limited, &[("page_size", "5")], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let mut cursor = None;
    let error = loop {
        match session.list_companies(cursor.as_deref()).await {
            Ok(page) => cursor = Some(page.next_cursor.expect("more pages than the limit")),
            Err(error) => break error,
        }
    };
    match error.kind {
        CallErrorKind::Connector(ConnectorFailure::RateLimited { retry_after }) => {
            assert!(
                retry_after > std::time::Duration::ZERO
                    && retry_after <= std::time::Duration::from_secs(60)
            );
        }
        other => panic!("expected rate-limited, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paging_loop_is_reported_not_followed() {
    let emulator = emulator(40, pinned()).await;
    let connection = connect(&emulator, &[("page_size", "10")], LimitSettings::default());
    emulator.faults(FaultPlan {
        paging_loop: true,
        ..FaultPlan::default()
    });
    let mut session = connection.session().expect("session");
    let error = session.list_companies(None).await.expect_err("loop");
    match error.kind {
        CallErrorKind::Connector(ConnectorFailure::Internal(message)) => {
            assert!(message.contains("does not advance"), "{message}");
        }
        other => panic!("expected internal, got {other:?}"),
    }
    assert_eq!(
        emulator.count(&format!("GET {}/company/companies", cw::BASE_PATH)),
        1
    );

    // Additions too: an agreement's pages must move on.
    emulator.faults(FaultPlan::default());
    let mut small = connect(&emulator, &[("page_size", "2")], LimitSettings::default())
        .session()
        .expect("session");
    let contracts = full_sync(&mut small, &all_contracts())
        .await
        .expect("sync")
        .contracts;
    emulator.faults(FaultPlan {
        paging_loop: true,
        path_contains: Some("/additions".into()),
        ..FaultPlan::default()
    });
    let ids: Vec<String> = contracts.iter().take(5).map(|c| c.id.to_string()).collect();
    let error = small.list_services(&ids, None).await.expect_err("loop");
    assert!(
        matches!(error.kind, CallErrorKind::Connector(ConnectorFailure::Internal(ref m)) if m.contains("does not advance")),
        "{error}"
    );
}
