//! The web server: the REST API under `/api/v1` (documented in
//! `docs/api.md` and by the OpenAPI document at `/api/openapi.json`), the
//! UI's pages and assets, `/healthz`, `/readyz` and Prometheus `/metrics`.
//!
//! Every route is declared once, in [`route_table`]'s builder, with the
//! access it needs ([`Access`]); the guard middleware of each route
//! enforces it, so the table is what the tests and the OpenAPI document
//! are checked against.
//!
//! Security: sessions (cookie [`auth::SESSION_COOKIE`], HttpOnly,
//! SameSite=Strict, Secure when `[server] secure_cookies`) or API tokens
//! (`Authorization: Bearer tu_...`); a CSRF token in `X-CSRF-Token` on
//! every state-changing request made with a session cookie; roles viewer <
//! approver < admin; login lockout after repeated failures. Responses
//! carry a strict CSP (`default-src 'self'`, no inline script),
//! `X-Frame-Options: DENY`, `nosniff` and `Referrer-Policy: no-referrer`.

pub mod admin;
pub mod auth;
pub mod cards;
pub mod error;
pub mod events;
pub mod metrics;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::Serialize;

use crate::app::{App, AppEvent};
use crate::auth::Role;
pub use error::{ApiError, ApiResult};

/// The OpenAPI document served at `/api/openapi.json` (hand-written; a
/// test checks it lists exactly the routes of [`route_table`]).
pub const OPENAPI: &str = include_str!("web/openapi.json");

/// Header carrying the request id (taken from the client when it is a
/// short token, generated otherwise).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest client-supplied request id kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone (health, login, static assets without data).
    Public,
    /// An HTML page of the UI: a session is needed; without one the
    /// browser is sent to `/login` (303).
    Page,
    /// An API route needing at least this role (401 without credentials,
    /// 403 with too low a role).
    Role(Role),
}

/// One route of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// The HTTP method.
    #[serde(serialize_with = "method_text")]
    pub method: Method,
    /// The path as axum matches it (`{param}` for a segment,
    /// `{*rest}` for the rest).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What it does.
    pub summary: &'static str,
}

fn method_text<S: serde::Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// The server's shared state: the application and the web layer's own
/// caches and counters. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The application.
    pub app: App,
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) metrics: metrics::Metrics,
    pub(crate) auth: auth::AuthState,
    pub(crate) cards: cards::CardsCache,
    /// Bumped by every change this process makes or hears of (decisions,
    /// tags, notes, reconciles, write-backs): cached card answers of an
    /// older generation are not served.
    pub(crate) generation: AtomicU64,
    pub(crate) openapi: std::sync::RwLock<serde_json::Value>,
}

impl AppState {
    /// The state for `app`. Starts a task (on the current Tokio runtime)
    /// that follows the application's events to count them and to expire
    /// cached card answers.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(app: App) -> Self {
        let secure = app.config().server.secure_cookies;
        let state = Self {
            shared: Arc::new(Shared {
                metrics: metrics::Metrics::default(),
                auth: auth::AuthState::new(secure),
                cards: cards::CardsCache::default(),
                generation: AtomicU64::new(0),
                openapi: std::sync::RwLock::new(
                    serde_json::from_str(OPENAPI).unwrap_or(serde_json::Value::Null),
                ),
            }),
            app,
        };
        let follower = state.clone();
        let mut events = state.app.events();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => follower.observe(&event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        follower.changed();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        state
    }

