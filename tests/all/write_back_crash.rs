//! Exactly-once write-back across a crash (issues 5 and 13): a real
//! `trueup serve` process writes a batch of approved changes to a PSA
//! emulator, is killed with SIGKILL in the middle of the batch — while a
//! change it has already written is not yet recorded — and is restarted
//! on the same store. When the outbox has settled, the emulator's own
//! write log shows no change written twice and none lost: every entry is
//! applied, except that the one in flight at the kill may end needs review
//! (a write that may have landed is never re-sent blindly). It runs on
//! ConnectWise, Autotask and HaloPSA on SQLite, and on ConnectWise once on
//! PostgreSQL (a fresh database, `TRUEUP_TEST_POSTGRES_URL`). On
//! ConnectWise the emulator's additions are checked too: the product bills
//! once, with the new quantity, from the effective date.
//!
//! The `trueup` binary is built by `cargo build -p trueup --bin trueup`
//! (in the profile of this test), once per test run: the binary belongs
//! to another package, so Cargo gives this crate no path to it.
//!
//! The restarted process takes over the killed one's in-flight entry when
//! its lease ends: the test configures a short lease (`[write_back]
//! lease_secs`) so that happens in seconds rather than the default three
//! minutes. Every wait is on a condition with a deadline, never a fixed
//! sleep.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use trueup::app::App;
use trueup_conformance::psa::Against;
use trueup_core::actions::Action;
use trueup_core::card::CardKey;
use trueup_emulators::connectwise as cw;
use trueup_emulators::faults::FaultPlan;
use trueup_plugin_host::QuantityChange;
use trueup_plugin_host::limits::DEFAULT_CALL_TIMEOUT;
use trueup_store::outbox::{OutboxEntry, OutboxStatus};
use trueup_store::testing::TestStore;

use crate::support::trueup_binary;
use crate::write_back_faults::{
    PSAS, Psa, applied_writes, approvable_cards, psa_setup, set_secrets, status_name, write_log,
};

/// Approved changes in the batch.
const BATCH: usize = 12;

/// Fewest approvable cards the emulators' world must offer.
const MIN_BATCH: usize = 8;

/// Delay of every request to the PSA's write paths (and the reads beside
/// them) while the batch is written: each change takes several such
/// requests, so the batch takes long enough to be killed in the middle,
/// and a change's read-back (after its write landed) leaves a window of at
/// least this long to kill in.
const SLOW_MS: u64 = 200;

/// The write-back lease of the `trueup` processes.
const LEASE_SECS: u64 = 5;

/// How long any one wait may take before the test fails. A variant takes
/// 15–35 s on an idle 2-core machine; under a full parallel build the same
/// runs took ten times as long, so the bound leaves that room.
const DEADLINE: Duration = Duration::from_secs(300);

/// The variants run one at a time: each drives a `trueup serve` process
/// against slowed emulators, and four at once on two cores starve the
/// process the kill waits on.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where the store of a variant lives.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// The demo's SQLite file in the data directory.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A `trueup serve` process, killed (SIGKILL) and reaped when dropped.
struct Trueup {
    child: std::process::Child,
    log: PathBuf,
}

impl Trueup {
    fn start(binary: &Path, config: &Path, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start trueup serve");
        Self { child, log }
    }

    /// Panics with the process's log if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll the child") {
            panic!(
                "trueup serve exited ({status}); its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// The last `lines` lines of the process's log, for a failure message.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().expect("SIGKILL trueup");
        self.child.wait().expect("reap trueup");
    }
}

impl Drop for Trueup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the slow fault is limited to on `psa`: its writes and the reads
/// around them (so a landed write's read-back is slow too).
fn slow_paths(psa: &Psa) -> &'static str {
    match psa.against {
        Against::ConnectWise => "/additions",
        Against::Autotask => "/Contract",
        Against::HaloPsa => "/RecurringInvoice",
    }
}

fn succeeded(write: &serde_json::Value) -> bool {
    write["status"]
        .as_u64()
        .is_some_and(|s| (200..300).contains(&s))
}

