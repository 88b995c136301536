//! The Huntress connector (`plugins/huntress`) against the Huntress
//! emulator (and a fixture answering only in the older page-number style):
//! organisations across pages in both paging styles, agent counts that
//! match the world's truth, and the failures a real sync meets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_decimal::Decimal;
use serde_json::json;
use trueup_emulators::catalog::{VendorSource, reported_usage};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings, huntress as emulator};
use trueup_plugin_host::{ConnectorFailure, LoadedPlugin, VendorSession};

use crate::connector_harness::{
    Emulator, accounts_until_error, all_accounts, all_usage, attr, failure, load, on_path, session,
};

const ID: &str = "trueup.huntress";

fn connector_at(base: &str, extra: &[(&str, &str)]) -> Arc<LoadedPlugin> {
    let api = format!("{base}/v1");
    let mut config = vec![
        ("base_url", api.as_str()),
        ("api_key", emulator::PUBLIC_KEY),
    ];
    config.extend_from_slice(extra);
    load(ID, base, &config, &["api_secret"])
}

fn huntress_session(plugin: &Arc<LoadedPlugin>) -> VendorSession {
    session(plugin, "huntress", &[("api_secret", emulator::PRIVATE_KEY)])
}

/// `(id, customerIndex, agents, unresponsive, isolated)` of every
/// organisation.
async fn inspected(emulator: &Emulator) -> Vec<(String, Option<usize>, u64, u64, u64)> {
    emulator
        .inspect("/_emulator/huntress/organizations")
        .await
        .as_array()
        .expect("organisations")
        .iter()
        .map(|o| {
            (
                o["id"].as_u64().expect("id").to_string(),
                o["customerIndex"].as_u64().map(|i| i as usize),
                o["agents"].as_u64().expect("agents"),
                o["unresponsive"].as_u64().expect("unresponsive"),
                o["isolated"].as_u64().expect("isolated"),
            )
        })
        .collect()
}

#[tokio::test]
async fn organizations_and_agent_counts_match_the_world() {
    // Usage needs a request per organisation with agents: no rate limit
    // here (Huntress's 60 a minute would make this test take half an hour).
    let mut settings = Settings::default();
    settings.huntress.requests_per_minute = None;
    let emulator = Emulator::start(Kind::Huntress, 23, 1_500, settings).await;
    let mut session = huntress_session(&connector_at(emulator.base(), &[]));
    let orgs = inspected(&emulator).await;

    let (accounts, pages) = all_accounts(&mut session).await;
    assert!(accounts.len() >= 1_000, "{} accounts", accounts.len());
    assert_eq!(pages, orgs.len().div_ceil(500));
    let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let expected: Vec<&str> = orgs.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(ids, expected, "every organisation once, in order");

    let (usage, calls) = all_usage(&mut session, None).await;
    assert_eq!(calls, orgs.len().div_ceil(50), "50 organisations a call");
    assert_eq!(usage.len(), orgs.len(), "one record per organisation");
    let mut with_agents = 0;
    let mut over_billed = 0;
    for (u, (id, customer, agents, unresponsive, _)) in usage.iter().zip(&orgs) {
        assert_eq!(u.account.as_str(), id);
        assert_eq!(u.sku_id.as_str(), "huntress-edr-agent");
        assert_eq!(&*u.unit, "agent");
        // The billable agents: unresponsive ones are not billed.
        assert_eq!(
            u.quantity,
            Decimal::from(agents - unresponsive),
            "organization {id}"
        );
        assert_eq!(attr(u, "agents-count"), Some(agents.to_string().as_str()));
        over_billed += usize::from(*unresponsive > 0);
        assert!(attr(u, "organization-key").is_some());
        let truth = customer.map_or(9, |i| {
            reported_usage(&emulator.world.customers[i])
                .into_iter()
                .find(|(p, _)| matches!(p.source, VendorSource::HuntressAgents))
                .map_or(0, |(_, units)| units)
        });
        assert_eq!(u.quantity, Decimal::from(truth), "organization {id}");
        with_agents += usize::from(truth > 0);
    }
    assert!(with_agents > 900, "{with_agents}");
    assert!(
        over_billed > 10,
        "agents_count would over-bill {over_billed} organisations"
    );

    // One organisation at a time adds the EDR detail.
    let mut seen_unresponsive = false;
    for (id, _, agents, unresponsive, isolated) in orgs.iter().filter(|o| o.2 > 3).take(20) {
        let (alone, calls) = all_usage(&mut session, Some(id)).await;
        assert_eq!(calls, 1);
        let [record] = alone.as_slice() else {
            panic!("one record for organization {id}");
        };
        assert_eq!(record.quantity, Decimal::from(agents - unresponsive));
        assert_eq!(
            attr(record, "agents-count"),
            Some(agents.to_string().as_str())
        );
        assert_eq!(
            attr(record, "unresponsive-agents-count"),
            Some(unresponsive.to_string().as_str())
        );
        assert_eq!(
            attr(record, "isolated-agents-count"),
            Some(isolated.to_string().as_str())
        );
        seen_unresponsive |= *unresponsive > 0;
    }
    assert!(seen_unresponsive, "the sample holds unresponsive agents");
}

