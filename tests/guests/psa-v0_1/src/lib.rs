//! A PSA connector pinned to `trueup:connector@0.1.0`, over canned data and
//! without a network: the contract version a connector built before 0.2
//! speaks. The tests prove the host still loads it beside 0.2 guests, syncs
//! it and writes back through it.
//!
//! Writes are kept in the instance's memory (one session = one instance),
//! keyed by idempotency key, so a repeated write reports `changed: false`
//! the way a real connector does after reading the PSA first.

use std::collections::BTreeMap;
use std::sync::Mutex;

use trueup_connector::prelude::*;
use trueup_connector::psa::{
    self, BillingCycle, BillingTiming, Company, CompanyPage, Contract, ContractFilter,
    ContractPage, ContractStatus, PlannedCall, QuantityChange, RecurringService, ServicePage,
    WriteResult,
};
use trueup_connector::{UpstreamFailure, config, values};

struct Guest01;

/// Quantities written, by line id; and the idempotency keys applied.
static WRITES: Mutex<(BTreeMap<String, WitDecimal>, Vec<String>)> =
    Mutex::new((BTreeMap::new(), Vec::new()));

fn line(id: &str) -> Result<RecurringService, ConnectorError> {
    let (identifier, quantity, price, billable) = match id {
        "L1" => ("M365-BP", 10, 2640, true),
        "L2" => ("BACKUP-INCL", 5, 0, false),
        other => {
            return Err(ConnectorError::NotFound(format!(
                "no line {other} on contract K1"
            )));
        }
    };
    let written = WRITES
        .lock()
        .map_err(|_| ConnectorError::Internal("state poisoned".into()))?
        .0
        .get(id)
        .cloned();
    Ok(RecurringService {
        id: id.into(),
        contract_id: "K1".into(),
        product_id: format!("P-{identifier}"),
        product_identifier: identifier.into(),
        description: identifier.into(),
        quantity: written.unwrap_or_else(|| values::integer(quantity)),
        unit_price: WitDecimal {
            digits: price,
            scale: 2,
        },
        unit_cost: WitDecimal {
            digits: 1800,
            scale: 2,
        },
        effective_date: Some(values::date(2026, 3, 1)?),
        cancelled_date: None,
        billable,
        attributes: vec![],
    })
}

impl psa::Guest for Guest01 {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: "test.psa-v01".into(),
            name: "PSA test guest, contract 0.1".into(),
            version: "0.1.0".into(),
            capabilities: vec![
                "write-quantity".into(),
                "plan-quantity-change".into(),
                "read-line".into(),
            ],
        }
    }

    fn list_companies(_cursor: Option<String>) -> Result<CompanyPage, ConnectorError> {
        Ok(CompanyPage {
            items: vec![Company {
                id: "C1".into(),
                name: config::get_or("company_name", "Contoso"),
                identifier: Some("CONTOSO".into()),
                domains: vec!["contoso.com".into()],
                active: true,
                attributes: vec![],
            }],
            next_cursor: None,
        })
    }

    fn list_contracts(
        _filter: ContractFilter,
        _cursor: Option<String>,
    ) -> Result<ContractPage, ConnectorError> {
        Ok(ContractPage {
            items: vec![Contract {
                id: "K1".into(),
                company_id: "C1".into(),
                name: "Managed Services".into(),
                contract_type: "Managed Services".into(),
                status: ContractStatus::Active,
                billing_cycle: BillingCycle::Annual,
                start_date: Some(values::date(2026, 3, 1)?),
                end_date: None,
                timing: BillingTiming::Advance,
                prorate: true,
                posted_through: None,
                attributes: vec![],
            }],
            next_cursor: None,
        })
    }

    fn list_services(
        contract_ids: Vec<String>,
        _cursor: Option<String>,
    ) -> Result<ServicePage, ConnectorError> {
        let items = if contract_ids.iter().any(|id| id == "K1") {
            vec![line("L1")?, line("L2")?]
        } else {
            vec![]
        };
        Ok(ServicePage {
            items,
            next_cursor: None,
        })
    }

    fn plan_quantity_change(change: QuantityChange) -> Result<Vec<PlannedCall>, ConnectorError> {
        let line_id = change.line_id.unwrap_or_default();
        Ok(vec![PlannedCall {
            method: "PATCH".into(),
            url: format!("canned://contracts/{}/lines/{line_id}", change.contract_id),
            body: Some(format!(
                "{{\"quantity\":\"{}\"}}",
                values::to_decimal(&change.new_quantity)
            )),
            purpose: "set the line's quantity".into(),
        }])
    }

    fn apply_quantity_change(change: QuantityChange) -> Result<WriteResult, ConnectorError> {
        let line_id = change.line_id.clone().ok_or_else(|| {
            ConnectorError::Upstream(UpstreamFailure {
                status: 400,
                body: "this test guest does not add lines".into(),
                retryable: false,
            })
        })?;
        line(&line_id)?;
        let changed = {
            let mut writes = WRITES
                .lock()
                .map_err(|_| ConnectorError::Internal("state poisoned".into()))?;
            if writes.1.contains(&change.idempotency_key) {
                false
            } else {
                writes.1.push(change.idempotency_key.clone());
                writes.0.insert(line_id.clone(), change.new_quantity);
                true
            }
        };
        Ok(WriteResult {
            record_ids: vec![line_id.clone()],
            changed,
            line: line(&line_id)?,
            notes: vec![],
        })
    }

    fn read_line(contract_id: String, line_id: String) -> Result<RecurringService, ConnectorError> {
        if contract_id != "K1" {
            return Err(ConnectorError::NotFound(format!(
                "no contract {contract_id}"
            )));
        }
        line(&line_id)
    }
}

trueup_connector::export_psa!(Guest01);