/// The line a successful write changes, when it is the write that makes a
/// change on `psa` (one per change): ConnectWise's PATCH of the addition
/// (ending it, or setting its quantity), Autotask's adjustment of the
/// contract service, HaloPSA's update of the line.
fn changed_line(psa: &Psa, write: &serde_json::Value) -> Option<String> {
    if !succeeded(write) {
        return None;
    }
    let method = write["method"].as_str().unwrap_or_default();
    let path = write["path"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let id = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    };
    match psa.against {
        Against::ConnectWise if method == "PATCH" => {
            path.rsplit_once("/additions/").map(|(_, id)| id.to_owned())
        }
        Against::Autotask if method == "POST" && path.ends_with("contractserviceadjustments") => {
            id(&write["body"]["contractServiceID"])
        }
        Against::HaloPsa if method == "POST" && path.ends_with("/updatelines") => {
            id(&write["body"][0]["id"])
        }
        _ => None,
    }
}

/// Changes made, by line.
fn changes_made(psa: &Psa, log: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut made = BTreeMap::new();
    for write in log {
        if let Some(line) = changed_line(psa, write) {
            *made.entry(line).or_default() += 1;
        }
    }
    made
}

async fn outbox(app: &App) -> Vec<OutboxEntry> {
    app.store()
        .outbox_entries(None, 10_000)
        .await
        .expect("outbox entries")
}

fn count(entries: &[OutboxEntry], status: OutboxStatus) -> usize {
    entries.iter().filter(|e| e.status == status).count()
}

fn count_named(entries: &[OutboxEntry], status: &str) -> usize {
    entries.iter().filter(|e| status_name(e) == status).count()
}

fn rejected(entries: &[OutboxEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.status == OutboxStatus::Rejected)
        .map(|e| {
            format!(
                "{}: {}",
                e.card_key.as_str(),
                e.error.clone().unwrap_or_default()
            )
        })
        .collect()
}

/// One agreement's additions, read through the emulator's API as the PSA
/// holds them.
async fn additions(cw_base: &str, agreement: &str) -> Vec<serde_json::Value> {
    let url = format!(
        "{cw_base}{}/finance/agreements/{agreement}/additions?pageSize=1000",
        cw::BASE_PATH
    );
    let response = reqwest::Client::new()
        .get(&url)
        .basic_auth(
            format!("{}+{}", cw::COMPANY_ID, cw::PUBLIC_KEY),
            Some(cw::PRIVATE_KEY),
        )
        .header("clientId", cw::CLIENT_ID)
        .send()
        .await
        .expect("GET additions");
    assert_eq!(response.status(), 200, "{url}");
    let body = response.text().await.expect("additions");
    serde_json::from_str(&body).expect("additions JSON")
}

fn date_of(value: &serde_json::Value) -> Option<NaiveDate> {
    value
        .as_str()
        .and_then(|s| s.get(..10))
        .and_then(|s| s.parse().ok())
}

fn quantity_of(value: &serde_json::Value) -> Decimal {
    match value {
        serde_json::Value::Number(n) => n.to_string().parse().expect("a decimal quantity"),
        other => panic!("quantity {other}"),
    }
}

/// ConnectWise's own state for an applied change: on the effective date
/// exactly one addition of the product bills, with the new quantity; the
/// old addition ends the day before (or was changed in place); one
/// addition was created for it.
async fn assert_connectwise_state(
    cw_base: &str,
    log: &[serde_json::Value],
    key: &CardKey,
    change: &QuantityChange,
) {
    let card = key.as_str();
    let effective = change.effective_date;
    let all = additions(cw_base, &change.contract_id).await;
    let line = change.line_id.as_deref().expect("a change of a line");
    let old = all
        .iter()
        .find(|a| a["id"].as_u64().is_some_and(|id| id.to_string() == line))
        .unwrap_or_else(|| panic!("card {card}: addition {line} is gone"));
    let product = &old["product"]["id"];
    let billing: Vec<&serde_json::Value> = all
        .iter()
        .filter(|a| &a["product"]["id"] == product && a["billCustomer"] != "DoNotBill")
        .filter(|a| date_of(&a["effectiveDate"]).is_some_and(|d| d <= effective))
        .filter(|a| date_of(&a["cancelledDate"]).is_none_or(|d| d >= effective))
        .collect();
    assert_eq!(
        billing.len(),
        1,
        "card {card}: additions of {} billing on {effective}: {billing:?}",
        change.product_identifier
    );
    assert_eq!(quantity_of(&billing[0]["quantity"]), change.new_quantity);
    let agreement_path = format!(
        "{}/finance/agreements/{}/additions",
        cw::BASE_PATH,
        change.contract_id
    );
    let posts = log
        .iter()
        .filter(|w| {
            succeeded(w)
                && w["method"] == "POST"
                && w["path"] == agreement_path.as_str()
                && &w["body"]["product"]["id"] == product
        })
        .count();
    assert!(posts <= 1, "card {card}: {posts} additions created");
    if posts == 1 {
        assert_eq!(
            date_of(&old["cancelledDate"]),
            effective.pred_opt(),
            "card {card}: the old addition ends the day before {effective}"
        );
    }
}

