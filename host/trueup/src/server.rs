//! The server: what `trueup serve` and `trueup demo` run.
//!
//! It assembles the routers — the web API and UI ([`crate::web`]) and,
//! beside them, the push API ([`crate::ingest::push`], authenticated by
//! push keys) — under one request middleware stack ([`middleware`]); it
//! starts the workers (jobs, scheduler, write-back) and the app's reconcile
//! [`Debouncer`]; and on shutdown it stops accepting, lets requests in
//! flight finish, and stops the workers and the debouncer.

pub mod files;
pub mod middleware;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;

use crate::app::App;
use crate::app::debounce::{DebounceSettings, Debouncer};
use crate::ingest::push;
use crate::web::{self, AppState};

/// How long the server waits for requests in flight after a shutdown
/// signal before the workers are stopped anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What the server runs besides answering requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// The job worker (syncs, reconciles).
    pub jobs: bool,
    /// The scheduler (enqueues due schedules).
    pub scheduler: bool,
    /// The write-back worker.
    pub write_back: bool,
}

impl Workers {
    /// All of them.
    pub const ALL: Workers = Workers {
        jobs: true,
        scheduler: true,
        write_back: true,
    };
}

/// Serves `app` on `listener` — the web API and UI and the push API — with
/// the chosen workers and a reconcile [`Debouncer`] (default settings)
/// until `shutdown` resolves; then stops accepting, lets requests in
/// flight finish, and stops the workers (a job or write-back in progress
/// is finished and recorded first) and the debouncer (a reconcile in
/// progress finishes; a pending one is left to the next reconcile, the
/// usage being stored).
///
/// # Errors
/// The listener fails.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    workers: Workers,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_debounce(
        app,
        listener,
        workers,
        DebounceSettings::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with given debounce settings (tests use a short window).
///
/// # Errors
/// The listener fails.
pub async fn serve_with_debounce(
    app: App,
    listener: tokio::net::TcpListener,
    workers: Workers,
    debounce: DebounceSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let debouncer = Debouncer::start_with(&app, debounce);
    let state = AppState::new(app.clone());
    state.serve_push_api_document();
    let routes = web::router(state.clone()).merge(push::router(app.clone()));
    let served = run(
        app,
        listener,
        workers,
        middleware::around(routes, state),
        shutdown,
    )
    .await;
    debouncer.shutdown().await;
    served
}

/// The web API and UI alone (no push API, no debouncer), with the chosen
/// workers, until `shutdown` resolves; stops as [`serve`] does.
///
/// # Errors
/// The listener fails.
pub async fn serve_web(
    app: App,
    listener: tokio::net::TcpListener,
    workers: Workers,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState::new(app.clone());
    let router = middleware::around(web::router(state.clone()), state);
    run(app, listener, workers, router, shutdown).await
}

/// Runs the workers and serves `router` until `shutdown`, then stops
/// both (the workers get [`SHUTDOWN_GRACE`]).
async fn run(
    app: App,
    listener: tokio::net::TcpListener,
    workers: Workers,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    if workers.jobs {
        tasks.spawn(crate::jobs::run_worker(app.clone(), signal()));
    }
    if workers.scheduler {
        tasks.spawn(crate::jobs::run_scheduler(
            app.clone(),
            crate::jobs::SCHEDULER_TICK,
            signal(),
        ));
    }
    if workers.write_back {
        let worker = app.clone();
        let until = signal();
        tasks.spawn(async move { worker.run_write_back_worker(until).await });
    }
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(signal());
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let served = server.await;
    watcher.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("workers did not stop within the grace period");
    }
    served
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
