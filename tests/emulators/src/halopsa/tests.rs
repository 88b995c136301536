//! The HaloPSA emulator over real HTTP on loopback.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

use super::{CLIENT_ID, CLIENT_SECRET, TENANT, data};
use crate::common::testing::{client, date, start_psa};
use crate::faults::FaultPlan;
use crate::{Kind, Running, Settings};

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.halopsa.today = Some(date("2025-02-10"));
    settings
}

async fn start(customers: usize) -> Running {
    start_psa(Kind::HaloPsa, customers, settings()).await
}

async fn token_response(
    http: &Client,
    emulator: &Running,
    tenant: Option<&str>,
    form: &[(&str, &str)],
) -> Response {
    let mut url = format!("{}/auth/token", emulator.base_url);
    if let Some(tenant) = tenant {
        url.push_str(&format!("?tenant={tenant}"));
    }
    http.post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(crate::common::encode_query(form.iter().copied()))
        .send()
        .await
        .expect("answered")
}

fn good_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("scope", "all"),
    ]
}

async fn token(http: &Client, emulator: &Running) -> String {
    let response = token_response(http, emulator, Some(TENANT), &good_form()).await;
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn json_of(response: Response) -> Value {
    let text = response.text().await.expect("body is readable");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

struct Api {
    http: Client,
    base: String,
    token: String,
}

impl Api {
    async fn new(emulator: &Running) -> Self {
        let http = client();
        let token = token(&http, emulator).await;
        Self {
            http,
            base: emulator.base_url.clone(),
            token,
        }
    }

    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}/api{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("answered")
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        json_of(response).await
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}/api{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("answered")
    }
}

#[tokio::test]
async fn the_token_endpoint_and_bearer_checks() {
    let emulator = start(20).await;
    let http = client();
    let response = token_response(&http, &emulator, Some(TENANT), &good_form()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() > 20));

    let missing_tenant = token_response(&http, &emulator, None, &good_form()).await;
    assert_eq!(missing_tenant.status(), StatusCode::BAD_REQUEST);
    let body = json_of(missing_tenant).await;
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .expect("description")
            .contains("tenant")
    );
    let wrong_tenant = token_response(&http, &emulator, Some("other"), &good_form()).await;
    assert_eq!(wrong_tenant.status(), StatusCode::BAD_REQUEST);

    let mut wrong_secret = good_form();
    wrong_secret[2] = ("client_secret", "nope");
    let response = token_response(&http, &emulator, Some(TENANT), &wrong_secret).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(response).await, json!({"error": "invalid_client"}));
    let mut password = good_form();
    password[0] = ("grant_type", "password");
    let response = token_response(&http, &emulator, Some(TENANT), &password).await;
    assert_eq!(json_of(response).await["error"], "unsupported_grant_type");

    let url = format!("{}/api/Client", emulator.base_url);
    assert_eq!(
        http.get(&url).send().await.expect("answered").status(),
        StatusCode::UNAUTHORIZED
    );
    let forged = http
        .get(&url)
        .bearer_auth("halo-forged")
        .send()
        .await
        .expect("answered");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let api = Api::new(&emulator).await;
    assert_eq!(api.get("/Client").await.status(), StatusCode::OK);
    assert_eq!(
        api.get("/CLIENT").await.status(),
        StatusCode::OK,
        "paths are case-insensitive"
    );

    let mut short = settings();
    short.halopsa.token_lifetime = Duration::ZERO;
    let expiring = start_psa(Kind::HaloPsa, 5, short).await;
    let stale = token(&http, &expiring).await;
    let response = http
        .get(format!("{}/api/Client", expiring.base_url))
        .bearer_auth(stale)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "expired tokens are refused"
    );
}

