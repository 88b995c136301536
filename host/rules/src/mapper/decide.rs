//! Deciding a key seen for the first time: walking the plan's rules in
//! order, in native Rust, and recording the trace of why each did or did
//! not apply.

use std::sync::Arc;

use rhai::{Dynamic, Map};
use rust_decimal::Decimal;
use trueup_core::mapping::{MappingFailure, MappingTarget, Trace, TraceStep, UsageMapping};
use trueup_core::model::{Company, ProductId, UsageObservation};

use super::{RulesMapper, RunState};
use crate::limits::MAX_CHOSEN_TARGETS;
use crate::table::{ClosureId, Condition, RowView, Rule, RuleKind};

impl RulesMapper {
    /// Walks the plan's rules for one row and records the decision.
    pub(super) fn decide(
        &self,
        st: &mut RunState,
        plan_index: u32,
        usage: &UsageObservation,
        company: Option<&Company>,
    ) -> u32 {
        st.stats.decisions += 1;
        let row = RowView {
            vendor: usage.vendor.as_str(),
            sku: usage.sku_id.as_str(),
            sku_name: &usage.sku_name,
            term: usage.billing_term.as_deref(),
            attributes: &usage.attributes,
            company,
            as_of: self.as_of,
        };
        let decision = match self.walk(st, plan_index, &row) {
            Ok(mapping) => {
                let shared = match st.interned.get(&mapping) {
                    Some(shared) => Arc::clone(shared),
                    None => {
                        let shared = Arc::new(mapping);
                        st.interned.insert(Arc::clone(&shared));
                        shared
                    }
                };
                Ok(shared)
            }
            Err(failure) => Err(failure),
        };
        st.decisions.push(decision);
        (st.decisions.len() - 1) as u32
    }

    pub(super) fn walk(
        &self,
        st: &mut RunState,
        plan_index: u32,
        row: &RowView<'_>,
    ) -> Result<UsageMapping, MappingFailure> {
        let table = &self.rules.table;
        let candidates = st.plans[plan_index as usize].candidates.clone();
        let mut steps = Vec::new();
        let mut decided: Option<(RuleKind, Vec<MappingTarget>)> = None;
        for &i in &candidates {
            let rule = &table.rules[i as usize];
            if !rule.kind.is_terminal() {
                continue;
            }
            let facts = match self.rule_holds(st, rule, row)? {
                Ok(facts) => facts,
                Err(why) => {
                    steps.push(step(rule, false, why));
                    continue;
                }
            };
            let targets = match rule.chooser {
                Some(id) => match self.choose(st, rule, id, row)? {
                    Some(targets) => targets,
                    None => {
                        steps.push(step(
                            rule,
                            false,
                            "choose(...) returned () (no decision)".to_owned(),
                        ));
                        continue;
                    }
                },
                None => rule.targets.clone(),
            };
            let kind = if targets.is_empty() {
                RuleKind::Ignore
            } else {
                rule.kind
            };
            let because = rule
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let outcome = match kind {
                RuleKind::Ignore => format!("not billed{because}{}", facts_text(&facts)),
                _ => format!(
                    "→ {}{because}{}",
                    Rule::describe_targets(&targets),
                    facts_text(&facts)
                ),
            };
            steps.push(step(rule, true, outcome));
            decided = Some((kind, targets));
            break;
        }
        let mut targets = match decided {
            Some((RuleKind::Map | RuleKind::Also, targets)) => targets,
            Some((RuleKind::Ignore, _)) => {
                let reason = steps
                    .last()
                    .map(|s| format!("{}: {}", s.rule, s.outcome))
                    .unwrap_or_else(|| "not billed by rule".to_owned());
                return Ok(UsageMapping {
                    targets: Vec::new(),
                    ignored: Some(Arc::from(reason)),
                    trace: Trace { steps },
                });
            }
            None => {
                let plan = &st.plans[plan_index as usize];
                let outcome = if self.rules.by_vendor.contains_key(plan.vendor.as_ref()) {
                    if candidates.is_empty() {
                        format!(
                            "no rule for {} applies to SKU {} ({})",
                            plan.vendor, plan.sku, plan.sku_name
                        )
                    } else {
                        format!(
                            "no rule maps {} SKU {} ({})",
                            plan.vendor, plan.sku, plan.sku_name
                        )
                    }
                } else {
                    format!("no rule mentions vendor {}", plan.vendor)
                };
                steps.push(TraceStep {
                    rule: Arc::from(self.rules.file()),
                    position: None,
                    matched: false,
                    outcome,
                });
                return Ok(UsageMapping {
                    targets: Vec::new(),
                    ignored: None,
                    trace: Trace { steps },
                });
            }
        };
        for &i in &candidates {
            let rule = &table.rules[i as usize];
            if rule.kind != RuleKind::Also {
                continue;
            }
            match self.rule_holds(st, rule, row)? {
                Ok(facts) => {
                    let added = match rule.chooser {
                        Some(id) => self.choose(st, rule, id, row)?.unwrap_or_default(),
                        None => rule.targets.clone(),
                    };
                    let because = rule
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    steps.push(step(
                        rule,
                        true,
                        format!(
                            "also → {}{because}{}",
                            Rule::describe_targets(&added),
                            facts_text(&facts)
                        ),
                    ));
                    targets.extend(added);
                }
                Err(why) => steps.push(step(rule, false, why)),
            }
        }
        Ok(UsageMapping {
            targets,
            ignored: None,
            trace: Trace { steps },
        })
    }

