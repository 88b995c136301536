//! `trueup serve`: the web server (UI and REST API), the job worker, the
//! scheduler and the write-back worker, until SIGTERM or Ctrl-C. Several
//! processes may serve one PostgreSQL database: they share the job queue
//! and the outbox without running anything twice.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use trueup::app::App;
use trueup::config::Config;
use trueup::server::{self, Workers};

/// `trueup serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of `[server] bind`.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Serve the web only: no job worker, scheduler or write-back worker
    /// (another process runs them).
    #[arg(long)]
    web_only: bool,
}

/// Structured JSON logs on stdout; `RUST_LOG` filters (default `info`).
pub fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .try_init();
}

/// Runs `trueup serve`.
///
/// # Errors
/// The application cannot open or the address cannot be bound.
pub fn run(config: Arc<Config>, args: ServeArgs) -> anyhow::Result<()> {
    init_json_logs();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let bind = args.bind.unwrap_or(config.server.bind);
        let app = App::open(config).await.context("opening Trueup")?;
        trueup::jobs::sync_config_schedules(&app)
            .await
            .context("storing the [[schedules]] of the configuration")?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let addr = listener.local_addr().context("the listening address")?;
        tracing::info!(%addr, worker = app.worker_id(), "listening");
        println!("listening on http://{addr}");
        let workers = if args.web_only {
            Workers {
                jobs: false,
                scheduler: false,
                write_back: false,
            }
        } else {
            Workers::ALL
        };
        trueup::server::serve(app, listener, workers, server::shutdown_signal())
            .await
            .context("serving")
    })
}
