//! Administration: integrations (plugins, grants, write-only secrets,
//! sync health, sync now), jobs and schedules, account and SKU mappings,
//! rules (check, test, dry-run, explain, activate), users, API tokens and
//! the audit log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trueup_core::card::CardTotals;
use trueup_core::mapping::SkuMapEntry;
use trueup_core::matching::Suggestion;
use trueup_core::model::{
    AccountId, AccountMappingStatus, CompanyId, CompanyStatus, MappingMethod, VendorId,
};
use trueup_core::reconcile::reconcile;
use trueup_plugin_host::PluginManifest;
use trueup_plugin_host::capabilities::Grants;
use trueup_plugin_host::manifest::{DeclaredCapabilities, MANIFEST_FILE};
use trueup_rules::diff::{CardDiff, diff_outputs};
use trueup_rules::{CompiledRules, RuleVersion};
use trueup_store::audit::{AuditEntry, AuditFilter};
use trueup_store::auth::{ApiToken, ApiTokenId};
use trueup_store::jobs::{Job, JobId, JobStatus, Schedule as StoredSchedule};
use trueup_store::mappings::{MappingOverride, StoredSkuEntry};
use trueup_store::sync::SourceHealth;

use super::AppState;
use super::auth::{Caller, role_of, stored_role};
use super::cards::ListQuery;
use super::error::{ApiError, ApiResult, JsonBody, QueryParams};
use crate::auth::{MIN_PASSWORD_LEN, Role, hash_password, new_api_token, random_token};
use crate::jobs::{self, JobSpec};

// ------------------------------------------------------------ integrations

/// A declared secret and whether it is set (never its value).
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct Integration {
    /// The plugin id.
    pub id: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// What uses it: `psa`, or the vendor integration ids.
    pub used_as: Vec<String>,
    /// The manifest, when it can be read.
    pub manifest: Option<PluginManifest>,
    /// Why the manifest cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_error: Option<String>,
    /// What the manifest declares.
    pub declared: Option<DeclaredCapabilities>,
    /// What `trueup.toml` grants.
    pub granted: Grants,
    /// Non-secret settings from `trueup.toml`.
    pub config: std::collections::BTreeMap<String, String>,
    /// Declared secrets: names and whether they are set, never values.
    pub secrets: Vec<SecretStatus>,
    /// The sync health of each source it serves.
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
pub async fn integrations(State(state): State<AppState>) -> ApiResult<Json<Vec<Integration>>> {
    let mut out = Vec::new();
    for id in state.app.config().plugins.keys() {
        out.push(integration_of(&state, id).await?);
    }
    Ok(Json(out))
}

/// `GET /api/v1/integrations/{plugin}`.
pub async fn integration(
    State(state): State<AppState>,
    Path(plugin): Path<String>,
) -> ApiResult<Json<Integration>> {
    Ok(Json(integration_of(&state, &plugin).await?))
}

/// A secret's new value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value (stored encrypted; never shown again).
    pub value: String,
}

/// `PUT /api/v1/integrations/{plugin}/secrets/{name}`.
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
pub async fn sync_health(State(state): State<AppState>) -> ApiResult<Json<Vec<SourceHealth>>> {
    Ok(Json(state.app.store().sync_health().await?))
}

/// "Sync now".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// `quick`: sync the sources; `full` (default): sync them, then
    /// reconcile.
    #[serde(default)]
    pub mode: Option<String>,
    /// Only this source (PSA plugin id or vendor integration id); `mode`
    /// is then ignored.
    #[serde(default)]
    pub source: Option<String>,
}

/// A job enqueued.
#[derive(Debug, Serialize)]
pub struct Enqueued {
    /// The job.
    pub job: Job,
}

async fn enqueue(
    state: &AppState,
    spec: &JobSpec,
    by: &str,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    let id = jobs::enqueue(&state.app, spec, by).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Enqueued {
            job: state.app.store().job(id).await?,
        }),
    ))
}

/// `POST /api/v1/syncs`.
pub async fn sync_now(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<SyncRequest>,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    let spec = match (&request.source, request.mode.as_deref()) {
        (Some(source), _) => JobSpec::SyncSource {
            source: source.clone(),
        },
        (None, Some("quick")) => JobSpec::SyncQuick,
        (None, Some("full") | None) => JobSpec::SyncFull,
        (None, Some(other)) => {
            return Err(ApiError::BadRequest(format!(
                "mode {other:?} is not quick or full"
            )));
        }
    };
    enqueue(&state, &spec, &caller.name).await
}

