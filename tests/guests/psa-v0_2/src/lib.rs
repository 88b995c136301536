//! A PSA connector built for `trueup:connector@0.2.0`, over canned data and
//! without a network: every call 0.2 adds, with values a test can check by
//! hand (an anchored annual contract, a billed line under commitment, an
//! included line, a paged catalogue with an unknown price and a retired
//! product, skipped records, a cost change).
//!
//! Writes are kept in the instance's memory (one session = one instance),
//! keyed by idempotency key, so a repeated write reports `changed: false`
//! the way a real connector does after reading the PSA first.

use std::collections::BTreeMap;
use std::sync::Mutex;

use trueup_connector::prelude::*;
use trueup_connector::psa::{
    self, BillingCycle, BillingKind, BillingTiming, CatalogPage, CatalogProduct, Company,
    CompanyPage, Contract, ContractFilter, ContractPage, ContractStatus, CostChange, PlannedCall,
    QuantityChange, RecurringService, ServicePage, WriteResult,
};
use trueup_connector::{UpstreamFailure, clock, config, log, skipped, values};

struct Guest02;

/// Quantities written, by line id; and the idempotency keys applied.
static WRITES: Mutex<(BTreeMap<String, WitDecimal>, Vec<String>)> =
    Mutex::new((BTreeMap::new(), Vec::new()));

/// Unit costs written, by line id.
static COSTS: Mutex<BTreeMap<String, WitDecimal>> = Mutex::new(BTreeMap::new());

fn product(id: &str, identifier: &str, price: Option<i64>, active: bool) -> CatalogProduct {
    CatalogProduct {
        id: id.into(),
        product_identifier: identifier.into(),
        name: identifier.into(),
        description: format!("{identifier} (catalogue)"),
        unit_price: price.map(|digits| WitDecimal { digits, scale: 2 }),
        unit_cost: Some(WitDecimal {
            digits: 1800,
            scale: 2,
        }),
        billing_cycle: BillingCycle::Monthly,
        taxable: true,
        active,
        attributes: vec![],
    }
}

fn line(id: &str) -> Result<RecurringService, ConnectorError> {
    let (identifier, quantity, price, billable, kind, commitment) = match id {
        "L1" => (
            "M365-BP",
            10,
            2640,
            true,
            BillingKind::Billed,
            Some(values::date(2027, 2, 28)?),
        ),
        "L2" => ("BACKUP-INCL", 5, 0, false, BillingKind::Included, None),
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
    let cost = COSTS
        .lock()
        .map_err(|_| ConnectorError::Internal("state poisoned".into()))?
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
        unit_cost: cost.unwrap_or(WitDecimal {
            digits: 1800,
            scale: 2,
        }),
        effective_date: Some(values::date(2026, 3, 1)?),
        cancelled_date: None,
        billable,
        billing_kind: kind,
        commitment_end: commitment,
        attributes: vec![],
    })
}

impl psa::Guest for Guest02 {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: "test.psa-v02".into(),
            name: "PSA test guest, contract 0.2".into(),
            version: "0.1.0".into(),
            capabilities: vec![
                "write-quantity".into(),
                "plan-quantity-change".into(),
                "read-line".into(),
                "write-cost".into(),
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
            skipped: vec![],
            next_cursor: None,
        })
    }

    fn list_contracts(
        _filter: ContractFilter,
        _cursor: Option<String>,
    ) -> Result<ContractPage, ConnectorError> {
        // The as-of date comes through the host's clock import: a 0.2 guest
        // reaches the same imports as a 0.1 one.
        let as_of = clock::as_of();
        log::info(&format!(
            "listing contracts as of {}",
            values::date_to_iso(&as_of)
        ));
        Ok(ContractPage {
            items: vec![
                Contract {
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
                    billing_anchor: Some(values::date(2026, 3, 1)?),
                    attributes: vec![],
                },
                Contract {
                    id: "K2".into(),
                    company_id: "C1".into(),
                    name: "Backup".into(),
                    contract_type: "Managed Services".into(),
                    status: ContractStatus::Active,
                    billing_cycle: BillingCycle::Monthly,
                    start_date: Some(values::date(2026, 1, 15)?),
                    end_date: None,
                    timing: BillingTiming::Advance,
                    prorate: false,
                    posted_through: None,
                    billing_anchor: None,
                    attributes: vec![],
                },
            ],
            skipped: vec![skipped::record(
                "agreement",
                "K9",
                "billStartDate",
                "31/02/2026",
                "not a date",
            )],
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
            skipped: vec![],
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

    fn list_catalog(cursor: Option<String>) -> Result<CatalogPage, ConnectorError> {
        // Two pages, so the host's paging is exercised: the cursor says
        // which one, and is all the guest needs to continue.
        match cursor.as_deref() {
            None => Ok(CatalogPage {
                items: vec![
                    product("P-M365-BP", "M365-BP", Some(2640), true),
                    product("P-HUNTRESS", "HUNTRESS-EDR", None, true),
                ],
                skipped: vec![],
                next_cursor: Some("page-2".into()),
            }),
            Some("page-2") => Ok(CatalogPage {
                items: vec![product("P-OLD", "LEGACY-AV", Some(500), false)],
                skipped: vec![skipped::record(
                    "catalog item",
                    "P-BAD",
                    "price",
                    "twelve",
                    "not a number",
                )],
                next_cursor: None,
            }),
            Some(other) => Err(ConnectorError::Internal(format!(
                "catalogue cursor {other:?} is not one this guest gave"
            ))),
        }
    }

    fn plan_cost_change(change: CostChange) -> Result<Vec<PlannedCall>, ConnectorError> {
        Ok(vec![PlannedCall {
            method: "PATCH".into(),
            url: format!(
                "canned://contracts/{}/lines/{}",
                change.contract_id, change.line_id
            ),
            body: Some(format!(
                "{{\"unitCost\":\"{}\"}}",
                values::to_decimal(&change.new_unit_cost)
            )),
            purpose: "set the line's unit cost".into(),
        }])
    }

    fn apply_cost_change(change: CostChange) -> Result<WriteResult, ConnectorError> {
        let current = line(&change.line_id)?;
        let changed =
            values::to_decimal(&current.unit_cost) != values::to_decimal(&change.new_unit_cost);
        if changed {
            COSTS
                .lock()
                .map_err(|_| ConnectorError::Internal("state poisoned".into()))?
                .insert(change.line_id.clone(), change.new_unit_cost);
        }
        Ok(WriteResult {
            record_ids: vec![change.line_id.clone()],
            changed,
            line: line(&change.line_id)?,
            notes: vec![],
        })
    }
}

trueup_connector::export_psa!(Guest02);
