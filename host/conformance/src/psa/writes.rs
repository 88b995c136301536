//! The writes a connector plans and the writes the emulator receives: how
//! the scenario proves a dry run sends nothing and a write sends exactly
//! what was planned.

use std::collections::BTreeMap;

use trueup_emulators::Running;
use trueup_plugin_host::{CallError, PlannedCall, PsaSession, QuantityChange, WriteOutcome};

use super::against::Against;
use crate::report::describe_failure;

/// Writes the emulator has answered, by `"METHOD /path"`: requests with
/// any method but GET and HEAD, except the reads some APIs make with POST
/// (OAuth token requests, Autotask's `…/query`).
fn writes_seen(running: &Running) -> BTreeMap<String, u64> {
    running
        .faults
        .stats()
        .by_route
        .into_iter()
        .filter(|(route, _)| {
            let read = route.starts_with("GET ") || route.starts_with("HEAD ");
            let lower = route.to_ascii_lowercase();
            !(read || lower.ends_with("/auth/token") || lower.contains("/query"))
        })
        .collect()
}

/// The writes between two [`writes_seen`] snapshots.
fn writes_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(route, n)| {
            let new = n - before.get(route).copied().unwrap_or(0).min(*n);
            (new > 0).then(|| (route.clone(), new))
        })
        .collect()
}

/// The path of an absolute URL (no query).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The writes a plan lists, by `"METHOD /path"`.
fn planned_writes(plan: &[PlannedCall]) -> BTreeMap<String, u64> {
    let mut writes = BTreeMap::new();
    for call in plan {
        let method = call.method.to_ascii_uppercase();
        if method != "GET" && method != "HEAD" {
            *writes
                .entry(format!("{method} {}", path_of(&call.url)))
                .or_insert(0) += 1;
        }
    }
    writes
}

/// Plans `change` (described as `target`) and judges the dry run
/// ([`judge_plan`]); also the writes the plan lists.
pub(super) async fn plan_judged(
    main: &mut PsaSession,
    running: &Running,
    against: Against,
    change: &QuantityChange,
    target: &str,
) -> (Result<String, String>, BTreeMap<String, u64>) {
    let before = writes_seen(running);
    let plan = main.plan_quantity_change(change).await;
    let plan_writes = plan
        .as_ref()
        .map(|calls| planned_writes(calls))
        .unwrap_or_default();
    let sent = writes_between(&before, &writes_seen(running));
    (
        judge_plan(&plan, &plan_writes, &sent, against, target),
        plan_writes,
    )
}

/// Applies `change`; also the writes the emulator received meanwhile.
pub(super) async fn apply_counted(
    main: &mut PsaSession,
    running: &Running,
    change: &QuantityChange,
) -> (Result<WriteOutcome, CallError>, BTreeMap<String, u64>) {
    let before = writes_seen(running);
    let applied = main.apply_quantity_change(change).await;
    (applied, writes_between(&before, &writes_seen(running)))
}

/// The verdict on a dry run of `target`: it lists calls, with a write
/// (`plan_writes`) among them and a purpose for each, carries none of
/// `against`'s secrets, and sent no write (`sent_while_planning`).
fn judge_plan(
    plan: &Result<Vec<PlannedCall>, CallError>,
    plan_writes: &BTreeMap<String, u64>,
    sent_while_planning: &BTreeMap<String, u64>,
    against: Against,
    target: &str,
) -> Result<String, String> {
    let calls = plan.as_ref().map_err(describe_failure)?;
    let secret_values: Vec<&str> = against.secrets().into_iter().map(|(_, v)| v).collect();
    let leaked = calls.iter().any(|c| {
        secret_values
            .iter()
            .any(|s| c.url.contains(s) || c.body.as_deref().is_some_and(|b| b.contains(s)))
    });
    if !sent_while_planning.is_empty() {
        Err(format!(
            "the emulator received writes while planning: {sent_while_planning:?}"
        ))
    } else if plan_writes.is_empty() {
        Err(format!(
            "the plan of {target} lists no write ({} calls)",
            calls.len()
        ))
    } else if calls.iter().any(|c| c.purpose.trim().is_empty()) {
        Err("a planned call has no purpose".to_owned())
    } else if leaked {
        Err("a planned call carries a secret".to_owned())
    } else {
        Ok(format!(
            "{} calls for {target}; writes {}",
            calls.len(),
            plan_writes.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    }
}
