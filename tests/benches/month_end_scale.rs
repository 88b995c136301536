//! The month-end scale benchmark (issue 16): a month of 10,000 companies ×
//! 20 services and 2,000,000 usage rows of four vendors taken the user's
//! way — CSV imports and the push API into the store, a reconcile from the
//! store writing the cards, a second one while 50 API clients read cards,
//! a mapping change re-reconciling one account — on SQLite and PostgreSQL.
//! See `month_end_scale/scenario.rs` for the steps.
//!
//! Prints each phase's wall time and peak RSS, and the API's p50/p99 and
//! errors during the reconcile.
//!
//! Run: `cargo bench -p trueup-tests --bench month_end_scale`.
//! `MONTH_END_COMPANIES` (default 10000) scales the month (200 usage rows
//! per company); `MONTH_END_BACKENDS` is `sqlite`, `postgres` or `both`
//! (default); PostgreSQL runs in a new database on
//! `TRUEUP_TEST_POSTGRES_URL` (default postgres://postgres@127.0.0.1:5432/postgres).

use std::process::ExitCode;

use anyhow::Context;
use trueup_store::Backend;

#[path = "month_end_scale/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use scenario::Scale;

fn config() -> anyhow::Result<(Scale, Vec<Backend>)> {
    let mut scale = Scale::FULL;
    if let Ok(text) = std::env::var("MONTH_END_COMPANIES") {
        scale.companies = text
            .trim()
            .parse()
            .with_context(|| format!("MONTH_END_COMPANIES={text:?} is not a whole number"))?;
    }
    let backends = match std::env::var("MONTH_END_BACKENDS").as_deref() {
        Ok("sqlite") => vec![Backend::Sqlite],
        Ok("postgres") => vec![Backend::Postgres],
        Ok("both") | Err(_) => vec![Backend::Sqlite, Backend::Postgres],
        Ok(other) => anyhow::bail!("MONTH_END_BACKENDS={other:?}: use sqlite, postgres or both"),
    };
    Ok((scale, backends))
}

fn main() -> ExitCode {
    let outcome = (|| -> anyhow::Result<()> {
        let (scale, backends) = config()?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("load average before: {}", load.trim());
        for backend in backends {
            // A runtime per backend, so each run's peak RSS starts from
            // the same place as far as the runtime goes.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let figures = runtime.block_on(scenario::run(backend, scale))?;
            print!("{}", figures.report());
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("load average after: {}", load.trim());
        Ok(())
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
