//! The Autotask emulator over real HTTP on loopback.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use super::{
    INTEGRATION_CODE, POSTED_PERIOD_ERROR, SECRET, THREAD_ERROR, THRESHOLD_ERROR, USERNAME,
};
use crate::common::testing::{client, date, start_psa};
use crate::faults::FaultPlan;
use crate::{Kind, Running, Settings};

const TODAY: &str = "2025-02-10";

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.autotask.today = Some(date(TODAY));
    settings.autotask.usage_latency = false;
    settings
}

async fn start(customers: usize) -> Running {
    start_psa(Kind::Autotask, customers, settings()).await
}

fn authed(request: RequestBuilder) -> RequestBuilder {
    request
        .header("ApiIntegrationCode", INTEGRATION_CODE)
        .header("UserName", USERNAME)
        .header("Secret", SECRET)
}

fn api(emulator: &Running, path: &str) -> String {
    format!("{}/atservicesrest/v1.0{path}", emulator.base_url)
}

async fn json_of(response: Response) -> Value {
    let text = response.text().await.expect("body is readable");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn query(http: &Client, emulator: &Running, entity: &str, search: Value) -> Value {
    let response = authed(http.post(api(emulator, &format!("/{entity}/query"))))
        .json(&search)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK, "{entity} {search}");
    json_of(response).await
}

/// Every record of `entity` matching `filter`, following `nextPageUrl`.
async fn query_all(http: &Client, emulator: &Running, entity: &str, filter: Value) -> Vec<Value> {
    let mut page = query(http, emulator, entity, json!({ "filter": filter })).await;
    let mut items = Vec::new();
    for _ in 0..200 {
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        let Some(next) = page["pageDetails"]["nextPageUrl"].as_str() else {
            return items;
        };
        let response = authed(http.get(next)).send().await.expect("answered");
        assert_eq!(response.status(), StatusCode::OK, "{next}");
        page = json_of(response).await;
    }
    panic!("paging does not end");
}

