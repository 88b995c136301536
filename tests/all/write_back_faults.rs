//! Exactly once, whatever the PSA answers (issue 13): every write-back
//! fault mode on every PSA, through the real path — an approval, the
//! outbox, the write-back worker, the shipped WASM connector, the PSA
//! emulator — with the worker run again and again and the clock moved past
//! every retry delay in between. What the PSA received is read from the
//! emulator's own write log (`GET /_emulator/<psa>/writes`), never from
//! Trueup's records.
//!
//! The modes: a clean write; the PSA storing another effective date, unit
//! price or quantity than sent (`alter_written`); the PSA applying the
//! write and answering after the client gave up (`ack_then_timeout`); a
//! 500 on the write (the client cannot know whether it was applied); a
//! 503 and a 429 on the write (refusals: nothing applied, retried later).
//!
//! Expected: a write that the PSA acknowledged, or whose outcome is
//! unknown, is never sent again — the entry ends `needs_review`; a refused
//! write is retried and applied once; no write is ever applied twice.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use trueup::app::App;
use trueup::config::{Config, PluginEntry, PsaConfig};
use trueup::demo;
use trueup_conformance::psa::Against;
use trueup_core::actions::Action;
use trueup_core::card::{CardCategory, CardKey, ServiceCard};
use trueup_emulators::Running;
use trueup_emulators::faults::{AlteredField, FaultPlan};
use trueup_emulators::world::World;
use trueup_plugin_host::Grants;
use trueup_plugin_host::limits::LimitSettings;
use trueup_store::outbox::OutboxEntry;

use crate::support::repo_root;

/// The world of every case (the demo's seed).
const SEED: u64 = 5;

/// Customers: enough approvable cards on every PSA for one per mode.
const CUSTOMERS: usize = 60;

/// The PSA connector's call timeout in these tests.
const CALL_TIMEOUT_MS: u64 = 4_000;

/// How long an `ack_then_timeout` write's answer is held: past the
/// connector's timeout.
const ACK_DELAY_MS: u64 = 6_000;

/// Write-back rounds per case, the clock moved past every retry delay
/// (at most ten minutes) after each.
const ROUNDS: usize = 4;

/// How far the clock moves between rounds.
const ROUND_SECS: i64 = 11 * 60;

/// One PSA's side of the table.
pub(crate) struct Psa {
    /// The emulator and the connector's settings for it.
    pub against: Against,
    /// The shipped connector.
    pub plugin: &'static str,
    /// The emulator's write log.
    pub writes_log: &'static str,
    /// What the write requests' paths contain (fault plans are limited to
    /// them).
    pub write_paths: &'static str,
}

pub(crate) const PSAS: [Psa; 3] = [
    Psa {
        against: Against::ConnectWise,
        plugin: "trueup.connectwise",
        writes_log: "/_emulator/connectwise/writes",
        write_paths: "/additions",
    },
    Psa {
        against: Against::Autotask,
        plugin: "trueup.autotask",
        writes_log: "/_emulator/autotask/writes",
        write_paths: "/ContractServiceAdjustments",
    },
    Psa {
        against: Against::HaloPsa,
        plugin: "trueup.halopsa",
        writes_log: "/_emulator/halopsa/writes",
        write_paths: "/RecurringInvoice",
    },
];

/// A fault mode.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Clean,
    Alter(AlteredField),
    AckThenTimeout,
    ServerError,
    Unavailable,
    RateLimited,
}

/// What a mode must end in.
struct Expect {
    /// The outbox entry's final status, as serialized.
    status: &'static str,
    /// Whether the PSA applied the change's writes (once each).
    applied: bool,
}

impl Mode {
    const ALL: [Mode; 8] = [
        Mode::Clean,
        Mode::Alter(AlteredField::Date),
        Mode::Alter(AlteredField::Price),
        Mode::Alter(AlteredField::Quantity),
        Mode::AckThenTimeout,
        Mode::ServerError,
        Mode::Unavailable,
        Mode::RateLimited,
    ];

    fn plan(self, psa: &Psa) -> FaultPlan {
        let on_writes = FaultPlan {
            path_contains: Some(psa.write_paths.to_owned()),
            writes_only: true,
            ..FaultPlan::default()
        };
        match self {
            Mode::Clean => FaultPlan::default(),
            Mode::Alter(field) => FaultPlan {
                alter_written: 1,
                alter_field: Some(field),
                ..on_writes
            },
            Mode::AckThenTimeout => FaultPlan {
                ack_then_timeout: 1,
                ack_delay_ms: ACK_DELAY_MS,
                ..on_writes
            },
            Mode::ServerError => FaultPlan {
                server_errors: 1,
                ..on_writes
            },
            Mode::Unavailable => FaultPlan {
                unavailable: 1,
                retry_after_secs: 1,
                ..on_writes
            },
            Mode::RateLimited => FaultPlan {
                rate_limited: 1,
                retry_after_secs: 1,
                ..on_writes
            },
        }
    }

