//! [`RulesMapper`]: a compiled rule version applied to one reconcile run.
//!
//! Evaluation never happens per usage row. Per row, the mapper:
//!
//! 1. finds the row's *plan* by the pointers of its interned vendor, SKU and
//!    SKU-name strings (one small hash lookup): the rules that can apply to
//!    that SKU, in order, and what they read (attribute keys, the billing
//!    term, the company);
//! 2. if the plan reads nothing, returns the plan's one decision;
//! 3. otherwise builds a byte key of the values the plan reads and looks it
//!    up (the previous row's key is compared first, so runs of equal rows
//!    skip the hash).
//!
//! Only a key seen for the first time is *decided*: the rules are walked in
//! native Rust, and a Rhai closure is called only if its own memo (keyed by
//! the closure and the values it declared it reads) has no answer. So a
//! closure runs once per distinct value of what it reads, whatever the
//! number of rows. Decisions are shared `Arc`s, interned by content.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use rhai::{Dynamic, ImmutableString, Map};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::effective::PsaProfile;
use trueup_core::fasthash::FxHashMap;
use trueup_core::mapping::{
    MappingFailure, MappingTarget, PolicyContext, RowDependence, ServicePolicy, SourcePosition,
    Trace, TraceStep, UsageMapper, UsageMapping,
};
use trueup_core::model::{Company, Contract, ProductId, UsageObservation};

use crate::compile::{CompiledRules, describe};
use crate::limits::{
    MAX_CHOSEN_TARGETS, MAX_CLOSURE_OPERATIONS, MAX_EVALUATION_TIME, MAX_MEMO_ENTRIES,
};
use crate::script::{source_position, with_budget};
use crate::table::{
    ClosureId, Condition, PolicyCondition, RowView, Rule, RuleKind, ServiceDecl, cycle_name,
    timing_name,
};

/// Counts from one run, to show that evaluation is per key, not per row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalStats {
    /// `map_usage` calls.
    pub map_calls: u64,
    /// Calls answered from a memo (a plan's one decision, the previous key,
    /// or the key memo).
    pub memo_hits: u64,
    /// Distinct keys decided by walking the rules.
    pub decisions: u64,
    /// Rhai closure calls.
    pub closure_calls: u64,
    /// Closure results answered from the closure memo.
    pub closure_memo_hits: u64,
    /// `service_policy` calls.
    pub policy_calls: u64,
    /// Distinct (vendor, SKU, SKU name) plans built.
    pub plans: u64,
}

type Decision = Result<Arc<UsageMapping>, MappingFailure>;

/// The rules that can apply to one (vendor, SKU, SKU name), and what they
/// read.
struct Plan {
    vendor: Arc<str>,
    sku: Arc<str>,
    sku_name: Arc<str>,
    candidates: Vec<u32>,
    attrs: Vec<Arc<str>>,
    reads_term: bool,
    reads_company: bool,
    /// The decision when the plan reads nothing.
    constant: Option<u32>,
}

impl Plan {
    fn reads_nothing(&self) -> bool {
        self.attrs.is_empty() && !self.reads_term && !self.reads_company
    }
}

/// Service declarations that can apply to one product.
struct PolicyPlan {
    candidates: Vec<u32>,
    conditional: bool,
    /// The policy when no candidate has conditions, with the PSA it was
    /// computed for.
    constant: Option<(PsaProfile, ServicePolicy)>,
}

