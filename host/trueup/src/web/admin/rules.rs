//! Rules: the active version and every version, and drafts checked,
//! dry-run, explained and activated.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::card::CardTotals;
use trueup_core::mapping::SkuTableFirst;
use trueup_core::reconcile::reconcile;
use trueup_rules::diff::{CardDiff, diff_outputs};
use trueup_rules::{CompiledRules, RuleVersion};

use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult, JsonBody};

/// A rule version as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RulesAnswer {
    /// The active version.
    pub active: Option<ActiveRules>,
    /// Every version, newest first.
    pub versions: Vec<RuleVersionView>,
}

/// `GET /api/v1/rules`.
#[utoipa::path(
    get,
    path = "/api/v1/rules",
    tag = "rules",
    responses((status = 200, description = "The active rules and every version", body = RulesAnswer)),
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/rules/versions/{checksum}",
    tag = "rules",
    params(("checksum" = String, Path, description = "The version SHA-256")),
    responses((status = 200, description = "The version: checksum, file, source, tests, author, created_at", body = Object), (status = 404, description = "No such version", body = crate::web::openapi::ErrorBody)),
)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[utoipa::path(
    post,
    path = "/api/v1/rules/check",
    tag = "rules",
    request_body = RulesDraft,
    responses((status = 200, description = "What the draft declares, and its tests' outcome", body = CheckAnswer), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRunAnswer {
    /// The reconcile date.
    pub as_of: NaiveDate,
    /// Cards added, removed and changed by the draft.
    #[schema(value_type = Object)]
    pub diff: CardDiff,
    /// Totals under the active rules.
    #[schema(value_type = Object)]
    pub before: CardTotals,
    /// Totals under the draft.
    #[schema(value_type = Object)]
    pub after: CardTotals,
}

/// `POST /api/v1/rules/dry-run`.
#[utoipa::path(
    post,
    path = "/api/v1/rules/dry-run",
    tag = "rules",
    request_body = RulesDraft,
    responses((status = 200, description = "The cards that differ and the totals before and after", body = DryRunAnswer), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No data to reconcile yet", body = crate::web::openapi::ErrorBody)),
)]
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
        // Both sides read the SKU table first, as the live reconcile does.
        let run = |rules: &Arc<CompiledRules>| {
            let mapper = SkuTableFirst::new(active.sku_table.clone(), rules.mapper(as_of));
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExplainAnswer {
    /// The explanation as text: every distinct decision with its trace,
    /// and the policy of each product it maps to.
    pub text: String,
}

/// `POST /api/v1/rules/explain`.
#[utoipa::path(
    post,
    path = "/api/v1/rules/explain",
    tag = "rules",
    request_body = ExplainRequest,
    responses((status = 200, description = "The explanation", body = ExplainAnswer), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such account or SKU", body = crate::web::openapi::ErrorBody)),
)]
pub async fn explain_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<ExplainRequest>,
) -> ApiResult<Json<ExplainAnswer>> {
    let sku_table = state.app.sku_table().await?;
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
        let mapper = SkuTableFirst::new(sku_table, rules.mapper(as_of));
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Activated {
    /// Its checksum.
    pub checksum: String,
}

/// `POST /api/v1/rules/activate`: validate (compile, declarations, tests)
/// and activate; the next reconcile uses it.
#[utoipa::path(
    post,
    path = "/api/v1/rules/activate",
    tag = "rules",
    request_body = RulesDraft,
    responses((status = 200, description = "Activated", body = Activated), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
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
