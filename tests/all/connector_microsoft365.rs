//! The Microsoft 365 connector (`plugins/microsoft365`) against the
//! Microsoft emulator (identity platform, Graph, Partner Center on one
//! origin): customers across continuation pages, every tenant's licences
//! equal to the world's truth and joined with its CSP subscriptions, and
//! the failures a real sync meets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use trueup_core::model::UsageObservation;
use trueup_emulators::catalog::{VendorSource, reported_usage};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings, microsoft as emulator};
use trueup_plugin_host::{ConnectorFailure, LoadedPlugin, VendorSession};

use crate::connector_harness::{
    Emulator, accounts_until_error, all_accounts, all_usage, attr, failure, load, on_path, session,
};

const ID: &str = "trueup.microsoft365";

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.microsoft.as_of = Some(
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("instant"),
    );
    settings
}

fn connector(emulator: &Emulator, extra: &[(&str, &str)]) -> Arc<LoadedPlugin> {
    let base = emulator.base();
    let mut config = vec![
        ("login_base_url", base),
        ("graph_base_url", base),
        ("partner_center_base_url", base),
        ("client_id", emulator::CLIENT_ID),
        ("partner_tenant_id", emulator::PARTNER_TENANT_ID),
    ];
    config.extend_from_slice(extra);
    load(ID, base, &config, &["client_secret"])
}

fn ms_session(plugin: &Arc<LoadedPlugin>) -> VendorSession {
    session(
        plugin,
        "microsoft365",
        &[("client_secret", emulator::CLIENT_SECRET)],
    )
}

/// The Partner Center offer name of a Graph part number in the catalogue.
fn offer_name(part_number: &str) -> &'static str {
    match part_number {
        "SPB" => "Microsoft 365 Business Premium",
        "O365_BUSINESS_PREMIUM" => "Microsoft 365 Business Standard",
        "EXCHANGESTANDARD" => "Exchange Online (Plan 1)",
        other => panic!("no offer for {other}"),
    }
}

/// A Partner Center token, asked for directly (not through the connector).
async fn partner_center_token(base: &str) -> String {
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
        emulator::CLIENT_ID,
        emulator::CLIENT_SECRET.replace('~', "%7E"),
        "https%3A%2F%2Fapi.partnercenter.microsoft.com%2F.default"
    );
    let response = reqwest::Client::new()
        .post(format!(
            "{base}/{}/oauth2/v2.0/token",
            emulator::PARTNER_TENANT_ID
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The tenant's Partner Center subscriptions, read directly.
async fn subscriptions(base: &str, token: &str, tenant: &str) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/customers/{tenant}/subscriptions"))
        .bearer_auth(token)
        .send()
        .await
        .expect("subscriptions request");
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    body["items"].as_array().expect("items").clone()
}

/// What the join must say for a catalogue SKU, computed from the raw
/// subscriptions: the active ones sold as its offer.
fn expected_join(subscriptions: &[Value], part_number: &str) -> BTreeMap<&'static str, String> {
    let active: Vec<&Value> = subscriptions
        .iter()
        .filter(|s| s["offerName"] == offer_name(part_number) && s["status"] == "active")
        .collect();
    let text = |s: &Value, key: &str| s[key].as_str().expect(key).to_owned();
    let mut terms: Vec<String> = active.iter().map(|s| text(s, "termDuration")).collect();
    terms.sort();
    terms.dedup();
    let commitment_end = active
        .iter()
        .map(|s| text(s, "commitmentEndDate")[..10].to_owned())
        .min()
        .expect("an active subscription");
    let refundable: u64 = active
        .iter()
        .map(|s| {
            s["refundableQuantity"]["totalQuantity"]
                .as_u64()
                .expect("total")
        })
        .sum();
    let until = active
        .iter()
        .flat_map(|s| {
            s["refundableQuantity"]["details"]
                .as_array()
                .expect("details")
                .iter()
        })
        .map(|d| text(d, "allowedUntilDateTime"))
        .min();
    let seats: u64 = active
        .iter()
        .map(|s| s["quantity"].as_u64().expect("quantity"))
        .sum();
    let mut expected = BTreeMap::from([
        ("subscription-status", "active".to_owned()),
        ("billing-term", terms.join(",")),
        ("commitment-end", commitment_end),
        ("refundable-quantity", refundable.to_string()),
        ("subscription-quantity", seats.to_string()),
    ]);
    if let Some(until) = until {
        expected.insert("refundable-until", until);
    }
    expected
}

