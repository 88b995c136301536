//! Managing push integrations: create (the key is shown once), list,
//! revoke, set rate limits. The web UI's admin pages and
//! `trueup import push ...` call these; each change is audited.

use serde::Serialize;
use trueup_core::model::UsageSource;
use trueup_store::imports::{PushIntegration, PushIntegrationId};

use super::rate_limit::{DEFAULT_BURST, DEFAULT_REQUESTS_PER_MINUTE};
use crate::app::{App, AppError};
use crate::auth::random_token;
use crate::ingest::{MAX_NAME_LEN, ensure_vendor};

/// Prefix of push API keys, so they are recognisable in logs and secret
/// scanners.
pub const PUSH_KEY_PREFIX: &str = "tu_push_";

/// What an admin asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushIntegration {
    /// The vendor integration the key pushes for (created when missing,
    /// with [`UsageSource::Push`]).
    pub vendor: String,
    /// The vendor's display name, when the vendor integration is created
    /// (or to rename it).
    pub vendor_name: Option<String>,
    /// A name for people, e.g. "Acme Backup production key".
    pub name: String,
    /// Requests per minute (default [`DEFAULT_REQUESTS_PER_MINUTE`]).
    pub requests_per_minute: Option<u32>,
    /// Requests at once (default [`DEFAULT_BURST`]).
    pub burst: Option<u32>,
}

/// A created push integration and its key. The key is shown this once:
/// the store keeps only its SHA-256.
#[derive(Clone, Serialize)]
pub struct CreatedPushIntegration {
    /// The integration.
    pub integration: PushIntegration,
    /// The API key, for `Authorization: Bearer <key>`.
    pub api_key: String,
}

impl std::fmt::Debug for CreatedPushIntegration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPushIntegration")
            .field("integration", &self.integration)
            .field("api_key", &"(redacted)")
            .finish()
    }
}

fn limits_problem(requests_per_minute: u32, burst: u32) -> Option<String> {
    if requests_per_minute == 0 || burst == 0 {
        return Some(format!(
            "rate limits must allow at least one request (requests per minute {requests_per_minute}, burst {burst})"
        ));
    }
    None
}

/// Creates a push integration for `new.vendor` and returns its key (once).
///
/// # Errors
/// [`AppError::Invalid`] for a bad name or limits, or a vendor integration
/// that gets its usage from a connector or CSV imports; store errors.
pub async fn create_push_integration(
    app: &App,
    new: &NewPushIntegration,
    actor: &str,
) -> Result<CreatedPushIntegration, AppError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(AppError::Invalid(format!(
            "a push integration needs a name of 1 to {MAX_NAME_LEN} characters"
        )));
    }
    let requests_per_minute = new
        .requests_per_minute
        .unwrap_or(DEFAULT_REQUESTS_PER_MINUTE);
    let burst = new.burst.unwrap_or(DEFAULT_BURST);
    if let Some(problem) = limits_problem(requests_per_minute, burst) {
        return Err(AppError::Invalid(problem));
    }
    let vendor = ensure_vendor(
        app,
        &new.vendor,
        new.vendor_name.as_deref(),
        UsageSource::Push,
    )
    .await?;
    let api_key = format!("{PUSH_KEY_PREFIX}{}", random_token());
    let id = app
        .store()
        .create_push_integration(
            &vendor.id,
            name,
            &api_key,
            requests_per_minute,
            burst,
            app.now(),
        )
        .await?;
    let integration = find(app, id).await?;
    app.audit(
        actor,
        "push.create",
        &format!("push:{id}"),
        serde_json::json!({
            "vendor": vendor.id,
            "name": name,
            "requests_per_minute": requests_per_minute,
            "burst": burst,
        }),
    )
    .await;
    Ok(CreatedPushIntegration {
        integration,
        api_key,
    })
}

/// Every push integration, oldest first (revoked ones included).
///
/// # Errors
/// A store error.
pub async fn push_integrations(app: &App) -> Result<Vec<PushIntegration>, AppError> {
    Ok(app.store().push_integrations().await?)
}

async fn find(app: &App, id: PushIntegrationId) -> Result<PushIntegration, AppError> {
    push_integrations(app)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| AppError::NotFound(format!("no push integration has id {id}")))
}

/// Revokes a push integration's key: it no longer authenticates (already
/// stored usage stays). Idempotent.
///
/// # Errors
/// [`AppError::NotFound`]; store errors.
pub async fn revoke_push_integration(
    app: &App,
    id: PushIntegrationId,
    actor: &str,
) -> Result<PushIntegration, AppError> {
    find(app, id).await?;
    app.store().revoke_push_integration(id, app.now()).await?;
    app.audit(
        actor,
        "push.revoke",
        &format!("push:{id}"),
        serde_json::json!({}),
    )
    .await;
    find(app, id).await
}

/// Sets a push integration's rate limits; they apply to its next request.
///
/// # Errors
/// [`AppError::NotFound`]; [`AppError::Invalid`] for a zero limit.
pub async fn set_push_rate_limits(
    app: &App,
    id: PushIntegrationId,
    requests_per_minute: u32,
    burst: u32,
    actor: &str,
) -> Result<PushIntegration, AppError> {
    if let Some(problem) = limits_problem(requests_per_minute, burst) {
        return Err(AppError::Invalid(problem));
    }
    find(app, id).await?;
    app.store()
        .set_push_rate_limits(id, requests_per_minute, burst)
        .await?;
    app.audit(
        actor,
        "push.rate_limits",
        &format!("push:{id}"),
        serde_json::json!({ "requests_per_minute": requests_per_minute, "burst": burst }),
    )
    .await;
    find(app, id).await
}
