//! Trueup PSA connector for Autotask (Datto/Kaseya), REST API v1.0.
//!
//! What each export calls (under the zone's `…/atservicesrest/v1.0`;
//! zone, auth, budget and paging in [`api`]); every call except `describe`
//! first reads `GET /ThresholdInformation` once and answers `rate-limited`
//! when the database's hourly usage has reached `budget_share`:
//!
//! - `list-companies`: `POST /Companies/query` (every company, id order,
//!   500 a page), then `pageDetails.nextPageUrl`; inactive and "dead"
//!   companies are listed with `active = false`.
//! - `list-contracts`: `POST /Contracts/query` with `contractType` /
//!   `contractCategory` `in` filters for the filter's types, and `status =
//!   1` and `endDate ≥ as-of` when `active-only`; otherwise inactive and
//!   ended contracts are listed too, as `inactive` / `expired`. For the recurring contracts of the page,
//!   `POST /ContractServiceUnits/query` (approved-and-posted unit records
//!   ending since the start of last month) gives `posted-through`, the end
//!   of the latest posted period.
//! - `list-services`: `POST /ContractServices/query` with `contractID in
//!   (…)` (the given ids, up to 200), one page of up to 500 services a call;
//!   their catalogue names from `POST /Services/query` (cached for the
//!   instance); and their quantity from `POST /ContractServiceUnits/query`:
//!   the units in effect on the as-of date (the period's record plus its
//!   proration records). A ContractService has no quantity of its own.
//! - `plan-quantity-change` / `apply-quantity-change`: see [`write`]
//!   (adjusting a contract service's units) and [`add`] (a change without
//!   a line adds a catalogue service to the contract).
//! - `read-line`: `GET /ContractServices/{id}`, `GET /Services/{id}` and the
//!   service's unit records on the as-of date.

mod add;
mod api;
mod model;
mod write;

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trueup_connector::paging::Cursor;
use trueup_connector::plan::Calls;
use trueup_connector::prelude::*;
use trueup_connector::psa::{
    self, CompanyPage, ContractFilter, ContractPage, PlannedCall, QuantityChange, RecurringService,
    ServicePage, WriteResult,
};
use trueup_connector::values::{date_from_iso, date_to_iso, days_from_civil};
use trueup_connector::{clock, progress};

use crate::api::{Client, HasId, record_id, search};
use crate::model::{
    AtCompany, AtContract, AtContractService, AtService, AtUnit, CATALOG_FIELDS, COMPANY_FIELDS,
    CONTRACT_FIELDS, RECURRING_SERVICE, SERVICE_FIELDS, TypeFilter, UNIT_FIELDS, service_line,
    type_filters,
};

/// The id in `plugin.toml`.
const PLUGIN_ID: &str = "trueup.autotask";

/// The most contract ids one `list-services` call accepts.
const MAX_CONTRACT_IDS: usize = 200;

thread_local! {
    /// Catalogue services by id, for the life of the instance (one sync).
    static CATALOG: RefCell<HashMap<i64, AtService>> = RefCell::new(HashMap::new());
}

struct Autotask;

/// Where a query listing stands: the next page's URL and the last id
/// served (-1 before the first page; Autotask's own company is id 0).
#[derive(Serialize, Deserialize)]
struct QueryCursor {
    next: String,
    after: i64,
    done: u64,
}

fn decode(cursor: Option<String>) -> Result<(Option<String>, i64, u64), ConnectorError> {
    Ok(match Cursor::decode::<QueryCursor>(cursor.as_deref())? {
        None => (None, -1, 0),
        Some(state) => (Some(state.next), state.after, state.done),
    })
}

fn encode(next: Option<String>, after: i64, done: u64) -> Result<Option<String>, ConnectorError> {
    next.map(|next| Cursor::encode(&QueryCursor { next, after, done }))
        .transpose()
}

/// "Everything": Autotask queries need at least one filter item.
fn all_records() -> Value {
    json!({"op": "gte", "field": "id", "value": 0})
}

/// The contract query's filter for `filter`: `active-only` is status 1 and
/// not ended before `as_of` (Autotask keeps ended contracts active).
fn contract_filter(filter: &ContractFilter, as_of: &Date) -> Result<Vec<Value>, ConnectorError> {
    let mut items = vec![all_records()];
    let mut types = Vec::new();
    let mut categories = Vec::new();
    for entry in type_filters(&filter.types)? {
        match entry {
            TypeFilter::Type(kind) => types.push(kind),
            TypeFilter::Category(category) => categories.push(category),
        }
    }
    let by_type =
        (!types.is_empty()).then(|| json!({"op": "in", "field": "contractType", "value": types}));
    let by_category = (!categories.is_empty())
        .then(|| json!({"op": "in", "field": "contractCategory", "value": categories}));
    match (by_type, by_category) {
        (Some(t), Some(c)) => items.push(json!({"op": "or", "items": [t, c]})),
        (Some(one), None) | (None, Some(one)) => items.push(one),
        (None, None) => {}
    }
    if filter.active_only {
        items.push(json!({"op": "eq", "field": "status", "value": 1}));
        items.push(json!({"op": "gte", "field": "endDate", "value": date_to_iso(as_of)}));
    }
    Ok(items)
}

