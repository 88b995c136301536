//! The Pax8 connector (`plugins/pax8`) against the Pax8 emulator: companies
//! across 0-based pages, one usage record per subscription with exact
//! amounts, and the failures a real sync meets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use trueup_core::model::UsageObservation;
use trueup_emulators::catalog::{VendorSource, reported_usage};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings, pax8 as emulator};
use trueup_plugin_host::{ConnectorFailure, LoadedPlugin, VendorSession};

use crate::connector_harness::{
    Emulator, accounts_until_error, all_accounts, all_usage, attr, failure, load, on_path, session,
};

const ID: &str = "trueup.pax8";
const BACKUP: &str = "Dropsuite Microsoft 365 Backup";

fn connector(emulator: &Emulator, extra: &[(&str, &str)]) -> Arc<LoadedPlugin> {
    let base = emulator.base();
    let api = format!("{base}/v1");
    let mut config = vec![
        ("base_url", api.as_str()),
        ("client_id", emulator::CLIENT_ID),
    ];
    config.extend_from_slice(extra);
    load(ID, base, &config, &["client_secret"])
}

fn pax8_session(plugin: &Arc<LoadedPlugin>) -> VendorSession {
    session(
        plugin,
        "pax8",
        &[("client_secret", emulator::CLIENT_SECRET)],
    )
}

/// `(companyId, customerIndex)` of every company.
async fn inspected(emulator: &Emulator) -> Vec<(String, Option<usize>)> {
    emulator
        .inspect("/_emulator/pax8/companies")
        .await
        .as_array()
        .expect("companies")
        .iter()
        .map(|c| {
            (
                c["companyId"].as_str().expect("id").to_owned(),
                c["customerIndex"].as_u64().map(|i| i as usize),
            )
        })
        .collect()
}