    /// Notes that cards may have changed (expires cached card answers).
    pub fn changed(&self) {
        self.shared.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    fn observe(&self, event: &AppEvent) {
        self.shared.metrics.observe(event);
        if matches!(
            event,
            AppEvent::Reconciled { .. } | AppEvent::WriteBack { .. } | AppEvent::JobFinished { .. }
        ) {
            self.changed();
        }
    }
}

/// Builds the route table and the router together, so they cannot differ.
struct Routes {
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        summary: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Self {
        let guarded = handler.route_layer(middleware::from_fn(move |req: Request, next: Next| {
            auth::guard(access, req, next)
        }));
        self.router = self.router.route(path, guarded);
        self.table.push(RouteInfo {
            method,
            path,
            access,
            summary,
        });
        self
    }
}

const VIEWER: Access = Access::Role(Role::Viewer);
const APPROVER: Access = Access::Role(Role::Approver);
const ADMIN: Access = Access::Role(Role::Admin);

#[rustfmt::skip]
fn routes() -> Routes {
    use Method as M;
    Routes::new()
        // Health and metrics.
        .add(M::GET, "/healthz", Access::Public, "Liveness: the process answers", get(health))
        .add(M::GET, "/readyz", Access::Public, "Readiness: the store answers", get(ready))
        .add(M::GET, "/metrics", VIEWER, "Prometheus metrics (text exposition)", get(metrics::exposition))
        .add(M::GET, "/api/openapi.json", VIEWER, "This API's OpenAPI 3.1 document", get(openapi))
        // Pages and assets.
        .add(M::GET, "/", Access::Public, "Redirects to the cards page or the login page", get(pages::root))
        .add(M::GET, "/login", Access::Public, "The login page", get(pages::login))
        .add(M::GET, "/assets/{file}", Access::Public, "Static CSS and JavaScript (no data)", get(pages::asset))
        .add(M::GET, "/app", Access::Page, "The UI (cards page)", get(pages::app))
        .add(M::GET, "/app/{*page}", Access::Page, "The UI's pages", get(pages::app))
        // Session.
        .add(M::POST, "/api/v1/session", Access::Public, "Log in (sets the session cookie; returns the CSRF token)", post(auth::login))
        .add(M::GET, "/api/v1/session", VIEWER, "Who is logged in, with the CSRF token", get(auth::me))
        .add(M::DELETE, "/api/v1/session", VIEWER, "Log out", delete(auth::logout))
        // Runs and cards.
        .add(M::GET, "/api/v1/runs", VIEWER, "Reconcile runs, newest first", get(cards::runs))
        .add(M::GET, "/api/v1/cards", VIEWER, "A page of cards, filtered", get(cards::list))
        .add(M::GET, "/api/v1/cards/totals", VIEWER, "Counts and money of the filtered cards", get(cards::totals))
        .add(M::GET, "/api/v1/cards/groups", VIEWER, "The filtered cards grouped, with totals per group", get(cards::groups))
        .add(M::GET, "/api/v1/cards/export.csv", VIEWER, "The filtered cards as CSV", get(cards::export_csv))
        .add(M::POST, "/api/v1/cards/reopen", APPROVER, "Set cards back to open (undo a decision)", post(cards::reopen))
        .add(M::GET, "/api/v1/cards/{key}", VIEWER, "One card in full: usage rows, trace, money, state, decisions, notes, write-back", get(cards::detail))
        .add(M::GET, "/api/v1/cards/{key}/history", VIEWER, "The card in every run that had it", get(cards::history))
        .add(M::POST, "/api/v1/cards/{key}/plan", APPROVER, "Dry run: the exact PSA calls approving (or adjusting) the card would make", post(cards::plan))
        .add(M::POST, "/api/v1/cards/{key}/notes", APPROVER, "Add a note to a card", post(cards::add_note))
        .add(M::POST, "/api/v1/decisions", APPROVER, "Approve, adjust, dismiss, snooze or exclude cards (one or many)", post(cards::decide))
        .add(M::GET, "/api/v1/tags", VIEWER, "Tags in use with their card counts", get(cards::tags))
        .add(M::POST, "/api/v1/tags", APPROVER, "Tag cards", post(cards::tag))
        .add(M::POST, "/api/v1/tags/remove", APPROVER, "Remove a tag from cards", post(cards::untag))
        .add(M::GET, "/api/v1/outbox", VIEWER, "Write-backs and their progress", get(cards::outbox))
        // History and audit.
        .add(M::GET, "/api/v1/history/companies/{company}", VIEWER, "A customer's cards month over month", get(cards::company_history))
        .add(M::GET, "/api/v1/history/lines/{line}", VIEWER, "A PSA line month over month", get(cards::line_history))
        .add(M::GET, "/api/v1/audit", VIEWER, "The audit log, newest first", get(admin::audit))
        // Mappings.
        .add(M::GET, "/api/v1/companies", VIEWER, "The PSA's companies", get(admin::companies))
        .add(M::GET, "/api/v1/mappings/accounts", VIEWER, "Vendor accounts: mapped, unmapped, excluded, with suggestions", get(admin::accounts))
        .add(M::POST, "/api/v1/mappings/accounts", ADMIN, "Map a vendor account to a company, or exclude it", post(admin::map_account))
        .add(M::DELETE, "/api/v1/mappings/accounts/{vendor}/{account}", ADMIN, "Remove a manual mapping (matching decides again)", delete(admin::unmap_account))
        .add(M::GET, "/api/v1/mappings/skus", VIEWER, "The SKU table", get(admin::skus))
        .add(M::PUT, "/api/v1/mappings/skus", ADMIN, "Set a SKU table entry", put(admin::put_sku))
        .add(M::DELETE, "/api/v1/mappings/skus/{vendor}/{sku}/{product}", ADMIN, "Remove a SKU table entry", delete(admin::delete_sku))
        // Integrations, syncs, jobs, schedules, live events.
        .add(M::GET, "/api/v1/integrations", ADMIN, "Installed plugins: manifest, capabilities, config, secret names, sync health", get(admin::integrations))
        .add(M::GET, "/api/v1/integrations/{plugin}", ADMIN, "One installed plugin", get(admin::integration))
        .add(M::PUT, "/api/v1/integrations/{plugin}/secrets/{name}", ADMIN, "Set a plugin secret (write-only)", put(admin::set_secret))
        .add(M::GET, "/api/v1/sync/health", VIEWER, "Per source: the latest run and the latest successful run", get(admin::sync_health))
        .add(M::POST, "/api/v1/syncs", ADMIN, "Sync now (quick: sources; full: sources then reconcile) as a job", post(admin::sync_now))
        .add(M::POST, "/api/v1/reconcile", ADMIN, "Reconcile now, as a job", post(admin::reconcile_now))
        .add(M::GET, "/api/v1/jobs", VIEWER, "Jobs, newest first", get(admin::jobs))
        .add(M::GET, "/api/v1/jobs/{id}", VIEWER, "One job", get(admin::job))
        .add(M::GET, "/api/v1/schedules", VIEWER, "Schedules", get(admin::schedules))
        .add(M::PUT, "/api/v1/schedules/{name}", ADMIN, "Create or change a schedule", put(admin::put_schedule))
        .add(M::DELETE, "/api/v1/schedules/{name}", ADMIN, "Delete a schedule", delete(admin::delete_schedule))
        .add(M::GET, "/api/v1/events", VIEWER, "Live events (Server-Sent Events): sync progress, jobs, reconciles, write-backs", get(events::stream))
        // Rules.
        .add(M::GET, "/api/v1/rules", VIEWER, "The active rules and every version", get(admin::rules))
        .add(M::GET, "/api/v1/rules/versions/{checksum}", VIEWER, "One rule version's source", get(admin::rule_version))
        .add(M::POST, "/api/v1/rules/check", ADMIN, "Compile a draft and run its tests", post(admin::check_rules))
        .add(M::POST, "/api/v1/rules/dry-run", ADMIN, "Reconcile current data under a draft and under the active rules; the cards that differ", post(admin::dry_run_rules))
        .add(M::POST, "/api/v1/rules/explain", ADMIN, "Explain how rules map one SKU of one account", post(admin::explain_rules))
        .add(M::POST, "/api/v1/rules/activate", ADMIN, "Validate and activate a new rule version", post(admin::activate_rules))
        // Users and API tokens.
        .add(M::GET, "/api/v1/users", ADMIN, "Users", get(admin::users))
        .add(M::POST, "/api/v1/users", ADMIN, "Create a user (a generated password is shown once)", post(admin::create_user))
        .add(M::PATCH, "/api/v1/users/{username}", ADMIN, "Change a user's role, password or disabled flag", patch(admin::update_user))
        .add(M::GET, "/api/v1/tokens", ADMIN, "API tokens (never their values)", get(admin::tokens))
        .add(M::POST, "/api/v1/tokens", ADMIN, "Create an API token (its value is shown once)", post(admin::create_token))
        .add(M::DELETE, "/api/v1/tokens/{id}", ADMIN, "Revoke an API token", delete(admin::revoke_token))
}

/// Every route of the server with its access, in declaration order.
pub fn route_table() -> Vec<RouteInfo> {
    routes().table
}

/// Routes another module serves beside the API (e.g. the push API of
/// `crate::ingest::push`), with their own authentication, and their
/// OpenAPI document, merged into `/api/openapi.json`.
pub struct Mount {
    /// The routes (with their state applied).
    pub router: Router,
    /// Their OpenAPI 3.1 document (paths and components are merged).
    pub openapi: Option<&'static str>,
}

/// The server's router over `state`.
pub fn router(state: AppState) -> Router {
    router_with(state, Vec::new())
}

/// The server's router over `state` with `mounts` beside it: they get the
/// request id, access log, metrics and security headers too, and their
/// documents are merged into the served OpenAPI document.
pub fn router_with(state: AppState, mounts: Vec<Mount>) -> Router {
    let mut router = routes().router.with_state(state.clone());
    for mount in mounts {
        if let Some(doc) = mount.openapi {
            match serde_json::from_str::<serde_json::Value>(doc) {
                Ok(doc) => {
                    let mut served = state
                        .shared
                        .openapi
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    merge_openapi(&mut served, &doc);
                }
                Err(error) => tracing::error!(%error, "a mounted OpenAPI document is not JSON"),
            }
        }
        router = router.merge(mount.router);
    }
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state, observe))
}

