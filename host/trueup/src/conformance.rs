//! The PSA connector conformance kit behind `trueup plugin test <plugin>
//! --against <emulator>`: one standard scenario run against a bundled
//! emulator (from `trueup-emulators`, started in-process on a loopback
//! port), printed as a pass/fail table.
//!
//! The scenario:
//!
//! 1. **describe**: the id matches `plugin.toml`, and the connector offers
//!    `write-quantity`, `plan-quantity-change` and `read-line`;
//! 2. **full sync with paging**: every company (over more than one page),
//!    every contract, and the services of every contract in batches of
//!    [`SERVICES_BATCH`] ids; the eligible lines, judged by the host's own
//!    eligibility rules, must bill exactly the emulated world's billing
//!    truth per customer and product; and page 2 of each listing, read in
//!    a fresh instance from page 1's cursor, must be the same page;
//! 3. **plan**: the dry run of a quantity change lists the calls (with a
//!    write among them, no secret in them) and sends no write;
//! 4. **write**: applying it changes the line, and the writes the emulator
//!    received are exactly the plan's;
//! 5. **read-back**: `read-line` shows the new quantity;
//! 6. **repeated write**: applying the same change again changes nothing
//!    and sends no write;
//! 7. **add a line**: a change without a line ("new revenue found") for a
//!    catalogue product an eligible monthly contract has no line of, at
//!    [`ADD_QUANTITY`]: its dry run lists the calls (a write among them)
//!    and sends no write; applying it sends exactly the planned writes and
//!    answers a new line of that product with the quantity and the
//!    catalogue's price; `read-line` shows it; applying it again changes
//!    nothing, sends no write and answers the same line;
//! 8. **faults**: a 429 burst gives `rate-limited` with the `Retry-After`
//!    wait, a 500 a transient `upstream`, truncated JSON an `internal`
//!    error naming the URL, and a paging loop is detected and reported
//!    within [`LOOP_CALLS`] calls.
//!
//! The plugin's config and grants are pointed at the emulator: the config
//! keys of the shipped connectors are set (see [`Against::config`]) where
//! the manifest declares them, the emulator's origin and loopback are
//! granted, and the emulator's credentials are given as the declared
//! secrets. The helpers ([`full_sync`], [`truth_mismatches`], ...) are
//! public so tests and benchmarks drive connectors the same way.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use trueup_core::cycles::CycleAnchor;
use trueup_core::eligibility;
use trueup_core::model::{BillingCycle, Company, Contract, ServiceLine};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::world::World;
use trueup_emulators::{Kind, Running, Settings, catalog};
use trueup_plugin_host::manifest::{MANIFEST_FILE, PluginManifest};
use trueup_plugin_host::{
    CallError, CallErrorKind, ChangePolicy, ConnectorFailure, ContractFilter, Grants, LoadError,
    LoadedPlugin, PlannedCall, PluginEngine, PluginKind, PluginSecrets, PluginSettings, PsaSession,
    QuantityChange, SecretValue, SessionOptions, WriteOutcome,
};

/// Contract ids per `list-services` call (the WIT contract's maximum).
pub const SERVICES_BATCH: usize = 200;

/// Calls one listing may take before [`full_sync`] calls it endless.
pub const MAX_PAGES: usize = 10_000;

/// Calls within which a connector must report a paging loop.
pub const LOOP_CALLS: usize = 12;

/// The `Retry-After` the 429 burst sends, in seconds.
pub const RETRY_AFTER_SECS: u32 = 7;

/// Units the scenario's write adds to the line it changes.
pub const WRITE_INCREMENT: u32 = 3;

/// The quantity of the line the scenario adds.
pub const ADD_QUANTITY: u32 = 4;

/// The seed of the scenario's world.
pub const SCENARIO_SEED: u64 = 7;

/// Customers in the scenario's world: enough for more than one page of
/// companies at the largest page size (ConnectWise's 1,000).
pub const SCENARIO_CUSTOMERS: usize = 1_100;

/// A bundled PSA emulator to test against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Against {
    /// ConnectWise PSA (Manage).
    ConnectWise,
    /// Autotask.
    Autotask,
    /// HaloPSA.
    HaloPsa,
}