/// `POST /api/v1/reconcile`.
pub async fn reconcile_now(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    enqueue(&state, &JobSpec::Reconcile, &caller.name).await
}

/// `GET /api/v1/jobs`.
pub async fn jobs(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<Job>>> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            serde_json::from_value::<JobStatus>(serde_json::Value::String(s.to_owned())).map_err(
                |_| {
                    ApiError::BadRequest(format!(
                        "{s:?} is not a job status (queued, running, done, failed)"
                    ))
                },
            )
        })
        .transpose()?;
    Ok(Json(state.app.store().jobs(status, query.limit()).await?))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn job(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Job>> {
    Ok(Json(state.app.store().job(JobId(id)).await?))
}

/// `GET /api/v1/schedules`.
pub async fn schedules(State(state): State<AppState>) -> ApiResult<Json<Vec<StoredSchedule>>> {
    Ok(Json(state.app.store().schedules().await?))
}

/// A schedule to create or change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// `sync.full`, `sync.quick`, `sync.source` or `reconcile`.
    pub kind: String,
    /// When, e.g. `"monthly on day 28 at 18:00"` (the MSP's time zone).
    pub spec: String,
    /// For `sync.source`: the source.
    #[serde(default)]
    pub source: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PUT /api/v1/schedules/{name}`.
pub async fn put_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> ApiResult<Json<StoredSchedule>> {
    if name.trim().is_empty() {
        return Err(ApiError::BadRequest("a schedule needs a name".into()));
    }
    let payload = match &request.source {
        Some(source) => serde_json::json!({ "source": source }),
        None => serde_json::json!({}),
    };
    let spec = JobSpec::from_stored(0, &request.kind, &payload)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = state.app.now();
    let next_run_at =
        jobs::next_run(&state.app, &request.spec, now).map_err(ApiError::BadRequest)?;
    let schedule = StoredSchedule {
        name: name.clone(),
        kind: spec.kind().to_owned(),
        payload: spec.payload(),
        spec: crate::schedule::Schedule::parse(&request.spec)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .to_string(),
        enabled: request.enabled.unwrap_or(true),
        next_run_at,
        last_enqueued_at: None,
        last_job: None,
    };
    state.app.store().put_schedule(&schedule, now).await?;
    state
        .app
        .audit(
            &caller.name,
            "schedule.put",
            &format!("schedule:{name}"),
            serde_json::json!({ "kind": schedule.kind, "spec": schedule.spec, "enabled": schedule.enabled }),
        )
        .await;
    let stored = state
        .app
        .store()
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::Internal(format!("schedule {name:?} vanished")))?;
    Ok(Json(stored))
}

/// `DELETE /api/v1/schedules/{name}`.
pub async fn delete_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.app.store().delete_schedule(&name).await? {
        return Err(ApiError::NotFound(format!("no schedule {name:?}")));
    }
    state
        .app
        .audit(
            &caller.name,
            "schedule.delete",
            &format!("schedule:{name}"),
            serde_json::json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- mappings

/// A PSA company.
#[derive(Debug, Serialize)]
pub struct CompanyView {
    /// The PSA's id.
    pub id: CompanyId,
    /// Its name.
    pub name: String,
    /// Its short identifier.
    pub identifier: Option<String>,
    /// Its domains.
    pub domains: Vec<String>,
    /// Active or not.
    pub status: CompanyStatus,
}

/// `GET /api/v1/companies`.
pub async fn companies(State(state): State<AppState>) -> ApiResult<Json<Vec<CompanyView>>> {
    Ok(Json(
        state
            .app
            .store()
            .psa_state()
            .await?
            .data
            .companies
            .into_iter()
            .map(|c| CompanyView {
                id: c.id,
                name: c.name,
                identifier: c.identifier,
                domains: c.domains,
                status: c.status,
            })
            .collect(),
    ))
}

/// A vendor account's mapping.
#[derive(Debug, Serialize)]
pub struct AccountView {
    /// The vendor integration.
    pub vendor: VendorId,
    /// The account.
    pub account: AccountId,
    /// Its name, when a sync listed it.
    pub name: Option<String>,
    /// `mapped`, `unmapped` or `excluded`.
    pub status: &'static str,
    /// The company, when mapped.
    pub company: Option<CompanyId>,
    /// How it was decided.
    pub method: MappingMethod,
    /// Why.
    pub reason: String,
    /// Candidates not applied, with score and reason (accept one with
    /// `POST /api/v1/mappings/accounts`).
    pub suggestions: Vec<Suggestion>,
    /// Whether a person decided it (a manual mapping or exclusion).
    pub manual: bool,
}

/// Vendor accounts and their counts.
#[derive(Debug, Serialize)]
pub struct AccountsAnswer {
    /// Accounts per status.
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    /// The accounts (filtered).
    pub accounts: Vec<AccountView>,
}

/// `?status=&vendor=` of the accounts list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsQuery {
    /// mapped, unmapped or excluded.
    pub status: Option<String>,
    /// One vendor integration.
    pub vendor: Option<String>,
}

fn status_word(status: &AccountMappingStatus) -> &'static str {
    match status {
        AccountMappingStatus::Mapped(_) => "mapped",
        AccountMappingStatus::Unmapped => "unmapped",
        AccountMappingStatus::Excluded => "excluded",
    }
}

/// `GET /api/v1/mappings/accounts`: the last match's decisions (manual
/// mappings included), with the account names of the last syncs.
pub async fn accounts(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<AccountsQuery>,
) -> ApiResult<Json<AccountsAnswer>> {
    let store = state.app.store();
    let names: std::collections::HashMap<(String, String), String> = store
        .vendor_accounts(None)
        .await?
        .into_iter()
        .map(|a| ((a.vendor.to_string(), a.id.to_string()), a.name))
        .collect();
    let overrides: std::collections::HashSet<(String, String)> = store
        .mapping_overrides()
        .await?
        .into_iter()
        .map(|o| (o.vendor.to_string(), o.account.to_string()))
        .collect();
    let mut counts =
        std::collections::BTreeMap::from([("mapped", 0), ("unmapped", 0), ("excluded", 0)]);
    let mut accounts = Vec::new();
    for outcome in store.match_results().await? {
        let m = outcome.mapping;
        let status = status_word(&m.status);
        *counts.entry(status).or_default() += 1;
        if query.status.as_deref().is_some_and(|s| s != status)
            || query
                .vendor
                .as_deref()
                .is_some_and(|v| v != m.vendor.as_str())
        {
            continue;
        }
        let key = (m.vendor.to_string(), m.account.to_string());
        accounts.push(AccountView {
            name: names.get(&key).cloned(),
            manual: overrides.contains(&key),
            company: match &m.status {
                AccountMappingStatus::Mapped(c) => Some(c.clone()),
                _ => None,
            },
            status,
            vendor: m.vendor,
            account: m.account,
            method: m.method,
            reason: m.reason,
            suggestions: outcome.suggestions,
        });
    }
    Ok(Json(AccountsAnswer { counts, accounts }))
}

/// A manual mapping or exclusion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapAccount {
    /// The vendor integration.
    pub vendor: String,
    /// The account.
    pub account: String,
    /// The company to bill it to; `null` excludes the account.
    pub company: Option<String>,
    /// Why (kept for the audit trail).
    pub reason: String,
}

/// `POST /api/v1/mappings/accounts` (also "accept a suggestion": pass its
/// company). Takes effect at the next reconcile.
pub async fn map_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<MapAccount>,
) -> ApiResult<Json<MappingOverride>> {
    let o = MappingOverride {
        vendor: VendorId::from(request.vendor.as_str()),
        account: AccountId::from(request.account.as_str()),
        company: request.company.map(CompanyId::from),
        reason: request.reason,
        set_by: caller.name.clone(),
        set_at: state.app.now(),
    };
    state.app.store().set_mapping_override(&o).await?;
    state
        .app
        .audit(
            &caller.name,
            "mapping.set",
            &format!("account:{}/{}", o.vendor, o.account),
            serde_json::json!({ "company": o.company, "reason": o.reason }),
        )
        .await;
    Ok(Json(o))
}

/// `DELETE /api/v1/mappings/accounts/{vendor}/{account}`.
pub async fn unmap_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((vendor, account)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let removed = state
        .app
        .store()
        .clear_mapping_override(
            &VendorId::from(vendor.as_str()),
            &AccountId::from(account.as_str()),
        )
        .await?;
    if !removed {
        return Err(ApiError::NotFound(format!(
            "account {vendor}/{account} has no manual mapping"
        )));
    }
    state
        .app
        .audit(
            &caller.name,
            "mapping.clear",
            &format!("account:{vendor}/{account}"),
            serde_json::json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/mappings/skus`.
pub async fn skus(State(state): State<AppState>) -> ApiResult<Json<Vec<StoredSkuEntry>>> {
    Ok(Json(state.app.store().sku_entries().await?))
}

/// A SKU table entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuRequest {
    /// The vendor integration.
    pub vendor: String,
    /// The vendor's SKU.
    pub sku: String,
    /// The PSA product identifier.
    pub product: String,
    /// Units of product per unit of usage (default 1).
    #[serde(default, with = "trueup_core::model::amount::option")]
    pub multiplier: Option<Decimal>,
}

