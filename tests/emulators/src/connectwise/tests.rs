//! The ConnectWise emulator over real HTTP on loopback.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use super::{BASE_PATH, CLIENT_ID, COMPANY_ID, PRIVATE_KEY, PUBLIC_KEY};
use crate::common::testing::{client, date, start_psa};
use crate::faults::FaultPlan;
use crate::{Kind, Running, Settings};

const TODAY: &str = "2025-02-10";

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.connectwise.today = Some(date(TODAY));
    settings
}

async fn start(customers: usize) -> Running {
    start_psa(Kind::ConnectWise, customers, settings()).await
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn authed(request: RequestBuilder) -> RequestBuilder {
    request.header("clientId", CLIENT_ID).header(
        "Authorization",
        basic(&format!("{COMPANY_ID}+{PUBLIC_KEY}"), PRIVATE_KEY),
    )
}

fn api(emulator: &Running, path: &str) -> String {
    format!("{}{BASE_PATH}{path}", emulator.base_url)
}

async fn get(http: &Client, url: &str) -> Response {
    authed(http.get(url))
        .send()
        .await
        .expect("request is answered")
}

async fn json_of(response: Response) -> Value {
    let text = response.text().await.expect("body is readable");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn get_json(http: &Client, url: &str) -> Value {
    let response = get(http, url).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    json_of(response).await
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| r["id"].as_i64().expect("records have ids"))
        .collect()
}

fn links(response: &Response) -> Vec<(String, String)> {
    let Some(header) = response.headers().get("link") else {
        return Vec::new();
    };
    header
        .to_str()
        .expect("ASCII Link header")
        .split(", ")
        .map(|part| {
            let (url, rel) = part.split_once(">; rel=\"").expect("<url>; rel=\"x\"");
            (
                rel.trim_end_matches('"').to_owned(),
                url.trim_start_matches('<').to_owned(),
            )
        })
        .collect()
}

fn link(response: &Response, rel: &str) -> Option<String> {
    links(response)
        .into_iter()
        .find(|(r, _)| r == rel)
        .map(|(_, url)| url)
}

#[tokio::test]
async fn credentials_and_client_id_are_enforced() {
    let emulator = start(30).await;
    let http = client();
    let url = api(&emulator, "/company/companies");
    let good_auth = basic(&format!("{COMPANY_ID}+{PUBLIC_KEY}"), PRIVATE_KEY);

    let response = http
        .get(&url)
        .header("Authorization", &good_auth)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("clientId"),
        "{body}"
    );

    let response = http
        .get(&url)
        .header("Authorization", &good_auth)
        .header("clientId", "not-a-guid")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        json_of(response).await["message"]
            .as_str()
            .expect("message")
            .contains("clientId")
    );

    for auth in [
        None,
        Some(basic(&format!("{COMPANY_ID}+{PUBLIC_KEY}"), "wrong")),
        Some(basic(&format!("other+{PUBLIC_KEY}"), PRIVATE_KEY)),
        Some(basic(PUBLIC_KEY, PRIVATE_KEY)),
        Some(format!("Bearer {PRIVATE_KEY}")),
    ] {
        let mut request = http.get(&url).header("clientId", CLIENT_ID);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let body = json_of(response).await;
        assert_eq!(body["code"], "Unauthorized");
    }

    let response = get(&http, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Paths match case-insensitively, as on the real service.
    let upper = api(&emulator, "/Company/Companies").replace("/v4_6_release", "/V4_6_RELEASE");
    assert_eq!(get(&http, &upper).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn conditions_filter_over_http_and_bad_ones_are_refused() {
    let emulator = start(60).await;
    let http = client();
    let all = get_json(&http, &api(&emulator, "/finance/agreements?pageSize=1000")).await;
    let records = all.as_array().expect("array");
    let expect = |predicate: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        records
            .iter()
            .filter(|r| predicate(r))
            .map(|r| r["id"].as_i64().expect("id"))
            .collect()
    };
    let first_company = records[0]["company"]["id"].as_i64().expect("company id");
    let table: Vec<(String, Vec<i64>)> = vec![
        (
            format!("company/id={first_company}"),
            expect(&|r| r["company"]["id"] == first_company),
        ),
        (
            "agreementStatus=\"Active\" and cancelledFlag=false".to_owned(),
            expect(&|r| r["agreementStatus"] == "Active" && r["cancelledFlag"] == false),
        ),
        (
            "agreementStatus in (\"Cancelled\",\"Expired\",\"Inactive\")".to_owned(),
            expect(&|r| r["agreementStatus"] != "Active"),
        ),
        (
            "billingCycle/id = null".to_owned(),
            expect(&|r| r.get("billingCycle").is_none()),
        ),
        (
            "type/name like \"Block*\" or billingCycle/name = \"Yearly\"".to_owned(),
            expect(&|r| r["type"]["name"] == "Block Time" || r["billingCycle"]["name"] == "Yearly"),
        ),
        (
            "not (type/name = \"Managed Services\")".to_owned(),
            expect(&|r| r["type"]["name"] != "Managed Services"),
        ),
        (
            "endDate < [2025-02-01T00:00:00Z]".to_owned(),
            expect(&|r| {
                r.get("endDate")
                    .is_some_and(|d| d.as_str() < Some("2025-02-01"))
            }),
        ),
        (
            "company/name contains \"dental\"".to_owned(),
            expect(&|r| {
                r["company"]["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase().contains("dental"))
            }),
        ),
    ];
    for (condition, expected) in table {
        assert!(
            !expected.is_empty(),
            "{condition} selects something in this world"
        );
        let url = format!(
            "{}?pageSize=1000&conditions={}",
            api(&emulator, "/finance/agreements"),
            crate::common::encode_query([("x", condition.as_str())]).trim_start_matches("x=")
        );
        assert_eq!(ids(&get_json(&http, &url).await), expected, "{condition}");
    }

    let main_agreements = get_json(
        &http,
        &format!(
            "{}?conditions=type/name=\"Managed Services\" and agreementStatus=\"Active\" and billingCycle/name=\"Monthly\"",
            api(&emulator, "/finance/agreements/count")
        ),
    )
    .await;
    let companies = get_json(
        &http,
        &format!(
            "{}?conditions=deletedFlag=false",
            api(&emulator, "/company/companies/count")
        ),
    )
    .await;
    let customers = crate::world::World::new(crate::common::testing::SEED, 60)
        .psa_customers()
        .count();
    assert_eq!(companies["count"], customers);
    // Arrears and no-cycle extras are managed-services agreements too.
    assert!(main_agreements["count"].as_u64().expect("count") >= customers as u64);

    for (condition, needle) in [
        ("company/idd = 1", "unknown field 'company/idd'"),
        ("startDate > \"2024-01-01\"", "[2025-01-01T00:00:00Z]"),
        ("name = 'x'", "double quotes"),
        ("(id = 1", "missing ')'"),
    ] {
        let url = format!(
            "{}?conditions={}",
            api(&emulator, "/finance/agreements"),
            crate::common::encode_query([("x", condition)]).trim_start_matches("x=")
        );
        let response = get(&http, &url).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{condition}");
        let body = json_of(response).await;
        let message = body["message"].as_str().expect("message");
        assert!(message.contains(needle), "{condition}: {message}");
    }
}

#[tokio::test]
async fn navigable_and_forward_only_paging_walk_two_thousand_companies() {
    let emulator = start(2_100).await;
    let http = client();
    let count = get_json(&http, &api(&emulator, "/company/companies/count")).await["count"]
        .as_u64()
        .expect("count") as usize;
    assert!(count >= 2_000, "{count} companies");

    // pageSize above 1000 is clamped.
    let response = get(&http, &api(&emulator, "/company/companies?pageSize=5000")).await;
    let next = link(&response, "next").expect("a next link");
    let last = link(&response, "last").expect("a last link");
    assert!(next.starts_with(&emulator.base_url), "absolute: {next}");
    assert!(
        next.contains("pageSize=1000") && next.contains("page=2"),
        "{next}"
    );
    assert!(
        last.contains(&format!("page={}", count.div_ceil(1000))),
        "{last}"
    );
    assert!(link(&response, "prev").is_none());
    assert_eq!(ids(&json_of(response).await).len(), 1000);

    let mut seen = Vec::new();
    let mut url = Some(api(
        &emulator,
        "/company/companies?pageSize=700&orderBy=id desc",
    ));
    let mut pages = 0;
    while let Some(current) = url {
        let response = get(&http, &current).await;
        assert_eq!(response.status(), StatusCode::OK);
        url = link(&response, "next");
        if pages > 0 {
            assert!(link(&response, "first").is_some() && link(&response, "prev").is_some());
        }
        seen.extend(ids(&json_of(response).await));
        pages += 1;
        assert!(pages <= 10, "paging does not end");
    }
    assert_eq!(seen.len(), count);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "ordered by id desc");

    let mut forward = Vec::new();
    let mut url = Some(api(&emulator, "/company/companies?pageSize=1000"));
    pages = 0;
    while let Some(current) = url {
        let response = authed(http.get(&current))
            .header("pagination-type", "forward-only")
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        url = link(&response, "next");
        if let Some(next) = &url {
            assert!(next.contains("pageId="), "{next}");
            assert!(link(&response, "last").is_none());
        }
        forward.extend(ids(&json_of(response).await));
        pages += 1;
        assert!(pages <= 5, "forward-only paging does not end");
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(forward, sorted);
    assert_eq!(forward.iter().collect::<BTreeSet<_>>().len(), count);
}

#[tokio::test]
async fn seeded_agreements_carry_the_extras_connectors_must_filter() {
    let emulator = start(40).await;
    let http = client();
    let agreements = get_json(&http, &api(&emulator, "/finance/agreements?pageSize=1000")).await;
    let agreements = agreements.as_array().expect("array");
    let statuses: BTreeSet<&str> = agreements
        .iter()
        .filter_map(|a| a["agreementStatus"].as_str())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["Active", "Cancelled", "Expired", "Inactive"])
    );
    let cancelled = agreements
        .iter()
        .find(|a| a["cancelledFlag"] == true)
        .expect("a cancelled agreement");
    assert!(cancelled.get("dateCancelled").is_some());
    assert!(agreements.iter().any(|a| a.get("billingCycle").is_none()));
    assert!(
        agreements
            .iter()
            .any(|a| a["billingCycle"]["name"] == "Yearly")
    );
    assert!(
        agreements
            .iter()
            .any(|a| a["billingCycle"]["name"] == "Not Recurring")
    );
    assert!(agreements.iter().any(|a| a["periodType"] == "Current"));
    assert!(
        agreements
            .iter()
            .any(|a| a["prorateFlag"] == false && a["name"] == "Managed Services")
    );
    assert!(agreements.iter().any(|a| a["type"]["name"] == "Block Time"));
    // Null fields are left out, as ConnectWise does.
    assert!(
        agreements
            .iter()
            .all(|a| a.get("endDate") != Some(&Value::Null))
    );

    let mut bill_customer = BTreeSet::new();
    let mut cancelled_additions = 0;
    for agreement in agreements {
        let id = agreement["id"].as_i64().expect("id");
        let additions = get_json(
            &http,
            &api(
                &emulator,
                &format!("/finance/agreements/{id}/additions?pageSize=100"),
            ),
        )
        .await;
        for addition in additions.as_array().expect("array") {
            bill_customer.insert(
                addition["billCustomer"]
                    .as_str()
                    .expect("billCustomer")
                    .to_owned(),
            );
            assert_eq!(addition["agreementId"], id);
            assert!(addition["product"]["identifier"].is_string());
            if addition
                .get("cancelledDate")
                .is_some_and(|d| d.as_str() < Some("2025-02-01"))
            {
                cancelled_additions += 1;
            }
        }
    }
    assert_eq!(
        bill_customer,
        BTreeSet::from([
            "Billable".to_owned(),
            "DoNotBill".to_owned(),
            "NoCharge".to_owned()
        ])
    );
    assert!(cancelled_additions > 0, "some additions were cut over");
}