impl Against {
    /// Every bundled PSA emulator.
    pub const ALL: [Against; 3] = [Against::ConnectWise, Against::Autotask, Against::HaloPsa];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Against::ConnectWise => "connectwise",
            Against::Autotask => "autotask",
            Against::HaloPsa => "halopsa",
        }
    }

    /// The emulator.
    pub fn kind(self) -> Kind {
        match self {
            Against::ConnectWise => Kind::ConnectWise,
            Against::Autotask => Kind::Autotask,
            Against::HaloPsa => Kind::HaloPsa,
        }
    }

    /// Emulator settings with "today" pinned to `today`.
    pub fn emulator_settings(self, today: NaiveDate) -> Settings {
        let mut settings = Settings::default();
        settings.connectwise.today = Some(today);
        settings.autotask.today = Some(today);
        settings.halopsa.today = Some(today);
        settings
    }

    /// Config values pointing the shipped connector at the emulator at
    /// `origin` (e.g. `http://127.0.0.1:41234`).
    pub fn config(self, origin: &str) -> Vec<(&'static str, String)> {
        use trueup_emulators::{autotask as at, connectwise as cw, halopsa as halo};
        match self {
            Against::ConnectWise => vec![
                ("base_url", format!("{origin}{}", cw::BASE_PATH)),
                ("company_id", cw::COMPANY_ID.to_owned()),
                ("client_id", cw::CLIENT_ID.to_owned()),
            ],
            Against::Autotask => vec![
                ("username", at::USERNAME.to_owned()),
                ("zone_lookup_url", origin.to_owned()),
            ],
            Against::HaloPsa => vec![
                ("base_url", origin.to_owned()),
                ("tenant", halo::TENANT.to_owned()),
                ("client_id", halo::CLIENT_ID.to_owned()),
            ],
        }
    }

    /// The emulator's credentials, by the shipped connector's secret names.
    pub fn secrets(self) -> Vec<(&'static str, &'static str)> {
        use trueup_emulators::{autotask as at, connectwise as cw, halopsa as halo};
        match self {
            Against::ConnectWise => vec![
                ("public_key", cw::PUBLIC_KEY),
                ("private_key", cw::PRIVATE_KEY),
            ],
            Against::Autotask => vec![
                ("integration_code", at::INTEGRATION_CODE),
                ("secret", at::SECRET),
            ],
            Against::HaloPsa => vec![("client_secret", halo::CLIENT_SECRET)],
        }
    }

    /// The contract types an MSP selects in this PSA for recurring
    /// services (the emulator seeds other types the sync must leave out).
    pub fn contract_types(self) -> Vec<String> {
        let types: &[&str] = match self {
            Against::ConnectWise => &["Managed Services", "Microsoft Licensing"],
            Against::Autotask => &["Recurring Service"],
            Against::HaloPsa => &["Managed Services", "Licensing"],
        };
        types.iter().map(|t| (*t).to_owned()).collect()
    }
}

impl fmt::Display for Against {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Against {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "connectwise" | "connect-wise" | "cw" => Ok(Against::ConnectWise),
            "autotask" => Ok(Against::Autotask),
            "halopsa" | "halo-psa" | "halo" => Ok(Against::HaloPsa),
            _ => Err(format!(
                "{text:?} is not a bundled PSA emulator; use one of {}",
                Against::ALL.map(Against::name).join(", ")
            )),
        }
    }
}

/// `base`'s settings (from `trueup.toml`, or none) pointed at the emulator
/// at `origin`: its config keys set where the manifest declares them, its
/// origin and loopback granted, and every declared secret granted.
pub fn settings_for(
    manifest: &PluginManifest,
    base: &PluginSettings,
    against: Against,
    origin: &str,
) -> PluginSettings {
    let mut config = base.config.clone();
    for (key, value) in against.config(origin) {
        if manifest.config.get(key).is_some_and(|k| !k.secret) {
            config.insert(key.to_owned(), value);
        }
    }
    PluginSettings {
        config,
        grants: Grants {
            http: vec![origin.to_owned()],
            private_networks: vec!["127.0.0.1/32".to_owned()],
            secrets: manifest.capabilities.secrets.clone(),
        },
        limits: base.limits,
    }
}

/// The emulator's credentials for the secrets the manifest declares.
pub fn secrets_for(manifest: &PluginManifest, against: Against) -> PluginSecrets {
    PluginSecrets::new(
        against
            .secrets()
            .into_iter()
            .filter(|(name, _)| manifest.capabilities.secrets.iter().any(|s| s == name))
            .map(|(name, value)| (name.to_owned(), SecretValue::new(value))),
    )
}

