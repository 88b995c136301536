//! The NinjaOne connector (`plugins/ninjaone`) against the NinjaOne
//! emulator: organisations across pages, one usage record per device that
//! adds up to the world's truth, and the failures a real sync meets.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use trueup_core::model::UsageObservation;
use trueup_emulators::catalog::{VendorSource, reported_usage};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings, ninjaone as emulator};
use trueup_plugin_host::{ConnectorFailure, LoadedPlugin, VendorSession};

use crate::connector_harness::{
    Emulator, accounts_until_error, all_accounts, all_usage, as_of, attr, failure, load, on_path,
    session, session_with_progress, usage_until_error,
};

const ID: &str = "trueup.ninjaone";

/// The emulator's clock for these tests: device contact times are relative
/// to it.
fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.ninjaone.as_of = Some(
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("instant"),
    );
    settings
}

fn connector(emulator: &Emulator, extra: &[(&str, &str)]) -> Arc<LoadedPlugin> {
    let base = emulator.base();
    let mut config = vec![("base_url", base), ("client_id", emulator::CLIENT_ID)];
    config.extend_from_slice(extra);
    load(ID, base, &config, &["client_secret"])
}

fn ninja_session(plugin: &Arc<LoadedPlugin>) -> VendorSession {
    session(
        plugin,
        "ninjaone",
        &[("client_secret", emulator::CLIENT_SECRET)],
    )
}

/// `(id, customerIndex, name, devices)` of every organisation.
async fn inspected(emulator: &Emulator) -> Vec<(String, Option<usize>, String, usize)> {
    emulator
        .inspect("/_emulator/ninjaone/organizations")
        .await
        .as_array()
        .expect("organisations")
        .iter()
        .map(|o| {
            (
                o["id"].as_u64().expect("id").to_string(),
                o["customerIndex"].as_u64().map(|i| i as usize),
                o["name"].as_str().expect("name").to_owned(),
                o["devices"].as_u64().expect("devices") as usize,
            )
        })
        .collect()
}

/// Every record as `(account, display-name, class, last-contact,
/// approval-status, offline)`, sorted: display names are unique within an
/// organisation, so this names each device once.
fn devices_of(usage: &[UsageObservation]) -> Vec<[String; 6]> {
    let mut devices: Vec<[String; 6]> = usage
        .iter()
        .map(|u| {
            let a = |key: &str| attr(u, key).unwrap_or_default().to_owned();
            [
                u.account.as_str().to_owned(),
                a("display-name"),
                u.sku_id.as_str().to_owned(),
                a("last-contact"),
                a("approval-status"),
                a("offline"),
            ]
        })
        .collect();
    devices.sort();
    devices
}

