//! The vendor emulators (Microsoft, Pax8, NinjaOne, Huntress) over real HTTP
//! on loopback: auth, every paging style across more than 1,000 accounts,
//! query refusals, rate limits and the fault switches.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use trueup_emulators::catalog::{VendorSource, reported_usage};
use trueup_emulators::world::World;
use trueup_emulators::{Kind, Running, Settings, huntress, microsoft, ninjaone, pax8, start};

/// A world big enough that every vendor has more than 1,000 accounts.
const BIG_WORLD: usize = 1100;
/// Huntress only has organisations for customers with EDR (and a few
/// empty ones), so it needs a bigger world for 1,000 accounts.
const BIG_HUNTRESS_WORLD: usize = 1500;

async fn serve(kind: Kind, customers: usize, settings: Settings) -> (Running, Arc<World>) {
    let world = Arc::new(World::new(17, customers));
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
    let running = start(kind, world.clone(), settings, addr)
        .await
        .expect("emulator starts");
    (running, world)
}

async fn send(request: RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("request is answered");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body is read");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, body)
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header with whole seconds")
}

async fn set_faults(base: &str, plan: Value) {
    let status = Client::new()
        .post(format!("{base}/_emulator/faults"))
        .json(&plan)
        .send()
        .await
        .expect("fault plan accepted")
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
}

// ---------------------------------------------------------------------------
// Microsoft

