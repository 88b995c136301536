//! Exactly-once write-back across a crash (issue 5): a real `trueup serve`
//! process writes a batch of approved changes to the ConnectWise emulator,
//! is killed with SIGKILL in the middle of the batch — while a change it
//! has already written is not yet recorded as applied — and is restarted
//! on the same data directory. When the outbox has drained, the emulator's
//! own state and write log show every approved change applied exactly
//! once (none twice, none lost), and every card shows its write-back.
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use trueup::app::App;
use trueup::demo;
use trueup_core::actions::Action;
use trueup_core::card::{CardCategory, CardKey, ServiceCard};
use trueup_emulators::connectwise as cw;
use trueup_emulators::faults::FaultPlan;
use trueup_plugin_host::QuantityChange;
use trueup_store::cards::WriteBackStatus;
use trueup_store::outbox::{OutboxEntry, OutboxStatus};

use crate::support::{repo_root, trueup_binary};

/// Approved changes in the batch.
const BATCH: usize = 30;

/// Fewest approvable cards the emulators' world must offer.
const MIN_BATCH: usize = 20;

/// Delay of every ConnectWise additions request while the batch is
/// written: each change takes several such requests, so the batch takes
/// long enough to be killed in the middle, and a change's read-back (after
/// its write landed) leaves a window of at least this long to kill in.
const SLOW_MS: u64 = 200;

/// The write-back lease of the `trueup` processes.
const LEASE_SECS: u64 = 5;

/// How long any one wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(240);

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

/// The emulator's write log: every write with its status and body.
async fn writes(cw_base: &str) -> Vec<serde_json::Value> {
    let body = reqwest::get(format!("{cw_base}/_emulator/connectwise/writes"))
        .await
        .expect("GET writes")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&body).expect("a JSON list of writes")
}

fn succeeded(write: &serde_json::Value) -> bool {
    write["status"]
        .as_u64()
        .is_some_and(|s| (200..300).contains(&s))
}