/// A PSA connector loaded against an emulator, ready for sessions.
pub struct Connection {
    /// The loaded plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Session options: the as-of date and the emulator's credentials.
    pub options: SessionOptions,
    /// The plugin's manifest.
    pub manifest: PluginManifest,
}

impl Connection {
    /// A new session (a fresh instance at its first call).
    ///
    /// # Errors
    /// [`LoadError::WrongKind`] for a vendor plugin.
    pub fn session(&self) -> Result<PsaSession, LoadError> {
        self.plugin.psa_session(self.options.clone())
    }
}

/// Loads the PSA connector in `dir` with `base` settings pointed at the
/// `against` emulator at `origin` (see [`settings_for`]), with the
/// emulator's credentials and `as_of` for its sessions.
///
/// # Errors
/// [`ConformanceError`] when the plugin does not load or is not a PSA
/// connector.
pub fn connect(
    engine: &PluginEngine,
    dir: &Path,
    base: &PluginSettings,
    against: Against,
    origin: &str,
    as_of: NaiveDate,
) -> Result<Connection, ConformanceError> {
    let manifest = PluginManifest::load(&dir.join(MANIFEST_FILE)).map_err(LoadError::from)?;
    if manifest.kind != PluginKind::Psa {
        return Err(ConformanceError::NotPsa {
            plugin: manifest.id.clone(),
            kind: manifest.kind,
        });
    }
    let plugin = LoadedPlugin::load(engine, dir, &settings_for(&manifest, base, against, origin))?;
    let options = SessionOptions::new(as_of, secrets_for(&manifest, against));
    Ok(Connection {
        plugin,
        options,
        manifest,
    })
}

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
    let assessed = eligibility::assess(
        &synced.companies,
        &synced.contracts,
        &synced.lines,
        as_of,
        CycleAnchor::ContractStart,
    );
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

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// The outcome of a scenario run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plugin id.
    pub plugin: String,
    /// The emulator.
    pub against: Against,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    fn record(&mut self, name: &str, outcome: Result<String, String>) -> bool {
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.checks.push(Check {
            name: name.to_owned(),
            passed,
            detail,
        });
        passed
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "conformance of {} against the {} emulator",
            self.plugin, self.against
        )?;
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(f, "  {:<width$}  {:<6}  DETAIL", "CHECK", "RESULT")?;
        for check in &self.checks {
            let result = if check.passed { "pass" } else { "FAIL" };
            writeln!(f, "  {:<width$}  {result:<6}  {}", check.name, check.detail)?;
        }
        let failed = self.failures().len();
        if failed == 0 {
            write!(f, "all {} checks passed", self.checks.len())
        } else {
            write!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}

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

/// Why the scenario could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The emulator did not start.
    #[error("starting the {against} emulator: {source}")]
    Emulator {
        /// Which.
        against: Against,
        /// Why.
        source: std::io::Error,
    },
    /// The plugin did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin is not a PSA connector.
    #[error("{plugin} is a {kind} connector; the conformance kit tests PSA connectors")]
    NotPsa {
        /// The plugin id.
        plugin: String,
        /// Its kind.
        kind: PluginKind,
    },
}

/// Writes the emulator has answered, by `"METHOD /path"`: requests with
/// any method but GET and HEAD, except the reads some APIs make with POST
/// (OAuth token requests, Autotask's `…/query`).
fn writes_seen(running: &Running) -> BTreeMap<String, u64> {
    running
        .faults
        .stats()
        .by_route
        .into_iter()
        .filter(|(route, _)| {
            let read = route.starts_with("GET ") || route.starts_with("HEAD ");
            let lower = route.to_ascii_lowercase();
            !(read || lower.ends_with("/auth/token") || lower.contains("/query"))
        })
        .collect()
}

/// The writes between two [`writes_seen`] snapshots.
fn writes_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(route, n)| {
            let new = n - before.get(route).copied().unwrap_or(0).min(*n);
            (new > 0).then(|| (route.clone(), new))
        })
        .collect()
}