async fn ms_token(base: &str, tenant: &str, scope: &str) -> String {
    let (status, _, body) = send(
        Client::new()
            .post(format!("{base}/{tenant}/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", microsoft::CLIENT_ID),
                ("client_secret", microsoft::CLIENT_SECRET),
                ("scope", scope),
            ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn ms_tenants(base: &str) -> Vec<Value> {
    let (_, _, body) = send(Client::new().get(format!("{base}/_emulator/microsoft/tenants"))).await;
    body["tenants"].as_array().expect("tenants").clone()
}

#[tokio::test]
async fn graph_tokens_read_only_their_own_tenant_and_report_the_truth() {
    let (ms, world) = serve(Kind::Microsoft, 40, Settings::default()).await;
    let tenants = ms_tenants(&ms.base_url).await;
    let customers: Vec<&Value> = tenants
        .iter()
        .filter(|t| !t["customerIndex"].is_null())
        .take(6)
        .collect();
    assert!(customers.len() == 6);
    for tenant in customers {
        let id = tenant["tenantId"].as_str().expect("id");
        // Ask by primary domain: the token still belongs to the tenant id.
        let token = ms_token(
            &ms.base_url,
            tenant["domain"].as_str().expect("domain"),
            microsoft::GRAPH_SCOPE,
        )
        .await;
        let (status, _, body) = send(
            Client::new()
                .get(format!("{}/v1.0/subscribedSkus", ms.base_url))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["@odata.context"],
            "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus"
        );
        let skus = body["value"].as_array().expect("value");
        assert!(
            skus.iter().all(|s| s["accountId"] == id),
            "another tenant's SKU leaked"
        );
        let customer = &world.customers[tenant["customerIndex"].as_u64().expect("index") as usize];
        for (product, units) in reported_usage(customer) {
            let VendorSource::MicrosoftSku { sku_part_number } = product.source else {
                continue;
            };
            let sku = skus
                .iter()
                .find(|s| s["skuPartNumber"] == sku_part_number)
                .expect("reported SKU served");
            assert_eq!(sku["consumedUnits"], json!(units));
            assert_eq!(sku["capabilityStatus"], "Enabled");
            assert!(sku["prepaidUnits"]["enabled"].as_u64().expect("enabled") >= u64::from(units));
            assert_eq!(
                sku["id"],
                json!(format!("{id}_{}", sku["skuId"].as_str().expect("skuId")))
            );
        }
    }
}

#[tokio::test]
async fn graph_and_identity_refuse_what_the_real_services_refuse() {
    let (ms, _) = serve(Kind::Microsoft, 10, Settings::default()).await;
    let base = &ms.base_url;
    let tenant = ms_tenants(base).await[0]["tenantId"]
        .as_str()
        .expect("id")
        .to_owned();
    let graph = ms_token(base, &tenant, microsoft::GRAPH_SCOPE).await;
    let skus = format!("{base}/v1.0/subscribedSkus");

    let (status, _, body) = send(
        Client::new()
            .get(&skus)
            .query(&[("$filter", "skuPartNumber eq 'SPB'")])
            .bearer_auth(&graph),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_UnsupportedQuery");
    assert_eq!(
        body["error"]["message"],
        "Filtered searches against this resource are not supported."
    );

    let (status, _, body) = send(
        Client::new()
            .get(&skus)
            .query(&[("$select", "skuPartNumber,consumedUnits")])
            .bearer_auth(&graph),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let first = body["value"][0].as_object().expect("a SKU");
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["consumedUnits", "id", "skuPartNumber"]);

    for (token, needle) in [(None, "empty"), (Some("not-a-token"), "IDX14100")] {
        let mut request = Client::new().get(&skus);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, _, body) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains(needle)
        );
    }
    // A Partner Center token is not a Graph token, and vice versa.
    let pc = ms_token(
        base,
        microsoft::PARTNER_TENANT_ID,
        microsoft::PARTNER_CENTER_SCOPE,
    )
    .await;
    let (status, _, body) = send(Client::new().get(&skus).bearer_auth(&pc)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("audience")
    );
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/customers"))
            .bearer_auth(&graph),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A Partner Center token issued in a customer tenant is refused too.
    let wrong_tenant = ms_token(base, &tenant, microsoft::PARTNER_CENTER_SCOPE).await;
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/customers"))
            .bearer_auth(&wrong_tenant),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let token_url = format!("{base}/{tenant}/oauth2/v2.0/token");
    let form = |secret: &str, scope: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", microsoft::CLIENT_ID.to_owned()),
            ("client_secret", secret.to_owned()),
            ("scope", scope.to_owned()),
        ]
    };
    let (status, _, body) = send(
        Client::new()
            .post(&token_url)
            .form(&form("wrong", microsoft::GRAPH_SCOPE)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, _, body) = send(
        Client::new()
            .post(&token_url)
            .form(&form(microsoft::CLIENT_SECRET, "User.Read")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (status, _, body) = send(
        Client::new()
            .post(format!("{base}/nosuchtenant.example/oauth2/v2.0/token"))
            .form(&form(microsoft::CLIENT_SECRET, microsoft::GRAPH_SCOPE)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error_description"]
            .as_str()
            .expect("description")
            .starts_with("AADSTS90002")
    );
}

#[tokio::test]
async fn partner_center_continuation_visits_every_customer_once() {
    let (ms, world) = serve(Kind::Microsoft, BIG_WORLD, Settings::default()).await;
    let base = &ms.base_url;
    let pc = ms_token(
        base,
        microsoft::PARTNER_TENANT_ID,
        microsoft::PARTNER_CENTER_SCOPE,
    )
    .await;
    let mut seen = Vec::new();
    let (status, headers, mut page) = send(
        Client::new()
            .get(format!("{base}/v1/customers?size=100"))
            .bearer_auth(&pc)
            .header("MS-RequestId", "11111111-2222-4333-8444-555555555555")
            .header("MS-CorrelationId", "99999999-8888-4777-8666-555555555555"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["ms-requestid"],
        "11111111-2222-4333-8444-555555555555"
    );
    assert_eq!(
        headers["ms-correlationid"],
        "99999999-8888-4777-8666-555555555555"
    );
    let mut pages = 1;
    loop {
        assert_eq!(page["attributes"]["objectType"], "Collection");
        let items = page["items"].as_array().expect("items");
        assert_eq!(page["totalCount"], json!(items.len()));
        assert!(items.len() <= 100);
        seen.extend(items.iter().map(|c| {
            c["companyProfile"]["tenantId"]
                .as_str()
                .expect("tenant")
                .to_owned()
        }));
        let Some(next) = page["links"].get("next") else {
            assert!(page.get("continuationToken").is_none());
            break;
        };
        let header = &next["headers"][0];
        assert_eq!(header["key"], "MS-ContinuationToken");
        assert_eq!(header["value"], page["continuationToken"]);
        let (status, _, next_page) = send(
            Client::new()
                .get(format!("{base}{}", next["uri"].as_str().expect("uri")))
                .bearer_auth(&pc)
                .header(
                    "MS-ContinuationToken",
                    header["value"].as_str().expect("token"),
                ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        page = next_page;
        pages += 1;
        assert!(pages < 100, "continuation never ends");
    }
    let expected = world.vendor_customers().count() + 1;
    assert!(expected > 1000);
    assert_eq!(seen.len(), expected);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        expected,
        "a customer was served twice"
    );
    // A forged continuation token is refused.
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/customers?size=100&seekOperation=Next"))
            .bearer_auth(&pc)
            .header("MS-ContinuationToken", "bm9wZQ"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn partner_center_patch_changes_quantity_within_new_commerce_rules() {
    let (ms, _) = serve(Kind::Microsoft, 30, Settings::default()).await;
    let base = &ms.base_url;
    let pc = ms_token(
        base,
        microsoft::PARTNER_TENANT_ID,
        microsoft::PARTNER_CENTER_SCOPE,
    )
    .await;
    let tenant = ms_tenants(base).await[0]["tenantId"]
        .as_str()
        .expect("id")
        .to_owned();
    let list = format!("{base}/v1/customers/{tenant}/subscriptions");
    let (status, _, body) = send(Client::new().get(&list).bearer_auth(&pc)).await;
    assert_eq!(status, StatusCode::OK);
    let sub = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|s| s["status"] == "active" && s["offerName"] == "Microsoft 365 Business Premium")
        .expect("every customer takes Business Premium")
        .clone();
    for field in [
        "offerId",
        "commitmentEndDate",
        "effectiveStartDate",
        "billingCycle",
        "termDuration",
        "autoRenewEnabled",
    ] {
        assert!(!sub[field].is_null(), "{field} missing");
    }
    let url = format!("{list}/{}", sub["id"].as_str().expect("id"));
    let quantity = sub["quantity"].as_u64().expect("quantity");
    let refundable = sub["refundableQuantity"]["totalQuantity"]
        .as_u64()
        .expect("totalQuantity");

    let mut raise = sub.clone();
    raise["quantity"] = json!(quantity + 2);
    let (status, _, raised) = send(Client::new().patch(&url).bearer_auth(&pc).json(&raise)).await;
    assert_eq!(status, StatusCode::OK, "{raised}");
    assert_eq!(raised["quantity"], json!(quantity + 2));
    assert_eq!(
        raised["refundableQuantity"]["totalQuantity"],
        json!(refundable + 2)
    );
    assert_ne!(raised["attributes"]["etag"], sub["attributes"]["etag"]);

    // The stale etag is refused; a decrease beyond the refundable seats too.
    let (status, _, _) = send(
        Client::new()
            .patch(&url)
            .bearer_auth(&pc)
            .header(
                "If-Match",
                sub["attributes"]["etag"].as_str().expect("etag"),
            )
            .json(&raise),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let mut too_low = raised.clone();
    too_low["quantity"] = json!(quantity + 2 - (refundable + 3));
    if too_low["quantity"].as_u64().is_some() {
        let (status, _, body) =
            send(Client::new().patch(&url).bearer_auth(&pc).json(&too_low)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let mut back = raised.clone();
    back["quantity"] = json!(quantity);
    let (status, _, body) = send(
        Client::new()
            .patch(&url)
            .bearer_auth(&pc)
            .header(
                "If-Match",
                raised["attributes"]["etag"].as_str().expect("etag"),
            )
            .json(&back),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quantity"], json!(quantity));
    assert_eq!(
        body["refundableQuantity"]["totalQuantity"],
        json!(refundable)
    );

    // Graph's prepaid seats follow the bought quantity.
    let graph = ms_token(base, &tenant, microsoft::GRAPH_SCOPE).await;
    let mut raise_again = body.clone();
    raise_again["quantity"] = json!(quantity + 5);
    let (status, _, _) = send(
        Client::new()
            .patch(&url)
            .bearer_auth(&pc)
            .json(&raise_again),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, skus) = send(
        Client::new()
            .get(format!("{base}/v1.0/subscribedSkus"))
            .bearer_auth(&graph),
    )
    .await;
    let spb = skus["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|s| s["skuPartNumber"] == "SPB")
        .expect("SPB");
    let others: u64 =
        body_items_quantity(base, &pc, &tenant, sub["id"].as_str().expect("id")).await;
    assert_eq!(spb["prepaidUnits"]["enabled"], json!(quantity + 5 + others));

    let mut mismatched = body.clone();
    mismatched["id"] = json!("00000000-0000-4000-8000-000000000000");
    let (status, _, _) = send(Client::new().patch(&url).bearer_auth(&pc).json(&mismatched)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Quantity of the tenant's other active Business Premium subscriptions.
async fn body_items_quantity(base: &str, pc: &str, tenant: &str, except: &str) -> u64 {
    let (_, _, body) = send(
        Client::new()
            .get(format!("{base}/v1/customers/{tenant}/subscriptions"))
            .bearer_auth(pc),
    )
    .await;
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|s| {
            s["status"] == "active"
                && s["offerName"] == "Microsoft 365 Business Premium"
                && s["id"] != except
        })
        .map(|s| s["quantity"].as_u64().expect("quantity"))
        .sum()
}

#[tokio::test]
async fn partner_center_limits_requests_per_customer_tenant() {
    let settings = Settings {
        microsoft: microsoft::Settings {
            subscription_requests_per_minute: 3,
            ..microsoft::Settings::default()
        },
        ..Settings::default()
    };
    let (ms, _) = serve(Kind::Microsoft, 10, settings).await;
    let base = &ms.base_url;
    let pc = ms_token(
        base,
        microsoft::PARTNER_TENANT_ID,
        microsoft::PARTNER_CENTER_SCOPE,
    )
    .await;
    let tenants = ms_tenants(base).await;
    let url = |i: usize| {
        format!(
            "{base}/v1/customers/{}/subscriptions",
            tenants[i]["tenantId"].as_str().expect("id")
        )
    };
    for _ in 0..3 {
        assert_eq!(
            send(Client::new().get(url(0)).bearer_auth(&pc)).await.0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = send(Client::new().get(url(0)).bearer_auth(&pc)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=60).contains(&retry_after(&headers)));
    assert_eq!(body["statusCode"], 429);
    assert_eq!(
        send(Client::new().get(url(1)).bearer_auth(&pc)).await.0,
        StatusCode::OK,
        "another tenant has its own budget"
    );
}

// ---------------------------------------------------------------------------
// Pax8

async fn pax8_token(base: &str) -> String {
    let (status, _, body) = send(Client::new().post(format!("{base}/v1/token")).json(&json!({
        "audience": pax8::AUDIENCE,
        "grant_type": "client_credentials",
        "client_id": pax8::CLIENT_ID,
        "client_secret": pax8::CLIENT_SECRET,
    })))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 86_400);
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expires_at"))
            .is_ok()
    );
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn pax8_token_and_bearer_are_enforced() {
    let (p8, _) = serve(Kind::Pax8, 10, Settings::default()).await;
    let base = &p8.base_url;
    let (status, _, body) = send(Client::new().get(format!("{base}/v1/companies"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "UNAUTHORIZED");
    assert_eq!(body["instance"], "/v1/companies");
    assert_eq!(body["status"], 401);
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/companies"))
            .bearer_auth("forged"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token_body = |secret: &str, audience: &str| {
        json!({
            "audience": audience, "grant_type": "client_credentials",
            "client_id": pax8::CLIENT_ID, "client_secret": secret,
        })
    };
    let (status, _, body) = send(
        Client::new()
            .post(format!("{base}/v1/token"))
            .json(&token_body("wrong", pax8::AUDIENCE)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("access_denied"))
    );
    let (status, _, _) = send(
        Client::new()
            .post(format!("{base}/v1/token"))
            .json(&token_body(pax8::CLIENT_SECRET, "api://elsewhere")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = pax8_token(base).await;
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/companies"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn pax8_pages_are_zero_based_and_cover_every_company() {
    let (p8, world) = serve(Kind::Pax8, BIG_WORLD, Settings::default()).await;
    let base = &p8.base_url;
    let token = pax8_token(base).await;
    let expected = world.vendor_customers().count() + 1;
    let mut ids = Vec::new();
    let mut number = 0;
    loop {
        let (status, _, body) = send(
            Client::new()
                .get(format!("{base}/v1/companies"))
                .query(&[
                    ("page", number.to_string()),
                    ("size", "200".into()),
                    ("sort", "name,ASC".into()),
                ])
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let page = &body["page"];
        assert_eq!(page["number"], json!(number));
        assert_eq!(page["size"], 200);
        assert_eq!(page["totalElements"], json!(expected));
        assert_eq!(page["totalPages"], json!(expected.div_ceil(200)));
        let content = body["content"].as_array().expect("content");
        let names: Vec<String> = content
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_ascii_lowercase())
            .collect();
        assert!(
            names.windows(2).all(|w| w[0] <= w[1]),
            "sort=name,ASC not honoured"
        );
        ids.extend(
            content
                .iter()
                .map(|c| c["id"].as_str().expect("id").to_owned()),
        );
        number += 1;
        if number >= page["totalPages"].as_u64().expect("pages") {
            break;
        }
    }
    assert!(expected > 1000);
    assert_eq!(ids.len(), expected);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), expected);
    // Past the end: empty content, same totals. Over the cap: cut to 200.
    let (_, _, body) = send(
        Client::new()
            .get(format!("{base}/v1/companies?page=99&size=200"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(body["content"], json!([]));
    let (_, _, body) = send(
        Client::new()
            .get(format!("{base}/v1/companies?page=0&size=1000"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(body["page"]["size"], 200);
    assert_eq!(body["content"].as_array().expect("content").len(), 200);
    let (status, _, body) = send(
        Client::new()
            .get(format!("{base}/v1/companies?page=-1"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BAD_REQUEST"))
    );
}

#[tokio::test]
async fn pax8_active_subscriptions_carry_the_reported_quantities() {
    let (p8, world) = serve(Kind::Pax8, 150, Settings::default()).await;
    let base = &p8.base_url;
    let token = pax8_token(base).await;
    let (_, _, companies) =
        send(Client::new().get(format!("{base}/_emulator/pax8/companies"))).await;
    let (_, _, products) = send(
        Client::new()
            .get(format!("{base}/v1/products?size=50"))
            .bearer_auth(&token),
    )
    .await;
    let backup = products["content"]
        .as_array()
        .expect("content")
        .iter()
        .find(|p| p["name"] == "Dropsuite Microsoft 365 Backup")
        .expect("catalogue product")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _, detail) = send(
        Client::new()
            .get(format!("{base}/v1/products/{backup}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, detail["vendorName"].as_str()),
        (StatusCode::OK, Some("Dropsuite"))
    );
    let mut all = Vec::new();
    for page in 0.. {
        let (status, _, body) = send(
            Client::new()
                .get(format!("{base}/v1/subscriptions"))
                .query(&[
                    ("status", "Active"),
                    ("productId", backup.as_str()),
                    ("page", &page.to_string()),
                    ("size", "200"),
                ])
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let content = body["content"].as_array().expect("content").clone();
        if content.is_empty() {
            break;
        }
        all.extend(content);
    }
    let mut checked = 0;
    for company in companies.as_array().expect("companies") {
        let Some(index) = company["customerIndex"].as_u64() else {
            continue;
        };
        let expected: u64 = reported_usage(&world.customers[index as usize])
            .iter()
            .filter(|(p, _)| matches!(p.source, VendorSource::Pax8Subscription { .. }))
            .map(|(_, units)| u64::from(*units))
            .sum();
        let served: u64 = all
            .iter()
            .filter(|s| s["companyId"] == company["companyId"])
            .map(|s| s["quantity"].as_u64().expect("quantity"))
            .sum();
        assert_eq!(served, expected, "{}", company["name"]);
        checked += u64::from(expected > 0);
    }
    assert!(checked > 20);
    let sub = &all[0];
    for field in [
        "vendorSubscriptionId",
        "price",
        "partnerCost",
        "currencyCode",
        "startDate",
        "billingTerm",
        "createdDate",
    ] {
        assert!(!sub[field].is_null(), "{field} missing");
    }
    assert_eq!(sub["price"], json!(4), "catalogue price as a JSON number");
    assert_eq!(sub["partnerCost"], json!(1.6));
    // Noise exists next to the truth, and bad enum values are refused.
    let (_, _, trials) = send(
        Client::new()
            .get(format!(
                "{base}/v1/subscriptions?status=Trial&billingTerm=Trial&size=200"
            ))
            .bearer_auth(&token),
    )
    .await;
    assert!(trials["page"]["totalElements"].as_u64().expect("total") > 0);
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/subscriptions?status=Enabled"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pax8_put_is_a_partial_update() {
    let (p8, _) = serve(Kind::Pax8, 60, Settings::default()).await;
    let base = &p8.base_url;
    let token = pax8_token(base).await;
    let (_, _, body) = send(
        Client::new()
            .get(format!("{base}/v1/subscriptions?status=Active&size=1"))
            .bearer_auth(&token),
    )
    .await;
    let sub = body["content"][0].clone();
    let url = format!(
        "{base}/v1/subscriptions/{}",
        sub["id"].as_str().expect("id")
    );
    let (status, _, updated) = send(
        Client::new()
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"quantity": 7})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["quantity"], 7);
    assert_eq!(
        updated["price"], sub["price"],
        "price untouched when not sent"
    );
    assert_eq!(updated["billingTerm"], sub["billingTerm"]);
    let (_, _, read) = send(Client::new().get(&url).bearer_auth(&token)).await;
    assert_eq!(read["quantity"], 7);
    let (status, _, updated) = send(
        Client::new()
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"price": 5.25})),
    )
    .await;
    assert_eq!(
        (
            status,
            updated["price"].clone(),
            updated["quantity"].clone()
        ),
        (StatusCode::OK, json!(5.25), json!(7))
    );
    for bad in [
        json!({}),
        json!({"quantity": 0}),
        json!({"price": 1.005}),
        json!({"billingTerm": "Weekly"}),
    ] {
        let (status, _, body) = send(Client::new().put(&url).bearer_auth(&token).json(&bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (status, _, _) = send(Client::new().delete(&url).bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(
        Client::new()
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"quantity": 8})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a cancelled subscription cannot change"
    );
}

#[tokio::test]
async fn pax8_answers_429_past_its_rate_limit() {
    let settings = Settings {
        pax8: pax8::Settings {
            requests_per_minute: 2,
            ..pax8::Settings::default()
        },
        ..Settings::default()
    };
    let (p8, _) = serve(Kind::Pax8, 5, settings).await;
    let base = &p8.base_url;
    let token = pax8_token(base).await;
    for _ in 0..2 {
        assert_eq!(
            send(
                Client::new()
                    .get(format!("{base}/v1/companies"))
                    .bearer_auth(&token)
            )
            .await
            .0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = send(
        Client::new()
            .get(format!("{base}/v1/companies"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["type"], "TOO_MANY_REQUESTS");
    assert!((1..=60).contains(&retry_after(&headers)));
}

// ---------------------------------------------------------------------------
// NinjaOne

async fn ninja_token(base: &str, scope: &str) -> String {
    let (status, _, body) = send(Client::new().post(format!("{base}/oauth/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", ninjaone::CLIENT_ID),
        ("client_secret", ninjaone::CLIENT_SECRET),
        ("scope", scope),
    ]))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3600);
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn ninjaone_tokens_and_scopes_are_enforced() {
    let (nj, _) = serve(Kind::NinjaOne, 10, Settings::default()).await;
    let base = &nj.base_url;
    let (status, _, body) = send(Client::new().post(format!("{base}/ws/oauth/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "someone-else"),
        ("client_secret", "x"),
    ]))
    .await;
    assert_eq!(
        (status, body["resultCode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Client app not exist"))
    );
    let (status, _, _) = send(Client::new().post(format!("{base}/oauth/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", ninjaone::CLIENT_ID),
        ("client_secret", "wrong"),
        ("scope", "monitoring"),
    ]))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(Client::new().get(format!("{base}/api/v2/devices"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let management_only = ninja_token(base, "management").await;
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/api/v2/devices"))
            .bearer_auth(&management_only),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = ninja_token(base, "monitoring management control").await;
    for prefix in ["/api/v2", "/v2"] {
        let (status, _, body) = send(
            Client::new()
                .get(format!("{base}{prefix}/organizations"))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.as_array().expect("a plain array").len() > 5);
    }
}

/// Every record of a NinjaOne list, following the `after` cursor with
/// `pageSize`-long pages until a short page; `query` holds any other
/// parameters (e.g. `df`).
async fn ninja_walk(
    base: &str,
    token: &str,
    path: &str,
    query: &[(&str, &str)],
    page_size: usize,
) -> Vec<Value> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let size = page_size.to_string();
        let after_text = after.to_string();
        let mut params = query.to_vec();
        params.extend([("pageSize", size.as_str()), ("after", after_text.as_str())]);
        let (status, _, body) = send(
            Client::new()
                .get(format!("{base}{path}"))
                .query(&params)
                .bearer_auth(token),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body.as_array().expect("a plain array").clone();
        // NinjaOne's documented end is an empty page; the emulator serves
        // fewer than asked (at most 300), so a short page is not the end.
        let done = page.is_empty();
        if let Some(last) = page.last() {
            after = last["id"].as_u64().expect("id");
        }
        records.extend(page);
        if done {
            return records;
        }
    }
}

#[tokio::test]
async fn ninjaone_after_cursor_visits_every_organization_once() {
    let (nj, world) = serve(Kind::NinjaOne, BIG_WORLD, Settings::default()).await;
    let base = &nj.base_url;
    let token = ninja_token(base, "monitoring").await;
    let ids: Vec<u64> = ninja_walk(base, &token, "/api/v2/organizations", &[], 100)
        .await
        .iter()
        .map(|o| o["id"].as_u64().expect("id"))
        .collect();
    let expected = world.vendor_customers().count() + 1;
    assert!(expected > 1000);
    assert_eq!(ids.len(), expected);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), expected);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn ninjaone_class_filter_and_cursor_count_the_reported_devices() {
    let (nj, world) = serve(Kind::NinjaOne, 60, Settings::default()).await;
    let base = &nj.base_url;
    let token = ninja_token(base, "monitoring").await;
    let (_, _, orgs) =
        send(Client::new().get(format!("{base}/_emulator/ninjaone/organizations"))).await;
    let classes = ["WINDOWS_WORKSTATION", "MAC", "LINUX_WORKSTATION"];
    let df = format!("class in ({}) AND status eq APPROVED", classes.join(","));
    // Walk every matching device with a small page to exercise the cursor.
    let devices = ninja_walk(base, &token, "/api/v2/devices", &[("df", df.as_str())], 37).await;
    assert!(devices.iter().all(
        |d| classes.contains(&d["nodeClass"].as_str().expect("class"))
            && d["approvalStatus"] == "APPROVED"
    ));
    let ids: HashSet<u64> = devices
        .iter()
        .map(|d| d["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids.len(), devices.len(), "a device was served twice");
    let cutoff = chrono::Utc::now().timestamp() as f64 - 30.0 * 86_400.0;
    let mut stale_seen = false;
    for org in orgs.as_array().expect("orgs") {
        let Some(index) = org["customerIndex"].as_u64() else {
            continue;
        };
        let expected: usize = reported_usage(&world.customers[index as usize])
            .iter()
            .filter(|(p, _)| p.identifier == "RMM-WS")
            .map(|(_, units)| *units as usize)
            .sum();
        let in_org: Vec<&Value> = devices
            .iter()
            .filter(|d| d["organizationId"] == org["id"])
            .collect();
        stale_seen |= in_org
            .iter()
            .any(|d| d["lastContact"].as_f64().expect("lastContact") < cutoff);
        let recent = in_org
            .iter()
            .filter(|d| d["lastContact"].as_f64().expect("lastContact") >= cutoff)
            .count();
        assert_eq!(recent, expected, "{}", org["name"]);
    }
    assert!(
        stale_seen,
        "stale approved workstations are part of the noise"
    );
    let (status, _, body) = send(
        Client::new()
            .get(format!("{base}/api/v2/devices"))
            .query(&[("df", "class in (TOASTER)")])
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errorMessage"]
            .as_str()
            .expect("message")
            .contains("TOASTER")
    );
    let (_, _, pending) = send(
        Client::new()
            .get(format!("{base}/api/v2/devices"))
            .query(&[("df", "status = PENDING")])
            .bearer_auth(&token),
    )
    .await;
    assert!(
        !pending.as_array().expect("array").is_empty(),
        "unapproved devices are part of the noise"
    );
}

#[tokio::test]
async fn ninjaone_organization_devices_and_device_detail() {
    let (nj, _) = serve(Kind::NinjaOne, 20, Settings::default()).await;
    let base = &nj.base_url;
    let token = ninja_token(base, "monitoring").await;
    let (_, _, orgs) =
        send(Client::new().get(format!("{base}/_emulator/ninjaone/organizations"))).await;
    let org = &orgs[2];
    let (status, _, devices) = send(
        Client::new()
            .get(format!("{base}/api/v2/organization/{}/devices", org["id"]))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let devices = devices.as_array().expect("array");
    assert_eq!(json!(devices.len()), org["devices"]);
    assert!(devices.iter().all(|d| d["organizationId"] == org["id"]));
    let ws = devices
        .iter()
        .find(|d| d["nodeClass"] == "WINDOWS_WORKSTATION")
        .expect("a workstation");
    assert!(ws["lastContact"].is_f64(), "epoch seconds as a float");
    let (status, _, detail) = send(
        Client::new()
            .get(format!("{base}/api/v2/device/{}", ws["id"]))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["os"]["manufacturer"], "Microsoft Corporation");
    assert_eq!(detail["systemName"], ws["systemName"]);
    let (status, _, org_detail) = send(
        Client::new()
            .get(format!("{base}/api/v2/organization/{}", org["id"]))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !org_detail["locations"]
            .as_array()
            .expect("locations")
            .is_empty()
    );
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/api/v2/device/999999"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ninjaone_scale_world_serves_ten_thousand_device_pages() {
    let settings = Settings {
        ninjaone: ninjaone::Settings {
            devices_per_org: Some(100),
            ..ninjaone::Settings::default()
        },
        ..Settings::default()
    };
    let started = Instant::now();
    let (nj, world) = serve(Kind::NinjaOne, 1000, settings).await;
    let build_time = started.elapsed();
    let base = &nj.base_url;
    let token = ninja_token(base, "monitoring").await;
    let total = ninja_walk(base, &token, "/api/v2/devices", &[], 10_000)
        .await
        .len();
    let orgs = world.vendor_customers().count();
    assert_eq!(total, orgs * 100 + 10, "every device once");
    // Not a benchmark: only that building the world is not pathologically slow.
    assert!(build_time < Duration::from_secs(30), "{build_time:?}");
}

// ---------------------------------------------------------------------------
// Huntress

fn huntress(request: RequestBuilder) -> RequestBuilder {
    request.basic_auth(huntress::PUBLIC_KEY, Some(huntress::PRIVATE_KEY))
}

fn unlimited_huntress() -> Settings {
    Settings {
        huntress: huntress::Settings {
            requests_per_minute: None,
            ..huntress::Settings::default()
        },
        ..Settings::default()
    }
}

#[tokio::test]
async fn huntress_basic_auth_is_enforced() {
    let (hu, _) = serve(Kind::Huntress, 10, Settings::default()).await;
    let base = &hu.base_url;
    let (status, headers, _) = send(Client::new().get(format!("{base}/v1/account"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/account"))
            .basic_auth(huntress::PUBLIC_KEY, Some("wrong")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        Client::new()
            .get(format!("{base}/v1/account"))
            .bearer_auth(huntress::PRIVATE_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(huntress(Client::new().get(format!("{base}/v1/account")))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["account"]["id"], huntress::ACCOUNT_ID);
}

#[tokio::test]
async fn huntress_page_style_visits_every_organization_once() {
    let (hu, _) = serve(Kind::Huntress, BIG_HUNTRESS_WORLD, unlimited_huntress()).await;
    let base = &hu.base_url;
    let (_, _, inspected) =
        send(Client::new().get(format!("{base}/_emulator/huntress/organizations"))).await;
    let expected = inspected.as_array().expect("orgs").len();
    assert!(expected > 1000);
    let mut ids = Vec::new();
    let mut page = 1;
    loop {
        let (status, _, body) = send(huntress(
            Client::new().get(format!("{base}/v1/organizations?limit=500&page={page}")),
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        let pagination = &body["pagination"];
        assert_eq!(pagination["current_page"], json!(page));
        assert_eq!(pagination["total_count"], json!(expected));
        assert_eq!(pagination["total_pages"], json!(expected.div_ceil(500)));
        ids.extend(
            body["organizations"]
                .as_array()
                .expect("organizations")
                .iter()
                .map(|o| o["id"].as_u64().expect("id")),
        );
        match pagination["next_page"].as_u64() {
            Some(next) => page = next,
            None => break,
        }
    }
    assert_eq!(ids.len(), expected);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), expected);
    // limit is capped at 500.
    let (_, _, body) = send(huntress(
        Client::new().get(format!("{base}/v1/organizations?limit=2000")),
    ))
    .await;
    assert_eq!(body["pagination"]["limit"], 500);
    assert_eq!(
        body["organizations"]
            .as_array()
            .expect("organizations")
            .len(),
        500
    );
}

#[tokio::test]
async fn huntress_token_style_visits_every_organization_once() {
    let (hu, _) = serve(Kind::Huntress, BIG_HUNTRESS_WORLD, unlimited_huntress()).await;
    let base = &hu.base_url;
    let mut ids = Vec::new();
    let (status, _, mut body) = send(huntress(
        Client::new().get(format!("{base}/v1/organizations?limit=300")),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    loop {
        ids.extend(
            body["organizations"]
                .as_array()
                .expect("organizations")
                .iter()
                .map(|o| o["id"].as_u64().expect("id")),
        );
        let Some(token) = body["pagination"]["next_page_token"]
            .as_str()
            .map(str::to_owned)
        else {
            assert!(body["pagination"].get("next_page_url").is_none());
            break;
        };
        let (status, _, next) = send(huntress(
            Client::new()
                .get(format!("{base}/v1/organizations"))
                .query(&[("limit", "300"), ("page_token", token.as_str())]),
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            next["pagination"].get("current_page").is_none(),
            "token style has no page numbers"
        );
        body = next;
    }
    let unique: HashSet<_> = ids.iter().collect();
    assert!(ids.len() > 1000);
    assert_eq!(unique.len(), ids.len());
    let (status, _, _) = send(huntress(
        Client::new().get(format!("{base}/v1/organizations?page_token=forged")),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn huntress_agent_counts_match_the_reported_edr_usage() {
    let (hu, world) = serve(Kind::Huntress, 80, unlimited_huntress()).await;
    let base = &hu.base_url;
    let (_, _, orgs) =
        send(Client::new().get(format!("{base}/_emulator/huntress/organizations"))).await;
    let mut checked = 0;
    for org in orgs.as_array().expect("orgs").iter().take(25) {
        let (status, _, detail) = send(huntress(
            Client::new().get(format!("{base}/v1/organizations/{}", org["id"])),
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        let detail = &detail["organization"];
        let edr = &detail["actual_usages"]["edr"];
        let billable = edr["billable_agents_count"].as_u64().expect("billable");
        let unresponsive = edr["unresponsive_agents_count"]
            .as_u64()
            .expect("unresponsive");
        assert_eq!(
            json!(billable + unresponsive),
            detail["agents_count"],
            "agents_count counts the unresponsive agents too"
        );
        assert!(
            detail.get("edr").is_none(),
            "the older block only on request"
        );
        let mut listed = 0;
        let mut page = 1;
        loop {
            let (_, _, agents) = send(huntress(Client::new().get(format!(
                "{base}/v1/agents?organization_id={}&limit=7&page={page}",
                org["id"]
            ))))
            .await;
            let batch = agents["agents"].as_array().expect("agents");
            assert!(batch.iter().all(|a| a["organization_id"] == org["id"]));
            listed += batch.len();
            match agents["pagination"]["next_page"].as_u64() {
                Some(next) => page = next,
                None => break,
            }
        }
        assert_eq!(json!(listed), detail["agents_count"]);
        if let Some(index) = org["customerIndex"].as_u64() {
            let expected: u32 = reported_usage(&world.customers[index as usize])
                .iter()
                .filter(|(p, _)| matches!(p.source, VendorSource::HuntressAgents))
                .map(|(_, units)| *units)
                .sum();
            assert_eq!(json!(billable), json!(expected), "{}", org["name"]);
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[tokio::test]
async fn huntress_answers_429_past_its_rate_limit() {
    let settings = Settings {
        huntress: huntress::Settings {
            requests_per_minute: Some(3),
            ..huntress::Settings::default()
        },
        ..Settings::default()
    };
    let (hu, _) = serve(Kind::Huntress, 5, settings).await;
    let base = &hu.base_url;
    for _ in 0..3 {
        assert_eq!(
            send(huntress(
                Client::new().get(format!("{base}/v1/organizations"))
            ))
            .await
            .0,
            StatusCode::OK
        );
    }
    let (status, headers, _) = send(huntress(
        Client::new().get(format!("{base}/v1/organizations")),
    ))
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=60).contains(&retry_after(&headers)));
}

// ---------------------------------------------------------------------------
// Fault switches

#[tokio::test]
async fn paging_loop_fault_repeats_every_vendors_cursor() {
    // Partner Center: the continuation token handed back is the one sent.
    let (ms, _) = serve(Kind::Microsoft, 30, Settings::default()).await;
    let pc = ms_token(
        &ms.base_url,
        microsoft::PARTNER_TENANT_ID,
        microsoft::PARTNER_CENTER_SCOPE,
    )
    .await;
    let (_, _, first) = send(
        Client::new()
            .get(format!("{}/v1/customers?size=5", ms.base_url))
            .bearer_auth(&pc),
    )
    .await;
    let token = first["continuationToken"]
        .as_str()
        .expect("token")
        .to_owned();
    set_faults(&ms.base_url, json!({"paging_loop": true})).await;
    let (_, _, second) = send(
        Client::new()
            .get(format!(
                "{}/v1/customers?size=5&seekOperation=Next",
                ms.base_url
            ))
            .bearer_auth(&pc)
            .header("MS-ContinuationToken", &token),
    )
    .await;
    assert_eq!(
        second["continuationToken"],
        json!(token),
        "the cursor repeats"
    );

    // Pax8: every page number answers page 0.
    let (p8, _) = serve(Kind::Pax8, 30, Settings::default()).await;
    let p8_token = pax8_token(&p8.base_url).await;
    set_faults(
        &p8.base_url,
        json!({"paging_loop": true, "path_contains": "/v1/companies"}),
    )
    .await;
    let (_, _, page0) = send(
        Client::new()
            .get(format!("{}/v1/companies?page=0&size=5", p8.base_url))
            .bearer_auth(&p8_token),
    )
    .await;
    let (_, _, page1) = send(
        Client::new()
            .get(format!("{}/v1/companies?page=1&size=5", p8.base_url))
            .bearer_auth(&p8_token),
    )
    .await;
    assert_eq!(page1["page"]["number"], 0);
    assert_eq!(page1["content"], page0["content"]);

    // NinjaOne: `after` is ignored, so the computed cursor repeats.
    let (nj, _) = serve(Kind::NinjaOne, 30, Settings::default()).await;
    let nj_token = ninja_token(&nj.base_url, "monitoring").await;
    set_faults(&nj.base_url, json!({"paging_loop": true})).await;
    let url = |after: u64| format!("{}/api/v2/devices?pageSize=10&after={after}", nj.base_url);
    let (_, _, a) = send(Client::new().get(url(0)).bearer_auth(&nj_token)).await;
    let last = a[9]["id"].as_u64().expect("id");
    let (_, _, b) = send(Client::new().get(url(last)).bearer_auth(&nj_token)).await;
    assert_eq!(b[9]["id"], json!(last));

    // Huntress: next_page and next_page_token point at the page just served.
    let (hu, _) = serve(Kind::Huntress, 30, unlimited_huntress()).await;
    set_faults(&hu.base_url, json!({"paging_loop": true})).await;
    let (_, _, body) = send(huntress(
        Client::new().get(format!("{}/v1/organizations?limit=5&page=2", hu.base_url)),
    ))
    .await;
    assert_eq!(body["pagination"]["next_page"], 2);
    let (_, _, body) = send(huntress(
        Client::new().get(format!("{}/v1/organizations?limit=5", hu.base_url)),
    ))
    .await;
    let token = body["pagination"]["next_page_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, _, again) = send(huntress(
        Client::new()
            .get(format!("{}/v1/organizations", hu.base_url))
            .query(&[("limit", "5"), ("page_token", token.as_str())]),
    ))
    .await;
    assert_eq!(again["pagination"]["next_page_token"], json!(token));
    // Switching the fault off restores progress.
    let status = Client::new()
        .delete(format!("{}/_emulator/faults", hu.base_url))
        .send()
        .await
        .expect("reset")
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, body) = send(huntress(
        Client::new().get(format!("{}/v1/organizations?limit=5&page=2", hu.base_url)),
    ))
    .await;
    assert_eq!(body["pagination"]["next_page"], 3);
}

#[tokio::test]
async fn generic_faults_hit_vendor_routes_and_spare_inspection() {
    let (p8, _) = serve(Kind::Pax8, 20, Settings::default()).await;
    let base = &p8.base_url;
    let token = pax8_token(base).await;
    let companies = format!("{base}/v1/companies?size=50");

    set_faults(base, json!({"server_errors": 1})).await;
    // Inspection routes are never faulted.
    let (status, _, _) = send(Client::new().get(format!("{base}/_emulator/pax8/companies"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        send(Client::new().get(&companies).bearer_auth(&token))
            .await
            .0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        send(Client::new().get(&companies).bearer_auth(&token))
            .await
            .0,
        StatusCode::OK
    );

    set_faults(base, json!({"rate_limited": 1, "retry_after_secs": 7})).await;
    let (status, headers, _) = send(Client::new().get(&companies).bearer_auth(&token)).await;
    assert_eq!(
        (status, retry_after(&headers)),
        (StatusCode::TOO_MANY_REQUESTS, 7)
    );

    set_faults(base, json!({"truncated": 1})).await;
    let response = Client::new()
        .get(&companies)
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "a truncated body is not JSON"
    );

    set_faults(base, json!({"slow": 1, "slow_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(
        send(Client::new().get(&companies).bearer_auth(&token))
            .await
            .0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    let (_, _, stats) = send(Client::new().get(format!("{base}/_emulator/stats"))).await;
    for kind in ["server_error", "rate_limited", "truncated", "slow"] {
        assert_eq!(stats["injected"][kind], 1, "{kind}");
    }
    assert!(
        stats["by_route"]
            .get("GET /_emulator/pax8/companies")
            .is_none()
    );
}
