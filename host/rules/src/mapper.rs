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

mod closures;
mod decide;
mod policy;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use rhai::{Dynamic, ImmutableString};
use serde::{Deserialize, Serialize};
use trueup_core::effective::PsaProfile;
use trueup_core::fasthash::FxHashMap;
use trueup_core::mapping::{
    MappingFailure, PolicyContext, RowDependence, ServicePolicy, UsageMapper, UsageMapping,
};
use trueup_core::model::{Company, UsageObservation};

use crate::compile::CompiledRules;
use crate::limits::MAX_MEMO_ENTRIES;
use crate::sync::lock;
use crate::table::Condition;

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
        lock(&self.state).stats
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
        let mut guard = lock(&self.state);
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
}

// Defined here rather than in `compile` so that compiling rules does not
// depend on applying them.
impl CompiledRules {
    /// A mapper for one reconcile run as of `as_of`.
    pub fn mapper(self: &Arc<Self>, as_of: NaiveDate) -> RulesMapper {
        RulesMapper::new(Arc::clone(self), as_of)
    }
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
        let mut guard = lock(&self.state);
        guard.stats.policy_calls += 1;
        self.policy(&mut guard, ctx, None)
    }
}