fn subscription_ids(usage: &[UsageObservation]) -> Vec<String> {
    let mut ids: Vec<String> = usage
        .iter()
        .map(|u| {
            attr(u, "subscription-id")
                .expect("subscription-id")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn companies_and_subscriptions_match_the_world() {
    let emulator = Emulator::start(Kind::Pax8, 17, 1_100, Settings::default()).await;
    let mut session = pax8_session(&connector(&emulator, &[]));
    let companies = inspected(&emulator).await;

    let description = session.describe().await.expect("describe");
    assert!(
        description
            .capabilities
            .contains(&"usage-all-accounts".to_owned())
    );

    let (accounts, pages) = all_accounts(&mut session).await;
    assert!(accounts.len() >= 1_000, "{} accounts", accounts.len());
    assert_eq!(pages, companies.len().div_ceil(200));
    let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let expected: Vec<&str> = companies.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids, expected, "every company once, in order");
    for (account, (_, customer)) in accounts.iter().zip(&companies) {
        let domain = customer.map_or(trueup_emulators::vendor_common::MSP_DOMAIN, |i| {
            emulator.world.customers[i].domain.as_str()
        });
        assert_eq!(account.domains, [domain], "{}", account.name);
    }

    let (usage, _) = all_usage(&mut session, None).await;
    assert!(!usage.is_empty());
    let mut by_company: BTreeMap<&str, Vec<&UsageObservation>> = BTreeMap::new();
    for u in &usage {
        by_company.entry(u.account.as_str()).or_default().push(u);
        assert_eq!(&*u.unit, "licence");
        assert!(attr(u, "subscription-id").is_some());
        assert!(attr(u, "start-date").is_some_and(|d| d.len() == 10));
        match u.billing_term.as_deref() {
            Some("Annual") => assert!(u.commitment_end.is_some(), "annual terms end"),
            Some("Monthly" | "Trial") => assert!(u.commitment_end.is_none()),
            other => panic!("unexpected billing term {other:?}"),
        }
    }
    let backup_cost = Decimal::new(160, 2);
    let mut checked = 0;
    for (company, customer) in &companies {
        let records = by_company
            .get(company.as_str())
            .map_or(&[][..], Vec::as_slice);
        let active_backup: Vec<&&UsageObservation> = records
            .iter()
            .filter(|u| &*u.sku_name == BACKUP && attr(u, "status") == Some("Active"))
            .collect();
        let Some(index) = customer else {
            // The MSP's own company: Proofpoint and Keeper, 14 seats each.
            let seats: Vec<Decimal> = records.iter().map(|u| u.quantity).collect();
            assert_eq!(seats, [Decimal::from(14), Decimal::from(14)]);
            continue;
        };
        let truth = reported_usage(&emulator.world.customers[*index])
            .into_iter()
            .find(|(p, _)| matches!(p.source, VendorSource::Pax8Subscription { .. }))
            .map(|(_, units)| units);
        match truth {
            Some(units) => {
                assert_eq!(active_backup.len(), 1, "company {company}");
                let record = active_backup[0];
                assert_eq!(record.quantity, Decimal::from(units), "company {company}");
                assert_eq!(record.unit_cost, Some(backup_cost));
                assert_eq!(attr(record, "price"), Some("4"));
                assert_eq!(attr(record, "currency"), Some("USD"));
                assert!(attr(record, "vendor-subscription-id").is_some_and(|v| v.len() == 16));
                checked += 1;
            }
            None => assert!(active_backup.is_empty(), "company {company}"),
        }
    }
    assert!(checked > 300, "{checked} companies with backup seats");
    // Noise the rules must filter is reported as it is.
    for status in ["Cancelled", "Trial", "PendingManual"] {
        assert!(
            usage.iter().any(|u| attr(u, "status") == Some(status)),
            "{status}"
        );
    }
    let trial = usage
        .iter()
        .find(|u| attr(u, "status") == Some("Trial"))
        .expect("a trial");
    assert_eq!(trial.unit_cost, Some(Decimal::ZERO));
    assert!(attr(trial, "end-date").is_some());

    // One company at a time gives the same records.
    for (company, _) in companies.iter().step_by(61) {
        let (alone, _) = all_usage(&mut session, Some(company)).await;
        let walked: Vec<UsageObservation> = by_company
            .get(company.as_str())
            .map(|r| r.iter().map(|u| (*u).clone()).collect())
            .unwrap_or_default();
        assert_eq!(subscription_ids(&alone), subscription_ids(&walked));
    }
    assert_eq!(emulator.count("POST /v1/token"), 1, "the token is cached");
}

#[tokio::test]
async fn a_rate_limit_burst_is_reported_with_its_retry_after() {
    let emulator = Emulator::start(Kind::Pax8, 3, 20, Settings::default()).await;
    let mut session = pax8_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/v1/companies",
        FaultPlan {
            rate_limited: 2,
            retry_after_secs: 5,
            ..FaultPlan::default()
        },
    ));
    for _ in 0..2 {
        let error = session.list_accounts(None).await.expect_err("rate limited");
        assert_eq!(
            failure(error),
            ConnectorFailure::RateLimited {
                retry_after: Duration::from_secs(5)
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
    let emulator = Emulator::start(Kind::Pax8, 3, 20, Settings::default()).await;
    let mut session = pax8_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/v1/subscriptions",
        FaultPlan {
            server_errors: 1,
            ..FaultPlan::default()
        },
    ));
    let failure = failure(session.list_usage(None, None).await.expect_err("500"));
    assert!(failure.is_transient());
    assert!(
        matches!(failure, ConnectorFailure::Upstream { status: 500, .. }),
        "{failure:?}"
    );
    session.list_usage(None, None).await.expect("recovered");
}

#[tokio::test]
async fn truncated_json_names_the_request_and_position() {
    let emulator = Emulator::start(Kind::Pax8, 3, 20, Settings::default()).await;
    let mut session = pax8_session(&connector(&emulator, &[]));
    emulator.faults(on_path(
        "/v1/subscriptions",
        FaultPlan {
            truncated: 1,
            ..FaultPlan::default()
        },
    ));
    let error = session.list_usage(None, None).await.expect_err("truncated");
    let ConnectorFailure::Internal(message) = failure(error) else {
        panic!("expected an internal error");
    };
    let url = format!("GET {}/v1/subscriptions?page=0&size=200", emulator.base());
    assert!(message.starts_with(&url), "{message}");
    assert!(message.contains("line 1, column"), "{message}");
}

#[tokio::test]
async fn a_repeating_page_is_reported_not_followed() {
    let emulator = Emulator::start(Kind::Pax8, 3, 40, Settings::default()).await;
    let mut session = pax8_session(&connector(&emulator, &[("page_size", "10")]));
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
        message.contains("/v1/companies?page=1&size=10"),
        "{message}"
    );
    assert!(
        message.contains("page number 0 (page 1 was asked for)"),
        "{message}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_failure() {
    let emulator = Emulator::start(Kind::Pax8, 3, 5, Settings::default()).await;
    let plugin = connector(&emulator, &[]);
    let mut wrong = session(&plugin, "pax8", &[("client_secret", "pax8-wrong-secret")]);
    let error = wrong.list_accounts(None).await.expect_err("refused");
    let ConnectorFailure::AuthFailed(message) = failure(error) else {
        panic!("expected auth-failed");
    };
    assert!(message.contains("/v1/token"), "{message}");
    assert!(message.contains("access_denied"), "{message}");
    let wrong_audience = connector(&emulator, &[("audience", "https://elsewhere.example")]);
    let error = pax8_session(&wrong_audience)
        .list_usage(None, None)
        .await
        .expect_err("refused");
    assert!(matches!(failure(error), ConnectorFailure::AuthFailed(_)));
}
