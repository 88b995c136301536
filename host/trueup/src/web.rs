//! The web server: the REST API under `/api/v1` (documented in
//! `docs/api.md` and by the OpenAPI document at `/api/openapi.json`), the
//! UI's pages and assets, `/healthz`, `/readyz` and Prometheus `/metrics`.
//!
//! Every route is declared once, in [`route_table`]'s builder, with the
//! access it needs ([`Access`]) and its handler's `#[utoipa::path]`
//! annotation; the guard middleware of each route enforces the access, and
//! the OpenAPI document is generated from the same declarations
//! ([`openapi`]), so a route cannot exist undocumented.
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
pub mod openapi;
pub mod pages;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::routes;

use crate::app::{App, AppEvent};
use crate::auth::Role;
pub use error::{ApiError, ApiResult};
use openapi::Routes;

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
    /// A push API route: the handler checks the push integration's key
    /// itself (`crate::ingest::push`), not a user session.
    PushKey,
}

/// One route of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// The HTTP method.
    #[serde(serialize_with = "method_text")]
    pub method: Method,
    /// The path as axum matches it (`{param}` for a segment,
    /// `{*rest}` for the rest), from the handler's annotation.
    pub path: String,
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
    /// Whether the push API is served beside this one (then the served
    /// OpenAPI document describes it too).
    pub(crate) push_api: AtomicBool,
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
                push_api: AtomicBool::new(false),
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

    /// Notes that the push API is served beside this API: the document at
    /// `/api/openapi.json` then describes it too.
    pub fn serve_push_api_document(&self) {
        self.shared.push_api.store(true, Ordering::Relaxed);
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

const VIEWER: Access = Access::Role(Role::Viewer);
const APPROVER: Access = Access::Role(Role::Approver);
const ADMIN: Access = Access::Role(Role::Admin);

/// The route table: each handler's `#[utoipa::path]` annotation gives the
/// method, path, parameters and answers; this gives who may call it and
/// what it does in a line.
#[rustfmt::skip]
pub(crate) fn routes() -> Routes<AppState> {
    Routes::new()
        // Health and metrics.
        .add(Access::Public, "Liveness: the process answers", routes!(health))
        .add(Access::Public, "Readiness: the store answers", routes!(ready))
        .add(VIEWER, "Prometheus metrics (text exposition)", routes!(metrics::exposition))
        .add(VIEWER, "This API's OpenAPI 3.1 document", routes!(openapi_document))
        // Pages and assets.
        .add(Access::Public, "Redirects to the cards page or the login page", routes!(pages::root))
        .add(Access::Public, "The login page", routes!(pages::login))
        .add(Access::Public, "Static CSS and JavaScript (no data)", routes!(pages::asset))
        .add(Access::Page, "The UI (cards page)", routes!(pages::app))
        .add(Access::Page, "The UI's pages", routes!(pages::app_page))
        // Session.
        .add(Access::Public, "Log in (sets the session cookie; returns the CSRF token)", routes!(auth::login))
        .add(VIEWER, "Who is logged in, with the CSRF token", routes!(auth::me))
        .add(VIEWER, "Log out", routes!(auth::logout))
        // Runs and cards.
        .add(VIEWER, "Reconcile runs, newest first", routes!(cards::runs::runs))
        .add(VIEWER, "What a run left out or noted, by reason, with counts per reason", routes!(cards::runs::exclusions))
        .add(VIEWER, "A page of cards, filtered", routes!(cards::list::list))
        .add(VIEWER, "Counts and money of the filtered cards", routes!(cards::list::totals))
        .add(VIEWER, "The filtered cards grouped, with totals per group", routes!(cards::list::groups))
        .add(VIEWER, "The filtered cards as CSV", routes!(cards::export::export_csv))
        .add(APPROVER, "Set cards back to open (undo a decision)", routes!(cards::actions::reopen))
        .add(VIEWER, "One card in full: usage rows, trace, money, state, decisions, notes, write-back", routes!(cards::detail::detail))
        .add(VIEWER, "The card in every run that had it", routes!(cards::history::history))
        .add(APPROVER, "Dry run: the exact PSA calls approving (or adjusting) the card would make", routes!(cards::actions::plan))
        .add(APPROVER, "Add a note to a card", routes!(cards::actions::add_note))
        .add(APPROVER, "Approve, adjust, dismiss, snooze or exclude cards (one or many)", routes!(cards::actions::decide))
        .add(APPROVER, "What a decision would write to the PSA, per card with totals, without recording or sending anything", routes!(cards::actions::preview))
        .add(APPROVER, "Stage an effective date and/or quantity on cards (nothing is written to the PSA until approval)", routes!(cards::actions::stage))
        .add(APPROVER, "Drop the staged change of cards", routes!(cards::actions::unstage))
        .add(VIEWER, "Tags in use with their card counts", routes!(cards::actions::tags))
        .add(APPROVER, "Tag cards", routes!(cards::actions::tag))
        .add(APPROVER, "Remove a tag from cards", routes!(cards::actions::untag))
        .add(VIEWER, "Write-backs and their progress", routes!(cards::runs::outbox))
        .add(VIEWER, "A write-back's review: what was sent, what the PSA stored, the journalled writes", routes!(cards::review::review))
        .add(APPROVER, "Accept what the PSA stored for a write-back that needs review", routes!(cards::review::accept))
        .add(APPROVER, "Send a write-back that needs review again (explicitly)", routes!(cards::review::retry))
        .add(APPROVER, "Cancel a write-back that has not run", routes!(cards::review::cancel))
        // History and audit.
        .add(VIEWER, "A customer's cards month over month", routes!(cards::history::company_history))
        .add(VIEWER, "A PSA line month over month", routes!(cards::history::line_history))
        .add(VIEWER, "The audit log, newest first", routes!(admin::audit::audit))
        // Mappings.
        .add(VIEWER, "The PSA's companies", routes!(admin::mappings::companies))
        .add(VIEWER, "Vendor accounts: mapped, unmapped, excluded, with suggestions", routes!(admin::mappings::accounts))
        .add(ADMIN, "Map a vendor account to a company, or exclude it", routes!(admin::mappings::map_account))
        .add(ADMIN, "Remove a manual mapping (matching decides again)", routes!(admin::mappings::unmap_account))
        .add(VIEWER, "The SKU table", routes!(admin::mappings::skus))
        .add(ADMIN, "Set a SKU table entry", routes!(admin::mappings::put_sku))
        .add(ADMIN, "Remove a SKU table entry", routes!(admin::mappings::delete_sku))
        // Integrations, syncs, jobs, schedules, live events.
        .add(ADMIN, "Installed plugins: manifest, capabilities, config, secret names, sync health", routes!(admin::integrations::integrations))
        .add(ADMIN, "One installed plugin", routes!(admin::integrations::integration))
        .add(ADMIN, "Set a plugin secret (write-only)", routes!(admin::integrations::set_secret))
        .add(VIEWER, "Per source: the latest run and the latest successful run", routes!(admin::integrations::sync_health))
        .add(ADMIN, "Sync now (quick: sources; full: sources then reconcile) as a job", routes!(admin::jobs::sync_now))
        .add(ADMIN, "Reconcile now, as a job", routes!(admin::jobs::reconcile_now))
        .add(VIEWER, "Jobs, newest first", routes!(admin::jobs::jobs))
        .add(VIEWER, "One job", routes!(admin::jobs::job))
        .add(VIEWER, "Schedules", routes!(admin::jobs::schedules))
        .add(ADMIN, "Create or change a schedule", routes!(admin::jobs::put_schedule))
        .add(ADMIN, "Delete a schedule", routes!(admin::jobs::delete_schedule))
        .add(VIEWER, "Live events (Server-Sent Events): sync progress, jobs, reconciles, write-backs", routes!(events::stream))
        // Rules.
        .add(VIEWER, "The active rules and every version", routes!(admin::rules::rules))
        .add(VIEWER, "One rule version's source", routes!(admin::rules::rule_version))
        .add(ADMIN, "Compile a draft and run its tests", routes!(admin::rules::check_rules))
        .add(ADMIN, "Reconcile current data under a draft and under the active rules; the cards that differ", routes!(admin::rules::dry_run_rules))
        .add(ADMIN, "Explain how rules map one SKU of one account", routes!(admin::rules::explain_rules))
        .add(ADMIN, "Validate and activate a new rule version", routes!(admin::rules::activate_rules))
        // Users and API tokens.
        .add(ADMIN, "Users", routes!(admin::users::users))
        .add(ADMIN, "Create a user (a generated password is shown once)", routes!(admin::users::create_user))
        .add(ADMIN, "Change a user's role, password or disabled flag", routes!(admin::users::update_user))
        .add(ADMIN, "API tokens (never their values)", routes!(admin::tokens::tokens))
        .add(ADMIN, "Create an API token (its value is shown once)", routes!(admin::tokens::create_token))
        .add(ADMIN, "Revoke an API token", routes!(admin::tokens::revoke_token))
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

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; the API is described at /api/openapi.json".into())
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Status)))]
async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The store answers: `ready`", body = Status),
    (status = 503, description = "The store does not answer: `store unreachable`", body = Status),
))]
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

/// A health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Status {
    /// `ok`, `ready` or `store unreachable`.
    status: String,
}

/// `GET /api/openapi.json`: generated once per process ([`openapi::document`]).
#[utoipa::path(get, path = "/api/openapi.json", tag = "health", responses(
    (status = 200, description = "This document", content_type = "application/json", body = Object),
))]
async fn openapi_document(State(state): State<AppState>) -> Response {
    let with_push = state.shared.push_api.load(Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(with_push),
    )
        .into_response()
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
                seen.insert((route.method.clone(), route.path.clone())),
                "{} {} twice",
                route.method,
                route.path
            );
        }
        let public: Vec<&str> = table
            .iter()
            .filter(|r| r.access == Access::Public)
            .map(|r| r.path.as_str())
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
}
