//! A full sync of a PSA connector, one call at a time, and its comparison
//! with the emulated world's billing truth.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use trueup_core::cycles::CycleAnchor;
use trueup_core::eligibility::{self, Eligibility};
use trueup_core::model::{Company, Contract, ServiceLine};
use trueup_emulators::catalog;
use trueup_emulators::world::World;
use trueup_plugin_host::{CallError, ContractFilter, PsaSession};

/// Contract ids per `list-services` call (the WIT contract's maximum).
pub const SERVICES_BATCH: usize = 200;

/// Calls one listing may take before [`full_sync`] calls it endless.
pub const MAX_PAGES: usize = 10_000;

/// What one listing or sync cost, summed over its calls' [`CallStats`].
///
/// [`CallStats`]: trueup_plugin_host::CallStats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Export calls.
    pub calls: u32,
    /// HTTP requests sent.
    pub requests: u64,
    /// Wall time of the calls.
    pub wall: Duration,
    /// Time in host calls (HTTP).
    pub host: Duration,
    /// Time running WebAssembly.
    pub wasm: Duration,
}

impl Cost {
    fn add(&mut self, session: &PsaSession) {
        self.calls += 1;
        if let Some(stats) = session.last_call() {
            self.requests += u64::from(stats.requests);
            self.wall += stats.wall;
            self.host += stats.host_time;
            self.wasm += stats.wasm_time;
        }
    }
}

/// Everything one [`full_sync`] read.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    /// Companies.
    pub companies: Vec<Company>,
    /// Contracts (all statuses).
    pub contracts: Vec<Contract>,
    /// The services of every contract.
    pub lines: Vec<ServiceLine>,
    /// Pages of companies, contracts and services.
    pub pages: (usize, usize, usize),
    /// What the export calls cost.
    pub cost: Cost,
    /// Wall time of the whole sync.
    pub elapsed: Duration,
}

impl Synced {
    /// What of the sync bills as of `as_of`, by the host's own eligibility
    /// rules (cycles anchored at the contract's start, as the sync does).
    pub fn eligibility(&self, as_of: NaiveDate) -> Eligibility {
        eligibility::assess(
            &self.companies,
            &self.contracts,
            &self.lines,
            as_of,
            CycleAnchor::ContractStart,
        )
    }
}

/// Why [`full_sync`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A call failed.
    #[error("{phase}: {error}")]
    Call {
        /// What was being listed.
        phase: &'static str,
        /// The failure.
        error: CallError,
    },
    /// A listing did not end.
    #[error("{phase}: the listing did not end within {MAX_PAGES} calls")]
    Endless {
        /// What was being listed.
        phase: &'static str,
    },
}

/// Lists companies, contracts (with `filter`) and the services of every
/// contract in batches of [`SERVICES_BATCH`] ids, following every cursor,
/// one call at a time (no retries: a failure stops the sync).
///
/// # Errors
/// [`SyncError`].
pub async fn full_sync(
    session: &mut PsaSession,
    filter: &ContractFilter,
) -> Result<Synced, SyncError> {
    let started = Instant::now();
    let mut synced = Synced::default();
    let mut cursor: Option<String> = None;
    loop {
        let page = session.list_companies(cursor.as_deref()).await;
        synced.cost.add(session);
        let page = page.map_err(|error| SyncError::Call {
            phase: "companies",
            error,
        })?;
        synced.pages.0 += 1;
        synced.companies.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
        if synced.pages.0 >= MAX_PAGES {
            return Err(SyncError::Endless { phase: "companies" });
        }
    }
    loop {
        let page = session.list_contracts(filter, cursor.as_deref()).await;
        synced.cost.add(session);
        let page = page.map_err(|error| SyncError::Call {
            phase: "contracts",
            error,
        })?;
        synced.pages.1 += 1;
        synced.contracts.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
        if synced.pages.1 >= MAX_PAGES {
            return Err(SyncError::Endless { phase: "contracts" });
        }
    }
    let ids: Vec<String> = synced.contracts.iter().map(|c| c.id.to_string()).collect();
    for batch in ids.chunks(SERVICES_BATCH) {
        let mut calls = 0;
        loop {
            let page = session.list_services(batch, cursor.as_deref()).await;
            synced.cost.add(session);
            let page = page.map_err(|error| SyncError::Call {
                phase: "services",
                error,
            })?;
            synced.pages.2 += 1;
            calls += 1;
            synced.lines.extend(page.items);
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
            if calls >= MAX_PAGES {
                return Err(SyncError::Endless { phase: "services" });
            }
        }
    }
    synced.elapsed = started.elapsed();
    Ok(synced)
}

/// Where the synced eligible lines, judged by the host's eligibility
/// rules as of `as_of`, differ from the world's billing truth (per
/// customer and product: quantities summed), as sentences; empty when they
/// agree.
pub fn truth_mismatches(world: &World, as_of: NaiveDate, synced: &Synced) -> Vec<String> {
    let assessed = synced.eligibility(as_of);
    let mut billed: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for line in &assessed.lines {
        let contract = &assessed.contracts[line.contract];
        let company = &synced.companies[contract.company];
        let service = &synced.lines[line.line];
        *billed
            .entry((company.name.clone(), service.product_identifier.to_string()))
            .or_default() += service.quantity;
    }
    let mut truth: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for customer in world.psa_customers() {
        for (product, quantity) in catalog::billed_lines(customer) {
            *truth
                .entry((customer.name.clone(), product.identifier.to_owned()))
                .or_default() += Decimal::from(quantity);
        }
    }
    let mut problems = Vec::new();
    for (key, expected) in &truth {
        match billed.get(key) {
            Some(got) if got == expected => {}
            Some(got) => problems.push(format!(
                "{} {}: billed {got}, truth {expected}",
                key.0, key.1
            )),
            None => problems.push(format!("{} {}: not billed, truth {expected}", key.0, key.1)),
        }
    }
    for (key, got) in &billed {
        if !truth.contains_key(key) {
            problems.push(format!(
                "{} {}: billed {got}, not in the truth",
                key.0, key.1
            ));
        }
    }
    problems
}