#[tokio::test]
async fn recurring_invoices_page_through_twenty_thousand_lines() {
    let emulator = start(3_600).await;
    let api = Api::new(&emulator).await;
    let unpaged = api.get_json("/RecurringInvoice").await;
    let total = unpaged["record_count"].as_u64().expect("record_count") as usize;
    assert_eq!(
        unpaged["invoices"].as_array().expect("invoices").len(),
        total
    );
    assert!(
        unpaged["invoices"][0].get("lines").is_none(),
        "lines only on request"
    );

    let mut seen = BTreeSet::new();
    let mut lines = 0;
    let mut page_no = 1;
    loop {
        let page = api
            .get_json(&format!(
                "/RecurringInvoice?pageinate=true&page_size=500&page_no={page_no}&includelines=true"
            ))
            .await;
        assert_eq!(page["record_count"], total);
        assert_eq!(page["page_no"], page_no);
        assert_eq!(page["page_size"], 500);
        let invoices = page["invoices"].as_array().expect("invoices");
        if invoices.is_empty() {
            break;
        }
        for invoice in invoices {
            assert!(
                seen.insert(invoice["id"].as_i64().expect("id")),
                "no invoice twice"
            );
            for line in invoice["lines"].as_array().expect("lines") {
                assert_eq!(line["ihid"], invoice["id"]);
                lines += 1;
            }
        }
        page_no += 1;
        assert!(page_no < 100, "paging does not end");
    }
    assert_eq!(seen.len(), total);
    assert!(lines >= 20_000, "{lines} lines");

    let clients = api
        .get_json("/Client?pageinate=true&page_size=1000&page_no=4")
        .await;
    let active = clients["record_count"].as_u64().expect("count");
    let with_inactive = api.get_json("/Client?includeinactive=true").await["record_count"]
        .as_u64()
        .expect("count");
    assert!(
        with_inactive > active,
        "inactive copies are hidden by default"
    );
    assert_eq!(
        clients["clients"].as_array().expect("clients").len() as u64,
        active - 3_000
    );
    let ordered = api
        .get_json("/Client?order=name&orderdesc=true&pageinate=true&page_size=5")
        .await;
    let names: Vec<&str> = ordered["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert!(
        names
            .windows(2)
            .all(|w| w[0].to_lowercase() >= w[1].to_lowercase()),
        "{names:?}"
    );
}