#[tokio::test]
async fn organizations_and_devices_match_the_world() {
    let emulator = Emulator::start(Kind::NinjaOne, 41, 1_100, settings()).await;
    let plugin = connector(&emulator, &[("organizations_page_size", "250")]);
    let (mut session, progress) = session_with_progress(
        &plugin,
        "ninjaone",
        &[("client_secret", emulator::CLIENT_SECRET)],
    );
    let orgs = inspected(&emulator).await;

    let description = session.describe().await.expect("describe");
    assert_eq!(description.id, ID);
    assert!(
        description
            .capabilities
            .contains(&"usage-all-accounts".to_owned())
    );

    let (accounts, pages) = all_accounts(&mut session).await;
    assert!(accounts.len() >= 1_000, "{} accounts", accounts.len());
    // Pages of 250, then the empty page that ends the listing.
    assert_eq!(pages, orgs.len().div_ceil(250) + 1);
    let listed: Vec<(String, String)> = accounts
        .iter()
        .map(|a| (a.id.as_str().to_owned(), a.name.clone()))
        .collect();
    let expected: Vec<(String, String)> = orgs.iter().map(|o| (o.0.clone(), o.2.clone())).collect();
    assert_eq!(
        listed, expected,
        "every organisation once, in order, by name"
    );

    let (usage, calls) = all_usage(&mut session, None).await;
    let devices: usize = orgs.iter().map(|o| o.3).sum();
    assert_eq!(usage.len(), devices, "one record per device");
    let unique: HashSet<(&str, &str)> = usage
        .iter()
        .map(|u| {
            (
                u.account.as_str(),
                attr(u, "display-name").expect("display-name"),
            )
        })
        .collect();
    assert_eq!(unique.len(), devices, "no device twice");
    // The connector asks for 10,000 devices a page; the emulator serves at
    // most 300 (as a real server may): every page is "short", and the
    // listing goes on to the empty page that ends it. One call per API page.
    assert!(devices > 3 * emulator::PAGE_SIZE_MAX, "{devices} devices");
    assert_eq!(calls, devices.div_ceil(emulator::PAGE_SIZE_MAX) + 1);
    assert_eq!(
        emulator.count("GET /api/v2/devices") as usize,
        devices.div_ceil(emulator::PAGE_SIZE_MAX) + 1,
        "one request per 300 devices, and the empty end page"
    );
    assert_eq!(
        emulator.count("POST /ws/oauth/token"),
        1,
        "the token is cached"
    );

    let mut by_org: BTreeMap<&str, Vec<&UsageObservation>> = BTreeMap::new();
    for u in &usage {
        assert_eq!(u.quantity, Decimal::ONE);
        assert_eq!(&*u.unit, "device");
        assert_eq!(attr(u, "device-class"), Some(u.sku_id.as_str()));
        by_org.entry(u.account.as_str()).or_default().push(u);
    }
    // Truth: approved devices of the product's classes in contact within the
    // last 20 days (noise devices are pending, or silent for 90+ days).
    let recent = (as_of() - chrono::Days::new(30)).to_string();
    for (id, customer, name, count) in &orgs {
        let records = by_org.get(id.as_str()).map_or(&[][..], Vec::as_slice);
        assert_eq!(records.len(), *count, "devices of {name}");
        let Some(index) = customer else { continue };
        for (product, units) in reported_usage(&emulator.world.customers[*index]) {
            let VendorSource::NinjaDevices { node_classes } = product.source else {
                continue;
            };
            let counted = records
                .iter()
                .filter(|u| {
                    attr(u, "approval-status") == Some("APPROVED")
                        && node_classes.contains(&u.sku_id.as_str())
                        && attr(u, "last-contact").is_some_and(|d| d >= recent.as_str())
                })
                .count();
            assert_eq!(counted as u32, units, "{name} {}", product.identifier);
        }
    }

    let role = |class: &str| {
        usage
            .iter()
            .find(|u| u.sku_id.as_str() == class)
            .and_then(|u| attr(u, "device-role"))
            .map(str::to_owned)
    };
    for (class, expected) in [
        ("WINDOWS_WORKSTATION", "workstation"),
        ("MAC", "workstation"),
        ("WINDOWS_SERVER", "server"),
        ("HYPERV_VMM_GUEST", "server"),
        ("NMS_SWITCH", "network"),
        ("NMS_FIREWALL", "network"),
        ("ANDROID", "mobile"),
        ("VMWARE_VM_HOST", "virtualization-host"),
        ("NMS_OTHER", "other"),
        ("CLOUD_MONITOR_TARGET", "other"),
    ] {
        assert_eq!(role(class).as_deref(), Some(expected), "{class}");
    }
    let sample = &usage[0];
    assert!(attr(sample, "display-name").is_some_and(|n| !n.is_empty()));
    assert!(matches!(attr(sample, "offline"), Some("true" | "false")));

    // One account at a time gives the same records as the all-accounts walk.
    for (id, _, name, _) in orgs.iter().step_by(97) {
        let (alone, _) = all_usage(&mut session, Some(id)).await;
        let walked: Vec<UsageObservation> = by_org
            .get(id.as_str())
            .map(|r| r.iter().map(|u| (*u).clone()).collect())
            .unwrap_or_default();
        assert_eq!(devices_of(&alone), devices_of(&walked), "{name}");
        assert!(alone.iter().all(|u| u.account.as_str() == id));
    }

    let reports = progress.lock().expect("progress").clone();
    let device_reports: Vec<u64> = reports
        .iter()
        .filter(|r| r.export == "list-usage" && r.message.starts_with("devices"))
        .map(|r| r.done)
        .collect();
    assert!(
        device_reports.contains(&(devices as u64)),
        "{device_reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.export == "list-accounts" && r.done == orgs.len() as u64)
    );
}

