//! Shared by the connector tests (`connector_*`): start an emulator
//! in-process, load a built connector (vendor or PSA) against it, page through a session,
//! read the emulator's inspection routes and inject faults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use serde_json::Value;
use trueup_conformance::psa::{self as conformance, Against, Connection};
use trueup_core::model::{UsageObservation, VendorAccount, VendorId};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::world::World;
use trueup_emulators::{Kind, Running, Settings, start};
use trueup_plugin_host::limits::LimitSettings;
use trueup_plugin_host::{
    CallError, CallErrorKind, ConnectorFailure, ContractFilter, Grants, LoadedPlugin,
    PluginSecrets, PluginSettings, ProgressReport, SecretValue, SessionOptions, VendorSession,
};

use crate::support::{engine, plugin_dir};

/// More pages than any listing in these tests needs: a listing that has
/// not ended by then is looping.
pub const MAX_PAGES: usize = 2_000;

/// The business date sessions run on.
pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
}

/// A running emulator and the world it serves.
pub struct Emulator {
    /// The emulator (dropping it stops the server).
    pub running: Running,
    /// Its world, for the truth.
    pub world: Arc<World>,
}

impl Emulator {
    /// Starts the `kind` emulator over a world of `customers` customers.
    pub async fn start(kind: Kind, seed: u64, customers: usize, settings: Settings) -> Self {
        let world = Arc::new(World::new(seed, customers));
        let running = start(
            kind,
            world.clone(),
            settings,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("start the emulator");
        Self { running, world }
    }

    /// The emulator's origin, e.g. `http://127.0.0.1:41234`.
    pub fn base(&self) -> &str {
        &self.running.base_url
    }

    /// Replaces the fault plan.
    pub fn faults(&self, plan: FaultPlan) {
        self.running.faults.set_plan(plan);
    }

    /// Requests the emulator answered, by `"METHOD /path"`.
    pub fn count(&self, route: &str) -> u64 {
        self.running.faults.count(route)
    }

    /// GETs an inspection route (never faulted) as JSON.
    pub async fn inspect(&self, path: &str) -> Value {
        let response = reqwest::get(format!("{}{path}", self.base()))
            .await
            .expect("inspection request");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let bytes = response.bytes().await.expect("inspection body");
        serde_json::from_slice(&bytes).expect("inspection JSON")
    }
}

/// Loads the built connector `id` with `config`, granted the emulator's
/// origin, loopback and the secrets named in `secrets`.
pub fn load(id: &str, base: &str, config: &[(&str, &str)], secrets: &[&str]) -> Arc<LoadedPlugin> {
    let settings = PluginSettings {
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        grants: Grants {
            http: vec![base.to_owned()],
            private_networks: vec!["127.0.0.1/32".to_owned()],
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        },
        ..PluginSettings::default()
    };
    LoadedPlugin::load(&engine(), &plugin_dir(id), &settings).expect("load the connector")
}

/// Session options holding `secrets` (`(name, value)`).
pub fn options(secrets: &[(&str, &str)]) -> SessionOptions {
    let secrets = PluginSecrets::new(
        secrets
            .iter()
            .map(|(name, value)| ((*name).to_owned(), SecretValue::new(*value))),
    );
    SessionOptions::new(as_of(), secrets)
}

/// A vendor session holding `secrets` (`(name, value)`).
pub fn session(
    plugin: &Arc<LoadedPlugin>,
    vendor: &str,
    secrets: &[(&str, &str)],
) -> VendorSession {
    plugin
        .vendor_session(VendorId::from(vendor), options(secrets))
        .expect("vendor session")
}

/// A vendor session holding `secrets` whose progress reports are kept.
pub fn session_with_progress(
    plugin: &Arc<LoadedPlugin>,
    vendor: &str,
    secrets: &[(&str, &str)],
) -> (VendorSession, Arc<Mutex<Vec<ProgressReport>>>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let mut options = options(secrets);
    options.progress = Some(Arc::new(move |report: ProgressReport| {
        sink.lock().expect("progress lock").push(report);
    }));
    let session = plugin
        .vendor_session(VendorId::from(vendor), options)
        .expect("vendor session");
    (session, reports)
}

/// Every account, and the number of pages it took.
pub async fn all_accounts(session: &mut VendorSession) -> (Vec<VendorAccount>, usize) {
    let mut accounts = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=MAX_PAGES {
        let listed = session
            .list_accounts(cursor.as_deref())
            .await
            .expect("list-accounts");
        accounts.extend(listed.items);
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (accounts, page),
        }
    }
    panic!("list-accounts did not end within {MAX_PAGES} pages");
}

