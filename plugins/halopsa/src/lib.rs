//! Trueup PSA connector for HaloPSA.
//!
//! What each export calls (under `base_url`; token and paging in [`api`],
//! the data model in [`model`]):
//!
//! - `list-companies`: `GET /api/Client?includeinactive=true&order=id`, pages
//!   of `page_size` (`pageinate=true&page_no=K`); inactive clients are listed
//!   with `active = false`.
//! - `list-contracts`: `GET /api/ClientContract?order=id` pages, each joined
//!   with the recurring invoices linked to its contracts, read in contract
//!   order alongside (`GET /api/RecurringInvoice?order=contract_id&order2=id`,
//!   without lines): a merge of two sorted listings, so memory stays bounded
//!   by two pages and the cursor holds both positions. The filter's types
//!   are Halo contract type names (`contracttype_name`), matched here; without
//!   `active-only`, inactive, cancelled and expired contracts are listed too.
//!   Recurring invoices linked to no contract are counted and reported in
//!   the log: their lines cannot be reconciled until they are linked.
//! - `list-services`: for each contract id given, `GET
//!   /api/RecurringInvoice?contract_id={id}&includelines=true` (paged): the
//!   lines of its recurring invoices; an invoice answered without `lines`
//!   is read singly (`GET /api/RecurringInvoice/{id}?includedetails=true`),
//!   and one that has none even then fails the call by name. A call returns about `lines_per_call`
//!   lines and makes at most `requests_per_call` requests; the cursor says
//!   which contract comes next.
//! - `plan-quantity-change` / `apply-quantity-change`: see [`write`]
//!   (a line's quantity) and [`add`] (a change without a line adds a
//!   catalogue item to the contract's recurring invoice).
//! - `read-line`: the contract's recurring invoices, as `list-services`.
//!
//! A 429 becomes `rate-limited` with the `Retry-After` wait.

mod add;
mod api;
mod model;
mod write;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use trueup_connector::paging::{Cursor, not_advancing, with_query};
use trueup_connector::plan::Calls;
use trueup_connector::prelude::*;
use trueup_connector::psa::{
    self, CompanyPage, ContractFilter, ContractPage, ContractStatus, PlannedCall, QuantityChange,
    RecurringService, ServicePage, WriteResult,
};
use trueup_connector::{clock, log, progress};

use crate::api::{Client, ListPage, list, record_id};
use crate::model::{HaloClient, HaloContract, HaloInvoice};

/// The id in `plugin.toml`.
const PLUGIN_ID: &str = "trueup.halopsa";

/// The most contract ids one `list-services` call accepts.
const MAX_CONTRACT_IDS: usize = 200;

/// Recurring invoices asked for per page when reading one contract's.
const INVOICES_PAGE: u32 = 50;

/// The most pages of one contract's recurring invoices read (5,000
/// invoices on one contract is far beyond any real one).
const MAX_INVOICE_PAGES: u32 = 100;

struct HaloPsa;

/// The recurring invoices (with lines) of client contract `contract`,
/// every page, each request sent with `fetch`.
///
/// # Errors
/// What `fetch` returns; `internal` when Halo answers invoices of other
/// contracts (a server that ignores the `contract_id` filter: its lines
/// would be attributed to the wrong contract) or its paging does not
/// advance.
pub(crate) fn invoices_of(
    client: &Client,
    contract: i64,
    mut fetch: impl FnMut(String) -> Result<Response, ConnectorError>,
) -> Result<Vec<HaloInvoice>, ConnectorError> {
    let base = with_query(
        &client.api("/RecurringInvoice"),
        &[
            ("contract_id", &contract.to_string()),
            ("includelines", "true"),
            ("order", "id"),
        ],
    );
    let mut all: Vec<HaloInvoice> = Vec::new();
    for page in 1..=MAX_INVOICE_PAGES {
        let url = Client::paged(&base, page, INVOICES_PAGE);
        let answer: ListPage<HaloInvoice> = list(&fetch(url.clone())?)?;
        if let (Some(first), Some(last)) = (answer.items.first(), all.last())
            && first.id <= last.id
        {
            return Err(not_advancing(
                &format!("GET {url}"),
                &format!("page {page} (it starts at invoice {} again)", first.id),
            ));
        }
        if let Some(other) = answer
            .items
            .iter()
            .find(|i| i.contract_id != Some(contract))
        {
            return Err(ConnectorError::Internal(format!(
                "GET {url}: HaloPSA answered recurring invoice {} of contract {:?} to a query for contract {contract}; this HaloPSA version ignores the contract_id filter, so lines cannot be attributed to contracts safely",
                other.id, other.contract_id
            )));
        }
        let served = answer.items.len();
        all.extend(answer.items);
        if served < INVOICES_PAGE as usize
            || u64::from(page) * u64::from(INVOICES_PAGE) >= answer.record_count
        {
            for invoice in &mut all {
                if invoice.lines.is_none() {
                    *invoice = invoice_with_lines(client, invoice.id, &mut fetch)?;
                }
            }
            return Ok(all);
        }
    }
    Err(ConnectorError::Internal(format!(
        "contract {contract} has more than {} recurring invoices",
        MAX_INVOICE_PAGES * INVOICES_PAGE
    )))
}