/// `field in ids` with `others` filters: the range `min(ids) ≤ field ≤
/// max(ids)` first, then `others`, then the `in` list. The ids of a batch
/// are close together, and servers evaluate filters in order, so the cheap
/// range test skips most records before the costlier ones. `ids` must not
/// be empty.
fn id_in(field: &str, ids: &[i64], others: &[Value]) -> Value {
    let min = ids.iter().copied().min().unwrap_or_default();
    let max = ids.iter().copied().max().unwrap_or_default();
    let mut filter = vec![
        json!({"op": "gte", "field": field, "value": min}),
        json!({"op": "lte", "field": field, "value": max}),
    ];
    filter.extend(others.iter().cloned());
    filter.push(json!({"op": "in", "field": field, "value": ids}));
    Value::Array(filter)
}

/// A posted unit record, for `posted-through`.
#[derive(Deserialize)]
struct PostedUnit {
    id: i64,
    #[serde(rename = "contractID")]
    contract_id: i64,
    #[serde(rename = "endDate")]
    end_date: String,
}

impl HasId for PostedUnit {
    fn id(&self) -> i64 {
        self.id
    }
}

/// The first day of the month before `date`'s month: posted periods ending
/// since then are looked for.
fn posted_lookback(date: &Date) -> Date {
    let (year, month) = if date.month == 1 {
        (date.year - 1, 12)
    } else {
        (date.year, date.month - 1)
    };
    Date {
        year,
        month,
        day: 1,
    }
}

/// The end of the latest approved-and-posted period of each recurring
/// contract in `contracts` (looking back to the start of last month).
fn posted_through(
    client: &Client,
    contracts: &[AtContract],
    as_of: &Date,
) -> Result<HashMap<i64, Date>, ConnectorError> {
    let ids: Vec<i64> = contracts
        .iter()
        .filter(|c| c.contract_type == RECURRING_SERVICE)
        .map(|c| c.id)
        .collect();
    let mut latest: HashMap<i64, Date> = HashMap::new();
    if ids.is_empty() {
        return Ok(latest);
    }
    let units: Vec<PostedUnit> = client.query_all(
        "ContractServiceUnits",
        &search(
            id_in(
                "contractID",
                &ids,
                &[
                    json!({"op": "gte", "field": "endDate", "value": date_to_iso(&posted_lookback(as_of))}),
                    json!({"op": "exist", "field": "approveAndPostDate"}),
                ],
            ),
            &["id", "contractID", "endDate"],
        ),
    )?;
    for unit in units {
        let end = date_from_iso(&unit.end_date)?;
        latest
            .entry(unit.contract_id)
            .and_modify(|d| {
                if days_from_civil(&end) > days_from_civil(d) {
                    *d = end;
                }
            })
            .or_insert(end);
    }
    Ok(latest)
}

/// Catalogue services for `ids`, from the instance cache or one query.
fn catalog(client: &Client, ids: &[i64]) -> Result<HashMap<i64, AtService>, ConnectorError> {
    let missing: Vec<i64> = CATALOG.with(|c| {
        let cache = c.borrow();
        let mut missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !cache.contains_key(id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    });
    if !missing.is_empty() {
        let found: Vec<AtService> = client.query_all(
            "Services",
            &search(id_in("id", &missing, &[]), CATALOG_FIELDS),
        )?;
        CATALOG.with(|c| {
            let mut cache = c.borrow_mut();
            for service in found {
                cache.insert(service.id, service);
            }
        });
    }
    Ok(CATALOG.with(|c| {
        let cache = c.borrow();
        ids.iter()
            .filter_map(|id| cache.get(id).map(|s| (*id, s.clone())))
            .collect()
    }))
}

/// The unit records covering `on` of the contract services `ids`.
fn units_covering(client: &Client, ids: &[i64], on: &Date) -> Result<Vec<AtUnit>, ConnectorError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let day = date_to_iso(on);
    client.query_all(
        "ContractServiceUnits",
        &search(
            id_in(
                "contractServiceID",
                ids,
                &[
                    json!({"op": "gte", "field": "endDate", "value": day}),
                    json!({"op": "lte", "field": "startDate", "value": day}),
                ],
            ),
            UNIT_FIELDS,
        ),
    )
}

