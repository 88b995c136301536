//! The month-end scale scenario on the user's path, shared by the
//! `month_end_scale` benchmark (full size) and the `month_end_scale` test
//! module of `tests/all` (a small size with generous bounds).
//!
//! One month of an MSP, all through the application as a user drives it:
//! - the PSA: `trueup_core::synth`'s companies, contracts and lines
//!   (20 services per company), recorded as a PSA sync;
//! - usage of four vendors, one row per (account, SKU, day), 5 % of the
//!   accounts named so no company matches them (unmapped): three vendors'
//!   rows as CSV files imported with saved profiles through
//!   `trueup::ingest::csv::import_csv` (what `trueup import csv` runs), the
//!   fourth's pushed over HTTP to `POST /api/v1/usage` in batches of 1,000
//!   (the push API of a running server);
//! - a reconcile from the store (`App::reconcile_as_of`, as the job does),
//!   which writes the run's cards;
//! - a second reconcile while API clients read card lists, card details
//!   and company searches: their p50/p99 and errors;
//! - a mapping change (one account mapped by hand) and the re-reconcile of
//!   just that account.
//!
//! Each phase's wall time and the process's peak resident set (`VmHWM`)
//! after it are recorded.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{NaiveDate, TimeZone, Utc};
use trueup::app::App;
use trueup::app::debounce::DebounceSettings;
use trueup::auth::{Role, new_api_token};
use trueup::config::{Config, PsaConfig, RulesConfig, StoreConfig};
use trueup::ingest::csv::{ProfileDefinition, import_csv, save_profile};
use trueup::ingest::push::{NewPushIntegration, create_push_integration};
use trueup::server::{self, Workers};
use trueup::web;
use trueup_core::synth::{SERVICES_PER_COMPANY, SynthConfig, generate};
use trueup_store::Backend;
use trueup_store::sync::{PsaData, SyncKind, SyncStats};
use trueup_store::testing::TestStore;

/// How big a month to run.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Companies (20 services each).
    pub companies: usize,
    /// Usage rows per company (the month has `companies × this`).
    pub rows_per_company: usize,
    /// Concurrent API clients during the second reconcile.
    pub clients: usize,
}

impl Scale {
    /// The size: 10,000 companies, 2,000,000 usage rows, 50
    /// clients.
    pub const FULL: Scale = Scale {
        companies: 10_000,
        rows_per_company: 200,
        clients: 50,
    };

    /// Usage rows in the month.
    pub fn rows(&self) -> usize {
        self.companies * self.rows_per_company
    }
}

/// One phase: its name, wall time and the peak RSS after it.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What ran.
    pub name: String,
    /// How long.
    pub wall: Duration,
    /// `VmHWM` after it, in MiB.
    pub peak_rss_mib: f64,
}

/// Latencies of one kind of API request.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// The endpoint's name.
    pub name: &'static str,
    /// Answered requests, sorted.
    pub answered: Vec<Duration>,
    /// Failed requests (non-200 or transport error).
    pub errors: usize,
    /// The first few failures.
    pub first_errors: Vec<String>,
}

impl Latencies {
    /// The `p`th percentile of the answered requests.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.answered.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.answered.len() as f64).ceil() as usize;
        self.answered[rank.clamp(1, self.answered.len()) - 1]
    }
}

/// What one run of the scenario measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The backend.
    pub backend: Backend,
    /// The size.
    pub scale: Scale,
    /// CSV bytes imported.
    pub csv_bytes: u64,
    /// Usage rows the reconcile read.
    pub usage_rows: usize,
    /// Cards written.
    pub cards: usize,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// API latencies during the second reconcile, per endpoint.
    pub api: Vec<Latencies>,
}

impl Figures {
    /// The wall time of the phase named `name`.
    pub fn wall(&self, name: &str) -> Option<Duration> {
        self.phases.iter().find(|p| p.name == name).map(|p| p.wall)
    }

