//! The HaloPSA connector (`plugins/halopsa`) against the HaloPSA emulator:
//! the client-credentials token, full sync checked against the seeded data
//! (client contracts merged with their recurring invoices), statuses,
//! `updatelines` write-back with idempotency, adding a catalogue item as a
//! recurring invoice line, dry runs (also on a fresh session, which
//! fetches its token while planning), Halo's real field names and sentinel
//! dates, lines read when lists omit them, one token per token lifetime and
//! a revoked token refreshed once. Faults: `connector_faults`.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde_json::Value;
use trueup_conformance::psa::{
    self as conformance, Against, Connection, full_sync, truth_mismatches,
};
use trueup_core::model::{BillingCycle, BillingTiming, ContractStatus, ServiceLine};
use trueup_emulators::catalog::Product;
use trueup_emulators::common::{CustomerPlan, Extra, plans};
use trueup_emulators::{Kind, Settings, halopsa as halo};
use trueup_plugin_host::limits::LimitSettings;
use trueup_plugin_host::{ChangePolicy, ContractFilter, QuantityChange};

use crate::connector_harness::{Emulator, all_contracts, as_of, connect_psa};

const ID: &str = "trueup.halopsa";
const SEED: u64 = 7;

async fn emulator(customers: usize, settings: Settings) -> Emulator {
    Emulator::start(Kind::HaloPsa, SEED, customers, settings).await
}

fn pinned() -> Settings {
    Against::HaloPsa.emulator_settings(as_of())
}

fn connect(emulator: &Emulator, config: &[(&str, &str)], limits: LimitSettings) -> Connection {
    connect_psa(ID, Against::HaloPsa, emulator, config, limits)
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
        line_id: Some(line.id.to_string()),
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
async fn plan_on_a_fresh_session_fetches_a_token_and_writes_nothing() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, line) = target(&connection).await;
    let request = change(&contract, &line, Decimal::from(41), ChangePolicy::Dated);
    // A fresh instance holds no token: the dry run fetches one (the host
    // allows the token exchange while planning) and sends no write.
    let mut session = connection.session().expect("session");
    let tokens = emulator.count("POST /auth/token");
    let plan = session.plan_quantity_change(&request).await.expect("plan");
    assert_eq!(
        emulator.count("POST /auth/token"),
        tokens + 1,
        "one token for the dry run"
    );
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
    // The token is kept: planning again asks for none.
    session.plan_quantity_change(&request).await.expect("plan");
    assert_eq!(emulator.count("POST /auth/token"), tokens + 1);
}

/// The first client's main contract, an item it has no line of on any
/// invoice, and every line id synced.
async fn add_target(connection: &Connection) -> (String, &'static Product, Vec<String>) {
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("sync");
    let main = synced
        .contracts
        .iter()
        .find(|c| c.contract_type == "Managed Services" && c.status == ContractStatus::Active)
        .expect("main contract");
    let product = conformance::product_missing_from(&synced, main.id.as_str())
        .expect("an item the contract lacks");
    let ids = synced.lines.iter().map(|l| l.id.to_string()).collect();
    (main.id.to_string(), product, ids)
}

fn add(contract: &str, product: &Product, quantity: i64) -> QuantityChange {
    conformance::add_line_change(
        contract,
        product,
        Decimal::from(quantity),
        NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
    )
}

