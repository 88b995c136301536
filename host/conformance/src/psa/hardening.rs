//! Step 9 of the scenario: what real PSA servers do that a kind emulator
//! does not (issue 14) — pages capped below the size asked for, a `429`
//! with `Retry-After` in the middle of a listing, OAuth tokens that must be
//! reused, and product keys that must be the PSA's stable ids.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trueup_emulators::Running;
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::world::World;
use trueup_plugin_host::{CallErrorKind, ConnectorFailure, PluginEngine, PluginSettings};

use super::against::Against;
use super::connect::{Connection, connect};
use super::scenario::Scenario;
use super::sync::{Synced, full_sync, truth_mismatches};
use crate::report::{Report, clip, describe_failure};

/// Records a page holds on the page-capped server: below every shipped
/// connector's request (ConnectWise asks 1,000, Autotask 500), so a
/// connector that ends a listing on a page shorter than it asked for reads
/// one page of each listing and fails the truth check.
pub const PAGE_CAP: usize = 100;

/// Requests answered `429` in a row in the rate-limit check.
pub const RATE_LIMITED_REQUESTS: u32 = 2;

/// The `Retry-After` those `429`s carry, in seconds.
pub const RATE_LIMIT_RETRY_AFTER_SECS: u32 = 1;

/// Rate-limited answers the kit waits out before it calls a listing stuck.
pub const MAX_RATE_LIMITED_CALLS: u32 = 10;

/// The longest wait the kit honours per rate-limited answer (a connector
/// asking for more than this fails the check).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Token requests (`…/token`) the emulator has answered so far.
pub(super) fn token_requests(running: &Running) -> u64 {
    running
        .faults
        .stats()
        .by_route
        .iter()
        .filter(|(route, _)| route.to_ascii_lowercase().ends_with("/token"))
        .map(|(_, n)| n)
        .sum()
}