#[tokio::test]
async fn seeded_invoices_carry_the_cases_connectors_must_handle() {
    let emulator = start(40).await;
    let api = Api::new(&emulator).await;
    let invoices = api.get_json("/RecurringInvoice?includelines=true").await;
    let invoices = invoices["invoices"].as_array().expect("invoices");
    assert!(invoices.iter().any(|i| i["disabled"] == true));
    assert!(
        invoices
            .iter()
            .any(|i| i["period"] == 5 && i["periodname"] == "Yearly")
    );
    assert!(invoices.iter().any(|i| i["enddate"] != data::SENTINEL_DATE));
    // Open-ended: Halo's zero date, never null.
    assert!(invoices.iter().any(|i| i["enddate"] == data::SENTINEL_DATE));
    for old in [
        "frequency",
        "bill_in_advance",
        "end_date",
        "next_creation_date",
        "start_date",
    ] {
        assert!(
            invoices.iter().all(|i| i.get(old).is_none()),
            "{old} is not Halo's"
        );
    }
    let lines: Vec<&Value> = invoices
        .iter()
        .flat_map(|i| i["lines"].as_array().expect("lines"))
        .collect();
    assert!(
        lines.iter().any(|l| l["enddate"] != data::SENTINEL_DATE),
        "ended lines"
    );
    assert!(
        lines.iter().any(|l| l["unit_price"] == json!(0.0)),
        "courtesy lines"
    );
    let line = lines[0];
    for field in [
        "id",
        "ihid",
        "_itemid",
        "item_shortdescription",
        "startdate",
        "enddate",
        "qty_order",
        "unit_price",
        "unit_cost",
        "nominal_code",
    ] {
        assert!(!line[field].is_null(), "{field} in {line}");
    }
    let contracts = api
        .get_json(&format!(
            "/ClientContract?client_id={}",
            invoices[0]["client_id"]
        ))
        .await;
    assert!(contracts["record_count"].as_u64().expect("count") >= 1);
    let first = api
        .get_json(&format!("/RecurringInvoice/{}", invoices[0]["id"]))
        .await;
    assert!(first["lines"].is_array());
    assert_eq!(
        api.get("/RecurringInvoice/1").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn updatelines_validates_every_line_before_changing_any() {
    let emulator = start(20).await;
    let api = Api::new(&emulator).await;
    let invoice = api.get_json("/RecurringInvoice/2000").await;
    let line = &invoice["lines"][0];
    let (id, ihid) = (
        line["id"].as_i64().expect("id"),
        line["ihid"].as_i64().expect("ihid"),
    );
    let other = invoice["lines"][1]["id"].as_i64().expect("a second line");

    for (body, needle) in [
        (json!([{"ihid": ihid, "qty_order": 5}]), "line 1 has no id"),
        (json!([{"id": id, "qty_order": 5}]), "has no ihid"),
        (
            json!([{"id": id, "ihid": ihid, "qty_order": 9}, {"id": other, "ihid": 2001, "qty_order": 9}]),
            "line 2: line",
        ),
        (
            json!([{"id": 1, "ihid": ihid}]),
            "no recurring invoice line 1",
        ),
        (
            json!([{"id": id, "ihid": ihid, "qty_order": "many"}]),
            "qty_order must be a number",
        ),
        (json!([]), "empty"),
    ] {
        let response = api
            .post("/RecurringInvoice/updatelines", body.clone())
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = response.text().await.expect("body");
        assert!(text.contains(needle), "{body}: {text}");
    }
    let unchanged = api.get_json("/RecurringInvoice/2000").await;
    assert_eq!(
        unchanged["lines"], invoice["lines"],
        "refused updates change nothing"
    );

    let response = api
        .post(
            "/RecurringInvoice/UpdateLines",
            json!([{"id": id, "ihid": ihid, "qty_order": 12, "enddate": "2025-02-28T00:00:00"}]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer[0]["qty_order"], json!(12.0));
    let after = api.get_json("/RecurringInvoice/2000").await;
    let stored = after["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["id"] == id)
        .expect("line");
    assert_eq!(stored["qty_order"], json!(12.0));
    assert_eq!(stored["enddate"], "2025-02-28T00:00:00");

    let response = api
        .post(
            "/RecurringInvoice/Lines",
            json!([{"ihid": ihid, "item_shortdescription": "EDR", "qty_order": 7,
                                                 "startdate": "2025-03-01T00:00:00"}]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json_of(response).await;
    assert_eq!(created[0]["item_code"], "EDR");
    assert_eq!(created[0]["unit_price"], json!(8.0));
    let missing_ihid = api
        .post("/RecurringInvoice/Lines", json!([{"_itemid": 70}]))
        .await;
    assert_eq!(missing_ihid.status(), StatusCode::BAD_REQUEST);

    let writes = client()
        .get(format!("{}/_emulator/halopsa/writes", emulator.base_url))
        .send()
        .await
        .expect("answered");
    let writes = json_of(writes).await;
    let applied: Vec<&Value> = writes
        .as_array()
        .expect("array")
        .iter()
        .filter(|w| w["status"].as_u64().is_some_and(|s| s < 300))
        .collect();
    assert_eq!(applied.len(), 2, "{writes}");
    assert!(
        applied[0]["path"]
            .as_str()
            .expect("path")
            .ends_with("UpdateLines")
    );
}

#[tokio::test]
async fn recurring_invoices_are_created_and_updated() {
    let emulator = start(20).await;
    let api = Api::new(&emulator).await;
    let response = api
        .post(
            "/RecurringInvoice",
            json!([{"client_id": 101, "reference": "New licences",
            "lines": [{"_itemid": 70, "qty_order": 3}]}]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json_of(response).await;
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["lines"][0]["qty_order"], json!(3.0));
    assert_eq!(created["lines"][0]["item_code"], "M365-BP");

    let response = api
        .post("/RecurringInvoice", json!({"id": id, "disabled": true}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let listed = api.get_json("/RecurringInvoice?client_id=101").await;
    let stored = listed["invoices"]
        .as_array()
        .expect("invoices")
        .iter()
        .find(|i| i["id"] == id)
        .expect("listed");
    assert_eq!(stored["disabled"], true);
    assert_eq!(stored["reference"], "New licences");

    for body in [
        json!({"reference": "no client"}),
        json!({"id": 999_999}),
        json!({"client_id": 101, "period": 1}),
        // Not Halo's names: refused, not silently ignored.
        json!({"client_id": 101, "lines": [{"item_id": 70, "qty_order": 1}]}),
        json!({"client_id": 101, "lines": [{"_itemid": 70, "start_date": "2025-01-01T00:00:00"}]}),
    ] {
        let response = api.post("/RecurringInvoice", body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn the_item_catalogue_is_searched_by_name() {
    let emulator = start(5).await;
    let api = Api::new(&emulator).await;
    let all = api.get_json("/Item").await;
    assert_eq!(
        all["record_count"],
        json!(crate::catalog::PRODUCTS.len()),
        "{all}"
    );
    let found = api.get_json("/Item?search=rmm-srv").await;
    let names: Vec<&str> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["RMM-SRV"], "{found}");
    assert_eq!(found["items"][0]["baseprice"], json!(150.0));
    // Descriptions match too, as in Halo's search box.
    let backup = api.get_json("/Item?search=backup").await;
    assert_eq!(backup["record_count"], 1, "{backup}");
    let none = api.get_json("/Item?search=no-such-item").await;
    assert_eq!(none["record_count"], 0, "{none}");
}

#[tokio::test]
async fn rate_limit_and_paging_loop() {
    let mut limited = settings();
    limited.halopsa.requests_per_minute = 3;
    let emulator = start_psa(Kind::HaloPsa, 5, limited).await;
    let api = Api::new(&emulator).await;
    assert_eq!(api.get("/Client").await.status(), StatusCode::OK);
    assert_eq!(api.get("/Client").await.status(), StatusCode::OK);
    let refused = api.get("/Client").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));

    let emulator = start(40).await;
    let api = Api::new(&emulator).await;
    let page_one = api
        .get_json("/Client?pageinate=true&page_size=5&page_no=1")
        .await;
    let page_two = api
        .get_json("/Client?pageinate=true&page_size=5&page_no=2")
        .await;
    assert_ne!(page_one["clients"], page_two["clients"]);
    client()
        .post(format!("{}/_emulator/faults", emulator.base_url))
        .json(&FaultPlan {
            paging_loop: true,
            ..FaultPlan::default()
        })
        .send()
        .await
        .expect("answered");
    let looped = api
        .get_json("/Client?pageinate=true&page_size=5&page_no=2")
        .await;
    assert_eq!(
        looped["clients"], page_one["clients"],
        "page 2 repeats page 1"
    );
    assert_eq!(looped["record_count"], page_one["record_count"]);
}

#[tokio::test]
async fn lines_come_in_lists_only_when_asked_and_never_when_switched_off() {
    let emulator = start(10).await;
    let api = Api::new(&emulator).await;
    let plain = api.get_json("/RecurringInvoice").await;
    assert!(
        plain["invoices"][0].get("lines").is_none(),
        "{}",
        plain["invoices"][0]
    );
    let asked = api.get_json("/RecurringInvoice?includelines=true").await;
    assert!(
        asked["invoices"][0]["lines"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    );

    let mut off = settings();
    off.halopsa.lines_in_lists = false;
    let emulator = start_psa(Kind::HaloPsa, 10, off).await;
    let api = Api::new(&emulator).await;
    let asked = api.get_json("/RecurringInvoice?includelines=true").await;
    assert!(asked["invoices"][0].get("lines").is_none());
    let id = asked["invoices"][0]["id"].as_i64().expect("id");
    let single = api.get_json(&format!("/RecurringInvoice/{id}")).await;
    assert!(single["lines"].as_array().is_some_and(|l| !l.is_empty()));
}

#[tokio::test]
async fn expired_tokens_are_refused_with_401() {
    let emulator = start(5).await;
    let api = Api::new(&emulator).await;
    assert_eq!(api.get("/Client").await.status(), StatusCode::OK);
    let expired = client()
        .post(format!(
            "{}/_emulator/halopsa/expire-tokens",
            emulator.base_url
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(expired.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.get("/Client").await.status(), StatusCode::UNAUTHORIZED);
    let fresh = Api::new(&emulator).await;
    assert_eq!(fresh.get("/Client").await.status(), StatusCode::OK);

    let mut short = settings();
    short.halopsa.token_lifetime = Duration::from_millis(300);
    let emulator = start_psa(Kind::HaloPsa, 5, short).await;
    let api = Api::new(&emulator).await;
    assert_eq!(api.get("/Client").await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(api.get("/Client").await.status(), StatusCode::UNAUTHORIZED);
}