/// Adds `other`'s paths and component entries to `doc` (entries `doc`
/// already has are kept).
pub fn merge_openapi(doc: &mut serde_json::Value, other: &serde_json::Value) {
    if let (Some(paths), Some(more)) = (
        doc.get_mut("paths").and_then(|p| p.as_object_mut()),
        other.get("paths").and_then(|p| p.as_object()),
    ) {
        for (path, item) in more {
            paths.entry(path.clone()).or_insert_with(|| item.clone());
        }
    }
    let Some(more) = other.get("components").and_then(|c| c.as_object()) else {
        return;
    };
    let Some(components) = doc.get_mut("components").and_then(|c| c.as_object_mut()) else {
        return;
    };
    for (kind, entries) in more {
        let target = components
            .entry(kind.clone())
            .or_insert_with(|| serde_json::json!({}));
        if let (Some(target), Some(entries)) = (target.as_object_mut(), entries.as_object()) {
            for (name, value) in entries {
                target.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; the API is described at /api/openapi.json".into())
}

fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let random = crate::auth::random_token();
        random.chars().take(8).collect()
    });
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn client_request_id(req: &Request) -> Option<String> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    (!value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    .then(|| value.to_owned())
}

/// Request id, access log, metrics and security headers, around every
/// route.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    req.extensions_mut().insert(state.clone());
    let id = client_request_id(&req).unwrap_or_else(new_request_id);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let path = req.uri().path().to_owned();
    let mut response = error::REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state
        .shared
        .metrics
        .record_request(&method, &route, status, elapsed);
    let user = response
        .extensions()
        .get::<auth::Principal>()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    tracing::info!(
        target: "trueup::access",
        request_id = %id,
        method = %method,
        path = %path,
        route = %route,
        status = status.as_u16(),
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        user = %user,
        "request"
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.app.store().jobs(None, 1).await {
        Ok(_) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(error) => {
            tracing::error!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "status": "store unreachable" })),
            )
                .into_response()
        }
    }
}