/// The lines of `identifier` on the contract's recurring invoices, read
/// straight from the emulator.
async fn lines_of(emulator: &Emulator, contract: &str, identifier: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!(
            "{}/auth/token?tenant={}",
            emulator.base(),
            halo::TENANT
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", halo::CLIENT_ID),
            ("client_secret", halo::CLIENT_SECRET),
            ("scope", "all"),
        ])
        .send()
        .await
        .expect("token")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("token JSON"))
        .expect("token body");
    let invoices: Value = http
        .get(format!(
            "{}/api/RecurringInvoice?contract_id={contract}&includelines=true",
            emulator.base()
        ))
        .bearer_auth(token["access_token"].as_str().expect("access_token"))
        .send()
        .await
        .expect("invoices")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("invoices JSON"))
        .expect("invoices body");
    invoices["invoices"]
        .as_array()
        .expect("invoices")
        .iter()
        .flat_map(|i| i["lines"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["item_code"] == identifier)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_item_adds_one_line_at_the_catalogue_price_once() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, product, synced_ids) = add_target(&connection).await;
    let price = Decimal::new(product.unit_price_cents, 2);
    assert!(
        lines_of(&emulator, &contract, product.identifier)
            .await
            .is_empty()
    );
    let request = add(&contract, product, 3);
    let mut session = connection.session().expect("session");
    let result = session
        .apply_quantity_change(&request)
        .await
        .expect("apply");
    assert!(result.changed, "{:?}", result.notes);
    assert!(!synced_ids.contains(&result.line.id.to_string()));
    assert_eq!(result.line.product_identifier.as_str(), product.identifier);
    assert_eq!(result.line.quantity, Decimal::from(3));
    assert_eq!(
        result.line.effective_date,
        NaiveDate::from_ymd_opt(2026, 12, 1)
    );
    assert_eq!(result.line.unit_price, price, "catalogue price");
    assert!(result.line.billable);
    assert_eq!(result.record_ids, vec![result.line.id.to_string()]);

    let log = writes(&emulator).await;
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["path"], "/api/RecurringInvoice/Lines");
    assert_eq!(log[0]["status"], 201);
    let body = &log[0]["body"][0];
    assert!(body["ihid"].as_i64().is_some_and(|i| i > 0), "{body}");
    assert_eq!(body["qty_order"], 3);
    assert_eq!(body["startdate"], "2026-12-01T00:00:00", "{body}");

    // Exactly one line of the item, as asked, in the emulator.
    let lines = lines_of(&emulator, &contract, product.identifier).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["id"].to_string(), result.line.id.as_str());
    assert_eq!(lines[0]["ihid"], body["ihid"]);
    assert_eq!(
        lines[0]["qty_order"].to_string().parse::<Decimal>().ok(),
        Some(Decimal::from(3))
    );
    assert_eq!(
        lines[0]["unit_price"].to_string().parse::<Decimal>().ok(),
        Some(price)
    );
    assert!(
        lines[0]["startdate"]
            .as_str()
            .is_some_and(|d| d.starts_with("2026-12-01")),
        "{}",
        lines[0]
    );
    // Open-ended: Halo's zero date.
    assert_eq!(lines[0]["enddate"], halo::data::SENTINEL_DATE);
    let read = session
        .read_line(&contract, result.line.id.as_str())
        .await
        .expect("read-line");
    assert_eq!(read.quantity, Decimal::from(3));

    // The same add again: nothing is written.
    let again = session
        .apply_quantity_change(&request)
        .await
        .expect("again");
    assert!(!again.changed, "{:?}", again.notes);
    assert_eq!(again.line.id, result.line.id);
    assert_eq!(writes(&emulator).await.len(), 1, "added exactly once");
    assert_eq!(
        lines_of(&emulator, &contract, product.identifier)
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_of_an_add_on_a_fresh_session_lists_the_exact_calls_and_writes_nothing() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let (contract, product, _) = add_target(&connection).await;
    let request = add(&contract, product, 2);
    let mut session = connection.session().expect("session");
    let tokens = emulator.count("POST /auth/token");
    let plan = session.plan_quantity_change(&request).await.expect("plan");
    assert_eq!(emulator.count("POST /auth/token"), tokens + 1);
    let methods: Vec<&str> = plan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "POST", "GET"], "{plan:#?}");
    let api = format!("{}/api", emulator.base());
    assert!(
        plan[0]
            .url
            .starts_with(&format!("{api}/RecurringInvoice?contract_id={contract}&")),
        "{}",
        plan[0].url
    );
    assert!(
        plan[1]
            .url
            .starts_with(&format!("{api}/Item?search={}&", product.identifier)),
        "{}",
        plan[1].url
    );
    assert_eq!(plan[2].url, format!("{api}/RecurringInvoice/Lines"));
    let body: Value = serde_json::from_str(plan[2].body.as_deref().expect("body")).expect("JSON");
    let ihid = body[0]["ihid"].as_i64().expect("ihid");
    assert_eq!(body[0]["qty_order"], 2);
    // Halo's names for a new line: `_itemid` and `startdate`.
    assert!(
        body[0]["_itemid"].is_i64() && body[0]["startdate"].is_string(),
        "{body}"
    );
    assert!(body[0].get("item_id").is_none() && body[0].get("start_date").is_none());
    assert_eq!(
        body[0]["unit_price"].to_string().parse::<Decimal>().ok(),
        Some(Decimal::new(product.unit_price_cents, 2))
    );
    assert_eq!(plan[3].url, format!("{api}/RecurringInvoice/{ihid}"));
    assert!(writes(&emulator).await.is_empty());

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
    assert_eq!(log[0]["body"], body);
    let replan = session
        .plan_quantity_change(&request)
        .await
        .expect("plan again");
    let methods: Vec<&str> = replan.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET"], "{replan:#?}");
}

/// Lines served only by the single GET (a Halo version that ignores
/// `includelines`): the connector reads each invoice singly and finds every
/// line, never an empty contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_read_when_the_list_omits_them() {
    let mut settings = pinned();
    settings.halopsa.lines_in_lists = false;
    let emulator = emulator(40, settings).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("full sync");
    let plans = plans(&emulator.world, as_of());
    let main_lines: usize = plans
        .iter()
        .map(|p| {
            p.lines.len() + usize::from(p.replaced.is_some()) + usize::from(p.no_charge.is_some())
        })
        .sum();
    assert!(
        synced.lines.len() >= main_lines,
        "{} lines, {main_lines} on main contracts",
        synced.lines.len()
    );
    assert!(
        emulator.count("GET /api/RecurringInvoice/2000") >= 1,
        "read singly"
    );
    for plan in plans.iter().step_by(7) {
        let company = synced
            .companies
            .iter()
            .find(|c| c.name == emulator.world.customers[plan.customer].name)
            .expect("company");
        let main = synced
            .contracts
            .iter()
            .find(|c| {
                c.company_id == company.id
                    && c.contract_type == "Managed Services"
                    && c.status == ContractStatus::Active
            })
            .expect("main contract");
        let mut got: Vec<Row> = synced
            .lines
            .iter()
            .filter(|l| l.contract_id == main.id)
            .map(row)
            .collect();
        got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(got, expected_main(plan));
    }
}