/// One variant: `psa` on `backend`.
async fn killed_midway_then_settled(psa: &Psa, backend: Backend) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = tokio::task::spawn_blocking(trueup_binary)
        .await
        .expect("build trueup");
    let started_test = Instant::now();
    let name = format!("{} on {backend:?}", psa.plugin);
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    // The processes run on the real clock, and so does this test's
    // application; the connector keeps its default call timeout.
    let timeout_ms = u64::try_from(DEFAULT_CALL_TIMEOUT.as_millis()).unwrap_or(30_000);
    let (emulators, own, mut config) = psa_setup(psa, &data_dir, timeout_ms).await;
    let running = own.as_ref().unwrap_or(&emulators.connectwise);
    let base = running.base_url.clone();
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let database = TestStore::postgres().await.unwrap_or_else(|e| {
                panic!("this test needs PostgreSQL (TRUEUP_TEST_POSTGRES_URL): {e}")
            });
            config.store.url = Some(database.url().to_owned());
            Some(database)
        }
    };
    config.write_back.lease_secs = LEASE_SECS;
    let config_path = dir.path().join("trueup.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&config).expect("the configuration as TOML"),
    )
    .expect("write trueup.toml");

    // Sync and reconcile in this process, on the same store.
    let app = App::open(Arc::new(config)).await.expect("app");
    set_secrets(&app, psa).await;
    let (run, cards) = approvable_cards(&app).await;
    let keys: Vec<CardKey> = cards.iter().map(|c| c.key).take(BATCH).collect();
    assert!(
        keys.len() >= MIN_BATCH,
        "{name}: only {} quantity-differs cards to approve",
        keys.len()
    );
    let outcome = app
        .decide(Some(run), &keys, &Action::Approve, "approver@test")
        .await
        .expect("approve");
    assert!(outcome.refused.is_empty(), "{name}: {:?}", outcome.refused);
    let n = outcome.write_backs;
    assert_eq!(n, keys.len(), "{name}: one write-back per approved card");
    let queued = outbox(&app).await;
    assert_eq!(count(&queued, OutboxStatus::Pending), n);
    let changes: BTreeMap<CardKey, QuantityChange> = queued
        .iter()
        .map(|e| {
            (
                e.card_key,
                serde_json::from_value(e.change.clone()).expect("a stored change"),
            )
        })
        .collect();

    // Slow the PSA down, then let a `trueup serve` write the batch.
    let made = |log: &[serde_json::Value]| changes_made(psa, log).values().sum::<usize>();
    assert_eq!(
        made(&write_log(&base, psa).await),
        0,
        "{name}: nothing written yet"
    );
    running.faults.set_plan(FaultPlan {
        slow: u32::MAX,
        slow_ms: SLOW_MS,
        path_contains: Some(slow_paths(psa).to_owned()),
        ..FaultPlan::default()
    });
    let mut first = Trueup::start(&binary, &config_path, dir.path().join("first.log"));

    // Kill it once a few changes are recorded as applied and a further one
    // has reached the PSA without being recorded yet: the write landed,
    // the process dies before it knows.
    let started = Instant::now();
    loop {
        first.assert_running();
        assert!(
            started.elapsed() < DEADLINE,
            "{name}: the first process never got into the middle of the batch"
        );
        // The PSA's side first: what it shows was written before the store
        // is read.
        let landed = made(&write_log(&base, psa).await);
        let applied = count(&outbox(&app).await, OutboxStatus::Applied);
        if applied >= 2 && landed > applied {
            first.kill();
            break;
        }
        // Well inside the window of at least SLOW_MS, and light on a
        // SQLite store the process is writing to.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let at_kill = outbox(&app).await;
    let applied_at_kill = count(&at_kill, OutboxStatus::Applied);
    assert!(
        (2..n).contains(&applied_at_kill),
        "{name}: killed mid-batch: {applied_at_kill} of {n} applied"
    );
    let in_flight: Vec<&OutboxEntry> = at_kill
        .iter()
        .filter(|e| e.status == OutboxStatus::InFlight)
        .collect();
    assert_eq!(
        in_flight.len(),
        1,
        "{name}: the killed process held one entry: {in_flight:?}"
    );
    let interrupted = in_flight[0].card_key;
    let landed_at_kill = made(&write_log(&base, psa).await);
    assert!(
        landed_at_kill > applied_at_kill,
        "{name}: a write had landed unrecorded when the process died ({landed_at_kill} made, {applied_at_kill} applied)"
    );
    println!(
        "{name}: killed trueup with {applied_at_kill} of {n} changes applied and {landed_at_kill} made"
    );

    // Restart on the same store; wait for every entry to settle: applied,
    // or needs review (a person decides; nothing is re-sent).
    let mut second = Trueup::start(&binary, &config_path, dir.path().join("second.log"));
    let started = Instant::now();
    let settled = loop {
        second.assert_running();
        let entries = outbox(&app).await;
        let refused = rejected(&entries);
        assert!(
            refused.is_empty(),
            "{name}: write-backs rejected: {refused:?}"
        );
        let done = count_named(&entries, "applied") + count_named(&entries, "needs_review");
        if done == n {
            break entries;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{name}: the outbox did not settle: {done} of {n} applied or needing review; \
             entries: {:?}\nthe restarted process's log ends:\n{}",
            entries
                .iter()
                .map(|e| (e.id.0, e.status, e.attempts, e.error.clone()))
                .collect::<Vec<_>>(),
            second.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    second.kill();
    running.faults.set_plan(FaultPlan::default());

    // Needs review at most for the entry in flight at the kill.
    let review: Vec<&OutboxEntry> = settled
        .iter()
        .filter(|e| status_name(e) == "needs_review")
        .collect();
    assert!(
        review.iter().all(|e| e.card_key == interrupted),
        "{name}: needs review beyond the interrupted entry: {review:?}"
    );
    let retried = settled
        .iter()
        .find(|e| e.card_key == interrupted)
        .expect("the interrupted entry");
    println!(
        "{name}: after the restart {} applied, {} needing review; the interrupted entry is {} after {} attempts",
        count_named(&settled, "applied"),
        review.len(),
        status_name(retried),
        retried.attempts
    );

    // Exactly once, from the emulator's own write log: no write applied
    // twice; every applied change made once; the interrupted one at most
    // once.
    let log = write_log(&base, psa).await;
    let twice: Vec<(String, usize)> = applied_writes(&log)
        .into_iter()
        .filter(|(write, n)| *n > 1 && !write.starts_with("POST"))
        .collect();
    assert!(twice.is_empty(), "{name}: writes applied twice: {twice:?}");
    let made_by_line = changes_made(psa, &log);
    for entry in &settled {
        let change = &changes[&entry.card_key];
        let line = change.line_id.clone().expect("a change of a line");
        let times = made_by_line.get(&line).copied().unwrap_or(0);
        let card = entry.card_key.as_str();
        if status_name(entry) == "applied" {
            assert_eq!(
                times, 1,
                "{name}: card {card} (line {line}) made {times} times"
            );
            let result = entry.result.as_ref().expect("a recorded result");
            assert!(!result.record_ids.is_empty(), "{name}: {entry:?}");
            assert_eq!(result.line.quantity, change.new_quantity, "{name}: {card}");
            if psa.against == Against::ConnectWise {
                assert_connectwise_state(&base, &log, &entry.card_key, change).await;
            }
        } else {
            assert!(
                times <= 1,
                "{name}: card {card} (line {line}) made {times} times"
            );
        }
        // The card shows the same.
        let state = app
            .store()
            .card_state(&entry.card_key)
            .await
            .expect("state")
            .expect("an approved card has a state");
        assert_eq!(
            state
                .write_back
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            Some(status_name(entry)),
            "{name}: card {card}"
        );
        assert_eq!(state.outbox, Some(entry.id));
    }
    drop(database);
    println!("{name}: {:.1} s", started_test.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connectwise_batch_killed_midway_is_written_exactly_once() {
    killed_midway_then_settled(&PSAS[0], Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autotask_batch_killed_midway_is_written_exactly_once() {
    killed_midway_then_settled(&PSAS[1], Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halopsa_batch_killed_midway_is_written_exactly_once() {
    killed_midway_then_settled(&PSAS[2], Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_midway_on_postgres_is_written_exactly_once() {
    killed_midway_then_settled(&PSAS[0], Backend::Postgres).await;
}
