//! The audit log, newest first.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use trueup_store::audit::{AuditEntry, AuditFilter};

use crate::web::AppState;
use crate::web::error::{ApiResult, QueryParams};

/// `?subject=&actor=&before=&limit=` of the audit log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "Audit entries (id, at, actor, action, subject, detail), newest first", body = Vec<Object>), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn audit(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let filter = AuditFilter {
        subject: query.subject,
        actor: query.actor,
        before_id: query.before,
    };
    let limit = query
        .limit
        .unwrap_or(100)
        .clamp(1, crate::web::cards::MAX_LIST);
    Ok(Json(state.app.store().audit_entries(&filter, limit).await?))
}