/// What the page-number fixture saw: the query of every request.
type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// Serves `/v1/organizations` for 1,234 organisations the way Huntress
/// answered before page tokens: `page`/`next_page` only (or, with
/// `tokens`, both a `next_page` and a `next_page_token`).
async fn page_number_fixture(tokens: bool) -> (String, Seen) {
    const TOTAL: u64 = 1_234;
    async fn organizations(
        State((seen, tokens)): State<(Seen, bool)>,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
    ) -> Response {
        seen.lock().expect("seen").push(query.clone());
        let credentials = trueup_emulators::vendor_common::basic_credentials(&headers);
        if credentials
            != Some((
                emulator::PUBLIC_KEY.to_owned(),
                emulator::PRIVATE_KEY.to_owned(),
            ))
        {
            return (StatusCode::UNAUTHORIZED, "bad key").into_response();
        }
        let limit: u64 = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(10);
        let offset = match (query.get("page_token"), query.get("page")) {
            (Some(token), _) => token.trim_start_matches("t").parse().unwrap_or(0),
            (None, page) => (page.and_then(|p| p.parse::<u64>().ok()).unwrap_or(1) - 1) * limit,
        };
        let end = (offset + limit).min(TOTAL);
        let page = offset / limit + 1;
        let items: Vec<_> = (offset..end)
            .map(|i| json!({"id": 100 + i, "name": format!("Org {i}"), "key": format!("org-{i}"), "agents_count": i % 7,
                // A server that puts the usage block in the list too: no
                // request per organisation is needed.
                "actual_usages": {"edr": {"billable_agents_count": i % 7}}}))
            .collect();
        let mut pagination = json!({
            "current_page": page,
            "limit": limit,
            "total_count": TOTAL,
            "next_page": (end < TOTAL).then_some(page + 1),
        });
        if tokens && end < TOTAL {
            pagination["next_page_token"] = json!(format!("t{end}"));
        }
        axum::Json(json!({"organizations": items, "pagination": pagination})).into_response()
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/organizations", get(organizations))
        .with_state((seen.clone(), tokens));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn page_numbers_are_followed_when_there_are_no_tokens() {
    let (base, seen) = page_number_fixture(false).await;
    let mut session = huntress_session(&connector_at(&base, &[]));
    let (accounts, pages) = all_accounts(&mut session).await;
    assert_eq!(accounts.len(), 1_234);
    assert_eq!(pages, 3);
    let pages_asked: Vec<Option<String>> = seen
        .lock()
        .expect("seen")
        .iter()
        .map(|q| q.get("page").cloned())
        .collect();
    assert_eq!(
        pages_asked,
        [Some("1".into()), Some("2".into()), Some("3".into())]
    );
    let (usage, _) = all_usage(&mut session, None).await;
    let total: Decimal = usage.iter().map(|u| u.quantity).sum();
    assert_eq!(
        total,
        Decimal::from((0..1_234u64).map(|i| i % 7).sum::<u64>())
    );
}

#[tokio::test]
async fn tokens_are_preferred_when_both_styles_are_offered() {
    let (base, seen) = page_number_fixture(true).await;
    let mut session = huntress_session(&connector_at(&base, &[]));
    let (accounts, _) = all_accounts(&mut session).await;
    assert_eq!(accounts.len(), 1_234);
    let seen = seen.lock().expect("seen");
    assert_eq!(seen[0].get("page").map(String::as_str), Some("1"));
    assert_eq!(seen[1].get("page_token").map(String::as_str), Some("t500"));
    assert_eq!(seen[2].get("page_token").map(String::as_str), Some("t1000"));
    assert!(seen[1..].iter().all(|q| !q.contains_key("page")));
}

#[tokio::test]
async fn a_rate_limit_burst_is_reported_with_its_retry_after() {
    let emulator = Emulator::start(Kind::Huntress, 3, 20, Settings::default()).await;
    let mut session = huntress_session(&connector_at(emulator.base(), &[]));
    emulator.faults(FaultPlan {
        rate_limited: 2,
        retry_after_secs: 4,
        ..FaultPlan::default()
    });
    for _ in 0..2 {
        let error = session
            .list_usage(None, None)
            .await
            .expect_err("rate limited");
        assert_eq!(
            failure(error),
            ConnectorFailure::RateLimited {
                retry_after: Duration::from_secs(4)
            }
        );
    }
    session
        .list_usage(None, None)
        .await
        .expect("the burst is over");
}

#[tokio::test]
async fn server_errors_are_transient_upstream_failures() {
    let emulator = Emulator::start(Kind::Huntress, 3, 20, Settings::default()).await;
    let mut session = huntress_session(&connector_at(emulator.base(), &[]));
    emulator.faults(on_path(
        "/v1/organizations",
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
}

#[tokio::test]
async fn truncated_json_names_the_request_and_position() {
    let emulator = Emulator::start(Kind::Huntress, 3, 20, Settings::default()).await;
    let mut session = huntress_session(&connector_at(emulator.base(), &[]));
    let orgs = inspected(&emulator).await;
    emulator.faults(FaultPlan {
        truncated: 1,
        ..FaultPlan::default()
    });
    let id = &orgs[0].0;
    let error = session
        .list_usage(Some(id), None)
        .await
        .expect_err("truncated");
    let ConnectorFailure::Internal(message) = failure(error) else {
        panic!("expected an internal error");
    };
    let url = format!("GET {}/v1/organizations/{id}", emulator.base());
    assert!(message.starts_with(&url), "{message}");
    assert!(message.contains("line 1, column"), "{message}");
}

#[tokio::test]
async fn a_repeating_page_token_is_reported_not_followed() {
    let emulator = Emulator::start(Kind::Huntress, 3, 60, Settings::default()).await;
    let mut session = huntress_session(&connector_at(emulator.base(), &[("page_size", "10")]));
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
        message.contains("/v1/organizations?limit=10&page_token="),
        "{message}"
    );
    assert!(message.contains("next-page token"), "{message}");
    assert!(message.contains("does not advance"), "{message}");
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_failure() {
    let emulator = Emulator::start(Kind::Huntress, 3, 5, Settings::default()).await;
    let plugin = connector_at(emulator.base(), &[]);
    let mut wrong = session(&plugin, "huntress", &[("api_secret", "hk_not_the_key")]);
    let error = wrong.list_accounts(None).await.expect_err("refused");
    let ConnectorFailure::AuthFailed(message) = failure(error) else {
        panic!("expected auth-failed");
    };
    assert!(message.contains("401"), "{message}");
    assert!(!message.contains("hk_not_the_key"));
}

/// The older single-organisation shape (a top-level `edr` block, no
/// billable count) is still read: its `agents_count`, marked as such.
#[tokio::test]
async fn the_older_edr_block_is_read_too() {
    let mut settings = Settings::default();
    settings.huntress.legacy_edr_block = true;
    let emulator = Emulator::start(Kind::Huntress, 23, 60, settings).await;
    let mut session = huntress_session(&connector_at(emulator.base(), &[]));
    let orgs = inspected(&emulator).await;
    let (id, _, agents, unresponsive, _) = orgs
        .iter()
        .find(|o| o.2 > 3)
        .expect("an organisation with agents");
    let (usage, _) = all_usage(&mut session, Some(id)).await;
    assert_eq!(usage[0].quantity, Decimal::from(*agents));
    assert_eq!(
        attr(&usage[0], "unresponsive-agents-count"),
        Some(unresponsive.to_string().as_str())
    );
    assert!(attr(&usage[0], "quantity-source").is_some_and(|s| s.starts_with("agents_count")));
}
