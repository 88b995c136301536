//! The standard scenario: its world, its business date, and the run that
//! goes through every step (see the [`psa`](super) module's docs).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use trueup_core::model::{Company, Contract, ServiceLine};
use trueup_emulators::world::World;
use trueup_plugin_host::{CallError, ContractFilter, PluginEngine, PluginSettings};

use super::against::Against;
use super::change::{add_line, change_line, write_target};
use super::connect::{ConformanceError, connect};
use super::faults::check_faults;
use super::hardening::{
    check_malformed_record, check_page_cap, check_product_ids, check_rate_limited_sync,
    check_tokens, token_requests,
};
use super::sync::{SERVICES_BATCH, full_sync, truth_mismatches};
use crate::report::{Report, describe_failure};

/// The seed of the scenario's world.
pub const SCENARIO_SEED: u64 = 7;

/// Customers in the scenario's world: enough for more than one page of
/// companies at the largest page size (ConnectWise's 1,000).
pub const SCENARIO_CUSTOMERS: usize = 1_100;

/// The scenario's world and business date.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The world's seed.
    pub seed: u64,
    /// Customers in the world.
    pub customers: usize,
    /// The business date (the emulator's "today" and the session's as-of).
    pub as_of: NaiveDate,
}

impl Scenario {
    /// The standard scenario as of `as_of`.
    pub fn standard(as_of: NaiveDate) -> Self {
        Self {
            seed: SCENARIO_SEED,
            customers: SCENARIO_CUSTOMERS,
            as_of,
        }
    }
}

