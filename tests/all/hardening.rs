//! Issue 17's guards over real HTTP (the served router on 127.0.0.1:0,
//! SQLite in a temporary directory): JSON bodies must be objects of the
//! documented schema sent as `application/json` (every JSON-body route of
//! the OpenAPI document), the last enabled admin cannot be disabled or
//! demoted, and a password spray from one address is slowed.

use axum::http::Method;
use trueup::auth::Role;
use trueup::web;

use crate::web_auth::{Client, NO_WORKERS, add_token, add_user, bare_app, concrete, serve};

/// The routes whose request body is JSON, from the served OpenAPI
/// document: (method, path pattern).
async fn json_body_routes(client: &Client) -> Vec<(Method, String)> {
    let document = client.get("/api/openapi.json").await.json();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            if operation["requestBody"]["content"]["application/json"].is_null() {
                continue;
            }
            // The push API reads its own body (one item or a batch) and
            // has its own tests (ingest_push).
            if path == "/api/v1/usage" {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            routes.push((method, path.clone()));
        }
    }
    routes
}

/// Issue 17 (4): on every JSON-body route, a wrong Content-Type is 415, an
/// array (or any non-object) is 400 — it was read as a struct by position
/// and `[false]` once disabled an admin — and an unknown field is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_objects_of_the_schema_sent_as_json() {
    let (app, dir) = bare_app().await;
    let token = add_token(&app, "admin-token", Role::Admin).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let admin = Client::with_token(&server.base, &token);
    let routes = json_body_routes(&admin).await;
    assert!(
        routes.len() >= 15,
        "the document lists the JSON-body routes: {routes:?}"
    );
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for (method, pattern) in &routes {
        let url = format!("{}{}", server.base, concrete(pattern));
        let send = |content_type: Option<&'static str>, body: &'static str| {
            let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
            let mut request = http
                .request(method, &url)
                .header("authorization", format!("Bearer {token}"))
                .body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            async move {
                let response = request.send().await.expect("request");
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
        };
        let cases: [(&str, Option<&'static str>, &'static str, u16, &str); 5] = [
            (
                "text/plain",
                Some("text/plain"),
                "{}",
                415,
                "application/json",
            ),
            ("no content type", None, "{}", 415, "application/json"),
            (
                "an array",
                Some("application/json"),
                "[false]",
                400,
                "JSON object",
            ),
            (
                "a string",
                Some("application/json"),
                "\"admin\"",
                400,
                "JSON object",
            ),
            (
                "an unknown field",
                Some("application/json"),
                r#"{"zzz_not_a_field": true}"#,
                400,
                "unknown field",
            ),
        ];
        for (what, content_type, body, status, says) in cases {
            let (got, text) = send(content_type, body).await;
            if got != status || !text.contains(says) {
                failures.push(format!(
                    "{method} {pattern} with {what}: {got} {text} (expected {status} saying {says:?})"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 17 (9): the last enabled admin cannot be disabled or demoted, by
/// an admin API token (whose caller is not the user) either; 409 says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_disabled_or_demoted() {
    let (app, dir) = bare_app().await;
    add_user(&app, "root", Role::Admin).await;
    add_user(&app, "ann", Role::Viewer).await;
    let token = add_token(&app, "admin-token", Role::Admin).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let admin = Client::with_token(&server.base, &token);
    for change in [
        serde_json::json!({ "disabled": true }),
        serde_json::json!({ "role": "viewer" }),
        serde_json::json!({ "role": "approver", "disabled": false }),
    ] {
        let answer = admin
            .send(Method::PATCH, "/api/v1/users/root", Some(change.clone()))
            .await;
        assert_eq!(answer.status, 409, "{change}: {}", answer.text);
        assert_eq!(answer.code(), "conflict");
        assert!(
            answer.text.contains("last enabled admin"),
            "{}",
            answer.text
        );
    }
    let root = admin.get("/api/v1/users").await.json();
    let root = root
        .as_array()
        .or_else(|| root["users"].as_array())
        .expect("users")
        .iter()
        .find(|u| u["username"] == "root")
        .cloned()
        .expect("root");
    assert_eq!(root["role"], "admin", "unchanged: {root}");
    assert_eq!(root["disabled"], false, "unchanged: {root}");
    // With a second admin, the first may be demoted; then the second is
    // the last.
    let promoted = admin
        .send(
            Method::PATCH,
            "/api/v1/users/ann",
            Some(serde_json::json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    let demoted = admin
        .send(
            Method::PATCH,
            "/api/v1/users/root",
            Some(serde_json::json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text);
    let last = admin
        .send(
            Method::PATCH,
            "/api/v1/users/ann",
            Some(serde_json::json!({ "disabled": true })),
        )
        .await;
    assert_eq!(last.status, 409, "{}", last.text);
}

/// Issue 17 (10): failed logins are counted per client address as well as
/// per username, so a spray across usernames from one address is locked
/// out (429 with Retry-After) even for a right password of another user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spray_across_usernames_from_one_address_is_slowed() {
    let (app, dir) = bare_app().await;
    let password = add_user(&app, "ann", Role::Viewer).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let anonymous = Client::anonymous(&server.base);
    for i in 0..web::auth::MAX_ADDRESS_FAILURES {
        // Each username fails once: the per-username lockout never trips.
        let answer = anonymous
            .post(
                "/api/v1/session",
                serde_json::json!({ "username": format!("user-{i}"), "password": "guess-123456" }),
            )
            .await;
        assert_eq!(answer.status, 401, "attempt {i}: {}", answer.text);
    }
    let answer = anonymous
        .post(
            "/api/v1/session",
            serde_json::json!({ "username": "ann", "password": password }),
        )
        .await;
    assert_eq!(answer.status, 429, "{}", answer.text);
    let retry: u64 = answer.headers["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= web::auth::LOGIN_WINDOW.as_secs());
    assert!(answer.text.contains("this address"), "{}", answer.text);
}

/// Issue 17 (8): served over HTTPS (`secure_cookies`), every response
/// carries the configured `Strict-Transport-Security`; over plain HTTP
/// none (browsers ignore it there, and it would pin a test host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_sent_when_served_over_https() {
    use std::sync::Arc;

    use trueup::app::App;
    use trueup::config::{Config, RulesConfig, ServerConfig, StoreConfig};

    let plain = {
        let (app, dir) = bare_app().await;
        serve(app, NO_WORKERS, Some(dir)).await
    };
    let answer = Client::anonymous(&plain.base).get("/healthz").await;
    assert!(
        answer.headers.get("strict-transport-security").is_none(),
        "{:?}",
        answer.headers
    );

    for (hsts, expected) in [
        (None, Some("max-age=31536000")),
        (
            Some("max-age=600; includeSubDomains"),
            Some("max-age=600; includeSubDomains"),
        ),
        (Some(""), None),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = ServerConfig {
            secure_cookies: true,
            ..ServerConfig::default()
        };
        if let Some(hsts) = hsts {
            server.hsts = hsts.to_owned();
        }
        let config = Config {
            data_dir: dir.path().to_owned(),
            store: StoreConfig {
                url: Some(format!(
                    "sqlite://{}",
                    dir.path().join("trueup.db").display()
                )),
            },
            rules: RulesConfig {
                path: crate::support::repo_root().join("rules/default.rhai"),
            },
            server,
            ..Config::default()
        };
        let app = App::open(Arc::new(config)).await.expect("app opens");
        let served = serve(app, NO_WORKERS, Some(dir)).await;
        for path in ["/healthz", "/api/v1/session"] {
            let answer = Client::anonymous(&served.base).get(path).await;
            assert_eq!(
                answer
                    .headers
                    .get("strict-transport-security")
                    .map(|v| v.to_str().expect("text")),
                expected,
                "{hsts:?} on {path}"
            );
        }
    }
}

/// Issue 16: an MSP far from UTC, around a month boundary. The reconcile's
/// date, and so its period, is the MSP's calendar day, not the server's
/// UTC one: in Auckland the 1st of December has begun while UTC is still
/// on 30 November; in Los Angeles 30 November goes on after UTC's 1st.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_date_is_the_msps_far_from_utc() {
    use std::sync::Arc;

    use chrono::{NaiveDate, TimeZone, Utc};
    use trueup::app::App;
    use trueup::config::{BillingConfig, Config, RulesConfig, StoreConfig};

    let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).expect("date");
    for (zone, utc, msp_day, history_from) in [
        // 12:00 UTC on 30 Nov is 01:00 on 1 Dec in Auckland (NZDT, +13).
        (
            "Pacific/Auckland",
            Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0),
            day(12, 1),
            "December",
        ),
        // 05:00 UTC on 1 Dec is 21:00 on 30 Nov in Los Angeles (PST, −8).
        (
            "America/Los_Angeles",
            Utc.with_ymd_and_hms(2026, 12, 1, 5, 0, 0),
            day(11, 30),
            "November",
        ),
    ] {
        let now = utc.single().expect("instant");
        assert_ne!(now.date_naive(), msp_day, "{zone}: the dates differ");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_owned(),
            store: StoreConfig {
                url: Some(format!(
                    "sqlite://{}",
                    dir.path().join("trueup.db").display()
                )),
            },
            rules: RulesConfig {
                path: crate::support::repo_root().join("rules/default.rhai"),
            },
            billing: BillingConfig {
                time_zone: zone.to_owned(),
                ..BillingConfig::default()
            },
            ..Config::default()
        };
        let app = App::open_with_clock(Arc::new(config), Arc::new(move || now))
            .await
            .expect("app opens");
        assert_eq!(app.today(), msp_day, "{zone}");
        let summary = app.reconcile().await.expect("reconcile");
        assert_eq!(
            summary.as_of, msp_day,
            "{zone}: the run is as of the MSP's day"
        );
        let runs = app.store().reconcile_runs(10).await.expect("runs");
        assert_eq!(runs[0].as_of, msp_day, "{zone}: recorded as the MSP's day");
        // The month whose period the run covers is the MSP's month.
        let month = summary.as_of.format("%B").to_string();
        assert_eq!(month, history_from, "{zone}");
    }
}
