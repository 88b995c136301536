//! Step 8 of the scenario: injected faults, each on a fresh session (no
//! cached token or zone).

use std::time::Duration;

use trueup_emulators::Running;
use trueup_emulators::faults::FaultPlan;
use trueup_plugin_host::{CallError, CallErrorKind, ConnectorFailure};

use super::against::Against;
use super::connect::Connection;
use crate::report::{Report, clip};

/// Calls within which a connector must report a paging loop.
pub const LOOP_CALLS: usize = 12;

/// The `Retry-After` the 429 burst sends, in seconds.
pub const RETRY_AFTER_SECS: u32 = 7;

/// Step 8 of the scenario: a 429 burst, a 500, truncated JSON and a paging
/// loop injected into the emulator `running` at the connection's origin,
/// each met by a fresh session of `connection`.
pub(super) async fn check_faults(
    report: &mut Report<Against>,
    connection: &Connection,
    running: &Running,
) {
    let origin = running.base_url.clone();
    let first_page = async |plan: FaultPlan| -> Result<CallError, String> {
        running.faults.set_plan(plan);
        let mut fresh = connection.session().map_err(|e| e.to_string())?;
        let result = fresh.list_companies(None).await;
        running.faults.set_plan(FaultPlan::default());
        match result {
            Ok(page) => Err(format!(
                "the call succeeded with {} companies",
                page.items.len()
            )),
            Err(error) => Ok(error),
        }
    };
    let burst = first_page(FaultPlan {
        rate_limited: 3,
        retry_after_secs: RETRY_AFTER_SECS,
        ..FaultPlan::default()
    })
    .await;
    report.record(
        "429 burst is rate-limited with the wait",
        burst.and_then(|error| match error.kind {
            CallErrorKind::Connector(ConnectorFailure::RateLimited { retry_after })
                if retry_after >= Duration::from_secs(u64::from(RETRY_AFTER_SECS)) =>
            {
                Ok(format!("rate-limited, retry after {retry_after:?}"))
            }
            _ => Err(format!(
                "expected rate-limited ≥ {RETRY_AFTER_SECS} s: {error}"
            )),
        }),
    );
    let server_error = first_page(FaultPlan {
        server_errors: 1,
        ..FaultPlan::default()
    })
    .await;
    report.record(
        "500 is a transient upstream error",
        server_error.and_then(|error| match &error.kind {
            CallErrorKind::Connector(ConnectorFailure::Upstream { status: 500, .. })
                if error.is_transient() =>
            {
                Ok(error.to_string())
            }
            _ => Err(format!("expected a transient upstream 500: {error}")),
        }),
    );
    let truncated = first_page(FaultPlan {
        truncated: 1,
        ..FaultPlan::default()
    })
    .await;
    report.record(
        "truncated JSON is an internal error naming the URL",
        truncated.and_then(|error| match &error.kind {
            CallErrorKind::Connector(ConnectorFailure::Internal(message))
                if message.contains(&origin) =>
            {
                Ok(clip(message))
            }
            _ => Err(format!(
                "expected an internal error naming {origin}: {error}"
            )),
        }),
    );
    running.faults.set_plan(FaultPlan {
        paging_loop: true,
        ..FaultPlan::default()
    });
    let looped = async {
        let mut fresh = connection.session().map_err(|e| e.to_string())?;
        let mut cursor: Option<String> = None;
        for call in 1..=LOOP_CALLS {
            match fresh.list_companies(cursor.as_deref()).await {
                Err(error) => return Ok((call, error)),
                Ok(page) => match page.next_cursor {
                    None => return Err(format!("the listing ended normally after {call} calls")),
                    Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                        return Err(format!("call {call} handed back the same cursor (the connector follows the loop)"));
                    }
                    Some(next) => cursor = Some(next),
                },
            }
        }
        Err(format!("still paging after {LOOP_CALLS} calls"))
    }
    .await;
    running.faults.set_plan(FaultPlan::default());
    report.record(
        "paging loop is detected",
        looped.and_then(|(call, error)| match &error.kind {
            CallErrorKind::Connector(ConnectorFailure::Internal(message)) => {
                Ok(format!("call {call}: {}", clip(message)))
            }
            _ => Err(format!(
                "expected an internal error reporting the loop: {error}"
            )),
        }),
    );
}