    /// Whether every condition of `rule` holds: the facts when they do,
    /// the first that fails when not. Native conditions are checked before
    /// closures, so a closure runs only when it can still matter.
    pub(super) fn rule_holds(
        &self,
        st: &mut RunState,
        rule: &Rule,
        row: &RowView<'_>,
    ) -> Result<Result<Vec<String>, String>, MappingFailure> {
        let mut facts = Vec::new();
        for condition in rule.conditions.iter().filter(|c| !c.is_closure()) {
            if let Some(check) = condition.check(row) {
                if !check.pass {
                    return Ok(Err(check.why));
                }
                facts.push(check.why);
            }
        }
        for condition in rule.conditions.iter().filter(|c| c.is_closure()) {
            let (id, value) = match condition {
                Condition::Predicate(id) => (*id, self.call_row(st, rule, *id, row)?),
                Condition::CompanyPredicate(id) => match row.company {
                    Some(company) => (*id, self.call_company(st, rule, *id, company)?),
                    None => return Ok(Err("the account is not mapped to a company".to_owned())),
                },
                _ => continue,
            };
            let line = self.rules.table.closures[id].position.line;
            match value.as_bool() {
                Ok(true) => facts.push(format!("the condition at line {line} holds")),
                Ok(false) => return Ok(Err(format!("the condition at line {line} is false"))),
                Err(kind) => {
                    return Err(self.closure_failure(
                        rule,
                        id,
                        format!("the condition returned {kind}; it must return true or false"),
                        None,
                    ));
                }
            }
        }
        Ok(Ok(facts))
    }

    pub(super) fn choose(
        &self,
        st: &mut RunState,
        rule: &Rule,
        id: ClosureId,
        row: &RowView<'_>,
    ) -> Result<Option<Vec<MappingTarget>>, MappingFailure> {
        let value = self.call_row(st, rule, id, row)?;
        let bad = |what: String| {
            self.closure_failure(
                rule,
                id,
                format!("choose(...) returned {what}; it must return a product id, a map #{{product, multiplier}}, an array of them, or ()"),
                None,
            )
        };
        if value.is_unit() {
            return Ok(None);
        }
        let items: Vec<Dynamic> = if value.is_array() {
            value.clone().into_array().map_err(|t| bad(t.to_owned()))?
        } else {
            vec![value]
        };
        if items.len() > MAX_CHOSEN_TARGETS {
            return Err(bad(format!(
                "{} products (at most {MAX_CHOSEN_TARGETS})",
                items.len()
            )));
        }
        let mut targets = Vec::with_capacity(items.len());
        for item in items {
            let (product, multiplier) = if item.is_string() {
                (
                    item.into_string().map_err(|t| bad(t.to_owned()))?,
                    Decimal::ONE,
                )
            } else if item.is_map() {
                let map = item.cast::<Map>();
                let product = map
                    .get("product")
                    .and_then(|p| p.clone().into_string().ok())
                    .ok_or_else(|| bad("a map without a product string".to_owned()))?;
                let multiplier = match map.get("multiplier") {
                    None => Decimal::ONE,
                    Some(m) => match (m.as_int(), m.clone().try_cast::<Decimal>()) {
                        (Ok(i), _) => Decimal::from(i),
                        (_, Some(d)) => d,
                        _ => return Err(bad(format!("a multiplier of type {}", m.type_name()))),
                    },
                };
                (product, multiplier)
            } else {
                return Err(bad(item.type_name().to_owned()));
            };
            if product.trim().is_empty() || multiplier <= Decimal::ZERO {
                return Err(bad(format!("product {product:?} ×{multiplier}")));
            }
            targets.push(MappingTarget {
                product: ProductId::from(product),
                multiplier,
            });
        }
        Ok(Some(targets))
    }
}

pub(super) fn step(rule: &Rule, matched: bool, outcome: String) -> TraceStep {
    TraceStep {
        rule: Arc::clone(&rule.name),
        position: Some(rule.position.clone()),
        matched,
        outcome,
    }
}

pub(super) fn facts_text(facts: &[String]) -> String {
    if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join("; "))
    }
}