/// Open-ended contracts, invoices and lines carry Halo's zero date
/// (`1900-01-01T00:00:00`): read as no date, never as an end before the
/// start; the product is the item (its code and `_itemid`), not the
/// editable description.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_dates_are_no_dates_and_products_are_catalogue_items() {
    let emulator = emulator(30, pinned()).await;
    let connection = connect(&emulator, &[], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("full sync");
    let open: Vec<_> = synced
        .contracts
        .iter()
        .filter(|c| c.status == ContractStatus::Active)
        .collect();
    assert!(!open.is_empty());
    assert!(
        open.iter().all(|c| c.end_date.is_none()),
        "open-ended contracts have no end"
    );
    assert!(
        open.iter()
            .all(|c| c.start_date.is_some_and(|s| s.year() > 1900))
    );
    assert!(synced.lines.iter().any(|l| l.cancelled_date.is_none()));
    assert!(
        synced
            .lines
            .iter()
            .all(|l| l.cancelled_date.is_none_or(|d| d.year() > 1900))
    );
    for line in &synced.lines {
        let product = trueup_emulators::catalog::PRODUCTS
            .iter()
            .find(|p| p.identifier == line.product_identifier.as_str())
            .expect("every line is a catalogue item by its code");
        assert_eq!(
            line.product_id,
            halo::data::item_id(product).to_string(),
            "the product id is the item id"
        );
    }
}

async fn expire_tokens(emulator: &Emulator) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_emulator/halopsa/expire-tokens",
            emulator.base()
        ))
        .send()
        .await
        .expect("expire tokens");
    assert!(response.status().is_success());
}

/// A token living 30 s is reused for its life (renewed 3 s early, not
/// 60 s early, which made every short token look expired and cost a token
/// request per read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sync_asks_for_at_most_one_token_per_token_lifetime() {
    let lifetime = std::time::Duration::from_secs(30);
    let mut settings = pinned();
    settings.halopsa.token_lifetime = lifetime;
    let emulator = emulator(200, settings).await;
    let connection = connect(&emulator, &[("page_size", "20")], LimitSettings::default());
    let mut session = connection.session().expect("session");
    let started = std::time::Instant::now();
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("full sync");
    let elapsed = started.elapsed();
    let tokens = emulator.count("POST /auth/token");
    let total = emulator.running.faults.stats().total;
    // Renewed at 27 s of each 30 s life: one token per 27 s of sync.
    let allowed = elapsed.as_secs() / 27 + 1;
    assert!(
        tokens <= allowed,
        "{tokens} token requests in a {elapsed:?} sync of {} companies ({total} requests); at most {allowed}",
        synced.companies.len()
    );
    assert!(total > 20 * tokens, "{tokens} tokens for {total} requests");
}

/// A token revoked mid-sync (Halo answers 401): one new token, the refused
/// read sent again, the sync finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expired_mid_sync_is_refreshed_once_and_the_sync_finishes() {
    let emulator = emulator(40, pinned()).await;
    let connection = connect(&emulator, &[("page_size", "10")], LimitSettings::default());
    let mut session = connection.session().expect("session");
    session.list_companies(None).await.expect("first page");
    assert_eq!(emulator.count("POST /auth/token"), 1);
    expire_tokens(&emulator).await;
    let synced = full_sync(&mut session, &all_contracts())
        .await
        .expect("the sync finishes");
    assert_eq!(emulator.count("POST /auth/token"), 2, "one refresh");
    assert!(!synced.lines.is_empty());
}

/// Requests of one sync of the demo world (`trueup demo`: 120 customers,
/// seed 42), tokens among them, at Halo's hour-long tokens and at 30 s
/// tokens; printed for the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_sync_of_the_demo_world() {
    for lifetime in [3600, 30] {
        let mut settings = pinned();
        settings.halopsa.token_lifetime = std::time::Duration::from_secs(lifetime);
        let emulator = Emulator::start(trueup_emulators::Kind::HaloPsa, 42, 120, settings).await;
        let connection = connect(&emulator, &[], LimitSettings::default());
        let mut session = connection.session().expect("session");
        let synced = full_sync(&mut session, &all_contracts())
            .await
            .expect("full sync");
        let stats = emulator.running.faults.stats();
        let tokens = emulator.count("POST /auth/token");
        println!(
            "halopsa demo world, {lifetime} s tokens: {} companies, {} lines, {} requests, {tokens} token requests",
            synced.companies.len(),
            synced.lines.len(),
            stats.total
        );
        assert_eq!(tokens, 1, "{stats:?}");
    }
}
