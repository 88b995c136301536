//! Trueup PSA connector for ConnectWise PSA (Manage), REST API 3.0.
//!
//! What each export calls (paths under `base_url`, e.g.
//! `https://api-na.myconnectwise.net/v4_6_release/apis/3.0`; auth in
//! [`api`]):
//!
//! - `list-companies`: `GET /company/companies?conditions=deletedFlag = false`
//!   (recycle-bin duplicates left out), forward-only pages of `page_size`
//!   (≤ 1000) records; the cursor is the last id served.
//! - `list-contracts`: `GET /finance/agreements`, forward-only, with
//!   `conditions` `type/name in ("…")` for the filter's types and
//!   `agreementStatus = "Active"` when `active-only`; otherwise inactive,
//!   cancelled and expired agreements are listed too with their status, so
//!   the host can say why each is left out. `billingCycle` (absent = the
//!   UI's "None") maps to the WIT cycle, `periodType` `Current` to arrears,
//!   `prorateFlag` to `prorate`.
//! - `list-services`: `GET /finance/agreements/{id}/additions` for each
//!   agreement id given (forward-only pages); a call returns about
//!   `lines_per_call` additions and at most `requests_per_call` requests,
//!   and its cursor says which agreement and which page come next.
//! - `plan-quantity-change` / `apply-quantity-change`: see [`write`]
//!   (a change of an addition) and [`add`] (a change without a line adds
//!   an addition of a catalogue product).
//! - `read-line`: `GET /finance/agreements/{id}/additions/{id}`.
//!
//! A 429 becomes `rate-limited` with the `Retry-After` wait; ConnectWise
//! publishes no rate, so the connector sends one request at a time and
//! leaves pacing to the host.

mod add;
mod api;
mod model;
mod write;

use serde::{Deserialize, Serialize};
use trueup_connector::paging::Cursor;
use trueup_connector::plan::Calls;
use trueup_connector::prelude::*;
use trueup_connector::psa::{
    self, CompanyPage, ContractFilter, ContractPage, PlannedCall, QuantityChange, RecurringService,
    ServicePage, WriteResult,
};
use trueup_connector::{clock, log, progress};

use crate::api::{Client, quoted, record_id};
use crate::model::{
    ADDITION_FIELDS, AGREEMENT_FIELDS, COMPANY_FIELDS, CwAddition, CwAgreement, CwCompany,
};

/// The id in `plugin.toml`.
const PLUGIN_ID: &str = "trueup.connectwise";

/// The most contract ids one `list-services` call accepts (the WIT
/// contract's limit).
const MAX_CONTRACT_IDS: usize = 200;

struct ConnectWise;

/// Where a company or agreement listing stands: the last id served.
#[derive(Default, Serialize, Deserialize)]
struct PageCursor {
    after: u64,
    done: u64,
}

/// Where a `list-services` listing stands: the agreement at `index` of the
/// ids given (checked to be `agreement`, in case the host passes another
/// list), after addition id `after` of it.
#[derive(Serialize, Deserialize)]
struct ServicesCursor {
    index: usize,
    agreement: String,
    after: u64,
    done: u64,
}

