//! Store write benchmark: one reconcile run's output over the core's
//! synthetic MSP (10,000 companies × 20 services, 2,000,000 usage rows:
//! about 200,000 cards), written to SQLite (a file in a temporary
//! directory) and PostgreSQL (a fresh database on the server of
//! `TRUEUP_TEST_POSTGRES_URL`).
//!
//! Measured per backend (median of RUNS, each in its own transaction,
//! timed until its commit returns):
//! - the reconcile run: the run row and every card (list columns + detail
//!   JSON) — the append-only card ledger. Targets: SQLite ≤ 1 s,
//!   PostgreSQL ≤ 2 s.
//! - a PSA sync of the same data: 10,000 companies, 10,000+ contracts and
//!   200,000 lines replacing the current state, plus 200,000 line figures
//!   appended to the ledger.
//!
//! Run: `cargo bench -p trueup-store --bench store_write`.

use std::time::{Duration, Instant};

use trueup_core::reconcile::reconcile;
use trueup_core::synth::{SynthConfig, generate};
use trueup_store::reconcile::NewReconcileRun;
use trueup_store::sync::{PsaData, SyncKind, SyncStats};
use trueup_store::testing::TestStore;
use trueup_store::{Backend, Store};

/// Timed runs per measurement; the median is reported.
const RUNS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Timings of one backend.
struct Timings {
    cards: Vec<Duration>,
    checkpoints: Vec<Duration>,
    syncs: Vec<Duration>,
}

async fn measure(
    store: &Store,
    output: &trueup_core::reconcile::ReconcileOutput,
    psa: &PsaData,
) -> Timings {
    let now = chrono::Utc::now();
    let mut cards = Vec::new();
    let mut checkpoints = Vec::new();
    let mut checkpoint = async || {
        // SQLite copies the log into the database file in the background
        // after a write; wait for it between runs so runs do not overlap,
        // and report it.
        let t = Instant::now();
        store.checkpoint().await.expect("the log is checkpointed");
        checkpoints.push(t.elapsed());
    };
    for _ in 0..RUNS {
        let t = Instant::now();
        store
            .record_reconcile_run(NewReconcileRun {
                output,
                rule_checksum: None,
                psa_sync: None,
                started_at: now,
                finished_at: now,
            })
            .await
            .expect("the reconcile run is written");
        cards.push(t.elapsed());
        checkpoint().await;
    }
    let mut syncs = Vec::new();
    for i in 0..RUNS {
        let run = store
            .begin_sync(SyncKind::Psa, "bench", output.as_of, now)
            .await
            .expect("a sync run");
        let t = Instant::now();
        store
            .complete_psa_sync(
                run,
                psa,
                &SyncStats::default(),
                now + chrono::Duration::seconds(i as i64),
            )
            .await
            .expect("the PSA sync is written");
        syncs.push(t.elapsed());
        checkpoint().await;
    }
    Timings {
        cards,
        checkpoints,
        syncs,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let config = SynthConfig::benchmark();
    let t = Instant::now();
    let snapshot = generate(&config);
    let mapper = snapshot.sku_mapper();
    let mappings = snapshot.account_mappings.clone();
    let output = reconcile(&snapshot.reconcile_input(config.as_of, &mappings, &[], &mapper));
    let psa = PsaData {
        companies: snapshot.companies.clone(),
        contracts: snapshot.contracts.clone(),
        lines: snapshot.service_lines.clone(),
        catalog: snapshot.catalog.clone(),
    };
    println!(
        "data: {} cards ({:?}), {} companies, {} contracts, {} lines; generated and reconciled in {:.2?}",
        output.cards.len(),
        output.totals.cards,
        psa.companies.len(),
        psa.contracts.len(),
        psa.lines.len(),
        t.elapsed()
    );
    for (backend, target) in [
        (Backend::Sqlite, Duration::from_secs(1)),
        (Backend::Postgres, Duration::from_secs(2)),
    ] {
        runtime.block_on(async {
            let store = TestStore::new(backend).await.expect("a store to write to");
            let Timings {
                cards,
                checkpoints,
                syncs,
            } = measure(&store, &output, &psa).await;
            println!("{backend} reconcile run runs: {cards:.3?}");
            println!(
                "{backend}: {} cards written in {:.3?} (median of {RUNS})  [target ≤ {target:?}]",
                output.cards.len(),
                median(cards)
            );
            println!("{backend} PSA sync runs: {syncs:.3?}");
            println!(
                "{backend}: PSA sync of {} lines (state + ledger) in {:.3?} (median of {RUNS})",
                psa.lines.len(),
                median(syncs)
            );
            if backend == Backend::Sqlite {
                println!(
                    "{backend}: background log checkpoint after each write (not in the figures above): {checkpoints:.3?}"
                );
            }
        });
    }
}