    /// A table of the figures.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} — {} companies, {} usage rows ({:.1} MB of CSV), {} rows read by the reconcile, {} cards",
            self.backend,
            self.scale.companies,
            self.scale.rows(),
            self.csv_bytes as f64 / 1e6,
            self.usage_rows,
            self.cards
        );
        for p in &self.phases {
            let _ = writeln!(
                out,
                "  {:<44} {:>10.2?}   peak RSS {:>7.1} MiB",
                p.name, p.wall, p.peak_rss_mib
            );
        }
        let _ = writeln!(
            out,
            "  API during the reconcile ({} clients):",
            self.scale.clients
        );
        for l in &self.api {
            let _ = writeln!(
                out,
                "    {:<14} {:>7} requests   p50 {:>9.2?}   p99 {:>9.2?}   max {:>9.2?}   errors {}",
                l.name,
                l.answered.len() + l.errors,
                l.percentile(50.0),
                l.percentile(99.0),
                l.answered.last().copied().unwrap_or_default(),
                l.errors
            );
            for e in &l.first_errors {
                let _ = writeln!(out, "      error: {e}");
            }
        }
        out
    }
}

/// `VmHWM` (peak resident set) of this process, in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// The month: March 2025, reconciled as of its last day.
fn as_of() -> anyhow::Result<NaiveDate> {
    NaiveDate::from_ymd_opt(2025, 3, 31).context("date")
}

/// The (vendor, SKU) pairs each company uses, and how each vendor's usage
/// arrives. Every pair is one row a day.
const PAIRS: &[(&str, &str)] = &[
    ("microsoft-365", "SPB"),
    ("microsoft-365", "O365_BUSINESS_ESSENTIALS"),
    ("microsoft-365", "SPE_E3"),
    ("microsoft-365", "EXCHANGESTANDARD"),
    ("huntress", "workstation"),
    ("huntress", "server"),
    ("datto-backup", "server_agent"),
    ("pax8", "KEEPER-BUS"),
];

/// The vendors imported from CSV files (the rest is pushed).
const CSV_VENDORS: &[&str] = &["microsoft-365", "huntress", "datto-backup"];

/// The pushed vendor.
const PUSH_VENDOR: &str = "pax8";

/// The vendor account of company `ci` at `vendor`.
pub fn account_id(vendor: &str, ci: usize) -> String {
    let prefix = match vendor {
        "microsoft-365" => "tenant",
        "huntress" => "hunt",
        "datto-backup" => "dbk",
        _ => "pax",
    };
    format!("{prefix}-{ci:05}")
}

/// Whether company `ci`'s accounts are named so matching cannot map them
/// (5 %).
pub fn unmapped(ci: usize) -> bool {
    ci % 20 == 7
}

/// Usage rows: per company, day by day, one row per pair, until the
/// company's budget is used. Calls `row(ci, vendor, sku, day, quantity)`.
fn for_each_row(
    scale: &Scale,
    mut row: impl FnMut(usize, &str, &str, u32, i64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for ci in 0..scale.companies {
        let mut left = scale.rows_per_company;
        'days: for day in 1..=31u32 {
            for (p, (vendor, sku)) in PAIRS.iter().enumerate() {
                if left == 0 {
                    break 'days;
                }
                left -= 1;
                // Seats drift by one during the month.
                let base = ((ci * 7 + p * 13) % 50) as i64 + 1;
                let quantity = base + i64::from(day > 20);
                row(ci, vendor, sku, day, quantity)?;
            }
        }
    }
    Ok(())
}

/// The account's display name: the company's (so matching maps it), or
/// for the unmapped 5 % a name no company has.
fn account_name(names: &[String], ci: usize) -> String {
    if unmapped(ci) {
        format!("Unlisted reseller tenant {ci}")
    } else {
        names[ci].clone()
    }
}

/// Writes one CSV file per CSV vendor into `dir`; their paths and the
/// bytes written.
fn write_csvs(
    dir: &Path,
    scale: &Scale,
    names: &[String],
) -> anyhow::Result<(Vec<(String, PathBuf)>, u64)> {
    let mut files = Vec::new();
    let mut outs = Vec::new();
    for vendor in CSV_VENDORS {
        let path = dir.join(format!("{vendor}.csv"));
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        writeln!(out, "Account,Account name,SKU,Quantity,Day")?;
        outs.push(out);
        files.push(((*vendor).to_owned(), path));
    }
    let mut line = String::new();
    for_each_row(scale, |ci, vendor, sku, day, quantity| {
        let Some(i) = CSV_VENDORS.iter().position(|v| *v == vendor) else {
            return Ok(());
        };
        line.clear();
        writeln!(
            line,
            "{},\"{}\",{sku},{quantity},2025-03-{day:02}",
            account_id(vendor, ci),
            account_name(names, ci)
        )?;
        outs[i].write_all(line.as_bytes())?;
        Ok(())
    })?;
    let mut bytes = 0;
    for mut out in outs {
        out.flush()?;
        bytes += out.get_ref().metadata()?.len();
    }
    Ok((files, bytes))
}