/// Recurring invoice `id` read singly with its lines
/// (`GET /api/RecurringInvoice/{id}?includedetails=true`): for an invoice a
/// list answered without `lines` although they were asked for (versions
/// that ignore `includelines`).
///
/// # Errors
/// What `fetch` returns; `internal` when the single read has no `lines`
/// either: the contract's services cannot be read, and an empty contract
/// must not be reported in their place.
fn invoice_with_lines(
    client: &Client,
    id: i64,
    fetch: &mut impl FnMut(String) -> Result<Response, ConnectorError>,
) -> Result<HaloInvoice, ConnectorError> {
    let url = with_query(
        &client.api(&format!("/RecurringInvoice/{id}")),
        &[("includedetails", "true")],
    );
    let invoice: HaloInvoice = fetch(url.clone())?.json()?;
    if invoice.lines.is_none() {
        return Err(ConnectorError::Internal(format!(
            "GET {url}: HaloPSA answered recurring invoice {id} without its lines, in the list (includelines=true) and read singly; its services cannot be read, so the sync stops rather than report the contract empty"
        )));
    }
    Ok(invoice)
}

/// Where the client listing stands.
#[derive(Serialize, Deserialize)]
struct PageCursor {
    page: u32,
    after: i64,
    done: u64,
}

/// Where the contract listing stands: the next client-contract page and
/// the last contract id served; the next recurring-invoice page, how many
/// of its records were already merged, and the sort key (contract id, id)
/// of the last one merged.
#[derive(Serialize, Deserialize)]
struct ContractsCursor {
    page: u32,
    after: i64,
    invoice_page: u32,
    invoice_skip: usize,
    invoice_after: Option<(i64, i64)>,
    invoices_done: bool,
    done: u64,
}

/// Where a `list-services` listing stands: the contract at `index` of the
/// ids given (checked to be `contract`).
#[derive(Serialize, Deserialize)]
struct ServicesCursor {
    index: usize,
    contract: String,
    done: u64,
}

/// Whether a page of `served` records at `page` of `size` leaves more of
/// `record_count`.
fn more_after(page: u32, size: u32, served: usize, record_count: u64) -> bool {
    served == size as usize && u64::from(page) * u64::from(size) < record_count
}

