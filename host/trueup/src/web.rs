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
//! approver < admin; login lockout after repeated failures. The server
//! (`crate::server`) serves this router and puts the request id, the
//! access log and the security headers (a strict CSP, `X-Frame-Options:
//! DENY`, `nosniff`, `Referrer-Policy: no-referrer`) around it.

pub mod admin;
pub mod auth;
pub mod cards;
pub mod error;
pub mod events;
pub mod metrics;
pub mod pages;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::Serialize;

use crate::app::{App, AppEvent};
use crate::auth::Role;
use crate::lock::lock;
pub use error::{ApiError, ApiResult};

/// The OpenAPI document served at `/api/openapi.json` (hand-written; a
/// test checks it lists exactly the routes of [`route_table`]).
pub const OPENAPI: &str = include_str!("web/openapi.json");

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
    /// The served OpenAPI document (this API's, with what is served beside
    /// it added at startup).
    pub(crate) openapi: Mutex<serde_json::Value>,
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
                openapi: Mutex::new(
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

    /// Adds the OpenAPI document of routes served beside this API (the
    /// push API) to the one served at `/api/openapi.json` (see
    /// [`merge_openapi`]).
    pub fn add_openapi(&self, fragment: &str) {
        match serde_json::from_str::<serde_json::Value>(fragment) {
            Ok(doc) => merge_openapi(&mut lock(&self.shared.openapi), &doc),
            Err(error) => tracing::error!(%error, "a mounted OpenAPI document is not JSON"),
        }
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
        .add(M::GET, "/api/v1/runs", VIEWER, "Reconcile runs, newest first", get(cards::runs::runs))
        .add(M::GET, "/api/v1/cards", VIEWER, "A page of cards, filtered", get(cards::list::list))
        .add(M::GET, "/api/v1/cards/totals", VIEWER, "Counts and money of the filtered cards", get(cards::list::totals))
        .add(M::GET, "/api/v1/cards/groups", VIEWER, "The filtered cards grouped, with totals per group", get(cards::list::groups))
        .add(M::GET, "/api/v1/cards/export.csv", VIEWER, "The filtered cards as CSV", get(cards::export::export_csv))
        .add(M::POST, "/api/v1/cards/reopen", APPROVER, "Set cards back to open (undo a decision)", post(cards::actions::reopen))
        .add(M::GET, "/api/v1/cards/{key}", VIEWER, "One card in full: usage rows, trace, money, state, decisions, notes, write-back", get(cards::detail::detail))
        .add(M::GET, "/api/v1/cards/{key}/history", VIEWER, "The card in every run that had it", get(cards::history::history))
        .add(M::POST, "/api/v1/cards/{key}/plan", APPROVER, "Dry run: the exact PSA calls approving (or adjusting) the card would make", post(cards::actions::plan))
        .add(M::POST, "/api/v1/cards/{key}/notes", APPROVER, "Add a note to a card", post(cards::actions::add_note))
        .add(M::POST, "/api/v1/decisions", APPROVER, "Approve, adjust, dismiss, snooze or exclude cards (one or many)", post(cards::actions::decide))
        .add(M::GET, "/api/v1/tags", VIEWER, "Tags in use with their card counts", get(cards::actions::tags))
        .add(M::POST, "/api/v1/tags", APPROVER, "Tag cards", post(cards::actions::tag))
        .add(M::POST, "/api/v1/tags/remove", APPROVER, "Remove a tag from cards", post(cards::actions::untag))
        .add(M::GET, "/api/v1/outbox", VIEWER, "Write-backs and their progress", get(cards::runs::outbox))
        // History and audit.
        .add(M::GET, "/api/v1/history/companies/{company}", VIEWER, "A customer's cards month over month", get(cards::history::company_history))
        .add(M::GET, "/api/v1/history/lines/{line}", VIEWER, "A PSA line month over month", get(cards::history::line_history))
        .add(M::GET, "/api/v1/audit", VIEWER, "The audit log, newest first", get(admin::audit::audit))
        // Mappings.
        .add(M::GET, "/api/v1/companies", VIEWER, "The PSA's companies", get(admin::mappings::companies))
        .add(M::GET, "/api/v1/mappings/accounts", VIEWER, "Vendor accounts: mapped, unmapped, excluded, with suggestions", get(admin::mappings::accounts))
        .add(M::POST, "/api/v1/mappings/accounts", ADMIN, "Map a vendor account to a company, or exclude it", post(admin::mappings::map_account))
        .add(M::DELETE, "/api/v1/mappings/accounts/{vendor}/{account}", ADMIN, "Remove a manual mapping (matching decides again)", delete(admin::mappings::unmap_account))
        .add(M::GET, "/api/v1/mappings/skus", VIEWER, "The SKU table", get(admin::mappings::skus))
        .add(M::PUT, "/api/v1/mappings/skus", ADMIN, "Set a SKU table entry", put(admin::mappings::put_sku))
        .add(M::DELETE, "/api/v1/mappings/skus/{vendor}/{sku}/{product}", ADMIN, "Remove a SKU table entry", delete(admin::mappings::delete_sku))
        // Integrations, syncs, jobs, schedules, live events.
        .add(M::GET, "/api/v1/integrations", ADMIN, "Installed plugins: manifest, capabilities, config, secret names, sync health", get(admin::integrations::integrations))
        .add(M::GET, "/api/v1/integrations/{plugin}", ADMIN, "One installed plugin", get(admin::integrations::integration))
        .add(M::PUT, "/api/v1/integrations/{plugin}/secrets/{name}", ADMIN, "Set a plugin secret (write-only)", put(admin::integrations::set_secret))
        .add(M::GET, "/api/v1/sync/health", VIEWER, "Per source: the latest run and the latest successful run", get(admin::integrations::sync_health))
        .add(M::POST, "/api/v1/syncs", ADMIN, "Sync now (quick: sources; full: sources then reconcile) as a job", post(admin::jobs::sync_now))
        .add(M::POST, "/api/v1/reconcile", ADMIN, "Reconcile now, as a job", post(admin::jobs::reconcile_now))
        .add(M::GET, "/api/v1/jobs", VIEWER, "Jobs, newest first", get(admin::jobs::jobs))
        .add(M::GET, "/api/v1/jobs/{id}", VIEWER, "One job", get(admin::jobs::job))
        .add(M::GET, "/api/v1/schedules", VIEWER, "Schedules", get(admin::jobs::schedules))
        .add(M::PUT, "/api/v1/schedules/{name}", ADMIN, "Create or change a schedule", put(admin::jobs::put_schedule))
        .add(M::DELETE, "/api/v1/schedules/{name}", ADMIN, "Delete a schedule", delete(admin::jobs::delete_schedule))
        .add(M::GET, "/api/v1/events", VIEWER, "Live events (Server-Sent Events): sync progress, jobs, reconciles, write-backs", get(events::stream))
        // Rules.
        .add(M::GET, "/api/v1/rules", VIEWER, "The active rules and every version", get(admin::rules::rules))
        .add(M::GET, "/api/v1/rules/versions/{checksum}", VIEWER, "One rule version's source", get(admin::rules::rule_version))
        .add(M::POST, "/api/v1/rules/check", ADMIN, "Compile a draft and run its tests", post(admin::rules::check_rules))
        .add(M::POST, "/api/v1/rules/dry-run", ADMIN, "Reconcile current data under a draft and under the active rules; the cards that differ", post(admin::rules::dry_run_rules))
        .add(M::POST, "/api/v1/rules/explain", ADMIN, "Explain how rules map one SKU of one account", post(admin::rules::explain_rules))
        .add(M::POST, "/api/v1/rules/activate", ADMIN, "Validate and activate a new rule version", post(admin::rules::activate_rules))
        // Users and API tokens.
        .add(M::GET, "/api/v1/users", ADMIN, "Users", get(admin::users::users))
        .add(M::POST, "/api/v1/users", ADMIN, "Create a user (a generated password is shown once)", post(admin::users::create_user))
        .add(M::PATCH, "/api/v1/users/{username}", ADMIN, "Change a user's role, password or disabled flag", patch(admin::users::update_user))
        .add(M::GET, "/api/v1/tokens", ADMIN, "API tokens (never their values)", get(admin::tokens::tokens))
        .add(M::POST, "/api/v1/tokens", ADMIN, "Create an API token (its value is shown once)", post(admin::tokens::create_token))
        .add(M::DELETE, "/api/v1/tokens/{id}", ADMIN, "Revoke an API token", delete(admin::tokens::revoke_token))
}

/// Every route of the server with its access, in declaration order.
pub fn route_table() -> Vec<RouteInfo> {
    routes().table
}

/// The API's and the UI's routes over `state`, answering unknown paths
/// with a JSON 404 (the server adds the middleware around them).
pub fn router(state: AppState) -> Router {
    routes()
        .router
        .with_state(state.clone())
        .fallback(not_found)
        // The per-route guard finds the state here.
        .layer(axum::Extension(state))
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
    let doc = lock(&state.shared.openapi).clone();
    axum::Json(doc).into_response()
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
