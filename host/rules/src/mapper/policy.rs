//! Service policies: the service declarations that apply to a product,
//! planned once per product and memoised when they read nothing.

use std::sync::Arc;

use trueup_core::mapping::{MappingFailure, PolicyContext, ServicePolicy, TraceStep};
use trueup_core::model::ProductId;

use super::{PolicyPlan, RulesMapper, RunState, ptr};
use crate::limits::MAX_MEMO_ENTRIES;
use crate::sync::lock;
use crate::table::{PolicyCondition, ServiceDecl};

impl RulesMapper {
    pub(super) fn policy_plan(&self, st: &mut RunState, product: &ProductId) -> u32 {
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
    pub(super) fn policy(
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

    pub(super) fn service_holds(
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
        let mut guard = lock(&self.state);
        let mut steps = Vec::new();
        let policy = self.policy(&mut guard, ctx, Some(&mut steps))?;
        Ok((policy, steps))
    }
}