#[tokio::test]
async fn os_details_come_from_the_detailed_device_list() {
    let emulator = Emulator::start(Kind::NinjaOne, 5, 20, settings()).await;
    let plugin = connector(&emulator, &[("os_details", "true")]);
    let mut session = ninja_session(&plugin);
    let (usage, _) = all_usage(&mut session, None).await;
    assert!(emulator.count("GET /api/v2/devices-detailed") >= 1);
    assert_eq!(emulator.count("GET /api/v2/devices"), 0);
    let windows = usage
        .iter()
        .find(|u| u.sku_id.as_str() == "WINDOWS_WORKSTATION")
        .expect("a Windows workstation");
    assert_eq!(
        attr(windows, "os-name"),
        Some("Windows 11 Professional Edition")
    );
    let switch = usage.iter().find(|u| u.sku_id.as_str().starts_with("NMS_"));
    assert!(
        switch.is_none_or(|u| attr(u, "os-name").is_none()),
        "NMS devices have no os"
    );
}

#[tokio::test]
async fn a_rate_limit_burst_is_reported_with_its_retry_after() {
    let emulator = Emulator::start(Kind::NinjaOne, 5, 20, settings()).await;
    let mut session = ninja_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/api/v2/organizations",
        FaultPlan {
            rate_limited: 3,
            retry_after_secs: 7,
            ..FaultPlan::default()
        },
    ));
    for _ in 0..3 {
        let error = session.list_accounts(None).await.expect_err("rate limited");
        assert!(error.is_transient());
        assert_eq!(
            failure(error),
            ConnectorFailure::RateLimited {
                retry_after: Duration::from_secs(7)
            }
        );
    }
    let page = session
        .list_accounts(None)
        .await
        .expect("the burst is over");
    assert_eq!(page.items.len(), inspected(&emulator).await.len());
}

#[tokio::test]
async fn server_errors_are_transient_upstream_failures() {
    let emulator = Emulator::start(Kind::NinjaOne, 5, 20, settings()).await;
    let mut session = ninja_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/api/v2/devices",
        FaultPlan {
            server_errors: 2,
            ..FaultPlan::default()
        },
    ));
    for _ in 0..2 {
        let error = session.list_usage(None, None).await.expect_err("500");
        let failure = failure(error);
        assert!(failure.is_transient());
        assert!(
            matches!(&failure, ConnectorFailure::Upstream { status: 500, body, retryable: true } if body.contains("unexpected error")),
            "{failure:?}"
        );
    }
    let (usage, _) = all_usage(&mut session, None).await;
    assert!(!usage.is_empty());
}

#[tokio::test]
async fn truncated_json_names_the_request_and_position() {
    let emulator = Emulator::start(Kind::NinjaOne, 5, 20, settings()).await;
    let mut session = ninja_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/api/v2/devices",
        FaultPlan {
            truncated: 1,
            ..FaultPlan::default()
        },
    ));
    let error = session.list_usage(None, None).await.expect_err("truncated");
    let ConnectorFailure::Internal(message) = failure(error) else {
        panic!("expected an internal error");
    };
    let url = format!("GET {}/api/v2/devices?pageSize=10000", emulator.base());
    assert!(message.starts_with(&url), "{message}");
    assert!(message.contains("line 1, column"), "{message}");
}