impl psa::Guest for HaloPsa {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: PLUGIN_ID.into(),
            name: "HaloPSA".into(),
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
        let state = Cursor::decode::<PageCursor>(cursor.as_deref())?.unwrap_or(PageCursor {
            page: 1,
            after: i64::MIN,
            done: 0,
        });
        let size = client.settings.page_size;
        let url = Client::paged(
            &with_query(
                &client.api("/Client"),
                &[("includeinactive", "true"), ("order", "id")],
            ),
            state.page,
            size,
        );
        let answer: ListPage<HaloClient> = list(&client.get(&url)?)?;
        if let Some(first) = answer.items.first()
            && first.id <= state.after
        {
            return Err(not_advancing(
                &format!("GET {url}"),
                &format!(
                    "page_no {} (it starts at client {} again)",
                    state.page, first.id
                ),
            ));
        }
        let more = more_after(state.page, size, answer.items.len(), answer.record_count);
        let after = answer.items.last().map_or(state.after, |c| c.id);
        let items: Vec<_> = answer.items.into_iter().map(HaloClient::into_wit).collect();
        let done = state.done + items.len() as u64;
        progress::report(done, Some(answer.record_count), "clients");
        let next_cursor = more
            .then(|| {
                Cursor::encode(&PageCursor {
                    page: state.page + 1,
                    after,
                    done,
                })
            })
            .transpose()?;
        Ok(CompanyPage { items, next_cursor })
    }

    fn list_contracts(
        filter: ContractFilter,
        cursor: Option<String>,
    ) -> Result<ContractPage, ConnectorError> {
        let client = Client::new()?;
        let mut state =
            Cursor::decode::<ContractsCursor>(cursor.as_deref())?.unwrap_or(ContractsCursor {
                page: 1,
                after: i64::MIN,
                invoice_page: 1,
                invoice_skip: 0,
                invoice_after: None,
                invoices_done: false,
                done: 0,
            });
        let size = client.settings.page_size;
        let url = Client::paged(
            &with_query(&client.api("/ClientContract"), &[("order", "id")]),
            state.page,
            size,
        );
        let contracts: ListPage<HaloContract> = list(&client.get(&url)?)?;
        if let Some(first) = contracts.items.first()
            && first.id <= state.after
        {
            return Err(not_advancing(
                &format!("GET {url}"),
                &format!(
                    "page_no {} (it starts at contract {} again)",
                    state.page, first.id
                ),
            ));
        }
        let more = more_after(
            state.page,
            size,
            contracts.items.len(),
            contracts.record_count,
        );
        let on_page: HashSet<i64> = contracts.items.iter().map(|c| c.id).collect();
        let last_id = contracts.items.last().map(|c| c.id);

        // Merge the recurring invoices, sorted by contract, up to this
        // page's last contract (all of them on the last page).
        let invoices_url = with_query(
            &client.api("/RecurringInvoice"),
            &[("order", "contract_id"), ("order2", "id")],
        );
        let mut by_contract: HashMap<i64, Vec<HaloInvoice>> = HashMap::new();
        let (mut unlinked, mut orphans) = (0u64, 0u64);
        'merge: while !state.invoices_done {
            let url = Client::paged(&invoices_url, state.invoice_page, size);
            let answer: ListPage<HaloInvoice> = list(&client.get(&url)?)?;
            let served = answer.items.len();
            let mut checked = false;
            for (index, invoice) in answer
                .items
                .into_iter()
                .enumerate()
                .skip(state.invoice_skip)
            {
                let key = (invoice.contract_id.unwrap_or(i64::MIN), invoice.id);
                if !checked {
                    checked = true;
                    if state.invoice_after.is_some_and(|after| key <= after) {
                        return Err(not_advancing(
                            &format!("GET {url}"),
                            &format!(
                                "page_no {} (it repeats invoices already read)",
                                state.invoice_page
                            ),
                        ));
                    }
                }
                if let (Some(contract), Some(last)) = (invoice.contract_id, last_id)
                    && more
                    && contract > last
                {
                    state.invoice_skip = index;
                    break 'merge;
                }
                state.invoice_after = Some(key);
                match invoice.contract_id {
                    None => unlinked += 1,
                    Some(contract) if on_page.contains(&contract) => {
                        by_contract.entry(contract).or_default().push(invoice);
                    }
                    Some(_) => orphans += 1,
                }
            }
            if more_after(state.invoice_page, size, served, answer.record_count) {
                state.invoice_page += 1;
                state.invoice_skip = 0;
            } else {
                state.invoices_done = true;
            }
        }
        if unlinked > 0 {
            log::warn(&format!(
                "{unlinked} recurring invoices are linked to no client contract; their lines are not reconciled until each is linked to a contract in HaloPSA"
            ));
        }
        if orphans > 0 {
            log::warn(&format!(
                "{orphans} recurring invoices are linked to contracts HaloPSA did not list"
            ));
        }

        let as_of = clock::as_of();
        let types: Vec<&str> = filter
            .types
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .collect();
        let mut items = Vec::with_capacity(contracts.items.len());
        for contract in &contracts.items {
            let kind = contract.contracttype_name.as_deref().unwrap_or_default();
            if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case(kind.trim())) {
                continue;
            }
            let invoices = by_contract.remove(&contract.id).unwrap_or_default();
            let wit = contract.to_wit(&invoices, &as_of)?;
            if filter.active_only && wit.status != ContractStatus::Active {
                continue;
            }
            items.push(wit);
        }
        state.done += contracts.items.len() as u64;
        progress::report(state.done, Some(contracts.record_count), "contracts");
        let next_cursor = if more {
            state.page += 1;
            state.after = last_id.unwrap_or(state.after);
            Some(Cursor::encode(&state)?)
        } else {
            None
        };
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
        let (mut index, mut done) = match Cursor::decode::<ServicesCursor>(cursor.as_deref())? {
            None => (0, 0),
            Some(state) => {
                if contract_ids.get(state.index) != Some(&state.contract) {
                    return Err(ConnectorError::Internal(format!(
                        "the list-services cursor continues with contract {} at position {}, but the contract ids given differ; pass the same ids with the cursor, or start again without one",
                        state.contract, state.index
                    )));
                }
                (state.index, state.done)
            }
        };
        let settings = &client.settings;
        let mut items: Vec<RecurringService> = Vec::new();
        let mut requests = 0u32;
        while index < contract_ids.len()
            && items.len() < settings.lines_per_call as usize
            && requests < settings.requests_per_call
        {
            let id = &contract_ids[index];
            let contract = record_id("contract", id)?;
            let invoices = invoices_of(&client, contract, |url| {
                requests += 1;
                client.get(&url)
            })?;
            for invoice in &invoices {
                for line in invoice.lines() {
                    items.push(line.to_wit(id, invoice.disabled)?);
                }
            }
            index += 1;
        }
        done += items.len() as u64;
        progress::report(
            done,
            None,
            &format!(
                "recurring invoice lines of contract {index} of {}",
                contract_ids.len()
            ),
        );
        let next_cursor = (index < contract_ids.len())
            .then(|| {
                Cursor::encode(&ServicesCursor {
                    index,
                    contract: contract_ids[index].clone(),
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
        let contract = record_id("contract", &contract_id)?;
        let line = record_id("recurring invoice line", &line_id)?;
        let invoices = invoices_of(&client, contract, |url| client.get(&url))?;
        for invoice in &invoices {
            if let Some(found) = invoice.lines().iter().find(|l| l.id == line) {
                return found.to_wit(&contract_id, invoice.disabled);
            }
        }
        Err(ConnectorError::NotFound(format!(
            "no recurring invoice of contract {contract} has line {line}"
        )))
    }
}

trueup_connector::export_psa!(HaloPsa);