/// The path of an absolute URL (no query).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The writes a plan lists, by `"METHOD /path"`.
fn planned_writes(plan: &[PlannedCall]) -> BTreeMap<String, u64> {
    let mut writes = BTreeMap::new();
    for call in plan {
        let method = call.method.to_ascii_uppercase();
        if method != "GET" && method != "HEAD" {
            *writes
                .entry(format!("{method} {}", path_of(&call.url)))
                .or_insert(0) += 1;
        }
    }
    writes
}

fn describe_failure(error: &CallError) -> String {
    clip(&error.to_string())
}

/// The most characters of a message a report row shows.
const DETAIL_CHARS: usize = 200;

/// `text` shortened to [`DETAIL_CHARS`] by cutting out its middle, so both
/// the URL it starts with and the reason it ends with stay readable.
fn clip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= DETAIL_CHARS {
        return text.to_owned();
    }
    let half = DETAIL_CHARS / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head} … {tail}")
}

/// Plans `change` (described as `target`) and judges the dry run
/// ([`judge_plan`]); also the writes the plan lists.
async fn plan_judged(
    main: &mut PsaSession,
    running: &Running,
    against: Against,
    change: &QuantityChange,
    target: &str,
) -> (Result<String, String>, BTreeMap<String, u64>) {
    let before = writes_seen(running);
    let plan = main.plan_quantity_change(change).await;
    let plan_writes = plan
        .as_ref()
        .map(|calls| planned_writes(calls))
        .unwrap_or_default();
    let sent = writes_between(&before, &writes_seen(running));
    (
        judge_plan(&plan, &plan_writes, &sent, against, target),
        plan_writes,
    )
}

/// Applies `change`; also the writes the emulator received meanwhile.
async fn apply_counted(
    main: &mut PsaSession,
    running: &Running,
    change: &QuantityChange,
) -> (Result<WriteOutcome, CallError>, BTreeMap<String, u64>) {
    let before = writes_seen(running);
    let applied = main.apply_quantity_change(change).await;
    (applied, writes_between(&before, &writes_seen(running)))
}

