//! Calling the rules' Rhai closures, memoised by the closure and the values
//! it declared it reads, and what a closure sees of a company or contract.

use std::sync::Arc;

use rhai::{Dynamic, ImmutableString, Map};
use trueup_core::mapping::{MappingFailure, SourcePosition};
use trueup_core::model::{Company, Contract};

use super::{RulesMapper, RunState, push_part};
use crate::diagnostics::describe;
use crate::limits::{MAX_CLOSURE_OPERATIONS, MAX_EVALUATION_TIME, MAX_MEMO_ENTRIES};
use crate::script::{source_position, with_budget};
use crate::table::{ClosureId, RowView, Rule, ServiceDecl, cycle_name, timing_name};

impl RulesMapper {
    pub(super) fn closure_failure(
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
    pub(super) fn call(
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

    pub(super) fn call_row(
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

    pub(super) fn call_company(
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

    pub(super) fn call_contract(
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
}

/// A rule or declaration, for failure messages.
pub(super) trait NamedRule {
    /// The rule's name.
    fn name(&self) -> &str;
    /// Where it is declared.
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
