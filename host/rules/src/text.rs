//! Rule decisions as text for people: traces, policies, the products a
//! mapping gives, a row's attributes. Shared by the tests beside rules
//! ([`crate::cases`]), `trueup rules explain` ([`crate::explain`]) and the
//! dry-run diff ([`crate::diff`]).

use rust_decimal::Decimal;
use trueup_core::mapping::{MappingTarget, ServicePolicy, Trace, TraceStep, UsageMapping};
use trueup_core::model::Attributes;

use crate::table::{measure_name, rounding_name};

/// One trace step as a line: `✓ rule (file:line:col): outcome`.
pub fn step_line(step: &TraceStep) -> String {
    let mark = if step.matched { "✓" } else { "✗" };
    match &step.position {
        Some(p) => format!("{mark} {} ({p}): {}", step.rule, step.outcome),
        None => format!("{mark} {}: {}", step.rule, step.outcome),
    }
}

/// A trace as lines, in the order the rules were considered.
pub fn trace_lines(trace: &Trace) -> Vec<String> {
    trace.steps.iter().map(step_line).collect()
}

/// A policy in one line.
pub fn policy_text(policy: &ServicePolicy) -> String {
    let mut parts = vec![
        format!("effective {}", policy.effective_date),
        format!("measure {}", measure_name(policy.measure)),
        format!("round {}", rounding_name(policy.rounding)),
    ];
    if let Some(p) = policy.prorate {
        parts.push(if p {
            "prorate".to_owned()
        } else {
            "no proration".to_owned()
        });
    }
    if !policy.tolerance.units.is_zero() {
        parts.push(format!("tolerance {} unit(s)", policy.tolerance.units));
    }
    if !policy.tolerance.percent.is_zero() {
        parts.push(format!("tolerance {}%", policy.tolerance.percent));
    }
    if let Some(m) = policy.min_quantity {
        parts.push(format!("minimum {m}"));
    }
    if let Some(m) = policy.max_quantity {
        parts.push(format!("maximum {m}"));
    }
    match policy.auto_approve.max_increase {
        Some(n) => parts.push(format!("auto-approve increases up to {n}")),
        None => parts.push("no auto-approval".to_owned()),
    }
    parts.join(", ")
}

/// Products a mapping gives, for displays ("M365-BP ×1 + BACKUP ×1").
pub fn mapping_text(mapping: &UsageMapping) -> String {
    if !mapping.targets.is_empty() {
        return targets_text(&pairs(&mapping.targets));
    }
    match decider(mapping) {
        Some(rule) => format!("ignored (by {rule})"),
        None => "unmapped".to_owned(),
    }
}

/// Attribute pairs of a row as `key=value` text, sorted by key.
pub fn attributes_text(attributes: &Attributes) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Products with their multipliers, "M365-BP ×1 + BACKUP ×1".
pub(crate) fn targets_text(targets: &[(String, Decimal)]) -> String {
    if targets.is_empty() {
        return "(no products)".to_owned();
    }
    targets
        .iter()
        .map(|(p, m)| format!("{p} ×{m}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// (product, multiplier) pairs, normalised and sorted, for comparing.
pub(crate) fn pairs(targets: &[MappingTarget]) -> Vec<(String, Decimal)> {
    let mut out: Vec<(String, Decimal)> = targets
        .iter()
        .map(|t| (t.product.to_string(), t.multiplier.normalize()))
        .collect();
    out.sort();
    out
}

/// The terminal rule that decided a mapping, if one did.
pub(crate) fn decider(mapping: &UsageMapping) -> Option<&str> {
    mapping
        .trace
        .steps
        .iter()
        .find(|s| s.matched && !s.outcome.starts_with("also"))
        .map(|s| s.rule.as_ref())
}
