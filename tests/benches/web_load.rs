//! Web load benchmark (issue 7): the card list API and the cards page
//! under 100 concurrent clients on loopback.
//!
//! Setup, all through the application and the store as production does it:
//! the core's synthetic MSP (`trueup_core::synth`, 20 services per
//! company) is recorded as a PSA sync and one vendor sync per vendor on
//! SQLite in a temporary directory; the vendor accounts' mappings are set
//! as manual overrides; `App::reconcile_as_of` then reconciles it with the
//! synthetic MSP's Rhai rules (`host/rules/benches/synth.rhai`) into about
//! 5,000 cards. A viewer user (logged in over HTTP for a session cookie)
//! and a viewer API token are created, and the server is started on
//! `127.0.0.1:0` with no workers.
//!
//! Load: [`CLIENTS`] client tasks (each its own HTTP client and
//! connection, on a runtime of their own), each sending one request after
//! another for the duration, rotating over:
//! - `GET /api/v1/cards` (the first page, token),
//! - `GET /api/v1/cards?category=reconcile,new_revenue&limit=50` (a
//!   filtered page, token),
//! - `GET /app/cards` (the page, session cookie).
//!
//! Every latency is recorded; per endpoint it prints p50/p90/p99/max,
//! requests/s and errors (a non-200 answer or a transport error). Exits
//! non-zero on any error. Target: p99 ≤ 50 ms.
//!
//! Run: `cargo bench -p trueup-tests --bench web_load` (60 s; set
//! `TRUEUP_BENCH_SECS` for a shorter run).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use trueup::app::App;
use trueup::auth::{Role, hash_password, new_api_token};
use trueup::config::{Config, PsaConfig, RulesConfig, StoreConfig};
use trueup::server::{self, Workers};
use trueup::web;
use trueup_core::model::AccountMappingStatus;
use trueup_core::synth::{SERVICES_PER_COMPANY, SynthConfig, generate};
use trueup_store::mappings::MappingOverride;
use trueup_store::sync::{PsaData, SyncKind, SyncStats, VendorData};

/// Concurrent clients.
const CLIENTS: usize = 100;

/// Cards wanted (one per PSA line; the synthetic MSP has 20 per company).
const CARDS: usize = 5_000;

/// Usage rows per company.
const ROWS_PER_COMPANY: usize = 200;

/// The p99 the issue asks for.
const TARGET_P99: Duration = Duration::from_millis(50);

/// The viewer's password.
const PASSWORD: &str = "load-bench-password-1";

/// The endpoints, in the order each client rotates over them.
const ENDPOINTS: &[(&str, &str, Auth)] = &[
    ("cards API, first page", "/api/v1/cards", Auth::Token),
    (
        "cards API, filtered page",
        "/api/v1/cards?category=reconcile,new_revenue&limit=50",
        Auth::Token,
    ),
    ("cards page", "/app/cards", Auth::Session),
];

#[derive(Debug, Clone, Copy)]
enum Auth {
    Token,
    Session,
}

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn bench_duration() -> Fallible<Duration> {
    match std::env::var("TRUEUP_BENCH_SECS") {
        Ok(text) => Ok(Duration::from_secs_f64(text.trim().parse().map_err(
            |e| format!("TRUEUP_BENCH_SECS={text:?} is not a number of seconds: {e}"),
        )?)),
        Err(_) => Ok(Duration::from_secs(60)),
    }
}

/// The running server and what clients need to reach it.
struct Target {
    base: String,
    token: String,
    cookie: String,
    cards: usize,
}

