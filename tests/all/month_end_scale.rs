//! The month-end scale scenario of `cargo bench -p trueup-tests --bench
//! month_end_scale` (`tests/benches/month_end_scale/scenario.rs`) at a
//! small size, on SQLite and PostgreSQL, with generous bounds: CSV imports
//! and the push API into the store, two reconciles from the store (the
//! second while API clients read cards), every phase timed.
//!
//! The bounds are about ten times what the phases take in a debug build
//! on a loaded 2-core machine, so they hold under load and a regression of
//! the kind issue 16 found — the period's usage read going quadratic, the
//! API starving behind a reconcile — fails. Before the fix the usage read
//! alone took tens of seconds at this size.

use std::time::Duration;

use trueup_store::Backend;

#[path = "../benches/month_end_scale/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use scenario::{Figures, Scale};

/// 300 companies × 200 usage rows: 60,000 rows, 6,000 PSA lines.
const SCALE: Scale = Scale {
    companies: 300,
    rows_per_company: 200,
    clients: 8,
};

fn check(figures: &Figures) {
    let report = figures.report();
    println!("{report}");
    let bound = |phase: &str, limit: Duration| {
        let wall = figures
            .phases
            .iter()
            .find(|p| p.name.starts_with(phase))
            .unwrap_or_else(|| panic!("no phase {phase:?} in\n{report}"))
            .wall;
        assert!(
            wall <= limit,
            "{phase} took {wall:.2?}, over its bound of {limit:?}:\n{report}"
        );
    };
    bound("read the period's usage", Duration::from_secs(10));
    bound("reconcile from the store (1st)", Duration::from_secs(40));
    bound("reconcile from the store (2nd", Duration::from_secs(60));
    bound("CSV import", Duration::from_secs(60));
    // Every row once; the unmapped 5 % of the pushed vendor push none.
    assert_eq!(
        figures.usage_rows,
        SCALE.rows() - SCALE.rows() / 8 / 20,
        "the reconcile read every row once:\n{report}"
    );
    assert!(figures.cards > 0, "no cards:\n{report}");
    for l in &figures.api {
        assert_eq!(
            l.errors, 0,
            "{} failed during the reconcile:\n{report}",
            l.name
        );
        assert!(
            !l.answered.is_empty(),
            "no {} answered during the reconcile:\n{report}",
            l.name
        );
        let p99 = l.percentile(99.0);
        assert!(
            p99 <= Duration::from_secs(5),
            "{} p99 {p99:.2?} during the reconcile:\n{report}",
            l.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_end_at_small_scale_on_sqlite() {
    check(
        &scenario::run(Backend::Sqlite, SCALE)
            .await
            .expect("the scenario"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_end_at_small_scale_on_postgres() {
    check(
        &scenario::run(Backend::Postgres, SCALE)
            .await
            .expect("the scenario"),
    );
}