/// The pushed vendor's rows as push API items.
fn push_items(scale: &Scale) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut items = Vec::new();
    for_each_row(scale, |ci, vendor, sku, day, quantity| {
        // A push for an account not mapped is refused: the unmapped 5 %
        // push nothing.
        if vendor == PUSH_VENDOR && !unmapped(ci) {
            items.push(serde_json::json!({
                "account_id": account_id(vendor, ci),
                "service": sku,
                "quantity": quantity.to_string(),
                "observed_on": format!("2025-03-{day:02}"),
            }));
        }
        Ok(())
    })?;
    Ok(items)
}

/// Records the phase that started at `started`.
fn phase(phases: &mut Vec<Phase>, name: impl Into<String>, started: Instant) {
    phases.push(Phase {
        name: name.into(),
        wall: started.elapsed(),
        peak_rss_mib: peak_rss_mib(),
    });
}

/// The running server and the credentials its clients use.
struct Served {
    base: String,
    token: String,
}

/// One API client: rotates over card list, card detail and search until
/// `stop`; per endpoint, latencies and errors.
async fn client(
    served: Arc<Served>,
    keys: Arc<Vec<String>>,
    companies: usize,
    seed: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<[Latencies; 3]> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut seen = [
        Latencies {
            name: "card list",
            ..Latencies::default()
        },
        Latencies {
            name: "card detail",
            ..Latencies::default()
        },
        Latencies {
            name: "search",
            ..Latencies::default()
        },
    ];
    let mut i = seed;
    while !stop.load(Ordering::Acquire) {
        let kind = i % 3;
        let path = match kind {
            0 => "/api/v1/cards?limit=50".to_owned(),
            1 => format!("/api/v1/cards/{}", keys[(i * 7919) % keys.len()]),
            _ => format!("/api/v1/cards?company=C{:05}", (i * 104_729) % companies),
        };
        i += 1;
        let t = Instant::now();
        let outcome = match http
            .get(format!("{}{path}", served.base))
            .bearer_auth(&served.token)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(_) if status == reqwest::StatusCode::OK => Ok(()),
                    Ok(body) => Err(format!(
                        "{path}: {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    Err(e) => Err(format!("{path}: reading the body: {e}")),
                }
            }
            Err(e) => Err(format!("{path}: {e}")),
        };
        let elapsed = t.elapsed();
        match outcome {
            Ok(()) => seen[kind].answered.push(elapsed),
            Err(message) => {
                seen[kind].errors += 1;
                if seen[kind].first_errors.len() < 3 {
                    seen[kind].first_errors.push(message);
                }
            }
        }
    }
    Ok(seen)
}