/// Builds the data, reconciles it and starts the server (on the current
/// runtime).
async fn set_up(data_dir: &std::path::Path) -> Fallible<Target> {
    let synth = SynthConfig {
        seed: 0x7765_625f_6c6f_6164,
        companies: CARDS / SERVICES_PER_COMPANY,
        usage_rows: CARDS / SERVICES_PER_COMPANY * ROWS_PER_COMPANY,
        as_of: NaiveDate::from_ymd_opt(2025, 3, 31).ok_or("date")?,
    };
    let t = Instant::now();
    let snapshot = generate(&synth);
    let config = Config {
        data_dir: data_dir.to_owned(),
        store: StoreConfig {
            url: Some(format!("sqlite://{}", data_dir.join("trueup.db").display())),
        },
        psa: Some(PsaConfig {
            plugin: "trueup.connectwise".to_owned(),
            contract_types: Vec::new(),
        }),
        rules: RulesConfig {
            path: repo_root().join("host/rules/benches/synth.rhai"),
        },
        ..Config::default()
    };
    let now = Utc
        .with_ymd_and_hms(2025, 3, 31, 23, 0, 0)
        .single()
        .ok_or("now")?;
    let app = App::open_with_clock(Arc::new(config), Arc::new(move || now)).await?;
    let store = app.store();

    // The PSA sync.
    let run = store
        .begin_sync(SyncKind::Psa, "trueup.connectwise", synth.as_of, now)
        .await?;
    store
        .complete_psa_sync(
            run,
            &PsaData {
                companies: snapshot.companies.clone(),
                contracts: snapshot.contracts.clone(),
                lines: snapshot.service_lines.clone(),
                catalog: snapshot.catalog.clone(),
            },
            &SyncStats::default(),
            now,
        )
        .await?;
    // One vendor sync per vendor, and the accounts' mappings.
    for vendor in &snapshot.vendors {
        store.upsert_vendor_integration(vendor, now).await?;
        let run = store
            .begin_sync(SyncKind::Vendor, vendor.id.as_str(), synth.as_of, now)
            .await?;
        let data = VendorData {
            accounts: snapshot
                .accounts
                .iter()
                .filter(|a| a.vendor == vendor.id)
                .cloned()
                .collect(),
            usage: snapshot
                .usage
                .iter()
                .filter(|u| u.vendor == vendor.id)
                .cloned()
                .collect(),
        };
        store
            .complete_vendor_sync(run, &data, &SyncStats::default(), now)
            .await?;
    }
    for mapping in &snapshot.account_mappings {
        let company = match &mapping.status {
            AccountMappingStatus::Mapped(company) => Some(company.clone()),
            AccountMappingStatus::Excluded => None,
            AccountMappingStatus::Unmapped => continue,
        };
        store
            .set_mapping_override(&MappingOverride {
                vendor: mapping.vendor.clone(),
                account: mapping.account.clone(),
                company,
                reason: "load benchmark".to_owned(),
                set_by: "bench".to_owned(),
                set_at: now,
            })
            .await?;
    }
    let summary = app.reconcile_as_of(synth.as_of).await?;
    println!(
        "data: {} companies, {} lines, {} usage rows → {} cards (reconcile run {}, {}), set up in {:.2?}",
        snapshot.companies.len(),
        snapshot.service_lines.len(),
        summary.usage_rows,
        summary.cards,
        summary.run,
        summary.rules,
        t.elapsed()
    );

    // A viewer: a token for the API, a session for the page.
    let token = new_api_token();
    store
        .create_api_token(
            "load",
            &token,
            web::auth::stored_role(Role::Viewer),
            "bench",
            now,
        )
        .await?;
    store
        .create_user(
            "viewer",
            &hash_password(PASSWORD)?,
            web::auth::stored_role(Role::Viewer),
            now,
        )
        .await?;

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let served = app.clone();
    tokio::spawn(async move {
        let workers = Workers {
            jobs: false,
            scheduler: false,
            write_back: false,
        };
        if let Err(error) =
            server::serve_web(served, listener, workers, std::future::pending()).await
        {
            eprintln!("the server stopped: {error}");
        }
    });

    let login = reqwest::Client::new()
        .post(format!("{base}/api/v1/session"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "username": "viewer", "password": PASSWORD }).to_string())
        .send()
        .await?;
    if login.status() != reqwest::StatusCode::OK {
        return Err(format!("login answered {}", login.status()).into());
    }
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .ok_or("no session cookie")?
        .to_str()?
        .split(';')
        .next()
        .ok_or("an empty cookie")?
        .to_owned();
    Ok(Target {
        base,
        token,
        cookie,
        cards: summary.cards,
    })
}

/// What one client saw: per endpoint, latencies and errors.
#[derive(Default)]
struct Seen {
    latencies: Vec<Vec<Duration>>,
    errors: Vec<usize>,
    first_errors: Vec<String>,
}