impl psa::Guest for Autotask {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: PLUGIN_ID.into(),
            name: "Autotask PSA".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                "write-quantity".into(),
                "plan-quantity-change".into(),
                "read-line".into(),
            ],
        }
    }

    fn list_companies(cursor: Option<String>) -> Result<CompanyPage, ConnectorError> {
        let (next, after, done) = decode(cursor)?;
        let client = Client::new()?;
        client.check_budget()?;
        let page = client.query::<AtCompany>(
            "Companies",
            &search(json!([all_records()]), COMPANY_FIELDS),
            next.as_deref(),
            after,
        )?;
        let after = page.items.last().map_or(after, HasId::id);
        let items: Vec<_> = page.items.into_iter().map(AtCompany::into_wit).collect();
        let done = done + items.len() as u64;
        progress::report(done, None, "companies");
        Ok(CompanyPage {
            items,
            next_cursor: encode(page.next, after, done)?,
        })
    }

    fn list_contracts(
        filter: ContractFilter,
        cursor: Option<String>,
    ) -> Result<ContractPage, ConnectorError> {
        let (next, after, done) = decode(cursor)?;
        let as_of = clock::as_of();
        let query = search(
            Value::Array(contract_filter(&filter, &as_of)?),
            CONTRACT_FIELDS,
        );
        let client = Client::new()?;
        client.check_budget()?;
        let page = client.query::<AtContract>("Contracts", &query, next.as_deref(), after)?;
        let after = page.items.last().map_or(after, HasId::id);
        let posted = posted_through(&client, &page.items, &as_of)?;
        let items = page
            .items
            .iter()
            .map(|c| c.to_wit(&as_of, posted.get(&c.id).copied()))
            .collect::<Result<Vec<_>, _>>()?;
        let done = done + items.len() as u64;
        progress::report(done, None, "contracts");
        Ok(ContractPage {
            items,
            next_cursor: encode(page.next, after, done)?,
        })
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
        let ids = contract_ids
            .iter()
            .map(|id| record_id("contract", id))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Ok(ServicePage {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let (next, after, done) = decode(cursor)?;
        let client = Client::new()?;
        client.check_budget()?;
        let page = client.query::<AtContractService>(
            "ContractServices",
            &search(id_in("contractID", &ids, &[]), SERVICE_FIELDS),
            next.as_deref(),
            after,
        )?;
        let after = page.items.last().map_or(after, HasId::id);
        let as_of = clock::as_of();
        let service_ids: Vec<i64> = page.items.iter().map(|s| s.service_id).collect();
        let catalog = catalog(&client, &service_ids)?;
        let line_ids: Vec<i64> = page.items.iter().map(|s| s.id).collect();
        let units = units_covering(&client, &line_ids, &as_of)?;
        let mut by_service: HashMap<i64, Vec<&AtUnit>> = HashMap::new();
        for unit in &units {
            by_service
                .entry(unit.contract_service_id)
                .or_default()
                .push(unit);
        }
        let items = page
            .items
            .iter()
            .map(|s| {
                service_line(
                    s,
                    catalog.get(&s.service_id),
                    by_service.get(&s.id).map_or(&[][..], Vec::as_slice),
                    &as_of,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let done = done + items.len() as u64;
        progress::report(done, None, "contract services");
        Ok(ServicePage {
            items,
            next_cursor: encode(page.next, after, done)?,
        })
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
        let contract = record_id("contract", &contract_id)?;
        let line = record_id("contract service", &line_id)?;
        let client = Client::new()?;
        client.check_budget()?;
        let service: AtContractService = client.item(
            &client.get(&client.url(&format!("/ContractServices/{line}")))?,
            "contract service",
        )?;
        if service.contract_id != contract {
            return Err(ConnectorError::NotFound(format!(
                "contract service {line} is on contract {}, not {contract}",
                service.contract_id
            )));
        }
        let catalog: AtService = client.item(
            &client.get(&client.url(&format!("/Services/{}", service.service_id)))?,
            "service",
        )?;
        let as_of = clock::as_of();
        let day = date_to_iso(&as_of);
        let url = client.query_get_url(
            "ContractServiceUnits",
            &search(
                json!([
                    {"op": "eq", "field": "contractServiceID", "value": line},
                    {"op": "lte", "field": "startDate", "value": day},
                    {"op": "gte", "field": "endDate", "value": day},
                ]),
                UNIT_FIELDS,
            ),
        );
        let page = client.page::<AtUnit>(client.get(&url)?, &format!("GET {url}"), None, -1)?;
        let refs: Vec<&AtUnit> = page.items.iter().collect();
        service_line(&service, Some(&catalog), &refs, &as_of)
    }
}

trueup_connector::export_psa!(Autotask);