#[tokio::test]
async fn customers_and_licences_match_the_world() {
    let emulator = Emulator::start(Kind::Microsoft, 7, 1_100, settings()).await;
    let mut session = ms_session(&connector(&emulator, &[]));
    let inspected = emulator.inspect("/_emulator/microsoft/tenants").await;
    let tenants = inspected["tenants"].as_array().expect("tenants");

    let (accounts, pages) = all_accounts(&mut session).await;
    assert!(accounts.len() >= 1_000, "{} accounts", accounts.len());
    assert_eq!(pages, tenants.len().div_ceil(500));
    assert_eq!(accounts.len(), tenants.len());
    for (account, tenant) in accounts.iter().zip(tenants) {
        assert_eq!(
            account.id.as_str(),
            tenant["tenantId"].as_str().expect("id")
        );
        assert_eq!(account.name, tenant["name"].as_str().expect("name"));
        assert_eq!(
            account.domains,
            [tenant["domain"].as_str().expect("domain")]
        );
    }

    let token = partner_center_token(emulator.base()).await;
    let mut all: Vec<UsageObservation> = Vec::new();
    for (n, tenant) in tenants.iter().enumerate() {
        let id = tenant["tenantId"].as_str().expect("id");
        let (usage, calls) = all_usage(&mut session, Some(id)).await;
        assert_eq!(calls, 1);
        let by_sku: BTreeMap<&str, &UsageObservation> =
            usage.iter().map(|u| (u.sku_id.as_str(), u)).collect();
        assert_eq!(by_sku.len(), usage.len(), "one record per SKU in {id}");
        for u in &usage {
            assert_eq!(u.account.as_str(), id);
            assert_eq!(&*u.unit, "licence");
            assert_eq!(
                attr(u, "consumed-units"),
                Some(u.quantity.to_string().as_str())
            );
            assert!(attr(u, "sku-guid").is_some_and(|g| g.len() == 36));
            assert_eq!(attr(u, "applies-to"), Some("User"));
        }
        let truth: Vec<(&str, u32)> = match tenant["customerIndex"].as_u64() {
            None => vec![("SPB", 12)],
            Some(index) => reported_usage(&emulator.world.customers[index as usize])
                .into_iter()
                .filter_map(|(p, units)| match p.source {
                    VendorSource::MicrosoftSku { sku_part_number } => {
                        Some((sku_part_number, units))
                    }
                    _ => None,
                })
                .collect(),
        };
        let raw = if n % 40 == 0 {
            Some(subscriptions(emulator.base(), &token, id).await)
        } else {
            None
        };
        for (part_number, units) in truth {
            let record = by_sku
                .get(part_number)
                .unwrap_or_else(|| panic!("{part_number} missing in {id}"));
            assert_eq!(
                record.quantity,
                Decimal::from(units),
                "{part_number} in {id}"
            );
            assert_eq!(&*record.sku_name, offer_name(part_number));
            assert_eq!(attr(record, "capability-status"), Some("Enabled"));
            assert_eq!(attr(record, "subscription-status"), Some("active"));
            assert_eq!(
                attr(record, "prepaid-enabled"),
                attr(record, "subscription-quantity")
            );
            let enabled: Decimal = attr(record, "prepaid-enabled")
                .and_then(|v| v.parse().ok())
                .expect("prepaid-enabled");
            assert!(enabled >= Decimal::from(units));
            assert_eq!(
                record.commitment_end.map(|d| d.to_string()).as_deref(),
                attr(record, "commitment-end")
            );
            assert_eq!(record.billing_term.as_deref(), attr(record, "billing-term"));
            if let Some(raw) = &raw {
                for (key, value) in expected_join(raw, part_number) {
                    assert_eq!(
                        attr(record, key),
                        Some(value.as_str()),
                        "{key} of {part_number} in {id}"
                    );
                }
                assert_eq!(
                    attr(record, "refundable-until").is_some(),
                    attr(record, "refundable-quantity") != Some("0")
                );
            }
        }
        all.extend(usage);
    }

    // The noise a rule must filter is reported faithfully.
    let find = |part: &str, status: &str| {
        all.iter()
            .find(|u| u.sku_id.as_str() == part && attr(u, "capability-status") == Some(status))
    };
    let flow = find("FLOW_FREE", "Enabled").expect("a free Power Automate SKU");
    assert_eq!(&*flow.sku_name, "Microsoft Power Automate Free");
    assert_eq!(attr(flow, "prepaid-enabled"), Some("10000"));
    assert_eq!(
        attr(flow, "subscription-status"),
        None,
        "no CSP subscription"
    );
    assert_eq!(flow.commitment_end, None);
    let suspended = find("O365_BUSINESS_ESSENTIALS", "Suspended").expect("a suspended SKU");
    assert_eq!(attr(suspended, "subscription-status"), Some("suspended"));
    assert_eq!(attr(suspended, "prepaid-enabled"), Some("0"));
    assert_ne!(attr(suspended, "prepaid-suspended"), Some("0"));
    let locked = find("O365_BUSINESS_ESSENTIALS", "LockedOut").expect("a locked-out SKU");
    // Graph lists no subscription for it: matched through its product id.
    assert_eq!(attr(locked, "subscription-status"), Some("deleted"));
    assert_ne!(attr(locked, "prepaid-locked-out"), Some("0"));
    let warning = find("VISIOCLIENT", "Warning").expect("a SKU in its grace period");
    assert_eq!(attr(warning, "subscription-status"), Some("expired"));
    assert_eq!(&*warning.sku_name, "Visio Plan 2");
    assert!(
        warning
            .commitment_end
            .is_some_and(|d| d < crate::connector_harness::as_of())
    );
    assert!(
        all.iter()
            .any(|u| attr(u, "refundable-quantity").is_some_and(|q| q != "0")),
        "some seats are refundable"
    );
    assert!(
        all.iter()
            .any(|u| attr(u, "billing-term") == Some("P1M,P1Y"))
    );

    let partner_tokens = format!("POST /{}/oauth2/v2.0/token", emulator::PARTNER_TENANT_ID);
    // One Partner Center token for the connector, one for this test.
    assert_eq!(emulator.count(&partner_tokens), 2);
    assert_eq!(
        emulator.count("GET /v1.0/subscribedSkus") as usize,
        tenants.len()
    );
}