#[derive(Default)]
struct RunState {
    plans: Vec<Plan>,
    plan_by_ptr: FxHashMap<(usize, usize, usize), u32>,
    /// The previous row's plan key and plan: runs of rows of one SKU skip
    /// the hash.
    last_plan: ((usize, usize, usize), u32),
    plan_by_text: HashMap<String, u32>,
    /// Strings whose pointers are keys above, kept alive so an address
    /// cannot be reused by another string during the run.
    keepalive: Vec<Arc<str>>,
    decisions: Vec<Decision>,
    memo: FxHashMap<Box<[u8]>, u32>,
    scratch: Vec<u8>,
    last_key: Vec<u8>,
    last: Option<u32>,
    closure_memo: FxHashMap<Box<[u8]>, Result<Dynamic, MappingFailure>>,
    interned: HashSet<Arc<UsageMapping>>,
    policy_plans: Vec<PolicyPlan>,
    policy_by_ptr: FxHashMap<usize, u32>,
    policy_by_text: HashMap<String, u32>,
    stats: EvalStats,
}

/// A compiled rule version applied to one reconcile run as of one date
/// (`seen_within_days` counts back from it). Memoises within the run; make
/// a new one per run.
pub struct RulesMapper {
    rules: Arc<CompiledRules>,
    as_of: NaiveDate,
    as_of_text: ImmutableString,
    state: Mutex<RunState>,
}

impl std::fmt::Debug for RulesMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesMapper")
            .field("rules", &self.rules)
            .field("as_of", &self.as_of)
            .finish_non_exhaustive()
    }
}

fn ptr(s: &Arc<str>) -> usize {
    Arc::as_ptr(s).cast::<u8>().addr()
}

/// Appends one optional text to a key, unambiguously.
fn push_part(key: &mut Vec<u8>, part: Option<&str>) {
    match part {
        None => key.push(0xff),
        Some(text) => {
            key.push(0);
            key.extend_from_slice(&(text.len() as u32).to_le_bytes());
            key.extend_from_slice(text.as_bytes());
        }
    }
}

fn company_text(company: Option<&Company>) -> Option<&str> {
    company.map(|c| c.id.as_str())
}

impl RulesMapper {
    /// The mapper of `rules` for a run as of `as_of`.
    pub fn new(rules: Arc<CompiledRules>, as_of: NaiveDate) -> Self {
        Self {
            rules,
            as_of,
            as_of_text: as_of.to_string().into(),
            state: Mutex::new(RunState::default()),
        }
    }

    /// The compiled rules.
    pub fn rules(&self) -> &Arc<CompiledRules> {
        &self.rules
    }

    /// The run's as-of date.
    pub fn as_of(&self) -> NaiveDate {
        self.as_of
    }

    /// Counts so far.
    pub fn stats(&self) -> EvalStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // --------------------------------------------------------- mapping

    fn plan_of(&self, st: &mut RunState, usage: &UsageObservation) -> u32 {
        let key = (
            ptr(&usage.vendor.0),
            ptr(&usage.sku_id.0),
            ptr(&usage.sku_name),
        );
        if st.last_plan.0 == key {
            return st.last_plan.1;
        }
        if let Some(&plan) = st.plan_by_ptr.get(&key) {
            st.last_plan = (key, plan);
            return plan;
        }
        let text = format!(
            "{}\u{0}{}\u{0}{}",
            usage.vendor, usage.sku_id, usage.sku_name
        );
        let plan = match st.plan_by_text.get(&text) {
            Some(&plan) => plan,
            None => {
                let plan = self.build_plan(usage);
                st.plans.push(plan);
                st.stats.plans += 1;
                let index = (st.plans.len() - 1) as u32;
                st.plan_by_text.insert(text, index);
                index
            }
        };
        // Strings that are not interned get a new pointer per row; past
        // the cap their rows are found by text, without growing the map.
        if st.plan_by_ptr.len() < MAX_MEMO_ENTRIES {
            st.keepalive.push(Arc::clone(&usage.vendor.0));
            st.keepalive.push(Arc::clone(&usage.sku_id.0));
            st.keepalive.push(Arc::clone(&usage.sku_name));
            st.plan_by_ptr.insert(key, plan);
            st.last_plan = (key, plan);
        }
        plan
    }

