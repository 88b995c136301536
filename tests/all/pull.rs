//! Pulling through a session: rate limits are waited out, transient
//! failures retried with backoff, persistent ones and paging loops stop the
//! pull with the phase named — never a silent partial result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use trueup::pull::{PullError, RetryPolicy, pull_vendor};
use trueup_core::model::VendorId;
use trueup_plugin_host::{CallErrorKind, ConnectorFailure};

use crate::support::{engine, hostile, options_with_token};

/// Answers `/accounts` with `status` for the first `failures` requests,
/// then with two accounts.
async fn flaky_server(status: StatusCode, failures: u32) -> (String, Arc<AtomicU32>) {
    let seen = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/accounts",
            get(move |State(seen): State<Arc<AtomicU32>>| async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "1".parse().expect("header"));
                    (status, headers, "try later").into_response()
                } else {
                    (StatusCode::OK, "Northwind\nContoso").into_response()
                }
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), seen)
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        base_backoff: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_and_the_same_page_retried() {
    let (base, seen) = flaky_server(StatusCode::TOO_MANY_REQUESTS, 1).await;
    let plugin = hostile(&engine(), "well-behaved", &base);
    let mut session = plugin
        .vendor_session(VendorId::from("v"), options_with_token())
        .expect("session");
    let pull = pull_vendor(&mut session, &fast_policy(), &|_| {})
        .await
        .expect("the pull recovers");
    assert_eq!(pull.accounts.len(), 2);
    // Two accounts, two usage rows each.
    assert_eq!(pull.usage.len(), 4);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(pull.stats.retries, 1);
    assert_eq!(pull.stats.rate_limit_wait, Duration::from_secs(1));
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff() {
    let (base, seen) = flaky_server(StatusCode::BAD_GATEWAY, 2).await;
    let plugin = hostile(&engine(), "well-behaved", &base);
    let mut session = plugin
        .vendor_session(VendorId::from("v"), options_with_token())
        .expect("session");
    let pull = pull_vendor(&mut session, &fast_policy(), &|_| {})
        .await
        .expect("the pull recovers");
    assert_eq!(pull.accounts.len(), 2);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(pull.stats.retries, 2);
    // 10 ms, then 20 ms.
    assert_eq!(pull.stats.backoff_wait, Duration::from_millis(30));
}

#[tokio::test]
async fn persistent_errors_stop_the_pull_naming_the_phase() {
    let (base, seen) = flaky_server(StatusCode::SERVICE_UNAVAILABLE, 100).await;
    let plugin = hostile(&engine(), "well-behaved", &base);
    let mut session = plugin
        .vendor_session(VendorId::from("v"), options_with_token())
        .expect("session");
    let error = pull_vendor(&mut session, &fast_policy(), &|_| {})
        .await
        .expect_err("the pull gives up");
    match &error {
        PullError::Call { phase, error, .. } => {
            assert_eq!(*phase, "accounts");
            assert_eq!(
                error.kind,
                CallErrorKind::Connector(ConnectorFailure::Upstream {
                    status: 503,
                    body: "try later".into(),
                    retryable: true,
                })
            );
        }
        other => panic!("expected a call error, got {other:?}"),
    }
    assert_eq!(seen.load(Ordering::SeqCst), fast_policy().max_attempts);
    assert_eq!(error.stats().retries, fast_policy().max_attempts - 1);
}

#[tokio::test]
async fn non_transient_errors_are_not_retried() {
    let (base, seen) = flaky_server(StatusCode::UNAUTHORIZED, 100).await;
    let plugin = hostile(&engine(), "well-behaved", &base);
    let mut session = plugin
        .vendor_session(VendorId::from("v"), options_with_token())
        .expect("session");
    let error = pull_vendor(&mut session, &fast_policy(), &|_| {})
        .await
        .expect_err("auth failure");
    assert!(
        matches!(&error, PullError::Call { error, .. } if matches!(error.kind, CallErrorKind::Connector(ConnectorFailure::AuthFailed(_)))),
        "{error:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_paging_loop_is_stopped_not_followed() {
    let (base, _) = flaky_server(StatusCode::OK, 0).await;
    let plugin = hostile(&engine(), "cursor-loop", &base);
    let mut session = plugin
        .vendor_session(VendorId::from("v"), options_with_token())
        .expect("session");
    let error = pull_vendor(&mut session, &fast_policy(), &|_| {})
        .await
        .expect_err("loop detected");
    match error {
        PullError::PagingLoop {
            phase,
            cursor,
            stats,
        } => {
            assert_eq!(phase, "usage");
            assert_eq!(cursor, "page-2");
            // accounts (1 page), then usage: page 1 and the repeat.
            assert_eq!(stats.pages, 3);
        }
        other => panic!("expected a paging loop, got {other:?}"),
    }
}