/// `PUT /api/v1/mappings/skus`.
pub async fn put_sku(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<SkuRequest>,
) -> ApiResult<StatusCode> {
    let entry = SkuMapEntry {
        vendor: VendorId::from(request.vendor.as_str()),
        sku: request.sku.as_str().into(),
        product: request.product.as_str().into(),
        multiplier: request.multiplier.unwrap_or(Decimal::ONE),
    };
    state
        .app
        .store()
        .put_sku_entry(&entry, &caller.name, state.app.now())
        .await?;
    state
        .app
        .audit(
            &caller.name,
            "sku.put",
            &format!("sku:{}/{}", request.vendor, request.sku),
            serde_json::json!({ "product": request.product, "multiplier": entry.multiplier }),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/mappings/skus/{vendor}/{sku}/{product}`.
pub async fn delete_sku(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((vendor, sku, product)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    if !state
        .app
        .store()
        .delete_sku_entry(&VendorId::from(vendor.as_str()), &sku, &product)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no SKU table entry {vendor}/{sku} → {product}"
        )));
    }
    state
        .app
        .audit(
            &caller.name,
            "sku.delete",
            &format!("sku:{vendor}/{sku}"),
            serde_json::json!({ "product": product }),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------- rules

/// A rule version as listed.
#[derive(Debug, Serialize)]
pub struct RuleVersionView {
    /// SHA-256 of the source.
    pub checksum: String,
    /// Who saved it.
    pub author: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Whether it is the active version.
    pub active: bool,
}

/// The active rules.
#[derive(Debug, Serialize)]
pub struct ActiveRules {
    /// SHA-256 of the source.
    pub checksum: String,
    /// The file name the version was saved under.
    pub file: String,
    /// The Rhai source.
    pub source: String,
    /// The tests saved with it.
    pub tests: Option<String>,
    /// When it was activated.
    pub activated_at: DateTime<Utc>,
    /// By whom.
    pub activated_by: String,
}

/// The rules page.
#[derive(Debug, Serialize)]
pub struct RulesAnswer {
    /// The active version.
    pub active: Option<ActiveRules>,
    /// Every version, newest first.
    pub versions: Vec<RuleVersionView>,
}

/// `GET /api/v1/rules`.
pub async fn rules(State(state): State<AppState>) -> ApiResult<Json<RulesAnswer>> {
    let store = state.app.store();
    let active = store.active_rule_version().await?;
    let active_checksum = active.as_ref().map(|a| a.version.checksum.clone());
    let versions = store
        .rule_versions()
        .await?
        .into_iter()
        .map(|v| RuleVersionView {
            active: Some(&v.checksum) == active_checksum.as_ref(),
            checksum: v.checksum,
            author: v.author,
            created_at: v.created_at,
        })
        .collect();
    let active = active.map(|a| ActiveRules {
        file: a
            .version
            .validation
            .get("file")
            .and_then(|f| f.as_str())
            .unwrap_or("rules/active.rhai")
            .to_owned(),
        tests: a
            .version
            .validation
            .get("tests")
            .and_then(|t| t.as_str())
            .map(str::to_owned),
        checksum: a.version.checksum,
        source: a.version.source,
        activated_at: a.activated_at,
        activated_by: a.activated_by,
    });
    Ok(Json(RulesAnswer { active, versions }))
}

/// `GET /api/v1/rules/versions/{checksum}`.
pub async fn rule_version(
    State(state): State<AppState>,
    Path(checksum): Path<String>,
) -> ApiResult<Json<trueup_store::rules::RuleVersion>> {
    state
        .app
        .store()
        .rule_version(&checksum)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no rule version {checksum}")))
}

/// A draft of the rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesDraft {
    /// The Rhai source.
    pub source: String,
    /// Test cases (TOML, as `NAME.tests.toml`).
    #[serde(default)]
    pub tests: Option<String>,
    /// The file name errors and traces show (default `rules/draft.rhai`).
    #[serde(default)]
    pub file: Option<String>,
}

/// Longest rule source or tests accepted.
pub const MAX_RULES_BYTES: usize = 1024 * 1024;

impl RulesDraft {
    fn version(&self, by: &str, at: DateTime<Utc>) -> ApiResult<RuleVersion> {
        if self.source.len() > MAX_RULES_BYTES
            || self
                .tests
                .as_ref()
                .is_some_and(|t| t.len() > MAX_RULES_BYTES)
        {
            return Err(ApiError::BadRequest(format!(
                "rules and tests are at most {MAX_RULES_BYTES} bytes each"
            )));
        }
        let file = self
            .file
            .clone()
            .unwrap_or_else(|| "rules/draft.rhai".into());
        Ok(RuleVersion::new(
            &file,
            &self.source,
            self.tests.clone(),
            by,
            at,
        ))
    }
}

/// The outcome of checking a draft.
#[derive(Debug, Serialize)]
pub struct CheckAnswer {
    /// The version label (`rules/<checksum>`).
    pub version: String,
    /// Rules declared.
    pub rules: usize,
    /// Service declarations.
    pub services: usize,
    /// Rhai closures.
    pub closures: usize,
    /// Vendors the rules name.
    pub vendors: Vec<String>,
    /// Warnings (file:line:col).
    pub warnings: Vec<String>,
    /// What the script printed.
    pub printed: Vec<String>,
    /// The tests' outcome, when tests were given.
    pub tests: Option<TestsAnswer>,
}

/// A test run.
#[derive(Debug, Serialize)]
pub struct TestsAnswer {
    /// Whether every case passed.
    pub passed: bool,
    /// Cases run.
    pub cases: usize,
    /// Cases failed.
    pub failed: usize,
    /// The report with a diff per failing expectation.
    pub report: String,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("rules task: {e}")))?
}

/// `POST /api/v1/rules/check`: compile the draft and run its tests.
pub async fn check_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(draft): JsonBody<RulesDraft>,
) -> ApiResult<Json<CheckAnswer>> {
    let version = draft.version(&caller.name, state.app.now())?;
    blocking(move || {
        let rules = Arc::new(
            CompiledRules::compile(&version).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        );
        let tests = match &version.tests {
            Some(text) => {
                let file = format!("{}.tests.toml", version.file.trim_end_matches(".rhai"));
                let report = trueup_rules::cases::run_tests(&rules, &file, text)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                Some(TestsAnswer {
                    passed: report.passed(),
                    cases: report.cases.len(),
                    failed: report.failed(),
                    report: report.to_string(),
                })
            }
            None => None,
        };
        Ok(Json(CheckAnswer {
            version: rules.label().to_owned(),
            rules: rules.rule_count(),
            services: rules.service_count(),
            closures: rules.closure_count(),
            vendors: rules.vendors().into_iter().map(str::to_owned).collect(),
            warnings: rules.warnings().iter().map(ToString::to_string).collect(),
            printed: rules.printed().to_vec(),
            tests,
        }))
    })
    .await
}

/// The draft's effect on current data.
#[derive(Debug, Serialize)]
pub struct DryRunAnswer {
    /// The reconcile date.
    pub as_of: NaiveDate,
    /// Cards added, removed and changed by the draft.
    pub diff: CardDiff,
    /// Totals under the active rules.
    pub before: CardTotals,
    /// Totals under the draft.
    pub after: CardTotals,
}

/// `POST /api/v1/rules/dry-run`.
pub async fn dry_run_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(draft): JsonBody<RulesDraft>,
) -> ApiResult<Json<DryRunAnswer>> {
    let version = draft.version(&caller.name, state.app.now())?;
    let active = state.app.active_rules().await?;
    let as_of = state.app.today();
    let (snapshot, outcomes) = state.app.current_snapshot(as_of).await?;
    blocking(move || {
        let draft = Arc::new(
            CompiledRules::compile(&version).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        );
        let mappings: Vec<_> = outcomes.iter().map(|o| o.mapping.clone()).collect();
        let run = |rules: &Arc<CompiledRules>| {
            let mapper = rules.mapper(as_of);
            reconcile(&snapshot.reconcile_input(as_of, &mappings, &outcomes, &mapper))
        };
        let before = run(&active.compiled);
        let after = run(&draft);
        Ok(Json(DryRunAnswer {
            as_of,
            diff: diff_outputs(&before, &after),
            before: before.totals,
            after: after.totals,
        }))
    })
    .await
}

/// What to explain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The vendor integration (needed when the account id is not unique).
    #[serde(default)]
    pub vendor: Option<String>,
    /// The vendor account.
    pub account: String,
    /// The SKU.
    pub sku: String,
    /// A draft to explain instead of the active rules.
    #[serde(default)]
    pub source: Option<String>,
}

/// An explanation.
#[derive(Debug, Serialize)]
pub struct ExplainAnswer {
    /// The explanation as text: every distinct decision with its trace,
    /// and the policy of each product it maps to.
    pub text: String,
}

/// `POST /api/v1/rules/explain`.
pub async fn explain_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<ExplainRequest>,
) -> ApiResult<Json<ExplainAnswer>> {
    let rules = match &request.source {
        Some(source) => {
            let version = RulesDraft {
                source: source.clone(),
                tests: None,
                file: None,
            }
            .version(&caller.name, state.app.now())?;
            blocking(move || {
                CompiledRules::compile(&version)
                    .map(Arc::new)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))
            })
            .await?
        }
        None => state.app.active_rules().await?.compiled,
    };
    let as_of = state.app.today();
    let (snapshot, outcomes) = state.app.current_snapshot(as_of).await?;
    blocking(move || {
        let mappings: Vec<_> = outcomes.iter().map(|o| o.mapping.clone()).collect();
        let mapper = rules.mapper(as_of);
        let explanation = trueup_rules::explain::explain(
            &mapper,
            &snapshot,
            &mappings,
            request.vendor.as_deref(),
            &request.account,
            &request.sku,
        )
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
        Ok(Json(ExplainAnswer {
            text: explanation.to_string(),
        }))
    })
    .await
}

/// An activated version.
#[derive(Debug, Serialize)]
pub struct Activated {
    /// Its checksum.
    pub checksum: String,
}

/// `POST /api/v1/rules/activate`: validate (compile, declarations, tests)
/// and activate; the next reconcile uses it.
pub async fn activate_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(draft): JsonBody<RulesDraft>,
) -> ApiResult<Json<Activated>> {
    let version = draft.version(&caller.name, state.app.now())?;
    let checksum = state
        .app
        .activate_rules(
            &version.file,
            &version.source,
            version.tests.clone(),
            &caller.name,
        )
        .await?;
    Ok(Json(Activated { checksum }))
}

// ---------------------------------------------------------- users, tokens

/// A user (never the password hash).
#[derive(Debug, Serialize)]
pub struct UserView {
    /// Its id.
    pub id: i64,
    /// The login name.
    pub username: String,
    /// The role.
    pub role: Role,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<trueup_store::auth::User> for UserView {
    fn from(u: trueup_store::auth::User) -> Self {
        Self {
            id: u.id.0,
            username: u.username,
            role: role_of(u.role),
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// `GET /api/v1/users`.
pub async fn users(State(state): State<AppState>) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(
        state
            .app
            .store()
            .users()
            .await?
            .into_iter()
            .map(UserView::from)
            .collect(),
    ))
}

/// A new user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The login name.
    pub username: String,
    /// The role.
    pub role: Role,
    /// The password (at least 12 characters); omitted: one is generated
    /// and shown once.
    #[serde(default)]
    pub password: Option<String>,
}

/// A created user.
#[derive(Debug, Serialize)]
pub struct CreatedUser {
    /// The user.
    pub user: UserView,
    /// The generated password, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

async fn hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("hash task: {e}")))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `POST /api/v1/users`.
pub async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<NewUser>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    let username = request.username.trim().to_owned();
    if username.is_empty() || username.len() > 64 || username.chars().any(char::is_whitespace) {
        return Err(ApiError::BadRequest(
            "a username is 1 to 64 characters without spaces".into(),
        ));
    }
    let (password, generated) = match request.password {
        Some(p) => (p, None),
        None => {
            let p = random_token();
            (p.clone(), Some(p))
        }
    };
    let hashed = hash(password).await?;
    let store = state.app.store();
    store
        .create_user(
            &username,
            &hashed,
            stored_role(request.role),
            state.app.now(),
        )
        .await?;
    state
        .app
        .audit(
            &caller.name,
            "user.create",
            &format!("user:{username}"),
            serde_json::json!({ "role": request.role }),
        )
        .await;
    let user = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("user {username} vanished")))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: user.into(),
            password: generated,
        }),
    ))
}

/// Changes to a user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// A new role.
    #[serde(default)]
    pub role: Option<Role>,
    /// Disable or enable (disabling ends the user's sessions).
    #[serde(default)]
    pub disabled: Option<bool>,
    /// A new password (ends the user's sessions).
    #[serde(default)]
    pub password: Option<String>,
}

/// `PATCH /api/v1/users/{username}`.
pub async fn update_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(username): Path<String>,
    JsonBody(change): JsonBody<UserChange>,
) -> ApiResult<Json<UserView>> {
    let store = state.app.store();
    let user = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {username:?}")))?;
    if user.username == caller.name
        && (change.disabled == Some(true) || change.role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::BadRequest(
            "you cannot disable yourself or take away your own admin role".into(),
        ));
    }
    let hashed = match change.password {
        Some(p) => {
            if p.chars().count() < MIN_PASSWORD_LEN {
                return Err(ApiError::BadRequest(format!(
                    "passwords must be at least {MIN_PASSWORD_LEN} characters"
                )));
            }
            Some(hash(p).await?)
        }
        None => None,
    };
    store
        .update_user(
            user.id,
            hashed.as_deref(),
            change.role.map(stored_role),
            change.disabled,
            state.app.now(),
        )
        .await?;
    state.shared.auth.forget_all();
    state
        .app
        .audit(
            &caller.name,
            "user.update",
            &format!("user:{username}"),
            serde_json::json!({ "role": change.role, "disabled": change.disabled, "password": hashed.is_some() }),
        )
        .await;
    let user = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("user {username} vanished")))?;
    Ok(Json(user.into()))
}

/// An API token as listed (never its value).
#[derive(Debug, Serialize)]
pub struct TokenView {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            role: role_of(t.role),
            created_by: t.created_by,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// `GET /api/v1/tokens`.
pub async fn tokens(State(state): State<AppState>) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(
        state
            .app
            .store()
            .api_tokens()
            .await?
            .into_iter()
            .map(TokenView::from)
            .collect(),
    ))
}

/// A new API token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for people.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A created token.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    /// The token.
    pub token: TokenView,
    /// Its value, shown this once (`Authorization: Bearer <value>`).
    pub value: String,
}

/// `POST /api/v1/tokens`.
pub async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::BadRequest(
            "a token needs a name (1 to 100 characters)".into(),
        ));
    }
    let value = new_api_token();
    let store = state.app.store();
    let id = store
        .create_api_token(
            name,
            &value,
            stored_role(request.role),
            &caller.name,
            state.app.now(),
        )
        .await?;
    state
        .app
        .audit(
            &caller.name,
            "token.create",
            &format!("token:{name}"),
            serde_json::json!({ "id": id.0, "role": request.role }),
        )
        .await;
    let token = store
        .api_tokens()
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::Internal(format!("token {} vanished", id.0)))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: token.into(),
            value,
        }),
    ))
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn revoke_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    state
        .app
        .store()
        .revoke_api_token(ApiTokenId(id), state.app.now())
        .await?;
    state.shared.auth.forget_all();
    state
        .app
        .audit(
            &caller.name,
            "token.revoke",
            &format!("token:{id}"),
            serde_json::json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------- audit

/// `?subject=&actor=&before=&limit=` of the audit log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this subject (`card:KEY`, `user:NAME`, ...).
    pub subject: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Entries with an id below this (the next page).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// `GET /api/v1/audit`.
pub async fn audit(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let filter = AuditFilter {
        subject: query.subject,
        actor: query.actor,
        before_id: query.before,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, super::cards::MAX_LIST);
    Ok(Json(state.app.store().audit_entries(&filter, limit).await?))
}