async fn client(target: Arc<Target>, start_at: usize, until: Instant) -> Fallible<Seen> {
    // One connection per client (keep-alive), as a browser tab or a script.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut seen = Seen {
        latencies: vec![Vec::new(); ENDPOINTS.len()],
        errors: vec![0; ENDPOINTS.len()],
        first_errors: Vec::new(),
    };
    let mut i = start_at;
    while Instant::now() < until {
        let e = i % ENDPOINTS.len();
        i += 1;
        let (_, path, auth) = ENDPOINTS[e];
        let request = http.get(format!("{}{path}", target.base));
        let request = match auth {
            Auth::Token => request.bearer_auth(&target.token),
            Auth::Session => request.header(reqwest::header::COOKIE, &target.cookie),
        };
        let t = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(body) if status == reqwest::StatusCode::OK && !body.is_empty() => Ok(()),
                    Ok(body) => Err(format!(
                        "{path}: {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    Err(error) => Err(format!("{path}: reading the body: {error}")),
                }
            }
            Err(error) => Err(format!("{path}: {error}")),
        };
        let elapsed = t.elapsed();
        match outcome {
            Ok(()) => seen.latencies[e].push(elapsed),
            Err(message) => {
                seen.errors[e] += 1;
                if seen.first_errors.len() < 3 {
                    seen.first_errors.push(message);
                }
            }
        }
    }
    Ok(seen)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn run() -> Fallible<bool> {
    let duration = bench_duration()?;
    let dir = tempfile::tempdir()?;
    // The server on a runtime of its own, the clients on another (both
    // share the machine's cores, as on a loopback load test).
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()?;
    let target = Arc::new(server.block_on(set_up(dir.path()))?);
    let clients = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("client")
        .build()?;
    println!(
        "load: {CLIENTS} clients for {duration:.0?} against {} ({} cards)",
        target.base, target.cards
    );
    let started = Instant::now();
    let until = started + duration;
    let all: Vec<Fallible<Seen>> = clients.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client(target.clone(), c, until)))
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.push(match task.await {
                Ok(seen) => seen,
                Err(error) => Err(format!("a client task failed: {error}").into()),
            });
        }
        all
    });
    let elapsed = started.elapsed();
    let mut latencies = vec![Vec::new(); ENDPOINTS.len()];
    let mut errors = vec![0usize; ENDPOINTS.len()];
    let mut first_errors = Vec::new();
    for seen in all {
        let seen = seen?;
        for (e, l) in seen.latencies.into_iter().enumerate() {
            latencies[e].extend(l);
        }
        for (e, n) in seen.errors.into_iter().enumerate() {
            errors[e] += n;
        }
        first_errors.extend(seen.first_errors);
    }
    let mut ok = true;
    let mut summary = BTreeMap::new();
    println!(
        "{:<26} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "endpoint", "requests", "req/s", "p50", "p90", "p99", "max", "errors"
    );
    for (e, (name, path, _)) in ENDPOINTS.iter().enumerate() {
        let sorted = &mut latencies[e];
        sorted.sort_unstable();
        let p99 = percentile(sorted, 99.0);
        println!(
            "{name:<26} {:>9} {:>9.0} {:>10} {:>10} {:>10} {:>10} {:>7}",
            sorted.len() + errors[e],
            (sorted.len() + errors[e]) as f64 / elapsed.as_secs_f64(),
            ms(percentile(sorted, 50.0)),
            ms(percentile(sorted, 90.0)),
            ms(p99),
            ms(sorted.last().copied().unwrap_or_default()),
            errors[e],
        );
        if errors[e] > 0 {
            ok = false;
        }
        summary.insert(*path, p99);
    }
    let total: usize = latencies.iter().map(Vec::len).sum::<usize>() + errors.iter().sum::<usize>();
    println!(
        "all endpoints: {total} requests in {elapsed:.1?}, {:.0} req/s, {} errors",
        total as f64 / elapsed.as_secs_f64(),
        errors.iter().sum::<usize>()
    );
    for (path, p99) in summary {
        let verdict = if p99 <= TARGET_P99 { "met" } else { "MISSED" };
        println!(
            "target p99 ≤ {} for {path}: {verdict} ({})",
            ms(TARGET_P99),
            ms(p99)
        );
    }
    for message in first_errors.iter().take(10) {
        eprintln!("error: {message}");
    }
    // The server's tasks end with its runtime.
    server.shutdown_timeout(Duration::from_secs(1));
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("FAILED: some requests failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