async fn openapi(State(state): State<AppState>) -> Response {
    let doc = state
        .shared
        .openapi
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    axum::Json(doc).into_response()
}

/// How long `serve` waits for requests in flight after a shutdown signal
/// before the workers are stopped anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What [`serve`] runs besides the web server.
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

/// Serves `app` on `listener` with the chosen workers until `shutdown`
/// resolves; then stops accepting, lets requests in flight finish, and
/// stops the workers (a job or write-back in progress is finished and
/// recorded first).
///
/// # Errors
/// The listener fails.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    workers: Workers,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(app, listener, workers, Vec::new(), shutdown).await
}

/// [`serve`] with routes mounted beside the API (see [`router_with`]).
///
/// # Errors
/// The listener fails.
pub async fn serve_with(
    app: App,
    listener: tokio::net::TcpListener,
    workers: Workers,
    mounts: Vec<Mount>,
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
    let state = AppState::new(app);
    let service = router_with(state, mounts).into_make_service_with_connect_info::<SocketAddr>();
    let server_stop = signal();
    let server = axum::serve(listener, service).with_graceful_shutdown(server_stop);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_declared_once() {
        let table = route_table();
        let mut seen = std::collections::HashSet::new();
        for route in &table {
            assert!(
                seen.insert((route.method.clone(), route.path)),
                "{} {} twice",
                route.method,
                route.path
            );
        }
        let public: Vec<&str> = table
            .iter()
            .filter(|r| r.access == Access::Public)
            .map(|r| r.path)
            .collect();
        assert_eq!(
            public,
            [
                "/healthz",
                "/readyz",
                "/",
                "/login",
                "/assets/{file}",
                "/api/v1/session"
            ]
        );
    }

    #[test]
    fn the_openapi_document_parses() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