#[tokio::test]
async fn usage_needs_an_account() {
    let emulator = Emulator::start(Kind::Microsoft, 3, 5, settings()).await;
    let mut session = ms_session(&connector(&emulator, &[]));
    let error = session
        .list_usage(None, None)
        .await
        .expect_err("no account");
    assert!(matches!(failure(error), ConnectorFailure::InvalidConfig(_)));
}

#[tokio::test]
async fn a_rate_limit_burst_is_reported_with_its_retry_after() {
    let emulator = Emulator::start(Kind::Microsoft, 3, 20, settings()).await;
    let mut session = ms_session(&connector(&emulator, &[]));
    let (accounts, _) = all_accounts(&mut session).await;
    let tenant = accounts[0].id.as_str();
    emulator.faults(on_path(
        "/v1.0/subscribedSkus",
        FaultPlan {
            rate_limited: 2,
            retry_after_secs: 9,
            ..FaultPlan::default()
        },
    ));
    for _ in 0..2 {
        let error = session
            .list_usage(Some(tenant), None)
            .await
            .expect_err("rate limited");
        assert_eq!(
            failure(error),
            ConnectorFailure::RateLimited {
                retry_after: Duration::from_secs(9)
            }
        );
    }
    let (usage, _) = all_usage(&mut session, Some(tenant)).await;
    assert!(!usage.is_empty());
}

#[tokio::test]
async fn server_errors_are_transient_upstream_failures() {
    let emulator = Emulator::start(Kind::Microsoft, 3, 20, settings()).await;
    let mut session = ms_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/v1/customers",
        FaultPlan {
            server_errors: 1,
            ..FaultPlan::default()
        },
    ));
    let failure = failure(session.list_accounts(None).await.expect_err("500"));
    assert!(failure.is_transient());
    assert!(
        matches!(failure, ConnectorFailure::Upstream { status: 500, .. }),
        "{failure:?}"
    );
    session.list_accounts(None).await.expect("recovered");
}

#[tokio::test]
async fn truncated_json_names_the_request_and_position() {
    let emulator = Emulator::start(Kind::Microsoft, 3, 20, settings()).await;
    let mut session = ms_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/v1/customers",
        FaultPlan {
            truncated: 1,
            ..FaultPlan::default()
        },
    ));
    let error = session.list_accounts(None).await.expect_err("truncated");
    let ConnectorFailure::Internal(message) = failure(error) else {
        panic!("expected an internal error");
    };
    let url = format!("GET {}/v1/customers?size=500", emulator.base());
    assert!(message.starts_with(&url), "{message}");
    assert!(message.contains("line 1, column"), "{message}");
}

#[tokio::test]
async fn a_repeating_continuation_token_is_reported_not_followed() {
    let emulator = Emulator::start(Kind::Microsoft, 3, 40, settings()).await;
    let mut session = ms_session(&connector(&emulator, &[("customers_page_size", "10")]));
    emulator.faults(FaultPlan {
        paging_loop: true,
        ..FaultPlan::default()
    });
    let (error, calls) = accounts_until_error(&mut session).await;
    assert_eq!(calls, 2, "the first repeated token is caught");
    let ConnectorFailure::Internal(message) = failure(error) else {
        panic!("expected an internal error");
    };
    assert!(
        message.contains("/v1/customers?size=10&seekOperation=Next"),
        "{message}"
    );
    assert!(message.contains("next-page token"), "{message}");
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_failure() {
    let emulator = Emulator::start(Kind::Microsoft, 3, 5, settings()).await;
    let plugin = connector(&emulator, &[]);
    let mut wrong = session(
        &plugin,
        "microsoft365",
        &[("client_secret", "not-the-ms-secret")],
    );
    let error = wrong.list_accounts(None).await.expect_err("refused");
    let ConnectorFailure::AuthFailed(message) = failure(error) else {
        panic!("expected auth-failed");
    };
    assert!(message.contains("invalid_client"), "{message}");
    assert!(message.contains(emulator::PARTNER_TENANT_ID), "{message}");

    let other_app = connector(
        &emulator,
        &[("client_id", "00000000-0000-4000-8000-000000000000")],
    );
    let error = ms_session(&other_app)
        .list_accounts(None)
        .await
        .expect_err("refused");
    let ConnectorFailure::AuthFailed(message) = failure(error) else {
        panic!("expected auth-failed");
    };
    assert!(message.contains("unauthorized_client"), "{message}");
}
