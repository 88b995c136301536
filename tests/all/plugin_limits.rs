//! Hostile guests, built from source in `tests/guests/hostile`: each
//! misbehaviour is contained with the right error class, and a well-behaved
//! call right after still works, on the same session and on another plugin.

use trueup_core::model::VendorId;
use trueup_plugin_host::{CallErrorKind, ConnectorFailure};

use crate::support::{TOKEN, engine, fixture_server, hostile, options_with_token};

/// Runs `behaviour` in list-usage and returns the error kind, after checking
/// that the session recovers and another plugin is unaffected.
async fn contained(behaviour: &str) -> CallErrorKind {
    let engine = engine();
    let base = fixture_server().await;
    let plugin = hostile(&engine, behaviour, &base);
    let mut session = plugin
        .vendor_session(VendorId::from("hostile"), options_with_token())
        .expect("vendor session");
    let error = session
        .list_usage(None, None)
        .await
        .expect_err(&format!("{behaviour} must fail"));
    assert_eq!(error.plugin, "test.hostile");
    assert_eq!(error.export, "list-usage");
    assert!(
        error
            .to_string()
            .starts_with("plugin test.hostile 0.1.0, list-usage: "),
        "{error}"
    );
    // The same session works again (a fresh instance after a trap).
    let accounts = session
        .list_accounts(None)
        .await
        .unwrap_or_else(|e| panic!("after {behaviour}, a good call failed: {e}"));
    assert_eq!(accounts.items.len(), 2);
    // Another plugin on the same engine is unaffected.
    let neighbour = hostile(&engine, "well-behaved", &base);
    let mut other = neighbour
        .vendor_session(VendorId::from("neighbour"), options_with_token())
        .expect("vendor session");
    let usage = other.list_usage(None, None).await.expect("neighbour works");
    assert_eq!(usage.items.len(), 2);
    error.kind
}

#[tokio::test]
async fn infinite_loop_hits_the_cpu_budget() {
    let kind = contained("loop").await;
    assert!(matches!(kind, CallErrorKind::CpuBudget { .. }), "{kind:?}");
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let kind = contained("memory-bomb").await;
    assert_eq!(kind, CallErrorKind::MemoryLimit { limit_mib: 32 });
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let kind = contained("stack-overflow").await;
    assert_eq!(kind, CallErrorKind::StackOverflow);
}

#[tokio::test]
async fn recursion_through_the_linear_memory_stack_is_a_stack_overflow_too() {
    let kind = contained("shadow-stack-overflow").await;
    assert_eq!(kind, CallErrorKind::StackOverflow);
}

#[tokio::test]
async fn huge_output_is_refused() {
    let kind = contained("huge-output").await;
    match kind {
        CallErrorKind::OutputTooLarge { detail } => {
            assert!(detail.contains("30000 items"), "{detail}");
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn panic_is_reported_with_its_message() {
    let kind = contained("panic").await;
    match kind {
        CallErrorKind::Panic { message } => {
            assert!(
                message.contains("the hostile guest panics on purpose"),
                "{message}"
            );
        }
        other => panic!("expected Panic, got {other:?}"),
    }
}

#[tokio::test]
async fn slow_host_call_past_the_deadline_times_out() {
    let started = std::time::Instant::now();
    let kind = contained("slow-http").await;
    assert!(matches!(kind, CallErrorKind::Timeout { .. }), "{kind:?}");
    // The deadline is 2 s; the server answers after 10 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

#[tokio::test]
async fn malformed_output_names_item_and_field() {
    let kind = contained("bad-date").await;
    assert_eq!(
        kind,
        CallErrorKind::InvalidOutput {
            detail: "item 0: commitment-end 2025-02-30 is not a calendar date".into()
        }
    );
}

#[tokio::test]
async fn secrets_echoed_back_are_redacted_from_errors() {
    let kind = contained("echo-secret").await;
    match kind {
        CallErrorKind::Connector(ConnectorFailure::Internal(message)) => {
            assert!(!message.contains(TOKEN), "{message}");
            assert!(message.contains("Bearer [redacted]"), "{message}");
        }
        other => panic!("expected a connector error, got {other:?}"),
    }
}