/// Runs the scenario on `backend` at `scale` in a temporary directory
/// (PostgreSQL: a new database on `TRUEUP_TEST_POSTGRES_URL`'s server).
///
/// # Errors
/// Any step failing, with what and where.
pub async fn run(backend: Backend, scale: Scale) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let as_of = as_of()?;
    let mut phases = Vec::new();

    // The PSA side from the synthetic MSP (its usage is not used).
    let started = Instant::now();
    let synth = generate(&SynthConfig {
        seed: 0x6d6f_6e74_685f_656e,
        companies: scale.companies,
        usage_rows: scale.companies * 64,
        as_of,
    });
    let names: Vec<String> = synth.companies.iter().map(|c| c.name.clone()).collect();
    let (csvs, csv_bytes) = write_csvs(dir.path(), &scale, &names)?;
    let items = push_items(&scale)?;
    phase(&mut phases, "generate (PSA data, CSV files)", started);

    // The store: SQLite in the directory, or a fresh PostgreSQL database
    // (kept alive until the end, then dropped).
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestStore::postgres().await?),
    };
    let url = match &pg {
        Some(pg) => pg.url().to_owned(),
        None => format!("sqlite://{}", dir.path().join("trueup.db").display()),
    };
    let config = Config {
        data_dir: dir.path().to_owned(),
        store: StoreConfig { url: Some(url) },
        psa: Some(PsaConfig {
            plugin: "trueup.connectwise".to_owned(),
            contract_types: Vec::new(),
        }),
        rules: RulesConfig {
            path: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../host/rules/benches/synth.rhai"),
        },
        ..Config::default()
    };
    let now = Utc
        .with_ymd_and_hms(2025, 3, 31, 23, 0, 0)
        .single()
        .context("now")?;
    let app = App::open_with_clock(Arc::new(config), Arc::new(move || now)).await?;
    let store = app.store();

    let started = Instant::now();
    let run = store
        .begin_sync(SyncKind::Psa, "trueup.connectwise", as_of, now)
        .await?;
    let lines = synth.service_lines.len();
    ensure!(
        lines == scale.companies * SERVICES_PER_COMPANY,
        "{lines} PSA lines"
    );
    store
        .complete_psa_sync(
            run,
            &PsaData {
                companies: synth.companies,
                contracts: synth.contracts,
                lines: synth.service_lines,
                catalog: synth.catalog,
            },
            &SyncStats::default(),
            now,
        )
        .await?;
    phase(&mut phases, "PSA sync", started);

    // CSV imports, one file per vendor, through what `trueup import csv`
    // runs.
    let started = Instant::now();
    let mut imported = 0;
    for (vendor, path) in &csvs {
        let profile = format!(
            "vendor = \"{vendor}\"\nheader = true\n[columns]\naccount_id = \"Account\"\n\
             account_name = \"Account name\"\nsku_id = \"SKU\"\nquantity = \"Quantity\"\nobserved_on = \"Day\"\n"
        );
        let definition = ProfileDefinition::from_toml(&profile).map_err(anyhow::Error::msg)?;
        save_profile(&app, vendor, &definition, "bench").await?;
        let input = tokio::fs::File::open(path).await?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("usage.csv");
        let report = import_csv(&app, vendor, input, name, "bench")
            .await
            .with_context(|| format!("importing {}", path.display()))?;
        imported += report.usage_rows;
    }
    phase(
        &mut phases,
        format!("CSV import ({imported} rows, 3 files)"),
        started,
    );

    // The server (no workers; a debounce window longer than the run, so
    // pushes do not start reconciles of their own).
    let token = new_api_token();
    store
        .create_api_token(
            "scale",
            &token,
            web::auth::stored_role(Role::Admin),
            "bench",
            now,
        )
        .await?;
    let listener =
        tokio::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let served = Arc::new(Served {
        base: format!("http://{}", listener.local_addr()?),
        token,
    });
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve_with_debounce(
        app.clone(),
        listener,
        Workers {
            jobs: false,
            scheduler: false,
            write_back: false,
        },
        DebounceSettings {
            quiet: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
        },
        async move {
            let _ = server_stopped.await;
        },
    ));

    // The push API: the fourth vendor's rows in batches of 1,000, four
    // requests at a time.
    let started = Instant::now();
    let key = create_push_integration(
        &app,
        &NewPushIntegration {
            vendor: PUSH_VENDOR.to_owned(),
            vendor_name: Some("Pax8".to_owned()),
            name: "scale bench".to_owned(),
            requests_per_minute: Some(1_000_000),
            burst: Some(1_000),
        },
        "bench",
    )
    .await?
    .api_key;
    // The push API takes usage of mapped accounts only: the MSP maps the
    // pushed vendor's accounts first (as a manual mapping each).
    for ci in (0..scale.companies).filter(|ci| !unmapped(*ci)) {
        store
            .set_mapping_override(&trueup_store::mappings::MappingOverride {
                vendor: PUSH_VENDOR.into(),
                account: account_id(PUSH_VENDOR, ci).into(),
                company: Some(format!("C{ci:05}").into()),
                reason: "month-end scale bench".to_owned(),
                set_by: "bench".to_owned(),
                set_at: now,
            })
            .await?;
    }
    phase(&mut phases, "map the pushed vendor's accounts", started);
    let started = Instant::now();
    let pushed = items.len();
    let bodies: Vec<String> = items
        .chunks(1_000)
        .map(|chunk| serde_json::json!({ "items": chunk }).to_string())
        .collect();
    drop(items);
    let http = reqwest::Client::new();
    let mut pending = futures_lite(bodies, 4, |body| {
        let (http, url, key) = (
            http.clone(),
            format!("{}/api/v1/usage", served.base),
            key.clone(),
        );
        async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            if !status.is_success() {
                bail!("push answered {status}: {}", response.text().await?);
            }
            Ok(())
        }
    });
    pending.run().await?;
    phase(
        &mut phases,
        format!("push API ({pushed} rows, 1,000 a request)"),
        started,
    );

    // The reconcile's biggest input alone, to tell reading from the rest.
    let started = Instant::now();
    let read = store
        .usage_for_period(trueup::app::reconcile::history_start(as_of), as_of)
        .await?
        .len();
    phase(
        &mut phases,
        format!("read the period's usage ({read} rows)"),
        started,
    );

    // The reconcile from the store, as the job runs it.
    let started = Instant::now();
    let summary = app.reconcile_as_of(as_of).await?;
    phase(&mut phases, "reconcile from the store (1st)", started);

    // Card keys for the clients.
    let page: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/api/v1/cards?limit=200", served.base))
            .bearer_auth(&served.token)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?,
    )?;
    let keys: Vec<String> = page["cards"]
        .as_array()
        .context("the card list has no cards array")?
        .iter()
        .filter_map(|c| c["key"].as_str().map(str::to_owned))
        .collect();
    ensure!(!keys.is_empty(), "the first reconcile wrote no cards");
    let keys = Arc::new(keys);

    // The second reconcile, with clients reading meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..scale.clients)
        .map(|c| {
            tokio::spawn(client(
                Arc::clone(&served),
                Arc::clone(&keys),
                scale.companies,
                c,
                Arc::clone(&stop),
            ))
        })
        .collect();
    let started = Instant::now();
    let second = app.reconcile_as_of(as_of).await;
    phase(
        &mut phases,
        format!("reconcile from the store (2nd, {} clients)", scale.clients),
        started,
    );
    stop.store(true, Ordering::Release);
    let mut api = vec![
        Latencies {
            name: "card list",
            ..Latencies::default()
        },
        Latencies {
            name: "card detail",
            ..Latencies::default()
        },
        Latencies {
            name: "search",
            ..Latencies::default()
        },
    ];
    for c in clients {
        let seen = c.await.context("a client task failed")??;
        for (total, seen) in api.iter_mut().zip(seen) {
            total.answered.extend(seen.answered);
            total.errors += seen.errors;
            for e in seen.first_errors {
                if total.first_errors.len() < 3 {
                    total.first_errors.push(e);
                }
            }
        }
    }
    for l in &mut api {
        l.answered.sort_unstable();
    }
    second?;

    let _ = stop_server.send(());
    let _ = server.await;
    app.store().close().await;
    drop(pg);
    Ok(Figures {
        backend,
        scale,
        csv_bytes,
        usage_rows: summary.usage_rows,
        cards: summary.cards,
        phases,
        api,
    })
}

/// Runs `make(item)` for every item, at most `width` at a time.
fn futures_lite<T, F, Fut>(items: Vec<T>, width: usize, make: F) -> Bounded<T, F>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Bounded { items, width, make }
}

/// See [`futures_lite`].
struct Bounded<T, F> {
    items: Vec<T>,
    width: usize,
    make: F,
}

impl<T, F, Fut> Bounded<T, F>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    async fn run(&mut self) -> anyhow::Result<()> {
        let mut running = tokio::task::JoinSet::new();
        for item in std::mem::take(&mut self.items) {
            if running.len() >= self.width
                && let Some(done) = running.join_next().await
            {
                done??;
            }
            running.spawn((self.make)(item));
        }
        while let Some(done) = running.join_next().await {
            done??;
        }
        Ok(())
    }
}