async fn main_agreement(http: &Client, emulator: &Running, prorate: bool) -> i64 {
    let url = format!(
        "{}?conditions=name=\"Managed Services\" and prorateFlag={prorate}&pageSize=1",
        api(emulator, "/finance/agreements")
    );
    ids(&get_json(http, &url).await)[0]
}

async fn invoice(http: &Client, emulator: &Running, agreement: i64, day: &str) -> Value {
    get_json(
        http,
        &format!(
            "{}/_emulator/connectwise/agreements/{agreement}/invoice?date={day}",
            emulator.base_url
        ),
    )
    .await
}

fn line_of(invoice: &Value, addition: i64) -> Option<&Value> {
    invoice["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["additionId"] == addition)
}

#[tokio::test]
async fn cancel_and_add_cuts_over_billing_and_is_logged_once() {
    let emulator = start(30).await;
    let http = client();
    let agreement = main_agreement(&http, &emulator, true).await;
    let additions_url = api(
        &emulator,
        &format!("/finance/agreements/{agreement}/additions"),
    );
    let additions = get_json(
        &http,
        &format!("{additions_url}?conditions=billCustomer=\"Billable\" and cancelledDate=null"),
    )
    .await;
    let old = &additions[0];
    let old_id = old["id"].as_i64().expect("id");
    let product = old["product"]["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned();

    // Cut over: the old addition bills through 28 Feb, the new one from 1 Mar.
    let response = authed(http.patch(format!("{additions_url}/{old_id}")))
        .json(&json!([{"op": "replace", "path": "cancelledDate", "value": "2025-02-28T00:00:00Z"}]))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await["cancelledDate"],
        "2025-02-28T00:00:00Z"
    );
    let response = authed(http.post(&additions_url))
        .json(&json!({"product": {"identifier": product}, "quantity": 12,
                      "billCustomer": "Billable", "effectiveDate": "2025-03-01T00:00:00Z"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json_of(response).await;
    let new_id = created["id"].as_i64().expect("new id");
    assert_eq!(created["quantity"], json!(12.0));
    assert_eq!(created["agreementId"], agreement);
    assert_eq!(created["_info"]["updatedBy"], "TrueupAPI");

    // Later reads see the change.
    let reread = get_json(&http, &format!("{additions_url}/{old_id}")).await;
    assert_eq!(reread["cancelledDate"], "2025-02-28T00:00:00Z");

    let february = invoice(&http, &emulator, agreement, "2025-02-15").await;
    assert!(line_of(&february, old_id).is_some());
    assert!(line_of(&february, new_id).is_none());
    let march = invoice(&http, &emulator, agreement, "2025-03-15").await;
    assert!(
        line_of(&march, old_id).is_none(),
        "cancelledDate ends billing"
    );
    let line = line_of(&march, new_id).expect("the new addition bills in March");
    assert_eq!(line["quantity"], json!(12.0));
    assert_eq!(line["prorated"], false);

    let writes = get_json(
        &http,
        &format!("{}/_emulator/connectwise/writes", emulator.base_url),
    )
    .await;
    let writes = writes.as_array().expect("array");
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0]["method"], "PATCH");
    assert_eq!(writes[1]["method"], "POST");
    assert!(writes.iter().all(|w| {
        w["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s))
    }));
    assert!(writes[0]["at"].is_string());
    assert_eq!(writes[1]["body"]["quantity"], 12);
}

#[tokio::test]
async fn patch_put_delete_and_validation() {
    let emulator = start(30).await;
    let http = client();
    let agreement = main_agreement(&http, &emulator, true).await;
    let additions_url = api(
        &emulator,
        &format!("/finance/agreements/{agreement}/additions"),
    );
    let id = ids(&get_json(&http, &additions_url).await)[0];
    let one = format!("{additions_url}/{id}");

    for path in ["quantity", "/quantity"] {
        let response = authed(http.patch(&one))
            .json(&json!([{"op": "replace", "path": path, "value": 17}]))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(get_json(&http, &one).await["quantity"], json!(17.0));
        let response = authed(http.patch(&one))
            .json(&json!([{"op": "replace", "path": path, "value": 3}]))
            .send()
            .await
            .expect("answered");
        assert_eq!(json_of(response).await["quantity"], json!(3.0), "{path}");
    }

    // A bad patch changes nothing, even the valid operations in it.
    let response = authed(http.patch(&one))
        .json(&json!([{"op": "replace", "path": "quantity", "value": 99},
                      {"op": "replace", "path": "billCustomer", "value": "Sometimes"}]))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["code"], "InvalidObject");
    assert_eq!(body["errors"][0]["field"], "billCustomer");
    assert_eq!(get_json(&http, &one).await["quantity"], json!(3.0));
    for bad in [
        json!({"op": "replace"}),
        json!([{"op": "move", "path": "quantity"}]),
        json!([{"op": "replace", "path": "extPrice", "value": 1}]),
    ] {
        let response = authed(http.patch(&one))
            .json(&bad)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let response = authed(http.post(&additions_url))
        .json(&json!({"description": "no product"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    let fields: BTreeSet<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["billCustomer", "product", "quantity"])
    );
    let response = authed(http.post(&additions_url))
        .json(
            &json!({"product": {"identifier": "NOPE"}, "quantity": 1, "billCustomer": "Billable"}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = authed(http.put(&one))
        .json(
            &json!({"product": {"id": 2}, "quantity": 4, "billCustomer": "NoCharge",
                      "effectiveDate": "2025-01-01T00:00:00Z"}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let replaced = get_json(&http, &one).await;
    assert_eq!(replaced["product"]["identifier"], "M365-BS");
    assert_eq!(replaced["billCustomer"], "NoCharge");
    assert_eq!(
        replaced["unitPrice"],
        json!(15.0),
        "catalogue price when none is sent"
    );

    let response = authed(http.delete(&one)).send().await.expect("answered");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&http, &one).await.status(), StatusCode::NOT_FOUND);
    let missing = api(&emulator, "/finance/agreements/1/additions");
    assert_eq!(get(&http, &missing).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mid_period_additions_are_prorated_only_on_prorated_agreements() {
    let emulator = start(30).await;
    let http = client();
    for prorate in [true, false] {
        let agreement = main_agreement(&http, &emulator, prorate).await;
        let additions_url = api(
            &emulator,
            &format!("/finance/agreements/{agreement}/additions"),
        );
        let response = authed(http.post(&additions_url))
            .json(
                &json!({"product": {"identifier": "M365-BP"}, "quantity": 10,
                          "billCustomer": "Billable", "effectiveDate": "2025-02-16T00:00:00Z"}),
            )
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::CREATED);
        let created = json_of(response).await;
        let id = created["id"].as_i64().expect("id");
        let february = invoice(&http, &emulator, agreement, "2025-02-01").await;
        if prorate {
            // 16–28 Feb is 13 of 28 days: 26.40 × 13 / 28 = 12.257… → 12.26.
            assert_eq!(created["proratePrice"], json!(12.26));
            assert_eq!(created["extendedProratePrice"], json!(122.6));
            assert_eq!(created["prorateCurrentPeriodFlag"], true);
            let line = line_of(&february, id).expect("prorated line in February");
            assert_eq!(line["days"], 13);
            assert_eq!(line["amount"], json!(122.6));
        } else {
            assert_eq!(created["proratePrice"], json!(0.0));
            assert_eq!(created["prorateCurrentPeriodFlag"], false);
            assert!(line_of(&february, id).is_none(), "bills in full from March");
        }
        let march = invoice(&http, &emulator, agreement, "2025-03-03").await;
        assert_eq!(
            line_of(&march, id).expect("March line")["amount"],
            json!(264.0)
        );
    }
}

#[tokio::test]
async fn the_request_rate_limit_answers_429_with_retry_after() {
    let mut settings = settings();
    settings.connectwise.requests_per_minute = 5;
    let emulator = start_psa(Kind::ConnectWise, 10, settings).await;
    let http = client();
    let url = api(&emulator, "/system/info");
    for _ in 0..5 {
        assert_eq!(get(&http, &url).await.status(), StatusCode::OK);
    }
    let response = get(&http, &url).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(json_of(response).await["code"], "TooManyRequests");
}

async fn set_faults(http: &Client, emulator: &Running, plan: FaultPlan) {
    let response = http
        .post(format!("{}/_emulator/faults", emulator.base_url))
        .json(&plan)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn every_fault_switch_reaches_connectwise_clients() {
    let emulator = start(30).await;
    let http = client();
    let url = api(&emulator, "/company/companies?pageSize=5");

    set_faults(
        &http,
        &emulator,
        FaultPlan {
            rate_limited: 2,
            retry_after_secs: 7,
            ..FaultPlan::default()
        },
    )
    .await;
    for _ in 0..2 {
        let response = get(&http, &url).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
    }
    assert_eq!(get(&http, &url).await.status(), StatusCode::OK);

    set_faults(
        &http,
        &emulator,
        FaultPlan {
            server_errors: 1,
            ..FaultPlan::default()
        },
    )
    .await;
    assert_eq!(
        get(&http, &url).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get(&http, &url).await.status(), StatusCode::OK);

    set_faults(
        &http,
        &emulator,
        FaultPlan {
            slow: 1,
            slow_ms: 300,
            ..FaultPlan::default()
        },
    )
    .await;
    let started = Instant::now();
    assert_eq!(get(&http, &url).await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    set_faults(
        &http,
        &emulator,
        FaultPlan {
            truncated: 1,
            ..FaultPlan::default()
        },
    )
    .await;
    let text = get(&http, &url).await.text().await.expect("body");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "cut JSON: {text}"
    );
    assert!(
        serde_json::from_str::<Value>(&get(&http, &url).await.text().await.expect("body")).is_ok()
    );

    // Inspection routes are never faulted.
    set_faults(
        &http,
        &emulator,
        FaultPlan {
            server_errors: 5,
            ..FaultPlan::default()
        },
    )
    .await;
    let writes = http
        .get(format!(
            "{}/_emulator/connectwise/writes",
            emulator.base_url
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(writes.status(), StatusCode::OK);
    http.delete(format!("{}/_emulator/faults", emulator.base_url))
        .send()
        .await
        .expect("answered");

    set_faults(
        &http,
        &emulator,
        FaultPlan {
            paging_loop: true,
            ..FaultPlan::default()
        },
    )
    .await;
    let response = get(&http, &format!("{url}&page=2")).await;
    let next = link(&response, "next").expect("next link");
    assert!(
        next.contains("page=2"),
        "the next link repeats page 2: {next}"
    );
    let response = authed(http.get(format!("{url}&pageId=260")))
        .header("pagination-type", "forward-only")
        .send()
        .await
        .expect("answered");
    let next = link(&response, "next").expect("next link");
    assert!(next.contains("pageId=260"), "{next}");
}