/// The `conditions` for a contract filter, if any.
fn agreement_conditions(filter: &ContractFilter) -> Option<String> {
    let mut parts = Vec::new();
    let types: Vec<String> = filter
        .types
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(quoted)
        .collect();
    if !types.is_empty() {
        parts.push(format!("type/name in ({})", types.join(",")));
    }
    if filter.active_only {
        parts.push("agreementStatus = \"Active\"".to_owned());
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

impl psa::Guest for ConnectWise {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: PLUGIN_ID.into(),
            name: "ConnectWise PSA".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                "write-quantity".into(),
                "plan-quantity-change".into(),
                "read-line".into(),
            ],
        }
    }

    fn list_companies(cursor: Option<String>) -> Result<CompanyPage, ConnectorError> {
        let client = Client::new()?;
        let state = Cursor::decode::<PageCursor>(cursor.as_deref())?.unwrap_or_default();
        let url = client.list_url(
            "/company/companies",
            &[
                ("conditions", "deletedFlag = false"),
                ("fields", COMPANY_FIELDS),
            ],
        );
        let (response, next) = client.forward_page(&url, state.after)?;
        let page: Vec<CwCompany> = response.json()?;
        let items: Vec<_> = page.into_iter().map(CwCompany::into_wit).collect();
        let done = state.done + items.len() as u64;
        progress::report(done, None, "companies");
        let next_cursor = next
            .map(|after| Cursor::encode(&PageCursor { after, done }))
            .transpose()?;
        Ok(CompanyPage { items, next_cursor })
    }

    fn list_contracts(
        filter: ContractFilter,
        cursor: Option<String>,
    ) -> Result<ContractPage, ConnectorError> {
        let client = Client::new()?;
        let state = Cursor::decode::<PageCursor>(cursor.as_deref())?.unwrap_or_default();
        let conditions = agreement_conditions(&filter);
        let mut params = vec![("fields", AGREEMENT_FIELDS)];
        if let Some(conditions) = &conditions {
            params.push(("conditions", conditions.as_str()));
        }
        let url = client.list_url("/finance/agreements", &params);
        let (response, next) = client.forward_page(&url, state.after)?;
        let page: Vec<CwAgreement> = response.json()?;
        let as_of = clock::as_of();
        let items = page
            .into_iter()
            .map(|a| a.into_wit(&as_of))
            .collect::<Result<Vec<_>, _>>()?;
        let done = state.done + items.len() as u64;
        progress::report(done, None, "agreements");
        let next_cursor = next
            .map(|after| Cursor::encode(&PageCursor { after, done }))
            .transpose()?;
        Ok(ContractPage { items, next_cursor })
    }

    fn list_services(
        contract_ids: Vec<String>,
        cursor: Option<String>,
    ) -> Result<ServicePage, ConnectorError> {
        if contract_ids.len() > MAX_CONTRACT_IDS {
            return Err(ConnectorError::Internal(format!(
                "list-services takes at most {MAX_CONTRACT_IDS} contract ids a call, not {}",
                contract_ids.len()
            )));
        }
        let client = Client::new()?;
        let (mut index, mut after, mut done) = match Cursor::decode::<ServicesCursor>(
            cursor.as_deref(),
        )? {
            None => (0, 0, 0),
            Some(state) => {
                if contract_ids.get(state.index) != Some(&state.agreement) {
                    return Err(ConnectorError::Internal(format!(
                        "the list-services cursor continues with agreement {} at position {}, but the contract ids given differ; pass the same ids with the cursor, or start again without one",
                        state.agreement, state.index
                    )));
                }
                (state.index, state.after, state.done)
            }
        };
        let settings = &client.settings;
        let mut items: Vec<RecurringService> = Vec::new();
        let mut requests = 0;
        while index < contract_ids.len()
            && items.len() < settings.lines_per_call as usize
            && requests < settings.requests_per_call
        {
            let id = &contract_ids[index];
            let agreement = record_id("agreement", id)?;
            let url = client.list_url(
                &format!("/finance/agreements/{agreement}/additions"),
                &[("fields", ADDITION_FIELDS)],
            );
            requests += 1;
            let (response, next) = match client.forward_page(&url, after) {
                Ok(page) => page,
                Err(ConnectorError::NotFound(message)) => {
                    // Deleted since it was listed: it has no additions now.
                    log::warn(&format!("agreement {agreement} is gone: {message}"));
                    index += 1;
                    after = 0;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let page: Vec<CwAddition> = response.json()?;
            for addition in &page {
                items.push(addition.to_wit(id)?);
            }
            match next {
                Some(next) => after = next,
                None => {
                    index += 1;
                    after = 0;
                }
            }
        }
        done += items.len() as u64;
        progress::report(
            done,
            None,
            &format!("additions of agreement {index} of {}", contract_ids.len()),
        );
        let next_cursor = (index < contract_ids.len())
            .then(|| {
                Cursor::encode(&ServicesCursor {
                    index,
                    agreement: contract_ids[index].clone(),
                    after,
                    done,
                })
            })
            .transpose()?;
        Ok(ServicePage { items, next_cursor })
    }

    fn plan_quantity_change(change: QuantityChange) -> Result<Vec<PlannedCall>, ConnectorError> {
        let mut calls = Calls::plan();
        write::run(&change, &mut calls)?;
        Ok(calls.into_plan())
    }

    fn apply_quantity_change(change: QuantityChange) -> Result<WriteResult, ConnectorError> {
        let mut calls = Calls::apply();
        write::run(&change, &mut calls)?.ok_or_else(|| {
            ConnectorError::Internal("apply-quantity-change produced no result".into())
        })
    }

    fn read_line(contract_id: String, line_id: String) -> Result<RecurringService, ConnectorError> {
        let client = Client::new()?;
        let agreement = record_id("agreement", &contract_id)?;
        let line = record_id("addition", &line_id)?;
        let addition: CwAddition = client
            .get(&client.url(&format!("/finance/agreements/{agreement}/additions/{line}")))?
            .json()?;
        addition.to_wit(&contract_id)
    }
}

trueup_connector::export_psa!(ConnectWise);