/// Additions created (successful POSTs).
fn created(log: &[serde_json::Value]) -> usize {
    log.iter()
        .filter(|w| w["method"] == "POST" && succeeded(w))
        .count()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_batch_killed_midway_is_applied_exactly_once() {
    let binary = tokio::task::spawn_blocking(trueup_binary)
        .await
        .expect("build trueup");

    // The demo's world, with "today" the real date: the `trueup` processes
    // run on the real clock, and so does this test's application.
    let today = chrono::Utc::now().date_naive();
    let emulators = demo::start_emulators(5, 120, today, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .expect("emulators");
    let cw_base = emulators.connectwise.base_url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (plugins, rules) = demo::repo_paths(&repo_root());
    let mut config = demo::config(&data_dir, &plugins, &rules, &emulators);
    config.write_back.lease_secs = LEASE_SECS;
    let config_path = dir.path().join("trueup.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&config).expect("the configuration as TOML"),
    )
    .expect("write trueup.toml");

    // Sync and reconcile in this process, on the same data directory.
    let app = App::open(Arc::new(config)).await.expect("app");
    for (plugin, name, value) in demo::secrets() {
        app.set_secret(plugin, name, value, "test")
            .await
            .expect("secret");
    }
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
    let cards: Vec<ServiceCard> = app.store().run_cards(run.id).await.expect("cards");

    // Approve a batch of quantity changes, of distinct products per
    // agreement (so each change's writes are told apart in the PSA).
    let mut seen = BTreeSet::new();
    let keys: Vec<CardKey> = cards
        .iter()
        .filter(|c| c.category == CardCategory::Reconcile && c.line.is_some())
        .filter(|c| seen.insert((c.contract.clone(), c.product.clone())))
        .map(|c| c.key)
        .take(BATCH)
        .collect();
    assert!(
        keys.len() >= MIN_BATCH,
        "only {} quantity-differs cards to approve",
        keys.len()
    );
    let outcome = app
        .decide(Some(run.id), &keys, &Action::Approve, "approver@test")
        .await
        .expect("approve");
    assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
    let n = outcome.write_backs;
    assert_eq!(n, keys.len(), "one write-back per approved card");
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

    // Slow ConnectWise down, then let a `trueup serve` write the batch.
    assert_eq!(created(&writes(&cw_base).await), 0, "nothing written yet");
    emulators.connectwise.faults.set_plan(FaultPlan {
        slow: u32::MAX,
        slow_ms: SLOW_MS,
        path_contains: Some("/additions".to_owned()),
        ..FaultPlan::default()
    });
    let mut first = Trueup::start(&binary, &config_path, dir.path().join("first.log"));

    // Kill it once a few changes are recorded as applied and a further one
    // has reached ConnectWise without being recorded yet: the write landed,
    // the process dies before it knows.
    let started = Instant::now();
    loop {
        first.assert_running();
        assert!(
            started.elapsed() < DEADLINE,
            "the first process never got into the middle of the batch"
        );
        // The PSA's side first: what it shows was written before the store
        // is read.
        let posted = created(&writes(&cw_base).await);
        let applied = count(&outbox(&app).await, OutboxStatus::Applied);
        if applied >= 2 && posted > applied {
            first.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_kill = outbox(&app).await;
    let applied_at_kill = count(&at_kill, OutboxStatus::Applied);
    assert!(
        (2..n).contains(&applied_at_kill),
        "killed mid-batch: {applied_at_kill} of {n} applied"
    );
    let in_flight: Vec<&OutboxEntry> = at_kill
        .iter()
        .filter(|e| e.status == OutboxStatus::InFlight)
        .collect();
    assert_eq!(
        in_flight.len(),
        1,
        "the killed process held one entry: {in_flight:?}"
    );
    let interrupted = in_flight[0].card_key;
    let posted_at_kill = created(&writes(&cw_base).await);
    assert!(
        posted_at_kill > applied_at_kill,
        "a write had landed unrecorded when the process died ({posted_at_kill} created, {applied_at_kill} applied)"
    );

    println!(
        "killed trueup with {applied_at_kill} of {n} changes applied and {posted_at_kill} additions created"
    );

    // Restart on the same data directory; wait for the outbox to drain.
    let mut second = Trueup::start(&binary, &config_path, dir.path().join("second.log"));
    let started = Instant::now();
    let drained = loop {
        second.assert_running();
        let entries = outbox(&app).await;
        let refused = rejected(&entries);
        assert!(refused.is_empty(), "write-backs rejected: {refused:?}");
        if count(&entries, OutboxStatus::Applied) == n {
            break entries;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the outbox did not drain: {} of {n} applied",
            count(&entries, OutboxStatus::Applied)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    second.kill();
    emulators.connectwise.faults.set_plan(FaultPlan::default());

    // The interrupted entry was taken over and found its write in place.
    let retried = drained
        .iter()
        .find(|e| e.card_key == interrupted)
        .expect("the interrupted entry");
    assert!(retried.attempts >= 2, "{retried:?}");

    println!(
        "after the restart: {n} of {n} applied; the interrupted entry took {} attempts",
        retried.attempts
    );

    // Exactly once, from the emulator's own data and write log. On the
    // effective date exactly one addition of the product bills, with the
    // new quantity; the old addition ends the day before; one addition was
    // created for the change and the old one was ended once.
    let log = writes(&cw_base).await;
    let successful: Vec<&serde_json::Value> = log.iter().filter(|w| succeeded(w)).collect();
    assert_eq!(created(&log), n, "one addition created per change");
    for (key, change) in &changes {
        let card = key.as_str();
        let effective = change.effective_date;
        let all = additions(&cw_base, &change.contract_id).await;
        let line = change.line_id.as_deref().expect("a change of a line");
        let old = all
            .iter()
            .find(|a| a["id"].as_u64().is_some_and(|id| id.to_string() == line))
            .unwrap_or_else(|| panic!("card {card}: addition {line} is gone"));
        assert_eq!(
            date_of(&old["cancelledDate"]),
            effective.pred_opt(),
            "card {card}: the old addition ends the day before {effective}"
        );
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
        let posts = successful
            .iter()
            .filter(|w| {
                w["method"] == "POST"
                    && w["path"] == agreement_path.as_str()
                    && &w["body"]["product"]["id"] == product
            })
            .count();
        assert_eq!(posts, 1, "card {card}: additions created");
        let line_path = format!("{agreement_path}/{line}");
        let patches = successful
            .iter()
            .filter(|w| w["method"] == "PATCH" && w["path"] == line_path.as_str())
            .count();
        assert_eq!(patches, 1, "card {card}: addition {line} ended once");
    }

    // Every card shows its write-back: applied, with the PSA's records.
    for key in &keys {
        let state = app
            .store()
            .card_state(key)
            .await
            .expect("state")
            .expect("an approved card has a state");
        assert_eq!(
            state.write_back,
            Some(WriteBackStatus::Applied),
            "{}",
            key.as_str()
        );
        let entry = drained
            .iter()
            .find(|e| &e.card_key == key)
            .expect("its outbox entry");
        assert_eq!(state.outbox, Some(entry.id));
        let result = entry.result.as_ref().expect("a recorded result");
        assert!(!result.record_ids.is_empty(), "{entry:?}");
        assert_eq!(result.line.quantity, changes[key].new_quantity);
    }
}