/// Runs the scenario for the PSA connector in `dir` against `against`.
/// `base` holds the plugin's own settings (from `trueup.toml`), which the
/// emulator's config and grants override.
///
/// # Errors
/// [`ConformanceError`] when the scenario cannot start; failed checks are
/// rows of the [`Report`].
pub async fn run(
    engine: &PluginEngine,
    dir: &Path,
    base: &PluginSettings,
    against: Against,
    scenario: &Scenario,
) -> Result<Report<Against>, ConformanceError> {
    let world = Arc::new(World::new(scenario.seed, scenario.customers));
    let running = trueup_emulators::start(
        against.kind(),
        world.clone(),
        against.emulator_settings(scenario.as_of),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .map_err(|source| ConformanceError::Emulator { against, source })?;
    let origin = running.base_url.clone();
    let connection = connect(engine, dir, base, against, &origin, scenario.as_of)?;
    let manifest = &connection.manifest;
    let session = || connection.session();
    let mut report = Report::new(manifest.id.clone(), against);
    let mut main = session()?;

    // 1. describe
    let described = main.describe().await;
    report.record(
        "describe",
        match described {
            Err(e) => Err(describe_failure(&e)),
            Ok(d) => {
                let missing: Vec<&str> = ["write-quantity", "plan-quantity-change", "read-line"]
                    .into_iter()
                    .filter(|c| !d.capabilities.iter().any(|have| have == c))
                    .collect();
                if d.id != manifest.id {
                    Err(format!(
                        "describe says id {:?}, plugin.toml {:?}",
                        d.id, manifest.id
                    ))
                } else if !missing.is_empty() {
                    Err(format!("capabilities lack {}", missing.join(", ")))
                } else {
                    Ok(format!(
                        "{} {}: {}",
                        d.id,
                        d.version,
                        d.capabilities.join(", ")
                    ))
                }
            }
        },
    );

    // 2. full sync
    let filter = ContractFilter {
        types: against.contract_types(),
        active_only: false,
    };
    let tokens_before = token_requests(&running);
    let synced = match full_sync(&mut main, &filter).await {
        Ok(synced) => synced,
        Err(error) => {
            report.record("full sync", Err(error.to_string()));
            return Ok(report);
        }
    };
    let psa_customers = world.psa_customers().count();
    report.record("companies paged", {
        let mut ids: Vec<&str> = synced.companies.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        let names: HashSet<&str> = synced.companies.iter().map(|c| c.name.as_str()).collect();
        let missing = world
            .psa_customers()
            .filter(|c| !names.contains(c.name.as_str()))
            .count();
        if synced.pages.0 < 2 {
            Err(format!(
                "{} companies in {} page(s): expected more than one page",
                before, synced.pages.0
            ))
        } else if ids.len() != before {
            Err(format!("{} companies listed twice", before - ids.len()))
        } else if missing > 0 {
            Err(format!(
                "{missing} of the {psa_customers} customers are missing"
            ))
        } else {
            Ok(format!("{before} companies in {} pages", synced.pages.0))
        }
    });
    report.record("contracts listed", {
        let companies: HashSet<&str> = synced.companies.iter().map(|c| c.id.as_str()).collect();
        let orphans = synced
            .contracts
            .iter()
            .filter(|c| !companies.contains(c.company_id.as_str()))
            .count();
        if synced.contracts.is_empty() {
            Err("no contracts".to_owned())
        } else if orphans > 0 {
            Err(format!(
                "{orphans} contracts name a company that was not listed"
            ))
        } else {
            Ok(format!(
                "{} contracts in {} pages",
                synced.contracts.len(),
                synced.pages.1
            ))
        }
    });
    let tokens = token_requests(&running) - tokens_before;
    let mismatches = truth_mismatches(&world, scenario.as_of, &synced);
    report.record(
        "services match the billing truth",
        if mismatches.is_empty() {
            Ok(format!(
                "{} lines in {} pages; every customer's billed products agree",
                synced.lines.len(),
                synced.pages.2
            ))
        } else {
            Err(format!(
                "{} differences, e.g. {}",
                mismatches.len(),
                mismatches
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        },
    );

    // Cursors carry everything: page 2 read in a fresh instance from page
    // 1's cursor is the page 2 the first instance reads.
    let batch: Vec<String> = synced
        .contracts
        .iter()
        .take(SERVICES_BATCH)
        .map(|c| c.id.to_string())
        .collect();
    let continued = async || -> Result<String, String> {
        let fail = |e: CallError| describe_failure(&e);
        let (mut first, mut fresh) = (
            session().map_err(|e| e.to_string())?,
            session().map_err(|e| e.to_string())?,
        );
        let page = first.list_companies(None).await.map_err(fail)?;
        let cursor = page.next_cursor.ok_or("companies fit one page")?;
        let same = first.list_companies(Some(&cursor)).await.map_err(fail)?;
        let other = fresh.list_companies(Some(&cursor)).await.map_err(fail)?;
        let ids = |items: &[Company]| items.iter().map(|c| c.id.to_string()).collect::<Vec<_>>();
        if ids(&same.items) != ids(&other.items) {
            return Err("companies: page 2 differs in a fresh instance".to_owned());
        }
        let page = first.list_contracts(&filter, None).await.map_err(fail)?;
        let cursor = page.next_cursor.ok_or("contracts fit one page")?;
        let same = first
            .list_contracts(&filter, Some(&cursor))
            .await
            .map_err(fail)?;
        let other = fresh
            .list_contracts(&filter, Some(&cursor))
            .await
            .map_err(fail)?;
        let ids = |items: &[Contract]| items.iter().map(|c| c.id.to_string()).collect::<Vec<_>>();
        if ids(&same.items) != ids(&other.items) {
            return Err("contracts: page 2 differs in a fresh instance".to_owned());
        }
        let page = first.list_services(&batch, None).await.map_err(fail)?;
        let cursor = page
            .next_cursor
            .ok_or("the first 200 contracts' services fit one page")?;
        let same = first
            .list_services(&batch, Some(&cursor))
            .await
            .map_err(fail)?;
        let other = fresh
            .list_services(&batch, Some(&cursor))
            .await
            .map_err(fail)?;
        let ids =
            |items: &[ServiceLine]| items.iter().map(|l| l.id.to_string()).collect::<Vec<_>>();
        if ids(&same.items) != ids(&other.items) {
            return Err("services: page 2 differs in a fresh instance".to_owned());
        }
        Ok(
            "companies, contracts and services continue from a cursor in a fresh instance"
                .to_owned(),
        )
    };
    report.record("cursors continue in a fresh instance", continued().await);

    check_product_ids(&mut report, &synced);
    check_tokens(&mut report, against, tokens);

    // 3–6. plan, write, read back, write again
    let Some((contract, line)) = write_target(&synced, scenario.as_of) else {
        report.record(
            "write",
            Err("no eligible monthly line to change".to_owned()),
        );
        return Ok(report);
    };
    change_line(
        &mut report,
        &mut main,
        &running,
        against,
        (contract, line),
        scenario.as_of,
    )
    .await;

    // 7. add a line, read it back, add it again
    add_line(
        &mut report,
        &mut main,
        &running,
        against,
        &synced,
        scenario.as_of,
    )
    .await;

    // 8. faults, each on a fresh session (no cached token or zone)
    check_faults(&mut report, &connection, &running).await;

    // 9. what real servers do: a 429 mid-listing, pages capped below the
    // size asked for
    check_rate_limited_sync(&mut report, &connection, &running, synced.companies.len()).await;
    check_page_cap(&mut report, (engine, dir, base), against, scenario, &world).await;
    check_malformed_record(&mut report, (engine, dir, base), against, scenario, &world).await;
    Ok(report)
}