    /// The same on every PSA: the emulators answer each mode alike.
    fn expect(self) -> Expect {
        match self {
            Mode::Clean | Mode::Unavailable | Mode::RateLimited => Expect {
                status: "applied",
                applied: true,
            },
            Mode::Alter(_) | Mode::AckThenTimeout => Expect {
                status: "needs_review",
                applied: true,
            },
            // A 500 leaves the outcome unknown: never re-sent. The emulator
            // answered it before applying anything.
            Mode::ServerError => Expect {
                status: "needs_review",
                applied: false,
            },
        }
    }
}

/// The application's clock: the real start time plus an offset the test
/// moves.
#[derive(Clone)]
pub(crate) struct TestClock {
    start: DateTime<Utc>,
    offset_secs: Arc<AtomicI64>,
}

impl TestClock {
    pub fn new() -> Self {
        Self {
            start: Utc::now(),
            offset_secs: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn clock(&self) -> trueup::app::Clock {
        let this = self.clone();
        Arc::new(move || {
            this.start + chrono::Duration::seconds(this.offset_secs.load(Ordering::SeqCst))
        })
    }
}

/// The demo's emulators and configuration (vendors, rules, SQLite in
/// `data_dir`) with `psa`'s emulator and connector as the PSA, the
/// connector's calls limited to `call_timeout_ms`. The PSA's emulator is
/// returned (ConnectWise's is the demo's own).
pub(crate) async fn psa_setup(
    psa: &Psa,
    data_dir: &Path,
    call_timeout_ms: u64,
) -> (demo::Emulators, Option<Running>, Config) {
    let today = Utc::now().date_naive();
    let emulators = demo::start_emulators(SEED, CUSTOMERS, today, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .expect("emulators");
    let own = match psa.against {
        Against::ConnectWise => None,
        other => Some(
            trueup_emulators::start(
                other.kind(),
                Arc::new(World::new(SEED, CUSTOMERS)),
                other.emulator_settings(today),
                "127.0.0.1:0".parse().expect("address"),
            )
            .await
            .expect("the PSA emulator"),
        ),
    };
    let origin = own
        .as_ref()
        .map_or(emulators.connectwise.base_url.clone(), |r| {
            r.base_url.clone()
        });
    let (plugins, rules) = demo::repo_paths(&repo_root());
    let mut config = demo::config(data_dir, &plugins, &rules, &emulators);
    config.plugins.remove(demo::PSA_PLUGIN);
    config.plugins.insert(
        psa.plugin.to_owned(),
        PluginEntry {
            path: plugins.join(psa.plugin),
            enabled: true,
            config: psa
                .against
                .config(&origin)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            grants: Grants {
                http: vec![origin.clone()],
                private_networks: vec!["127.0.0.1/32".to_owned()],
                secrets: psa
                    .against
                    .secrets()
                    .into_iter()
                    .map(|(name, _)| name.to_owned())
                    .collect(),
            },
            limits: LimitSettings {
                call_timeout_ms: Some(call_timeout_ms),
                ..LimitSettings::default()
            },
        },
    );
    config.psa = Some(PsaConfig {
        plugin: psa.plugin.to_owned(),
        contract_types: psa.against.contract_types(),
    });
    (emulators, own, config)
}

/// Stores the secrets of the demo's vendors and of `psa`.
pub(crate) async fn set_secrets(app: &App, psa: &Psa) {
    for (plugin, name, value) in demo::secrets() {
        if plugin != demo::PSA_PLUGIN {
            app.set_secret(plugin, name, value, "test")
                .await
                .expect("secret");
        }
    }
    for (name, value) in psa.against.secrets() {
        app.set_secret(psa.plugin, name, value, "test")
            .await
            .expect("PSA secret");
    }
}

/// Syncs every source, reconciles, and returns the quantity-differs cards
/// on a PSA line, one per (contract, product).
pub(crate) async fn approvable_cards(
    app: &App,
) -> (trueup_store::reconcile::ReconcileRunId, Vec<ServiceCard>) {
    for (source, outcome) in app.sync_all().await {
        outcome.unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    app.reconcile().await.expect("reconcile");
    let run = app
        .store()
        .latest_reconcile_run()
        .await
        .expect("run")
        .expect("a run");
    let cards = app.store().run_cards(run.id).await.expect("cards");
    let mut seen = std::collections::BTreeSet::new();
    let approvable = cards
        .into_iter()
        .filter(|c| c.category == CardCategory::Reconcile && c.line.is_some())
        .filter(|c| seen.insert((c.contract.clone(), c.product.clone())))
        .collect();
    (run.id, approvable)
}

/// The emulator's write log at `base`.
pub(crate) async fn write_log(base: &str, psa: &Psa) -> Vec<serde_json::Value> {
    let body = reqwest::get(format!("{base}{}", psa.writes_log))
        .await
        .expect("GET the write log")
        .text()
        .await
        .expect("the write log");
    serde_json::from_str(&body).expect("a JSON list of writes")
}

async fn clear_write_log(base: &str, psa: &Psa) {
    let response = reqwest::Client::new()
        .delete(format!("{base}{}", psa.writes_log))
        .send()
        .await
        .expect("DELETE the write log");
    assert!(response.status().is_success(), "{}", response.status());
}

/// Writes the PSA applied (2xx), by `"METHOD path"`.
pub(crate) fn applied_writes(log: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut applied = BTreeMap::new();
    for write in log {
        if write["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s))
        {
            let key = format!(
                "{} {}",
                write["method"].as_str().unwrap_or_default(),
                write["path"].as_str().unwrap_or_default()
            );
            *applied.entry(key).or_default() += 1;
        }
    }
    applied
}

/// The outbox status as serialized (`needs_review` included, whichever
/// statuses the store defines).
pub(crate) fn status_name(entry: &OutboxEntry) -> String {
    serde_json::to_value(entry.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn entry_of(app: &App, card: &CardKey) -> OutboxEntry {
    app.store()
        .outbox_entries(None, 10_000)
        .await
        .expect("outbox")
        .into_iter()
        .find(|e| &e.card_key == card)
        .expect("the card's outbox entry")
}

/// Runs every mode against `psa`; returns the failures, one line each.
async fn run_psa(psa: &Psa) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (emulators, own, config) = psa_setup(psa, dir.path(), CALL_TIMEOUT_MS).await;
    let running = own.as_ref().unwrap_or(&emulators.connectwise);
    let base = running.base_url.clone();
    let clock = TestClock::new();
    let app = App::open_with_clock(Arc::new(config), clock.clock())
        .await
        .expect("app");
    set_secrets(&app, psa).await;
    let (run, cards) = approvable_cards(&app).await;
    assert!(
        cards.len() >= Mode::ALL.len(),
        "{}: only {} approvable cards",
        psa.plugin,
        cards.len()
    );
    let mut failures = Vec::new();
    for (mode, card) in Mode::ALL.iter().zip(&cards) {
        let case = format!("{} × {mode:?} (card {})", psa.plugin, card.key.as_str());
        clear_write_log(&base, psa).await;
        running.faults.set_plan(mode.plan(psa));
        let outcome = app
            .decide(Some(run), &[card.key], &Action::Approve, "approver@test")
            .await
            .expect("approve");
        assert_eq!(outcome.write_backs, 1, "{case}: {:?}", outcome.refused);
        let mut results = Vec::new();
        for _ in 0..ROUNDS {
            match app.write_back_due().await {
                Ok(round) => results.extend(round),
                Err(error) => results.push(trueup::app::writeback::WriteBackResult::Retrying {
                    card: card.key.as_str().to_owned(),
                    error: format!("the worker failed: {error}"),
                    in_secs: 0,
                }),
            }
            clock.advance(ROUND_SECS);
        }
        running.faults.set_plan(FaultPlan::default());
        let entry = entry_of(&app, &card.key).await;
        let applied = applied_writes(&write_log(&base, psa).await);
        let expect = mode.expect();
        let status = status_name(&entry);
        println!("{case}: {status}, PSA writes {applied:?}");
        if status != expect.status {
            failures.push(format!(
                "{case}: status {status}, expected {} (error {:?}; results {results:?})",
                expect.status, entry.error
            ));
        }
        if let Some((write, n)) = applied.iter().find(|(_, n)| **n > 1) {
            failures.push(format!("{case}: {write} applied {n} times: {applied:?}"));
        }
        if expect.applied && applied.is_empty() {
            failures.push(format!("{case}: the PSA applied no write"));
        }
        if !expect.applied && !applied.is_empty() {
            failures.push(format!("{case}: the PSA applied {applied:?}"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_psa_writes_each_change_at_most_once_whatever_it_answers() {
    let mut failures = Vec::new();
    for psa in &PSAS {
        failures.extend(run_psa(psa).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