    fn build_plan(&self, usage: &UsageObservation) -> Plan {
        let table = &self.rules.table;
        let mut candidates = Vec::new();
        let mut closed = false;
        for &i in self
            .rules
            .by_vendor
            .get(usage.vendor.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let rule = &table.rules[i as usize];
            if !rule.applies_to_sku(usage.sku_id.as_str(), &usage.sku_name) {
                continue;
            }
            // After an unconditional terminal rule, only dependent lines
            // can still apply.
            if closed && rule.kind.is_terminal() {
                continue;
            }
            candidates.push(i);
            if rule.is_unconditional() {
                closed = true;
            }
        }
        let mut attrs: Vec<Arc<str>> = Vec::new();
        let (mut reads_term, mut reads_company) = (false, false);
        let mut add = |key: &Arc<str>| {
            if !attrs.contains(key) {
                attrs.push(Arc::clone(key));
            }
        };
        for &i in &candidates {
            let rule = &table.rules[i as usize];
            for condition in &rule.conditions {
                if let Some(key) = condition.attribute() {
                    add(key);
                }
                match condition {
                    Condition::TermIn { .. } => reads_term = true,
                    Condition::CompanyIn { .. } | Condition::CompanyPredicate(_) => {
                        reads_company = true
                    }
                    Condition::Predicate(id) => table.closures[*id].attrs.iter().for_each(&mut add),
                    _ => {}
                }
            }
            if let Some(id) = rule.chooser {
                table.closures[id].attrs.iter().for_each(&mut add);
            }
        }
        Plan {
            vendor: Arc::clone(&usage.vendor.0),
            sku: Arc::clone(&usage.sku_id.0),
            sku_name: Arc::clone(&usage.sku_name),
            candidates,
            attrs,
            reads_term,
            reads_company,
            constant: None,
        }
    }

    fn map(&self, usage: &UsageObservation, company: Option<&Company>) -> Decision {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.stats.map_calls += 1;
        let plan_index = self.plan_of(st, usage);
        let plan = &st.plans[plan_index as usize];
        if plan.reads_nothing() {
            if let Some(d) = plan.constant {
                st.stats.memo_hits += 1;
                return st.decisions[d as usize].clone();
            }
            let d = self.decide(st, plan_index, usage, company);
            st.plans[plan_index as usize].constant = Some(d);
            return st.decisions[d as usize].clone();
        }
        let mut key = std::mem::take(&mut st.scratch);
        key.clear();
        key.extend_from_slice(&plan_index.to_le_bytes());
        if plan.reads_company {
            push_part(&mut key, company_text(company));
        }
        if plan.reads_term {
            push_part(&mut key, usage.billing_term.as_deref());
        }
        for attr in &plan.attrs {
            push_part(&mut key, usage.attributes.get(attr));
        }
        if let Some(d) = st.last
            && st.last_key == key
        {
            st.stats.memo_hits += 1;
            st.scratch = key;
            return st.decisions[d as usize].clone();
        }
        let d = match st.memo.get(key.as_slice()).copied() {
            Some(d) => {
                st.stats.memo_hits += 1;
                d
            }
            None => {
                let d = self.decide(st, plan_index, usage, company);
                if st.memo.len() < MAX_MEMO_ENTRIES {
                    st.memo.insert(key.clone().into_boxed_slice(), d);
                }
                d
            }
        };
        st.last_key.clear();
        st.last_key.extend_from_slice(&key);
        st.last = Some(d);
        st.scratch = key;
        st.decisions[d as usize].clone()
    }