/// "stable ids as product keys": every line names its catalogue item by
/// the PSA's id (`product-id`), one id per catalogue identifier and one
/// identifier per id, and the id is not the line's free text.
pub(super) fn check_product_ids(report: &mut Report<Against>, synced: &Synced) {
    let mut by_id: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut by_identifier: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut problems = Vec::new();
    for line in &synced.lines {
        let id = line.product_id.trim();
        let identifier = line.product_identifier.as_str();
        if id.is_empty() {
            problems.push(format!("line {} has no product id", line.id));
            continue;
        }
        if id == line.description.trim() || !id.chars().any(|c| c.is_ascii_digit()) {
            problems.push(format!(
                "line {}: product id {id:?} looks like a name, not the PSA's record id",
                line.id
            ));
        }
        by_id.entry(id).or_default().insert(identifier);
        by_identifier.entry(identifier).or_default().insert(id);
    }
    for (id, identifiers) in &by_id {
        if identifiers.len() > 1 {
            problems.push(format!("product id {id} is named {identifiers:?}"));
        }
    }
    for (identifier, ids) in &by_identifier {
        if ids.len() > 1 {
            problems.push(format!("product {identifier} has ids {ids:?}"));
        }
    }
    report.record(
        "stable ids as product keys",
        if problems.is_empty() {
            Ok(format!(
                "{} products over {} lines, one id each",
                by_id.len(),
                synced.lines.len()
            ))
        } else {
            Err(format!(
                "{} problems, e.g. {}",
                problems.len(),
                problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        },
    );
}

/// "≤ 1 token per token lifetime": the full sync (one session, well
/// within one lifetime) requested at most one token.
pub(super) fn check_tokens(report: &mut Report<Against>, against: Against, tokens: u64) {
    report.record(
        "at most one token per token lifetime",
        if !against.uses_tokens() {
            if tokens == 0 {
                Ok(format!(
                    "{against} sends its credentials on every request: no token requested"
                ))
            } else {
                Err(format!("{tokens} token requests to a PSA that has none"))
            }
        } else if tokens <= 1 {
            Ok(format!("{tokens} token request(s) for the whole sync"))
        } else {
            Err(format!(
                "{tokens} token requests in one sync, all within one token's lifetime: reuse the token until shortly before it expires"
            ))
        },
    );
}

/// "a 429 with Retry-After honoured and the sync finishing": the first
/// [`RATE_LIMITED_REQUESTS`] requests of a company listing are answered
/// `429` with `Retry-After: 1`. Whether the connector waits itself or
/// reports `rate-limited` for the host to wait (the kit then waits the
/// reported time and repeats the call), the listing must end with every
/// company, and not sooner than the waits asked for.
pub(super) async fn check_rate_limited_sync(
    report: &mut Report<Against>,
    connection: &Connection,
    running: &Running,
    companies: usize,
) {
    running.faults.set_plan(FaultPlan {
        rate_limited: RATE_LIMITED_REQUESTS,
        retry_after_secs: RATE_LIMIT_RETRY_AFTER_SECS,
        ..FaultPlan::default()
    });
    let started = Instant::now();
    let outcome = async {
        let mut session = connection.session().map_err(|e| e.to_string())?;
        let (mut listed, mut cursor, mut refused) = (0usize, None::<String>, 0u32);
        loop {
            match session.list_companies(cursor.as_deref()).await {
                Ok(page) => {
                    listed += page.items.len();
                    cursor = page.next_cursor;
                    if cursor.is_none() {
                        return Ok((listed, refused));
                    }
                }
                Err(error) => match &error.kind {
                    CallErrorKind::Connector(ConnectorFailure::RateLimited { retry_after }) => {
                        refused += 1;
                        if refused > MAX_RATE_LIMITED_CALLS {
                            return Err(format!(
                                "still rate-limited after {MAX_RATE_LIMITED_CALLS} waits"
                            ));
                        }
                        if *retry_after > MAX_WAIT {
                            return Err(format!(
                                "asked to wait {retry_after:?} for a Retry-After of {RATE_LIMIT_RETRY_AFTER_SECS} s"
                            ));
                        }
                        tokio::time::sleep(*retry_after).await;
                    }
                    _ => return Err(describe_failure(&error)),
                },
            }
        }
    }
    .await;
    running.faults.set_plan(FaultPlan::default());
    let elapsed = started.elapsed();
    let honoured = Duration::from_secs(u64::from(
        RATE_LIMITED_REQUESTS * RATE_LIMIT_RETRY_AFTER_SECS,
    ))
    .saturating_sub(Duration::from_millis(100));
    report.record(
        "429 with Retry-After honoured, the listing finishes",
        outcome.and_then(|(listed, refused)| {
            if listed != companies {
                Err(format!("{listed} companies listed, {companies} expected"))
            } else if elapsed < honoured {
                Err(format!(
                    "done in {elapsed:?}: {RATE_LIMITED_REQUESTS} answers of Retry-After {RATE_LIMIT_RETRY_AFTER_SECS} s were not waited out"
                ))
            } else {
                Ok(format!(
                    "{listed} companies in {elapsed:.1?} ({refused} rate-limited call(s) waited out by the host, the rest by the connector)"
                ))
            }
        }),
    );
}

/// "one malformed record": an emulator serving one contract with an
/// unreadable start date among good ones. WIT 0.1 has no way to exclude
/// one record from a page and go on, so the check asserts what the
/// contract allows: the sync fails loudly, its message quoting what was
/// seen (and, by the connectors' convention, naming the record and
/// field) — never a sync that succeeds without the record.
pub(super) async fn check_malformed_record(
    report: &mut Report<Against>,
    (engine, dir, base): (&PluginEngine, &Path, &PluginSettings),
    against: Against,
    scenario: &Scenario,
    world: &Arc<World>,
) {
    let name = "one malformed record is reported by name (WIT 0.1: the sync fails)";
    let Some(settings) = against.malformed_settings(scenario.as_of) else {
        report.record(
            name,
            Ok(format!(
                "not checked: the {against} emulator cannot serve a malformed record yet"
            )),
        );
        return;
    };
    let seen = against.malformed_date();
    let outcome = async {
        let running = trueup_emulators::start(
            against.kind(),
            world.clone(),
            settings,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .map_err(|e| format!("starting the emulator: {e}"))?;
        let connection = connect(engine, dir, base, against, &running.base_url, scenario.as_of)
            .map_err(|e| e.to_string())?;
        let mut session = connection.session().map_err(|e| e.to_string())?;
        // Every type: the malformed contract may be of a type the
        // scenario's filter leaves out.
        let filter = trueup_plugin_host::ContractFilter {
            types: Vec::new(),
            active_only: false,
        };
        match full_sync(&mut session, &filter).await {
            Ok(synced) => Err(format!(
                "the sync succeeded with {} contracts: the malformed one was dropped or misread silently",
                synced.contracts.len()
            )),
            Err(error) => {
                let message = error.to_string();
                if message.contains(seen) {
                    Ok(clip(&message))
                } else {
                    Err(format!(
                        "the sync failed without quoting {seen:?}: {}",
                        clip(&message)
                    ))
                }
            }
        }
    }
    .await;
    report.record(name, outcome);
}

/// "paging to the documented end against a server that caps page size": a
/// second emulator over the same world serves at most [`PAGE_CAP`] records
/// a page; the full sync must still read every customer and bill the
/// world's truth.
pub(super) async fn check_page_cap(
    report: &mut Report<Against>,
    (engine, dir, base): (&PluginEngine, &Path, &PluginSettings),
    against: Against,
    scenario: &Scenario,
    world: &Arc<World>,
) {
    let name = "paging to the end when the server caps pages";
    let Some(settings) = against.page_capped_settings(scenario.as_of, PAGE_CAP) else {
        report.record(
            name,
            Ok(format!(
                "not checked: the {against} emulator cannot cap pages yet"
            )),
        );
        return;
    };
    let outcome = async {
        let running = trueup_emulators::start(
            against.kind(),
            world.clone(),
            settings,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .map_err(|e| format!("starting the capped emulator: {e}"))?;
        let connection = connect(
            engine,
            dir,
            base,
            against,
            &running.base_url,
            scenario.as_of,
        )
        .map_err(|e| e.to_string())?;
        let mut session = connection.session().map_err(|e| e.to_string())?;
        let filter = trueup_plugin_host::ContractFilter {
            types: against.contract_types(),
            active_only: false,
        };
        let synced = full_sync(&mut session, &filter)
            .await
            .map_err(|e| e.to_string())?;
        let customers = world.psa_customers().count();
        let names: BTreeSet<&str> = synced.companies.iter().map(|c| c.name.as_str()).collect();
        let missing = world
            .psa_customers()
            .filter(|c| !names.contains(c.name.as_str()))
            .count();
        let mismatches = truth_mismatches(world, scenario.as_of, &synced);
        if missing > 0 {
            Err(format!(
                "{missing} of {customers} customers missing ({} companies in {} pages)",
                synced.companies.len(),
                synced.pages.0
            ))
        } else if !mismatches.is_empty() {
            Err(format!(
                "{} differences from the truth, e.g. {}",
                mismatches.len(),
                mismatches
                    .iter()
                    .take(2)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        } else {
            Ok(format!(
                "at most {PAGE_CAP} a page: {} companies, {} contracts, {} lines in {} requests",
                synced.companies.len(),
                synced.contracts.len(),
                synced.lines.len(),
                synced.cost.requests
            ))
        }
    }
    .await;
    report.record(name, outcome);
}