/// The verdict on a dry run of `target`: it lists calls, with a write
/// (`plan_writes`) among them and a purpose for each, carries none of
/// `against`'s secrets, and sent no write (`sent_while_planning`).
fn judge_plan(
    plan: &Result<Vec<PlannedCall>, CallError>,
    plan_writes: &BTreeMap<String, u64>,
    sent_while_planning: &BTreeMap<String, u64>,
    against: Against,
    target: &str,
) -> Result<String, String> {
    let calls = plan.as_ref().map_err(describe_failure)?;
    let secret_values: Vec<&str> = against.secrets().into_iter().map(|(_, v)| v).collect();
    let leaked = calls.iter().any(|c| {
        secret_values
            .iter()
            .any(|s| c.url.contains(s) || c.body.as_deref().is_some_and(|b| b.contains(s)))
    });
    if !sent_while_planning.is_empty() {
        Err(format!(
            "the emulator received writes while planning: {sent_while_planning:?}"
        ))
    } else if plan_writes.is_empty() {
        Err(format!(
            "the plan of {target} lists no write ({} calls)",
            calls.len()
        ))
    } else if calls.iter().any(|c| c.purpose.trim().is_empty()) {
        Err("a planned call has no purpose".to_owned())
    } else if leaked {
        Err("a planned call carries a secret".to_owned())
    } else {
        Ok(format!(
            "{} calls for {target}; writes {}",
            calls.len(),
            plan_writes.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// The first catalogue product `contract` has no line of in `synced`,
/// billed or not: one a change without a line can add.
pub fn product_missing_from(synced: &Synced, contract: &str) -> Option<&'static catalog::Product> {
    let held: HashSet<&str> = synced
        .lines
        .iter()
        .filter(|l| l.contract_id.as_str() == contract)
        .map(|l| l.product_identifier.as_str())
        .collect();
    catalog::PRODUCTS
        .iter()
        .find(|p| !held.contains(p.identifier))
}

/// A change without a line ("new revenue found") that adds `quantity` of
/// `product` to `contract` from `effective`.
pub fn add_line_change(
    contract: &str,
    product: &catalog::Product,
    quantity: Decimal,
    effective: NaiveDate,
) -> QuantityChange {
    QuantityChange {
        contract_id: contract.to_owned(),
        line_id: None,
        product_identifier: product.identifier.to_owned(),
        expected_quantity: Decimal::ZERO,
        new_quantity: quantity,
        effective_date: effective,
        policy: ChangePolicy::Dated,
        idempotency_key: format!("add-{contract}-{}-{effective}", product.identifier),
    }
}

/// The first eligible monthly contract of the sync with a catalogue
/// product it has no line of: the scenario's add.
fn add_target(synced: &Synced, as_of: NaiveDate) -> Option<(Contract, &'static catalog::Product)> {
    let assessed = eligibility::assess(
        &synced.companies,
        &synced.contracts,
        &synced.lines,
        as_of,
        CycleAnchor::ContractStart,
    );
    let mut tried = HashSet::new();
    assessed.lines.iter().find_map(|eligible| {
        let contract = &synced.contracts[assessed.contracts[eligible.contract].contract];
        if contract.billing_cycle != BillingCycle::Monthly || !tried.insert(contract.id.clone()) {
            return None;
        }
        product_missing_from(synced, contract.id.as_str())
            .map(|product| (contract.clone(), product))
    })
}

/// The first line of the sync that the scenario's write changes: an
/// eligible, billable line of a monthly contract with a whole quantity.
fn write_target(synced: &Synced, as_of: NaiveDate) -> Option<(Contract, ServiceLine)> {
    let assessed = eligibility::assess(
        &synced.companies,
        &synced.contracts,
        &synced.lines,
        as_of,
        CycleAnchor::ContractStart,
    );
    assessed.lines.iter().find_map(|eligible| {
        let contract = &synced.contracts[assessed.contracts[eligible.contract].contract];
        let line = &synced.lines[eligible.line];
        (contract.billing_cycle == BillingCycle::Monthly
            && line.billable
            && line.quantity.fract().is_zero()
            && line.quantity >= Decimal::ONE)
            .then(|| (contract.clone(), line.clone()))
    })
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
) -> Result<Report, ConformanceError> {
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
    let mut report = Report {
        plugin: manifest.id.clone(),
        against,
        checks: Vec::new(),
    };
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

    // 3–6. plan, write, read back, write again
    let Some((contract, line)) = write_target(&synced, scenario.as_of) else {
        report.record(
            "write",
            Err("no eligible monthly line to change".to_owned()),
        );
        return Ok(report);
    };
    let effective = scenario.as_of.with_day(1).unwrap_or(scenario.as_of);
    let new_quantity = line.quantity + Decimal::from(WRITE_INCREMENT);
    let change = QuantityChange {
        contract_id: contract.id.to_string(),
        line_id: Some(line.id.to_string()),
        product_identifier: line.product_identifier.to_string(),
        expected_quantity: line.quantity,
        new_quantity,
        effective_date: effective,
        policy: ChangePolicy::Dated,
        idempotency_key: format!("conformance-{}-{}", contract.id, line.id),
    };
    let target = format!(
        "line {} of contract {} from {} to {new_quantity} effective {effective}",
        line.id, contract.id, line.quantity
    );
    let (verdict, plan_writes) = plan_judged(&mut main, &running, against, &change, &target).await;
    report.record("plan lists the calls, sends no write", verdict);
    let (applied, sent) = apply_counted(&mut main, &running, &change).await;
    let written = report.record(
        "write applies the change as planned",
        match &applied {
            Err(e) => Err(describe_failure(e)),
            Ok(outcome) if !outcome.changed => Err("the write reports changed = false".to_owned()),
            Ok(outcome) if outcome.line.quantity != new_quantity => Err(format!(
                "the line read back after the write has quantity {}, not {new_quantity}",
                outcome.line.quantity
            )),
            Ok(_) if sent != plan_writes => Err(format!(
                "the emulator received {sent:?}, the plan listed {plan_writes:?}"
            )),
            Ok(outcome) => Ok(format!(
                "records {}; writes {}",
                outcome.record_ids.join(", "),
                sent.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        },
    );
    if written && let Ok(outcome) = &applied {
        let read = main
            .read_line(&change.contract_id, outcome.line.id.as_str())
            .await;
        report.record(
            "read-back shows the new quantity",
            match read {
                Err(e) => Err(describe_failure(&e)),
                Ok(line) if line.quantity == new_quantity => {
                    Ok(format!("line {} has quantity {}", line.id, line.quantity))
                }
                Ok(line) => Err(format!(
                    "line {} has quantity {}, not {new_quantity}",
                    line.id, line.quantity
                )),
            },
        );
        let (repeated, sent_again) = apply_counted(&mut main, &running, &change).await;
        report.record(
            "repeated write changes nothing",
            match repeated {
                Err(e) => Err(describe_failure(&e)),
                Ok(outcome) if outcome.changed => {
                    Err("the second write reports changed = true".to_owned())
                }
                Ok(_) if !sent_again.is_empty() => {
                    Err(format!("the second write sent {sent_again:?}"))
                }
                Ok(outcome) if outcome.line.quantity != new_quantity => Err(format!(
                    "the second write reads quantity {}, not {new_quantity}",
                    outcome.line.quantity
                )),
                Ok(_) => Ok("changed = false, no write sent".to_owned()),
            },
        );
    }

    // 7. add a line, read it back, add it again
    add_line(&mut report, &mut main, &running, against, &synced, scenario).await;

    // 8. faults, each on a fresh session (no cached token or zone)
    let first_page = async |plan: FaultPlan| -> Result<CallError, String> {
        running.faults.set_plan(plan);
        let mut fresh = session().map_err(|e| e.to_string())?;
        let result = fresh.list_companies(None).await;
        running.faults.set_plan(FaultPlan::default());
        match result {
            Ok(page) => Err(format!(
                "the call succeeded with {} companies",
                page.items.len()
            )),
            Err(error) => Ok(error),
        }
    };
    let burst = first_page(FaultPlan {
        rate_limited: 3,
        retry_after_secs: RETRY_AFTER_SECS,
        ..FaultPlan::default()
    })
    .await;
    report.record(
        "429 burst is rate-limited with the wait",
        burst.and_then(|error| match error.kind {
            CallErrorKind::Connector(ConnectorFailure::RateLimited { retry_after })
                if retry_after >= Duration::from_secs(u64::from(RETRY_AFTER_SECS)) =>
            {
                Ok(format!("rate-limited, retry after {retry_after:?}"))
            }
            _ => Err(format!(
                "expected rate-limited ≥ {RETRY_AFTER_SECS} s: {error}"
            )),
        }),
    );
    let server_error = first_page(FaultPlan {
        server_errors: 1,
        ..FaultPlan::default()
    })
    .await;
    report.record(
        "500 is a transient upstream error",
        server_error.and_then(|error| match &error.kind {
            CallErrorKind::Connector(ConnectorFailure::Upstream { status: 500, .. })
                if error.is_transient() =>
            {
                Ok(error.to_string())
            }
            _ => Err(format!("expected a transient upstream 500: {error}")),
        }),
    );
    let truncated = first_page(FaultPlan {
        truncated: 1,
        ..FaultPlan::default()
    })
    .await;
    report.record(
        "truncated JSON is an internal error naming the URL",
        truncated.and_then(|error| match &error.kind {
            CallErrorKind::Connector(ConnectorFailure::Internal(message))
                if message.contains(&origin) =>
            {
                Ok(clip(message))
            }
            _ => Err(format!(
                "expected an internal error naming {origin}: {error}"
            )),
        }),
    );
    running.faults.set_plan(FaultPlan {
        paging_loop: true,
        ..FaultPlan::default()
    });
    let looped = async {
        let mut fresh = session().map_err(|e| e.to_string())?;
        let mut cursor: Option<String> = None;
        for call in 1..=LOOP_CALLS {
            match fresh.list_companies(cursor.as_deref()).await {
                Err(error) => return Ok((call, error)),
                Ok(page) => match page.next_cursor {
                    None => return Err(format!("the listing ended normally after {call} calls")),
                    Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                        return Err(format!("call {call} handed back the same cursor (the connector follows the loop)"));
                    }
                    Some(next) => cursor = Some(next),
                },
            }
        }
        Err(format!("still paging after {LOOP_CALLS} calls"))
    }
    .await;
    running.faults.set_plan(FaultPlan::default());
    report.record(
        "paging loop is detected",
        looped.and_then(|(call, error)| match &error.kind {
            CallErrorKind::Connector(ConnectorFailure::Internal(message)) => {
                Ok(format!("call {call}: {}", clip(message)))
            }
            _ => Err(format!(
                "expected an internal error reporting the loop: {error}"
            )),
        }),
    );
    Ok(report)
}

/// Step 7 of the scenario: plan, apply, read back and apply again a change
/// without a line, which adds [`ADD_QUANTITY`] of a catalogue product the
/// [`add_target`] contract lacks, effective the first of the as-of month.
async fn add_line(
    report: &mut Report,
    main: &mut PsaSession,
    running: &Running,
    against: Against,
    synced: &Synced,
    scenario: &Scenario,
) {
    let Some((contract, product)) = add_target(synced, scenario.as_of) else {
        report.record(
            "add a line",
            Err("no eligible monthly contract lacks a catalogue product".to_owned()),
        );
        return;
    };
    let effective = scenario.as_of.with_day(1).unwrap_or(scenario.as_of);
    let quantity = Decimal::from(ADD_QUANTITY);
    let price = Decimal::new(product.unit_price_cents, 2);
    let change = add_line_change(contract.id.as_str(), product, quantity, effective);
    let target = format!(
        "adding {quantity} of {} to contract {} effective {effective}",
        product.identifier, contract.id
    );
    let (verdict, plan_writes) = plan_judged(main, running, against, &change, &target).await;
    report.record("add: plan lists the calls, sends no write", verdict);
    let existing: HashSet<&str> = synced.lines.iter().map(|l| l.id.as_str()).collect();
    let (added, sent) = apply_counted(main, running, &change).await;
    let added_ok = report.record(
        "add: a new line as planned, at the catalogue price",
        match &added {
            Err(e) => Err(describe_failure(e)),
            Ok(outcome) if !outcome.changed => Err("the add reports changed = false".to_owned()),
            Ok(outcome) if existing.contains(outcome.line.id.as_str()) => Err(format!(
                "the add answers line {}, which the sync had already listed",
                outcome.line.id
            )),
            Ok(outcome)
                if outcome.line.product_identifier.as_str() != product.identifier
                    || outcome.line.quantity != quantity
                    || outcome.line.unit_price != price =>
            {
                Err(format!(
                    "the line read back after the add is {} × {} at {}, not {quantity} × {} at {price}",
                    outcome.line.quantity,
                    outcome.line.product_identifier,
                    outcome.line.unit_price,
                    product.identifier
                ))
            }
            Ok(outcome) if outcome.line.effective_date.is_some_and(|d| d != effective) => {
                Err(format!(
                    "the added line starts {:?}, not {effective}",
                    outcome.line.effective_date
                ))
            }
            Ok(_) if sent != plan_writes => Err(format!(
                "the emulator received {sent:?}, the plan listed {plan_writes:?}"
            )),
            Ok(outcome) => Ok(format!(
                "line {} ({quantity} × {} at {price}); writes {}",
                outcome.line.id,
                product.identifier,
                sent.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        },
    );
    let Ok(outcome) = added else {
        return;
    };
    if !added_ok {
        return;
    }
    let read = main
        .read_line(&change.contract_id, outcome.line.id.as_str())
        .await;
    report.record(
        "add: read-back shows the added line",
        match read {
            Err(e) => Err(describe_failure(&e)),
            Ok(line)
                if line.quantity == quantity
                    && line.product_identifier.as_str() == product.identifier =>
            {
                Ok(format!(
                    "line {} has {} × {}",
                    line.id, line.quantity, line.product_identifier
                ))
            }
            Ok(line) => Err(format!(
                "line {} has {} × {}, not {quantity} × {}",
                line.id, line.quantity, line.product_identifier, product.identifier
            )),
        },
    );
    let (repeated, sent_again) = apply_counted(main, running, &change).await;
    report.record(
        "add: repeated add changes nothing",
        match repeated {
            Err(e) => Err(describe_failure(&e)),
            Ok(again) if again.changed => Err("the second add reports changed = true".to_owned()),
            Ok(_) if !sent_again.is_empty() => Err(format!("the second add sent {sent_again:?}")),
            Ok(again) if again.line.id != outcome.line.id => Err(format!(
                "the second add answers line {}, not the added line {}",
                again.line.id, outcome.line.id
            )),
            Ok(again) if again.line.quantity != quantity => Err(format!(
                "the second add reads quantity {}, not {quantity}",
                again.line.quantity
            )),
            Ok(_) => Ok("changed = false, no write sent, the same line".to_owned()),
        },
    );
}
