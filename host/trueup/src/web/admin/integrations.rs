//! Installed plugins: manifest, capabilities, grants, non-secret
//! settings, write-only secrets and the sync health of what they serve.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_plugin_host::PluginManifest;
use trueup_plugin_host::capabilities::Grants;
use trueup_plugin_host::manifest::{DeclaredCapabilities, MANIFEST_FILE};
use trueup_store::sync::SourceHealth;

use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult, JsonBody};

/// A declared secret and whether it is set (never its value).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretStatus {
    /// The secret's name in the manifest.
    pub name: String,
    /// Whether the admin granted it in `trueup.toml`.
    pub granted: bool,
    /// Whether a value is stored.
    pub set: bool,
    /// When it was last set.
    pub updated_at: Option<DateTime<Utc>>,
    /// By whom.
    pub updated_by: Option<String>,
}

/// An installed plugin.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Integration {
    /// The plugin id.
    pub id: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// What uses it: `psa`, or the vendor integration ids.
    pub used_as: Vec<String>,
    /// The manifest, when it can be read.
    #[schema(value_type = Option<Object>)]
    pub manifest: Option<PluginManifest>,
    /// Why the manifest cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_error: Option<String>,
    /// What the manifest declares.
    #[schema(value_type = Option<Object>)]
    pub declared: Option<DeclaredCapabilities>,
    /// What `trueup.toml` grants.
    #[schema(value_type = Object)]
    pub granted: Grants,
    /// Non-secret settings from `trueup.toml`.
    pub config: std::collections::BTreeMap<String, String>,
    /// Declared secrets: names and whether they are set, never values.
    pub secrets: Vec<SecretStatus>,
    /// The sync health of each source it serves.
    #[schema(value_type = Vec<Object>)]
    pub health: Vec<SourceHealth>,
}

async fn integration_of(state: &AppState, id: &str) -> ApiResult<Integration> {
    let app = &state.app;
    let entry = app
        .config()
        .plugins
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin {id:?} is configured")))?;
    let (manifest, manifest_error) = match PluginManifest::load(&entry.path.join(MANIFEST_FILE)) {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut used_as = Vec::new();
    if app.config().psa.as_ref().is_some_and(|p| p.plugin == id) {
        used_as.push("psa".to_owned());
    }
    used_as.extend(
        app.config()
            .vendors
            .iter()
            .filter(|v| v.plugin == id)
            .map(|v| v.id.clone()),
    );
    let stored = app.store().secret_names(Some(id)).await?;
    let declared_secrets: Vec<String> = manifest
        .as_ref()
        .map(|m| m.capabilities.secrets.clone())
        .unwrap_or_default();
    let secret_keys: Vec<String> = manifest
        .as_ref()
        .map(|m| {
            m.config
                .iter()
                .filter(|(_, k)| k.secret)
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    let secrets = declared_secrets
        .iter()
        .map(|name| {
            let info = stored.iter().find(|s| &s.name == name);
            SecretStatus {
                name: name.clone(),
                granted: entry.grants.secrets.contains(name),
                set: info.is_some(),
                updated_at: info.map(|i| i.updated_at),
                updated_by: info.map(|i| i.updated_by.clone()),
            }
        })
        .collect();
    let sources: Vec<&str> = used_as
        .iter()
        .map(|u| if u == "psa" { id } else { u.as_str() })
        .collect();
    let health = app
        .store()
        .sync_health()
        .await?
        .into_iter()
        .filter(|h| sources.contains(&h.source.as_str()))
        .collect();
    Ok(Integration {
        id: id.to_owned(),
        enabled: entry.enabled,
        used_as,
        declared: manifest.as_ref().map(|m| m.capabilities.clone()),
        manifest,
        manifest_error,
        granted: entry.grants.clone(),
        // Settings declared secret never show, even if put in the file.
        config: entry
            .config
            .iter()
            .filter(|(k, _)| !secret_keys.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        secrets,
        health,
    })
}

/// `GET /api/v1/integrations`.
#[utoipa::path(
    get,
    path = "/api/v1/integrations",
    tag = "integrations",
    responses((status = 200, description = "Installed plugins", body = Vec<Integration>)),
)]
pub async fn integrations(State(state): State<AppState>) -> ApiResult<Json<Vec<Integration>>> {
    let mut out = Vec::new();
    for id in state.app.config().plugins.keys() {
        out.push(integration_of(&state, id).await?);
    }
    Ok(Json(out))
}

/// `GET /api/v1/integrations/{plugin}`.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/{plugin}",
    tag = "integrations",
    params(("plugin" = String, Path, description = "The plugin id")),
    responses((status = 200, description = "The plugin", body = Integration), (status = 404, description = "No such plugin configured", body = crate::web::openapi::ErrorBody)),
)]
pub async fn integration(
    State(state): State<AppState>,
    Path(plugin): Path<String>,
) -> ApiResult<Json<Integration>> {
    Ok(Json(integration_of(&state, &plugin).await?))
}

/// A secret's new value.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value (stored encrypted; never shown again).
    pub value: String,
}

/// `PUT /api/v1/integrations/{plugin}/secrets/{name}`.
#[utoipa::path(
    put,
    path = "/api/v1/integrations/{plugin}/secrets/{name}",
    tag = "integrations",
    params(("plugin" = String, Path, description = "The plugin id"), ("name" = String, Path, description = "The secret name in the manifest")),
    request_body = SecretValue,
    responses((status = 204, description = "Stored (encrypted)"), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such plugin or secret", body = crate::web::openapi::ErrorBody)),
)]
pub async fn set_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((plugin, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<SecretValue>,
) -> ApiResult<StatusCode> {
    state
        .app
        .set_secret(&plugin, &name, &body.value, &caller.name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/sync/health`.
#[utoipa::path(
    get,
    path = "/api/v1/sync/health",
    tag = "integrations",
    responses((status = 200, description = "Per source: the latest run and the latest successful run", body = Vec<Object>)),
)]
pub async fn sync_health(State(state): State<AppState>) -> ApiResult<Json<Vec<SourceHealth>>> {
    Ok(Json(state.app.store().sync_health().await?))
}