    /// Walks the plan's rules for one row and records the decision.
    fn decide(
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

    fn walk(
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
    fn rule_holds(
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

    fn choose(
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

    // -------------------------------------------------------- closures

    fn closure_failure(
        &self,
        rule_name: &impl NamedRule,
        id: ClosureId,
        message: String,
        at: Option<SourcePosition>,
    ) -> MappingFailure {
        let closure = &self.rules.table.closures[id];
        MappingFailure {
            message: format!(
                "rule {} (declared at {}) failed: {message}",
                rule_name.name(),
                rule_name.position()
            ),
            position: Some(at.unwrap_or_else(|| closure.position.clone())),
        }
    }

    /// Calls closure `id` with `input`, memoised under `key`.
    fn call(
        &self,
        st: &mut RunState,
        who: &impl NamedRule,
        id: ClosureId,
        key: Vec<u8>,
        input: impl FnOnce() -> Map,
    ) -> Result<Dynamic, MappingFailure> {
        if let Some(hit) = st.closure_memo.get(key.as_slice()) {
            st.stats.closure_memo_hits += 1;
            return hit.clone();
        }
        st.stats.closure_calls += 1;
        let closure = &self.rules.table.closures[id];
        let argument = Dynamic::from_map(input());
        let result = with_budget(MAX_CLOSURE_OPERATIONS, MAX_EVALUATION_TIME, || {
            closure
                .fn_ptr
                .call::<Dynamic>(&self.rules.engine, &self.rules.ast, (argument,))
        })
        .map_err(|error| {
            let described = describe(&error, MAX_CLOSURE_OPERATIONS);
            let hint = described
                .hint
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            let file: Arc<str> = Arc::from(self.rules.file());
            self.closure_failure(
                who,
                id,
                format!("{}{hint}", described.message),
                source_position(&file, described.position),
            )
        });
        if st.closure_memo.len() < MAX_MEMO_ENTRIES {
            st.closure_memo
                .insert(key.into_boxed_slice(), result.clone());
        }
        result
    }

    fn call_row(
        &self,
        st: &mut RunState,
        rule: &Rule,
        id: ClosureId,
        row: &RowView<'_>,
    ) -> Result<Dynamic, MappingFailure> {
        let closure = &self.rules.table.closures[id];
        let mut key = vec![b'r'];
        key.extend_from_slice(&(id as u32).to_le_bytes());
        for part in [row.vendor, row.sku, row.sku_name] {
            push_part(&mut key, Some(part));
        }
        for attr in &closure.attrs {
            push_part(&mut key, row.attributes.get(attr));
        }
        self.call(st, rule, id, key, || {
            let mut attrs = Map::new();
            for attr in &closure.attrs {
                let value = row
                    .attributes
                    .get(attr)
                    .map_or(Dynamic::UNIT, |v| Dynamic::from(ImmutableString::from(v)));
                attrs.insert(attr.as_ref().into(), value);
            }
            let mut map = Map::new();
            map.insert(
                "vendor".into(),
                Dynamic::from(ImmutableString::from(row.vendor)),
            );
            map.insert("sku".into(), Dynamic::from(ImmutableString::from(row.sku)));
            map.insert(
                "sku_name".into(),
                Dynamic::from(ImmutableString::from(row.sku_name)),
            );
            map.insert("as_of".into(), Dynamic::from(self.as_of_text.clone()));
            map.insert("attrs".into(), Dynamic::from_map(attrs));
            map
        })
    }

    fn call_company(
        &self,
        st: &mut RunState,
        who: &impl NamedRule,
        id: ClosureId,
        company: &Company,
    ) -> Result<Dynamic, MappingFailure> {
        let mut key = vec![b'c'];
        key.extend_from_slice(&(id as u32).to_le_bytes());
        push_part(&mut key, Some(company.id.as_str()));
        self.call(st, who, id, key, || company_map(company))
    }

    fn call_contract(
        &self,
        st: &mut RunState,
        who: &impl NamedRule,
        id: ClosureId,
        contract: &Contract,
    ) -> Result<Dynamic, MappingFailure> {
        let mut key = vec![b'k'];
        key.extend_from_slice(&(id as u32).to_le_bytes());
        push_part(&mut key, Some(contract.id.as_str()));
        self.call(st, who, id, key, || contract_map(contract))
    }

    // -------------------------------------------------------- policies

    fn policy_plan(&self, st: &mut RunState, product: &ProductId) -> u32 {
        let key = ptr(&product.0);
        if let Some(&plan) = st.policy_by_ptr.get(&key) {
            return plan;
        }
        let plan = match st.policy_by_text.get(product.as_str()) {
            Some(&plan) => plan,
            None => {
                let candidates: Vec<u32> = self
                    .rules
                    .table
                    .services
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.applies_to_product(product.as_str()))
                    .map(|(i, _)| i as u32)
                    .collect();
                let conditional = candidates
                    .iter()
                    .any(|&i| !self.rules.table.services[i as usize].conditions.is_empty());
                st.policy_plans.push(PolicyPlan {
                    candidates,
                    conditional,
                    constant: None,
                });
                let index = (st.policy_plans.len() - 1) as u32;
                st.policy_by_text.insert(product.to_string(), index);
                index
            }
        };
        if st.policy_by_ptr.len() < MAX_MEMO_ENTRIES {
            st.keepalive.push(Arc::clone(&product.0));
            st.policy_by_ptr.insert(key, plan);
        }
        plan
    }

    /// The policy of one service and, when `trace` is set, the steps that
    /// built it.
    fn policy(
        &self,
        st: &mut RunState,
        ctx: &PolicyContext<'_>,
        mut trace: Option<&mut Vec<TraceStep>>,
    ) -> Result<ServicePolicy, MappingFailure> {
        let plan_index = self.policy_plan(st, ctx.product) as usize;
        let plan = &st.policy_plans[plan_index];
        if trace.is_none()
            && !plan.conditional
            && let Some((psa, policy)) = &plan.constant
            && psa == ctx.psa
        {
            return Ok(policy.clone());
        }
        let candidates = plan.candidates.clone();
        let conditional = plan.conditional;
        let mut policy = ServicePolicy::default_for(ctx.psa);
        if let Some(steps) = trace.as_deref_mut() {
            steps.push(TraceStep {
                rule: Arc::from("psa default"),
                position: None,
                matched: true,
                outcome: format!(
                    "{} defaults: effective {}",
                    ctx.psa.name, policy.effective_date
                ),
            });
        }
        for i in candidates {
            let decl = &self.rules.table.services[i as usize];
            match self.service_holds(st, decl, ctx)? {
                Ok(()) => {
                    decl.settings.apply(&mut policy);
                    if let Some(steps) = trace.as_deref_mut() {
                        steps.push(TraceStep {
                            rule: Arc::clone(&decl.name),
                            position: Some(decl.position.clone()),
                            matched: true,
                            outcome: decl.settings.describe(),
                        });
                    }
                }
                Err(why) => {
                    if let Some(steps) = trace.as_deref_mut() {
                        steps.push(TraceStep {
                            rule: Arc::clone(&decl.name),
                            position: Some(decl.position.clone()),
                            matched: false,
                            outcome: why,
                        });
                    }
                }
            }
        }
        if !conditional {
            st.policy_plans[plan_index].constant = Some((ctx.psa.clone(), policy.clone()));
        }
        Ok(policy)
    }

    fn service_holds(
        &self,
        st: &mut RunState,
        decl: &ServiceDecl,
        ctx: &PolicyContext<'_>,
    ) -> Result<Result<(), String>, MappingFailure> {
        for condition in &decl.conditions {
            match condition.check(ctx.company, ctx.contract) {
                Some(check) if !check.pass => return Ok(Err(check.why)),
                Some(_) => {}
                None => {
                    let PolicyCondition::ContractPredicate(id) = condition else {
                        continue;
                    };
                    let value = self.call_contract(st, decl, *id, ctx.contract)?;
                    match value.as_bool() {
                        Ok(true) => {}
                        Ok(false) => {
                            let line = self.rules.table.closures[*id].position.line;
                            return Ok(Err(format!(
                                "the contract condition at line {line} is false"
                            )));
                        }
                        Err(kind) => {
                            return Err(self.closure_failure(
                                decl,
                                *id,
                                format!(
                                    "the condition returned {kind}; it must return true or false"
                                ),
                                None,
                            ));
                        }
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// The policy of one service with the declarations that made it (for
    /// `trueup rules explain`).
    ///
    /// # Errors
    /// The failing closure, as [`UsageMapper::service_policy`].
    pub fn explain_policy(
        &self,
        ctx: &PolicyContext<'_>,
    ) -> Result<(ServicePolicy, Vec<TraceStep>), MappingFailure> {
        let mut guard = self.lock();
        let mut steps = Vec::new();
        let policy = self.policy(&mut guard, ctx, Some(&mut steps))?;
        Ok((policy, steps))
    }
}

/// A rule or declaration, for failure messages.
trait NamedRule {
    fn name(&self) -> &str;
    fn position(&self) -> &SourcePosition;
}

impl NamedRule for Rule {
    fn name(&self) -> &str {
        &self.name
    }
    fn position(&self) -> &SourcePosition {
        &self.position
    }
}

impl NamedRule for ServiceDecl {
    fn name(&self) -> &str {
        &self.name
    }
    fn position(&self) -> &SourcePosition {
        &self.position
    }
}

fn step(rule: &Rule, matched: bool, outcome: String) -> TraceStep {
    TraceStep {
        rule: Arc::clone(&rule.name),
        position: Some(rule.position.clone()),
        matched,
        outcome,
    }
}

fn facts_text(facts: &[String]) -> String {
    if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join("; "))
    }
}

fn text(value: &str) -> Dynamic {
    Dynamic::from(ImmutableString::from(value))
}

/// What `when_company` closures see.
fn company_map(company: &Company) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), text(company.id.as_str()));
    map.insert("name".into(), text(&company.name));
    map.insert(
        "identifier".into(),
        company.identifier.as_deref().map_or(Dynamic::UNIT, text),
    );
    map.insert(
        "domains".into(),
        Dynamic::from_array(company.domains.iter().map(|d| text(d)).collect()),
    );
    map.insert(
        "active".into(),
        Dynamic::from_bool(company.status == trueup_core::model::CompanyStatus::Active),
    );
    map
}

/// What `when_contract` closures see.
fn contract_map(contract: &Contract) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), text(contract.id.as_str()));
    map.insert("name".into(), text(&contract.name));
    map.insert("type".into(), text(&contract.contract_type));
    map.insert("company".into(), text(contract.company_id.as_str()));
    map.insert("cycle".into(), text(&cycle_name(&contract.billing_cycle)));
    map.insert("timing".into(), text(timing_name(contract.timing)));
    map.insert("prorate".into(), Dynamic::from_bool(contract.prorate));
    map.insert(
        "start".into(),
        contract
            .start_date
            .map_or(Dynamic::UNIT, |d| text(&d.to_string())),
    );
    map.insert(
        "end".into(),
        contract
            .end_date
            .map_or(Dynamic::UNIT, |d| text(&d.to_string())),
    );
    map
}

impl UsageMapper for RulesMapper {
    fn version(&self) -> &str {
        self.rules.label()
    }

    fn row_dependence(&self) -> RowDependence {
        if self.rules.reads_rows {
            RowDependence::WholeRow
        } else {
            RowDependence::SkuOnly
        }
    }

    fn map_usage(
        &self,
        usage: &UsageObservation,
        company: Option<&Company>,
    ) -> Result<Arc<UsageMapping>, MappingFailure> {
        self.map(usage, company)
    }

    fn service_policy(&self, ctx: &PolicyContext<'_>) -> Result<ServicePolicy, MappingFailure> {
        let mut guard = self.lock();
        guard.stats.policy_calls += 1;
        self.policy(&mut guard, ctx, None)
    }
}
