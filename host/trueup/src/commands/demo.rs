//! `trueup demo`: the whole product on a fresh machine in one command —
//! SQLite in a local data directory, the bundled emulators, the shipped
//! plugins granted exactly those emulators, a sync and a reconcile, then
//! the UI and API with every worker. Prints the URL and a login.
//!
//! Only with the `demo` feature (the default build): it runs the bundled
//! emulators, which the product build leaves out.
#![cfg(feature = "demo")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use trueup::app::App;
use trueup::auth::{hash_password, random_token};
use trueup::demo;
use trueup::server::{self, Workers};
use trueup_store::auth::Role as StoredRole;

/// The demo's admin user.
pub const DEMO_USER: &str = "admin";

/// `trueup demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the SQLite database, keys and the generated trueup.toml go.
    #[arg(long, default_value = "data/demo")]
    data_dir: PathBuf,
    /// The address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Customers in the emulated MSP.
    #[arg(long, default_value_t = 120)]
    customers: usize,
    /// The emulated world's seed (the same seed, the same data).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Delete the data directory first (a clean demo).
    #[arg(long)]
    fresh: bool,
    /// The repository root (built plugins in target/plugins, rules in
    /// rules/).
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

fn check_plugins(plugins: &Path) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let ids = std::iter::once(demo::PSA_PLUGIN).chain(demo::VENDORS.iter().map(|v| v.2));
    for id in ids {
        if !plugins.join(id).join("plugin.wasm").is_file() {
            missing.push(id);
        }
    }
    if !missing.is_empty() {
        bail!(
            "the demo's plugins are not built ({} missing under {}); run scripts/setup (or scripts/demo, which does it)",
            missing.join(", "),
            plugins.display()
        );
    }
    Ok(())
}

/// Runs `trueup demo`.
///
/// # Errors
/// Plugins not built, the address taken, a sync or reconcile failing.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (plugins, rules) = demo::repo_paths(&args.root);
    check_plugins(&plugins)?;
    if !rules.is_file() {
        bail!(
            "{} is missing; run trueup demo from the repository root or pass --root",
            rules.display()
        );
    }
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("cannot delete {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(demo_main(args))
}

async fn demo_main(args: DemoArgs) -> anyhow::Result<()> {
    let today = chrono::Utc::now().date_naive();
    println!(
        "Starting the emulators ({} customers, seed {})…",
        args.customers, args.seed
    );
    let emulators = demo::start_emulators(
        args.seed,
        args.customers,
        today,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
    .await
    .context("starting the emulators")?;
    let data_dir = std::path::absolute(&args.data_dir).context("the data directory")?;
    // Trueup runs on the configuration as read back from the file it
    // writes, so the demo uses exactly what `trueup serve --config` will.
    let (config_path, config) = demo::write_config(&data_dir, &args.root, args.bind, &emulators)?;
    println!("Configuration: {}", config_path.display());
    let app = App::open(Arc::new(config))
        .await
        .context("opening Trueup")?;

    let password = random_token();
    let hash = hash_password(&password)?;
    let store = app.store();
    match store.user_by_name(DEMO_USER).await? {
        Some(user) => {
            store
                .update_user(
                    user.id,
                    Some(&hash),
                    Some(StoredRole::Admin),
                    Some(false),
                    app.now(),
                )
                .await?
        }
        None => {
            store
                .create_user(DEMO_USER, &hash, StoredRole::Admin, app.now())
                .await?;
        }
    }
    for (plugin, name, value) in demo::secrets() {
        app.set_secret(plugin, name, value, "demo").await?;
    }

    println!("Syncing the PSA and four vendors…");
    let mut failed = Vec::new();
    for (source, outcome) in app.sync_all().await {
        match outcome {
            Ok(s) => println!(
                "  {source}: {} records, {} requests, {} ms",
                s.records, s.requests, s.wall_ms
            ),
            Err(e) => failed.push(format!("{source}: {e}")),
        }
    }
    if !failed.is_empty() {
        bail!("the demo sync failed:\n  {}", failed.join("\n  "));
    }
    let summary = app.reconcile().await.context("reconciling")?;
    let run = store
        .latest_reconcile_run()
        .await?
        .context("the reconcile recorded no run")?;
    println!(
        "Reconciled {} cards ({} usage rows): {} at stake — {} under-billed, {} over-billed",
        summary.cards,
        summary.usage_rows,
        run.totals.at_stake,
        run.totals.under_billed,
        run.totals.over_billed
    );

    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (pass --bind to use another address)",
                args.bind
            )
        })?;
    let addr = listener.local_addr()?;
    println!();
    println!("Open http://{addr} — user {DEMO_USER}, password {password}");
    println!(
        "(Ctrl-C stops the demo; the data stays in {})",
        data_dir.display()
    );
    trueup::server::serve(app, listener, Workers::ALL, server::shutdown_signal()).await?;
    drop(emulators);
    Ok(())
}