/// Every usage record of `account` (all accounts when `None`), and the
/// number of pages it took.
pub async fn all_usage(
    session: &mut VendorSession,
    account: Option<&str>,
) -> (Vec<UsageObservation>, usize) {
    let mut usage = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=MAX_PAGES {
        let listed = session
            .list_usage(account, cursor.as_deref())
            .await
            .unwrap_or_else(|e| panic!("list-usage of {account:?}: {e}"));
        assert!(
            listed.items.len() <= 5_000,
            "a page of {} records is over the ~5,000 a call should return",
            listed.items.len()
        );
        usage.extend(listed.items);
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (usage, page),
        }
    }
    panic!("list-usage did not end within {MAX_PAGES} pages");
}

/// Pages through accounts until a call fails, returning the failure and
/// the number of calls made; panics when the listing ends without one.
pub async fn accounts_until_error(session: &mut VendorSession) -> (CallError, usize) {
    let mut cursor: Option<String> = None;
    for call in 1..=MAX_PAGES {
        match session.list_accounts(cursor.as_deref()).await {
            Ok(page) => match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => panic!("list-accounts ended after {call} calls without the expected error"),
            },
            Err(error) => return (error, call),
        }
    }
    panic!("list-accounts neither failed nor ended within {MAX_PAGES} calls");
}

/// Pages through usage (of `account`, all when `None`) until a call fails.
pub async fn usage_until_error(
    session: &mut VendorSession,
    account: Option<&str>,
) -> (CallError, usize) {
    let mut cursor: Option<String> = None;
    for call in 1..=MAX_PAGES {
        match session.list_usage(account, cursor.as_deref()).await {
            Ok(page) => match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => panic!("list-usage ended after {call} calls without the expected error"),
            },
            Err(error) => return (error, call),
        }
    }
    panic!("list-usage neither failed nor ended within {MAX_PAGES} calls");
}

/// The connector's own failure inside a call error.
pub fn failure(error: CallError) -> ConnectorFailure {
    match error.kind {
        CallErrorKind::Connector(failure) => failure,
        other => panic!("expected a connector error, got {other:?}"),
    }
}

/// The `key` attribute of a usage record.
pub fn attr<'a>(usage: &'a UsageObservation, key: &str) -> Option<&'a str> {
    usage.attributes.get(key)
}

/// A plan injecting `plan` into requests whose path contains `path`.
pub fn on_path(path: &str, plan: FaultPlan) -> FaultPlan {
    FaultPlan {
        path_contains: Some(path.to_owned()),
        ..plan
    }
}

/// Loads the built PSA connector `id` the way the conformance kit does,
/// granted `emulator` as `against`, with `config` and `limits`.
pub fn connect_psa(
    id: &str,
    against: Against,
    emulator: &Emulator,
    config: &[(&str, &str)],
    limits: LimitSettings,
) -> Connection {
    let base = PluginSettings {
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        limits,
        ..PluginSettings::default()
    };
    conformance::connect(
        &engine(),
        &plugin_dir(id),
        &base,
        against,
        emulator.base(),
        as_of(),
    )
    .unwrap_or_else(|e| panic!("load the {id} connector: {e}"))
}

/// Every contract, whatever its type or status.
pub fn all_contracts() -> ContractFilter {
    ContractFilter {
        types: Vec::new(),
        active_only: false,
    }
}