fn ids(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

fn error_text(body: &Value) -> String {
    body["errors"][0]
        .as_str()
        .expect("an errors array")
        .to_owned()
}

#[tokio::test]
async fn zone_lookup_and_header_authentication() {
    let emulator = start(20).await;
    let http = client();
    let zone = http
        .get(format!(
            "{}/ATServicesRest/V1.0/ZoneInformation?user={USERNAME}",
            emulator.base_url
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(zone.status(), StatusCode::OK);
    let zone = json_of(zone).await;
    assert_eq!(
        zone["url"],
        format!("{}/ATServicesRest/", emulator.base_url)
    );
    let unknown = http
        .get(api(&emulator, "/zoneInformation?user=nobody@example.com"))
        .send()
        .await
        .expect("answered");
    assert_eq!(unknown.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let url = format!("{}v1.0/Companies/1000", zone["url"].as_str().expect("url"));
    let cases = [
        (None, None, None, StatusCode::UNAUTHORIZED),
        (
            Some(INTEGRATION_CODE),
            Some(USERNAME),
            Some("wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(INTEGRATION_CODE),
            Some("someone@else.com"),
            Some(SECRET),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            Some("WRONGCODE"),
            Some(USERNAME),
            Some(SECRET),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            Some(INTEGRATION_CODE),
            Some(USERNAME),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(INTEGRATION_CODE),
            Some(USERNAME),
            Some(SECRET),
            StatusCode::OK,
        ),
    ];
    for (code, user, secret, expected) in cases {
        let mut request = http.get(&url);
        for (name, value) in [
            ("ApiIntegrationCode", code),
            ("UserName", user),
            ("Secret", secret),
        ] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), expected, "{code:?} {user:?} {secret:?}");
        let body = json_of(response).await;
        if expected == StatusCode::OK {
            assert_eq!(body["item"]["id"], 1000);
            assert!(body["item"]["companyName"].is_string());
        } else {
            assert!(!error_text(&body).is_empty());
        }
    }
    let missing = authed(http.get(api(&emulator, "/Contracts/1")))
        .send()
        .await
        .expect("answered");
    assert_eq!(json_of(missing).await, json!({"item": null}));
    let nowhere = authed(http.get(api(&emulator, "/Tickets/query?search={}")))
        .send()
        .await
        .expect("answered");
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn filters_select_what_they_say() {
    let emulator = start(60).await;
    let http = client();
    let all = query_all(
        &http,
        &emulator,
        "Contracts",
        json!([{"op": "gte", "field": "id", "value": 0}]),
    )
    .await;
    let expect = |predicate: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        all.iter()
            .filter(|c| predicate(c))
            .map(|c| c["id"].as_i64().expect("id"))
            .collect()
    };
    let first_company = all[0]["companyID"].clone();
    let table: Vec<(Value, Vec<i64>)> = vec![
        (
            json!([{"op": "eq", "field": "companyID", "value": first_company}]),
            expect(&|c| c["companyID"] == first_company),
        ),
        (
            json!([{"op": "noteq", "field": "status", "value": 1}]),
            expect(&|c| c["status"] != 1),
        ),
        (
            json!([{"op": "eq", "field": "ContractType", "value": "7"}, {"op": "eq", "field": "status", "value": 1}]),
            expect(&|c| c["contractType"] == 7 && c["status"] == 1),
        ),
        (
            json!([{"op": "in", "field": "contractType", "value": [1, 3, 4]}]),
            expect(&|c| c["contractType"] != 7),
        ),
        (
            json!([{"op": "notIn", "field": "contractType", "value": [7]}]),
            expect(&|c| c["contractType"] != 7),
        ),
        (
            json!([{"op": "lt", "field": "endDate", "value": "2025-02-10T00:00:00Z"}]),
            expect(&|c| c["endDate"].as_str() < Some("2025-02-10")),
        ),
        (
            json!([{"op": "gte", "field": "endDate", "value": "2025-02-10"}]),
            expect(&|c| c["endDate"].as_str() >= Some("2025-02-10")),
        ),
        (
            json!([{"op": "beginsWith", "field": "contractName", "value": "managed"}]),
            expect(&|c| {
                c["contractName"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Managed"))
            }),
        ),
        (
            json!([{"op": "endsWith", "field": "contractName", "value": "(on hold)"}]),
            expect(&|c| {
                c["contractName"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("(on hold)"))
            }),
        ),
        (
            json!([{"op": "contains", "field": "contractName", "value": "LICENSING"}]),
            expect(&|c| {
                c["contractName"]
                    .as_str()
                    .is_some_and(|n| n.contains("Licensing"))
            }),
        ),
        (
            json!([{"op": "exist", "field": "setupFee"}]),
            expect(&|c| !c["setupFee"].is_null()),
        ),
        (
            json!([{"op": "notExist", "field": "setupFee"}, {"op": "lte", "field": "id", "value": 20005}]),
            expect(&|c| c["setupFee"].is_null() && c["id"].as_i64() <= Some(20005)),
        ),
        (
            json!([{"op": "or", "items": [
            {"op": "eq", "field": "contractPeriodType", "value": 4},
            {"op": "and", "items": [{"op": "eq", "field": "status", "value": 0},
                                    {"op": "gt", "field": "endDate", "value": "2025-02-10"}]}]}]),
            expect(&|c| {
                c["contractPeriodType"] == 4
                    || (c["status"] == 0 && c["endDate"].as_str() > Some("2025-02-10"))
            }),
        ),
    ];
    for (filter, expected) in table {
        assert!(
            !expected.is_empty(),
            "{filter} selects something in this world"
        );
        let got = query_all(&http, &emulator, "Contracts", filter.clone()).await;
        assert_eq!(ids(&got), expected, "{filter}");
        let count = authed(http.post(api(&emulator, "/Contracts/query/count")))
            .json(&json!({ "filter": filter }))
            .send()
            .await
            .expect("answered");
        assert_eq!(
            json_of(count).await["queryCount"],
            expected.len(),
            "{filter}"
        );
    }

    // GET with ?search= gives the same answer.
    let search = json!({"filter": [{"op": "eq", "field": "status", "value": 0}], "IncludeFields": ["id", "contractName"]});
    let response = authed(http.get(api(&emulator, "/Contracts/query")))
        .query(&[("search", search.to_string())])
        .send()
        .await
        .expect("answered");
    let page = json_of(response).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(ids(items), expect(&|c| c["status"] == 0));
    assert_eq!(
        items[0].as_object().expect("object").len(),
        2,
        "IncludeFields trims"
    );

    for (search, needle) in [
        (json!({"filter": []}), "at least one filter"),
        (
            json!({"filter": [{"op": "like", "field": "id", "value": 1}]}),
            "Invalid filter operator 'like'",
        ),
        (
            json!({"filter": [{"op": "eq", "field": "quantity", "value": 1}]}),
            "Unable to find field 'quantity'",
        ),
        (
            json!({"filter": [{"op": "eq", "field": "id", "value": "abc"}]}),
            "not valid for field 'id'",
        ),
        (
            json!({"filter": [{"op": "gte", "field": "id", "value": 0}], "MaxRecords": 501}),
            "between 1 and 500",
        ),
        (
            json!({"filter": [{"op": "contains", "field": "status", "value": "1"}]}),
            "needs a text field",
        ),
    ] {
        let response = authed(http.post(api(&emulator, "/Contracts/query")))
            .json(&search)
            .send()
            .await
            .expect("answered");
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{search}"
        );
        let text = error_text(&json_of(response).await);
        assert!(text.contains(needle), "{search}: {text}");
    }
}

#[tokio::test]
async fn next_page_urls_walk_twenty_thousand_contract_services() {
    let emulator = start(3_600).await;
    let http = client();
    let everything = json!([{"op": "gte", "field": "id", "value": 0}]);
    let count = authed(http.get(api(&emulator, "/ContractServices/query/count")))
        .query(&[("search", json!({ "filter": everything }).to_string())])
        .send()
        .await
        .expect("answered");
    let total = json_of(count).await["queryCount"].as_u64().expect("count") as usize;
    assert!(total >= 20_000, "{total} contract services");

    let first = query(
        &http,
        &emulator,
        "ContractServices",
        json!({ "filter": everything }),
    )
    .await;
    assert_eq!(first["pageDetails"]["count"], 500);
    assert_eq!(first["pageDetails"]["requestCount"], 500);
    assert!(first["pageDetails"]["prevPageUrl"].is_null());
    let next = first["pageDetails"]["nextPageUrl"]
        .as_str()
        .expect("next page")
        .to_owned();
    assert!(
        next.starts_with(&emulator.base_url)
            && next.contains("/ContractServices/query/next?paging="),
        "{next}"
    );
    // The next page can also be POSTed with the original body.
    let second = authed(http.post(&next))
        .json(&json!({ "filter": everything }))
        .send()
        .await
        .expect("answered");
    let second = json_of(second).await;
    let prev = second["pageDetails"]["prevPageUrl"]
        .as_str()
        .expect("a previous page");
    let back = json_of(authed(http.get(prev)).send().await.expect("answered")).await;
    assert_eq!(back["items"], first["items"]);

    let all = query_all(&http, &emulator, "ContractServices", everything.clone()).await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), total);
    assert!(
        all_ids.windows(2).all(|w| w[0] < w[1]),
        "ascending ids, no repeats"
    );
    assert!(
        all.iter().all(|s| s.get("quantity").is_none()),
        "ContractService has no quantity"
    );

    let small = query(
        &http,
        &emulator,
        "ContractServices",
        json!({"filter": everything, "MaxRecords": 7}),
    )
    .await;
    assert_eq!(small["pageDetails"]["count"], 7);
    assert_eq!(small["pageDetails"]["requestCount"], 7);

    let response = authed(http.post(api(&emulator, "/ContractServices/query")))
        .json(&json!({"filter": everything, "IncludeFields": ["unitPrice"]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(error_text(&json_of(response).await).contains("include 'id'"));

    // REST names only: `adjustedPrice` is the SOAP API's, refused like any
    // unknown field (the connector asked for it until issue 14).
    let response = authed(http.post(api(&emulator, "/ContractServices/query")))
        .json(&json!({"filter": everything, "IncludeFields": ["id", "adjustedPrice"]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(error_text(&json_of(response).await).contains("adjustedPrice"));
    let rest = query(
        &http,
        &emulator,
        "ContractServices",
        json!({"filter": everything, "IncludeFields": ["id", "internalCurrencyAdjustedPrice"], "MaxRecords": 1}),
    )
    .await;
    assert!(
        rest["items"][0]["internalCurrencyAdjustedPrice"].is_number(),
        "{rest}"
    );
}

async fn units_of(http: &Client, emulator: &Running, contract_service: i64) -> Vec<Value> {
    query_all(
        http,
        emulator,
        "ContractServiceUnits",
        json!([{"op": "eq", "field": "contractServiceID", "value": contract_service}]),
    )
    .await
}

async fn adjust(http: &Client, emulator: &Running, body: Value) -> Response {
    authed(http.post(api(emulator, "/ContractServiceAdjustments")))
        .json(&body)
        .send()
        .await
        .expect("answered")
}

fn units_starting(units: &[Value], start: &str) -> Vec<i64> {
    units
        .iter()
        .filter(|u| {
            u["startDate"]
                .as_str()
                .is_some_and(|s| s.starts_with(start))
        })
        .map(|u| u["units"].as_i64().expect("units"))
        .collect()
}

#[tokio::test]
async fn adjustments_change_units_prorate_and_respect_posted_periods() {
    let emulator = start(30).await;
    let http = client();
    let contracts = query_all(
        &http,
        &emulator,
        "Contracts",
        json!([
        {"op": "eq", "field": "contractType", "value": 7},
        {"op": "eq", "field": "isDefaultContract", "value": true}]),
    )
    .await;
    let contract = &contracts[0];
    let contract_id = contract["id"].as_i64().expect("id");
    let services = query_all(
        &http,
        &emulator,
        "ContractServices",
        json!([{"op": "eq", "field": "contractID", "value": contract_id}]),
    )
    .await;
    let service = &services[0];
    let cs_id = service["id"].as_i64().expect("id");
    let service_id = service["serviceID"].as_i64().expect("service");
    let unit_price = service["unitPrice"].as_f64().expect("price");
    let before = units_of(&http, &emulator, cs_id).await;
    let posted: Vec<_> = before
        .iter()
        .filter(|u| !u["approveAndPostDate"].is_null())
        .collect();
    assert_eq!(
        posted.len(),
        2,
        "December and January are posted: {before:?}"
    );
    let february = units_starting(&before, "2025-02-01")[0];
    let march = units_starting(&before, "2025-03-01")[0];

    let response = adjust(
        &http,
        &emulator,
        json!({"contractID": contract_id, "serviceID": service_id,
        "unitChange": 2.5, "effectiveDate": "2025-03-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        error_text(&json_of(response).await).contains("Input string '2.5' is not a valid integer")
    );

    let response = adjust(
        &http,
        &emulator,
        json!({"contractID": contract_id, "serviceID": service_id,
        "unitChange": 1, "effectiveDate": "2025-01-15T00:00:00Z"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_text(&json_of(response).await), POSTED_PERIOD_ERROR);
    assert_eq!(
        units_of(&http, &emulator, cs_id).await,
        before,
        "refusals change nothing"
    );

    // Mid-February: February keeps its units plus a proration for 15–28 Feb.
    let response = adjust(
        &http,
        &emulator,
        json!({"id": 0, "ContractID": contract_id, "serviceId": service_id,
        "unitChange": 3, "effectiveDate": "2025-02-15T00:00:00Z"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let item_id = json_of(response).await["itemId"].as_i64().expect("itemId");
    let after = units_of(&http, &emulator, cs_id).await;
    assert_eq!(units_starting(&after, "2025-02-01"), vec![february]);
    assert_eq!(units_starting(&after, "2025-03-01"), vec![march + 3]);
    let proration: Vec<_> = after
        .iter()
        .filter(|u| u["startDate"] == "2025-02-15T00:00:00Z")
        .collect();
    assert_eq!(proration.len(), 1);
    assert_eq!(proration[0]["units"], 3);
    assert_eq!(proration[0]["endDate"], "2025-02-28T00:00:00Z");
    let expected = (unit_price * 14.0 / 28.0 * 100.0).round() / 100.0;
    assert_eq!(proration[0]["price"].as_f64(), Some(expected));

    // On the 1st of March the change lands on March itself, via the child URL.
    let response = authed(http.post(api(
        &emulator,
        &format!("/Contracts/{contract_id}/ServiceAdjustments"),
    )))
    .json(&json!({"contractServiceID": cs_id, "unitChange": -1, "effectiveDate": "2025-03-01"}))
    .send()
    .await
    .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let after = units_of(&http, &emulator, cs_id).await;
    assert_eq!(units_starting(&after, "2025-03-01"), vec![march + 2]);

    // Too large a decrease would leave negative units.
    let response = adjust(
        &http,
        &emulator,
        json!({"contractID": contract_id, "serviceID": service_id,
        "unitChange": -10_000, "effectiveDate": "2025-03-01"}),
    )
    .await;
    assert!(error_text(&json_of(response).await).contains("cannot be negative"));

    // A service not on the contract is added by the adjustment, and periods
    // beyond the seeded window are created.
    let on_contract: BTreeSet<i64> = services
        .iter()
        .map(|s| s["serviceID"].as_i64().expect("id"))
        .collect();
    let all_services = query_all(
        &http,
        &emulator,
        "Services",
        json!([{"op": "exist", "field": "id"}]),
    )
    .await;
    let missing = all_services
        .iter()
        .map(|s| s["id"].as_i64().expect("id"))
        .find(|id| !on_contract.contains(id))
        .expect("a catalogue service the contract lacks");
    let response = adjust(
        &http,
        &emulator,
        json!({"contractID": contract_id, "serviceID": missing,
        "unitChange": 4, "effectiveDate": "2025-05-01", "adjustedUnitPrice": 9.5}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let created = query_all(
        &http,
        &emulator,
        "ContractServices",
        json!([
        {"op": "eq", "field": "contractID", "value": contract_id},
        {"op": "eq", "field": "serviceID", "value": missing}]),
    )
    .await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["unitPrice"], json!(9.5));
    let new_units = units_of(&http, &emulator, created[0]["id"].as_i64().expect("id")).await;
    assert_eq!(units_starting(&new_units, "2025-05-01"), vec![4]);
    assert!(units_starting(&new_units, "2025-03-01").is_empty());

    // Create-only.
    for method in [
        reqwest::Method::PATCH,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = authed(http.request(
            method.clone(),
            api(&emulator, &format!("/ContractServiceAdjustments/{item_id}")),
        ))
        .json(&json!({"unitChange": 1}))
        .send()
        .await
        .expect("answered");
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert!(
            json_of(response).await["Message"]
                .as_str()
                .expect("Message")
                .contains("does not support http method")
        );
    }

    let writes = json_of(
        http.get(format!("{}/_emulator/autotask/writes", emulator.base_url))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    let applied = writes
        .as_array()
        .expect("array")
        .iter()
        .filter(|w| w["status"] == 200)
        .count();
    assert_eq!(applied, 3, "{writes}");
    let adjustments = json_of(
        http.get(format!(
            "{}/_emulator/autotask/adjustments",
            emulator.base_url
        ))
        .send()
        .await
        .expect("answered"),
    )
    .await;
    assert!(
        adjustments
            .as_array()
            .expect("array")
            .iter()
            .any(|a| a["id"] == item_id && a["unitChange"] == 3)
    );
}

#[tokio::test]
async fn the_hourly_budget_blocks_at_100_percent_and_reports_usage() {
    let mut settings = settings();
    settings.autotask.hourly_request_limit = 6;
    let emulator = start_psa(Kind::Autotask, 10, settings).await;
    let http = client();
    let url = api(&emulator, "/Companies/1000");
    for _ in 0..6 {
        assert_eq!(
            authed(http.get(&url))
                .send()
                .await
                .expect("answered")
                .status(),
            StatusCode::OK
        );
    }
    let refused = authed(http.get(&url)).send().await.expect("answered");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_text(&json_of(refused).await), THRESHOLD_ERROR);
    let threshold = authed(http.get(api(&emulator, "/ThresholdInformation")))
        .send()
        .await
        .expect("answered");
    assert_eq!(threshold.status(), StatusCode::OK);
    assert_eq!(
        json_of(threshold).await,
        json!({"externalRequestThreshold": 6, "requestThresholdTimeframe": 60, "currentTimeframeRequestCount": 6})
    );
}

#[tokio::test]
async fn usage_past_half_the_budget_adds_latency() {
    let mut settings = settings();
    settings.autotask.hourly_request_limit = 4;
    settings.autotask.usage_latency = true;
    let emulator = start_psa(Kind::Autotask, 10, settings).await;
    let http = client();
    let url = api(&emulator, "/Companies/1000");
    for _ in 0..2 {
        let started = Instant::now();
        authed(http.get(&url)).send().await.expect("answered");
        assert!(started.elapsed() < Duration::from_millis(450));
    }
    let started = Instant::now();
    assert_eq!(
        authed(http.get(&url))
            .send()
            .await
            .expect("answered")
            .status(),
        StatusCode::OK
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_fourth_concurrent_request_on_one_endpoint_is_refused() {
    let mut settings = settings();
    settings.autotask.processing_delay = Duration::from_millis(800);
    let emulator = start_psa(Kind::Autotask, 10, settings).await;
    let http = client();
    let companies = api(&emulator, "/Companies/1000");
    let contracts = api(&emulator, "/Contracts/20000");
    let zone = api(&emulator, &format!("/zoneInformation?user={USERNAME}"));
    let mut tasks = Vec::new();
    for url in [
        &companies, &companies, &companies, &companies, &contracts, &zone, &zone, &zone, &zone,
    ] {
        let request = authed(http.get(url.as_str()));
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.expect("answered");
            (url, response.status(), response.text().await.expect("body"))
        }));
    }
    let mut refused = Vec::new();
    for task in tasks {
        let (url, status, body) = task.await.expect("task");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(body.contains(THREAD_ERROR), "{body}");
            refused.push(url);
        } else {
            assert_eq!(status, StatusCode::OK, "{url}: {body}");
        }
    }
    assert_eq!(
        refused,
        vec![companies.clone()],
        "exactly one Companies request over the limit"
    );
    // Slots free up once requests finish.
    assert_eq!(
        authed(http.get(&companies))
            .send()
            .await
            .expect("answered")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_paging_loop_fault_repeats_the_page() {
    let emulator = start(60).await;
    let http = client();
    http.post(format!("{}/_emulator/faults", emulator.base_url))
        .json(&FaultPlan {
            paging_loop: true,
            ..FaultPlan::default()
        })
        .send()
        .await
        .expect("answered");
    let search = json!({"filter": [{"op": "gte", "field": "id", "value": 0}], "MaxRecords": 10});
    let first = query(&http, &emulator, "Companies", search.clone()).await;
    let next = first["pageDetails"]["nextPageUrl"].as_str().expect("next");
    let again = json_of(authed(http.get(next)).send().await.expect("answered")).await;
    assert_eq!(again["items"], first["items"]);
    assert_eq!(
        again["pageDetails"]["nextPageUrl"],
        first["pageDetails"]["nextPageUrl"]
    );

    http.post(format!("{}/_emulator/faults", emulator.base_url))
        .json(&FaultPlan {
            server_errors: 1,
            ..FaultPlan::default()
        })
        .send()
        .await
        .expect("answered");
    let failed = authed(http.get(next)).send().await.expect("answered");
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // With the loop switched off, the first page links to the second.
    let fresh = query(&http, &emulator, "Companies", search).await;
    assert_eq!(fresh["items"], first["items"]);
    let second_url = fresh["pageDetails"]["nextPageUrl"].as_str().expect("next");
    assert_ne!(second_url, next);
    let second = json_of(authed(http.get(second_url)).send().await.expect("answered")).await;
    assert_eq!(second["items"][0]["id"], 1010);
}