#[tokio::test]
async fn a_repeating_cursor_is_reported_not_followed() {
    let emulator = Emulator::start(Kind::NinjaOne, 5, 40, settings()).await;
    let plugin = connector(
        &emulator,
        &[
            ("organizations_page_size", "10"),
            ("devices_page_size", "100"),
        ],
    );
    let mut session = ninja_session(&plugin);
    emulator.faults(FaultPlan {
        paging_loop: true,
        ..FaultPlan::default()
    });
    let (error, calls) = accounts_until_error(&mut session).await;
    assert_eq!(calls, 2, "the first repeated page is caught");
    let ConnectorFailure::Internal(message) = failure(error) else {
        panic!("expected an internal error");
    };
    assert!(
        message.contains("/api/v2/organizations?pageSize=10&after=10"),
        "{message}"
    );
    assert!(
        message.contains("last organization id 10 (after last organization id 10)"),
        "{message}"
    );
    assert!(message.contains("does not advance"), "{message}");

    let (error, calls) = usage_until_error(&mut session, None).await;
    assert_eq!(calls, 2);
    let ConnectorFailure::Internal(message) = failure(error) else {
        panic!("expected an internal error");
    };
    assert!(
        message.contains("last device id 100 (after last device id 100)"),
        "{message}"
    );
}

/// The revoking fixture's state: tokens issued, tokens already used.
type Revoking = (Arc<AtomicU32>, Arc<Mutex<Vec<String>>>);

/// A NinjaOne stand-in that issues tokens `t1`, `t2`, ... and revokes
/// every token after its first use; returns the base URL and the number of
/// tokens issued.
async fn revoking_fixture() -> (String, Arc<AtomicU32>) {
    async fn token(State((issued, _)): State<Revoking>) -> Response {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        axum::Json(
            json!({"access_token": format!("t{n}"), "expires_in": 3600, "token_type": "Bearer"}),
        )
        .into_response()
    }
    async fn organizations(State((_, used)): State<Revoking>, headers: HeaderMap) -> Response {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut used = used.lock().expect("used");
        if used.contains(&bearer) {
            return (StatusCode::UNAUTHORIZED, "token revoked").into_response();
        }
        used.push(bearer);
        axum::Json(json!([{"id": 1, "name": "Only Org"}])).into_response()
    }
    let state = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let app = Router::new()
        .route("/ws/oauth/token", post(token))
        .route("/api/v2/organizations", get(organizations))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), state.0)
}

#[tokio::test]
async fn a_revoked_token_is_renewed_and_the_request_sent_again() {
    let (base, issued) = revoking_fixture().await;
    let plugin = load(
        ID,
        &base,
        &[
            ("base_url", base.as_str()),
            ("client_id", emulator::CLIENT_ID),
        ],
        &["client_secret"],
    );
    let mut session = ninja_session(&plugin);
    // t1 is fetched and works; then it is revoked: the cached token gets a
    // 401, so the connector fetches t2 and retries once.
    for expected_tokens in [1, 2, 3] {
        let page = session.list_accounts(None).await.expect("listed");
        assert_eq!(page.items.len(), 1);
        assert_eq!(issued.load(Ordering::SeqCst), expected_tokens);
    }
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_failure() {
    let emulator = Emulator::start(Kind::NinjaOne, 5, 5, settings()).await;
    let plugin = connector(&emulator, &[]);
    let mut wrong_secret = session(&plugin, "ninjaone", &[("client_secret", "not-the-secret")]);
    let error = wrong_secret.list_accounts(None).await.expect_err("refused");
    let ConnectorFailure::AuthFailed(message) = failure(error) else {
        panic!("expected auth-failed");
    };
    assert!(message.contains("/ws/oauth/token"), "{message}");
    assert!(message.contains("invalid_client"), "{message}");
    assert!(!message.contains("not-the-secret"));

    let base = emulator.base();
    let wrong_id = load(
        ID,
        base,
        &[("base_url", base), ("client_id", "someone-else")],
        &["client_secret"],
    );
    let error = ninja_session(&wrong_id)
        .list_usage(None, None)
        .await
        .expect_err("refused");
    assert!(matches!(failure(error), ConnectorFailure::AuthFailed(_)));
}
